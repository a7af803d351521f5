"""Benchmark of the local target, written as a Markdown table (``make bench-local``).

Each number comes with a baseline measured in the same run, so results are comparable across machines:

- CLI: ``sagaz-lakehouse --help`` and ``render`` of both container targets, against a bare interpreter start.
- Start-up: ``up`` to all-healthy with a warm cache, against a no-op ``up`` (everything already running).
- Tiering latency p50/p95 over N probes (write → lake snapshot covers it), against the table freshness.
- Ingest through pyfluss: batched upserts, against upserts acknowledged one at a time.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sagaz_lakehouse as lakehouse  # noqa: E402
from sagaz_lakehouse import addresses, clients, config, doctor  # noqa: E402
from sagaz_lakehouse.stack import View  # noqa: E402

CLI = [sys.executable, "-m", "sagaz_lakehouse"]
RSS_BUDGET_MB = 8 * 1024


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "local.md")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []  # metric, value, baseline, ratio

    with tempfile.TemporaryDirectory(prefix="sagaz-bench-") as tmp:
        work = Path(tmp)
        interpreter = timed([sys.executable, "-c", "pass"], work, repeat=5)
        help_s = timed([*CLI, "--help"], work, repeat=5)
        rows.append(("`--help` (s)", f"{help_s:.3f}", f"python start {interpreter:.3f}",
                     f"{help_s / interpreter:.1f}x"))
        for render_target in ("compose", "kubernetes"):
            render_s = timed([*CLI, "render", "--target", render_target, "--out", str(work / render_target)], work, 3)
            rows.append((f"`render --target {render_target}` (s)", f"{render_s:.3f}", f"`--help` {help_s:.3f}",
                         f"{render_s / help_s:.1f}x"))

        subprocess.run([*CLI, "init"], cwd=work, check=True, capture_output=True)
        settings = lakehouse.load_settings(work / config.CONFIG_FILENAME, environ={})
        sampler = RssSampler(work / ".sagaz-lakehouse" / "pids")
        sampler.start()
        try:
            timed([*CLI, "up"], work)  # cold: fills the cache and builds MinIO if needed (not reported)
            timed([*CLI, "down"], work)
            warm = timed([*CLI, "up"], work)
            noop = timed([*CLI, "up"], work)
            rows.append(("`up` to all-healthy, warm cache (s)", f"{warm:.1f}", f"no-op `up` {noop:.1f}",
                         f"{warm / noop:.1f}x"))
            timed([*CLI, "create-tables"], work)
            latencies = tiering_latencies(settings, args.probes)
            freshness = config.duration_seconds(settings.freshness)
            for label, q in (("p50", 0.5), ("p95", 0.95)):
                value = percentile(latencies, q)
                rows.append((f"tiering latency {label}, {args.probes} probes (s)", f"{value:.1f}",
                             f"freshness {freshness:.0f}", f"{value / freshness:.1f}x"))
            single = asyncio.run(ingest(settings, max(100, args.events // 20), one_by_one=True))
            batched = asyncio.run(ingest(settings, args.events, one_by_one=False))
            rows.append((f"ingest, {args.events} upserts batched (events/s)", f"{batched:.0f}",
                         f"acked one by one {single:.0f}", f"{batched / single:.1f}x"))
        finally:
            sampler.stop_flag.set()
            sampler.join()
            subprocess.run([*CLI, "down", "--purge"], cwd=work, capture_output=True)
        rows.append(("peak RSS of the stack (MB)", f"{sampler.peak_mb:.0f}", f"budget {RSS_BUDGET_MB}",
                     f"{sampler.peak_mb / RSS_BUDGET_MB:.2f}x"))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Local target benchmark\n\nMachine: {os.cpu_count()} cores; run {time.strftime('%Y-%m-%d %H:%M')}; "
              f"freshness {settings.freshness}, tiering poll {settings.tiering_poll}. "
              "Produced by `make bench-local` (bench/local.py).\n\n"
              "| metric | value | baseline (same run) | ratio |\n|---|---|---|---|\n")
    args.out.write_text(header + "".join(f"| {m} | {v} | {b} | {r} |\n" for m, v, b, r in rows))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
