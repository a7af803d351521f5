"""simulate without servers: real Sagaz sagas, the listener writing to an in-memory sink."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from sagaz_lakehouse import simulate
from sagaz_lakehouse.sagaz import FlussAnalyticsListener


class MemorySink:
    def __init__(self) -> None:
        self.rows: list = []

    async def queue(self, rows: list) -> list:
        self.rows.extend(rows)
        return []

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def reachable(self) -> bool:
        return True


def run(seed: int) -> tuple[dict, Counter, list]:
    sink = MemorySink()
    seen: list[tuple[int, int]] = []

    async def main() -> dict:
        async with FlussAnalyticsListener("127.0.0.1:1", database="sagaz", sink=sink) as listener:  # type: ignore[arg-type]
            return await simulate.simulate(listener, sagas=60, rate=0, failure_rate=0.5, seed=seed,
                                           progress=lambda done, total: seen.append((done, total)))

    summary = asyncio.run(main())
    return summary, Counter(r.event_type for r in sink.rows), seen


def test_the_summary_matches_the_events_and_a_seed_reproduces_the_run() -> None:
    summary, events, seen = run(seed=11)
    assert summary["sagas"] == events["saga_started"] == 60
    assert summary["completed"] == events["saga_completed"] and summary["failed"] == events["saga_failed"]
    assert summary["failed"] > 0 and summary["completed"] > 0
    assert summary["compensations_failed"] == events["compensation_failed"] > 0  # seed 11 has two
    assert events["compensation_started"] == events["compensation_completed"] + events["compensation_failed"]
    assert events["step_failed"] == summary["failed"]
    assert seen[-1] == (60, 60) and len(seen) == 60

    again, events_again, _ = run(seed=11)
    assert again["run_id"] != summary["run_id"]  # new saga ids, so no row of the first run is overwritten
    same = ("completed", "failed", "compensations_failed", "by_saga")
    assert {k: again[k] for k in same} == {k: summary[k] for k in same} and events_again == events


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        asyncio.run(simulate.simulate(None, sagas=1, failure_rate=2))


def test_run_refuses_at_once_when_fluss_is_not_reachable() -> None:
    import socket

    from sagaz_lakehouse.errors import StackNotReachable

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StackNotReachable, match=f"127.0.0.1:{port}"):
        simulate.run(sagas=1, bootstrap_servers=f"127.0.0.1:{port}", database="sagaz")


def test_tenths_reports_each_tenth() -> None:
    seen: list[str] = []
    progress = simulate.tenths(seen.append)
    for done in range(1, 26):
        progress(done, 25)
    assert seen == [f"{n}/25 sagas" for n in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25)]
