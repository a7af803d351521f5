"""The prod topology on a real scheduler (issue 25, item 5): a control plane of its own with six kwok nodes in three
zones (cluster.ZONED_NODES), where `up` applies the prod stack and the real kube-scheduler places its pods by the
rendered topologySpreadConstraints. kwok stands in for the kubelet: no container runs, so where Fluss puts a bucket's
replicas (its racks) cannot be read here; this proves the pods' placement, and the rack lookup's script and rights
against the real API server (run in this process, as the init container would run it)."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from cluster import ZONE_LABEL, ZONED_NODES, TestCluster, start_cluster
from manifest_helpers import CREDENTIALS
from stacks import Stack

from sagaz_lakehouse import stack as s
from sagaz_lakehouse.targets.kubernetes import layout as k8s


@pytest.fixture(scope="module")
def zoned_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    with start_cluster(tmp_path_factory.mktemp("zoned-cluster"), nodes=ZONED_NODES) as running:
        yield running


def prod_stack(cluster: TestCluster, tmp_path, **overrides: str) -> Stack:
    made = Stack(cluster, tmp_path)
    made.overrides = {**made.overrides, "profile": "prod", **overrides}
    made.driver = made.make(credentials=CREDENTIALS)
    return made


def placement(made: Stack, component: str) -> dict[str, str]:
    """Pod name → the node it is scheduled on ("" while Pending)."""
    pods = made.api().list("v1", "Pod", made.namespace, f"app.kubernetes.io/component={component}")
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}


def test_prod_pods_of_each_replicated_server_land_on_distinct_nodes_and_zones(zoned_cluster, tmp_path):
    """The prod stack applies and places as intended. On six empty nodes the scheduler's own default spreading (by
    node and zone, ScheduleAnyway) would place these pods the same way (checked: it passes with the profile's spread
    off): what the rendered constraints add, never sharing a node even when that leaves a pod Pending, is the next
    test."""
    made = prod_stack(zoned_cluster, tmp_path, **{"replicas.tablet_servers": "3", "replicas.flink_taskmanagers": "2"})
    try:
        made.up()
        zone = {name: labels[ZONE_LABEL] for name, labels in ZONED_NODES.items()}
        for component, count in ((s.TABLET, 3), (s.ZOOKEEPER, 3), (s.TASKMANAGER, 2)):
            nodes = placement(made, component)
            assert len(nodes) == count and all(nodes.values()), (component, nodes)
            assert len(set(nodes.values())) == count, (component, nodes)  # never two on one node
            # three zones with room on each: the zone constraint (ScheduleAnyway) still puts each in its own
            assert len({zone[n] for n in nodes.values()}) == count, (component, nodes)
        check_rack_lookup(zoned_cluster, made, tmp_path)
    finally:
        made.driver.down(purge=True)
    # the node reader is cluster-wide: `down --purge` removes it too (it is recorded in the stack's applyset)
    roles = zoned_cluster.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles")["items"]
    assert not [r["metadata"]["name"] for r in roles if made.namespace in r["metadata"]["name"]]


def check_rack_lookup(cluster: TestCluster, made: Stack, tmp_path) -> None:
    """The rack init container's script, run here (no container runs under kwok) against this API server with a
    token of the tablet servers' ServiceAccount: it reads its node's zone, falls back to the node's name where the
    node has no zone label, and the token can do nothing else (not even list nodes)."""
    account = f"/api/v1/namespaces/{made.namespace}/serviceaccounts/{s.TABLET}/token"
    token = cluster.request("POST", account, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                              "spec": {"expirationSeconds": 600}})["status"]["token"]
    api_dir, rack_dir = tmp_path / "api", tmp_path / "rack"
    api_dir.mkdir()
    rack_dir.mkdir()
    (api_dir / "token").write_text(token)
    (api_dir / "ca.crt").write_bytes(cluster._ca)
    script = k8s.RACK_SCRIPT.replace(k8s.API_TOKEN_DIR, str(api_dir)).replace(k8s.RACK_DIR, str(rack_dir))
    host, port = cluster.server.removeprefix("https://").rsplit(":", 1)
    bare = "kwok-bare-node"  # a node without a zone label (kept unschedulable: kwok does not run it)
    cluster.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": bare, "labels": {"kubernetes.io/hostname": bare}}, "spec": {"unschedulable": True}})
    try:
        for node, rack in (("kwok-b-1", "zone-b"), (bare, bare)):
            result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                    env={"NODE_NAME": node, "KUBERNETES_SERVICE_HOST": host,
                                         "KUBERNETES_SERVICE_PORT": port})
            assert result.returncode == 0, result.stderr
            assert (rack_dir / k8s.RACK_FILE).read_text() == rack, result.stdout
    finally:
        cluster.request("DELETE", f"/api/v1/nodes/{bare}")
    request = urllib.request.Request(f"{cluster.server}/api/v1/nodes",  # noqa: S310 - the test API server
                                     headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cadata=cluster._ca.decode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=context, timeout=10)  # noqa: S310 - the test API server
    assert refused.value.code == 403


def test_a_tablet_server_more_than_nodes_waits_instead_of_sharing_a_node(zoned_cluster, tmp_path):
    """DoNotSchedule with minDomains = replicas: seven tablet servers on six nodes leave one Pending, unschedulable
    by the spread constraint, rather than two copies of a bucket on one node."""
    made = prod_stack(zoned_cluster, tmp_path, **{"replicas.tablet_servers": "7", "durability.replication_factor": "3"})
    try:
        made.up(wait=False)
        deadline = time.monotonic() + 60
        while True:
            nodes = placement(made, s.TABLET)
            pending = [p for p, n in nodes.items() if not n]
            if len(nodes) == 7 and len(pending) == 1:
                pod = made.api().get("v1", "Pod", pending[0], made.namespace)
                conditions = {c["type"]: c for c in pod["status"].get("conditions") or []}
                if conditions.get("PodScheduled", {}).get("reason") == "Unschedulable":
                    break
            assert time.monotonic() < deadline, f"expected 6 placed and 1 unschedulable tablet server: {nodes}"
            time.sleep(0.5)
        placed = [n for n in nodes.values() if n]
        assert len(placed) == len(set(placed)) == len(ZONED_NODES)
        assert "topology spread constraints" in conditions["PodScheduled"]["message"], conditions["PodScheduled"]
    finally:
        made.driver.down(purge=True)
