#!/usr/bin/env bash
# Installs what ndr's make targets need on a fresh Debian machine, and
# nothing that is already there. Usage: scripts/setup.sh [base|protoc|notebooks]
#   base       Go toolchain check, npm (for the embedded ClickHouse library), curl
#   protoc     the protobuf compiler, for `make proto`
#   notebooks  Debian's Python with pandas, matplotlib, requests, the ipykernel
#              kernel and nbconvert, for `make notebooks` (PyPI is not needed)
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
	[ ${#need_apt[@]} -gt 0 ] || return 0
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "setup: installing ${need_apt[*]} with apt-get" >&2
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
	need_apt=()
}

base() {
	if ! have go; then
		if [ -x /usr/local/go/bin/go ]; then
			echo "setup: Go is at /usr/local/go/bin but not on PATH; the Makefile adds it" >&2
		else
			echo "setup: Go 1.26 or later is required (https://go.dev/dl/); /usr/local/go/bin/go not found" >&2
			exit 1
		fi
	fi
	have npm || need_apt+=(nodejs npm)
	have curl || need_apt+=(curl)
	apt_install
}

protoc_() {
	have protoc || need_apt+=(protobuf-compiler)
	apt_install
}

notebooks() {
	# Debian's /usr/bin/python3 runs the notebooks, whatever else is on PATH
	# (pyenv, a virtualenv): its packages are the ones apt installs.
	if [ -x /usr/bin/python3 ] && [ -f /usr/share/jupyter/kernels/python3/kernel.json ] &&
		/usr/bin/python3 -c 'import pandas, matplotlib, requests, ipykernel, nbconvert' 2>/dev/null; then
		return 0
	fi
	need_apt+=(python3 python3-pandas python3-matplotlib python3-requests python3-ipykernel jupyter-nbconvert)
	apt_install
}

case "${1:-base}" in
base) base ;;
protoc) protoc_ ;;
notebooks) notebooks ;;
*) echo "setup: unknown target $1" >&2; exit 2 ;;
esac
