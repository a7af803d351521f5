"""The command line: exit codes, clear errors, nothing written on bad input, secrets kept out of output."""

from __future__ import annotations

import socket
import time

import pytest
from typer.testing import CliRunner

from sagaz_lakehouse import tables
from sagaz_lakehouse.cli import app
from sagaz_lakehouse.config import DEV_CREDENTIALS

pytestmark = pytest.mark.unit
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env or {}, catch_exceptions=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_lists_commands_and_no_secret(monkeypatch):
    monkeypatch.setenv("SAGAZ_LAKEHOUSE_S3_SECRET_KEY", "do-not-print-this-secret")
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("up", "down", "status", "render", "create-tables", "doctor", "init", "logs"):
        assert command in result.output
    for command in ("up", "render", "doctor", "create-tables"):
        sub = invoke(command, "--help")
        assert sub.exit_code == 0
        assert "do-not-print-this-secret" not in sub.output
        assert DEV_CREDENTIALS.secret_key not in sub.output


def test_init_writes_once_then_refuses(tmp_path):
    path = tmp_path / "sagaz-lakehouse.yaml"
    assert invoke("init", "--path", str(path)).exit_code == 0
    before = path.read_text()
    again = invoke("init", "--path", str(path))
    assert again.exit_code == 2
    assert "--force" in again.output
    assert path.read_text() == before


def test_unknown_target_is_usage_error_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = invoke("render", "--target", "swarm", "--out", str(out))
    assert result.exit_code == 2
    assert "target" in result.output and "compose" in result.output
    assert not out.exists()


def test_bad_set_flag_names_the_flag(tmp_path):
    result = invoke("render", "--set", "replicas.tablet_servers=0", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "replicas.tablet_servers" in result.output
    result = invoke("render", "--set", "replicas.tablet_server=2", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "did you mean replicas.tablet_servers" in result.output
    assert not (tmp_path / "o").exists()


def test_prod_without_secrets_refuses_to_render(tmp_path):
    result = invoke("render", "--target", "compose", "--profile", "prod", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "SAGAZ_LAKEHOUSE_S3_ACCESS_KEY" in result.output
    assert not (tmp_path / "o").exists()


def test_create_tables_dry_run_prints_ddl():
    result = invoke("create-tables", "--dry-run")
    assert result.exit_code == 0
    assert result.output == tables.flink_sql_ddl(__import__("sagaz_lakehouse.config").config.load(environ={})) + "\n"


@pytest.mark.parametrize("command", ["create-tables", "doctor"])
def test_commands_fail_fast_when_stack_is_down(command):
    ports = [f"--set=ports.{name}={free_port()}" for name in
             ("fluss_coordinator", "rest_catalog", "minio", "trino", "flink_rest", "zookeeper")]
    started = time.monotonic()
    result = invoke(command, *ports)
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    assert "is the stack up? run `sagaz-lakehouse up`" in result.output
