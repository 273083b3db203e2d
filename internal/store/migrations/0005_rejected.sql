-- 0005_rejected: ${db}.rejected, one row per event or input line that ndr
-- refused, so that nothing a sensor sent or a file held is lost: the row
-- keeps the input as it arrived and says why it was refused.
--
-- Written by store.RejectWriter: `ndr serve` writes the events its gRPC
-- service refuses (before it acknowledges their batch), `ndr replay` the
-- lines its readers refuse. `ndr send` runs on the sensor side and only
-- prints its bad lines. Columns:
--
--   received_at  DateTime64(6, 'UTC')   when ndr refused it (server clock).
--                                       Sort key: rejections are read as a
--                                       timeline ("what was refused in the
--                                       last hour, and why").
--   source       LowCardinality(String) 'grpc' (an event of a batch) or 'file'
--                                       (a line of a file given to replay).
--   sensor       LowCardinality(String) grpc: the sensor of the bearer token
--                                       when tokens are required, else the
--                                       batch's sensor id; file: --sensor.
--   stream       String                 grpc: the batch's stream id.
--   seq          UInt64                 grpc: the batch's sequence number.
--   event_index  UInt32                 grpc: the event's position in its batch
--                                       (what the BatchAck's rejection names).
--   file         String                 file: the file name as given.
--   line         UInt64                 file: 1-based line number (for an
--                                       element of a JSON array, the line where
--                                       it starts).
--   elem         UInt32                 file: 1-based position in a top-level
--                                       JSON array, 0 otherwise.
--   field        LowCardinality(String) the field at fault, Zeek's name
--                                       (id.orig_h, ts, ...); '' when no single
--                                       field is to blame (a syntax error).
--   reason       String                 the full message, field included.
--   raw          String                 the input as received, byte for byte:
--                                       grpc: the event's protobuf encoding
--                                       (message ndr.v1.ConnEvent of
--                                       proto/ndr/v1/ingest.proto, unknown
--                                       fields kept); file: the line without
--                                       its newline. Cut to a bounded size (see
--                                       raw_size) so that an event refused for
--                                       being oversized does not become an
--                                       oversized row.
--   raw_size     UInt64                 the input's whole size in bytes;
--                                       raw_size > length(raw) means raw was
--                                       cut. A line longer than the readers'
--                                       line limit is refused unread: raw is ''
--                                       and raw_size 0.
--   peer         String                 grpc: the sender's address (ip:port).
--   inserted_at  DateTime               when the row was stored; retention
--                                       (--retention-days) counts from it.
--
-- Decode a grpc row's raw with, for instance:
--   clickhouse-client --query "SELECT raw FROM ndr.rejected WHERE ... FORMAT RawBLOB" |
--     protoc --decode ndr.v1.ConnEvent -I proto proto/ndr/v1/ingest.proto
--
-- Delivery is at least once: a batch whose storage failed is resent by its
-- sender and its refused events are written again. A retried INSERT
-- carries the same insert_deduplication_token, so a lost reply alone does
-- not double rows (non_replicated_deduplication_window).

CREATE TABLE IF NOT EXISTS ${db}.rejected
(
    received_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    source      LowCardinality(String),
    sensor      LowCardinality(String),
    stream      String CODEC(ZSTD(1)),
    seq         UInt64 CODEC(T64, ZSTD(1)),
    event_index UInt32 CODEC(T64, ZSTD(1)),
    file        String CODEC(ZSTD(1)),
    line        UInt64 CODEC(T64, ZSTD(1)),
    elem        UInt32 CODEC(T64, ZSTD(1)),
    field       LowCardinality(String),
    reason      String CODEC(ZSTD(1)),
    raw         String CODEC(ZSTD(3)),
    raw_size    UInt64 CODEC(T64, ZSTD(1)),
    peer        String CODEC(ZSTD(1)),
    inserted_at DateTime DEFAULT now() CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY received_at
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
