"""Compose target: one ``compose.yaml`` plus the config files it mounts and a 0600 ``.env`` with the credentials.

Everything a service needs is computed here as data (environment maps, healthcheck commands, mounts); the template
``templates/compose/compose.yaml.j2`` only lays it out. Credentials never appear in ``compose.yaml`` or the mounted
files: ``environment:`` entries reference ``${S3_ACCESS_KEY}`` (compose fills them in from ``.env``), and text that a
container expands itself (Fluss's server.yaml through envsubst, shell scripts) carries ``$${...}`` so compose leaves
it alone.

Health checks use only what each image contains (upstream Dockerfiles, read for the pinned versions):

- zookeeper (official image, eclipse-temurin:17-jre-jammy base): ``zkServer.sh`` is on PATH and ``status`` asks the
  server with the ``srvr`` four-letter word, the one the image's entrypoint whitelists by default.
- minio (minio/minio ``Dockerfile.release``): ships a static ``curl`` in /usr/bin; ``mc ready local`` would assume
  port 9000, curl follows ``ports.minio``.
- rest-catalog (apache/iceberg ``docker/iceberg-rest-fixture/Dockerfile``): installs ``curl`` and its own HEALTHCHECK
  curls ``/v1/config``; we do the same on the configured port.
- fluss servers (apache/fluss ``docker/fluss/Dockerfile``, eclipse-temurin noble): no HTTP endpoint, but bash: a
  TCP connect through ``/dev/tcp`` to the CLIENT listener.
- flink (apache/flink-docker 1.20 ``Dockerfile``): the image downloads Flink with ``wget`` from its base, so wget is
  there; the JobManager answers ``/overview``. The TaskManager has no HTTP port: a TCP connect (bash) to its fixed
  RPC port shows its RPC service is up.
- trino (trinodb/trino ``core/docker``): ``/usr/lib/trino/bin/health-check`` curls ``/v1/info`` on the port from
  /etc/trino/config.properties and requires ``"starting": false``.
"""

from __future__ import annotations

import shlex
from typing import Any

from sagaz_lakehouse import artifacts, render, wiring
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Credentials, Settings, mebibytes
from sagaz_lakehouse.render import RenderedFile
from sagaz_lakehouse.stack import Component

COMPOSE_FILE = "compose.yaml"
ENV_FILE = ".env"
JARS_DIR = "jars"  # materialized by the driver (artifacts.fetch + materialize), bind-mounted read-only
JAR_GROUPS = {"flink-lib": "flink-lib-fluss", "fluss-iceberg": "fluss-iceberg-extras", "tiering": "tiering-job"}
FLUSS_PLUGIN_DIR = "/opt/fluss/plugins/iceberg"
FLINK_LIB_DIR = "/opt/flink/lib"
TIERING_DIR = "/opt/tiering"
TASKMANAGER_RPC_PORT = wiring.TASKMANAGER_RPC_PORT
# The REST fixture runs as uid 1000; a named volume copies the ownership of the image folder it is mounted on, and
# only the user's home exists and belongs to that uid (useradd --create-home in the fixture's Dockerfile).
REST_CATALOG_STATE_DIR = "/home/iceberg"
LABEL_PREFIX = "io.sagaz-lakehouse"
JOB_ACTIVE_STATES = ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING", "RECONCILING")


def files(settings: Settings, credentials: Credentials) -> list[RenderedFile]:
    env = render.environment()
    data = project(settings)
    out = [RenderedFile(COMPOSE_FILE, env.get_template("compose/compose.yaml.j2").render(**data))]
    out += [RenderedFile(path, content) for path, content in config_files(settings).items()]
    out.append(RenderedFile(ENV_FILE, env_file(credentials), secret=True))
    return out


def env_file(credentials: Credentials) -> str:
    # Double quotes keep '#' and spaces literal; compose's dotenv parser honours backslash escapes inside them.
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'

    return ("# Credentials for this compose project: read by compose only, never commit this file.\n"
            f"{wiring.ACCESS_KEY_VAR}={quoted(credentials.access_key)}\n"
            f"{wiring.SECRET_KEY_VAR}={quoted(credentials.secret_key)}\n")


# ------------------------------------------------------------------------------------------------ helpers


