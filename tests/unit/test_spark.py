"""The Spark engine's wiring without a JVM: the session's properties (the stack's REST catalog and object store as
the reader role, local and loopback only, no UI or progress bars), the locked jars, the pinned pyspark line, and
`query --engine` refusals (exit 2, before anything connects)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import addresses, artifacts, config, spark, versions
from sagaz_lakehouse.cli import app
from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.identities import client_s3_keys
from sagaz_lakehouse.stack import View


def test_the_session_reads_the_stacks_catalog_as_the_reader_locally():
    settings = lakehouse.load_settings(None, environ={})
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    jars = [Path("/cache/a.jar"), Path("/cache/b.jar")]
    conf = spark.session_config(settings, config.DEV_CREDENTIALS, endpoints, jars)
    prefix = f"spark.sql.catalog.{spark.CATALOG}"
    access, secret = client_s3_keys(settings, config.DEV_CREDENTIALS)
    assert conf[prefix] == "org.apache.iceberg.spark.SparkCatalog" and conf[f"{prefix}.type"] == "rest"
    assert conf[f"{prefix}.uri"] == endpoints.rest_catalog and conf[f"{prefix}.s3.endpoint"] == endpoints.s3
    assert (conf[f"{prefix}.s3.access-key-id"], conf[f"{prefix}.s3.secret-access-key"]) == (access, secret)
    assert conf[f"{prefix}.warehouse"] == addresses.warehouse_uri(settings)
    assert conf["spark.master"].startswith("local[") and conf["spark.driver.bindAddress"] == addresses.LOOPBACK
    assert conf["spark.ui.enabled"] == conf["spark.ui.showConsoleProgress"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC" and conf["spark.jars"] == "/cache/a.jar,/cache/b.jar"


def test_the_jars_are_the_locked_runtime_of_the_pinned_spark_and_iceberg():
    names = [a.name for a in artifacts.group(spark.GROUP)]
    iceberg = versions.ICEBERG.version
    assert names == [f"iceberg-spark-runtime-{versions.SPARK_MINOR}_{versions.SPARK_SCALA}-{iceberg}.jar",
                     f"iceberg-aws-bundle-{iceberg}.jar"]
    assert versions.SPARK.startswith(versions.SPARK_MINOR + ".")
    assert f"pyspark=={versions.SPARK}" in (Path(__file__).parents[2] / "pyproject.toml").read_text()


def test_another_pyspark_line_is_a_usage_error(monkeypatch):
    import pyspark

    monkeypatch.setattr(pyspark, "__version__", "3.5.1")
    with pytest.raises(UsageError, match=r"pyspark 3.5.1 is installed; .* built for Spark 4.0"):
        spark.require_pyspark()


@pytest.mark.parametrize(("args", "says"), [
    (["query", "sla_compliance", "--engine", "duckdb"], "--engine duckdb: unknown engine"),
    (["query", "running_sagas", "--engine", "spark"], "query running_sagas runs on flink, not on spark"),
])
def test_a_query_on_an_engine_that_does_not_run_it_exits_2(args, says):
    result = CliRunner().invoke(app, [*args, "--set", "ports.trino=9"], env={}, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_dry_run_prints_the_spark_sql():
    result = CliRunner().invoke(app, ["query", "cost_attribution", "--engine", "spark", "--dry-run"], env={},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "_file AS data_file" in result.output and "saga_events.files" in result.output


def test_the_jvm_logs_warnings_only_from_a_file_in_the_cache(tmp_path):
    settings = lakehouse.load_settings(None, environ={}, overrides={"local": {"cache_dir": str(tmp_path)}})
    path = spark.log_config(settings)
    assert path.parent.parent == tmp_path and path.read_text() == spark.LOG4J2
    assert "rootLogger.level = warn" in spark.LOG4J2 and "logger.repl.level = warn" in spark.LOG4J2
    conf = spark.session_config(settings, config.DEV_CREDENTIALS, addresses.endpoints(settings, View.EXTERNAL), [],
                                path)
    assert conf["spark.driver.extraJavaOptions"] == f"-Dlog4j2.configurationFile={path.as_uri()}"
