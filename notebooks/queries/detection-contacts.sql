-- name: detection-contacts
-- finds: Every internal host that contacted any destination of a
--   detection, around the detection's time: is the C2 server or drop also
--   talking to other hosts? One row per host, the detection's own source
--   marked, other hosts first.
-- params:
--   detection_id String required, the detection (`ndr detections` lists them)
--   days UInt32 default 30, how many days before the detection's first seen and after its last seen to look
--   limit UInt32 default 1000, rows returned
--
-- Destinations are the detection's dst_ips (latest version, at most 20).
-- destinations lists which of them the host contacted.
WITH
    (SELECT tuple(src, dst_ips, first_seen, last_seen)
     FROM detections FINAL
     WHERE detection_id = {detection_id:String}
     LIMIT 1) AS d
SELECT
    orig_ip AS host,
    orig_h = tupleElement(d, 1) AS is_detection_source,
    count() AS conns,
    arraySort(groupUniqArray(resp_ip)) AS destinations,
    arraySort(groupUniqArray(resp_p)) AS ports,
    sum(orig_bytes) AS bytes_out,
    sum(resp_bytes) AS bytes_in,
    min(ts) AS first_seen,
    max(ts) AS last_seen
FROM conn
WHERE d IS NOT NULL
  AND has(tupleElement(d, 2), resp_h)
  AND ts >= tupleElement(d, 3) - toIntervalDay({days:UInt32})
  AND ts <= tupleElement(d, 4) + toIntervalDay({days:UInt32})
GROUP BY orig_h, host
ORDER BY is_detection_source, first_seen, host
LIMIT {limit:UInt32}
