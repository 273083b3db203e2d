-- 0004_baselines: the aggregates per-host baselines are fitted from, and
-- the fitted snapshots (package baseline; `ndr retrain`).
--
-- "Internal" in these views: the sensor's word (Zeek local_orig /
-- local_resp) when it gave one, else the default local networks of
-- features.DefaultConfig: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
-- fc00::/7 (IPv4 stored IPv4-mapped, so ::ffff:10.0.0.0 .. ::ffff:10.255.255.255).
-- A view is DDL and takes no query parameters, so these ranges are fixed
-- here; `ndr retrain --local-nets` narrows the hosts it fits with query
-- parameters, and `ndr retrain --backfill --local-nets` aggregates old
-- conn rows with the networks given. Sites whose internal space lies
-- outside these ranges should have their sensors set local_orig and
-- local_resp (Zeek's Site::local_nets), which these views honour.
--
-- Admin ports, as baseline.AdminPorts (bit i of admin_ports is the i-th):
-- 22 SSH, 23 Telnet, 135 MS RPC, 139 NetBIOS, 445 SMB, 3389 RDP,
-- 5900 VNC, 5985/5986 WinRM.
--
-- A materialized view sees only rows inserted after it exists: conn rows
-- stored before this migration reach the aggregates through
-- `ndr retrain --backfill`, which reads ingest_time < this migration's
-- applied_at and records itself in host_hour_backfills.
--
-- ${db}.host_hour: one row per internal originator and hour (after
-- merges; read with GROUP BY host, hour and the -Merge combinators).
--   host               IPv6      the internal originator (conn.orig_h)
--   hour               DateTime  toStartOfHour(conn.ts), UTC
--   local_orig         UInt8     1 when the sensor said the host is local
--   connections        UInt64    connections it originated
--   bytes_out_external UInt64    orig_bytes to external destinations
--   external_dsts      uniq      distinct external destinations (uniqMerge)
--   internal_dsts      uniq      distinct internal destinations: fan-out
--   admin_connections  UInt64    connections to admin ports of internal hosts
--   admin_ports        UInt16    bit mask of the admin ports used (groupBitOr)
--   host_ip            String ALIAS  text form
--
-- ${db}.dst_prevalence: one row per external destination and day.
--   dst                IPv6      the external responder
--   day                Date      toDate(conn.ts)
--   internal_hosts     uniq      distinct internal originators (uniqMerge)
--   connections        UInt64
--   first_seen, last_seen DateTime64(6)  first and last connection (min, max)
--
-- Neither has a TTL: they are small next to conn (a row per host-hour,
-- per destination-day), and first_seen must outlive conn's retention.
--
-- ${db}.baselines: one row per snapshot version.
--   version        UInt64        increases with every fit
--   fitted_at      DateTime64(3) when the fit ran
--   data_from      DateTime      the data window [data_from, data_to)
--   data_to        DateTime
--   hosts          UInt32        hosts with a model of their own
--   internal_hosts UInt32        hosts seen
--   destinations   UInt32        destination prevalence entries
--   params         String        JSON of baseline.Params
--   format         UInt16        encoding of snapshot (baseline/encode.go)
--   snapshot       String        the encoded baseline.Snapshot
--   saved_at       DateTime      server clock at insert
--
-- ${db}.baseline_hosts: each version's per-host models, for hunting (one
-- row per version, host and metric). On the log1p scale: the typical
-- active hour at hour of week h (0 = Monday 00:00 UTC) is
-- exp(location + hour_of_day[h % 24 + 1] + weekday[intDiv(h, 24) + 1]) - 1,
-- and scale is the robust sd (1.4826 MAD). activity is the share of hours
-- with any of the metric; activity_* are its seasonal rates (0: not fitted).
-- ${db}.baseline_bands expands the latest version into 168 hours per host
-- and metric with typical, low and high (± 3 scale) in the metric's units.

