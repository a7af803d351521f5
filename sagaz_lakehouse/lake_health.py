"""Lake health seen from the outside: a table whose tiering stalled, and buckets whose primary-key state broke.

Works from client endpoints only (pyfluss, and optionally the server logs on the local target), so the doctor and
a watchdog can use it on every target. Each check returns :class:`Finding` objects with a hint; an empty list
means healthy *as far as these signals can tell* (see docs/fluss-hw-truncation.md for what they cannot see).

Signals, and why:

* **stalled tiering** — the log end offset of a bucket keeps advancing while the lake snapshot (the offsets the
  tiering service committed to Iceberg, ``get_latest_lake_snapshot``) does not, for more than 3x the table's
  freshness. Needs two observations some time apart (:func:`sample` + :func:`stalled`), or one observation plus
  the age of the newest Iceberg snapshot (:func:`stalled_now`).
* **log behind the lake** — a bucket's log end offset is *below* the offset already committed to the lake. Fluss
  never shrinks a log on its own; this happens when a tablet server truncated its log to a stale high watermark
  after an unclean stop (acknowledged writes were lost; new writes reuse the offsets, and the tiering service,
  which resumes from the lake offset, skips them until the log grows past it).
* **broken primary-key state** — a KV limit scan of one row per bucket goes to that bucket's leader and reads its
  RocksDB directly; a bucket without a leader, or whose KV failed to initialise, answers with an error.
* **server log patterns** (local target) — ``Fail to init kv tablet`` and ``Truncating the logEndOffset`` in a
  tablet server's log name the bucket that was damaged, even when the KV ended up answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagaz_lakehouse.fluss_cluster import LEADER_ELECTION_S

STALL_FACTOR = 3.0
NO_LEADER = "No leader found"  # the client's error text for a bucket without a leader (metadata updater)
# The client's error text when the metadata it got lacks the table (fluss-rust cluster.rs `get_table`): the answering
# server was just restarted and has not had the coordinator's metadata update yet. Recovery too, with the same wait.
NO_TABLE_METADATA = "Table info not found"
RECOVERING = (NO_LEADER, NO_TABLE_METADATA)
# A bucket whose leader changed after the client's metadata was taken: the server it asked answers that it is not
# the leader (Fluss NotLeaderOrFollowerException, error 12), e.g. right after the coordinator or a tablet server was
# replaced and leaders were elected again. Asked again on a new connection (fresh metadata) within the election
# window before it counts.
LEADER_MOVED = ("Leader not local", "Not leader or follower", NO_LEADER)
ASK_AGAIN_S = 2.0
NO_LEADER_HINT = ("the coordinator has not elected a leader for these buckets; check that every tablet server is "
                  "up (`sagaz-lakehouse status`) and see the coordinator log (`sagaz-lakehouse logs "
                  "fluss-coordinator`)")


@dataclass(frozen=True)
class Finding:
    kind: str  # stalled-tiering | log-behind-lake | kv-unavailable | kv-init-failed | log-truncated | no-leader
    table: str
    bucket: int | None
    detail: str
    hint: str

    def __str__(self) -> str:
        where = f"{self.table} bucket {self.bucket}" if self.bucket is not None else self.table
        return f"{self.kind}: {where}: {self.detail} (hint: {self.hint})"


@dataclass(frozen=True)
class Sample:
    """One observation of a table: when (monotonic seconds), log end offsets and lake offsets per bucket."""

    at: float
    end_offsets: dict[int, int]
    lake_offsets: dict[int, int] = field(default_factory=dict)  # empty: no lake snapshot yet
    lake_snapshot_id: int | None = None
    iceberg_snapshot_age_s: float | None = None  # optional: age of the newest Iceberg snapshot


# ---------------------------------------------------------------------------------------------- pure checks


def stalled(samples: Sequence[Sample], freshness_s: float, table: str,
            factor: float = STALL_FACTOR) -> list[Finding]:
    """Buckets with records waiting for the lake while their lake offset stood still for more than ``factor`` x
    freshness.

    ``samples`` are observations of one table in time order. The tiering service commits a bucket's pending
    records within about one freshness, so a bucket that had records beyond its lake offset throughout a span of
    ``factor * freshness_s`` (ending at the last sample) without its lake offset moving is stalled, whether or not
    writes continued meanwhile. A table without any lake snapshot counts as lake offset 0."""
    if len(samples) < 2:
        return []
    last = samples[-1]
    limit = factor * freshness_s
    findings = []
    for bucket, end in sorted(last.end_offsets.items()):
        lake = last.lake_offsets.get(bucket, 0)
        first = samples[_lake_unchanged_since(samples, bucket)]
        waited = last.at - first.at
        if end > lake and first.end_offsets.get(bucket, 0) > lake and waited > limit:
            grew = f"grew {first.end_offsets.get(bucket, 0)} → {end}" if end > first.end_offsets.get(bucket, 0) \
                else f"stayed at {end}"
            findings.append(Finding(
                "stalled-tiering", table, bucket,
                f"{end - lake} records waiting for the lake: log end offset {grew} while the lake offset stayed "
                f"at {lake if bucket in last.lake_offsets else 'none (no lake snapshot)'} for {waited:.0f}s "
                f"(freshness {freshness_s:.0f}s)",
                "is the tiering job RUNNING (Flink /jobs/overview)? A tiering job whose split generation hangs "
                "(e.g. after a tablet server died) stays RUNNING: restart the JobManager (`up` resubmits the job). "
                "If the bucket's log is behind the lake (log-behind-lake), acknowledged data was lost"))
    return findings


def _lake_unchanged_since(samples: Sequence[Sample], bucket: int) -> int:
    """Index of the earliest sample from which the bucket's lake offset equals the last one's."""
    value = samples[-1].lake_offsets.get(bucket, 0)
    index = len(samples) - 1
    while index > 0 and samples[index - 1].lake_offsets.get(bucket, 0) == value:
        index -= 1
    return index


def stalled_now(sample: Sample, freshness_s: float, table: str, factor: float = STALL_FACTOR) -> list[Finding]:
    """One observation: records are pending in some bucket and the newest Iceberg snapshot is older than
    ``factor`` x freshness (the tiering service commits at least once per freshness when there is data)."""
    age = sample.iceberg_snapshot_age_s
    pending = {b: end - sample.lake_offsets.get(b, 0) for b, end in sample.end_offsets.items()
               if end > sample.lake_offsets.get(b, 0)}
    if not pending or age is None or age <= factor * freshness_s:
        return []
    return [Finding("stalled-tiering", table, None,
                    f"{sum(pending.values())} records pending in {len(pending)} bucket(s), newest Iceberg snapshot "
                    f"{age:.0f}s old (freshness {freshness_s:.0f}s)",
                    "is the tiering job RUNNING? see `sagaz-lakehouse logs flink-taskmanager`; a tiering job that "
                    "hangs while RUNNING is repaired by restarting the JobManager (README, Operations)")]


def log_behind_lake(sample: Sample, table: str) -> list[Finding]:
    return [Finding("log-behind-lake", table, bucket,
                    f"log end offset {sample.end_offsets.get(bucket, 0)} is below the offset {lake} already in the "
                    "lake: the log was truncated after it was tiered",
                    "acknowledged writes were lost by an unclean tablet-server stop with one replica (high "
                    "watermark truncation); offsets below the lake offset will not be tiered again. Use "
                    "replication factor >= 2 (durability.replication_factor)")
            for bucket, lake in sorted(sample.lake_offsets.items()) if sample.end_offsets.get(bucket, 0) < lake]


KV_INIT_FAILED = re.compile(r"Fail to init kv tablet for bucket TableBucket\{tableId=(\d+), bucket=(\d+)\}")
# The log end offset a restarted server recovered, then the offset it cut the log back to (LogTablet.java,
# ReplicaManager.truncateToHighWatermark).
LOG_LOADED = re.compile(r"Loading writer state for bucket TableBucket\{tableId=(\d+), bucket=(\d+)\} till offset (\d+)")
TRUNCATED = re.compile(r"Truncating the logEndOffset for replica id \d+ of table bucket "
                       r"TableBucket\{tableId=(\d+), bucket=(\d+)\} to local highWatermark (\d+)")
KV_HINT = ("the bucket's primary-key state could not be rebuilt after a restart (typically its KV snapshot is ahead "
           "of a truncated log); lookups and tiering of this bucket are unreliable. With one replica the lost "
           "writes cannot come back: use replication factor >= 2")
CUT_HINT = ("after an unclean stop the log was cut back to the last saved high watermark; with one replica these "
            "records, acknowledged before the stop, are gone (with more replicas the follower fetches them back)")


def truncations(text: str) -> dict[tuple[int, int], tuple[int | None, int]]:
    """(table id, bucket) → (log end offset recovered before the cut or None if not logged, offset cut back to),
    for each truncation in a tablet server's log (the last one per bucket)."""
    ends: dict[tuple[int, int], int] = {}
    cuts: dict[tuple[int, int], tuple[int | None, int]] = {}
    events = sorted([(m.start(), "end", m) for m in LOG_LOADED.finditer(text)]
                    + [(m.start(), "cut", m) for m in TRUNCATED.finditer(text)], key=lambda e: e[0])
    for _, kind, match in events:
        key, offset = (int(match.group(1)), int(match.group(2))), int(match.group(3))
        if kind == "end":
            ends[key] = offset
        else:
            cuts[key] = (ends.pop(key, None), offset)
    return cuts


