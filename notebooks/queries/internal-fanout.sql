-- name: internal-fanout
-- finds: Internal hosts that reach many internal hosts and ports: scans,
--   sweeps and lateral movement, and their look-alikes (admin jump hosts,
--   backup servers, monitoring pollers). One row per source host, ranked
--   by distinct internal (host, port) targets.
-- params:
--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range (NULL: 24 h before `to`)
--   to Nullable(DateTime64(6, 'UTC')) default NULL, end of the range, exclusive (NULL: just after the newest connection)
--   min_targets UInt32 default 10, fewest distinct internal (host, port) targets a source needs
--   local_nets Array(String) default ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'], internal networks, used when Zeek's local_orig/local_resp are unset
--   limit UInt32 default 50, rows returned
--
-- failed: connections that never completed a handshake or were refused
-- (Zeek conn_state S0, REJ, RSTOS0, RSTRH, SH, SHR, OTH); scanners fail
-- often, administrators rarely. max_hosts_one_port: the most hosts the
-- source reached on a single port (a sweep); admin_ports: targets on
-- remote-administration and file-sharing ports (22, 23, 135, 139, 445,
-- 3389, 5985, 5986, 5900).
WITH
    coalesce({to:Nullable(DateTime64(6, 'UTC'))}, (SELECT max(ts) FROM conn) + INTERVAL 1 SECOND) AS t_to,
    coalesce({from:Nullable(DateTime64(6, 'UTC'))}, t_to - INTERVAL 24 HOUR) AS t_from,
    internal AS (
        SELECT orig_h, resp_h, resp_p, conn_state, ts
        FROM conn
        WHERE ts >= t_from AND ts < t_to
          AND coalesce(local_orig, arrayExists(n -> isIPAddressInRange(orig_ip, n), {local_nets:Array(String)}))
          AND coalesce(local_resp, arrayExists(n -> isIPAddressInRange(resp_ip, n), {local_nets:Array(String)}))
          AND orig_h != resp_h
    ),
    per_port AS (
        SELECT orig_h, resp_p, uniqExact(resp_h) AS hosts
        FROM internal
        GROUP BY orig_h, resp_p
    ),
    sweep AS (
        SELECT orig_h, argMax(resp_p, hosts) AS sweep_port, max(hosts) AS max_hosts_one_port
        FROM per_port
        GROUP BY orig_h
    )
SELECT
    replaceRegexpOne(toString(i.orig_h), '^::ffff:', '') AS src,
    uniqExact(i.resp_h, i.resp_p) AS targets,
    uniqExact(i.resp_h) AS hosts,
    uniqExact(i.resp_p) AS ports,
    count() AS conns,
    countIf(i.conn_state IN ('S0', 'REJ', 'RSTOS0', 'RSTRH', 'SH', 'SHR', 'OTH')) AS failed,
    round(failed / conns, 3) AS failed_ratio,
    any(s.max_hosts_one_port) AS max_hosts_one_port,
    any(s.sweep_port) AS sweep_port,
    uniqExactIf((i.resp_h, i.resp_p), i.resp_p IN (22, 23, 135, 139, 445, 3389, 5985, 5986, 5900)) AS admin_targets,
    arraySlice(arraySort(groupUniqArray(i.resp_p)), 1, 30) AS port_list,
    min(i.ts) AS first_seen,
    max(i.ts) AS last_seen
FROM internal AS i
LEFT JOIN sweep AS s ON s.orig_h = i.orig_h
GROUP BY i.orig_h
HAVING targets >= {min_targets:UInt32}
ORDER BY targets DESC, failed_ratio DESC, src
LIMIT {limit:UInt32}
