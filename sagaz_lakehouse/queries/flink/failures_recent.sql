-- title: Failures in the last minutes, per minute
-- description: Step failures read live from Fluss over a sliding window that ends now (since, 5 minutes by
--   default), in one-minute buckets of the events' own timestamps (UTC): per bucket, saga, step and error type,
--   how many failures and how many distinct sagas. The buckets are a grouping on FLOOR(timestamp TO MINUTE)
--   rather than a TUMBLE window: saga_events declares no watermark, and an event-time window would only report
--   a minute once later events closed it, while this answer is complete for every minute at once.
--   Bound: as running_sagas: the changelog from since on, until quiet for quiet_seconds or max_seconds.
-- param: since (duration, default 5m): the window: failures within this long before now
-- param: max_seconds (int, default 90): follow the stream at most this long
-- param: quiet_seconds (int, default 5): stop once the result has not changed for this long
-- sort: minute, failures desc, saga_name, step_name, error_type
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT saga_name, saga_id, step_name, event_type, error_type, `timestamp` AS ts
    FROM fluss.{database}.saga_events
        /*+ OPTIONS('scan.startup.mode' = 'timestamp', 'scan.startup.timestamp' = '{since:startup_ms}') */
    -- The cast keeps Flink from pushing this predicate into the Fluss source: Fluss 0.9.1 converts it for the
    -- Iceberg copy and fails on TIMESTAMP literals (fixed upstream after 0.9.1, apache/fluss#3565).
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND CAST(`timestamp` AS TIMESTAMP(3)) >= {since}
)
SELECT
    FLOOR(ts TO MINUTE) AS `minute`,
    saga_name,
    step_name,
    error_type,
    COUNT(*) AS failures,
    COUNT(DISTINCT saga_id) AS sagas
FROM events
WHERE event_type = 'step_failed'
GROUP BY FLOOR(ts TO MINUTE), saga_name, step_name, error_type
