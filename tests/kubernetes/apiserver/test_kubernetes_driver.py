"""`up`, `diff`, `down` and `status` on Kubernetes, against a real kube-apiserver (etcd, controller-manager,
scheduler) started by tests/kubernetes/cluster.py. kwok stands in for the kubelet (there is no container runtime here):
it makes scheduled pods Running and Ready and lets Job pods succeed, so rollouts and waits are real, while the
containers themselves never run. Each test works in its own namespace and purges it afterwards."""

from __future__ import annotations

import contextlib
import subprocess

import pytest
import support
from stacks import Stack

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config, versions
from sagaz_lakehouse.errors import LakehouseError, UsageError
from sagaz_lakehouse.targets.kubernetes.api import ref
from sagaz_lakehouse.targets.kubernetes.applyset import PART_OF
from sagaz_lakehouse.targets.kubernetes.layout import reads_secret

# ---------------------------------------------------------------------------------------------- apply


def test_up_applies_every_object_strictly_waits_and_is_idempotent(stack):
    first = stack.up()
    rendered = stack.driver.desired()
    assert {o["action"] for o in first["objects"]} == {"created"}
    assert len(first["objects"]) == len(rendered) - 1  # everything but the namespace, created before the others
    rows = {r["component"]: r for r in stack.driver.status()}
    assert {r["state"] for r in rows.values()} <= {"healthy", "completed"}, rows
    assert rows["create-bucket"]["state"] == rows["submit-tiering"]["state"] == "completed"
    assert rows["trino"]["endpoint"] == f"trino.{stack.namespace}.svc:8080"
    claims = stack.api().list("v1", "PersistentVolumeClaim", stack.namespace)
    assert claims and all(c["status"]["phase"] == "Bound" for c in claims)
    # Every address status shows is a Service of the namespace with that port.
    services = {o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]}
                for o in stack.api().list("v1", "Service", stack.namespace)}
    for row in rows.values():
        if row["endpoint"]:
            host, port = row["endpoint"].rsplit(":", 1)
            assert host.endswith(f".{stack.namespace}.svc") and int(port) in services[host.split(".")[0]], row
    # Pods of replicated components are named like their instances on every target.
    for component in stack.driver.stack.components:
        if component.replicated:
            pods = stack.api().list("v1", "Pod", stack.namespace,
                                    f"app.kubernetes.io/component={component.name}")
            assert sorted(p["metadata"]["name"] for p in pods) == component.instance_names()

    before = stack.owned()
    assert len(before) == len(rendered)
    again = stack.up()
    assert {o["action"] for o in again["objects"]} == {"unchanged"}
    assert stack.owned() == before  # not one resourceVersion moved


def test_disabling_a_component_prunes_exactly_its_objects(stack, tmp_path):
    with_workers = stack.make(**{"replicas.trino_workers": "1"})
    stack.up(with_workers)
    worker_refs = {ref(o) for o in with_workers.desired()} - {ref(o) for o in stack.driver.desired()}
    assert worker_refs and all(r[3].startswith("trino-worker") for r in worker_refs)
    foreign = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "someone-elses", "namespace": stack.namespace}}
    stack.api().apply(foreign)  # not ours: no ApplySet label
    before = stack.owned()

    result = stack.up()
    after = stack.owned()
    assert set(before) - set(after) == worker_refs
    assert sorted(result["pruned"]) == sorted(f"{r[1]} {r[3]} in namespace {r[2]}" for r in worker_refs)
    assert stack.api().get("v1", "ConfigMap", "someone-elses", stack.namespace) is not None


def test_server_dry_run_and_diff_change_nothing(stack):
    stack.up()
    before = stack.owned()
    tablets = stack.driver.settings.replicas.tablet_servers
    scaled = stack.make(**{"replicas.tablet_servers": str(tablets + 1)})
    result = scaled.up(dry_run=True, wait=False, timeout=10)
    assert result["dry_run"] is True
    actions = {o["object"]: o["action"] for o in result["objects"]}
    assert actions[f"StatefulSet fluss-tablet in namespace {stack.namespace}"] == "would configure"
    assert actions[f"Service zookeeper in namespace {stack.namespace}"] == "unchanged"
    changes = {c["object"]: c for c in scaled.diff()}
    tablet = changes[f"StatefulSet fluss-tablet in namespace {stack.namespace}"]
    assert f"-  replicas: {tablets}" in tablet["diff"] and f"+  replicas: {tablets + 1}" in tablet["diff"]
    assert stack.driver.diff() == []  # the applied settings: no difference
    assert stack.owned() == before


