-- title: Anomalies: step failure rate and p95 duration outside their trailing baseline
-- description: For each saga step and time bucket (UTC) with at least min_executions executions: its failure rate
--   and its p95 duration, judged against the baseline of the same step's earlier buckets with traffic (the last
--   baseline of them; a bucket with fewer than min_baseline is not judged). A failure rate is anomalous when it is
--   further from the baseline's pooled rate p0 (its failures over its executions E) than threshold binomial
--   standard errors, sqrt(max(p0, 1/E) * (1 - p0) / n) for the bucket's n executions, and at least rate_floor
--   away. A p95 is anomalous when it is further from the median of the baseline's p95s than threshold times their
--   scaled median absolute deviation (1.4826 MAD), and at least p95_floor_pct percent of that median and 1 ms
--   away. Percentiles and medians are exact nearest-rank values. One row per anomalous bucket and metric (high or
--   low), with the band it left; oldest first.
-- param: since (duration, default 7d): buckets within this long before now (the first ones have no baseline yet)
-- param: bucket (choice minute|hour|day, default hour): the bucket width
-- param: baseline (int, default 24): at most this many earlier buckets of the step form its baseline
-- param: min_baseline (int, default 6): a bucket with fewer earlier buckets in its baseline is not judged
-- param: min_executions (int, default 10): buckets with fewer executions of the step are neither judged nor part of
--   a baseline
-- param: threshold (number, default 3): how many standard errors (failure rate) or scaled MADs (p95) make an
--   anomaly
-- param: rate_floor (number, default 0.05): a failure rate this close to the baseline's is never anomalous
-- param: p95_floor_pct (int, default 20): a p95 within this percentage of the baseline median is never anomalous
-- param: saga (pattern, default %): saga names to include, a LIKE pattern
WITH events AS (  -- the window's saga events; the doctor's probe events stay in the table and are left out
    SELECT * FROM iceberg.{database}.saga_events
    WHERE event_type <> 'sagaz_lakehouse.doctor_probe' AND `timestamp` >= {since} AND saga_name LIKE {saga}
),
buckets AS (
    SELECT
        saga_name,
        step_name,
        CAST(date_trunc({bucket}, `timestamp`) AS TIMESTAMP_NTZ) AS bucket_start,
        count(*) AS executions,
        count_if(event_type = 'step_failed') AS failures,
        element_at(array_sort(array_agg(duration_ms)), CAST(ceil(0.95 * count(*)) AS integer)) AS p95_ms
    FROM events
    WHERE event_type IN ('step_completed', 'step_failed') AND duration_ms IS NOT NULL
    GROUP BY saga_name, step_name, CAST(date_trunc({bucket}, `timestamp`) AS TIMESTAMP_NTZ)
    HAVING count(*) >= {min_executions}
),
history AS (  -- each bucket with the buckets before it (at most `baseline`): its baseline
    SELECT
        b.*,
        count(*) OVER (PARTITION BY saga_name, step_name ORDER BY bucket_start
                       ROWS BETWEEN {baseline} PRECEDING AND 1 PRECEDING) AS base_buckets,
        sum(executions) OVER (PARTITION BY saga_name, step_name ORDER BY bucket_start
                              ROWS BETWEEN {baseline} PRECEDING AND 1 PRECEDING) AS base_executions,
        sum(failures) OVER (PARTITION BY saga_name, step_name ORDER BY bucket_start
                            ROWS BETWEEN {baseline} PRECEDING AND 1 PRECEDING) AS base_failures,
        array_sort(collect_list(p95_ms) OVER (PARTITION BY saga_name, step_name ORDER BY bucket_start
                                           ROWS BETWEEN {baseline} PRECEDING AND 1 PRECEDING)) AS base_p95s
    FROM buckets b
),
judged AS (
    SELECT
        h.*,
        1e0 * failures / executions AS rate,
        1e0 * base_failures / base_executions AS base_rate,
        element_at(base_p95s, CAST(greatest(ceil(0.5 * base_buckets), 1) AS integer)) AS p95_median
    FROM history h
    WHERE base_buckets >= {min_baseline}
),
bands AS (
    SELECT
        j.*,
        greatest({threshold} * sqrt(greatest(base_rate, 1e0 / base_executions) * (1 - base_rate) / executions),
                 {rate_floor}) AS rate_band,
        greatest({threshold} * 1.4826e0 * element_at(array_sort(transform(base_p95s, v -> abs(v - p95_median))),
                                                     CAST(greatest(ceil(0.5 * base_buckets), 1) AS integer)),
                 {p95_floor_pct} / 100e0 * p95_median, 1e0) AS p95_band
    FROM judged j
),
flagged AS (
    SELECT saga_name, step_name, bucket_start, 'failure_rate' AS metric, rate AS value, base_rate AS baseline,
           rate_band AS band, executions, base_buckets
    FROM bands
    WHERE abs(rate - base_rate) > rate_band
    UNION ALL
    SELECT saga_name, step_name, bucket_start, 'p95_ms' AS metric, 1e0 * p95_ms AS value, 1e0 * p95_median AS baseline,
           p95_band AS band, executions, base_buckets
    FROM bands
    WHERE abs(p95_ms - p95_median) > p95_band
)
SELECT
    saga_name,
    step_name,
    bucket_start,
    metric,
    IF(value > baseline, 'high', 'low') AS direction,
    round(value, 4) AS value,
    round(baseline, 4) AS baseline,
    round(greatest(baseline - band, 0e0), 4) AS band_low,
    round(baseline + band, 4) AS band_high,
    executions,
    base_buckets AS baseline_buckets
FROM flagged
ORDER BY bucket_start, saga_name, step_name, metric