def escape(text: str) -> str:
    """Protect ``$`` from compose interpolation: the container (envsubst, a shell) expands it instead."""
    return text.replace("$", "$$")


def secret_env() -> dict[str, str]:
    """The credential variables, filled in by compose from .env (and a clear error when .env lacks them)."""
    return {var: "${" + var + ":?" + var + " is missing: run sagaz-lakehouse up or render again}"
            for var in (wiring.ACCESS_KEY_VAR, wiring.SECRET_KEY_VAR)}


def interpolated(values: dict[str, str]) -> dict[str, str]:
    """Environment entries whose ${S3_*} placeholders compose fills in from .env."""
    strict = secret_env()
    out = {}
    for key, value in values.items():
        for var, ref in strict.items():
            value = value.replace("${" + var + "}", ref)
        out[key] = value
    return out


def jar_mounts(kind: str, target_dir: str) -> list[str]:
    return [f"./{JARS_DIR}/{kind}/{a.name}:{target_dir}/{a.name}:ro" for a in artifacts.group(JAR_GROUPS[kind])]


def service_names(settings: Settings, component: Component) -> list[str]:
    """Compose services of a component: tablet servers get one service each (own id, port, listener)."""
    if component.name == s.TABLET:
        return [f"{s.TABLET}-{i}" for i in range(component.replicas)]
    return [component.name]


def cmd(*args: str | int) -> list[str]:
    return ["CMD", *[str(a) for a in args]]


def tcp_check(host: str, port: int) -> list[str]:
    return cmd("bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}")


def healthcheck(test: list[str], start_period: str = "20s", retries: int = 30) -> dict[str, Any]:
    return {"test": test, "interval": "5s", "timeout": "5s", "retries": retries, "start_period": start_period}


# ----------------------------------------------------------------------------------------- the project


def project(settings: Settings) -> dict[str, Any]:
    """Template data: the project name, every service (as plain dicts) and every named volume."""
    stack = s.build_stack(settings)
    services: dict[str, dict[str, Any]] = {}
    for component in stack.components:
        for name in service_names(settings, component):
            services[name] = _service(settings, stack, component, name)
    volumes = sorted({v.split(":", 1)[0] for svc in services.values() for v in svc.get("volumes", [])
                      if not v.startswith(".")})
    return {"name": settings.project, "services": services, "volumes": volumes, "settings": settings}


def _service(settings: Settings, stack: s.Stack, component: Component, name: str) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "image": component.image,
        "labels": {f"{LABEL_PREFIX}.project": settings.project, f"{LABEL_PREFIX}.component": component.name,
                   f"{LABEL_PREFIX}.version": component.version, f"{LABEL_PREFIX}.role": component.role},
        "restart": "no" if component.one_shot else "unless-stopped",
    }
    if component.memory:
        svc["mem_limit"] = f"{mebibytes(component.memory)}m"
    depends = {}
    for target, condition in component.depends_on:
        for dep in service_names(settings, stack.get(target)):
            depends[dep] = condition.value
    if depends:
        svc["depends_on"] = depends
    if component.replicas > 1 and component.name != s.TABLET:
        svc["deploy"] = {"replicas": component.replicas}
    svc.update(SERVICE_BUILDERS[component.name](settings, name))
    return svc


def _published(host_port: int, container_port: int) -> str:
    # Loopback only: the stack's external endpoints are 127.0.0.1 (wiring.endpoints, View.EXTERNAL).
    return f"{wiring.LOOPBACK}:{host_port}:{container_port}"


def _zookeeper(settings: Settings, name: str) -> dict[str, Any]:
    port, heap = settings.ports.zookeeper, mebibytes(settings.memory.zookeeper) * 3 // 4
    return {
        "environment": {
            # The entrypoint writes ZOO_SERVERS into zoo.cfg; the part after ';' is the client port.
            "ZOO_SERVERS": f"server.1=localhost:2888:3888;{port}",
            "ZK_SERVER_HEAP": str(heap),  # zkEnv.sh defaults to 1000 MB, above a small container limit
        },
        "volumes": ["zookeeper-data:/data", "zookeeper-datalog:/datalog"],
        "healthcheck": healthcheck(cmd("zkServer.sh", "status"), start_period="10s"),
    }


