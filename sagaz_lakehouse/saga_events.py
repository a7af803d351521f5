"""Saga lifecycle events as ``saga_events`` rows, built from Sagaz listener hooks (no I/O, no Sagaz import).

Sagaz hooks carry no timestamp, duration or event id, and step hooks get the saga id only as ``ctx["saga_id"]``;
``EventBuilder`` keeps the little per-saga state needed to add them: when the saga and each open step or
compensation began, the last timestamp, and how often each (event type, step) occurred.

Event ids are a hash of (saga name, saga id, event type, step name, occurrence), where the occurrence counts
earlier events with the same four values. The same logical event always gets the same id, so a batch re-sent after
a write failure upserts the same rows; the counter is per (type, step) and not a per-saga sequence, so the
interleaving of a DAG level's concurrent steps does not change anyone's id, while a repeated step (a retry, or a
re-run of the saga under the same id) gets a new row instead of overwriting the first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

SAGA_STARTED = "saga_started"
STEP_STARTED = "step_started"
STEP_COMPLETED = "step_completed"
STEP_FAILED = "step_failed"
COMPENSATION_STARTED = "compensation_started"
COMPENSATION_COMPLETED = "compensation_completed"
COMPENSATION_FAILED = "compensation_failed"
SAGA_COMPLETED = "saga_completed"
SAGA_FAILED = "saga_failed"

MAX_ERROR_MESSAGE = 4096  # keeps one huge exception text from bloating a row
COMPENSATION_ERROR_SUFFIX = "_compensation_error"  # sagaz: ctx["__<step>_compensation_error"] = str(error)
_EPOCH = datetime(1970, 1, 1)  # naive UTC: the column is TIMESTAMP(6), without time zone


class SagaEvent(NamedTuple):
    """One ``saga_events`` row, fields in the table's column order (pyfluss takes it as is)."""

    event_id: str
    event_type: str
    saga_id: str
    saga_name: str
    step_name: str | None
    duration_ms: int | None
    total_duration_ms: int | None
    error_type: str | None
    error_message: str | None
    context_keys: list[str]
    timestamp: datetime


def event_id(saga_name: str, saga_id: str, event_type: str, step_name: str | None, occurrence: int) -> str:
    key = f"{saga_name}\x1f{saga_id}\x1f{event_type}\x1f{step_name or ''}\x1f{occurrence}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def text(value: Any) -> str:
    """``str(value)`` that pyfluss can encode: a lone surrogate (e.g. from surrogateescape) would make the whole
    row unwritable, so it becomes '?'."""
    value = str(value)
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def context_keys(ctx: Mapping[Any, Any]) -> list[str]:
    """The saga's own context keys, sorted; engine markers (``__<step>_completed`` etc.) left out."""
    keys = sorted(k for k in map(str, ctx) if not k.startswith("__"))
    return keys if all(k.isascii() for k in keys) else [text(k) for k in keys]


def error_type(error: BaseException) -> str:
    cls = type(error)
    return text(cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}")


def error_message(error: BaseException) -> str:
    return text(str(error)[:MAX_ERROR_MESSAGE])


def failed_compensations(ctx: Mapping[Any, Any]) -> dict[str, str]:
    """step → error message, from the markers Sagaz leaves for a compensation that raised."""
    found = {}
    for key, value in ctx.items():
        if isinstance(key, str) and key.startswith("__") and key.endswith(COMPENSATION_ERROR_SUFFIX):
            found[key[2:-len(COMPENSATION_ERROR_SUFFIX)]] = text(str(value)[:MAX_ERROR_MESSAGE])
    return found


@dataclass
class _SagaState:
    started_ns: int | None  # monotonic; None when the saga's start was not seen
    last_ts_us: int = 0
    open_steps: dict[str, int] = field(default_factory=dict)  # step → monotonic ns at enter
    open_compensations: dict[str, int] = field(default_factory=dict)  # step → monotonic ns at start
    occurrences: dict[tuple[str, str | None], int] = field(default_factory=dict)


