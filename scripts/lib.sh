# Shell helpers shared by scripts/bench.sh and scripts/ab-serve.sh (sourced).

# port: a free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# calc EXPR: evaluates a Python expression.
calc() { python3 -c "print($1)"; }
# proc_cpu PID: user + system CPU seconds of PID so far.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }
