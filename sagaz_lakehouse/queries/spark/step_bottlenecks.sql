-- title: Step bottlenecks
-- description: For each step of each saga definition, the time it took in the window: executions (completed and
--   failed, both counted: a step that fails after a long wait is a bottleneck too), failures, the mean, the 50th,
--   95th and 99th percentile (exact nearest rank) and the maximum of its duration, slowest 95th percentile first.
--   Compensations are not steps: see compensation_frequency.
-- param: since (duration, default 24h): steps that ended within this long before now
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT * FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND `timestamp` >= {since} AND saga_name LIKE {saga}
),
steps AS (
    SELECT saga_name, step_name, event_type, duration_ms
    FROM events
    WHERE event_type IN ('step_completed', 'step_failed') AND duration_ms IS NOT NULL
)
SELECT
    saga_name,
    step_name,
    count(*) AS executions,
    count_if(event_type = 'step_failed') AS failures,
    round(avg(duration_ms), 2) AS avg_ms,
    element_at(array_sort(array_agg(duration_ms)), CAST(ceil(0.50 * count(*)) AS integer)) AS p50_ms,
    element_at(array_sort(array_agg(duration_ms)), CAST(ceil(0.95 * count(*)) AS integer)) AS p95_ms,
    element_at(array_sort(array_agg(duration_ms)), CAST(ceil(0.99 * count(*)) AS integer)) AS p99_ms,
    max(duration_ms) AS max_ms
FROM steps
GROUP BY saga_name, step_name
ORDER BY p95_ms DESC, saga_name, step_name
