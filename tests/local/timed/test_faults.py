"""Faults on the local target with the shipped configuration: no acknowledged saga event is lost or duplicated when
a tablet server or the Flink TaskManager is killed (kill -9) during writes, and tiering resumes by itself.

One stack, two faults, one writer: while a writer upserts batches of 100 events (acks=all), fluss-tablet-0 is
killed; the watchdog `up` started (targets.local.watchdog) restarts it; once writes are acknowledged again the
TaskManager gets the same. Every wait is a condition with a bounded timeout; when something does not come back the
test fails with the log tails of the components involved (never a skip).

Tiering must resume within freshness + 60 s of the last write, plus the time the watchdog's tiering liveness check
needs to restart a JobManager whose tiering job hung (Fluss's split generation can block forever after a tablet
server dies: apache/fluss#3261, docs/fluss-hw-truncation.md).

Ports: the usual environment overrides apply (e.g. SAGAZ_LAKEHOUSE_PORTS__TRINO=28080), to both the CLI and the
checks. Runs in about 3-4 minutes on 2 cores.
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

sys.path.insert(0, str(REPO))

from bench.chaos import (
    Stack,
    Writer,
    fluss_ids,
    iceberg_ids,
    trino_ids,
)

WRITES_BACK_TIMEOUT = 150  # ZooKeeper session expiry (<= 40 s with tickTime 2 s) + restart, with margin
LAKE_SLACK = 60  # on top of the freshness: the target
TIERING_REPAIR = 150  # liveness check: 2 windows of 3 x freshness (dev: 35 s each), then a JobManager restart


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
