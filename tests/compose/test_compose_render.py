"""The rendered compose project: complete, consistent across components, secrets only in .env.

Fast checks on the rendered files themselves; the real validators (Compose JSON schema, `docker-compose config`)
run in test_compose_schema.py and test_compose_config.py.
"""

from __future__ import annotations

import re
import stat

import pytest
from compose_helpers import VARIANTS, compose_document, rendered, write_variant
from support import REPO

from sagaz_lakehouse import config, render, wiring
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.targets import compose as target

pytestmark = pytest.mark.unit
REPO_MANIFESTS = REPO / "manifests" / "compose"


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def variant(request):
    settings, creds, files = rendered(VARIANTS[request.param])
    return settings, creds, files, compose_document(files)


def fluss_properties(svc: dict) -> dict[str, str]:
    text = svc["environment"]["FLUSS_PROPERTIES"]
    return dict(line.split(": ", 1) for line in text.splitlines() if line.strip())


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_every_component_is_a_service(variant):
    settings, _, _, doc = variant
    services = doc["services"]
    stack = s.build_stack(settings)
    for component in stack.components:
        names = target.service_names(settings, component)
        assert set(names) <= set(services), component.name
    tablets = [n for n in services if n.startswith(f"{s.TABLET}-")]
    assert tablets == [f"{s.TABLET}-{i}" for i in range(settings.replicas.tablet_servers)]
    assert doc["name"] == settings.project


def test_healthchecks_and_depends_on(variant):
    _, _, _, doc = variant
    services = doc["services"]
    one_shots = {s.CREATE_BUCKET, s.SUBMIT_TIERING}
    for name, svc in services.items():
        if name in one_shots:
            assert svc["restart"] == "no" and "healthcheck" not in svc
        else:
            assert svc["healthcheck"]["test"][0] == "CMD", name
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on missing {dep}"
            if dep in one_shots:
                assert spec["condition"] == "service_completed_successfully"
            else:
                assert spec["condition"] == "service_healthy"
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"


def test_ports_published_on_loopback_only_for_external_endpoints(variant):
    settings, _, _, doc = variant
    published: dict[int, str] = {}
    for name, svc in doc["services"].items():
        for mapping in svc.get("ports", []):
            host, port, _container = mapping.split(":")
            assert host == "127.0.0.1"
            assert int(port) not in published, f"{name} and {published.get(int(port))} both publish {port}"
            published[int(port)] = name
    p = settings.ports
    expected = {p.minio, p.minio_console, p.rest_catalog, p.flink_rest, p.trino, p.fluss_coordinator}
    expected |= {p.fluss_tablet + i for i in range(settings.replicas.tablet_servers)}
    assert set(published) == expected  # zookeeper and the Flink RPC port stay inside the network


def test_each_tablet_has_its_own_id_port_and_advertised_listener(variant):
    settings, _, _, doc = variant
    for i in range(settings.replicas.tablet_servers):
        svc = doc["services"][f"{s.TABLET}-{i}"]
        props = fluss_properties(svc)
        port = settings.ports.fluss_tablet + i
        assert props["tablet-server.id"] == str(i)
        assert props["advertised.listeners"] == f"CLIENT://127.0.0.1:{port}"
        assert svc["ports"] == [f"127.0.0.1:{port}:{s.INTERNAL_FLUSS_PORT}"]
        assert f"{s.TABLET}-{i}-data:/var/lib/fluss" in svc["volumes"]


def test_named_volumes_for_all_state(variant):
    settings, _, _, doc = variant
    declared = set(doc["volumes"])
    stack = s.build_stack(settings)
    for component in stack.components:
        for name in target.service_names(settings, component):
            mounts = doc["services"][name].get("volumes", [])
            named = [m.split(":")[0] for m in mounts if not m.startswith("./")]
            assert set(named) <= declared
            if component.stateful:
                assert named, f"{name} keeps state but mounts no named volume"


def test_same_bucket_warehouse_endpoint_region_everywhere(variant):
    settings, _, files, doc = variant
    by_path = {f.path: f.content for f in files}
    services = doc["services"]
    warehouse = f"s3://{settings.lake.bucket}/{settings.lake.warehouse}"
    s3 = f"http://{s.MINIO}:{settings.ports.minio}"
    region = settings.lake.region
    rest = f"http://{s.REST_CATALOG}:{settings.ports.rest_catalog}"
    for name in [s.COORDINATOR] + [f"{s.TABLET}-{i}" for i in range(settings.replicas.tablet_servers)]:
        props = fluss_properties(services[name])
        assert props["datalake.iceberg.warehouse"] == warehouse
        assert props["datalake.iceberg.s3.endpoint"] == props["s3.endpoint"] == s3
        assert props["datalake.iceberg.client.region"] == props["s3.region"] == region
        assert props["datalake.iceberg.uri"] == rest
        assert props["remote.data.dir"].startswith(f"s3://{settings.lake.bucket}/")
    args = wiring.tiering_job_arguments(settings)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--datalake.iceberg.warehouse"] == warehouse
    assert pairs["--datalake.iceberg.s3.endpoint"] == s3
    assert pairs["--datalake.iceberg.client.region"] == region
    assert pairs["--datalake.iceberg.uri"] == rest
    script = by_path["scripts/submit-tiering.sh"]
    for key, value in pairs.items():
        assert f"{key} {value}" in script
    trino = properties(by_path["trino/catalog/iceberg.properties"])
    assert trino["iceberg.rest-catalog.warehouse"] == warehouse
    assert trino["s3.endpoint"] == s3 and trino["s3.region"] == region
    assert trino["iceberg.rest-catalog.uri"] == rest
    assert trino["s3.path-style-access"] == "true"
    catalog = services[s.REST_CATALOG]["environment"]
    assert catalog["CATALOG_WAREHOUSE"] == warehouse
    assert catalog["CATALOG_S3_ENDPOINT"] == s3 and catalog["CATALOG_CLIENT_REGION"] == region
    assert f"lake/{settings.lake.bucket}" in by_path["scripts/create-bucket.sh"]


