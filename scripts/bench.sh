#!/usr/bin/env bash
# make bench: throughput, latency and memory of ndr on this machine, from one
# run (docs/performance.md explains every figure). It starts an embedded
# ClickHouse and `ndr serve`, drives serve with `ndr loadgen` (at the maximum
# rate, then at half of it) and with `ndr send` of a generated 24 h,
# 2,000-host conn log, measures the ClickHouse-alone ceiling on the same
# rows, `ndr replay --no-store` on the same file, the features engine's
# bytes per tracked pair at 1,000,000 pairs and a 30 d x 10,000-host retrain.
#
# Environment: NDR (binary, default bin/ndr), BENCH_DIR (work directory,
# default ndr-data/bench; the generated log is kept there between runs),
# BENCH_SECONDS (loadgen duration, default 30), BENCH_SKIP_GO=1 (skip the
# two Go benchmarks), BENCH_LOADGEN_ONLY=1 (stop after step 1: serve at the
# maximum rate, with its CPU per event).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
NDR=${NDR:-$PWD/bin/ndr}
DIR=${BENCH_DIR:-$PWD/ndr-data/bench}
SECS=${BENCH_SECONDS:-30}
mkdir -p "$DIR"
RUN="$DIR/run"
rm -rf "$RUN" && mkdir -p "$RUN"

say() { printf '%s\n' "$*"; }
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
CH_TCP=$(port); CH_HTTP=$(port)
sql() { curl -sfS "http://127.0.0.1:$CH_HTTP/" --data-binary "$1"; }
now() { date +%s.%N; }
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" "$2" | tail -1; }

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

say "== machine"
say "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); RAM $(free -g | awk '/Mem:/{print $2}') GiB; $(go version 2>/dev/null | cut -d' ' -f3); ndr $("$NDR" version | cut -d' ' -f2)"
say "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other work competes for the cores)"

LOG="$DIR/mixed-2000h-24h.log"
if [ ! -s "$LOG" ]; then
	"$NDR" gen --preset mixed --hosts 2000 --duration 24h --out "$LOG.tmp" && mv "$LOG.tmp" "$LOG"
fi
LINES=$(grep -vc '^#' "$LOG")
say "input: $LOG, $LINES connections ($(du -m "$LOG" | cut -f1) MB), ndr gen --preset mixed --hosts 2000 --duration 24h"

"$NDR" clickhouse --data-dir "$RUN/clickhouse" --tcp-port "$CH_TCP" --http-port "$CH_HTTP" >"$RUN/clickhouse.log" 2>&1 &
CH_PID=$!
PIDS+=("$CH_PID")
for _ in $(seq 100); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
sql "SELECT 1" >/dev/null

