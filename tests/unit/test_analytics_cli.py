"""`query` and `report` on the command line: bad names, parameters and formats exit 2 with the valid ones, before
any connection; --list and --dry-run need no stack; `report` without matplotlib says how to get it."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from sagaz_lakehouse import queries
from sagaz_lakehouse.cli import app

runner = CliRunner()
# Ports nothing listens on: a command that tried to connect would fail with exit 1, not 2.
CLOSED = ["--set", "ports.trino=9", "--set", "ports.flink_sql_gateway=7"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={}, catch_exceptions=False)


@pytest.mark.parametrize(("args", "says"), [
    (["query"], "which query?"),
    (["query", "sla"], "unknown query 'sla' (did you mean 'sla_compliance'?)"),
    (["query", "sla_compliance", "--param", "since=yesterday"], "since='yesterday': expected a duration"),
    (["query", "sla_compliance", "--param", "threshold=5"], "unknown parameter 'threshold'"),
    (["query", "sla_compliance", "--param", "since"], "--param since: expected KEY=VALUE"),
    (["query", "running_sagas", "--param", "max_seconds=soon"], "max_seconds='soon': expected a whole number"),
    (["query", "sla_compliance", "--format", "xml"], "unknown format 'xml'"),
])
def test_bad_input_exits_2_with_the_valid_choices(args, says):
    result = invoke(*args, *CLOSED)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "valid queries:" in result.output or "valid parameters:" in result.output or \
        "use one of: table, json, csv" in result.output


def test_list_shows_every_query_with_its_parameters():
    result = invoke("query", "--list")
    assert result.exit_code == 0
    for query in queries.packs().values():
        assert f"{query.name} ({query.engine}): {query.title}" in result.output
        for param in query.params:
            assert f"--param {param.describe()}" in result.output
    listed = json.loads(invoke("query", "--list", "--json").stdout)
    assert {q["name"] for q in listed} == set(queries.packs())


def test_dry_run_prints_the_sql_without_a_stack():
    result = invoke("query", "throughput", "--param", "bucket=hour", "--dry-run", "--set", "lake.database=shop",
                    *CLOSED)
    assert result.exit_code == 0
    assert "date_trunc('hour', \"timestamp\")" in result.stdout and "iceberg.shop.saga_events" in result.stdout


@pytest.mark.parametrize("name", ["sla_compliance", "running_sagas"])
def test_a_stack_that_is_down_is_exit_1(name):
    result = invoke("query", name, *CLOSED)
    assert result.exit_code == 1 and "is the stack up?" in result.output


def test_report_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    out = tmp_path / "r.html"
    result = invoke("report", "--out", str(out), *CLOSED)
    assert result.exit_code == 2
    assert "pip install 'sagaz-lakehouse[report]'" in result.output and not out.exists()


def test_report_refuses_a_bad_window_before_connecting(tmp_path):
    result = invoke("report", "--since", "a while", "--out", str(tmp_path / "r.html"), *CLOSED)
    assert result.exit_code == 2 and "--since 'a while'" in result.output


def test_a_real_time_query_without_the_gateway_says_it_is_off_before_connecting():
    """prod leaves the SQL Gateway out (it has no authentication): the real-time pack says so, exit 2, and names the
    setting; the historical pack needs no gateway."""
    result = invoke("query", "running_sagas", "--set", "analytics.sql_gateway=off", *CLOSED)
    assert result.exit_code == 2, result.output
    assert "does not run" in result.output and "analytics.sql_gateway=on" in result.output
    assert invoke("query", "throughput", "--dry-run", "--set", "analytics.sql_gateway=off", *CLOSED).exit_code == 0
