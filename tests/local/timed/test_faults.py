"""Faults on the local target with the shipped configuration: no acknowledged saga event is lost or duplicated when
a tablet server or the Flink TaskManager is killed (kill -9) during writes, and tiering resumes by itself; and no
saga event whose listener hook returned is lost when the whole stack is killed (kill -9) while sagas run through a
FlussAnalyticsListener with a spool, although Fluss itself loses acknowledged writes then (apache/fluss#673).

One stack. First two faults, one writer: while a writer upserts batches of 100 events (acks=all), fluss-tablet-0 is
killed; the watchdog `up` started (targets.local.watchdog) restarts it; once writes are acknowledged again the
TaskManager gets the same. Then an application process runs real Sagaz sagas through the listener (bench/chaos.py's
ListenerApp) and every process of the stack is killed at once, the watchdog with it; `up` starts it again, the
sagas go on, and the application waits until its listener knows every event to be in Iceberg. Every wait is a
condition with a bounded timeout; when something does not come back the test fails with the log tails of the
components involved (never a skip).

Tiering must resume within freshness + 60 s of the last write, plus the time the watchdog's tiering liveness check
needs to restart a JobManager whose tiering job hung (Fluss's split generation can block forever after a tablet
server dies: apache/fluss#3261, docs/fluss-hw-truncation.md).

Ports: the usual environment overrides apply (e.g. SAGAZ_LAKEHOUSE_PORTS__TRINO=28080), to both the CLI and the
checks. Runs in about 5-6 minutes on 2 cores (the whole-stack fault about 2: ZooKeeper must expire the killed tablet
servers' sessions before they can register again).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from functools import cached_property
from pathlib import Path

import pytest
import yaml
from running import RunningStack
from support import REPO, suite_ports

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config, lake_health, tables
from sagaz_lakehouse.targets.local import watchdog

sys.path.insert(0, str(REPO))

from bench.chaos import (
    ListenerApp,
    Stack,
    Writer,
    evidence,
    fluss_ids,
    fluss_ids_by_saga,
    iceberg_ids,
    iceberg_ids_by_saga,
    kill_watchdog,
    trino_ids,
    trino_ids_by_saga,
)

WRITES_BACK_TIMEOUT = 150  # ZooKeeper session expiry (<= 40 s with tickTime 2 s) + restart, with margin
LAKE_SLACK = 60  # on top of the freshness: the target
# The liveness check's worst case: a hang seen at the end of the second window of LIVENESS_STALL_S (+5 s), the
# JobManager restarted and its job resubmitted, Fluss's release of the table the hung job held, one round.
TIERING_REPAIR = 2 * (watchdog.LIVENESS_STALL_S + 5) + watchdog.FLUSS_TIERING_RELEASE_S + 120


class EnvStack(Stack):
    """The chaos benchmark's stack on ``ports``: SAGAZ_LAKEHOUSE_PORTS__* in the environment still win, only the
    caller's S3 credentials are kept from it."""

    def __init__(self, workdir: Path, ports: dict[str, int]) -> None:
        (workdir / config.CONFIG_FILENAME).write_text(yaml.safe_dump({"ports": ports}))
        RunningStack.__init__(self, workdir)  # the file above instead of the benchmark's

    @cached_property
    def settings(self) -> lakehouse.Settings:
        return lakehouse.load_settings(self.settings_file)  # with the environment, as the CLI reads it


def tails(stack: Stack, names: list[str], lines: int = 40) -> str:
    out = []
    for name in names:
        path = stack.run_dir / "logs" / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        out.append(f"--- {name} (last {lines} lines) ---\n" + "\n".join(text))
    return "\n".join(out)


def fail(stack: Stack, message: str, names: list[str] | None = None) -> None:
    names = names or [n for n in stack.components() if n.startswith(("fluss-", "flink-"))]
    pytest.fail(f"{message}\n{tails(stack, names)}", pytrace=False)


