#!/usr/bin/env bash
# The floor of rustfpm's CPU per request: which system calls it makes per request, what each
# costs on this machine, and how much of the CPU it spends they explain (issue 12).
#
#   scripts/bench/syscalls.sh            # as root; ~2 minutes; the report (stdout) is plain text
#   DURATION=10 scripts/bench/syscalls.sh
#
# Starts rustfpm and php-fpm 8.2 as scripts/bench.sh does (pm static, CHILDREN children,
# as www-data when root) behind one nginx, with a `new` (no FastCGI keepalive) and a `keep`
# (fastcgi_keep_conn on + upstream keepalive 64) server block for each. For each backend and
# each kind it runs `wrk -tTHREADS -cCONNS -dDURATION` on hello.php while
# `perf stat -e 'syscalls:sys_enter_*'` counts the system calls of every thread of rustfpm
# (or of php-fpm's children; neither side's PHP processes), and reads before and after:
# CPU (schedstat), user and system time (/proc/PID/stat) and context switches
# (/proc/PID/task/*/status). Everything is divided by wrk's requests.
#
# Each system call's price is measured apart, by a small C program (compiled here with gcc):
# each call timed alone with clock_gettime in one process, with nobody to wake (the kernel's
# own cost of the call), and a two-process ping-pong over a unix socketpair (the price of a
# wake-up). `perf trace -s` is not used for times: on this VM it adds ~20 us to every call.
# A call without its own price (futex, ...) is priced as a bare call (getppid), a lower bound.
#
# Environment (defaults): DURATION=5 (s per run), CHILDREN=4, THREADS=2, CONNS=32,
#   ONLY= (rustfpm: skip php-fpm), RUSTFPM_BIN (instead of `cargo build --release`),
#   NGINX_WORKERS=1, PRICE_ITERS=20000.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DURATION=${DURATION:-5}
CHILDREN=${CHILDREN:-4}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
ONLY=${ONLY:-}
RUSTFPM_BIN=${RUSTFPM_BIN:-}
NGINX_WORKERS=${NGINX_WORKERS:-1}
PRICE_ITERS=${PRICE_ITERS:-20000}
case $ONLY in
"") BACKENDS=(rustfpm php-fpm) ;;
rustfpm) BACKENDS=(rustfpm) ;;
*) die "ONLY must be empty or rustfpm (got '$ONLY')" ;;
esac
((EUID == 0)) || die "run as root (perf attaches to processes running as www-data)"
ensure_packages php8.2-cgi php8.2-fpm nginx wrk gcc
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
build_release

work_dir syscalls
mkdir "$TMP/www"
cp "$RF_ROOT/scripts/bench/hello.php" "$TMP/www/"
chmod -R a+rX "$TMP/www"
cp "$RUSTFPM_BIN" "$TMP/rustfpm"

# --- prices: each call alone, and a wake-up ------------------------------------------------
cat >"$TMP/price.c" <<'EOF'
/* Prices of the system calls on rustfpm's per-request path, each timed alone (us). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}
static void die(const char *what) { perror(what); exit(1); }
enum { BARE, ACCEPT, CTL_ADD, EWAIT, RECV, SEND, CTL_DEL, CLOSE, N };
static const char *name[N] = {"bare", "accept4", "epoll_ctl_add", "epoll_wait", "recv", "send",
	"epoll_ctl_del", "close"};
#define TIMED(k, call) do { double t0 = now(); call; sum[k] += now() - t0; } while (0)

int main(int argc, char **argv) {
	int iters = atoi(argv[1]), s = -1, n = 0;
	double sum[N] = {0}, t = 0;
	char buf[480]; /* nginx's hello-world request is 480 bytes */
	memset(buf, 'x', sizeof buf);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 1024)) die("listen");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < iters; i++) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET}, out[8];
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c < 0 || connect(c, (void *)&a, sizeof a)) die("connect");
		if (write(c, buf, sizeof buf) != sizeof buf) die("write");
		TIMED(BARE, syscall(SYS_getppid));
		TIMED(ACCEPT, s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
		if (s < 0) die("accept4");
		ev.data.fd = s;
		TIMED(CTL_ADD, n = epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
		if (n) die("epoll_ctl");
		TIMED(EWAIT, n = epoll_wait(ep, out, 8, 0));
		if (n != 1) die("epoll_wait");
		TIMED(RECV, n = recv(s, buf, sizeof buf, 0));
		if (n != sizeof buf) die("recv");
		TIMED(SEND, n = send(s, buf, sizeof buf, 0));
		if (n != sizeof buf) die("send");
		TIMED(CTL_DEL, epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL));
		TIMED(CLOSE, close(s));
		close(c);
	}
	unlink(argv[2]);
	double clk = 0;
	for (int i = 0; i < iters; i++) { t = now(); clk += now() - t; }
	clk /= iters; /* the timer's own cost, taken off each figure */
	for (int k = 0; k < N; k++) printf("%s %.3f\n", name[k], (sum[k] / iters - clk) / 1e3);
	/* Ping-pong: two processes, one byte each way over a socketpair, each blocking in read. */
	int sv[2];
	char b = 'p';
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
	pid_t p = fork();
	if (p == 0) {
		close(sv[0]);
		while (read(sv[1], &b, 1) == 1) if (write(sv[1], &b, 1) != 1) break;
		_exit(0);
	}
	close(sv[1]);
	for (int i = 0; i < iters + 1000; i++) {
		if (i == 1000) t = now(); /* after 1000 to warm up */
		if (write(sv[0], &b, 1) != 1 || read(sv[0], &b, 1) != 1) die("ping");
	}
	printf("pingpong %.3f\n", (now() - t) / iters / 1e3);
	close(sv[0]);
	waitpid(p, NULL, 0);
	return 0;
}
EOF
gcc -O2 -Wall -o "$TMP/price" "$TMP/price.c" || die "gcc could not build $TMP/price.c"

