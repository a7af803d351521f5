"""Kubernetes manifests: strictly valid for the pinned Kubernetes version, complete, and consistent with the stack
model (sagaz_lakehouse/components) and its addresses."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import yaml
from manifest_helpers import CREDENTIALS, containers, env, properties, render_variant, settings_for
from support import REPO

from sagaz_lakehouse import addresses, artifacts, config, identities, render, security, tasks, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import flink as flink_component
from sagaz_lakehouse.components import fluss, trino
from sagaz_lakehouse.components import maintenance as maintenance_component
from sagaz_lakehouse.components import tasks as task_components
from sagaz_lakehouse.config import DEV_CREDENTIALS, PLACEHOLDER_CREDENTIALS, Credentials
from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets import base
from sagaz_lakehouse.targets.kubernetes import layout as k8s
from sagaz_lakehouse.targets.kubernetes.driver import CLUSTER_KINDS

LABELS = ("name", "instance", "component", "part-of", "managed-by", "version")
TOKEN = re.compile(r"\$\{INSTANCE_[A-Z_]+\}")


def validator():
    """kubernetes-validate is a test dependency: missing, the test fails (never skips)."""
    try:
        import kubernetes_validate
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.fail(f"kubernetes-validate is not installed ({exc}): pip install -e '.[test]'", pytrace=False)
    return kubernetes_validate


def fluss_component_conf() -> str:
    return fluss.CONF_DIR


def stack_of(rendered) -> s.Stack:
    return k8s.cluster_stack(rendered.settings)


def claim_mount(rendered, name: str) -> str:
    """Where a StatefulSet's claim is mounted in its container."""
    workload = rendered.workload(name)
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    (path,) = [m["mountPath"] for m in rendered.main(name)["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    return path


def port_of(container: dict, name: str) -> int:
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p["name"] == name]
    return number


def resolve(text: str, values: dict[str, str]) -> str:
    """What the pod's prelude does to a value: every ${INSTANCE_...} token replaced."""
    return TOKEN.sub(lambda m: values[m.group(0)[2:-1]], text)


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


def test_one_manifest_file_per_component(variant):
    stack = stack_of(variant)
    expected = ["00-namespace.yaml", "10-secret.yaml", "11-shared-config.yaml", "12-network-policy.yaml",
                *(f"{20 + i:02d}-{c.name}.yaml" for i, c in enumerate(stack.components)), "kustomization.yaml"]
    # Each component carries its own config; only files the model marks shared (the standard-library files the python
    # image runs: the tasks and lake maintenance) are in one map.
    assert list(variant.files) == expected
    shared = variant.config_data(k8s.SHARED_CONFIG)
    assert shared == {"tasks.py": task_components.TASKS_FILE.read_text(),
                      "maintenance.py": maintenance_component.MAINTENANCE_FILE.read_text(),
                      task_components.SUBMIT_SCRIPT: (REPO / "templates" / "tasks" / task_components.SUBMIT_SCRIPT)
                      .read_text()}
    for path, obj in variant.objects:
        if path[:1] == "2":
            component = stack.get(path[3:].removesuffix(".yaml"))
            assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == component.name, (path, obj["kind"])
            assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == component.software, (path, obj["kind"])


def test_network_policies_close_every_pod_and_open_only_the_model_ports(variant):
    """Default deny of both directions for every pod of the stack; each component's policy opens each port to
    exactly the components that reach it (Component.reaches), and a port for clients (Fluss client listeners,
    Trino, S3) also to pods labelled as this stack's clients, in any namespace."""
    stack = stack_of(variant)
    project = {"matchLabels": {"app.kubernetes.io/instance": variant.settings.project}}
    deny = variant.get("NetworkPolicy", k8s.DEFAULT_DENY)["spec"]
    assert deny == {"podSelector": project, "policyTypes": ["Ingress", "Egress"]}
    policies = {p["metadata"]["name"]: p["spec"] for p in variant.of_kind("NetworkPolicy")}
    assert set(policies) == {k8s.DEFAULT_DENY} | {c.name for c in stack.components}
    clients = {"namespaceSelector": {}, "podSelector": {"matchLabels": {k8s.CLIENT_LABEL: variant.settings.project}}}
    for component in (c for c in stack.components if c.ports):
        spec = policies[component.name]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component.name
        opened = {rule["ports"][0]["port"]: rule["from"] for rule in spec.get("ingress", [])}
        for port in component.ports:
            peers = {other.name for other in stack.components if (component.name, port.name) in other.reaches}
            allowed = [{"podSelector": {"matchLabels": {**project["matchLabels"],
                                                        "app.kubernetes.io/component": peer}}}
                       for peer in [c.name for c in stack.components if c.name in peers]]
            allowed += [clients] if port.clients else []
            assert opened.get(port.container, []) == allowed, (component.name, port.name)
    # the catalog: only Fluss, Flink and Trino, and the lake maintenance service Trino's maintenance runs through
    # (the CLI's port-forward aside)
    catalog = {rule["ports"][0]["port"]: rule["from"] for rule in policies[s.REST_CATALOG]["ingress"]}
    readers = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
               for peer in catalog[variant.settings.ports.rest_catalog]}
    assert readers == {s.COORDINATOR, s.TABLET, s.JOBMANAGER, s.TASKMANAGER, s.TRINO, s.LAKE_MAINTENANCE} | (
        {s.TRINO_WORKER} if variant.settings.replicas.trino_workers else set())
    anyone = sorted((c.name, p.name) for c in stack.components for p in c.ports if p.clients)
    trino = [(s.TRINO, "https")] if variant.settings.profile == "prod" else [(s.TRINO, "http")]
    assert anyone == sorted([(s.MINIO, "s3"), (s.COORDINATOR, "client"), (s.TABLET, "client"), *trino])
    if variant.settings.sql_gateway:  # no pod reaches the gateway: only a port-forward to its pod does
        assert "ingress" not in policies[s.FLINK_SQL_GATEWAY] and "Ingress" in policies[s.FLINK_SQL_GATEWAY][
            "policyTypes"]
    # No empty rule list: the API server drops it, and every later `up` would then see a change to apply.
    assert not [name for name, spec in policies.items() if [] in (spec.get("ingress"), spec.get("egress"))]


def test_a_readiness_check_that_asks_another_component_may_reach_it(variant):
    """A check ``via`` another component (a TaskManager is ready once the JobManager lists it) runs in the pod and
    connects from there: its NetworkPolicies must let it through (kube-router on the real node refused the
    TaskManager's startup probe until the JobManager's REST port was among its paths)."""
    for component in stack_of(variant).components:
        if component.health and component.health.via:
            assert (component.health.via, component.health.port) in component.reaches, component.name


def names_rack(rendered, name: str) -> bool:
    return any(c["name"] == "node-zone" for c in containers(rendered.workload(name)))


def egress_of(rendered, name: str) -> tuple[bool, dict[str, set[int]], set[int]]:
    """A component's egress: DNS allowed, the ports open per component it may reach, ports open to anywhere."""
    rules = rendered.get("NetworkPolicy", name)["spec"]["egress"]
    dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]} in rules
    peers: dict[str, set[int]] = {}
    anywhere: set[int] = set()
    for rule in rules:
        ports = {p["port"] for p in rule["ports"] if p["protocol"] == "TCP"}
        if "to" in rule:
            (peer,) = rule["to"]
            peers[peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]] = ports
        elif 53 not in ports:
            anywhere |= ports
    return dns, peers, anywhere


