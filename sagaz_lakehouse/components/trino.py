"""Trino: SQL over the Iceberg tables (the ``iceberg`` catalog), a coordinator and optional workers.

The same files configure it everywhere: ``config.properties``, ``jvm.config``, ``node.properties`` and
``catalog/iceberg.properties``, mounted over the image's ``/etc/trino`` (trinodb/trino ``core/docker``; the image's
``run-trino`` starts the launcher with ``--etc-dir /etc/trino``). The catalog reads the S3 credentials as
``${ENV:S3_...}`` from the process environment, so no Trino file holds them. Trino 476 needs Java 24+.

In prod ``config.properties`` holds the nodes' shared secret, so it is a secret file like the keystore and the
hashed password file: in a container it is in the secrets folder and the launcher is pointed at it (``--config``,
the airlift launcher's option for the configuration file), while the image's own ``/etc/trino/config.properties``
is left unused.
"""

from __future__ import annotations

import math

from sagaz_lakehouse import addresses, identities, security, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components.common import catalog_ready, java_properties
from sagaz_lakehouse.config import Settings, duration_seconds, mebibytes

# Trino's object-store identity in prod: the lake role (read-write on the warehouse), not the reader's. Lake
# maintenance rewrites the table through Trino (optimize, optimize_manifests, expire_snapshots, remove_orphan_files),
# which the reader's read-only grant refused with S3 Access Denied on the real cluster.
TRINO_S3_ROLE = "lake"
CONF_DIR = "/etc/trino"
DATA_DIR = "/data/trino"  # the image's node.data-dir
# trinodb/trino core/docker/default/etc/jvm.config, with the heap made explicit (memory.trino) instead of
# MaxRAMPercentage, so a native process and a container get the same heap.
JVM_OPTIONS = (
    "-server", "-XX:G1HeapRegionSize=32M", "-XX:+ExplicitGCInvokesConcurrent", "-XX:+HeapDumpOnOutOfMemoryError",
    "-XX:+ExitOnOutOfMemoryError", "-XX:-OmitStackTraceInFastThrow", "-XX:ReservedCodeCacheSize=256M",
    "-XX:PerMethodRecompilationCutoff=10000", "-XX:PerBytecodeRecompilationCutoff=10000",
    "-Djdk.attach.allowAttachSelf=true", "-Djdk.nio.maxCachedBufferSize=2000000", "-XX:+EnableDynamicAgentLoading",
    # JOL (Trino's memory accounting) otherwise tries to attach HotSpot's serviceability agent, which fails without
    # ptrace rights (containers, most hosts) after 2 s of CPU: Trino starts 2 s sooner (trinodb/trino#18983)
    "-Djol.skipHotspotSAAttach=true",
    # https://bugs.openjdk.org/browse/JDK-8329528, as upstream's default
    "-XX:+UnlockDiagnosticVMOptions", "-XX:G1NumCollectionsKeepPinned=10000000",
)
# Only the image has it (a native agent that kills the JVM on resource exhaustion, upstream's first option).
IMAGE_JVM_AGENT = "-agentpath:/usr/lib/trino/bin/libjvmkill.so"
# Trino's default per-node query memory is 30% of the heap; stated so it is the same on every target.
QUERY_MEMORY_SHARE = 0.3
METRICS_USER = "prometheus"
CONFIG_FILE = "config.properties"
LAKE = ((s.REST_CATALOG, "http"), (s.MINIO, "s3"))  # what every Trino node reads the Iceberg tables through
# What the image writes (docker diff of a compose run): the launcher's var/ in the data folder (its pid file, the
# HTTP request log, bounded by REQUEST_LOG), the native libraries the JVM unpacks (snappy, zstd, lz4) and JNA's.
SCRATCH = (s.Scratch(s.TMP, "64Mi", used="2Mi"), s.Scratch(DATA_DIR, "64Mi", used="1Mi"),
           s.Scratch("/home/trino/.cache", "16Mi", used="1Mi"))