def _minio(settings: Settings, name: str) -> dict[str, Any]:
    p = settings.ports
    return {
        "command": ["server", "/data", "--address", f":{p.minio}", "--console-address", f":{p.minio_console}"],
        "environment": interpolated(wiring.minio_environment()),
        "ports": [_published(p.minio, p.minio), _published(p.minio_console, p.minio_console)],
        "volumes": ["minio-data:/data"],
        "healthcheck": healthcheck(cmd("curl", "-fsS", "-o", "/dev/null",
                                       f"http://127.0.0.1:{p.minio}/minio/health/ready"), start_period="5s"),
    }


def _create_bucket(settings: Settings, name: str) -> dict[str, Any]:
    return {
        "entrypoint": ["/bin/sh", "/scripts/create-bucket.sh"],
        "environment": secret_env(),
        "volumes": ["./scripts/create-bucket.sh:/scripts/create-bucket.sh:ro"],
    }


def _rest_catalog(settings: Settings, name: str) -> dict[str, Any]:
    port = settings.ports.rest_catalog
    env = wiring.rest_catalog_environment(settings, REST_CATALOG_STATE_DIR)
    env["REST_PORT"] = str(port)  # the image's own HEALTHCHECK reads REST_PORT
    return {
        "environment": interpolated(env),
        "ports": [_published(port, port)],
        "volumes": [f"rest-catalog-data:{REST_CATALOG_STATE_DIR}"],
        "healthcheck": healthcheck(cmd("curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}/v1/config")),
    }


def _fluss(role: str, properties: dict[str, str], host_port: int, hostname: str,
           volumes: list[str]) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "command": [role],
        "environment": {
            # Appended to conf/server.yaml and run through envsubst by the image's entrypoint: the container, not
            # compose, expands ${S3_ACCESS_KEY} there, so the variable's value never lands in FLUSS_PROPERTIES.
            "FLUSS_PROPERTIES": escape(render.yaml_lines(properties)),
            **secret_env(),
        },
        "ports": [_published(host_port, s.INTERNAL_FLUSS_PORT)],
        "volumes": [*volumes, *jar_mounts("fluss-iceberg", FLUSS_PLUGIN_DIR),
                    f"./fluss/log4j-console.properties:{render.FLUSS_LOG4J_PATH}:ro"],
        "healthcheck": healthcheck(tcp_check(hostname, s.INTERNAL_FLUSS_PORT)),
    }


def _coordinator(settings: Settings, name: str) -> dict[str, Any]:
    return _fluss("coordinatorServer", wiring.fluss_coordinator_properties(settings),
                  settings.ports.fluss_coordinator, name, [])


def _tablet(settings: Settings, name: str) -> dict[str, Any]:
    index = int(name.rsplit("-", 1)[1])
    return _fluss("tabletServer", wiring.fluss_tablet_properties(settings, index),
                  settings.ports.fluss_tablet + index, name, [f"{name}-data:/var/lib/fluss"])


def flink_properties(settings: Settings, *, submit: bool = False) -> dict[str, str]:
    props = wiring.flink_container_properties(settings)
    if submit:
        props["rest.address"] = s.JOBMANAGER  # the image sets 0.0.0.0, fine for serving, not for a client
    return props


def _flink(settings: Settings, role: str, *, submit: bool = False) -> dict[str, Any]:
    return {
        "command": [role] if role else None,
        "environment": {
            # The entrypoint turns each "key: value" line into -Dkey=value (whitespace stripped).
            "FLINK_PROPERTIES": render.yaml_lines(flink_properties(settings, submit=submit)),
            "JOB_MANAGER_RPC_ADDRESS": s.JOBMANAGER,
            # The tiering job's arguments carry no credentials: S3FileIO takes them from the AWS default chain.
            **interpolated(wiring.aws_environment(settings)),
        },
        "volumes": jar_mounts("flink-lib", FLINK_LIB_DIR),
    }


def _jobmanager(settings: Settings, name: str) -> dict[str, Any]:
    p = settings.ports
    svc = _flink(settings, "jobmanager")
    svc["ports"] = [_published(p.flink_rest, p.flink_rest)]
    svc["healthcheck"] = healthcheck(cmd("wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{p.flink_rest}/overview"))
    return svc


