"""The Kubernetes driver's pure parts: ownership labels, readiness, diagnosis text, error messages, port-forward
plumbing and the CLI's refusals before any cluster is contacted. The API-server behaviour is in
tests/kubernetes/apiserver."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from typer.testing import CliRunner

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse.cli import app
from sagaz_lakehouse.config import DEV_CREDENTIALS
from sagaz_lakehouse.errors import EnvironmentProblem, UsageError
from sagaz_lakehouse.targets.kubernetes.api import Where, translate
from sagaz_lakehouse.targets.kubernetes.applyset import PART_OF, ApplySet, applyset_id, group_kind, prunable
from sagaz_lakehouse.targets.kubernetes.driver import comparable, in_delete_order
from sagaz_lakehouse.targets.kubernetes.portforward import Forward, PortForwards
from sagaz_lakehouse.targets.kubernetes.rollout import CRASH_LOOP_RESTARTS, crash_loops, pod_problems, readiness

runner = CliRunner()
WHERE = Where(__import__("pathlib").Path("/k/config"), "ctx")


def obj(kind: str, name: str, api_version: str = "v1", **extra) -> dict:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "ns", **extra}}


# ---------------------------------------------------------------------------------------------- applyset


def test_applyset_id_follows_kubectl_format_and_depends_on_parent():
    first = applyset_id("p-applyset", "ns")
    assert first.startswith("applyset-") and first.endswith("-v1")
    assert "=" not in first and "+" not in first and "/" not in first  # base64url without padding
    assert len(first) <= 63  # it is a label value
    assert first == applyset_id("p-applyset", "ns")
    assert first != applyset_id("p-applyset", "other")


def test_label_copies_and_prune_ignores_unlabelled_objects():
    applyset = ApplySet("p", "ns")
    mine = applyset.label(obj("Service", "trino-worker"))
    kept = applyset.label(obj("Service", "trino"))
    foreign = obj("Service", "someone-elses")
    assert PART_OF not in foreign["metadata"].get("labels", {})
    stale = prunable([mine, kept, foreign], [kept], applyset)
    assert [o["metadata"]["name"] for o in stale] == ["trino-worker"]


def test_group_kind_and_parent_annotation():
    assert group_kind(obj("Deployment", "x", "apps/v1")) == "Deployment.apps"
    assert group_kind(obj("Service", "x")) == "Service"
    parent = ApplySet("p", "ns").parent({"Service", "Deployment.apps"})
    assert ApplySet.recorded_kinds(parent) == {"Service", "Deployment.apps"}
    assert ApplySet.recorded_kinds(None) == set()


def test_delete_order_puts_consumers_first_and_namespace_last():
    objects = [obj("Namespace", "n"), obj("ConfigMap", "c"), obj("Job", "j", "batch/v1"),
               obj("StatefulSet", "s", "apps/v1")]
    assert [o["kind"] for o in in_delete_order(objects)] == ["Job", "StatefulSet", "ConfigMap", "Namespace"]


# ---------------------------------------------------------------------------------------------- readiness


def test_deployment_readiness_needs_every_replica_available():
    deployment = {"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
                  "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 2,
                             "availableReplicas": 1}}
    assert not readiness(deployment).ready
    assert readiness(deployment).summary.startswith("1/2 ready")
    deployment["status"].update(readyReplicas=2, availableReplicas=2)
    assert readiness(deployment).ready


def test_deployment_rollout_waits_until_the_old_pods_are_gone():
    """A rolling update keeps the old ready pod while the new one starts (or crashes): not rolled out yet."""
    deployment = {"kind": "Deployment", "metadata": {"generation": 3}, "spec": {"replicas": 1},
                  "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
                             "availableReplicas": 1}}
    state = readiness(deployment)
    assert not state.ready and "1 old pod(s) still running" in state.summary
    deployment["status"]["replicas"] = 1
    assert readiness(deployment).ready


def test_crash_loops_count_only_containers_backing_off_after_enough_restarts():
    def pod(reason: str, restarts: int) -> dict:
        return {"metadata": {"name": "trino-1"}, "status": {"containerStatuses": [
            {"name": "trino", "restartCount": restarts, "state": {"waiting": {"reason": reason}}}]}}

    assert crash_loops([pod("CrashLoopBackOff", CRASH_LOOP_RESTARTS - 1)]) == []
    assert crash_loops([pod("ContainerCreating", CRASH_LOOP_RESTARTS + 5)]) == []
    assert crash_loops([pod("CrashLoopBackOff", CRASH_LOOP_RESTARTS)]) == [
        f"pod trino-1: container trino in CrashLoopBackOff after {CRASH_LOOP_RESTARTS} restarts"]


def test_statefulset_waits_for_the_controller_and_the_update_revision():
    sts = {"kind": "StatefulSet", "metadata": {"generation": 3}, "spec": {"replicas": 1},
           "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}}
    assert "not seen" in readiness(sts).summary
    sts["status"].update(observedGeneration=3, currentRevision="a", updateRevision="b")
    assert not readiness(sts).ready
    sts["status"]["currentRevision"] = "b"
    assert readiness(sts).ready


def test_failed_job_is_final_and_says_why():
    job = {"kind": "Job", "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "too many"}]}}
    state = readiness(job)
    assert state.failed and not state.ready and "BackoffLimitExceeded" in state.summary
    done = {"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert readiness(done).ready


def test_pod_problems_name_the_blocking_reason():
    pod = {"metadata": {"name": "trino-0"}, "status": {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 Insufficient memory."}],
        "containerStatuses": [{"name": "trino", "restartCount": 3,
                               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}}
    text = pod_problems(pod)[0]
    assert "Unschedulable" in text and "Insufficient memory" in text
    assert "CrashLoopBackOff" in text and "restarted 3x" in text


# ---------------------------------------------------------------------------------------------- status


def test_status_endpoints_name_services_the_stack_renders(tmp_path):
    """Every endpoint `status` shows is a Service of the rendered stack with that port (tablet servers have no
    load-balancing Service: their row names the headless one)."""
    from sagaz_lakehouse.targets.kubernetes.driver import KubernetesDriver

    settings = lakehouse.load_settings(None, {"target": "kubernetes", "replicas.trino_workers": 1}, environ={})
    driver = KubernetesDriver(settings, tmp_path, credentials=DEV_CREDENTIALS)
    services = {o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]}
                for o in driver.desired() if o["kind"] == "Service"}
    shown = {}
    for component in driver.stack.components:
        if endpoint := driver.endpoint(component):
            host, port = endpoint.rsplit(":", 1)
            name, namespace, suffix = host.split(".")
            assert (namespace, suffix) == (settings.namespace, "svc") and int(port) in services[name], endpoint
            shown[component.name] = name
    assert shown["fluss-tablet"] == "fluss-tablet-headless" and shown["trino"] == "trino"
    assert {"zookeeper", "flink-taskmanager", "trino-worker", "create-bucket"}.isdisjoint(shown)  # nothing published


def test_down_stops_the_workloads_in_waves_fluss_before_zookeeper_and_unknown_ones_first(tmp_path):
    """`down` deletes the workloads a wave at a time (each gone before the next): the Fluss servers close their
    ZooKeeper sessions before ZooKeeper stops, so the next `up` finds no stale registrations."""
    from sagaz_lakehouse.targets.kubernetes.driver import KubernetesDriver

    settings = lakehouse.load_settings(None, {"target": "kubernetes"}, environ={})
    driver = KubernetesDriver(settings, tmp_path, credentials=DEV_CREDENTIALS)
    workloads = [o for o in driver.desired() if o["kind"] in ("StatefulSet", "Deployment", "Job")]
    left_over = obj("Deployment", "old-component", "apps/v1", labels={"app.kubernetes.io/component": "old"})
    waves = driver._stop_waves([*workloads, left_over])
    wave_of = {w["metadata"]["name"]: i for i, wave in enumerate(waves) for w in wave}
    assert wave_of["old-component"] == 0 and waves[0] == [left_over]
    assert wave_of["fluss-tablet"] < wave_of["fluss-coordinator"] < wave_of["zookeeper"]
    assert wave_of["flink-taskmanager"] < wave_of["flink-jobmanager"] < wave_of["minio"]
    assert sum(map(len, waves)) == len(workloads) + 1


# ---------------------------------------------------------------------------------------------- errors


class FakeApiError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = json.dumps(body)


def test_forbidden_names_verb_and_resource():
    error = translate(FakeApiError(403, {"message": 'namespaces is forbidden: User "limited" cannot create '
                                                    'resource "namespaces" in API group "" at the cluster scope'}),
                      "apply", "Namespace sagaz", WHERE)
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert "cannot create namespaces" in error.message
    assert "kubectl auth can-i create namespaces" in error.hint


def test_conflict_names_the_other_manager_and_the_flag():
    body = {"message": "Apply failed with 1 conflict", "details": {"causes": [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-edit": .spec.replicas',
         "field": ".spec.replicas"}]}}
    error = translate(FakeApiError(409, body), "apply", "Deployment trino", WHERE)
    assert 'conflict with "kubectl-edit": .spec.replicas' in error.message
    assert "--force-conflicts" in error.hint and error.exit_code == 2


def test_a_refused_write_blames_the_settings_a_refused_read_does_not():
    message = 'container "trino" in pod "trino-0" is waiting to start: ContainerCreating'
    read = translate(FakeApiError(400, {"message": message}), "read log of", "pod trino-0", WHERE)
    assert not isinstance(read, UsageError) and read.exit_code == 1
    assert message in read.message and "still be starting" in read.hint
    write = translate(FakeApiError(422, {"message": "spec.replicas: Invalid value: -1"}), "apply", "Deployment x",
                      WHERE)
    assert isinstance(write, UsageError) and "a setting produced an object" in write.hint


def test_unreachable_server_names_kubeconfig_and_context():
    error = translate(ConnectionRefusedError("refused"), "get", "/version", WHERE)
    assert isinstance(error, EnvironmentProblem)
    assert "/k/config" in error.message and "'ctx'" in error.message


def test_secret_values_never_reach_a_diff():
    secret = obj("Secret", "s3-credentials", stringData={})
    secret["stringData"] = {"S3_SECRET_KEY": DEV_CREDENTIALS.secret_key}
    shown = json.dumps(comparable(secret))
    assert DEV_CREDENTIALS.secret_key not in shown and "hidden, sha256" in shown


# ---------------------------------------------------------------------------------------------- port-forward


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def echo_server() -> tuple[socket.socket, int]:
    """A local TCP echo server standing in for a pod's port (the API-server stream is the kubernetes client's)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(b"echo:" + data)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_port_forward_copies_bytes_both_ways_and_resolves_the_pod_per_connection():
    server, port = echo_server()
    asked = []

    def opener(pod: str, remote_port: int):
        asked.append((pod, remote_port))
        stream = socket.create_connection(("127.0.0.1", port))
        return stream, stream.close

    local = free_port()
    with server, PortForwards([Forward("trino", local, 8080, lambda: "trino-0")], opener):
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", local), timeout=5) as client:
                client.sendall(b"ping")
                assert client.recv(100) == b"echo:ping"
    assert asked == [("trino-0", 8080), ("trino-0", 8080)]
    with pytest.raises(OSError):  # the listener is gone after the block
        socket.create_connection(("127.0.0.1", local), timeout=1)