def test_egress_opens_dns_the_components_each_reaches_and_the_jar_repository_only(variant):
    st = variant.settings
    stack = stack_of(variant)
    for component in stack.components:
        dns, peers, anywhere = egress_of(variant, component.name)
        present = {c.name for c in stack.components}
        expected: dict[str, set[int]] = {}
        for name, port in component.reaches:
            if name in present:
                expected.setdefault(name, set()).add(stack.get(name).port(port).container)
        assert dns and peers == expected, component.name
        # the init container's download; the rack init container's question to the API server (its Service's port
        # and, after the Service's translation, the API server's own)
        assert anywhere == ({443} if component.jars else set()) | (
            {443, st.kubernetes.api_server_port} if names_rack(variant, component.name) else set()), component.name
    # the catalog is reached by Fluss, Flink, Trino and the lake maintenance service only: nothing else may even
    # send to it
    reach_catalog = {c.name for c in stack.components if s.REST_CATALOG in egress_of(variant, c.name)[1]}
    assert reach_catalog == {s.COORDINATOR, s.TABLET, s.JOBMANAGER, s.TASKMANAGER, s.TRINO, s.LAKE_MAINTENANCE} | (
        {s.TRINO_WORKER} if st.replicas.trino_workers else set())
    # MinIO's S3 API: the bucket task, the catalog, Fluss, Flink, Trino and Prometheus (its metrics)
    reach_s3 = {c.name for c in stack.components if s.MINIO in egress_of(variant, c.name)[1]}
    assert reach_s3 == {s.CREATE_BUCKET, s.REST_CATALOG, s.COORDINATOR, s.TABLET, s.JOBMANAGER, s.TASKMANAGER,
                        s.TRINO, s.PROMETHEUS} | ({s.TRINO_WORKER} if st.replicas.trino_workers else set())
    # ZooKeeper reaches nothing but, in an ensemble, its own servers' quorum ports
    ensemble = {s.ZOOKEEPER: {s.ZOOKEEPER_PEER_PORT, s.ZOOKEEPER_ELECTION_PORT}} if s.ensemble_size(st) > 1 else {}
    assert egress_of(variant, s.ZOOKEEPER)[1:] == (ensemble, set())


def test_the_namespace_enforces_the_restricted_pod_security_standard(variant):
    labels = variant.of_kind("Namespace")[0]["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == f"v{versions.KUBERNETES}"


def test_every_container_has_a_read_only_root_and_bounded_scratch(variant):
    """readOnlyRootFilesystem everywhere, init containers included; each folder an image writes (Container.scratch)
    an emptyDir with a size limit, Fluss's conf/ (server.yaml with the S3 keys expanded) in memory; ephemeral
    storage requested and limited by what those folders, the downloaded jars and the log may hold."""
    stack = stack_of(variant)
    for workload in variant.workloads():
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(workload):
            assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]},
                                                    "readOnlyRootFilesystem": True}, workload["metadata"]["name"]
            resources = container["resources"]
            request = config.mebibytes(resources["requests"]["ephemeral-storage"])
            assert 0 < request <= config.mebibytes(resources["limits"]["ephemeral-storage"])
        component = stack.get(component_of(workload))
        setup = component.setup(k8s.symbolic_instance(component))
        mounts = {m["mountPath"]: m["name"] for m in variant.main(component.name).get("volumeMounts", [])}
        for scratch in setup.container.scratch:
            empty = volumes[mounts[scratch.path]]["emptyDir"]
            assert config.mebibytes(empty["sizeLimit"]) == config.mebibytes(scratch.size)
            assert empty.get("medium") == ("Memory" if scratch.memory else None)
    fluss = stack.get(s.COORDINATOR).setup(k8s.symbolic_instance(stack.get(s.COORDINATOR))).container
    assert [x.path for x in fluss.scratch if x.memory] == [fluss_component_conf()]


def test_replicated_components_are_drained_one_instance_at_a_time(variant):
    stack = stack_of(variant)
    budgets = {b["metadata"]["name"]: b["spec"] for b in variant.of_kind("PodDisruptionBudget")}
    assert set(budgets) == {c.name for c in stack.components if c.replicas > 1}
    for name, spec in budgets.items():
        assert spec == {"maxUnavailable": 1, "selector": {"matchLabels": {
            "app.kubernetes.io/instance": variant.settings.project, "app.kubernetes.io/component": name}}}


def test_no_pod_gets_a_service_account_token(variant):
    for workload in variant.workloads():
        assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_workload_kinds(variant):
    rep = variant.settings.replicas
    stateful = {o["metadata"]["name"]: o for o in variant.of_kind("StatefulSet")}
    deployments = {o["metadata"]["name"]: o for o in variant.of_kind("Deployment")}
    jobs = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in variant.of_kind("Job")}
    # State (claims), replicas or an instance-aware configuration (the Fluss coordinator binds its pod IP): stable
    # pod names; the JobManager, the SQL Gateway, the Trino coordinator and lake maintenance need neither.
    # The bundled catalog keeps its state in PostgreSQL in prod (then it is a Deployment), else in its sqlite file.
    postgres = variant.settings.catalog_database == "postgresql"
    assert set(stateful) == ({s.ZOOKEEPER, s.MINIO, s.COORDINATOR, s.TABLET, s.TASKMANAGER, s.PROMETHEUS}
                             | ({s.CATALOG_DB} if postgres else {s.REST_CATALOG})
                             | ({s.TRINO_WORKER} if rep.trino_workers else set()))
    assert set(deployments) == {s.JOBMANAGER, s.TRINO, s.LAKE_MAINTENANCE} | (
        {s.FLINK_SQL_GATEWAY} if variant.settings.sql_gateway else set()) | ({s.REST_CATALOG} if postgres else set())
    assert jobs == {s.CREATE_BUCKET, s.SUBMIT_TIERING}
    assert stateful[s.TABLET]["spec"]["replicas"] == rep.tablet_servers
    assert stateful[s.TASKMANAGER]["spec"]["replicas"] == rep.flink_taskmanagers
    if rep.trino_workers:
        assert stateful[s.TRINO_WORKER]["spec"]["replicas"] == rep.trino_workers
    assert len(variant.of_kind("Namespace")) == 1 and len(variant.of_kind("Secret")) == 1


def test_pods_of_replicated_components_carry_the_instance_names(variant):
    """A StatefulSet names its pods <name>-<ordinal>: exactly the instance names `status` and `logs` use."""
    for component in stack_of(variant).components:
        if component.replicated:
            sts = variant.get("StatefulSet", component.name)
            pods = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
            assert pods == component.instance_names()


