"""How `up --target compose` fails, on a real Docker Engine: a service whose health check fails makes `up` exit 1
naming it, its health and its last log lines; a host port that is taken makes `up` exit 2 naming the port and the
service before anything starts."""

from __future__ import annotations

import socket

from conftest import PORTS, Stack

from sagaz_lakehouse import versions


def test_a_taken_port_stops_up_before_anything_starts(engine, tmp_path):
    stack = Stack(tmp_path, "sagaz-ct-port")
    stack.purge()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # over connections of an earlier run's Trino
        holder.bind(("127.0.0.1", PORTS["trino"]))
        holder.listen()
        result = stack.cli("up", "--timeout", "120", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"port {PORTS['trino']} on 127.0.0.1 (published by service 'trino') is already in use" in output, output
    assert "--set ports.trino=" in output  # the hint names the setting that moves it
    assert stack.containers() == [] and stack.volumes() == [] and stack.networks() == [], stack.diagnosis()
    assert not (tmp_path / ".sagaz-lakehouse").exists(), "nothing is written before the ports are checked"


def test_a_failing_health_check_makes_up_exit_1_naming_the_service_and_its_log(engine, tmp_path):
    """images.zookeeper set to an image that is not ZooKeeper (the Iceberg REST fixture): its process starts and
    logs, but the srvr health check never answers, so after ZooKeeper's start period the service is unhealthy."""
    stack = Stack(tmp_path, "sagaz-ct-unhealthy", {"images.zookeeper": versions.ICEBERG.image})
    stack.purge()
    try:
        result = stack.cli("up", "--timeout", "400", timeout=900)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output + stack.diagnosis()
        error = output[output.index("error: "):]
        assert error.startswith("error: zookeeper did not become healthy (state running, health unhealthy"), error
        assert "last health check: exit 1" in error
        assert "--- last lines of the zookeeper log ---" in error
        assert "zookeeper-1  |" in error and "RESTCatalogServer" in error  # its own log lines, as it wrote them
        assert "hint: see `sagaz-lakehouse logs zookeeper`" in error
        assert "fluss-coordinator (created)" in error  # waiting on it, listed, not blamed
    finally:
        stack.purge()
