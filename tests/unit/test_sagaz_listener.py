"""FlussAnalyticsListener without servers: real Sagaz sagas, an in-memory sink standing in for Fluss.

Covers the hook → event mapping on real sagas, the isolation of sagas from listener failures, retries without
duplicates, the overflow policies, and close()/loop-end delivery. The Fluss path itself is in tests/local/stacks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import Any

import pytest
from sagaz import Saga, action, compensate

from sagaz_lakehouse.saga_events import EventBuilder, SagaEvent
from sagaz_lakehouse.sagaz import FlussAnalyticsListener, FlussSink, ListenerStats, Overflow


class MemorySink:
    """Stands in for FlussSink: keeps acknowledged rows; flushes can fail a number of times, or wait for a gate."""

    def __init__(self, failures: int = 0, open_: bool = True) -> None:
        self.failures, self.flushes, self.closed = failures, 0, 0
        self.rows: list[SagaEvent] = []
        self._queued: list[SagaEvent] = []
        self._open = open_
        self._gate: asyncio.Event | None = None

    def gate(self) -> asyncio.Event:
        if self._gate is None:
            self._gate = asyncio.Event()
            if self._open:
                self._gate.set()
        return self._gate

    async def queue(self, rows: list[SagaEvent]) -> list[SagaEvent]:
        self._queued.extend(rows)
        return []

    async def flush(self) -> None:
        self.flushes += 1
        await self.gate().wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Fluss is down")
        self.rows.extend(self._queued)  # everything queued so far is acknowledged
        self._queued = []

    async def close(self) -> None:
        self.closed += 1
        self._queued = []  # a new connection starts empty

    async def reachable(self) -> bool:
        return True


def listener(sink: MemorySink, **options: Any) -> FlussAnalyticsListener:
    options = {"flush_interval": 0.01, "backoff_initial": 0.001, "backoff_max": 0.002, **options}
    return FlussAnalyticsListener("127.0.0.1:1", database="sagaz", sink=sink, **options)  # type: ignore[arg-type]


def order_saga(analytics: FlussAnalyticsListener, fail_at: str | None = None) -> Saga:
    class OrderSaga(Saga):
        saga_name = "order"
        listeners = [analytics]  # noqa: RUF012 - Sagaz reads this class attribute

        @action("reserve")
        async def reserve(self, ctx: dict) -> dict:
            return {"reservation": "r-1"}

        @compensate("reserve")
        async def release(self, ctx: dict) -> None:
            pass

        @action("charge", depends_on=["reserve"])
        async def charge(self, ctx: dict) -> dict:
            if fail_at == "charge":
                raise RuntimeError("card declined")
            return {"payment": "p-1"}

        @compensate("charge")
        async def refund(self, ctx: dict) -> None:
            pass

    return OrderSaga()


def types_and_steps(rows: list[SagaEvent], saga_id: str) -> list[tuple[str, str | None]]:
    return [(r.event_type, r.step_name) for r in sorted(rows, key=lambda r: r.timestamp) if r.saga_id == saga_id]


def test_real_sagas_give_the_expected_events() -> None:
    sink = MemorySink()

    async def main() -> None:
        async with listener(sink) as analytics:
            await order_saga(analytics).run({"order": 1}, saga_id="ok")
            with pytest.raises(RuntimeError, match="card declined"):
                await order_saga(analytics, fail_at="charge").run({"order": 2}, saga_id="bad")

    asyncio.run(main())
    assert types_and_steps(sink.rows, "ok") == [
        ("saga_started", None), ("step_started", "reserve"), ("step_completed", "reserve"),
        ("step_started", "charge"), ("step_completed", "charge"), ("saga_completed", None)]
    assert types_and_steps(sink.rows, "bad") == [
        ("saga_started", None), ("step_started", "reserve"), ("step_completed", "reserve"),
        ("step_started", "charge"), ("step_failed", "charge"), ("compensation_started", "reserve"),
        ("compensation_completed", "reserve"), ("saga_failed", None)]
    failed = [r for r in sink.rows if r.event_type == "step_failed"]
    assert [(r.error_type, r.error_message) for r in failed] == [("RuntimeError", "card declined")]
    assert len({r.event_id for r in sink.rows}) == len(sink.rows) == 14


def test_an_exception_inside_the_listener_never_reaches_the_saga(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()

    def broken_metrics(counter: str, n: int) -> None:
        raise RuntimeError("metrics backend down")

    async def main() -> tuple[dict, FlussAnalyticsListener]:
        builder = EventBuilder()
        builder.step_started = None  # type: ignore[assignment,method-assign]  # every step hook raises
        analytics = listener(sink, stats_hook=broken_metrics, builder=builder)
        result = await order_saga(analytics).run({"order": 1}, saga_id="s")
        await analytics.close()
        return result, analytics

    with caplog.at_level(logging.WARNING, logger="sagaz"):
        result, analytics = asyncio.run(main())
    assert result["payment"] == "p-1"
    assert analytics.stats.hook_errors == 2  # caught by the listener itself, not by Sagaz
    assert not [r for r in caplog.records if "Listener" in r.getMessage()]
    assert {r.event_type for r in sink.rows} == {"saga_started", "step_completed", "saga_completed"}


def test_failed_writes_are_retried_and_every_event_arrives_once() -> None:
    sink = MemorySink(failures=3)

    async def main() -> FlussAnalyticsListener:
        async with listener(sink) as analytics:
            for i in range(5):
                await order_saga(analytics).run({}, saga_id=f"s{i}")
        return analytics

    analytics = asyncio.run(main())
    stats = analytics.stats
    assert stats.enqueued == stats.written == len(sink.rows) == 30
    assert stats.write_failures == 3 and stats.retried >= 3 and stats.dropped == 0 and stats.pending == 0
    assert sink.closed >= 3  # every failure dropped the connection
    assert max(Counter(r.event_id for r in sink.rows).values()) == 1


@pytest.mark.parametrize("policy", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST, Overflow.BLOCK])
def test_a_full_buffer_drops_by_policy_with_one_warning(policy: Overflow, caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink(open_=False)  # Fluss never answers

    async def main() -> FlussAnalyticsListener:
        analytics = listener(sink, buffer_size=5, batch_size=2, overflow=policy, block_ms=1)
        for i in range(12):
            await analytics.on_saga_start("order", f"s{i}", {})
        sink.gate().set()
        await analytics.close()
        return analytics

    with caplog.at_level(logging.WARNING, logger="sagaz_lakehouse.sagaz"):
        analytics = asyncio.run(main())
    stats = analytics.stats
    assert stats.dropped == 7 and stats.written == 5 and stats.enqueued == 12 - (7 if policy != Overflow.DROP_OLDEST
                                                                                else 0)
    kept = sorted(r.saga_id for r in sink.rows)  # (the hooks never yield, so nothing was in flight)
    assert kept == (["s10", "s11", "s7", "s8", "s9"] if policy == Overflow.DROP_OLDEST
                    else ["s0", "s1", "s2", "s3", "s4"])
    assert len([r for r in caplog.records if "buffer full" in r.getMessage()]) == 1


def test_block_waits_for_room_instead_of_dropping() -> None:
    sink = MemorySink(open_=False)

    async def main() -> FlussAnalyticsListener:
        analytics = listener(sink, buffer_size=2, batch_size=2, overflow="block", block_ms=60_000)
        await analytics.on_saga_start("order", "s0", {})
        await analytics.on_saga_start("order", "s1", {})
        blocked = asyncio.create_task(analytics.on_saga_start("order", "s2", {}))
        while not analytics.waiting_for_room:  # the hook is waiting for room
            await asyncio.sleep(0)
        assert not blocked.done()
        sink.gate().set()
        await blocked
        await analytics.close()
        return analytics

    analytics = asyncio.run(main())
    assert analytics.stats.dropped == 0 and sorted(r.saga_id for r in sink.rows) == ["s0", "s1", "s2"]


def test_close_delivers_everything_and_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    delivered, stuck = MemorySink(), MemorySink(open_=False)

    async def main() -> tuple[FlussAnalyticsListener, FlussAnalyticsListener]:
        fine = listener(delivered, flush_interval=3600, batch_size=1000)  # nothing would be written before close
        hung = listener(stuck)
        for i in range(10):
            await fine.on_saga_start("order", f"s{i}", {})
            await hung.on_saga_start("order", f"s{i}", {})
        await fine.close()
        await hung.close(timeout=0.05)
        return fine, hung

    with caplog.at_level(logging.WARNING, logger="sagaz_lakehouse.sagaz"):
        fine, hung = asyncio.run(main())
    assert fine.stats.written == 10 and len(delivered.rows) == 10 and delivered.closed >= 1
    assert hung.stats.dropped == 10 and hung.stats.pending == 0 and stuck.closed >= 1
    assert any("10 saga events were not delivered" in r.getMessage() for r in caplog.records)


def test_events_left_when_the_loop_ends_without_close_get_one_last_attempt() -> None:
    sink = MemorySink()
    analytics = listener(sink, flush_interval=3600, batch_size=1000)

    async def sagas(prefix: str) -> None:
        for i in range(3):
            await order_saga(analytics).run({}, saga_id=f"{prefix}{i}")

    asyncio.run(sagas("first-loop-"))  # no close(): asyncio.run cancels the writer, which delivers and closes
    assert analytics.stats.written == 18 and sink.closed >= 1
    asyncio.run(sagas("second-loop-"))  # a later loop gets a new writer
    assert analytics.stats.written == 36 and analytics.stats.dropped == 0


def test_fluss_unreachable_fails_fast_and_sagas_do_not_notice() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    analytics = FlussAnalyticsListener(f"127.0.0.1:{port}", database="sagaz", flush_interval=0.01,
                                       backoff_initial=0.01, connect_timeout=1)

    async def main() -> dict:
        result = await order_saga(analytics).run({}, saga_id="s")
        while analytics.stats.write_failures < 2:  # a few reconnect attempts, each refused at once
            await asyncio.sleep(0.01)
        await analytics.close(timeout=0.1)
        return result

    assert asyncio.run(main())["payment"] == "p-1"
    stats = analytics.stats
    assert stats.enqueued == 6 and stats.written == 0 and stats.dropped == 6 and stats.retried >= 12


def test_the_sink_refuses_an_unreachable_server_within_its_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = FlussSink(f"127.0.0.1:{port}", "sagaz", "saga_events", connect_timeout=1, write_timeout=1)

    async def main() -> None:
        with pytest.raises(ConnectionError, match="no Fluss bootstrap server reachable"):
            await sink.queue([])
        assert not await sink.reachable()

    asyncio.run(main())


class StuckSink(MemorySink):
    """Fluss down for a while: the first connection's flushes hang until released; later connections work."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def flush(self) -> None:
        if not self.closed:
            await self.release.wait()
        await super().flush()


