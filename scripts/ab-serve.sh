#!/usr/bin/env bash
# ab-serve.sh: A/B two `ndr serve` configurations under `ndr loadgen` at the
# maximum rate. For each of RUNS rounds it runs A, then B. Each run gets a
# fresh serve, spool and database on one embedded ClickHouse. It prints the
# acknowledged rate and the CPU serve and ClickHouse used per event while
# loadgen ran (user + system, /proc/PID/stat).
#
#   scripts/ab-serve.sh 4 "" "--flush-rows 250000 --flush-interval 2s"
#
# Env: NDR (binary, default bin/ndr), NDR_A and NDR_B (the binaries of
# serve and loadgen in A and B runs, default NDR: to compare two builds),
# AB_SECONDS (loadgen duration, 20), AB_DIR (work directory, default a
# fresh one under /tmp).
set -euo pipefail

RUNS=${1:?usage: ab-serve.sh RUNS "SERVE FLAGS A" "SERVE FLAGS B"}
FLAGS_A=${2-}
FLAGS_B=${3-}
NDR=${NDR:-bin/ndr}
NDR_A=${NDR_A:-$NDR}
NDR_B=${NDR_B:-$NDR}
SECS=${AB_SECONDS:-20}
DIR=${AB_DIR:-$(mktemp -d /tmp/ndr-ab.XXXXXX)}

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

CH_TCP=$(port); CH_HTTP=$(port)
"$NDR" clickhouse --data-dir "$DIR/ch" --tcp-port "$CH_TCP" --http-port "$CH_HTTP" >"$DIR/ch.log" 2>&1 &
CH_PID=$!
SERVE_PID=""
trap 'kill $SERVE_PID $CH_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CH_HTTP/" --data-binary "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done

# run NAME FLAGS BINARY: one serve under one loadgen run.
run() {
	local name=$1 flags=$2 bin=$3 db grpc c0 h0 c1 h1 ev rate
	db=ab_${name}_$RANDOM
	grpc=127.0.0.1:$(port)
	# shellcheck disable=SC2086 # flags are words
	"$bin" serve --clickhouse "clickhouse://127.0.0.1:$CH_TCP/$db" --grpc-addr "$grpc" \
		--data-dir "$DIR/$db" $flags >"$DIR/$db.out" 2>"$DIR/$db.err" &
	SERVE_PID=$!
	for _ in $(seq 300); do grep -q 'gRPC on' "$DIR/$db.out" 2>/dev/null && break; sleep 0.1; done
	c0=$(proc_cpu "$SERVE_PID"); h0=$(proc_cpu "$CH_PID")
	"$bin" loadgen --addr "$grpc" --duration "${SECS}s" --watch=false >"$DIR/$db.loadgen" 2>&1
	c1=$(proc_cpu "$SERVE_PID"); h1=$(proc_cpu "$CH_PID")
	ev=$(sed -n 's/.* events=\([0-9]*\).*/\1/p' "$DIR/$db.loadgen")
	rate=$(sed -n 's/.* events_per_s=\([0-9]*\).*/\1/p' "$DIR/$db.loadgen")
	echo "$name rate=$rate ev/s serve=$(calc "round(($c1-$c0)*1e6/$ev,2)") us/event clickhouse=$(calc "round(($h1-$h0)*1e6/$ev,2)") us/event"
	kill -TERM "$SERVE_PID"; wait "$SERVE_PID" || true
	SERVE_PID=""
}

echo "A: $NDR_A serve $FLAGS_A"
echo "B: $NDR_B serve $FLAGS_B"
for _ in $(seq "$RUNS"); do
	run A "$FLAGS_A" "$NDR_A"
	run B "$FLAGS_B" "$NDR_B"
done
echo "logs: $DIR"
