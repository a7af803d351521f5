"""FlussAnalyticsListener with a spool, without servers: real Sagaz sagas and hooks, a spool on the real file system
(tmp_path), real processes killed with SIGKILL; an in-memory sink and prober stand in for Fluss (its offsets and
lake snapshot are the test's to move). The Fluss path itself is in tests/local (the fault test kills the whole stack).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sagaz import Saga, action

from sagaz_lakehouse.saga_events import EventBuilder, SagaEvent
from sagaz_lakehouse.sagaz import GAUGES, FlussAnalyticsListener, Observation
from sagaz_lakehouse.spool import SUFFIX, Spool, SpoolInUse, decode, encode

REPO = Path(__file__).resolve().parents[2]


class Fluss:
    """The offsets the listener's safety rule reads: one bucket whose high watermark every acknowledged row moves,
    a lake offset the test moves (``tier``), probes that fail while ``down``."""

    def __init__(self) -> None:
        self.hw = 0
        self.lake: int | None = None
        self.down = False
        self.probe_down = False  # the probe fails while writes go through
        self.servers = frozenset({0})
        self.rows: list[SagaEvent] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def tier(self) -> None:
        self.lake = self.hw


class Sink:
    def __init__(self, fluss: Fluss) -> None:
        self.fluss, self.queued = fluss, []

    async def queue(self, rows: list[SagaEvent]) -> list[SagaEvent]:
        self.queued.extend(rows)
        return []

    async def flush(self) -> None:
        await self.fluss.gate.wait()
        if self.fluss.down:
            raise ConnectionError("Fluss is down")
        self.fluss.rows.extend(self.queued)
        self.fluss.hw += len(self.queued)
        self.queued = []

    async def close(self) -> None:
        self.queued = []

    async def reachable(self) -> bool:
        return not self.fluss.down


class Probe:
    def __init__(self, fluss: Fluss) -> None:
        self.fluss = fluss

    async def observe(self) -> Observation:
        if self.fluss.down or self.fluss.probe_down:
            raise ConnectionError("Fluss is down")
        return Observation({0: self.fluss.hw}, None if self.fluss.lake is None else {0: self.fluss.lake},
                           self.fluss.servers)

    async def close(self) -> None:
        pass


def listener(spool_dir: Path, fluss: Fluss, **options: Any) -> FlussAnalyticsListener:
    options = {"flush_interval": 0.01, "backoff_initial": 0.001, "backoff_max": 0.002, "probe_interval": 0.01,
               "probe_timeout": 1.0, "max_probe_gap": 30.0, "spool_fsync": "never", **options}
    return FlussAnalyticsListener("127.0.0.1:1", database="sagaz", sink=Sink(fluss), probe=Probe(fluss),  # type: ignore[arg-type]
                                  spool_dir=spool_dir, **options)


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def tier_until_safe(fluss: Fluss, analytics: FlussAnalyticsListener, timeout: float = 10.0) -> None:
    """Tiering rounds, one every 20 ms, until the listener knows every event to be in the lake."""
    deadline = time.monotonic() + timeout
    while not await analytics.wait_safe(timeout=0.02):
        assert time.monotonic() < deadline, f"not every event safe in time: {analytics.stats}"
        fluss.tier()


def segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob(f"*{SUFFIX}"))


def spooled_ids(spool_dir: Path) -> list[str]:
    return [event.event_id for path in segments(spool_dir) for line in path.read_bytes().splitlines(keepends=True)
            if (event := decode(line)) is not None]


def saga(analytics: FlussAnalyticsListener) -> Saga:
    class Three(Saga):
        saga_name = "three"
        listeners = [analytics]  # noqa: RUF012 - Sagaz reads this class attribute

        @action("a")
        async def a(self, ctx: dict) -> dict:
            return {"a": 1}

        @action("b", depends_on=["a"])
        async def b(self, ctx: dict) -> dict:
            return {"b": 2}

    return Three()


async def hooks(analytics: FlussAnalyticsListener, n: int, prefix: str = "s") -> None:
    """n saga_started events, one hook call each."""
    for i in range(n):
        await analytics.on_saga_start("order", f"{prefix}{i}", {"k": i})


# ------------------------------------------------------------------------------------------ the file format


def test_a_line_holds_the_whole_event_and_a_damaged_line_is_refused() -> None:
    event = EventBuilder().saga_started("order", "s-1", {"b": 1, "a": "é"})
    line = encode(event)
    assert decode(line) == event
    assert decode(line[:-5] + b"\n") is None  # torn
    assert decode(line.replace(b"s-1", b"s-2")) is None  # checksum
    assert decode(b"\0" * len(line)) is None  # a zeroed page after a machine crash


def test_a_second_owner_of_the_directory_is_refused(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    try:
        with pytest.raises(SpoolInUse, match=f"in use by process {os.getpid()}"):
            Spool(tmp_path).open()
    finally:
        first.close()
    second = Spool(tmp_path)
    second.open()  # free again
    second.close()


@pytest.mark.parametrize(("options", "field"), [({"spool_fsync": "sometimes"}, "spool_fsync"),
                                                ({"spool_fsync_interval": 0}, "spool_fsync_interval"),
                                                ({"spool_max_bytes": 10}, "spool_max_bytes"),
                                                ({"overflow": "drop_oldest"}, "drop_oldest"),
                                                ({"probe_timeout": 0.001}, "probe_timeout")])
def test_bad_spool_settings_are_refused_naming_the_field(tmp_path: Path, options: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        listener(tmp_path, Fluss(), **options)


# ------------------------------------------------------------------------------------------ durability


def test_every_event_is_in_the_spool_before_its_hook_returns(tmp_path: Path) -> None:
    fluss = Fluss()
    fluss.gate.clear()  # Fluss never acknowledges anything

    async def main() -> None:
        analytics = listener(tmp_path, fluss)
        builder = EventBuilder()
        for i in range(20):
            await analytics.on_saga_start("order", f"s{i}", {})
            expected = builder.saga_started("order", f"s{i}", {}).event_id
            assert spooled_ids(tmp_path)[-1] == expected  # on the file, as the hook returned
        await analytics.close(timeout=0.05)

    asyncio.run(main())
    assert len(spooled_ids(tmp_path)) == 20  # close() without delivery leaves them there


@pytest.mark.parametrize("task", ["_deliver_until_closed", "_watch"])
def test_close_ends_a_task_that_went_on_after_its_cancellation(tmp_path: Path, task: str) -> None:
    """Python 3.11's asyncio.wait_for returns normally when a cancellation arrives just as what it waits for
    completes, and the task goes on: close() then waited for ever for the writer (a hang seen in CI). close() asks
    again until the writer and the safety probe have ended."""
    fluss = Fluss()
    fluss.gate.clear()  # Fluss never acknowledges anything
    lost: list[str] = []

    async def goes_on_after_one_cancellation() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            lost.append(task)  # as 3.11's wait_for does in that race
        await asyncio.sleep(3600)

    async def main() -> None:
        analytics = listener(tmp_path, fluss)
        setattr(analytics, task, goes_on_after_one_cancellation)
        await analytics.on_saga_start("order", "s0", {})
        closing = asyncio.create_task(analytics.close(timeout=0.05))
        await asyncio.wait({closing}, timeout=10)  # not wait_for: its own cancellation would end close()'s wait
        done = closing.done()
        closing.cancel()
        assert done, f"close() still waits for {task} after 10 s"

    asyncio.run(main())
    assert lost == [task]
    assert len(spooled_ids(tmp_path)) == 1  # undelivered: still in the spool


CHILD = textwrap.dedent("""
    import asyncio, sys, time
    sys.path.insert(0, {tests!r})
    from test_spool import Fluss, listener, saga
    from pathlib import Path

    async def main():
        fluss = Fluss()
        fluss.gate = asyncio.Event()  # never acknowledged: every event stays in the spool only
        analytics = listener(Path({spool!r}), fluss, spool_fsync={fsync!r})
        for i in range({sagas}):
            await saga(analytics).run({{}}, saga_id=f"child-{{i}}")
            print(i, flush=True)  # every hook of saga i has returned
        time.sleep(60)

    asyncio.run(main())
