"""Kubernetes target: the stack as plain manifests that ``kubectl apply -k`` accepts.

Decisions live here and produce plain data (one dict per Kubernetes object); ``templates/kubernetes/`` only lays
the objects out, one file per component. Every consumer's configuration comes from ``wiring``; this module decides
only how it reaches the pods (ConfigMaps, a Secret, environment, init containers) and how the pods run.

Facts this module relies on, with where they were read:

- apache/fluss ``docker/fluss/docker-entrypoint.sh`` (v0.9.1-incubating): appends ``$FLUSS_PROPERTIES`` to
  ``conf/server.yaml`` (after deleting its ``bind.listeners`` line), then runs ``envsubst`` over the file, so
  ``${S3_SECRET_KEY}`` is filled from the container environment (fed from the Secret).
- apache/fluss ``helm/templates/sts-tablet.yaml``: the tablet-server id is the pod ordinal (``${POD_NAME##*-}``),
  listeners bind to the pod IP. We keep that and advertise the CLIENT listener on ``127.0.0.1:<fluss_tablet + i>``
  so that a host client reaches tablet ``i`` through ``kubectl port-forward pod/fluss-tablet-i <fluss_tablet+i>:9123``.
- apache/flink-docker ``1.20/scala_2.12-java17-ubuntu``: ``FLINK_PROPERTIES`` lines are merged into the config
  (whitespace is stripped from each line), the image's own Dockerfile calls ``wget`` from its eclipse-temurin base,
  and ``sha256sum`` is coreutils: the image we use to download and verify locked jars.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sagaz_lakehouse import artifacts, wiring
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Credentials, Settings, mebibytes
from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.render import FLUSS_LOG4J_PATH, RenderedFile, config_checksum
from sagaz_lakehouse.stack import Component, Health, Stack

Obj = dict[str, Any]

MANAGER = "sagaz-lakehouse"
SECRET_NAME = "s3-credentials"  # noqa: S105 - a name, not a value; keys are the variable names wiring's placeholders use
CHECKSUM_ANNOTATION = "checksum/config"
TEMPLATE = "kubernetes/objects.yaml.j2"
KUSTOMIZATION_TEMPLATE = "kubernetes/kustomization.yaml.j2"

# Flink ports besides settings.ports: the entrypoint fixes blob.server.port at 6124; the TaskManager RPC port is
# fixed here so it can be probed (stack.py gives the TaskManager no health check; it serves no HTTP).
FLINK_BLOB_PORT = 6124
TASKMANAGER_RPC_PORT = wiring.TASKMANAGER_RPC_PORT
ARTIFACTS_DIR = "/artifacts"
FLUSS_PLUGIN_DIR = "/opt/fluss/plugins/iceberg"
FLINK_LIB_DIR = "/opt/flink/lib"
POD_TMP = "/tmp"  # noqa: S108 - an emptyDir private to the pod

# The software behind each component (app.kubernetes.io/name); the component name is app.kubernetes.io/component.
SOFTWARE = {s.ZOOKEEPER: "zookeeper", s.MINIO: "minio", s.CREATE_BUCKET: "minio-client",
            s.REST_CATALOG: "iceberg-rest-catalog", s.COORDINATOR: "fluss", s.TABLET: "fluss",
            s.JOBMANAGER: "flink", s.TASKMANAGER: "flink", s.SUBMIT_TIERING: "flink", s.TRINO: "trino",
            s.TRINO_WORKER: "trino"}

# Who each image runs as. Non-root everywhere: each image either defines that user or works under any uid.
RUN_AS = {
    # zookeeper (official image): user zookeeper uid/gid 1000 owns /conf, /data, /datalog, /logs; the entrypoint
    # only steps down from root, so starting as 1000 skips that and still writes zoo.cfg.
    s.ZOOKEEPER: 1000,
    # minio (quay.io/minio/minio): starts as root but needs no privilege; any uid works once /data is writable
    # (fsGroup) and HOME is writable (it creates $HOME/.minio/certs, so HOME points at an emptyDir).
    s.MINIO: 1000,
    # mc: same image family; its config dir goes to an emptyDir.
    s.CREATE_BUCKET: 1000,
    # iceberg-rest-fixture: a Java jar readable by anyone; its only state is the sqlite file on the PVC (fsGroup).
    s.REST_CATALOG: 1000,
    # apache/fluss: runs as root by default, but has user fluss uid/gid 9999 owning /opt/fluss (the entrypoint
    # rewrites conf/server.yaml, which that user may do).
    s.COORDINATOR: 9999, s.TABLET: 9999,
    # flink: user flink uid/gid 9999 owns /opt/flink; the entrypoint skips gosu when not root.
    s.JOBMANAGER: 9999, s.TASKMANAGER: 9999, s.SUBMIT_TIERING: 9999,
    # trinodb/trino: the image's USER is trino, uid 1000.
    s.TRINO: 1000, s.TRINO_WORKER: 1000,
}

# Components that get jars from the artifact lock, and where each lock group is mounted (file by file, through
# subPath, so the image's own files in that folder stay visible: plugins/iceberg already holds fluss-lake-iceberg).
JAR_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    s.COORDINATOR: (("fluss-iceberg-extras", FLUSS_PLUGIN_DIR),),
    s.TABLET: (("fluss-iceberg-extras", FLUSS_PLUGIN_DIR),),
    s.JOBMANAGER: (("flink-lib-fluss", FLINK_LIB_DIR),),
    s.TASKMANAGER: (("flink-lib-fluss", FLINK_LIB_DIR),),
    s.SUBMIT_TIERING: (("flink-lib-fluss", FLINK_LIB_DIR), ("tiering-job", "")),  # "": used from /artifacts
}


@dataclass(frozen=True)
class Manifest:
    """One output file: a title for its header comment and the objects in it."""

    path: str
    title: str
    objects: list[Obj]


# ------------------------------------------------------------------------------------------------ entry point


def files(settings: Settings, credentials: Credentials) -> list[RenderedFile]:
    """Every manifest plus kustomization.yaml; only the Secret's file holds credential values (mode 0600)."""
    if settings.target != "kubernetes":
        # wiring picks addresses by target (loopback for local): render as the target we are.
        settings = dataclasses.replace(settings, target="kubernetes")
    env = _template_environment()
    out = []
    for manifest in manifests(settings, credentials):
        content = env.get_template(TEMPLATE).render(title=manifest.title,
                                                    documents=[to_yaml(o) for o in manifest.objects])
        out.append(RenderedFile(manifest.path, content, secret=any(o["kind"] == "Secret" for o in manifest.objects)))
    kustomization = env.get_template(KUSTOMIZATION_TEMPLATE).render(resources=[f.path for f in out])
    return [*out, RenderedFile("kustomization.yaml", kustomization)]


