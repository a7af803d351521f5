"""Benchmark of the compose target against the local target, both measured in the same run, written as a Markdown
table (``make bench-compose``) in the format of bench/results/local.md.

- ``up`` to all-healthy with warm caches and images (after a first ``up`` and a ``down`` that keeps the data):
  compose against local.
- Tiering latency p50/p95 over N probes (doctor's probe: write → the lake snapshot covers it), compose against
  local, each also against the table freshness.
- Peak memory of the whole stack while the probes run: the summed container memory (``docker stats``) against the
  summed RSS of the local processes.

Each target runs on its own 3xxxx ports from a temporary folder, one after the other (never both at once), and is
torn down (``down --purge``) afterwards. The Docker Engine must be running with the stand-in images built: the
Makefile target starts it (scripts/with-docker-engine.sh).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from local import CLI, RssSampler, percentile, tiering_latencies, timed  # noqa: E402

import sagaz_lakehouse as lakehouse  # noqa: E402
from sagaz_lakehouse import config  # noqa: E402

PORTS = {
    "local": {"zookeeper": 33181, "fluss_coordinator": 33123, "fluss_tablet": 33124, "minio": 33000,
              "minio_console": 33001, "rest_catalog": 33182, "flink_rest": 33081, "flink_rpc": 33623, "trino": 33080},
    "compose": {"zookeeper": 34181, "fluss_coordinator": 34123, "fluss_tablet": 34124, "minio": 34000,
                "minio_console": 34001, "rest_catalog": 34182, "flink_rest": 34081, "flink_rpc": 34623,
                "trino": 34080},
}
PROJECT = "sagaz-bench"
UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 1e3, "mb": 1e6, "gb": 1e9}


def flags(target: str) -> list[str]:
    return ["--target", target, "--set", f"project={PROJECT}",
            *(arg for key, value in PORTS[target].items() for arg in ("--set", f"ports.{key}={value}"))]


def settings_for(target: str) -> config.Settings:
    return lakehouse.load_settings(None, {"target": target, "project": PROJECT,
                              **{f"ports.{k}": str(v) for k, v in PORTS[target].items()}}, environ={})


def to_mb(text: str) -> float:
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?i?B)\s*", text, re.IGNORECASE)
    if not match:
        return 0.0
    return float(match.group(1)) * UNITS[match.group(2).lower()] / 2**20


class ContainerMemory(threading.Thread):
    """Samples the summed memory use of the project's containers (`docker stats`, cgroup usage without cache)."""

    def __init__(self, project: str) -> None:
        super().__init__(daemon=True)
        self.project, self.peak_mb, self.stop_flag = project, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.peak_mb = max(self.peak_mb, self.current_mb())
            self.stop_flag.wait(2.0)

    def current_mb(self) -> float:
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}"],
                             capture_output=True, text=True).stdout.split()
        if not ids:
            return 0.0
        stats = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
                               capture_output=True, text=True).stdout
        return sum(to_mb(line.split("/")[0]) for line in stats.splitlines() if "/" in line)


def measure(target: str, probes: int) -> dict[str, float | list[float]]:
    """Cold `up` (not reported), `down`, warm `up` (timed), tables, probes with memory sampled; then purge."""
    with tempfile.TemporaryDirectory(prefix=f"sagaz-bench-{target}-") as tmp:
        work = Path(tmp)
        args = flags(target)
        settings = settings_for(target)
        sampler: RssSampler | ContainerMemory = (ContainerMemory(PROJECT) if target == "compose"
                                                 else RssSampler(work / ".sagaz-lakehouse" / "pids"))
        try:
            print(f"{target}: cold up", file=sys.stderr)
            timed([*CLI, "up", *args], work)
            timed([*CLI, "down", *args], work)
            print(f"{target}: warm up", file=sys.stderr)
            warm = timed([*CLI, "up", *args], work)
            timed([*CLI, "create-tables", *args], work)
            sampler.start()
            latencies = tiering_latencies(settings, probes)
        finally:
            sampler.stop_flag.set()
            if sampler.is_alive():
                sampler.join()
            subprocess.run([*CLI, "down", "--purge", *args], cwd=work, capture_output=True)
    return {"up": warm, "latencies": latencies, "memory": sampler.peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "compose.md")
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()

    local = measure("local", args.probes)
    compose = measure("compose", args.probes)
    settings = settings_for("compose")
    freshness = config.duration_seconds(settings.freshness)
    rows: list[tuple[str, str, str, str]] = []  # metric, value, baseline, ratio

    def row(metric: str, value: float, baseline: float, label: str, fmt: Callable[[float], str]) -> None:
        rows.append((metric, fmt(value), f"{label} {fmt(baseline)}", f"{value / baseline:.2f}x" if baseline else "-"))

    row("`up` to all-healthy, warm (s)", compose["up"], local["up"], "local", lambda v: f"{v:.1f}")  # type: ignore[arg-type]
    for label, q in (("p50", 0.5), ("p95", 0.95)):
        value = percentile(compose["latencies"], q)  # type: ignore[arg-type]
        row(f"tiering latency {label}, {args.probes} probes (s)", value,
            percentile(local["latencies"], q), "local", lambda v: f"{v:.1f}")  # type: ignore[arg-type]
        rows.append((f"tiering latency {label} against freshness", f"{value:.1f}", f"freshness {freshness:.0f}",
                     f"{value / freshness:.2f}x"))
    row("peak memory of the stack (MB): containers vs processes", compose["memory"], local["memory"], "local RSS",
        lambda v: f"{v:.0f}")  # type: ignore[arg-type]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Compose target benchmark\n\nMachine: {os.cpu_count()} cores; run {time.strftime('%Y-%m-%d %H:%M')}; "
              f"freshness {settings.freshness}, tiering poll {settings.tiering_poll}; compose on the stand-in images "
              "(images/) and a private Docker Engine. The baseline is the local target, measured in the same run. "
              "Produced by `make bench-compose` (bench/compose.py).\n\n"
              "| metric | value | baseline (same run) | ratio |\n|---|---|---|---|\n")
    args.out.write_text(header + "".join(f"| {m} | {v} | {b} | {r} |\n" for m, v, b, r in rows))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