@pytest.mark.parametrize(("stuck_after", "replaced"), [(3600.0, False), (0.0, True)])
def test_an_unacknowledged_batch_keeps_its_writer_until_stuck_after(stuck_after: float, replaced: bool) -> None:
    async def main() -> tuple[FlussAnalyticsListener, StuckSink]:
        sink = StuckSink()
        analytics = listener(sink, stuck_after=stuck_after, write_timeout=0.01)
        await order_saga(analytics).run({}, saga_id="s")
        while analytics.stats.write_failures < 3 and not sink.closed:  # timeouts, or the connection replaced
            await asyncio.sleep(0.005)
        assert (sink.closed > 0) is replaced
        sink.release.set()
        assert await analytics.flush(timeout=10)
        await analytics.close()
        return analytics, sink

    analytics, sink = asyncio.run(main())
    stats = analytics.stats
    assert stats.written == 6 and len(sink.rows) == 6 and stats.dropped == 0
    assert stats.retried == (6 if replaced else 0)  # re-sent only when the connection was replaced


def test_prometheus_stats_hook_counts_every_listener_counter():
    from prometheus_client import CollectorRegistry

    from sagaz_lakehouse.sagaz import GAUGES, PROMETHEUS_COUNTERS, PROMETHEUS_GAUGES, prometheus_stats_hook

    registry = CollectorRegistry()
    hook = prometheus_stats_hook(registry)
    hook("dropped", 3)
    hook("dropped", 2)
    hook("written", 7)
    hook("no-such-counter", 1)  # a counter added later is ignored, never raised into the listener
    assert registry.get_sample_value("sagaz_lakehouse_listener_events_dropped_total") == 5
    assert registry.get_sample_value("sagaz_lakehouse_listener_events_written_total") == 7
    hook.gauge("spool_bytes", 4096)
    assert registry.get_sample_value("sagaz_lakehouse_listener_spool_bytes") == 4096
    assert set(PROMETHEUS_COUNTERS) == set(ListenerStats().as_dict()) - set(GAUGES)
    assert set(PROMETHEUS_GAUGES) == set(GAUGES)
