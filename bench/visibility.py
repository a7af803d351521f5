"""Real-time visibility benchmark (``make bench-visibility``): how soon a saga event can be read after the
FlussAnalyticsListener hook that built it returned (issue 29, item 4; the design record's "sub-second visibility
into running sagas").

While the listener writes sagas at ``--rate`` events/s (hooks called directly, ``--open-sagas`` sagas interleaved,
so each stays open a while, as running sagas do), three readers note when each event shows:

- **Fluss primary-key lookup**: one event in ``--lookup-every`` is looked up every ``--lookup-poll-ms`` until found,
  by ``--lookers`` lookers at once (the lookup's own round trip included; a sample waits while every looker is busy
  with earlier ones, which the lookup's share of ``saw`` and its p99 show);
- **Fluss log scan**: a record log scanner, subscribed to every bucket at the latest offsets before the run, polls
  continuously and notes every event of the run;
- **Flink**: the live pack's ``running_sagas`` query, running on the stack's Flink through the SQL Gateway and
  fetched every ``--fetch-ms``; per saga, from its ``saga_started`` hook's return until the saga's row shows.

Each reader runs in a process of its own, as a dashboard or a Flink client would, not beside the writer: in one
process they competed with the listener for the interpreter lock. Times are ``time.monotonic()`` in every process
(CLOCK_MONOTONIC, one clock for the whole machine), so the writer's stamps and the readers' compare.

Targets: p99 at most 1 s through Fluss, at most 2 s through the running Flink query. Also measured: the listener's
flush interval (an event waits up to one interval in its buffer, by design), the round trip of one acknowledged
upsert and flush with raw pyfluss, and batched ingest. Baseline from the same run (bench/visibility-ab.sh):
everything on a fresh stack with ``durability.replica_fetch_wait=500ms`` (Fluss's default
``log.replica.fetch.wait-max-time``; a leader's append does not end a follower's waiting fetch in 0.9.1, so replicated
writes wait for it), then on a fresh stack with the default.

Needs a running stack with the tables and the SQL Gateway (the dev profile: ``sagaz-lakehouse up``); pass its
settings file with ``--config`` (default ./sagaz-lakehouse.yaml, else the default ports).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import multiprocessing
import os
import queue
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# bench/ holds sagaz.py: drop it from the path so the listener's `import sagaz` finds the library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

import sagaz_lakehouse as lakehouse  # noqa: E402
from sagaz_lakehouse import addresses, analytics, clients, config, tables  # noqa: E402
from sagaz_lakehouse.saga_events import EventBuilder, SagaEvent  # noqa: E402
from sagaz_lakehouse.sagaz import FlussAnalyticsListener  # noqa: E402
from sagaz_lakehouse.stack import View  # noqa: E402

FLUSS_TARGET_S = 1.0
FLINK_TARGET_S = 2.0
SAGA_NAME = "bench_visibility"
STEPS = ("reserve", "charge", "ship")
HOOKS_PER_SAGA = 2 + 2 * len(STEPS)
Row = tuple[str, str, str, str]  # metric, value, baseline, ratio


READERS = ("lookup", "scan", "flink")
MP = multiprocessing.get_context("spawn")  # no fork of a process with pyfluss's runtime threads


class Clock:
    """When each event's hook returned (``sent``, the writer's) and when each reader first saw it (``seen``, sent
    back by the reader processes when they finish)."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.saga_sent: dict[str, float] = {}
        self.seen: dict[str, dict[str, float]] = {reader: {} for reader in READERS}

    def latencies(self, reader: str) -> list[float]:
        sent = self.saga_sent if reader == "flink" else self.sent
        return sorted(at - sent[key] for key, at in self.seen[reader].items() if key in sent)


class Recording(EventBuilder):
    """Hands each event it builds to the writer loop, which stamps it once the hook has returned."""

    def __init__(self) -> None:
        super().__init__()
        self.built: list[SagaEvent] = []


def _recording(hook: str) -> Any:
    def record(self: Recording, *args: Any) -> Any:
        built = getattr(EventBuilder, hook)(self, *args)
        self.built.extend(built if isinstance(built, list) else [built])
        return built

    return record


