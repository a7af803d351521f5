"""The rendered compose project: complete, consistent with the stack model, the S3 keys only in .env and every
other secret only in the 0600 secret files.

Fast checks on the rendered files themselves; the real validators (Compose JSON schema, `docker-compose config`)
run in test_compose_schema.py and test_compose_config.py.
"""

from __future__ import annotations

import re
import stat

import pytest
from compose_helpers import VARIANTS, compose_document, rendered, write_variant
from support import REPO

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import addresses, config
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import build_stack, tasks
from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets.base import render
from sagaz_lakehouse.targets.compose import layout as target

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


def test_every_instance_is_a_service_named_as_on_every_target(variant):
    settings, _, _, doc = variant
    stack = build_stack(settings, View.INTERNAL)
    expected = [name for _, name in stack.instances()]
    assert [n for n in doc["services"] if n != target.VOLUME_OWNER] == expected
    tablets = [n for n in expected if n.startswith(f"{s.TABLET}-")]
    assert tablets == [f"{s.TABLET}-{i}" for i in range(settings.replicas.tablet_servers)]
    taskmanagers = [n for n in expected if n.startswith(f"{s.TASKMANAGER}-")]
    assert taskmanagers == [f"{s.TASKMANAGER}-{i}" for i in range(settings.replicas.flink_taskmanagers)]
    assert doc["name"] == settings.project


def test_healthchecks_and_depends_on(variant):
    settings, _, _, doc = variant
    services = doc["services"]
    one_shots = {s.CREATE_BUCKET, s.SUBMIT_TIERING, target.VOLUME_OWNER}
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
    # The tiering job needs every TaskManager registered and every tablet server up.
    waits = set(services[s.SUBMIT_TIERING]["depends_on"])
    assert {f"{s.TASKMANAGER}-{i}" for i in range(settings.replicas.flink_taskmanagers)} <= waits
    assert {f"{s.TABLET}-{i}" for i in range(settings.replicas.tablet_servers)} <= waits


def test_health_checks_follow_the_model(variant):
    _, _, _, doc = variant
    services = doc["services"]
    trino = " ".join(services[s.TRINO]["healthcheck"]["test"])
    assert "/v1/info" in trino and "starting" in trino  # ready only once Trino stops reporting "starting"
    for name, svc in services.items():
        if name.startswith(f"{s.TASKMANAGER}-"):
            check = " ".join(svc["healthcheck"]["test"])
            assert f"http://{s.JOBMANAGER}:" in check and "/taskmanagers" in check and f'"id":"{name}"' in check
            assert f"-Dtaskmanager.resource-id={name}" in svc["command"]
    assert "srvr" in " ".join(services[s.ZOOKEEPER]["healthcheck"]["test"])


def test_health_check_timing_comes_from_each_components_start_budget(variant):
    """A service has its start_seconds to pass its check once; after that a few failures in a row make it unhealthy,
    so `up --wait` stops at the broken service instead of waiting out the timeout."""
    settings, _, _, doc = variant
    stack = build_stack(settings, View.INTERNAL)
    for component, name in stack.instances():
        check = doc["services"][name].get("healthcheck")
        if component.health is None:
            assert check is None
            continue
        assert check["start_period"] == f"{component.start_seconds}s", name
        assert check["retries"] * int(check["interval"].rstrip("s")) <= 60, name
    assert doc["services"][s.ZOOKEEPER]["healthcheck"]["start_period"] == "60s"


def test_unused_image_volumes_get_a_tmpfs_not_an_anonymous_volume(variant):
    """The ZooKeeper image declares VOLUME /data /datalog /logs; only /data holds state (a named volume). Without a
    mount the engine creates an anonymous volume for the other two per container, left behind by every `down`."""
    _, _, _, doc = variant
    mounts = {m["target"]: m for m in doc["services"][s.ZOOKEEPER]["volumes"]}
    assert mounts["/data"]["type"] == "volume"
    for path in ("/datalog", "/logs"):
        assert mounts[path]["type"] == "tmpfs" and mounts[path]["tmpfs"]["size"] > 0
    assert "dataLogDir=/data/log" in (REPO_MANIFESTS / "config" / s.ZOOKEEPER / "zoo.cfg").read_text()


