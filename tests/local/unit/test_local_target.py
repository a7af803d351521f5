"""Local target: rendered files, secrets only in 0600 files, one source of truth for the addresses, preflight."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from support import free_port_settings

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config, render, security, tables, tls
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import tasks as task_components
from sagaz_lakehouse.config import ConfigError, Credentials
from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets.base import render as render_target
from sagaz_lakehouse.targets.local import layout as target
from sagaz_lakehouse.targets.local.driver import LocalDriver

CREDS = Credentials("local-access", "local-secret-value")


def rendered(tmp_path: Path, **overrides: str) -> dict[str, render.RenderedFile]:
    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"), **overrides}, environ={})
    return {f.path: f for f in render_target(settings, CREDS, "local")}


def parse(text: str, separator: str) -> dict[str, str]:
    pairs = (line.split(separator, 1) for line in text.splitlines() if separator in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_credentials_only_in_private_files(tmp_path):
    files = rendered(tmp_path)
    holders = {path for path, f in files.items() if CREDS.secret_key in f.content}
    assert holders, "the server configs must carry the credentials on the local target"
    assert all(files[path].secret for path in holders)
    assert not any(re.search(r"(?<!ENV:)\$\{S3_", f.content) for f in files.values()), \
        "placeholders must be substituted (Trino's ${ENV:...} references read the process environment)"
    written = render.write_files(list(files.values()), tmp_path / "out")
    for path in written:
        mode = path.stat().st_mode & 0o777
        secret = files[path.relative_to(tmp_path / "out").as_posix()].secret
        assert mode == (0o600 if secret else 0o644), path
        assert secret or CREDS.secret_key not in path.read_text(), path
    # Prometheus's bearer token for MinIO's metrics: a secret file, not the key it is signed with
    assert files["config/prometheus/minio-token"].secret and CREDS.secret_key not in files[
        "config/prometheus/minio-token"].content


def environment_of(settings: config.Settings, name: str, tmp_path: Path) -> dict[str, str]:
    """The environment the local target gives one instance (its native recipe, before credentials go in)."""
    stack = target.local_stack(settings)
    component = stack.resolve(name)[0][0]
    layout = target.default_layout(settings, tmp_path)
    ctx = s.NativeContext(Path("/java"), tmp_path / "home", "-Dmarker", tmp_path / "log")
    (tmp_path / "home" / "lib").mkdir(parents=True, exist_ok=True)
    (tmp_path / "home" / "lib" / "x.jar").touch()
    return dict(component.setup(target.instance(layout, component, name)).native.command(ctx).env)


def test_every_consumer_sees_the_same_lake(tmp_path):
    overrides = {"lake.bucket": "sagas-bucket", "lake.region": "eu-west-1"}
    files = rendered(tmp_path, **overrides)
    settings = lakehouse.load_settings(overrides=overrides, environ={})
    coordinator = parse(files["config/fluss-coordinator/server.yaml"].content, ":")
    tablet = parse(files["config/fluss-tablet-0/server.yaml"].content, ":")
    trino = parse(files["config/trino/catalog/iceberg.properties"].content, "=")
    catalog = environment_of(settings, s.REST_CATALOG, tmp_path)
    warehouse = "s3://sagas-bucket/warehouse"
    assert coordinator["datalake.iceberg.warehouse"] == tablet["datalake.iceberg.warehouse"] == warehouse
    assert trino["iceberg.rest-catalog.warehouse"] == catalog["CATALOG_WAREHOUSE"] == warehouse
    endpoint = "http://127.0.0.1:9000"
    assert coordinator["s3.endpoint"] == coordinator["datalake.iceberg.s3.endpoint"] == trino["s3.endpoint"] == \
        catalog["CATALOG_S3_ENDPOINT"] == endpoint
    assert coordinator["s3.region"] == trino["s3.region"] == catalog["AWS_REGION"] == "eu-west-1"
    assert coordinator["datalake.format"] == "iceberg"
    args = task_components.tiering_job_arguments(settings, View.EXTERNAL)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--datalake.iceberg.warehouse"] == warehouse and pairs["--datalake.iceberg.s3.endpoint"] == endpoint
    assert not any("secret" in a or "access-key" in a for a in args), "credentials stay out of job arguments"
    assert pairs["--fluss.tiering.poll.table.interval"] == "2s"  # dev; the upstream 30 s would dominate latency
    prod = lakehouse.load_settings(overrides={"profile": "prod", "lake.tiering_poll": "5s"}, environ={})
    prod_args = task_components.tiering_job_arguments(prod, View.EXTERNAL)
    assert prod_args[prod_args.index("--fluss.tiering.poll.table.interval") + 1] == "5s"


def test_each_instance_has_its_own_folders_and_the_tasks_run_the_packaged_file(tmp_path):
    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"),
                                                  "replicas.flink_taskmanagers": "2"},
                           environ={})
    files = rendered(tmp_path, **{"replicas.flink_taskmanagers": "2"})
    zoo = parse(files["config/zookeeper/zoo.cfg"].content, "=")
    assert zoo["dataDir"] == str(tmp_path / "run" / "data" / "zookeeper") and zoo["clientPortAddress"] == "127.0.0.1"
    for i in range(2):
        flink = parse(files[f"config/flink-taskmanager-{i}/config.yaml"].content, ":")
        assert flink["io.tmp.dirs"] == str(tmp_path / "run" / "data" / f"flink-taskmanager-{i}" / "tmp")
    stack = target.local_stack(settings)
    layout = target.default_layout(settings, tmp_path)
    ctx = s.NativeContext(Path("/java"), tmp_path / "jars", "-Dsagaz.run-dir=x", tmp_path / "log")
    task = stack.get(s.SUBMIT_TIERING)
    argv = task.setup(target.instance(layout, task, s.SUBMIT_TIERING)).native.command(ctx).argv
    from sagaz_lakehouse.components import tasks

    assert argv[1] == str(tasks.TASKS_FILE) and argv[3] == s.SUBMIT_TIERING
    assert argv[argv.index("--jar") + 1].startswith(str(tmp_path / "jars"))
    assert argv[argv.index("--taskmanagers") + 1] == "2"


def test_taskmanagers_are_healthy_only_once_registered(tmp_path):
    settings = lakehouse.load_settings(overrides={"replicas.flink_taskmanagers": "2"}, environ={})
    stack = target.local_stack(settings)
    for i in range(2):
        probe = target.health_probe(stack, stack.get(s.TASKMANAGER), f"{s.TASKMANAGER}-{i}")
        assert probe is not None and probe.port == settings.ports.flink_rest and probe.path == "/taskmanagers"
        assert probe.expect == f'"id":"{s.TASKMANAGER}-{i}"'


def test_tablet_servers_fan_out_over_ports_and_ids(tmp_path):
    files = rendered(tmp_path, **{"replicas.tablet_servers": "3"})
    for i in range(3):
        props = parse(files[f"config/fluss-tablet-{i}/server.yaml"].content, ":")
        assert props["tablet-server.id"] == str(i)
        assert props["bind.listeners"] == f"FLUSS://127.0.0.1:{9124 + i}"


def test_fluss_logs_mask_credentials(tmp_path):
    log4j = rendered(tmp_path)["config/fluss-coordinator/log4j-console.properties"].content
    assert "%replace{%m}" in log4j and "secret" in log4j


def test_ddl_matches_the_arrow_schema():
    settings = lakehouse.load_settings(environ={})
    ddl = tables.flink_sql_ddl(settings)
    for column in tables.COLUMNS:
        assert f"`{column.name}`" in ddl
    assert tables.arrow_schema().names == [c.name for c in tables.COLUMNS]
    assert "'table.datalake.enabled' = 'true'" in ddl and "tiered.storage" not in ddl


def test_port_taken_by_another_program_stops_everything_before_it_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = lakehouse.load_settings(overrides={"ports.trino": str(port), "local.run_dir": str(tmp_path / "run")},
                               environ={})
        with pytest.raises(ConfigError) as excinfo:
            LocalDriver(settings, tmp_path, progress=lambda _m: None).up(dry_run=False)
    assert excinfo.value.exit_code == 2
    assert f"port {port}" in str(excinfo.value) and "trino" in str(excinfo.value)
    assert not (tmp_path / "run").exists(), "nothing may be started or written"


def test_dry_run_lists_components_and_changes_nothing(tmp_path):
    ports = {f"ports.{name}": str(port) for name, port in free_port_settings().items()}
    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"), **ports}, environ={})
    result = LocalDriver(settings, tmp_path, progress=lambda _m: None).up(dry_run=True)
    assert result["dry_run"] is True and "fluss-coordinator" in result["would_start"]
    assert not (tmp_path / "run").exists()
    assert config.mebibytes("2Gi") == 2048 and config.mebibytes("512Mi") == 512 and config.mebibytes("1.5Ki") == 1


PROD_CREDS = Credentials("local-access", "local-secret-value", "fluss-password-value")


def test_prod_fluss_takes_sasl_clients_only_and_every_jvm_logs_in_from_a_private_file(tmp_path):
    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"), "profile": "prod"},
                                       environ={})
    files = {f.path: f for f in render_target(settings, PROD_CREDS, "local")}
    server = parse(files["config/fluss-tablet-0/server.yaml"].content, ":")
    assert server["security.protocol.map"] == "FLUSS:SASL" and server["security.sasl.enabled.mechanisms"] == "PLAIN"
    assert server["client.security.protocol"] == "SASL"  # the servers' own connections to each other
    holders = sorted(path for path, f in files.items() if PROD_CREDS.fluss_password in f.content)
    assert {p.rsplit("/", 1)[1] for p in holders} == {"jaas.conf", "fluss-login.yaml"}
    assert {p.split("/")[1] for p in holders if p.endswith("jaas.conf")} == {
        "fluss-coordinator", "fluss-tablet-0", "fluss-tablet-1", "flink-jobmanager", "flink-taskmanager-0"}
    assert all(files[p].secret for p in holders)
    assert 'user_sagaz="fluss-password-value"' in files["config/fluss-tablet-0/jaas.conf"].content
    assert "FlussServer" not in files["config/flink-taskmanager-0/jaas.conf"].content
    tiering = task_components.tiering_job_arguments(settings, View.EXTERNAL)
    assert tiering[tiering.index("--fluss.client.security.protocol") + 1] == "SASL"
    assert PROD_CREDS.fluss_password not in " ".join(tiering)


def test_dev_fluss_has_no_login(tmp_path):
    files = rendered(tmp_path)
    assert not any(p.endswith(("jaas.conf", "fluss-login.yaml")) for p in files)
    assert "security.protocol.map" not in files["config/fluss-tablet-0/server.yaml"].content
    assert "--fluss.client.security.protocol" not in task_components.tiering_job_arguments(
        lakehouse.load_settings(environ={}),
                                                                                   View.EXTERNAL)


TRINO_CREDS = Credentials("local-access", "local-secret-value", "fluss-password-value", "trino-password-value",
                          "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n"
                          "-----BEGIN CERTIFICATE-----\nc\n-----END CERTIFICATE-----\n")


def test_prod_trino_takes_password_clients_over_https_only(tmp_path):
    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"), "profile": "prod"},
                                       environ={})
    files = {f.path: f for f in render_target(settings, TRINO_CREDS, "local")}
    server = parse(files["config/trino/config.properties"].content, "=")
    conf = str(tmp_path / "run" / "config" / "trino")
    assert server["http-server.https.enabled"] == "true" and server["http-server.https.port"] == "8443"
    assert server["http-server.authentication.type"] == "PASSWORD"
    assert server["http-server.https.keystore.path"] == f"{conf}/keystore.pem"
    assert server["password-authenticator.config-files"] == f"{conf}/password-authenticator.properties"
    assert server["internal-communication.shared-secret"] == TRINO_CREDS.trino_shared_secret()
    authenticator = parse(files["config/trino/password-authenticator.properties"].content, "=")
    assert authenticator == {"password-authenticator.name": "file", "file.password-file": f"{conf}/password.db"}
    user, iterations, salt, digest = files["config/trino/password.db"].content.strip().split(":")
    expected = hashlib.pbkdf2_hmac("sha1", b"trino-password-value", bytes.fromhex(salt), int(iterations), dklen=32)
    assert user == "sagaz" and int(iterations) >= 1000 and digest == expected.hex()  # Trino's PBKDF2 format
    again = {f.path: f for f in render_target(settings, TRINO_CREDS, "local")}
    assert again["config/trino/password.db"].content == files["config/trino/password.db"].content  # no restart
    other = render_target(settings, replace(TRINO_CREDS, trino_keystore="another installation's key"), "local")
    assert salt not in next(f.content for f in other if f.path == "config/trino/password.db")
    assert files["config/trino/keystore.pem"].content == TRINO_CREDS.trino_keystore
    assert all(files[f"config/trino/{n}"].secret for n in ("config.properties", "password.db", "keystore.pem"))
    # Only the clients that log in hold it, in 0600 files: Prometheus's scrape and the lake maintenance service
    # (its password file); hashed everywhere else.
    logins = ("config/prometheus/", "config/lake-maintenance/trino-password")
    assert "trino-password-value" not in "".join(f.content for p, f in files.items() if not p.startswith(logins))
    assert files["config/lake-maintenance/trino-password"].content.strip() == "trino-password-value"
    assert files["config/lake-maintenance/trino-password"].secret
    scrape = yaml.safe_load(files["config/prometheus/prometheus.yml"].content)
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "trino")
    password_file = str(tmp_path / "run" / "config" / "prometheus" / "trino-password")
    assert job["scheme"] == "https" and job["basic_auth"] == {"username": "sagaz", "password_file": password_file}
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8443"]
    assert files["config/prometheus/trino-password"].content == "trino-password-value"
    assert files["config/prometheus/trino-password"].secret and not files["config/prometheus/prometheus.yml"].secret
    assert files["config/prometheus/trino-ca.pem"].content == tls.certificate_part(TRINO_CREDS.trino_keystore)
    assert "PRIVATE KEY" not in files["config/prometheus/trino-ca.pem"].content
    assert job["tls_config"]["ca_file"] == str(tmp_path / "run" / "config" / "prometheus" / "trino-ca.pem")


def test_every_trino_listener_binds_loopback(tmp_path):
    """airlift's node.bind-ip: the HTTP and HTTPS ports on 127.0.0.1, as every other server of the local target."""
    for overrides in ({}, {"profile": "prod"}):
        settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"), **overrides},
                                           environ={})
        files = {f.path: f for f in render_target(settings, TRINO_CREDS, "local")}
        node = parse(files["config/trino/node.properties"].content, "=")
        assert node["node.bind-ip"] == node["node.internal-address"] == "127.0.0.1"


