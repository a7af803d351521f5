"""Local target: rendered files, secrets only in 0600 files, one source of truth for the wiring, preflight."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sagaz_lakehouse import config, render, tables, wiring
from sagaz_lakehouse.config import ConfigError, Credentials
from sagaz_lakehouse.drivers.local import LocalDriver

pytestmark = pytest.mark.unit
CREDS = Credentials("local-access", "local-secret-value")


def rendered(tmp_path: Path, **overrides: str) -> dict[str, render.RenderedFile]:
    settings = config.load(overrides={"local.run_dir": str(tmp_path / "run"), **overrides}, environ={})
    return {f.path: f for f in render.render(settings, CREDS, "local")}


def parse(text: str, separator: str) -> dict[str, str]:
    pairs = (line.split(separator, 1) for line in text.splitlines() if separator in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_credentials_only_in_private_files(tmp_path):
    files = rendered(tmp_path)
    holders = {path for path, f in files.items() if CREDS.secret_key in f.content}
    assert holders, "the server configs must carry the credentials on the local target"
    assert all(files[path].secret for path in holders)
    assert not any("${S3_" in f.content for f in files.values()), "placeholders must be substituted"
    written = render.write_files(list(files.values()), tmp_path / "out")
    for path in written:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o600 if CREDS.secret_key in path.read_text() else 0o644), path


def test_every_consumer_sees_the_same_lake(tmp_path):
    files = rendered(tmp_path, **{"lake.bucket": "sagas-bucket", "lake.region": "eu-west-1"})
    coordinator = parse(files["config/fluss-coordinator/server.yaml"].content, ":")
    tablet = parse(files["config/fluss-tablet-0/server.yaml"].content, ":")
    trino = parse(files["config/trino/catalog/iceberg.properties"].content, "=")
    catalog = parse(files["config/rest-catalog/catalog.env"].content, "=")
    warehouse = "s3://sagas-bucket/warehouse"
    assert coordinator["datalake.iceberg.warehouse"] == tablet["datalake.iceberg.warehouse"] == warehouse
    assert trino["iceberg.rest-catalog.warehouse"] == catalog["CATALOG_WAREHOUSE"] == warehouse
    endpoint = "http://127.0.0.1:9000"
    assert coordinator["s3.endpoint"] == coordinator["datalake.iceberg.s3.endpoint"] == trino["s3.endpoint"] == \
        catalog["CATALOG_S3_ENDPOINT"] == endpoint
    assert coordinator["s3.region"] == trino["s3.region"] == catalog["AWS_REGION"] == "eu-west-1"
    assert coordinator["datalake.format"] == "iceberg"
    settings = config.load(overrides={"lake.bucket": "sagas-bucket", "lake.region": "eu-west-1"}, environ={})
    args = wiring.tiering_job_arguments(settings)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--datalake.iceberg.warehouse"] == warehouse and pairs["--datalake.iceberg.s3.endpoint"] == endpoint
    assert not any("secret" in a or "access-key" in a for a in args), "credentials stay out of job arguments"
    assert pairs["--fluss.tiering.poll.table.interval"] == "2s"  # dev; the upstream 30 s would dominate latency
    prod = config.load(overrides={"profile": "prod", "lake.tiering_poll": "5s"}, environ={})
    prod_args = wiring.tiering_job_arguments(prod)
    assert prod_args[prod_args.index("--fluss.tiering.poll.table.interval") + 1] == "5s"


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
    settings = config.load(environ={})
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
        settings = config.load(overrides={"ports.trino": str(port), "local.run_dir": str(tmp_path / "run")},
                               environ={})
        with pytest.raises(ConfigError) as excinfo:
            LocalDriver(settings, tmp_path, progress=lambda _m: None).up(dry_run=False)
    assert excinfo.value.exit_code == 2
    assert f"port {port}" in str(excinfo.value) and "trino" in str(excinfo.value)
    assert not (tmp_path / "run").exists(), "nothing may be started or written"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_dry_run_lists_components_and_changes_nothing(tmp_path):
    names = ["zookeeper", "fluss_coordinator", "fluss_tablet", "minio", "minio_console", "rest_catalog",
             "flink_rest", "flink_rpc", "trino"]
    ports = {f"ports.{name}": str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}
    settings = config.load(overrides={"local.run_dir": str(tmp_path / "run"), **ports}, environ={})
    result = LocalDriver(settings, tmp_path, progress=lambda _m: None).up(dry_run=True)
    assert result["dry_run"] is True and "fluss-coordinator" in result["would_start"]
    assert not (tmp_path / "run").exists()
    assert config.mebibytes("2Gi") == 2048 and config.mebibytes("512Mi") == 512 and config.mebibytes("1.5Ki") == 1
