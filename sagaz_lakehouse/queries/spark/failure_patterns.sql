-- title: Failure patterns
-- description: Step failures by hour, saga, step and error type: how many failures, how many distinct sagas they
--   hit, and one of their error messages (the first in sort order). Most frequent first within each hour.
-- param: since (duration, default 24h): failures within this long before now
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT * FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND `timestamp` >= {since} AND saga_name LIKE {saga}
)
SELECT
    CAST(date_trunc('hour', `timestamp`) AS TIMESTAMP_NTZ) AS hour,
    saga_name,
    step_name,
    error_type,
    count(*) AS failures,
    count(DISTINCT saga_id) AS sagas,
    min(error_message) AS example_message
FROM events
WHERE event_type = 'step_failed'
GROUP BY CAST(date_trunc('hour', `timestamp`) AS TIMESTAMP_NTZ), saga_name, step_name, error_type
ORDER BY hour, failures DESC, saga_name, step_name, error_type
