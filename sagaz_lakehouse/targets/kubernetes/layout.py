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
  image's other files stay; locked jars fetched and verified by an init container into an ``emptyDir``.

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

from sagaz_lakehouse import addresses, artifacts, identities, profiles
from sagaz_lakehouse.components import build_stack
from sagaz_lakehouse.config import Credentials, Settings, mebibytes
from sagaz_lakehouse.render import RenderedFile, config_checksum, to_yaml
from sagaz_lakehouse.stack import Component, Container, Health, Instance, Setup, Stack, View
from sagaz_lakehouse.targets import probes

Obj = dict[str, Any]

MANAGER = "sagaz-lakehouse"
SECRET_NAME = "s3-credentials"  # noqa: S105 - a name; its keys are the variables identities' placeholders use
CHECKSUM_ANNOTATION = "checksum/config"
# On pods that read the Secret: a salted, slow digest of the credentials (never the values), so rotating them rolls
# exactly those pods (environment variables from a Secret are read only when a container starts).
CREDENTIALS_ANNOTATION = "checksum/credentials"
CREDENTIALS_DIGEST_ROUNDS = 200_000
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
    return build_stack(settings, View.INTERNAL, instance_address)


def instance_address(component: Component, name: str) -> str:
    """An instance inside the cluster: a replica by its DNS name under the headless Service, anything else by its
    ClusterIP Service."""
    return f"{name}.{headless_name(component)}" if component.replicated else component.name


def manifests(settings: Settings, credentials: Credentials) -> list[Manifest]:
    stack = cluster_stack(settings)
    lock = artifacts.load_lock()
    result = [
        Manifest("00-namespace.yaml", "namespace", [_namespace(settings)]),
        Manifest("10-secret.yaml", "S3 credentials (the only file holding credential values)",
                 [_secret(settings, credentials)]),
    ]
    shared = shared_config_map(stack)
    if shared is not None:
        result.append(Manifest("11-shared-config.yaml", "files several components mount (the one-shot tasks)",
                               [shared]))
    result.append(Manifest("12-network-policy.yaml", "ingress closed to every pod of the stack unless a component's "
                           "own policy opens a port", [_default_deny(settings)]))
    digest = credentials_digest(settings, credentials)
    for number, component in enumerate(stack.components, start=20):
        result.append(Manifest(f"{number:02d}-{component.name}.yaml", component.role,
                               component_objects(stack, component, lock, digest)))
    return result


def credentials_digest(settings: Settings, credentials: Credentials) -> str:
    """16 hex digits of PBKDF2-SHA256 over both credentials, salted with project and namespace: changes whenever a
    credential does, and is slow to test guesses against (the rendered files are not secret)."""
    import hashlib

    salt = f"sagaz-lakehouse/{settings.project}/{settings.namespace}".encode()
    value = f"{credentials.access_key}\n{credentials.secret_key}".encode()
    return hashlib.pbkdf2_hmac("sha256", value, salt, CREDENTIALS_DIGEST_ROUNDS).hex()[:16]


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
    meta = _shared_meta(settings, settings.namespace, "namespace")
    del meta["namespace"]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _secret(settings: Settings, credentials: Credentials) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _shared_meta(settings, SECRET_NAME, "credentials"),
            "type": "Opaque",
            "stringData": identities.secret_variables(settings, credentials)}


# ------------------------------------------------------------------------------------------------ components


def symbolic_instance(component: Component) -> Instance:
    ports = {p.name: "${INSTANCE_PORT_" + p.name.upper() + "}" if p.per_instance else str(p.host)
             for p in component.ports if p.host}
    # Its DNS name under the StatefulSet's headless Service (resolvable before the pod is ready): the address that
    # survives a restart, unlike the pod IP it binds.
    return Instance("${INSTANCE_NAME}", "${INSTANCE_INDEX}", "${INSTANCE_HOST}", component.data_dir,
                    component.conf_dir, ports, address="${INSTANCE_NAME}." + headless_name(component))


def workload_kind(component: Component, setup: Setup) -> str:
    if component.one_shot:
        return "Job"
    if component.stateful or component.replicated or _names_instance(setup.container):
        return "StatefulSet"
    return "Deployment"


def _names_instance(container: Container) -> bool:
    return any(INSTANCE_TOKEN.search(v) for v in [*container.env.values(), *container.args])


def component_objects(stack: Stack, component: Component, lock: dict[str, list[artifacts.Artifact]],
                      credentials_checksum: str) -> list[Obj]:
    settings = stack.settings
    setup = component.setup(symbolic_instance(component))
    kind = workload_kind(component, setup)
    config_map = _config_map(settings, component, setup)
    template = _pod_template(stack, component, setup, config_map, lock, credentials_checksum)
    objects: list[Obj] = [config_map] if config_map else []
    ports = [(p.name, p.container) for p in component.ports]
    if kind == "StatefulSet":
        objects.append(_service(settings, component, ports, headless=True))
    if has_client_service(component):
        objects.append(_service(settings, component, ports, headless=False))
    if component.ports:
        objects.append(_network_policy(settings, component))
    if component.replicas > 1:
        objects.append(_disruption_budget(settings, component))
    objects.append(_workload(settings, component, kind, template))
    return objects