def test_dev_trino_has_no_login(tmp_path):
    files = rendered(tmp_path)
    assert "http-server.authentication.type" not in files["config/trino/config.properties"].content
    assert not any(p.endswith(("password.db", "keystore.pem", "trino-ca.pem")) for p in files)


def test_the_trino_certificate_is_made_once_and_names_the_loopback_address(tmp_path):
    from cryptography import x509

    from sagaz_lakehouse import tls

    made = tls.ensure(tmp_path / "tls")
    assert os.stat(tmp_path / "tls" / "keystore.pem").st_mode & 0o077 == 0
    assert "PRIVATE KEY" in made.keystore_pem and "PRIVATE KEY" not in made.ca_file.read_text()
    certificate = x509.load_pem_x509_certificate(made.ca_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert tls.ensure(tmp_path / "tls") == made  # kept: clients that trust it go on working
    assert tls.certificate_part(made.keystore_pem) == made.ca_file.read_text()


def test_an_operator_certificate_replaces_the_made_one_and_back(tmp_path):
    from cryptography import x509
    from support import operator_keystore

    from sagaz_lakehouse import tls

    made = tls.ensure(tmp_path / "tls")
    keystore, ca = operator_keystore()
    installed = tls.install(tmp_path / "tls", keystore)
    assert installed.keystore_pem == keystore and installed.ca_file.read_text().endswith(ca)
    assert "PRIVATE KEY" not in installed.ca_file.read_text()
    assert os.stat(tmp_path / "tls" / "keystore.pem").st_mode & 0o077 == 0
    # Once the operator's setting is gone, the next `up` makes its own certificate again.
    again = tls.ensure(tmp_path / "tls")
    assert again.keystore_pem not in (keystore, made.keystore_pem)
    subject = x509.load_pem_x509_certificate(again.ca_file.read_bytes()).subject.rfc4514_string()
    assert subject == f"CN={tls.COMMON_NAME}"


def test_prod_flink_takes_no_jar_uploads_and_the_tiering_job_goes_in_through_flinks_client(tmp_path):
    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"), "profile": "prod"},
                                       environ={})
    files = {f.path: f for f in render_target(settings, TRINO_CREDS, "local")}
    assert parse(files["config/flink-jobmanager/config.yaml"].content, ":")["web.submit.enable"] == "false"
    stack = target.local_stack(settings)
    task = next(c for c in stack.components if c.name == s.SUBMIT_TIERING)
    at = target.instance(target.default_layout(settings), task, task.name)
    peers = {s.JOBMANAGER: (Path("/jdk17/bin/java"), Path("/homes/flink"))}
    argv = task.setup(at).native.command(s.NativeContext(Path("/py"), Path("/homes/tasks"), "-Dm", Path("/l"),
                                                         peers)).argv
    assert argv[argv.index("--flink-client-java") + 1] == "/jdk17/bin/java"
    assert argv[argv.index("--flink-client-home") + 1] == "/homes/flink"
    assert argv[argv.index("--flink-client-conf") + 1] == str(tmp_path / "run" / "config" / "flink-jobmanager")
    assert argv.index("--flink-client-java") < argv.index("--")  # options before the job's own arguments


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
def test_flink_takes_jar_uploads_in_dev_only(target):
    assert security.flink_jar_upload_on(lakehouse.load_settings(overrides={"target": target}, environ={}))
    assert not security.flink_jar_upload_on(lakehouse.load_settings(overrides={"target": target, "profile": "prod"},
                                                                    environ={}))