def test_stateful_parts_claim_their_volume_size(variant):
    vol, sc = variant.settings.volumes, variant.settings.volumes.storage_class
    postgres = variant.settings.catalog_database == "postgresql"
    sizes = {s.ZOOKEEPER: vol.zookeeper, s.MINIO: vol.minio, s.TABLET: vol.fluss, s.PROMETHEUS: vol.prometheus,
             **({s.CATALOG_DB: vol.catalog_db} if postgres else {s.REST_CATALOG: vol.rest_catalog})}
    stack = stack_of(variant)
    for name, size in sizes.items():
        (claim,) = variant.get("StatefulSet", name)["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == size
        assert claim["spec"].get("storageClassName", "") == sc
        assert claim_mount(variant, name) == stack.get(name).data_dir, f"{name} does not mount its claim"
    # Only those: the coordinator, TaskManagers and Trino workers keep nothing that must outlive their pod.
    claimed = {w["metadata"]["name"] for w in variant.of_kind("StatefulSet") if w["spec"].get("volumeClaimTemplates")}
    assert claimed == set(sizes) == {c.name for c in stack.components if c.stateful}
    rest = env(variant.main(s.REST_CATALOG))
    if postgres:  # prod: the tables in the catalog's PostgreSQL, never sqlite; its password never in a property
        assert rest["CATALOG_URI"] == "jdbc:postgresql://catalog-db:5432/iceberg_catalog"
        assert "CATALOG_JDBC_PASSWORD" not in rest
        assert not [path for path, f in variant.files.items() if "sqlite" in f.content], "sqlite in a prod render"
        return
    # The REST catalog's sqlite file lives on its claim.
    assert rest["CATALOG_URI"].startswith(f"jdbc:sqlite:file:{claim_mount(variant, s.REST_CATALOG)}/")
    # WAL and a 30 s busy timeout (sqlite-jdbc reads pragmas from the URL): no SQLITE_BUSY 500 under load.
    assert rest["CATALOG_URI"].endswith("/catalog.db?journal_mode=WAL&busy_timeout=30000")


def test_every_statefulset_has_its_headless_service(variant):
    services = {o["metadata"]["name"]: o for o in variant.of_kind("Service")}
    for sts in variant.of_kind("StatefulSet"):
        headless = services[sts["spec"]["serviceName"]]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]


def test_tablets_are_reached_one_by_one_never_through_a_load_balancing_service(variant):
    services = {o["metadata"]["name"] for o in variant.of_kind("Service")}
    assert f"{s.TABLET}-headless" in services and s.TABLET not in services


def test_every_object_in_the_namespace_with_all_labels(variant):
    ns = variant.settings.namespace
    assert variant.of_kind("Namespace")[0]["metadata"]["name"] == ns
    for _, obj in variant.objects:
        if obj["kind"] not in CLUSTER_KINDS:
            assert obj["metadata"]["namespace"] == ns
        else:  # a cluster-wide object of a stack carries its namespace in its name (another stack's may not clash)
            assert "namespace" not in obj["metadata"] and (obj["kind"] == "Namespace" or ns in obj["metadata"]["name"])
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
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for container in containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["key"] in secrets[ref["secretKeyRef"]["name"]]
            for source in container.get("envFrom", []):
                assert (source.get("configMapRef", {}).get("name") in config_maps
                        or source.get("secretRef", {}).get("name") in secrets)
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claims, (workload["metadata"]["name"], mount)
                source = volumes.get(mount["name"], {}).get("configMap")
                if source and "subPath" in mount:
                    # A missing key would not fail the pod: the kubelet would mount an empty directory instead.
                    assert mount["subPath"] in config_maps[source["name"]], (workload["metadata"]["name"], mount)


def test_each_component_mounts_its_own_config_map_file_by_file(variant):
    """<component>-config holds exactly the files the model says the image reads, each mounted read-only with
    subPath at the path the model gives (so the image's other files in that folder stay)."""
    config_maps = {o["metadata"]["name"]: o for o in variant.of_kind("ConfigMap")}
    expected_maps = {k8s.SHARED_CONFIG}
    for component in stack_of(variant).components:
        setup = component.setup(k8s.symbolic_instance(component))
        for item in (f for f in setup.files if f.mount and f.shared):
            assert variant.mounted_file(component.name, item.mount) == item.content, (component.name, item.mount)
        files = [f for f in setup.files if f.mount and not f.shared and not f.secret]
        for item in (f for f in setup.files if f.mount and f.secret):  # from the Secret, never a ConfigMap
            assert variant.mounted_file(component.name, item.mount) == identities.substitute_secrets(item.content,
                                                                                                   CREDENTIALS)
        name = f"{component.name}-config"
        if not files:
            assert name not in config_maps
            continue
        expected_maps.add(name)
        assert len(config_maps[name]["data"]) == len(files), name  # nothing the pod does not read
        for item in files:  # Trino's certificate (not a secret) filled in where Prometheus trusts it
            assert variant.mounted_file(component.name, item.mount) == identities.substitute_public(
                item.content, variant.settings, CREDENTIALS), (component.name, item.mount)
        mounts = [m for m in variant.main(component.name)["volumeMounts"] if "subPath" in m and m["name"] == "config"]
        assert {m["mountPath"] for m in mounts} == {f.mount for f in files}
        assert all(m["readOnly"] for m in mounts)
    assert set(config_maps) == expected_maps


def test_probes_on_every_long_running_container(variant):
    for workload in variant.of_kind("StatefulSet") + variant.of_kind("Deployment"):
        for container in containers(workload, init=False):
            assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container), workload["metadata"]["name"]


def probe_action(probe: dict) -> dict:
    return {k: v for k, v in probe.items() if k in ("exec", "httpGet", "tcpSocket", "grpc")}


def test_probes_follow_the_model_health_checks(variant):
    stack = stack_of(variant)
    st = variant.settings
    for component in stack.services:
        health = component.health
        assert health is not None, f"{component.name} has no health check in the model"
        container = variant.main(component.name)
        action = probe_action(container["readinessProbe"])
        assert action == probe_action(container["livenessProbe"]) == probe_action(container["startupProbe"])
        # Liveness cannot restart a component before the time the model gives it to start: the start-up probe
        # (which holds liveness back until it succeeds) allows at least that long.
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= component.start_seconds, component.name
        if health.kind == "tcp":
            assert action == {"tcpSocket": {"port": component.port(health.port).container}}
        elif health.kind == "http" and not health.expect and not health.via:
            assert action == {"httpGet": {"path": health.path, "port": component.port(health.port).container}}
        else:  # an expected answer, a four-letter word, or a question to another component: a command
            assert list(action) == ["exec"], component.name
        port = (action.get("httpGet") or action.get("tcpSocket") or {}).get("port")
        if port is not None:  # probes hit a port the container declares
            assert port in {p["containerPort"] for p in container["ports"]}
    # What the exec probes ask (tests/kubernetes/unit/test_kubernetes_scripts.py runs them).
    trinos = [s.TRINO] + ([s.TRINO_WORKER] if st.replicas.trino_workers else [])
    for name in trinos:
        command = " ".join(variant.main(name)["readinessProbe"]["exec"]["command"])
        assert f"http://127.0.0.1:{st.ports.trino}/v1/info" in command and '"starting":false' in command
    taskmanager = variant.main(s.TASKMANAGER)
    command = " ".join(taskmanager["readinessProbe"]["exec"]["command"])
    assert f"http://{s.JOBMANAGER}:{st.ports.flink_rest}/taskmanagers" in command and "$POD_NAME" in command
    assert env(taskmanager)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    command = " ".join(variant.main(s.ZOOKEEPER)["readinessProbe"]["exec"]["command"])
    assert f"/dev/tcp/127.0.0.1/{st.ports.zookeeper}" in command and "srvr" in command and "Mode:" in command


def test_images_pinned_and_init_containers_included(variant):
    for workload in variant.workloads():
        for container in containers(workload):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag and tag and tag != "latest", image