def test_rest_catalog_gets_its_port_as_a_catalog_property_only(variant):
    settings, _, _, doc = variant
    env = doc["services"][s.REST_CATALOG]["environment"]
    assert env["CATALOG_REST_PORT"] == str(settings.ports.rest_catalog)
    assert "REST_PORT" not in env  # read only by the image's own HEALTHCHECK, which the service replaces


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
    expected = {p.minio, p.minio_console, p.rest_catalog, p.flink_rest, p.trino, p.fluss_coordinator, p.prometheus}
    expected |= {p.fluss_tablet + i for i in range(settings.replicas.tablet_servers)}
    if settings.profile == "prod":  # Trino's HTTPS port; the SQL Gateway is off unless asked for
        expected.add(p.trino_https)
    else:
        expected.add(p.flink_sql_gateway)
    assert set(published) == expected  # zookeeper and the Flink RPC port stay inside the network


def test_each_tablet_has_its_own_id_port_listener_and_volume(variant):
    settings, _, _, doc = variant
    for i in range(settings.replicas.tablet_servers):
        name = f"{s.TABLET}-{i}"
        svc = doc["services"][name]
        props = fluss_properties(svc)
        port = settings.ports.fluss_tablet + i
        assert props["tablet-server.id"] == str(i)
        assert props["advertised.listeners"] == f"CLIENT://127.0.0.1:{port}"
        assert props["bind.listeners"] == (f"INTERNAL://{name}:{settings.ports.fluss_internal}, "
                                           f"CLIENT://{addresses.ANY_ADDRESS}:{addresses.FLUSS_CLIENT_PORT}")
        assert svc["ports"] == [f"127.0.0.1:{port}:{addresses.FLUSS_CLIENT_PORT}"]
        assert {"type": "volume", "source": f"{name}-data", "target": "/var/lib/fluss"} in svc["volumes"]


def test_named_volumes_for_all_state_owned_by_the_image_user(variant):
    settings, _, _, doc = variant
    declared = set(doc["volumes"])
    stack = build_stack(settings, View.INTERNAL)
    owner = doc["services"][target.VOLUME_OWNER]
    for component, name in stack.instances():
        svc = doc["services"][name]
        named = [m["source"] for m in svc.get("volumes", []) if m["type"] == "volume"]
        assert set(named) <= declared
        secrets = [f"{name}-secrets"] if target.secret_files(component, name) else []
        if component.stateful:
            assert named == [f"{name}-data", *secrets], f"{name} keeps state in one named volume"
            assert svc["depends_on"][target.VOLUME_OWNER]["condition"] == "service_completed_successfully"
            uid = svc["user"].split(":")[0]
            assert f"chown -R {uid}:{uid} /volumes/{name}-data" in owner["entrypoint"][-1]
    assert {m["source"] for m in owner["volumes"] if m["type"] == "volume"} == declared
    for component, name in stack.instances():  # each instance's secret files, copied into its own volume, 0400
        if target.secret_files(component, name):
            uid = doc["services"][name]["user"].split(":")[0]
            assert (f"install -m 0400 -o {uid} -g {uid} {target.PROJECT_SECRETS}/{name}/* /volumes/{name}-secrets/"
                    in owner["entrypoint"][-1])
            mount = next(m for m in doc["services"][name]["volumes"] if m["source"] == f"{name}-secrets")
            assert mount == {"type": "volume", "source": f"{name}-secrets", "target": "/etc/sagaz-lakehouse/secrets",
                             "read_only": True}


def test_no_service_runs_as_root_except_the_volume_owner(variant):
    _, _, _, doc = variant
    for name, svc in doc["services"].items():
        if name != target.VOLUME_OWNER:
            assert svc["user"].split(":")[0] != "0", name


