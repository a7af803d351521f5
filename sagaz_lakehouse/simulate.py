"""``simulate``: run real Sagaz sagas with the FlussAnalyticsListener, to fill saga_events with realistic traffic.

Two sagas:

* ``order``: reserve_inventory → charge_payment → ship_order, each compensable; a failing step makes Sagaz
  compensate the steps before it in reverse order.
* ``fulfilment``, a DAG: validate_order → (reserve_stock ‖ authorize_credit ‖ book_courier) → confirm_order;
  the middle level runs concurrently, and cancelling the courier (book_courier's compensation) can itself fail,
  which Sagaz records only as a ctx marker (the listener turns it into ``compensation_failed``).

Which sagas fail, where, and how long each step takes is drawn up front from ``random.Random(seed)``, so a seed
reproduces the same run. Saga ids are ``sim-<run id>-<n>`` with a fresh run id each time (ids, and so event ids,
never collide with an earlier run): select a run with ``saga_id LIKE 'sim-<run id>-%'``.

Anomalies (``Anomaly``, ``--anomaly saga=order,step=charge_payment,at=+10m,for=5m,failure_rate=0.5``) change the
plans of the sagas that start within a window of the run: their step fails with the given probability and/or takes
the given time, drawn from a generator of their own, so a run without anomalies plans exactly as before. A run can be
stamped in the past and compressed (``backdate``, ``time_scale``): its events' timestamps then start ``backdate``
seconds ago and advance ``time_scale`` times as fast as the run (durations stay real), which seeds hours of history
in minutes; ``at`` and ``for`` count in that simulated time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagaz import Saga, action, compensate

from sagaz_lakehouse.saga_events import EventBuilder
from sagaz_lakehouse.sagaz import FlussAnalyticsListener

ORDER_STEPS = ("reserve_inventory", "charge_payment", "ship_order")
FULFILMENT_STEPS = ("validate_order", "reserve_stock", "authorize_credit", "book_courier", "confirm_order")
DAG_SHARE = 0.3  # share of fulfilment sagas among the simulated ones
COURIER_CANCEL_FAILS = 0.5  # chance that cancelling the courier fails, when it has to be cancelled
STEP_MS = (1.0, 20.0)  # uniform step duration range

Progress = Callable[[int, int], None]  # (sagas finished, sagas total)


class SimulatedFailure(Exception):
    """Base of the simulated business errors (their names end up in error_type)."""


class InventoryUnavailable(SimulatedFailure):
    pass


class PaymentDeclined(SimulatedFailure):
    pass


class ShippingUnavailable(SimulatedFailure):
    pass


class OrderInvalid(SimulatedFailure):
    pass


class CreditRefused(SimulatedFailure):
    pass


class CourierCancellationFailed(SimulatedFailure):
    pass


FAILURES: dict[str, type[SimulatedFailure]] = {
    "reserve_inventory": InventoryUnavailable, "charge_payment": PaymentDeclined, "ship_order": ShippingUnavailable,
    "validate_order": OrderInvalid, "reserve_stock": InventoryUnavailable, "authorize_credit": CreditRefused,
    "book_courier": ShippingUnavailable, "confirm_order": OrderInvalid,
}


@dataclass(frozen=True)
class Plan:
    """What one saga will do: which step fails (if any), step durations, whether the courier cancel fails."""

    kind: str  # "order" or "fulfilment"
    fail_at: str | None
    step_ms: dict[str, float] = field(default_factory=dict)
    courier_cancel_fails: bool = False
    amount: float = 0.0

    @property
    def failing_compensations(self) -> int:
        """1 if the courier cancel will run and fail: book_courier completed, then a sibling or confirm failed."""
        return int(self.kind == "fulfilment" and self.courier_cancel_fails
                   and self.fail_at in ("reserve_stock", "authorize_credit", "confirm_order"))


@dataclass(frozen=True)
class Anomaly:
    """Sagas named ``saga`` that start within [at, at + for) seconds of the run (simulated time): ``step`` fails
    with probability ``failure_rate`` and/or takes ``duration_ms``."""

    saga: str
    step: str
    at: float
    for_s: float
    failure_rate: float | None = None
    duration_ms: float | None = None

    def covers(self, kind: str, offset_s: float) -> bool:
        return kind == self.saga and self.at <= offset_s < self.at + self.for_s


ANOMALY_KEYS = ("saga", "step", "at", "for", "failure_rate", "duration_ms")
_SECONDS = re.compile(r"^\+?(\d+(?:\.\d+)?)(ms|s|m|min|h)?$")


def _seconds(text: str) -> float:
    match = _SECONDS.fullmatch(text.strip())
    if not match:
        raise ValueError("expected a time like +90s, +10m or +1h")
    return float(match.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]


def parse_anomaly(text: str) -> Anomaly:
    """``saga=order,step=charge_payment,at=+10m,for=5m,failure_rate=0.5[,duration_ms=200]``; ValueError names the
    field that is wrong."""
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ANOMALY_KEYS:
            raise ValueError(f"{part!r}: expected KEY=VALUE with KEY one of {', '.join(ANOMALY_KEYS)}")
        fields[key.strip()] = value.strip()
    steps = {"order": ORDER_STEPS, "fulfilment": FULFILMENT_STEPS}
    saga, step = fields.get("saga", ""), fields.get("step", "")
    if saga not in steps:
        raise ValueError(f"saga={saga!r}: expected one of {', '.join(steps)}")
    if step not in steps[saga]:
        raise ValueError(f"step={step!r}: {saga} has the steps {', '.join(steps[saga])}")
    try:
        at = _seconds(fields.get("at", "0"))
    except ValueError as exc:
        raise ValueError(f"at={fields.get('at')!r}: {exc}") from None
    try:
        for_s = _seconds(fields["for"]) if "for" in fields else float("inf")
    except ValueError as exc:
        raise ValueError(f"for={fields['for']!r}: {exc}") from None
    numbers: dict[str, float] = {}
    for key, low, high in (("failure_rate", 0.0, 1.0), ("duration_ms", 0.0, 600_000.0)):
        if key in fields:
            try:
                numbers[key] = float(fields[key])
            except ValueError:
                numbers[key] = -1.0
            if not low <= numbers[key] <= high:
                raise ValueError(f"{key}={fields[key]!r}: expected a number from {low:g} to {high:g}")
    if not numbers:
        raise ValueError("give failure_rate=RATE and/or duration_ms=MS: what the anomaly changes")
    return Anomaly(saga, step, at, for_s, numbers.get("failure_rate"), numbers.get("duration_ms"))


def with_anomalies(plans: list[Plan], anomalies: Sequence[Anomaly], offsets: Sequence[float],
                   rng: random.Random) -> tuple[list[Plan], list[int]]:
    """The plans with every anomaly applied to the sagas it covers (``offsets``: each saga's start, in seconds of
    simulated time), and per anomaly how many sagas it covered."""
    covered = [0] * len(anomalies)
    changed = []
    for saga_plan, offset in zip(plans, offsets, strict=True):
        for index, anomaly in enumerate(anomalies):
            if not anomaly.covers(saga_plan.kind, offset):
                continue
            covered[index] += 1
            if anomaly.failure_rate is not None:
                fails = rng.random() < anomaly.failure_rate
                fail_at = anomaly.step if fails else (None if saga_plan.fail_at == anomaly.step else
                                                      saga_plan.fail_at)
                saga_plan = dataclasses.replace(saga_plan, fail_at=fail_at)
            if anomaly.duration_ms is not None:
                saga_plan = dataclasses.replace(saga_plan, step_ms={**saga_plan.step_ms,
                                                                    anomaly.step: anomaly.duration_ms})
        changed.append(saga_plan)
    return changed, covered


def plan(rng: random.Random, failure_rate: float) -> Plan:
    kind = "fulfilment" if rng.random() < DAG_SHARE else "order"
    steps = FULFILMENT_STEPS if kind == "fulfilment" else ORDER_STEPS
    fail_at = rng.choice(steps) if rng.random() < failure_rate else None
    return Plan(kind, fail_at, {s: rng.uniform(*STEP_MS) for s in steps}, rng.random() < COURIER_CANCEL_FAILS,
                round(rng.uniform(5, 500), 2))


class _Simulated(Saga):
    """Steps sleep for their planned time, then fail if planned to."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan

    async def work(self, step: str, result: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(self.plan.step_ms.get(step, 0.0) / 1000)
        if self.plan.fail_at == step:
            raise FAILURES[step](f"simulated failure in {step}")
        return result

    async def undo(self, step: str) -> None:
        await asyncio.sleep(self.plan.step_ms.get(step, 0.0) / 2000)


def saga_classes(listener: FlussAnalyticsListener | None, extra: Sequence[Any] = ()) -> dict[str, type[_Simulated]]:
    """The two saga classes, notifying ``listener`` (None: no listener, e.g. for a baseline) and ``extra``."""
    chosen = [*([listener] if listener is not None else []), *extra]

    class OrderSaga(_Simulated):
        saga_name = "order"
        listeners = chosen

        @action("reserve_inventory")
        async def reserve_inventory(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("reserve_inventory", {"reservation_id": f"r-{ctx['order_id']}"})

        @compensate("reserve_inventory")
        async def release_inventory(self, ctx: dict[str, Any]) -> None:
            await self.undo("reserve_inventory")

        @action("charge_payment", depends_on=["reserve_inventory"])
        async def charge_payment(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("charge_payment", {"payment_id": f"p-{ctx['order_id']}"})

        @compensate("charge_payment")
        async def refund_payment(self, ctx: dict[str, Any]) -> None:
            await self.undo("charge_payment")

        @action("ship_order", depends_on=["charge_payment"])
        async def ship_order(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("ship_order", {"shipment_id": f"s-{ctx['order_id']}"})

        @compensate("ship_order")
        async def cancel_shipment(self, ctx: dict[str, Any]) -> None:
            await self.undo("ship_order")

    class FulfilmentSaga(_Simulated):
        saga_name = "fulfilment"
        listeners = chosen

        @action("validate_order")
        async def validate_order(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("validate_order", {"validated": True})

        @action("reserve_stock", depends_on=["validate_order"])
        async def reserve_stock(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("reserve_stock", {"stock_hold": f"h-{ctx['order_id']}"})

        @compensate("reserve_stock")
        async def release_stock(self, ctx: dict[str, Any]) -> None:
            await self.undo("reserve_stock")

        @action("authorize_credit", depends_on=["validate_order"])
        async def authorize_credit(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("authorize_credit", {"authorization": f"a-{ctx['order_id']}"})

        @compensate("authorize_credit")
        async def void_credit(self, ctx: dict[str, Any]) -> None:
            await self.undo("authorize_credit")

        @action("book_courier", depends_on=["validate_order"])
        async def book_courier(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("book_courier", {"courier_booking": f"c-{ctx['order_id']}"})

        @compensate("book_courier")
        async def cancel_courier(self, ctx: dict[str, Any]) -> None:
            await self.undo("book_courier")
            if self.plan.courier_cancel_fails:
                raise CourierCancellationFailed("courier refused the cancellation")

        @action("confirm_order", depends_on=["reserve_stock", "authorize_credit", "book_courier"])
        async def confirm_order(self, ctx: dict[str, Any]) -> dict[str, Any]:
            return await self.work("confirm_order", {"confirmed": True})

    return {"order": OrderSaga, "fulfilment": FulfilmentSaga}


async def simulate(listener: FlussAnalyticsListener | None, *, sagas: int = 100, rate: float = 20.0,
                   failure_rate: float = 0.2, seed: int | None = None, progress: Progress | None = None,
                   run_id: str | None = None, extra_listeners: Sequence[Any] = (),
                   anomalies: Sequence[Anomaly] = (), time_scale: float = 1.0) -> dict[str, Any]:
    """Run ``sagas`` sagas, starting ``rate`` per second (0: all at once); the listener is not closed here."""
    if sagas < 0 or rate < 0 or not 0 <= failure_rate <= 1:
        raise ValueError("sagas and rate must be >= 0 and failure_rate within [0, 1]")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    rng, run_id = random.Random(seed), run_id or uuid.uuid4().hex[:8]  # noqa: S311 - simulation, not crypto
    plans = [plan(rng, failure_rate) for _ in range(sagas)]
    offsets = [index / rate * time_scale if rate > 0 else 0.0 for index in range(sagas)]
    plans, covered = with_anomalies(plans, anomalies, offsets, random.Random(f"{seed}-anomalies"))  # noqa: S311
    classes = saga_classes(listener, extra_listeners)
    outcomes: Counter[str] = Counter()
    finished = 0
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(index: int, saga_plan: Plan) -> None:
        nonlocal finished
        saga_id = f"sim-{run_id}-{index:06d}"
        context = {"order_id": f"{run_id}-{index}", "amount": saga_plan.amount, "items": 1 + index % 4}
        try:
            await classes[saga_plan.kind](saga_plan).run(context, saga_id=saga_id)
            outcomes[f"{saga_plan.kind}.completed"] += 1
        except SimulatedFailure:
            outcomes[f"{saga_plan.kind}.failed"] += 1
        outcomes["compensations_failed"] += saga_plan.failing_compensations
        finished += 1
        if progress is not None:
            progress(finished, sagas)

    tasks = []
    for index, saga_plan in enumerate(plans):
        if rate > 0:
            await asyncio.sleep(max(0.0, started + index / rate - loop.time()))
        tasks.append(asyncio.create_task(one(index, saga_plan)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - started
    return {
        "run_id": run_id, "seed": seed, "sagas": sagas, "rate": rate, "failure_rate": failure_rate,
        "elapsed_s": round(elapsed, 3), "sagas_per_s": round(sagas / elapsed, 1) if elapsed > 0 else None,
        "completed": outcomes["order.completed"] + outcomes["fulfilment.completed"],
        "failed": outcomes["order.failed"] + outcomes["fulfilment.failed"],
        "compensations_failed": outcomes["compensations_failed"],
        "by_saga": {kind: {"completed": outcomes[f"{kind}.completed"], "failed": outcomes[f"{kind}.failed"]}
                    for kind in ("order", "fulfilment")},
        "saga_id_pattern": f"sim-{run_id}-%",
        "anomalies": [{"saga": a.saga, "step": a.step, "at_s": a.at, "for_s": a.for_s, "failure_rate": a.failure_rate,
                       "duration_ms": a.duration_ms, "sagas": n} for a, n in zip(anomalies, covered, strict=True)],
    }


class SimulatedClock:
    """The events' wall clock (``EventBuilder(wall_ns=...)``): from the first event on, ``backdate_s`` behind now and
    running ``time_scale`` times as fast. Without either it is the real clock."""

    def __init__(self, backdate_s: float = 0.0, time_scale: float = 1.0) -> None:
        if backdate_s < 0 or time_scale <= 0:
            raise ValueError("backdate must be >= 0 and time_scale > 0")
        self.backdate_ns, self.scale = int(backdate_s * 1e9), time_scale
        self.shifted = bool(backdate_s) or time_scale != 1.0
        self._origin: tuple[int, int] | None = None  # (wall ns, monotonic ns) of the first event

    def __call__(self) -> int:
        mono = time.monotonic_ns()
        if self._origin is None:
            self._origin = (time.time_ns() - self.backdate_ns, mono)
        wall, start = self._origin
        return wall + int((mono - start) * self.scale)

    def started_at(self) -> str | None:
        """The simulated start (ISO, UTC), once the first event was stamped."""
        if self._origin is None:
            return None
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self._origin[0] / 1e9, UTC).isoformat()


def tenths(echo: Callable[[str], None]) -> Progress:
    """A progress callback that reports about every tenth of the run through ``echo``."""

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            echo(f"{done}/{total} sagas")

    return progress


def run(*, sagas: int = 100, rate: float = 20.0, failure_rate: float = 0.2, seed: int | None = None,
        progress: Progress | None = None, bootstrap_servers: str | None = None, database: str | None = None,
        close_timeout: float = 60.0, metrics_port: int = 0, metrics_linger: float = 0.0,
        fluss_properties: dict[str, str] | None = None, anomalies: Sequence[Anomaly] = (),
        backdate_s: float = 0.0, time_scale: float = 1.0, spool_dir: Path | None = None,
        wait_safe: float = 0.0) -> dict[str, Any]:
    """Simulate with a FlussAnalyticsListener on the stack (default: ./sagaz-lakehouse.yaml), then close it.

    Fails at once (StackNotReachable) when Fluss does not accept connections: the sagas would run, but every event
    would be dropped after close_timeout. With ``metrics_port``, the run also serves Prometheus metrics on
    127.0.0.1:<port> as an application would: Sagaz's own (``MetricsSagaListener`` with ``PrometheusMetrics``) and
    the listener's counters (``prometheus_stats_hook``), for ``metrics_linger`` seconds after the run.

    With ``spool_dir`` the listener keeps every event on disk there until it is in Iceberg (a run first re-sends
    what an earlier run left), and with ``wait_safe`` seconds the run waits, before closing, until every event is
    known to be in Iceberg (``safe`` in the summary).
    """
    from sagaz_lakehouse.clients import tcp_open
    from sagaz_lakehouse.errors import StackNotReachable

    extra: list[Any] = []
    hook = None
    if metrics_port:
        from prometheus_client import start_http_server
        from sagaz.core.listeners import MetricsSagaListener
        from sagaz.observability.monitoring.prometheus import PrometheusMetrics

        from sagaz_lakehouse.sagaz import prometheus_stats_hook

        hook = prometheus_stats_hook()
        extra.append(MetricsSagaListener(metrics=PrometheusMetrics()))
        start_http_server(metrics_port, addr="127.0.0.1")
    clock = SimulatedClock(backdate_s, time_scale)
    listener = FlussAnalyticsListener(bootstrap_servers, database=database, stats_hook=hook,
                                      fluss_properties=fluss_properties, spool_dir=spool_dir,
                                      builder=EventBuilder(wall_ns=clock) if clock.shifted else None)
    if not any(tcp_open(address.strip()) for address in listener.bootstrap_servers.split(",")):
        raise StackNotReachable("Fluss", listener.bootstrap_servers, "connection refused or timed out")

    async def main() -> dict[str, Any]:
        safe = None
        try:
            await listener.start()  # with a spool: takes the directory, or fails here (another process has it)
            summary = await simulate(listener, sagas=sagas, rate=rate, failure_rate=failure_rate, seed=seed,
                                     progress=progress, extra_listeners=extra, anomalies=anomalies,
                                     time_scale=time_scale)
            if spool_dir is not None and wait_safe > 0:
                safe = await listener.wait_safe(wait_safe)
        finally:
            flushing_started = time.monotonic()
            stats = await listener.close(timeout=close_timeout)
        summary["events"] = stats.as_dict()
        summary["close_s"] = round(time.monotonic() - flushing_started, 3)
        summary["spool_dir"] = None if spool_dir is None else str(spool_dir)
        summary["safe"] = safe  # None: not waited for
        summary["ok"] = stats.dropped == 0 and stats.pending == 0 and safe is not False
        if clock.shifted:
            summary["clock"] = {"started_at": clock.started_at(), "time_scale": time_scale}
        return summary

    summary = asyncio.run(main())
    if metrics_port and metrics_linger > 0:
        time.sleep(metrics_linger)  # the metrics server thread keeps answering scrapes meanwhile
    return summary
