"""The prod topology on a real scheduler (issue 25, item 5): a control plane of its own with six kwok nodes in three
zones (cluster.ZONED_NODES), where `up` applies the prod stack and the real kube-scheduler places its pods by the
rendered topologySpreadConstraints, and the rack lookup's script and rights are checked against the real API server
(run in this process, as the init container would run it).

kwok runs no container, so where Fluss puts a bucket's replicas is proved on real Fluss servers: the last two tests
start ZooKeeper, MinIO, the catalog, the coordinator and six tablet servers as native processes (the local target's
driver, the suite's own port block), each tablet server with the rack the lookup gave its scheduled pod, and read the
servers' racks and a table's assignment from Fluss's records in ZooKeeper. Those two start real servers: run this
module under the machine's lock (the engines lane, like the module's kwok control plane)."""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import ZONE_LABEL, ZONED_NODES, TestCluster, start_cluster
from manifest_helpers import CREDENTIALS
from stacks import Stack
from support import fluss_records, suite_ports

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import addresses, security, tables
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.stack import instance_index
from sagaz_lakehouse.targets.kubernetes import layout as k8s
from sagaz_lakehouse.targets.local import layout as local_layout
from sagaz_lakehouse.targets.local.driver import LocalDriver


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


def rack_lookup(cluster: TestCluster, made: Stack, folder: Path) -> Callable[[str], str]:
    """The rack init container's script, run here (no container runs under kwok) against this API server with a
    token of the tablet servers' ServiceAccount, as the pod on ``node`` would run it: returns the rack it wrote."""
    account = f"/api/v1/namespaces/{made.namespace}/serviceaccounts/{s.TABLET}/token"
    token = cluster.request("POST", account, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                              "spec": {"expirationSeconds": 600}})["status"]["token"]
    api_dir, rack_dir = folder / "api", folder / "rack"
    api_dir.mkdir()
    rack_dir.mkdir()
    (api_dir / "token").write_text(token)
    (api_dir / "ca.crt").write_bytes(cluster._ca)
    script = k8s.RACK_SCRIPT.replace(k8s.API_TOKEN_DIR, str(api_dir)).replace(k8s.RACK_DIR, str(rack_dir))
    host, port = cluster.server.removeprefix("https://").rsplit(":", 1)

    def lookup(node: str) -> str:
        (rack_dir / k8s.RACK_FILE).unlink(missing_ok=True)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                env={"NODE_NAME": node, "KUBERNETES_SERVICE_HOST": host,
                                     "KUBERNETES_SERVICE_PORT": port})
        assert result.returncode == 0, result.stderr
        return (rack_dir / k8s.RACK_FILE).read_text()

    return lookup


def check_rack_lookup(cluster: TestCluster, made: Stack, tmp_path: Path) -> None:
    """The rack lookup reads its node's zone, falls back to the node's name where the node has no zone label, and the
    token can do nothing else (not even list nodes)."""
    lookup = rack_lookup(cluster, made, tmp_path)
    bare = "kwok-bare-node"  # a node without a zone label (kept unschedulable: kwok does not run it)
    cluster.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": bare, "labels": {"kubernetes.io/hostname": bare}}, "spec": {"unschedulable": True}})
    try:
        for node, rack in (("kwok-b-1", "zone-b"), (bare, bare)):
            assert lookup(node) == rack
    finally:
        cluster.request("DELETE", f"/api/v1/nodes/{bare}")
    token = (tmp_path / "api" / "token").read_text()
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
                scheduled = conditions.get("PodScheduled", {})
                # Its claim may not be bound yet (the provisioner is slower under load): the scheduler says that
                # first, and the spread constraint once the claim is bound (seen in CI).
                if scheduled.get("reason") == "Unschedulable" and "unbound" not in scheduled.get("message", ""):
                    break
            assert time.monotonic() < deadline, f"expected 6 placed and 1 unschedulable tablet server: {nodes}"
            time.sleep(0.5)
        placed = [n for n in nodes.values() if n]
        assert len(placed) == len(set(placed)) == len(ZONED_NODES)
        assert "topology spread constraints" in conditions["PodScheduled"]["message"], conditions["PodScheduled"]
    finally:
        made.driver.down(purge=True)


# -- where Fluss puts a bucket's replicas: real servers with the racks the scheduler's placement gives ----------------
#
# kwok runs no container, so the Fluss servers here are the local target's native processes (ZooKeeper, MinIO, the
# catalog, the coordinator and the tablet servers, started by its own driver), each tablet server given the rack
# the rack lookup returned for the node its pod was scheduled on. What Fluss did is read from its own records in
# ZooKeeper (support.fluss_records: the servers' registrations with their racks, the table's replica assignment).

