-- title: Cost attribution per saga and step
-- description: For each saga definition and step in the window (no step: the saga's own started, completed and
--   failed events): its events, its bytes in the lake, its compute time and an estimated cost, each also as a
--   share of the whole. Lake bytes come from Iceberg's file statistics: each data file's size (the table's files
--   metadata) is spread evenly over the file's records and summed over the step's events (a hidden column names the file
--   an event is in). Compute is the sum of the durations of the step's executions and compensations. The estimate
--   is lake GB (10^9 bytes) x price_gb_month + events / 10^6 x price_million_events + compute hours x
--   price_vcpu_hour; `query` and `report` take the prices from the cost.* settings. Most expensive first.
-- param: since (duration, default 30d): events within this long before now
-- param: price_gb_month (number, default 0.023): price of one GB of lake storage for a month
-- param: price_million_events (number, default 0.25): price of one million events
-- param: price_vcpu_hour (number, default 0.04): price of one vCPU-hour of compute
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events and the data file each is in; the doctor's probe events are left out
    SELECT *, "$path" AS data_file FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND "timestamp" >= {since} AND saga_name LIKE {saga}
),
files AS (  -- the table's data files (content 0; delete files are 1 and 2) and the bytes each record takes
    SELECT file_path, 1e0 * file_size_in_bytes / record_count AS bytes_per_record
    FROM iceberg.{database}."saga_events$files"
    WHERE content = 0 AND record_count > 0
),
per_step AS (
    SELECT
        e.saga_name,
        e.step_name,
        count(*) AS events,
        CAST(round(coalesce(sum(f.bytes_per_record), 0)) AS bigint) AS lake_bytes,
        coalesce(sum(e.duration_ms) FILTER (WHERE e.event_type IN ('step_completed', 'step_failed',
                                                                    'compensation_completed')), 0) AS compute_ms
    FROM events e
    LEFT JOIN files f ON f.file_path = e.data_file
    GROUP BY e.saga_name, e.step_name
),
totals AS (
    SELECT sum(events) AS events, sum(lake_bytes) AS lake_bytes, sum(compute_ms) AS compute_ms FROM per_step
),
priced AS (
    SELECT
        p.*,
        p.lake_bytes / 1e9 * {price_gb_month} AS storage_cost,
        p.events / 1e6 * {price_million_events} AS events_cost,
        p.compute_ms / 3.6e6 * {price_vcpu_hour} AS compute_cost
    FROM per_step p
)
SELECT
    p.saga_name,
    p.step_name,
    p.events,
    round(100e0 * p.events / t.events, 2) AS events_pct,
    p.lake_bytes,
    round(100e0 * p.lake_bytes / nullif(t.lake_bytes, 0), 2) AS lake_bytes_pct,
    p.compute_ms,
    round(100e0 * p.compute_ms / nullif(t.compute_ms, 0), 2) AS compute_pct,
    round(p.storage_cost, 6) AS storage_cost,
    round(p.events_cost, 6) AS events_cost,
    round(p.compute_cost, 6) AS compute_cost,
    round(p.storage_cost + p.events_cost + p.compute_cost, 6) AS total_cost
FROM priced p
CROSS JOIN totals t
ORDER BY total_cost DESC, p.saga_name, p.step_name NULLS FIRST
