#!/usr/bin/env bash
# DESIGN.md's three memory targets, measured with the real processes, php-fpm beside rustfpm
# where php-fpm has a figure:
#
#   scripts/bench/memory.sh                # as root; ~1 minute
#   RUSTFPM_BIN=target/release/rustfpm scripts/bench/memory.sh
#
# 1. pss     Debian's DokuWiki (/usr/share/dokuwiki: its wiki:dokuwiki page, as bench.sh's
#            `app` workload, and 12 more of its pages and bundles, APP_PAGES), php-fpm and
#            rustfpm both pm static CHILDREN (8) with the same php.ini
#            (/etc/php/8.2/fpm/php.ini, OPcache as Debian ships it), one nginx in front without
#            FastCGI keepalive. Each pool is warmed with wrk rounds of WARM_S seconds until
#            every child has used MIN_CPU_MS of CPU (a page takes 10-40 ms here: dozens of
#            pages each) and the pool's total PSS moved less than 2 % in the last round; then
#            the sum of Pss (/proc/PID/smaps_rollup) over the pool's processes: php-fpm's master
#            and children; rustfpm's php-cgi parent and children (rustfpm's own RSS, and its
#            helper process's, reported apart). Target: rustfpm ≤ 1.15× php-fpm.
# 2. idle    rustfpm's own RSS with IDLE_CHILDREN (64) children and IDLE_CONNS (1,000) idle
#            nginx connections: nginx's upstream `keepalive 1024` with `fastcgi_keep_conn on`,
#            IDLE_CONNS requests of 300 ms sent at once (python3) so that nginx opens that
#            many connections, then idle (the connections rustfpm holds are counted).
#            Target: ≤ 30 MiB.
# 3. upload  UPLOAD_MIB (1024) MiB POSTed through nginx (`client_max_body_size 0`,
#            `fastcgi_request_buffering off`: it streams) to tests/php/mem_input_count.php,
#            which reads php://input to its end and prints the byte count (checked against
#            what was sent); rustfpm's RSS sampled every 8 MiB sent, growth = max - before.
#            Target: < 16 MiB.
# php-fpm has no figure for 2 and 3 (DESIGN.md's table): its column shows "-" there.
#
# Environment (defaults): CHILDREN=8, IDLE_CHILDREN=64, IDLE_CONNS=1000, UPLOAD_MIB=1024,
#   WARM_S=3, MIN_CPU_MS=1000, RUSTFPM_BIN (use this binary instead of `cargo build --release`).
# Progress goes to stderr, the table to stdout. Every process started here is stopped on exit,
# and the script fails if any is left behind.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CHILDREN=${CHILDREN:-8}
IDLE_CHILDREN=${IDLE_CHILDREN:-64}
IDLE_CONNS=${IDLE_CONNS:-1000}
UPLOAD_MIB=${UPLOAD_MIB:-1024}
WARM_S=${WARM_S:-3}
MIN_CPU_MS=${MIN_CPU_MS:-1000}
RUSTFPM_BIN=${RUSTFPM_BIN:-}
# What the warm-up requests in turn: pages, an index, recent changes, a search, an export, the
# feed and the CSS and JavaScript bundles, so that each child runs much of the code base.
APP_PAGES=(
	"$APP_PATH" "/doku.php?id=wiki:syntax" "/doku.php?id=wiki:welcome" "/doku.php?id=playground:playground"
	"/doku.php?id=wiki:syntax&do=index" "/doku.php?id=start&do=recent" "/doku.php?do=search&id=start&q=wiki"
	"/doku.php?id=wiki:syntax&do=export_xhtml" "/doku.php?id=wiki:syntax&do=revisions" "/feed.php"
	"/lib/exe/css.php" "/lib/exe/js.php" "/lib/exe/opensearch.php"
)
for v in CHILDREN IDLE_CHILDREN IDLE_CONNS UPLOAD_MIB WARM_S MIN_CPU_MS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done

ensure_packages php8.2-cgi php8.2-fpm nginx python3-minimal wrk dokuwiki
PYTHON=/usr/bin/python3
build_release
# Room for IDLE_CONNS connections in nginx, wrk and rustfpm (each inherits this limit).
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > IDLE_CONNS * 2 + 100)) || die "open files limit $(ulimit -n) is too low for $IDLE_CONNS connections"