SERVE_PID=""
GRPC=""
# start_serve DB: a fresh serve with its own database and spool.
start_serve() {
	local db=$1
	GRPC=127.0.0.1:$(port)
	"$NDR" serve --grpc-addr "$GRPC" --clickhouse "clickhouse://127.0.0.1:$CH_TCP/$db" --data-dir "$RUN/$db" \
		--drain-timeout 600s --pprof-addr "127.0.0.1:$(port)" >"$RUN/$db.serve.out" 2>"$RUN/$db.serve.err" &
	SERVE_PID=$!
	PIDS+=("$SERVE_PID")
	CH_CPU0=$(proc_cpu "$CH_PID")
	for _ in $(seq 300); do grep -q 'gRPC on' "$RUN/$db.serve.out" 2>/dev/null && return; sleep 0.1; done
	say "serve did not start:"; cat "$RUN/$db.serve.err"; exit 1
}
# wait_rows DB N: until ndr.conn of DB holds N rows; prints the time then.
wait_rows() {
	local n
	while :; do
		n=$(sql "SELECT count() FROM $1.conn" 2>/dev/null || echo 0)
		[ "$n" -ge "$2" ] && break
		sleep 0.2
	done
	now
}
# stop_serve DB: SIGTERM, wait; serve closes every window, stores the
# analysis outputs and drains the spool. Notes the peak RSS and the CPU
# serve used so far (user + system, /proc/PID/stat) first.
stop_serve() {
	RSS_KB=$(awk '/VmHWM/{print $2}' "/proc/$SERVE_PID/status")
	CPU_S=$(proc_cpu "$SERVE_PID")
	CH_CPU_S=$(calc "round($(proc_cpu "$CH_PID")-$CH_CPU0,2)")
	kill -TERM "$SERVE_PID"
	wait "$SERVE_PID" || { say "serve failed:"; tail -5 "$RUN/$1.serve.err"; exit 1; }
}
# summary DB T0 TSTORED: rows verified, rates, analysis outputs.
summary() {
	local db=$1 t0=$2 tstored=$3 tdone
	tdone=$(now)
	local rows signals dets
	rows=$(sql "SELECT count() FROM $db.conn")
	signals=$(sql "SELECT count() FROM $db.signals")
	dets=$(sql "SELECT uniqExact(detection_id) FROM $db.detections")
	STORED_RATE=$(calc "round($rows/($tstored-$t0))")
	say "  rows in $db.conn: $rows (acknowledged $ACKED); stored end to end at $STORED_RATE events/s ($(calc "round($tstored-$t0,1)") s from the first send to the last row in ClickHouse)"
	say "  analysed: $signals signals, $dets detections stored; with serve's shutdown (windows closed, outputs stored) $(calc "round($rows/($tdone-$t0))") events/s"
	say "  serve peak RSS $(calc "round($RSS_KB/1024)") MiB"
	CPU_US=$(calc "round($CPU_S*1e6/max($rows,1),2)")
	say "  serve CPU until the last row was stored: $CPU_S s, $CPU_US us per event (receive, decode, spool, INSERT, analysis)"
	say "  ClickHouse CPU over the same time: $CH_CPU_S s, $(calc "round($CH_CPU_S*1e6/max($rows,1),2)") us per event (conn and feature rows, views, merges)"
	[ "$rows" -eq "$ACKED" ] || { say "  MISMATCH: $rows rows stored, $ACKED acknowledged"; exit 1; }
}

say ""
say "== 1. ndr loadgen at the maximum rate for ${SECS}s (4 streams, 8 copies x 2,000 hosts of a 1 h mixed corpus, batches of 2,000)"
start_serve bench_max
t0=$(now)
"$NDR" loadgen --addr "$GRPC" --duration "${SECS}s" --watch=false >"$RUN/loadgen-max.out" 2>"$RUN/loadgen-max.err"
sed -n '1,2p' "$RUN/loadgen-max.out" | sed 's/^/  /'
ACKED=$(field events "$RUN/loadgen-max.out")
MAX_RATE=$(field events_per_s "$RUN/loadgen-max.out")
MAX_ACK50=$(field ack_p50_ms "$RUN/loadgen-max.out"); MAX_ACK99=$(field ack_p99_ms "$RUN/loadgen-max.out")
tstored=$(wait_rows bench_max "$ACKED")
stop_serve bench_max
summary bench_max "$t0" "$tstored"
LG_STORED=$STORED_RATE; LG_RSS=$RSS_KB; LG_CPU=$CPU_US
if [ "${BENCH_LOADGEN_ONLY:-}" = 1 ]; then exit 0; fi

HALF=$(calc "round($MAX_RATE/2)")
say ""
say "== 2. ndr loadgen at half that rate ($HALF events/s) for ${SECS}s, watching DetectionService"
start_serve bench_half
t0=$(now)
"$NDR" loadgen --addr "$GRPC" --duration "${SECS}s" --rate "$HALF" >"$RUN/loadgen-half.out" 2>"$RUN/loadgen-half.err"
sed -n '1,4p' "$RUN/loadgen-half.out" | sed 's/^/  /'
ACKED=$(field events "$RUN/loadgen-half.out")
tstored=$(wait_rows bench_half "$ACKED")
stop_serve bench_half
summary bench_half "$t0" "$tstored"
HALF_ACK50=$(field ack_p50_ms "$RUN/loadgen-half.out"); HALF_ACK99=$(field ack_p99_ms "$RUN/loadgen-half.out")
DET99=$(field detect_p99_ms "$RUN/loadgen-half.out"); DETN=$(field detect_matched "$RUN/loadgen-half.out")

