"""Benchmark of the local target, written as a Markdown table (``make bench-local``).

Each number comes with a baseline measured in the same run, so results are comparable across machines, and with
its target where issue 29 sets one:

- A newcomer's first ``make up``, from nothing: a clone of the committed code, a new virtual environment, and empty
  pip, uv, Go (GOCACHE, GOMODCACHE) and download caches; split into its steps (the package install, ``up``,
  ``create-tables``, ``doctor``), and the time until Prometheus, built in the background, runs too. Baseline: the
  warm ``up`` below.
- Start-up: ``up`` to all-healthy with a warm cache, against a no-op ``up`` (everything already running). The
  ``down`` before it writes Trino's class cache, which the cold run trained (targets/local/class_cache.py).
- CLI: ``sagaz-lakehouse --help`` and ``render`` of both container targets, against a bare interpreter start.
- Tiering latency p50/p95 over N probes (write → lake snapshot covers it), against the table freshness.
- Ingest with replication through pyfluss (the default stack: 2 tablet servers, every bucket replicated): batched
  upserts with every handle awaited, against upserts acknowledged one at a time.
- The listener offered 20,000 events/s for 60 s (bench/sagaz.py's paced run): written events/s and drops.
- Real-time visibility (bench/visibility.py, 1,000 events/s): hook return → readable by a primary-key lookup, a
  log scan, and the running Flink query, p50 and p99; baseline: a raw pyfluss upsert's round trip.
- Peak resident memory of the whole stack, against the 8 GB budget.

It runs a stack of its own in a temporary folder (default ports; stop other stacks first) and tears it down.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Not bench/ itself: bench/sagaz.py would shadow the sagaz package the listener imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

import sagaz_lakehouse as lakehouse  # noqa: E402
from sagaz_lakehouse import addresses, clients, config, doctor  # noqa: E402
from sagaz_lakehouse.stack import View  # noqa: E402

RSS_BUDGET_MB = 8 * 1024
COLD_MAKE_UP_TARGET_S = 6 * 60  # issue 29
WARM_UP_TARGET_S = 20
INGEST_TARGET = 7000  # events/s
LISTENER_OFFER = 20_000  # events/s, for LISTENER_SECONDS
LISTENER_SECONDS = 60.0
MAKE_UP_LOG = Path(tempfile.gettempdir()) / "sagaz-bench-make-up.log"  # kept after the run, with timestamps
COMMAND_LOG = Path(tempfile.gettempdir()) / "sagaz-bench-commands.log"  # the later commands' output
MAKE_UP_STEPS = ("sagaz-lakehouse up", "sagaz-lakehouse create-tables", "sagaz-lakehouse doctor")


def timed(args: list[str], cwd: Path, repeat: int = 1) -> float:
    """Median wall time of a command; fails loudly if it fails."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return statistics.median(times)


class RssSampler(threading.Thread):
    """Samples the summed RSS of the stack's processes (found through the run folder's pid files)."""

    def __init__(self, pid_dir: Path) -> None:
        super().__init__(daemon=True)
        self.pid_dir, self.peak_mb, self.stop_flag = pid_dir, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(1.0):
            self.peak_mb = max(self.peak_mb, self.current_mb())

    def current_mb(self) -> float:
        total = 0
        for pid_file in self.pid_dir.glob("*.pid"):
            try:
                status = Path(f"/proc/{pid_file.read_text().strip()}/status").read_text()
            except (OSError, ValueError):
                continue
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        return total / 1024


async def ingest(settings: config.Settings, rows: int, one_by_one: bool) -> float:
    import fluss

    from sagaz_lakehouse.tables import TABLE

    batch = f"bench-{uuid.uuid4().hex[:8]}"
    async with clients.fluss_connection(addresses.endpoints(settings, View.EXTERNAL)) as connection:
        table = await connection.get_table(fluss.TablePath(settings.lake.database, TABLE))
        writer = table.new_upsert().create_writer()
        started = time.perf_counter()
        handles = []
        for i in range(rows):
            row = doctor.probe_row(f"{batch}-{i}") | {"saga_name": batch, "event_type": "bench"}
            handle = writer.upsert(row)
            if one_by_one:
                await handle.wait()
            else:
                handles.append(handle)
        await writer.flush()
        for handle in handles:
            await handle.wait()
        return rows / (time.perf_counter() - started)