def test_scaling_taskmanagers_adds_instances_and_reruns_the_submit_task(stack):
    """The submit task's arguments name how many TaskManagers to wait for, so its Job (named by a digest of its
    immutable pod template) is a new one and the superseded one is pruned; the servers roll for nothing but their
    own replica count. Prometheus rolls too: the new TaskManager is a new scrape target in its configuration."""
    stack.up()
    (first_job,) = stack.api().list("batch/v1", "Job", stack.namespace, "app.kubernetes.io/component=submit-tiering")
    scaled = stack.make(**{"replicas.flink_taskmanagers": "2"})
    result = stack.up(scaled)
    actions = {o["object"]: o["action"] for o in result["objects"]}
    changed = {name.split(" in namespace")[0] for name, action in actions.items() if action != "unchanged"}
    (job,) = stack.api().list("batch/v1", "Job", stack.namespace, "app.kubernetes.io/component=submit-tiering")
    assert job["metadata"]["name"] != first_job["metadata"]["name"]
    # Two TaskManagers also get a disruption budget (drained one at a time), and Prometheus scrapes the new one.
    assert changed == {"StatefulSet flink-taskmanager", "PodDisruptionBudget flink-taskmanager",
                       f"Job {job['metadata']['name']}", "ConfigMap prometheus-config", "StatefulSet prometheus"}
    assert result["pruned"] == [f"Job {first_job['metadata']['name']} in namespace {stack.namespace}"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[1] == "2"  # submit-tiering.sh REST_URL TASKMANAGERS JOB_NAME MAIN_CLASS JAR -- JOB_ARGS...
    pods = stack.api().list("v1", "Pod", stack.namespace, "app.kubernetes.io/component=flink-taskmanager")
    assert sorted(p["metadata"]["name"] for p in pods) == ["flink-taskmanager-0", "flink-taskmanager-1"]
    rows = {r["component"]: r for r in scaled.status()}
    assert rows["flink-taskmanager"]["state"] == "healthy" and rows["submit-tiering"]["state"] == "completed"
    assert job["metadata"]["name"] in rows["submit-tiering"]["detail"]


def test_rotating_credentials_rolls_the_pods_that_read_them(stack):
    stack.up()
    before = {o["metadata"]["name"]: o["metadata"]["generation"]
              for o in stack.api().list("apps/v1", "StatefulSet", stack.namespace)}
    rotated = stack.make(credentials=config.Credentials("rotated-access", "rotated-secret-value"))
    stack.up(rotated)
    after = {o["metadata"]["name"]: o["metadata"]["generation"]
             for o in stack.api().list("apps/v1", "StatefulSet", stack.namespace)}
    rolled = {name for name in before if after[name] != before[name]}
    readers = {o["metadata"]["name"] for o in stack.driver.desired() if o["kind"] == "StatefulSet"
               and reads_secret(o["spec"]["template"]["spec"])}
    assert rolled == readers and {"minio", "fluss-tablet"} <= readers and "zookeeper" not in readers
    minio = stack.api().get("apps/v1", "StatefulSet", "minio", stack.namespace)
    digest = minio["spec"]["template"]["metadata"]["annotations"]["checksum/credentials"]
    assert "rotated" not in digest and len(digest) == 16


def test_restarting_a_component_replaces_each_of_its_pods_and_returns_once_the_new_ones_are_ready(stack):
    """create-tables' repair of apache/fluss#2710 restarts the coordinator this way (the StatefulSet's controller
    makes the new pod under the same name; kwok makes it Ready)."""
    stack.up()

    def pods(component: str) -> dict[str, str]:
        found = stack.api().list("v1", "Pod", stack.namespace, f"app.kubernetes.io/component={component}")
        return {p["metadata"]["name"]: p["metadata"]["uid"] for p in found}

    coordinator, tablets = pods("fluss-coordinator"), pods("fluss-tablet")
    stack.driver.restart("fluss-coordinator", timeout=120)
    now = pods("fluss-coordinator")
    assert now.keys() == coordinator.keys() and not set(now.values()) & set(coordinator.values()), (coordinator, now)
    assert stack.driver.ready_pod("fluss-coordinator") in now
    assert pods("fluss-tablet") == tablets  # nothing else restarts


def test_kubectl_apply_k_works_as_documented_also_after_a_settings_change(cluster, tmp_path):
    """docs/kubernetes.md: `kubectl apply -k` of a rendering. After a settings change that touches a task, the task
    is a new Job beside the finished one (no "field is immutable"), which its TTL removes later."""
    from sagaz_lakehouse import render
    from sagaz_lakehouse.targets import base

    kubectl = support.tool(f"kubectl-{versions.KUBE_TEST_CLUSTER['kubernetes']}")
    namespace = "sagaz-kubectl"

    def apply(**overrides: str) -> subprocess.CompletedProcess[str]:
        settings = lakehouse.load_settings(None, {"target": "kubernetes", "kubernetes.namespace": namespace,
                                                  **overrides}, environ={})
        out = tmp_path / f"render-{len(overrides)}"
        render.write_files(base.render(settings, config.DEV_CREDENTIALS, "kubernetes"), out)
        return subprocess.run([str(kubectl), "--kubeconfig", str(cluster.kubeconfig), "apply", "-k", str(out)],
                              capture_output=True, text=True, timeout=120, check=False)

    try:
        first = apply()
        assert first.returncode == 0, first.stderr
        second = apply(**{"replicas.flink_taskmanagers": "2"})
        assert second.returncode == 0, second.stderr
        assert "immutable" not in second.stderr
        jobs = cluster.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]
        tiering = [j for j in jobs if j["metadata"]["name"].startswith("submit-tiering-")]
        assert len(tiering) == 2 and all(j["spec"]["ttlSecondsAfterFinished"] > 0 for j in tiering)
        again = apply(**{"replicas.flink_taskmanagers": "2"})
        assert again.returncode == 0 and "created" not in again.stdout, again.stdout
    finally:
        with contextlib.suppress(Exception):
            cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