def test_every_native_process_carries_the_run_folder_marker(tmp_path):
    """The supervisor and `down` recognise their processes by the run folder in the command line (the marker a
    process is started with): a process without it is reported stopped while it runs, and `down` leaves it behind
    (the lake maintenance service once was)."""
    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run"),
                                                  "replicas.trino_workers": "1"}, environ={})
    stack = target.local_stack(settings)
    layout = target.default_layout(settings, tmp_path)
    home = tmp_path / "home"
    (home / "lib").mkdir(parents=True)
    (home / "lib" / "x.jar").touch()
    marker = f"-Dsagaz.run-dir={layout.run_dir}"
    java = Path(shutil.which("java") or "/usr/bin/java")  # Flink's command asks its memory model of a real JVM
    peers = {c.name: (java, home) for c in stack.components}
    for component, name in stack.instances():
        if component.setup(target.instance(layout, component, name)).native.distribution == "flink":
            continue  # its JVM flags come from Flink's own distribution (bash-java-utils), checked by the e2e
        argv = component.setup(target.instance(layout, component, name)).native.command(
            s.NativeContext(java, home, marker, tmp_path / "log", peers)).argv
        assert any(str(layout.run_dir) in arg for arg in argv), (name, argv)


def test_down_stops_each_wave_together_and_only_after_its_dependants(tmp_path):
    """Fake instances under the real names, each taking 1 s to exit after SIGTERM and writing when it got the
    signal and when it exited: `down` takes about one second per wave, not per instance, and no component gets
    its signal before every component that depends on it has exited."""
    import signal
    import subprocess
    import sys
    import time

    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run")}, environ={})
    driver = LocalDriver(settings, tmp_path, progress=lambda _m: None)
    run_dir, marks = driver.layout.run_dir, tmp_path / "marks"
    marks.mkdir()
    code = ("import signal,sys,time\n"
            "def term(*_):\n"
            "    open(sys.argv[1] + '.term', 'w').write(repr(time.time())); time.sleep(1)\n"
            "    open(sys.argv[1] + '.exit', 'w').write(repr(time.time())); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, term)\n"
            "open(sys.argv[1] + '.ready', 'w').close()\n"
            "while True: time.sleep(1)\n")
    names = [name for _, name in driver.stack.instances() if not _.one_shot]
    (run_dir / "pids").mkdir(parents=True)
    for name in names:
        child = subprocess.Popen([sys.executable, "-c", code, str(marks / name), str(run_dir)],
                                 start_new_session=True)
        driver.supervisor.pid_file(name).write_text(f"{child.pid}\n")
    deadline = time.monotonic() + 30
    while not all((marks / f"{n}.ready").exists() for n in names):
        assert time.monotonic() < deadline, "the fake instances did not start"
        time.sleep(0.05)

    started = time.monotonic()
    try:
        driver.down()
    finally:
        for name in names:  # never leave one behind, whatever happened
            pid = driver.supervisor.running_pid(name)
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)
    took = time.monotonic() - started
    waves = driver.stack.stop_waves()
    assert took < len(names) * 0.6, f"{took:.1f}s for {len(names)} instances in {len(waves)} waves"

    def when(name: str, what: str) -> float:
        return float((marks / f"{name}.{what}").read_text())

    for component in driver.stack.components:
        for dependency, _ in component.depends_on:
            for mine in component.instance_names():
                for theirs in driver.stack.get(dependency).instance_names():
                    if mine in names and theirs in names:
                        assert when(theirs, "term") >= when(mine, "exit"), f"{theirs} stopped before {mine}"


