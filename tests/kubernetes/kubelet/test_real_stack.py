"""The Kubernetes target end to end on the real single-node cluster (tests/kubernetes/node.py): real containers of the
stand-in images, real probes, port-forwards served by the real kubelet, data on provisioned volumes.

The stack runs the prod profile as production runs it (issue 25): credentials in a 0600 secrets file, every image
pinned by digest, the namespace under the `restricted` Pod Security Standard (the API server enforces it), every
container on a read-only root file system (freshness, tiering poll and KV snapshots set back to dev's, so the waits
stay short). `sagaz-lakehouse up --target kubernetes` → every rollout Ready → every client that may not in refused
through the port-forwards (pyfluss without a login or with a wrong password, anonymous Trino, Trino over plain
HTTP, a jar upload to Flink, the SQL Gateway, which prod does not run) → a pod without the stack's labels refused by
the NetworkPolicies (kube-router enforces them on the node) at the catalog, Fluss and MinIO, the same pod labelled as
a tablet server let through → `create-tables` and `doctor` green, logged
in → 1,000 events exact in Iceberg and Trino → tiering goes on after the Fluss pods are replaced → `down` → `up`
(the data is still there: it lives on the claims) → a crash-looping pod makes `up` exit 1 with the container's last
log lines → `down --purge`.

One stack serves the module; the tests run in file order. Host ports are the suite's own block (support.suite_ports;
other stacks on this machine use the defaults or blocks of their own), except Fluss's: the defaults, or where a stack
of the user's holds them the defaults' pattern in the block (issue 22's collision showed only there). Every CLI
failure fails the test with the CLI's output, which carries the blocked pods' states, events and log tails.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import ZONE_LABEL
from manifest_helpers import SMALL_MEMORY
from node import RealCluster, baked_images, pinned_by_digest
from saga_data import assert_refused, refusals, saga_events
from support import SuiteStack, fluss_ports_as_by_default, fluss_records, free_port, suite_ports

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import clients, config, lake_maintenance, tables, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import build_stack
from sagaz_lakehouse.targets.kubernetes.driver import KubernetesDriver
from sagaz_lakehouse.targets.kubernetes.layout import selector

EVENTS = 1000
NAMESPACE = "sagaz-real"
CLI = [sys.executable, "-m", "sagaz_lakehouse"]
PORTS, FLUSS_LAYOUT = fluss_ports_as_by_default(suite_ports("kubernetes"))
MEMORY = SMALL_MEMORY
UP_TIMEOUT = 900  # first start on 2 shared cores: 8 JVMs
BAKED_BASES = ("flink", "fluss", "rest_catalog")  # images.<name> the jar-carrying images start FROM (prod)


class KubeStack(SuiteStack):
    """The stack on the real cluster, driven through the CLI (running.RunningStack) with the cluster's kubeconfig;
    how long each command took."""

    command_timeout = UP_TIMEOUT + 120

    def __init__(self, cluster: RealCluster, workdir: Path) -> None:
        super().__init__(workdir, hidden=("SAGAZ_LAKEHOUSE_",))
        self.cluster = cluster
        self.timings: dict[str, float] = {}

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "KUBECONFIG": str(self.cluster.kubeconfig)}

    def must(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return super().must(*args, timeout=timeout)
        finally:
            self.timings[" ".join(args)] = round(time.monotonic() - started, 1)

    def diagnosis(self, *args: str) -> str:
        return (f"--- pods ---\n{self.pods_text()}\n{self.component_logs(args[0])}\n--- cluster logs ---\n"
                f"{self.cluster.log_tail(15)}")

    def component_logs(self, command: str, lines: int = 60) -> str:
        """The tiering path's own logs when a data-path command failed (the rollout's failures carry theirs)."""
        if command not in ("create-tables", "doctor"):
            return ""
        out = []
        for name in ("fluss-coordinator", "fluss-tablet", "flink-jobmanager", "flink-taskmanager"):
            result = self.cli("logs", name, "--lines", str(lines), timeout=120)
            out.append(f"--- logs {name} ---\n{result.stdout[-6000:]}{result.stderr[-2000:]}")
        return "\n".join(out)

    def driver(self) -> KubernetesDriver:
        return KubernetesDriver(self.settings, self.workdir, log=lambda _message: None)

    def pods(self) -> list[dict[str, Any]]:
        return self.cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]

    def pods_text(self) -> str:
        lines = []
        for pod in self.pods():
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            lines.append(f"{pod['metadata']['name']}: {pod.get('status', {}).get('phase')} " + ", ".join(
                f"{c['name']} ready={c.get('ready')} restarts={c.get('restartCount')} "
                f"state={list((c.get('state') or {}).keys())}" for c in statuses))
        return "\n".join(lines)


SECRETS = {"s3_access_key": "kube-e2e", "s3_secret_key": secrets.token_hex(16),
           "fluss_password": secrets.token_hex(16), "trino_password": secrets.token_hex(16)}


def stack_settings(cluster: RealCluster) -> dict[str, str]:
    assert cluster.node.artifact_server is not None and cluster.node.api_relay is not None
    values = {"kubernetes.api_server_port": str(cluster.node.api_relay.port),  # the rack lookup's egress
              "target": "kubernetes", "kubernetes.kubeconfig": str(cluster.kubeconfig),
              "kubernetes.namespace": NAMESPACE, "local.maven_repository": cluster.node.artifact_server.url,
              "profile": "prod", "secrets.file": "secrets.yaml",
              "lake.freshness": "10s", "lake.tiering_poll": "2s", "lake.kv_snapshot_interval": "5s",
              # prod's 500m per container would schedule 4 of the 13 pods on the test node's 2 cores
              "kubernetes.cpu_request": "100m",
              # one node: prod's spread (on) would leave the second tablet server and two of three ZooKeeper
              # servers Pending (by design, docs/kubernetes.md "Topology"); preferred runs them all on this node,
              # with prod's ensemble of 3 and the tablet servers' racks read from the node's zone (NODE_ZONE). The
              # kwok suite proves the spread over nodes and zones.
              "kubernetes.spread": "preferred"}
    values |= {f"ports.{k}": str(v) for k, v in PORTS.items()}
    values |= {f"memory.{k}": v for k, v in MEMORY.items()}
    # every image by digest, as production pins it (the node imported them; the CRI finds them by digest), but the
    # bases of the images carrying the jars: those run as BAKED (a tag derived from base and jars, not a digest)
    images = lakehouse.load_settings(None, {}, environ={}).images
    values |= {f"images.{name}": pinned_by_digest(getattr(images, name)) for name in images.__dataclass_fields__
               if name not in BAKED_BASES}
    # Air-gapped: the pods run the images carrying the locked jars (built FROM the stand-ins by `build-images`,
    # imported by the harness), no fetch-jars init container. The node's artifact server stays up as the jar
    # repository, so that a download would succeed and show in its requests (asserted empty), and nothing leaves
    # the node anyway: node.py's SAGAZ-KUBE-FWD chain drops every packet from the pods' bridge to anywhere but the
    # bridge, and CoreDNS resolves only cluster names.
    values["kubernetes.jars"] = "baked"
    return values | {"maintenance.schedule": "20s"}  # lake maintenance every 20 s instead of dev's 10 min


NODE_ZONE = "sagaz-zone-1"  # the zone label the node carries, as a cloud provider's nodes do


def label_zone(cluster: RealCluster, zone: str) -> str:
    """Labels the node topology.kubernetes.io/zone=<zone> (a read-modify-write: the kubelet updates the node too);
    its name."""
    for _ in range(10):
        (node,) = cluster.request("GET", "/api/v1/nodes")["items"]
        node["metadata"].setdefault("labels", {})[ZONE_LABEL] = zone
        try:
            cluster.request("PUT", f"/api/v1/nodes/{node['metadata']['name']}", node)
            return str(node["metadata"]["name"])
        except urllib.error.HTTPError as error:
            if error.code != 409:  # a conflict: the kubelet wrote in between
                raise
    raise AssertionError("the node's zone label kept conflicting with the kubelet's updates")


@pytest.fixture(scope="module")
def kube_stack(real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStack]:
    label_zone(real_cluster, NODE_ZONE)
    workdir = tmp_path_factory.mktemp("kube-stack")
    (workdir / "secrets.yaml").touch(mode=0o600)
    (workdir / "secrets.yaml").write_text(yaml.safe_dump(SECRETS))
    values = stack_settings(real_cluster)
    made = KubeStack(real_cluster, workdir)
    KUBE_WORKDIR[:] = [workdir]
    made.must("init", *[a for k, v in values.items() for a in ("--set", f"{k}={v}")])
    yield made
    made.down(timeout=600)


def test_up_rolls_out_real_containers(kube_stack):
    print(f"Fluss listeners: {FLUSS_LAYOUT}")
    result = kube_stack.must("up", "--timeout", str(UP_TIMEOUT))
    assert "all 10 workloads ready" in result.stderr or "workloads ready" in result.stderr, result.stderr
    # Ready pods are not enough: the coordinator itself lists every tablet server (through a port-forward).
    wanted = kube_stack.settings.replicas.tablet_servers
    assert f"{wanted}/{wanted} tablet server(s) registered with the coordinator" in result.stderr, result.stderr
    pods = kube_stack.pods()
    assert pods
    for pod in pods:
        status = pod["status"]
        assert status["phase"] in ("Running", "Succeeded"), kube_stack.pods_text()
        for container in [*(status.get("initContainerStatuses") or []), *status["containerStatuses"]]:
            assert container["containerID"].startswith("containerd://"), container  # a real container ran
        if status["phase"] == "Running":
            assert all(c["ready"] for c in status["containerStatuses"]), kube_stack.pods_text()
    rows = {r["component"]: r["state"] for r in json.loads(kube_stack.must("status", "--json").stdout)}
    assert set(rows.values()) <= {"healthy", "completed"}, rows
    assert "flink-sql-gateway" not in rows  # prod runs no unauthenticated SQL Gateway
    # The API server admitted these pods under the restricted Pod Security Standard, and every container ran with a
    # read-only root file system, from an image pinned by digest.
    namespace = kube_stack.cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    baked = set(baked_images())
    ran_baked = set()
    for pod in pods:
        for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, pod["metadata"]["name"]
            assert "@sha256:" in container["image"] or container["image"] in baked, container["image"]
            assert "ephemeral-storage" in container["resources"]["limits"], pod["metadata"]["name"]
            assert container["name"] != "fetch-jars", pod["metadata"]["name"]
            if container["image"] in baked:
                ran_baked.add(container["image"])
    assert ran_baked == baked  # Flink, Fluss and the catalog ran the images carrying their jars
    claims = kube_stack.cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims")["items"]
    assert {c["status"]["phase"] for c in claims} == {"Bound"}
    assert kube_stack.cluster.node.artifact_server is not None
    assert kube_stack.cluster.node.artifact_server.requests == []  # no jar was downloaded: they came with the images


@contextlib.contextmanager
def forward_to(kube_stack: KubeStack, pod: str, port: int) -> Iterator[int]:
    """A port-forward to one pod's port through the API server (the driver's own forwarder); the local port."""
    from sagaz_lakehouse.targets.kubernetes.portforward import Forward, PortForwards, pod_opener

    local = free_port()
    opener = pod_opener(kube_stack.driver().cluster().streaming_core(), NAMESPACE)
    with PortForwards([Forward(pod, local, port, functools.partial(str, pod))], opener):
        yield local


def zookeeper_mode(kube_stack: KubeStack, pod: str, port: int) -> str:
    """What one ZooKeeper server says it is (`srvr`, the readiness check's word): leader, follower or standalone."""
    with forward_to(kube_stack, pod, port) as local, socket.create_connection(("127.0.0.1", local), 10) as conn:
        conn.sendall(b"srvr")
        answer = b"".join(iter(lambda: conn.recv(4096), b"")).decode()
    found = re.search(r"^Mode: (\w+)", answer, re.M)
    assert found, f"{pod} answered srvr with: {answer!r}"
    return found.group(1)


def test_zookeeper_is_an_ensemble_and_fluss_registered_each_tablet_server_with_its_nodes_zone(kube_stack):
    """Prod's topology in real pods, as far as one node can hold it (kubernetes.spread: preferred): three ZooKeeper
    servers that elected one leader, and every tablet server in the rack its init container read from the node's
    zone label, as Fluss itself registered it in ZooKeeper (/fluss/tabletservers/ids/<id>, field "rack")."""
    client_port = kube_stack.driver().stack.named(s.ZOOKEEPER)[0][0].port("client").container
    ensemble = sorted(p["metadata"]["name"] for p in kube_stack.pods()
                      if p["metadata"]["name"].startswith(f"{s.ZOOKEEPER}-"))
    assert ensemble == [f"{s.ZOOKEEPER}-{i}" for i in range(3)], kube_stack.pods_text()
    modes = {pod: zookeeper_mode(kube_stack, pod, client_port) for pod in ensemble}
    assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
    core = kube_stack.driver().cluster().core()
    tablets = sorted(p["metadata"]["name"] for p in kube_stack.pods()
                     if p["metadata"]["name"].startswith(f"{s.TABLET}-"))
    assert len(tablets) == kube_stack.settings.replicas.tablet_servers, kube_stack.pods_text()
    for pod in tablets:  # what the init container found (it prints the rack and where it came from)
        said = core.read_namespaced_pod_log(pod, NAMESPACE, container="node-zone")
        assert f"rack {NODE_ZONE} (zone of node " in said, f"{pod}: {said}"
    with forward_to(kube_stack, ensemble[0], client_port) as local, fluss_records(f"127.0.0.1:{local}") as read:
        registered = {i: read(f"/tabletservers/ids/{i}") for i in read("/tabletservers/ids/")}
    print(f"ZooKeeper modes: {modes}; Fluss registrations: {registered}")
    assert len(registered) == len(tablets), registered
    assert {r.get("rack") for r in registered.values()} == {NODE_ZONE}, registered


def test_every_client_without_the_login_is_refused_with_the_servers_own_error(kube_stack):
    with kube_stack.driver().client_endpoints() as endpoints:
        assert_refused(refusals(kube_stack.settings, endpoints, kube_stack.credentials), kube_stack.database)


# ---------------------------------------------------------------------------------------------- network policies

PROBE = """
import json, socket, sys
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(json.dumps([host, port, "connected"]))
    except OSError as exc:
        print(json.dumps([host, port, type(exc).__name__ + ": " + str(exc)]))
"""


def probe_pod(name: str, labels: dict[str, str], image: str) -> dict[str, Any]:
    """A pod the restricted Pod Security Standard admits, idle until the test runs PROBE in it (kubectl exec)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 0,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                                     "command": ["python3", "-c", "import time; time.sleep(900)"],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "readOnlyRootFilesystem": True,
                                                         "capabilities": {"drop": ["ALL"]}},
                                     "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                                   "limits": {"cpu": "500m", "memory": "64Mi",
                                                              "ephemeral-storage": "16Mi"}}}]}}


def run_probe(kube_stack: KubeStack, name: str, labels: dict[str, str], targets: list[tuple[str, int]]) -> list:
    """Starts the probe pod, waits until kube-router has its firewall chain (rules for a pod exist only once it has
    an address), connects from it to every target and returns [host, port, outcome] per target."""
    from support import tool

    cluster = kube_stack.cluster
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
    cluster.request("POST", pods, probe_pod(name, labels, kube_stack.settings.images.python))
    try:
        deadline = time.monotonic() + 120
        marker = f"rule to jump traffic from POD name:{name} namespace: {NAMESPACE} "
        while True:
            pod = cluster.request("GET", f"{pods}/{name}")
            ready = pod["status"].get("phase") == "Running" and pod["status"].get("podIP")
            if ready and marker in subprocess.run(["iptables-save", "-t", "filter"], capture_output=True,
                                                  text=True, check=False).stdout:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"probe {name}: not running with kube-router's chain within 120 s: {pod['status']}\n"
                            f"{cluster.log_tail(20)}", pytrace=False)
            time.sleep(1)
        kubectl = tool(f"kubectl-{versions.KUBE_TEST_CLUSTER['kubernetes']}")
        result = subprocess.run([str(kubectl), "--kubeconfig", str(cluster.kubeconfig), "-n", NAMESPACE, "exec",
                                 name, "--", "python3", "-c", PROBE, json.dumps(targets)],
                                capture_output=True, text=True, check=False, timeout=120)
        assert result.returncode == 0, f"kubectl exec {name}: {result.stderr[-2000:]}"
        print(f"--- probe {name} {labels} ---\n{result.stdout}")
        return [json.loads(line) for line in result.stdout.splitlines()]
    finally:
        cluster.request("DELETE", f"{pods}/{name}?gracePeriodSeconds=0")
        deadline = time.monotonic() + 60
        while any(p["metadata"]["name"] == name for p in kube_stack.pods()) and time.monotonic() < deadline:
            time.sleep(1)


def test_a_pod_without_the_stacks_labels_is_refused_by_the_network_policies(kube_stack):
    """kube-router enforces the prod render's NetworkPolicies on the node: a pod in the stack's namespace without
    its labels (the default deny selects the stack's pods, whose ingress admits only the components that reach
    them) is refused at the catalog, the Fluss coordinator and tablet server, and MinIO; the same pod labelled as a
    tablet server, which reaches all four, connects, so the refusals are the policies, not a broken network."""
    settings = kube_stack.settings
    stack = build_stack(settings, s.View.INTERNAL)
    tablet = stack.get(s.TABLET)
    targets = []
    for name, port in tablet.reaches:
        if name in (s.REST_CATALOG, s.COORDINATOR, s.TABLET, s.MINIO):
            host = s.member_address(name, tablet.instance_names()[0]) if name == s.TABLET else name
            targets.append((host, stack.get(name).port(port).container))
    assert {name for name, _ in targets} >= {s.REST_CATALOG, s.COORDINATOR, s.MINIO}, targets
    outsider = run_probe(kube_stack, "netpol-probe-outsider", {"app": "netpol-probe"}, targets)
    output = json.dumps(outsider, indent=1)
    assert len(outsider) == len(targets), output
    for *_, outcome in outsider:  # REJECT: connection refused (a DNS or other failure is no proof)
        assert outcome.startswith(("ConnectionRefusedError", "TimeoutError")), output
    member = run_probe(kube_stack, "netpol-probe-tablet", selector(settings, tablet), targets)
    assert [outcome for _, _, outcome in member] == ["connected"] * len(targets), json.dumps(member, indent=1)


def test_create_tables_and_doctor_pass_through_port_forwards(kube_stack):
    kube_stack.must("create-tables")
    report = json.loads(kube_stack.must("doctor", "--json").stdout)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert report["ok"] is True, report
    assert statuses.pop("flink sql gateway") == "skip"  # off in prod
    assert set(statuses.values()) == {"pass"}, report
    assert statuses["zookeeper"] == "pass"  # through its own port-forward
    assert report["metrics"]["tiering_latency_s"] > 0


# ---------------------------------------------------------------------------------------------- data


async def write_events(settings: config.Settings, endpoints: Any, rows: list[dict]) -> None:
    import fluss

    async with clients.fluss_connection(endpoints) as connection:
        table = await connection.get_table(fluss.TablePath(settings.lake.database, tables.TABLE))
        writer = table.new_upsert().create_writer()
        handles = [writer.upsert(row) for row in rows]
        await writer.flush()
        for handle in handles:
            await handle.wait()


def iceberg_rows(settings: config.Settings, endpoints: Any, batch: str) -> list[dict]:
    from pyiceberg.expressions import EqualTo

    credentials = lakehouse.resolve_credentials(settings, environ={}, base_dir=KUBE_WORKDIR[0])
    catalog = clients.iceberg_catalog(settings, credentials, endpoints)
    table = catalog.load_table(f"{settings.lake.database}.{tables.TABLE}")
    rows, _ = clients.iceberg_read(table, EqualTo("saga_name", batch))
    return rows.to_pylist()


def trino_count(settings: config.Settings, endpoints: Any, batch: str) -> int:
    sql = f"SELECT count(*) FROM {settings.lake.database}.{tables.TABLE} WHERE saga_name = ?"  # noqa: S608
    return int(clients.trino_query(endpoints, sql, (batch,))[0][0])


def wait_for_iceberg(settings: config.Settings, endpoints: Any, batch: str, timeout: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = iceberg_rows(settings, endpoints, batch)
        if len(rows) >= EVENTS:
            return rows
        time.sleep(2)
    pytest.fail(f"only {len(rows)} of {EVENTS} events reached Iceberg within {timeout}s", pytrace=False)


BATCH = f"kube-{uuid.uuid4().hex[:8]}"
KUBE_WORKDIR: list[Path] = []  # where the stack's secrets file is (its settings name it relative to there)


def test_thousand_events_tier_to_iceberg_and_trino(kube_stack):
    settings, sent = kube_stack.settings, saga_events(BATCH, EVENTS)
    with kube_stack.driver().client_endpoints() as endpoints:
        asyncio.run(write_events(settings, endpoints, sent))
        rows = wait_for_iceberg(settings, endpoints, BATCH)
        assert len(rows) == EVENTS
        by_id = {r["event_id"]: r for r in rows}
        for event in sent:
            assert {k: by_id[event["event_id"]][k] for k in tables.arrow_schema().names} == event
        assert trino_count(settings, endpoints, BATCH) == EVENTS


def test_the_maintenance_pod_compacts_on_its_schedule_and_every_row_stays(kube_stack):
    """The lake-maintenance Deployment (the python image running maintenance.py): a run after the 1,000 events,
    its log showing the file count falling, and every row still there (seen through the port-forwards)."""
    settings = kube_stack.settings
    written_at = time.time()
    with kube_stack.driver().client_endpoints() as endpoints:
        deadline = time.monotonic() + 180
        while (lake_maintenance.observe(settings, endpoints)[0].maintained_at or 0) <= written_at:
            if time.monotonic() > deadline:
                pytest.fail("no maintenance run within 180 s of the writes\n"
                            + kube_stack.cli("logs", "lake-maintenance").stdout[-3000:], pytrace=False)
            time.sleep(3)
        assert trino_count(settings, endpoints, BATCH) == EVENTS
        _, findings = lake_maintenance.observe(settings, endpoints)
    assert not findings, findings
    log = kube_stack.must("logs", "lake-maintenance", "--lines", "400").stdout
    runs = [(int(a), int(b)) for a, b in re.findall(r"data files (\d+) → (\d+)", log)]
    assert any(before > after for before, after in runs), log[-3000:]
    assert "maintenance failed" not in log, log[-3000:]


def test_tiering_goes_on_after_the_fluss_pods_are_replaced(kube_stack):
    """Replaced pods get new IPs; the running tiering job finds the servers again by their advertised names."""
    for pod in ("fluss-coordinator-0", "fluss-tablet-0"):
        kube_stack.cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}")
    deadline = time.monotonic() + 300
    while True:
        rows = {r["component"]: r["state"] for r in kube_stack.driver().status()}
        fresh = {p["metadata"]["name"] for p in kube_stack.pods() if not p["metadata"].get("deletionTimestamp")}
        if {"fluss-coordinator-0", "fluss-tablet-0"} <= fresh and set(rows.values()) <= {"healthy", "completed"}:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the Fluss pods did not come back: {rows}\n{kube_stack.pods_text()}", pytrace=False)
        time.sleep(2)
    report = json.loads(kube_stack.must("doctor", "--json").stdout)
    assert report["ok"] is True, report


def test_down_then_up_finds_the_data_on_the_claims(kube_stack):
    claims = {c["metadata"]["uid"] for c in
              kube_stack.cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims")["items"]}
    kube_stack.must("down")
    assert kube_stack.pods() == [] or all(p["metadata"].get("deletionTimestamp") for p in kube_stack.pods())
    kept = {c["metadata"]["uid"] for c in
            kube_stack.cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims")["items"]}
    assert kept == claims
    kube_stack.must("up", "--timeout", str(UP_TIMEOUT))
    settings = kube_stack.settings
    with kube_stack.driver().client_endpoints() as endpoints:
        assert len(iceberg_rows(settings, endpoints, BATCH)) == EVENTS
        assert trino_count(settings, endpoints, BATCH) == EVENTS
    report = json.loads(kube_stack.must("doctor", "--json").stdout)
    assert report["ok"] is True, report
    assert kube_stack.cluster.node.artifact_server is not None
    assert kube_stack.cluster.node.artifact_server.requests == []  # every restart so far: nothing downloaded


def test_a_crash_looping_pod_fails_up_with_its_last_log_lines(kube_stack):
    """Trino with the Flink image: its entrypoint prints its usage and exits, again and again."""
    result = kube_stack.cli("up", "--timeout", "600", "--set", f"images.trino={versions.FLINK.image}", timeout=700)
    assert result.returncode == 1, result.stderr[-4000:]
    assert "crash-looping" in result.stderr and "CrashLoopBackOff" in result.stderr, result.stderr[-4000:]
    assert "last log lines of trino" in result.stderr, result.stderr[-4000:]
    # prod starts Trino's run-trino with the launcher's --config: the Flink image has no such program
    assert "/usr/lib/trino/bin/run-trino" in result.stderr, result.stderr[-4000:]


def test_down_purge_removes_the_namespace_and_the_volumes(kube_stack):
    kube_stack.must("down", "--purge", timeout=600)
    names = {n["metadata"]["name"] for n in kube_stack.cluster.request("GET", "/api/v1/namespaces")["items"]}
    assert NAMESPACE not in names
    deadline = time.monotonic() + 60
    while kube_stack.cluster.request("GET", "/api/v1/persistentvolumes")["items"] and time.monotonic() < deadline:
        time.sleep(1)
    assert kube_stack.cluster.request("GET", "/api/v1/persistentvolumes")["items"] == []
