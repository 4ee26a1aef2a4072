#!/usr/bin/env bash
# Instructions per request of a rustfpm binary under callgrind: hello world,
# a pool of 2 static children, N requests one after another from a FastCGI
# client (after 300 warm-up requests; counters zeroed between the two).
#
#   scripts/bench/callgrind.sh BINARY keep|new [N=2000] [prod]
#
# keep: one connection with FCGI_KEEP_CONN; new: a connection per request.
# prod: a pool as production runs it, with an access log (php-fpm's default
# format), a status page and a slowlog (5 s).
# Run it for A and B alternately, 3 times each, and compare the medians.
# Every thread of rustfpm is counted (the front end, the actors' runtime, the
# log writer, the sampler, proc-events, ...); the per-thread figures follow the
# total. CALLGRIND_KEEP=DIR keeps the dumps there for callgrind_annotate.
# Needs valgrind, python3, php-cgi; run as root (the pool runs as www-data).
set -euo pipefail
bin=$1 mode=$2 n=${3:-2000} pool=${4:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(mktemp -d /tmp/rustfpm-callgrind.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
mkdir "$dir/www"
cp "$here/hello.php" "$dir/www/"
chmod -R a+rX "$dir"
cat > "$dir/rustfpm.toml" <<CONFIG
[global]
error_log = "$dir/rustfpm.log"
log_level = "notice"
[pool.www]
listen = "$dir/php.sock"
pm = "static"
pm_max_children = 2
user = "www-data"
CONFIG
if [ "$pool" = prod ]; then
    cat >> "$dir/rustfpm.toml" <<CONFIG
access_log = "$dir/access.log"
pm_status_path = "/status"
slowlog = "$dir/slow.log"
request_slowlog_timeout = "5s"
CONFIG
fi
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg.%p" "$bin" --config "$dir/rustfpm.toml" 2>"$dir/valgrind.log" &
pid=$!
for _ in $(seq 600); do
    grep -q "ready to handle" "$dir/rustfpm.log" 2>/dev/null && break
    sleep 0.1
done
python3 "$here/fcgi_seq.py" "$dir/php.sock" 300 "$mode" "$dir/www"
callgrind_control -z "$pid" >/dev/null 2>&1
python3 "$here/fcgi_seq.py" "$dir/php.sock" "$n" "$mode" "$dir/www"
callgrind_control -d "$pid" >/dev/null 2>&1
# One dump per thread (cg.PID.N-TT): the last dump's files, summed.
last=$(find "$dir" -name "cg.$pid.*-*" | sed 's/.*cg\.[0-9]*\.\([0-9]*\)-.*/\1/' | sort -n | tail -1)
total=0 threads=
for dump in "$dir"/cg."$pid"."$last"-*; do
    n_thread=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    total=$((total + ${n_thread:-0}))
    threads="$threads ${dump##*-}:$(( ${n_thread:-0} / n ))"
done
echo "$mode${pool:+ $pool} $bin: $((total / n)) instructions per request ($total for $n); by thread:$threads"
if [ -n "${CALLGRIND_KEEP:-}" ]; then mkdir -p "$CALLGRIND_KEEP" && cp "$dir"/cg."$pid"."$last"-* "$CALLGRIND_KEEP"/; fi
