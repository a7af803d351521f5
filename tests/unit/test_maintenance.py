"""Lake maintenance's decisions (sagaz_lakehouse.maintenance): the table's shape read from its metadata, the
snapshot-expiry guard for Fluss's last snapshot, the retry of a conflicting optimize, and the exported metrics.

The maintenance itself runs against the real servers in the end-to-end tests (local, compose, Kubernetes)."""

from __future__ import annotations

import urllib.request

import pytest

from sagaz_lakehouse import maintenance as m

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def snapshot(snapshot_id: int, seconds_ago: float, user: str = m.FLUSS_COMMIT_USER, **summary: str) -> dict:
    return {"snapshot-id": snapshot_id, "timestamp-ms": int((NOW - seconds_ago) * 1000),
            "summary": {"operation": "append", "commit-user": user, **summary}}


METADATA = {
    "table-uuid": "5f3c",
    "current-snapshot-id": 3,
    "properties": {m.MAINTAINED_AT: str(int(NOW - 600)), "write.metadata.delete-after-commit.enabled": "true"},
    "snapshots": [
        snapshot(1, 7200),
        snapshot(2, 5400),  # Fluss's last commit: an hour and a half ago
        snapshot(3, 60, user="trino", **{"total-data-files": "8", "total-delete-files": "0",
                                         "total-files-size": "8000", "total-records": "1000"}),
    ],
}


def test_the_shape_comes_from_the_current_snapshot_and_the_table_properties():
    shape = m.shape_of(METADATA, 12_345)
    assert (shape.data_files, shape.delete_files, shape.data_bytes, shape.records) == (8, 0, 8000, 1000)
    assert shape.snapshots == 3 and shape.metadata_bytes == 12_345 and shape.average_file_bytes == 1000
    assert shape.maintained_at == NOW - 600
    assert shape.fluss_snapshot_ms == int((NOW - 5400) * 1000)


def test_a_table_never_maintained_and_never_tiered_has_no_times():
    shape = m.shape_of({"snapshots": [], "properties": {}}, 10)
    assert shape.maintained_at is None and shape.fluss_snapshot_ms is None and shape.average_file_bytes == 0


def test_expiry_keeps_the_snapshot_fluss_committed_last():
    policy = m.Policy(retention=3600, orphan_retention=3600, file_size_threshold="128MB", metadata_versions=20)
    shape = m.shape_of(METADATA, 1)
    # The policy alone would cut at an hour ago and drop snapshot 2, which Fluss looks up before its next commit.
    assert m.expiry_threshold(policy, shape, NOW) == 5400 + m.FLUSS_SNAPSHOT_MARGIN
    recent = m.shape_of({**METADATA, "snapshots": [snapshot(2, 30)]}, 1)
    assert m.expiry_threshold(policy, recent, NOW) == 3600


def test_metadata_properties_are_set_only_where_they_differ():
    policy = m.Policy(3600, 3600, "128MB", 20)
    assert m.metadata_updates(policy, m.shape_of(METADATA, 1)) == {"write.metadata.previous-versions-max": "20"}


def test_an_optimize_that_meets_a_tiering_commit_is_tried_again_and_other_failures_are_not():
    calls: list[str] = []

    def conflicting_twice() -> None:
        calls.append("optimize")
        if len(calls) < 3:
            raise m.MaintenanceError("Trino failed `ALTER TABLE ...`: ICEBERG_COMMIT_ERROR: found new position delete")

    said: list[str] = []
    outcome = _attempt_quickly(conflicting_twice, said.append)
    assert outcome == {"attempts": 3, "result": "ok"} and len(calls) == 3
    assert sum("again" in line for line in said) == 2

    def refused() -> None:
        raise m.MaintenanceError("Trino refused `ALTER TABLE ...`: 401 Unauthorized")

    outcome = _attempt_quickly(refused, said.append)
    assert outcome["result"] == "failed" and outcome["attempts"] == 1 and "401" in outcome["error"]


def _attempt_quickly(action, say):
    saved, m.RETRY_SECONDS = m.RETRY_SECONDS, 0.0
    try:
        return m._attempt(action, say, "sagaz.saga_events: compaction")
    finally:
        m.RETRY_SECONDS = saved


def test_the_exporter_serves_the_shape_and_the_runs_as_prometheus_text():
    exporter = m.Exporter("sagaz.saga_events")
    exporter.shape = m.shape_of(METADATA, 12_345)
    exporter.runs["ok"] = 4
    server = exporter.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
    assert 'sagaz_lake_data_files{table="sagaz.saga_events"} 8.0' in text
    assert 'sagaz_lake_metadata_bytes{table="sagaz.saga_events"} 12345.0' in text
    assert f'sagaz_lake_maintained_timestamp_seconds{{table="sagaz.saga_events"}} {NOW - 600}' in text
    assert 'sagaz_lake_maintenance_runs_total{table="sagaz.saga_events",result="ok"} 4' in text
    assert "# TYPE sagaz_lake_snapshots gauge" in text


# --------------------------------------------------------------------------------- findings (lake_maintenance)


def settings(**overrides: str):
    import sagaz_lakehouse as lakehouse

    return lakehouse.load_settings(overrides=overrides, environ={})


def shape(**values):
    from dataclasses import replace

    return replace(m.shape_of(METADATA, 12_345), **values)