def scan_log(text: str, table_id: int | None = None) -> list[Finding]:
    """Findings from a tablet server's log (local target: ``.sagaz-lakehouse/logs/fluss-tablet-N.log``): buckets
    whose KV failed to initialise, and truncations that cut records (a cut to the end of the log is harmless and
    not reported; when the log does not say where the end was, the truncation is reported)."""
    findings: dict[tuple[str, int], Finding] = {}
    for match in KV_INIT_FAILED.finditer(text):
        tid, bucket = int(match.group(1)), int(match.group(2))
        if table_id is None or tid == table_id:
            findings[("kv-init-failed", bucket)] = Finding("kv-init-failed", f"table id {tid}", bucket,
                                                           match.group(0), KV_HINT)
    for (tid, bucket), (end, cut_to) in sorted(truncations(text).items()):
        if (table_id is not None and tid != table_id) or (end is not None and end <= cut_to):
            continue
        what = (f"log cut from offset {end} back to {cut_to} ({end - cut_to} records)" if end is not None
                else f"log cut back to offset {cut_to}")
        findings[("log-truncated", bucket)] = Finding("log-truncated", f"table id {tid}", bucket, what, CUT_HINT)
    return sorted(findings.values(), key=lambda f: (f.kind, f.bucket if f.bucket is not None else -1))


