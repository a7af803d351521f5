"""How the components are wired together: the one place where addresses, bucket, warehouse, region and
credentials flow into each consumer's configuration.

Everything here returns plain data (property maps, argument lists, environment maps); templates only lay it out.
Credentials appear as ``${S3_ACCESS_KEY}`` / ``${S3_SECRET_KEY}`` placeholders: the compose and Kubernetes
renderers hand them to the container environment (from a 0600 env file or a Secret), the local renderer
substitutes them into 0600 files. Property names come from upstream: apache/fluss
``website/docs/quickstart/lakehouse.md`` and ``ConfigOptions.java``, Iceberg ``AwsProperties``/``S3FileIOProperties``,
Trino ``docs/src/main/sphinx/object-storage/file-system-s3.md`` and ``connector/iceberg.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Credentials, Settings, mebibytes
from sagaz_lakehouse.stack import View

ACCESS_KEY_VAR = "S3_ACCESS_KEY"
SECRET_KEY_VAR = "S3_SECRET_KEY"  # noqa: S105 - a variable name, not a value
ACCESS_KEY = "${" + ACCESS_KEY_VAR + "}"
SECRET_KEY = "${" + SECRET_KEY_VAR + "}"
LOOPBACK = "127.0.0.1"
TIERING_JOB_NAME = "Fluss Lake Tiering Service - iceberg"  # FlussLakeTieringEntrypoint's job name
TIERING_MAIN_CLASS = "org.apache.fluss.flink.tiering.FlussLakeTieringEntrypoint"
REST_CATALOG_DB = "catalog.db"
TASKMANAGER_RPC_PORT = 6122  # fixed in containers so TaskManager health checks have a port to probe


@dataclass(frozen=True)
class Endpoints:
    """Addresses of every service as seen from one place (inside the stack, or the user's host)."""

    zookeeper: str
    fluss_bootstrap: str
    s3: str
    rest_catalog: str
    flink_rest: str
    trino: str


def endpoints(settings: Settings, view: View) -> Endpoints:
    p = settings.ports
    if settings.target == "local" or view is View.EXTERNAL:
        host = LOOPBACK  # local binds loopback; compose publishes there; kubernetes port-forwards there
        return Endpoints(f"{host}:{p.zookeeper}", f"{host}:{p.fluss_coordinator}", f"http://{host}:{p.minio}",
                         f"http://{host}:{p.rest_catalog}", f"http://{host}:{p.flink_rest}",
                         f"http://{host}:{p.trino}")
    return Endpoints(f"{s.ZOOKEEPER}:{p.zookeeper}", f"{s.COORDINATOR}:{s.INTERNAL_FLUSS_PEER_PORT}",
                     f"http://{s.MINIO}:{p.minio}", f"http://{s.REST_CATALOG}:{p.rest_catalog}",
                     f"http://{s.JOBMANAGER}:{p.flink_rest}", f"http://{s.TRINO}:{p.trino}")


def warehouse_uri(settings: Settings) -> str:
    return f"s3://{settings.lake.bucket}/{settings.lake.warehouse}"


def remote_data_uri(settings: Settings) -> str:
    return f"s3://{settings.lake.bucket}/fluss-remote"


def iceberg_catalog_properties(settings: Settings, view: View, with_credentials: bool = True) -> dict[str, str]:
    """Iceberg catalog properties shared by the Fluss servers and the tiering job (``datalake.iceberg.*``).

    Without credentials, S3FileIO falls back to the AWS default chain (``aws_environment``): used wherever the
    properties could end up in a log or a process listing (tiering-job arguments, the REST fixture, which logs
    every catalog property at start-up).
    """
    ep = endpoints(settings, view)
    props = {
        "type": "rest",
        "uri": ep.rest_catalog,
        "warehouse": warehouse_uri(settings),
        # The default ResolvingFileIO needs Hadoop classes the Fluss plugin lacks; S3FileIO does not.
        "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "s3.endpoint": ep.s3,
        "s3.path-style-access": "true",
        "client.region": settings.lake.region,
    }
    if with_credentials:
        props["s3.access-key-id"] = ACCESS_KEY
        props["s3.secret-access-key"] = SECRET_KEY
    return props


def aws_environment(settings: Settings) -> dict[str, str]:
    """Credentials for the AWS SDK's default chain, for processes that must not carry them in arguments."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": settings.lake.region}


def fluss_common_properties(settings: Settings, view: View) -> dict[str, str]:
    ep = endpoints(settings, view)
    props = {
        "zookeeper.address": ep.zookeeper,
        "remote.data.dir": remote_data_uri(settings),
        # fluss-fs-s3 (Hadoop S3A underneath); region is mandatory even for MinIO (apache/fluss#211).
        "s3.endpoint": ep.s3,
        "s3.access-key": ACCESS_KEY,
        "s3.secret-key": SECRET_KEY,
        "s3.region": settings.lake.region,
        "s3.path-style-access": "true",
        # Clients (the tiering job reading KV snapshots) get temporary credentials from the servers. Without a
        # role the servers call AWS STS GetSessionToken, which MinIO lacks (apache/fluss#211); with a role they
        # call AssumeRole at this endpoint, which MinIO implements (fluss-fs-s3 S3DelegationTokenProvider).
        "s3.assumed.role.arn": "arn:aws:iam::000000000000:role/sagaz-lakehouse",
        "s3.assumed.role.sts.endpoint": ep.s3,
        "datalake.format": "iceberg",
        # Primary-key tables tier from KV snapshots: the snapshot interval bounds tiering latency.
        "kv.snapshot.interval": "5s" if settings.profile == "dev" else "1min",
    }
    props.update({f"datalake.iceberg.{k}": v for k, v in iceberg_catalog_properties(settings, view).items()})
    return props


def fluss_coordinator_properties(settings: Settings) -> dict[str, str]:
    props = fluss_common_properties(settings, _server_view(settings))
    props.update(_listeners(settings, s.COORDINATOR, settings.ports.fluss_coordinator))
    return props


def fluss_tablet_properties(settings: Settings, index: int) -> dict[str, str]:
    props = fluss_common_properties(settings, _server_view(settings))
    props["tablet-server.id"] = str(index)
    props["data.dir"] = "/var/lib/fluss/data" if settings.target != "local" else f"fluss-tablet-{index}/data"
    props.update(_listeners(settings, f"{s.TABLET}-{index}", settings.ports.fluss_tablet + index))
    return props


def _server_view(settings: Settings) -> View:
    return View.EXTERNAL if settings.target == "local" else View.INTERNAL


def _listeners(settings: Settings, hostname: str, host_port: int) -> dict[str, str]:
    """Two listeners in a container network: INTERNAL for servers and in-network clients, CLIENT advertised to
    the host. Fluss answers metadata requests with the addresses of the listener the request came in on."""
    if settings.target == "local":
        return {"bind.listeners": f"FLUSS://{LOOPBACK}:{host_port}"}
    return {
        "bind.listeners": f"INTERNAL://{hostname}:{s.INTERNAL_FLUSS_PEER_PORT}, "
                          f"CLIENT://{hostname}:{s.INTERNAL_FLUSS_PORT}",
        "advertised.listeners": f"CLIENT://{LOOPBACK}:{host_port}",
        "internal.listener.name": "INTERNAL",
    }


def tiering_job_arguments(settings: Settings) -> list[str]:
    """Program arguments of FlussLakeTieringEntrypoint: the same ``datalake.*`` options as the servers.

    Credentials are not among them: the TaskManagers get ``aws_environment`` instead."""
    view = _server_view(settings)
    args = ["--fluss.bootstrap.servers", endpoints(settings, view).fluss_bootstrap,
            # TieringSourceOptions (fluss-flink-common): read from the "fluss." arguments by FlussLakeTiering.
            "--fluss.tiering.poll.table.interval", settings.tiering_poll,
            "--datalake.format", "iceberg"]
    for key, value in iceberg_catalog_properties(settings, view, with_credentials=False).items():
        args += [f"--datalake.iceberg.{key}", value]
    return args


def trino_iceberg_catalog(settings: Settings, env_refs: bool = False) -> dict[str, str]:
    """Trino's iceberg catalog. With ``env_refs``, credentials become ``${ENV:VAR}``, the form Trino expands from
    its environment (container targets); without, the placeholders are left for substitution (local)."""
    ep = endpoints(settings, _server_view(settings))
    access, secret = ("${ENV:" + ACCESS_KEY_VAR + "}", "${ENV:" + SECRET_KEY_VAR + "}") if env_refs else (ACCESS_KEY,
                                                                                                          SECRET_KEY)
    return {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": ep.rest_catalog,
        "iceberg.rest-catalog.warehouse": warehouse_uri(settings),
        "fs.native-s3.enabled": "true",
        "s3.endpoint": ep.s3,
        "s3.region": settings.lake.region,
        "s3.path-style-access": "true",
        "s3.aws-access-key": access,
        "s3.aws-secret-key": secret,
    }


def flink_container_properties(settings: Settings) -> dict[str, str]:
    """Flink's settings inside a container network (FLINK_PROPERTIES for compose, a ConfigMap for Kubernetes)."""
    p = settings.ports
    return {
        "jobmanager.rpc.address": s.JOBMANAGER,
        "jobmanager.rpc.port": str(p.flink_rpc),
        "rest.port": str(p.flink_rest),
        "taskmanager.rpc.port": str(TASKMANAGER_RPC_PORT),
        "jobmanager.memory.process.size": f"{mebibytes(settings.memory.flink_jobmanager)}m",
        "taskmanager.memory.process.size": f"{mebibytes(settings.memory.flink_taskmanager)}m",
        "taskmanager.numberOfTaskSlots": str(settings.replicas.flink_task_slots),
        # Without checkpointing a job gets no restarts by default; the tiering job must survive transient errors.
        "restart-strategy.type": "exponential-delay",
    }


def rest_catalog_environment(settings: Settings, state_dir: str) -> dict[str, str]:
    """The REST fixture maps CATALOG_* variables to catalog properties ('__' → '-', '_' → '.'; RCKUtils.java) and
    defaults to a JDBC catalog; a sqlite file in ``state_dir`` makes its state durable."""
    ep = endpoints(settings, _server_view(settings))
    return {
        "CATALOG_WAREHOUSE": warehouse_uri(settings),
        "CATALOG_URI": f"jdbc:sqlite:file:{state_dir}/{REST_CATALOG_DB}",
        "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
        "CATALOG_S3_ENDPOINT": ep.s3,
        "CATALOG_S3_PATH__STYLE__ACCESS": "true",
        "CATALOG_CLIENT_REGION": settings.lake.region,
        "CATALOG_REST_PORT": str(settings.ports.rest_catalog),  # read as the catalog property rest.port
        **aws_environment(settings),
    }


def minio_environment() -> dict[str, str]:
    return {"MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}


def substitute_secrets(text: str, credentials: Credentials) -> str:
    """For files that must carry the values themselves (local target; written with mode 0600)."""
    return text.replace(ACCESS_KEY, credentials.access_key).replace(SECRET_KEY, credentials.secret_key)


def holds_secret(text: str) -> bool:
    return ACCESS_KEY in text or SECRET_KEY in text
