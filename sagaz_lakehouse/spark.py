"""Spark on the same tables: a pyspark session whose ``iceberg`` catalog is the stack's own REST catalog and object
store, read with the reader role's credentials, for the historical pack's Spark files (``query NAME --engine spark``).

pyspark comes from PyPI (the ``spark`` extra, ``versions.SPARK``), Iceberg's Spark runtime and the AWS SDK bundle
that S3FileIO needs from Maven Central: the ``spark-iceberg`` group of ``locks/artifacts.lock.json``, downloaded
once into the cache and checked against its sha256 like every other jar. The session runs in this process's JVM
(``local[2]``, loopback only, no UI) with the session time zone UTC, like the events, and ANSI mode off, so that an
array index past the end is NULL as in Trino rather than an error. The catalog's properties are Iceberg's Spark
catalog options (apache/iceberg docs/docs/spark-configuration.md at apache-iceberg-1.10.1): ``type=rest``, ``uri``,
``warehouse``, ``io-impl`` S3FileIO with ``s3.endpoint``, ``s3.path-style-access``, ``s3.access-key-id``,
``s3.secret-access-key`` and ``client.region``, the same set the Fluss servers and the tiering job use.

One session serves many queries: ``engine()`` reuses a session this process already runs for the same catalog
(and leaves it running); otherwise it starts one and, at the end, stops it and its JVM (pyspark would keep the JVM
until the process exits: a long-lived caller such as a test run would carry a 1 GB heap for nothing). JAVA_HOME,
which pyspark's launcher reads, is set only while the JVM starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sagaz_lakehouse import artifacts, clients, versions
from sagaz_lakehouse.addresses import LOOPBACK, Endpoints, warehouse_uri
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import LakehouseError, UsageError
from sagaz_lakehouse.identities import client_s3_keys

CATALOG = "iceberg"  # the same catalog name as Trino's, so both packs name tables alike
GROUP = "spark-iceberg"  # the lock's artifact group
DRIVER_MEMORY = "1g"
# The JVM's log4j2 configuration: warnings and errors on stderr, without the banner lines a default Spark prints
# ("Using Spark's default log4j profile", "Setting default log level": the latter only when the shell logger's level
# differs from the root's) or Hadoop's note that it runs without its native library.
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = warn
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
"""


def require_pyspark() -> Any:
    """The pyspark module, of the pinned Spark line; a usage error (exit 2) otherwise."""
    try:
        import pyspark
    except ImportError:
        raise UsageError("--engine spark needs pyspark, which is not installed",
                         f"pip install 'sagaz-lakehouse[spark]' (pyspark {versions.SPARK})") from None
    if not pyspark.__version__.startswith(versions.SPARK_MINOR + "."):
        raise UsageError(f"pyspark {pyspark.__version__} is installed; the lake's Iceberg runtime is built for "
                         f"Spark {versions.SPARK_MINOR}", f"pip install 'pyspark=={versions.SPARK}'")
    return pyspark


def jars(settings: Settings, progress: Callable[[str], None] | None = None) -> list[Path]:
    """The locked jars of the session, from the cache (downloaded and verified on first use)."""
    cache = artifacts.cache_dir(settings.local.cache_dir)
    group = artifacts.group(GROUP)
    missing = [a for a in group if not artifacts.cached_path(a, cache).exists()]
    if missing and progress:
        progress(f"downloading {', '.join(a.name for a in missing)} (once, into {cache})")
    return artifacts.fetch(group, cache, settings.local.maven_repository)


def catalog_properties(settings: Settings, credentials: Credentials, endpoints: Endpoints) -> dict[str, str]:
    """``spark.sql.catalog.iceberg.*``: the REST catalog and the object store, as the reader role."""
    access_key, secret_key = client_s3_keys(settings, credentials)
    prefix = f"spark.sql.catalog.{CATALOG}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "rest",
        f"{prefix}.uri": endpoints.rest_catalog,
        f"{prefix}.warehouse": warehouse_uri(settings),
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.endpoint": endpoints.s3,
        f"{prefix}.s3.path-style-access": str(settings.s3_path_style).lower(),
        f"{prefix}.s3.access-key-id": access_key,
        f"{prefix}.s3.secret-access-key": secret_key,
        f"{prefix}.client.region": settings.s3_region,
    }