work_dir memory
mkdir "$TMP/www"
cp "$RF_ROOT/scripts/bench/hello.php" "$RF_ROOT/scripts/bench/sleep.php" "$RF_ROOT/tests/php/mem_input_count.php" "$TMP/www/"
chmod -R a+rX "$TMP/www"
# A private copy: a concurrent `cargo build` must not swap the binary under the measurement.
cp "$RUSTFPM_BIN" "$TMP/rustfpm"
RUSTFPM_BIN="$TMP/rustfpm"

users_fpm="" users_rf=""
if ((EUID == 0)); then
	users_fpm=$'user = www-data\ngroup = www-data\nlisten.owner = www-data\nlisten.group = www-data'
	users_rf=$'user = "www-data"\ngroup = "www-data"\nlisten_owner = "www-data"\nlisten_group = "www-data"'
fi

# start_fpm NAME CHILDREN: php-fpm, pm static; pid in RF_LAST_PID.
start_fpm() {
	cat >"$TMP/$1.conf" <<EOF
[global]
pid = $TMP/$1.pid
error_log = $TMP/$1.log
daemonize = no
[$1]
listen = $TMP/$1.sock
$users_fpm
pm = static
pm.max_children = $2
EOF
	php-fpm8.2 -t -y "$TMP/$1.conf" >"$TMP/conf-test.log" 2>&1 || die "php-fpm rejected $TMP/$1.conf: $(cat "$TMP/conf-test.log")"
	start_in_session "$1" "$TMP/$1.out" php-fpm8.2 -F -y "$TMP/$1.conf"
	wait_for_socket "$TMP/$1.sock" "$RF_LAST_PID" "$1"
}
# start_rf NAME CHILDREN EXTRA: rustfpm, one pool, pm static, EXTRA
# lines in the pool; pid in RF_LAST_PID.
start_rf() {
	cat >"$TMP/$1.toml" <<EOF
[global]
error_log = "stderr"
log_level = "notice"
[pool.$1]
listen = "$TMP/$1.sock"
$users_rf
pm = "static"
pm_max_children = $2
php_cgi = "$(command -v php-cgi8.2)"
php_ini = "/etc/php/8.2/fpm/php.ini"
$3
EOF
	"$RUSTFPM_BIN" -t --config "$TMP/$1.toml" >"$TMP/conf-test.log" 2>&1 || die "rustfpm rejected $TMP/$1.toml: $(cat "$TMP/conf-test.log")"
	start_in_session "$1" "$TMP/$1.log" "$RUSTFPM_BIN" --config "$TMP/$1.toml"
	wait_for_socket "$TMP/$1.sock" "$RF_LAST_PID" "$1"
}

NGINX_PID=""
start_nginx() { # HTTP_BODY
	nginx_conf "$TMP" "    access_log off;"$'\n'"$1" >"$TMP/nginx.conf"
	nginx_start "$TMP" start_in_session
	NGINX_PID=$RF_LAST_PID
}
# Every process this script started (pid and start time), for the check at the end.
STARTED=()
stop_everything() { # the backends and nginx started so far (newest first)
	local p
	for p in $(descendants $$); do
		STARTED+=("$p:$(start_time "$p")")
	done
	stop_all
	NGINX_PID=""
}
start_time() { awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null || true; } # PID

