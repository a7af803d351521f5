"""The Iceberg REST catalog: table metadata for the warehouse, served by Iceberg's REST fixture.

The fixture maps ``CATALOG_*`` variables to catalog properties ('__' → '-', '_' → '.'; ``RCKUtils.java``) and
defaults to a JDBC catalog; a sqlite file on the volume makes its state durable. It logs its catalog properties at
start-up, so credentials reach it only through the AWS SDK's ``AWS_*`` variables.
"""

from __future__ import annotations

from sagaz_lakehouse import addresses, identities, versions
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


def environment(settings: Settings, view: s.View, state_dir: str) -> dict[str, str]:
    ep = addresses.endpoints(settings, view)
    return {
        "CATALOG_WAREHOUSE": addresses.warehouse_uri(settings),
        "CATALOG_URI": f"jdbc:sqlite:file:{state_dir}/{DATABASE}?{SQLITE_PRAGMAS}",
        "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
        "CATALOG_S3_ENDPOINT": ep.s3,
        "CATALOG_S3_PATH__STYLE__ACCESS": str(settings.s3_path_style).lower(),
        "CATALOG_CLIENT_REGION": settings.s3_region,
        "CATALOG_REST_PORT": str(settings.ports.rest_catalog),  # read as the catalog property rest.port
        **identities.aws_environment(settings, "lake"),
    }


def rest_catalog(settings: Settings, view: s.View) -> s.Component:
    port = settings.ports.rest_catalog

    def setup(at: s.Instance) -> s.Setup:
        env = environment(settings, view, at.data)

        def command(ctx: s.NativeContext) -> s.Process:
            jar = next((ctx.home / "lib").glob("*.jar"))
            return s.Process([str(ctx.java), xmx(settings.memory.rest_catalog), ctx.marker, "-jar", str(jar)], env=env)

        return s.Setup(
            # Not REST_PORT: only the image's own HEALTHCHECK reads it, and every target replaces that check with
            # the component's (the fixture itself listens on the rest.port catalog property, CATALOG_REST_PORT).
            # /tmp: the sqlite driver unpacks its native library there (1 MiB measured).
            container=s.Container(env={**env, "JAVA_TOOL_OPTIONS": CONTAINER_HEAP}, user=1000, probe_tool="curl",
                                  scratch=(s.Scratch(s.TMP, "32Mi", used="2Mi"),)),
            native=s.Native("rest-catalog", command, java=17, tree={"lib": ("rest-catalog",)}),
        )

    return s.Component(
        s.REST_CATALOG, "iceberg-rest-catalog", settings.images.rest_catalog, versions.ICEBERG.version,
        "Iceberg REST catalog", setup,
        ports=(s.Port("http", port, port, setting="rest_catalog"),), health=s.Health("http", "http", "/v1/config"),
        depends_on=() if settings.external_store else ((s.CREATE_BUCKET, s.Condition.COMPLETED),),
        reaches=((s.MINIO, "s3"),),
        data_dir=STATE_DIR, volume_size=settings.volumes.rest_catalog, memory=settings.memory.rest_catalog)