for _hook in ("saga_started", "step_started", "step_completed", "saga_completed"):
    setattr(Recording, _hook, _recording(_hook))


# ------------------------------------------------------------------------------------------ the writer


async def write_sagas(listener: FlussAnalyticsListener, builder: Recording, clock: Clock, run: str, rate: float,
                      seconds: float, open_sagas: int, lookup_queue: queue.Queue[str] | None,
                      lookup_every: int) -> None:
    """Sagas through the listener's hooks at ``rate`` events/s: ``open_sagas`` at a time, one hook of each in turn,
    so a saga stays open for about open_sagas * HOOKS_PER_SAGA / rate seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    total = int(rate * seconds)
    plans: list[list[tuple[Any, tuple[Any, ...]]]] = []
    next_saga = 0
    n = 0
    while n < total:
        while len(plans) < open_sagas:
            plans.append(saga_plan(listener, f"{run}-{next_saga:06d}"))
            next_saga += 1
        for plan in list(plans):
            hook, args = plan.pop(0)
            await hook(*args)
            stamped = time.monotonic()
            for event in builder.built:
                clock.sent[event.event_id] = stamped
                if event.event_type == "saga_started":
                    clock.saga_sent[event.saga_id] = stamped
                if lookup_queue is not None and n % lookup_every == 0:
                    lookup_queue.put_nowait(event.event_id)
                n += 1
            builder.built.clear()
            if not plan:
                plans.remove(plan)
            await asyncio.sleep(max(0.0, started + n / rate - loop.time()))
            if n >= total:
                break


def saga_plan(listener: FlussAnalyticsListener, saga_id: str) -> list[tuple[Any, tuple[Any, ...]]]:
    ctx: dict[str, Any] = {"saga_id": saga_id}
    plan: list[tuple[Any, tuple[Any, ...]]] = [(listener.on_saga_start, (SAGA_NAME, saga_id, ctx))]
    for step in STEPS:
        plan += [(listener.on_step_enter, (SAGA_NAME, step, ctx)),
                 (listener.on_step_success, (SAGA_NAME, step, ctx, None))]
    return [*plan, (listener.on_saga_complete, (SAGA_NAME, saga_id, ctx))]


# ------------------------------------------------------------------------------------------ Fluss readers


def look_up(endpoints: addresses.Endpoints, database: str, ids: Any, pollers: int, poll_s: float, timeout_s: float,
            ready: Any, done: Any, results: Any) -> None:
    """Each queued event id looked up until found (or timeout_s), by ``pollers`` lookers at once (as a few
    dashboards would), in this reader process's event loop and connection."""
    import fluss

    seen: dict[str, float] = {}

    async def looker(lookuper: Any) -> None:
        while not (done.is_set() and ids.empty()):
            try:
                event_id = ids.get_nowait()
            except queue.Empty:
                await asyncio.sleep(poll_s)
                continue
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if await lookuper.lookup({"event_id": event_id}) is not None:
                    seen.setdefault(event_id, time.monotonic())
                    break
                await asyncio.sleep(poll_s)

    async def run() -> None:
        async with clients.fluss_connection(endpoints) as connection:
            table = await connection.get_table(fluss.TablePath(database, tables.TABLE))
            lookupers = [table.new_lookup().create_lookuper() for _ in range(pollers)]
            ready.set()
            await asyncio.gather(*(looker(lookuper) for lookuper in lookupers))

    _reporting("lookup", seen, results, run)


def _reporting(reader: str, seen: dict[str, float], results: Any, run: Any) -> None:
    """Runs a reader's coroutine function; sends what it saw, and its error if it failed, to the writer."""
    error = ""
    try:
        asyncio.run(run())
    except Exception as exc:  # reported in the results, never hidden
        error = f"{type(exc).__name__}: {exc}"
    results.put((reader, seen, error))


