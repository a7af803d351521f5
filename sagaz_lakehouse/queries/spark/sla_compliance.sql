-- title: SLA compliance per saga
-- description: For each saga definition, the sagas that finished (completed or failed) in the window: how many,
--   how many and what share finished within threshold_ms, how many and what share completed successfully within
--   it, and the 50th, 95th and 99th percentile of their total duration. Percentiles are exact nearest-rank values:
--   the smallest duration that at least that share of the sagas did not exceed. A saga whose start the listener
--   did not see has no total duration and counts as outside the SLA.
-- param: since (duration, default 24h): sagas that ended within this long before now
-- param: threshold_ms (int, default 1000): the SLA: how long a saga may take from start to end, in milliseconds
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT * FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND `timestamp` >= {since} AND saga_name LIKE {saga}
),
finished AS (
    SELECT saga_name, saga_id, event_type = 'saga_completed' AS completed, total_duration_ms AS duration_ms
    FROM events
    WHERE event_type IN ('saga_completed', 'saga_failed')
)
SELECT
    saga_name,
    count(*) AS sagas,
    count_if(completed) AS completed,
    count_if(NOT completed) AS failed,
    count_if(duration_ms <= {threshold_ms}) AS finished_within,
    round(100e0 * count_if(duration_ms <= {threshold_ms}) / count(*), 2) AS finished_within_pct,
    count_if(completed AND duration_ms <= {threshold_ms}) AS completed_within,
    round(100e0 * count_if(completed AND duration_ms <= {threshold_ms}) / count(*), 2) AS completed_within_pct,
    IF(count(duration_ms) > 0, element_at(array_sort(array_agg(duration_ms) FILTER (WHERE duration_ms IS NOT NULL)),
                                          CAST(ceil(0.50 * count(duration_ms)) AS integer)), NULL) AS p50_ms,
    IF(count(duration_ms) > 0, element_at(array_sort(array_agg(duration_ms) FILTER (WHERE duration_ms IS NOT NULL)),
                                          CAST(ceil(0.95 * count(duration_ms)) AS integer)), NULL) AS p95_ms,
    IF(count(duration_ms) > 0, element_at(array_sort(array_agg(duration_ms) FILTER (WHERE duration_ms IS NOT NULL)),
                                          CAST(ceil(0.99 * count(duration_ms)) AS integer)), NULL) AS p99_ms,
    max(duration_ms) AS max_ms
FROM finished
GROUP BY saga_name
ORDER BY saga_name
