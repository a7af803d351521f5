-- title: Running sagas
-- description: Sagas that started in the window and have neither completed nor failed yet, read live from Fluss:
--   when each started, its latest event, how many events and completed steps it has so far, how many
--   compensations it started, and the steps it has entered and not left (several, in a DAG level). A saga that
--   started before the window does not show: widen since to find long-stuck sagas.
--   Bound: a streaming query never ends. The gateway runs it on the stack's Flink, reading the Fluss changelog
--   from since on; the result is the changelog materialized until nothing changed for quiet_seconds after the job
--   started running (it has read what exists), or until max_seconds. It is the answer as of that moment.
-- param: since (duration, default 1h): sagas whose events arrived within this long before now
-- param: max_seconds (int, default 90): follow the stream at most this long
-- param: quiet_seconds (int, default 5): stop once the result has not changed for this long
-- sort: started_at, saga_id
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT saga_name, saga_id, step_name, event_type, `timestamp` AS ts
    FROM fluss.{database}.saga_events
        /*+ OPTIONS('scan.startup.mode' = 'timestamp', 'scan.startup.timestamp' = '{since:startup_ms}') */
    -- The cast keeps Flink from pushing this predicate into the Fluss source: Fluss 0.9.1 converts it for the
    -- Iceberg copy and fails on TIMESTAMP literals (fixed upstream after 0.9.1, apache/fluss#3565).
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND CAST(`timestamp` AS TIMESTAMP(3)) >= {since}
),
sagas AS (
    SELECT
        saga_name,
        saga_id,
        MIN(ts) AS started_at,
        MAX(ts) AS last_event_at,
        COUNT(*) AS events,
        SUM(CASE WHEN event_type = 'step_completed' THEN 1 ELSE 0 END) AS steps_completed,
        SUM(CASE WHEN event_type = 'compensation_started' THEN 1 ELSE 0 END) AS compensations,
        SUM(CASE WHEN event_type = 'saga_started' THEN 1 ELSE 0 END) AS starts,
        SUM(CASE WHEN event_type IN ('saga_completed', 'saga_failed') THEN 1 ELSE 0 END) AS ends
    FROM events
    GROUP BY saga_name, saga_id
),
open_steps AS (  -- steps entered and not left: one step_started more than step_completed/step_failed
    SELECT saga_name, saga_id, LISTAGG(step_name, ',') AS open_steps
    FROM (
        SELECT saga_name, saga_id, step_name,
               SUM(CASE WHEN event_type = 'step_started' THEN 1
                        WHEN event_type IN ('step_completed', 'step_failed') THEN -1 ELSE 0 END) AS open_count
        FROM events
        WHERE step_name IS NOT NULL
        GROUP BY saga_name, saga_id, step_name
    )
    WHERE open_count > 0
    GROUP BY saga_name, saga_id
)
SELECT s.saga_name, s.saga_id, s.started_at, s.last_event_at, s.events, s.steps_completed, s.compensations,
       o.open_steps
FROM sagas s
LEFT JOIN open_steps o ON o.saga_name = s.saga_name AND o.saga_id = s.saga_id
WHERE s.starts > 0 AND s.ends = 0
