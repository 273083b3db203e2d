-- 0001_conn: ${db}.conn, one row per connection record (Zeek conn.log).
--
-- Written by store.ConnWriter from ingest.Conn; read by features, hunting
-- notebooks and the scorers. Columns:
--
--   ts             DateTime64(6, 'UTC')  connection start (Zeek ts), microseconds,
--                                        UTC. Partition key (per day) and second
--                                        sort key.
--   uid            String                Zeek's connection uid (e.g. CHhAvVGS1DHFjwGM9).
--   orig_h         IPv6                  originator address. IPv4 is stored
--                                        IPv4-mapped (::ffff:a.b.c.d), so one
--                                        column holds both families and
--                                        toIPv6('10.0.0.5') matches 10.0.0.5.
--                                        First sort key: per-host scans read a
--                                        contiguous range.
--   orig_p         UInt16                originator port (ICMP: type).
--   resp_h         IPv6                  responder address, stored like orig_h.
--                                        Bloom filter index resp_h_bf serves
--                                        "who talked to X" lookups.
--   resp_p         UInt16                responder port (ICMP: code).
--   proto          LowCardinality(String) transport: tcp, udp, icmp or
--                                        unknown_transport.
--   service        LowCardinality(String) Zeek's protocol guess (dns, http,
--                                        ssl, ...); '' when Zeek had none.
--   duration       Float64               seconds, microsecond resolution; 0 when
--                                        Zeek left it unset.
--   orig_bytes     UInt64                payload bytes sent by the originator.
--   resp_bytes     UInt64                payload bytes sent by the responder.
--   conn_state     LowCardinality(String) Zeek conn_state (S0, SF, REJ, ...);
--                                        '' when unset.
--   local_orig     Nullable(Bool)        Zeek local_orig; NULL: the sensor did
--                                        not say, and the internal/external
--                                        decision falls back to configured
--                                        networks.
--   local_resp     Nullable(Bool)        Zeek local_resp, like local_orig.
--   missed_bytes   UInt64                bytes Zeek missed (capture gaps).
--   history        LowCardinality(String) Zeek history letters (ShADadFf ...).
--   orig_pkts      UInt64                packets sent by the originator.
--   orig_ip_bytes  UInt64                IP-level bytes sent by the originator.
--   resp_pkts      UInt64                packets sent by the responder.
--   resp_ip_bytes  UInt64                IP-level bytes sent by the responder.
--   sensor         LowCardinality(String) id of the sensor that observed it.
--   ingest_time    DateTime              when ndr stored the row (server clock).
--                                        Retention is measured from it, not from
--                                        ts: replaying a capture from 2011 must
--                                        not be deleted the moment it lands. The
--                                        store sets the TTL from its config
--                                        (ALTER TABLE ... MODIFY TTL), not here.
--   orig_ip        String ALIAS          orig_h as text: dotted quad for
--                                        IPv4-mapped addresses, else IPv6 text.
--                                        Computed on read, not stored.
--   resp_ip        String ALIAS          resp_h as text, like orig_ip.
--
-- Counters Zeek leaves unset ('-') are 0. Codecs: T64 packs the counters
-- (mostly small values in 64-bit columns), DoubleDelta the timestamps,
-- which rise within each originator's run of rows (sort key orig_h, ts),
-- Delta the insert clock.
--
-- Settings: non_replicated_deduplication_window keeps the hashes of the last
-- 10000 inserted blocks so a retried INSERT with the same
-- insert_deduplication_token (the writer derives it from the batches' sensor,
-- stream and seq) is dropped instead of doubling rows. ttl_only_drop_parts
-- makes retention drop whole parts instead of rewriting them.
--
-- The IPv4-mapped test in the aliases is a range check; CAST(x AS IPv4) throws
-- on a non-mapped address, so it is applied to a value that is always mapped.

CREATE TABLE IF NOT EXISTS ${db}.conn
(
    ts            DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    uid           String CODEC(ZSTD(1)),
    orig_h        IPv6 CODEC(ZSTD(1)),
    orig_p        UInt16 CODEC(ZSTD(1)),
    resp_h        IPv6 CODEC(ZSTD(1)),
    resp_p        UInt16 CODEC(ZSTD(1)),
    proto         LowCardinality(String),
    service       LowCardinality(String),
    duration      Float64 CODEC(ZSTD(1)),
    orig_bytes    UInt64 CODEC(T64, ZSTD(1)),
    resp_bytes    UInt64 CODEC(T64, ZSTD(1)),
    conn_state    LowCardinality(String),
    local_orig    Nullable(Bool),
    local_resp    Nullable(Bool),
    missed_bytes  UInt64 CODEC(T64, ZSTD(1)),
    history       LowCardinality(String),
    orig_pkts     UInt64 CODEC(T64, ZSTD(1)),
    orig_ip_bytes UInt64 CODEC(T64, ZSTD(1)),
    resp_pkts     UInt64 CODEC(T64, ZSTD(1)),
    resp_ip_bytes UInt64 CODEC(T64, ZSTD(1)),
    sensor        LowCardinality(String),
    ingest_time   DateTime DEFAULT now() CODEC(Delta, ZSTD(1)),

    orig_ip String ALIAS if(
        orig_h BETWEEN toIPv6('::ffff:0.0.0.0') AND toIPv6('::ffff:255.255.255.255'),
        toString(CAST(if(orig_h BETWEEN toIPv6('::ffff:0.0.0.0') AND toIPv6('::ffff:255.255.255.255'),
                         orig_h, toIPv6('::ffff:0.0.0.0')) AS IPv4)),
        toString(orig_h)),
    resp_ip String ALIAS if(
        resp_h BETWEEN toIPv6('::ffff:0.0.0.0') AND toIPv6('::ffff:255.255.255.255'),
        toString(CAST(if(resp_h BETWEEN toIPv6('::ffff:0.0.0.0') AND toIPv6('::ffff:255.255.255.255'),
                         resp_h, toIPv6('::ffff:0.0.0.0')) AS IPv4)),
        toString(resp_h)),

    INDEX resp_h_bf resp_h TYPE bloom_filter GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (orig_h, ts)
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
