"""The Iceberg REST catalog: table metadata for the warehouse, served by Iceberg's REST fixture (bundled catalogs
only: with ``catalog.kind: external`` the stack's clients use the catalog at ``catalog.uri`` and none runs here).

The fixture maps ``CATALOG_*`` variables to catalog properties ('__' → '-', '_' → '.'; ``RCKUtils.java``) and
defaults to a JDBC catalog (``RESTCatalogServer``, Iceberg 1.10.1). Where its tables live is
``catalog.database``:

- **sqlite** (dev): a file on the catalog's volume, in WAL mode with a 30 s busy timeout.
- **postgresql** (prod): the ``catalog-db`` component. The fixture's jar carries no PostgreSQL driver, so it runs
  with the locked pgjdbc jar on its classpath (``java -cp``; ``-jar`` would ignore it). It logs every catalog
  property at start-up, in clear, so the database password is never one: the driver reads it from a 0600 pgpass
  file named by ``-Dorg.postgresql.pgpassfile`` when the connection has no password (pgjdbc ``Driver.parseURL`` →
  ``PgPassParser``, 42.7.x). In a container the image's own ``CATALOG_JDBC_PASSWORD`` default is removed for that
  reason, and the pgpass file is a secret file in the instance's secrets folder. The fixture then keeps no state
  of its own.

Credentials for the object store reach it only through the AWS SDK's ``AWS_*`` variables. The fixture takes no
authentication at all and listens on every interface (Jetty ``new Server(port)``, no host property): the network is
what guards it (docs/catalog.md, "Who may talk to the bundled catalog").
"""

from __future__ import annotations

from sagaz_lakehouse import addresses, identities, security, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components.common import CONTAINER_HEAP, xmx
from sagaz_lakehouse.config import Settings

DATABASE = "catalog.db"
# sqlite-jdbc moves query parameters that name a pragma into the connection (3.50.3.0,
# SQLiteConnection.extractPragmasFromFilename): WAL lets readers go on while a commit writes, and a writer waits up to
# 30 s for the lock instead of the default 3 s, after which the fixture answered tiering commits with HTTP 500
# SQLITE_BUSY for minutes (chaos run).
SQLITE_PRAGMAS = "journal_mode=WAL&busy_timeout=30000"
# The fixture runs as uid 1000 whose home is the only folder that user owns in the image (useradd --create-home in
# apache/iceberg docker/iceberg-rest-fixture/Dockerfile): a named volume there inherits that ownership.
STATE_DIR = "/home/iceberg"
MAIN_CLASS = "org.apache.iceberg.rest.RESTCatalogServer"  # the fixture jar's Main-Class
IMAGE_JAR = "/usr/lib/iceberg-rest/iceberg-rest-adapter.jar"  # where the image keeps it (its WORKDIR)
DRIVER_DIR = "/usr/lib/iceberg-rest/jdbc"  # the PostgreSQL driver, beside it in a container
DRIVER_JARS = s.Jars("postgresql-jdbc", DRIVER_DIR)
PGPASS_FILE = "pgpass"  # 0600: the one place the database password is written for the fixture
PGPASS_PROPERTY = "org.postgresql.pgpassfile"  # pgjdbc PGEnvironment.ORG_POSTGRESQL_PGPASSFILE
DB_USER = "iceberg"  # the catalog's PostgreSQL user (and, in the official image's terms, POSTGRES_USER)
DB_NAME = "iceberg_catalog"  # its database (POSTGRES_DB)


def jdbc_uri(settings: Settings, view: s.View, state_dir: str) -> str:
    if settings.catalog_database == "postgresql":
        host, port = addresses.catalog_db(settings, view)
        return f"jdbc:postgresql://{host}:{port}/{DB_NAME}"
    return f"jdbc:sqlite:file:{state_dir}/{DATABASE}?{SQLITE_PRAGMAS}"


def environment(settings: Settings, view: s.View, state_dir: str) -> dict[str, str]:
    ep = addresses.endpoints(settings, view)
    env = {
        "CATALOG_WAREHOUSE": addresses.warehouse_uri(settings),
        "CATALOG_URI": jdbc_uri(settings, view, state_dir),
        "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
        "CATALOG_S3_ENDPOINT": ep.s3,
        "CATALOG_S3_PATH__STYLE__ACCESS": str(settings.s3_path_style).lower(),
        "CATALOG_CLIENT_REGION": settings.s3_region,
        "CATALOG_REST_PORT": str(settings.ports.rest_catalog),  # read as the catalog property rest.port
        **identities.aws_environment(settings, "lake"),
    }
    if settings.catalog_database == "postgresql":
        env["CATALOG_JDBC_USER"] = DB_USER  # jdbc.user, the driver's `user`; no jdbc.password: the pgpass file
    return env


