"""Lake health findings from observations (pure functions; the live probes are exercised in tests/local/stacks)."""

from __future__ import annotations

import pytest

from sagaz_lakehouse.lake_health import Finding, Sample, log_behind_lake, scan_log, stalled, stalled_now, truncations

FRESHNESS = 10.0


def series(ends: list[dict[int, int]], lakes: list[dict[int, int]], step: float = 5.0) -> list[Sample]:
    return [Sample(at=i * step, end_offsets=e, lake_offsets=lk) for i, (e, lk) in enumerate(zip(ends, lakes,
                                                                                               strict=True))]


def test_a_bucket_whose_log_grows_while_its_lake_offset_stands_still_for_3x_freshness_is_stalled():
    # 8 samples, 5 s apart: 35 s > 3 x 10 s. Bucket 0 tiers normally, bucket 1 is stuck at 40.
    ends = [{0: 100 + 10 * i, 1: 100 + 10 * i} for i in range(8)]
    lakes = [{0: 90 + 10 * i, 1: 40} for i in range(8)]
    findings = stalled(series(ends, lakes), FRESHNESS, "sagaz.saga_events")
    assert [(f.kind, f.bucket) for f in findings] == [("stalled-tiering", 1)]
    assert "log end offset grew 100 → 170 while the lake offset stayed at 40 for 35s" in findings[0].detail
    assert findings[0].hint


def test_records_left_behind_after_the_writes_stopped_are_a_stall_too():
    idle = [{0: 100, 1: 40}] * 8  # nothing new, but bucket 0 still has 60 records the lake never got
    findings = stalled(series(idle, [{0: 40, 1: 40}] * 8), FRESHNESS, "t")
    assert [f.bucket for f in findings] == [0]
    assert "60 records waiting for the lake: log end offset stayed at 100" in findings[0].detail
    never = stalled(series(idle, [{}] * 8), FRESHNESS, "t")  # no lake snapshot at all
    assert [f.bucket for f in never] == [0, 1] and "none (no lake snapshot)" in never[0].detail


def test_no_stall_within_3x_freshness_nor_when_the_lake_keeps_up():
    ends = [{0: 100 + 10 * i} for i in range(6)]  # 25 s: not yet 3 x freshness
    assert stalled(series(ends, [{0: 40}] * 6), FRESHNESS, "t") == []
    caught_up = [{0: 100 + i} for i in range(10)]
    assert stalled(series(caught_up, [{0: 100 + i} for i in range(10)]), FRESHNESS, "t") == []
    tiered = [{0: 100}] * 10  # everything is in the lake: an idle table is healthy
    assert stalled(series(tiered, [{0: 100}] * 10), FRESHNESS, "t") == []
    assert stalled(series(ends[:1], [{0: 40}]), FRESHNESS, "t") == []


def test_one_observation_with_an_old_iceberg_snapshot_and_pending_records_is_a_stall():
    pending = Sample(0, {0: 120, 1: 50}, {0: 100, 1: 50}, iceberg_snapshot_age_s=45)
    (finding,) = stalled_now(pending, FRESHNESS, "t")
    assert "20 records pending in 1 bucket(s)" in finding.detail
    assert stalled_now(Sample(0, {0: 100}, {0: 100}, iceberg_snapshot_age_s=900), FRESHNESS, "t") == []
    assert stalled_now(Sample(0, {0: 120}, {0: 100}, iceberg_snapshot_age_s=12), FRESHNESS, "t") == []


def test_a_log_shorter_than_what_the_lake_already_holds_was_truncated():
    sample = Sample(0, {0: 26, 1: 70, 2: 0}, {0: 62, 1: 70})
    (finding,) = log_behind_lake(sample, "sagaz.saga_events")
    assert (finding.kind, finding.bucket) == ("log-behind-lake", 0)
    assert "26 is below the offset 62" in finding.detail and "replication factor" in finding.hint


