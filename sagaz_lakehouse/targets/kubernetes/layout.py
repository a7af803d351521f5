"""Kubernetes target: the stack model as plain manifests that ``kubectl apply -k`` accepts, one file per component.

Every component becomes the same shapes, chosen from its description, never from its name:

- a **Job** for a one-shot task, named ``<component>-<digest of its pod template>`` so that ``kubectl apply -k``
  creates a new Job when the task's configuration changes instead of failing on the immutable template (a finished
  Job is deleted after ``JOB_TTL_SECONDS``; ``up`` prunes superseded ones at once); a **StatefulSet** for a
  component that keeps state, is replicated, or whose configuration names its own instance (stable pod names
  ``<component>-<i>`` are the instance names every target uses); a **Deployment** otherwise;
- a headless Service for each StatefulSet, and a ClusterIP Service named like the component for anything other
  components reach, except components whose instances are addressed one by one (tablet servers: a client must
  reach the tablet that leads a bucket, never any tablet);
- a ConfigMap ``<component>-config`` with the files the image reads, mounted file by file (``subPath``) so the
  image's other files stay; locked jars fetched and verified by an init container into an ``emptyDir``;
- the secret files of a component (``ConfigFile.secret``: JAAS logins, Trino's keystore, password and configuration
  files) as keys ``<component>.<file>`` of the one Secret, mounted read-only in ``security.SECRETS_DIR`` of its pods
  only (a secret volume listing exactly its items), never in a ConfigMap, the environment or arguments.

One pod template serves every instance, so instance values are symbolic (``${INSTANCE_INDEX}``, ...). A container
whose environment or arguments name them starts through a short bash prelude that derives them from the pod's name
and IP (the ordinal is the name's suffix; a per-instance host port is its base plus the ordinal), substitutes them,
and execs the image's entrypoint.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sagaz_lakehouse import addresses, artifacts, identities, security, versions
from sagaz_lakehouse.components import build_stack
from sagaz_lakehouse.config import Credentials, Settings, mebibytes
from sagaz_lakehouse.render import RenderedFile, config_checksum, to_yaml
from sagaz_lakehouse.stack import (
    HEADLESS_SUFFIX,
    MINIO,
    PROMETHEUS,
    REST_CATALOG,
    SPREAD_APART,
    SPREAD_PREFERRED,
    Component,
    ConfigFile,
    Container,
    Health,
    Instance,
    Setup,
    Stack,
    View,
    member_address,
)
from sagaz_lakehouse.targets import probes
from sagaz_lakehouse.targets.kubernetes import jar_images

Obj = dict[str, Any]

MANAGER = "sagaz-lakehouse"
SECRET_NAME = "credentials"  # noqa: S105 - a name; its keys: the S3 variables (identities) and secret files
CHECKSUM_ANNOTATION = "checksum/config"
# On pods that read the Secret: a salted, slow digest of the credentials (never the values), so rotating them rolls
# exactly those pods (environment variables from a Secret are read only when a container starts).
CREDENTIALS_ANNOTATION = "checksum/credentials"
# The Secret's key holding Trino's keystore (the coordinator's secret file keystore.pem): `up` reuses it.
TRINO_KEYSTORE_KEY = "trino.keystore.pem"
SECRET_FILE_MODE = 0o440  # read-only for the owner and the pod's fsGroup (the kubelet makes the files root:fsGroup)
JOB_TTL_SECONDS = 86400  # a finished Job is garbage-collected a day later; `up` re-runs it when it is gone
JOB_DIGEST_LENGTH = 8
TEMPLATE = "kubernetes/objects.yaml.j2"
KUSTOMIZATION_TEMPLATE = "kubernetes/kustomization.yaml.j2"
ARTIFACTS_DIR = "/artifacts"
INSTANCE_TOKEN = re.compile(r"\$\{INSTANCE_[A-Z_]+\}")
STARTUP_PERIOD = 5  # seconds between start-up probes


@dataclass(frozen=True)
class Manifest:
    """One output file: a title for its header comment and the objects in it."""

    path: str
    title: str
    objects: list[Obj]


# ------------------------------------------------------------------------------------------------ entry point


def files(settings: Settings, credentials: Credentials) -> list[RenderedFile]:
    """Every manifest plus kustomization.yaml; only the Secret's file holds credential values (mode 0600)."""
    from sagaz_lakehouse.render import environment

    env = environment()
    out = []
    for manifest in manifests(settings, credentials):
        content = env.get_template(TEMPLATE).render(title=manifest.title,
                                                    documents=[to_yaml(o) for o in manifest.objects])
        out.append(RenderedFile(manifest.path, content, secret=any(o["kind"] == "Secret" for o in manifest.objects)))
    kustomization = env.get_template(KUSTOMIZATION_TEMPLATE).render(resources=[f.path for f in out])
    return [*out, RenderedFile("kustomization.yaml", kustomization)]


def cluster_stack(settings: Settings) -> Stack:
    """The stack in the cluster; with kubernetes.jars: baked, on the images carrying the jars (jar_images)."""
    return jar_images.baked(build_stack(settings, View.INTERNAL, instance_address), artifacts.load_lock())