def test_a_maintained_compact_table_has_no_findings():
    from sagaz_lakehouse import lake_maintenance

    assert lake_maintenance.findings(settings(), shape(), first_snapshot_ms=None, now=NOW) == []


def test_findings_name_what_passes_its_threshold_with_a_hint():
    from sagaz_lakehouse import lake_maintenance

    dev = settings()  # a run every 10 min, 50 files per bucket x 8 buckets, 1 h of time travel at 10 s freshness
    found = {f.kind: f for f in lake_maintenance.findings(dev, shape(
        maintained_at=NOW - 3600, data_files=401, delete_files=500, metadata_bytes=20 * 2**20, snapshots=700),
        first_snapshot_ms=None, now=NOW)}
    assert set(found) == {"maintenance overdue", "small files", "delete files", "large metadata", "snapshots pile up"}
    assert "last ran 60 min ago (schedule 10min)" in found["maintenance overdue"].detail
    assert "logs lake-maintenance" in found["maintenance overdue"].hint
    assert "401 data files" in found["small files"].detail and "maintain" in found["small files"].hint
    assert "about 360 expected" in found["snapshots pile up"].detail


def test_a_young_table_is_not_overdue_and_an_old_one_never_maintained_is():
    from sagaz_lakehouse import lake_maintenance

    dev, never = settings(), shape(maintained_at=None)
    young = lake_maintenance.findings(dev, never, first_snapshot_ms=int((NOW - 300) * 1000), now=NOW)
    assert young == []
    old = lake_maintenance.findings(dev, never, first_snapshot_ms=int((NOW - 7200) * 1000), now=NOW)
    assert [f.kind for f in old] == ["maintenance overdue"] and "never ran" in old[0].detail


def test_with_maintenance_off_only_the_shape_is_judged():
    from sagaz_lakehouse import lake_maintenance

    off = settings(**{"maintenance.schedule": "off"})
    found = lake_maintenance.findings(off, shape(maintained_at=None, data_files=900), first_snapshot_ms=0, now=NOW)
    assert [f.kind for f in found] == ["small files"] and "maintenance.schedule" in found[0].hint


# ------------------------------------------------------------------------------ schema changes (create-tables)


HAVE = [("event_id", "string NOT NULL"), ("saga_id", "string"), ("duration_ms", "bigint")]


@pytest.mark.parametrize(("want", "additive", "destructive"), [
    (HAVE, [], []),
    ([*HAVE, ("tenant_id", "string")], ["add column tenant_id string"], []),
    ([*HAVE, ("tenant_id", "string NOT NULL")], [], ["add column tenant_id string NOT NULL"]),
    (HAVE[:2], [], ["drop column duration_ms bigint"]),
    ([*HAVE[:2], ("duration_ms", "string")], [], ["change column duration_ms from bigint to string"]),
    ([HAVE[1], HAVE[0], HAVE[2]], [], ["reorder columns to saga_id, event_id, duration_ms"]),
    ([*HAVE[:2], ("tenant_id", "string")], ["add column tenant_id string"], ["drop column duration_ms bigint"]),
])
def test_a_column_difference_is_planned_as_additive_or_destructive(want, additive, destructive):
    from sagaz_lakehouse import tables

    assert tables.column_plan(HAVE, want) == (additive, destructive)


def test_servers_not_answering_yet_are_waited_for_and_not_counted_as_failed_runs():
    """On Kubernetes nothing orders the pods' start: the service may ask the catalog before it listens. That is
    waiting (printed once), not a failed run (which would fire LakeMaintenanceFailing after every deploy)."""
    import threading

    lake = m.Lake(m.Catalog("http://127.0.0.1:9"), m.Trino("http://127.0.0.1:9", "test"), "sagaz", "saga_events")
    exporter, stop = m.Exporter(lake.name), threading.Event()
    worker = threading.Thread(target=m.serve, args=(lake, m.Policy(60, 3600, "128MB", 20), 60, exporter, 1, stop))
    worker.start()
    stop.wait(2.5)
    stop.set()
    worker.join(timeout=10)
    assert exporter.runs == {"ok": 0, "failed": 0}


class _Catalog:
    """Stand-in for the REST catalog: answers ``load`` with fixed metadata (the real one runs in the e2e tests)."""

    def __init__(self, metadata: dict) -> None:
        self.metadata = metadata

    def load(self, namespace: str, table: str) -> tuple[dict, int]:
        return self.metadata, 2048


def test_a_table_without_a_snapshot_skips_the_manifest_rewrite_that_trino_cannot_do_on_it():
    """A fresh, never tiered table: Trino 476's optimize_manifests fails on it ("snapshot" is null), which made every
    run of an idle stack a failed one."""
    empty = {"table-uuid": "5f3c", "current-snapshot-id": None, "properties": {}, "snapshots": []}
    policy = m.Policy(60, 3600, "128MB", 20)
    for metadata, expected in ((empty, False), (METADATA, True)):
        lake = m.Lake(_Catalog(metadata), m.Trino("http://127.0.0.1:9", "test"), "sagaz", "saga_events")  # type: ignore[arg-type]
        report = m.run(lake, policy, dry_run=True, now=lambda: NOW)
        steps = [step["step"] for step in report.steps]
        assert ("manifests" in steps) is expected, steps
        assert {"compaction", "snapshot expiry", "orphan files"} <= set(steps)
