-- title: Live step latency
-- description: Per step of each saga definition, read live from Fluss for the window that ends now: executions
--   (completed and failed, as step_bottlenecks counts them), failures, and the mean, minimum and maximum
--   duration, with when the step last ended. Flink SQL has no percentile aggregate; the Trino pack's
--   step_bottlenecks has percentiles over the tiered history.
--   Bound: as running_sagas: the changelog from since on, until quiet for quiet_seconds or max_seconds.
-- param: since (duration, default 5m): the window: steps that ended within this long before now
-- param: max_seconds (int, default 90): follow the stream at most this long
-- param: quiet_seconds (int, default 5): stop once the result has not changed for this long
-- sort: avg_ms desc, saga_name, step_name
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT saga_name, step_name, event_type, duration_ms, `timestamp` AS ts
    FROM fluss.{database}.saga_events
        /*+ OPTIONS('scan.startup.mode' = 'timestamp', 'scan.startup.timestamp' = '{since:startup_ms}') */
    -- The cast keeps Flink from pushing this predicate into the Fluss source: Fluss 0.9.1 converts it for the
    -- Iceberg copy and fails on TIMESTAMP literals (fixed upstream after 0.9.1, apache/fluss#3565).
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND CAST(`timestamp` AS TIMESTAMP(3)) >= {since}
)
SELECT
    saga_name,
    step_name,
    COUNT(*) AS executions,
    SUM(CASE WHEN event_type = 'step_failed' THEN 1 ELSE 0 END) AS failures,
    AVG(CAST(duration_ms AS DOUBLE)) AS avg_ms,
    MIN(duration_ms) AS min_ms,
    MAX(duration_ms) AS max_ms,
    MAX(ts) AS last_ended_at
FROM events
WHERE event_type IN ('step_completed', 'step_failed') AND duration_ms IS NOT NULL
GROUP BY saga_name, step_name