def instance_address(component: Component, name: str) -> str:
    """An instance inside the cluster: a replica by its DNS name under the headless Service, anything else by its
    ClusterIP Service."""
    return member_address(component.name, name) if component.replicated else component.name


def manifests(settings: Settings, credentials: Credentials) -> list[Manifest]:
    stack = cluster_stack(settings)
    lock = artifacts.load_lock()
    secret = _secret(stack, credentials)
    result = [
        Manifest("00-namespace.yaml", "namespace", [_namespace(settings)]),
        Manifest("10-secret.yaml", "credentials and secret files (the only file holding credential values)",
                 [secret]),
    ]
    shared = shared_config_map(stack)
    if shared is not None:
        result.append(Manifest("11-shared-config.yaml", "files several components mount (the one-shot tasks)",
                               [shared]))
    result.append(Manifest("12-network-policy.yaml", "ingress and egress closed for every pod of the stack unless a "
                           "component's own policy opens a path", [_default_deny(settings)]))
    for number, component in enumerate(stack.components, start=20):
        result.append(Manifest(f"{number:02d}-{component.name}.yaml", component.role,
                               component_objects(stack, component, lock, secret["stringData"], credentials)))
    return result


# ---------------------------------------------------------------------------------------------- basic objects


def labels(settings: Settings, component: Component) -> dict[str, str]:
    return _labels(settings, component.name, component.software, component.version)


def _labels(settings: Settings, component: str, software: str, version: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": settings.project, "app.kubernetes.io/component": component,
            "app.kubernetes.io/name": software,
            "app.kubernetes.io/part-of": MANAGER,
            "app.kubernetes.io/managed-by": MANAGER,
            "app.kubernetes.io/version": _label_value(version)}


def selector(settings: Settings, component: Component) -> dict[str, str]:
    """Immutable in Deployments/StatefulSets, so it leaves out the version."""
    return {"app.kubernetes.io/instance": settings.project, "app.kubernetes.io/component": component.name}


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")


def _meta(settings: Settings, name: str, component: Component) -> Obj:
    return {"name": name, "namespace": settings.namespace, "labels": labels(settings, component)}


def _shared_meta(settings: Settings, name: str, role: str) -> Obj:
    """Objects that belong to the stack rather than one component (namespace, credentials)."""
    from sagaz_lakehouse.version import __version__

    return {"name": name, "namespace": settings.namespace, "labels": _labels(settings, role, MANAGER, __version__)}


def _namespace(settings: Settings) -> Obj:
    """The namespace, under the Pod Security Standards' `restricted` profile (Pod Security Admission): the API server
    refuses a pod of the stack that asks for more than its rules allow (root, privilege escalation, capabilities,
    host namespaces, a seccomp profile other than the runtime's). A namespace that existed before `up` is used as it
    is, without these labels: the operator's to set."""
    meta = _shared_meta(settings, settings.namespace, "namespace")
    del meta["namespace"]
    meta["labels"] |= {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    meta["labels"] |= {f"pod-security.kubernetes.io/{mode}-version": f"v{versions.KUBERNETES}"
                       for mode in ("enforce", "audit", "warn")}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _secret(stack: Stack, credentials: Credentials) -> Obj:
    """The credential variables (the S3 keys, the catalog's credential and database password: the environment of the
    processes that expand them) and every component's secret files, with their values."""
    settings = stack.settings
    data = identities.secret_variables(settings, credentials)
    for component in stack.components:
        for f in secret_files(component, component.setup(symbolic_instance(component))):
            data[secret_key(component, f)] = identities.substitute_secrets(f.content, credentials)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _shared_meta(settings, SECRET_NAME, "credentials"),
            "type": "Opaque", "stringData": data}


def secret_files(component: Component, setup: Setup) -> list[ConfigFile]:
    """A component's secret files; each is mounted in the secrets folder (ConfigFile.mount says where)."""
    found = [f for f in setup.files if f.secret and f.mount]
    for f in found:
        if f.mount != f"{security.SECRETS_DIR}/{f.name}":
            raise ValueError(f"{component.name}: secret file {f.name} must be mounted in {security.SECRETS_DIR}, "
                             f"not at {f.mount}")
    return found


def secret_key(component: Component, config: ConfigFile) -> str:
    return f"{component.name}.{_config_key(config.name)}"


# ------------------------------------------------------------------------------------------------ components


def symbolic_instance(component: Component) -> Instance:
    ports = {p.name: "${INSTANCE_PORT_" + p.name.upper() + "}" if p.per_instance else str(p.host)
             for p in component.ports if p.host}
    # Its DNS name under the StatefulSet's headless Service (resolvable before the pod is ready): the address that
    # survives a restart, unlike the pod IP it binds.
    return Instance("${INSTANCE_NAME}", "${INSTANCE_INDEX}", "${INSTANCE_HOST}", component.data_dir,
                    component.conf_dir, ports, address=member_address(component.name, "${INSTANCE_NAME}"),
                    secrets=security.SECRETS_DIR, number="${INSTANCE_NUMBER}",
                    rack=RACK_PLACEHOLDER if component.spread else "")


