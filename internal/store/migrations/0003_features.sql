-- 0003_features: ${db}.host_features and ${db}.pair_features, the per-entity
-- rows of Layer 1's closed windows. Their columns mirror the Arrow schemas
-- host_features v1 and pair_features v1 defined and documented column by
-- column in features/schema.go (a schema change there is a new migration
-- here); Arrow's nullable columns are Nullable here, fixed_size_binary[16]
-- addresses are IPv6, dictionary strings LowCardinality(String).
--
-- Which rows are stored: hopping windows overlap (a 60 s window every
-- 10 s), so storing every window would store each connection's
-- contribution six to ten times. The store keeps the windows that tile
-- time (window_start a multiple of the window length) and every session
-- row; together they cover each period once per window length. Scoring
-- still sees every window in memory.
--
-- Added columns:
--   schema_version UInt8     the Arrow schema version the row came from
--   inserted_at    DateTime  server clock at insert; retention counts from it
--   host_ip / src_ip / dst_ip String ALIAS  text forms of the addresses

CREATE TABLE IF NOT EXISTS ${db}.host_features
(
    window_start                DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    window_end                  DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    window                      LowCardinality(String),
    host                        IPv6 CODEC(ZSTD(1)),
    connections                 UInt32 CODEC(T64, ZSTD(1)),
    failed_connections          UInt32 CODEC(T64, ZSTD(1)),
    state_known_connections     UInt32 CODEC(T64, ZSTD(1)),
    failed_ratio                Nullable(Float64),
    distinct_ports              UInt32 CODEC(T64, ZSTD(1)),
    distinct_internal_hosts     UInt32 CODEC(T64, ZSTD(1)),
    privileged_ports            UInt32 CODEC(T64, ZSTD(1)),
    privileged_services         UInt32 CODEC(T64, ZSTD(1)),
    privileged_hosts            UInt32 CODEC(T64, ZSTD(1)),
    max_hosts_one_port          UInt32 CODEC(T64, ZSTD(1)),
    max_hosts_port              Nullable(UInt16),
    bytes_out                   UInt64 CODEC(T64, ZSTD(1)),
    bytes_in                    UInt64 CODEC(T64, ZSTD(1)),
    bytes_out_external          UInt64 CODEC(T64, ZSTD(1)),
    staging_transfers           UInt32 CODEC(T64, ZSTD(1)),
    staging_bytes               UInt64 CODEC(T64, ZSTD(1)),
    large_external_destinations UInt32 CODEC(T64, ZSTD(1)),
    large_external_bytes        UInt64 CODEC(T64, ZSTD(1)),
    first_seen                  DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    last_seen                   DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    sets_saturated              Bool,
    connections_z               Nullable(Float64),
    connections_baseline        Nullable(UInt8),
    bytes_out_external_z        Nullable(Float64),
    bytes_out_external_baseline Nullable(UInt8),
    schema_version              UInt8 DEFAULT 1,
    inserted_at                 DateTime DEFAULT now() CODEC(Delta, ZSTD(1)),
    host_ip                     String ALIAS replaceRegexpOne(toString(host), '^::ffff:', '')
)
ENGINE = MergeTree
PARTITION BY toDate(window_end)
ORDER BY (host, window, window_end)
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS ${db}.pair_features
(
    window_start                DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    window_end                  DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    window                      LowCardinality(String),
    src                         IPv6 CODEC(ZSTD(1)),
    dst                         IPv6 CODEC(ZSTD(1)),
    dst_port                    UInt16,
    dst_internal                Bool,
    connections                 UInt32 CODEC(T64, ZSTD(1)),
    gap_mean_s                  Nullable(Float64),
    gap_sd_s                    Nullable(Float64),
    gap_cv                      Nullable(Float64),
    bytes_out                   UInt64 CODEC(T64, ZSTD(1)),
    bytes_in                    UInt64 CODEC(T64, ZSTD(1)),
    dst_internal_sources        UInt32,
    dst_internal_sources_capped Bool,
    first_seen                  DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    last_seen                   DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    schema_version              UInt8 DEFAULT 1,
    inserted_at                 DateTime DEFAULT now() CODEC(Delta, ZSTD(1)),
    src_ip                      String ALIAS replaceRegexpOne(toString(src), '^::ffff:', ''),
    dst_ip                      String ALIAS replaceRegexpOne(toString(dst), '^::ffff:', '')
)
ENGINE = MergeTree
PARTITION BY toDate(window_end)
ORDER BY (src, dst, dst_port, window_end)
SETTINGS ttl_only_drop_parts = 1;
