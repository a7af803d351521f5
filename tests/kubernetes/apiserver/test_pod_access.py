"""How the host reaches a stack on Kubernetes: `logs`, and the port-forwards that `create-tables` and `doctor` use
(KubernetesDriver.client_endpoints), through the real API server of tests/kubernetes/cluster.py.

The API server authenticates and authorizes each request and dials the kubelet API, which kwok serves. No container
runs here, so what is reached are named stand-ins: every pod port forwards to the cluster's PodStandIn (a TCP echo
server that greets with PodStandIn.GREETING) and every container's log is the file `cluster.container_log`."""

from __future__ import annotations

import socket
import urllib.parse

import pytest
from cluster import PodStandIn, cri_log_line
from stacks import Stack
from support import free_port_settings

from sagaz_lakehouse import config
from sagaz_lakehouse.errors import StackNotReachable, UsageError


@pytest.fixture
def forwarded(cluster, tmp_path):
    """A stack with two tablet servers whose host ports are free ones (a local stack may hold the defaults)."""
    made = Stack(cluster, tmp_path, **{"replicas.tablet_servers": "2"},
                 **{f"ports.{name}": str(port) for name, port in free_port_settings().items()})
    yield made
    made.driver.down(purge=True)


def round_trip(address: str, payload: bytes) -> bytes:
    """Connect to host:port (or a URL), read the greeting, send ``payload`` and read the echo."""
    parsed = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
    with socket.create_connection((parsed.hostname, parsed.port), timeout=20) as conn:
        greeting = read_exactly(conn, len(PodStandIn.GREETING))
        conn.sendall(payload)
        return greeting + read_exactly(conn, len(payload))


def read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := conn.recv(size - len(data))):
        data += chunk
    return data


def test_client_endpoints_reach_every_pod_through_the_api_server(cluster, forwarded):
    forwarded.up()
    settings = forwarded.driver.settings
    before = cluster.pod_stand_in.connections
    with forwarded.driver.client_endpoints() as endpoints:
        tablets = [f"127.0.0.1:{settings.ports.fluss_tablet + i}" for i in range(2)]
        targets = {"coordinator": endpoints.fluss_bootstrap, "tablet 0": tablets[0], "tablet 1": tablets[1],
                   "minio": endpoints.s3, "rest catalog": endpoints.rest_catalog, "flink": endpoints.flink_rest,
                   "trino": endpoints.trino, "sql gateway": endpoints.flink_sql_gateway}
        for label, address in targets.items():
            payload = f"hello {label}\n".encode() * 1000  # several frames each way
            assert round_trip(address, payload) == PodStandIn.GREETING + payload, label
    assert cluster.pod_stand_in.connections - before == len(targets)  # each went through kwok, none around it
    with pytest.raises(OSError):  # the listeners are gone with the block
        socket.create_connection(("127.0.0.1", settings.ports.fluss_coordinator), timeout=2).close()


def test_client_endpoints_without_a_deployed_stack_say_so(forwarded):
    with pytest.raises(StackNotReachable, match="fluss-coordinator"), forwarded.driver.client_endpoints():
        pass


def test_logs_come_through_the_api_server_with_credentials_masked(cluster, forwarded):
    forwarded.up()
    secret = config.DEV_CREDENTIALS.secret_key
    with cluster.container_log.open("a") as log:  # as if a container had printed its configuration
        log.write(cri_log_line(f"s3.secret-key: {secret}"))
    try:
        trino = forwarded.driver.logs("trino", 3)
        assert trino.splitlines() == ["stand-in log line 39", "stand-in log line 40", "s3.secret-key: ***"]
        tablets = forwarded.driver.logs("fluss-tablet", 1)  # two pods: one section each
        assert tablets.splitlines() == [f"==> pod fluss-tablet-{i} <==" if j == 0 else "s3.secret-key: ***"
                                        for i in range(2) for j in range(2)]
        assert secret not in trino + tablets
        # One instance: its pod only (StatefulSet pods carry the instance names).
        assert forwarded.driver.logs("fluss-tablet-1", 1).splitlines() == ["s3.secret-key: ***"]
        with pytest.raises(UsageError) as caught:
            forwarded.driver.logs("fluss-tablet-7", 1)
        assert "fluss-tablet-0" in caught.value.hint and "fluss-tablet-1" in caught.value.hint
    finally:
        lines = cluster.container_log.read_text().splitlines(keepends=True)
        cluster.container_log.write_text("".join(lines[:-1]))