TABLET_SERVERS = 6  # two per zone: with only as many servers as replicas every bucket is on all of them anyway
# 30 buckets: Fluss's rack-unaware assignment puts bucket b on server positions f, f+k, f+k' (mod 6) with every first
# position f and every shift in 6 x 5 buckets (TableAssignmentUtils), so two servers of one zone always share some
# bucket: the negative control below cannot pass by luck.
BUCKETS = 30
UNAWARE_DATABASE = "no_racks"


@dataclasses.dataclass
class FlussOnRacks:
    driver: LocalDriver
    racks: dict[str, str]  # instance -> the rack its server.yaml gets (tablet-server.rack); changed by the tests
    zones: dict[int, str]  # tablet server id -> the zone of the node its pod was scheduled on
    log: list[str]


@pytest.fixture(scope="module")
def scheduled_racks(zoned_cluster, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """The prod stack with six tablet servers on the six kwok nodes: tablet pod -> (its node, the rack the rack lookup
    gives it there)."""
    folder = tmp_path_factory.mktemp("scheduled-racks")
    made = prod_stack(zoned_cluster, folder, **{"replicas.tablet_servers": str(TABLET_SERVERS)})
    try:
        made.up()
        nodes = placement(made, s.TABLET)
        assert len(nodes) == TABLET_SERVERS and len(set(nodes.values())) == TABLET_SERVERS, nodes
        lookup = rack_lookup(zoned_cluster, made, folder)
        return {pod: (node, lookup(node)) for pod, node in nodes.items()}
    finally:
        made.driver.down(purge=True)


@pytest.fixture(scope="module")
def fluss_on_racks(scheduled_racks, tmp_path_factory) -> Iterator[FlussOnRacks]:
    """ZooKeeper, MinIO, the catalog, the Fluss coordinator and six tablet servers, started by the local target's
    driver, each tablet server with the rack of its pod (the only change: the local target gives an instance no rack,
    one host being one failure domain, so the instances its layout builds get theirs here)."""
    workdir = tmp_path_factory.mktemp("fluss-racks")
    settings = lakehouse.load_settings(None, {
        "local.run_dir": str(workdir / "run"), "replicas.tablet_servers": str(TABLET_SERVERS),
        "durability.replication_factor": "3", "lake.buckets": str(BUCKETS),
        "memory.fluss_tablet": "1Gi",  # six of them on one host, holding one empty table
        **{f"ports.{name}": str(port) for name, port in suite_ports("topology").items()}}, environ={})
    racks = {pod: rack for pod, (_, rack) in scheduled_racks.items()}
    zones = {instance_index(pod): ZONED_NODES[node][ZONE_LABEL] for pod, (node, _) in scheduled_racks.items()}
    log: list[str] = []
    driver = LocalDriver(settings, workdir, progress=log.append)
    driver.stack = s.Stack(settings, s.View.EXTERNAL, needed_by(driver.stack, s.TABLET))
    unracked = local_layout.instance

    def racked(layout: local_layout.Layout, component: s.Component, name: str) -> s.Instance:
        return dataclasses.replace(unracked(layout, component, name), rack=racks.get(name, ""))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_layout, "instance", racked)  # what layout.files and layout.process_specs build on
        try:
            started = time.monotonic()
            driver.up(timeout=180)
            log.append(f"up took {time.monotonic() - started:.0f} s")
            yield FlussOnRacks(driver, racks, zones, log)
        except Exception:
            print("\n".join(log[-40:]))
            raise
        finally:
            driver.down(purge=True)


def needed_by(stack: s.Stack, name: str) -> tuple[s.Component, ...]:
    """The component ``name`` and everything it depends on, in the stack's order."""
    wanted, todo = set(), [name]
    while todo:
        component = stack.get(todo.pop())
        if component.name not in wanted:
            wanted.add(component.name)
            todo += [dependency for dependency, _ in component.depends_on]
    return tuple(c for c in stack.components if c.name in wanted)


def create_saga_events(fluss: FlussOnRacks, database: str) -> None:
    """create-tables' own code: saga_events with BUCKETS buckets and 3 replicas each."""
    settings = dataclasses.replace(fluss.driver.settings,
                                   lake=dataclasses.replace(fluss.driver.settings.lake, database=database))
    credentials = security.resolve_credentials(settings, s.View.EXTERNAL, base_dir=fluss.driver.base_dir)
    with fluss.driver.client_endpoints() as endpoints:
        tables.create_tables(settings, credentials, endpoints, log=fluss.log.append,
                             restart_coordinator=lambda: fluss.driver.restart(s.COORDINATOR, timeout=180))


