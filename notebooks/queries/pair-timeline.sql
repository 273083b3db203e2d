-- name: pair-timeline
-- finds: Every connection from one host to another (optionally one port)
--   in time order, with the gap since the previous one: the timeline to
--   read after a beacon candidate, and the series to plot.
-- params:
--   src IPv6 required, originator (IPv4 is accepted as is)
--   dst IPv6 required, responder
--   port UInt16 default 0, responder port; 0 means every port
--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range (NULL: 24 h before `to`)
--   to Nullable(DateTime64(6, 'UTC')) default NULL, end of the range, exclusive (NULL: just after the pair's newest connection)
--   limit UInt32 default 10000, rows returned (the earliest first)
--
-- gap_s is NULL on the first row. conn is sorted by (orig_h, ts), so this
-- reads only the originator's rows.
WITH
    coalesce({to:Nullable(DateTime64(6, 'UTC'))},
             (SELECT max(ts) FROM conn WHERE orig_h = {src:IPv6} AND resp_h = {dst:IPv6}
                 AND ({port:UInt16} = 0 OR resp_p = {port:UInt16})) + INTERVAL 1 SECOND) AS t_to,
    coalesce({from:Nullable(DateTime64(6, 'UTC'))}, t_to - INTERVAL 24 HOUR) AS t_from
SELECT
    ts,
    round(dateDiff('microsecond', lagInFrame(toNullable(ts)) OVER (ORDER BY ts, uid ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), ts) / 1e6, 3) AS gap_s,
    uid,
    orig_p AS src_port,
    resp_p AS port,
    proto,
    service,
    round(duration, 3) AS duration_s,
    orig_bytes,
    resp_bytes,
    orig_ip_bytes,
    conn_state,
    history,
    sensor
FROM conn
WHERE orig_h = {src:IPv6} AND resp_h = {dst:IPv6}
  AND ({port:UInt16} = 0 OR resp_p = {port:UInt16})
  AND ts >= t_from AND ts < t_to
ORDER BY ts, uid
LIMIT {limit:UInt32}
