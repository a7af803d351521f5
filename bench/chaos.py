"""Chaos benchmark of the local target (``make chaos``): does any acknowledged saga event get lost, and does the
stack (tiering included) come back by itself?

For each configuration it runs its own stack in a temporary folder (ports shifted by ``--port-base``) and, for each
component (every tablet server, the coordinator, ZooKeeper, the Flink JobManager and TaskManager, the REST catalog,
MinIO, Trino) and each way of stopping it (``kill -9`` of its process group; ``SIGTERM``, a graceful stop), it:

1. starts a writer that upserts batches of 100 saga events through pyfluss, each batch awaited (acks=all, the
   pyfluss default), recording every acknowledged event id and every error it sees;
2. after ``--before`` seconds stops the component through its pid file (``.sagaz-lakehouse/pids/NAME.pid``, the
   process group is the pid); the watchdog that ``up`` started restarts it (backoff, as a user gets it);
3. keeps writing until writes have succeeded again for ``--after`` seconds, then stops the writer;
4. counts the acknowledged events found in Fluss (a KV limit scan of every bucket: the primary-key state itself),
   in Iceberg (pyiceberg) and in Trino; lost = acknowledged but no longer in Fluss (the system of record; an
   event Fluss has that never reaches Iceberg shows as a tiering stall instead); duplicated = rows beyond one per
   event id (Trino, which applies Fluss's equality deletes).

Plus one whole-stack ``kill -9`` (the watchdog included, as in a power cut) followed by ``up`` after
``--restart-delay`` seconds. Each configuration gets one table in ``--out``.

Then three faults *through the listener*: an application process runs real Sagaz sagas (simulate's order and DAG
sagas, ``--app-rate`` a second) with ``FlussAnalyticsListener(spool_dir=...)``; a second listener after it records
the id of every event whose analytics hook returned. Each fault is judged on those ids in Iceberg:

- ``listener: whole stack``: ``kill -9`` of every process of the stack while sagas run (a raw pyfluss writer runs
  beside the application, for comparison), ``up``; the application goes on, then delivers and waits until the lake
  holds everything;
- ``listener: application``: ``kill -9`` of the application while sagas run; a new process on the same spool only
  re-sends what it finds there;
- ``listener: fluss down``: the Fluss servers stopped while sagas run (``--outage-rate``) until more than
  ``--outage-events`` events wait in the listener (the old in-memory buffer held 100,000), then ``up``.

Definitions, in the table:

- *writes back after (s)*: the longest time without any acknowledgement after the fault (kill to first ack when
  writes were blocked); about one batch round trip when the fault did not touch the write path.
- *in Iceberg after (s)*: from the last acknowledgement to the moment every acknowledged event was in Iceberg.
  Target: freshness + 60 s. "never" means not within freshness + ``--lake-grace`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this folder is first on the path, where bench/sagaz.py would hide the Sagaz library from
# `import sagaz` (in the application processes too, which get this path).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

import sagaz_lakehouse as lakehouse  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))  # the running-stack helper the test suites share
from running import RunningStack  # noqa: E402

from sagaz_lakehouse import addresses, clients, config, doctor, lake_health, tables  # noqa: E402
from sagaz_lakehouse.components import fluss as fluss_servers  # noqa: E402
from sagaz_lakehouse.components.tasks import TIERING_JOB_NAME  # noqa: E402

CLI = [sys.executable, "-m", "sagaz_lakehouse"]
BATCH = 100
WHOLE_STACK = "whole stack"
# Port offsets from a base; the defaults (and 1xxxx/3xxxx) are taken by other engineers' stacks.
PORT_OFFSETS = {"zookeeper": 2181, "fluss_coordinator": 9123, "fluss_tablet": 9124, "minio": 9000,
                "minio_console": 9001, "rest_catalog": 8181, "flink_rest": 8081, "flink_rpc": 6123,
                "flink_sql_gateway": 8083, "trino": 8080, "catalog_db": 5432}
# Tablet servers first: they are what issue 12 is about, and the time budget cuts the end of the list. A fault
# that loses data or leaves the stack unready gets the stack rebuilt before the next one.
ORDER = ["fluss-tablet-0", "fluss-tablet-1", "fluss-tablet-2", "fluss-coordinator", "zookeeper", "flink-jobmanager",
         "flink-taskmanager-0", "minio", "rest-catalog", "catalog-db", "trino", "flink-sql-gateway"]


@dataclass(frozen=True)
class Configuration:
    name: str
    summary: str
    settings: dict[str, str]


ONE = {"replicas.tablet_servers": "1", "durability.replication_factor": "1", "durability.min_in_sync_replicas": "1"}
CONFIGURATIONS: dict[str, Configuration] = {c.name: c for c in [
    Configuration("dev-1", "dev profile as shipped before issue 12: 1 tablet server, 1 replica, upstream "
                  "high-watermark checkpoint interval (5 s)", {**ONE, "durability.hw_checkpoint_interval": "5s"}),
    Configuration("dev-1-hw100ms", "1 tablet server, 1 replica, high watermark saved every 100 ms",
                  {**ONE, "durability.hw_checkpoint_interval": "100ms"}),
    Configuration("dev-1-hw1s", "1 tablet server, 1 replica, high watermark saved every 1 s",
                  {**ONE, "durability.hw_checkpoint_interval": "1s"}),
    Configuration("rf2", "2 tablet servers, replication factor 2, min in-sync replicas 1",
                  {"replicas.tablet_servers": "2", "durability.replication_factor": "2",
                   "durability.min_in_sync_replicas": "1", "memory.fluss_tablet": "1Gi"}),
    Configuration("rf2-isr2", "2 tablet servers, replication factor 2, min in-sync replicas 2",
                  {"replicas.tablet_servers": "2", "durability.replication_factor": "2",
                   "durability.min_in_sync_replicas": "2", "memory.fluss_tablet": "1Gi"}),
    Configuration("rf3-isr2", "3 tablet servers, replication factor 3, min in-sync replicas 2",
                  {"replicas.tablet_servers": "3", "durability.replication_factor": "3",
                   "durability.min_in_sync_replicas": "2", "memory.fluss_tablet": "1Gi"}),
    Configuration("default", "the profile's own defaults (whatever sagaz-lakehouse ships)", {}),
    # Issue 27's catalog rows: kill -9 / SIGTERM of rest-catalog and catalog-db during writes, e.g.
    # CHAOS_ARGS="--config catalog-pg --only rest-catalog --only catalog-db".
    Configuration("catalog-pg", "the bundled catalog on PostgreSQL, as prod runs it (catalog.database: "
                  "postgresql); the other settings are the dev profile's", {"catalog.database": "postgresql"}),
]}


# ---------------------------------------------------------------------------------------------- the stack


class Stack(RunningStack):
    """One stack in a folder of its own (running.RunningStack: settings, endpoints, the CLI there), driven only
    through the CLI and the supervisor's pid files; the caller's SAGAZ_LAKEHOUSE_* variables do not reach it."""

    def __init__(self, workdir: Path, port_base: int, overrides: dict[str, str]) -> None:
        ports = {k: port_base + v for k, v in PORT_OFFSETS.items()}
        lines = ["ports:", *(f"  {k}: {v}" for k, v in ports.items())]
        nested: dict[str, dict[str, str]] = {}
        for dotted, value in overrides.items():
            section, key = dotted.split(".", 1)
            nested.setdefault(section, {})[key] = value
        for section, values in nested.items():
            lines += [f"{section}:", *(f"  {k}: {json.dumps(v)}" for k, v in values.items())]
        (workdir / config.CONFIG_FILENAME).write_text("\n".join(lines) + "\n")
        super().__init__(workdir, hidden=("SAGAZ_LAKEHOUSE_",))

    def components(self) -> list[str]:
        """The long-lived instances (what can be killed), in start order."""
        stack = lakehouse.target_of(self.settings).stack(self.settings)
        return [name for component, name in stack.instances() if not component.one_shot]

    def pid(self, name: str) -> int | None:
        from sagaz_lakehouse.targets.local.watchdog import component_pid

        return component_pid(self.run_dir, name)

    def signal(self, name: str, sig: int) -> int | None:
        pid = self.pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        return pid

    def wait_dead(self, names: Iterable[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while any(self.pid(n) is not None for n in names):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def log_size(self, name: str) -> int:
        path = self.run_dir / "logs" / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def log_since(self, name: str, offset: int) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def tiering_running(self) -> bool:
        try:
            jobs = clients.http_json(f"{self.endpoints.flink_rest}/jobs/overview").get("jobs", [])
        except OSError:
            return False
        return any(j.get("name") == TIERING_JOB_NAME and j.get("state") == "RUNNING" for j in jobs)

    def wait_ready(self, timeout: float = 240) -> str:
        """Every component healthy and the tiering job RUNNING; returns "" or what is still wrong."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.status()
            wrong = {k: v for k, v in states.items() if v not in ("healthy", "completed")}
            if states and not wrong and self.tiering_running():
                return ""
            if time.monotonic() > deadline:
                return f"not ready after {timeout:.0f}s: {wrong or 'tiering job not RUNNING'}"
            time.sleep(2)

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for pid_file in (self.run_dir / "pids").glob("*.pid"):
            try:
                text = Path(f"/proc/{pid_file.read_text().strip()}/status").read_text()
            except (OSError, ValueError):
                continue
            kb = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), 0)
            out[pid_file.stem] = kb / 1024
        return out


