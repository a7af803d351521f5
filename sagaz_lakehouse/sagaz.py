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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import sagaz

from sagaz_lakehouse.saga_events import EventBuilder, SagaEvent

log = logging.getLogger(__name__)

TABLE = "saga_events"  # tables.TABLE; not imported to keep the listener free of the CLI's modules
YIELD_EVERY = 64  # rows handed to pyfluss between two yields to the event loop (~0.3 ms): sagas wait no longer
SAMPLE_EVERY = 256  # one row's result handle checked per this many (see FlussSink.flush)


class Overflow(StrEnum):
    """What a hook does when the buffer is full (Fluss unreachable for longer than the buffer lasts)."""

    BLOCK = "block"  # wait up to block_ms for room (slowing the saga by at most that), then drop the new event
    DROP_NEWEST = "drop_newest"  # drop the new event at once
    DROP_OLDEST = "drop_oldest"  # make room by dropping the oldest buffered event


@dataclass
class ListenerStats:
    """Counters since the listener was created (``pending``: buffered or in flight right now)."""

    enqueued: int = 0
    written: int = 0
    retried: int = 0  # events re-sent after a failed write attempt
    dropped: int = 0  # events lost: buffer overflow, or still pending when close() gave up
    write_failures: int = 0  # failed write attempts (each followed by a reconnect)
    connects: int = 0
    hook_errors: int = 0  # exceptions inside the listener's own hooks (swallowed)
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


StatsHook = Callable[[str, int], None]  # (counter name, increment): e.g. prometheus_client Counter.inc
# prometheus_stats_hook's metric per counter (the alert rules read sagaz_lakehouse_listener_events_dropped_total).
PROMETHEUS_COUNTERS = {
    "enqueued": ("sagaz_lakehouse_listener_events_enqueued", "saga events the listener accepted"),
    "written": ("sagaz_lakehouse_listener_events_written", "saga events acknowledged by Fluss"),
    "retried": ("sagaz_lakehouse_listener_events_retried", "saga events re-sent after a failed write"),
    "dropped": ("sagaz_lakehouse_listener_events_dropped", "saga events lost (buffer full, or undelivered at close)"),
    "write_failures": ("sagaz_lakehouse_listener_write_failures", "failed write attempts to Fluss"),
    "connects": ("sagaz_lakehouse_listener_connects", "connections made to Fluss"),
    "hook_errors": ("sagaz_lakehouse_listener_hook_errors", "exceptions inside the listener's hooks (swallowed)"),
}