# --- backends and nginx (as scripts/bench.sh) ----------------------------------------------
RF_SOCK="$TMP/rustfpm.sock"
FPM_SOCK="$TMP/php-fpm.sock"
cat >"$TMP/rustfpm.toml" <<EOF
[global]
error_log = "stderr"
log_level = "notice"

[pool.bench]
listen = "$RF_SOCK"
pm = "static"
pm_max_children = $CHILDREN
php_cgi = "$(command -v php-cgi8.2)"
php_ini = "/etc/php/8.2/fpm/php.ini"
user = "www-data"
group = "www-data"
listen_owner = "www-data"
listen_group = "www-data"
EOF
cat >"$TMP/php-fpm.conf" <<EOF
[global]
pid = $TMP/php-fpm.pid
error_log = $TMP/php-fpm-own.log
daemonize = no

[bench]
listen = $FPM_SOCK
user = www-data
group = www-data
listen.owner = www-data
listen.group = www-data
pm = static
pm.max_children = $CHILDREN
EOF
declare -A MASTER=() PORT=()
log "starting rustfpm ($CHILDREN children)"
start_bg rustfpm "$TMP/rustfpm.log" "$TMP/rustfpm" --config "$TMP/rustfpm.toml"
MASTER[rustfpm]=$RF_LAST_PID
wait_for_socket "$RF_SOCK" "${MASTER[rustfpm]}" rustfpm
if [[ " ${BACKENDS[*]} " == *" php-fpm "* ]]; then
	log "starting php-fpm ($CHILDREN children)"
	start_bg php-fpm "$TMP/php-fpm.log" php-fpm8.2 -F -y "$TMP/php-fpm.conf"
	MASTER[php-fpm]=$RF_LAST_PID
	wait_for_socket "$FPM_SOCK" "${MASTER[php-fpm]}" php-fpm
fi

body="    access_log off;"$'\n'
for b in "${BACKENDS[@]}"; do
	sock=$RF_SOCK
	[[ $b == php-fpm ]] && sock=$FPM_SOCK
	for kind in new keep; do
		p=$(free_port)
		while [[ " ${PORT[*]} " == *" $p "* ]]; do p=$(free_port); done
		PORT[$b,$kind]=$p
		up="${b//-/_}_$kind"
		keepalive="" keep_conn=""
		[[ $kind == keep ]] && keepalive="keepalive 64;" keep_conn="fastcgi_keep_conn on;"
		body+="    upstream $up { server unix:$sock; $keepalive }
$(php_server "$p" "$up" "$TMP/www" "$keep_conn")
"
	done
done
nginx_conf "$TMP" "$body" >"$TMP/nginx.conf"
log "starting nginx"
nginx_start "$TMP"
NGINX_PID=$RF_LAST_PID
for b in "${BACKENDS[@]}"; do
	for kind in new keep; do
		wait_for_http "${PORT[$b,$kind]}" /hello.php "$NGINX_PID" nginx
		[[ $RF_HTTP_STATUS == 200 ]] || die "$b ($kind): GET /hello.php answered '${RF_HTTP_STATUS:-nothing}', expected 200"
	done
done