# ---------------------------------------------------------------------------------------------- the writer


def event(tag: str, seq: int) -> dict[str, Any]:
    return doctor.probe_row(f"{tag}-{seq:08d}") | {"event_type": "chaos", "saga_name": tag,
                                                   "saga_id": f"{tag}-{seq // 10}", "context_keys": ["chaos"]}


class Writer(threading.Thread):
    """Upserts batches of ``BATCH`` events, each awaited; records every acknowledged id with its time.

    A batch that is not acknowledged within ``batch_timeout`` counts as failed (its events are not acknowledged).
    After any error the writer reconnects, as an application would — from a fresh process: we saw a pyfluss 1.0.0
    process whose connection had hung on a dead leader stay unable to write through *new* connections for
    minutes, while another process wrote at once. Times are CLOCK_MONOTONIC, shared by all processes."""

    def __init__(self, bootstrap: str, database: str, tag: str, batch_timeout: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.database, self.tag, self.batch_timeout = bootstrap, database, tag, batch_timeout
        self.lock = threading.Lock()
        self.ack_times: list[float] = []
        self.acked: list[str] = []
        self.errors: list[tuple[float, str]] = []
        self.stop_flag = threading.Event()
        self.sessions = 0

    def acks_after(self, moment: float) -> list[float]:
        with self.lock:
            return [t for t in self.ack_times if t > moment]

    def run(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        while not self.stop_flag.is_set():
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_write_session, daemon=True, args=(
                send, self.bootstrap, self.database, self.tag, self.sessions * 10_000_000, self.batch_timeout))
            self.sessions += 1
            child.start()
            send.close()
            self._drain(receive, child)
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join(5)
            receive.close()
            if not self.stop_flag.is_set():
                time.sleep(0.5)

    def _drain(self, receive: Any, child: Any) -> None:
        """Record the session's acknowledgements and errors until it ends (or we are told to stop)."""
        while True:
            if self.stop_flag.is_set() and child.is_alive():
                child.terminate()  # a batch in flight now is simply not acknowledged
            try:
                if not receive.poll(0.2):
                    if not child.is_alive() and not receive.poll(0):
                        return
                    continue
                kind, moment, payload = receive.recv()
            except (EOFError, OSError):
                return
            with self.lock:
                if kind == "ack":
                    self.acked += payload
                    self.ack_times.append(moment)
                else:
                    self.errors.append((moment, payload))


def _write_session(send: Any, bootstrap: str, database: str, tag: str, first_seq: int, batch_timeout: float) -> None:
    """One connection's worth of writing, in its own process: ends at the first error (reported)."""
    import fluss

    async def session() -> None:
        connection = await asyncio.wait_for(
            fluss.FlussConnection.create(fluss.Config({"bootstrap.servers": bootstrap})), 15)
        table = await asyncio.wait_for(connection.get_table(fluss.TablePath(database, tables.TABLE)), 15)
        writer = table.new_upsert().create_writer()
        seq = first_seq
        while True:
            rows = [event(tag, seq + i) for i in range(BATCH)]
            seq += BATCH
            handles = [writer.upsert(row) for row in rows]
            try:
                await asyncio.wait_for(writer.flush(), batch_timeout)
            except TimeoutError as exc:
                raise TimeoutError(f"batch not acknowledged within {batch_timeout:.0f}s") from exc
            done, failed = [], None
            for row, handle in zip(rows, handles, strict=True):
                try:
                    await asyncio.wait_for(handle.wait(), 5)
                    done.append(row["event_id"])
                except Exception as exc:  # one failed record is simply not acknowledged
                    failed = failed or exc
            if done:
                send.send(("ack", time.monotonic(), done))
            if failed is not None:
                raise failed

    try:
        asyncio.run(session())
    except BaseException as exc:  # every failure is a data point; the parent starts a new session
        send.send(("error", time.monotonic(), f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]))
    finally:
        send.close()
        os._exit(0)  # do not wait for pyfluss's background threads (a hung connection would hold us)


# ---------------------------------------------------------------------------------------------- the application