def test_only_prometheus_is_left_to_a_background_build_and_only_while_it_is_not_built(tmp_path):
    """Nothing depends on Prometheus, so a cold `up` need not wait for its build; MinIO, which everything needs,
    is built before anything starts. A Prometheus binary in the cache, or one configured, is used at once."""
    from sagaz_lakehouse.targets.local.distributions import Installer, prometheus_binary

    settings = lakehouse.load_settings(overrides={"local.run_dir": str(tmp_path / "run")}, environ={})
    driver = LocalDriver(settings, tmp_path, progress=lambda _m: None)
    cache = tmp_path / "cache"
    installer = Installer(cache, "", "", lambda _m: None)
    if installer._prometheus_present() is not None:  # a `prometheus` on PATH would be used as it is
        pytest.fail("this test needs a machine without `prometheus` on PATH")
    assert [c.name for c in driver._built_later(installer, running=set())] == [s.PROMETHEUS]
    assert driver._built_later(installer, running={s.PROMETHEUS}) == [], "a running one is left alone"
    built = prometheus_binary(cache, "prometheus")
    built.parent.mkdir(parents=True)
    built.write_text("#!/bin/sh\n")
    built.chmod(0o755)
    assert driver._built_later(installer, running=set()) == []
    home, build = installer.later_home("prometheus")
    assert home == built and build[-2:] == ["prometheus", str(cache / "bin")]