say ""
say "== 3. ndr send of the 24 h, 2,000-host log"
start_serve bench_send
t0=$(now)
"$NDR" send --addr "$GRPC" --progress 0 "$LOG" >"$RUN/send.out" 2>"$RUN/send.err"
sed 's/^/  /' "$RUN/send.out"
ACKED=$LINES
tstored=$(wait_rows bench_send "$ACKED")
stop_serve bench_send
summary bench_send "$t0" "$tstored"
SEND_STORED=$STORED_RATE; SEND_CPU=$CPU_US

say ""
CLIENTS=${BENCH_CEIL_CLIENTS:-$(nproc)}
say "== 4. ceiling: the same rows into the same ClickHouse alone (INSERT ... FORMAT Native over HTTP; one client, then $CLIENTS at once)"
# One dump for the single INSERT, and CLIENTS dumps of a share each (by a
# hash of uid, so the shares are even) for the concurrent INSERTs. One
# INSERT keeps ClickHouse on about one core; the ceiling is the better of
# the two.
sql "SELECT * FROM bench_send.conn FORMAT Native" >"$RUN/conn.native"
for ((i = 0; i < CLIENTS; i++)); do
	sql "SELECT * FROM bench_send.conn WHERE cityHash64(uid) % $CLIENTS = $i FORMAT Native" >"$RUN/conn.$i.native"
done
NATIVE_MB=$(du -m "$RUN/conn.native" | cut -f1)
# ceiling_insert TABLE N: times N concurrent INSERTs (N=1: the whole dump)
# and the ClickHouse CPU they take; sets CEIL_RATE.
ceiling_insert() {
	local t0 t1 rows c0 c1 pids=()
	c0=$(proc_cpu "$CH_PID")
	t0=$(now)
	if [ "$2" = 1 ]; then
		curl -sfS "http://127.0.0.1:$CH_HTTP/?query=INSERT%20INTO%20$1%20FORMAT%20Native" --data-binary @"$RUN/conn.native"
	else
		for ((i = 0; i < $2; i++)); do
			curl -sfS "http://127.0.0.1:$CH_HTTP/?query=INSERT%20INTO%20$1%20FORMAT%20Native" --data-binary @"$RUN/conn.$i.native" &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p" || { say "ceiling INSERT failed"; exit 1; }; done
	fi
	t1=$(now)
	c1=$(proc_cpu "$CH_PID")
	rows=$(sql "SELECT count() FROM $1")
	CEIL_RATE=$(calc "round($rows/($t1-$t0))")
	say "  $1, $2 client(s): $rows rows ($NATIVE_MB MB Native) in $(calc "round($t1-$t0,1)") s: $CEIL_RATE rows/s; ClickHouse CPU $(calc "round(($c1-$c0)/($t1-$t0),2)") cores, $(calc "round(($c1-$c0)*1e6/$rows,2)") us per row"
}
# As serve stores them: ndr's schema, so ndr.conn's materialized views
# (host_hour, dst_prevalence) run too. serve creates the schema and stops.
ACKED=0
start_serve bench_ceiling
stop_serve bench_ceiling
ceiling_insert bench_ceiling.conn 1
CEIL1=$CEIL_RATE
start_serve bench_ceilingn
stop_serve bench_ceilingn
ceiling_insert bench_ceilingn.conn "$CLIENTS"
CEIL=$(calc "max($CEIL1, $CEIL_RATE)")
# The bare table: same columns, codecs and order, no views.
sql "CREATE DATABASE bench_bare"
sql "CREATE TABLE bench_bare.conn AS bench_send.conn"
ceiling_insert bench_bare.conn "$CLIENTS"
BARE=$CEIL_RATE
say "  (serve also stores about 0.7 feature rows per event in pair_features and host_features; neither ceiling does)"
rm -f "$RUN"/conn*.native