def records_of(fluss: FlussOnRacks) -> contextlib.AbstractContextManager[Callable[[str], Any]]:
    """Fluss's records in the ZooKeeper of these servers (support.fluss_records)."""
    return fluss_records(f"{addresses.LOOPBACK}:{fluss.driver.settings.ports.zookeeper}")


def registered_racks(fluss: FlussOnRacks) -> dict[int, str | None]:
    """Each registered tablet server's rack (None: it has none)."""
    with records_of(fluss) as read:
        return {int(i): read(f"/tabletservers/ids/{i}").get("rack") for i in read("/tabletservers/ids/")}


def wait_registered(fluss: FlussOnRacks, racked: bool) -> None:
    """Until all tablet servers are registered, each with a rack or each without: the coordinator assigns replicas
    over the servers whose registrations it has seen (after a restart, the old registrations go first)."""
    deadline = time.monotonic() + 60
    while True:
        seen = registered_racks(fluss)
        if len(seen) == TABLET_SERVERS and all(bool(rack) == racked for rack in seen.values()):
            return
        assert time.monotonic() < deadline, f"tablet servers registered {seen}, expected {TABLET_SERVERS} " + (
            "with a rack" if racked else "without one")
        time.sleep(0.5)


def assignment(fluss: FlussOnRacks, database: str) -> dict[int, list[int]]:
    """saga_events' replica assignment in ``database``: bucket -> the ids of the servers holding its replicas."""
    with records_of(fluss) as read:
        table_id = read(f"/metadata/databases/{database}/tables/{tables.TABLE}")["table_id"]
        buckets = read(f"/tabletservers/tables/{table_id}")["buckets"]
    return {int(bucket): replicas for bucket, replicas in buckets.items()}


def sharing_a_zone(buckets: dict[int, list[int]], zones: dict[int, str]) -> dict[int, list[str]]:
    """The buckets with two replicas in one zone, and the zones of their replicas."""
    placed = {bucket: [zones[server] for server in replicas] for bucket, replicas in buckets.items()}
    return {bucket: racks for bucket, racks in placed.items() if len(set(racks)) < len(racks)}


def test_fluss_puts_each_bucket_s_replicas_in_three_zones_by_the_racks_of_the_scheduled_pods(fluss_on_racks):
    """Every tablet server registered with the rack of the node its pod was scheduled on (two per zone), and every
    bucket of saga_events has its three replicas on three servers in three zones, as Fluss recorded them."""
    fluss = fluss_on_racks
    assert sorted(Counter(fluss.zones.values()).values()) == [2, 2, 2], fluss.zones
    wait_registered(fluss, racked=True)
    create_saga_events(fluss, fluss.driver.settings.lake.database)
    servers, buckets = registered_racks(fluss), assignment(fluss, fluss.driver.settings.lake.database)
    print(f"\nracks (Fluss's registrations): {dict(sorted(servers.items()))}")
    print("\n".join(f"bucket {b}: servers {r} -> racks {[servers[i] for i in r]}" for b, r in sorted(buckets.items())))
    assert servers == fluss.zones  # each server's rack, as Fluss has it, is its pod's node's zone
    assert sorted(buckets) == list(range(BUCKETS))
    assert all(len(replicas) == len(set(replicas)) == 3 for replicas in buckets.values()), buckets
    assert not sharing_a_zone(buckets, servers), sharing_a_zone(buckets, servers)
    assert {server for replicas in buckets.values() for server in replicas} == set(servers)


def test_without_racks_fluss_places_replicas_without_regard_to_zones(fluss_on_racks):
    """The negative control: the same servers restarted without racks (`up --restart-changed`, as a user applies a
    changed configuration) get a table whose buckets Fluss spreads over servers only: some bucket then has two
    replicas in one zone, which the check above refuses."""
    fluss = fluss_on_racks
    fluss.racks.clear()
    fluss.driver.restart_changed = True
    fluss.driver.up(timeout=180)
    wait_registered(fluss, racked=False)
    create_saga_events(fluss, UNAWARE_DATABASE)
    servers, buckets = registered_racks(fluss), assignment(fluss, UNAWARE_DATABASE)
    shared = sharing_a_zone(buckets, fluss.zones)
    print(f"\nwithout racks, buckets with two replicas in one zone: {len(shared)} of {len(buckets)}: {shared}")
    assert servers == dict.fromkeys(fluss.zones)
    assert all(len(replicas) == len(set(replicas)) == 3 for replicas in buckets.values()), buckets
    assert shared, buckets