class Recorder:
    """A Sagaz listener registered *after* the FlussAnalyticsListener: Sagaz awaits listeners in order, so when it
    runs, the analytics hook of the same event has returned. It builds the same events with its own EventBuilder
    (event ids are deterministic) and appends their ids to a file, one ``os.write`` each: after a ``kill -9`` the
    file lists every event whose analytics hook returned (and at most the last one's is missing)."""

    def __init__(self, path: Path) -> None:
        from sagaz_lakehouse.saga_events import EventBuilder

        self.builder = EventBuilder()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _record(self, built: Any) -> None:
        events = built if isinstance(built, list) else [built]
        os.write(self.fd, "".join(f"{e.event_id}\n" for e in events).encode())

    async def on_saga_start(self, saga_name: str, saga_id: str, ctx: dict) -> None:
        self._record(self.builder.saga_started(saga_name, saga_id, ctx))

    async def on_step_enter(self, saga_name: str, step_name: str, ctx: dict) -> None:
        self._record(self.builder.step_started(saga_name, step_name, ctx))

    async def on_step_success(self, saga_name: str, step_name: str, ctx: dict, result: Any) -> None:
        self._record(self.builder.step_completed(saga_name, step_name, ctx))

    async def on_step_failure(self, saga_name: str, step_name: str, ctx: dict, error: Exception) -> None:
        self._record(self.builder.step_failed(saga_name, step_name, ctx, error))

    async def on_compensation_start(self, saga_name: str, step_name: str, ctx: dict) -> None:
        self._record(self.builder.compensation_started(saga_name, step_name, ctx))

    async def on_compensation_complete(self, saga_name: str, step_name: str, ctx: dict) -> None:
        self._record(self.builder.compensation_completed(saga_name, step_name, ctx))

    async def on_saga_complete(self, saga_name: str, saga_id: str, ctx: dict) -> None:
        self._record(self.builder.saga_completed(saga_name, saga_id, ctx))

    async def on_saga_failed(self, saga_name: str, saga_id: str, ctx: dict, error: Exception) -> None:
        self._record(self.builder.saga_failed(saga_name, saga_id, ctx, error))


def _run_app(folder: str, bootstrap: str, database: str, tag: str, rate: float, safe_timeout: float,
             options: dict[str, Any]) -> None:
    """The application, in a process of its own: real Sagaz sagas (simulate's order and DAG sagas) through a
    FlussAnalyticsListener with a spool in ``folder``/spool, ``rate`` sagas a second (0: replay only), until the
    file ``folder``/stop appears; then it delivers, waits until every event is known to be in Iceberg (up to
    ``safe_timeout`` s) and closes. ``folder``/status.json has the listener's stats every 0.2 s."""
    from sagaz_lakehouse import simulate
    from sagaz_lakehouse.sagaz import FlussAnalyticsListener

    base = Path(folder)
    recorder = Recorder(base / f"hooks-{os.getpid()}.log")

    def status(**extra: Any) -> None:
        body = {"pid": os.getpid(), "at": time.monotonic(), **listener.stats.as_dict(), **extra}
        (base / "status.tmp").write_text(json.dumps(body))
        os.replace(base / "status.tmp", base / "status.json")

    async def main() -> None:
        async def report() -> None:
            while True:
                status()
                await asyncio.sleep(0.2)

        await listener.start()
        reporter = asyncio.create_task(report())
        chunk = 0
        while rate > 0 and not (base / "stop").exists():
            # one second of sagas per chunk; the saga ids (sim-<tag><pid><chunk>-n) select this row's events
            await simulate.simulate(listener, sagas=max(1, int(rate)), rate=rate, failure_rate=0.2, seed=chunk,
                                    run_id=f"{tag}{os.getpid():07d}{chunk:05d}", extra_listeners=[recorder])
            chunk += 1
        delivered = await listener.flush(timeout=safe_timeout)
        safe = await listener.wait_safe(timeout=safe_timeout)
        reporter.cancel()
        stats = await listener.close()
        (base / "status.tmp").write_text(json.dumps({"pid": os.getpid(), "at": time.monotonic(), "done": True,
                                                     "delivered": delivered, "safe": safe, **stats.as_dict()}))
        os.replace(base / "status.tmp", base / "status.json")

    listener = FlussAnalyticsListener(bootstrap, database=database, spool_dir=base / "spool", **options)
    try:
        asyncio.run(main())
    finally:
        os._exit(0)  # do not wait for pyfluss's threads


class ListenerApp:
    """Drives ``_run_app`` processes on one folder (the spool, the hook records, the status)."""

    def __init__(self, stack: Stack, folder: Path, tag: str, **options: Any) -> None:
        self.stack, self.folder, self.tag, self.options = stack, folder, tag, options
        folder.mkdir(parents=True, exist_ok=True)
        self.process: Any = None

    def start(self, rate: float, safe_timeout: float = 300.0) -> None:
        import multiprocessing

        (self.folder / "stop").unlink(missing_ok=True)
        (self.folder / "status.json").unlink(missing_ok=True)
        self.process = multiprocessing.get_context("spawn").Process(
            target=_run_app, daemon=True, args=(str(self.folder), self.stack.endpoints.fluss_bootstrap,
                                                self.stack.settings.lake.database, self.tag, rate, safe_timeout,
                                                self.options))
        self.process.start()

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def kill(self) -> None:
        """kill -9 of the application."""
        self.process.kill()
        self.process.join(30)

    def stop(self, timeout: float) -> dict[str, Any]:
        """Ask it to finish (deliver, wait until safe, close); its last status."""
        (self.folder / "stop").touch()
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
        return self.status()

    def recorded(self) -> set[str]:
        """Every event whose analytics hook returned, in every process so far."""
        return {line for path in self.folder.glob("hooks-*.log") for line in path.read_text().split("\n") if line}

    @property
    def prefix(self) -> str:
        return f"sim-{self.tag}"


async def fluss_ids_by_saga(endpoints: addresses.Endpoints, database: str, prefix: str) -> tuple[set[str], list[str]]:
    """Event ids of the sagas whose id starts with ``prefix``, from the primary-key state of every bucket."""
    return await _fluss_event_ids(endpoints, database, lambda _event, saga: saga.startswith(prefix), 120)


def iceberg_ids_by_saga(stack: Stack, prefix: str) -> set[str]:
    from pyiceberg.expressions import StartsWith

    catalog = clients.iceberg_catalog(stack.settings, config.DEV_CREDENTIALS, stack.endpoints)
    table = catalog.load_table(f"{stack.settings.lake.database}.{tables.TABLE}")
    rows, _ = clients.iceberg_read(table, StartsWith("saga_id", prefix), ("event_id",))
    return set(rows.column("event_id").to_pylist())


def trino_ids_by_saga(stack: Stack, prefix: str) -> tuple[set[str], int]:
    sql = f"SELECT event_id FROM {stack.settings.lake.database}.{tables.TABLE} WHERE saga_id LIKE ?"  # noqa: S608
    deadline = time.monotonic() + 180  # a restarted Trino answers SERVER_STARTING_UP for a while
    while True:
        try:
            ids = [row[0] for row in clients.trino_query(stack.endpoints, sql, (f"{prefix}%",), timeout=120)]
            return set(ids), len(ids)
        except Exception as exc:
            if not ("SERVER_STARTING_UP" in str(exc) or isinstance(exc, OSError)) or time.monotonic() > deadline:
                raise
            time.sleep(2)


@dataclass
class AppResult:
    fault: str
    returned: int = 0  # events whose analytics hook returned (the recorder's file)
    in_fluss: int = 0
    in_iceberg: int = 0
    in_trino: int = 0
    lost: int = 0  # returned but not in Iceberg
    duplicated: int = 0
    dropped: int = 0
    spooled_at_fault: int = 0  # events in the spool and not yet known safe when the fault hit
    unacknowledged_at_fault: int = 0  # of those, not yet acknowledged by Fluss (the old listener's loss)
    replayed: int = 0
    replay_rounds: int = 0
    safe_s: float | None = None  # from the last hook to "every event known to be in Iceberg" (wait_safe)
    notes: list[str] = field(default_factory=list)
    load: str = ""