def workload_kind(component: Component, setup: Setup) -> str:
    if component.one_shot:
        return "Job"
    if component.stateful or component.replicated or _names_instance(setup.container):
        return "StatefulSet"
    return "Deployment"


def _names_instance(container: Container) -> bool:
    return any(INSTANCE_TOKEN.search(v) for v in [*container.env.values(), *container.args])


def component_objects(stack: Stack, component: Component, lock: dict[str, list[artifacts.Artifact]],
                      secret_data: dict[str, str], credentials: Credentials) -> list[Obj]:
    settings = stack.settings
    setup = component.setup(symbolic_instance(component))
    kind = workload_kind(component, setup)
    config_map = _config_map(settings, component, setup, credentials)
    template = _pod_template(stack, component, setup, config_map, lock, secret_data)
    objects: list[Obj] = [config_map] if config_map else []
    ports = [(p.name, p.container) for p in component.ports]
    if kind == "StatefulSet":
        objects.append(_service(settings, component, ports, headless=True))
    if has_client_service(component):
        objects.append(_service(settings, component, ports, headless=False))
    if names_rack(setup.container):
        objects += _node_reader(settings, component)
    objects.append(_network_policy(stack, component, setup))
    if component.replicas > 1:
        objects.append(_disruption_budget(settings, component))
    objects.append(_workload(settings, component, kind, template))
    return objects


def _disruption_budget(settings: Settings, component: Component) -> Obj:
    """A drain takes down at most what the component's redundancy tolerates (``Component.max_unavailable``): tablet
    servers, the replication factor less the minimum in-sync replicas (acks=all writes keep being acknowledged);
    ZooKeeper, a minority of the ensemble; anything else one at a time."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(settings, component.name,
                                                                                          component),
            "spec": {"maxUnavailable": component.max_unavailable,
                     "selector": {"matchLabels": selector(settings, component)}}}


HOSTNAME_KEY = "kubernetes.io/hostname"
ZONE_KEY = "topology.kubernetes.io/zone"


def spread_constraints(settings: Settings, component: Component) -> list[Obj]:
    """Where the instances of a component go (``Component.spread``), as topologySpreadConstraints.

    By node, DoNotSchedule with a skew of 1: no node gets a second instance while another eligible node has none.
    SPREAD_APART adds minDomains = replicas: while fewer nodes than instances exist, the ones left over stay Pending
    rather than share a node. Tablet servers and ZooKeeper hold copies of the same state, so two on one node make
    that node's crash the loss of both copies (acknowledged writes, or ZooKeeper's majority): a cluster too small to
    keep them apart shows it as Pending pods instead of quietly giving up the guarantee (ScheduleAnyway would).
    TaskManagers (SPREAD_EVEN) hold nothing durable and double up once every node has one. SPREAD_PREFERRED (the
    operator's choice for a cluster with fewer nodes than servers) makes the node rule ScheduleAnyway too: apart where
    the nodes allow, together where they do not.

    By zone, ScheduleAnyway with a skew of 1: the scheduler prefers the zone with the fewest instances; a cluster whose
    nodes carry no zone label (or one zone) still schedules everything."""
    if not component.spread or component.replicas < 2:
        return []
    pods = {"matchLabels": selector(settings, component)}
    strict = component.spread != SPREAD_PREFERRED
    by_node: Obj = {"maxSkew": 1, "topologyKey": HOSTNAME_KEY,
                    "whenUnsatisfiable": "DoNotSchedule" if strict else "ScheduleAnyway", "labelSelector": pods}
    if component.spread == SPREAD_APART:
        by_node["minDomains"] = component.replicas
    return [by_node, {"maxSkew": 1, "topologyKey": ZONE_KEY, "whenUnsatisfiable": "ScheduleAnyway",
                      "labelSelector": pods}]


def _stack_pods(settings: Settings) -> Obj:
    return {"matchLabels": {"app.kubernetes.io/instance": settings.project}}


DEFAULT_DENY = "default-deny"


def _default_deny(settings: Settings) -> Obj:
    """Selects every pod of the stack with no rule in either direction: a pod is reachable, and reaches anything,
    only where a component's policy allows it (policies add up)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _shared_meta(settings, DEFAULT_DENY, "network-policy"),
            "spec": {"podSelector": _stack_pods(settings), "policyTypes": ["Ingress", "Egress"]}}


