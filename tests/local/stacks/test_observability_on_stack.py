"""Prometheus on the real local stack: every component scraped, every rule loaded, every dashboard query answered
(PromQL by Prometheus, SQL by Trino), and the tiering-job alert firing when the job is cancelled (and clearing when
`up` resubmits it).

The module starts its own stack on ports of its own (support.suite_ports), creates the tables, starts `simulate
--metrics-port` as the application Prometheus scrapes for saga metrics (monitoring.app_targets), runs `doctor` (its
probe event gives the tiering-lag gauges a value), and always ends by stopping that process and `down --purge`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from support import CLI, SuiteStack, cli, init_with_ports, must, suite_port, suite_ports

from sagaz_lakehouse import addresses, clients, dashboards
from sagaz_lakehouse.components import build_stack, prometheus
from sagaz_lakehouse.stack import PROMETHEUS, View

PORTS = suite_ports("observability")
# simulate --metrics-port: the application whose saga metrics Prometheus scrapes
APP = f"127.0.0.1:{suite_port('observability')}"
SCRAPE_WAIT = 120  # s for every target to be scraped successfully once
ALERT_WAIT = 150  # s: `for: 30s` plus the 5 s evaluation interval, on a busy 2-core machine
ALERT = "TieringJobNotRunning"
TIERING_WAIT = 300  # s for the simulated sagas to be in Iceberg


class Stack(SuiteStack):
    """The module's stack (RunningStack), and its Prometheus and Flink REST APIs."""

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{PORTS['prometheus']}/api/v1/{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http on loopback
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def flink(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{PORTS['flink_rest']}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http on loopback
            return json.loads(response.read() or b"{}")

    def alert_states(self) -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in self.api("alerts")["alerts"]}


def wait_until(what: str, seconds: float, check: Callable[[], tuple[bool, Any]]) -> None:
    """Poll ``check`` (done, what it saw) until done; the failure names what was seen last."""
    deadline, seen = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        done, seen = check()
        if done:
            return
        time.sleep(2)
    pytest.fail(f"{what}: not within {seconds:.0f}s (last seen: {seen!r})", pytrace=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("observability-stack")
    settings_file = init_with_ports(workdir, PORTS)
    values = yaml.safe_load(settings_file.read_text())
    settings_file.write_text(yaml.safe_dump({**values, "monitoring": {"app_targets": APP}}))
    stack = Stack(workdir)
    app: subprocess.Popen[str] | None = None
    try:
        stack.must("up")
        stack.must("create-tables")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAZ_LAKEHOUSE_S3_")}
        app = subprocess.Popen([*CLI, "simulate", "--sagas", "120", "--rate", "4", "--failure-rate", "0.3",
                                "--seed", "17", "--metrics-port", APP.rsplit(":", 1)[1], "--metrics-linger", "1800"],
                               cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stack.must("doctor")
        yield stack
    finally:
        if app is not None:
            app.terminate()
            try:
                app.wait(timeout=30)
            except subprocess.TimeoutExpired:
                app.kill()
        stack.down()


def test_every_component_with_metrics_is_scraped(stack: Stack):
    model = build_stack(stack.settings, View.EXTERNAL)
    expected = {(c.name, name) for c in model.components if c.metrics for name in c.instance_names()}
    expected |= {("prometheus", "prometheus"), (prometheus.APPS_JOB, APP)}

    targets = stack.api("targets")["activeTargets"]
    assert {(t["labels"]["job"], t["labels"]["instance"]) for t in targets} == expected

    def all_up() -> tuple[bool, Any]:
        down = [(t["labels"]["instance"], t["health"], t["lastError"]) for t in stack.api("targets")["activeTargets"]
                if t["health"] != "up"]
        return not down, down

    wait_until("every target up", SCRAPE_WAIT, all_up)


def test_every_rule_is_loaded_and_healthy(stack: Stack):
    import yaml

    rules = [r for g in stack.api("rules")["groups"] for r in g["rules"]]
    expected = [r["alert"] for g in yaml.safe_load(prometheus.alert_rules(stack.settings))["groups"]
                for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(expected)
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_component_metrics_the_rules_read_are_there(stack: Stack):
    def present(query: str) -> tuple[bool, Any]:
        result = stack.api(f"query?query={urllib.parse.quote(query)}")["result"]
        return bool(result), result

    for query in ("fluss_coordinator_activeTabletServerCount", "fluss_tabletserver_underReplicated",
                  'flink_jobmanager_job_uptime{job_name=~"Fluss.Lake.Tiering.Service.*"}',
                  "minio_cluster_capacity_usable_total_bytes", "znode_count",
                  'fluss_tabletserver_table_bucket_lakeTiering_timestampLag{table="saga_events"}'):
        wait_until(f"a sample of {query}", SCRAPE_WAIT, lambda q=query: present(q))


def expand_time_filter(sql: str, start: datetime, end: datetime) -> str:
    """The Trino plugin's ``$__timeFilter(column)``: the column within the dashboard's time range."""
    import re

    def bounds(match: re.Match[str]) -> str:
        return (f"{match.group(1)} BETWEEN from_iso8601_timestamp('{start.isoformat()}') "
                f"AND from_iso8601_timestamp('{end.isoformat()}')")

    return re.sub(r"\$__timeFilter\(([^)]+)\)", bounds, sql)


def test_every_dashboard_query_returns_data(stack: Stack):
    queries = dashboards.panel_queries(stack.settings)
    assert {q.datasource for q in queries} == {"prometheus", dashboards.TRINO_PLUGIN}
    for query in (q for q in queries if q.datasource == "prometheus"):
        def answered(text: str = query.text) -> tuple[bool, Any]:
            result = stack.api(f"query?query={urllib.parse.quote(text)}")["result"]
            return bool(result), result

        wait_until(f"{query.dashboard} / {query.panel}: {query.text}", SCRAPE_WAIT, answered)
    endpoints = addresses.endpoints(stack.settings, View.EXTERNAL)
    for query in (q for q in queries if q.datasource == dashboards.TRINO_PLUGIN):
        def rows(text: str = query.text) -> tuple[bool, Any]:
            now = datetime.now(UTC)
            found = clients.trino_query(endpoints, expand_time_filter(text, now - timedelta(hours=24), now))
            return bool(found), found[:3]

        wait_until(f"{query.dashboard} / {query.panel}", TIERING_WAIT, rows)


def test_status_and_doctor_show_the_tiering_lag_per_table(stack: Stack):
    table = f"{stack.settings.lake.database}.saga_events"

    def lag_in_status() -> tuple[bool, Any]:
        # A bucket's leader publishes the lag once it has learnt the lake's max timestamp (-1 before, which
        # status leaves out); with replicated buckets that comes a while after the first lake commit.
        rows = json.loads(must(cli(stack.workdir, "status", "--json"), "status --json").stdout)
        (found,) = [r for r in rows if r["component"] == PROMETHEUS]
        raw = stack.api("query?query=" + urllib.parse.quote("fluss_tabletserver_table_bucket_lakeTiering_timestampLag"))
        return table in found.get("tiering_lag_seconds", {}), (found, raw["result"][:6])

    wait_until(f"tiering lag of {table} in status", TIERING_WAIT, lag_in_status)
    rows = json.loads(must(cli(stack.workdir, "status", "--json"), "status --json").stdout)
    (row,) = [r for r in rows if r["component"] == PROMETHEUS]
    assert 0 <= row["tiering_lag_seconds"][table] < prometheus.tiering_lag_threshold_ms(stack.settings) / 1000, row
    report = json.loads(must(cli(stack.workdir, "doctor", "--quick", "--json"), "doctor --quick").stdout)
    (check,) = [c for c in report["checks"] if c["name"] == "prometheus + tiering lag"]
    assert check["status"] == "pass" and f"tiering lag: {table} " in check["detail"], check


def test_cancelling_the_tiering_job_fires_the_alert_and_up_clears_it(stack: Stack):
    assert stack.alert_states().get(ALERT) != "firing"
    (job,) = [j["id"] for j in stack.flink("/jobs")["jobs"] if j["status"] == "RUNNING"]
    stack.flink(f"/jobs/{job}?mode=cancel", method="PATCH")
    wait_until(f"{ALERT} firing", ALERT_WAIT, lambda: (stack.alert_states().get(ALERT) == "firing",
                                                       stack.alert_states()))
    must(cli(stack.workdir, "up"), "up (resubmits the tiering job)")
    wait_until(f"{ALERT} resolved", ALERT_WAIT, lambda: (ALERT not in stack.alert_states(), stack.alert_states()))


def test_lag_threshold_matches_the_profile(stack: Stack):
    assert prometheus.tiering_lag_threshold_ms(stack.settings) == 30_000