def manifests(settings: Settings, credentials: Credentials) -> list[Manifest]:
    stack = s.build_stack(settings)
    lock = artifacts.load_lock()
    config_maps = _config_maps(settings)
    result = [
        Manifest("00-namespace.yaml", "namespace", [_namespace(settings)]),
        Manifest("10-secret.yaml", "S3 credentials (the only file holding credential values)",
                 [_secret(settings, credentials)]),
        Manifest("11-config.yaml", "configuration files and property sets, as data",
                 list(config_maps.values())),
    ]
    for number, component in zip(_file_numbers(stack), stack.components, strict=True):
        objects = _component_objects(settings, stack, component, config_maps, lock)
        result.append(Manifest(f"{number:02d}-{component.name}.yaml", component.role, objects))
    return result


def _file_numbers(stack: Stack) -> list[int]:
    return [20 + i for i in range(len(stack.components))]


def _template_environment():
    from sagaz_lakehouse.render import environment

    return environment()


def to_yaml(obj: Obj) -> str:
    """Block YAML in the objects' own key order; multi-line strings (config files, scripts) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(obj, Dumper=Dumper, sort_keys=False, width=1000, default_flow_style=False)


# ---------------------------------------------------------------------------------------------- basic objects


def labels(settings: Settings, component: Component) -> dict[str, str]:
    return {**selector(settings, component),
            "app.kubernetes.io/name": SOFTWARE.get(component.name, MANAGER),
            "app.kubernetes.io/part-of": MANAGER,
            "app.kubernetes.io/managed-by": MANAGER,
            "app.kubernetes.io/version": _label_value(component.version)}


def selector(settings: Settings, component: Component) -> dict[str, str]:
    """Immutable in Deployments/StatefulSets, so it leaves out the version."""
    return {"app.kubernetes.io/instance": settings.project, "app.kubernetes.io/component": component.name}


def _label_value(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return cleaned.strip("-._")


def _meta(settings: Settings, name: str, component: Component | str) -> Obj:
    """Stack components get their software's labels; shared objects (namespace, config, credentials) ours."""
    if isinstance(component, str):
        from sagaz_lakehouse import __version__

        component = Component(component, "", __version__, "")
    return {"name": name, "namespace": settings.namespace, "labels": labels(settings, component)}


