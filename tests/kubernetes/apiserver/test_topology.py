"""The prod topology on a real scheduler (issue 25, item 5): a control plane of its own with six kwok nodes in three
zones (cluster.ZONED_NODES), where `up` applies the prod stack and the real kube-scheduler places its pods by the
rendered topologySpreadConstraints. kwok stands in for the kubelet: no container runs, so where Fluss puts a bucket's
replicas (its racks) cannot be read here; this proves the pods' placement only."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cluster import ZONE_LABEL, ZONED_NODES, TestCluster, start_cluster
from manifest_helpers import CREDENTIALS
from stacks import Stack

from sagaz_lakehouse import stack as s


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
    finally:
        made.driver.down(purge=True)


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
