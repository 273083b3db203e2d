-- name: detection-connections
-- finds: The raw ndr.conn rows behind a detection: every connection from
--   the detection's source host to its destinations between its first and
--   last seen. The evidence an analyst reads before confirming or closing.
-- params:
--   detection_id String required, the detection (e.g. C2-BEACON-001-4506e70100ec; `ndr detections` lists them)
--   all_destinations UInt8 default 0, 1 returns every connection of the source host in the span, not only those to the detection's destinations
--   limit UInt32 default 10000, rows returned (the earliest first)
--
-- The detection is its latest version (detections FINAL). Its dst_ips are
-- bounded (at most 20, the first by address); for a scan that reached more
-- hosts, all_destinations = 1 shows the rest. No rows: the id is unknown,
-- or conn's retention already dropped the connections.
WITH
    (SELECT tuple(src, dst_ips, first_seen, last_seen)
     FROM detections FINAL
     WHERE detection_id = {detection_id:String}
     LIMIT 1) AS d
SELECT
    ts,
    uid,
    orig_ip AS src,
    orig_p AS src_port,
    resp_ip AS dst,
    resp_p AS port,
    proto,
    service,
    round(duration, 3) AS duration_s,
    orig_bytes,
    resp_bytes,
    conn_state,
    history,
    sensor
FROM conn
WHERE d IS NOT NULL
  AND orig_h = tupleElement(d, 1)
  AND ts >= tupleElement(d, 3) AND ts <= tupleElement(d, 4)
  AND ({all_destinations:UInt8} = 1 OR has(tupleElement(d, 2), resp_h))
ORDER BY ts, uid
LIMIT {limit:UInt32}