def scan_forever(endpoints: addresses.Endpoints, database: str, offsets: dict[int, int], drain_s: float,
                 ready: Any, done: Any, results: Any) -> None:
    """A record log scanner from ``offsets`` in this reader process, noting every event it reads, until the writer
    is done and drain_s passed."""
    import fluss

    seen: dict[str, float] = {}

    async def run() -> None:
        async with clients.fluss_connection(endpoints) as connection:
            table = await connection.get_table(fluss.TablePath(database, tables.TABLE))
            scanner = await _maybe_await(table.new_scan().project_by_name(["event_id"]).create_log_scanner())
            await _maybe_await(scanner.subscribe_buckets(offsets))
            ready.set()
            stop_at: float | None = None
            while stop_at is None or time.monotonic() < stop_at:
                records = await _maybe_await(scanner.poll(50))
                now = time.monotonic()
                for record in records:
                    seen.setdefault(record.row["event_id"], now)
                if stop_at is None and done.is_set():
                    stop_at = time.monotonic() + drain_s

    _reporting("scan", seen, results, run)


async def _maybe_await(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) or asyncio.isfuture(value) else value


def raw_row(event_id: str, run: str) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "bench_visibility_raw", "saga_id": f"{run}-raw",
            "saga_name": SAGA_NAME, "step_name": None, "duration_ms": 0, "total_duration_ms": 0, "error_type": None,
            "error_message": None, "context_keys": [], "timestamp": datetime.now(UTC).replace(tzinfo=None)}


async def upsert_round_trips(table: Any, run: str, count: int) -> list[float]:
    """Raw pyfluss: one event upserted, acknowledged and flushed, ``count`` times (the write's own latency)."""
    writer = table.new_upsert().create_writer()
    out = []
    for i in range(count):
        row = raw_row(f"{run}-raw-{i}", run)
        started = time.monotonic()
        await writer.upsert(row).wait()
        await writer.flush()
        out.append(time.monotonic() - started)
    return sorted(out)


# ------------------------------------------------------------------------------------------ Flink reader


def follow_running_sagas(settings: config.Settings, endpoints: addresses.Endpoints, run: str, fetch_s: float,
                         drain_s: float, ready: Any, done: Any, results: Any) -> None:
    """The live pack's running_sagas on Flink, fetched every fetch_s; notes the first row of each of our sagas."""
    from sagaz_lakehouse.sqlgateway import Gateway

    seen: dict[str, float] = {}

    async def run_query() -> None:  # synchronous inside: the SQL Gateway client is
        with Gateway(endpoints.flink_sql_gateway).session(analytics.FLINK_SESSION) as session:
            properties = session.properties()
            options = {k.removeprefix(analytics.FLUSS_CLIENT_PREFIX): v for k, v in properties.items()
                       if k.startswith(analytics.FLUSS_CLIENT_PREFIX + "client.")}
            session.execute(analytics.fluss_catalog_ddl(properties[analytics.FLUSS_BOOTSTRAP_PROPERTY], options))
            operation = session.submit(analytics.prepare(settings, "running_sagas", {"since": "10m"}).sql)
            try:
                _fetch(session, operation, endpoints, run, seen, fetch_s, drain_s, ready, done)
            finally:
                session.close_operation(operation)

    _reporting("flink", seen, results, run_query)
    ready.set()  # a failed start must not keep the writer waiting


def _fetch(session: Any, operation: str, endpoints: addresses.Endpoints, run: str, seen: dict[str, float],
           fetch_s: float, drain_s: float, ready: Any, done: Any) -> None:
    column = -1
    stop_at: float | None = None
    for answer in session.pages(operation):
        results = answer.get("results") or {}
        if results.get("columns"):
            column = [c["name"] for c in results["columns"]].index("saga_id")
        if not ready.is_set() and answer.get("jobID") and analytics.job_running(endpoints.flink_rest,
                                                                                answer["jobID"]):
            time.sleep(3)  # the source has subscribed and read the window's history
            ready.set()
        for row in results.get("data") or []:
            saga_id = str(row["fields"][column])
            if row["kind"] in ("INSERT", "UPDATE_AFTER") and saga_id.startswith(run):
                seen.setdefault(saga_id, time.monotonic())
        if stop_at is None and done.is_set():
            stop_at = time.monotonic() + drain_s
        if stop_at is not None and time.monotonic() >= stop_at:
            return
        if not results.get("data"):
            time.sleep(fetch_s)


# ------------------------------------------------------------------------------------------ main


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3f}"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