def _namespace(settings: Settings) -> Obj:
    meta = _meta(settings, settings.namespace, "namespace")
    del meta["namespace"]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _secret(settings: Settings, credentials: Credentials) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(settings, SECRET_NAME, "credentials"),
            "type": "Opaque",
            "stringData": {wiring.ACCESS_KEY_VAR: credentials.access_key,
                           wiring.SECRET_KEY_VAR: credentials.secret_key}}


def _config_map(settings: Settings, name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(settings, name, "config"), "data": data}


# ------------------------------------------------------------------------------------------- configuration data


def _config_maps(settings: Settings) -> dict[str, Obj]:
    """Configuration as data, by ConfigMap name. Credentials stay placeholders resolved inside the pods."""
    from sagaz_lakehouse.render import java_properties, masked_log4j, yaml_lines

    fluss = {"coordinator.yaml": yaml_lines(fluss_coordinator_properties(settings)),
             "tablet.yaml": yaml_lines(fluss_tablet_common_properties(settings)),
             "log4j-console.properties": masked_log4j()}
    trino_catalog = {"iceberg.properties": java_properties(wiring.trino_iceberg_catalog(settings, env_refs=True))}
    trino = {"config.properties": java_properties(trino_server_properties(settings, coordinator=True)),
             "jvm.config": "".join(f"{line}\n" for line in trino_jvm_options(settings)),
             "node.properties": java_properties(trino_node_properties(settings))}
    maps = {
        "fluss-config": _config_map(settings, "fluss-config", fluss),
        "flink-config": _config_map(settings, "flink-config", {"FLINK_PROPERTIES": yaml_lines(
            flink_properties(settings))}),
        "trino-config": _config_map(settings, "trino-config", trino),
        "trino-catalog": _config_map(settings, "trino-catalog", trino_catalog),
    }
    if settings.replicas.trino_workers:
        worker = {**trino, "config.properties": java_properties(trino_server_properties(settings, coordinator=False))}
        maps["trino-worker-config"] = _config_map(settings, "trino-worker-config", worker)
    return maps


# Per-pod Fluss properties: computed in the container from the pod's name and IP (see _fluss_start_script).
POD_SPECIFIC = ("bind.listeners", "advertised.listeners", "tablet-server.id")


def fluss_coordinator_properties(settings: Settings) -> dict[str, str]:
    props = wiring.fluss_coordinator_properties(settings)
    return {k: v for k, v in props.items() if k != "bind.listeners"}  # bind to the pod IP instead of a name


def fluss_tablet_common_properties(settings: Settings) -> dict[str, str]:
    props = wiring.fluss_tablet_properties(settings, 0)
    return {k: v for k, v in props.items() if k not in POD_SPECIFIC}


def flink_properties(settings: Settings) -> dict[str, str]:
    return wiring.flink_container_properties(settings)


def trino_server_properties(settings: Settings, coordinator: bool) -> dict[str, str]:
    port = settings.ports.trino
    props = {"coordinator": "true" if coordinator else "false", "http-server.http.port": str(port)}
    if coordinator:
        # Without workers the coordinator also runs tasks.
        props["node-scheduler.include-coordinator"] = "false" if settings.replicas.trino_workers else "true"
        props["discovery.uri"] = f"http://localhost:{port}"
    else:
        props["discovery.uri"] = f"http://{s.TRINO}:{port}"
    return props


def trino_jvm_options(settings: Settings) -> list[str]:
    """memory.trino is the heap; the container gets headroom on top (trino_container_memory)."""
    return [f"-Xmx{mebibytes(settings.memory.trino)}m", "-XX:+ExitOnOutOfMemoryError", "-XX:+UseG1GC",
            "-XX:+ExplicitGCInvokesConcurrent", "-XX:-OmitStackTraceInFastThrow", "-XX:ReservedCodeCacheSize=256M",
            "-Djdk.attach.allowAttachSelf=true", "-Dfile.encoding=UTF-8", "-XX:+EnableDynamicAgentLoading"]


def trino_node_properties(settings: Settings) -> dict[str, str]:
    return {"node.environment": settings.profile, "node.data-dir": "/data/trino"}


# ----------------------------------------------------------------------------------------------- quantities


def container_memory(settings: Settings, component: Component) -> str:
    if component.name in (s.TRINO, s.TRINO_WORKER):
        # Heap at 80% of the container: Trino's off-heap buffers and code cache need the rest.
        return f"{math.ceil(mebibytes(component.memory) / 0.8)}Mi"
    return f"{mebibytes(component.memory)}Mi" if component.memory else ""


def _resources(settings: Settings, component: Component) -> Obj:
    """Memory request = limit (JVMs size themselves from it); a CPU request but no CPU limit (no throttling)."""
    cpu = "100m" if settings.profile == "dev" else "500m"
    memory = container_memory(settings, component) or "128Mi"
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