def test_port_forward_failures_are_kept_with_their_reason_and_the_port_is_free_again_at_once():
    from sagaz_lakehouse.errors import StackNotReachable

    def no_pod() -> str:
        raise StackNotReachable("trino", "namespace ns", "no ready pod")

    local = free_port()
    forwards = PortForwards([Forward("trino", local, 8080, no_pod)], lambda p, r: (None, lambda: None))
    with forwards:
        with socket.create_connection(("127.0.0.1", local), timeout=5) as client:
            assert client.recv(10) == b""  # closed by the forward: the client learns nothing more
        deadline = time.monotonic() + 5
        while not forwards.errors and time.monotonic() < deadline:
            time.sleep(0.05)
    assert forwards.errors == [f"127.0.0.1:{local} → trino: trino is not reachable at namespace ns (no ready pod)"]
    # The forward closed that connection first, so its port is in TIME_WAIT: the next command binds it anyway.
    with PortForwards([Forward("trino", local, 8080, no_pod)], lambda p, r: (None, lambda: None)):
        pass


def test_doctor_appends_the_forward_failure_to_the_check_that_met_it():
    from sagaz_lakehouse import doctor

    problems: list[str] = []

    def probe() -> str:
        problems.append("127.0.0.1:8080 → trino: trino is not reachable at namespace ns (no ready pod)")
        raise ConnectionResetError(104, "Connection reset by peer")

    report = doctor.Report()
    check = doctor.record_check(report, "components", "trino", probe, None, lambda: list(problems))
    assert check.status == doctor.FAIL
    assert check.detail.endswith("[port-forward: 127.0.0.1:8080 → trino: trino is not reachable at namespace ns "
                                 "(no ready pod)]")
    passing = doctor.record_check(report, "components", "minio", lambda: "ready", None, lambda: list(problems))
    assert passing.detail == "ready"  # earlier failures belong to earlier checks