def _network_policy(stack: Stack, component: Component, setup: Setup) -> Obj:
    """A component's paths, over the stack's default deny of both directions.

    In: each port open to exactly the components that reach it (``Component.reaches``), and a port that serves
    clients (``Port.clients``) also to pods labelled as the stack's clients (``CLIENT_LABEL``, any namespace). A port
    nobody reaches (the SQL Gateway's) takes no connection from any pod: a port-forward, which the kubelet delivers
    on the pod's loopback, is the way in. Out: DNS, exactly the ports of the components it reaches, the jar
    repository where an init container downloads the locked jars, and the applications Prometheus scrapes."""
    settings = stack.settings
    present = {c.name: c for c in stack.components}
    rules: list[Obj] = []
    for port in component.ports:
        peers = [{"podSelector": {"matchLabels": selector(settings, other)}}
                 for other in stack.components if (component.name, port.name) in other.reaches]
        if port.clients:
            peers.append({"namespaceSelector": {}, "podSelector": {"matchLabels": client_label(settings)}})
        if peers:
            rules.append({"ports": [{"protocol": "TCP", "port": port.container}], "from": peers})
    egress: list[Obj] = [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
    targets: dict[str, list[int]] = {}
    for name, port_name in component.reaches:
        if name in present:  # a component the settings leave out (Trino workers, the SQL Gateway) is skipped
            targets.setdefault(name, []).append(present[name].port(port_name).container)
    egress += [{"to": [{"podSelector": {"matchLabels": selector(settings, present[name])}}],
                "ports": [{"protocol": "TCP", "port": port} for port in sorted(set(ports))]}
               for name, ports in targets.items()]
    if settings.external_store and any(name == MINIO for name, _ in component.reaches):
        # the user's object store is outside the cluster: its port, to any address (no pod selector reaches it)
        egress.append({"ports": [{"protocol": "TCP", "port": store_port(settings)}]})
    if settings.catalog.kind == "external" and any(name == REST_CATALOG for name, _ in component.reaches):
        # the user's catalog (and its OAuth2 token endpoint) is outside the stack: its ports, to any address
        egress.append({"ports": [{"protocol": "TCP", "port": port} for port in catalog_ports(settings)]})
    if component.jars:
        egress.append({"ports": [{"protocol": "TCP", "port": repository_port(settings)}]})
    if names_rack(setup.container):  # the rack init container asks the API server for its node's zone
        egress.append({"ports": [{"protocol": "TCP", "port": port}
                                 for port in sorted({443, settings.kubernetes.api_server_port})]})
    if component.name == PROMETHEUS:
        apps = sorted({int(t.rsplit(":", 1)[1]) for t in settings.monitoring.app_targets.split(",") if ":" in t})
        if apps:
            egress.append({"ports": [{"protocol": "TCP", "port": port} for port in apps]})
    spec: Obj = {"podSelector": {"matchLabels": selector(settings, component)}, "policyTypes": ["Ingress", "Egress"]}
    if rules:  # the API server drops an empty list: written, every later `up` would see a change and configure it
        spec["ingress"] = rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(settings, component.name, component), "spec": {**spec, "egress": egress}}


def store_port(settings: Settings) -> int:
    """The port of an external object store (``object_store.endpoint``; empty: AWS S3 over HTTPS)."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.object_store.endpoint or "https://s3.amazonaws.com")
    return url.port or (443 if url.scheme == "https" else 80)


def catalog_ports(settings: Settings) -> list[int]:
    """The ports of an external catalog (``catalog.uri``) and of its OAuth2 token endpoint, where it has one."""
    from urllib.parse import urlsplit

    urls = [urlsplit(u) for u in (settings.catalog.uri, settings.catalog.oauth2_server_uri) if u]
    return sorted({url.port or (443 if url.scheme == "https" else 80) for url in urls})


def repository_port(settings: Settings) -> int:
    """The port the init containers download the locked jars from (``local.maven_repository``)."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.local.maven_repository)
    return url.port or (443 if url.scheme == "https" else 80)


CLIENT_LABEL = "sagaz-lakehouse.io/client"


def client_label(settings: Settings) -> dict[str, str]:
    """The label a pod outside the stack carries to reach its client ports (Fluss, Trino, the object store): its
    value is the project, so clients of one stack do not reach another."""
    return {CLIENT_LABEL: settings.project}


def config_map_name(component: Component) -> str:
    return f"{component.name}-config"


def _config_key(name: str) -> str:
    return name.replace("/", "_")  # ConfigMap keys allow [-._a-zA-Z0-9]


SHARED_CONFIG = "shared-config"


def shared_config_map(stack: Stack) -> Obj | None:
    """Files marked shared (the same for every component that mounts them), in one ConfigMap."""
    data = {_config_key(f.name): f.content for c in stack.components
            for f in c.setup(symbolic_instance(c)).files if f.mount and f.shared}
    if not data:
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _shared_meta(stack.settings, SHARED_CONFIG, "config"), "data": data}


def _config_map(settings: Settings, component: Component, setup: Setup, credentials: Credentials) -> Obj | None:
    data = {_config_key(f.name): identities.substitute_public(f.content, settings, credentials)
            for f in setup.files if f.mount and not f.shared and not f.secret}
    if not data:
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(settings, config_map_name(component),
                                                                        component), "data": data}


