-- name: rare-destinations
-- finds: External destinations that few internal hosts contacted in the
--   range, with when each was first seen: new and rare places are where C2
--   servers and exfiltration drops live. One row per destination, the
--   rarest and then the largest uploads first.
-- params:
--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range (NULL: 24 h before `to`)
--   to Nullable(DateTime64(6, 'UTC')) default NULL, end of the range, exclusive (NULL: just after the newest connection)
--   max_sources UInt32 default 2, most internal hosts that may have contacted a destination in the range
--   history_days UInt32 default 30, how far before `from` first_seen looks
--   new_only UInt8 default 0, 1 keeps only destinations first seen inside the range
--   local_nets Array(String) default ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'], internal networks, used when Zeek's local_orig/local_resp are unset
--   limit UInt32 default 100, rows returned
--
-- first_seen is the earliest connection to the destination from any
-- internal host within history_days before `from`, or inside the range;
-- is_new is 1 when that is inside the range. bytes_out: payload the
-- internal hosts sent it in the range.
WITH
    coalesce({to:Nullable(DateTime64(6, 'UTC'))}, (SELECT max(ts) FROM conn) + INTERVAL 1 SECOND) AS t_to,
    coalesce({from:Nullable(DateTime64(6, 'UTC'))}, t_to - INTERVAL 24 HOUR) AS t_from,
    outbound AS (
        SELECT ts, orig_h, resp_h, resp_p, orig_bytes, resp_bytes
        FROM conn
        WHERE ts >= t_from - toIntervalDay({history_days:UInt32}) AND ts < t_to
          AND coalesce(local_orig, arrayExists(n -> isIPAddressInRange(orig_ip, n), {local_nets:Array(String)}))
          AND NOT coalesce(local_resp, arrayExists(n -> isIPAddressInRange(resp_ip, n), {local_nets:Array(String)}))
    )
SELECT
    replaceRegexpOne(toString(resp_h), '^::ffff:', '') AS dst,
    uniqExactIf(orig_h, ts >= t_from) AS sources,
    arraySlice(arraySort(groupUniqArrayIf(replaceRegexpOne(toString(orig_h), '^::ffff:', ''), ts >= t_from)), 1, 10) AS source_list,
    arraySort(groupUniqArrayIf(resp_p, ts >= t_from)) AS ports,
    countIf(ts >= t_from) AS conns,
    sumIf(orig_bytes, ts >= t_from) AS bytes_out,
    sumIf(resp_bytes, ts >= t_from) AS bytes_in,
    min(ts) AS first_seen,
    first_seen >= t_from AS is_new,
    maxIf(ts, ts >= t_from) AS last_seen
FROM outbound
GROUP BY resp_h
HAVING conns > 0 AND sources <= {max_sources:UInt32} AND ({new_only:UInt8} = 0 OR is_new)
ORDER BY sources, bytes_out DESC, dst
LIMIT {limit:UInt32}