# Lines as Fluss 0.9.1-incubating writes them (LogTablet.java, ReplicaManager.java, Replica.java), from a
# reproduction: bucket 7 recovered its log to offset 66 and was cut back to the saved high watermark 34; bucket 6
# was cut to its end (harmless, after a graceful stop); bucket 3's KV then failed to initialise.
TABLET_LOG = """\
2026-11-25 20:06:24,317 INFO  o.a.f.s.l.LogTablet - Loading writer state for bucket TableBucket{tableId=0, \
bucket=7} till offset 66
2026-11-25 20:06:24,319 INFO  o.a.f.s.l.LogTablet - Loading writer state for bucket TableBucket{tableId=0, \
bucket=6} till offset 32
2026-11-25 20:06:36,347 INFO  o.a.f.s.r.ReplicaManager - Truncating the logEndOffset for replica id 0 of table \
bucket TableBucket{tableId=0, bucket=7} to local highWatermark 34 as it becomes the follower
2026-11-25 20:06:36,370 INFO  o.a.f.s.r.ReplicaManager - Truncating the logEndOffset for replica id 0 of table \
bucket TableBucket{tableId=0, bucket=6} to local highWatermark 32 as it becomes the follower
2026-11-25 20:06:36,371 INFO  o.a.f.s.r.ReplicaManager - Truncating the logEndOffset for replica id 0 of table \
bucket TableBucket{tableId=5, bucket=1} to local highWatermark 9 as it becomes the follower
2026-11-25 20:06:38,897 WARN  o.a.f.s.r.Replica - Fail to init kv tablet for bucket TableBucket{tableId=0, \
bucket=3}, retrying for 1 times
2026-11-25 20:06:38,999 WARN  o.a.f.s.r.Replica - Fail to init kv tablet for bucket TableBucket{tableId=0, \
bucket=3}, retrying for 2 times
"""


def test_tablet_log_patterns_name_the_damaged_buckets_once_each():
    findings = scan_log(TABLET_LOG, table_id=0)
    assert [(f.kind, f.bucket) for f in findings] == [("kv-init-failed", 3), ("log-truncated", 7)]
    assert "from offset 66 back to 34 (32 records)" in findings[1].detail
    assert truncations(TABLET_LOG)[(0, 6)] == (32, 32)  # cut to its end: not a finding
    assert {(f.table, f.bucket) for f in scan_log(TABLET_LOG) if f.kind == "log-truncated"} == {
        ("table id 0", 7), ("table id 5", 1)}  # end unknown: reported
    assert scan_log("all quiet\n") == []


class _Admin:
    """Answers like pyfluss's admin while buckets have no leader for ``leaderless`` calls, then like a led table."""

    def __init__(self, leaderless: int, error: str = "Fluss hitting unexpected error No leader found for table "
                                                       "bucket: TableBucket(table_id=7, bucket=0).: None") -> None:
        self.leaderless = leaderless
        self.error = error

    async def get_table_info(self, path):
        return type("Info", (), {"num_buckets": 2, "table_id": 7})()

    async def list_offsets(self, path, buckets, spec):
        import fluss

        if self.leaderless > 0:
            self.leaderless -= 1
            raise fluss.FlussError(self.error)
        return {b: 10 for b in buckets}

    async def get_latest_lake_snapshot(self, path):
        import fluss

        raise fluss.FlussError("lake snapshot does not exist")


def _leaderless_for(calls: int, **error: str):
    admin = _Admin(calls, **error)
    return type("Connection", (), {"get_admin": lambda self: admin})()


def test_a_table_whose_buckets_regain_leaders_within_the_election_window_is_sampled():
    import asyncio

    from sagaz_lakehouse.lake_health import sample_once_led

    seen = asyncio.run(sample_once_led(_leaderless_for(2), "sagaz", "saga_events", None, election_s=5,
                                       interval_s=0.01))
    assert isinstance(seen, Sample) and seen.end_offsets == {0: 10, 1: 10}


def test_a_restarted_server_that_does_not_know_the_table_yet_is_waited_for_too():
    """Seen right after Fluss pods were replaced: the restarted server answered metadata without the table."""
    import asyncio

    from sagaz_lakehouse.lake_health import sample_once_led

    missing = "FlussError(code=15): Table info not found for sagaz.saga_events"
    seen = asyncio.run(sample_once_led(_leaderless_for(2, error=missing), "sagaz", "saga_events", None,
                                       election_s=5, interval_s=0.01))
    assert isinstance(seen, Sample) and seen.end_offsets == {0: 10, 1: 10}
    found = asyncio.run(sample_once_led(_leaderless_for(10**6, error=missing), "sagaz", "saga_events", None,
                                        election_s=0.05, interval_s=0.01))
    assert isinstance(found, Finding) and found.kind == "no-leader" and "Table info not found" in found.detail


def test_other_errors_are_not_waited_for():
    import asyncio

    import fluss

    from sagaz_lakehouse.lake_health import sample_once_led

    with pytest.raises(fluss.FlussError, match="permission denied"):
        asyncio.run(sample_once_led(_leaderless_for(1, error="permission denied"), "sagaz", "saga_events", None,
                                    election_s=5, interval_s=0.01))