def _pod_template(stack: Stack, component: Component, setup: Setup, config_map: Obj | None,
                  lock: dict[str, list[artifacts.Artifact]], secret_data: dict[str, str]) -> Obj:
    settings = stack.settings
    container = setup.container
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    if component.stateful:
        mounts.append({"name": "data", "mountPath": component.data_dir})
    if config_map is not None:
        volumes.append({"name": "config", "configMap": {"name": config_map["metadata"]["name"]}})
        mounts += [{"name": "config", "mountPath": f.mount, "subPath": _config_key(f.name), "readOnly": True}
                   for f in setup.files if f.mount and not f.shared and not f.secret]
    secret_items = [{"key": secret_key(component, f), "path": f.name} for f in secret_files(component, setup)]
    if secret_items:
        volumes.append({"name": "secrets", "secret": {"secretName": SECRET_NAME, "items": secret_items,
                                                       "defaultMode": SECRET_FILE_MODE}})
        mounts.append({"name": "secrets", "mountPath": security.SECRETS_DIR, "readOnly": True})
    shared = [f for f in setup.files if f.mount and f.shared]
    if shared:
        volumes.append({"name": "shared", "configMap": {"name": SHARED_CONFIG}})
        mounts += [{"name": "shared", "mountPath": f.mount, "subPath": _config_key(f.name), "readOnly": True}
                   for f in shared]
    for index, scratch in enumerate(container.scratch):  # the root file system is read-only
        empty: Obj = {"sizeLimit": quantity(scratch.size)}
        if scratch.memory:
            empty["medium"] = "Memory"
        volumes.append({"name": f"scratch-{index}", "emptyDir": empty})
        mounts.append({"name": f"scratch-{index}", "mountPath": scratch.path})
    init = []
    jars = _jars(component, lock)
    if jars:
        volumes.append({"name": "artifacts", "emptyDir": {"sizeLimit": f"{jars_mebibytes(jars)}Mi"}})
        mounts += [{"name": "artifacts", "mountPath": jar_images.jar_path(j.directory, a), "subPath": a.name,
                    "readOnly": True} for j in component.jars for a in artifacts.group(j.group, lock)]
        init.append(_fetch_jars_init(settings, component, jars))
    rack = names_rack(container)
    if rack:
        volumes += [{"name": "rack", "emptyDir": {"sizeLimit": "1Mi"}}, _api_token_volume()]
        mounts.append({"name": "rack", "mountPath": RACK_DIR, "readOnly": True})
        init.append(_rack_init(settings))
    main = _container(stack, component, container, mounts, jars_mebibytes(jars) if jars else 0)
    spec: Obj = {}
    if rack:
        spec["serviceAccountName"] = component.name  # whose token only the rack init container mounts
    if init:
        spec["initContainers"] = init
    spec["containers"] = [main]
    if volumes:
        spec["volumes"] = volumes
    spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": container.user, "runAsGroup": container.user,
                               "fsGroup": container.user, "seccompProfile": {"type": "RuntimeDefault"}}
    spread = spread_constraints(settings, component)
    if spread:
        spec["topologySpreadConstraints"] = spread
    spec["enableServiceLinks"] = False  # service env vars like FLUSS_... or TRINO_PORT would confuse entrypoints
    # No container talks to the Kubernetes API but the rack init container, which mounts its token itself.
    spec["automountServiceAccountToken"] = False
    if component.one_shot:
        spec["restartPolicy"] = "OnFailure"
    shared_data = {"data": {_config_key(f.name): f.content for f in shared}}  # what of the shared map it reads
    annotations = {CHECKSUM_ANNOTATION: workload_checksum([m for m in (config_map, shared_data) if m and m["data"]],
                                                          [*init, main])}
    read = sorted(secret_keys([*init, main]) | {item["key"] for item in secret_items})
    if read:  # a digest of exactly the Secret's values this pod reads: a change restarts exactly these pods
        annotations[CREDENTIALS_ANNOTATION] = identities.values_digest(settings, [secret_data[k] for k in read])
    return {"metadata": {"labels": labels(settings, component), "annotations": annotations}, "spec": spec}


def reads_secret(pod_spec: Obj) -> bool:
    """Whether a pod reads the Secret: into its environment, or as files."""
    volumes = [v for v in pod_spec.get("volumes") or [] if (v.get("secret") or {}).get("secretName") == SECRET_NAME]
    return bool(volumes or secret_keys([*pod_spec.get("initContainers", []), *pod_spec["containers"]]))


def secret_keys(containers: list[Obj]) -> set[str]:
    """The Secret's keys these containers read into their environment."""
    refs = [((e.get("valueFrom") or {}).get("secretKeyRef") or {}) for c in containers for e in c.get("env") or []]
    return {ref["key"] for ref in refs if ref.get("name") == SECRET_NAME}


def _container(stack: Stack, component: Component, container: Container, mounts: list[Obj],
               jars_size: int = 0) -> Obj:
    settings = stack.settings
    env = _env(dict(container.env))
    command, args = list(container.entrypoint), list(container.args)
    pod_env = []
    if _names_instance(container) or (component.health and "{instance}" in component.health.expect):
        pod_env = [_field_env("POD_NAME", "metadata.name"), _field_env("POD_IP", "status.podIP")]
    if _names_instance(container):
        command, args = ["/bin/bash", "-c", instance_prelude(component, container), component.name], [*command, *args]
    out: Obj = {"name": component.name, "image": component.image, "imagePullPolicy": "IfNotPresent"}
    if command:
        out["command"] = command
    if args:
        out["args"] = args
    ports = [{"name": p.name, "containerPort": p.container, "protocol": "TCP"} for p in component.ports]
    if ports:
        out["ports"] = ports
    if pod_env or env:
        out["env"] = pod_env + env
    if mounts:
        out["volumeMounts"] = mounts
    if component.health is not None:
        out.update(_probes(stack, component, container))
    memory = f"{mebibytes(component.memory)}Mi" if component.memory else "128Mi"
    request, limit = ephemeral_storage(container, jars_size)
    out["resources"] = {"requests": {"cpu": settings.cpu_request, "memory": memory,
                                     "ephemeral-storage": request},
                        "limits": {"memory": memory, "ephemeral-storage": limit}}  # no CPU limit: no throttling
    out["securityContext"] = CONTAINER_SECURITY
    return out


