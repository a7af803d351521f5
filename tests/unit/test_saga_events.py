"""Event building without servers: ids, durations, context keys, timestamps, compensation_failed from ctx markers."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sagaz_lakehouse import saga_events as ev
from sagaz_lakehouse.saga_events import EventBuilder

MS = 1_000_000  # ns
T0_WALL = 1_767_268_800 * 10**9  # 2026-01-01 12:00:00 UTC


class Clock:
    """Both clocks of the builder, advanced by hand."""

    def __init__(self) -> None:
        self.mono, self.wall = 10**12, T0_WALL

    def advance(self, ms: float) -> None:
        self.mono += int(ms * MS)
        self.wall += int(ms * MS)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def builder(clock: Clock) -> EventBuilder:
    return EventBuilder(wall_ns=lambda: clock.wall, mono_ns=lambda: clock.mono)


def ctx(saga_id: str = "s-1", **values) -> dict:
    return {"saga_id": saga_id, **values}


def test_a_successful_saga_gives_ids_durations_and_context_keys(builder: EventBuilder, clock: Clock) -> None:
    context = ctx(order_id=7)
    started = builder.saga_started("order", "s-1", context)
    clock.advance(2)
    enter = builder.step_started("order", "reserve", context)
    clock.advance(50.4)
    context.update({"reservation": "r-1", "__reserve_completed": True})
    done = builder.step_completed("order", "reserve", context)
    clock.advance(1)
    [end] = builder.saga_completed("order", "s-1", context)

    assert [e.event_type for e in (started, enter, done, end)] == [
        "saga_started", "step_started", "step_completed", "saga_completed"]
    assert started.duration_ms is None and started.total_duration_ms == 0 and started.step_name is None
    assert enter.duration_ms is None and enter.total_duration_ms == 2
    assert done.duration_ms == 50 and done.total_duration_ms == 52  # floor of 50.4 / 52.4 ms
    assert end.duration_ms is None and end.total_duration_ms == 53
    assert started.context_keys == ["order_id", "saga_id"]
    assert done.context_keys == ["order_id", "reservation", "saga_id"]  # engine marker left out
    assert started.timestamp == datetime(2026, 1, 1, 12, 0, 0) and started.timestamp.tzinfo is None
    assert done.timestamp == datetime(2026, 1, 1, 12, 0, 0) + timedelta(microseconds=52_400)
    assert all(e.saga_id == "s-1" and e.saga_name == "order" for e in (started, enter, done, end))
    assert all(e.error_type is None and e.error_message is None for e in (started, enter, done, end))
    ids = [e.event_id for e in (started, enter, done, end)]
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)
    assert done.event_id == ev.event_id("order", "s-1", "step_completed", "reserve", 0)


def test_context_keys_are_a_snapshot(builder: EventBuilder) -> None:
    context = ctx(b=1, a=2)
    event = builder.saga_started("order", "s-1", context)
    context["z"] = 3
    assert event.context_keys == ["a", "b", "saga_id"]


def test_ids_do_not_depend_on_how_concurrent_steps_interleave(clock: Clock) -> None:
    def run(order: list[tuple[str, str]]) -> dict[tuple[str, str | None], str]:
        builder = EventBuilder(wall_ns=lambda: clock.wall, mono_ns=lambda: clock.mono)
        context = ctx()
        events = [builder.saga_started("dag", "s-1", context)]
        for hook, step in order:
            events.append(getattr(builder, hook)("dag", step, context))
        events += builder.saga_completed("dag", "s-1", context)
        return {(e.event_type, e.step_name): e.event_id for e in events}

    one = run([("step_started", "a"), ("step_started", "b"), ("step_completed", "a"), ("step_completed", "b")])
    other = run([("step_started", "b"), ("step_started", "a"), ("step_completed", "b"), ("step_completed", "a")])
    assert one == other and len(set(one.values())) == 6


def test_a_repeated_step_and_a_rerun_of_the_same_saga_id_get_new_rows(builder: EventBuilder) -> None:
    context = ctx()
    first = [builder.saga_started("order", "s-1", context), builder.step_started("order", "pay", context),
             builder.step_failed("order", "pay", context, TimeoutError()),
             builder.step_started("order", "pay", context), builder.step_completed("order", "pay", context),
             *builder.saga_completed("order", "s-1", context)]
    rerun = [builder.saga_started("order", "s-1", context), *builder.saga_completed("order", "s-1", context)]
    ids = [e.event_id for e in first + rerun]
    assert len(set(ids)) == len(ids)
    # ...and the n-th occurrence is still deterministic
    assert rerun[0].event_id == ev.event_id("order", "s-1", "saga_started", None, 1)


def test_errors_carry_type_and_message(builder: EventBuilder, clock: Clock) -> None:
    class PaymentDeclined(Exception):
        pass

    context = ctx()
    builder.saga_started("order", "s-1", context)
    builder.step_started("order", "pay", context)
    clock.advance(30)
    failed = builder.step_failed("order", "pay", context, PaymentDeclined("card expired"))
    [end] = builder.saga_failed("order", "s-1", context, ValueError("x" * 10_000))
    assert failed.event_type == "step_failed" and failed.duration_ms == 30
    assert failed.error_type == f"{__name__}.test_errors_carry_type_and_message.<locals>.PaymentDeclined"
    assert failed.error_message == "card expired"
    assert end.event_type == "saga_failed" and end.error_type == "ValueError"
    assert end.error_message == "x" * ev.MAX_ERROR_MESSAGE


def test_a_compensation_that_raised_becomes_compensation_failed_from_the_ctx_marker(builder: EventBuilder,
                                                                                     clock: Clock) -> None:
    context = ctx(__stale_compensation_error="from an earlier run")  # stale: not compensated in this run
    builder.saga_started("dag", "s-1", context)
    for step in ("a", "b", "stale"):
        builder.step_started("dag", step, context)
        builder.step_completed("dag", step, context)
    builder.step_started("dag", "c", context)
    builder.step_failed("dag", "c", context, ValueError("c broke"))
    clock.advance(1)
    b_start = builder.compensation_started("dag", "b", context)
    a_start = builder.compensation_started("dag", "a", context)
    clock.advance(20)
    context["__b_compensated"] = True
    b_done = builder.compensation_completed("dag", "b", context)
    context["__a_compensation_error"] = "cannot undo a"  # Sagaz: no complete hook for a, only this marker
    clock.advance(5)
    *compensation_failed, end = builder.saga_failed("dag", "s-1", context, ValueError("c broke"))

    assert b_start.event_type == "compensation_started" and b_done.duration_ms == 20
    assert [(e.event_type, e.step_name, e.error_message, e.duration_ms) for e in compensation_failed] == [
        ("compensation_failed", "a", "cannot undo a", None)]
    assert compensation_failed[0].error_type is None  # Sagaz keeps only str(error)
    assert compensation_failed[0].timestamp < end.timestamp and a_start.timestamp < compensation_failed[0].timestamp
    assert end.event_type == "saga_failed" and end.error_type == "ValueError" and end.total_duration_ms == 26
    assert "__a_compensation_error" not in compensation_failed[0].context_keys


def test_timestamps_strictly_increase_within_a_saga_even_when_the_clock_does_not(builder: EventBuilder,
                                                                                 clock: Clock) -> None:
    context = ctx()
    events = [builder.saga_started("order", "s-1", context)]
    events += [builder.step_started("order", f"s{i}", context) for i in range(5)]
    clock.wall -= 10 * MS  # wall clock stepped back
    events += builder.saga_completed("order", "s-1", context)
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_step_hooks_of_an_unseen_saga_still_give_rows_without_durations(builder: EventBuilder) -> None:
    context = {"saga_id": 42}  # a user-supplied non-string id, and no saga_started seen
    enter = builder.step_started("order", "pay", context)
    done = builder.step_completed("order", "pay", context)
    [end] = builder.saga_completed("order", 42, context)
    assert (enter.saga_id, done.saga_id, end.saga_id) == ("42", "42", "42")
    assert done.duration_ms is not None and done.total_duration_ms is None and end.total_duration_ms is None
    assert builder.active_sagas == 0


def test_sagas_that_never_end_are_forgotten_beyond_the_bound(clock: Clock) -> None:
    builder = EventBuilder(wall_ns=lambda: clock.wall, mono_ns=lambda: clock.mono, max_active=3)
    for i in range(10):
        builder.saga_started("order", f"s-{i}", ctx(f"s-{i}"))
    assert builder.active_sagas == 3


def test_rows_have_the_table_columns_in_order() -> None:
    from sagaz_lakehouse import tables

    assert list(ev.SagaEvent._fields) == [c.name for c in tables.COLUMNS]


def test_text_that_pyfluss_could_not_encode_is_repaired(builder: EventBuilder) -> None:
    broken = b"caf\xe9".decode("utf-8", "surrogateescape")  # a lone surrogate, as from a mis-decoded log line
    context = {"saga_id": broken, broken: 1}
    started = builder.saga_started(broken, broken, context)
    [end] = builder.saga_failed(broken, broken, context, ValueError(broken))
    for value in (started.saga_name, started.saga_id, *started.context_keys, end.error_message):
        value.encode("utf-8")  # raises if a surrogate were left
    assert started.saga_name == "caf?" and ev.text("Zürich") == "Zürich"