def test_port_forward_refuses_a_taken_port_and_names_it():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        forwards = PortForwards([Forward("minio", port, 9000, lambda: "minio-0")], lambda p, r: (None, lambda: None))
        with pytest.raises(EnvironmentProblem) as caught, forwards:
            pass
    assert str(port) in caught.value.message and "minio" in caught.value.message


# ---------------------------------------------------------------------------------------------- CLI refusals


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env or {}, catch_exceptions=False)


def test_no_kubeconfig_is_exit_2_naming_the_path(tmp_path):
    missing = tmp_path / "nope" / "config"
    result = invoke("status", "--target", "kubernetes", env={"KUBECONFIG": str(missing)})
    assert result.exit_code == 2
    assert str(missing) in result.output


def test_unknown_context_lists_the_known_ones(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "
                          "'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: known\n"
                          "  context: {cluster: c, user: u}\ncurrent-context: known\n")
    result = invoke("up", "--target", "kubernetes", "--context", "missing", env={"KUBECONFIG": str(kubeconfig)})
    assert result.exit_code == 2
    assert "'missing' not found" in result.output and "known" in result.output and str(kubeconfig) in result.output
    unreachable = invoke("status", "--target", "kubernetes", env={"KUBECONFIG": str(kubeconfig)})
    assert unreachable.exit_code == 2
    assert "not reachable" in unreachable.output and "'known'" in unreachable.output


def test_kubernetes_only_flags_are_refused_elsewhere():
    assert invoke("diff", "--target", "local").exit_code == 2
    result = invoke("up", "--target", "local", "--force-conflicts", "--dry-run")
    assert result.exit_code == 2 and "--force-conflicts" in result.output


def test_bad_namespace_is_a_config_error():
    result = invoke("status", "--target", "kubernetes", "--namespace", "Not_A_Label")
    assert result.exit_code == 2 and "kubernetes.namespace" in result.output