# ---------------------------------------------------------------------------------------------- teardown


def test_down_keeps_claims_and_purge_removes_everything_it_created(stack):
    stack.up()
    claims = {c["metadata"]["name"] for c in stack.api().list("v1", "PersistentVolumeClaim", stack.namespace)}
    assert claims
    stack.driver.down(purge=False)
    assert set(stack.owned()) == {("", "Namespace", "", stack.namespace)}
    assert stack.api().list("apps/v1", "StatefulSet", stack.namespace) == []
    kept = {c["metadata"]["name"] for c in stack.api().list("v1", "PersistentVolumeClaim", stack.namespace)}
    assert kept == claims

    stack.up()  # the kept claims are reused by the new StatefulSets
    assert {c["metadata"]["name"] for c in stack.api().list("v1", "PersistentVolumeClaim", stack.namespace)} == claims
    stack.driver.down(purge=True)
    assert stack.api().get("v1", "Namespace", stack.namespace) is None


def test_a_namespace_we_did_not_create_is_used_but_never_deleted(stack):
    stack.api().apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": stack.namespace}})
    stack.up()
    namespace = stack.api().get("v1", "Namespace", stack.namespace)
    assert PART_OF not in (namespace["metadata"].get("labels") or {})
    stack.driver.down(purge=True)
    assert stack.api().get("v1", "Namespace", stack.namespace) is not None
    assert stack.api().list("v1", "PersistentVolumeClaim", stack.namespace) == []
    stack.api().delete(namespace)


# ---------------------------------------------------------------------------------------------- bad input


def _foreign_namespace(stack: Stack) -> None:
    stack.api().apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": stack.namespace}})


def test_an_existing_object_of_someone_else_stops_up_before_any_change(stack):
    _foreign_namespace(stack)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "trino", "namespace": stack.namespace},
               "spec": {"ports": [{"port": 1}]}}
    stack.api().apply(service)
    with pytest.raises(UsageError) as caught:
        stack.up(expect_error=True)
    assert "Service trino" in caught.value.message and caught.value.exit_code == 2
    assert stack.api().list("apps/v1", "StatefulSet", stack.namespace) == []
    assert stack.api().get("v1", "ConfigMap", stack.driver.applyset.parent_name, stack.namespace) is None
    stack.api().delete(service)


def test_an_object_the_cluster_refuses_stops_up_before_any_change(stack):
    _foreign_namespace(stack)
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-statefulsets",
                                                                       "namespace": stack.namespace},
             "spec": {"hard": {"count/statefulsets.apps": "0"}}}
    stack.api().apply(quota)
    with pytest.raises(UsageError) as caught:
        stack.up(expect_error=True)
    assert "quota" in caught.value.message and "StatefulSet" in caught.value.message
    assert stack.owned() == {}  # the server-side dry run caught it: not one object was applied
    stack.api().delete(quota)


def test_rollout_that_never_becomes_ready_reports_why(stack):
    hungry = stack.make(**{"memory.trino": "900Gi"})  # more than any node has: the scheduler refuses
    with pytest.raises(LakehouseError) as caught:
        stack.up(hungry, timeout=30, expect_error=True)  # the scheduler refuses at once; 45 s waited 15 s more
    text = caught.value.message
    assert "timed out after 30s" in text and "trino" in text
    assert "Unschedulable" in text and "Insufficient memory" in text


def test_forbidden_names_verb_and_resource(stack):
    limited = stack.make(context=stack.cluster.limited_context)
    with pytest.raises(UsageError) as caught:
        stack.up(limited, expect_error=True)
    message = caught.value.message
    assert "forbidden" in message and caught.value.exit_code == 2
    assert "namespaces" in message or "configmaps" in message or "services" in message


def test_field_conflict_names_the_other_manager_until_forced(stack):
    stack.up()
    takeover = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "fluss-tablet", "namespace": stack.namespace}, "spec": {"replicas": 5}}
    api = stack.api()
    sts = api.resource("apps/v1", "StatefulSet")
    api.dynamic.server_side_apply(sts, body=takeover, name="fluss-tablet", namespace=stack.namespace,
                                  field_manager="someone-else", force_conflicts=True)
    with pytest.raises(UsageError) as caught:
        stack.up(expect_error=True)
    assert "someone-else" in caught.value.message and "--force-conflicts" in caught.value.hint
    forced = stack.make(force_conflicts=True)
    stack.up(forced)
    assert (api.get("apps/v1", "StatefulSet", "fluss-tablet", stack.namespace)["spec"]["replicas"]
            == stack.driver.settings.replicas.tablet_servers)
