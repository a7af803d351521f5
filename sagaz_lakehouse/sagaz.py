"""``FlussAnalyticsListener``: a Sagaz listener that streams saga lifecycle events into Fluss ``saga_events``.

Sagaz awaits every listener hook inline, so a hook must never wait on the network. Hooks build the event
(``saga_events.EventBuilder``) and append it to a bounded in-memory buffer; a background asyncio task on the same
event loop hands batches to a pyfluss upsert writer and keeps up to ``max_in_flight`` flushes outstanding (a
flush's fixed latency would otherwise cap the rate at batch_size / latency), reconnecting with exponential backoff
while Fluss is unreachable. Nothing a hook does can raise into a saga. ``await listener.close()`` (or ``async with
listener:``) delivers what is buffered and closes the pyfluss connection.

One listener serves one event loop at a time (Sagaz runs every hook of a saga on the loop that runs the saga). If
that loop ends without ``close()``, the writer makes one bounded attempt to deliver what is left and closes its
connection; a later hook on a new loop starts a new writer.

**With a spool** (``spool_dir``), nothing is lost to a crash of the application or of Fluss:

- a hook appends its event to a segment file of the spool (``spool.Spool``) before it returns, so it survives a
  ``kill -9`` of the process; a thread fsyncs every ``spool_fsync_interval``. The in-memory buffer becomes a window
  over the spool: when it is full, events wait on disk only and the writer reads them back in order; the spool's
  size (``spool_max_bytes``) is the limit the overflow policy applies to.
- a segment is deleted only once every event in it is *safe*: in an Iceberg snapshot. pyfluss 1.0 does not say at
  which offset a write was appended, so the listener brackets its writes with the buckets' high watermarks and
  watches the lake snapshot (``FlussProbe``, every ``probe_interval``); the rule and its proof are in
  ``_Safety`` below.
- a new listener on the same directory re-sends every event left in it; after any sign that Fluss servers
  restarted (a failed write, a failed or late probe, a high watermark going back, the set of tablet servers
  changing, a log behind its lake snapshot) the listener re-sends every event not yet safe. ``event_id`` is
  deterministic and ``saga_events`` has it as primary key, so a re-sent event upserts the same row.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

import sagaz

from sagaz_lakehouse.saga_events import EventBuilder, SagaEvent
from sagaz_lakehouse.spool import FsyncMode, Spool, SpoolError, SpoolInUse

log = logging.getLogger(__name__)

TABLE = "saga_events"  # tables.TABLE; not imported to keep the listener free of the CLI's modules
YIELD_EVERY = 64  # rows handed to pyfluss between two yields to the event loop (~0.3 ms): sagas wait no longer
SAMPLE_EVERY = 256  # one row's result handle checked per this many (see FlussSink.flush)
REFILL_CHUNK = 512  # events read back from the spool between two yields to the event loop (~2.5 ms)
CANCEL_REPEAT_S = 0.5  # how often _cancel_until_done asks a task that goes on after a cancellation again


class Overflow(StrEnum):
    """What a hook does when the buffer is full (Fluss unreachable for longer than the buffer lasts); with a spool,
    when the spool has reached ``spool_max_bytes``."""

    BLOCK = "block"  # wait up to block_ms for room (slowing the saga by at most that), then drop the new event
    DROP_NEWEST = "drop_newest"  # drop the new event at once
    DROP_OLDEST = "drop_oldest"  # make room by dropping the oldest buffered event (in-memory buffer only)


@dataclass
class ListenerStats:
    """Counters since the listener was created; ``pending`` and the spool's gauges are values right now."""

    enqueued: int = 0
    written: int = 0
    retried: int = 0  # events re-sent after a failed write attempt (in-memory buffer; with a spool: replayed)
    dropped: int = 0  # events lost: buffer (or spool) full, refused by pyfluss, or undelivered at close (no spool)
    write_failures: int = 0  # failed write attempts (each followed by a reconnect)
    connects: int = 0
    hook_errors: int = 0  # exceptions inside the listener's own hooks (swallowed)
    spooled: int = 0  # events written to the spool before their hook returned
    replayed: int = 0  # events re-sent from the spool: left by an earlier process, or after a sign of restart
    replay_rounds: int = 0  # signs that Fluss servers restarted, each re-sending every event not yet safe
    safe: int = 0  # events known to be in Iceberg, released from the spool
    pending: int = 0  # not yet acknowledged by Fluss: in memory, in flight, or waiting on disk
    spool_bytes: int = 0  # size of the spool's segment files
    unsafe: int = 0  # events in the spool not yet known to be in Iceberg
    oldest_unsafe_age_s: float = 0.0  # how long the oldest of them has waited (at most 1024 events' time more)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


GAUGES = ("pending", "spool_bytes", "unsafe", "oldest_unsafe_age_s")  # ListenerStats fields that are not counters
StatsHook = Callable[[str, int], None]  # (counter name, increment): e.g. prometheus_client Counter.inc
# prometheus_stats_hook's metric per counter (the alert rules read sagaz_lakehouse_listener_events_dropped_total).
PROMETHEUS_COUNTERS = {
    "enqueued": ("sagaz_lakehouse_listener_events_enqueued", "saga events the listener accepted"),
    "written": ("sagaz_lakehouse_listener_events_written", "saga events acknowledged by Fluss"),
    "retried": ("sagaz_lakehouse_listener_events_retried", "saga events re-sent after a failed write"),
    "dropped": ("sagaz_lakehouse_listener_events_dropped", "saga events lost (buffer or spool full, refused, or "
                "undelivered at close without a spool)"),
    "write_failures": ("sagaz_lakehouse_listener_write_failures", "failed write attempts to Fluss"),
    "connects": ("sagaz_lakehouse_listener_connects", "connections made to Fluss"),
    "hook_errors": ("sagaz_lakehouse_listener_hook_errors", "exceptions inside the listener's hooks (swallowed)"),
    "spooled": ("sagaz_lakehouse_listener_events_spooled", "saga events written to the spool before their hook "
                "returned"),
    "replayed": ("sagaz_lakehouse_listener_events_replayed", "saga events re-sent from the spool (left by an earlier "
                 "process, or after a sign that Fluss restarted)"),
    "replay_rounds": ("sagaz_lakehouse_listener_replay_rounds", "signs that Fluss servers restarted, each re-sending "
                      "the events not yet in Iceberg"),
    "safe": ("sagaz_lakehouse_listener_events_safe", "saga events known to be in Iceberg, released from the spool"),
}
# Gauges, set once per probe_interval (prometheus_stats_hook's .gauge()).
PROMETHEUS_GAUGES = {
    "pending": ("sagaz_lakehouse_listener_events_pending", "saga events not yet acknowledged by Fluss"),
    "spool_bytes": ("sagaz_lakehouse_listener_spool_bytes", "bytes in the listener's spool"),
    "unsafe": ("sagaz_lakehouse_listener_unsafe_events", "saga events in the spool not yet known to be in Iceberg"),
    "oldest_unsafe_age_s": ("sagaz_lakehouse_listener_oldest_unsafe_event_age_seconds",
                            "age of the oldest saga event in the spool not yet known to be in Iceberg"),
}