class EventBuilder:
    """Turns hook calls into ``SagaEvent`` rows. Not thread-safe: one event loop calls it."""

    def __init__(self, *, wall_ns: Callable[[], int] = time.time_ns, mono_ns: Callable[[], int] = time.perf_counter_ns,
                 max_active: int = 100_000, remember_finished: int = 10_000) -> None:
        self._wall_ns, self._mono_ns = wall_ns, mono_ns
        self._active: OrderedDict[str, _SagaState] = OrderedDict()
        # Occurrence counters of finished sagas, so a re-run under the same saga id gets new rows.
        self._finished: OrderedDict[str, dict[tuple[str, str | None], int]] = OrderedDict()
        self._max_active, self._remember_finished = max_active, remember_finished

    @property
    def active_sagas(self) -> int:
        return len(self._active)

    def saga_started(self, saga_name: str, saga_id: str, ctx: Mapping[Any, Any]) -> SagaEvent:
        saga_id, now = str(saga_id), self._mono_ns()
        state = _SagaState(started_ns=now, occurrences=self._finished.pop(saga_id, {}))
        self._admit(saga_id, state)
        return self._event(state, SAGA_STARTED, saga_name, saga_id, None, now, None, ctx)

    def step_started(self, saga_name: str, step_name: str, ctx: Mapping[Any, Any]) -> SagaEvent:
        saga_id, state, now = self._lookup(ctx)
        state.open_steps[step_name] = now
        return self._event(state, STEP_STARTED, saga_name, saga_id, step_name, now, None, ctx)

    def step_completed(self, saga_name: str, step_name: str, ctx: Mapping[Any, Any]) -> SagaEvent:
        saga_id, state, now = self._lookup(ctx)
        duration = _elapsed_ms(state.open_steps.pop(step_name, None), now)
        return self._event(state, STEP_COMPLETED, saga_name, saga_id, step_name, now, duration, ctx)

    def step_failed(self, saga_name: str, step_name: str, ctx: Mapping[Any, Any], error: BaseException) -> SagaEvent:
        saga_id, state, now = self._lookup(ctx)
        duration = _elapsed_ms(state.open_steps.pop(step_name, None), now)
        return self._event(state, STEP_FAILED, saga_name, saga_id, step_name, now, duration, ctx, error)

    def compensation_started(self, saga_name: str, step_name: str, ctx: Mapping[Any, Any]) -> SagaEvent:
        saga_id, state, now = self._lookup(ctx)
        state.open_compensations[step_name] = now
        return self._event(state, COMPENSATION_STARTED, saga_name, saga_id, step_name, now, None, ctx)

    def compensation_completed(self, saga_name: str, step_name: str, ctx: Mapping[Any, Any]) -> SagaEvent:
        saga_id, state, now = self._lookup(ctx)
        duration = _elapsed_ms(state.open_compensations.pop(step_name, None), now)
        return self._event(state, COMPENSATION_COMPLETED, saga_name, saga_id, step_name, now, duration, ctx)

    def saga_completed(self, saga_name: str, saga_id: str, ctx: Mapping[Any, Any]) -> list[SagaEvent]:
        return self._saga_ended(SAGA_COMPLETED, saga_name, saga_id, ctx, None)

    def saga_failed(self, saga_name: str, saga_id: str, ctx: Mapping[Any, Any],
                    error: BaseException) -> list[SagaEvent]:
        return self._saga_ended(SAGA_FAILED, saga_name, saga_id, ctx, error)

    # ------------------------------------------------------------------------------------------ internals

    def _saga_ended(self, event_type: str, saga_name: str, saga_id: str, ctx: Mapping[Any, Any],
                    error: BaseException | None) -> list[SagaEvent]:
        saga_id, now = str(saga_id), self._mono_ns()
        state = self._active.pop(saga_id, None) or self._unseen(saga_id)
        events = []
        # A compensation that raised gets a start hook and no complete hook; Sagaz records it only as a ctx
        # marker. Only compensations started in this run count: a re-run's ctx can carry stale markers. Its
        # duration is unknown (the failure is observed only now), so it stays null.
        failed = failed_compensations(ctx) if state.open_compensations else {}
        for step in sorted(state.open_compensations, key=state.open_compensations.__getitem__):
            if step in failed:
                events.append(self._event(state, COMPENSATION_FAILED, saga_name, saga_id, step, now, None, ctx,
                                          message=failed[step]))
        # duration_ms is a step's or compensation's; the saga's own is total_duration_ms.
        events.append(self._event(state, event_type, saga_name, saga_id, None, now, None, ctx, error))
        self._finished[saga_id] = state.occurrences
        if len(self._finished) > self._remember_finished:
            self._finished.popitem(last=False)
        return events

    def _lookup(self, ctx: Mapping[Any, Any]) -> tuple[str, _SagaState, int]:
        saga_id = str(ctx.get("saga_id", "unknown"))
        state = self._active.get(saga_id)
        if state is None:  # the saga's start was not seen (listener added mid-run, or evicted): no durations
            state = self._unseen(saga_id)
            self._admit(saga_id, state)
        return saga_id, state, self._mono_ns()

    def _admit(self, saga_id: str, state: _SagaState) -> None:
        self._active[saga_id] = state
        if len(self._active) > self._max_active:  # a cancelled saga never ends: forget the oldest
            self._active.popitem(last=False)

    def _unseen(self, saga_id: str) -> _SagaState:
        return _SagaState(started_ns=None, occurrences=self._finished.pop(saga_id, {}))

    def _event(self, state: _SagaState, event_type: str, saga_name: str, saga_id: str, step_name: str | None,
               now_ns: int, duration_ms: int | None, ctx: Mapping[Any, Any], error: BaseException | None = None,
               message: str | None = None) -> SagaEvent:
        key = (event_type, step_name)
        occurrence = state.occurrences.get(key, 0)
        state.occurrences[key] = occurrence + 1
        # Strictly increasing within a saga, so ORDER BY timestamp gives the hooks' order even when two hooks
        # fall in the same microsecond (or the wall clock steps back).
        ts_us = max(self._wall_ns() // 1000, state.last_ts_us + 1)
        state.last_ts_us = ts_us
        saga_name, saga_id = text(saga_name), text(saga_id)  # a user may pass saga_id=123; the column is STRING
        step_name = None if step_name is None else text(step_name)
        return SagaEvent(
            event_id(saga_name, saga_id, event_type, step_name, occurrence), event_type, saga_id, saga_name,
            step_name, duration_ms, _elapsed_ms(state.started_ns, now_ns),
            error_type(error) if error is not None else None,
            error_message(error) if error is not None else message,
            context_keys(ctx), _EPOCH + timedelta(microseconds=ts_us))


def _elapsed_ms(start_ns: int | None, now_ns: int) -> int | None:
    return None if start_ns is None else (now_ns - start_ns) // 1_000_000