# airlift's HttpServerConfig (http-server.log.*): the request log rotates at this size, keeping this many files.
REQUEST_LOG = {"http-server.log.max-size": "16MB", "http-server.log.max-history": "2"}
RUN_TRINO = "/usr/lib/trino/bin/run-trino"  # the image's command (trinodb/trino core/docker/bin/run-trino)
KEYSTORE_FILE = "keystore.pem"
PASSWORD_FILE = "password.db"  # noqa: S105 - a file name
AUTHENTICATOR_FILE = "password-authenticator.properties"


def server_properties(settings: Settings, view: s.View, at: s.Instance, worker: bool) -> dict[str, str]:
    port = settings.ports.trino
    heap = mebibytes(settings.memory.trino)
    nodes = settings.replicas.trino_workers or 1  # without workers the coordinator also runs the queries
    per_node = int(heap * QUERY_MEMORY_SHARE)
    return {
        "coordinator": "false" if worker else "true",
        **({} if worker else {
            "node-scheduler.include-coordinator": "false" if settings.replicas.trino_workers else "true"}),
        "http-server.http.port": str(port),
        "discovery.uri": addresses.endpoints(settings, view).trino,
        "query.max-memory-per-node": f"{per_node}MB",
        "query.max-memory": f"{per_node * nodes}MB",
        "catalog.config-dir": f"{at.conf}/catalog",
        **REQUEST_LOG,
        **(auth_properties(settings, at, worker) if security.trino_auth_on(settings) else {}),
    }


def auth_properties(settings: Settings, at: s.Instance, worker: bool) -> dict[str, str]:
    """Clients log in with a password over HTTPS (prod; Trino docs security/tls.md, password-file.md,
    internal-communication.md). The HTTP port stays for what the nodes say to each other (signed with the shared
    secret) and /v1/info, which Trino serves to anyone; any other request over HTTP is refused ("Authentication over
    HTTP is not enabled"). Workers take no clients: they need the shared secret only."""
    if worker:
        return {"internal-communication.shared-secret": security.TRINO_SHARED_SECRET}
    return {
        "http-server.https.enabled": "true",
        "http-server.https.port": str(settings.ports.trino_https),
        "http-server.https.keystore.path": at.secret(KEYSTORE_FILE),
        "http-server.authentication.type": "PASSWORD",
        # Without it Trino looks for etc/password-authenticator.properties under its working directory.
        "password-authenticator.config-files": f"{at.conf}/{AUTHENTICATOR_FILE}",
        "internal-communication.shared-secret": security.TRINO_SHARED_SECRET,
    }


def auth_files(at: s.Instance) -> tuple[s.ConfigFile, ...]:
    """The file password authenticator (trino-password-authenticators), its one hashed user, the TLS keystore."""
    authenticator = java_properties({"password-authenticator.name": "file",
                                     "file.password-file": at.secret(PASSWORD_FILE)})
    return (s.ConfigFile(AUTHENTICATOR_FILE, authenticator, mount=f"{CONF_DIR}/{AUTHENTICATOR_FILE}"),
            s.ConfigFile(PASSWORD_FILE, security.TRINO_PASSWORD_DB + "\n", mount=at.secret(PASSWORD_FILE),
                         secret=True),
            s.ConfigFile(KEYSTORE_FILE, security.TRINO_KEYSTORE, mount=at.secret(KEYSTORE_FILE), secret=True))