def test_the_seaweedfs_build_repeats_its_modules_replaces_and_refuses_a_local_path():
    """`go install` refuses a module whose go.mod has a replace (golang/go#44840): the wrapper module repeats them."""
    from sagaz_lakehouse.errors import EnvironmentProblem
    from sagaz_lakehouse.targets.local import distributions

    go_mod = ("module github.com/seaweedfs/seaweedfs\n\ngo 1.26.6\n\n"
              "// replace github.com/seaweedfs/raft => /Users/someone/raft\n"
              "replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0 // upstream moved\n"
              "replace (\n\tgithub.com/a/b v1.0.0 => github.com/c/d v1.2.0\n\n\t// a comment\n)\n")
    assert distributions.module_replaces(go_mod) == [
        "replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0",
        "replace github.com/a/b v1.0.0 => github.com/c/d v1.2.0"]
    with pytest.raises(EnvironmentProblem, match="local path"):
        distributions.module_replaces("replace github.com/x/y => ../y\n")


def test_a_tool_build_with_if_missing_does_nothing_when_its_binaries_are_there(tmp_path, capsys):
    from sagaz_lakehouse.targets.local import distributions

    for name in ("minio", "prometheus", "seaweedfs"):
        for path in distributions.built_binaries(name, tmp_path / "bin"):
            path.parent.mkdir(exist_ok=True)
            path.touch()
        assert distributions.main(["--if-missing", name, str(tmp_path / "bin")]) == 0
    assert capsys.readouterr().err == ""  # no "building ..." line: nothing was built
    assert distributions.main(["--if-missing", "nope", str(tmp_path)]) == 2
    assert "usage:" in capsys.readouterr().err
