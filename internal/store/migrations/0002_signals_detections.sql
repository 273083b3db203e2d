-- 0002_signals_detections: ${db}.signals (Layer 1) and ${db}.detections
-- (Layer 2), written by the analysis pipeline of `ndr serve` and `ndr replay`.
--
-- ${db}.signals: one row per signal, a behaviour one host (or host pair)
-- showed in one closed window.
--   signal_type    LowCardinality(String) PORT_SCAN, PERIODIC_BEACON, ... (features.SignalType)
--   src            IPv6                  the internal host (IPv4-mapped for IPv4, as in conn)
--   dst            IPv6                  the destination of a host-pair signal; :: otherwise
--   dst_port       UInt16                its port; 0 otherwise
--   window_start   DateTime64(6, 'UTC')  the window, [start, end), in event time
--   window_end     DateTime64(6, 'UTC')
--   first_seen     DateTime64(6, 'UTC')  first and last contributing connection
--   last_seen      DateTime64(6, 'UTC')
--   severity       Enum8                 LOW < MEDIUM < HIGH < CRITICAL
--   value          Float64               the measurement compared with the threshold
--   threshold      Float64
--   metrics        Map(String, Float64)  evidence, e.g. {'unique_ports': 24}
--   dsts           Array(IPv6)           destinations involved (bounded)
--   ports          Array(UInt16)         destination ports involved (bounded)
--   services       Array(String)         services involved (SSH, SMB, ...)
--   inserted_at    DateTime              server clock at insert
--   src_ip, dst_ip String ALIAS          text forms (dotted quad for IPv4)
--
-- ${db}.detections: one row per version of a detection. A detection is
-- created when a rule's signals correlate, and updated (same detection_id,
-- version + 1) when the same rule and entity match again inside the
-- suppression window. ReplacingMergeTree keeps the highest version after
-- merges; read the current state with FINAL or through detections_latest.
--   detection_id   String                deterministic: rule id + hash, e.g. LM-001-3f9a0c1b2d4e
--   version        UInt64                increases with every update
--   rule_id        LowCardinality(String)
--   type           LowCardinality(String) LATERAL_MOVEMENT, C2_BEACONING, DATA_EXFILTRATION
--   src            IPv6                  the entity (internal host)
--   dst_ips        Array(IPv6)           destinations of the contributing signals
--   first_seen     DateTime64(6, 'UTC')  span of the contributing connections
--   last_seen      DateTime64(6, 'UTC')
--   severity       Enum8                 as in signals
--   confidence     Float64               0..1
--   score          UInt8                 0..100
--   count          UInt32                matches this detection stands for
--   signal_types   Array(String)         types of the contributing signals
--   signals        String                JSON array, exactly as in `ndr replay --out`
--   evidence       String                JSON object, exactly as in `ndr replay --out`
--   mitre          String                JSON object {tactic, tactic_name, techniques}
--   recommended_actions Array(String)
--   detected_at    DateTime64(3)         server clock at insert: when analysts could see it
--   src_ip         String ALIAS          text form of src
--
-- detections is not partitioned: every version of a detection must meet in
-- one partition to be collapsed, and detections are few.
--
-- JSON goes in String columns so that a row reads back byte for byte as the
-- JSON line the same detection produced; JSONExtract* queries it.

CREATE TABLE IF NOT EXISTS ${db}.signals
(
    signal_type   LowCardinality(String),
    src           IPv6 CODEC(ZSTD(1)),
    dst           IPv6 CODEC(ZSTD(1)),
    dst_port      UInt16,
    window_start  DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    window_end    DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    first_seen    DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    last_seen     DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    severity      Enum8('LOW' = 1, 'MEDIUM' = 2, 'HIGH' = 3, 'CRITICAL' = 4),
    value         Float64,
    threshold     Float64,
    metrics       Map(LowCardinality(String), Float64),
    dsts          Array(IPv6),
    ports         Array(UInt16),
    services      Array(LowCardinality(String)),
    inserted_at   DateTime DEFAULT now(),
    src_ip        String ALIAS replaceRegexpOne(toString(src), '^::ffff:', ''),
    dst_ip        String ALIAS replaceRegexpOne(toString(dst), '^::ffff:', '')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(window_end)
ORDER BY (src, window_end, signal_type);

CREATE TABLE IF NOT EXISTS ${db}.detections
(
    detection_id  String,
    version       UInt64,
    rule_id       LowCardinality(String),
    type          LowCardinality(String),
    src           IPv6,
    dst_ips       Array(IPv6),
    first_seen    DateTime64(6, 'UTC'),
    last_seen     DateTime64(6, 'UTC'),
    severity      Enum8('LOW' = 1, 'MEDIUM' = 2, 'HIGH' = 3, 'CRITICAL' = 4),
    confidence    Float64,
    score         UInt8,
    count         UInt32,
    signal_types  Array(LowCardinality(String)),
    signals       String CODEC(ZSTD(3)),
    evidence      String CODEC(ZSTD(3)),
    mitre         String CODEC(ZSTD(3)),
    recommended_actions Array(String),
    detected_at   DateTime64(3, 'UTC') DEFAULT now64(3),
    src_ip        String ALIAS replaceRegexpOne(toString(src), '^::ffff:', '')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY detection_id;

CREATE VIEW IF NOT EXISTS ${db}.detections_latest AS
SELECT *, src_ip FROM ${db}.detections FINAL;