def test_memory_from_settings_and_pods_non_root(variant):
    for component in stack_of(variant).components:
        workload = variant.workload(component.name)
        main = variant.main(component.name)
        limit = main["resources"]["limits"]["memory"]
        assert main["resources"]["requests"]["memory"] == limit
        if component.memory:
            assert config.mebibytes(limit) == config.mebibytes(component.memory), component.name
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0 and pod["fsGroup"] > 0
        assert pod["runAsUser"] == component.setup(k8s.symbolic_instance(component)).container.user
        for container in containers(workload):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_trino_heap_fits_its_container(variant):
    st = variant.settings
    for name in [s.TRINO] + ([s.TRINO_WORKER] if st.replicas.trino_workers else []):
        limit = config.mebibytes(variant.main(name)["resources"]["limits"]["memory"])
        jvm = variant.mounted_file(name, f"{trino.CONF_DIR}/jvm.config")
        (heap,) = [int(x) for x in re.findall(r"^-Xmx(\d+)m$", jvm, re.MULTILINE)]
        assert heap == config.mebibytes(st.memory.trino) and heap < limit
        assert "MaxRAMPercentage" not in jvm  # one explicit heap, not a share of the container
        # Trino refuses to start unless query memory plus heap headroom (30% of the heap by default) fit the heap.
        server = properties(variant.mounted_file(name, trino_config_path(variant)), "=")
        per_node = int(server["query.max-memory-per-node"].removesuffix("MB"))
        assert per_node + 0.3 * heap <= heap


def trino_config_path(rendered) -> str:
    """Where Trino's config.properties is: /etc/trino, or in prod (it holds the nodes' shared secret) the secrets
    folder, which the launcher's --config names."""
    return f"{security.SECRETS_DIR}/config.properties" if rendered.settings.profile == "prod" \
        else "/etc/trino/config.properties"


def test_trino_reads_upstream_style_files_from_etc_trino(variant):
    st = variant.settings
    for name in [s.TRINO] + ([s.TRINO_WORKER] if st.replicas.trino_workers else []):
        container = variant.main(name)
        server = properties(variant.mounted_file(name, trino_config_path(variant)), "=")
        if st.profile == "prod":
            assert container["args"] == [trino.RUN_TRINO, f"--config={trino_config_path(variant)}"]
            assert server["internal-communication.shared-secret"] == CREDENTIALS.trino_shared_secret()
        node = properties(variant.mounted_file(name, "/etc/trino/node.properties"), "=")
        jvm = variant.mounted_file(name, "/etc/trino/jvm.config").splitlines()
        variant.mounted_file(name, "/etc/trino/catalog/iceberg.properties")
        variant.mounted_file(name, "/etc/trino/log.properties")
        assert server["coordinator"] == ("true" if name == s.TRINO else "false")
        assert server["http-server.http.port"] == str(port_of(container, "http"))
        assert server["catalog.config-dir"] == "/etc/trino/catalog"
        if name == s.TRINO:
            assert server["node-scheduler.include-coordinator"] == ("false" if st.replicas.trino_workers else "true")
        assert re.fullmatch(r"[a-z0-9_]+", node["node.environment"])  # Trino's rule for the environment name
        assert node["node.data-dir"] == trino.DATA_DIR
        # Upstream's jvm.config (core/docker/default/etc/jvm.config): its native agent first, the options that
        # keep a broken JVM from lingering, and the JDK-8329528 workaround.
        assert jvm[0] == "-agentpath:/usr/lib/trino/bin/libjvmkill.so"
        for option in ("-XX:+ExitOnOutOfMemoryError", "-XX:+HeapDumpOnOutOfMemoryError",
                       "-Djdk.attach.allowAttachSelf=true", "-XX:+EnableDynamicAgentLoading",
                       "-XX:+UnlockDiagnosticVMOptions", "-XX:G1NumCollectionsKeepPinned=10000000"):
            assert option in jvm, (name, option)
        assert jvm.index("-XX:+UnlockDiagnosticVMOptions") < jvm.index("-XX:G1NumCollectionsKeepPinned=10000000")


def test_zookeeper_reads_the_mounted_zoo_cfg(variant):
    st = variant.settings
    container = variant.main(s.ZOOKEEPER)
    # the entrypoint keeps our zoo.cfg; only an ensemble's server id comes from the environment (myid)
    ensemble = {"ZOO_MY_ID"} if s.ensemble_size(st) > 1 else set()
    assert {name for name in env(container) if name.startswith("ZOO_")} == ensemble
    cfg = properties(variant.mounted_file(s.ZOOKEEPER, "/conf/zoo.cfg"), "=")
    assert cfg["clientPort"] == str(st.ports.zookeeper) == str(port_of(container, "client"))
    assert "clientPortAddress" not in cfg  # every interface of the pod, so the Service reaches it
    assert cfg["dataDir"] == claim_mount(variant, s.ZOOKEEPER) and cfg["dataLogDir"].startswith(cfg["dataDir"] + "/")
    assert "srvr" in cfg["4lw.commands.whitelist"].split(",")  # the readiness check's four-letter word
    heap = int(env(container)["ZK_SERVER_HEAP"])
    assert 0 < heap < config.mebibytes(container["resources"]["limits"]["memory"])


# ----------------------------------------------------------------------------------- cross-component wiring


def fluss_properties(rendered, name: str) -> dict[str, str]:
    return properties(env(rendered.main(name))["FLUSS_PROPERTIES"], ":")


def submit_arguments(rendered) -> tuple[dict[str, str], list[str]]:
    """The submit-tiering container's arguments as its script reads them, and the tiering job's own."""
    container = rendered.main(s.SUBMIT_TIERING)
    assert container["command"] == ["bash", f"{task_components.MOUNT_DIR}/{task_components.SUBMIT_SCRIPT}"]
    rest, taskmanagers, name, main_class, jar, separator, *job = container["args"]
    assert separator == "--"
    return {"flink": rest, "taskmanagers": taskmanagers, "job_name": name, "main_class": main_class,
            "jar": jar}, job


def test_bucket_warehouse_endpoint_region_agree_everywhere(variant):
    st = variant.settings
    warehouse = f"s3://{st.lake.bucket}/{st.lake.warehouse}"
    endpoint = f"http://{s.MINIO}:{st.ports.minio}"
    catalog_uri = f"http://{s.REST_CATALOG}:{st.ports.rest_catalog}"
    for name in (s.COORDINATOR, s.TABLET):
        props = fluss_properties(variant, name)
        assert props["datalake.iceberg.warehouse"] == warehouse
        assert props["s3.endpoint"] == props["datalake.iceberg.s3.endpoint"] == endpoint
        assert props["s3.assumed.role.sts.endpoint"] == endpoint
        assert props["s3.region"] == props["datalake.iceberg.client.region"] == st.lake.region
        assert props["remote.data.dir"].startswith(f"s3://{st.lake.bucket}/")
        assert props["datalake.iceberg.uri"] == catalog_uri
    _, job_args = submit_arguments(variant)
    tiering = dict(zip(job_args[::2], job_args[1::2], strict=True))
    assert tiering["--datalake.iceberg.warehouse"] == warehouse
    assert tiering["--datalake.iceberg.s3.endpoint"] == endpoint
    assert tiering["--datalake.iceberg.client.region"] == st.lake.region
    assert tiering["--datalake.iceberg.uri"] == catalog_uri
    assert tiering["--fluss.bootstrap.servers"] == f"{s.COORDINATOR}:{st.ports.fluss_internal}"
    for name in (s.JOBMANAGER, s.TASKMANAGER):  # the tiering job's S3FileIO takes the region from here
        assert env(variant.main(name))["AWS_REGION"] == st.lake.region
    trino_catalog = properties(variant.mounted_file(s.TRINO, "/etc/trino/catalog/iceberg.properties"), "=")
    assert trino_catalog["iceberg.rest-catalog.warehouse"] == warehouse
    assert trino_catalog["s3.endpoint"] == endpoint and trino_catalog["s3.region"] == st.lake.region
    assert trino_catalog["iceberg.rest-catalog.uri"] == catalog_uri
    rest = env(variant.main(s.REST_CATALOG))
    assert rest["CATALOG_WAREHOUSE"] == warehouse and rest["CATALOG_S3_ENDPOINT"] == endpoint
    assert rest["CATALOG_CLIENT_REGION"] == rest["AWS_REGION"] == st.lake.region
    bucket_job = variant.main(s.CREATE_BUCKET)
    options = tasks.command_parser().parse_args([*bucket_job["command"][2:], *bucket_job["args"]])
    assert (options.bucket, options.endpoint, options.region) == (st.lake.bucket, endpoint, st.lake.region)