# quiet_wrk LOG ARGS...: wrk, as a tracked job; its report in LOG.
quiet_wrk() {
	local logf=$1 pid rc=0
	shift
	: >"$logf"
	start_bg wrk "$logf" wrk "$@"
	pid=$RF_LAST_PID
	wait "$pid" || rc=$?
	forget_pid "$pid"
	((rc == 0)) || die "wrk $* failed: $(cat "$logf")"
}
# child_cpu_ms BACKEND PID: the CPU time (ms) each child of the pool has used, one per line
# (the processes under the master or the php-cgi parent; the tick is 10 ms). rustfpm's status
# page is no use here: it shows 0 requests for many idle children (see the report).
child_cpu_ms() {
	local p stat
	local -a f
	for p in $(pool_procs "$1" "$2"); do
		read -r stat 2>/dev/null <"/proc/$p/stat" || continue
		read -ra f <<<"${stat##*) }"
		# after "comm) ": state=0 ppid=1 ... utime=11 stime=12
		[[ $p == "$2" ]] && continue                       # php-fpm's master
		[[ $1 == rustfpm && ${f[1]} == "$2" ]] && continue # rustfpm's php-cgi parent
		echo $(((f[11] + f[12]) * 1000 / $(getconf CLK_TCK)))
	done
}
# procs_named PREFIX PID...: those of the PIDs whose name (comm) starts with PREFIX.
procs_named() {
	local prefix=$1 p comm
	shift
	for p in "$@"; do
		read -r comm 2>/dev/null <"/proc/$p/comm" || continue
		[[ $comm == "$prefix"* ]] && echo "$p"
	done
	return 0
}
pool_procs() { # BACKEND PID: the pool's PHP processes (php-fpm's master included)
	if [[ $1 == php-fpm ]]; then
		echo "$2"
		descendants "$2"
	else # rustfpm's php-cgi parent and children, without its own helper process
		# shellcheck disable=SC2046  # one pid a word
		procs_named php-cgi $(descendants "$2")
	fi
}