# ---------------------------------------------------------------------------------------------- observing


async def sample(connection: Any, database: str, table: str, iceberg_age_s: float | None = None) -> Sample:
    """Observe one table through pyfluss: end offsets of every bucket and the latest lake snapshot."""
    import fluss

    admin = connection.get_admin()
    path = fluss.TablePath(database, table)
    info = await admin.get_table_info(path)
    buckets = list(range(info.num_buckets))
    ends = await admin.list_offsets(path, buckets, fluss.OffsetSpec.latest())
    lake: dict[int, int] = {}
    snapshot_id = None
    try:
        snapshot = await admin.get_latest_lake_snapshot(path)
        snapshot_id = snapshot.snapshot_id
        for bucket in buckets:
            offset = snapshot.get_bucket_offset(fluss.TableBucket(info.table_id, bucket))
            if offset is not None:
                lake[bucket] = offset
    except fluss.FlussError:
        pass  # LAKE_SNAPSHOT_NOT_EXIST until the first tiering commit
    return Sample(time.monotonic(), dict(ends), lake, snapshot_id, iceberg_age_s)


KV_UNAVAILABLE_HINT = ("the bucket has no leader or its KV failed to initialise; see the tablet server logs "
                       "(`sagaz-lakehouse logs fluss-tablet`); repair: README, Operations")


