"""Benchmark of the Kubernetes target on the real single-node cluster of tests/kubernetes/node.py, with the local target
measured in the same run as the baseline (``make bench-kubernetes``), written as a Markdown table. (Not named
kubernetes.py: bench/ is on sys.path, and the file would shadow the kubernetes client package.)

- ``up`` to all Ready: Kubernetes (a fresh namespace: claims provisioned, jars fetched by the init containers, every
  pod started and probed by the kubelet) and again after ``down`` (claims kept); the local target's warm ``up``.
- Tiering latency p50/p95 over N probes (write → lake snapshot covers it; on Kubernetes through the driver's
  port-forwards), against the same measurement on the local target.

Both stacks use host ports in 4xxxx (other stacks on the machine keep the defaults) and run one after the other, never
at once. The cluster is started and stopped here (containerd, kubelet, ... as in the tests); it needs root.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
# The cluster harness of the tests (tests/kubernetes/node.py and what it imports); appended, so that a folder
# of tests/ never shadows a package (the kubernetes client).
sys.path += [str(REPO / "tests"), str(REPO / "tests" / "kubernetes")]

from local import CLI, percentile, tiering_latencies, timed  # noqa: E402

import sagaz_lakehouse as lakehouse  # noqa: E402
from sagaz_lakehouse import config  # noqa: E402
from sagaz_lakehouse.targets.kubernetes.driver import KubernetesDriver  # noqa: E402

KUBE_PORTS = {"zookeeper": 42181, "fluss_coordinator": 49123, "fluss_tablet": 49124, "minio": 49000,
              "minio_console": 49001, "rest_catalog": 48181, "flink_rest": 48081, "flink_rpc": 46123, "trino": 48080}
LOCAL_PORTS = {"zookeeper": 42281, "fluss_coordinator": 49223, "fluss_tablet": 49224, "minio": 49200,
               "minio_console": 49201, "rest_catalog": 48281, "flink_rest": 48381, "flink_rpc": 46223, "trino": 48280}
# As tests/kubernetes/kubelet/test_real_stack.py: above every floor, about 6 GiB for the whole stack.
MEMORY = {"zookeeper": "256Mi", "minio": "256Mi", "rest_catalog": "384Mi", "fluss_coordinator": "768Mi",
          "fluss_tablet": "1Gi", "flink_jobmanager": "768Mi", "flink_taskmanager": "1536Mi", "trino": "1Gi"}


def sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def stand_in_images() -> list[str]:
    images = lakehouse.load_settings(None, {}, environ={}).images
    return sorted({getattr(images, field) for field in images.__dataclass_fields__})


def measure_local(work: Path, probes: int) -> dict[str, object]:
    values = {"target": "local", **{f"ports.{k}": str(v) for k, v in LOCAL_PORTS.items()}}
    subprocess.run([*CLI, "init", *sets(values)], cwd=work, check=True, capture_output=True)
    settings = lakehouse.load_settings(work / config.CONFIG_FILENAME, environ={})
    try:
        timed([*CLI, "up"], work)  # cold: fills the cache (not reported)
        timed([*CLI, "down"], work)
        warm = timed([*CLI, "up"], work)
        timed([*CLI, "create-tables"], work)
        latencies = tiering_latencies(settings, probes)
    finally:
        subprocess.run([*CLI, "down", "--purge"], cwd=work, capture_output=True, check=False)
    return {"up": warm, "latencies": latencies, "freshness": settings.freshness}


def measure_kubernetes(work: Path, probes: int) -> dict[str, object]:
    from node import start_real_cluster

    started = time.perf_counter()
    with start_real_cluster(work / "cluster", stand_in_images()) as cluster:
        cluster_s = time.perf_counter() - started
        assert cluster.node.artifact_server is not None
        values = {"target": "kubernetes", "kubernetes.kubeconfig": str(cluster.kubeconfig),
                  "kubernetes.namespace": "sagaz-bench", "local.maven_repository": cluster.node.artifact_server.url,
                  **{f"ports.{k}": str(v) for k, v in KUBE_PORTS.items()},
                  **{f"memory.{k}": v for k, v in MEMORY.items()}}
        stack = work / "stack"
        stack.mkdir()
        subprocess.run([*CLI, "init", *sets(values)], cwd=stack, check=True, capture_output=True)
        settings = lakehouse.load_settings(stack / config.CONFIG_FILENAME, environ={})
        try:
            first = timed([*CLI, "up", "--timeout", "900"], stack)
            timed([*CLI, "down"], stack)
            again = timed([*CLI, "up", "--timeout", "900"], stack)
            noop = timed([*CLI, "up"], stack)
            timed([*CLI, "create-tables"], stack)
            driver = KubernetesDriver(settings, stack, log=lambda _message: None)
            with driver.client_endpoints():
                latencies = tiering_latencies(settings, probes)
        finally:
            subprocess.run([*CLI, "down", "--purge"], cwd=stack, capture_output=True, check=False)
    return {"cluster": cluster_s, "up": first, "up_again": again, "noop": noop, "latencies": latencies,
            "images": cluster.image_timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "kubernetes.md")
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    # SIGTERM ends the run through the `with` blocks: stacks torn down, the cluster stopped and cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="sagaz-bench-local-") as local_dir:
        local = measure_local(Path(local_dir), args.probes)
    with tempfile.TemporaryDirectory(prefix="sagaz-bench-kube-") as kube_dir:
        kube = measure_kubernetes(Path(kube_dir), args.probes)

    rows = [
        ("`up` to all Ready, fresh namespace (s)", f"{kube['up']:.1f}", f"local warm `up` {local['up']:.1f}",
         f"{kube['up'] / local['up']:.1f}x"),
        ("`up` after `down` (claims kept) (s)", f"{kube['up_again']:.1f}", f"local warm `up` {local['up']:.1f}",
         f"{kube['up_again'] / local['up']:.1f}x"),
        ("no-op `up` (s)", f"{kube['noop']:.1f}", "", ""),
    ]
    for label, q in (("p50", 0.5), ("p95", 0.95)):
        mine, base = percentile(kube["latencies"], q), percentile(local["latencies"], q)  # type: ignore[arg-type]
        rows.append((f"tiering latency {label}, {args.probes} probes (s)", f"{mine:.1f}", f"local {base:.1f}",
                     f"{mine / base:.1f}x"))
    freshness = config.duration_seconds(str(local["freshness"]))
    header = (f"# Kubernetes target benchmark\n\nMachine: {os.cpu_count()} cores, shared; run "
              f"{time.strftime('%Y-%m-%d %H:%M')}; freshness {freshness:.0f}s. Real single-node cluster "
              f"(tests/kubernetes/node.py) started in {kube['cluster']:.0f}s"
              + (f", images loaded: {kube['images']}" if kube["images"] else ", images already loaded")
              + ". Produced by `make bench-kubernetes` (bench/kubernetes_bench.py); baseline: the local target in the "
              "same run.\n\n| metric | kubernetes | baseline (same run) | ratio |\n|---|---|---|---|\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "".join(f"| {m} | {v} | {b} | {r} |\n" for m, v, b, r in rows))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