def test_configured_addresses_are_services_with_those_ports(variant):
    st = variant.settings
    services = {o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]} for o in variant.of_kind("Service")}
    ep = addresses.endpoints(st, View.INTERNAL)
    named = [ep.zookeeper, ep.fluss_bootstrap, ep.s3, ep.rest_catalog, ep.flink_rest, ep.trino]
    # ... and the named the rendered configuration itself names.
    for name in (s.COORDINATOR, s.TABLET):
        props = fluss_properties(variant, name)
        named += [props["zookeeper.address"], props["s3.endpoint"], props["datalake.iceberg.uri"]]
    flink = properties(variant.mounted_file(s.TASKMANAGER, f"{flink_component.CONF_DIR}/config.yaml"), ":")
    named.append(f"{flink['jobmanager.rpc.address']}:{flink['jobmanager.rpc.port']}")
    named.append(f"{flink['rest.address']}:{flink['rest.port']}")
    for name in [s.TRINO] + ([s.TRINO_WORKER] if st.replicas.trino_workers else []):
        server = properties(variant.mounted_file(name, trino_config_path(variant)), "=")
        named.append(server["discovery.uri"])
    options, job_args = submit_arguments(variant)
    named += [options["flink"], job_args[job_args.index("--fluss.bootstrap.servers") + 1]]
    bucket_job = variant.main(s.CREATE_BUCKET)
    named.append(tasks.command_parser().parse_args([*bucket_job["command"][2:], *bucket_job["args"]]).endpoint)
    for address in [a for listed in named for a in listed.split(",")]:  # ZooKeeper's ensemble: every server
        host, port = address.split("//")[-1].rsplit(":", 1)
        assert int(port) in services[host.split(".")[-1]], address  # a member's name: <pod>.<headless Service>


def test_trino_catalog_reads_credentials_from_its_environment(default):
    catalog = properties(default.mounted_file(s.TRINO, "/etc/trino/catalog/iceberg.properties"), "=")
    assert catalog["s3.aws-access-key"] == "${ENV:S3_ACCESS_KEY}"
    assert catalog["s3.aws-secret-key"] == "${ENV:S3_SECRET_KEY}"
    variables = env(default.main(s.TRINO))
    for name in ("S3_ACCESS_KEY", "S3_SECRET_KEY"):
        assert variables[name] == {"secretKeyRef": {"name": k8s.SECRET_NAME, "key": name}}


def test_fluss_properties_match_the_component_with_symbolic_instance_values(variant):
    st = variant.settings
    stack = stack_of(variant)
    for name in (s.COORDINATOR, s.TABLET):
        component = stack.get(name)
        props = fluss_properties(variant, name)
        expected = fluss.server_properties(st, View.INTERNAL, name, k8s.symbolic_instance(component))
        assert props == expected
        assert props["bind.listeners"] == (f"INTERNAL://${{INSTANCE_HOST}}:{st.ports.fluss_internal}, "
                                           f"CLIENT://{addresses.ANY_ADDRESS}:{addresses.FLUSS_CLIENT_PORT}")
        container = variant.main(name)
        assert port_of(container, "internal") == st.ports.fluss_internal
        assert port_of(container, "client") == addresses.FLUSS_CLIENT_PORT
        # The credentials stay placeholders for the image's envsubst, which reads them from the Secret.
        fluss_s3 = identities.s3_identity(st, "fluss")
        assert props["s3.secret-key"] == fluss_s3.secret_key
        assert env(container)[fluss_s3.secret_var] == {"secretKeyRef": {"name": k8s.SECRET_NAME,
                                                                       "key": fluss_s3.secret_var}}
    coordinator = fluss_properties(variant, s.COORDINATOR)
    # INTERNAL by the pod's name under the headless Service: a restarted pod keeps it, not its IP.
    assert coordinator["advertised.listeners"] == (f"CLIENT://127.0.0.1:{st.ports.fluss_coordinator}, "
                                                   "INTERNAL://${INSTANCE_NAME}.fluss-coordinator-headless:"
                                                   f"{st.ports.fluss_internal}")
    assert "tablet-server.id" not in coordinator
    tablet = fluss_properties(variant, s.TABLET)
    assert tablet["tablet-server.id"] == "${INSTANCE_INDEX}"
    assert tablet["advertised.listeners"] == ("CLIENT://127.0.0.1:${INSTANCE_PORT_CLIENT}, "
                                              f"INTERNAL://${{INSTANCE_NAME}}.fluss-tablet-headless:{st.ports.fluss_internal}")
    assert tablet["data.dir"].startswith(claim_mount(variant, s.TABLET) + "/")
    # Resolved in each pod, the symbolic values are what the model gives that instance concretely (the host port a
    # port-forward gives tablet i, its ordinal as id).
    component = stack.get(s.TABLET)
    for name in component.instance_names():
        index = s.instance_index(name)
        rack = "zone-b" if component.spread else ""  # prod: what the rack init container read (its node's zone)
        concrete = s.concrete_instance(component, name, host="10.1.0.9", data=component.data_dir,
                                       conf=component.conf_dir, address=f"{name}.{k8s.headless_name(component)}",
                                       rack=rack)
        values = {"INSTANCE_NAME": name, "INSTANCE_INDEX": str(index), "INSTANCE_HOST": "10.1.0.9",
                  "INSTANCE_PORT_CLIENT": str(st.ports.fluss_tablet + index), "INSTANCE_RACK": rack}
        resolved = {k: resolve(v, values) for k, v in tablet.items()}
        assert resolved == fluss.server_properties(st, View.INTERNAL, s.TABLET, concrete)