def _disruption_budget(settings: Settings, component: Component) -> Obj:
    """A drain takes one instance at a time: with replicated Fluss buckets, one tablet server down keeps every
    bucket served (and acks=all writes acknowledged by the replicas left)."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(settings, component.name,
                                                                                          component),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(settings, component)}}}


def _stack_pods(settings: Settings) -> Obj:
    return {"matchLabels": {"app.kubernetes.io/instance": settings.project}}


def _default_deny(settings: Settings) -> Obj:
    """Selects every pod of the stack with no ingress rule: a pod is reachable only where a component's policy
    allows it (policies add up), so one-shot tasks and unlisted ports take no connections at all."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _shared_meta(settings, "default-deny-ingress", "network-policy"),
            "spec": {"podSelector": _stack_pods(settings), "policyTypes": ["Ingress"]}}


def _network_policy(settings: Settings, component: Component) -> Obj:
    """A component's ports: client ports (Port.clients) from anywhere, the rest only from pods of the stack."""
    rules: list[Obj] = []
    for port in component.ports:
        rule: Obj = {"ports": [{"protocol": "TCP", "port": port.container}]}
        if not port.clients:
            rule["from"] = [{"podSelector": _stack_pods(settings)}]
        rules.append(rule)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(settings, component.name, component),
            "spec": {"podSelector": {"matchLabels": selector(settings, component)}, "policyTypes": ["Ingress"],
                     "ingress": rules}}


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


def _config_map(settings: Settings, component: Component, setup: Setup) -> Obj | None:
    data = {_config_key(f.name): f.content for f in setup.files if f.mount and not f.shared}
    if not data:
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(settings, config_map_name(component),
                                                                        component), "data": data}


def _pod_template(stack: Stack, component: Component, setup: Setup, config_map: Obj | None,
                  lock: dict[str, list[artifacts.Artifact]], credentials_checksum: str) -> Obj:
    settings = stack.settings
    container = setup.container
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    if component.stateful:
        mounts.append({"name": "data", "mountPath": component.data_dir})
    if config_map is not None:
        volumes.append({"name": "config", "configMap": {"name": config_map["metadata"]["name"]}})
        mounts += [{"name": "config", "mountPath": f.mount, "subPath": _config_key(f.name), "readOnly": True}
                   for f in setup.files if f.mount and not f.shared]
    shared = [f for f in setup.files if f.mount and f.shared]
    if shared:
        volumes.append({"name": "shared", "configMap": {"name": SHARED_CONFIG}})
        mounts += [{"name": "shared", "mountPath": f.mount, "subPath": _config_key(f.name), "readOnly": True}
                   for f in shared]
    for index, path in enumerate(container.scratch):
        volumes.append({"name": f"scratch-{index}", "emptyDir": {}})
        mounts.append({"name": f"scratch-{index}", "mountPath": path})
    init = []
    jars = _jars(component, lock)
    if jars:
        volumes.append({"name": "artifacts", "emptyDir": {}})
        mounts += [{"name": "artifacts", "mountPath": f"{j.directory}/{a.name}", "subPath": a.name,
                    "readOnly": True} for j in component.jars for a in artifacts.group(j.group, lock)]
        init.append(_fetch_jars_init(settings, component, jars))
    main = _container(stack, component, container, mounts)
    spec: Obj = {}
    if init:
        spec["initContainers"] = init
    spec["containers"] = [main]
    if volumes:
        spec["volumes"] = volumes
    spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": container.user, "runAsGroup": container.user,
                               "fsGroup": container.user, "seccompProfile": {"type": "RuntimeDefault"}}
    spec["enableServiceLinks"] = False  # service env vars like FLUSS_... or TRINO_PORT would confuse entrypoints
    spec["automountServiceAccountToken"] = False  # no component talks to the Kubernetes API
    if component.one_shot:
        spec["restartPolicy"] = "OnFailure"
    shared_data = {"data": {_config_key(f.name): f.content for f in shared}}  # what of the shared map it reads
    annotations = {CHECKSUM_ANNOTATION: workload_checksum([m for m in (config_map, shared_data) if m and m["data"]],
                                                          [*init, main])}
    if reads_secret([*init, main]):
        annotations[CREDENTIALS_ANNOTATION] = credentials_checksum
    return {"metadata": {"labels": labels(settings, component), "annotations": annotations}, "spec": spec}


def reads_secret(containers: list[Obj]) -> bool:
    return any(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == SECRET_NAME
               for c in containers for e in c.get("env") or [])


def _container(stack: Stack, component: Component, container: Container, mounts: list[Obj]) -> Obj:
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
    out["resources"] = {"requests": {"cpu": profiles.profile(settings.profile).cpu_request, "memory": memory},
                        "limits": {"memory": memory}}  # no CPU limit: no throttling
    out["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return out


def instance_prelude(component: Component, container: Container) -> str:
    """Bash run before the image's entrypoint: derives this pod's instance values and puts them into the
    environment variables and arguments that name them (then ``exec "$@"``)."""
    lines = ["set -eu",
             'export INSTANCE_NAME="$POD_NAME" INSTANCE_HOST="$POD_IP" INSTANCE_INDEX="${POD_NAME##*-}"']
    tokens = ["INSTANCE_NAME", "INSTANCE_HOST", "INSTANCE_INDEX"]
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
    for item in jars:
        args += [item.source(settings.local.maven_repository), item.sha256, item.name]
    return {"name": "fetch-jars", "image": settings.images.flink, "command": ["/bin/sh", "-c", FETCH_SCRIPT],
            "args": args, "volumeMounts": [{"name": "artifacts", "mountPath": ARTIFACTS_DIR}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}


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
    return f"{component.name}-headless"


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
