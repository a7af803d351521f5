-- title: Lake snapshots
-- description: The newest snapshots of the Iceberg table (each tiering round that brought data commits one): when,
--   the snapshot id (for time_travel's as_of), the operation, and the records it added and the table then held.
--   Table metadata, not events: the doctor's probes are among the record counts.
-- param: limit (int, default 20): how many snapshots
SELECT
    committed_at,
    snapshot_id,
    operation,
    try_cast(summary['added-records'] AS bigint) AS added_records,
    try_cast(summary['total-records'] AS bigint) AS total_records
FROM iceberg.{database}.saga_events.snapshots
ORDER BY committed_at DESC, snapshot_id DESC
LIMIT {limit}