async def kv_probe(connection: Any, database: str, table: str, timeout: float = 20.0) -> list[Finding]:
    """Read one row from every bucket's primary-key state (a limit scan goes to the bucket leader's RocksDB); the
    buckets are read concurrently, so the whole probe takes at most ``timeout`` seconds."""
    import fluss

    tbl = await connection.get_table(fluss.TablePath(database, table))
    info = tbl.get_table_info()

    async def one(bucket: int) -> Finding | None:
        scanner = tbl.new_scan().limit(1).create_bucket_batch_scanner(fluss.TableBucket(info.table_id, bucket))
        try:
            await asyncio.wait_for(scanner.to_arrow(), timeout)
        except Exception as exc:  # any error here is the finding
            return Finding("kv-unavailable", f"{database}.{table}", bucket,
                           f"{type(exc).__name__}: {str(exc)[:300]}", KV_UNAVAILABLE_HINT)
        return None

    found = await asyncio.gather(*(one(b) for b in range(info.num_buckets)))
    return [f for f in found if f is not None]


async def check(connection: Any, database: str, table: str, freshness_s: float, iceberg_age_s: float | None,
                kv_timeout: float = 10.0, election_s: float = LEADER_ELECTION_S) -> list[Finding] | None:
    """One look at a table, for ``status`` and ``doctor``: tiering stalled (records pending while the newest
    Iceberg snapshot is older than 3x freshness), log behind the lake, buckets whose KV does not answer. None: the
    table does not exist."""
    import fluss

    if not await connection.get_admin().table_exists(fluss.TablePath(database, table)):
        return None
    name = f"{database}.{table}"
    seen = await sample_once_led(connection, database, table, iceberg_age_s, election_s)
    if isinstance(seen, Finding):
        return [seen]
    return [*stalled_now(seen, freshness_s, name), *log_behind_lake(seen, name),
            *await kv_probe(connection, database, table, kv_timeout)]


async def sample_once_led(connection: Any, database: str, table: str, iceberg_age_s: float | None,
                          election_s: float = LEADER_ELECTION_S, interval_s: float = 2.0) -> Sample | Finding:
    """:func:`sample`, waiting up to ``election_s`` for buckets to get a leader and the servers to know the table
    (a restart in progress); a table still leaderless or unknown after that is a ``no-leader`` finding."""
    import fluss

    deadline = time.monotonic() + election_s
    while True:
        try:
            return await sample(connection, database, table, iceberg_age_s)
        except fluss.FlussError as exc:
            if not any(text in str(exc) for text in RECOVERING):
                raise
            if time.monotonic() >= deadline:
                waited = f" (still after {election_s:g} s)" if election_s else ""  # status asks once
                return Finding("no-leader", f"{database}.{table}", None, f"{str(exc)[:300]}{waited}", NO_LEADER_HINT)
        await asyncio.sleep(interval_s)


async def watch(connection: Any, database: str, table: str, freshness_s: float, duration_s: float | None = None,
                interval_s: float = 2.0, stall_after_s: float | None = None) -> list[Finding]:
    """Observe for ``duration_s`` (default: the stall limit plus a margin) and report stalls and truncations. A
    bucket is stalled once its lake offset stood still for ``stall_after_s`` (default: 3x freshness) while records
    waited."""
    stall_after = stall_after_s if stall_after_s is not None else STALL_FACTOR * freshness_s
    duration = duration_s if duration_s is not None else stall_after + 2 * interval_s
    samples = [await sample(connection, database, table)]
    name = f"{database}.{table}"
    deadline = samples[0].at + duration
    while time.monotonic() < deadline:
        await asyncio.sleep(interval_s)
        samples.append(await sample(connection, database, table))
    return [*log_behind_lake(samples[-1], name), *stalled(samples, freshness_s, name, stall_after / freshness_s)]


def observe(settings: Any, credentials: Any, endpoints: Any,
            election_s: float = LEADER_ELECTION_S) -> list[Finding] | None:
    """:func:`check` of the saga_events table of a running stack (None: the table does not exist yet). The age of
    the newest Iceberg snapshot comes from the REST catalog; if the catalog does not answer, only the Fluss-side
    signals are judged."""
    from sagaz_lakehouse import clients, tables
    from sagaz_lakehouse.config import duration_seconds

    age = None
    with contextlib.suppress(Exception):  # no Iceberg table yet, catalog down: judged by Fluss alone
        catalog = clients.iceberg_catalog(settings, credentials, endpoints)
        age = iceberg_snapshot_age(catalog.load_table(f"{settings.lake.database}.{tables.TABLE}"))

    async def run() -> list[Finding] | None:
        async with clients.fluss_connection(endpoints) as connection:
            return await check(connection, settings.lake.database, tables.TABLE, duration_seconds(settings.freshness),
                               age, election_s=election_s)

    deadline = time.monotonic() + election_s
    while True:
        findings = asyncio.run(run())
        if not findings or not all(leader_moved(f) for f in findings) or time.monotonic() >= deadline:
            return findings
        time.sleep(ASK_AGAIN_S)


