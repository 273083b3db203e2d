-- Synthetic host-hour and destination aggregates for the retrain benchmark
-- (BenchmarkRetrain): {hosts:UInt32} internal hosts 10.x.y.z over {hours:UInt32}
-- hours ending at {end:Int64} (Unix seconds), written straight into the
-- aggregate tables the way the materialized views would, without 10^10
-- connections. Each host-hour is active with probability 0.7; sizes are
-- lognormal-ish per host; destinations come from a pool of 50,000.
INSERT INTO host_hour (host, hour, local_orig, connections, bytes_out_external, external_dsts, internal_dsts, admin_connections, admin_ports)
SELECT
    IPv4ToIPv6(toIPv4(167772160 + h)) AS host,
    toDateTime({end:Int64} - 3600 * ({hours:UInt32} - t), 'UTC') AS hour,
    0,
    1 + cityHash64(number, 1) % 200,
    toUInt64(exp(12 + (h % 97) / 12.0 + (cityHash64(number, 2) % 1000) / 500.0)),
    arrayReduce('uniqState', arrayMap(i -> IPv4ToIPv6(toIPv4(3325256704 + cityHash64(h, i, t) % 50000)), range(1 + cityHash64(number, 3) % 12))),
    arrayReduce('uniqState', arrayMap(i -> IPv4ToIPv6(toIPv4(167772160 + cityHash64(h, i, t, 7) % 10000)), range(1 + cityHash64(number, 4) % 3))),
    if(h % 10 = 0, cityHash64(number, 5) % 4, 0),
    if(h % 10 = 0, toUInt16(1), toUInt16(0))
FROM
(
    SELECT number, number % {hosts:UInt32} AS h, intDiv(number, {hosts:UInt32}) AS t
    FROM numbers({hosts:UInt32} * {hours:UInt32})
)
WHERE cityHash64(number) % 10 < 7;

INSERT INTO dst_prevalence (dst, day, internal_hosts, connections, first_seen, last_seen)
SELECT
    IPv4ToIPv6(toIPv4(3325256704 + d)) AS dst,
    toDate(toDateTime({end:Int64} - 86400 * (intDiv({hours:UInt32}, 24) - dn), 'UTC')) AS day,
    arrayReduce('uniqState', arrayMap(i -> IPv4ToIPv6(toIPv4(167772160 + cityHash64(d, dn, i) % {hosts:UInt32})), range(1 + cityHash64(d, dn) % 30))),
    1 + cityHash64(d, dn, 1) % 1000,
    toDateTime64({end:Int64} - 86400 * (intDiv({hours:UInt32}, 24) - dn), 6, 'UTC'),
    toDateTime64({end:Int64} - 86400 * (intDiv({hours:UInt32}, 24) - dn) + 3600, 6, 'UTC')
FROM
(
    SELECT number % 50000 AS d, intDiv(number, 50000) AS dn
    FROM numbers(50000 * intDiv({hours:UInt32}, 24))
)
WHERE cityHash64(d, dn, 9) % 5 = 0;