def verify_app(stack: Stack, app: ListenerApp, result: AppResult, final: dict[str, Any],
               at_fault: dict[str, Any], last_hook: float) -> AppResult:
    """Fill in the spool's state at the fault and what Fluss, Iceberg and Trino hold of the events whose hooks
    returned."""
    result.spooled_at_fault = int(at_fault.get("unsafe", 0))
    result.unacknowledged_at_fault = int(at_fault.get("pending", 0))
    if final.get("safe"):
        result.safe_s = final["at"] - last_hook
    returned = app.recorded()
    result.returned = len(returned)
    result.dropped = int(final.get("dropped", 0))
    result.replayed = int(final.get("replayed", 0))
    result.replay_rounds = int(final.get("replay_rounds", 0))
    if not final.get("done"):
        result.notes.append("the application did not finish: " + json.dumps(final)[:300])
    elif not final.get("safe"):
        result.notes.append(f"wait_safe timed out ({final.get('unsafe')} events not known to be in Iceberg)")
    try:
        in_fluss, bucket_errors = asyncio.run(fluss_ids_by_saga(stack.endpoints, stack.settings.lake.database,
                                                                app.prefix))
        result.in_fluss = len(returned & in_fluss)
        result.notes += bucket_errors[:3]
    except Exception as exc:
        result.notes.append(f"Fluss read failed: {type(exc).__name__}: {str(exc)[:150]}")
    lake: set[str] = set()
    try:
        lake = iceberg_ids_by_saga(stack, app.prefix)
    except Exception as exc:
        result.notes.append(f"Iceberg read failed: {type(exc).__name__}: {str(exc)[:150]}")
    result.in_iceberg = len(returned & lake)
    result.lost = len(returned - lake)
    if result.lost:
        result.notes.append(f"not in Iceberg, e.g. {sorted(returned - lake)[:2]}")
    try:
        in_trino, rows = trino_ids_by_saga(stack, app.prefix)
        result.in_trino = len(returned & in_trino)
        result.duplicated = rows - len(in_trino)
    except Exception as exc:
        result.notes.append(f"Trino read failed: {type(exc).__name__}: {str(exc)[:150]}")
    return result


def _app_wait(app: ListenerApp, condition: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = app.status()
        if status and condition(status):
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"the application did not get there within {timeout:.0f}s: {status}")
        time.sleep(0.2)


def listener_whole_stack(stack: Stack, opts: argparse.Namespace, workdir: Path) -> AppResult:
    """kill -9 of every process of the stack (the watchdog too) while sagas run through the listener, `up` after
    ``--restart-delay`` s, sagas go on; a raw pyfluss writer (the table above) runs beside it for comparison."""
    tag = f"ws{uuid.uuid4().hex[:6]}"
    result = AppResult("kill -9 whole stack, then `up`", load=_load())
    app = ListenerApp(stack, workdir / tag, tag)
    writer = Writer(stack.endpoints.fluss_bootstrap, stack.settings.lake.database, f"chaos-{tag}")
    log_offsets = {n: stack.log_size(n) for n in stack.components() if n.startswith("fluss-")}
    app.start(opts.app_rate)
    writer.start()
    try:
        _app_wait(app, lambda s: s.get("written", 0) > 0, 120)
        time.sleep(opts.before)
        at_fault = app.status()
        kill_watchdog(stack)
        for name in stack.components():
            stack.signal(name, signal.SIGKILL)
        stack.wait_dead(stack.components(), 10)
        fault_at = time.monotonic()
        time.sleep(opts.restart_delay)
        up = stack.cli("up", timeout=900)
        if up.returncode != 0:
            result.notes.append("`up` failed: " + (up.stderr.strip().splitlines() or ["?"])[-1][:200])
        back = _app_wait(app, lambda s: s.get("written", 0) > at_fault.get("written", 0) + 100
                         and s.get("at", 0) > fault_at, opts.max_outage)
        time.sleep(opts.after)
        last_hook = time.monotonic()
        final = app.stop(opts.lake_grace + 120)
    finally:
        writer.stop_flag.set()
        if app.process.is_alive():
            app.kill()
    writer.join(60)
    verify_app(stack, app, result, final, at_fault, last_hook)
    result.notes.append(f"writes acknowledged again {back['at'] - fault_at:.0f}s after the kill")
    with writer.lock:
        raw = set(writer.acked)
    try:
        raw_in_fluss, _ = asyncio.run(fluss_ids(stack.endpoints, stack.settings.lake.database, f"chaos-{tag}"))
        result.notes.append(f"the raw pyfluss writer beside it (acks=all, no spool): {len(raw - raw_in_fluss)} of "
                            f"{len(raw)} acknowledged events lost")
    except Exception as exc:
        result.notes.append(f"raw writer's read failed: {type(exc).__name__}")
    result.notes += evidence(stack, log_offsets)
    return result


def listener_app_kill(stack: Stack, opts: argparse.Namespace, workdir: Path) -> AppResult:
    """kill -9 of the application while sagas run; a new process on the same spool re-sends what it left."""
    tag = f"ak{uuid.uuid4().hex[:6]}"
    result = AppResult("kill -9 of the application, then a new process on the spool", load=_load())
    app = ListenerApp(stack, workdir / tag, tag)
    app.start(opts.app_rate)
    try:
        _app_wait(app, lambda s: s.get("written", 0) > 0, 120)
        time.sleep(opts.before)
        at_fault = app.status()
    finally:
        app.kill()
    last_hook = time.monotonic()
    app.start(0, safe_timeout=opts.lake_grace + 120)  # replay only
    final = app.stop(opts.lake_grace + 180)
    verify_app(stack, app, result, final, at_fault, last_hook)
    result.notes.append(f"the new process re-sent {final.get('replayed', 0)} events left in the spool")
    return result


def listener_fluss_down(stack: Stack, opts: argparse.Namespace, workdir: Path) -> AppResult:
    """Fluss (coordinator and tablet servers) stopped while sagas run, until more events than the old in-memory
    buffer held (100,000) wait in the listener; then `up`."""
    from sagaz_lakehouse.targets.local import watchdog
    from sagaz_lakehouse.targets.local.supervisor import Supervisor

    tag = f"fd{uuid.uuid4().hex[:6]}"
    result = AppResult("Fluss down while more events than the old buffer (100,000) pile up, then `up`",
                       load=_load())
    app = ListenerApp(stack, workdir / tag, tag)
    app.start(opts.outage_rate)
    try:
        _app_wait(app, lambda s: s.get("written", 0) > 0, 120)
        watchdog.stop(stack.run_dir)
        supervisor = Supervisor(stack.run_dir)
        stopped = [n for n in stack.components() if n.startswith("fluss-") and supervisor.stop(n, grace=30)]
        down_at = time.monotonic()
        at_fault = _app_wait(app, lambda s: s.get("pending", 0) > opts.outage_events, opts.max_outage * 4)
        result.notes.append(f"stopped {', '.join(stopped)}; {at_fault['pending']} events waiting after "
                            f"{time.monotonic() - down_at:.0f}s (in memory at most 100,000)")
        up = stack.cli("up", timeout=900)
        if up.returncode != 0:
            result.notes.append("`up` failed: " + (up.stderr.strip().splitlines() or ["?"])[-1][:200])
        last_hook = time.monotonic()
        final = app.stop(opts.lake_grace + 600)
    finally:
        if app.process.is_alive():
            app.kill()
    verify_app(stack, app, result, final, at_fault, last_hook)
    result.notes.append(f"spool peak {at_fault.get('spool_bytes', 0) / 1e6:.0f} MB")
    return result


