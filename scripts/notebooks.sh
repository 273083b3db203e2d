#!/usr/bin/env bash
# make notebooks: execute every hunting notebook (notebooks/*.ipynb)
# headless against a freshly seeded embedded ClickHouse, and fail on any
# error. The ClickHouse is the demo's (scripts/demo.sh: the same replayed
# samples and generated day) under a temporary directory on free ports, so
# a running `make demo` is left alone. The executed copies go to a
# temporary directory: the committed notebooks are not rewritten.
#
# Environment: NDR (the binary, required); NOTEBOOK_PYTHON (the Python
# whose jupyter/nbconvert and python3 kernel run them, default
# /usr/bin/python3, Debian's); NOTEBOOK_TIMEOUT (seconds per cell, default
# 600); KEEP_OUTPUT=1 keeps the executed notebooks and says where.
set -euo pipefail
: "${NDR:?}"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" # demo.sh replays testdata/ by relative path
py=${NOTEBOOK_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=$(command -v python3)
timeout=${NOTEBOOK_TIMEOUT:-600}
work=$(mktemp -d "${TMPDIR:-/tmp}/ndr-notebooks.XXXXXX")

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

cleanup() {
	NDR=$NDR DEMO_DIR="$work/demo" "$root/scripts/demo.sh" stop >/dev/null 2>&1 || true
	if [ "${KEEP_OUTPUT:-}" = 1 ]; then
		echo "notebooks: executed copies kept in $work/out"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

tcp=$(free_port)
http=$(free_port)
start=$(date +%s)
echo "notebooks: seeding an embedded ClickHouse on 127.0.0.1:$http (the demo's data)"
if ! NDR=$NDR DEMO_DIR="$work/demo" TCP_PORT=$tcp HTTP_PORT=$http "$root/scripts/demo.sh" start >"$work/seed.log" 2>&1; then
	cat "$work/seed.log"
	echo "notebooks: seeding ClickHouse failed" >&2
	exit 1
fi

export NDR_CLICKHOUSE_URL="http://127.0.0.1:$http" NDR_CLICKHOUSE_DATABASE=ndr
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$work/out"
failed=()
for nb in "$root"/notebooks/*.ipynb; do
	name=$(basename "$nb")
	t0=$(date +%s)
	if "$py" -m nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout="$timeout" --ExecutePreprocessor.kernel_name=python3 \
		--output-dir "$work/out" "$nb" >"$work/out/$name.log" 2>&1; then
		echo "notebooks: $name ok ($(($(date +%s) - t0)) s)"
	else
		echo "notebooks: $name FAILED:"
		tail -40 "$work/out/$name.log"
		failed+=("$name")
	fi
done
echo "notebooks: $(($(date +%s) - start)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
	echo "notebooks: failed: ${failed[*]}" >&2
	exit 1
fi
