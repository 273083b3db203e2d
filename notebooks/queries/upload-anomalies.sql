-- name: upload-anomalies
-- finds: Hours in which an internal host sent far more to external
--   destinations than it usually does: exfiltration, and its look-alikes
--   (cloud backups, large uploads). One row per (host, hour), ranked by a
--   robust z-score against the host's own earlier hours.
-- params:
--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range (NULL: 24 h before `to`)
--   to Nullable(DateTime64(6, 'UTC')) default NULL, end of the range, exclusive (NULL: the end of the newest feature window)
--   host Nullable(IPv6) default NULL, only this host (NULL: every host)
--   baseline_days UInt32 default 7, how far back a host's history reaches
--   min_history UInt32 default 6, active hours of history a host needs for its own baseline; with fewer it is compared with the population
--   min_z Float64 default 3.5, smallest z returned (Iglewicz-Hoaglin's outlier cut)
--   min_bytes UInt64 default 10000000, smallest hourly upload returned, in bytes
--   window String default '10m0s', host_features window summed into hours (a tiling window of Layer 1)
--   limit UInt32 default 50, rows returned
--
-- Data: ndr.host_features, Layer 1's per-host windows, summed per hour
-- (bytes_out_external: payload bytes the host sent to external addresses).
-- Baseline: the median and MAD of log1p(hourly bytes) over the host's
-- active hours in the baseline_days before the hour (hours without
-- external traffic do not count). A host with fewer than min_history such
-- hours is compared with the population of all (host, hour) values in the
-- query's data instead (baseline = 'population').
--   z = 0.6745 (log1p(bytes) - median) / max(MAD, 0.1)
-- is the modified z-score of Iglewicz and Hoaglin on the log scale (bytes
-- are heavy-tailed); the MAD floor of 0.1 (about 10 % in bytes) keeps a
-- host with near-constant uploads from alarming on small changes.
-- The expected band runs from band_low_bytes to band_high_bytes, where z
-- reaches -3.5 and 3.5. The population is every host's hours, also when
-- `host` selects one.
WITH
    coalesce({to:Nullable(DateTime64(6, 'UTC'))},
             (SELECT max(window_end) FROM host_features WHERE window = {window:String})) AS t_to,
    coalesce({from:Nullable(DateTime64(6, 'UTC'))}, t_to - INTERVAL 24 HOUR) AS t_from,
    hourly AS (
        SELECT
            host,
            toStartOfHour(window_start) AS hour,
            toUInt32(toUnixTimestamp(toStartOfHour(window_start))) AS hour_s,
            sum(bytes_out_external) AS bytes,
            sum(connections) AS connections,
            max(large_external_destinations) AS large_destinations
        FROM host_features
        WHERE window = {window:String}
          AND window_start >= toStartOfHour(t_from) - toIntervalDay({baseline_days:UInt32})
          AND window_start < t_to
        GROUP BY host, hour
        HAVING bytes > 0
    ),
    population AS (
        SELECT
            quantileExact(0.5)(log1p(bytes)) AS med,
            quantileExact(0.5)(abs(log1p(bytes) - (SELECT quantileExact(0.5)(log1p(bytes)) FROM hourly))) AS mad
        FROM hourly
    ),
    history AS (
        SELECT
            *,
            groupArray(log1p(bytes)) OVER (PARTITION BY host ORDER BY hour_s
                RANGE BETWEEN {baseline_days:UInt32} * 86400 PRECEDING AND 1 PRECEDING) AS past
        FROM hourly
        WHERE {host:Nullable(IPv6)} IS NULL OR host = {host:Nullable(IPv6)}
    ),
    scored AS (
        SELECT
            *,
            length(past) >= {min_history:UInt32} AS own,
            if(own, arrayReduce('quantileExact(0.5)', past), (SELECT med FROM population)) AS med,
            if(own, arrayReduce('quantileExact(0.5)', arrayMap(v -> abs(v - med), past)), (SELECT mad FROM population)) AS mad,
            0.6745 * (log1p(bytes) - med) / greatest(mad, 0.1) AS z
        FROM history
        WHERE hour >= toStartOfHour(t_from)
    )
SELECT
    replaceRegexpOne(toString(host), '^::ffff:', '') AS host,
    hour,
    bytes AS bytes_out_external,
    round((exp(med) - 1)) AS baseline_median_bytes,
    round(greatest(0, exp(med - 3.5 * greatest(mad, 0.1) / 0.6745) - 1)) AS band_low_bytes,
    round(exp(med + 3.5 * greatest(mad, 0.1) / 0.6745) - 1) AS band_high_bytes,
    round(bytes / greatest(1, (exp(med) - 1)), 1) AS ratio,
    round(z, 2) AS z,
    if(own, 'host', 'population') AS baseline,
    length(past) AS history_hours,
    connections,
    large_destinations
FROM scored
WHERE z >= {min_z:Float64} AND bytes >= {min_bytes:UInt64}
ORDER BY z DESC, bytes_out_external DESC, host, hour
LIMIT {limit:UInt32}
