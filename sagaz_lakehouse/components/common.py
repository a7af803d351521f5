"""Small pieces several component descriptions share: JVM heap sizing, property-file layouts, the Iceberg catalog
that Fluss, the tiering job and Trino all point at, and the Fluss login.

Property names come from upstream: apache/fluss ``website/docs/quickstart/lakehouse.md`` and ``ConfigOptions.java``,
Iceberg ``AwsProperties``/``S3FileIOProperties``, Trino ``docs/src/main/sphinx/object-storage/file-system-s3.md``
and ``connector/iceberg.md``.
"""

from __future__ import annotations

import json

from sagaz_lakehouse import addresses, identities, security
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Settings, mebibytes

# Containers size the heap from their memory limit (compose mem_limit, Kubernetes limits) with this flag; native
# processes get the same share as -Xmx.
HEAP_SHARE = 0.75
CONTAINER_HEAP = "-XX:MaxRAMPercentage=75.0"


def heap_mb(memory: str, floor: int = 64) -> int:
    """The heap for a JVM given its process memory: 3/4 of it (the rest is metaspace, threads, buffers)."""
    return max(floor, int(mebibytes(memory) * HEAP_SHARE))


def xmx(memory: str) -> str:
    return f"-Xmx{heap_mb(memory)}m"


def java_properties(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def yaml_lines(values: dict[str, str]) -> str:
    """Flat ``key: value`` lines, as Fluss's server.yaml and Flink's config (and FLINK_PROPERTIES) expect."""
    return "".join(f"{key}: {value}\n" for key, value in values.items())


def metrics_bind(view: s.View, at: s.Instance, container_port: int) -> str:
    """The port an instance's metrics endpoint listens on: its own host port on the user's host (replicas fan out
    there), a fixed port inside a container."""
    return at.host_ports["metrics"] if view is s.View.EXTERNAL else str(container_port)


def metrics_port(container: int, host: int, setting: str, replicated: bool = False) -> s.Port:
    """A Prometheus endpoint: scraped from inside the stack (never published), per instance on the host."""
    return s.Port("metrics", container, host, published=False, per_instance=replicated, setting=setting)


def fluss_login(settings: Settings, view: s.View, at: s.Instance,
                server: bool = False) -> tuple[list[str], tuple[s.ConfigFile, ...]]:
    """The JVM flag and the JAAS file of a process that logs in to Fluss; none where Fluss takes anyone. The flag
    names only the file's path; the file is a secret file of the instance (0600 natively, the secrets folder in a
    container). A native JobManager also gets the same login for pyfluss (the watchdog checks the tiering job with it
    from the JobManager's folder)."""
    if not security.fluss_sasl_on(settings):
        return [], ()
    files = [s.ConfigFile(security.JAAS_FILE, security.jaas_file(server), mount=at.secret(security.JAAS_FILE),
                          secret=True)]
    if view is s.View.EXTERNAL:
        # JSON, as lake_health reads it; the password has no '"' or backslash to escape
        files.append(s.ConfigFile(security.LOGIN_FILE, json.dumps(security.pyfluss_login(security.FLUSS_PASSWORD)),
                                  secret=True))
    return [security.jaas_flag(at.secret(security.JAAS_FILE))], tuple(files)


def iceberg_catalog_properties(settings: Settings, view: s.View, role: str = "",
                               login: bool = False) -> dict[str, str]:
    """Iceberg catalog properties shared by the Fluss servers and the tiering job (``datalake.iceberg.*``).

    Without a ``role``, no object-store credentials: S3FileIO falls back to the AWS default chain
    (``aws_environment``), used wherever the properties could end up in a log or a process listing (tiering-job
    arguments, the REST fixture, which logs every catalog property at start-up). ``login``: with the external
    catalog's OAuth2 credential (a placeholder) where it wants one; the rest of its login is always there.
    """
    ep = addresses.endpoints(settings, view)
    props = {"type": "rest", "uri": ep.rest_catalog}
    warehouse = addresses.catalog_warehouse(settings)
    if warehouse:
        props["warehouse"] = warehouse
    props.update({
        # The default ResolvingFileIO needs Hadoop classes the Fluss plugin lacks; S3FileIO does not.
        "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "s3.endpoint": ep.s3,
        "s3.path-style-access": str(settings.s3_path_style).lower(),
        "client.region": settings.s3_region,
    })
    if role:
        identity = identities.s3_identity(settings, role)
        props["s3.access-key-id"] = identity.access_key
        props["s3.secret-access-key"] = identity.secret_key
    props.update(catalog_login(settings, credential=login))
    return props


def catalog_ready(settings: Settings) -> tuple[tuple[str, s.Condition], ...]:
    """The dependency on the bundled catalog; none on an external one (`up` checks it before anything starts)."""
    return () if settings.catalog.kind == "external" else ((s.REST_CATALOG, s.Condition.HEALTHY),)


def catalog_login(settings: Settings, credential: bool = True) -> dict[str, str]:
    """An Iceberg REST client's OAuth2 login to the external catalog (Iceberg ``OAuth2Properties``, 1.10.1): the
    client-credentials grant at ``oauth2-server-uri``, then the token as a Bearer on every request. ``rest.auth.type``
    is explicit (inferred only with a warning, ``AuthManagers``). ``credential``: with the client credentials (a
    placeholder), which only files and environments a target protects may carry. Empty where no login is wanted."""
    if not settings.catalog_oauth2:
        return {}
    props = {"rest.auth.type": "oauth2", "oauth2-server-uri": settings.catalog.oauth2_server_uri}
    if settings.catalog.scope:
        props["scope"] = settings.catalog.scope
    if credential:
        props["credential"] = identities.CATALOG_CREDENTIAL
    return props