# --- 1. DokuWiki, 8 warmed children: total PSS ----------------------------------------
section_log() { log "--- $*"; }
section_log "1. DokuWiki, $CHILDREN children each: total PSS"
start_fpm php-fpm "$CHILDREN"
FPM_PID=$RF_LAST_PID
start_rf rustfpm "$CHILDREN" ""
RF_PID=$RF_LAST_PID
declare -A PORT=([php-fpm]=$(free_port) [rustfpm]=$(free_port))
while [[ ${PORT[rustfpm]} == "${PORT[php-fpm]}" ]]; do PORT[rustfpm]=$(free_port); done
start_nginx "$(php_server "${PORT[php-fpm]}" "unix:$TMP/php-fpm.sock" "$APP_ROOT" "")
$(php_server "${PORT[rustfpm]}" "unix:$TMP/rustfpm.sock" "$APP_ROOT" "")"
{
	echo "local paths = {"
	printf '  "%s",\n' "${APP_PAGES[@]}"
	echo "}"
	echo "local i = 0"
	echo "request = function() i = i % #paths + 1; return wrk.format(\"GET\", paths[i]) end"
} >"$TMP/pages.lua"
declare -A PID=([php-fpm]=$FPM_PID [rustfpm]=$RF_PID) PSS=() NPROCS=() MINCPU=()
for b in php-fpm rustfpm; do
	port=${PORT[$b]}
	check_app "$port" "$b"
	for path in "${APP_PAGES[@]}"; do
		code=$(http_status "$port" "$path")
		[[ $code == 200 ]] || die "$b: GET $path answered '${code:-nothing}', expected 200"
	done
	prev=0 settled=""
	for round in 1 2 3 4 5 6 7 8 9 10; do
		quiet_wrk "$TMP/wrk-warm.txt" -t2 -c$((CHILDREN * 2)) -d"${WARM_S}s" -s "$TMP/pages.lua" "http://127.0.0.1:$port/"
		grep -q 'Non-2xx' "$TMP/wrk-warm.txt" && die "$b: non-2xx answers while warming: $(cat "$TMP/wrk-warm.txt")"
		mapfile -t cpu < <(child_cpu_ms "$b" "${PID[$b]}")
		((${#cpu[@]} == CHILDREN)) || die "$b: ${#cpu[@]} children, expected $CHILDREN"
		min=$(printf '%s\n' "${cpu[@]}" | sort -n | head -n 1)
		mapfile -t procs < <(pool_procs "$b" "${PID[$b]}")
		pss=$(pss_kb "${procs[@]}")
		log "$b warm-up round $round: CPU ms per child ${cpu[*]}, total PSS $(mib "$pss") over ${#procs[@]} processes"
		if ((min >= MIN_CPU_MS && prev > 0)) && awk -v a="$pss" -v b="$prev" 'BEGIN { d = (a - b) / b; exit !(d < 0.02 && d > -0.02) }'; then
			settled=1
			break
		fi
		prev=$pss
	done
	[[ -n $settled ]] || die "$b: PSS did not settle within 10 warm-up rounds (last $(mib "$pss"))"
	PSS[$b]=$pss NPROCS[$b]=${#procs[@]} MINCPU[$b]=$min
done
RF_OWN_RSS=$(rss_kb "$RF_PID")
# shellcheck disable=SC2046  # one pid a word
mapfile -t helpers < <(procs_named rustfpm $(descendants "$RF_PID"))
RF_HELPERS_RSS=0
for p in "${helpers[@]}"; do RF_HELPERS_RSS=$((RF_HELPERS_RSS + $(rss_kb "$p"))); done
stop_everything

# --- 2. 64 children, 1,000 idle nginx connections: rustfpm's own RSS ----------------------
section_log "2. $IDLE_CHILDREN children, $IDLE_CONNS idle nginx connections: rustfpm's RSS"
start_rf idle "$IDLE_CHILDREN" "listen_backlog = $((IDLE_CONNS * 2))"$'\n'"queue_max_len = $((IDLE_CONNS * 2))"
IDLE_PID=$RF_LAST_PID
idle_port=$(free_port)
start_nginx "    upstream idle_keep { server unix:$TMP/idle.sock; keepalive $((IDLE_CONNS + 24)); }
$(php_server "$idle_port" idle_keep "$TMP/www" "fastcgi_keep_conn on;")"
wait_for_http "$idle_port" /hello.php "$NGINX_PID" nginx
[[ $RF_HTTP_STATUS == 200 ]] || die "idle pool: GET /hello.php answered '${RF_HTTP_STATUS:-nothing}'"
# nginx's connections to rustfpm: the unix connections rustfpm accepted (those have a local
# address: its listening socket's; the ones it opened to its php-cgi children have none).
conns_of() { ss -x -H -p 2>/dev/null | awk -v p="pid=$1," 'index($0, p) && $5 != "*"' | wc -l; } # PID
# IDLE_CONNS requests of 300 ms sent at once (python3: all are sent before the first answers,
# as 64 children serve only 64 at a time), so nginx needs a connection to rustfpm for each;
# each is answered in full (a client that went away mid-request would make nginx close its
# upstream connection), and nginx keeps them all idle afterwards.
"$PYTHON" - "$idle_port" "$IDLE_CONNS" <<'EOF' || die "idle: the requests to the idle pool failed"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.sendall(b"GET /sleep.php?ms=300 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    conns.append(s)
bad = 0
for s in conns:
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    bad += not answer.startswith(b"HTTP/1.1 200")
    s.close()
sys.exit(f"{bad} of {n} requests were not answered 200" if bad else 0)
EOF
# Idle now: wait until the count of connections stops changing.
prev=-1
for ((i = 0; i < 50; i++)); do
	now=$(conns_of "$IDLE_PID")
	((now == prev)) && break
	prev=$now
	sleep 0.2
done
IDLE_CONNS_HELD=$now
sleep 1
IDLE_RSS=$(rss_kb "$IDLE_PID")
IDLE_NPHP=$(pool_procs rustfpm "$IDLE_PID" | wc -l)
log "rustfpm holds $IDLE_CONNS_HELD nginx connections, $IDLE_NPHP php-cgi processes, RSS $(mib "$IDLE_RSS")"
((IDLE_CONNS_HELD >= IDLE_CONNS * 9 / 10)) || log "warning: nginx kept only $IDLE_CONNS_HELD connections open ($IDLE_CONNS asked)"
stop_everything

# --- 3. UPLOAD_MIB MiB streamed through: rustfpm's RSS growth --------------------------------
section_log "3. a $UPLOAD_MIB MiB upload streamed through: rustfpm's RSS growth"
start_rf upload 2 $'[pool.upload.php_admin_value]\nenable_post_data_reading = "0"\npost_max_size = "0"'
UP_PID=$RF_LAST_PID
up_port=$(free_port)
start_nginx "$(php_server "$up_port" "unix:$TMP/upload.sock" "$TMP/www" "client_max_body_size 0; fastcgi_request_buffering off; fastcgi_read_timeout 300s;")"
wait_for_http "$up_port" /hello.php "$NGINX_PID" nginx
[[ $RF_HTTP_STATUS == 200 ]] || die "upload pool: GET /hello.php answered '${RF_HTTP_STATUS:-nothing}'"
# Sends the body from python3 (no whole-body buffer anywhere on the client side), sampling
# rustfpm's VmRSS every 8 MiB; prints "BEFORE_KB MAX_KB ANSWER".
read -r UP_BEFORE UP_MAX UP_ANSWER < <("$PYTHON" - "$up_port" "$UP_PID" "$UPLOAD_MIB" <<'EOF'
import socket, sys
port, pid, mib = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rss():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
total = mib << 20
before = top = rss()
s = socket.create_connection(("127.0.0.1", port), timeout=300)
s.sendall(f"POST /mem_input_count.php HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
          f"Content-Length: {total}\r\n\r\n".encode())
piece = b"\0" * (1 << 20)
for i in range(mib):
    s.sendall(piece)
    if i % 8 == 7:
        top = max(top, rss())
answer = b""
while chunk := s.recv(65536):
    answer += chunk
top = max(top, rss())
head, _, body = answer.partition(b"\r\n\r\n")
status = head.split(b"\r\n")[0].decode(errors="replace")
print(before, top, body.decode(errors="replace").strip().replace(" ", "_") if " 200 " in status else "status:" + status.replace(" ", "_"))
EOF
) || die "upload: the client printed no result"
[[ $UP_ANSWER == "$((UPLOAD_MIB << 20))" ]] || die "upload: the script counted '$UP_ANSWER' bytes, $((UPLOAD_MIB << 20)) were sent"
log "upload: $UP_ANSWER bytes counted by PHP; rustfpm RSS $(mib "$UP_BEFORE") before, $(mib "$UP_MAX") at most"
stop_everything

# --- report ---------------------------------------------------------------------------
# Nothing left behind: no process started here still runs (same pid and start time), and no
# process names this run's temp dir.
for p in "${STARTED[@]}"; do
	[[ -n ${p#*:} && $(start_time "${p%%:*}") == "${p#*:}" ]] && die "process ${p%%:*} ($(cat "/proc/${p%%:*}/comm" 2>/dev/null)) was left behind"
done
leftover=$(pgrep -f -d ' ' "$TMP" || true)
[[ -z $leftover ]] || die "processes left behind: $leftover"

pss_ratio=$(awk -v a="${PSS[rustfpm]}" -v b="${PSS[php-fpm]}" 'BEGIN { printf "%.2f", a / b }')
growth=$((UP_MAX - UP_BEFORE))
echo "rustfpm $(git -C "$RF_ROOT" describe --always --dirty 2>/dev/null || echo "?"), $(php-cgi8.2 -v | head -n 1 | cut -d' ' -f1-2)"
printf '%-58s | %-12s | %-12s | %-16s | %s\n' figure php-fpm rustfpm "ratio / target" verdict
printf '%-58s | %-12s | %-12s | %-16s | %s\n' \
	"total PSS, DokuWiki, $CHILDREN warmed children" "$(mib "${PSS[php-fpm]}")" "$(mib "${PSS[rustfpm]}")" "${pss_ratio}x / <= 1.15x" "$(check "$pss_ratio" "<=" 1.15)" \
	"rustfpm's own RSS, $IDLE_CHILDREN children, $IDLE_CONNS_HELD idle nginx conns" - "$(mib "$IDLE_RSS")" "<= 30 MiB" "$(check "$IDLE_RSS" "<=" $((30 * 1024)))" \
	"rustfpm's RSS growth, $UPLOAD_MIB MiB upload streamed" - "$(mib "$growth")" "< 16 MiB" "$(check "$growth" "<" $((16 * 1024)))"
echo
echo "PSS: php-fpm master + children (${NPROCS[php-fpm]} processes), rustfpm's php-cgi parent + children (${NPROCS[rustfpm]});"
echo "  least CPU of a child: php-fpm ${MINCPU[php-fpm]} ms, rustfpm ${MINCPU[rustfpm]} ms; rustfpm's own RSS beside them $(mib "$RF_OWN_RSS")
  (and ${#helpers[@]} helper process(es) of its own, $(mib "$RF_HELPERS_RSS") RSS)."
echo "Upload: rustfpm's RSS $(mib "$UP_BEFORE") before, $(mib "$UP_MAX") at most; PHP counted $UP_ANSWER bytes."