def log_config(settings: Settings) -> Path:
    """LOG4J2 as a file in the cache, where the JVM reads it (rewritten when it differs)."""
    path = artifacts.cache_dir(settings.local.cache_dir) / "spark" / "log4j2.properties"
    if not path.exists() or path.read_text() != LOG4J2:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LOG4J2)
    return path


def session_config(settings: Settings, credentials: Credentials, endpoints: Endpoints,
                   jar_paths: list[Path], log4j2: Path | None = None) -> dict[str, str]:
    """Every property the session starts with."""
    logging = {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={log4j2.as_uri()}"} if log4j2 else {}
    return {
        "spark.master": "local[2]",
        "spark.app.name": "sagaz-lakehouse",
        "spark.jars": ",".join(str(p) for p in jar_paths),
        "spark.driver.memory": DRIVER_MEMORY,
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # no progress bars on stderr between the CLI's own lines
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        **logging,
        **catalog_properties(settings, credentials, endpoints),
    }


class SparkEngine:
    """Runs Spark SQL on one session and hands back plain Python values, as the Trino client does."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def table(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        from pyspark.sql.types import TimestampType

        frame = self.session.sql(sql)
        local_time = [isinstance(f.dataType, TimestampType) for f in frame.schema.fields]
        rows = []
        for row in frame.collect():
            # pyspark hands a TIMESTAMP (with local time zone) over as a naive datetime in this process's time
            # zone: make it an aware UTC moment, as Trino's client gives a TIMESTAMP WITH TIME ZONE.
            rows.append(tuple(v.astimezone(UTC) if tz and isinstance(v, datetime) else v
                              for v, tz in zip(row, local_time, strict=True)))
        return list(frame.columns), rows


def _reusable(session: Any, config: dict[str, str]) -> bool:
    uri = f"spark.sql.catalog.{CATALOG}.uri"
    try:
        return bool(session.conf.get(uri, None) == config[uri])
    except Exception:
        return False


@contextmanager
def engine(settings: Settings, credentials: Credentials, endpoints: Endpoints,
           progress: Callable[[str], None] | None = None) -> Iterator[SparkEngine]:
    """A Spark session on the stack's lake: this process's running one when it reads the same catalog (left
    running), else a new one, stopped at the end."""
    require_pyspark()
    from pyspark.sql import SparkSession

    clients.require_reachable("Iceberg REST catalog", endpoints.rest_catalog)
    clients.require_reachable("object store", endpoints.s3)
    active = SparkSession.getActiveSession()
    if active is not None and _reusable(active, {f"spark.sql.catalog.{CATALOG}.uri": endpoints.rest_catalog}):
        yield SparkEngine(active)
        return
    config = session_config(settings, credentials, endpoints, jars(settings, progress), log_config(settings))
    from sagaz_lakehouse.targets.local.jdk import find_java

    java = find_java(settings, *versions.SPARK_JAVA)
    if progress:
        progress(f"starting Spark {versions.SPARK} (local, Java {java.version})")
    builder = SparkSession.builder
    for key, value in config.items():
        builder = builder.config(key, value)
    # Spark 4's artifact manager makes an (empty) artifacts/ folder in the working directory: removed at the end
    # unless it was there before.
    artifacts_dir = Path.cwd() / "artifacts"
    leave_artifacts = artifacts_dir.exists()
    # pyspark's launcher starts the JVM from JAVA_HOME; SPARK_LOCAL_IP keeps it off the host's other addresses
    saved = {key: os.environ.get(key) for key in ("JAVA_HOME", "SPARK_LOCAL_IP")}
    os.environ.update({"JAVA_HOME": str(java.home), "SPARK_LOCAL_IP": LOOPBACK})
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        raise LakehouseError(f"Spark did not start: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                             f"Spark {versions.SPARK} needs Java {versions.SPARK_JAVA[0]} to "
                             f"{versions.SPARK_JAVA[1]} (local.java_home)") from None
    finally:
        for key, before in saved.items():
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield SparkEngine(session)
    finally:
        session.stop()
        _stop_jvm()
        if not leave_artifacts and artifacts_dir.is_dir() and not any(artifacts_dir.iterdir()):
            artifacts_dir.rmdir()


def _stop_jvm() -> None:
    """End the JVM pyspark launched for the session (its gateway process), so that a new session starts afresh."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    if process is not None:
        process.stdin.close()  # the launcher's JVM exits when its stdin closes (pyspark's launch_gateway)
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()
    SparkContext._gateway = None
    SparkContext._jvm = None