say ""
say "== 5. ndr replay --no-store on the same file"
"$NDR" replay --no-store "$LOG" >"$RUN/replay.out" 2>"$RUN/replay.err" || true
grep -m1 'replayed' "$RUN/replay.out" "$RUN/replay.err" | sed 's/^[^:]*:/  /'
REPLAY=$(grep -ho 'in [^:]*: [0-9]* events/s' "$RUN/replay.out" "$RUN/replay.err" | sed 's/.*: \([0-9]*\) events.*/\1/' | head -1)

PAIR="skipped"; RETRAIN="skipped"
if [ "${BENCH_SKIP_GO:-}" != 1 ]; then
	say ""
	say "== 6. bytes of state per tracked host pair, 1,000,000 pairs (go test -bench BenchmarkPairState ./features)"
	go test -run '^$' -bench 'BenchmarkPairState$' -benchtime 1x ./features >"$RUN/pairs.out" 2>&1 || { tail "$RUN/pairs.out"; exit 1; }
	grep Benchmark "$RUN/pairs.out" | sed 's/^/  /'
	PAIR=$(awk '/BenchmarkPairState/{for(i=1;i<=NF;i++) if($i=="bytes/pair") print $(i-1)}' "$RUN/pairs.out")
	say ""
	say "== 7. retrain over 30 days x 10,000 hosts (go test -bench BenchmarkRetrain ./internal/store, this ClickHouse)"
	NDR_TEST_CLICKHOUSE_DSN="clickhouse://127.0.0.1:$CH_TCP" go test -run '^$' -bench 'BenchmarkRetrain$' -benchtime 1x -timeout 20m ./internal/store >"$RUN/retrain.out" 2>&1 || { tail "$RUN/retrain.out"; exit 1; }
	grep Benchmark "$RUN/retrain.out" | sed 's/^/  /'
	RETRAIN=$(awk '/BenchmarkRetrain/{for(i=1;i<=NF;i++) if($i=="s/retrain") print $(i-1)}' "$RUN/retrain.out")
fi

say ""
say "== summary (targets from issue 6)"
printf '  %-52s %12s   %s\n' "loadgen through serve, stored end to end (ev/s)" "$LG_STORED" ">= 500000"
printf '  %-52s %12s   %s\n' "send of the 24 h log, stored end to end (ev/s)" "$SEND_STORED" ">= 500000"
printf '  %-52s %12s\n' "ClickHouse-alone ceiling, same rows, ndr schema (rows/s)" "$CEIL"
printf '  %-52s %12s\n' "  of which one client alone (rows/s)" "$CEIL1"
printf '  %-52s %12s\n' "  the same into a bare table, no views (rows/s)" "$BARE"
printf '  %-52s %12s   %s\n' "ratio loadgen / ceiling" "$(calc "round($LG_STORED/$CEIL,2)")" ">= 0.7"
printf '  %-52s %12s   %s\n' "ratio send / ceiling" "$(calc "round($SEND_STORED/$CEIL,2)")" ">= 0.7"
printf '  %-52s %12s\n' "ack latency at max rate p50 / p99 (ms)" "$MAX_ACK50 / $MAX_ACK99"
printf '  %-52s %12s\n' "ack latency at half rate p50 / p99 (ms)" "$HALF_ACK50 / $HALF_ACK99"
printf '  %-52s %12s   %s\n' "event-to-detection p99 at half rate (ms, $DETN det.)" "$DET99" "<= 2000"
printf '  %-52s %12s\n' "serve peak RSS at max rate (MiB)" "$(calc "round($LG_RSS/1024)")"
printf '  %-52s %12s\n' "serve CPU per event, loadgen max / send (us)" "$LG_CPU / $SEND_CPU"
printf '  %-52s %12s   %s\n' "replay --no-store (ev/s)" "${REPLAY:-?}" ">= 1500000"
printf '  %-52s %12s   %s\n' "state per tracked pair at 1M pairs (bytes)" "$PAIR" "<= 256"
printf '  %-52s %12s   %s\n' "retrain 30 d x 10,000 hosts (s)" "$RETRAIN" "<= 60"
say "  logs: $RUN"
