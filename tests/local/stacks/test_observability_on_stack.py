"""Prometheus on the real local stack: every component scraped, every rule loaded, every dashboard query answered
(PromQL by Prometheus, SQL by Trino), the tiering-job alert firing when the job is cancelled (and clearing when
`up` resubmits it), and the live anomaly alerts firing for the saga `simulate --anomaly` disturbs, and only for
it. Lake maintenance runs here on a short schedule (MAINTENANCE): it compacts the files tiering writes while tiering
goes on, every row stays, its shape reaches Prometheus, status and doctor, snapshots older than the retention go, and
time travel within it works.

The module starts its own stack on ports of its own (support.suite_ports), creates the tables, starts `simulate
--metrics-port` as the application Prometheus scrapes for saga metrics (monitoring.app_targets) and a second one
that runs steadily and injects anomalies after ANOMALY_AT (the anomaly rules' windows shortened to seconds by the
anomaly.* settings), runs `doctor` (its probe event gives the tiering-lag gauges a value), and always ends by stopping
those processes and `down --purge`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from saga_data import saga_events, write_events
from support import CLI, SuiteStack, cli, init_with_ports, must, suite_port, suite_ports

from sagaz_lakehouse import addresses, clients, dashboards, lake_maintenance, maintenance
from sagaz_lakehouse.components import build_stack, prometheus
from sagaz_lakehouse.stack import PROMETHEUS, View

PORTS = suite_ports("observability")
# simulate --metrics-port: the application whose saga metrics Prometheus scrapes (two run at once: each needs a spool
# folder of its own, or the second is refused with exit 2 while the first holds the default one)
APP = f"127.0.0.1:{suite_port('observability')}"
# The steady application for the live anomaly test: no failures at all, then from ANOMALY_AT for ANOMALY_FOR its order
# sagas fail at charge_payment (60%) and its fulfilment sagas spend 1.5 s booking the courier: far outside the
# baseline's band even when the other lane's stack makes this machine's saga durations jitter (300 ms did not fire
# within the test's minute once in CI, with the module's set-up taking 324 s under that load).
STEADY_APP = f"127.0.0.1:{suite_port('observability') + 1}"
# The first application's 30% failures move the failure ratio until about a minute after it starts (30 s of sagas, a
# 30 s window): by the earliest moment the alerts can fire (ANOMALY_AT + window + sustained) that has left the
# 2-minute baseline too. The anomaly lasts past the latest firing the test accepts (window + sustained + 60 s).
ANOMALY_AT, ANOMALY_FOR = 210, 120  # s after the steady application starts
STEADY_RATE = 2  # sagas a second, for ANOMALY_AT + ANOMALY_FOR + 60 s
ANOMALIES = ("saga=order,step=charge_payment,at=+{at}s,for={for_}s,failure_rate=0.6",
             "saga=fulfilment,step=book_courier,at=+{at}s,for={for_}s,duration_ms=1500")
# The anomaly rules in seconds: a 30 s window against a 2-minute baseline ending 45 s ago, 15 s out of the band.
ANOMALY_SETTINGS = {"window": "30s", "baseline": "2min", "sustained": "15s", "threshold": "3"}
SCRAPE_WAIT = 120  # s for every target to be scraped successfully once
ALERT_WAIT = 150  # s: `for: 30s` plus the 5 s evaluation interval, on a busy 2-core machine
ALERT = "TieringJobNotRunning"
TIERING_WAIT = 300  # s for the simulated sagas to be in Iceberg
# Days of maintenance compressed into minutes: a run every 15 s, two minutes of time travel.
MAINTENANCE = {"maintenance": {"schedule": "15s"}, "lake": {"snapshot_retention": "2min"}}
RETENTION_S, SCHEDULE_S = 120, 15
SEEN: dict[str, Any] = {}  # what a later test reads back: the first snapshot, the rows written


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

    def firing_since(self, alert: str, start: float) -> dict[str, float]:
        """When each series of ``alert`` (by saga_name) first fired since ``start`` (Prometheus's ALERTS series)."""
        query = urllib.parse.quote(f'ALERTS{{alertname="{alert}",alertstate="firing"}}')
        end = max(time.time(), start)  # Prometheus refuses a range that ends before it starts (400)
        found = self.api(f"query_range?query={query}&start={start:.0f}&end={end:.0f}&step=5")["result"]
        return {r["metric"].get("saga_name", ""): float(r["values"][0][0]) for r in found}

    def ever_active_since(self, alert: str, saga: str, start: float) -> list[Any]:
        """The samples of ``alert`` for ``saga``, pending or firing, since ``start``."""
        query = urllib.parse.quote(f'ALERTS{{alertname="{alert}",saga_name="{saga}"}}')
        end = max(time.time(), start)
        return list(self.api(f"query_range?query={query}&start={start:.0f}&end={end:.0f}&step=5")["result"])


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
    settings_file.write_text(yaml.safe_dump({**values, "monitoring": {"app_targets": f"{APP},{STEADY_APP}"},
                                             "anomaly": ANOMALY_SETTINGS, **MAINTENANCE}))
    stack = Stack(workdir)
    app: subprocess.Popen[str] | None = None
    steady: subprocess.Popen[str] | None = None
    try:
        stack.must("up")
        stack.must("create-tables")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAZ_LAKEHOUSE_S3_")}
        app = subprocess.Popen([*CLI, "simulate", "--sagas", "120", "--rate", "4", "--failure-rate", "0.3",
                                "--seed", "17", "--metrics-port", APP.rsplit(":", 1)[1], "--metrics-linger", "1800",
                                "--spool-dir", str(workdir / "spool-app")],
                               cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        SEEN["steady_started"] = time.time()
        anomalies = [a for spec in ANOMALIES for a in ("--anomaly", spec.format(at=ANOMALY_AT, for_=ANOMALY_FOR))]
        steady = subprocess.Popen([*CLI, "simulate", "--sagas", str(STEADY_RATE * (ANOMALY_AT + ANOMALY_FOR + 60)),
                                   "--rate", str(STEADY_RATE), "--failure-rate", "0", "--seed", "23", *anomalies,
                                   "--metrics-port", STEADY_APP.rsplit(":", 1)[1], "--metrics-linger", "1800",
                                   "--spool-dir", str(workdir / "spool-steady")],
                                  cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # The probe may take as long as the module's own tiering budget: the first tiering round of the new table
        # runs while the other lane of `make test` starts a stack of its own on the same two cores.
        stack.must("doctor", "--probe-timeout", str(TIERING_WAIT))
        yield stack
    finally:
        for process in (app, steady):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        stack.down()


def test_every_component_with_metrics_is_scraped(stack: Stack):
    model = build_stack(stack.settings, View.EXTERNAL)
    expected = {(c.name, name) for c in model.components if c.metrics for name in c.instance_names()}
    expected |= {("prometheus", "prometheus"), (prometheus.APPS_JOB, APP), (prometheus.APPS_JOB, STEADY_APP)}

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
    expected = [r.get("alert") or r["record"] for g in yaml.safe_load(prometheus.alert_rules(stack.settings))["groups"]
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


def trino(stack: Stack, sql: str) -> list[tuple]:
    return clients.trino_query(addresses.endpoints(stack.settings, View.EXTERNAL), sql)


def rows_of(stack: Stack, batch: str) -> tuple[int, int, int]:
    """Rows, distinct keys and the sum of duration_ms of a batch, through Trino (which applies every delete)."""
    sql = (f"SELECT count(*), count(DISTINCT event_id), coalesce(sum(duration_ms), 0) "  # noqa: S608 - ours
           f"FROM {stack.settings.lake.database}.saga_events WHERE saga_name LIKE '{batch}-%'")
    ((count, keys, total),) = trino(stack, sql)
    return count, keys, total


def tiered_files_since(stack: Stack, since: float) -> int:
    """Data files Fluss's tiering commits added since ``since`` (epoch seconds), from the table's snapshot log."""
    sql = (f"SELECT coalesce(sum(CAST(element_at(summary, 'added-data-files') AS bigint)), 0) "  # noqa: S608 - ours
           f"FROM {stack.settings.lake.database}.\"saga_events$snapshots\" "
           f"WHERE committed_at >= from_unixtime({since:.3f}) "
           f"AND element_at(summary, 'commit-user') = '{maintenance.FLUSS_COMMIT_USER}'")
    return int(trino(stack, sql)[0][0])


def test_lake_maintenance_compacts_on_its_schedule_while_tiering_goes_on_and_keeps_every_row(stack: Stack):
    """Rounds of writes, each updating keys of the round before (Fluss tiers those as Iceberg equality deletes),
    while the service compacts every 15 s: afterwards every row is there once with its last value, the file count
    fell, and no tiering commit failed."""
    settings = stack.settings
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    SEEN["first_snapshot"] = trino(stack, f'SELECT min_by(snapshot_id, committed_at) FROM '  # noqa: S608
                                          f'{settings.lake.database}."saga_events$snapshots"')[0][0]
    batch = f"maint-{uuid.uuid4().hex[:8]}"
    latest: dict[str, dict] = {}
    previous: list[dict] = []
    for round_ in range(6):
        rows = saga_events(f"{batch}-{round_}", 300)
        updates = [{**row, "duration_ms": 10_000 + i} for i, row in enumerate(previous[:60])]
        asyncio.run(write_events(settings, rows + updates))
        latest |= {row["event_id"]: row for row in rows + updates}
        previous = rows
        time.sleep(5)
    expected = (len(latest), len(latest), sum(row["duration_ms"] for row in latest.values()))
    wait_until("every row in Trino", TIERING_WAIT, lambda: (rows_of(stack, batch) == expected, rows_of(stack, batch)))
    written_at = time.time()

    def maintained_since() -> tuple[bool, Any]:
        shape, _ = lake_maintenance.observe(settings, endpoints)
        return (shape.maintained_at or 0) > written_at, shape

    wait_until("a maintenance run after the writes", 4 * SCHEDULE_S + 60, maintained_since)
    assert rows_of(stack, batch) == expected  # compaction lost, duplicated or resurrected nothing
    log = (stack.run_dir / "logs" / "lake-maintenance.log").read_text()
    runs = [(int(a), int(b)) for a, b in re.findall(r"data files (\d+) → (\d+)", log)]
    assert any(before > after for before, after in runs), log[-3000:]
    assert "maintenance failed" not in log, log[-3000:]
    shape, findings = lake_maintenance.observe(settings, endpoints)
    assert not findings, findings
    assert shape.data_files <= settings.maintenance.max_files_per_bucket * settings.lake.buckets
    assert shape.properties["write.metadata.delete-after-commit.enabled"] == "true"
    tiering = "".join(p.read_text(errors="replace") for p in (stack.run_dir / "logs").glob("flink-taskmanager-*.log"))
    assert "Fail to commit tiering write result" not in tiering
    SEEN["batch"], SEEN["expected"] = batch, expected


def test_the_lake_shape_reaches_prometheus_status_doctor_and_maintain(stack: Stack):
    table = f"{stack.settings.lake.database}.saga_events"
    query = "query?query=" + urllib.parse.quote(f'sagaz_lake_data_files{{table="{table}"}}')
    wait_until("the lake shape in Prometheus", SCRAPE_WAIT, lambda: (bool(stack.api(query)["result"]),
                                                                     stack.api(query)))
    rows = json.loads(must(cli(stack.workdir, "status", "--json"), "status --json").stdout)
    (row,) = [r for r in rows if r["component"] == f"{table} (lake)"]
    assert row["state"] == "healthy" and "maintained" in row["detail"] and "data files" in row["detail"], row
    report = json.loads(must(cli(stack.workdir, "doctor", "--quick", "--json"), "doctor --quick").stdout)
    (check,) = [c for c in report["checks"] if c["name"] == "saga_events lake shape and maintenance"]
    assert check["status"] == "pass" and "snapshots" in check["detail"], check
    plan = json.loads(must(cli(stack.workdir, "maintain", "--dry-run", "--json"), "maintain --dry-run").stdout)
    assert plan["dry_run"] is True and plan["after"] is None
    assert [s["step"] for s in plan["steps"]][-4:] == ["compaction", "manifests", "snapshot expiry", "orphan files"]
    started = time.time()
    done = json.loads(must(cli(stack.workdir, "maintain", "--json"), "maintain").stdout)
    # Tiering goes on meanwhile (the steady application runs for minutes): its commits add files the run's own
    # compaction has not seen, so the bound is the files before plus what Fluss committed since the run started.
    tiered = tiered_files_since(stack, started)
    assert done["ok"] is True and done["after"]["data_files"] <= done["before"]["data_files"] + tiered, (tiered, done)
    assert all(s["result"] == "ok" for s in done["steps"]), done["steps"]
    assert rows_of(stack, SEEN["batch"]) == SEEN["expected"]


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


def test_injected_anomalies_fire_the_live_alerts_for_that_saga_only(stack: Stack):
    """The steady application's order sagas start failing at charge_payment, its fulfilment sagas slow down: the
    failure-ratio alert fires for order, not before the anomaly and its `for`, and within the window, the `for` and a
    minute; it never even goes pending for fulfilment, whose failure ratio stays 0; the duration alert fires for
    fulfilment within the same time.

    Failures are planned, so the failure-ratio side is exact. Durations are measured: a stall of this busy machine
    is a real slowdown that the duration rule may flag before the anomaly too, so only its firing during the anomaly
    is held. The history is read from a minute before the anomaly: the first application's failing half-minute, at
    the start, is a real change of the failure ratio too (from 30% to 0 when it stops), which the rules may flag
    while the baseline is that short; by the time the alerts can first fire (ANOMALY_AT + window + sustained) it has
    left both the window and the baseline; a minute before the anomaly it is under two thirds of the baseline's
    samples, and a fall to 0 leaves the 3-sigma band only when over nine tenths of them are at the old ratio."""
    anomaly_start = SEEN["steady_started"] + ANOMALY_AT  # not earlier: simulate plans the anomaly from its start
    sustained = int(ANOMALY_SETTINGS["sustained"].removesuffix("s"))
    latest = anomaly_start + 30 + sustained + 60  # the window, the `for`, and a minute of scraping and start-up
    time.sleep(max(0.0, anomaly_start + sustained - time.time()))  # when run alone, this test comes early
    deadline = latest - time.time()

    def fired() -> tuple[bool, Any]:
        seen = {"failure": stack.firing_since("SagaFailureRateAnomaly", anomaly_start - 60),
                "duration": stack.firing_since("SagaDurationAnomaly", anomaly_start + sustained)}
        return "order" in seen["failure"] and "fulfilment" in seen["duration"], seen

    wait_until("SagaFailureRateAnomaly for order and SagaDurationAnomaly for fulfilment", max(deadline, 60), fired)
    failure = stack.firing_since("SagaFailureRateAnomaly", anomaly_start - 60)["order"]
    duration = stack.firing_since("SagaDurationAnomaly", anomaly_start + sustained)["fulfilment"]
    assert anomaly_start + sustained <= failure <= latest, failure - anomaly_start
    assert duration <= latest, duration - anomaly_start
    SEEN["detected_after_s"] = {"failure_rate": round(failure - anomaly_start), "p95": round(duration - anomaly_start)}
    # the quiet side: wait until the anomaly window (and the rule's window after it) is over, then look back
    time.sleep(max(0.0, anomaly_start + ANOMALY_FOR + 30 - time.time()))
    assert stack.ever_active_since("SagaFailureRateAnomaly", "fulfilment", anomaly_start - 60) == []
    print(f"live anomaly alerts fired {SEEN['detected_after_s']} s after the anomaly began")


def test_snapshots_older_than_the_retention_go_and_time_travel_within_it_works(stack: Stack):
    """Last in the module, when its first snapshots are older than the retention: a run since has expired them,
    except the one Fluss committed last (tiering looks it up before its next commit), and a snapshot within the
    retention still answers a time-travel query."""
    settings = stack.settings
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    db = settings.lake.database

    def first_snapshot_gone() -> tuple[bool, Any]:
        ids = {row[0] for row in trino(stack, f'SELECT snapshot_id FROM {db}."saga_events$snapshots"')}  # noqa: S608
        return SEEN["first_snapshot"] not in ids, len(ids)

    wait_until("the first snapshot expired", RETENTION_S + 4 * SCHEDULE_S + 120, first_snapshot_gone)
    shape, _ = lake_maintenance.observe(settings, endpoints)
    assert shape.maintained_at is not None and shape.fluss_snapshot_ms is not None
    snapshots = trino(stack, f"SELECT snapshot_id, to_unixtime(committed_at), element_at(summary, 'commit-user') "  # noqa: S608
                             f'FROM {db}."saga_events$snapshots" ORDER BY committed_at')
    cutoff = shape.maintained_at - max(RETENTION_S, shape.maintained_at - shape.fluss_snapshot_ms / 1000 + 60) - 5
    assert all(committed >= cutoff for _, committed, _ in snapshots), (cutoff, snapshots)
    assert any(user == "__fluss_lake_tiering" for *_, user in snapshots)  # Fluss's last one stays
    oldest_id = snapshots[0][0]
    ((count,),) = trino(stack, f"SELECT count(*) FROM {db}.saga_events FOR VERSION AS OF {oldest_id}")  # noqa: S608
    assert count > 0

