-- title: Throughput
-- description: Sagas started, completed and failed, and events written, per time bucket (minute, hour or day,
--   by the events' own timestamps, UTC) and saga definition.
-- param: since (duration, default 24h): events within this long before now
-- param: bucket (choice minute|hour|day, default minute): the bucket width
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT * FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND `timestamp` >= {since} AND saga_name LIKE {saga}
)
SELECT
    CAST(date_trunc({bucket}, `timestamp`) AS TIMESTAMP_NTZ) AS bucket_start,
    saga_name,
    count_if(event_type = 'saga_started') AS started,
    count_if(event_type = 'saga_completed') AS completed,
    count_if(event_type = 'saga_failed') AS failed,
    count(*) AS events
FROM events
GROUP BY CAST(date_trunc({bucket}, `timestamp`) AS TIMESTAMP_NTZ), saga_name
ORDER BY bucket_start, saga_name