LISTENER_FAULTS = {"listener: whole stack": listener_whole_stack, "listener: application": listener_app_kill,
                   "listener: fluss down": listener_fluss_down}


# ---------------------------------------------------------------------------------------------- read back


async def fluss_ids(endpoints: addresses.Endpoints, database: str, prefix: str) -> tuple[set[str], list[str]]:
    """Event ids with ``prefix`` in the primary-key state of every bucket (a KV limit scan), and per-bucket
    errors (a bucket whose KV is broken answers with an error)."""
    return await _fluss_event_ids(endpoints, database, lambda event, _saga: event.startswith(prefix), 60)


async def _fluss_event_ids(endpoints: addresses.Endpoints, database: str, keep: Callable[[str, str], bool],
                           timeout: float) -> tuple[set[str], list[str]]:
    """The event ids that ``keep(event_id, saga_id)`` selects, read bucket by bucket, and each bucket's error."""
    import fluss

    found: set[str] = set()
    errors: list[str] = []
    async with clients.fluss_connection(endpoints) as connection:
        table = await connection.get_table(fluss.TablePath(database, tables.TABLE))
        info = table.get_table_info()
        for bucket in range(info.num_buckets):
            try:
                scanner = table.new_scan().limit(10_000_000).create_bucket_batch_scanner(
                    fluss.TableBucket(info.table_id, bucket))
                data = await asyncio.wait_for(scanner.to_arrow(), timeout)
                ids, sagas = data.column("event_id").to_pylist(), data.column("saga_id").to_pylist()
                found.update(i for i, saga in zip(ids, sagas, strict=True) if keep(i, saga))
            except Exception as exc:
                errors.append(f"bucket {bucket}: {type(exc).__name__}: {str(exc)[:200]}")
    return found, errors


def iceberg_ids(stack: Stack, tag: str) -> tuple[set[str], int]:
    from pyiceberg.expressions import EqualTo

    catalog = clients.iceberg_catalog(stack.settings, config.DEV_CREDENTIALS, stack.endpoints)
    table = catalog.load_table(f"{stack.settings.lake.database}.{tables.TABLE}")
    rows, _ = clients.iceberg_read(table, EqualTo("saga_name", tag), ("event_id",))
    ids = rows.column("event_id").to_pylist()
    return set(ids), len(ids)


def trino_ids(stack: Stack, tag: str) -> tuple[set[str], int]:
    sql = f"SELECT event_id FROM {stack.settings.lake.database}.{tables.TABLE} WHERE saga_name = ?"  # noqa: S608
    deadline = time.monotonic() + 180  # a restarted Trino answers SERVER_STARTING_UP for a while
    while True:
        try:
            ids = [row[0] for row in clients.trino_query(stack.endpoints, sql, (tag,), timeout=120)]
            return set(ids), len(ids)
        except Exception as exc:
            starting = "SERVER_STARTING_UP" in str(exc) or isinstance(exc, OSError)
            if not starting or time.monotonic() > deadline:
                raise
            time.sleep(2)


async def end_offsets(endpoints: addresses.Endpoints, database: str) -> tuple[int, dict[int, int]]:
    import fluss

    async with clients.fluss_connection(endpoints) as connection:
        path = fluss.TablePath(database, tables.TABLE)
        info = await connection.get_admin().get_table_info(path)
        offsets = await connection.get_admin().list_offsets(path, list(range(info.num_buckets)),
                                                            fluss.OffsetSpec.latest())
        return info.table_id, offsets


def wait_for_lake(stack: Stack, tag: str, acked: set[str], deadline: float) -> tuple[float | None, set[str], str]:
    """Poll until Iceberg holds every acknowledged event: (moment it did or None, ids seen, last error)."""
    seen: set[str] = set()
    error = ""
    while True:
        try:
            seen, _ = iceberg_ids(stack, tag)
            error = ""
            if acked <= seen:
                return time.monotonic(), seen, ""
        except Exception as exc:  # the catalog or MinIO may still be coming back
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        if time.monotonic() > deadline:
            return None, seen, error
        time.sleep(2)


# ---------------------------------------------------------------------------------------------- one fault


@dataclass
class Result:
    component: str
    how: str
    acked: int = 0
    in_fluss: int = 0
    in_iceberg: int = 0
    in_trino: int = 0
    lost: int = 0
    duplicated: int = 0
    writes_back_s: float | None = None
    lake_s: float | None = None
    up_s: float = 0.0
    writer_error: str = ""
    notes: list[str] = field(default_factory=list)
    load: str = ""
    timeline: list[str] = field(default_factory=list)  # relative to the fault: acks per 5 s, errors, `up`

    def lost_detail(self) -> str:
        return str(self.lost)


def longest_gap(ack_times: list[float], fault_at: float, end: float) -> float | None:
    """The longest time without an acknowledgement between ``fault_at`` and ``end`` (the writer's stop); None if
    that is the final stretch, i.e. writes never came back."""
    after = [t for t in ack_times if fault_at < t <= end]
    if not after:
        return None
    gaps = [after[0] - fault_at] + [b - a for a, b in itertools.pairwise(after)]
    if end - after[-1] > max(gaps) + 5:  # blocked at the end: they did not come back
        return None
    return max(gaps)


EXTRA_EVIDENCE = {
    "out-of-order sequence": re.compile(r"OutOfOrderSequenceException"),
    "NotEnoughReplicas": re.compile(r"NotEnoughReplicas"),
}


def evidence(stack: Stack, offsets: dict[str, int]) -> list[str]:
    """What the Fluss servers logged since the fault: records cut by truncation to a stale high watermark, buckets
    whose KV failed to initialise (lake_health.scan_log), and a few error counts."""
    notes = []
    for name, offset in offsets.items():
        if not name.startswith("fluss-"):
            continue
        text = stack.log_since(name, offset)
        parts = []
        findings = lake_health.scan_log(text)
        cut = [f for f in findings if f.kind == "log-truncated"]
        if cut:
            records = sum(int(m.group(1)) for f in cut if (m := re.search(r"\((\d+) records\)", f.detail)))
            parts.append(f"log cut back to the saved HW in {len(cut)} bucket(s), {records} records")
        broken = sorted(f.bucket for f in findings if f.kind == "kv-init-failed")
        if broken:
            parts.append(f"KV init failed for bucket(s) {broken}")
        parts += [f"{label} ×{len(p.findall(text))}" for label, p in EXTRA_EVIDENCE.items() if p.search(text)]
        if parts:
            notes.append(f"{name}: " + ", ".join(parts))
    return notes