def test_flink_reads_its_config_yaml_and_agrees_with_the_pods(variant):
    """config.yaml over the image's conf/ (the image's entrypoint, which rewrites it, is not run): the model's
    properties, what the entrypoint would add, and the JVM options (module opens, the JAAS flag in prod)."""
    st = variant.settings
    jobmanager, taskmanager = variant.main(s.JOBMANAGER), variant.main(s.TASKMANAGER)
    path = f"{flink_component.CONF_DIR}/config.yaml"
    props = properties(variant.mounted_file(s.JOBMANAGER, path), ":")
    assert variant.mounted_file(s.TASKMANAGER, path) == variant.mounted_file(s.JOBMANAGER, path)
    component = stack_of(variant).get(s.JOBMANAGER)
    options = props.pop("env.java.opts.all").split()
    assert props == flink_component.properties(st, View.INTERNAL, k8s.symbolic_instance(component))
    assert options[:len(flink_component.JAVA_OPENS)] == list(flink_component.JAVA_OPENS)
    jaas = f"-Djava.security.auth.login.config={security.SECRETS_DIR}/{security.JAAS_FILE}"
    assert options[len(flink_component.JAVA_OPENS):] == ([jaas] if st.profile == "prod" else [])
    assert (props.get("web.submit.enable") == "false") == (st.profile == "prod")
    assert "FLINK_PROPERTIES" not in env(jobmanager) and "FLINK_PROPERTIES" not in env(taskmanager)
    assert props["jobmanager.rpc.address"] == s.JOBMANAGER
    assert props["jobmanager.rpc.port"] == str(port_of(jobmanager, "rpc"))
    assert props["rest.port"] == str(port_of(jobmanager, "rest"))
    assert props["taskmanager.rpc.port"] == str(port_of(taskmanager, "rpc"))
    assert props["taskmanager.numberOfTaskSlots"] == str(st.replicas.flink_task_slots)
    # Flink divides exactly the container's memory among its pools.
    for key, container in (("jobmanager", jobmanager), ("taskmanager", taskmanager)):
        size = props[f"{key}.memory.process.size"]
        assert config.mebibytes(size.removesuffix("m") + "Mi") == config.mebibytes(
            container["resources"]["limits"]["memory"])
    # A TaskManager registers under its instance name, which its readiness probe looks for.
    assert taskmanager["args"] == ["/opt/flink/bin/taskmanager.sh", "start-foreground",
                                   "-Dtaskmanager.resource-id=${INSTANCE_NAME}"]
    assert [*jobmanager.get("command", []), *jobmanager["args"]] == ["/opt/flink/bin/jobmanager.sh",
                                                                     "start-foreground"]


def test_instance_aware_containers_start_through_the_prelude(variant):
    """A container whose environment or arguments name ${INSTANCE_...} starts the image's entrypoint through the
    bash prelude (test_kubernetes_scripts.py runs it); no other container does."""
    for component in stack_of(variant).components:
        container = variant.main(component.name)
        text = " ".join([*container.get("args", []), *(str(v) for v in env(container).values())])
        if TOKEN.search(text):
            assert container["command"][:2] == ["/bin/bash", "-c"], component.name
            assert container["command"][3] == component.name  # $0 in error messages
            variables = env(container)
            assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            assert variables["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
            assert variant.workload(component.name)["kind"] == "StatefulSet"  # ordinals only a StatefulSet gives
        else:
            assert "/bin/bash" not in container.get("command", []), component.name
    assert TOKEN.search(env(variant.main(s.TABLET))["FLUSS_PROPERTIES"])  # the case that needs it


def test_one_shot_tasks_run_the_stdlib_tasks_file_and_flinks_own_client(variant):
    st = variant.settings
    source = Path(tasks.__file__).read_text()
    for name in (s.CREATE_BUCKET, s.SUBMIT_TIERING):
        job = variant.workload(name)
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure" and job["spec"]["backoffLimit"] > 0
    container = variant.main(s.CREATE_BUCKET)
    assert container["image"] == st.images.python and container["image"].startswith("python:")
    assert container["command"] == ["python3", f"{task_components.MOUNT_DIR}/tasks.py", s.CREATE_BUCKET]
    assert variant.mounted_file(s.CREATE_BUCKET, f"{task_components.MOUNT_DIR}/tasks.py") == source
    submit = variant.main(s.SUBMIT_TIERING)  # Flink's own client in the Flink image: no jar upload in any profile
    assert submit["image"] == st.images.flink
    script = variant.mounted_file(s.SUBMIT_TIERING, f"{task_components.MOUNT_DIR}/{task_components.SUBMIT_SCRIPT}")
    assert "flink run --detached" in script and "/jars" not in script
    client = properties(variant.mounted_file(s.SUBMIT_TIERING, f"{flink_component.CONF_DIR}/config.yaml"), ":")
    assert (client["rest.address"], client["rest.port"]) == (s.JOBMANAGER, str(st.ports.flink_rest))
    bucket = variant.main(s.CREATE_BUCKET)
    assert env(bucket)["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": k8s.SECRET_NAME, "key": "S3_ACCESS_KEY"}}
    assert env(bucket)["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": k8s.SECRET_NAME, "key": "S3_SECRET_KEY"}}
    options, job_args = submit_arguments(variant)
    assert options["flink"] == addresses.endpoints(st, View.INTERNAL).flink_rest
    assert options["main_class"] == task_components.TIERING_MAIN_CLASS
    assert options["job_name"] == task_components.TIERING_JOB_NAME
    assert options["taskmanagers"] == str(st.replicas.flink_taskmanagers)
    assert job_args == task_components.tiering_job_arguments(st, View.INTERNAL)
    # Nothing else runs a task: no MinIO client image, no inline shell script.
    for workload in variant.workloads():
        for container in containers(workload):
            assert "/mc" not in container["image"] and "minio/mc" not in container["image"]
            assert "flink run" not in " ".join(container.get("command", []) + container.get("args", []))


def test_locked_jars_are_fetched_verified_and_mounted(default):
    lock = artifacts.load_lock()
    plan = {s.COORDINATOR: ("fluss-iceberg-extras", fluss.PLUGIN_DIR),
            s.TABLET: ("fluss-iceberg-extras", fluss.PLUGIN_DIR),
            s.JOBMANAGER: ("flink-lib-fluss", flink_component.LIB_DIR),
            s.TASKMANAGER: ("flink-lib-fluss", flink_component.LIB_DIR),
            s.FLINK_SQL_GATEWAY: ("flink-lib-fluss", flink_component.LIB_DIR),  # the fluss catalog's connector
            # Flink's client runs the job's main(): the tiering jar, and the Fluss connector beside Flink's lib/
            s.SUBMIT_TIERING: (("tiering-job", k8s.ARTIFACTS_DIR), ("flink-lib-fluss", flink_component.LIB_DIR))}
    for workload in default.workloads():
        name = component_of(workload)
        init = workload["spec"]["template"]["spec"].get("initContainers", [])
        if name not in plan:
            assert not init, f"{name} fetches jars it does not use"
            continue
        groups = plan[name] if isinstance(plan[name][0], tuple) else (plan[name],)
        (fetch,) = init
        triples = list(zip(fetch["args"][1::3], fetch["args"][2::3], fetch["args"][3::3], strict=True))
        assert len(triples) == sum(len(lock[group]) for group, _ in groups)  # exactly its own jars
        mounts = {m["mountPath"]: m for m in default.main(name)["volumeMounts"]}
        for group, directory in groups:
            for item in lock[group]:
                url = f"{default.settings.local.maven_repository}/{item.path}"
                assert (url, item.sha256, item.name) in triples
                mount = mounts[f"{directory}/{item.name}"]
                assert mount["name"] == "artifacts" and mount["subPath"] == item.name and mount["readOnly"]
    tiering_jar = lock["tiering-job"][0]
    options, _ = submit_arguments(default)
    assert options["jar"] == f"{k8s.ARTIFACTS_DIR}/{tiering_jar.name}"


# ------------------------------------------------------------------------------------------------- secrets


