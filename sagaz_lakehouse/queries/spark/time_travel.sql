-- title: Time travel: events then and now
-- description: Event counts per event type in the Iceberg table as it was at as_of (an Iceberg snapshot id, read
--   with FOR VERSION AS OF, or a moment, read with FOR TIMESTAMP AS OF) beside the counts now, and what was added
--   since. lake_snapshots lists the snapshot ids and when each was committed. A moment before the table's first
--   snapshot is an error (Trino: "No version history table ... at or before ...").
-- param: as_of (as_of, default 1h): a snapshot id, a duration ago (10m, 1h) or an ISO timestamp in UTC
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH past AS (  -- the doctor's probe events stay in the table and are left out, then and now
    SELECT event_type, count(*) AS events
    FROM iceberg.{database}.saga_events {as_of}
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND saga_name LIKE {saga}
    GROUP BY event_type
),
latest AS (
    SELECT event_type, count(*) AS events
    FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND saga_name LIKE {saga}
    GROUP BY event_type
)
SELECT
    coalesce(l.event_type, p.event_type) AS event_type,
    coalesce(p.events, 0) AS events_then,
    coalesce(l.events, 0) AS events_now,
    coalesce(l.events, 0) - coalesce(p.events, 0) AS added
FROM latest l
FULL OUTER JOIN past p ON p.event_type = l.event_type
ORDER BY event_type
