"""The compose driver's calls into the container engine, against a STAND-IN engine.

No Docker engine can run on this machine, so each test puts a small executable named `docker` (or `podman`) first
on PATH: a stand-in for a Docker engine that records its argv (one JSON list per line) and answers `info`,
`compose version`, `compose ps --format json`, `compose logs` and `compose up/down` with canned output. Behaviour
is steered through STANDIN_* environment variables. It checks what the driver asks of the engine, not the engine.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest
from support import free_port_settings
from typer.testing import CliRunner

from sagaz_lakehouse import artifacts
from sagaz_lakehouse.cli import app

runner = CliRunner()
ACCESS, SECRET = "standin-access-Q7", "standin-secret-never-print-9x"
FLUSS_PASSWORD, TRINO_PASSWORD = "standin-fluss-password-4k", "standin-trino-password-8m"

STANDIN = r'''#!{python}
"""Stand-in for a Docker engine CLI (tests only): records argv, prints canned answers."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + args) + "\n")
if args[:1] == ["info"]:
    if os.environ.get("STANDIN_DAEMON_DOWN"):
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
              "Is the docker daemon running?", file=sys.stderr)
        sys.exit(1)
    print("Server Version: 28.5.1")
    sys.exit(0)
if args[:1] == ["inspect"]:
    print(os.environ.get("STANDIN_HEALTH", "null"))
    sys.exit(0)
if args[:1] != ["compose"]:
    sys.exit(0)
if "version" in args:
    print("Docker Compose version " + os.environ.get("STANDIN_COMPOSE_VERSION", "v2.40.3"))
    sys.exit(0)
if "ps" in args:
    path = os.environ.get("STANDIN_PS", "")
    if path and os.path.exists(path):
        sys.stdout.write(open(path).read())
    sys.exit(0)
if "logs" in args:
    print("trino  | starting server")
    print("trino  | config s3.aws-secret-key=" + os.environ.get("STANDIN_LEAK", "(none)"))
    print("trino  | ERROR catalog iceberg failed to load")
    sys.exit(0)
if "up" in args:
    print(" Container sagaz-zookeeper-1  Healthy")
    sys.exit(int(os.environ.get("STANDIN_UP_RC", "0")))
