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
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sagaz import Saga, action, compensate

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
                   run_id: str | None = None, extra_listeners: Sequence[Any] = ()) -> dict[str, Any]:
    """Run ``sagas`` sagas, starting ``rate`` per second (0: all at once); the listener is not closed here."""
    if sagas < 0 or rate < 0 or not 0 <= failure_rate <= 1:
        raise ValueError("sagas and rate must be >= 0 and failure_rate within [0, 1]")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    rng, run_id = random.Random(seed), run_id or uuid.uuid4().hex[:8]  # noqa: S311 - simulation, not crypto
    plans = [plan(rng, failure_rate) for _ in range(sagas)]
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
    }


def tenths(echo: Callable[[str], None]) -> Progress:
    """A progress callback that reports about every tenth of the run through ``echo``."""

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            echo(f"{done}/{total} sagas")

    return progress


def run(*, sagas: int = 100, rate: float = 20.0, failure_rate: float = 0.2, seed: int | None = None,
        progress: Progress | None = None, bootstrap_servers: str | None = None, database: str | None = None,
        close_timeout: float = 60.0, metrics_port: int = 0, metrics_linger: float = 0.0,
        fluss_properties: dict[str, str] | None = None) -> dict[str, Any]:
    """Simulate with a FlussAnalyticsListener on the stack (default: ./sagaz-lakehouse.yaml), then close it.

    Fails at once (StackNotReachable) when Fluss does not accept connections: the sagas would run, but every event
    would be dropped after close_timeout. With ``metrics_port``, the run also serves Prometheus metrics on
    127.0.0.1:<port> as an application would: Sagaz's own (``MetricsSagaListener`` with ``PrometheusMetrics``) and
    the listener's counters (``prometheus_stats_hook``), for ``metrics_linger`` seconds after the run.
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
    listener = FlussAnalyticsListener(bootstrap_servers, database=database, stats_hook=hook,
                                      fluss_properties=fluss_properties)
    if not any(tcp_open(address.strip()) for address in listener.bootstrap_servers.split(",")):
        raise StackNotReachable("Fluss", listener.bootstrap_servers, "connection refused or timed out")

    async def main() -> dict[str, Any]:
        try:
            summary = await simulate(listener, sagas=sagas, rate=rate, failure_rate=failure_rate, seed=seed,
                                     progress=progress, extra_listeners=extra)
        finally:
            flushing_started = time.monotonic()
            stats = await listener.close(timeout=close_timeout)
        summary["events"] = stats.as_dict()
        summary["close_s"] = round(time.monotonic() - flushing_started, 3)
        summary["ok"] = stats.dropped == 0 and stats.pending == 0
        return summary

    summary = asyncio.run(main())
    if metrics_port and metrics_linger > 0:
        time.sleep(metrics_linger)  # the metrics server thread keeps answering scrapes meanwhile
    return summary