# ---------------------------------------------------------------------------------------------- environment


def _env(values: dict[str, str]) -> list[Obj]:
    """wiring's environment maps → EnvVar list. A value that is exactly a credential placeholder becomes a
    secretKeyRef; a placeholder inside a longer value becomes Kubernetes' $(VAR) reference to it."""
    secret_refs = {wiring.ACCESS_KEY: wiring.ACCESS_KEY_VAR, wiring.SECRET_KEY: wiring.SECRET_KEY_VAR}
    head, tail = [], []
    for name, value in values.items():
        if value in secret_refs:
            head.append(_secret_env(name, secret_refs[value]))
        else:
            tail.append({"name": name, "value": re.sub(r"\$\{(S3_[A-Z_]+)\}", r"$(\1)", value)})
    needs_vars = any("$(S3_" in e["value"] for e in tail)
    if needs_vars:
        head = [_secret_env(v, v) for v in (wiring.ACCESS_KEY_VAR, wiring.SECRET_KEY_VAR)] + head
    return head + tail


def _secret_env(name: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}


def _credential_env() -> list[Obj]:
    """S3_ACCESS_KEY / S3_SECRET_KEY themselves, for programs that resolve wiring's ${...} placeholders."""
    return [_secret_env(v, v) for v in (wiring.ACCESS_KEY_VAR, wiring.SECRET_KEY_VAR)]


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _config_env(name: str, config_map: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": key}}}


# -------------------------------------------------------------------------------------------------- probes


def health(settings: Settings, component: Component) -> Health | None:
    """stack.Health translated to ports inside the pod. Fluss's CLIENT listener listens on a fixed port in the
    container (wiring binds it there); stack.py gives the host port. Two components stack.py gives no check get
    one here: the TaskManager (its RPC port) and the Trino worker (the same /v1/info as the coordinator)."""
    if component.name in (s.COORDINATOR, s.TABLET):
        return Health("tcp", s.INTERNAL_FLUSS_PORT)
    if component.name == s.TASKMANAGER:
        return Health("tcp", TASKMANAGER_RPC_PORT)
    if component.name == s.TRINO_WORKER:
        return Health("http", settings.ports.trino, "/v1/info")
    return component.health


def _probe(check: Health, liveness: bool) -> Obj:
    if check.kind == "http":
        action: Obj = {"httpGet": {"path": check.path, "port": check.port}}
    elif check.kind == "tcp":
        action = {"tcpSocket": {"port": check.port}}
    elif check.kind == "command":
        action = {"exec": {"command": list(check.command)}}
    else:
        raise UsageError(f"unknown health check kind '{check.kind}'", "use http, tcp or command in stack.py")
    timing = ({"initialDelaySeconds": 60, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 6}
              if liveness else
              {"initialDelaySeconds": 5, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3})
    return {**action, **timing}


def _probes(settings: Settings, component: Component) -> Obj:
    check = health(settings, component)
    if check is None:
        return {}
    return {"readinessProbe": _probe(check, liveness=False), "livenessProbe": _probe(check, liveness=True)}


# -------------------------------------------------------------------------------------------- pod building


def _security(component: Component) -> tuple[Obj, Obj]:
    """(pod securityContext, container securityContext). The root filesystem stays writable: the Fluss, Flink and
    ZooKeeper entrypoints rewrite their config files inside the image."""
    uid = RUN_AS[component.name]
    pod = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
           "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def _fetch_jars_init(settings: Settings, component: Component, lock: dict[str, list[artifacts.Artifact]]) -> Obj:
    """Downloads every locked jar of the component into the shared emptyDir and checks its sha256.

    The flink image does this for every pod (Fluss included): its Dockerfile relies on the eclipse-temurin base's
    wget, and sha256sum is coreutils. The Fluss image's eclipse-temurin noble base is not documented to keep wget,
    so one proven image serves all pods. Arguments are (url, sha256, name) triples; the script is fixed."""
    script = ('set -eu\ncd "$0"\nwhile [ "$#" -gt 0 ]; do\n'
              '  if [ ! -f "$3" ]; then\n'
              '    wget -q -O "$3.part" "$1"\n'
              '    echo "$2  $3.part" | sha256sum -c - >/dev/null || { echo "sha256 mismatch: $1" >&2; exit 1; }\n'
              '    mv "$3.part" "$3"\n'
              '  fi\n  shift 3\ndone\n')
    args = [ARTIFACTS_DIR]
    for item in _jars(component, lock):
        args += [item.source(settings.local.maven_repository), item.sha256, item.name]
    _, container_security = _security(component)
    return {"name": "fetch-jars", "image": settings.images.flink, "command": ["/bin/sh", "-c", script],
            "args": args, "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS_DIR}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": container_security}


def _jars(component: Component, lock: dict[str, list[artifacts.Artifact]]) -> list[artifacts.Artifact]:
    seen: dict[str, artifacts.Artifact] = {}
    for group_name, _ in JAR_GROUPS.get(component.name, ()):
        for item in artifacts.group(group_name, lock):
            seen.setdefault(item.name, item)
    return list(seen.values())


def _jar_mounts(component: Component, lock: dict[str, list[artifacts.Artifact]]) -> list[Obj]:
    mounts = []
    for group_name, directory in JAR_GROUPS.get(component.name, ()):
        if not directory:
            continue
        mounts += [{"name": "artifacts", "mountPath": f"{directory}/{a.name}", "subPath": a.name, "readOnly": True}
                   for a in artifacts.group(group_name, lock)]
    if any(not d for _, d in JAR_GROUPS.get(component.name, ())):
        mounts.append({"name": "artifacts", "mountPath": ARTIFACTS_DIR, "readOnly": True})
    return mounts


def _container(settings: Settings, component: Component, **fields: Any) -> Obj:
    _, container_security = _security(component)
    container: Obj = {"name": component.name, "image": component.image, "imagePullPolicy": "IfNotPresent"}
    container.update({k: v for k, v in fields.items() if v})
    if not component.one_shot:
        container.update(_probes(settings, component))
    container["resources"] = _resources(settings, component)
    container["securityContext"] = container_security
    return container


def _ports(pairs: list[tuple[str, int]]) -> list[Obj]:
    return [{"name": name, "containerPort": number, "protocol": "TCP"} for name, number in pairs]


@dataclass
class PodParts:
    containers: list[Obj]
    volumes: list[Obj]
    init: list[Obj]
    config_maps: list[str]  # ConfigMaps whose data the pod consumes (for the checksum)


def _pod_template(settings: Settings, component: Component, parts: PodParts,
                  config_maps: dict[str, Obj], restart: str = "Always") -> Obj:
    pod_security, _ = _security(component)
    spec: Obj = {}
    if parts.init:
        spec["initContainers"] = parts.init
    spec["containers"] = parts.containers
    if parts.volumes:
        spec["volumes"] = parts.volumes
    spec["securityContext"] = pod_security
    spec["enableServiceLinks"] = False  # service env vars like FLUSS_... or TRINO_PORT would confuse entrypoints
    if restart != "Always":
        spec["restartPolicy"] = restart
    checksum = workload_checksum(parts, config_maps)
    return {"metadata": {"labels": labels(settings, component), "annotations": {CHECKSUM_ANNOTATION: checksum}},
            "spec": spec}


def workload_checksum(parts: PodParts, config_maps: dict[str, Obj]) -> str:
    """Over the ConfigMap data the pod reads and the configuration passed in its containers (env, args, command).
    Credentials are not included: they are references to the Secret, never values."""
    pieces = [json.dumps(config_maps[name]["data"], sort_keys=True) for name in sorted(set(parts.config_maps))]
    for container in parts.init + parts.containers:
        pieces.append(json.dumps({k: container.get(k) for k in ("env", "args", "command")}, sort_keys=True))
    return config_checksum(pieces)


def _claim(settings: Settings, size: str) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if settings.volumes.storage_class:
        spec["storageClassName"] = settings.volumes.storage_class
    return {"metadata": {"name": "data"}, "spec": spec}


def _stateful_set(settings: Settings, component: Component, template: Obj, claim_size: str = "") -> Obj:
    spec: Obj = {"serviceName": _headless_name(component), "replicas": component.replicas,
                 # Tablet servers and the rest do not need to start one at a time.
                 "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": selector(settings, component)}, "template": template}
    if claim_size:
        spec["volumeClaimTemplates"] = [_claim(settings, claim_size)]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(settings, component.name, component),
            "spec": spec}