def wait_for(stack: Stack, condition, timeout: float, what: str, names: list[str] | None = None) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            fail(stack, f"{what}: not within {timeout:.0f}s", names)
        time.sleep(0.5)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    # Off the defaults (a user's own stack may hold them). This test runs alone (`serial`), after the lanes, so its
    # range may overlap theirs.
    stack = EnvStack(tmp_path_factory.mktemp("faults"), suite_ports("faults"))
    try:
        for step in (("up",), ("create-tables",)):
            result = stack.cli(*step)
            if result.returncode != 0:
                pytest.fail(f"`{' '.join(step)}` exited {result.returncode}\n{result.stderr[-6000:]}", pytrace=False)
        problem = stack.wait_ready(240)
        if problem:
            fail(stack, problem)
        yield stack
    finally:
        stack.cli("down", "--purge", timeout=300)  # stops the watchdog first


def kill_and_restart(stack: Stack, writer: Writer, name: str) -> str:
    """kill -9 of the component's process group; the watchdog must restart it and writes must come back."""
    pid = stack.signal(name, signal.SIGKILL)
    assert pid is not None, f"{name} is not running"
    killed = time.monotonic()
    restarted = wait_for(stack, lambda: stack.pid(name) not in (None, pid), 60, f"the watchdog to restart {name}",
                         [name])
    back = wait_for(stack, lambda: bool(writer.acks_after(killed + 1)), WRITES_BACK_TIMEOUT,
                    f"writes acknowledged again after killing {name} (writer errors: {writer.errors[-3:]})")
    return f"{name}: restarted after {restarted:.0f}s, writes acknowledged again after {back:.0f}s"


def test_kill_9_of_a_tablet_server_and_of_the_taskmanager_loses_and_duplicates_nothing(stack):
    settings = stack.settings
    assert settings.replication_factor >= 2, "the shipped defaults must replicate every bucket"
    tag = f"faults-{os.getpid()}-{int(time.time())}"
    writer = Writer(stack.endpoints.fluss_bootstrap, settings.lake.database, tag)
    writer.start()
    try:
        wait_for(stack, lambda: len(writer.acked) > 0, 60, "the writer's first acknowledgement")
        time.sleep(3)
        faults = [kill_and_restart(stack, writer, "fluss-tablet-0")]
        time.sleep(3)
        faults.append(kill_and_restart(stack, writer, "flink-taskmanager-0"))
        time.sleep(3)
    finally:
        writer.stop_flag.set()
        writer.join(60)
    with writer.lock:
        acked, last_ack = set(writer.acked), max(writer.ack_times)
    assert len(acked) >= 1000, f"only {len(acked)} events acknowledged; writer errors: {writer.errors[-5:]}"

    in_fluss, bucket_errors = asyncio.run(fluss_ids(stack.endpoints, settings.lake.database, tag))
    if bucket_errors or acked - in_fluss:
        fail(stack, f"{len(acked - in_fluss)} of {len(acked)} acknowledged events missing from Fluss "
                    f"(e.g. {sorted(acked - in_fluss)[:3]}); bucket errors: {bucket_errors}")

    freshness = config.duration_seconds(settings.freshness)
    in_lake: set[str] = set()

    def all_in_iceberg() -> bool:
        nonlocal in_lake
        in_lake, _ = iceberg_ids(stack, tag)
        return acked <= in_lake

    budget = last_ack + freshness + LAKE_SLACK + TIERING_REPAIR - time.monotonic()
    waited = wait_for(stack, all_in_iceberg, max(0.0, budget),
                      f"every acknowledged event in Iceberg within freshness + {LAKE_SLACK + TIERING_REPAIR}s of the "
                      "last write (tiering resumed)")
    assert acked <= in_lake, waited
    print(f"{len(acked)} acknowledged; {'; '.join(faults)}; all in Iceberg {waited:.0f}s after the wait began")
    in_trino, rows = trino_ids(stack, tag)
    assert acked <= in_trino, f"{len(acked - in_trino)} acknowledged events missing from Trino"
    assert rows == len(in_trino), f"{rows - len(in_trino)} duplicated rows in Trino"

    async def health() -> list[lake_health.Finding]:
        from sagaz_lakehouse import clients

        async with clients.fluss_connection(stack.endpoints) as connection:
            snapshot = await lake_health.sample(connection, settings.lake.database, tables.TABLE)
            return [*lake_health.log_behind_lake(snapshot, tables.TABLE),
                    *await lake_health.kv_probe(connection, settings.lake.database, tables.TABLE)]

    findings = asyncio.run(health())
    assert not findings, "\n".join(map(str, findings))