def test_images_pinned(variant):
    _, _, _, doc = variant
    for name, svc in doc["services"].items():
        image = svc["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image} is not pinned"


def test_memory_limits_from_settings(variant):
    settings, _, _, doc = variant
    services = doc["services"]
    assert services[s.ZOOKEEPER]["mem_limit"] == f"{config.mebibytes(settings.memory.zookeeper)}m"
    assert services[f"{s.TABLET}-0"]["mem_limit"] == f"{config.mebibytes(settings.memory.fluss_tablet)}m"
    assert services[s.TRINO]["mem_limit"] == f"{config.mebibytes(settings.memory.trino)}m"
    for name, svc in services.items():
        if name not in (s.CREATE_BUCKET, s.SUBMIT_TIERING):
            assert "mem_limit" in svc, name


def test_credentials_only_in_env_file(variant, tmp_path):
    settings, creds, files, _doc = variant
    env_files = [f for f in files if f.secret]
    assert [f.path for f in env_files] == [".env"]
    for f in files:
        if f.secret:
            continue
        for value in (creds.access_key, creds.secret_key):
            assert value not in f.content, f"a credential leaked into {f.path}"
    # Placeholders are compose references, or escaped ($$) where the container expands them itself.
    text = next(f.content for f in files if f.path == "compose.yaml")
    bare = re.findall(r"(?<!\$)\$\{S3_[A-Z_]+\}", text)
    assert not bare, f"unescaped placeholder without :? guard: {bare}"
    write_variant({"profile": settings.profile}, tmp_path)
    mode = stat.S_IMODE((tmp_path / ".env").stat().st_mode)
    assert mode == 0o600


def test_env_file_round_trips_awkward_values():
    from sagaz_lakehouse.config import Credentials

    creds = Credentials("a b#c", "x$y\"z\\w'")
    text = target.env_file(creds)
    assert "S3_SECRET_KEY=\"x\\$y\\\"z\\\\w'\"" in text


def test_tiering_submission_is_idempotent_and_secret_free(variant):
    _settings, _, files, _ = variant
    script = next(f.content for f in files if f.path == "scripts/submit-tiering.sh")
    assert wiring.TIERING_JOB_NAME in script and "/jobs/overview" in script
    assert wiring.TIERING_MAIN_CLASS in script
    assert "access-key" not in script and "secret" not in script.lower().replace("secret-free", "")


def test_trino_worker_config(variant):
    settings, _, files, doc = variant
    paths = {f.path: f.content for f in files}
    coordinator = properties(paths["trino/coordinator/config.properties"])
    assert coordinator["http-server.http.port"] == str(settings.ports.trino)
    if settings.replicas.trino_workers:
        worker = properties(paths["trino/worker/config.properties"])
        assert worker["coordinator"] == "false"
        assert worker["discovery.uri"] == f"http://{s.TRINO}:{settings.ports.trino}"
        assert coordinator["node-scheduler.include-coordinator"] == "false"
        assert doc["services"][s.TRINO_WORKER].get("deploy", {}).get("replicas", 1) == settings.replicas.trino_workers
    else:
        assert s.TRINO_WORKER not in doc["services"]
        assert coordinator["node-scheduler.include-coordinator"] == "true"


def test_shell_scripts_parse(variant, tmp_path):
    import shutil
    import subprocess

    _, _, files, _ = variant
    for f in files:
        if f.path.endswith(".sh"):
            shell = "bash" if f.content.startswith("#!/usr/bin/env bash") else "sh"
            assert shutil.which(shell), f"{shell} is needed to syntax-check {f.path}"
            script = tmp_path / f.path.replace("/", "_")
            script.write_text(f.content)
            result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
            assert result.returncode == 0, result.stderr


def test_manifests_match_templates():
    """manifests/compose holds the rendered defaults (dev profile); re-render with `make manifests` after changes."""
    settings = config.load(None, {"target": "compose"}, environ={})
    files = render.render(settings, config.DEV_CREDENTIALS, "compose")
    drift = []
    for f in files:
        on_disk = REPO_MANIFESTS / f.path
        if not on_disk.exists() or on_disk.read_text() != f.content:
            drift.append(f.path)
    expected = {f.path for f in files}
    extra = [str(p.relative_to(REPO_MANIFESTS)) for p in REPO_MANIFESTS.rglob("*")
             if p.is_file() and str(p.relative_to(REPO_MANIFESTS)) not in expected]
    assert not drift and not extra, (
        f"manifests/compose is out of date (differs: {drift}, not rendered any more: {extra}): run `make manifests`")
