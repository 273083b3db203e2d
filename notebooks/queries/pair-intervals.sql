-- name: pair-intervals
-- finds: The histogram of the gaps between consecutive connections from one
--   host to another (optionally one port). A beacon shows one tall peak at
--   its sleep time, as wide as its jitter; people and browsers give a long
--   spread-out tail.
-- params:
--   src IPv6 required, originator (IPv4 is accepted as is)
--   dst IPv6 required, responder
--   port UInt16 default 0, responder port; 0 means every port
--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range (NULL: 24 h before `to`)
--   to Nullable(DateTime64(6, 'UTC')) default NULL, end of the range, exclusive (NULL: just after the pair's newest connection)
--   bin_s Float64 default 0, bin width in seconds; 0 picks a twentieth of the median gap, at least 1 s
--
-- One row per non-empty bin: [bin_start_s, bin_end_s), the gaps in it, and
-- their share of all gaps.
WITH
    coalesce({to:Nullable(DateTime64(6, 'UTC'))},
             (SELECT max(ts) FROM conn WHERE orig_h = {src:IPv6} AND resp_h = {dst:IPv6}
                 AND ({port:UInt16} = 0 OR resp_p = {port:UInt16})) + INTERVAL 1 SECOND) AS t_to,
    coalesce({from:Nullable(DateTime64(6, 'UTC'))}, t_to - INTERVAL 24 HOUR) AS t_from,
    gaps AS (
        SELECT arrayJoin(arrayMap(g -> g / 1e6,
                   arrayPopFront(arrayDifference(arraySort(groupArray(toUnixTimestamp64Micro(ts))))))) AS gap
        FROM conn
        WHERE orig_h = {src:IPv6} AND resp_h = {dst:IPv6}
          AND ({port:UInt16} = 0 OR resp_p = {port:UInt16})
          AND ts >= t_from AND ts < t_to
    ),
    (SELECT if({bin_s:Float64} > 0, {bin_s:Float64}, greatest(1, round(quantileExact(0.5)(gap) / 20))) FROM gaps) AS width,
    (SELECT count() FROM gaps) AS total
SELECT
    floor(gap / width) * width AS bin_start_s,
    floor(gap / width) * width + width AS bin_end_s,
    count() AS gaps,
    round(count() / total, 4) AS share
FROM gaps
GROUP BY bin_start_s, bin_end_s
ORDER BY bin_start_s