def test_bind_mounts_never_create_missing_host_paths(variant):
    _, _, files, doc = variant
    rendered_paths = {f"./{f.path}" for f in files}
    for name, svc in doc["services"].items():
        for mount in svc.get("volumes", []):
            assert isinstance(mount, dict), f"{name}: short volume syntax creates missing host paths"
            if mount["type"] == "bind":
                assert mount["bind"]["create_host_path"] is False and mount["read_only"] is True
                source = mount["source"]
                if source == f"./{target.SECRETS_DIR}":  # the secret files, seen by volume-owner alone
                    assert name == target.VOLUME_OWNER
                    assert any(path.startswith(f"{source}/") for path in rendered_paths)
                    continue
                assert source in rendered_paths or source.startswith(f"./{target.JARS_DIR}/"), source


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
    submit = services[s.SUBMIT_TIERING]["command"]
    job = submit[submit.index("--") + 1:]
    pairs = dict(zip(job[::2], job[1::2], strict=True))
    assert pairs["--datalake.iceberg.warehouse"] == warehouse
    assert pairs["--datalake.iceberg.s3.endpoint"] == s3
    assert pairs["--datalake.iceberg.client.region"] == region
    assert pairs["--datalake.iceberg.uri"] == rest
    assert pairs["--fluss.bootstrap.servers"] == f"{s.COORDINATOR}:{settings.ports.fluss_internal}"
    trino = properties(by_path[f"config/{s.TRINO}/catalog/iceberg.properties"])
    assert trino["iceberg.rest-catalog.warehouse"] == warehouse
    assert trino["s3.endpoint"] == s3 and trino["s3.region"] == region
    assert trino["iceberg.rest-catalog.uri"] == rest
    assert trino["s3.path-style-access"] == "true"
    catalog = services[s.REST_CATALOG]["environment"]
    assert catalog["CATALOG_WAREHOUSE"] == warehouse
    assert catalog["CATALOG_S3_ENDPOINT"] == s3 and catalog["CATALOG_CLIENT_REGION"] == region
    bucket = services[s.CREATE_BUCKET]["command"]
    assert bucket[:6] == ["--endpoint", s3, "--bucket", settings.lake.bucket, "--region", region]
    grants = [arg for arg in bucket[6:] if arg.startswith("--grant=")]
    assert grants == bucket[6:] and bool(grants) == (settings.profile == "prod")
    assert all(arg.split("=", 2)[2].split(":")[0] in (addresses.REMOTE_DATA_PREFIX, settings.lake.warehouse)
               for arg in grants)


def test_bucket_task_runs_the_packaged_task_file_in_the_python_image(variant):
    settings, _, files, doc = variant
    by_path = {f.path: f.content for f in files}
    svc = doc["services"][s.CREATE_BUCKET]
    assert svc["image"] == settings.images.python
    assert svc["entrypoint"] == ["python3", f"{tasks.MOUNT_DIR}/tasks.py", s.CREATE_BUCKET]
    mount = next(m for m in svc["volumes"] if m["target"] == f"{tasks.MOUNT_DIR}/tasks.py")
    assert mount["source"] == "./config/shared/tasks.py"
    assert by_path["config/shared/tasks.py"] == tasks.TASKS_FILE.read_text()  # the very file the local target runs


def test_tiering_job_goes_in_with_flinks_own_client_from_the_flink_image(variant):
    """No jar upload in any profile: the task runs `flink run --detached` in the Flink image (as its user), with a
    client configuration naming the JobManager's REST API over the image's conf/."""
    settings, _, files, doc = variant
    by_path = {f.path: f.content for f in files}
    submit = doc["services"][s.SUBMIT_TIERING]
    assert submit["image"] == settings.images.flink and submit["user"] == "9999:9999"
    assert submit["entrypoint"] == ["bash", f"{tasks.MOUNT_DIR}/{tasks.SUBMIT_SCRIPT}"]
    script = by_path[f"config/shared/{tasks.SUBMIT_SCRIPT}"]
    assert "flink run --detached" in script and "/jars" not in script
    jar = tasks.tiering_jar()
    assert submit["command"][:5] == [f"http://{s.JOBMANAGER}:{settings.ports.flink_rest}",
                                     str(settings.replicas.flink_taskmanagers), tasks.TIERING_JOB_NAME,
                                     tasks.TIERING_MAIN_CLASS, jar]
    assert any(m["target"] == jar for m in submit["volumes"])
    client = by_path[f"config/{s.SUBMIT_TIERING}/config.yaml"]
    assert f"rest.address: {s.JOBMANAGER}\n" in client and f"rest.port: {settings.ports.flink_rest}\n" in client
    mounts = {m["target"]: m["source"] for m in submit["volumes"]}
    assert mounts["/opt/flink/conf/config.yaml"] == f"./config/{s.SUBMIT_TIERING}/config.yaml"


