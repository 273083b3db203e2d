#!/usr/bin/env bash
# make demo: start (or reuse) an embedded ClickHouse, replay the samples in
# testdata/ into it, and show what landed with SQL. The server keeps
# running so you can keep querying; `make demo-stop` stops it.
set -euo pipefail
: "${NDR:?}" "${DEMO_DIR:?}"
TCP_PORT=${TCP_PORT:-19000}
HTTP_PORT=${HTTP_PORT:-18123}
pidfile="$DEMO_DIR/clickhouse.pid"
http="http://127.0.0.1:$HTTP_PORT"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

sql() { curl -sS --fail-with-body "$http/" --data-binary "$1"; }

stop() {
	if running; then
		kill -TERM "$(cat "$pidfile")"
		for _ in $(seq 50); do running || break; sleep 0.2; done
		echo "demo ClickHouse stopped"
	fi
	rm -f "$pidfile"
}

start() {
	mkdir -p "$DEMO_DIR"
	if running; then
		echo "reusing the demo ClickHouse (pid $(cat "$pidfile")) at $http"
	else
		echo "starting an embedded ClickHouse under $DEMO_DIR (first run installs the ClickHouse library, ~180 MB)"
		nohup "$NDR" clickhouse --data-dir "$DEMO_DIR/clickhouse" --tcp-port "$TCP_PORT" --http-port "$HTTP_PORT" \
			>"$DEMO_DIR/clickhouse.out" 2>&1 &
		echo $! >"$pidfile"
		for _ in $(seq 600); do
			curl -sf "$http/ping" >/dev/null 2>&1 && break
			if ! running; then echo "ClickHouse did not start:"; tail -20 "$DEMO_DIR/clickhouse.out"; exit 1; fi
			sleep 0.2
		done
		curl -sf "$http/ping" >/dev/null || { echo "ClickHouse did not answer on $http"; exit 1; }
	fi
	dsn="clickhouse://127.0.0.1:$TCP_PORT/ndr"
	# Start from an empty database so that running the demo twice shows the same rows.
	sql "DROP DATABASE IF EXISTS ndr SYNC" >/dev/null
	echo
	echo "\$ ndr replay --clickhouse $dsn testdata/zeek/conn.sample.log testdata/reference/"
	"$NDR" replay --clickhouse "$dsn" testdata/zeek/conn.sample.log testdata/reference/
	# A generated day with every attack and its benign look-alikes, ending
	# where the Zeek sample ends, so that the hunting library's default
	# range (the 24 h before the newest connection) covers both.
	day="$DEMO_DIR/mixed-day.log"
	echo
	echo "\$ ndr gen --preset mixed --start 2026-03-01T10:00:00Z --out $day --labels $day.labels.json"
	"$NDR" gen --preset mixed --start 2026-03-01T10:00:00Z --out "$day" --labels "$day.labels.json"
	echo "\$ ndr replay --clickhouse $dsn $day"
	"$NDR" replay --clickhouse "$dsn" "$day"
	echo
	q="SELECT orig_ip AS host, count() AS conns, uniqExact(resp_h) AS peers, uniqExact(resp_p) AS ports, formatReadableSize(sum(orig_bytes)) AS sent FROM ndr.conn GROUP BY host ORDER BY conns DESC LIMIT 10"
	echo "\$ curl $http/ --data-binary \"$q\""
	sql "$q FORMAT PrettyCompactMonoBlock"
	echo
	echo "ClickHouse keeps running for your own queries:"
	echo "  curl $http/ --data-binary 'SELECT count() FROM ndr.conn'"
	echo "  ndr commands take --clickhouse $dsn"
	echo "Hunt (notebooks/README.md walks from here to a confirmed beacon):"
	echo "  bin/ndr detections --clickhouse $dsn"
	echo "  bin/ndr hunt --clickhouse $dsn beacon-candidates"
	echo "Stop it with: make demo-stop"
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
*) echo "usage: demo.sh start|stop" >&2; exit 2 ;;
esac