async def measure(settings: config.Settings, args: argparse.Namespace) -> tuple[dict[str, float], list[str]]:
    """Every metric of one run against the stack as it runs now (name → value), and notes."""
    import fluss

    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    database = settings.lake.database
    run = f"vis-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    notes: list[str] = []
    async with clients.fluss_connection(endpoints) as connection:
        path = fluss.TablePath(database, tables.TABLE)
        table = await connection.get_table(path)
        raw = await upsert_round_trips(table, run, args.raw_writes)
        ingest = await batched_ingest(table, run, args.ingest_rows)
        buckets = list(range(table.get_table_info().num_buckets))
        offsets = await connection.get_admin().list_offsets(path, buckets, fluss.OffsetSpec.latest())
        scan_ready, flink_ready, lookup_ready, done = MP.Event(), MP.Event(), MP.Event(), MP.Event()
        sampled, results = MP.Queue(), MP.Queue()
        readers = [
            MP.Process(target=look_up, args=(endpoints, database, sampled, args.lookers, args.lookup_poll_ms / 1000,
                                             30.0, lookup_ready, done, results), daemon=True),
            MP.Process(target=scan_forever, args=(endpoints, database, dict(offsets), args.drain_s, scan_ready,
                                                  done, results), daemon=True),
            MP.Process(target=follow_running_sagas, args=(settings, endpoints, run, args.fetch_ms / 1000,
                                                          args.drain_s, flink_ready, done, results), daemon=True)]
        for reader in readers:
            reader.start()
        for what, event in (("log scanner", scan_ready), ("Flink query", flink_ready), ("lookups", lookup_ready)):
            if not await asyncio.to_thread(event.wait, 180):
                raise SystemExit(f"the {what} did not start within 180 s")
        builder = Recording()
        listener = FlussAnalyticsListener(endpoints.fluss_bootstrap, database=database, builder=builder)
        await listener.start()
        assert await listener.flush(timeout=60)  # connected before the clock starts
        started = time.monotonic()
        await write_sagas(listener, builder, clock, run, args.rate, args.seconds, args.open_sagas, sampled,
                          args.lookup_every)
        written_s = time.monotonic() - started
        await listener.flush(timeout=120)
        stats = await listener.close()
        done.set()
        reader_errors = []
        for _ in readers:
            try:
                reader_name, seen, error = await asyncio.to_thread(results.get, True, args.drain_s + 90)
            except queue.Empty:
                raise SystemExit("a reader process sent no results within the drain time plus 90 s") from None
            clock.seen[reader_name] = seen
            reader_errors += [f"{reader_name} reader failed: {error}"] if error else []
        for reader in readers:
            await asyncio.to_thread(reader.join, 30)
    flush_interval = inspect.signature(FlussAnalyticsListener).parameters["flush_interval"].default
    offered = stats.enqueued / written_s
    notes.append(f"offered {offered:.0f} events/s for {written_s:.1f} s ({stats.enqueued} events, "
                 f"{len(clock.saga_sent)} sagas, {args.open_sagas} open at a time), dropped {stats.dropped}")
    notes += reader_errors
    values: dict[str, float] = {}
    for reader, label, sent in (("lookup", "Fluss primary-key lookup", clock.sent), ("scan", "Fluss log scan",
                                                                                     clock.sent),
                                ("flink", "Flink running_sagas query", clock.saga_sent)):
        seen = clock.latencies(reader)
        asked = (len(clock.sent) + args.lookup_every - 1) // args.lookup_every if reader == "lookup" else len(sent)
        notes.append(f"{label}: saw {len(seen)} of {asked}")
        for q in (0.5, 0.99):
            values[f"{label}: hook return → visible, p{int(q * 100)} (s)"] = percentile(seen, q)
    values["listener flush interval (s): an event's wait in the buffer, at most"] = flush_interval
    for q in (0.5, 0.99):
        values[f"raw pyfluss upsert + flush round trip, p{int(q * 100)} (s)"] = percentile(raw, q)
    values[f"ingest, {args.ingest_rows} upserts batched, every handle awaited (events/s)"] = ingest
    return values, notes