def test_images_pinned(variant):
    _, _, _, doc = variant
    for name, svc in doc["services"].items():
        image = svc["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image} is not pinned"


def test_memory_limits_from_settings(variant):
    """Each service's memory setting, plus the tmpfs folders it writes (their pages count toward its memory)."""
    settings, _, _, doc = variant
    services = doc["services"]
    stack = build_stack(settings, View.INTERNAL)

    def tmpfs(name: str) -> int:
        component = stack.resolve(name)[0][0]
        scratch = component.setup(target._instance(component, name)).container.scratch
        return sum(config.mebibytes(x.size) for x in scratch)

    assert services[s.ZOOKEEPER]["mem_limit"] == f"{config.mebibytes(settings.memory.zookeeper) + tmpfs(s.ZOOKEEPER)}m"
    tablet = config.mebibytes(settings.memory.fluss_tablet) + tmpfs(f"{s.TABLET}-0")
    assert services[f"{s.TABLET}-0"]["mem_limit"] == f"{tablet}m"
    # memory.trino is Trino's heap: the container gets room beyond it.
    assert int(services[s.TRINO]["mem_limit"][:-1]) > config.mebibytes(settings.memory.trino)
    for name, svc in services.items():
        if name not in (s.CREATE_BUCKET, s.SUBMIT_TIERING, target.VOLUME_OWNER):
            assert "mem_limit" in svc, name


def test_credentials_only_in_env_file_and_secret_files(variant, tmp_path):
    settings, creds, files, _doc = variant
    secret = [f.path for f in files if f.secret]
    assert secret[-1] == ".env" and all(path.startswith(f"{target.SECRETS_DIR}/") for path in secret[:-1])
    # dev: Prometheus's token for MinIO's metrics only; prod: the logins too
    assert (secret[:-1] == [f"{target.SECRETS_DIR}/{s.PROMETHEUS}/minio-token"]) == (settings.profile == "dev")
    for f in files:
        if f.path == ".env":
            continue
        for value in (creds.access_key, creds.secret_key):
            assert value not in f.content, f"a credential leaked into {f.path}"
        if not f.secret:
            for value in creds.secret_values():
                assert value not in f.content, f"a secret leaked into {f.path}"
            assert "PRIVATE KEY" not in f.content, f.path
    # Placeholders are compose references with a :? guard, or escaped ($$) where the container expands them itself.
    text = next(f.content for f in files if f.path == "compose.yaml")
    bare = re.findall(r"(?<!\$)\$\{S3_[A-Z_]+\}", text)
    assert not bare, f"unescaped placeholder without :? guard: {bare}"
    write_variant({"profile": settings.profile}, tmp_path)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_env_file_round_trips_awkward_values():
    from sagaz_lakehouse.config import Credentials

    creds = Credentials("a b-c", "x$y\"z\\w'")
    text = target.env_file(lakehouse.load_settings(overrides={"target": "compose"}), creds)
    assert "S3_SECRET_KEY=\"x\\$y\\\"z\\\\w'\"" in text


def test_env_file_in_prod_carries_each_role_s_keys():
    from sagaz_lakehouse.config import Credentials

    creds = Credentials("operator", "root-secret-value")
    settings = lakehouse.load_settings(overrides={"target": "compose", "profile": "prod"}, environ={
        "SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "operator", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "root-secret-value"})
    text = target.env_file(settings, creds)
    for role in ("fluss", "lake", "reader"):
        access, secret = creds.s3_keys(role)
        assert f'S3_{role.upper()}_ACCESS_KEY="{access}"' in text and f'S3_{role.upper()}_SECRET_KEY="{secret}"' in text
    assert 'S3_SECRET_KEY="root-secret-value"' in text


def test_trino_config(variant):
    settings, _, files, doc = variant
    paths = {f.path: f.content for f in files}
    folder = "secrets" if settings.profile == "prod" else "config"  # prod: it holds the nodes' shared secret
    coordinator = properties(paths[f"{folder}/{s.TRINO}/config.properties"])
    assert coordinator["http-server.http.port"] == str(settings.ports.trino)
    assert coordinator["catalog.config-dir"] == "/etc/trino/catalog"
    jvm = paths[f"config/{s.TRINO}/jvm.config"].splitlines()
    assert f"-Xmx{config.mebibytes(settings.memory.trino)}m" in jvm
    assert "-XX:G1NumCollectionsKeepPinned=10000000" in jvm  # upstream's JDK-8329528 workaround is kept
    if settings.replicas.trino_workers:
        worker = properties(paths[f"{folder}/{s.TRINO_WORKER}-0/config.properties"])
        assert worker["coordinator"] == "false"
        assert worker["discovery.uri"] == f"http://{s.TRINO}:{settings.ports.trino}"
        assert coordinator["node-scheduler.include-coordinator"] == "false"
        workers = [n for n in doc["services"] if n.startswith(f"{s.TRINO_WORKER}-")]
        assert len(workers) == settings.replicas.trino_workers
    else:
        assert not any(n.startswith(s.TRINO_WORKER) for n in doc["services"])
        assert coordinator["node-scheduler.include-coordinator"] == "true"


def test_addresses_come_from_the_view_not_the_target_setting():
    """A compose file rendered from settings whose target is local still wires services by name."""
    settings = lakehouse.load_settings(None, {"target": "local"}, environ={})
    files = render(settings, config.DEV_CREDENTIALS, "compose")
    doc = compose_document(files)
    assert "127.0.0.1:2181" not in fluss_properties(doc["services"][s.COORDINATOR])["zookeeper.address"]
    assert fluss_properties(doc["services"][s.COORDINATOR])["zookeeper.address"] == f"{s.ZOOKEEPER}:2181"


def test_manifests_match_templates():
    """manifests/compose holds the rendered defaults (dev profile, no .env: credentials are never committed);
    re-render with `make manifests` after changes."""
    settings = lakehouse.load_settings(None, {"target": "compose"}, environ={})
    files = [f for f in render(settings, config.PLACEHOLDER_CREDENTIALS, "compose") if not f.secret]
    drift = [f.path for f in files
             if not (REPO_MANIFESTS / f.path).exists() or (REPO_MANIFESTS / f.path).read_text() != f.content]
    expected = {f.path for f in files}
    extra = [str(p.relative_to(REPO_MANIFESTS)) for p in REPO_MANIFESTS.rglob("*")
             if p.is_file() and p.name != ".gitignore" and str(p.relative_to(REPO_MANIFESTS)) not in expected]
    assert not drift and not extra, (
        f"manifests/compose is out of date (differs: {drift}, not rendered any more: {extra}): run `make manifests`")


def test_every_service_is_hardened_and_owns_the_tmpfs_folders_it_writes(variant):
    """No capabilities (the volume owner: the three its commands use), no privilege gain, a read-only root, and each
    folder a service writes a tmpfs owned by the service's user: where the image has that folder, runc gives the
    tmpfs the folder's mode (0755 for Fluss's conf/ and Trino's data folder), so `mode=1777` alone left it root's
    and unwritable on a real engine."""
    settings, _, _, doc = variant
    stack = build_stack(settings, View.INTERNAL)
    for name, svc in doc["services"].items():
        assert svc["cap_drop"] == ["ALL"] and svc["read_only"] is True, name
        assert svc["security_opt"] == ["no-new-privileges:true"], name
        assert svc.get("cap_add", []) == (target.OWNER_CAPABILITIES if name == target.VOLUME_OWNER else []), name
        if name == target.VOLUME_OWNER:
            continue
        component = stack.resolve(name)[0][0]
        container = component.setup(target._instance(component, name)).container
        user = container.user
        assert svc["user"] == f"{user}:{user}", name
        entries = {entry.split(":", 1)[0]: dict(o.partition("=")[::2] for o in entry.split(":", 1)[1].split(","))
                   for entry in svc.get("tmpfs", [])}
        assert set(entries) == {x.path for x in container.scratch}, name
        for path, options in entries.items():
            assert options["uid"] == options["gid"] == str(user) and "exec" in options, (name, path)


def test_each_fluss_server_buffers_s3_uploads_where_a_whole_block_fits(variant):
    """S3A asks its buffer folder for a whole block's free space before each upload (Hadoop LocalDirAllocator): the
    tablets buffer on their volume; the coordinator, which has none, in its /tmp tmpfs, so its block must fit there
    beside what the image leaves (a 64 MiB block in a 64 MiB tmpfs stalled tiering on the real engine)."""
    from sagaz_lakehouse.components import fluss

    settings = variant[0]
    stack = build_stack(settings, View.INTERNAL)
    coordinator = stack.get(s.COORDINATOR)
    at = target._instance(coordinator, s.COORDINATOR)
    props = fluss.server_properties(settings, View.INTERNAL, s.COORDINATOR, at)
    assert "s3.buffer.dir" not in props and not coordinator.data_dir
    (tmp,) = [x for x in coordinator.setup(at).container.scratch if x.path == s.TMP]
    block = config.mebibytes(props["s3.multipart.size"].replace("M", "Mi"))
    assert 5 <= block <= config.mebibytes(tmp.size) - config.mebibytes(tmp.used) - 8
    tablet = stack.get(s.TABLET)
    tablet_at = target._instance(tablet, f"{s.TABLET}-0")
    assert fluss.server_properties(settings, View.INTERNAL, s.TABLET, tablet_at)["s3.buffer.dir"].startswith(
        tablet.data_dir)