def prometheus_stats_hook(registry: Any = None) -> StatsHook:
    """A ``stats_hook`` that counts into prometheus_client counters (``<name>_total``), in ``registry`` (default:
    prometheus_client's global one, which the application exposes with its own metrics endpoint, e.g. Sagaz's
    ``start_metrics_server``). Needs prometheus-client (``pip install 'sagaz[prometheus]'``), imported only here.

    Use it once per registry: ``FlussAnalyticsListener(stats_hook=prometheus_stats_hook())``."""
    from prometheus_client import REGISTRY, Counter

    counters = {name: Counter(metric, doc, registry=registry if registry is not None else REGISTRY)
                for name, (metric, doc) in PROMETHEUS_COUNTERS.items()}

    def hook(counter: str, increment: int) -> None:
        metric = counters.get(counter)
        if metric is not None:
            metric.inc(increment)

    return hook


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
        buffer_size: events held while Fluss is slow or unreachable (in flight included).
        batch_size: most events per batch; a batch is handed to pyfluss once full, or ``flush_interval`` s after
            its first event arrived, whichever comes first.
        max_in_flight: batches handed to pyfluss and not yet acknowledged.
        overflow, block_ms: the policy when the buffer is full; see ``Overflow``.
        connect_timeout: seconds for one connection attempt.
        write_timeout: seconds to wait for a batch's acknowledgement before counting a failed attempt (the
            writer keeps waiting: pyfluss retries the batch itself and delivers it once Fluss is back).
        stuck_after: seconds a batch may stay unacknowledged while Fluss accepts connections before the
            connection is replaced and the batch re-sent.
        backoff_initial, backoff_max: reconnect delay in seconds, doubled after each failed attempt (with jitter).
        stats_hook: called as ``stats_hook(counter, increment)`` on every counter change.
        builder, sink: replace the event builder (clocks) or the Fluss writer, e.g. in tests.
    """

    def __init__(self, bootstrap_servers: str | None = None, *, database: str | None = None, table: str = TABLE,
                 buffer_size: int = 100_000, batch_size: int = 5_000, flush_interval: float = 0.2,
                 max_in_flight: int = 3, overflow: Overflow | str = Overflow.DROP_NEWEST, block_ms: float = 0.0,
                 connect_timeout: float = 5.0, write_timeout: float = 10.0, stuck_after: float = 60.0,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0, stats_hook: StatsHook | None = None,
                 builder: EventBuilder | None = None, sink: Sink | None = None,
                 fluss_properties: Mapping[str, str] | None = None) -> None:
        if min(buffer_size, batch_size, max_in_flight) < 1 or flush_interval <= 0 or block_ms < 0:
            raise ValueError("buffer_size, batch_size and max_in_flight must be >= 1, flush_interval > 0, "
                             "block_ms >= 0")
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
        """A snapshot of the counters."""
        snapshot = ListenerStats(**self._stats.as_dict())
        snapshot.pending = self._pending()
        return snapshot

    @property
    def waiting_for_room(self) -> int:
        """How many hooks wait right now for room in a full buffer (overflow policy ``block``)."""
        return self._waiting_for_room

    async def start(self) -> None:
        """Start the writer now (it also starts with the first event): connects in the background."""
        self._ensure_pump()

    async def flush(self, timeout: float | None = None) -> bool:
        """Write everything buffered now; False if ``timeout`` seconds passed first (events stay buffered)."""
        if not self._pending():
            return True
        self._ensure_pump()
        assert self._wakeup is not None and self._idle is not None
        self._urgent = True  # no lingering for a fuller batch
        self._wakeup.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 30.0) -> ListenerStats:
        """Deliver what is buffered (retrying for up to ``timeout`` s), then close the Fluss connection.

        Events still undelivered after ``timeout`` are counted as dropped, with a warning. Idempotent.
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
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._sink.close()  # the writer task closes it too; this covers a task that never ran
        self._give_up(f"close() gave up after {timeout:g}s")
        return self.stats

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
        depth = len(self._buffer)
        if depth == 1:
            self._first_buffered_at = self._task.get_loop().time()  # type: ignore[union-attr]
            self._idle.clear()  # type: ignore[union-attr]  # both events are set by _ensure_pump
            self._wakeup.set()  # type: ignore[union-attr]
        elif depth == self.batch_size:
            self._wakeup.set()  # type: ignore[union-attr]
        return True

    async def _overflow_wait(self, event: SagaEvent) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.block_ms / 1000
        assert self._room is not None
        self._waiting_for_room += 1
        try:
            while self._pending() >= self.buffer_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self._drop(1)
                    return
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), remaining)
        finally:
            self._waiting_for_room -= 1
        self._offer(event)

    def _drop(self, n: int) -> None:
        self._count("dropped", n)
        if not self._overflowing:
            self._overflowing = True
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
        return len(self._buffer) + self._in_flight

    # ------------------------------------------------------------------------------------------ writer side

    def _ensure_pump(self) -> None:
        """Start the writer task on the running loop (again, if the loop it ran on has finished)."""
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        self._wakeup, self._room, self._idle = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._closing = self._urgent = False
        self._task = loop.create_task(self._pump(), name="FlussAnalyticsListener writer")
        self._first_buffered_at = loop.time()
        if self._pending():
            self._wakeup.set()
        else:
            self._idle.set()

    async def _pump(self) -> None:
        try:
            await self._deliver_until_closed()
        except asyncio.CancelledError:
            if not self._closing:  # the loop is shutting down without close(): one bounded last attempt
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(self._last_attempt(), self.write_timeout)
                self._give_up("the event loop ended before close()")
            raise
        finally:
            self._abandon_batches()
            await asyncio.shield(self._sink.close())

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
            if len(self._batches) < self.max_in_flight and self._batch_due(loop):
                batch = _Batch(self._take(self.batch_size))
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
                if self._closing and not self._buffer:
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
        return depth >= self.batch_size or (depth > 0 and (
            self._closing or self._urgent or loop.time() - self._first_buffered_at >= self.flush_interval))

    async def _linger(self, loop: asyncio.AbstractEventLoop) -> None:
        """Nothing in flight and no batch due: wait for events, or for the buffered ones to become due."""
        assert self._wakeup is not None and self._idle is not None
        self._wakeup.clear()
        if not self._buffer:
            self._idle.set()
            self._urgent = False
            await self._wakeup.wait()
            return
        remaining = self._first_buffered_at + self.flush_interval - loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), max(remaining, 0.0))

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
        self._requeue_batches()
        await self._sink.close()
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
        return min(backoff * 2, self.backoff_max)

    def _take(self, n: int) -> list[SagaEvent]:
        buffer = self._buffer
        rows = [buffer.popleft() for _ in range(min(n, len(buffer)))]
        if buffer:
            self._first_buffered_at = asyncio.get_running_loop().time()
        return rows

    def _requeue_batches(self) -> None:
        """Batches not acknowledged go back to the front of the buffer, in order, to be sent again."""
        self._abandon_batches()
        while self._batches:
            batch = self._batches.pop()
            self._in_flight -= len(batch.rows)
            self._count("retried", len(batch.rows))
            self._buffer.extendleft(reversed(batch.rows))

    def _abandon_batches(self) -> None:
        for batch in self._batches:
            if batch.flush is not None and not batch.flush.done():
                batch.flush.cancel()

    def _written(self, batch: _Batch) -> None:
        if batch.refused:  # never retried: pyfluss refused their values, and would again
            self._count("dropped", len(batch.refused))
            log.error("pyfluss refused %d saga events (dropped), e.g. %r", len(batch.refused), batch.refused[0])
        self._count("written", len(batch.rows) - len(batch.refused))
        if self._failing:
            log.warning("Fluss at %s reachable again; buffered saga events are being delivered",
                        self.bootstrap_servers)
        self._failing = self._overflowing = False
        if self._room is not None:
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
        if lost:
            self._buffer.clear()
            self._batches.clear()
            self._in_flight = 0
            self._count("dropped", lost)
            log.warning("%d saga events were not delivered to Fluss at %s (%s)", lost, self.bootstrap_servers, why)
        if self._idle is not None:
            self._idle.set()


@dataclass(eq=False)
class _Batch:
    rows: list[SagaEvent]
    refused: list[SagaEvent] = field(default_factory=list)
    flush: asyncio.Task[None] | None = None
    handed_at: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    timeouts: int = 0


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
        """Fail within connect_timeout when no bootstrap server accepts TCP (pyfluss would retry far longer)."""
        errors = []
        for address in self.bootstrap_servers.split(","):
            host, _, port = address.strip().rpartition(":")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), self.connect_timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                errors.append(f"{address.strip()}: {exc or type(exc).__name__}")
                continue
            writer.close()
            return
        raise ConnectionError("no Fluss bootstrap server reachable (" + "; ".join(errors) + ")")