def pgpass_line(password: str) -> str:
    """A pgpass line for the catalog's database on any host and port (the fields are host:port:db:user:password;
    ':' and '\\' in a field are escaped with '\\')."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:{DB_NAME}:{DB_USER}:{escaped}\n"


# In a container: the image's own default CATALOG_JDBC_PASSWORD (=password) would reach the driver and win over the
# file, so it goes; the pgpass file is a secret file (issue 25: the instance's secrets folder, 0400 and its user's),
# never a variable or an argument.
CONTAINER_START = f"""unset CATALOG_JDBC_PASSWORD
exec java -D{PGPASS_PROPERTY}={security.SECRETS_DIR}/{PGPASS_FILE} -cp "{IMAGE_JAR}:{DRIVER_DIR}/*" {MAIN_CLASS}
"""


def rest_catalog(settings: Settings, view: s.View) -> s.Component | None:
    if settings.catalog.kind == "external":
        return None
    port = settings.ports.rest_catalog
    postgres = settings.catalog_database == "postgresql"

    def setup(at: s.Instance) -> s.Setup:
        env = environment(settings, view, at.data)

        def command(ctx: s.NativeContext) -> s.Process:
            # The jar's Main-Class, with the driver beside it on the class path where the tables are in PostgreSQL.
            pgpass = [f"-D{PGPASS_PROPERTY}={at.secret(PGPASS_FILE)}"] if postgres else []
            return s.Process([str(ctx.java), xmx(settings.memory.rest_catalog), ctx.marker, *pgpass,
                              "-cp", f"{ctx.home}/lib/*", MAIN_CLASS], env=env)

        container_env = {**env, "JAVA_TOOL_OPTIONS": CONTAINER_HEAP}
        if not postgres:
            # Not REST_PORT: only the image's own HEALTHCHECK reads it, and every target replaces that check with
            # the component's (the fixture itself listens on the rest.port catalog property, CATALOG_REST_PORT).
            # /tmp: the sqlite driver unpacks its native library there (1 MiB measured).
            return s.Setup(container=s.Container(env=container_env, user=1000, probe_tool="curl",
                                                 scratch=(s.Scratch(s.TMP, "32Mi", used="2Mi"),)),
                           native=s.Native("rest-catalog", command, java=17, tree={"lib": ("rest-catalog",)}))
        # /tmp: what the JVM unpacks there; the pgpass file is in the secrets folder.
        return s.Setup(
            container=s.Container(entrypoint=("/bin/sh", "-c", CONTAINER_START, s.REST_CATALOG), env=container_env,
                                  user=1000, probe_tool="curl", scratch=(s.Scratch(s.TMP, "32Mi", used="2Mi"),)),
            native=s.Native("rest-catalog", command, java=17, tree={"lib": ("rest-catalog", "postgresql-jdbc")}),
            files=(s.ConfigFile(PGPASS_FILE, pgpass_line(identities.CATALOG_DB_PASSWORD),
                                mount=at.secret(PGPASS_FILE), secret=True),))

    if postgres:  # stateless: its tables are in the catalog's database
        return s.Component(
            s.REST_CATALOG, "iceberg-rest-catalog", settings.images.rest_catalog, versions.ICEBERG.version,
            "Iceberg REST catalog (tables in PostgreSQL)", setup,
            ports=(s.Port("http", port, port, setting="rest_catalog"),), health=s.Health("http", "http", "/v1/config"),
            depends_on=(*(() if settings.external_store else ((s.CREATE_BUCKET, s.Condition.COMPLETED),)),
                        (s.CATALOG_DB, s.Condition.HEALTHY)),
            reaches=((s.MINIO, "s3"), (s.CATALOG_DB, "postgres")),
            memory=settings.memory.rest_catalog, jars=(DRIVER_JARS,))
    return s.Component(
        s.REST_CATALOG, "iceberg-rest-catalog", settings.images.rest_catalog, versions.ICEBERG.version,
        "Iceberg REST catalog", setup,
        ports=(s.Port("http", port, port, setting="rest_catalog"),), health=s.Health("http", "http", "/v1/config"),
        depends_on=() if settings.external_store else ((s.CREATE_BUCKET, s.Condition.COMPLETED),),
        reaches=((s.MINIO, "s3"),),
        data_dir=STATE_DIR, volume_size=settings.volumes.rest_catalog, memory=settings.memory.rest_catalog)
