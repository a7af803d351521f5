-- title: Slowest sagas
-- description: The sagas that took longest from start to end in the window, with their outcome, when they ended,
--   how many step executions they had, their slowest step and its duration, and the error of a failed saga.
--   Ties are broken by saga id, so the list is stable.
-- param: since (duration, default 24h): sagas that ended within this long before now
-- param: limit (int, default 10): how many sagas
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT * FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND `timestamp` >= {since} AND saga_name LIKE {saga}
),
ended AS (
    SELECT saga_name, saga_id, event_type, total_duration_ms, `timestamp` AS ended_at, error_type
    FROM events
    WHERE event_type IN ('saga_completed', 'saga_failed') AND total_duration_ms IS NOT NULL
),
steps AS (
    SELECT saga_name, saga_id, count(*) AS steps, max_by(step_name, duration_ms) AS slowest_step,
           max(duration_ms) AS slowest_step_ms
    FROM events
    WHERE event_type IN ('step_completed', 'step_failed')
    GROUP BY saga_name, saga_id
)
SELECT
    e.saga_id,
    e.saga_name,
    IF(e.event_type = 'saga_completed', 'completed', 'failed') AS outcome,
    e.total_duration_ms,
    e.ended_at,
    s.steps,
    s.slowest_step,
    s.slowest_step_ms,
    e.error_type
FROM ended e
LEFT JOIN steps s ON s.saga_name = e.saga_name AND s.saga_id = e.saga_id
ORDER BY e.total_duration_ms DESC, e.saga_id
LIMIT {limit}