def tiering_latencies(settings: config.Settings, probes: int) -> list[float]:
    endpoints = addresses.endpoints(settings, View.EXTERNAL)
    latencies = []
    for i in range(probes):
        written_at, table_id, offsets = asyncio.run(doctor.write_probe(settings, endpoints, f"bench-probe-{i}"))
        asyncio.run(doctor.wait_for_lake_snapshot(settings, endpoints, table_id, offsets, written_at + 300))
        latencies.append(time.monotonic() - written_at)
        print(f"probe {i + 1}/{probes}: {latencies[-1]:.1f}s", file=sys.stderr)
    return latencies


class FreshMachine:
    """A newcomer's machine as far as this project goes: a clone of the committed code, a new virtual
    environment, and empty pip, Go and download caches, all under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root, self.clone, self.venv = root, root / "clone", root / "venv"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(self.clone)], check=True)
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        self.env = {**os.environ, "PATH": f"{self.venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(self.venv),
                    "PIP_CACHE_DIR": str(root / "pip-cache"), "UV_CACHE_DIR": str(root / "uv-cache"),
                    "GOCACHE": str(root / "go-build"),
                    "GOMODCACHE": str(root / "go-mod"), "SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR": str(root / "cache")}
        self.env.pop("PYTHONPATH", None)
        self.cli = [str(self.venv / "bin" / "sagaz-lakehouse")]
        self.commit = subprocess.run(["git", "-C", str(self.clone), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True, check=True).stdout.strip()

    def make_up(self, log: Path) -> dict[str, float]:
        """``make up`` as the README says; seconds from the start to each step's first line, and the total."""
        marks: dict[str, float] = {}
        started = time.monotonic()
        with log.open("w") as out:
            process = subprocess.Popen(["make", "up", f"PYTHON={self.venv / 'bin' / 'python'}"], cwd=self.clone,
                                       env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert process.stdout is not None
            for line in process.stdout:
                elapsed = time.monotonic() - started
                out.write(f"{elapsed:7.1f} {line}")
                out.flush()
                for step in MAKE_UP_STEPS:
                    if line.strip() == step:
                        marks.setdefault(step, elapsed)
        marks["total"] = time.monotonic() - started
        if process.wait() != 0:
            raise SystemExit(f"cold `make up` failed; its output is in {log}:\n{log.read_text()[-3000:]}")
        return marks

    def timed(self, *args: str) -> float:
        """Seconds ``sagaz-lakehouse ARGS`` took; its output goes to COMMAND_LOG."""
        started = time.perf_counter()
        result = subprocess.run([*self.cli, *args], cwd=self.clone, env=self.env, capture_output=True, text=True)
        with COMMAND_LOG.open("a") as log:
            log.write(f"$ sagaz-lakehouse {' '.join(args)}  ({time.perf_counter() - started:.1f}s)\n"
                      f"{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise SystemExit(f"sagaz-lakehouse {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return time.perf_counter() - started


def wait_for_prometheus(settings: config.Settings, since: float, timeout: float = 900) -> float:
    """Seconds from ``since`` until Prometheus answers ready (on a cold cache it is built in the background)."""
    import urllib.request

    ready = f"{addresses.endpoints(settings, View.EXTERNAL).prometheus}/-/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready, timeout=2) as response:  # noqa: S310 - http on loopback
                if response.status == 200:
                    return time.monotonic() - since
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"Prometheus was not ready {timeout:.0f}s after `make up` started")


def load_bench(name: str) -> Any:
    """Another benchmark script of bench/ as a module (bench/sagaz.py cannot be imported as ``sagaz``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def listener_sustained(settings: config.Settings) -> dict[str, float]:
    from sagaz_lakehouse.sagaz import FlussAnalyticsListener

    paced = load_bench("sagaz")
    endpoints = addresses.endpoints(settings, View.EXTERNAL)

    def make() -> FlussAnalyticsListener:
        return FlussAnalyticsListener(endpoints.fluss_bootstrap, database=settings.lake.database, buffer_size=200_000)

    return asyncio.run(paced.sustained(make, LISTENER_OFFER, LISTENER_SECONDS, f"bench-{uuid.uuid4().hex[:8]}"))


def visibility(cwd: Path, work: Path) -> tuple[dict[str, float], list[str]]:
    """bench/visibility.py against the running stack, at its defaults (1,000 events/s for 30 s): the values and its
    notes (what each reader saw). Run before the listener's paced run: the live query reads the last 10 minutes of
    the table, and a million events ahead of the measured ones would be measured instead."""
    saved = work / "visibility.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "visibility.py"), "--out", str(work / "vis.md"),
                             "--save", str(saved)], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench/visibility.py failed:\n{result.stderr[-3000:]}")
    import json

    result = json.loads(saved.read_text())
    failed = [note for note in result["notes"] if "reader failed" in note]
    if failed:
        raise SystemExit(f"bench/visibility.py: {'; '.join(failed)}")
    return result["values"], result["notes"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "local.md")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str, str]] = []  # metric, value, target, baseline, ratio
    notes: list[str] = []

    def row(metric: str, value: float, shown: str, baseline: float, baseline_label: str, target: str = "-") -> None:
        rows.append((metric, shown, target, f"{baseline_label} {baseline:.3g}" if baseline_label else f"{baseline:.3g}",
                     f"{value / baseline:.2f}x" if baseline else "-"))

    load_before = os.getloadavg()[0]
    COMMAND_LOG.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="sagaz-bench-") as tmp:
        work = Path(tmp)
        machine = FreshMachine(work)
        sampler = RssSampler(machine.clone / ".sagaz-lakehouse" / "pids")
        sampler.start()
        try:
            started = time.monotonic()
            marks = machine.make_up(MAKE_UP_LOG)
            print(f"cold make up: {marks} (its output: {MAKE_UP_LOG})", file=sys.stderr, flush=True)
            settings = lakehouse.load_settings(None, environ={})  # `make up` runs on the defaults
            prometheus_s = wait_for_prometheus(settings, started)
            print(f"Prometheus ready {prometheus_s:.0f}s after the start", file=sys.stderr, flush=True)
            machine.timed("down")  # Trino's first run trained its class cache: this writes it (class_cache.py)
            trained = sorted((work / "cache" / "aot").glob("*.aot"))
            notes.append("warm `up` maps Trino's ahead-of-time class cache, which the cold run trained and its "
                         f"`down` wrote: {', '.join(f'{c.name} ({c.stat().st_size >> 20} MB)' for c in trained)}"
                         if trained else "no class cache was written at the first `down`: warm `up` ran without one")
            warm = machine.timed("up")
            noop = machine.timed("up")
            pip_s = marks[MAKE_UP_STEPS[0]]
            up_s = marks[MAKE_UP_STEPS[1]] - pip_s
            total = marks["total"]
            row("cold `make up`: clean clone, new venv, empty pip/uv/Go/download caches → `doctor` passed (s)", total,
                f"{total:.0f}", warm, "warm `up`", f"{COLD_MAKE_UP_TARGET_S}")
            for metric, value in (("  of which installing the package (s)", pip_s), ("  of which `up` (s)", up_s),
                                  ("  of which `create-tables` and `doctor` (s)", total - marks[MAKE_UP_STEPS[1]])):
                row(metric, value, f"{value:.0f}", total, "share of the cold total")
            row("cold: until Prometheus (built in the background) runs too (s)", prometheus_s, f"{prometheus_s:.0f}",
                total, "cold `make up`")
            row("`up` to all-healthy, warm cache (s)", warm, f"{warm:.1f}", noop, "no-op `up`", f"{WARM_UP_TARGET_S}")

            interpreter = timed([sys.executable, "-c", "pass"], work, repeat=5)
            help_s = timed([*machine.cli, "--help"], work, repeat=5)
            row("`--help` (s)", help_s, f"{help_s:.3f}", interpreter, "python start")
            for render_target in ("compose", "kubernetes"):
                render_s = timed([*machine.cli, "render", "--target", render_target, "--out",
                                  str(work / render_target)], work, 3)
                row(f"`render --target {render_target}` (s)", render_s, f"{render_s:.3f}", help_s, "`--help`")

            machine.timed("create-tables")
            latencies = tiering_latencies(settings, args.probes)
            freshness = config.duration_seconds(settings.freshness)
            for label, q in (("p50", 0.5), ("p95", 0.95)):
                value = percentile(latencies, q)
                row(f"tiering latency {label}, {args.probes} probes (s)", value, f"{value:.1f}", freshness,
                    "freshness")
            print("visibility next", file=sys.stderr, flush=True)
            seen, seen_notes = visibility(machine.clone, work)
            notes += [f"visibility: {note}" for note in seen_notes]
            round_trip = seen["raw pyfluss upsert + flush round trip, p50 (s)"]
            ingest_20k = next(v for k, v in seen.items() if k.startswith("ingest, "))
            for metric, value in seen.items():
                if "hook return" in metric:
                    target = "2" if metric.startswith("Flink") else "1"
                    row(f"visibility, 1,000 events/s: {metric}", value, f"{value:.2f}", round_trip,
                        "raw upsert round trip p50", target if metric.endswith("p99 (s)") else "-")
            single = asyncio.run(ingest(settings, max(100, args.events // 20), one_by_one=True))
            batched = asyncio.run(ingest(settings, args.events, one_by_one=False))
            row(f"ingest with replication, {args.events} upserts batched, every handle awaited (events/s)", batched,
                f"{batched:.0f}", single, "acked one by one", f">= {INGEST_TARGET}")
            row("ingest with replication, 20,000 upserts batched, every handle awaited (bench/visibility.py; "
                "events/s)", ingest_20k, f"{ingest_20k:.0f}", single, "acked one by one", f">= {INGEST_TARGET}")
            print(f"ingest {batched:.0f}/s; the listener's paced run next", file=sys.stderr, flush=True)
            paced = listener_sustained(settings)
            print(f"listener: {paced}", file=sys.stderr, flush=True)
            row(f"listener offered {LISTENER_OFFER} events/s for {LISTENER_SECONDS:.0f} s: written (events/s)",
                paced["written_per_s"], f"{paced['written_per_s']:.0f}", paced["offered_per_s"], "offered")
            rows.append(("  dropped; still queued when the offer ended (events)",
                         f"{paced['dropped']:.0f}; {paced['pending_at_end']:.0f}", "0 dropped", "-", "-"))
        finally:
            sampler.stop_flag.set()
            sampler.join()
            subprocess.run([*machine.cli, "down", "--purge"], cwd=machine.clone, env=machine.env, capture_output=True)
        row("peak RSS of the stack (MB)", sampler.peak_mb, f"{sampler.peak_mb:.0f}", RSS_BUDGET_MB, "budget")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Local target benchmark\n\nMachine: {os.cpu_count()} cores, load average {load_before:.1f} before "
              f"/ {os.getloadavg()[0]:.1f} after; run {time.strftime('%Y-%m-%d %H:%M')} of commit {machine.commit}; "
              f"freshness {settings.freshness}, tiering poll {settings.tiering_poll}. Produced by `make bench-local` "
              "(bench/local.py: the method is in its docstring), in one run from a fresh cache.\n\n"
              "| metric | value | target | baseline (same run) | ratio |\n|---|---|---|---|---|\n")
    args.out.write_text(header + "".join(f"| {' | '.join(r)} |\n" for r in rows)
                        + "".join(f"\n- {note}" for note in notes) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