""")


@pytest.mark.parametrize("fsync", ["never", "interval", "always"])
def test_a_kill_9_of_the_application_loses_no_event_whose_hook_returned(tmp_path: Path, fsync: str) -> None:
    """A real process runs real sagas with a spool and is killed with SIGKILL; a new listener on the directory
    delivers every event of every saga that finished, in every fsync mode."""
    spool_dir = tmp_path / "spool"
    code = CHILD.format(tests=str(Path(__file__).parent), spool=str(spool_dir), fsync=fsync, sagas=50)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout is not None
    finished = [int(child.stdout.readline()) for _ in range(50)]
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert finished == list(range(50))

    fluss = Fluss()

    async def main() -> FlussAnalyticsListener:
        async with listener(spool_dir, fluss) as analytics:
            assert await analytics.flush(timeout=10)
        return analytics

    analytics = asyncio.run(main())
    builder, expected = EventBuilder(), []
    for i in range(50):  # the same hooks give the same event ids
        saga_id, ctx = f"child-{i}", {"saga_id": f"child-{i}"}
        expected += [builder.saga_started("three", saga_id, ctx).event_id]
        for step in ("a", "b"):
            expected += [builder.step_started("three", step, ctx).event_id,
                         builder.step_completed("three", step, ctx).event_id]
        expected += [e.event_id for e in builder.saga_completed("three", saga_id, ctx)]
    assert sorted(r.event_id for r in fluss.rows) == sorted(expected)
    stats = analytics.stats
    assert stats.replayed == stats.written == 300 and stats.dropped == 0


def unsent_segment(tmp_path: Path) -> tuple[Fluss, Path]:
    """Ten hooks spooled while Fluss takes nothing, then the listener closed: its one segment, none of it sent."""
    fluss = Fluss()
    fluss.gate.clear()

    async def first() -> None:
        analytics = listener(tmp_path, fluss)
        await hooks(analytics, 10)
        await analytics.close(timeout=0.05)

    asyncio.run(first())
    [segment] = segments(tmp_path)
    return fluss, segment


def test_a_torn_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    fluss, segment = unsent_segment(tmp_path)
    with segment.open("ab") as handle:
        handle.write(encode(EventBuilder().saga_started("order", "torn", {}))[:40])  # a crash in mid-write
    fluss.gate.set()

    async def second() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss) as analytics:
            await hooks(analytics, 5, prefix="new")
            assert await analytics.flush(timeout=10)
        return analytics

    analytics = asyncio.run(second())
    assert len(fluss.rows) == 15 and analytics.stats.replayed == 10
    assert {r.saga_id for r in fluss.rows} == {*(f"s{i}" for i in range(10)), *(f"new{i}" for i in range(5))}


# ------------------------------------------------------------------------------------------ the safety rule


def test_segments_are_deleted_only_once_the_lake_holds_their_events(tmp_path: Path) -> None:
    fluss = Fluss()

    async def main() -> None:
        async with listener(tmp_path, fluss, spool_segment_bytes=4096, spool_max_bytes=1 << 20) as analytics:
            await hooks(analytics, 200)
            assert await analytics.flush(timeout=10)  # acknowledged...
            await asyncio.sleep(0.1)  # ... and probed: still not in the lake
            assert len(segments(tmp_path)) > 3 and analytics.stats.unsafe == 200 and analytics.stats.safe == 0
            assert not await analytics.wait_safe(timeout=0.05)
            fluss.tier()
            assert await analytics.wait_safe(timeout=10)
            stats = analytics.stats
            assert stats.safe == 200 and stats.unsafe == 0 and stats.oldest_unsafe_age_s == 0
            assert len(segments(tmp_path)) == 1  # the segment being appended to stays while open
        assert segments(tmp_path) == []  # closed with everything safe: nothing left

    asyncio.run(main())


def test_the_marks_come_from_a_probe_begun_after_the_acknowledgement(tmp_path: Path) -> None:
    """A lake offset that covers the high watermark of before the batch was written proves nothing."""
    fluss = Fluss()

    async def main() -> None:
        async with listener(tmp_path, fluss, probe_interval=0.2, probe_timeout=1) as analytics:
            await hooks(analytics, 5)
            fluss.lake = 0  # a snapshot, but of nothing of ours
            assert await analytics.flush(timeout=10)
            await asyncio.sleep(0.5)
            assert analytics.stats.safe == 0
            fluss.tier()
            assert await analytics.wait_safe(timeout=10)

    asyncio.run(main())


def resend_after(tmp_path: Path, sign: Any) -> tuple[FlussAnalyticsListener, Counter[str]]:
    """200 events acknowledged, not yet in the lake; then ``sign``: every one of them must be sent again."""
    fluss = Fluss()

    async def main() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss) as analytics:
            await hooks(analytics, 200)
            assert await analytics.flush(timeout=10)
            await asyncio.sleep(0.05)
            await sign(fluss, analytics)
            await until(lambda: len(fluss.rows) >= 400)
            await tier_until_safe(fluss, analytics)
        return analytics

    analytics = asyncio.run(main())
    return analytics, Counter(r.event_id for r in fluss.rows)


async def probe_fails(fluss: Fluss, _: FlussAnalyticsListener) -> None:
    fluss.down = True
    await asyncio.sleep(0.1)
    fluss.down = False


async def hw_goes_back(fluss: Fluss, _: FlussAnalyticsListener) -> None:
    fluss.hw -= 50  # a log cut back to a stale high watermark


async def servers_change(fluss: Fluss, _: FlussAnalyticsListener) -> None:
    fluss.servers = frozenset({0, 1})


async def write_fails(fluss: Fluss, analytics: FlussAnalyticsListener) -> None:
    fluss.down = True  # probes fail too while down; whichever notices first starts the re-send
    await hooks(analytics, 1, prefix="during")
    await until(lambda: analytics.stats.write_failures > 0)
    fluss.down = False


@pytest.mark.parametrize("sign", [probe_fails, hw_goes_back, servers_change, write_fails])
def test_a_sign_of_restart_resends_every_event_not_yet_safe(tmp_path: Path, sign: Any) -> None:
    analytics, sent = resend_after(tmp_path, sign)
    stats = analytics.stats
    assert sum(1 for n in sent.values() if n >= 2) >= 200  # the 200 acknowledged ones went twice
    assert stats.replayed >= 200 and stats.replay_rounds >= 1 and stats.dropped == 0 and stats.safe >= 200


def test_a_long_pause_of_the_process_counts_as_a_sign_of_restart(tmp_path: Path) -> None:
    fluss = Fluss()

    async def main() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss, probe_timeout=0.5, max_probe_gap=1.0) as analytics:
            await hooks(analytics, 10)
            assert await analytics.flush(timeout=10)
            await asyncio.sleep(0.05)
            time.sleep(2.0)  # the loop is blocked: no probe can run (a SIGSTOP, a frozen pod)
            await until(lambda: len(fluss.rows) >= 20)
        return analytics

    assert asyncio.run(main()).stats.replay_rounds >= 1


def test_a_pause_while_a_probe_was_in_flight_counts_as_a_gap_too(tmp_path: Path) -> None:
    """The loop blocked after a probe began (its task scheduled, not run yet: the race behind a flaky run of the test
    above): the answer arrives right after the pause, so the time before the probe began was short, but the probe
    itself took longer than max_probe_gap, which only a pause explains (a probe is bounded by probe_timeout)."""
    fluss = Fluss()
    analytics = listener(tmp_path, fluss, probe_timeout=0.5, max_probe_gap=1.0)
    safety = analytics._safety
    seen = Observation({0: 0}, None, frozenset({0}))
    safety.observed(seen, started=100.0, now=100.01)
    safety.observed(seen, started=100.02, now=100.03)  # a normal probe: no sign
    assert analytics.stats.replay_rounds == 0
    safety.observed(seen, started=100.04, now=102.05)  # began at once, answered after a 2 s pause
    assert analytics.stats.replay_rounds == 1 and safety.rewind_due
    safety.observed(seen, started=103.6, now=103.61)  # 1.55 s since the last answer before it began
    assert analytics.stats.replay_rounds == 2


def test_a_log_behind_its_lake_snapshot_is_resent_once_it_caught_up(tmp_path: Path) -> None:
    """Records appended below the lake offset are never tiered: wait until the log is past it, then re-send."""
    fluss = Fluss()

    async def main() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss) as analytics:
            fluss.lake = 100  # the lake holds more than the log (cut back by a crash)
            await hooks(analytics, 30)
            assert await analytics.flush(timeout=10)
            await asyncio.sleep(0.1)
            assert len(fluss.rows) == 30 and analytics.stats.safe == 0  # acknowledged, not re-sent, not safe
            await hooks(analytics, 80, prefix="more")  # the log passes the lake offset: 110 > 100
            await until(lambda: len(fluss.rows) >= 110 + 110)  # then everything not yet safe is sent again
            fluss.tier()
            assert await analytics.wait_safe(timeout=10)
        return analytics

    stats = asyncio.run(main()).stats
    assert stats.safe == 110 and stats.replay_rounds == 1


# ------------------------------------------------------------------------------------------ outages and budget


def test_fluss_down_longer_than_the_buffer_spills_to_disk_and_drops_nothing(tmp_path: Path) -> None:
    fluss = Fluss()
    fluss.gate.clear()

    async def main() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss, buffer_size=10, batch_size=4) as analytics:
            await hooks(analytics, 500)
            await asyncio.sleep(0.05)
            assert len(analytics._buffer) + analytics._in_flight <= 10  # memory holds the window only
            assert analytics.stats.pending == 500
            fluss.gate.set()
            assert await analytics.flush(timeout=20)
        return analytics

    analytics = asyncio.run(main())
    assert [r.saga_id for r in fluss.rows] == [f"s{i}" for i in range(500)]  # in order
    stats = analytics.stats
    assert stats.written == 500 and stats.dropped == 0 and stats.spooled == 500


def test_a_full_spool_drops_the_newest_events_and_counts_them(tmp_path: Path) -> None:
    fluss = Fluss()
    fluss.gate.clear()

    async def main() -> FlussAnalyticsListener:
        analytics = listener(tmp_path, fluss, spool_segment_bytes=4096, spool_max_bytes=8192)
        await hooks(analytics, 200)
        await analytics.close(timeout=0.05)
        return analytics

    stats = asyncio.run(main()).stats
    assert 0 < stats.spooled < 200 and stats.dropped == 200 - stats.spooled
    assert sum(p.stat().st_size for p in segments(tmp_path)) < 8192 + 300


def test_a_full_spool_blocks_until_the_lake_frees_a_segment(tmp_path: Path) -> None:
    fluss = Fluss()

    async def main() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss, spool_segment_bytes=4096, spool_max_bytes=8192, overflow="block",
                            block_ms=60_000) as analytics:
            blocked = asyncio.create_task(hooks(analytics, 100))  # about 17 KiB
            await until(lambda: analytics.waiting_for_room == 1)
            assert analytics.stats.spooled < 100
            while not blocked.done():  # the lake takes the first segments: room again, and so on
                fluss.tier()
                await asyncio.sleep(0.01)
            await analytics.flush(timeout=10)
        return analytics

    stats = asyncio.run(main()).stats
    assert stats.dropped == 0 and stats.spooled == 100


@pytest.mark.parametrize("mode", ["always", "interval", "never"])
def test_each_fsync_mode(tmp_path: Path, mode: str) -> None:
    fluss = Fluss()

    async def main() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss, spool_fsync=mode, spool_fsync_interval=0.01) as analytics:
            await hooks(analytics, 50)
            await asyncio.sleep(0.1)
            assert analytics.spool is not None
            syncs = analytics.spool.syncs
            assert (syncs > 0) is (mode == "interval")
        return analytics

    assert asyncio.run(main()).stats.spooled == 50


def test_the_loop_ending_without_close_keeps_the_events_for_the_next_loop(tmp_path: Path) -> None:
    fluss = Fluss()
    fluss.gate.clear()
    analytics = listener(tmp_path, fluss)

    asyncio.run(hooks(analytics, 20))  # no close(): the writer is cancelled with its loop
    assert analytics.stats.dropped == 0 and len(spooled_ids(tmp_path)) == 20
    fluss.gate = asyncio.Event()
    fluss.gate.set()

    async def later() -> None:
        await hooks(analytics, 5, prefix="later")
        assert await analytics.flush(timeout=10)
        await analytics.close()

    asyncio.run(later())
    assert len({r.event_id for r in fluss.rows}) == 25


def test_gauges_reach_the_stats_hook(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from sagaz_lakehouse.sagaz import prometheus_stats_hook

    registry = CollectorRegistry()
    fluss = Fluss()

    async def main() -> None:
        async with listener(tmp_path, fluss, stats_hook=prometheus_stats_hook(registry)) as analytics:
            await hooks(analytics, 30)
            assert await analytics.flush(timeout=10)
            await asyncio.sleep(0.1)

    asyncio.run(main())
    value = registry.get_sample_value
    assert value("sagaz_lakehouse_listener_events_spooled_total") == 30
    assert value("sagaz_lakehouse_listener_unsafe_events") == 30
    assert value("sagaz_lakehouse_listener_spool_bytes") > 30 * 100
    assert value("sagaz_lakehouse_listener_oldest_unsafe_event_age_seconds") >= 0
    assert set(GAUGES) == {"pending", "spool_bytes", "unsafe", "oldest_unsafe_age_s"}


def test_stats_are_plain_values() -> None:
    stats = FlussAnalyticsListener("127.0.0.1:1", database="sagaz").stats
    json.dumps(stats.as_dict())


def test_a_damaged_line_is_skipped_and_released_with_its_neighbours(tmp_path: Path) -> None:
    fluss, segment = unsent_segment(tmp_path)
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b"s4", b"s9")  # a flipped byte: the checksum no longer matches
    segment.write_bytes(b"".join(lines))
    fluss.gate.set()

    async def second() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss) as analytics:
            assert await analytics.flush(timeout=10)
            fluss.tier()
            assert await analytics.wait_safe(timeout=10)
            assert analytics.spool is not None and analytics.spool.corrupt == 1
        return analytics

    analytics = asyncio.run(second())
    assert sorted(r.saga_id for r in fluss.rows) == sorted(f"s{i}" for i in range(10) if i != 4)
    assert analytics.stats.safe == 10 and segments(tmp_path) == []


def test_events_handed_over_before_a_probe_of_their_generation_are_sent_again_before_they_count(tmp_path: Path) -> None:
    """After a restart, the log may have been cut below the lake offset and refilled by other writers before the
    listener's first probe sees it: records written then, below the lake offset, are never tiered. So batches go to
    Fluss only after a probe of the current generation (for at most probe_timeout); those that went without one are
    sent again before they can count as safe."""
    fluss = Fluss()

    async def main() -> FlussAnalyticsListener:
        async with listener(tmp_path, fluss, probe_timeout=0.2, max_probe_gap=30) as analytics:
            await hooks(analytics, 50)
            await tier_until_safe(fluss, analytics)
            fluss.probe_down = True  # a restart: the probe fails from here on ...
            await until(lambda: analytics.stats.replay_rounds == 1)
            await hooks(analytics, 30, prefix="blind")  # ... while writes go through (after probe_timeout)
            await until(lambda: len(fluss.rows) == 80)
            await asyncio.sleep(0.1)
            fluss.probe_down = False
            await tier_until_safe(fluss, analytics)  # once the lake is past them, the 30 are sent again
        return analytics

    analytics = asyncio.run(main())
    sent = Counter(r.saga_id for r in fluss.rows)
    assert all(sent[f"blind{i}"] == 2 for i in range(30)) and all(sent[f"s{i}"] == 1 for i in range(50))
    assert analytics.stats.safe == 80 and analytics.stats.replay_rounds == 2