class PrometheusStatsHook:
    """Counts into prometheus_client counters (``<name>_total``) and sets the spool's gauges; see
    ``prometheus_stats_hook``. Any ``stats_hook`` may have such a ``gauge(name, value)`` method."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge

        registry = registry if registry is not None else REGISTRY
        self.counters = {name: Counter(metric, doc, registry=registry)
                         for name, (metric, doc) in PROMETHEUS_COUNTERS.items()}
        self.gauges = {name: Gauge(metric, doc, registry=registry) for name, (metric, doc) in PROMETHEUS_GAUGES.items()}

    def __call__(self, counter: str, increment: int) -> None:
        metric = self.counters.get(counter)
        if metric is not None:
            metric.inc(increment)

    def gauge(self, name: str, value: float) -> None:
        metric = self.gauges.get(name)
        if metric is not None:
            metric.set(value)


def prometheus_stats_hook(registry: Any = None) -> PrometheusStatsHook:
    """A ``stats_hook`` that counts into prometheus_client counters (``<name>_total``) and sets gauges, in ``registry``
    (default: prometheus_client's global one, which the application exposes with its own metrics endpoint, e.g.
    Sagaz's ``start_metrics_server``). Needs prometheus-client (``pip install 'sagaz[prometheus]'``), imported only
    here.

    Use it once per registry: ``FlussAnalyticsListener(stats_hook=prometheus_stats_hook())``."""
    return PrometheusStatsHook(registry)


def stack_location() -> tuple[str, str, dict[str, str]]:
    """Fluss bootstrap address, database and login (pyfluss SASL properties; none in dev) of the stack described by
    ./sagaz-lakehouse.yaml (or the defaults); the login's password comes from the environment or secrets.file.

    The listener's only dependency on the stack model, kept to this function on purpose.
    """
    from sagaz_lakehouse import addresses, config, loader, security
    from sagaz_lakehouse.stack import View

    path = config.find_config_file()
    settings = loader.load_settings(path)
    credentials = loader.resolve_credentials(settings, base_dir=path.parent if path else None)
    return (addresses.endpoints(settings, View.EXTERNAL).fluss_bootstrap, settings.lake.database,
            security.pyfluss_properties(settings, credentials))


class FlussAnalyticsListener(sagaz.SagaListener):
    """Publishes saga lifecycle events to the Fluss ``saga_events`` table without slowing the saga down.

    Args:
        bootstrap_servers: Fluss bootstrap address(es), ``host:port[,host:port]``; default: the stack's.
        fluss_properties: more pyfluss ``Config`` properties, e.g. the SASL login of a prod stack
            (``security.protocol``, ``security.sasl.username``, ...); default: the stack's login when
            ``bootstrap_servers`` is the stack's, none otherwise.
        database, table: where ``saga_events`` lives; database default: the stack's (``lake.database``).
        buffer_size: events held in memory while Fluss is slow or unreachable (in flight included); with a spool,
            the in-memory window over it: more wait on disk only.
        batch_size: most events per batch; a batch is handed to pyfluss once full, or ``flush_interval`` s after
            its first event arrived, whichever comes first.
        max_in_flight: batches handed to pyfluss and not yet acknowledged.
        overflow, block_ms: the policy when the buffer (with a spool: the spool) is full; see ``Overflow``.
        connect_timeout: seconds for one connection attempt.
        write_timeout: seconds to wait for a batch's acknowledgement before counting a failed attempt (the
            writer keeps waiting: pyfluss retries the batch itself and delivers it once Fluss is back).
        stuck_after: seconds a batch may stay unacknowledged while Fluss accepts connections before the
            connection is replaced and the batch re-sent.
        backoff_initial, backoff_max: reconnect delay in seconds, doubled after each failed attempt (with jitter).
        stats_hook: called as ``stats_hook(counter, increment)`` on every counter change; if it has a
            ``gauge(name, value)`` method, that gets the gauges of ``GAUGES`` once per ``probe_interval``.
        builder, sink: replace the event builder (clocks) or the Fluss writer, e.g. in tests.
        spool_dir: keep every event in segment files there until it is in Iceberg (see the module docstring);
            one process, one listener per directory. None: in memory only.
        spool_fsync: ``always`` (fdatasync per event), ``interval`` (a thread, every ``spool_fsync_interval`` s) or
            ``never``: what a crash of the machine can lose. A kill -9 of the process loses nothing in any mode.
        spool_max_bytes: the spool's budget; when it is full, ``overflow`` applies (``drop_newest`` or ``block``).
        spool_segment_bytes: size at which a new segment file is started (deletion is per segment).
        probe_interval, probe_timeout, max_probe_gap: how often the high watermarks and the lake snapshot are read
            (spool only), how long one reading may take, and the longest time without a successful reading
            before it counts as a sign of restart.
        probe: replace the Fluss prober (``FlussProbe``), e.g. in tests.
    """

    def __init__(self, bootstrap_servers: str | None = None, *, database: str | None = None, table: str = TABLE,
                 buffer_size: int = 100_000, batch_size: int = 5_000, flush_interval: float = 0.2,
                 max_in_flight: int = 3, overflow: Overflow | str = Overflow.DROP_NEWEST, block_ms: float = 0.0,
                 connect_timeout: float = 5.0, write_timeout: float = 10.0, stuck_after: float = 60.0,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0, stats_hook: StatsHook | None = None,
                 builder: EventBuilder | None = None, sink: Sink | None = None,
                 fluss_properties: Mapping[str, str] | None = None, spool_dir: str | os.PathLike[str] | None = None,
                 spool_fsync: FsyncMode | str = FsyncMode.INTERVAL, spool_fsync_interval: float = 0.1,
                 spool_max_bytes: int = 1 << 30, spool_segment_bytes: int = 8 << 20, probe_interval: float = 1.0,
                 probe_timeout: float = 5.0, max_probe_gap: float = 10.0, probe: Probe | None = None) -> None:
        if min(buffer_size, batch_size, max_in_flight) < 1 or flush_interval <= 0 or block_ms < 0:
            raise ValueError("buffer_size, batch_size and max_in_flight must be >= 1, flush_interval > 0, "
                             "block_ms >= 0")
        if spool_dir is not None:
            if Overflow(overflow) is Overflow.DROP_OLDEST:
                raise ValueError("overflow='drop_oldest' does not apply with spool_dir: events on disk are never "
                                 "dropped once spooled; use 'drop_newest' or 'block'")
            if not 0 < probe_interval <= probe_timeout <= max_probe_gap:
                raise ValueError("probe_interval, probe_timeout and max_probe_gap must satisfy "
                                 f"0 < probe_interval <= probe_timeout <= max_probe_gap, got {probe_interval}, "
                                 f"{probe_timeout}, {max_probe_gap}")
            try:
                spool: Spool | None = Spool(spool_dir, fsync=spool_fsync, fsync_interval=spool_fsync_interval,
                                            max_bytes=spool_max_bytes, segment_bytes=spool_segment_bytes)
            except SpoolError as exc:
                raise ValueError(str(exc)) from None
        else:
            spool = None
        if bootstrap_servers is None or database is None:
            stack_bootstrap, stack_database, stack_login = stack_location()
            if bootstrap_servers is None and fluss_properties is None:
                fluss_properties = stack_login
            bootstrap_servers, database = bootstrap_servers or stack_bootstrap, database or stack_database
        self.bootstrap_servers, self.database, self.table = bootstrap_servers, database, table
        self.buffer_size, self.batch_size, self.flush_interval = buffer_size, batch_size, flush_interval
        self.max_in_flight, self.overflow, self.block_ms = max_in_flight, Overflow(overflow), block_ms
        self.write_timeout, self.stuck_after = write_timeout, stuck_after
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._sink: Sink = sink or FlussSink(bootstrap_servers, database, table, connect_timeout, write_timeout,
                                             on_connect=lambda: self._count("connects"),
                                             properties=fluss_properties)
        self._builder = builder or EventBuilder()
        self._stats = ListenerStats()
        self._stats_hook = stats_hook
        self._buffer: deque[SagaEvent] = deque()  # not yet handed to pyfluss
        self._batches: deque[_Batch] = deque()  # handed to pyfluss, oldest first, awaiting acknowledgement
        self._in_flight = 0  # events in self._batches
        self._first_buffered_at = 0.0  # loop time the buffer last became non-empty
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None  # writer: work arrived, or close/flush asked
        self._room: asyncio.Event | None = None  # blocked hooks: a batch was written
        self._waiting_for_room = 0  # hooks blocked right now until the buffer has room
        self._idle: asyncio.Event | None = None  # flush(): nothing pending
        self._closing = self._urgent = False
        self._overflowing = self._failing = False  # a warning was logged for the current episode
        # With a spool: the in-memory buffer holds events [_buffer_seqs[0], ...]; while _spilled, the events from
        # _disk_from to the spool's end are on disk only. Everything below _safety.safe_seq is in Iceberg.
        self._spool = spool
        self._buffer_seqs: deque[int] = deque()
        self._spilled = False
        self._disk_from = 0
        self._sent_until = 0  # one past the highest sequence number handed to pyfluss by this process
        self._next_take = 0  # where the next batch's range of sequence numbers begins
        self._replay_until = 0  # events below this were sent before (by an earlier process, or before a rewind)
        self._probe: Probe | None = None
        if spool is not None:
            self._probe = probe or FlussProbe(bootstrap_servers, database, table, connect_timeout,
                                              properties=fluss_properties)
        self._safety = _Safety(self)
        self.probe_interval, self.probe_timeout, self.max_probe_gap = probe_interval, probe_timeout, max_probe_gap
        self._watch_task: asyncio.Task[None] | None = None
        self._safe_changed: asyncio.Event | None = None
        self._spool_failed = False  # an error was logged for the spool
        self._atexit = False  # the spool's last sync is registered for the interpreter's exit

    # ------------------------------------------------------------------------------------------ Sagaz hooks

    async def on_saga_start(self, saga_name: str, saga_id: str, ctx: dict[str, Any]) -> None:
        await self._emit(self._builder.saga_started, saga_name, saga_id, ctx)

    async def on_step_enter(self, saga_name: str, step_name: str, ctx: dict[str, Any]) -> None:
        await self._emit(self._builder.step_started, saga_name, step_name, ctx)

    async def on_step_success(self, saga_name: str, step_name: str, ctx: dict[str, Any], result: Any) -> None:
        await self._emit(self._builder.step_completed, saga_name, step_name, ctx)

    async def on_step_failure(self, saga_name: str, step_name: str, ctx: dict[str, Any],
                              error: Exception) -> None:
        await self._emit(self._builder.step_failed, saga_name, step_name, ctx, error)

    async def on_compensation_start(self, saga_name: str, step_name: str, ctx: dict[str, Any]) -> None:
        await self._emit(self._builder.compensation_started, saga_name, step_name, ctx)

    async def on_compensation_complete(self, saga_name: str, step_name: str, ctx: dict[str, Any]) -> None:
        await self._emit(self._builder.compensation_completed, saga_name, step_name, ctx)

    async def on_saga_complete(self, saga_name: str, saga_id: str, ctx: dict[str, Any]) -> None:
        await self._emit(self._builder.saga_completed, saga_name, saga_id, ctx)

    async def on_saga_failed(self, saga_name: str, saga_id: str, ctx: dict[str, Any], error: Exception) -> None:
        await self._emit(self._builder.saga_failed, saga_name, saga_id, ctx, error)

    # ------------------------------------------------------------------------------------------ public API

    @property
    def stats(self) -> ListenerStats:
        """A snapshot of the counters and gauges."""
        snapshot = replace(self._stats)
        snapshot.pending = self._pending()
        if self._spool is not None:
            snapshot.spool_bytes = self._spool.bytes
            snapshot.unsafe = self._safety.unsafe()
            snapshot.oldest_unsafe_age_s = round(self._safety.oldest_unsafe_age(), 3)
        return snapshot

    @property
    def waiting_for_room(self) -> int:
        """How many hooks wait right now for room in a full buffer or spool (overflow policy ``block``)."""
        return self._waiting_for_room

    @property
    def spool(self) -> Spool | None:
        """The spool, when ``spool_dir`` was given (its files, fsync statistics)."""
        return self._spool

    async def start(self) -> None:
        """Start the writer now (it also starts with the first event): connects in the background. With a spool,
        takes the directory (``SpoolInUse`` if another process has it) and starts re-sending what was left in it."""
        self._ensure_pump(strict=True)

    async def flush(self, timeout: float | None = None) -> bool:
        """Write everything buffered now; False if ``timeout`` seconds passed first (events stay buffered)."""
        if not self._pending():
            return True
        self._ensure_pump()
        assert self._wakeup is not None and self._idle is not None
        self._urgent = True  # no lingering for a fuller batch
        self._wakeup.set()
        return await _wait_set(self._idle, timeout)

    async def wait_safe(self, timeout: float | None = None) -> bool:
        """With a spool: wait until every event spooled so far is known to be in Iceberg (and its segment file
        deleted); False if ``timeout`` seconds passed first. About the table freshness after the last write."""
        if self._spool is None:
            raise RuntimeError("wait_safe() needs a spool (spool_dir)")
        self._ensure_pump()
        target = self._spool.next_seq
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._safety.safe_seq < target:
            assert self._safe_changed is not None
            self._safe_changed.clear()
            if self._pending():
                self._urgent = True
                assert self._wakeup is not None
                self._wakeup.set()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await _wait_set(self._safe_changed, remaining)
        return True

    async def close(self, timeout: float = 30.0) -> ListenerStats:
        """Deliver what is buffered (retrying for up to ``timeout`` s), then close the Fluss connection.

        Without a spool, events still undelivered after ``timeout`` are counted as dropped, with a warning. With a
        spool they stay in it, and so do delivered events not yet known to be in Iceberg: the next listener on the
        directory re-sends them. Idempotent.
        """
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            if task.get_loop() is not asyncio.get_running_loop():
                raise RuntimeError("close() must be awaited on the event loop that runs the sagas")
            assert self._wakeup is not None
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                await _cancel_until_done(task)
        await self._stop_watching()
        await self._sink.close()  # the writer task closes it too; this covers a task that never ran
        self._give_up(f"close() gave up after {timeout:g}s")
        stats = self.stats
        if self._spool is not None and self._spool.opened:
            self._spool.close()
        return stats

    async def __aenter__(self) -> FlussAnalyticsListener:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------ hook side

    async def _emit(self, build: Callable[..., SagaEvent | list[SagaEvent]], *args: Any) -> None:
        try:
            built = build(*args)
            for event in built if isinstance(built, list) else (built,):
                if not self._offer(event):
                    await self._overflow_wait(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # a listener bug must never reach the saga
            self._count("hook_errors")
            log.debug("FlussAnalyticsListener hook failed", exc_info=True)

    def _offer(self, event: SagaEvent) -> bool:
        """Buffer the event without waiting; False when the buffer is full and the policy may block."""
        if self._task is None or self._task.done():
            self._ensure_pump()
        if self._spool is not None:
            return self._offer_spooled(event, self._spool)
        if len(self._buffer) + self._in_flight >= self.buffer_size:
            if self.overflow is not Overflow.DROP_OLDEST or not self._buffer:
                if self.overflow is Overflow.BLOCK and self.block_ms > 0:
                    return False
                self._drop(1)
                return True
            self._buffer.popleft()
            self._drop(1)
        self._buffer.append(event)
        self._count("enqueued")
        self._buffered(len(self._buffer))
        return True

    def _offer_spooled(self, event: SagaEvent, spool: Spool) -> bool:
        """Append the event to the spool (it survives the process from here on), then to the in-memory window if it
        has room and nothing waits on disk before it."""
        if not spool.opened:  # the directory could not be taken (logged): in-memory only is not what was asked
            self._drop(1)
            return True
        if spool.full:
            if self.overflow is Overflow.BLOCK and self.block_ms > 0:
                return False
            self._drop(1)
            return True
        try:
            seq = spool.append(event)
        except OSError as exc:  # the disk is full or failing: as for a full spool, the event is dropped and counted
            if not self._spool_failed:
                self._spool_failed = True
                log.error("writing to the saga event spool in %s failed: %s; dropping events until it works",
                          spool.directory, exc)
            self._drop(1)
            return True
        self._spool_failed = False
        self._count("enqueued")
        self._count("spooled")
        if self._spilled or len(self._buffer) + self._in_flight >= self.buffer_size:
            if not self._spilled:
                self._spilled, self._disk_from = True, seq
                self._idle.clear()  # type: ignore[union-attr]  # set by _ensure_pump
                self._wakeup.set()  # type: ignore[union-attr]
            return True
        self._buffer.append(event)
        self._buffer_seqs.append(seq)
        self._buffered(len(self._buffer))
        return True

    def _buffered(self, depth: int) -> None:
        if depth == 1:
            self._first_buffered_at = self._task.get_loop().time()  # type: ignore[union-attr]
            self._idle.clear()  # type: ignore[union-attr]  # both events are set by _ensure_pump
            self._wakeup.set()  # type: ignore[union-attr]
        elif depth == self.batch_size:
            self._wakeup.set()  # type: ignore[union-attr]

    def _full(self) -> bool:
        if self._spool is not None:
            return self._spool.full
        return self._pending() >= self.buffer_size

    async def _overflow_wait(self, event: SagaEvent) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.block_ms / 1000
        assert self._room is not None
        self._waiting_for_room += 1
        try:
            while self._full():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self._drop(1)
                    return
                self._room.clear()
                await _wait_set(self._room, remaining)
        finally:
            self._waiting_for_room -= 1
        self._offer(event)

    def _drop(self, n: int) -> None:
        self._count("dropped", n)
        if not self._overflowing:
            self._overflowing = True
            if self._spool is not None:
                log.warning("saga event spool full (%d of %d bytes in %s; is the lake behind, or Fluss at %s "
                            "unreachable?): dropping events (overflow policy %s); see stats.dropped",
                            self._spool.bytes, self._spool.max_bytes, self._spool.directory, self.bootstrap_servers,
                            self.overflow.value)
            else:
                log.warning("saga_events buffer full (%d events; is Fluss at %s reachable?): dropping events "
                            "(overflow policy %s); see stats.dropped", self.buffer_size, self.bootstrap_servers,
                            self.overflow.value)

    def _count(self, counter: str, n: int = 1) -> None:
        setattr(self._stats, counter, getattr(self._stats, counter) + n)
        if self._stats_hook is not None:
            try:
                self._stats_hook(counter, n)
            except Exception:  # a metrics backend must not break the listener either
                log.debug("stats hook failed", exc_info=True)

    def _pending(self) -> int:
        waiting = self._spool.next_seq - self._disk_from if self._spilled and self._spool is not None else 0
        return len(self._buffer) + self._in_flight + waiting

    # ------------------------------------------------------------------------------------------ writer side

    def _ensure_pump(self, strict: bool = False) -> None:
        """Start the writer task on the running loop (again, if the loop it ran on has finished); with a spool, take
        the directory first (``strict``: raise if that fails) and start the watcher task with it."""
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        if self._spool is not None:
            self._open_spool(strict)
        self._wakeup, self._room, self._idle = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._safe_changed = asyncio.Event()
        self._closing = self._urgent = False
        self._task = loop.create_task(self._pump(), name="FlussAnalyticsListener writer")
        if self._spool is not None and self._spool.opened:
            self._watch_task = loop.create_task(self._watch(), name="FlussAnalyticsListener safety probe")
        self._first_buffered_at = loop.time()
        if self._pending():
            self._wakeup.set()
        else:
            self._idle.set()

    def _open_spool(self, strict: bool) -> None:
        spool = self._spool
        assert spool is not None
        if spool.opened:
            if spool.owner_pid != os.getpid():
                raise SpoolInUse(f"spool directory {spool.directory} was opened by process {spool.owner_pid} before "
                                 "this one forked: create the listener in each process, with its own directory")
            return
        try:
            spool.open()
        except (SpoolInUse, OSError) as exc:
            log.error("saga event spool not usable: %s; events are dropped until it is", exc)
            if strict:
                raise
            return
        if not self._atexit:
            self._atexit = True
            atexit.register(_sync_at_exit, spool)
        self._abandon_batches()
        self._batches.clear()
        self._in_flight = 0
        self._buffer.clear()
        self._buffer_seqs.clear()
        self._safety.reset(spool.released)
        self._disk_from = self._next_take = self._safety.safe_seq
        self._spilled = self._disk_from < spool.next_seq
        self._replay_until = self._sent_until = spool.next_seq
        if spool.recovered:
            log.warning("saga event spool %s holds %d events not known to be in Iceberg (left by an earlier process): "
                        "re-sending them", spool.directory, spool.recovered)

    async def _pump(self) -> None:
        try:
            await self._deliver_until_closed()
        except asyncio.CancelledError:
            if self._spool is not None:
                if not self._closing:  # everything stays in the spool; a writer on a later loop re-sends it
                    self._rewind()
            elif not self._closing:  # loop ends without close(): one bounded last attempt
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(self._last_attempt(), self.write_timeout)
                self._give_up("the event loop ended before close()")
            raise
        finally:
            self._abandon_batches()
            await asyncio.shield(self._sink.close())
            if not self._closing:
                await asyncio.shield(self._stop_watching())

    async def _last_attempt(self) -> None:
        self._requeue_batches()
        batch = _Batch(self._take(len(self._buffer)))
        batch.refused = await self._sink.queue(batch.rows)
        await self._sink.flush()
        self._written(batch)

    async def _deliver_until_closed(self) -> None:
        loop = asyncio.get_running_loop()
        backoff, stuck_since = self.backoff_initial, None
        while True:
            if self._spool is not None:
                if self._safety.rewind_due:
                    self._rewind()
                if self._spilled and len(self._buffer) + self._in_flight < self.buffer_size:
                    await self._refill(loop)
            if len(self._batches) < self.max_in_flight and self._batch_due(loop):
                batch = self._take_batch(self.batch_size)
                self._batches.append(batch)
                self._in_flight += len(batch.rows)
                try:
                    batch.refused = await self._sink.queue(batch.rows)
                except Exception as exc:  # no connection, or a writer that refuses rows
                    backoff = await self._recover(exc, backoff)
                    stuck_since = None
                    continue
                batch.flush = loop.create_task(self._sink.flush())
                continue
            if not self._batches:
                if self._closing and not self._buffer and not self._spilled:
                    return
                await self._linger(loop)
                continue
            oldest = self._batches[0]
            assert oldest.flush is not None
            await self._wait_for(oldest.flush, loop)
            if oldest.flush.done():
                try:
                    oldest.flush.result()
                except Exception as exc:  # Fluss refused a batch, or the connection broke: re-send everything
                    backoff = await self._recover(exc, backoff)
                    stuck_since = None
                    continue
                self._batches.popleft()
                self._in_flight -= len(oldest.rows)
                self._written(oldest)
                backoff, stuck_since = self.backoff_initial, None
            elif loop.time() - oldest.handed_at >= self.write_timeout * (1 + oldest.timeouts):
                # Fluss is down or slow. pyfluss keeps the queued rows and retries them itself, delivering them
                # once the servers are back (a restarted server takes a while), so wait again on the same writer.
                # Only a writer stuck for stuck_after while Fluss answers TCP again is replaced and its batches
                # re-sent (same event ids: no duplicates); replacing it sooner livelocks on a slow restart.
                oldest.timeouts += 1
                stuck_since = loop.time() if stuck_since is None else stuck_since
                self._write_failed(FlushTimeout(f"no acknowledgement within {self.write_timeout:g}s"), 0.0)
                if loop.time() - stuck_since >= self.stuck_after and await self._sink.reachable():
                    self._requeue_batches()
                    await self._sink.close()
                    stuck_since = None

    def _batch_due(self, loop: asyncio.AbstractEventLoop) -> bool:
        """A full batch, or events that waited flush_interval, or close()/flush() asking for everything now."""
        depth = len(self._buffer)
        if depth and self._spool is not None and self._handoff_wait(loop) > 0:
            return False
        return depth >= self.batch_size or (depth > 0 and (
            self._closing or self._urgent or loop.time() - self._first_buffered_at >= self.flush_interval))

    def _handoff_wait(self, loop: asyncio.AbstractEventLoop) -> float:
        """With a spool: how long to hold batches back for a probe of this safety generation (see _Safety); at most
        probe_timeout, after which batches go anyway (they are then re-sent once, if needed, to be proven safe)."""
        if self._safety.clean_at is not None:
            return 0.0
        return max(0.0, self._safety.gen_started + self.probe_timeout - loop.time())

    async def _linger(self, loop: asyncio.AbstractEventLoop) -> None:
        """Nothing in flight and no batch due: wait for events, or for the buffered ones to become due."""
        assert self._wakeup is not None and self._idle is not None
        self._wakeup.clear()
        if not self._buffer:
            if self._spilled:  # read back from disk at the top of the loop
                return
            self._idle.set()
            self._urgent = False
            await self._wakeup.wait()
            return
        remaining = self._first_buffered_at + self.flush_interval - loop.time()
        if self._spool is not None:
            remaining = max(remaining, self._handoff_wait(loop))
        await _wait_set(self._wakeup, max(remaining, 0.0))

    async def _wait_for(self, flush: asyncio.Task[None], loop: asyncio.AbstractEventLoop) -> None:
        """Until the oldest flush is done, or a batch could be handed over, or its write_timeout passes."""
        assert self._wakeup is not None
        waits: set[asyncio.Future[Any]] = {flush}
        wakeup = None
        if len(self._batches) < self.max_in_flight:
            if self._batch_due(loop):
                return
            self._wakeup.clear()
            wakeup = loop.create_task(self._wakeup.wait())
            waits.add(wakeup)
            linger = self._first_buffered_at + self.flush_interval - loop.time() if self._buffer else None
            if linger is not None and self._spool is not None:
                linger = max(linger, self._handoff_wait(loop))
        else:
            linger = None
        deadline = self._batches[0].handed_at + self.write_timeout * (1 + self._batches[0].timeouts)
        timeout = deadline - loop.time() if linger is None else min(deadline - loop.time(), linger)
        await asyncio.wait(waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)
        if wakeup is not None and not wakeup.done():
            wakeup.cancel()

    async def _recover(self, exc: Exception, backoff: float) -> float:
        """Put every batch back in the buffer, drop the connection, wait; returns the next backoff."""
        self._write_failed(exc, backoff)
        self._requeue_batches(f"a write failed ({type(exc).__name__})")
        await self._sink.close()
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
        return min(backoff * 2, self.backoff_max)

    def _take(self, n: int) -> list[SagaEvent]:
        buffer = self._buffer
        rows = [buffer.popleft() for _ in range(min(n, len(buffer)))]
        if buffer:
            self._first_buffered_at = asyncio.get_running_loop().time()
        return rows

    def _take_batch(self, n: int) -> _Batch:
        batch = _Batch(self._take(n), gen=self._safety.gen)
        if self._spool is not None and batch.rows:
            seqs = self._buffer_seqs
            batch.seqs = [seqs.popleft() for _ in range(len(batch.rows))]
            # The batch answers for every sequence number from the previous batch's end on: lines skipped as damaged
            # between the two are released with it.
            batch.start_seq, batch.end_seq = self._next_take, batch.seqs[-1] + 1
            self._next_take = batch.end_seq
            self._sent_until = max(self._sent_until, batch.end_seq)
        return batch

    async def _refill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read events waiting on disk into the in-memory window, in order, while it has room."""
        spool = self._spool
        assert spool is not None
        while self._spilled and len(self._buffer) + self._in_flight < self.buffer_size:
            room = self.buffer_size - len(self._buffer) - self._in_flight
            chunk, after = spool.read(self._disk_from, min(room, REFILL_CHUNK))
            if chunk and not self._buffer:
                self._first_buffered_at = loop.time()
            replayed = 0
            for seq, event in chunk:
                self._buffer.append(event)
                self._buffer_seqs.append(seq)
                replayed += seq < self._replay_until
            if replayed:
                self._count("replayed", replayed)
            if not chunk and after == self._disk_from:  # nothing readable there (cannot happen; do not spin)
                log.error("saga event spool %s: no event readable at %d of %d", spool.directory, after,
                          spool.next_seq)
                after = spool.next_seq
            self._disk_from = after
            if after >= spool.next_seq:
                self._spilled = False
            await asyncio.sleep(0)  # let sagas run between chunks
            if self._safety.rewind_due:
                return

    def _requeue_batches(self, why: str = "") -> None:
        """Batches not acknowledged go back to the front of the buffer, in order, to be sent again. With a spool, a
        failed write is also a sign that Fluss may have restarted: if events were acknowledged and are not yet
        known to be safe, everything not yet safe is re-sent from the spool instead."""
        if self._spool is not None:
            if self._safety.acked:
                self._safety.suspect(why or "a write was re-sent")
                self._rewind()
                return
            self._safety.gen += 1  # the batches in flight are re-sent below; none was acknowledged
            # (a failed write alone is no truncation: that takes a restart, which the probe sees)
        self._abandon_batches()
        while self._batches:
            batch = self._batches.pop()
            self._in_flight -= len(batch.rows)
            self._buffer.extendleft(reversed(batch.rows))
            if self._spool is not None:
                self._buffer_seqs.extendleft(reversed(batch.seqs))
                self._next_take = batch.start_seq
                self._count("replayed", len(batch.rows))
            else:
                self._count("retried", len(batch.rows))

    def _rewind(self) -> None:
        """Forget what is in memory and in flight; send again from the oldest event not yet safe (read back from the
        spool). Events in flight may still arrive: they are upserts of the same rows."""
        spool = self._spool
        assert spool is not None
        self._abandon_batches()
        self._batches.clear()
        self._in_flight = 0
        self._buffer.clear()
        self._buffer_seqs.clear()
        self._safety.rewound()
        self._replay_until = max(self._replay_until, self._sent_until)
        self._disk_from = self._next_take = self._safety.safe_seq
        self._spilled = self._disk_from < spool.next_seq

    def _abandon_batches(self) -> None:
        for batch in self._batches:
            if batch.flush is not None and not batch.flush.done():
                batch.flush.cancel()

    def _written(self, batch: _Batch) -> None:
        if batch.refused:  # never retried: pyfluss refused their values, and would again
            self._count("dropped", len(batch.refused))
            log.error("pyfluss refused %d saga events (dropped), e.g. %r", len(batch.refused), batch.refused[0])
        self._count("written", len(batch.rows) - len(batch.refused))
        if self._spool is not None:
            self._safety.acknowledged(batch)
        if self._failing:
            log.warning("Fluss at %s reachable again; buffered saga events are being delivered",
                        self.bootstrap_servers)
        self._failing = self._overflowing = False
        if self._room is not None and self._spool is None:
            self._room.set()
        if not self._pending() and self._idle is not None:
            self._idle.set()

    def _write_failed(self, exc: Exception, backoff: float) -> None:
        self._count("write_failures")
        if not self._failing:
            self._failing = True
            log.warning("writing saga events to Fluss at %s failed (%s: %s); buffering them and retrying "
                        "(next attempt in %.1fs)", self.bootstrap_servers, type(exc).__name__, exc, backoff)
        else:
            log.debug("write retry failed: %s: %s", type(exc).__name__, exc)

    def _give_up(self, why: str) -> None:
        self._abandon_batches()
        lost = self._pending()
        if lost and self._spool is not None:  # stats.pending keeps saying how many: the next listener sends them
            log.warning("%d saga events were not delivered to Fluss at %s (%s); they stay in the spool %s and the "
                        "next listener on it sends them", lost, self.bootstrap_servers, why, self._spool.directory)
        elif lost:
            self._buffer.clear()
            self._batches.clear()
            self._in_flight = 0
            self._count("dropped", lost)
            log.warning("%d saga events were not delivered to Fluss at %s (%s)", lost, self.bootstrap_servers, why)
        if self._idle is not None:
            self._idle.set()

    # ------------------------------------------------------------------------------------------ safety (spool)

    async def _watch(self) -> None:
        """Read the buckets' high watermarks and the lake snapshot every probe_interval; see _Safety."""
        loop = asyncio.get_running_loop()
        probe = self._probe
        assert probe is not None
        while True:
            started = loop.time()
            try:
                seen = await asyncio.wait_for(probe.observe(), self.probe_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure counts: a restart keeps buckets leaderless for a while
                self._safety.probe_failed(exc)
            else:
                self._safety.observed(seen, started, loop.time())
            self._report_gauges()
            await asyncio.sleep(max(0.0, self.probe_interval - (loop.time() - started)))

    async def _stop_watching(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None and not task.done():
            await _cancel_until_done(task)
        if self._probe is not None:
            await self._probe.close()

    def _released(self, upto: int, released: int) -> None:
        """Events below ``upto`` are safe: delete their segments, wake blocked hooks and wait_safe()."""
        spool = self._spool
        assert spool is not None
        self._count("safe", released)
        if spool.release(upto) and self._room is not None:
            self._overflowing = False
            self._room.set()
        if self._safe_changed is not None:
            self._safe_changed.set()

    def _wake_writer(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _report_gauges(self) -> None:
        gauge = getattr(self._stats_hook, "gauge", None)
        if gauge is None:
            return
        stats = self.stats
        for name in GAUGES:
            try:
                gauge(name, getattr(stats, name))
            except Exception:
                log.debug("stats hook gauge failed", exc_info=True)


async def _cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; its own exception, other than the cancellation, is raised.

    One request is not always enough on Python 3.11: its asyncio.wait_for returns normally when the cancellation
    arrives just as what it waits for completes (fixed in 3.12), and the task goes on. A writer task that lost its
    cancellation so kept waiting for an acknowledgement that never came, and close() with it, for ever (a hang seen
    in CI). So the request is repeated until the task has ended."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_REPEAT_S)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Until ``event`` is set, for at most ``timeout`` seconds (None: no limit); whether it was set. Not
    asyncio.wait_for, which on Python 3.11 can lose a cancellation that arrives as the event is set (see
    _cancel_until_done): a writer would go on, or a cancelled saga's hook."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


def _sync_at_exit(spool: Spool) -> None:
    """The interpreter exits without close(): force the spool's last interval to the disk."""
    if spool.opened and spool.owner_pid == os.getpid() and spool.fsync is not FsyncMode.NEVER:
        with contextlib.suppress(OSError):
            spool.sync()


@dataclass(eq=False)
class _Acked:
    """A batch acknowledged by Fluss, waiting to be known safe."""

    start_seq: int  # it answers for the sequence numbers from here ...
    end_seq: int  # ... to before this one
    gen: int  # the generation it was handed over and acknowledged in
    acked_at: float  # loop time
    provable: bool  # handed over after a clean probe of its generation (else: re-sent before it can be safe)
    marks: dict[int, int] | None = None  # high watermark per bucket, read by a probe begun after acked_at


class _Safety:
    """When spooled events are safe, i.e. in an Iceberg snapshot, so that their segment can be deleted.

    pyfluss 1.0 does not tell at which offset a write was appended. So, per batch: Fluss acknowledged it (``acks=all``:
    each record lies below its bucket's high watermark), then a probe *begun after* the acknowledgement read every
    bucket's high watermark (``list_offsets`` latest, which is the high watermark for a client: Fluss
    ``Replica.getLatestOffset``); those are the batch's marks. The batch is safe once a lake snapshot
    (``get_latest_lake_snapshot``) has every bucket's offset at or above its mark, *with no sign of a restart since
    the batch was handed to pyfluss* (one generation).

    Why that is enough. Records are only ever removed from a bucket's log by a truncation, and (Fluss 0.9.1,
    docs/fluss-hw-truncation.md) an acknowledged record is truncated only when every replica of its bucket restarts
    and cuts its log back to a stale checkpointed high watermark. Without a truncation, each record of the batch
    stays at its offset o < mark from its append on; the tiering service reads each bucket's log from the last lake
    offset up to the high watermark of the moment (``TieringSplitGenerator``: a primary-key table's bucket is
    tiered from its log once it has a lake offset, from a KV snapshot the first time), so a lake offset >= mark > o
    means the record at o was read and committed to Iceberg, which no crash of Fluss undoes. Two things could break
    that, and each is a sign of restart here:

    - a truncation between the append and the lake commit. It takes a restart of every replica of a bucket, which
      leaves the bucket without a leader for at least the restart (a tablet server killed without a clean stop
      cannot register again before its ZooKeeper session expires: 40 s with the stack's ZooKeeper; docs, item 6).
      ``list_offsets`` asks every bucket's leader, so a probe in that window fails; probes run every
      ``probe_interval`` and a gap longer than ``max_probe_gap`` (a process paused, a loop blocked) counts as a
      failure, so the window is observed as long as it is longer than ``max_probe_gap``. Also counted: a failed
      write, a high watermark lower than the probe before, a change in the set of tablet servers.
    - a lake offset already beyond the log (the log was cut below what the lake holds: "log behind the lake"):
      records appended below the lake offset are never tiered. So a batch is handed to pyfluss only after a probe
      *of its generation* found every bucket's high watermark at or above its lake offset (the writer waits for
      one, at most ``probe_timeout``; a batch sent without one is re-sent before it can count): its records land
      at or above that high watermark, and the lake offset only grows with tiering, which reads up to the high
      watermark, so it cannot pass them unread. While a probe sees a bucket behind its lake, no batch is safe;
      when the log has caught up, everything not yet safe is re-sent (it lands above the lake offset).

    A sign of restart starts a new generation and re-sends every event not yet safe (``rewind_due``).
    """

    def __init__(self, listener: FlussAnalyticsListener) -> None:
        self.listener = listener
        self.gen = 0
        self.safe_seq = 0  # every event below this sequence number is safe
        self.acked: deque[_Acked] = deque()
        self.rewind_due = False
        self.latest: dict[int, int] | None = None  # the last successful probe's high watermarks
        self.servers: frozenset[int] | None = None
        self.last_ok: float | None = None  # loop time of the last successful probe
        self.failing = False  # probes fail right now (one sign per episode)
        self.behind = False  # a bucket's log ends below its lake offset
        self.replay_when_caught_up = False
        self.gen_started = time.monotonic()  # (the loop's clock)
        self.clean_at: float | None = None  # when a probe begun in this generation found no log behind its lake

    def reset(self, safe_seq: int) -> None:
        self._new_generation()
        self.safe_seq = safe_seq
        self.acked.clear()
        self.rewind_due = False
        self.latest = self.servers = self.last_ok = None
        self.failing = self.behind = self.replay_when_caught_up = False

    def unsafe(self) -> int:
        spool = self.listener.spool
        return 0 if spool is None or not spool.opened else spool.next_seq - self.safe_seq

    def oldest_unsafe_age(self) -> float:
        spool = self.listener.spool
        if spool is None or not spool.opened or self.safe_seq >= spool.next_seq:
            return 0.0
        stamp = spool.appended_at(self.safe_seq)
        return max(0.0, time.time() - stamp) if stamp is not None else 0.0

    # -------------------------------------------------------------------------------- signs of restart

    def _new_generation(self) -> None:
        self.gen += 1
        self.gen_started, self.clean_at = time.monotonic(), None

    def suspect(self, why: str, replay: bool = True) -> None:
        """A sign that Fluss servers restarted: nothing acknowledged so far can be proven safe any more."""
        self._new_generation()
        unsafe = self.unsafe()
        if replay:
            self.rewind_due = True
            self.listener._count("replay_rounds")
            self.listener._wake_writer()
        log.info("saga event spool: %s; %s the %d events not yet known to be in Iceberg", why,
                 "re-sending" if replay else "will re-send", unsafe)

    def rewound(self) -> None:
        self.acked.clear()
        self.rewind_due = False

    def probe_failed(self, exc: BaseException) -> None:
        if not self.failing:
            self.failing = True
            self.suspect(f"Fluss did not answer a probe ({type(exc).__name__}: {str(exc)[:200]})")
            spool = self.listener.spool
            log.warning("Fluss at %s does not answer the spool's probe (%s); saga events stay in the spool %s until "
                        "a probe shows them in Iceberg", self.listener.bootstrap_servers, type(exc).__name__,
                        spool.directory if spool is not None else "")
        self.latest = self.servers = None  # compare the next answer with nothing: the rewind above covers it

    # -------------------------------------------------------------------------------- a probe answered

    def acknowledged(self, batch: _Batch) -> None:
        if batch.gen == self.gen and batch.end_seq > self.safe_seq:
            loop = asyncio.get_running_loop()
            provable = self.clean_at is not None and batch.handed_at >= self.clean_at
            self.acked.append(_Acked(batch.start_seq, batch.end_seq, batch.gen, loop.time(), provable))

    def observed(self, seen: Observation, started: float, now: float) -> None:
        # The time without an answer: before this probe began, or while it was in flight (a probe is bounded by
        # probe_timeout <= max_probe_gap, so an answer later than that means the process or its loop was paused
        # after the probe began: seen as a flaky test, where the loop blocked with a probe scheduled, not yet run).
        silent = max(started - self.last_ok, now - started) if self.last_ok is not None else 0.0
        if not self.failing and silent > self.listener.max_probe_gap:
            self.suspect(f"no probe answered for {silent:.1f}s")
        elif self.latest is not None and any(seen.latest.get(b, 0) < o for b, o in self.latest.items()):
            went_back = sorted(b for b, o in self.latest.items() if seen.latest.get(b, 0) < o)
            self.suspect(f"the high watermark of bucket(s) {went_back} went back")
        elif self.servers is not None and seen.servers != self.servers:
            self.suspect(f"the tablet servers changed ({sorted(self.servers)} -> {sorted(seen.servers)})")
        self.failing = False
        self.last_ok, self.latest, self.servers = now, dict(seen.latest), seen.servers
        lake = seen.lake or {}
        behind = sorted(b for b, o in lake.items() if o > seen.latest.get(b, 0))
        if behind and not self.behind:
            self.behind = self.replay_when_caught_up = True
            self.suspect(f"the log of bucket(s) {behind} ends below the lake snapshot", replay=False)
        elif not behind and self.behind:
            self.behind = False
        if not self.behind and self.replay_when_caught_up:
            self.replay_when_caught_up = False
            self.suspect("the log caught up with the lake snapshot")
        if self.clean_at is None and not self.behind and started >= self.gen_started:
            self.clean_at = now  # batches handed over from now on are above every lake offset: see the docstring
            self.listener._wake_writer()
        for record in reversed(self.acked):  # the newest acknowledgements have no marks yet
            if record.marks is not None:
                break
            if record.gen == self.gen and record.acked_at <= started:
                record.marks = self.latest
        if self.behind or seen.lake is None:
            return
        upto = self.safe_seq
        while self.acked:
            record = self.acked[0]
            if record.gen != self.gen or record.marks is None or any(
                    lake.get(b, 0) < mark for b, mark in record.marks.items()):
                break
            if record.start_seq > upto:  # an acknowledgement is missing before it: never skip events (re-send)
                self.suspect(f"events {upto}..{record.start_seq} were not acknowledged in order")
                break
            if not record.provable:  # handed over before a clean probe: the lake may be past it without holding it
                self.suspect("events were handed over before a probe of this generation; re-sending them to prove "
                             "them")
                break
            self.acked.popleft()
            upto = max(upto, record.end_seq)
        if upto > self.safe_seq:
            released, self.safe_seq = upto - self.safe_seq, upto
            self.listener._released(upto, released)


@dataclass(frozen=True)
class Observation:
    """What a probe read: the high watermark of every bucket, the lake snapshot's offsets (None: no snapshot yet),
    and the ids of the tablet servers the cluster lists."""

    latest: dict[int, int]
    lake: dict[int, int] | None
    servers: frozenset[int] = frozenset()


class Probe(Protocol):
    """Reads an ``Observation``: ``FlussProbe``, or a stand-in in tests."""

    async def observe(self) -> Observation: ...
    async def close(self) -> None: ...


@dataclass(eq=False)
class _Batch:
    rows: list[SagaEvent]
    gen: int = 0  # spool: the safety generation it was handed over in
    seqs: list[int] = field(default_factory=list)  # spool: its events' sequence numbers
    start_seq: int = 0  # spool: the sequence numbers it answers for begin here (the previous batch's end_seq)
    refused: list[SagaEvent] = field(default_factory=list)
    flush: asyncio.Task[None] | None = None
    handed_at: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    timeouts: int = 0
    end_seq: int = 0  # spool: one past the sequence number of its last event


class FlushTimeout(Exception):
    """Fluss did not acknowledge a batch within write_timeout; its rows stay queued in the pyfluss writer."""


class Sink(Protocol):
    """Where batches go: ``FlussSink``, or a stand-in in tests."""

    async def queue(self, rows: Sequence[SagaEvent]) -> list[SagaEvent]: ...
    async def flush(self) -> None: ...
    async def close(self) -> None: ...
    async def reachable(self) -> bool: ...


class FlussSink:
    """One pyfluss connection and upsert writer for the events table.

    ``queue`` hands rows to the writer (connecting first if needed) and returns those pyfluss refused; ``flush``
    returns once everything queued before the call is acknowledged. ``close`` discards the connection, and with
    it whatever it still held; the next ``queue`` reconnects.
    """

    def __init__(self, bootstrap_servers: str, database: str, table: str, connect_timeout: float,
                 write_timeout: float, close_timeout: float = 5.0,
                 on_connect: Callable[[], None] = lambda: None, properties: Mapping[str, str] | None = None) -> None:
        self.bootstrap_servers, self.database, self.table = bootstrap_servers, database, table
        self._properties = dict(properties or {})  # the SASL login, if any: holds a password, never logged
        self.connect_timeout, self.write_timeout, self.close_timeout = connect_timeout, write_timeout, close_timeout
        self._on_connect = on_connect
        self._connection: Any = None
        self._writer: Any = None
        self._samples: list[Any] = []  # result handles of some rows queued since the last flush()

    async def queue(self, rows: Sequence[SagaEvent]) -> list[SagaEvent]:
        fresh = self._writer is None
        writer = self._writer or await self._connect()
        refused, accepted, error = [], None, None
        for start in range(0, len(rows), YIELD_EVERY):
            handle = None
            for row in rows[start:start + YIELD_EVERY]:
                try:
                    handle = writer.upsert(row)  # no I/O: pyfluss batches per bucket and sends from its own threads
                    accepted = row
                except Exception as exc:  # pyfluss raises FlussError for a bad value and for a broken writer
                    refused.append(row)
                    error = exc
            if handle is not None and (start % SAMPLE_EVERY == 0 or start + YIELD_EVERY >= len(rows)):
                self._samples.append(handle)
            await asyncio.sleep(0)  # let sagas run between chunks of a large batch
        if error is not None:
            # A bad row, or a writer that refuses everything? Ask again with a row it took (an idempotent
            # upsert): if that fails too, or no row was taken by a writer that has already worked, reconnect.
            try:
                if accepted is None and not fresh:
                    raise error
                if accepted is not None:
                    writer.upsert(accepted)
            except Exception as exc:
                raise ConnectionError(f"the pyfluss writer refuses rows: {exc}") from exc
        return refused

    async def flush(self) -> None:
        """Everything queued so far acknowledged; raises if the writer or a sampled row failed.

        pyfluss's flush() waits for the batches but does not report a failed one; a row's handle does. Waiting on
        every handle costs ten times the upsert itself, so one row in SAMPLE_EVERY is checked: enough to catch what
        fails every batch (table dropped or changed, writer fenced), and the batches are then re-sent.
        """
        writer, samples, self._samples = self._writer, self._samples, []
        if writer is None:
            raise ConnectionError("not connected")
        await writer.flush()
        await asyncio.gather(*(handle.wait() for handle in samples))

    async def reachable(self) -> bool:
        try:
            await self._check_reachable()
            return True
        except ConnectionError:
            return False

    async def close(self) -> None:
        """Close the connection, bounded: pyfluss's close drains its writer and waits forever if Fluss is down."""
        connection, self._connection, self._writer, self._samples = self._connection, None, None, []
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), self.close_timeout)
            except Exception as exc:  # timeout or a broken connection: nothing left to save
                log.debug("closing the Fluss connection: %s", exc)

    async def _connect(self) -> Any:
        import fluss

        await self._check_reachable()
        config = fluss.Config({"bootstrap.servers": self.bootstrap_servers, **self._properties})
        config.connect_timeout_ms = int(self.connect_timeout * 1000)
        # pyfluss reserves writer_batch_size of its 64 MB buffer per open bucket batch and blocks upsert() when the
        # buffer is full, by default forever, which would stall the event loop. Smaller reservations keep
        # max_in_flight batches over every bucket well inside it; if it ever fills, fail the write instead.
        config.writer_batch_size = 1024 * 1024
        config.writer_buffer_wait_timeout_ms = 1000
        self._on_connect()
        connection = await asyncio.wait_for(fluss.FlussConnection.create(config), self.connect_timeout)
        self._connection = connection
        try:
            table = await asyncio.wait_for(connection.get_table(fluss.TablePath(self.database, self.table)),
                                           self.connect_timeout)
            self._writer = table.new_upsert().create_writer()
        except BaseException:
            await self.close()
            raise
        return self._writer

    async def _check_reachable(self) -> None:
        await check_reachable(self.bootstrap_servers, self.connect_timeout)


async def check_reachable(bootstrap_servers: str, timeout: float) -> None:
    """Fail within ``timeout`` when no bootstrap server accepts TCP (pyfluss would retry far longer)."""
    errors = []
    for address in bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            errors.append(f"{address.strip()}: {exc or type(exc).__name__}")
            continue
        writer.close()
        return
    raise ConnectionError("no Fluss bootstrap server reachable (" + "; ".join(errors) + ")")


class FlussProbe:
    """What the spool's safety rule reads from Fluss, on a pyfluss connection of its own: every bucket's high
    watermark (``list_offsets`` latest), the latest lake snapshot's offsets, and the tablet servers' ids. Any error
    closes the connection (the next ``observe`` reconnects) and is raised."""

    def __init__(self, bootstrap_servers: str, database: str, table: str, connect_timeout: float,
                 properties: Mapping[str, str] | None = None) -> None:
        self.bootstrap_servers, self.database, self.table = bootstrap_servers, database, table
        self.connect_timeout = connect_timeout
        self._properties = dict(properties or {})  # the SASL login, if any: never logged
        self._connection: Any = None
        self._admin: Any = None
        self._path: Any = None
        self._table_id = 0
        self._buckets: list[int] = []

    async def observe(self) -> Observation:
        import fluss

        try:
            if self._admin is None:
                await self._connect()
            admin, path = self._admin, self._path
            # The lake first: a lake offset read before a high watermark is never above it (tiering reads up to
            # the high watermark), so "lake above the log" below means a log cut back, not a race of the reads.
            try:
                snapshot = await admin.get_latest_lake_snapshot(path)
            except fluss.FlussError as exc:
                if exc.error_code != fluss.ErrorCode.LAKE_SNAPSHOT_NOT_EXIST:
                    raise
                lake = None
            else:
                lake = {b: snapshot.get_bucket_offset(fluss.TableBucket(self._table_id, b)) or 0
                        for b in self._buckets}
            latest = await admin.list_offsets(path, self._buckets, fluss.OffsetSpec.latest())
            nodes = await admin.get_server_nodes()
        except BaseException:
            await self.close()
            raise
        servers = frozenset(n.id for n in nodes if n.server_type == "TabletServer")
        return Observation({int(b): int(o) for b, o in latest.items()}, lake, servers)

    async def close(self) -> None:
        connection, self._connection, self._admin = self._connection, None, None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), self.connect_timeout)
            except Exception as exc:
                log.debug("closing the probe's Fluss connection: %s", exc)

    async def _connect(self) -> None:
        import fluss

        await check_reachable(self.bootstrap_servers, self.connect_timeout)
        config = fluss.Config({"bootstrap.servers": self.bootstrap_servers, **self._properties})
        config.connect_timeout_ms = int(self.connect_timeout * 1000)
        self._connection = await asyncio.wait_for(fluss.FlussConnection.create(config), self.connect_timeout)
        admin = self._connection.get_admin()
        self._path = fluss.TablePath(self.database, self.table)
        info = await asyncio.wait_for(admin.get_table_info(self._path), self.connect_timeout)
        self._table_id, self._buckets = info.table_id, list(range(info.num_buckets))
        self._admin = admin