def test_a_table_still_leaderless_after_the_election_window_is_a_no_leader_finding():
    import asyncio

    from sagaz_lakehouse.lake_health import Finding, sample_once_led

    found = asyncio.run(sample_once_led(_leaderless_for(10**6), "sagaz", "saga_events", None, election_s=0.05,
                                        interval_s=0.01))
    assert isinstance(found, Finding) and found.kind == "no-leader" and found.table == "sagaz.saga_events"
    assert "No leader found" in found.detail and found.detail.endswith("(still after 0.05 s)")
    assert "coordinator" in found.hint


def test_status_asks_without_waiting_for_an_election():
    """`status` passes election_s=0: one look, and a leaderless table is a finding at once."""
    import asyncio

    from sagaz_lakehouse.lake_health import Finding, sample_once_led

    found = asyncio.run(sample_once_led(_leaderless_for(1), "sagaz", "saga_events", None, election_s=0))
    assert isinstance(found, Finding) and found.kind == "no-leader"
    assert found.detail.endswith("TableBucket(table_id=7, bucket=0).: None")  # no wait was claimed


def test_buckets_whose_leader_moved_are_asked_again_on_a_new_connection_within_the_election_window(monkeypatch):
    """Seen on the real node right after the Fluss pods were replaced: "Leader not local for bucket ..." from the
    server the client's metadata named. `doctor` asks again with fresh metadata instead of reporting it."""
    import contextlib

    import sagaz_lakehouse as lakehouse
    from sagaz_lakehouse import clients, lake_health

    moved = Finding("kv-unavailable", "sagaz.saga_events", 1, "FlussError: FlussError(code=12): Leader not local for "
                    "bucket TableBucket{tableId=0, bucket=1} on tabletServer 1", "hint")
    broken = Finding("kv-unavailable", "sagaz.saga_events", 2, "FlussError: KvStorageException", "hint")
    connections = []

    @contextlib.asynccontextmanager
    async def connect(endpoints):
        connections.append(object())
        yield connections[-1]

    def answering(*replies):
        calls = iter(replies)

        async def check(connection, *args, **kwargs):
            return next(calls)
        return check

    monkeypatch.setattr(clients, "fluss_connection", connect)
    monkeypatch.setattr(clients, "iceberg_catalog", lambda *a: (_ for _ in ()).throw(OSError("no catalog")))
    monkeypatch.setattr(lake_health, "ASK_AGAIN_S", 0.0)
    settings = lakehouse.load_settings(None, {}, environ={})
    monkeypatch.setattr(lake_health, "check", answering([moved], [moved], []))
    assert lake_health.observe(settings, None, None, election_s=5) == [] and len(connections) == 3
    monkeypatch.setattr(lake_health, "check", answering([moved, broken]))  # another kind of failure: at once
    assert lake_health.observe(settings, None, None, election_s=5) == [moved, broken]
    monkeypatch.setattr(lake_health, "check", answering(*[[moved]] * 1000))  # still moved after the window
    assert lake_health.observe(settings, None, None, election_s=0.05) == [moved]


def test_the_watchdogs_liveness_check_kills_only_for_a_stall_longer_than_fluss_takes_to_release_a_table():
    from sagaz_lakehouse.targets.local import watchdog

    # A first round slowed by a loaded machine: 60 s without a commit is a stall for `status` (3 x freshness)...
    slow = series([{0: 100 + 10 * i} for i in range(13)], [{}] * 13)
    assert [f.bucket for f in stalled(slow, FRESHNESS, "t")] == [0]
    # ... but not for the liveness check, whose restart would hold the table back for Fluss's 2-minute release.
    check = watchdog.tiering_liveness("127.0.0.1:9123", "sagaz", "10s")
    stall_after = float(check.argv[check.argv.index("--stall-after") + 1])
    assert stall_after == watchdog.LIVENESS_STALL_S >= 2 * watchdog.FLUSS_TIERING_RELEASE_S
    assert stalled(slow, FRESHNESS, "t", stall_after / FRESHNESS) == []
    hung = series([{0: 100 + i} for i in range(60)], [{}] * 60)  # 295 s
    assert [f.bucket for f in stalled(hung, FRESHNESS, "t", stall_after / FRESHNESS)] == [0]
    # A restarted JobManager is judged again only after the table could have come back to its job.
    assert check.grace > watchdog.FLUSS_TIERING_RELEASE_S
    # A long freshness (prod: 3 min) keeps its own 3x.
    prod = watchdog.tiering_liveness("127.0.0.1:9123", "sagaz", "3min")
    assert prod.argv[prod.argv.index("--stall-after") + 1] == "540"