def _deployment(settings: Settings, component: Component, template: Obj) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(settings, component.name, component),
            "spec": {"replicas": component.replicas, "selector": {"matchLabels": selector(settings, component)},
                     "template": template}}


def _job(settings: Settings, component: Component, template: Obj, retries: int) -> Obj:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(settings, component.name, component),
            "spec": {"backoffLimit": retries, "template": template}}


def _headless_name(component: Component) -> str:
    return f"{component.name}-headless"


def _service(settings: Settings, component: Component, ports: list[tuple[str, int]], headless: bool) -> Obj:
    spec: Obj = {"selector": selector(settings, component),
                 "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in ports]}
    if headless:
        # Pods get DNS names (fluss-tablet-0.fluss-tablet-headless) before they are ready, as servers need.
        spec = {"clusterIP": "None", "publishNotReadyAddresses": True, **spec}
    name = _headless_name(component) if headless else component.name
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(settings, name, component), "spec": spec}


def _services(settings: Settings, component: Component, ports: list[tuple[str, int]],
              client_service: bool = True) -> list[Obj]:
    out = [_service(settings, component, ports, headless=True)]
    if client_service:
        out.append(_service(settings, component, ports, headless=False))
    return out


# ------------------------------------------------------------------------------------------------ components


def _component_objects(settings: Settings, stack: Stack, component: Component, config_maps: dict[str, Obj],
                       lock: dict[str, list[artifacts.Artifact]]) -> list[Obj]:
    builders = {s.ZOOKEEPER: _zookeeper, s.MINIO: _minio, s.CREATE_BUCKET: _create_bucket,
                s.REST_CATALOG: _rest_catalog, s.COORDINATOR: _fluss, s.TABLET: _fluss,
                s.JOBMANAGER: _flink, s.TASKMANAGER: _flink, s.SUBMIT_TIERING: _submit_tiering,
                s.TRINO: _trino, s.TRINO_WORKER: _trino}
    if component.name not in builders:
        raise UsageError(f"the kubernetes target does not know component '{component.name}'",
                         "add a builder for it in sagaz_lakehouse/targets/kubernetes.py")
    return builders[component.name](settings, component, config_maps, lock)