sys.exit(0)
'''


@pytest.fixture
def engine(tmp_path, monkeypatch):
    """A bin folder holding only the stand-in `docker`; PATH is that folder alone (no real engine is visible).

    No Fluss runs behind the stand-in, so the cluster check that follows a successful `up` (fluss_cluster,
    tested on the real engine in tests/compose/engine) is replaced by one that reports every tablet server."""
    from sagaz_lakehouse import fluss_cluster

    def every_tablet(settings, driver, progress):
        expected = fluss_cluster.expected_tablets(settings)
        return fluss_cluster.Membership(expected, expected, coordinator=True)

    monkeypatch.setattr(fluss_cluster, "confirm_members", every_tablet)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(STANDIN.replace("{python}", sys.executable))
    script.chmod(0o755)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("STANDIN_LOG", str(log))
    for var in ("STANDIN_DAEMON_DOWN", "STANDIN_UP_RC", "STANDIN_PS", "STANDIN_LEAK", "STANDIN_COMPOSE_VERSION",
                "STANDIN_HEALTH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SAGAZ_LAKEHOUSE_S3_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("SAGAZ_LAKEHOUSE_S3_SECRET_KEY", SECRET)
    monkeypatch.setenv("SAGAZ_LAKEHOUSE_FLUSS_PASSWORD", FLUSS_PASSWORD)
    monkeypatch.setenv("SAGAZ_LAKEHOUSE_TRINO_PASSWORD", TRINO_PASSWORD)

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return bin_dir, calls


@pytest.fixture
def project(tmp_path):
    """A settings file with free ports, a project folder in tmp, and a jar cache pre-filled with stand-in files."""
    cache = tmp_path / "cache"
    for group in ("flink-lib-fluss", "fluss-iceberg-extras", "tiering-job"):
        for artifact in artifacts.group(group):
            path = artifacts.cached_path(artifact, cache)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("stand-in jar")
            path.chmod(0o600)
    ports = free_port_settings()  # every port: a stack beside this test may hold the defaults
    lines = ["target: compose", "profile: prod", "ports:"] + [f"  {k}: {v}" for k, v in ports.items()]
    lines += ["compose:", "  project_dir: proj", "local:", f"  cache_dir: {cache}"]
    cfg = tmp_path / "sagaz-lakehouse.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg, ports


def invoke(cfg: Path, *args: str):
    return runner.invoke(app, [*args, "--config", str(cfg)], catch_exceptions=False)


def compose_calls(calls) -> list[list[str]]:
    return [c for c in calls() if c[1:2] == ["compose"] and "version" not in c]


def test_up_writes_project_and_waits(engine, project):
    _, calls = engine
    cfg, _ = project
    result = invoke(cfg, "up", "--timeout", "120")
    assert result.exit_code == 0, result.output
    proj = cfg.parent / "proj"
    ups = [c for c in compose_calls(calls) if "up" in c]
    assert len(ups) == 2
    first, second = ups
    assert first[:4] == ["docker", "compose", "-p", "sagaz-lakehouse"]
    for flag in ("-d", "--wait", "--remove-orphans"):
        assert flag in first
    assert first[first.index("--wait-timeout") + 1] == "120"
    assert "submit-tiering" not in first and "trino" in first
    assert second[-1] == "submit-tiering" and "--no-deps" in second and "--exit-code-from" in second
    assert ["--project-directory", str(proj)] == first[4:6]
    for call in (first, second):  # its output reaches our log, not a terminal: no colours, no cursor codes
        assert call[call.index("--ansi") + 1] == "never" and call.index("--ansi") < call.index("up")
    assert stat.S_IMODE((proj / ".env").stat().st_mode) == 0o600
    jar = next((proj / "jars" / "tiering-job").iterdir())
    assert stat.S_IMODE(jar.stat().st_mode) == 0o644  # readable by the containers' own users
    assert (proj / "compose.yaml").exists() and (proj / "config" / "trino" / "catalog" / "iceberg.properties").exists()
    # prod: the secret files beside .env, in folders only the user enters; Trino's certificate made and kept there
    secrets = proj / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    files = [p for p in secrets.rglob("*") if p.is_file()]
    assert {p.relative_to(secrets).as_posix() for p in files} >= {
        "fluss-coordinator/jaas.conf", "flink-jobmanager/jaas.conf", "trino/keystore.pem", "trino/password.db",
        "trino/config.properties", "prometheus/trino-password"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert all(stat.S_IMODE(p.parent.stat().st_mode) == 0o700 for p in files)
    assert stat.S_IMODE((proj / "tls" / "keystore.pem").stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in (proj / "config" / "prometheus" / "trino-ca.pem").read_text()


@pytest.mark.parametrize("missing", ["SAGAZ_LAKEHOUSE_FLUSS_PASSWORD", "SAGAZ_LAKEHOUSE_TRINO_PASSWORD"])
@pytest.mark.parametrize("command", ["up", "render"])
def test_prod_without_a_password_is_refused_before_anything_is_written(engine, project, monkeypatch, missing,
                                                                       command, tmp_path):
    """No compose project that would start a Fluss or Trino without its login: exit 2 naming the password."""
    _, calls = engine
    cfg, _ = project
    monkeypatch.delenv(missing)
    out = tmp_path / "rendered"
    result = invoke(cfg, command, *(["--out", str(out)] if command == "render" else []))
    assert result.exit_code == 2, result.output
    assert missing in result.output and "prod profile authenticates" in result.output
    assert not (cfg.parent / "proj").exists() and not out.exists()
    assert not [c for c in calls() if "up" in c]


def test_up_no_wait_starts_everything_detached(engine, project):
    _, calls = engine
    cfg, _ = project
    assert invoke(cfg, "up", "--no-wait").exit_code == 0
    ups = [c for c in compose_calls(calls) if "up" in c]
    assert len(ups) == 1 and "-d" in ups[0] and "--wait" not in ups[0]


def test_dry_run_changes_nothing(engine, project):
    _, calls = engine
    cfg, _ = project
    result = invoke(cfg, "up", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert not (cfg.parent / "proj").exists()
    assert not [c for c in calls() if "up" in c or c[:1] == ["info"]]
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and any("--wait" in cmd for cmd in plan["commands"])


def test_no_engine_exits_2_with_hint(engine, project):
    bin_dir, _ = engine
    cfg, _ = project
    (bin_dir / "docker").unlink()
    result = invoke(cfg, "up")
    assert result.exit_code == 2
    assert "no container engine found" in result.output
    assert "--target local" in result.output
    assert not (cfg.parent / "proj").exists()


def test_daemon_down_exits_2(engine, project, monkeypatch):
    cfg, _ = project
    monkeypatch.setenv("STANDIN_DAEMON_DOWN", "1")
    result = invoke(cfg, "up")
    assert result.exit_code == 2
    assert "daemon is not reachable" in result.output and "Is the docker daemon running?" in result.output
    assert "--target local" in result.output
    assert not (cfg.parent / "proj").exists()


def test_old_compose_is_refused(engine, project, monkeypatch):
    cfg, _ = project
    monkeypatch.setenv("STANDIN_COMPOSE_VERSION", "v2.0.1")
    result = invoke(cfg, "up")
    assert result.exit_code == 2
    assert "2.0.1" in result.output and "2.1.1" in result.output


def test_engine_setting_picks_podman(engine, project, monkeypatch):
    bin_dir, calls = engine
    cfg, _ = project
    (bin_dir / "docker").rename(bin_dir / "podman")
    result = invoke(cfg, "up", "--set", "compose.engine=podman")
    assert result.exit_code == 0, result.output
    assert all(c[0] == "podman" for c in calls())


def test_port_in_use_names_port_and_service(engine, project):
    cfg, ports = project
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["trino"]))
        taken.listen()
        result = invoke(cfg, "up")
    assert result.exit_code == 2
    assert f"port {ports['trino']}" in result.output and "'trino'" in result.output
    assert "ports.trino" in result.output


def test_port_held_by_own_running_service_is_fine(engine, project, tmp_path, monkeypatch):
    cfg, ports = project
    ps = tmp_path / "ps.json"
    ps.write_text(json.dumps({"Service": "trino", "State": "running", "Health": "healthy"}) + "\n")
    monkeypatch.setenv("STANDIN_PS", str(ps))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["trino"]))
        taken.listen()
        assert invoke(cfg, "up").exit_code == 0


def test_failed_up_names_service_health_and_log_tail(engine, project, tmp_path, monkeypatch):
    cfg, _ = project
    ps = tmp_path / "ps.json"
    ps.write_text("\n".join(json.dumps(c) for c in [
        {"Service": "zookeeper", "State": "running", "Health": "healthy", "Status": "Up 1 minute (healthy)"},
        {"Service": "trino", "State": "running", "Health": "unhealthy", "Status": "Up 2 minutes (unhealthy)"},
    ]) + "\n")
    monkeypatch.setenv("STANDIN_PS", str(ps))
    monkeypatch.setenv("STANDIN_UP_RC", "1")
    monkeypatch.setenv("STANDIN_LEAK", SECRET)
    result = invoke(cfg, "up")
    assert result.exit_code == 1
    assert "trino did not become healthy" in result.output
    assert "health unhealthy" in result.output
    assert "ERROR catalog iceberg failed to load" in result.output
    assert SECRET not in result.output  # redacted even when a container logs it


def test_failed_up_names_the_service_that_failed_not_one_that_waited_on_it(engine, project, tmp_path, monkeypatch):
    """A service never started because its dependency turned unhealthy comes first in `ps` (by name) but is not
    the cause: the unhealthy one is named, with its last health check, and the waiting one is listed in the hint."""
    cfg, _ = project
    ps = tmp_path / "ps.json"
    ps.write_text("\n".join(json.dumps(c) for c in [
        {"Service": "flink-jobmanager", "State": "running", "Health": "healthy", "Status": "Up 1 minute (healthy)"},
        {"Service": "fluss-coordinator", "State": "created", "Status": "Created", "ID": "c1"},
        {"Service": "trino", "State": "running", "Health": "starting", "Status": "Up 1 minute (health: starting)"},
        {"Service": "zookeeper", "State": "running", "Health": "unhealthy", "Status": "Up 2 minutes (unhealthy)",
         "ID": "z1"},
    ]) + "\n")
    monkeypatch.setenv("STANDIN_PS", str(ps))
    monkeypatch.setenv("STANDIN_UP_RC", "1")
    monkeypatch.setenv("STANDIN_HEALTH", json.dumps({"Status": "unhealthy", "FailingStreak": 6, "Log": [
        {"ExitCode": 1, "Output": "first"},
        {"ExitCode": 1,
         "Output": "bash: connect: Connection refused\nbash: /dev/tcp/zookeeper/2181: Connection refused\n"},
    ]}))
    result = invoke(cfg, "up")
    assert result.exit_code == 1
    assert "zookeeper did not become healthy" in result.output
    assert "last health check: exit 1, bash: /dev/tcp/zookeeper/2181: Connection refused" in result.output
    assert "also not healthy: trino (starting), fluss-coordinator (created)" in result.output


def test_down_keeps_volumes_purge_removes_them(engine, project):
    _, calls = engine
    cfg, _ = project
    assert invoke(cfg, "down").exit_code == 0
    assert invoke(cfg, "down", "--purge").exit_code == 0
    downs = [c for c in compose_calls(calls) if "down" in c]
    assert len(downs) == 2
    assert "--volumes" not in downs[0] and "-v" not in downs[0]
    assert "--volumes" in downs[1]
    assert all(c[2:4] == ["-p", "sagaz-lakehouse"] for c in downs)


def test_status_parses_ps_json_and_lists_endpoints(engine, project, tmp_path, monkeypatch):
    cfg, ports = project
    ps = tmp_path / "ps.json"
    containers = [
        {"Service": "zookeeper", "State": "running", "Health": "healthy"},
        {"Service": "create-bucket", "State": "exited", "ExitCode": 0},
        {"Service": "submit-tiering", "State": "exited", "ExitCode": 1},
        {"Service": "trino", "State": "running", "Health": "starting"},
        {"Service": "flink-jobmanager", "State": "running", "Health": "healthy"},
    ]
    ps.write_text(json.dumps(containers))  # the JSON-array form of Compose < 2.21
    monkeypatch.setenv("STANDIN_PS", str(ps))
    result = invoke(cfg, "status", "--json")
    assert result.exit_code == 1  # not everything is healthy
    rows = {r["component"]: r for r in json.loads(result.stdout)}
    assert rows["zookeeper"]["state"] == "healthy"
    assert rows["create-bucket"]["state"] == "completed"
    assert rows["submit-tiering"]["state"] == "failed"
    assert rows["trino"]["state"] == "starting"
    assert rows["minio"]["state"] == "absent"
    assert rows["trino"]["endpoint"].startswith(f"http://127.0.0.1:{ports['trino']}")
    assert f"127.0.0.1:{ports['flink_rest']}" in rows["flink-jobmanager"]["endpoint"]
    assert rows["minio"]["endpoint"] == f"http://127.0.0.1:{ports['minio']}"
    assert f"127.0.0.1:{ports['rest_catalog']}" in rows["rest-catalog"]["endpoint"]
    assert f"127.0.0.1:{ports['fluss_coordinator']}" in rows["fluss-coordinator"]["endpoint"]


def test_logs_of_unknown_component_lists_valid_ones(engine, project):
    cfg, _ = project
    result = invoke(cfg, "logs", "trinoo")
    assert result.exit_code == 2
    assert "trino" in result.output and "fluss-tablet-0" in result.output


def test_secrets_never_in_argv_or_output(engine, project, monkeypatch):
    _, calls = engine
    cfg, _ = project
    monkeypatch.setenv("S3_SECRET_KEY", "shell-value-must-not-shadow-env-file")
    outputs = [invoke(cfg, *args).output for args in (["up"], ["status"], ["logs", "trino"], ["down"])]
    recorded = json.dumps(calls())
    for value in (SECRET, ACCESS, FLUSS_PASSWORD, TRINO_PASSWORD):
        assert value not in recorded
        for output in outputs:
            assert value not in output
    env_file = (cfg.parent / "proj" / ".env").read_text()
    assert SECRET in env_file and ACCESS in env_file
    for path in (cfg.parent / "proj").rglob("*"):
        if path.is_file() and path.name != ".env" and "jars" not in path.parts:
            assert SECRET not in path.read_text(), path
            if "secrets" not in path.parts:  # the passwords only in the 0600 secret files
                assert FLUSS_PASSWORD not in path.read_text() and TRINO_PASSWORD not in path.read_text(), path
    compose = (cfg.parent / "proj" / "compose.yaml").read_text()
    assert FLUSS_PASSWORD not in compose and TRINO_PASSWORD not in compose


def test_child_environment_drops_shadowing_variables(monkeypatch, tmp_path):
    from sagaz_lakehouse.config import load
    from sagaz_lakehouse.targets.compose.driver import ComposeDriver

    monkeypatch.setenv("S3_ACCESS_KEY", "from-the-shell")
    driver = ComposeDriver(load(None, {"target": "compose"}, environ={}), tmp_path)
    assert "S3_ACCESS_KEY" not in driver.child_environment()
    assert os.environ["S3_ACCESS_KEY"] == "from-the-shell"


def test_port_check_refuses_a_listener_but_not_connections_lingering_after_a_down():
    """After `down`, connections that went through the engine's port proxy linger in TIME_WAIT on the published
    port. The engine binds over them (its listener sets SO_REUSEADDR): so must the check, or `up` right after
    `down` refuses a free port."""
    import time

    from sagaz_lakehouse.targets.compose.driver import port_free

    proxy = socket.socket()
    proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's net.Listen (the engine's proxy) does
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    port = proxy.getsockname()[1]
    assert port_free(port) is False  # a listener: taken
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = proxy.accept()
    accepted.close()  # the server side closes first: its end goes to TIME_WAIT on the published port
    deadline = time.monotonic() + 5
    while client.recv(1) and time.monotonic() < deadline:
        pass
    client.close()
    proxy.close()
    assert port_free(port) is True


def test_compose_output_reaches_the_log_without_terminal_codes():
    from sagaz_lakehouse.targets.compose.driver import plain

    raw = "\x1b[Ksubmit-tiering-1 exited with code 0\n\x1b[31m\x1b[1mAborting on container exit...\x1b[0m"
    assert plain(raw) == "submit-tiering-1 exited with code 0\nAborting on container exit..."
