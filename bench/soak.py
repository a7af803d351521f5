"""Soak benchmark of the lake (``make bench-soak`` → bench/results/soak.md): days of tiering compressed into minutes.

One local stack, tiering at a 1 s freshness (a 1 s tiering poll, KV snapshots every second), receives the same saga
events in two tables at a steady rate, with a share of events sent again ten seconds later, as a listener replaying its
spool after a Fluss restart would (Fluss tiers them as Iceberg equality deletes):

- ``soak_maint.saga_events`` is maintained every ``--maintain-every`` of its tiering commits, exactly as the
  lake-maintenance service does it (``sagaz_lakehouse.maintenance.run`` with the settings' policy). At the 1 s
  freshness that is the same number of commits between runs as a 10 min schedule at a 10 s freshness, or about
  3 hours of prod (3 min freshness, hourly maintenance) per run;
- ``soak_plain.saga_events`` is never maintained: the baseline of the same run.

The tiering service tiers one table at a time, so the two tables share its commits. Every ``--sample-every`` tiering
commits it records for both tables: data files, snapshots, metadata size, the tiering commit duration (Iceberg's own
``CommitReport`` of each commit, which the tiering job's TaskManager logs) and the latency of the query pack's
``sla_compliance`` and ``step_bottlenecks`` through Trino (median of 3). Until ``--commits`` tiering commits have
landed. At the end, with the writes stopped, it measures the maintained table as it was left (up to
``--maintain-every`` commits since its last run) and right after one more run, against a freshly compacted copy of the
same rows with the same layout (``CREATE TABLE AS`` bucketed as Fluss buckets the lake table).

Targets (issue 24): the maintained table's query latency at most 1.5x the compacted copy's, and its tiering commit
duration within 1.5x that of its first hundred commits. It runs its own stack in a temporary folder (on the default
ports unless --port-base moves them; stop other stacks first) and tears it down.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sagaz_lakehouse as lakehouse  # noqa: E402
from sagaz_lakehouse import addresses, analytics, clients, config, lake_maintenance, maintenance  # noqa: E402
from sagaz_lakehouse.stack import View  # noqa: E402

CLI = [sys.executable, "-m", "sagaz_lakehouse"]
DATABASES = {"maintained": "soak_maint", "plain": "soak_plain"}
QUERIES = ("sla_compliance", "step_bottlenecks")
COMPRESSED = {"lake": {"freshness": "1s", "tiering_poll": "1s", "kv_snapshot_interval": "1s",
                       "snapshot_retention": "10min"},
              "maintenance": {"schedule": "off"}}  # the benchmark runs maintenance itself, on a commit count
COMMIT_REPORT = re.compile(r"CommitReport\{tableName=[^.]*\.(\w+)\.saga_events, .*?totalDuration=PT([\d.]+)S")
STEPS = ("reserve_stock", "charge_payment", "ship_order")


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"sagaz-lakehouse {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


# ----------------------------------------------------------------------------------------------------- writes


def saga_rows(tag: str, sagas: int, now: datetime) -> list[dict]:
    """Sagas of three steps: start, each step, and an end (a tenth fail at the payment step)."""
    rows = []
    for n in range(sagas):
        saga_id, failed = f"{tag}-{n}", n % 10 == 0
        steps = STEPS[:2] if failed else STEPS
        events = [("saga_started", None, None)] + [("step_completed", step, random.randint(5, 400))  # noqa: S311
                                                   for step in steps]
        events.append(("saga_failed" if failed else "saga_completed", None, None))
        total = 0
        for i, (kind, step, duration) in enumerate(events):
            total += duration or 0
            rows.append({"event_id": f"{saga_id}-{i}", "event_type": kind, "saga_id": saga_id, "saga_name": "order",
                         "step_name": step, "duration_ms": duration, "total_duration_ms": total,
                         "error_type": "PaymentDeclined" if failed and kind == "saga_failed" else None,
                         "error_message": None, "context_keys": ["order_id"],
                         "timestamp": now + timedelta(milliseconds=i)})
    return rows


RESEND_AFTER = 10  # seconds: events sent again this much later land in another tiering round (equality deletes)


class Writer(threading.Thread):
    """Writes the same events to every table at ``rate`` events/s, sending a share of those of RESEND_AFTER seconds
    ago again (an upsert of an existing key, as a listener replaying its spool would)."""

    def __init__(self, settings: lakehouse.Settings, rate: int, update_share: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.rate, self.update_share = settings, rate, update_share
        self.stop_flag, self.written, self.error = threading.Event(), 0, ""

    def run(self) -> None:
        try:
            asyncio.run(self._write())
        except Exception as exc:  # the report says so; the run stops on it
            self.error = f"{type(exc).__name__}: {exc}"

    async def _write(self) -> None:
        import fluss

        from sagaz_lakehouse.tables import TABLE

        endpoints = addresses.endpoints(self.settings, View.EXTERNAL)
        async with clients.fluss_connection(endpoints) as connection:
            writers = []
            for database in DATABASES.values():
                table = await connection.get_table(fluss.TablePath(database, TABLE))
                writers.append(table.new_upsert().create_writer())
            earlier: list[list[dict]] = []
            second = 0
            while not self.stop_flag.is_set():
                started = time.monotonic()
                rows = saga_rows(f"s{second}-{uuid.uuid4().hex[:6]}", max(1, self.rate // 5), datetime.now())
                old = earlier[0] if len(earlier) >= RESEND_AFTER else []
                again = old[: int(len(old) * self.update_share)]
                for writer in writers:
                    handles = [writer.upsert(row) for row in rows + again]
                    await writer.flush()
                    for handle in handles:
                        await handle.wait()
                self.written += len(rows) + len(again)
                earlier = [*earlier[-(RESEND_AFTER - 1):], rows]
                second += 1
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


# ------------------------------------------------------------------------------------------------ measurements


@dataclass
class Commits:
    """Iceberg's CommitReport durations per database, read from the TaskManager logs as they grow."""

    logs: Path
    seconds: dict[str, list[float]] = field(default_factory=lambda: {d: [] for d in DATABASES.values()})
    offsets: dict[Path, int] = field(default_factory=dict)

    def refresh(self) -> None:
        for log in sorted(self.logs.glob("flink-taskmanager-*.log")):
            with log.open(errors="replace") as handle:
                handle.seek(self.offsets.get(log, 0))
                text = handle.read()
                self.offsets[log] = handle.tell()
            for database, seconds in COMMIT_REPORT.findall(text):
                if database in self.seconds:
                    self.seconds[database].append(float(seconds))

    def count(self, database: str) -> int:
        return len(self.seconds[database])


