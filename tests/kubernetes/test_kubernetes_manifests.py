"""Kubernetes manifests: strictly valid for the pinned Kubernetes version, complete, and consistent with the wiring."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml
from manifest_helpers import CREDENTIALS, containers, properties, render_variant, settings_for

from sagaz_lakehouse import artifacts, config, render, versions, wiring
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import DEV_CREDENTIALS
from sagaz_lakehouse.targets import kubernetes as k8s

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LABELS = ("name", "instance", "component", "part-of", "managed-by", "version")


def validator():
    """kubernetes-validate is a test dependency: missing, the test fails (never skips)."""
    try:
        import kubernetes_validate
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.fail(f"kubernetes-validate is not installed ({exc}): pip install -e '.[test]'", pytrace=False)
    return kubernetes_validate


# ------------------------------------------------------------------------------------------ schema validation


def test_every_object_is_valid_for_the_pinned_kubernetes_version(variant):
    kv = validator()
    problems = []
    for path, obj in variant.objects:
        try:
            kv.validate(obj, versions.KUBERNETES, strict=True)
        except kv.ValidationError as exc:
            problems.append(f"{path}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_validation_is_strict_and_can_fail(default):
    kv = validator()
    deployment = default.get("Deployment", s.TRINO)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}  # a typo'd field
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, versions.KUBERNETES, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, versions.KUBERNETES, strict=True)


def test_pinned_version_is_one_the_validator_ships():
    kv = validator()
    assert kv.validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
                       versions.KUBERNETES, strict=True) == versions.KUBERNETES


# ------------------------------------------------------------------------------------------------ structure


def test_workload_kinds(variant):
    rep = variant.settings.replicas
    stateful = {o["metadata"]["name"]: o for o in variant.of_kind("StatefulSet")}
    deployments = {o["metadata"]["name"]: o for o in variant.of_kind("Deployment")}
    jobs = {o["metadata"]["name"] for o in variant.of_kind("Job")}
    assert set(stateful) == {s.ZOOKEEPER, s.MINIO, s.REST_CATALOG, s.COORDINATOR, s.TABLET}
    expected = {s.JOBMANAGER, s.TASKMANAGER, s.TRINO} | ({s.TRINO_WORKER} if rep.trino_workers else set())
    assert set(deployments) == expected
    assert jobs == {s.CREATE_BUCKET, s.SUBMIT_TIERING}
    assert stateful[s.TABLET]["spec"]["replicas"] == rep.tablet_servers
    assert deployments[s.TASKMANAGER]["spec"]["replicas"] == rep.flink_taskmanagers
    if rep.trino_workers:
        assert deployments[s.TRINO_WORKER]["spec"]["replicas"] == rep.trino_workers
    assert len(variant.of_kind("Namespace")) == 1 and len(variant.of_kind("Secret")) == 1


def test_stateful_parts_claim_their_volume_size(variant):
    vol, sc = variant.settings.volumes, variant.settings.volumes.storage_class
    sizes = {s.ZOOKEEPER: vol.zookeeper, s.MINIO: vol.minio, s.REST_CATALOG: vol.rest_catalog, s.TABLET: vol.fluss}
    for name, size in sizes.items():
        (claim,) = variant.get("StatefulSet", name)["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == size
        assert claim["spec"].get("storageClassName", "") == sc
        mounts = [m for c in containers(variant.get("StatefulSet", name)) for m in c.get("volumeMounts", [])]
        assert any(m["name"] == claim["metadata"]["name"] for m in mounts), f"{name} does not mount its claim"
    # The REST catalog's sqlite file lives on its claim.
    env = {e["name"]: e.get("value") for e in next(containers(variant.get("StatefulSet", s.REST_CATALOG)))["env"]}
    data_path = s.build_stack(variant.settings).get(s.REST_CATALOG).data_path
    assert env["CATALOG_URI"].startswith(f"jdbc:sqlite:file:{data_path}/")


def test_every_statefulset_has_its_headless_service(variant):
    services = {o["metadata"]["name"]: o for o in variant.of_kind("Service")}
    for sts in variant.of_kind("StatefulSet"):
        headless = services[sts["spec"]["serviceName"]]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]


def test_every_object_in_the_namespace_with_all_labels(variant):
    ns = variant.settings.namespace
    assert variant.of_kind("Namespace")[0]["metadata"]["name"] == ns
    for _, obj in variant.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == ns
        for key in LABELS:
            assert obj["metadata"]["labels"].get(f"app.kubernetes.io/{key}"), (obj["metadata"]["name"], key)
    for workload in variant.workloads():
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert all(pod_labels.get(f"app.kubernetes.io/{key}") for key in LABELS)


def test_service_selectors_and_target_ports_match_a_pod(variant):
    pods = [(w["spec"]["template"]["metadata"]["labels"], list(containers(w, init=False)))
            for w in variant.workloads()]
    for service in variant.of_kind("Service"):
        selector = service["spec"]["selector"]
        matching = [cs for labels, cs in pods if all(labels.get(k) == v for k, v in selector.items())]
        assert matching, f"Service {service['metadata']['name']} selects no pod"
        named = {p["name"] for cs in matching for c in cs for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named, (service["metadata"]["name"], port)


def test_selectors_match_their_own_pod_template(variant):
    for workload in variant.of_kind("StatefulSet") + variant.of_kind("Deployment"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_every_config_map_and_secret_reference_exists(variant):
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in variant.of_kind("ConfigMap")}
    secrets = {o["metadata"]["name"]: o["stringData"] for o in variant.of_kind("Secret")}
    for workload in variant.workloads():
        spec = workload["spec"]["template"]["spec"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
        for container in containers(workload):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["key"] in secrets[ref["secretKeyRef"]["name"]]
            for source in container.get("envFrom", []):
                assert (source.get("configMapRef", {}).get("name") in config_maps
                        or source.get("secretRef", {}).get("name") in secrets)
            volumes = {v["name"] for v in spec.get("volumes", [])}
            volumes |= {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (workload["metadata"]["name"], mount)


def test_probes_on_every_long_running_container(variant):
    for workload in variant.of_kind("StatefulSet") + variant.of_kind("Deployment"):
        for container in containers(workload, init=False):
            assert "readinessProbe" in container and "livenessProbe" in container, workload["metadata"]["name"]


def test_probes_follow_the_stack_health_checks(variant):
    stack = s.build_stack(variant.settings)
    kinds = {"http": "httpGet", "tcp": "tcpSocket", "command": "exec"}
    for component in stack.services:
        if component.health is None:
            continue
        workload = next(w for w in variant.workloads() if w["metadata"]["name"] == component.name)
        container = next(containers(workload, init=False))
        probe = container["readinessProbe"]
        assert kinds[component.health.kind] in probe
        if component.health.kind == "http":
            assert probe["httpGet"]["path"] == component.health.path
        if component.health.kind == "command":
            assert probe["exec"]["command"] == list(component.health.command)
        port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
        if port is not None:  # probes hit a port the container declares
            assert port in {p["containerPort"] for p in container["ports"]}


def test_images_pinned_and_init_containers_included(variant):
    for workload in variant.workloads():
        for container in containers(workload):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag and tag and tag != "latest", image


def test_memory_from_settings_and_pods_non_root(variant):
    stack = s.build_stack(variant.settings)
    for component in stack.components:
        workload = next(w for w in variant.workloads() if w["metadata"]["name"] == component.name)
        main = next(containers(workload, init=False))
        limit = main["resources"]["limits"]["memory"]
        assert main["resources"]["requests"]["memory"] == limit
        if component.memory and component.name not in (s.TRINO, s.TRINO_WORKER):
            assert config.mebibytes(limit) == config.mebibytes(component.memory)
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0 and pod["fsGroup"] > 0
        for container in containers(workload):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_trino_heap_fits_its_container(variant):
    trino = variant.get("Deployment", s.TRINO)
    limit = config.mebibytes(next(containers(trino))["resources"]["limits"]["memory"])
    jvm = variant.config_data("trino-config")["jvm.config"]
    heap = int(re.search(r"-Xmx(\d+)m", jvm).group(1))
    assert heap == config.mebibytes(variant.settings.memory.trino) and heap < limit


# ----------------------------------------------------------------------------------- cross-component wiring


def test_bucket_warehouse_endpoint_region_agree_everywhere(variant):
    st = variant.settings
    warehouse = f"s3://{st.lake.bucket}/{st.lake.warehouse}"
    endpoint = f"http://{s.MINIO}:{st.ports.minio}"
    fluss = [properties(variant.config_data("fluss-config")[key], ":") for key in ("coordinator.yaml", "tablet.yaml")]
    for props in fluss:
        assert props["datalake.iceberg.warehouse"] == warehouse
        assert props["s3.endpoint"] == props["datalake.iceberg.s3.endpoint"] == endpoint
        assert props["s3.region"] == props["datalake.iceberg.client.region"] == st.lake.region
        assert props["remote.data.dir"].startswith(f"s3://{st.lake.bucket}/")
        assert props["datalake.iceberg.uri"] == f"http://{s.REST_CATALOG}:{st.ports.rest_catalog}"
    args = next(containers(variant.get("Job", s.SUBMIT_TIERING), init=False))["args"]
    tiering = dict(zip(args[::2], args[1::2], strict=True))
    assert tiering["--datalake.iceberg.warehouse"] == warehouse
    assert tiering["--datalake.iceberg.s3.endpoint"] == endpoint
    assert tiering["--datalake.iceberg.client.region"] == st.lake.region
    assert tiering["--fluss.bootstrap.servers"] == f"{s.COORDINATOR}:{s.INTERNAL_FLUSS_PEER_PORT}"
    trino = properties(variant.config_data("trino-catalog")["iceberg.properties"], "=")
    assert trino["iceberg.rest-catalog.warehouse"] == warehouse
    assert trino["s3.endpoint"] == endpoint and trino["s3.region"] == st.lake.region
    assert trino["iceberg.rest-catalog.uri"] == fluss[0]["datalake.iceberg.uri"]
    rest = {e["name"]: e.get("value") for e in next(containers(variant.get("StatefulSet", s.REST_CATALOG)))["env"]}
    assert rest["CATALOG_WAREHOUSE"] == warehouse and rest["CATALOG_S3_ENDPOINT"] == endpoint
    assert rest["CATALOG_CLIENT_REGION"] == rest["AWS_REGION"] == st.lake.region
    bucket_job = {e["name"]: e.get("value") for e in next(containers(variant.get("Job", s.CREATE_BUCKET)))["env"]}
    assert bucket_job["BUCKET"] == st.lake.bucket and bucket_job["S3_ENDPOINT"] == endpoint


def test_configured_addresses_are_services_with_those_ports(variant):
    services = {o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]} for o in variant.of_kind("Service")}
    ep = wiring.endpoints(variant.settings, s.View.INTERNAL)
    for address in (ep.zookeeper, ep.fluss_bootstrap, ep.s3, ep.rest_catalog, ep.flink_rest, ep.trino):
        host, port = address.split("//")[-1].rsplit(":", 1)
        assert int(port) in services[host], address


def test_trino_catalog_reads_credentials_from_its_environment(default):
    trino = properties(default.config_data("trino-catalog")["iceberg.properties"], "=")
    assert trino["s3.aws-access-key"] == "${ENV:S3_ACCESS_KEY}"
    env = {e["name"] for e in next(containers(default.get("Deployment", s.TRINO)))["env"]}
    assert {"S3_ACCESS_KEY", "S3_SECRET_KEY"} <= env


def test_fluss_config_matches_wiring_except_per_pod_keys(variant):
    st = variant.settings
    coordinator = properties(variant.config_data("fluss-config")["coordinator.yaml"], ":")
    expected = {k: v.strip() for k, v in wiring.fluss_coordinator_properties(st).items() if k != "bind.listeners"}
    assert coordinator == expected
    tablet = properties(variant.config_data("fluss-config")["tablet.yaml"], ":")
    for i in range(st.replicas.tablet_servers):
        wired = {k: v.strip() for k, v in wiring.fluss_tablet_properties(st, i).items() if k not in k8s.POD_SPECIFIC}
        assert tablet == wired


def test_locked_jars_are_fetched_verified_and_mounted(default):
    lock = artifacts.load_lock()
    plan = {s.COORDINATOR: ("StatefulSet", "fluss-iceberg-extras", k8s.FLUSS_PLUGIN_DIR),
            s.TABLET: ("StatefulSet", "fluss-iceberg-extras", k8s.FLUSS_PLUGIN_DIR),
            s.JOBMANAGER: ("Deployment", "flink-lib-fluss", k8s.FLINK_LIB_DIR),
            s.TASKMANAGER: ("Deployment", "flink-lib-fluss", k8s.FLINK_LIB_DIR),
            s.SUBMIT_TIERING: ("Job", "flink-lib-fluss", k8s.FLINK_LIB_DIR)}
    for name, (kind, group, directory) in plan.items():
        workload = default.get(kind, name)
        init = workload["spec"]["template"]["spec"]["initContainers"][0]
        triples = list(zip(init["args"][1::3], init["args"][2::3], init["args"][3::3], strict=True))
        for item in lock[group]:
            url = f"{default.settings.local.maven_repository}/{item.path}"
            assert (url, item.sha256, item.name) in triples
        mounts = {m["mountPath"] for m in next(containers(workload, init=False))["volumeMounts"]}
        assert {f"{directory}/{a.name}" for a in lock[group]} <= mounts
    tiering_jar = lock["tiering-job"][0]
    init = default.get("Job", s.SUBMIT_TIERING)["spec"]["template"]["spec"]["initContainers"][0]
    assert tiering_jar.sha256 in init["args"]
    script = next(containers(default.get("Job", s.SUBMIT_TIERING), init=False))["command"][2]
    assert f"{k8s.ARTIFACTS_DIR}/{tiering_jar.name}" in script and wiring.TIERING_MAIN_CLASS in script


# ------------------------------------------------------------------------------------------------- secrets


def test_secret_values_only_in_the_secret_file(variant):
    holders = [path for path, f in variant.files.items()
               if CREDENTIALS.secret_key in f.content or CREDENTIALS.access_key in f.content]
    assert holders == ["10-secret.yaml"]
    assert [path for path, f in variant.files.items() if f.secret] == ["10-secret.yaml"]
    secret = variant.get("Secret", k8s.SECRET_NAME)
    assert secret["stringData"] == {"S3_ACCESS_KEY": CREDENTIALS.access_key, "S3_SECRET_KEY": CREDENTIALS.secret_key}


def test_secret_file_written_0600(tmp_path, default):
    render.write_files(list(default.files.values()), tmp_path)
    for path, item in default.files.items():
        mode = stat.S_IMODE((tmp_path / path).stat().st_mode)
        assert mode == (0o600 if item.secret else 0o644), path


# --------------------------------------------------------------------------------------- kustomize, drift


def test_kustomization_lists_every_file_once(variant):
    kustomization = yaml.safe_load(variant.files["kustomization.yaml"].content)
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == sorted(p for p in variant.files if p != "kustomization.yaml")


def test_rendered_defaults_in_manifests_match_the_templates():
    """manifests/kubernetes holds `render --target kubernetes` of the defaults (dev profile, dev credentials)."""
    folder = REPO / "manifests" / "kubernetes"
    rendered = {f.path: f.content for f in render.render(settings_for(), DEV_CREDENTIALS, "kubernetes")}
    on_disk = {p.name: p.read_text() for p in folder.glob("*.yaml")}
    stale = sorted(set(rendered) ^ set(on_disk)) + sorted(p for p in rendered if on_disk.get(p, rendered[p])
                                                          != rendered[p])
    assert not stale, f"manifests/kubernetes drifted from the templates ({stale}): run `make manifests`"


def test_render_target_kubernetes_from_a_local_settings_file():
    """The renderer must not borrow loopback addresses when the settings say target: local."""
    local = render.render(settings_for(target="local"), DEV_CREDENTIALS, "kubernetes")
    assert local == render.render(settings_for(), DEV_CREDENTIALS, "kubernetes")


# ----------------------------------------------------------------------------------------- checksums


def checksums(rendered) -> dict[str, str]:
    return {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["annotations"][k8s.CHECKSUM_ANNOTATION]
            for w in rendered.workloads()}


def test_checksum_changes_with_config_and_only_then(default):
    assert checksums(render_variant({})) == checksums(default)  # deterministic
    region = checksums(render_variant({"lake.region": "eu-central-1"}))
    for name in (s.COORDINATOR, s.TABLET, s.TRINO, s.REST_CATALOG, s.SUBMIT_TIERING, s.JOBMANAGER):
        assert region[name] != checksums(default)[name], name
    assert region[s.ZOOKEEPER] == checksums(default)[s.ZOOKEEPER]
    # Scaling changes no configuration file: nothing rolls because of it.
    scaled = checksums(render_variant({"replicas.tablet_servers": 3, "replicas.flink_taskmanagers": 2}))
    assert scaled == checksums(default)
    # A Flink-only setting rolls Flink and nothing else.
    slots = checksums(render_variant({"replicas.flink_task_slots": 4}))
    assert {n for n in slots if slots[n] != checksums(default)[n]} == {s.JOBMANAGER, s.TASKMANAGER}
    # Credentials are not configuration: the checksum never depends on them.
    assert checksums(render_variant({}, DEV_CREDENTIALS)) == checksums(default)