def test_kill_9_of_the_whole_stack_during_sagas_loses_no_event_through_the_listener(stack, tmp_path):
    """The row of bench/results/chaos.md that Fluss alone cannot pass: a whole-stack kill -9 cuts every replica of a
    bucket back to its saved high watermark. The listener's spool re-sends what it cannot prove to be in Iceberg."""
    settings = stack.settings
    freshness = config.duration_seconds(settings.freshness)
    app = ListenerApp(stack, tmp_path / "app", f"ft{os.getpid() % 100000:05d}")
    app.start(rate=50, safe_timeout=freshness + LAKE_SLACK + TIERING_REPAIR)
    status = app.status

    def written_after(moment: float, more_than: int) -> bool:
        now = status()
        return now.get("at", 0) > moment and now.get("written", 0) > more_than

    wait_for(stack, lambda: written_after(0, 0), 60, f"the application's first acknowledged events ({status()})")
    time.sleep(3)  # sagas keep running: some events acknowledged, some in flight, some only in the spool
    at_fault = status()
    log_offsets = {n: stack.log_size(n) for n in stack.components() if n.startswith("fluss-")}
    kill_watchdog(stack)
    for name in stack.components():
        stack.signal(name, signal.SIGKILL)
    assert stack.wait_dead(stack.components(), 10), "the stack did not die"
    killed = time.monotonic()
    up = stack.cli("up", timeout=600)
    if up.returncode != 0:
        fail(stack, f"`up` after the kill exited {up.returncode}\n{up.stderr[-4000:]}")
    up_s = time.monotonic() - killed
    wait_for(stack, lambda: written_after(killed, at_fault.get("written", 0) + 100), WRITES_BACK_TIMEOUT,
             f"the listener's writes acknowledged again after the kill ({status()})")
    back = time.monotonic() - killed
    time.sleep(3)
    stopped = time.monotonic()
    final = app.stop(freshness + LAKE_SLACK + TIERING_REPAIR + 60)
    safe_s = time.monotonic() - stopped
    returned = app.recorded()
    assert final.get("done"), f"the application did not finish: {final}"
    assert len(returned) >= 1000, f"only {len(returned)} hooks returned"
    assert final["dropped"] == 0 and final["pending"] == 0, final
    assert final["replay_rounds"] >= 1, f"the listener saw no sign of the restart: {final}"
    assert final["safe"], f"not every event known to be in Iceberg in time: {final}"

    in_fluss, bucket_errors = asyncio.run(fluss_ids_by_saga(stack.endpoints, settings.lake.database, app.prefix))
    in_lake = iceberg_ids_by_saga(stack, app.prefix)
    if returned - in_lake or returned - in_fluss or bucket_errors:
        fail(stack, f"{len(returned - in_lake)} of {len(returned)} events whose hook returned are not in Iceberg, "
                    f"{len(returned - in_fluss)} not in Fluss (e.g. {sorted(returned - in_lake)[:3]}); bucket "
                    f"errors: {bucket_errors}; listener: {final}")
    in_trino, rows = trino_ids_by_saga(stack, app.prefix)
    assert returned <= in_trino and rows == len(in_trino), f"{rows - len(in_trino)} duplicated rows in Trino"
    cut = "; ".join(evidence(stack, log_offsets)) or "no log was cut back this time"
    print(f"{len(returned)} events whose hook returned, all in Iceberg; listener re-sent {final['replayed']} events in "
          f"{final['replay_rounds']} round(s); `up` done {up_s:.0f}s and writes back {back:.0f}s after the kill, every "
          f"event known to be in Iceberg {safe_s:.0f}s after the sagas stopped; {cut}")