def _zookeeper(settings: Settings, component: Component, config_maps: dict[str, Obj], lock: Any) -> list[Obj]:
    port = settings.ports.zookeeper
    heap = max(64, mebibytes(component.memory) * 3 // 4)
    env = _env({"ZOO_SERVERS": f"server.1=localhost:2888:3888;{port}",  # the entrypoint's default, our port
                "ZOO_DATA_LOG_DIR": f"{component.data_path}/log",  # transaction log on the volume as well
                "ZOO_ADMINSERVER_ENABLED": "false",
                "ZK_SERVER_HEAP": str(heap)})  # zkEnv.sh defaults to 1000 MB, more than the container may have
    container = _container(settings, component, ports=_ports([("client", port)]), env=env,
                           volumeMounts=[{"name": "data", "mountPath": component.data_path}])
    template = _pod_template(settings, component, PodParts([container], [], [], []), config_maps)
    return [*_services(settings, component, [("client", port)]),
            _stateful_set(settings, component, template, component.volume_size)]


def _minio(settings: Settings, component: Component, config_maps: dict[str, Obj], lock: Any) -> list[Obj]:
    p = settings.ports
    ports = [("s3", p.minio), ("console", p.minio_console)]
    env = _env({**wiring.minio_environment(), "HOME": POD_TMP})
    container = _container(settings, component, args=["server", component.data_path, "--address", f":{p.minio}",
                                                      "--console-address", f":{p.minio_console}"],
                           ports=_ports(ports), env=env,
                           volumeMounts=[{"name": "data", "mountPath": component.data_path},
                                         {"name": "tmp", "mountPath": POD_TMP}])
    template = _pod_template(settings, component, PodParts([container], [{"name": "tmp", "emptyDir": {}}], [], []),
                             config_maps)
    return [*_services(settings, component, ports), _stateful_set(settings, component, template,
                                                                  component.volume_size)]


def _create_bucket(settings: Settings, component: Component, config_maps: dict[str, Obj], lock: Any) -> list[Obj]:
    # Idempotent: --ignore-existing. `mc alias set` fails until MinIO answers, so it doubles as the wait.
    script = ('set -eu\n'
              'until mc --config-dir /tmp/mc alias set lake "$S3_ENDPOINT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY"; do\n'
              '  echo "waiting for $S3_ENDPOINT"; sleep 3\ndone\n'
              'mc --config-dir /tmp/mc mb --ignore-existing "lake/$BUCKET"\n')
    env = _credential_env() + _env({"S3_ENDPOINT": wiring.endpoints(settings, s.View.INTERNAL).s3,
                                    "BUCKET": settings.lake.bucket})
    container = _container(settings, component, command=["/bin/sh", "-c", script], env=env,
                           volumeMounts=[{"name": "tmp", "mountPath": POD_TMP}])
    template = _pod_template(settings, component, PodParts([container], [{"name": "tmp", "emptyDir": {}}], [], []),
                             config_maps, restart="OnFailure")
    return [_job(settings, component, template, retries=10)]


def _rest_catalog(settings: Settings, component: Component, config_maps: dict[str, Obj], lock: Any) -> list[Obj]:
    port = settings.ports.rest_catalog
    env = _env({**wiring.rest_catalog_environment(settings, component.data_path),
                "JAVA_TOOL_OPTIONS": "-XX:MaxRAMPercentage=75.0"})
    container = _container(settings, component, ports=_ports([("http", port)]), env=env,
                           volumeMounts=[{"name": "data", "mountPath": component.data_path}])
    template = _pod_template(settings, component, PodParts([container], [], [], []), config_maps)
    return [*_services(settings, component, [("http", port)]),
            _stateful_set(settings, component, template, component.volume_size)]


def fluss_start_script(settings: Settings, tablet: bool) -> str:
    """Adds the per-pod properties to FLUSS_PROPERTIES, then runs the image's entrypoint.

    Listeners bind to the pod IP (a Service name cannot be bound); the INTERNAL address registered in ZooKeeper is
    that IP. A tablet's id is its ordinal and its CLIENT listener is advertised where `kubectl port-forward` puts
    it on the host: 127.0.0.1:<ports.fluss_tablet + ordinal>, exactly what wiring.fluss_tablet_properties says."""
    peer, client = s.INTERNAL_FLUSS_PEER_PORT, s.INTERNAL_FLUSS_PORT
    lines = ['set -eu', 'ORDINAL="${POD_NAME##*-}"',
             'PROPS="${FLUSS_PROPERTIES}"',
             f'PROPS="${{PROPS}}\nbind.listeners: INTERNAL://${{POD_IP}}:{peer}, CLIENT://${{POD_IP}}:{client}"']
    if tablet:
        lines += ['PROPS="${PROPS}\ntablet-server.id: ${ORDINAL}"',
                  f'PROPS="${{PROPS}}\nadvertised.listeners: CLIENT://{wiring.LOOPBACK}:'
                  f'$(({settings.ports.fluss_tablet} + ORDINAL))"']
    lines += ['export FLUSS_PROPERTIES="${PROPS}"',
              f'exec /docker-entrypoint.sh {"tabletServer" if tablet else "coordinatorServer"}']
    return "\n".join(lines) + "\n"


def _fluss(settings: Settings, component: Component, config_maps: dict[str, Obj],
           lock: dict[str, list[artifacts.Artifact]]) -> list[Obj]:
    tablet = component.name == s.TABLET
    ports = [("internal", s.INTERNAL_FLUSS_PEER_PORT), ("client", s.INTERNAL_FLUSS_PORT)]
    env = [_field_env("POD_NAME", "metadata.name"), _field_env("POD_IP", "status.podIP"),
           _config_env("FLUSS_PROPERTIES", "fluss-config", "tablet.yaml" if tablet else "coordinator.yaml"),
           *_credential_env(),  # the entrypoint's envsubst fills ${S3_ACCESS_KEY}/${S3_SECRET_KEY} from these
           {"name": "FLUSS_ENV_JAVA_OPTS", "value": "-XX:MaxRAMPercentage=75.0"}]
    mounts = [*_jar_mounts(component, lock),
              {"name": "fluss-log4j", "mountPath": FLUSS_LOG4J_PATH, "subPath": "log4j-console.properties"}]
    if tablet:
        mounts.append({"name": "data", "mountPath": component.data_path})
    container = _container(settings, component, command=["/bin/bash", "-c", fluss_start_script(settings, tablet)],
                           ports=_ports(ports), env=env, volumeMounts=mounts)
    log4j = {"name": "fluss-log4j", "configMap": {"name": "fluss-config", "items": [
        {"key": "log4j-console.properties", "path": "log4j-console.properties"}]}}
    parts = PodParts([container], [{"name": "artifacts", "emptyDir": {}}, log4j],
                     [_fetch_jars_init(settings, component, lock)], ["fluss-config"])
    template = _pod_template(settings, component, parts, config_maps)
    # Tablets get no load-balancing Service: clients must reach each tablet itself (its pod), never any tablet.
    # The coordinator keeps no local state (metadata is in ZooKeeper, data in S3): a StatefulSet for its stable
    # name, without a claim, as stack.py gives it no data_path.
    return [*_services(settings, component, ports, client_service=not tablet),
            _stateful_set(settings, component, template, component.volume_size if tablet else "")]


def _flink(settings: Settings, component: Component, config_maps: dict[str, Obj],
           lock: dict[str, list[artifacts.Artifact]]) -> list[Obj]:
    p = settings.ports
    jobmanager = component.name == s.JOBMANAGER
    env = [_config_env("FLINK_PROPERTIES", "flink-config", "FLINK_PROPERTIES"),
           {"name": "JOB_MANAGER_RPC_ADDRESS", "value": s.JOBMANAGER},
           # The tiering job's Iceberg catalog finds S3 credentials through the AWS SDK's default chain.
           *_env(wiring.aws_environment(settings))]
    ports = ([("rest", p.flink_rest), ("rpc", p.flink_rpc), ("blob", FLINK_BLOB_PORT)] if jobmanager
             else [("rpc", TASKMANAGER_RPC_PORT)])
    container = _container(settings, component, args=["jobmanager" if jobmanager else "taskmanager"],
                           ports=_ports(ports), env=env, volumeMounts=_jar_mounts(component, lock))
    parts = PodParts([container], [{"name": "artifacts", "emptyDir": {}}],
                     [_fetch_jars_init(settings, component, lock)], ["flink-config"])
    deployment = _deployment(settings, component, _pod_template(settings, component, parts, config_maps))
    if not jobmanager:
        return [deployment]
    # The JobManager keeps no state we need to keep (the tiering job is re-submitted after a restart), so a
    # Deployment; its Service carries the name TaskManagers and the submit job use.
    return [_service(settings, component, ports, headless=False), deployment]


def tiering_submit_script(settings: Settings) -> str:
    """Waits for the JobManager; submits the tiering job unless a job of that name is already active.

    /jobs/overview lists jobs as {"jid":...,"name":...,"state":...}: one line per job after splitting at "jid".
    Besides RUNNING, the states of a job that is starting or restarting count as active, so that a retry of this
    Job never submits a second copy."""
    rest = wiring.endpoints(settings, s.View.INTERNAL).flink_rest
    jar = artifacts.group("tiering-job")[0].name
    return "\n".join([
        "set -eu",
        f'REST="{rest}"',
        f"NAME='{wiring.TIERING_JOB_NAME}'",
        'OVERVIEW="${TMPDIR:-/tmp}/overview"',
        'until wget -q -O "$OVERVIEW" "$REST/jobs/overview"; do echo "waiting for the JobManager"; sleep 5; done',
        "if tr -d '\\n' < \"$OVERVIEW\" | sed 's/\"jid\"/\\n\"jid\"/g' | grep -F \"\\\"name\\\":\\\"$NAME\\\"\" \\",
        "    | grep -Eq '\"state\":\"(RUNNING|CREATED|INITIALIZING|RESTARTING|RECONCILING)\"'; then",
        '  echo "tiering job already active: $NAME"; exit 0',
        "fi",
        f'exec flink run --detached --jobmanager "{s.JOBMANAGER}:{settings.ports.flink_rest}" '
        f'--class {wiring.TIERING_MAIN_CLASS} "{ARTIFACTS_DIR}/{jar}" "$@"',
    ]) + "\n"


def _submit_tiering(settings: Settings, component: Component, config_maps: dict[str, Obj],
                    lock: dict[str, list[artifacts.Artifact]]) -> list[Obj]:
    container = _container(settings, component,
                           command=["/bin/bash", "-c", tiering_submit_script(settings), component.name],
                           args=wiring.tiering_job_arguments(settings),
                           volumeMounts=[*_jar_mounts(component, lock), {"name": "tmp", "mountPath": POD_TMP}])
    parts = PodParts([container], [{"name": "artifacts", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                     [_fetch_jars_init(settings, component, lock)], [])
    return [_job(settings, component, _pod_template(settings, component, parts, config_maps, restart="OnFailure"),
                 retries=10)]


def _trino(settings: Settings, component: Component, config_maps: dict[str, Obj], lock: Any) -> list[Obj]:
    coordinator = component.name == s.TRINO
    config = "trino-config" if coordinator else "trino-worker-config"
    port = settings.ports.trino
    mounts = [{"name": "config", "mountPath": "/etc/trino"},
              {"name": "catalog", "mountPath": "/etc/trino/catalog"}]
    volumes = [{"name": "config", "configMap": {"name": config}},
               {"name": "catalog", "configMap": {"name": "trino-catalog"}}]
    container = _container(settings, component, ports=_ports([("http", port)]),
                           env=_credential_env(),  # ${ENV:S3_ACCESS_KEY} in the catalog reads these
                           volumeMounts=mounts)
    parts = PodParts([container], volumes, [], [config, "trino-catalog"])
    deployment = _deployment(settings, component, _pod_template(settings, component, parts, config_maps))
    if not coordinator:
        return [deployment]  # workers announce themselves to the coordinator; nobody connects to them by name
    return [_service(settings, component, [("http", port)], headless=False), deployment]
