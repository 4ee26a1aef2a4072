#!/usr/bin/env bash
# Instructions per request of PHP itself under callgrind: hello world served by one php-cgi
# process (as rustfpm's children run it, with the php-cgi arguments given) or by one php-fpm
# child, N requests on one kept connection (scripts/bench/fcgi_seq.py).
#
#   scripts/bench/callgrind_php.sh cgi [N=500] [php-cgi arguments...]
#   scripts/bench/callgrind_php.sh fpm [N=500]
#
# The process exits after its requests (PHP_FCGI_MAX_REQUESTS, pm.max_requests) and callgrind
# writes its total; a run of 100 requests is subtracted from a run of 100 + N, so start-up and
# warm-up cancel out. rustfpm's arguments: `ps -o args -C php-cgi` on a running pool, e.g.
#   scripts/bench/callgrind_php.sh cgi 500 -d auto_prepend_file=/tmp/rustfpm-.../fastcgi_finish_request.php
# (copy the polyfill file elsewhere first: it goes with the pool). Needs valgrind, python3,
# php-cgi, php-fpm8.2; run as root (php-fpm's child runs as www-data).
set -euo pipefail
kind=$1 n=500
shift
if [[ ${1:-} =~ ^[0-9]+$ ]]; then n=$1 && shift; fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
warm=100
# total REQUESTS: the instructions of a process that served REQUESTS requests and exited.
total() {
    local requests=$1 dir pid
    shift
    dir=$(mktemp -d /tmp/rustfpm-callgrind-php.XXXXXX)
    chmod 1777 "$dir"
    mkdir "$dir/www" && cp "$here/hello.php" "$dir/www/" && chmod -R a+rX "$dir/www"
    if [ "$kind" = fpm ]; then
        printf '[global]\nerror_log = %s\ndaemonize = no\n[www]\nuser = www-data\ngroup = www-data\nlisten = %s\nlisten.mode = 0666\npm = static\npm.max_children = 1\npm.max_requests = %s\n' \
            "$dir/fpm.log" "$dir/s.sock" "$requests" >"$dir/fpm.conf"
        valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/cg.%p" php-fpm8.2 -F -y "$dir/fpm.conf" 2>/dev/null &
    else
        PHP_FCGI_CHILDREN=0 PHP_FCGI_MAX_REQUESTS=$requests \
            valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" php-cgi -b "$dir/s.sock" "$@" 2>/dev/null &
    fi
    pid=$!
    for _ in $(seq 600); do [ -S "$dir/s.sock" ] && break; sleep 0.1; done
    sleep 1
    python3 "$here/fcgi_seq.py" "$dir/s.sock" "$requests" keep "$dir/www" >/dev/null
    # The process that served them has exited and written its file (php-fpm's master has not).
    for _ in $(seq 600); do
        [ "$(grep -l '^totals:' "$dir"/cg.* 2>/dev/null | head -1)" ] && break
        sleep 0.1
    done
    local dump
    dump=$(grep -l '^totals:' "$dir"/cg.* 2>/dev/null | head -1)
    [ -z "$dump" ] || awk '/^totals:/ {print $2; exit}' "$dump"
    kill -QUIT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    [ -n "$dump" ] || { echo "callgrind wrote no totals ($kind)" >&2; exit 1; }
}
a=$(total "$warm" "$@")
b=$(total $((warm + n)) "$@")
echo "$kind${*:+ $*}: $(((b - a) / n)) instructions per request"