def test_secret_values_only_in_the_secret_file(variant):
    prod = variant.settings.profile == "prod"
    values = [CREDENTIALS.secret_key, CREDENTIALS.access_key, *(CREDENTIALS.secret_values() if prod else ())]
    holders = [path for path, f in variant.files.items() if any(value in f.content for value in values)
               or "PRIVATE KEY" in f.content]
    assert holders == ["10-secret.yaml"]
    assert [path for path, f in variant.files.items() if f.secret] == ["10-secret.yaml"]
    secret = variant.get("Secret", k8s.SECRET_NAME)
    expected = {"S3_ACCESS_KEY": CREDENTIALS.access_key, "S3_SECRET_KEY": CREDENTIALS.secret_key}
    if prod:  # one identity per role, derived from the root secret; every component's secret files
        expected |= {f"S3_{role.upper()}_{part}_KEY": key for role in ("fluss", "lake", "reader")
                     for part, key in zip(("ACCESS", "SECRET"), CREDENTIALS.s3_keys(role), strict=True)}
        files = {"fluss-coordinator.jaas.conf", "fluss-tablet.jaas.conf", "flink-jobmanager.jaas.conf",
                 "flink-taskmanager.jaas.conf", "trino.config.properties", "trino.password.db",
                 "trino.keystore.pem", "prometheus.trino-password", "prometheus.minio-token",
                 "lake-maintenance.trino-password"}
        files |= {"trino-worker.config.properties"} if variant.settings.replicas.trino_workers else set()
        # The catalog's PostgreSQL password (derived from the root secret): secret files of the database and the
        # catalog (PostgreSQL's password file, the catalog's pgpass), which only their pods mount; no variable.
        files |= {"catalog-db.db-password", "rest-catalog.pgpass"}
        readers = {w["metadata"]["name"] for w in variant.workloads() for c in containers(w)
                   if "CATALOG_DB_PASSWORD" in json.dumps(c)}
        assert readers == set()
        assert secret["stringData"]["catalog-db.db-password"] == CREDENTIALS.catalog_db_password() + "\n"
        assert CREDENTIALS.catalog_db_password() in secret["stringData"]["rest-catalog.pgpass"]
        assert not [path for path, f in variant.files.items() if CREDENTIALS.catalog_db_password() in f.content
                    and path != "10-secret.yaml"]
        assert set(secret["stringData"]) == set(expected) | files
        assert CREDENTIALS.fluss_password in secret["stringData"]["fluss-tablet.jaas.conf"]
        assert secret["stringData"]["trino.keystore.pem"] == CREDENTIALS.trino_keystore
        assert secret["stringData"]["prometheus.trino-password"] == CREDENTIALS.trino_password
        assert CREDENTIALS.trino_password not in secret["stringData"]["trino.password.db"]  # a PBKDF2 hash
        expected = {k: v for k, v in secret["stringData"].items() if k in expected}
    assert {k: v for k, v in secret["stringData"].items() if k in expected} == expected
    if not prod:  # the S3 keys, and Prometheus's bearer token for MinIO's metrics
        assert set(secret["stringData"]) == set(expected) | {"prometheus.minio-token"}
    # Only MinIO and the bucket task see the root secret.
    root_holders = {w["metadata"]["name"] for w in variant.workloads() for c in containers(w)
                    if env(c).get("S3_SECRET_KEY") or env(c).get("MINIO_ROOT_PASSWORD")
                    or env(c).get("AWS_SECRET_ACCESS_KEY") == {"secretKeyRef": {"name": k8s.SECRET_NAME,
                                                                                "key": "S3_SECRET_KEY"}}}
    if variant.settings.profile == "prod":
        # The bucket task's Job carries a hash of its spec in its name.
        assert {name.removesuffix("-" + name.rsplit("-", 1)[-1]) if name.startswith(s.CREATE_BUCKET) else name
                for name in root_holders} == {s.MINIO, s.CREATE_BUCKET}


def test_fluss_logs_through_the_masking_layout(default):
    """Fluss logs every configuration value at start-up, the resolved S3 secret included."""
    for name in (s.COORDINATOR, s.TABLET):
        assert default.mounted_file(name, f"{fluss.CONF_DIR}/log4j-console.properties") == render.masked_log4j()


def test_a_credential_placeholder_in_a_value_has_its_variable_beside_it(variant):
    """${S3_...} inside a longer value (FLUSS_PROPERTIES) is expanded in the container (Fluss's envsubst): the
    container must carry that variable, from the Secret."""
    for workload in variant.workloads():
        for container in containers(workload):
            variables = env(container)
            for name, value in variables.items():
                for var in (identities.ACCESS_KEY_VAR, identities.SECRET_KEY_VAR):
                    if isinstance(value, str) and "${" + var + "}" in value:
                        assert variables.get(var) == {"secretKeyRef": {"name": k8s.SECRET_NAME, "key": var}}, (
                            workload["metadata"]["name"], name, var)


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
    """manifests/kubernetes holds `render --target kubernetes --placeholders` of the defaults (dev profile)."""
    folder = REPO / "manifests" / "kubernetes"
    rendered = {f.path: f.content for f in base.render(settings_for(), PLACEHOLDER_CREDENTIALS, "kubernetes")}
    on_disk = {p.name: p.read_text() for p in folder.glob("*.yaml")}
    stale = sorted(set(rendered) ^ set(on_disk)) + sorted(p for p in rendered if on_disk.get(p, rendered[p])
                                                          != rendered[p])
    assert not stale, f"manifests/kubernetes drifted from the templates ({stale}): run `make manifests`"


def test_render_target_kubernetes_from_a_local_settings_file():
    """The renderer must not borrow loopback addresses when the settings say target: local."""
    local = base.render(settings_for(target="local"), DEV_CREDENTIALS, "kubernetes")
    assert local == base.render(settings_for(), DEV_CREDENTIALS, "kubernetes")


# ----------------------------------------------------------------------------------------- checksums


def component_of(workload: dict) -> str:
    return workload["metadata"]["labels"]["app.kubernetes.io/component"]


def checksums(rendered, annotation: str = k8s.CHECKSUM_ANNOTATION) -> dict[str, str]:
    return {component_of(w): w["spec"]["template"]["metadata"]["annotations"].get(annotation, "")
            for w in rendered.workloads()}


def changed(one: dict[str, str], other: dict[str, str]) -> set[str]:
    return {name for name in one if one[name] != other[name]}


def test_checksum_changes_with_config_and_only_then(default):
    base = checksums(default)
    assert checksums(render_variant({})) == base  # deterministic
    region = checksums(render_variant({"lake.region": "eu-central-1"}))
    for name in (s.COORDINATOR, s.TABLET, s.TRINO, s.REST_CATALOG, s.SUBMIT_TIERING, s.CREATE_BUCKET, s.JOBMANAGER,
                 s.TASKMANAGER):
        assert region[name] != base[name], name
    assert region[s.ZOOKEEPER] == base[s.ZOOKEEPER] and region[s.MINIO] == base[s.MINIO]
    # Scaling changes no server's configuration: no server rolls because of it (with the replication pinned: by
    # default it follows the number of tablet servers, and then a third server does change every server's
    # settings). The exceptions are Prometheus, whose scrape targets are the instances, and the submit task, whose
    # arguments name how many TaskManagers to wait for (re-running it is harmless: it skips a running job).
    pinned = {"durability.replication_factor": 2, "durability.min_in_sync_replicas": 1}
    assert changed(checksums(render_variant({"replicas.tablet_servers": 3, **pinned})), base) == {s.PROMETHEUS}
    scaled = checksums(render_variant({"replicas.tablet_servers": 3, "replicas.flink_taskmanagers": 2, **pinned}))
    assert changed(scaled, base) == {s.SUBMIT_TIERING, s.PROMETHEUS}
    # A Flink-only setting rolls Flink and nothing else.
    slots = checksums(render_variant({"replicas.flink_task_slots": 4}))
    assert changed(slots, base) == {s.JOBMANAGER, s.TASKMANAGER}
    # A config file's content rolls its component: Trino's jvm.config carries the heap.
    heap = checksums(render_variant({"memory.trino": "3Gi"}))
    assert s.TRINO in changed(heap, base)
    # Credentials are not configuration: the config checksum never depends on them (their own annotation does).
    assert checksums(render_variant({}, DEV_CREDENTIALS)) == base