def iceberg_catalog(settings: Settings, view: s.View) -> dict[str, str]:
    """Trino's iceberg catalog. Credentials are ``${ENV:S3_...}``, which Trino expands from its own environment
    (``credential_environment``)."""
    ep = addresses.endpoints(settings, view)
    identity = identities.s3_identity(settings, TRINO_S3_ROLE)
    warehouse = addresses.catalog_warehouse(settings)
    login: dict[str, str] = {}
    if settings.catalog_oauth2:  # IcebergRestCatalogConfig, OAuth2SecurityConfig (476); the credential is masked
        login = {"iceberg.rest-catalog.security": "OAUTH2",
                 "iceberg.rest-catalog.oauth2.server-uri": settings.catalog.oauth2_server_uri,
                 "iceberg.rest-catalog.oauth2.credential": "${ENV:" + identities.CATALOG_CREDENTIAL_VAR + "}"}
        if settings.catalog.scope:
            login["iceberg.rest-catalog.oauth2.scope"] = settings.catalog.scope
    return {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": ep.rest_catalog,
        **({"iceberg.rest-catalog.warehouse": warehouse} if warehouse else {}),
        **login,
        "fs.native-s3.enabled": "true",
        "s3.endpoint": ep.s3,
        "s3.region": settings.s3_region,
        "s3.path-style-access": str(settings.s3_path_style).lower(),
        "s3.aws-access-key": "${ENV:" + identity.access_var + "}",
        "s3.aws-secret-key": "${ENV:" + identity.secret_var + "}",
        # The shortest retention the maintenance procedures accept (IcebergConfig, 7d by default): the lake's own
        # settings, so that lake maintenance may keep exactly lake.snapshot_retention of time travel.
        "iceberg.expire-snapshots.min-retention": f"{int(duration_seconds(settings.snapshot_retention))}s",
        "iceberg.remove-orphan-files.min-retention": f"{int(duration_seconds(settings.orphan_retention))}s",
    }


def node_properties(settings: Settings, view: s.View, at: s.Instance) -> dict[str, str]:
    # node.environment must be lowercase letters, digits and '_': the project name with '-' replaced.
    props = {"node.environment": settings.project.replace("-", "_"), "node.data-dir": at.data}
    if view is s.View.EXTERNAL:
        # On the user's host Trino would announce the first non-loopback address it finds (a container bridge,
        # say); when that interface goes away every query fails with REMOTE_TASK_ERROR.
        props["node.internal-address"] = addresses.LOOPBACK
        # ... and listen on every interface: airlift's NodeConfig `node.bind-ip` (the address its HttpServer binds,
        # io.airlift:node 336 in Trino 476's lib/) keeps the HTTP and HTTPS ports on loopback.
        props["node.bind-ip"] = addresses.LOOPBACK
    return props


def jvm_options(settings: Settings) -> list[str]:
    return [f"-Xmx{mebibytes(settings.memory.trino)}m", *JVM_OPTIONS]


def process_memory(settings: Settings) -> str:
    """memory.trino is the heap; the process needs room beyond it (off-heap buffers, code cache): heap at 80%."""
    return f"{math.ceil(mebibytes(settings.memory.trino) / 0.8)}Mi"