def leader_moved(finding: Finding) -> bool:
    """A bucket that did not answer because its leader changed under the client (LEADER_MOVED)."""
    return finding.kind == "kv-unavailable" and any(text in finding.detail for text in LEADER_MOVED)


def iceberg_snapshot_age(iceberg_table: Any) -> float | None:
    """Seconds since the newest snapshot of a pyiceberg table (None: no snapshot yet)."""
    snapshot = iceberg_table.current_snapshot()
    return None if snapshot is None else max(0.0, time.time() - snapshot.timestamp_ms / 1000)


def scan_logs(paths: Iterable[Path], table_id: int | None = None) -> list[Finding]:
    out = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        out += [Finding(f.kind, f"{f.table} ({path.stem})", f.bucket, f.detail, f.hint)
                for f in scan_log(text, table_id)]
    return out


# ---------------------------------------------------------------------------------------------- command line

EXIT_HEALTHY, EXIT_FINDINGS, EXIT_UNKNOWN = 0, 1, 3


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sagaz_lakehouse.lake_health --bootstrap HOST:PORT --freshness 10s``: watch the table for 3x
    its freshness and print findings. Exit 0 healthy, 1 findings, 3 could not observe (Fluss unreachable): the
    contract of a watchdog liveness check, where only 1 counts against the component."""
    import argparse
    import json
    import sys

    from sagaz_lakehouse.config import duration_seconds

    parser = argparse.ArgumentParser(prog="python -m sagaz_lakehouse.lake_health", description=main.__doc__)
    parser.add_argument("--bootstrap", required=True, help="Fluss bootstrap server, host:port")
    parser.add_argument("--database", default="sagaz")
    parser.add_argument("--table", default="saga_events")
    parser.add_argument("--freshness", default="10s", help="the table's freshness (table.datalake.freshness)")
    parser.add_argument("--stall-after", type=float, help="seconds a bucket's lake offset may stand still while "
                        "records wait before it counts as stalled (default: 3x freshness)")
    parser.add_argument("--watch", type=float, help="seconds to observe (default: the stall limit + 5 s)")
    parser.add_argument("--kv", action="store_true", help="also read one row from every bucket's KV")
    parser.add_argument("--login-file", help="a JSON file of pyfluss login properties (SASL), mode 0600")
    args = parser.parse_args(argv)
    freshness = duration_seconds(args.freshness)
    stall_after = args.stall_after if args.stall_after is not None else STALL_FACTOR * freshness
    seconds = args.watch if args.watch is not None else stall_after + 5

    async def run() -> list[Finding]:
        import fluss

        login = json.loads(Path(args.login_file).read_text()) if args.login_file else {}
        config = fluss.Config({"bootstrap.servers": args.bootstrap, **login})
        connection = await asyncio.wait_for(fluss.FlussConnection.create(config), 15)
        try:
            if not await connection.get_admin().table_exists(fluss.TablePath(args.database, args.table)):
                return []  # nothing to judge yet
            findings = await watch(connection, args.database, args.table, freshness, seconds,
                                   stall_after_s=stall_after)
            if args.kv:
                findings += await kv_probe(connection, args.database, args.table)
            return findings
        finally:
            await connection.close()

    try:
        findings = asyncio.run(run())
    except Exception as exc:  # unreachable or failing Fluss: not this check's verdict to give
        print(f"could not observe {args.database}.{args.table}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    for finding in findings:
        print(finding)
    if not findings:
        print(f"{args.database}.{args.table}: tiering keeps up (watched {seconds:.0f}s)")
    return EXIT_FINDINGS if findings else EXIT_HEALTHY


if __name__ == "__main__":
    raise SystemExit(main())