def timeline(ack_times: list[float], errors: list[tuple[float, str]], fault_at: float,
             marks: dict[str, float]) -> list[str]:
    """Acknowledged batches per 5 s, the first error of each kind and the marks, relative to the fault (for
    the JSON output: how the outage unfolded)."""
    events: list[tuple[float, str]] = [(t - fault_at, name) for name, t in marks.items()]
    buckets = Counter(int((t - fault_at) // 5) * 5 for t in ack_times)
    events += [(float(b), f"{n} batches acknowledged in [{b}, {b + 5}) s") for b, n in sorted(buckets.items())]
    seen: set[str] = set()
    for t, text in errors:
        kind = re.sub(r"\d+", "N", text)[:120]
        if kind not in seen:
            seen.add(kind)
            events.append((t - fault_at, f"error: {text[:200]}"))
    return [f"{t:+7.1f}s {what}" for t, what in sorted(events)]


def summarize_errors(errors: list[tuple[float, str]], since: float) -> str:
    kinds = Counter(re.sub(r"\d+", "N", text)[:140] for t, text in errors if t >= since)
    return "; ".join(f"{text} (×{n})" for text, n in kinds.most_common(2))


def run_fault(stack: Stack, component: str, how: str, opts: argparse.Namespace) -> Result:
    sig = signal.SIGKILL if how == "kill -9" else signal.SIGTERM
    tag = f"chaos-{uuid.uuid4().hex[:8]}"
    result = Result(component, how, load=_load())
    fluss_logs = [n for n in stack.components() if n.startswith(("fluss-", "flink-"))]
    log_offsets = {n: stack.log_size(n) for n in fluss_logs}
    writer = Writer(stack.endpoints.fluss_bootstrap, stack.settings.lake.database, tag)
    writer.start()
    if not _wait(lambda: len(writer.acked) > 0, 120, "", fail=False):
        writer.stop_flag.set()
        result.writer_error = summarize_errors(writer.errors, 0)
        result.notes.append("no acknowledgement within 120 s before the fault: not run")
        return result
    time.sleep(opts.before)

    targets = stack.components() if component == WHOLE_STACK else [component]
    fault_at = time.monotonic()
    if component == WHOLE_STACK:  # the machine goes down: the watchdog with it
        kill_watchdog(stack)
    for name in targets:
        stack.signal(name, sig)
    if not stack.wait_dead(targets, 60 if sig == signal.SIGTERM else 10):
        result.notes.append("did not stop within 60 s of SIGTERM; killed")
        for name in targets:
            stack.signal(name, signal.SIGKILL)
        stack.wait_dead(targets, 10)
    stopped_at = time.monotonic()
    if sig == signal.SIGTERM:
        result.notes.append(f"stopped in {stopped_at - fault_at:.1f}s")
    if component != WHOLE_STACK:  # the watchdog `up` started restarts it; wait until it runs again
        up_started = time.monotonic()
        _wait(lambda: all(stack.pid(n) is not None for n in targets), 300, "", fail=False)
        result.up_s = time.monotonic() - up_started
        result.notes.append(f"restarted by the watchdog in {result.up_s:.0f}s")
    else:
        time.sleep(opts.restart_delay)
        up_started = time.monotonic()
        up = stack.cli("up", timeout=900)
        result.up_s = time.monotonic() - up_started
        if up.returncode != 0:
            result.notes.append("`up` failed: " + up.stderr.strip().splitlines()[-1][:200] if up.stderr.strip()
                                else "`up` failed")

    # Writes must come back: wait for an acknowledgement after the restart, then keep writing a little.
    resumed = _wait(lambda: bool(writer.acks_after(time.monotonic() - 1)) and bool(writer.acks_after(up_started)),
                    opts.max_outage, "", fail=False)
    if resumed:
        time.sleep(opts.after)
    writer_stop = time.monotonic()
    writer.stop_flag.set()
    writer.join(60)
    if writer.is_alive():
        result.notes.append("writer did not stop within 60 s")
    with writer.lock:
        acked, ack_times, errors = set(writer.acked), list(writer.ack_times), list(writer.errors)
    last_ack = max(ack_times) if ack_times else time.monotonic()
    result.acked = len(acked)
    result.writes_back_s = longest_gap(ack_times, fault_at, writer_stop)
    result.writer_error = summarize_errors(errors, fault_at)
    result.timeline = timeline(ack_times, errors, fault_at, {"up started": up_started, "up done": up_started
                                                             + result.up_s, "writer stopped": writer_stop})

    freshness = config.duration_seconds(stack.settings.freshness)
    found_at, lake, lake_error = wait_for_lake(stack, tag, acked, last_ack + freshness + opts.lake_grace)
    result.lake_s = None if found_at is None else max(0.0, found_at - last_ack)
    if lake_error:
        result.notes.append(f"Iceberg read: {lake_error}")
    result.in_iceberg = len(acked & lake)
    try:
        in_fluss, bucket_errors = asyncio.run(fluss_ids(stack.endpoints, stack.settings.lake.database, tag))
        result.in_fluss = len(acked & in_fluss)
        result.notes += bucket_errors[:3]
    except Exception as exc:
        in_fluss = set()
        result.notes.append(f"Fluss read failed: {type(exc).__name__}: {str(exc)[:150]}")
    try:
        in_trino, trino_rows = trino_ids(stack, tag)
        result.in_trino = len(acked & in_trino)
        result.duplicated = trino_rows - len(in_trino)
    except Exception as exc:
        result.notes.append(f"Trino read failed: {type(exc).__name__}: {str(exc)[:150]}")
    # Fluss is the system of record: an event it no longer has is lost, even if an earlier tiering round copied it
    # to Iceberg. One that Fluss has but Iceberg never got shows as "in Iceberg after: never" (tiering stalled).
    result.lost = len(acked - in_fluss)
    result.notes += evidence(stack, log_offsets)
    if result.lake_s is None and acked - lake:
        result.notes.append(f"{len(acked - lake)} acknowledged events not in Iceberg (e.g. {min(acked - lake)})")
    if result.lost or result.lake_s is None:
        result.notes += health_findings(stack)
    if opts.keep_logs and (result.lost or result.lake_s is None):
        keep_logs(stack, log_offsets, opts.keep_logs / f"{tag}-{component}-{how.split()[0]}")
    return result


def health_findings(stack: Stack) -> list[str]:
    """What sagaz_lakehouse.lake_health sees from outside right after a bad fault (one observation plus the KV
    probe; the stall check needs 3x freshness of watching, which the lake wait above already covered)."""
    async def observe() -> list[lake_health.Finding]:
        async with clients.fluss_connection(stack.endpoints) as connection:
            one = await lake_health.sample(connection, stack.settings.lake.database, tables.TABLE)
            return [*lake_health.log_behind_lake(one, tables.TABLE),
                    *await lake_health.kv_probe(connection, stack.settings.lake.database, tables.TABLE)]

    try:
        findings = asyncio.run(observe())
    except Exception as exc:
        return [f"lake_health: could not observe ({type(exc).__name__})"]
    if not findings:
        return ["lake_health: no log-behind-lake or KV finding"]
    kinds = Counter(f.kind for f in findings)
    buckets = sorted({f.bucket for f in findings if f.bucket is not None})
    return [f"lake_health: {', '.join(f'{k} ×{n}' for k, n in kinds.items())} (buckets {buckets})"]


def keep_logs(stack: Stack, offsets: dict[str, int], prefix: Path) -> None:
    """The Fluss server logs since the fault, for the evidence (the run folder is purged afterwards)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for name, offset in offsets.items():
        prefix.with_name(f"{prefix.name}-{name}.log").write_text(stack.log_since(name, max(0, offset - 200_000)))


def _wait(condition: Any, timeout: float, what: str, fail: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if fail:
                raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
            return False
        time.sleep(0.2)
    return True


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------- a configuration


def faults_for(stack: Stack, only: list[str] | None, hows: list[str]) -> list[tuple[str, str]]:
    names = stack.components()
    ordered = [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]
    faults = [(n, how) for n in ordered for how in hows]
    if only is not None:
        faults = [(n, h) for n, h in faults if n in only or f"{n}:{h.split()[0]}" in only]
        if WHOLE_STACK in only:
            faults.append((WHOLE_STACK, "kill -9"))
    else:
        faults.append((WHOLE_STACK, "kill -9"))
    return faults


def listener_faults_for(only: list[str] | None) -> list[str]:
    return [name for name in LISTENER_FAULTS if only is None or name in only]


def fresh_stack(stack: Stack) -> float:
    started = time.monotonic()
    stack.cli("down", "--purge", timeout=300)  # stops the watchdog first
    stack.must("up")  # starts the watchdog
    stack.must("create-tables")
    problem = stack.wait_ready()
    if problem:
        raise RuntimeError(problem)
    return time.monotonic() - started


def run_configuration(conf: Configuration, opts: argparse.Namespace) -> dict[str, Any]:
    keep = opts.workdir is not None
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix=f"sagaz-chaos-{conf.name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir, opts.port_base, conf.settings)
    report: dict[str, Any] = {"configuration": conf.name, "summary": conf.summary, "settings": conf.settings,
                              "fluss_properties": fluss_servers.durability_properties(stack.settings),
                              "freshness": stack.settings.freshness, "results": [], "rss_mb": {},
                              "restart": "the watchdog `up` starts (automatic); the whole stack by "
                                         f"`sagaz-lakehouse up` {opts.restart_delay:.0f} s after the kill"}
    started = time.monotonic()
    try:
        if stack.settings.catalog_database == "postgresql":
            install_postgresql()
        if keep and not stack.wait_ready(30):
            print(f"[{conf.name}] reusing the stack in {workdir}", file=sys.stderr, flush=True)
        else:
            print(f"[{conf.name}] fresh stack in {workdir}", file=sys.stderr, flush=True)
            report["setup_s"] = fresh_stack(stack)
        faults = faults_for(stack, opts.only, opts.how) * opts.repeat
        for component, how in faults:
            if time.monotonic() - started > opts.budget:
                report.setdefault("skipped", []).append(f"{component} ({how})")
                continue
            print(f"[{conf.name}] {how} {component} (load {_load()})", file=sys.stderr, flush=True)
            result = run_fault(stack, component, how, opts)
            report["rss_mb"] = _max_rss(report["rss_mb"], stack.rss_mb())
            problem = stack.wait_ready(120)
            if problem:
                result.notes.append(f"stack afterwards: {problem}")
            if opts.no_rebuild:
                pass
            elif result.lost or problem:
                result.notes.append("stack rebuilt (down --purge, up) before the next fault")
                fresh_stack(stack)
            elif result.lake_s is None:  # the watchdog's liveness check should have repaired it: see the notes
                result.notes.append(f"afterwards: {repair_tiering(stack)}")
            report["results"].append(result)
            print(f"[{conf.name}]   → {_row(result, stack.settings.freshness)}", file=sys.stderr, flush=True)
        report["listener_results"] = []
        for name in listener_faults_for(opts.only) * opts.repeat:
            if time.monotonic() - started > opts.budget:
                report.setdefault("skipped", []).append(name)
                continue
            print(f"[{conf.name}] {name} (load {_load()})", file=sys.stderr, flush=True)
            app_result = LISTENER_FAULTS[name](stack, opts, workdir)
            problem = stack.wait_ready(120)
            if problem:
                app_result.notes.append(f"stack afterwards: {problem}")
            if not opts.no_rebuild and (app_result.lost or problem or "whole stack" in name):
                app_result.notes.append("stack rebuilt (down --purge, up) before the next fault")
                fresh_stack(stack)
            report["listener_results"].append(app_result)
            print(f"[{conf.name}]   → {_app_row(app_result)}", file=sys.stderr, flush=True)
    except Exception as exc:  # keep what was measured, say why it stopped
        report["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        print(f"[{conf.name}] stopped: {report['error']}", file=sys.stderr, flush=True)
    finally:
        report["seconds"] = time.monotonic() - started
        if not keep:
            stack.cli("down", "--purge", timeout=300)
            with contextlib.suppress(OSError):
                workdir.joinpath(config.CONFIG_FILENAME).unlink()
                workdir.rmdir()
    return report


def install_postgresql() -> None:
    """Debian's PostgreSQL for the catalog's database, installed when missing (scripts/postgresql.sh)."""
    from sagaz_lakehouse import versions

    done = subprocess.run(["bash", str(REPO / "scripts" / "postgresql.sh"), versions.POSTGRES_MAJOR],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/postgresql.sh failed: {done.stderr[-2000:]}")


def kill_watchdog(stack: Stack) -> None:
    from sagaz_lakehouse.targets.local import watchdog

    pid = watchdog.running_pid(stack.run_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def repair_tiering(stack: Stack, timeout: float = 120) -> str:
    """Restart the JobManager (kill; the watchdog restarts it and resubmits the tiering job) and wait until the lake
    snapshot covers the log again: the remedy for a tiering job whose split generation hangs."""
    old = stack.signal("flink-jobmanager", signal.SIGKILL)
    _wait(lambda: stack.pid("flink-jobmanager") not in (None, old), 120, "the JobManager's restart", fail=False)
    started = time.monotonic()

    async def caught_up() -> bool:
        async with clients.fluss_connection(stack.endpoints) as connection:
            sample = await lake_health.sample(connection, stack.settings.lake.database, tables.TABLE)
        return all(sample.lake_offsets.get(b, 0) >= end for b, end in sample.end_offsets.items())

    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if asyncio.run(caught_up()):
                return f"lake caught up {time.monotonic() - started:.0f}s after `up`"
        time.sleep(2)
    return f"lake still behind {timeout:.0f}s after `up`"


def _max_rss(previous: dict[str, float], current: dict[str, float]) -> dict[str, float]:
    return {k: max(previous.get(k, 0.0), current.get(k, 0.0)) for k in {*previous, *current}}


# ---------------------------------------------------------------------------------------------- output


HEADER = ("| fault | acknowledged | in Fluss | in Iceberg | in Trino | lost | duplicated | writes back after (s) "
          "| in Iceberg after (s) | error the writer saw | notes |\n|---|---|---|---|---|---|---|---|---|---|---|\n")


def _seconds(value: float | None, never: str = "never") -> str:
    return never if value is None else f"{value:.1f}"


def _row(r: Result, freshness: str) -> str:
    lost = f"**{r.lost}**" if r.lost else "0"
    return (f"| {r.how} {r.component} | {r.acked} | {r.in_fluss} | {r.in_iceberg} | {r.in_trino} | {lost} | "
            f"{r.duplicated} | {_seconds(r.writes_back_s)} | {_seconds(r.lake_s)} | "
            f"{(r.writer_error or '-').replace('|', '/')} | {'; '.join(r.notes).replace('|', '/') or '-'} "
            f"(load {r.load}) |")


APP_HEADER = ("| fault | hooks returned | in Fluss | in Iceberg | in Trino | lost | duplicated | dropped "
              "| unsafe / unacknowledged at the fault | replayed (rounds) | all in Iceberg after (s) | notes |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def _app_row(r: AppResult) -> str:
    lost = f"**{r.lost}**" if r.lost else "0"
    return (f"| {r.fault} | {r.returned} | {r.in_fluss} | {r.in_iceberg} | {r.in_trino} | {lost} | {r.duplicated} | "
            f"{r.dropped} | {r.spooled_at_fault} / {r.unacknowledged_at_fault} | {r.replayed} ({r.replay_rounds}) "
            f"| {_seconds(r.safe_s)} | {'; '.join(r.notes).replace('|', '/') or '-'} (load {r.load}) |")


def markdown(reports: list[dict[str, Any]], started: str) -> str:
    out = [f"# Chaos benchmark, local target\n\nRun {started} on {os.cpu_count()} cores; produced by `make chaos` "
           "(bench/chaos.py). Each fault: a writer upserts batches of 100 events (acks=all), the component is "
           "stopped through its pid file (process group) and restarted (how: per table). "
           "*lost* = acknowledged but no longer in Fluss (KV scan of every bucket); *writes back after* = the longest "
           "time without an acknowledgement after the fault; *in Iceberg after* = from the last acknowledgement "
           "until every acknowledged event was in Iceberg (target: freshness + 60 s). Load averages (1/5/15 min) "
           "are those at the start of each fault.\n"]
    for rep in reports:
        props = ", ".join(f"`{k}: {v}`" for k, v in rep["fluss_properties"].items()) or "upstream defaults"
        rss = rep.get("rss_mb", {})
        fluss_rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(rss.items()) if k.startswith("fluss"))
        out.append(f"## {rep['configuration']}: {rep['summary']}\n\nSettings: "
                   f"{json.dumps(rep['settings']) if rep['settings'] else '(defaults)'}; Fluss server properties: "
                   f"{props}; freshness {rep['freshness']}; restarts by {rep.get('restart', '`up`')}. "
                   f"Took {rep.get('seconds', 0) / 60:.1f} min. Peak RSS "
                   f"(MB): stack {sum(rss.values()):.0f}; {fluss_rss}.\n")
        if rep["results"]:
            out.append(HEADER + "\n".join(_row(r, rep["freshness"]) for r in rep["results"]) + "\n")
        if rep.get("listener_results"):
            out.append("Through the listener: real Sagaz sagas (simulate's order and DAG sagas) in an application "
                       "process with `FlussAnalyticsListener(spool_dir=...)` (fsync `interval`); *hooks returned* = "
                       "events whose hook had returned (a second listener after it records their ids); *lost* = "
                       "returned but not in Iceberg; *all in Iceberg after* = from the last hook until the listener "
                       "knew every event to be in Iceberg (`wait_safe`).\n")
            out.append(APP_HEADER + "\n".join(_app_row(r) for r in rep["listener_results"]) + "\n")
        if rep.get("skipped"):
            out.append(f"Not run (time budget): {', '.join(rep['skipped'])}.\n")
        if rep.get("error"):
            out.append(f"Stopped early: {rep['error']}\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGURATIONS),
                        help="configuration(s) to run (default: default)")
    parser.add_argument("--only", action="append", help="components to fault (e.g. fluss-tablet-0, "
                        f"'{WHOLE_STACK}', or fluss-tablet-0:kill) or listener faults "
                        f"({', '.join(repr(n) for n in LISTENER_FAULTS)}); default: all")
    parser.add_argument("--app-rate", type=float, default=50.0, help="listener faults: sagas per second")
    parser.add_argument("--outage-rate", type=float, default=1500.0,
                        help="'listener: fluss down': sagas per second while Fluss is down")
    parser.add_argument("--outage-events", type=int, default=120_000,
                        help="'listener: fluss down': events waiting in the listener before Fluss is started")
    parser.add_argument("--how", action="append", choices=["kill -9", "SIGTERM"],
                        help="how to stop (default: both)")
    parser.add_argument("--port-base", type=int, default=20000, help="ports are this + the usual ones")
    parser.add_argument("--before", type=float, default=5.0, help="seconds of writes before the fault")
    parser.add_argument("--restart-delay", type=float, default=3.0,
                        help="seconds from the whole-stack kill to `up`")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of writes after they came back")
    parser.add_argument("--max-outage", type=float, default=150.0, help="give up on writes after this")
    parser.add_argument("--lake-grace", type=float, default=150.0,
                        help="wait up to freshness + this for Iceberg to hold every acknowledged event")
    parser.add_argument("--budget", type=float, default=50 * 60, help="seconds per configuration")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "chaos.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep-logs", type=Path, help="keep the Fluss server logs of lossy faults here")
    parser.add_argument("--workdir", type=Path, help="use (and keep) this stack folder instead of a temporary one")
    parser.add_argument("--no-rebuild", action="store_true", help="never rebuild the stack after a bad fault")
    parser.add_argument("--repeat", type=int, default=1, help="run the list of faults this many times")
    parser.add_argument("--combine", type=Path, nargs="+", help="only write --out from earlier --json files")
    opts = parser.parse_args()
    if opts.combine:
        reports = [rep for path in opts.combine for rep in json.loads(path.read_text())]
        for rep in reports:
            rep["results"] = [Result(**r) for r in rep["results"]]
            rep["listener_results"] = [AppResult(**r) for r in rep.get("listener_results", [])]
        opts.out.write_text(markdown(reports, ", ".join(sorted({rep.get("started", "?") for rep in reports}))))
        print(opts.out.read_text())
        return
    opts.how = opts.how or ["kill -9", "SIGTERM"]
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    reports = []
    for name in opts.config or ["default"]:
        reports.append(run_configuration(CONFIGURATIONS[name], opts) | {"started": started})
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(markdown(reports, started))
        if opts.json:
            opts.json.write_text(json.dumps(reports, default=lambda o: o.__dict__, indent=2))
    print(opts.out.read_text())


if __name__ == "__main__":
    main()