def _taskmanager(settings: Settings, name: str) -> dict[str, Any]:
    svc = _flink(settings, "taskmanager")
    svc["healthcheck"] = healthcheck(tcp_check("127.0.0.1", TASKMANAGER_RPC_PORT))
    return svc


def _submit_tiering(settings: Settings, name: str) -> dict[str, Any]:
    svc = _flink(settings, "", submit=True)
    del svc["command"]
    svc["entrypoint"] = ["/docker-entrypoint.sh", "bash", "/scripts/submit-tiering.sh"]
    svc["volumes"] = [*svc["volumes"], *jar_mounts("tiering", TIERING_DIR),
                      "./scripts/submit-tiering.sh:/scripts/submit-tiering.sh:ro"]
    return svc


def _trino(settings: Settings, name: str, worker: bool = False) -> dict[str, Any]:
    role = "worker" if worker else "coordinator"
    svc = {
        "environment": secret_env(),  # read by the catalog file as ${ENV:S3_ACCESS_KEY}
        "volumes": [f"./trino/{role}/config.properties:/etc/trino/config.properties:ro",
                    "./trino/catalog/iceberg.properties:/etc/trino/catalog/iceberg.properties:ro"],
        "healthcheck": healthcheck(cmd("/usr/lib/trino/bin/health-check"), start_period="30s", retries=60),
    }
    if not worker:
        svc["ports"] = [_published(settings.ports.trino, settings.ports.trino)]
    return svc


SERVICE_BUILDERS = {
    s.ZOOKEEPER: _zookeeper,
    s.MINIO: _minio,
    s.CREATE_BUCKET: _create_bucket,
    s.REST_CATALOG: _rest_catalog,
    s.COORDINATOR: _coordinator,
    s.TABLET: _tablet,
    s.JOBMANAGER: _jobmanager,
    s.TASKMANAGER: _taskmanager,
    s.SUBMIT_TIERING: _submit_tiering,
    s.TRINO: _trino,
    s.TRINO_WORKER: lambda settings, name: _trino(settings, name, worker=True),
}


# ------------------------------------------------------------------------------------- mounted files


def trino_config(settings: Settings, worker: bool) -> dict[str, str]:
    port = settings.ports.trino
    props = {"coordinator": "false" if worker else "true"}
    if not worker:
        # Without workers the coordinator also executes queries.
        props["node-scheduler.include-coordinator"] = "false" if settings.replicas.trino_workers else "true"
    props.update({"http-server.http.port": str(port), "discovery.uri": f"http://{s.TRINO}:{port}"})
    return props


def _argument_lines(args: list[str]) -> list[str]:
    """``--key value`` pairs, one per line, shell-quoted."""
    return [" ".join(shlex.quote(a) for a in args[i:i + 2]) for i in range(0, len(args), 2)]


def config_files(settings: Settings) -> dict[str, str]:
    env = render.environment()
    tiering_jar = f"{TIERING_DIR}/{artifacts.group(JAR_GROUPS['tiering'])[0].name}"
    files = {
        "trino/catalog/iceberg.properties": render.java_properties(
            wiring.trino_iceberg_catalog(settings, env_refs=True)),
        "trino/coordinator/config.properties": render.java_properties(trino_config(settings, worker=False)),
        "fluss/log4j-console.properties": render.masked_log4j(),
        "scripts/create-bucket.sh": env.get_template("compose/create-bucket.sh.j2").render(
            minio=f"http://{s.MINIO}:{settings.ports.minio}", bucket=settings.lake.bucket),
        "scripts/submit-tiering.sh": env.get_template("compose/submit-tiering.sh.j2").render(
            rest=f"http://{s.JOBMANAGER}:{settings.ports.flink_rest}", job_name=wiring.TIERING_JOB_NAME,
            active_states="|".join(JOB_ACTIVE_STATES), main_class=wiring.TIERING_MAIN_CLASS, jar=tiering_jar,
            arguments=" \\\n  ".join(_argument_lines(wiring.tiering_job_arguments(settings)))),
    }
    if settings.replicas.trino_workers:
        files["trino/worker/config.properties"] = render.java_properties(trino_config(settings, worker=True))
    return files

