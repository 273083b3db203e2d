-- name: beacon-candidates
-- finds: Internal hosts that call one external host and port at regular
--   intervals with steady request sizes: C2 beacons and their benign
--   look-alikes (NTP, update checks, telemetry). One row per (src, dst,
--   port) with the inter-arrival statistics RITA uses, ranked by a beacon
--   score discounted by how many internal hosts share the destination.
-- params:
--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range (NULL: 24 h before `to`)
--   to Nullable(DateTime64(6, 'UTC')) default NULL, end of the range, exclusive (NULL: just after the newest connection)
--   min_conns UInt32 default 10, fewest connections a pair needs to be scored
--   include_internal UInt8 default 0, 1 also scores internal destinations
--   local_nets Array(String) default ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'], internal networks, used when Zeek's local_orig/local_resp are unset
--   limit UInt32 default 50, rows returned
--
-- Columns: interval_* are over the pair's gaps between consecutive
-- connection starts, in seconds; size_* over orig_ip_bytes.
--   ts_score    RITA v5 timestamp score: mean of (1 - |Bowley skew|) and
--               (median - MAD) / median of the gaps; Bowley skew
--               (Q1 + Q3 - 2 Q2) / (Q3 - Q1) is taken as 0 when Q3 - Q1 < 10 s,
--               as RITA does, so small jitter does not count as skew.
--   size_score  the same over the sizes (RITA's data-size score).
--   coverage    hours with a connection / hours in the range (RITA's
--               duration score, simplified).
--   beacon_score (2 ts_score + size_score + coverage) / 4.
--   dst_prevalence internal hosts that contacted dst / internal hosts seen,
--               in the range. Popular destinations (NTP pools, CDNs) are
--               rarely C2 (RITA's prevalence modifier, BAYWATCH's
--               popularity filter).
--   score       beacon_score * (1 - dst_prevalence): the ranking.
WITH
    coalesce({to:Nullable(DateTime64(6, 'UTC'))}, (SELECT max(ts) FROM conn) + INTERVAL 1 SECOND) AS t_to,
    coalesce({from:Nullable(DateTime64(6, 'UTC'))}, t_to - INTERVAL 24 HOUR) AS t_from,
    greatest(1, ceil(dateDiff('second', t_from, t_to) / 3600)) AS range_hours,
    internal_src AS (
        SELECT orig_h
        FROM conn
        WHERE ts >= t_from AND ts < t_to
          AND coalesce(local_orig, arrayExists(n -> isIPAddressInRange(orig_ip, n), {local_nets:Array(String)}))
    ),
    sources AS (SELECT uniqExact(orig_h) AS n FROM internal_src),
    prevalence AS (
        SELECT resp_h, uniqExact(orig_h) AS srcs
        FROM conn
        WHERE ts >= t_from AND ts < t_to
          AND coalesce(local_orig, arrayExists(n -> isIPAddressInRange(orig_ip, n), {local_nets:Array(String)}))
        GROUP BY resp_h
    ),
    pairs AS (
        SELECT
            orig_h, resp_h, resp_p,
            count() AS conns,
            arrayMap(g -> g / 1e6, arrayPopFront(arrayDifference(arraySort(groupArray(toUnixTimestamp64Micro(ts)))))) AS gaps,
            groupArray(orig_ip_bytes) AS sizes,
            uniqExact(toStartOfHour(ts)) AS hours,
            sum(orig_bytes) AS bytes_out,
            sum(resp_bytes) AS bytes_in,
            min(ts) AS first_ts,
            max(ts) AS last_ts
        FROM conn
        WHERE ts >= t_from AND ts < t_to
          AND coalesce(local_orig, arrayExists(n -> isIPAddressInRange(orig_ip, n), {local_nets:Array(String)}))
          AND ({include_internal:UInt8} = 1
               OR NOT coalesce(local_resp, arrayExists(n -> isIPAddressInRange(resp_ip, n), {local_nets:Array(String)})))
        GROUP BY orig_h, resp_h, resp_p
        HAVING conns >= {min_conns:UInt32}
    ),
    scored AS (
        SELECT
            *,
            arrayReduce('quantilesExact(0.25, 0.5, 0.75)', gaps) AS q,
            arrayReduce('quantileExact(0.5)', arrayMap(g -> abs(g - q[2]), gaps)) AS mad,
            if(q[3] - q[1] < 10, 0, (q[1] + q[3] - 2 * q[2]) / (q[3] - q[1])) AS skew,
            arrayMap(s -> toFloat64(s), sizes) AS fsizes,
            arrayReduce('quantilesExact(0.25, 0.5, 0.75)', fsizes) AS sq,
            arrayReduce('quantileExact(0.5)', arrayMap(s -> abs(s - sq[2]), fsizes)) AS smad,
            if(sq[3] - sq[1] < 10, 0, (sq[1] + sq[3] - 2 * sq[2]) / (sq[3] - sq[1])) AS sskew,
            ((1 - abs(skew)) + if(q[2] > 0, greatest(0, (q[2] - mad) / q[2]), 0)) / 2 AS ts_score,
            ((1 - abs(sskew)) + if(sq[2] > 0, greatest(0, (sq[2] - smad) / sq[2]), 0)) / 2 AS size_score,
            least(1, hours / range_hours) AS coverage
        FROM pairs
    )
SELECT
    replaceRegexpOne(toString(s.orig_h), '^::ffff:', '') AS src,
    replaceRegexpOne(toString(s.resp_h), '^::ffff:', '') AS dst,
    s.resp_p AS port,
    s.conns AS conns,
    round(s.q[2], 1) AS interval_median_s,
    round(s.mad, 1) AS interval_mad_s,
    round(s.skew, 3) AS interval_skew,
    round(arrayReduce('stddevPop', s.gaps) / nullIf(arrayAvg(s.gaps), 0), 3) AS interval_cv,
    round(s.sq[2]) AS size_median,
    round(s.smad) AS size_mad,
    s.bytes_out AS bytes_out,
    s.bytes_in AS bytes_in,
    s.hours AS active_hours,
    p.srcs AS dst_sources,
    round(p.srcs / greatest(1, (SELECT n FROM sources)), 3) AS dst_prevalence,
    round(s.ts_score, 3) AS ts_score,
    round(s.size_score, 3) AS size_score,
    round(s.coverage, 3) AS coverage,
    round((2 * s.ts_score + s.size_score + s.coverage) / 4, 3) AS beacon_score,
    round((2 * s.ts_score + s.size_score + s.coverage) / 4 * (1 - p.srcs / greatest(1, (SELECT n FROM sources))), 3) AS score,
    s.first_ts AS first_seen,
    s.last_ts AS last_seen
FROM scored AS s
LEFT JOIN prevalence AS p ON p.resp_h = s.resp_h
ORDER BY score DESC, conns DESC, src, dst, port
LIMIT {limit:UInt32}
