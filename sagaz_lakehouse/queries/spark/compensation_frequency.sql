-- title: Compensation frequency and outcome
-- description: For each compensated step of each saga definition: how many compensations started, completed,
--   failed (the compensation itself raised) or never ended, the share of the window's finished sagas that had
--   to compensate that step, the share of compensations that succeeded, and their mean duration.
-- param: since (duration, default 24h): events within this long before now
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT * FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND `timestamp` >= {since} AND saga_name LIKE {saga}
),
finished AS (
    SELECT saga_name, count(*) AS sagas, count_if(event_type = 'saga_failed') AS failed
    FROM events
    WHERE event_type IN ('saga_completed', 'saga_failed')
    GROUP BY saga_name
),
compensations AS (
    SELECT
        saga_name,
        step_name,
        count_if(event_type = 'compensation_started') AS started,
        count_if(event_type = 'compensation_completed') AS completed,
        count_if(event_type = 'compensation_failed') AS failed,
        count(DISTINCT saga_id) FILTER (WHERE event_type = 'compensation_started') AS sagas,
        avg(duration_ms) FILTER (WHERE event_type = 'compensation_completed') AS avg_ms
    FROM events
    WHERE event_type IN ('compensation_started', 'compensation_completed', 'compensation_failed')
    GROUP BY saga_name, step_name
)
SELECT
    c.saga_name,
    c.step_name,
    f.sagas AS sagas_finished,
    f.failed AS sagas_failed,
    c.started AS compensations,
    c.completed,
    c.failed,
    c.started - c.completed - c.failed AS unfinished,
    round(100e0 * c.sagas / f.sagas, 2) AS compensated_pct,
    round(100e0 * c.completed / nullif(c.started, 0), 2) AS success_pct,
    round(c.avg_ms, 2) AS avg_ms
FROM compensations c
LEFT JOIN finished f ON f.saga_name = c.saga_name
ORDER BY c.saga_name, compensations DESC, c.step_name