# --- measuring -------------------------------------------------------------------------------
# counters PID...: "cpu_ns utime_ticks stime_ticks voluntary involuntary" over all their threads.
counters() {
	local pid f stat ut=0 st=0 vol=0 inv=0 k v
	local -a x
	for pid in "$@"; do
		read -r stat <"/proc/$pid/stat"
		read -ra x <<<"${stat##*) }"
		ut=$((ut + x[11])) st=$((st + x[12]))
		for f in /proc/"$pid"/task/*/status; do
			while read -r k v; do
				case $k in
				voluntary_ctxt_switches:) vol=$((vol + v)) ;;
				nonvoluntary_ctxt_switches:) inv=$((inv + v)) ;;
				esac
			done <"$f"
		done
	done
	echo "$(cpu_ns "$@") $ut $st $vol $inv"
}

# measure BACKEND KIND: two wrk runs against it: the first reads CPU, user and system time and
# context switches of its processes (rustfpm: every thread of the master; php-fpm: its
# children), the second counts their system calls with perf (which slows every call down: a
# tracepoint per call, so its CPU figures are not used). Writes $TMP/m-BACKEND-KIND: "req N",
# "load L1 L5 L15", "cpu/user/sys/vol/inv X" (totals over the first run), "screq N" (the
# second run's requests) and "sc NAME COUNT" lines.
measure() {
	local b=$1 kind=$2 out="$TMP/m-$1-$2" perf_pid before after
	local -a pids
	if [[ $b == rustfpm ]]; then
		pids=("${MASTER[rustfpm]}")
	else
		mapfile -t pids < <(descendants "${MASTER[php-fpm]}")
	fi
	# A short run first: nginx opens its kept connections, the children warm up.
	run_wrk "$b" "$kind" 1 "$TMP/wrk-warm.txt"
	before=$(counters "${pids[@]}")
	run_wrk "$b" "$kind" "$DURATION" "$TMP/wrk-$b-$kind.txt"
	after=$(counters "${pids[@]}")
	{
		echo "req $(requests_of "$TMP/wrk-$b-$kind.txt")"
		echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "$before $after" | awk '{ printf "cpu %s\nuser %s\nsys %s\nvol %s\ninv %s\n",
			$6 - $1, ($7 - $2) * 1e7, ($8 - $3) * 1e7, $9 - $4, $10 - $5 }'
	} >"$out"
	start_bg perf "$TMP/perf-$b-$kind.log" perf stat -x, -e 'syscalls:sys_enter_*' \
		-p "$(
			IFS=,
			echo "${pids[*]}"
		)" -o "$TMP/perf-$b-$kind.txt"
	perf_pid=$RF_LAST_PID
	sleep 2 # perf opens ~360 events per thread before it counts
	run_wrk "$b" "$kind" "$DURATION" "$TMP/wrk-perf-$b-$kind.txt"
	kill -INT "$perf_pid"
	wait "$perf_pid" || true
	forget_pid "$perf_pid"
	{
		echo "screq $(requests_of "$TMP/wrk-perf-$b-$kind.txt")"
		awk -F, '$1 ~ /^[0-9]+$/ && $1 > 0 { sub(/^syscalls:sys_enter_/, "", $3); print "sc", $3, $1 }' \
			"$TMP/perf-$b-$kind.txt"
	} >>"$out"
}

# run_wrk BACKEND KIND SECONDS OUTFILE: wrk on hello.php, as a tracked background job (a
# signal to this script stops it); fails on a wrk error or any non-2xx answer.
run_wrk() {
	local pid rc=0
	start_bg wrk "$4" wrk -t"$THREADS" -c"$CONNS" -d"${3}s" "http://127.0.0.1:${PORT[$1,$2]}/hello.php"
	pid=$RF_LAST_PID
	wait "$pid" || rc=$?
	forget_pid "$pid"
	((rc == 0)) || die "wrk failed against $1 ($2): $(cat "$4")"
	! grep -q 'Non-2xx' "$4" || die "$1 ($2): wrk saw non-2xx answers: $(cat "$4")"
}
# requests_of WRK_OUTPUT: the number of requests wrk made.
requests_of() {
	local n
	n=$(awk '/requests in/ {print $1}' "$1")
	[[ -n $n ]] || die "no request count in wrk's output: $(cat "$1")"
	echo "$n"
}

# report BACKEND KIND PRICES: the table for one run (per request), and for rustfpm the floor.
report() {
	awk -v b="$1" -v kind="$2" -v dur="$DURATION" '
	FNR == NR { price[$1] = $2; next }
	$1 == "req" { req = $2 } $1 == "cpu" { cpu = $2 } $1 == "user" { ut = $2 } $1 == "sys" { st = $2 }
	$1 == "vol" { vol = $2 } $1 == "inv" { inv = $2 } $1 == "load" { load = $2 " " $3 " " $4 }
	$1 == "screq" { screq = $2 } $1 == "sc" { n[$2] = $3 }
	END {
		# the price of each call by name: reads and writes of sockets as recv/send, both
		# epoll_ctl kinds at their mean, anything else as a bare call (a lower bound)
		alias["recvfrom"] = "recv"; alias["read"] = "recv"; alias["readv"] = "recv"; alias["recvmsg"] = "recv"
		alias["sendto"] = "send"; alias["write"] = "send"; alias["writev"] = "send"; alias["sendmsg"] = "send"
		alias["accept"] = "accept4"; alias["accept4"] = "accept4"; alias["close"] = "close"
		alias["epoll_wait"] = "epoll_wait"; alias["epoll_pwait"] = "epoll_wait"; alias["epoll_pwait2"] = "epoll_wait"
		price["epoll_ctl"] = (price["epoll_ctl_add"] + price["epoll_ctl_del"]) / 2; alias["epoll_ctl"] = "epoll_ctl"
		printf "%s, %s: %d requests in %d s (%.0f req/s), load average %s\n", b, kind, req, dur, req / dur, load
		printf "  %-16s %9s %9s %9s\n", "system call", "per req", "us each", "us/req"
		cmd = "sort -k2 -n -r"
		for (s in n) {
			p = (s in alias) ? price[alias[s]] : price["bare"]
			mark = (s in alias) ? " " : "~"
			line[s] = sprintf("  %-16s %9.2f %8.2f%s %9.2f", s, n[s] / screq, p, mark, n[s] / screq * p)
			total += n[s] / screq; cost += n[s] / screq * p
			if (n[s] / screq >= 0.01) print line[s] | cmd
		}
		close(cmd)
		printf "  %-16s %9.2f %9s %9.2f   (calls under 0.01 per request not listed; ~ = priced as a bare call)\n", "sum", total, "", cost
		wake = (n["epoll_wait"] + n["epoll_pwait"] + n["epoll_pwait2"]) / screq
		printf "  CPU per request: %.1f us (user %.1f, system %.1f); context switches %.2f voluntary, %.2f involuntary",
			cpu / req / 1e3, ut / req / 1e3, st / req / 1e3, vol / req, inv / req
		if (b == "rustfpm") printf "; wake-ups (epoll_wait returns) %.2f", wake
		print ""
		if (b != "rustfpm") exit
		# the floor: what rustfpm cannot avoid per request with readiness-based I/O
		hop = price["pingpong"] / 2 - price["send"] - price["recv"]
		if (kind == "new") {
			floor = price["accept4"] + price["epoll_ctl_add"] + 2 * price["recv"] + 2 * price["send"] + price["close"]
			what = "accept4 + epoll_ctl ADD + recvfrom (request) + sendto (to child) + recvfrom (answer) + sendto (to nginx) + close"
		} else {
			floor = 2 * price["recv"] + 2 * price["send"]
			what = "recvfrom (request) + sendto (to child) + recvfrom (answer) + sendto (to nginx)"
		}
		printf "  floor: %s = %.2f us;\n", what, floor
		printf "         + wake-ups at %.2f us each (ping-pong round trip / 2 - send - recv): 2 per request unbatched = %.2f us, %.2f as measured = %.2f us\n",
			hop, floor + 2 * hop, wake, floor + wake * hop
		printf "  spent: %.1f us = %.1f x the unbatched floor: user %.1f + system %.1f, of which the calls themselves (priced) %.1f\n",
			cpu / req / 1e3, cpu / req / 1e3 / (floor + 2 * hop), ut / req / 1e3, st / req / 1e3, cost
	}' "$TMP/prices" "$TMP/m-$1-$2"
}

log "pricing system calls ($PRICE_ITERS each)"
"$TMP/price" "$PRICE_ITERS" "$TMP/price.sock" >"$TMP/prices"
for b in "${BACKENDS[@]}"; do
	for kind in new keep; do
		log "measuring $b ($kind): wrk -t$THREADS -c$CONNS -d${DURATION}s"
		measure "$b" "$kind"
	done
done

{
	echo "System calls per request, hello world, nginx ($NGINX_WORKERS worker) + wrk -t$THREADS -c$CONNS, $CHILDREN children"
	echo "($(nproc) cores, kernel $(uname -r); rustfpm: all its threads; php-fpm: its children)"
	echo
	echo "Prices (us, each call timed alone, nobody woken):"
	awk '{ printf "  %s %s", $1, $2 } END { print "" }' "$TMP/prices"
	for b in "${BACKENDS[@]}"; do
		for kind in new keep; do
			echo
			report "$b" "$kind"
		done
	done
} >"$TMP/report.txt"
log "done"
cat "$TMP/report.txt"
