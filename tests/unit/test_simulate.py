"""simulate without servers: real Sagaz sagas, the listener writing to an in-memory sink."""

from __future__ import annotations

import asyncio
import re
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


def test_an_anomaly_changes_only_the_sagas_in_its_window_and_nothing_else_of_the_plan() -> None:
    import random

    anomaly = simulate.parse_anomaly("saga=order,step=charge_payment,at=+10m,for=5m,failure_rate=1,duration_ms=80")
    assert anomaly == simulate.Anomaly("order", "charge_payment", 600.0, 300.0, 1.0, 80.0)
    plans = [simulate.plan(random.Random(5), 0.2) for _ in range(40)]  # noqa: S311
    offsets = [i * 30.0 for i in range(40)]  # a saga every 30 s: [600, 900) holds sagas 20..29
    changed, covered = simulate.with_anomalies(plans, [anomaly], offsets, random.Random(1))  # noqa: S311
    inside = {i for i in range(20, 30) if plans[i].kind == "order"}
    assert covered == [len(inside)] and inside
    for i, (before, after) in enumerate(zip(plans, changed, strict=True)):
        if i in inside:
            assert after.fail_at == "charge_payment" and after.step_ms["charge_payment"] == 80.0
        else:
            assert after == before


def test_a_run_with_an_anomaly_fails_where_it_was_injected_and_a_seed_still_reproduces_it() -> None:
    sink = MemorySink()
    anomaly = simulate.parse_anomaly("saga=fulfilment,step=book_courier,at=0,failure_rate=1")

    async def main() -> dict:
        async with FlussAnalyticsListener("127.0.0.1:1", database="sagaz", sink=sink) as listener:  # type: ignore[arg-type]
            return await simulate.simulate(listener, sagas=40, rate=0, failure_rate=0.0, seed=3,
                                           anomalies=[anomaly])

    summary = asyncio.run(main())
    failed = {(r.saga_name, r.step_name) for r in sink.rows if r.event_type == "step_failed"}
    assert failed == {("fulfilment", "book_courier")}
    assert summary["anomalies"][0]["sagas"] == summary["by_saga"]["fulfilment"]["failed"] > 0


@pytest.mark.parametrize(("spec", "field"), [
    ("saga=invoice,step=x,failure_rate=0.5", "saga='invoice'"),
    ("saga=order,step=book_courier,failure_rate=0.5", "step='book_courier'"),
    ("saga=order,step=ship_order,failure_rate=2", "failure_rate='2'"),
    ("saga=order,step=ship_order,at=soon,failure_rate=0.5", "at='soon'"),
    ("saga=order,step=ship_order", "give failure_rate"),
    ("saga=order,step=ship_order,rate=1", "'rate=1': expected KEY=VALUE"),
])
def test_a_bad_anomaly_names_the_field(spec: str, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        simulate.parse_anomaly(spec)


def test_the_simulated_clock_starts_in_the_past_and_runs_faster() -> None:
    import time

    clock = simulate.SimulatedClock(backdate_s=3600, time_scale=60)
    before = time.monotonic_ns()
    first = clock()
    assert abs(first - (time.time_ns() - 3600 * 10**9)) < 2 * 10**9
    time.sleep(0.05)
    simulated = clock() - first
    real = time.monotonic_ns() - before  # bounds the real time between the two stamps, however long sleep took
    assert 0.05e9 * 60 <= simulated <= real * 60  # every real nanosecond is 60 simulated ones
    assert not simulate.SimulatedClock().shifted