CREATE TABLE IF NOT EXISTS ${db}.host_hour
(
    host               IPv6 CODEC(ZSTD(1)),
    hour               DateTime('UTC') CODEC(Delta, ZSTD(1)),
    local_orig         SimpleAggregateFunction(max, UInt8),
    connections        SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    bytes_out_external SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    external_dsts      AggregateFunction(uniq, IPv6),
    internal_dsts      AggregateFunction(uniq, IPv6),
    admin_connections  SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    admin_ports        SimpleAggregateFunction(groupBitOr, UInt16),
    host_ip            String ALIAS replaceRegexpOne(toString(host), '^::ffff:', '')
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (host, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.host_hour_mv TO ${db}.host_hour AS
SELECT
    orig_h AS host,
    toStartOfHour(ts) AS hour,
    max(toUInt8(ifNull(local_orig, false))) AS local_orig,
    count() AS connections,
    sumIf(orig_bytes, NOT resp_internal) AS bytes_out_external,
    uniqStateIf(resp_h, NOT resp_internal) AS external_dsts,
    uniqStateIf(resp_h, resp_internal) AS internal_dsts,
    countIf(resp_internal AND admin_bit > 0) AS admin_connections,
    groupBitOrIf(admin_bit, resp_internal) AS admin_ports
FROM
(
    SELECT
        ts, orig_h, resp_h, orig_bytes, local_orig,
        ifNull(local_resp,
            resp_h BETWEEN toIPv6('::ffff:10.0.0.0') AND toIPv6('::ffff:10.255.255.255')
            OR resp_h BETWEEN toIPv6('::ffff:172.16.0.0') AND toIPv6('::ffff:172.31.255.255')
            OR resp_h BETWEEN toIPv6('::ffff:192.168.0.0') AND toIPv6('::ffff:192.168.255.255')
            OR resp_h BETWEEN toIPv6('fc00::') AND toIPv6('fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')) AS resp_internal,
        indexOf([22, 23, 135, 139, 445, 3389, 5900, 5985, 5986], resp_p) AS admin_index,
        toUInt16(if(admin_index = 0, 0, bitShiftLeft(toUInt16(1), greatest(admin_index, 1) - 1))) AS admin_bit
    FROM ${db}.conn
    WHERE ifNull(local_orig,
            orig_h BETWEEN toIPv6('::ffff:10.0.0.0') AND toIPv6('::ffff:10.255.255.255')
            OR orig_h BETWEEN toIPv6('::ffff:172.16.0.0') AND toIPv6('::ffff:172.31.255.255')
            OR orig_h BETWEEN toIPv6('::ffff:192.168.0.0') AND toIPv6('::ffff:192.168.255.255')
            OR orig_h BETWEEN toIPv6('fc00::') AND toIPv6('fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))
)
GROUP BY host, hour;

CREATE TABLE IF NOT EXISTS ${db}.dst_prevalence
(
    dst            IPv6 CODEC(ZSTD(1)),
    day            Date CODEC(Delta, ZSTD(1)),
    internal_hosts AggregateFunction(uniq, IPv6),
    connections    SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    first_seen     SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_seen      SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    dst_ip         String ALIAS replaceRegexpOne(toString(dst), '^::ffff:', '')
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (dst, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.dst_prevalence_mv TO ${db}.dst_prevalence AS
SELECT
    resp_h AS dst,
    toDate(ts) AS day,
    uniqState(orig_h) AS internal_hosts,
    count() AS connections,
    min(ts) AS first_seen,
    max(ts) AS last_seen
FROM ${db}.conn
WHERE ifNull(local_orig,
        orig_h BETWEEN toIPv6('::ffff:10.0.0.0') AND toIPv6('::ffff:10.255.255.255')
        OR orig_h BETWEEN toIPv6('::ffff:172.16.0.0') AND toIPv6('::ffff:172.31.255.255')
        OR orig_h BETWEEN toIPv6('::ffff:192.168.0.0') AND toIPv6('::ffff:192.168.255.255')
        OR orig_h BETWEEN toIPv6('fc00::') AND toIPv6('fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))
  AND NOT ifNull(local_resp,
        resp_h BETWEEN toIPv6('::ffff:10.0.0.0') AND toIPv6('::ffff:10.255.255.255')
        OR resp_h BETWEEN toIPv6('::ffff:172.16.0.0') AND toIPv6('::ffff:172.31.255.255')
        OR resp_h BETWEEN toIPv6('::ffff:192.168.0.0') AND toIPv6('::ffff:192.168.255.255')
        OR resp_h BETWEEN toIPv6('fc00::') AND toIPv6('fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))
GROUP BY dst, day;

-- Backfills already run, so a second `ndr retrain --backfill` does not
-- count the old rows twice.
CREATE TABLE IF NOT EXISTS ${db}.host_hour_backfills
(
    done_at   DateTime DEFAULT now(),
    before    DateTime,          -- conn rows with ingest_time < before were aggregated
    conn_rows UInt64,
    networks  Array(String)
)
ENGINE = MergeTree
ORDER BY done_at;

CREATE TABLE IF NOT EXISTS ${db}.baselines
(
    version        UInt64,
    fitted_at      DateTime64(3, 'UTC'),
    data_from      DateTime('UTC'),
    data_to        DateTime('UTC'),
    hosts          UInt32,
    internal_hosts UInt32,
    destinations   UInt32,
    params         String,
    format         UInt16,
    snapshot       String CODEC(ZSTD(3)),
    saved_at       DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY version;

CREATE TABLE IF NOT EXISTS ${db}.baseline_hosts
(
    version              UInt64,
    host                 IPv6 CODEC(ZSTD(1)),
    metric               LowCardinality(String),
    history_hours        UInt32,
    active_hours         UInt32,
    weight               Float32,
    location             Float32,
    scale                Float32,
    activity             Float32,
    hour_of_day          Array(Float32) CODEC(ZSTD(1)),
    weekday              Array(Float32) CODEC(ZSTD(1)),
    activity_hour_of_day Array(Float32) CODEC(ZSTD(1)),
    activity_weekday     Array(Float32) CODEC(ZSTD(1)),
    host_ip              String ALIAS replaceRegexpOne(toString(host), '^::ffff:', '')
)
ENGINE = MergeTree
ORDER BY (host, metric, version);

CREATE VIEW IF NOT EXISTS ${db}.baseline_bands AS
SELECT
    version, host, host_ip, metric, how AS hour_of_week,
    location + hour_of_day[how % 24 + 1] + weekday[intDiv(how, 24) + 1] AS log_location,
    scale,
    exp(log_location) - 1 AS typical,
    greatest(exp(log_location - 3 * scale) - 1, 0) AS low,
    exp(log_location + 3 * scale) - 1 AS high,
    if(activity > 0,
       least(activity
             * if(activity_hour_of_day[how % 24 + 1] > 0, activity_hour_of_day[how % 24 + 1] / activity, 1)
             * if(activity_weekday[intDiv(how, 24) + 1] > 0, activity_weekday[intDiv(how, 24) + 1] / activity, 1), 1),
       0) AS active_probability,
    history_hours, weight
FROM ${db}.baseline_hosts
ARRAY JOIN range(168) AS how
WHERE version = (SELECT max(version) FROM ${db}.baselines);