# Every container: no privilege escalation, no capabilities, and a read-only root file system (each image's
# writable folders are emptyDirs: Container.scratch).
CONTAINER_SECURITY: Obj = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                           "readOnlyRootFilesystem": True}
# A container's log on the node counts toward its ephemeral storage: what a run writes (request) and what the
# kubelet keeps at most before rotating it away (limit: its default containerLogMaxSize 10Mi x containerLogMaxFiles
# 5, rounded up), in MiB.
LOG_ALLOWANCE = (16, 64)


def quantity(size: str) -> str:
    return f"{mebibytes(size)}Mi"


def ephemeral_storage(container: Container, jars_size: int = 0) -> tuple[str, str]:
    """The container's ephemeral-storage request and limit: what its scratch folders were measured to hold
    (Scratch.used) and may hold (their size limits; memory-backed ones count as memory instead), the locked jars
    its pod downloads, and its log."""
    disk = [s for s in container.scratch if not s.memory]
    request = sum(mebibytes(s.used) for s in disk) + jars_size + LOG_ALLOWANCE[0]
    limit = sum(mebibytes(s.size) for s in disk) + jars_size + LOG_ALLOWANCE[1]
    return f"{request}Mi", f"{limit}Mi"


def jars_mebibytes(jars: list[artifacts.Artifact]) -> int:
    """The locked jars' size (the lock records each file's bytes), rounded up, with 10% to spare."""
    return math.ceil(sum(a.size for a in jars) * 1.1 / 2**20)


def instance_prelude(component: Component, container: Container) -> str:
    """Bash run before the image's entrypoint: derives this pod's instance values and puts them into the
    environment variables and arguments that name them (then ``exec "$@"``)."""
    lines = ["set -eu",
             'export INSTANCE_NAME="$POD_NAME" INSTANCE_HOST="$POD_IP" INSTANCE_INDEX="${POD_NAME##*-}"']
    tokens = ["INSTANCE_NAME", "INSTANCE_HOST", "INSTANCE_INDEX"]
    if mentions(container, "${INSTANCE_NUMBER}"):
        lines.append("export INSTANCE_NUMBER=$((INSTANCE_INDEX + 1))")  # ZooKeeper's server id counts from 1
        tokens.append("INSTANCE_NUMBER")
    if names_rack(container):  # what the rack init container wrote
        lines.append(f'INSTANCE_RACK="$(cat {RACK_DIR}/{RACK_FILE})"; export INSTANCE_RACK')
        tokens.append("INSTANCE_RACK")
    for port in component.ports:
        if port.per_instance:
            var = f"INSTANCE_PORT_{port.name.upper()}"
            lines.append(f"export {var}={port.host_port_shell('INSTANCE_INDEX')}")
            tokens.append(var)
    # sub VALUE sets v to VALUE with every instance token replaced (bash pattern substitution: no eval).
    lines.append("sub() { v=\"$1\";" + "".join(f" v=\"${{v//'${{{t}}}'/${t}}}\";" for t in tokens) + " }")
    named = [k for k, v in container.env.items() if INSTANCE_TOKEN.search(v)]
    if named:
        lines.append(f'for var in {" ".join(named)}; do sub "${{!var}}"; export "$var=$v"; done')
    lines.append('args=(); for a in "$@"; do sub "$a"; args+=("$v"); done')
    lines.append('exec "${args[@]}"')
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ racks

# A tablet server's rack (Fluss tablet-server.rack) is its node's zone. The Downward API cannot read a node's labels,
# so an init container reads its node through the API server, with a token of the component's own ServiceAccount
# (allowed `get nodes`, nothing else) mounted in that init container only, and writes the rack to a file the
# main container's prelude reads. A node without a zone label gives its own name: every tablet server must have a
# rack or none (Fluss refuses a mix when it assigns replicas), and a node is then its own failure domain.
RACK_PLACEHOLDER = "${INSTANCE_RACK}"  # an instance token, filled in by the prelude
RACK_DIR = "/etc/sagaz-rack"
RACK_FILE = "rack"
API_TOKEN_DIR = "/var/run/secrets/sagaz-lakehouse/api"  # noqa: S105 - a folder
API_TOKEN_SECONDS = 600  # the shortest a projected token may live: it is used once, at start
RACK_SCRIPT = f"""\
import json, os, ssl, urllib.request
node = os.environ["NODE_NAME"]
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
host = f"[{{host}}]" if ":" in host else host
with open("{API_TOKEN_DIR}/token") as f:
    token = f.read().strip()
request = urllib.request.Request(f"https://{{host}}:{{port}}/api/v1/nodes/{{node}}",
                                 headers={{"Authorization": "Bearer " + token, "Accept": "application/json"}})
context = ssl.create_default_context(cafile="{API_TOKEN_DIR}/ca.crt")
with urllib.request.urlopen(request, context=context, timeout=30) as answer:
    labels = json.load(answer)["metadata"].get("labels") or {{}}
zone = labels.get("{ZONE_KEY}", "")
rack = zone or node
with open("{RACK_DIR}/{RACK_FILE}", "w") as f:
    f.write(rack)
print(f"rack {{rack}} (" + ("zone of node " + node if zone else "node " + node + " has no zone label") + ")")
"""


