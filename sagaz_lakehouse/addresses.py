"""How the components reach each other: addresses by :class:`~sagaz_lakehouse.stack.View`, the fixed ports inside
containers, and where the lake lives in the object store.

Every function takes the View of the process being configured, never the target: a process inside a container
network sees service names, a process on the host (the local target, or a client such as ``doctor``) sees
loopback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.stack import View

LOOPBACK = "127.0.0.1"
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - a container listener that port-forwards and published ports reach
REMOTE_DATA_PREFIX = "fluss-remote"  # Fluss's remote.data.dir inside the lake bucket

# Ports inside containers: fixed, so in-network wiring never depends on the host's port choices.
FLUSS_CLIENT_PORT = 9123  # the CLIENT listener (published by compose, port-forwarded by Kubernetes)
FLUSS_METRICS_PORT = 9249  # the Fluss Prometheus reporter's default port (ConfigOptions), in every container
TASKMANAGER_RPC_PORT = 6122  # fixed in containers (the image's default range would be random)
TASKMANAGER_DATA_PORT = 6121  # taskmanager.data.port, fixed in containers (Flink's default 0: a random port)
FLINK_BLOB_PORT = 6124  # fixed by the Flink image's entrypoint
FLINK_METRICS_PORT = 9249  # the Flink Prometheus reporter's default port, in every container
POSTGRES_PORT = 5432  # PostgreSQL's own default, where the official image listens
# Fluss's `client.connect-timeout` (ConfigOptions CLIENT_CONNECT_TIMEOUT: 120 s by default, v0.9.1-incubating). A
# replaced pod or container comes back at a new address; a connect to the old one, still in the JVM's DNS cache,
# gets no answer and holds its caller until this timeout. The tiering job's enumerator sends its coordinator
# heartbeat on its only thread: with the default, tiering stopped for over a minute after a pod replacement.
FLUSS_CONNECT_TIMEOUT = "10s"


@dataclass(frozen=True)
class Endpoints:
    """Addresses of every service as seen from one place (inside the stack, or the user's host)."""

    zookeeper: str
    fluss_bootstrap: str
    s3: str
    rest_catalog: str
    flink_rest: str
    trino: str
    flink_sql_gateway: str
    prometheus: str = ""
    # pyfluss properties that log in to Fluss (SASL), besides bootstrap.servers; holds a password: never printed.
    fluss_login: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Where Trino wants a login (HTTPS, a password); None: plain HTTP, any user name. Holds a password.
    trino_login: TrinoLogin | None = field(default=None, repr=False)
    # Where the (external) catalog wants an OAuth2 login; None: none. Holds the client secret.
    catalog_login: CatalogLogin | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CatalogLogin:
    """An OAuth2 client-credentials login to the Iceberg REST catalog (catalog.oauth2_server_uri)."""

    server_uri: str
    credential: str = field(repr=False)  # client_id:client_secret
    scope: str = ""  # "": the clients' default (catalog)


@dataclass(frozen=True)
class TrinoLogin:
    url: str  # https://127.0.0.1:<ports.trino_https>
    user: str
    password: str = field(repr=False)
    ca_file: str  # the certificate to verify the server with (tls.ensure)


def external_s3(settings: Settings) -> str:
    """object_store.kind external: the store's endpoint, the same from every view; AWS S3's regional endpoint when
    none is set."""
    return settings.object_store.endpoint.rstrip("/") or f"https://s3.{settings.s3_region}.amazonaws.com"


def on_aws(settings: Settings) -> bool:
    """The lake is in AWS S3 itself (an external store without an endpoint of its own)."""
    return settings.external_store and not settings.object_store.endpoint


def endpoints(settings: Settings, view: View) -> Endpoints:
    found = _endpoints(settings, view)
    return replace(found, s3=external_s3(settings)) if settings.external_store else found


def _endpoints(settings: Settings, view: View) -> Endpoints:
    """Where each service is, seen from ``view``. An external catalog is where ``catalog.uri`` says, from anywhere."""
    p = settings.ports
    external = settings.catalog.uri if settings.catalog.kind == "external" else ""
    if view is View.EXTERNAL:
        host = LOOPBACK  # local binds loopback; compose publishes there; kubernetes port-forwards there
        return Endpoints(f"{host}:{p.zookeeper}", f"{host}:{p.fluss_coordinator}", f"http://{host}:{p.minio}",
                         external or f"http://{host}:{p.rest_catalog}", f"http://{host}:{p.flink_rest}",
                         f"http://{host}:{p.trino}", f"http://{host}:{p.flink_sql_gateway}",
                         f"http://{host}:{p.prometheus}")
    return Endpoints(zookeeper_ensemble(settings), f"{s.COORDINATOR}:{p.fluss_internal}",
                     f"http://{s.MINIO}:{p.minio}", external or f"http://{s.REST_CATALOG}:{p.rest_catalog}",
                     f"http://{s.JOBMANAGER}:{p.flink_rest}", f"http://{s.TRINO}:{p.trino}",
                     f"http://{s.FLINK_SQL_GATEWAY}:{p.flink_sql_gateway}", f"http://{s.PROMETHEUS}:{p.prometheus}")


def zookeeper_ensemble(settings: Settings) -> str:
    """ZooKeeper's connection string inside the stack: its Service, or every server of an ensemble by its stable
    name (a client tries them in turn; Fluss's Curator follows the ensemble's own configuration from there)."""
    port = settings.ports.zookeeper
    servers = s.ensemble_size(settings)
    if servers == 1:
        return f"{s.ZOOKEEPER}:{port}"
    return ",".join(f"{member}:{port}" for member in s.zookeeper_members(settings))


def catalog_db(settings: Settings, view: View) -> tuple[str, int]:
    """Where the bundled catalog reaches its PostgreSQL (host, port), seen from ``view``."""
    if view is View.EXTERNAL:
        return LOOPBACK, settings.ports.catalog_db
    return s.CATALOG_DB, POSTGRES_PORT


def warehouse_uri(settings: Settings) -> str:
    """Where the Iceberg tables live in the lake bucket (the bundled catalog's warehouse)."""
    return f"s3://{settings.lake.bucket}/{settings.lake.warehouse}"


def catalog_warehouse(settings: Settings) -> str:
    """The ``warehouse`` the catalog's clients ask for: the bundled catalog's location in the bucket, or what the
    external catalog names (Apache Polaris: the catalog), "" for none."""
    return settings.catalog.warehouse if settings.catalog.kind == "external" else warehouse_uri(settings)


def remote_data_uri(settings: Settings) -> str:
    return f"s3://{settings.lake.bucket}/{REMOTE_DATA_PREFIX}"


def instance_endpoint(component: s.Component, name: str) -> str:
    """Where the user reaches an instance from the host, for `status` (its first published port)."""
    ports = [p for p in component.ports if p.published and p.host]
    if not ports:
        return ""
    port = ports[0].host_port(s.instance_index(name))
    scheme = "http://" if component.health is not None and component.health.kind == "http" else ""
    return f"{scheme}{LOOPBACK}:{port}"