def test_rotating_credentials_rolls_exactly_the_pods_that_read_them(default):
    """Environment variables from a Secret are read when a container starts: a pod that reads the Secret carries a
    digest of the credentials (never a value), so a rotation rolls it; the others stay."""
    base = checksums(default, k8s.CREDENTIALS_ANNOTATION)
    readers = {component_of(w) for w in default.workloads()
               if k8s.reads_secret(w["spec"]["template"]["spec"])}
    assert readers == {name for name, digest in base.items() if digest}
    assert {s.MINIO, s.CREATE_BUCKET, s.REST_CATALOG, s.COORDINATOR, s.TABLET, s.TRINO} <= readers
    assert s.ZOOKEEPER not in readers
    rotated = checksums(render_variant({}, Credentials(CREDENTIALS.access_key, "another-secret-value")),
                        k8s.CREDENTIALS_ANNOTATION)
    assert changed(rotated, base) == readers
    assert checksums(render_variant({}), k8s.CREDENTIALS_ANNOTATION) == base  # deterministic
    # A digest, not the value or an unsalted hash of it.
    import hashlib

    for secret in (CREDENTIALS.secret_key, CREDENTIALS.access_key):
        assert all(secret not in d and hashlib.sha256(secret.encode()).hexdigest()[:16] != d for d in base.values())


def test_a_changed_password_rolls_exactly_the_pods_that_read_it():
    """prod: each pod's digest covers the Secret's values it reads, so a new Fluss password restarts the Fluss
    servers and the Flink JVMs (their JAAS files) and leaves Trino, MinIO and the tasks alone."""
    from dataclasses import replace

    base = checksums(render_variant({"profile": "prod"}), k8s.CREDENTIALS_ANNOTATION)
    fluss = checksums(render_variant({"profile": "prod"}, replace(CREDENTIALS, fluss_password="another-fluss-pw")),
                      k8s.CREDENTIALS_ANNOTATION)
    assert changed(fluss, base) == {s.COORDINATOR, s.TABLET, s.JOBMANAGER, s.TASKMANAGER}
    trino = checksums(render_variant({"profile": "prod"}, replace(CREDENTIALS, trino_password="another-trino-pw")),
                      k8s.CREDENTIALS_ANNOTATION)
    assert changed(trino, base) == {s.TRINO, s.PROMETHEUS, s.LAKE_MAINTENANCE}


def test_jobs_are_named_by_their_pod_template_so_kubectl_apply_never_edits_one(default):
    """A Job's pod template is immutable: its name carries a digest of it, so a changed task is a new Job."""
    for job in default.of_kind("Job"):
        name, component = job["metadata"]["name"], component_of(job)
        assert name == k8s.job_name(_component(default, component), job["spec"]["template"])
        assert len(name) == len(component) + 1 + k8s.JOB_DIGEST_LENGTH
        assert job["spec"]["ttlSecondsAfterFinished"] == k8s.JOB_TTL_SECONDS
    names = {component_of(j): j["metadata"]["name"] for j in default.of_kind("Job")}
    scaled = {component_of(j): j["metadata"]["name"]
              for j in render_variant({"replicas.flink_taskmanagers": 2}).of_kind("Job")}
    assert scaled[s.CREATE_BUCKET] == names[s.CREATE_BUCKET] and scaled[s.SUBMIT_TIERING] != names[s.SUBMIT_TIERING]


def _component(rendered, name: str):
    from sagaz_lakehouse.components import build_stack

    return build_stack(rendered.settings, View.INTERNAL).get(name)


def test_every_container_requests_the_cpu_of_the_profile_or_the_setting():
    """No CPU limit anywhere (no throttling); the request is the profile's unless `kubernetes.cpu_request` sets it
    (a small node: the real-node suite's 2 cores fit 13 prod pods at 100m, 4 at prod's 500m)."""
    for overrides, expected in (({"profile": "prod"}, "500m"), ({"profile": "prod", "kubernetes.cpu_request": "100m"},
                                                                "100m")):
        rendered = render_variant(overrides)
        workloads = [o for _, o in rendered.objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
        for workload in workloads:
            for container in containers(workload, init=False):
                assert container["resources"]["requests"]["cpu"] == expected, workload["metadata"]["name"]
                assert "cpu" not in container["resources"].get("limits", {}), workload["metadata"]["name"]


def test_an_external_object_store_is_reached_on_its_port_by_exactly_the_components_that_use_s3():
    """Default-deny egress would otherwise cut every pod off the user's store (it has no pod to select)."""
    rendered = render_variant({"object_store.kind": "external", "object_store.endpoint": "https://s3.example.net:9443"})
    stack = stack_of(rendered)
    for component in stack.components:
        anywhere = {port["port"] for rule in rendered.get("NetworkPolicy", component.name)["spec"]["egress"]
                    if "to" not in rule for port in rule["ports"] if port["port"] != 53}
        uses_s3 = any(name == s.MINIO for name, _ in component.reaches)
        assert (9443 in anywhere) == uses_s3, component.name
    assert s.MINIO not in {c.name for c in stack.components}


@pytest.mark.parametrize("profile", ["dev", "prod"])
def test_an_external_catalog_is_reached_on_its_ports_by_exactly_the_components_that_use_the_catalog(profile):
    """With catalog.kind external nothing of the catalog is rendered, and default-deny egress would cut every pod off
    the user's catalog and its token endpoint (no pod to select): their ports are open to any address for the
    components that use the catalog, and for no other."""
    rendered = render_variant({"profile": profile, "catalog.kind": "external",
                               "catalog.uri": "https://catalog.example.net:8181/api/catalog",
                               "catalog.oauth2_server_uri": "https://login.example.net:9444/oauth/tokens"})
    stack = stack_of(rendered)
    names = {c.name for c in stack.components}
    assert not {s.REST_CATALOG, s.CATALOG_DB} & names
    assert not [o for o in rendered.objects if o[1]["metadata"].get("name") in (s.REST_CATALOG, s.CATALOG_DB)]
    users = set()
    for component in stack.components:
        _, peers, anywhere = egress_of(rendered, component.name)
        assert s.REST_CATALOG not in peers, component.name
        uses_catalog = any(name == s.REST_CATALOG for name, _ in component.reaches)
        assert anywhere & {8181, 9444} == ({8181, 9444} if uses_catalog else set()), component.name
        users |= {component.name} if uses_catalog else set()
    assert users == {s.COORDINATOR, s.TABLET, s.JOBMANAGER, s.TASKMANAGER, s.TRINO, s.LAKE_MAINTENANCE} | (
        {s.TRINO_WORKER} if rendered.settings.replicas.trino_workers else set())


def test_the_prod_catalog_database_takes_connections_from_the_catalog_only_and_reaches_nothing():
    rendered = render_variant({"profile": "prod"})
    db = rendered.get("NetworkPolicy", s.CATALOG_DB)["spec"]
    (rule,) = db["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule["from"]] == [s.REST_CATALOG]
    assert egress_of(rendered, s.CATALOG_DB)[1:] == ({}, set())
    assert egress_of(rendered, s.REST_CATALOG)[1][s.CATALOG_DB] == {5432}