def query_seconds(settings: lakehouse.Settings, database: str, name: str, repeat: int = 3) -> float:
    prepared = analytics.prepare(_scoped(settings, database), name, {"since": "30d"})
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        clients.trino_query(endpoints, prepared.sql)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def shape(settings: lakehouse.Settings, database: str) -> maintenance.Shape:
    return lake_maintenance.lake(_scoped(settings, database), addresses.endpoints(settings, View.EXTERNAL)).shape()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ------------------------------------------------------------------------------------------------------- main


def configure(work: Path, port_base: int) -> lakehouse.Settings:
    run(["init"], work)
    settings_file = work / config.CONFIG_FILENAME
    values = yaml.safe_load(settings_file.read_text()) or {}
    values.update(COMPRESSED)
    if port_base:
        defaults = lakehouse.load_settings(environ={}).ports
        values["ports"] = {name: port_base + getattr(defaults, name) % 10000 for name in vars(defaults)}
    settings_file.write_text(yaml.safe_dump(values))
    return lakehouse.load_settings(settings_file, environ={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.md")
    parser.add_argument("--commits", type=int, default=2000, help="tiering commits of both tables together")
    parser.add_argument("--sample-every", type=int, default=250)
    parser.add_argument("--maintain-every", type=int, default=30, help="tiering commits of the maintained table")
    parser.add_argument("--rate", type=int, default=200, help="events per second, into each table")
    parser.add_argument("--update-share", type=float, default=0.1)
    parser.add_argument("--port-base", type=int, default=0, help="move every port to this base + (port mod 10000)")
    args = parser.parse_args()
    samples: list[dict] = []
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sagaz-soak-") as tmp:
        work = Path(tmp)
        settings = configure(work, args.port_base)
        started = time.monotonic()
        try:
            run(["up"], work)
            for database in DATABASES.values():
                run(["create-tables", "--set", f"lake.database={database}"], work)
            commits = Commits(work / settings.local.run_dir / "logs")
            writer = Writer(settings, args.rate, args.update_share)
            writer.start()
            maintained, plain = DATABASES["maintained"], DATABASES["plain"]
            next_sample, next_maintenance = args.sample_every, args.maintain_every
            while commits.count(maintained) + commits.count(plain) < args.commits:
                time.sleep(2)
                commits.refresh()
                if writer.error:
                    raise SystemExit(f"the writer stopped: {writer.error}")
                if commits.count(maintained) >= next_maintenance:
                    runs.append(maintain(settings, maintained, commits.count(maintained)))
                    next_maintenance += args.maintain_every
                done = commits.count(maintained) + commits.count(plain)
                if done >= next_sample:
                    samples.append(sample(settings, commits, done, started))
                    print(f"soak: {samples[-1]}", file=sys.stderr, flush=True)
                    next_sample += args.sample_every
            writer.stop_flag.set()
            writer.join(timeout=60)
            time.sleep(10)  # the last rounds land
            commits.refresh()
            total = commits.count(maintained) + commits.count(plain)
            final = sample(settings, commits, total, started)
            copy = compacted_copy(settings, maintained)
            final["copy"] = {name: query_seconds(settings, copy, name) for name in QUERIES}
            runs.append(maintain(settings, maintained, commits.count(maintained)))
            final["after_run"] = {name: query_seconds(settings, maintained, name) for name in QUERIES}
            samples.append(final)
        finally:
            subprocess.run([*CLI, "down", "--purge"], cwd=work, capture_output=True)
    write_report(args, settings, samples, runs, commits_seconds(commits, plain, maintained))


def maintain(settings: lakehouse.Settings, database: str, commits: int) -> dict:
    target = lake_maintenance.lake(_scoped(settings, database), addresses.endpoints(settings, View.EXTERNAL))
    report = maintenance.run(target, lake_maintenance.policy(settings))
    return {"commits": commits, "ok": report.ok, "seconds": report.seconds,
            "retries": sum(max(0, s.get("attempts", 1) - 1) for s in report.steps),
            "failures": [f"{s['step']}: {s.get('error', s['result'])}" for s in report.steps
                         if s.get("result", "ok") != "ok"]}


def _scoped(settings: lakehouse.Settings, database: str) -> lakehouse.Settings:
    import dataclasses

    return dataclasses.replace(settings, lake=dataclasses.replace(settings.lake, database=database))


def commits_seconds(commits: Commits, *databases: str) -> dict[str, list[float]]:
    return {database: commits.seconds[database] for database in databases}


def sample(settings: lakehouse.Settings, commits: Commits, done: int, started: float) -> dict:
    out: dict = {"commits": done, "minutes": (time.monotonic() - started) / 60}
    for label, database in DATABASES.items():
        current = shape(settings, database)
        recent = commits.seconds[database][-100:]
        out[label] = {"files": current.data_files, "deletes": current.delete_files, "snapshots": current.snapshots,
                      "metadata_kib": current.metadata_bytes / 1024, "commit_ms": median(recent) * 1000,
                      **{name: query_seconds(settings, database, name) for name in QUERIES}}
    return out


def compacted_copy(settings: lakehouse.Settings, database: str) -> str:
    """The maintained table's rows, freshly written with its layout (bucketed by event_id as Fluss buckets the lake
    table): what a perfectly maintained table reads like."""
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    copy = "soak_copy"
    clients.trino_query(endpoints, f"CREATE SCHEMA IF NOT EXISTS iceberg.{copy}")
    clients.trino_query(endpoints, f"DROP TABLE IF EXISTS iceberg.{copy}.saga_events")
    clients.trino_query(endpoints, f"CREATE TABLE iceberg.{copy}.saga_events WITH (partitioning = "  # noqa: S608
                                   f"ARRAY['bucket(event_id, {settings.lake.buckets})']) AS "
                                   f"SELECT * FROM iceberg.{database}.saga_events")
    return copy


def write_report(args: argparse.Namespace, settings: lakehouse.Settings, samples: list[dict], runs: list[dict],
                 seconds: dict[str, list[float]]) -> None:
    final = samples[-1]
    lines = [
        "# Lake soak benchmark\n",
        f"Machine: {os.cpu_count()} cores; run {time.strftime('%Y-%m-%d %H:%M')}; produced by `make bench-soak` "
        f"(bench/soak.py). Local target, freshness {settings.freshness}, tiering poll {settings.tiering_poll}, KV "
        f"snapshots every {settings.kv_snapshot_interval}; {args.rate} events/s into each table, "
        f"{args.update_share:.0%} of them sent again {RESEND_AFTER} s later; snapshot retention "
        f"{settings.snapshot_retention}. "
        f"`soak_maint` maintained every {args.maintain_every} tiering commits (maintenance.run, as the service "
        f"does), `soak_plain` never; {len(runs)} maintenance runs, {sum(not r['ok'] for r in runs)} failed, "
        f"{sum(r['retries'] for r in runs)} steps started again after a commit conflict; median run "
        f"{median([r['seconds'] for r in runs]):.1f} s."
        + "".join(f"\n- failed at commit {r['commits']}: {'; '.join(r['failures'])[:300]}" for r in runs if not r["ok"])
        + "\n",
        "| commits | minutes | data files (maint / plain) | delete files | snapshots | metadata KiB | commit ms, "
        "last 100 | sla_compliance s | step_bottlenecks s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        m, p = s["maintained"], s["plain"]
        lines.append(f"| {s['commits']} | {s['minutes']:.0f} | {m['files']} / {p['files']} | {m['deletes']} / "
                     f"{p['deletes']} | {m['snapshots']} / {p['snapshots']} | {m['metadata_kib']:.0f} / "
                     f"{p['metadata_kib']:.0f} | {m['commit_ms']:.0f} / {p['commit_ms']:.0f} | "
                     f"{m['sla_compliance']:.2f} / {p['sla_compliance']:.2f} | "
                     f"{m['step_bottlenecks']:.2f} / {p['step_bottlenecks']:.2f} |")
    first_hundred = {db: median(values[:100]) for db, values in seconds.items()}
    last_hundred = {db: median(values[-100:]) for db, values in seconds.items()}
    maint, plain = DATABASES["maintained"], DATABASES["plain"]
    lines += ["", "At the end, with the writes stopped, against a freshly compacted copy of the maintained table's "
              "rows with its layout (same run). *As left*: up to "
              f"{args.maintain_every} tiering commits since its last run; *after a run*: right after one more.", "",
              "| measure | maintained, as left | maintained, after a run | never maintained | compacted copy | "
              "as left / copy | after a run / copy (target ≤ 1.5) | never maintained / copy |",
              "|---|---|---|---|---|---|---|---|"]
    for name in QUERIES:
        m, a, p, c = (final["maintained"][name], final["after_run"][name], final["plain"][name],
                      final["copy"][name])
        lines.append(f"| {name} (s, median of 3) | {m:.2f} | {a:.2f} | {p:.2f} | {c:.2f} | {m / c:.2f}x | "
                     f"{a / c:.2f}x | {p / c:.2f}x |")
    lines += ["", "| tiering commit duration (Iceberg CommitReport) | first 100 commits (ms) | last 100 (ms) | "
              "ratio (target ≤ 1.5) |", "|---|---|---|---|"]
    for label, database in (("maintained", maint), ("never maintained", plain)):
        ratio = last_hundred[database] / first_hundred[database]
        lines.append(f"| {label} | {first_hundred[database] * 1000:.0f} | {last_hundred[database] * 1000:.0f} | "
                     f"{ratio:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