async def batched_ingest(table: Any, run: str, rows: int) -> float:
    """Events/s of raw pyfluss upserts, batched, every handle awaited (bench/local.py's ingest)."""
    writer = table.new_upsert().create_writer()
    started = time.perf_counter()
    handles = [writer.upsert(raw_row(f"{run}-ingest-{i}", run)) for i in range(rows)]
    await writer.flush()
    for handle in handles:
        await handle.wait()
    return rows / (time.perf_counter() - started)


def target_of(metric: str) -> float | None:
    if "hook return" in metric:
        return FLINK_TARGET_S if metric.startswith("Flink") else FLUSS_TARGET_S
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="the stack's sagaz-lakehouse.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "visibility.md")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s the listener is offered")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the sagas run")
    parser.add_argument("--open-sagas", type=int, default=100, help="sagas in flight at once")
    parser.add_argument("--lookup-every", type=int, default=100, help="one event in this many is looked up")
    parser.add_argument("--lookup-poll-ms", type=float, default=10.0, help="a looker's wait between lookups")
    parser.add_argument("--lookers", type=int, default=8, help="lookups in flight at once")
    parser.add_argument("--fetch-ms", type=float, default=50.0, help="the Flink reader's wait between empty fetches")
    parser.add_argument("--drain-s", type=float, default=10.0, help="readers keep reading this long after the end")
    parser.add_argument("--raw-writes", type=int, default=200, help="raw upsert round trips")
    parser.add_argument("--ingest-rows", type=int, default=20_000, help="rows of the batched ingest")
    parser.add_argument("--save", type=Path, default=None, help="also write the values to this JSON file")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a --save file of the same run (another stack's settings) to compare with")
    args = parser.parse_args()
    args.config = args.config or config.find_config_file()
    settings = lakehouse.load_settings(args.config)
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    for what, address in (("Fluss", endpoints.fluss_bootstrap), ("the Flink SQL Gateway", endpoints.flink_sql_gateway)):
        if not clients.tcp_open(address):
            raise SystemExit(f"{what} is not reachable at {address}: start the stack first (sagaz-lakehouse up), "
                             "or pass --config")
    load_before = os.getloadavg()[0]
    ours, notes = asyncio.run(measure(settings, args))
    if args.save:
        args.save.write_text(json.dumps({"replica_fetch_wait": settings.durability.replica_fetch_wait,
                                         "values": ours, "notes": notes}, indent=1))
    upstream: dict[str, float] = {}
    baseline_wait = ""
    if args.baseline:
        saved = json.loads(args.baseline.read_text())
        upstream, baseline_wait = saved["values"], saved["replica_fetch_wait"]
        notes += [f"baseline (replica_fetch_wait {baseline_wait}): {n}" for n in saved["notes"]]
    load_after = os.getloadavg()[0]
    wait = settings.durability.replica_fetch_wait
    rows: list[Row] = []
    for metric, value in ours.items():
        target = target_of(metric)
        baseline = upstream.get(metric)
        rows.append((metric, fmt(value), "-" if target is None else f"{target:g}",
                     "-" if baseline is None else f"{fmt(baseline)} ({ratio(value, baseline)})"))
    lines = [
        "# Real-time visibility benchmark", "",
        f"Machine: {os.cpu_count()} cores, load average {load_before:.1f} before / {load_after:.1f} after; run "
        f"{time.strftime('%Y-%m-%d %H:%M')}; pyfluss {metadata.version('pyfluss')}; the stack's {settings.profile} "
        f"profile, {settings.replicas.tablet_servers} tablet servers, replication factor "
        f"{settings.replication_factor}. Produced by `make bench-visibility` (bench/visibility.py: the method is in "
        "its docstring).", "",
        f"Values with the stack's `durability.replica_fetch_wait` ({wait}, Fluss `log.replica.fetch.wait-max-time`); "
        f"baseline: the same measurement on a fresh stack of the same run with {baseline_wait} (`--baseline`: "
        "bench/visibility-ab.sh runs both), and the ratio value / baseline." if args.baseline else "", "",
        "| metric | value | target | baseline (same run) |", "|---|---|---|---|",
        *[f"| {m} | {v} | {b} | {r} |" for m, v, b, r in rows], "",
        *[f"- {n}" for n in notes], ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
