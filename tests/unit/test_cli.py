"""The command line: exit codes, clear errors, nothing written on bad input, secrets kept out of output."""

from __future__ import annotations

import socket
import time

import pytest
from support import free_port_settings
from typer.testing import CliRunner

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import tables
from sagaz_lakehouse.cli import app
from sagaz_lakehouse.config import DEV_CREDENTIALS

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env or {}, catch_exceptions=False)


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
    assert invoke("init", "--config", str(path)).exit_code == 0
    before = path.read_text()
    again = invoke("init", "--config", str(path))
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
    assert result.output == tables.flink_sql_ddl(lakehouse.load_settings(environ={})) + "\n"


@pytest.mark.parametrize("command", ["create-tables", "doctor"])
def test_commands_fail_fast_when_stack_is_down(command):
    ports = [f"--set=ports.{name}={port}" for name, port in free_port_settings().items()]  # nobody listens there
    started = time.monotonic()
    result = invoke(command, *ports)
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    assert "is the stack up? run `sagaz-lakehouse up`" in result.output


# ----------------------------------------------------------------------------------------- consistency


def test_version_comes_from_the_package():
    from sagaz_lakehouse import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"sagaz-lakehouse {__version__}"


@pytest.mark.parametrize("command", ["init", "render", "up", "down", "status", "logs", "restart", "diff",
                                     "create-tables", "doctor", "simulate"])
def test_every_command_takes_the_common_options(command):
    text = invoke(command, "--help").output
    for option in ("--config", "--target", "--profile", "--set", "--json", "--debug"):
        assert option in text, f"{command} lacks {option}"


@pytest.mark.parametrize(("name", "said"), [
    ("create-bucket", "create-bucket is a one-shot task, not a running component: nothing to restart"),
    ("fluss-nothing", "unknown component 'fluss-nothing'"),
])
def test_restart_refuses_a_task_and_an_unknown_name_with_exit_2_before_touching_anything(tmp_path, name, said):
    result = invoke("restart", name, "--set", f"local.run_dir={tmp_path / 'run'}")
    assert result.exit_code == 2, result.output
    assert said in result.output and "hint:" in result.output
    assert not (tmp_path / "run").exists()


def test_logs_short_n_means_namespace_only():
    text = invoke("logs", "--help").output
    assert "-n, --namespace" in text
    assert "--lines" in text and "-n, --lines" not in text


def test_create_tables_dry_run_json_is_json():
    import json

    result = invoke("create-tables", "--dry-run", "--json")
    assert result.exit_code == 0
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True and plan["table"] == tables.TABLE and "CREATE TABLE" in plan["sql"]


def fresh_machine(tmp_path) -> tuple[list[str], dict[str, str]]:
    """Free ports, a cache folder that does not exist yet, and a PATH without Go."""
    env = {"SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR": str(tmp_path / "no-such-cache"),
           "SAGAZ_LAKEHOUSE_LOCAL__RUN_DIR": str(tmp_path / "run"), "PATH": "/usr/bin:/bin"}
    return [f"--set=ports.{name}={port}" for name, port in free_port_settings().items()], env


def test_local_up_dry_run_prints_the_plan_and_touches_nothing(tmp_path):
    ports, env = fresh_machine(tmp_path)
    result = invoke("up", "--dry-run", *ports, "--set", "local.minio_binary=/bin/true",
                    "--set", "local.prometheus_binary=/bin/true", env=env)
    assert result.exit_code == 0, result.output
    assert "dry run: would start zookeeper, minio" in result.stdout
    assert not (tmp_path / "no-such-cache").exists() and not (tmp_path / "run").exists()


def test_fresh_machine_without_minio_or_go_gets_an_instruction(tmp_path, monkeypatch):
    from sagaz_lakehouse.targets.local import distributions

    monkeypatch.setattr(distributions, "GO_DEFAULT", str(tmp_path / "no-go" / "go"))  # nor in Go's default folder
    ports, env = fresh_machine(tmp_path)
    result = invoke("up", *ports, env=env)
    assert result.exit_code == 2
    assert "no MinIO server binary found" in result.output and "install Go" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "no-such-cache").exists() and not (tmp_path / "run").exists()


def test_status_with_nothing_running_gives_a_hint(tmp_path):
    result = invoke("status", env={"SAGAZ_LAKEHOUSE_LOCAL__RUN_DIR": str(tmp_path / "run")})
    assert result.exit_code == 1
    assert "nothing is running; start the stack with `sagaz-lakehouse up`" in result.output