def _trino(settings: Settings, view: s.View, worker: bool) -> s.Component:
    port = settings.ports.trino
    auth = security.trino_auth_on(settings)

    # ${ENV:...} in the iceberg catalog: the lake role's S3 keys, the external catalog's credential.
    environment = {**identities.credential_environment(settings, TRINO_S3_ROLE),
                   **identities.catalog_credential_environment(settings)}

    def setup(at: s.Instance) -> s.Setup:
        config = java_properties(server_properties(settings, view, at, worker))
        node = java_properties(node_properties(settings, view, at))
        # With the shared secret in it, config.properties is a secret file (in a container: the launcher's --config).
        config_file = (s.ConfigFile(CONFIG_FILE, config, mount=at.secret(CONFIG_FILE), secret=True) if auth else
                       s.ConfigFile(CONFIG_FILE, config, mount=f"{CONF_DIR}/{CONFIG_FILE}"))
        launcher = (RUN_TRINO, f"--config={at.secret(CONFIG_FILE)}") if auth else ()

        def command(ctx: s.NativeContext) -> s.Process:
            # The launcher passes node.properties as system properties; so do we.
            system = [f"-D{k}={v}" for k, v in node_properties(settings, view, at).items()]
            return s.Process([str(ctx.java), *jvm_options(settings), f"-XX:HeapDumpPath={at.data}", ctx.marker,
                            *system, f"-Dplugin.dir={ctx.home}/plugin", f"-Dconfig={at.secret(CONFIG_FILE)}",
                            f"-Dlog.levels-file={at.conf}/log.properties", "-cp", f"{ctx.home}/lib/*",
                            "io.trino.server.TrinoServer"], env=environment)

        jvm_config = "".join(f"{line}\n" for line in (IMAGE_JVM_AGENT, *jvm_options(settings)))
        return s.Setup(
            container=s.Container(args=launcher, env=environment, user=1000, probe_tool="curl", scratch=SCRATCH),
            native=s.Native("trino", command, java=versions.JAVA_FOR["trino"], class_cache=True),
            files=(config_file,
                   s.ConfigFile("node.properties", node, mount=f"{CONF_DIR}/node.properties"),
                   s.ConfigFile("jvm.config", jvm_config, mount=f"{CONF_DIR}/jvm.config"),
                   s.ConfigFile("log.properties", "io.trino=INFO\n", mount=f"{CONF_DIR}/log.properties"),
                   s.ConfigFile("catalog/iceberg.properties",
                              java_properties(iceberg_catalog(settings, view)),
                              mount=f"{CONF_DIR}/catalog/iceberg.properties"),
                   *(auth_files(at) if auth and not worker else ())),
        )

    # Ready only once Trino no longer reports "starting": /v1/info answers 200 before that.
    health = s.Health("http", "http", "/v1/info", expect='"starting":false')
    # Trino serves OpenMetrics at /metrics on its HTTP port (trino docs admin/openmetrics.md; airlift openmetrics is
    # in 476's lib/), behind the same authentication as its REST API: without authentication, a user name.
    metrics = s.Metrics("http", headers={"X-Trino-User": METRICS_USER})
    if auth and not worker:  # the coordinator's /metrics is behind the login too
        metrics = s.Metrics("https", login=(security.TRINO_USER, security.TRINO_PASSWORD), ca_pem=security.TRINO_CA,
                            tls_name="" if view is s.View.EXTERNAL else security.TRINO_TLS_NAME)
    https = (s.Port("https", settings.ports.trino_https, settings.ports.trino_https, clients=True,
                    setting="trino_https"),) if auth else ()
    # Workers need no HTTPS port of their own: clients go to the coordinator.
    if worker:
        return s.Component(s.TRINO_WORKER, "trino", settings.images.trino, versions.TRINO.version, "Trino worker",
                         setup, ports=(s.Port("http", port, 0, published=False),), health=health,
                         depends_on=((s.TRINO, s.Condition.HEALTHY),), memory=process_memory(settings),
                         replicas=settings.replicas.trino_workers, data_dir=DATA_DIR, conf_dir=CONF_DIR,
                         start_seconds=240, metrics=metrics,
                         # announces itself to the coordinator, exchanges pages with the other workers
                         reaches=((s.TRINO, "http"), (s.TRINO_WORKER, "http"), *LAKE))
    return s.Component(s.TRINO, "trino", settings.images.trino, versions.TRINO.version,
                     "Trino coordinator (SQL over Iceberg)", setup,
                     # in prod the HTTP port serves only the nodes and /v1/info: clients log in over HTTPS
                     ports=(s.Port("http", port, port, clients=not auth, setting="trino"), *https),
                     health=health,
                     depends_on=catalog_ready(settings), memory=process_memory(settings),
                     data_dir=DATA_DIR, conf_dir=CONF_DIR, start_seconds=240, metrics=metrics,
                     reaches=((s.TRINO_WORKER, "http"), *LAKE))


def coordinator(settings: Settings, view: s.View) -> s.Component:
    return _trino(settings, view, worker=False)


def worker(settings: Settings, view: s.View) -> s.Component | None:
    """The workers, where the settings ask for any (without them the coordinator also runs the queries)."""
    return _trino(settings, view, worker=True) if settings.replicas.trino_workers else None
