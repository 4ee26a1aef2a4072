# shellcheck shell=bash
# Shared helpers for scripts/demo.sh, scripts/test.sh and scripts/bench.sh.
# Source it (after `set -euo pipefail`); it defines functions and a few variables only.

RF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RF_NAME=${RF_NAME:-$(basename "$0" .sh)}
# nginx and php-fpm live in /usr/sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# Processes started with start_bg, in start order (stop_all stops them in reverse).
RF_PIDS=()
RF_PNAMES=()

log() { printf '[%s] %s\n' "$RF_NAME" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
section() { printf '\n==== %s ====\n' "$*"; }

# --- packages and tools -----------------------------------------------------

pkg_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# ensure_packages PKG...: install the Debian packages that are missing (apt-get update first).
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	if ((EUID != 0)); then
		die "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
	fi
	log "installing missing packages: ${missing[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# require_cargo: make sure cargo is on PATH (also finds ~/.cargo/bin under sudo).
require_cargo() {
	if ! command -v cargo >/dev/null 2>&1 && [[ -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
		PATH="${HOME:-/root}/.cargo/bin:$PATH"
	fi
	command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (https://rustup.rs) and retry"
}

# build_release: cargo build --release; sets RUSTFPM_BIN unless already set by the caller.
build_release() {
	if [[ -n ${RUSTFPM_BIN:-} ]]; then
		[[ -x $RUSTFPM_BIN ]] || die "RUSTFPM_BIN=$RUSTFPM_BIN is not executable"
		return 0
	fi
	require_cargo
	log "building rustfpm (cargo build --release)"
	(cd "$RF_ROOT" && cargo build --release --quiet)
	RUSTFPM_BIN="$RF_ROOT/target/release/rustfpm"
	[[ -x $RUSTFPM_BIN ]] || die "build produced no $RUSTFPM_BIN"
}

# --- processes ----------------------------------------------------------------

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
	local stat
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# descendants PID: print every descendant pid of PID (not PID itself), one per line.
descendants() {
	local -A kids=()
	local f stat pid ppid rest
	for f in /proc/[0-9]*/stat; do
		read -r stat 2>/dev/null <"$f" || continue
		pid=${stat%% *}
		rest=${stat##*) }       # "S PPID PGRP ..."
		rest=${rest#* }
		ppid=${rest%% *}
		kids[$ppid]+="$pid "
	done
	local queue=("$1") cur child
	while ((${#queue[@]})); do
		cur=${queue[0]}
		queue=("${queue[@]:1}")
		for child in ${kids[$cur]:-}; do
			echo "$child"
			queue+=("$child")
		done
	done
}

# start_bg NAME LOG CMD...: start CMD in the background, in its own process group (so a
# Ctrl-C on the terminal reaches this script, which then stops everything in order, and so
# the child does not inherit the ignored SIGINT/SIGQUIT of a non-interactive shell's jobs).
# LOG is a file to append stdout+stderr to, or "-" to keep this script's stdout/stderr.
# The pid is stored in RF_LAST_PID.
start_bg() {
	local name=$1 logf=$2
	shift 2
	set -m
	if [[ $logf == - ]]; then
		"$@" </dev/null &
	else
		"$@" </dev/null >>"$logf" 2>&1 &
	fi
	RF_LAST_PID=$!
	set +m
	RF_PIDS+=("$RF_LAST_PID")
	RF_PNAMES+=("$name")
}

# stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL; reap it; then SIGKILL any of its
# descendants that outlived it (and say so: that is a bug in the program that left them).
# PID must have been started with start_bg.
stop_pid() {
	local pid=$1 name=$2 i left=()
	local -a kids
	mapfile -t kids < <(descendants "$pid")
	if pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 200; i++)); do
			pid_alive "$pid" || break
			sleep 0.05
		done
		if pid_alive "$pid"; then
			log "warning: $name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	local k
	for k in "${kids[@]}"; do
		pid_alive "$k" && left+=("$k")
	done
	if ((${#left[@]})); then
		# Give orphans a moment: the program may still be reaping them.
		for ((i = 0; i < 20; i++)); do
			local still=()
			for k in "${left[@]}"; do pid_alive "$k" && still+=("$k"); done
			left=("${still[@]}")
			((${#left[@]})) || break
			sleep 0.05
		done
	fi
	if ((${#left[@]})); then
		log "warning: $name left ${#left[@]} process(es) behind after exiting: ${left[*]}; killing them"
		kill -KILL "${left[@]}" 2>/dev/null || true
	fi
	forget_pid "$pid"
}

# forget_pid PID: drop a reaped process from the list stop_all works through, so that it
# never signals a recycled pid.
forget_pid() {
	local i pids=() names=()
	for ((i = 0; i < ${#RF_PIDS[@]}; i++)); do
		if [[ ${RF_PIDS[i]} != "$1" ]]; then
			pids+=("${RF_PIDS[i]}")
			names+=("${RF_PNAMES[i]}")
		fi
	done
	RF_PIDS=("${pids[@]}")
	RF_PNAMES=("${names[@]}")
}

# stop_all: stop every process started with start_bg, newest first.
stop_all() {
	local i
	while ((${#RF_PIDS[@]})); do
		stop_pid "${RF_PIDS[-1]}" "${RF_PNAMES[-1]}"
	done
}

# work_dir NAME: a private temp dir /tmp/rustfpm-NAME.XXXXXX in TMP, mode 755 (nginx's and
# PHP's workers, www-data, must reach the docroot and sockets in it); on any exit, every
# process started with start_bg is stopped and the dir removed.
work_dir() {
	TMP=$(mktemp -d "/tmp/rustfpm-$1.XXXXXX")
	chmod 755 "$TMP"
	trap work_dir_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
# shellcheck disable=SC2317  # called by the EXIT trap
work_dir_cleanup() {
	stop_all
	rm -rf "$TMP"
}

# --- readiness ------------------------------------------------------------------

# wait_for_socket PATH PID NAME [TIMEOUT_S]: poll until PATH is a socket; fail early if PID dies.
wait_for_socket() {
	local path=$1 pid=$2 name=$3 timeout=${4:-15} i
	for ((i = 0; i < timeout * 20; i++)); do
		[[ -S $path ]] && return 0
		pid_alive "$pid" || die "$name exited before creating $path"
		sleep 0.05
	done
	die "$name did not create $path within ${timeout}s"
}

# wait_for_port PORT PID NAME [TIMEOUT_S]: poll until 127.0.0.1:PORT accepts connections;
# fail early if PID dies.
wait_for_port() {
	local port=$1 pid=$2 name=$3 timeout=${4:-15} i
	for ((i = 0; i < timeout * 20; i++)); do
		port_in_use "$port" && return 0
		pid_alive "$pid" || die "$name exited before listening on 127.0.0.1:$port"
		sleep 0.05
	done
	die "$name did not listen on 127.0.0.1:$port within ${timeout}s"
}

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on now, below the kernel's
# ephemeral range (32768 and up here), where a client connection could hold it.
free_port() {
	local p i
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % 12000))
		port_in_use "$p" || {
			echo "$p"
			return 0
		}
	done
	die "no free port found"
}

# http_status PORT PATH: print the HTTP status code of GET http://127.0.0.1:PORT/PATH (empty
# when there is no answer within 5 s). Pure bash, so no curl is needed.
http_status() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
		read -r -t 5 _ code _ <&3 || true
		echo "${code:-}"
	) 2>/dev/null || true
}

# http_body PORT PATH: the whole answer (head and body) to GET PATH on 127.0.0.1:PORT.
http_body() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
		timeout 5 cat <&3
	) 2>/dev/null || true
}

# wait_for_http PORT PATH PID NAME [TIMEOUT_S]: poll until PORT accepts connections, then
# return the status of GET PATH in RF_HTTP_STATUS.
wait_for_http() {
	wait_for_port "$1" "$3" "$4" "${5:-15}"
	# shellcheck disable=SC2034  # read by the calling script
	RF_HTTP_STATUS=$(http_status "$1" "$2")
}

# --- memory -----------------------------------------------------------------------

# pss_kb PID...: sum of Pss (kB) over the given processes.
pss_kb() {
	local pid total=0 v
	for pid in "$@"; do
		v=$(awk '/^Pss:/ {print $2; exit}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# rss_kb PID: VmRSS (kB) of one process.
rss_kb() {
	awk '/^VmRSS:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null || echo 0
}

# --- nginx ------------------------------------------------------------------------

# nginx_conf DIR HTTP_BODY: print an nginx.conf that keeps every path inside DIR (pid, logs,
# temp dirs), runs in the foreground, and includes HTTP_BODY inside `http { }`.
nginx_conf() {
	local dir=$1 body=$2 user_line=""
	if ((EUID == 0)); then
		user_line="user www-data www-data;"
	fi
	cat <<EOF
# generated by scripts/$(basename "$0")
$user_line
worker_processes ${NGINX_WORKERS:-auto};
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;

events {
    worker_connections 4096;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path $dir/nginx-tmp/client_body;
    proxy_temp_path $dir/nginx-tmp/proxy;
    fastcgi_temp_path $dir/nginx-tmp/fastcgi;
    uwsgi_temp_path $dir/nginx-tmp/uwsgi;
    scgi_temp_path $dir/nginx-tmp/scgi;

$body
}
EOF
}

# php_server PORT UPSTREAM ROOT [DIRECTIVES]: one nginx server on 127.0.0.1:PORT passing
# ROOT's PHP scripts to UPSTREAM, with DIRECTIVES (e.g. `fastcgi_keep_conn on;`) at server level.
php_server() {
	cat <<EOF
    server {
        listen 127.0.0.1:$1;
        root $3;
        ${4:-}
        location ~ \.php\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_pass $2;
        }
    }
EOF
}

# nginx_start DIR [STARTER]: check DIR/nginx.conf, then start nginx on it in the foreground (as a
# background job of this script, with STARTER NAME LOG CMD..., start_bg by default). `-e` keeps even the start-up error log out of /var/log/nginx.
nginx_start() {
	local dir=$1
	mkdir -p "$dir/nginx-tmp"
	if ! nginx -t -q -e "$dir/nginx-error.log" -p "$dir/" -c "$dir/nginx.conf"; then
		cat "$dir/nginx-error.log" >&2 2>/dev/null || true
		die "nginx rejected $dir/nginx.conf"
	fi
	"${2:-start_bg}" nginx "$dir/nginx-error.log" nginx -e "$dir/nginx-error.log" -p "$dir/" -c "$dir/nginx.conf"
}

# check_socket_access SOCK NAME: when root, warn if nginx's workers (www-data) could not
# connect to SOCK (php-fpm chowns its socket to the pool user, mode 0660, by default).
check_socket_access() {
	local sock=$1 name=$2
	((EUID == 0)) || return 0
	if ! runuser -u www-data -- test -w "$sock" 2>/dev/null; then
		log "warning: www-data cannot connect to $name's socket $sock ($(stat -c '%U:%G %a' "$sock")); nginx will answer 502"
	fi
}

# --- CPU accounting -------------------------------------------------------------------

# cpu_jiffies: print "busy total" jiffies of the whole machine (from /proc/stat).
cpu_jiffies() {
	local _cpu user nice system idle iowait irq softirq steal _rest
	read -r _cpu user nice system idle iowait irq softirq steal _rest </proc/stat
	echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# tree_jiffies PID...: CPU jiffies used by the given processes and all their descendants,
# including reaped children (cutime/cstime).
tree_jiffies() {
	local total=0 root pid stat
	local -a f pids=()
	for root in "$@"; do
		pids+=("$root")
		mapfile -t -O "${#pids[@]}" pids < <(descendants "$root")
	done
	for pid in "${pids[@]}"; do
		read -r stat 2>/dev/null <"/proc/$pid/stat" || continue
		read -ra f <<<"${stat##*) }"
		# after "comm) ": state=0 ... utime=11 stime=12 cutime=13 cstime=14
		total=$((total + f[11] + f[12] + f[13] + f[14]))
	done
	echo "$total"
}

# thread_ns PID: "NAME NS" per thread name of one process (its threads' comm, spaces as _),
# nanoseconds of CPU used so far by the threads of that name, as cpu_ns reads them.
thread_ns() {
	local t name ns _rest
	for t in /proc/"$1"/task/*; do
		read -r name 2>/dev/null <"$t/comm" || continue
		read -r ns _rest 2>/dev/null <"$t/schedstat" || continue
		echo "${name// /_} $ns"
	done | awk '{ ns[$1] += $2 } END { for (n in ns) print n, ns[n] }' | sort
}

# cpu_ns PID...: nanoseconds of CPU used so far by the given processes, all their threads
# (the first field of /proc/PID/task/TID/schedstat; exact, unlike the 10 ms ticks of stat).
cpu_ns() {
	local total=0 pid f ns _rest
	for pid in "$@"; do
		for f in /proc/"$pid"/task/*/schedstat; do
			read -r ns _rest 2>/dev/null <"$f" || continue
			total=$((total + ns))
		done
	done
	echo "$total"
}

# The real application of bench.sh's app workload and of memory.sh: Debian's DokuWiki (package
# dokuwiki), its wiki:dokuwiki page rendered from its cache.
# shellcheck disable=SC2034  # APP_ROOT is read by the scripts that source this file
APP_ROOT=/usr/share/dokuwiki
APP_PATH="/doku.php?id=wiki:dokuwiki"
APP_TITLE="<title>wiki:dokuwiki [Debian DokuWiki]</title>"

# check_app PORT WHO: nginx (NGINX_PID) on PORT answers APP_PATH with 200 and the page's
# title; dies naming WHO if not.
check_app() {
	local port=$1 who=$2
	wait_for_http "$port" "$APP_PATH" "$NGINX_PID" nginx
	# The first page after DokuWiki's cache expired can take longer than one read's wait.
	for _ in 1 2 3; do
		[[ $RF_HTTP_STATUS == 200 ]] && break
		RF_HTTP_STATUS=$(http_status "$port" "$APP_PATH")
	done
	[[ $RF_HTTP_STATUS == 200 ]] || die "$who: GET $APP_PATH answered '${RF_HTTP_STATUS:-nothing}', expected 200"
	[[ $(http_body "$port" "$APP_PATH") == *"$APP_TITLE"* ]] ||
		die "$who: GET $APP_PATH did not answer the page (no $APP_TITLE in the body)"
}

# start_in_session NAME LOG CMD...: like start_bg, but CMD runs in a session of its own, as
# systemd starts a service (scripts/bench/session.py; with the kernel's autogroups a session
# shares the CPU as one group). RF_LAST_PID is the command's own pid (the one measured),
# WRAPPER_OF[pid] the job to stop it through (stop_pid). Needs TMP and PYTHON.
# shellcheck disable=SC2034  # read by the scripts that source this file
declare -A WRAPPER_OF=()
start_in_session() {
	local name=$1 logf=$2 pidfile="$TMP/$1.session-pid" wrapper i
	shift 2
	rm -f "$pidfile"
	start_bg "$name" "$logf" "$PYTHON" "$RF_ROOT/scripts/bench/session.py" "$pidfile" "$@"
	wrapper=$RF_LAST_PID
	for ((i = 0; i < 200; i++)); do
		[[ -s $pidfile ]] && break
		pid_alive "$wrapper" || break
		sleep 0.05
	done
	RF_LAST_PID=$(cat "$pidfile" 2>/dev/null) || die "$name did not start: $(tail -n 5 "$logf" 2>/dev/null)"
	# shellcheck disable=SC2034  # read by the scripts that source this file
	WRAPPER_OF[$RF_LAST_PID]=$wrapper
}

# mib KIB: "12.3 MiB".
# median NUMBER...: the middle one (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# check VALUE OP LIMIT: ok or MISSED (OP is >=, <= or <); n/a without a value.
check() {
	[[ -n $1 ]] || {
		printf 'n/a'
		return
	}
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { ok = (op == ">=") ? v >= l : (op == "<") ? v < l : v <= l; printf ok ? "ok" : "MISSED" }'
}
