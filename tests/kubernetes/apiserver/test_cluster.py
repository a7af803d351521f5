"""Smoke tests of the test cluster itself (tests/kubernetes/cluster.py): the pinned API server answers, rollouts
complete through the real controllers and scheduler with kwok standing in for the kubelet, claims of a
volumeClaimTemplate are provisioned and bound, and RBAC refuses the limited user."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sagaz_lakehouse import versions

TIMEOUT = 60


def wait_for(what: str, check: Callable[[], Any], cluster: Any, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{cluster.log_tail()}", pytrace=False)
        time.sleep(0.5)
    return result


@pytest.fixture
def namespace(cluster, request) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    name = "smoke-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def pod_template(labels: dict[str, str], restart: str = "Always") -> dict:
    return {"metadata": {"labels": labels},
            "spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": "example.invalid/none:1"}]}}


def test_api_server_is_the_pinned_version(cluster):
    from kubernetes import client

    info = client.VersionApi(cluster.api_client()).get_code()
    assert info.git_version == versions.KUBE_TEST_CLUSTER["kubernetes"]
    assert (info.major, info.minor) == tuple(versions.KUBERNETES.split("."))


def test_a_deployment_becomes_available(cluster, namespace):
    from kubernetes import client

    apps = client.AppsV1Api(cluster.api_client())
    labels = {"app": "web"}
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": pod_template(labels)}})

    def available():
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.ready_replicas == 2 and status.available_replicas == 2

    wait_for("2 ready replicas of deployment web", available, cluster)
    pods = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.status.phase == "Running" and p.spec.node_name and p.status.pod_ip for p in pods)


def test_a_job_completes(cluster, namespace):
    from kubernetes import client

    batch = client.BatchV1Api(cluster.api_client())
    batch.create_namespaced_job(namespace, {
        "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": pod_template({"app": "once"}, restart="Never")}})
    status = wait_for("job once to complete",
                      lambda: (s := batch.read_namespaced_job_status("once", namespace).status).succeeded and s,
                      cluster)
    assert status.succeeded == 1
    assert any(c.type == "Complete" and c.status == "True" for c in status.conditions)


def test_a_statefulset_gets_its_claim_bound_and_becomes_ready(cluster, namespace):
    from kubernetes import client

    apps = client.AppsV1Api(cluster.api_client())
    core = client.CoreV1Api(cluster.api_client())
    labels = {"app": "db"}
    template = pod_template(labels)
    template["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    apps.create_namespaced_stateful_set(namespace, {
        "metadata": {"name": "db"},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": labels}, "template": template,
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]}})

    wait_for("statefulset db to have 1 ready replica",
             lambda: apps.read_namespaced_stateful_set_status("db", namespace).status.ready_replicas == 1, cluster)
    claim = core.read_namespaced_persistent_volume_claim("data-db-0", namespace)
    assert claim.status.phase == "Bound"
    assert claim.spec.storage_class_name == "standard"  # the default StorageClass, set by admission
    volume = core.read_persistent_volume(claim.spec.volume_name)
    assert volume.status.phase == "Bound" and volume.spec.claim_ref.name == "data-db-0"

    # Deleting the claim deletes the provisioned volume (reclaim policy Delete), so the pool never runs dry.
    apps.delete_namespaced_stateful_set("db", namespace)
    core.delete_namespaced_persistent_volume_claim("data-db-0", namespace)

    def volume_gone():
        return not any(v.metadata.name == volume.metadata.name for v in core.list_persistent_volume().items)

    wait_for(f"volume {volume.metadata.name} to be deleted", volume_gone, cluster)


def test_the_limited_user_may_not_create_a_namespace(cluster):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(cluster.api_client(cluster.limited_context))
    with pytest.raises(ApiException) as refused:
        core.create_namespace({"metadata": {"name": "not-allowed"}})
    assert refused.value.status == 403
    status = json.loads(refused.value.body)
    assert status["reason"] == "Forbidden"
    assert 'User "limited" cannot create resource "namespaces"' in status["message"]