def mentions(container: Container, token: str) -> bool:
    """Whether an instance token appears in the container's environment or arguments (the prelude then sets it)."""
    return any(token in v for v in [*container.env.values(), *container.args])


def names_rack(container: Container) -> bool:
    return mentions(container, RACK_PLACEHOLDER)


def _rack_init(settings: Settings) -> Obj:
    """Reads its node's zone (python's standard library, in the stack's python image) into the rack file."""
    return {"name": "node-zone", "image": settings.images.python, "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", RACK_SCRIPT], "env": [_field_env("NODE_NAME", "spec.nodeName")],
            "volumeMounts": [{"name": "rack", "mountPath": RACK_DIR},
                             {"name": "api-token", "mountPath": API_TOKEN_DIR, "readOnly": True}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "16Mi"},
                          "limits": {"memory": "64Mi", "ephemeral-storage": "64Mi"}},
            "securityContext": CONTAINER_SECURITY}


def _api_token_volume() -> Obj:
    """The ServiceAccount's token (bound to the pod, short-lived) and the cluster's CA, as automounting would give
    every container, for the rack init container only."""
    return {"name": "api-token", "projected": {"defaultMode": SECRET_FILE_MODE, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": API_TOKEN_SECONDS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}


def node_reader_name(settings: Settings, component: Component) -> str:
    """Cluster-wide names must not collide between stacks: the namespace's name is part of them."""
    return f"{settings.namespace}:{component.name}:node-reader"


def _node_reader(settings: Settings, component: Component) -> list[Obj]:
    """The component's ServiceAccount (no automounted token), a ClusterRole allowing `get` on nodes and nothing else
    (nodes are cluster-scoped: a Role cannot grant them; no list, no watch), and the binding between them."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(settings, component.name, component),
               "automountServiceAccountToken": False}
    name = node_reader_name(settings, component)
    cluster_meta = {"name": name, "labels": labels(settings, component)}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": cluster_meta,
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": dict(cluster_meta),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": component.name, "namespace": settings.namespace}]}
    return [account, role, binding]


# --------------------------------------------------------------------------------------------------- probes


def _probes(stack: Stack, component: Component, container: Container) -> Obj:
    """Readiness and liveness ask the model's health check. A startup probe asking the same holds both back for
    the component's ``start_seconds``: the check fails until start-up is complete (Trino reports "starting"), and
    the kubelet must not restart a component that is still within the time the model allows it to start."""
    health = component.health
    assert health is not None
    action = _probe_action(stack, component, health, container)
    return {"startupProbe": {**action, "periodSeconds": STARTUP_PERIOD, "timeoutSeconds": 5,
                             "failureThreshold": math.ceil(component.start_seconds / STARTUP_PERIOD)},
            "readinessProbe": {**action, "initialDelaySeconds": 5, "periodSeconds": 5, "timeoutSeconds": 5,
                               "failureThreshold": 3},
            "livenessProbe": {**action, "initialDelaySeconds": 60, "periodSeconds": 20, "timeoutSeconds": 5,
                              "failureThreshold": 6}}


def _probe_action(stack: Stack, component: Component, health: Health, container: Container) -> Obj:
    """A kubelet probe where it can say the same thing (no expected answer, the pod's own port), else an exec."""
    port = component.port(health.port).container if not health.via else 0
    if health.kind == "tcp":
        return {"tcpSocket": {"port": port}}
    if health.kind == "http" and not health.expect and not health.via:
        return {"httpGet": {"path": health.path, "port": port}}
    command = probes.command(stack, component, addresses.LOOPBACK, "$POD_NAME", container.probe_tool)
    return {"exec": {"command": command}}


# ------------------------------------------------------------------------------------------------ environment


def _env(values: dict[str, str]) -> list[Obj]:
    """Environment maps → EnvVar list. A value that is exactly a credential placeholder becomes a secretKeyRef
    (listed first); a placeholder inside a longer value is left for the image to expand (Fluss's envsubst), which
    needs the credential variables themselves: the component's environment must carry them
    (``identities.credential_environment``), which become secretKeyRefs like any exact placeholder."""
    refs = {"${" + var + "}": var for var in identities.secret_variable_names()}
    head, tail = [], []
    for name, value in values.items():
        if value in refs:
            head.append(_secret_env(name, refs[value]))
        else:
            tail.append({"name": name, "value": value})
    return head + tail


def _secret_env(name: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


# ----------------------------------------------------------------------------------------------------- jars


def _jars(component: Component, lock: dict[str, list[artifacts.Artifact]]) -> list[artifacts.Artifact]:
    seen: dict[str, artifacts.Artifact] = {}
    for jars in component.jars:
        for item in artifacts.group(jars.group, lock):
            seen.setdefault(item.name, item)
    return list(seen.values())


FETCH_SCRIPT = ('set -eu\ncd "$0"\nwhile [ "$#" -gt 0 ]; do\n'
                '  if [ ! -f "$3" ]; then\n'
                '    wget -q -O "$3.part" "$1"\n'
                '    echo "$2  $3.part" | sha256sum -c - >/dev/null || { echo "sha256 mismatch: $1" >&2; exit 1; }\n'
                '    mv "$3.part" "$3"\n'
                '  fi\n  shift 3\ndone\n')


def _fetch_jars_init(settings: Settings, component: Component, jars: list[artifacts.Artifact]) -> Obj:
    """Downloads every locked jar of the component into the shared emptyDir and checks its sha256.

    The flink image does this for every pod: its Dockerfile relies on the eclipse-temurin base's wget, and
    sha256sum is coreutils. Arguments are (url, sha256, name) triples; the script is fixed."""
    args = [ARTIFACTS_DIR]
    size = jars_mebibytes(jars)
    for item in jars:
        args += [item.source(settings.local.maven_repository), item.sha256, item.name]
    return {"name": "fetch-jars", "image": settings.images.flink, "command": ["/bin/sh", "-c", FETCH_SCRIPT],
            "args": args, "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS_DIR}],
            # what it downloads goes to the emptyDir, counted against the pod's ephemeral storage while it runs
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": f"{size}Mi"},
                          "limits": {"memory": "256Mi", "ephemeral-storage": f"{size + LOG_ALLOWANCE[1]}Mi"}},
            "securityContext": CONTAINER_SECURITY}


# ------------------------------------------------------------------------------------------------ workloads


def workload_checksum(config_maps: list[Obj], containers: list[Obj]) -> str:
    """Over the ConfigMap data the pod reads and the configuration passed in its containers (env, args, command).
    Credentials are not included (they are references to the Secret): CREDENTIALS_ANNOTATION covers them."""
    pieces = [json.dumps(c["data"], sort_keys=True) for c in config_maps]
    for container in containers:
        pieces.append(json.dumps({k: container.get(k) for k in ("env", "args", "command")}, sort_keys=True))
    return config_checksum(pieces)


def _claim(settings: Settings, size: str) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if settings.volumes.storage_class:
        spec["storageClassName"] = settings.volumes.storage_class
    return {"metadata": {"name": "data"}, "spec": spec}


def _workload(settings: Settings, component: Component, kind: str, template: Obj) -> Obj:
    meta = _meta(settings, component.name, component)
    if kind == "Job":
        meta["name"] = job_name(component, template)
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": JOB_TTL_SECONDS, "template": template}}
    spec: Obj = {"replicas": component.replicas, "selector": {"matchLabels": selector(settings, component)},
                 "template": template}
    if kind == "Deployment":
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
    # Instances do not need to start one at a time.
    spec = {"serviceName": headless_name(component), **spec, "podManagementPolicy": "Parallel"}
    if component.stateful:
        spec["volumeClaimTemplates"] = [_claim(settings, component.volume_size)]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec}


def job_name(component: Component, template: Obj) -> str:
    """``<component>-<8 hex digits of the pod template>``: a Job's template is immutable, so a changed task is a new
    Job (the old one is pruned by ``up``, or garbage-collected after JOB_TTL_SECONDS under plain kubectl)."""
    import hashlib

    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return f"{component.name}-{digest[:JOB_DIGEST_LENGTH]}"


def pod_name(component: Component, instance: str) -> str:
    """The pod of an instance of a StatefulSet: a replicated instance's name is its pod's; a single instance runs
    as the set's pod 0."""
    return instance if component.replicated else f"{instance}-0"


def headless_name(component: Component) -> str:
    return component.name + HEADLESS_SUFFIX


def has_client_service(component: Component) -> bool:
    """A ClusterIP Service named like the component, for a long-running component with ports, unless its
    instances are addressed one by one (tablet servers: a client must reach the tablet that leads a bucket)."""
    return bool(component.ports) and not component.one_shot and not any(p.per_instance for p in component.ports)


def service_name(component: Component) -> str:
    """The Service in front of a component: its own, or the headless one when it has no ClusterIP Service."""
    return component.name if has_client_service(component) else headless_name(component)


def _service(settings: Settings, component: Component, ports: list[tuple[str, int]], headless: bool) -> Obj:
    spec: Obj = {"selector": selector(settings, component),
                 "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in ports]}
    if headless:
        # Pods get DNS names (fluss-tablet-0.fluss-tablet-headless) before they are ready, as servers need.
        spec = {"clusterIP": "None", "publishNotReadyAddresses": True, **spec}
    name = headless_name(component) if headless else component.name
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(settings, name, component), "spec": spec}
