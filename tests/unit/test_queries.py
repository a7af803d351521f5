"""The query packs: every file's header, its parameters, the probe filter, and rendering values into SQL safely."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import analytics, queries
from sagaz_lakehouse.doctor import PROBE_EVENT_TYPE
from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.queries import Param, Result

NOW = datetime(2026, 3, 1, 12, 0, 0)
ALL = list(queries.packs().values())
EXPECTED = {"trino": {"sla_compliance", "step_bottlenecks", "failure_patterns", "compensation_frequency",
                      "throughput", "slowest_sagas", "time_travel", "lake_snapshots", "anomalies",
                      "cost_attribution"},
            "flink": {"running_sagas", "failures_recent", "step_latency_live"}}


SPARK = list(queries.dialect_pack("spark").values())


def test_both_packs_ship_every_query_the_issue_asks_for():
    assert {e: {q.name for q in ALL if q.engine == e} for e in queries.ENGINES} == EXPECTED


def test_the_spark_pack_has_every_historical_query_with_the_same_header():
    assert {q.name for q in SPARK} == EXPECTED["trino"]
    for spark in SPARK:
        trino = queries.find(spark.name)
        assert spark.engine == "spark" and queries.find(spark.name, "spark") is spark
        assert (spark.title, spark.description, spark.params) == (trino.title, trino.description, trino.params)
        assert '"timestamp"' not in spark.sql and "$" not in spark.sql  # Trino's quoting and metadata tables


def test_an_engine_runs_only_its_packs_queries():
    with pytest.raises(UsageError, match="query running_sagas runs on flink, not on spark"):
        queries.find("running_sagas", "spark")
    with pytest.raises(UsageError, match="runs on trino or spark, not on flink"):
        queries.find("throughput", "flink")
    assert queries.find("throughput", "trino") is queries.find("throughput")


@pytest.mark.parametrize("query", ALL + SPARK, ids=lambda q: f"{q.engine}/{q.name}")
def test_each_file_documents_itself_and_uses_exactly_its_parameters(query):
    assert len(query.title) > 5 and len(query.description) > 40
    used = {m.group(1) for m in queries.PLACEHOLDER.finditer(query.sql)} - {"database"}
    declared = {p.name for p in query.params}
    runner = set(queries.RUNNER_PARAMS.get(query.engine, ()))
    assert used <= declared, f"{query.source} uses undeclared {used - declared}"
    assert declared - runner == used, f"{query.source} declares unused {declared - runner - used}"
    assert runner <= declared  # a Flink query says how long it follows its stream
    for param in query.params:
        assert param.kind in queries.TYPES and param.doc
        if param.default is not None:
            param.parse(param.default, NOW)  # every default is a valid value of its type
    assert bool(query.sort) == (query.engine == "flink")  # a stream has no order of its own; Trino's SQL has one


@pytest.mark.parametrize("query", ALL + SPARK, ids=lambda q: f"{q.engine}/{q.name}")
def test_every_read_of_saga_events_leaves_out_the_doctor_probes(query):
    reads = len(re.findall(r"\.saga_events\b(?!\$|\.(?:files|snapshots)\b)", query.sql))
    filters = query.sql.count(f"event_type <> '{PROBE_EVENT_TYPE}'")
    assert reads == filters, f"{query.source}: {reads} reads of saga_events, {filters} probe filters"


@pytest.mark.parametrize("query", ALL + SPARK, ids=lambda q: f"{q.engine}/{q.name}")
def test_defaults_render_to_plain_sql(query):
    sql = query.render(query.values({}, NOW), "analytics_db")
    assert "{" not in sql and "}" not in sql
    assert ("fluss.analytics_db." if query.engine == "flink" else "iceberg.analytics_db.") in sql


def test_values_are_rendered_as_literals_of_their_type():
    sla = queries.find("sla_compliance")
    values = sla.values({"since": "90m", "threshold_ms": "250", "saga": "o'rder%"}, NOW)
    sql = sla.render(values, "sagaz")
    assert "\"timestamp\" >= TIMESTAMP '2026-03-01 10:30:00.000000'" in sql
    assert "<= 250)" in sql and "saga_name LIKE 'o''rder%'" in sql
    throughput = queries.find("throughput")
    assert "date_trunc('hour', \"timestamp\")" in throughput.render(throughput.values({"bucket": "hour"}, NOW), "s")


def test_flink_reads_start_a_minute_early_in_epoch_milliseconds():
    query = queries.find("failures_recent")
    sql = query.render(query.values({"since": "5m"}, NOW), "sagaz")
    cutoff = NOW - timedelta(minutes=5)
    started = int((cutoff - queries.STARTUP_SLACK - datetime(1970, 1, 1)).total_seconds() * 1000)
    assert f"'scan.startup.timestamp' = '{started}'" in sql
    assert f">= TIMESTAMP '{cutoff:%Y-%m-%d %H:%M:%S}.000000'" in sql


@pytest.mark.parametrize(("text", "clause"), [
    ("4613239986593240007", "FOR VERSION AS OF 4613239986593240007"),
    ("10m", "FOR TIMESTAMP AS OF TIMESTAMP '2026-03-01 11:50:00.000000 UTC'"),
    ("2026-03-01T09:15:00+01:00", "FOR TIMESTAMP AS OF TIMESTAMP '2026-03-01 08:15:00.000000 UTC'"),
    ("2026-03-01T09:15:00", "FOR TIMESTAMP AS OF TIMESTAMP '2026-03-01 09:15:00.000000 UTC'"),
])
def test_time_travel_by_snapshot_or_moment(text, clause):
    query = queries.find("time_travel")
    assert f"saga_events {clause}\n" in query.render(query.values({"as_of": text}, NOW), "sagaz")
    spark = queries.find("time_travel", "spark")
    spark_clause = (clause.replace("FOR VERSION", "VERSION") if "VERSION" in clause else
                    clause.replace("FOR TIMESTAMP AS OF TIMESTAMP ", "TIMESTAMP AS OF ").replace(" UTC'", "'"))
    assert f"saga_events {spark_clause}\n" in spark.render(spark.values({"as_of": text}, NOW), "sagaz")


def test_numbers_render_as_double_literals_and_prices_default_to_the_settings():
    settings = lakehouse.load_settings(None, {"cost.vcpu_hour": "0.5"}, environ={})
    prepared = analytics.prepare(settings, "cost_attribution", {"price_million_events": "2"}, NOW)
    assert prepared.values["price_vcpu_hour"] == Decimal("0.5")  # from cost.vcpu_hour
    assert prepared.values["price_gb_month"] == Decimal(settings.cost.storage_gb_month)
    assert "* 2e0 AS events_cost" in prepared.sql and "* 0.5e0 AS compute_cost" in prepared.sql
    with pytest.raises(UsageError, match="threshold='-1': expected a number"):
        analytics.prepare(settings, "anomalies", {"threshold": "-1"}, NOW)
    spark = analytics.prepare(settings, "anomalies", {"threshold": "2.5"}, NOW, engine="spark")
    assert spark.query.engine == "spark" and "2.5e0 * sqrt(" in spark.sql


def test_bad_parameters_are_reported_together_with_the_valid_ones():
    query = queries.find("sla_compliance")
    with pytest.raises(UsageError) as excinfo:
        query.values({"sinse": "1h", "threshold_ms": "-5", "saga": "x\x00"}, NOW)
    message, hint = excinfo.value.message, excinfo.value.hint
    assert "unknown parameter 'sinse' (did you mean 'since'?)" in message
    assert "threshold_ms='-5': expected a whole number" in message and "saga=" in message
    assert all(f"--param {p.name} (" in hint for p in query.params)
    with pytest.raises(UsageError, match="expected one of minute, hour, day"):
        queries.find("throughput").values({"bucket": "week"}, NOW)
    with pytest.raises(UsageError, match="expected a duration like"):
        query.values({"since": "yesterday"}, NOW)


def test_a_parameter_without_default_is_required():
    query = queries.parse_file("q", "trino", "-- title: A query\n-- description: " + "x" * 50 +
                               "\n-- param: n (int): how many\nSELECT {n}")
    with pytest.raises(UsageError, match="parameter 'n' is required"):
        query.values({}, NOW)
    assert query.render(query.values({"n": "3"}, NOW), "db") == "SELECT 3"


def test_header_continuations_and_malformed_headers():
    text = ("-- title: Two\n--   lines\n-- description: first\n--   second\n"
            "-- param: b (choice x|y, default x): pick\n--   one\nSELECT {b};\n")
    query = queries.parse_file("q", "trino", text)
    assert (query.title, query.description) == ("Two lines", "first second")
    assert query.params == (Param("b", "choice", "x", "pick one", ("x", "y")),) and query.sql == "SELECT {b}"
    with pytest.raises(ValueError, match="malformed parameter line"):
        queries.parse_file("q", "trino", "-- title: t\n-- param: oops\nSELECT 1")
    with pytest.raises(ValueError, match="needs a title, a description and a statement"):
        queries.parse_file("q", "trino", "-- title: t\nSELECT 1")


def test_unknown_query_names_the_closest_and_lists_all():
    with pytest.raises(UsageError) as excinfo:
        queries.find("sla")
    assert "unknown query 'sla'" in excinfo.value.message
    for query in ALL:
        assert query.name in excinfo.value.hint


def test_prepare_checks_before_anything_runs():
    settings = lakehouse.load_settings(None, {"lake.database": "other_db"}, environ={})
    prepared = analytics.prepare(settings, "slowest_sagas", {"limit": "3"}, NOW)
    assert prepared.sql.rstrip().endswith("LIMIT 3") and "iceberg.other_db.saga_events" in prepared.sql
    with pytest.raises(UsageError):
        analytics.prepare(settings, "slowest_sagas", {"limit": "many"}, NOW)


def test_rows_sort_by_the_declared_order_with_nulls_last():
    rows = [(1, "b"), (None, "a"), (3, "a"), (2, "a")]
    assert analytics.sort_rows(["n", "s"], rows, ("s", "n desc")) == [(3, "a"), (2, "a"), (None, "a"), (1, "b")]


def sample_result() -> Result:
    return Result("demo", "trino", ["when", "name", "share", "keys", "n", "missing"],
                  [(datetime(2026, 3, 1, 12, 0, 1, 500000), "a,b", Decimal("12.50"), ["x", "y"], 7, None),
                   (datetime(2026, 3, 1, 12, 0, 2), "c", 3.14159, [], 10, None)])


def test_output_formats():
    result = sample_result()
    table = analytics.formatted(result, "table").splitlines()
    assert table[0].split() == result.columns and set(table[1]) <= {"-", " "}
    assert table[2].split() == ["2026-03-01", "12:00:01.500", "a,b", "12.50", "x,y", "7", "-"]
    document = __import__("json").loads(analytics.formatted(result, "json"))
    assert document["rows"][0] == {"when": "2026-03-01T12:00:01.500000", "name": "a,b", "share": 12.5,
                                   "keys": ["x", "y"], "n": 7, "missing": None}
    csv_lines = analytics.formatted(result, "csv").splitlines()
    assert csv_lines[0] == "when,name,share,keys,n,missing"
    assert csv_lines[1] == '2026-03-01T12:00:01.500000,"a,b",12.5,x;y,7,'
    with pytest.raises(UsageError, match="use one of: table, json, csv"):
        analytics.formatted(result, "xml")