def test_memory_below_the_floor_is_refused_before_anything_happens(tmp_path):
    result = invoke("render", "--set", "memory.trino=0Mi", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "memory.trino (from --set memory.trino): expected at least 1Gi" in result.output
    assert not (tmp_path / "o").exists()


def test_unexpected_errors_are_one_line_without_traceback(monkeypatch):
    from sagaz_lakehouse import tables as table_module

    def broken(_settings):
        raise RuntimeError("boom")

    monkeypatch.setattr(table_module, "flink_sql_ddl", broken)
    result = invoke("create-tables", "--dry-run")
    assert result.exit_code == 1
    assert "unexpected RuntimeError: boom" in result.output and "Traceback" not in result.output
    assert "--debug" in result.output
    with pytest.raises(RuntimeError):
        invoke("create-tables", "--dry-run", "--debug")


def test_render_into_a_git_work_tree_writes_placeholders_unless_out_is_given(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    result = invoke("render", "--target", "kubernetes")
    assert result.exit_code == 0, result.output
    assert "placeholders" in result.output
    secret = (tmp_path / "manifests" / "kubernetes" / "10-secret.yaml").read_text()
    assert "REPLACE_WITH_S3_SECRET_KEY" in secret and DEV_CREDENTIALS.secret_key not in secret
    explicit = tmp_path / "out"
    assert invoke("render", "--target", "kubernetes", "--out", str(explicit)).exit_code == 0
    assert DEV_CREDENTIALS.secret_key in (explicit / "10-secret.yaml").read_text()
    assert (explicit / "10-secret.yaml").stat().st_mode & 0o777 == 0o600


def test_no_committed_file_holds_the_dev_credentials():
    """Placeholders in manifests/; the dev pair lives only in config.py (and tests that name it)."""
    import subprocess

    from support import REPO

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    holders = [path for path in listed.stdout.split("\0") if path and (REPO / path).is_file()
               and DEV_CREDENTIALS.secret_key in (REPO / path).read_text(errors="replace")]
    allowed = {"sagaz_lakehouse/config.py"}
    assert [p for p in holders if p not in allowed and not p.startswith("tests/")] == []


PROD_ENV = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "render-admin", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "render-secret-1",
            "SAGAZ_LAKEHOUSE_FLUSS_PASSWORD": "render-fluss-pw", "SAGAZ_LAKEHOUSE_TRINO_PASSWORD": "render-trino-pw"}


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
@pytest.mark.parametrize("missing", ["SAGAZ_LAKEHOUSE_FLUSS_PASSWORD", "SAGAZ_LAKEHOUSE_TRINO_PASSWORD"])
def test_prod_render_without_a_login_is_refused_on_every_target(tmp_path, target, missing):
    """A control prod asks for that cannot be enforced is an error naming what is missing, never a placeholder (only
    `--placeholders` writes those, on purpose)."""
    out = tmp_path / "out"
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    result = invoke("render", "--target", target, "--profile", "prod", "--out", str(out), env=env)
    assert result.exit_code == 2 and missing in result.output and not out.exists(), result.output
    placeholders = invoke("render", "--target", target, "--profile", "prod", "--out", str(out), "--placeholders",
                          env=env)
    assert placeholders.exit_code == 0, placeholders.output
    written = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "REPLACE_WITH_FLUSS_PASSWORD" in written and "render-secret-1" not in written


def test_the_kubernetes_prod_render_depends_on_the_secrets_and_only_the_secret_and_digests_change(tmp_path):
    """The Secret is the only object that holds them; every pod that reads it carries a digest of them, so a
    changed password restarts exactly those pods. Nothing else differs."""
    def render(password: str) -> dict[str, str]:
        out = tmp_path / "out"  # the same folder: the certificate made beside the files is kept
        env = {**PROD_ENV, "SAGAZ_LAKEHOUSE_FLUSS_PASSWORD": password}
        result = invoke("render", "--target", "kubernetes", "--profile", "prod", "--out", str(out), env=env)
        assert result.exit_code == 0, result.output
        return {p.name: p.read_text() for p in out.glob("*.yaml")}

    first, second = render("fluss-password-one"), render("fluss-password-two")
    changed = sorted(name for name in first if first[name] != second[name])
    assert "10-secret.yaml" in changed and "fluss-password-one" in first["10-secret.yaml"]
    for name in changed:
        if name == "10-secret.yaml":
            continue
        diff = [(a, b) for a, b in zip(first[name].splitlines(), second[name].splitlines(), strict=True) if a != b]
        assert diff and all("checksum/credentials:" in a and "checksum/credentials:" in b for a, b in diff), name
    assert "fluss-password" not in "".join(text for name, text in first.items() if name != "10-secret.yaml")


def test_simulate_wait_safe_needs_the_spool(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("simulate", "--no-spool", "--wait-safe", "30")
    assert result.exit_code == 2 and "--wait-safe needs the spool" in result.output
    assert not (tmp_path / ".sagaz-lakehouse").exists()


def test_simulate_refuses_a_spool_another_process_holds(tmp_path, monkeypatch):
    from sagaz_lakehouse.spool import Spool

    monkeypatch.chdir(tmp_path)
    ports = [f"--set=ports.{name}={port}" for name, port in free_port_settings().items()]
    held = Spool(tmp_path / "spool")
    held.open()
    try:
        with socket.socket() as fluss:  # something answers on the bootstrap port: simulate gets to the spool
            fluss.bind(("127.0.0.1", 0))
            fluss.listen()
            port = fluss.getsockname()[1]
            result = invoke("simulate", *ports, f"--set=ports.fluss_coordinator={port}", "--spool-dir",
                            str(tmp_path / "spool"), "--sagas", "1")
    finally:
        held.close()
    assert result.exit_code == 2 and "is in use by process" in result.output, result.output


def test_restart_changed_is_the_local_targets_and_refused_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target in ("compose", "kubernetes"):
        result = invoke("up", "--target", target, "--restart-changed", "--dry-run")
        assert result.exit_code == 2, result.output
        assert "--restart-changed applies to --target local" in result.output and "drop the flag" in result.output
    assert "--restart-changed" in invoke("up", "--help").output
