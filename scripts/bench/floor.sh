#!/usr/bin/env bash
# The floor of rustfpm's hop, measured: rustfpm against minimal FastCGI relays that do
# nothing but pass nginx's requests to php-cgi children and the answers back
# (scripts/bench/floor/: over tokio's epoll reactor, over io_uring, over tokio-uring). Each
# binary is measured by bench.sh as if it were rustfpm (ONLY=rustfpm: the same nginx, wrk,
# php-cgi, php.ini and SCHED_BATCH), and php-fpm by bench.sh ONLY=php-fpm, in turn, RUNS
# times; the report gives each run's req/s, p99 and CPU per request of the binary (php-fpm:
# its master; its children's FastCGI I/O counts as PHP's), nginx and PHP, and their medians.
#
#   scripts/bench/floor.sh             # as root; ~3 minutes per run of the four
#   RELAYS="epoll uring" RUNS=5 scripts/bench/floor.sh
#
# Environment (defaults): RUNS=3, RELAYS="epoll uring" (relay-NAME binaries; tokio-uring and
#   epoll-ro, relay-epoll with sockets registered for reading only, too),
#   WORKLOADS="hello keep", DURATION=5, ROUNDS=3 (bench.sh's), RUSTFPM_BIN (rustfpm's
#   binary instead of `cargo build --release`), URING_PLAIN= (1: relay-uring without
#   SINGLE_ISSUER and DEFER_TASKRUN), RELAY_SPIN_NS= (ns of CPU each relay-epoll request spins),
#   RELAY_TIMERS= (1: the tokio relays run tokio's time driver and time out every read, 300 s).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

RUNS=${RUNS:-3}
RELAYS=${RELAYS:-epoll uring}
WORKLOADS=${WORKLOADS:-hello keep}
export DURATION=${DURATION:-5} ROUNDS=${ROUNDS:-3} WORKLOADS
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"

build_release
log "building the relays (cargo build --release in scripts/bench/floor)"
(cd "$RF_ROOT/scripts/bench/floor" && cargo build --release --quiet)
declare -A BIN=([rustfpm]=$RUSTFPM_BIN [php-fpm]=$RUSTFPM_BIN)
NAMES=(rustfpm php-fpm)
for r in $RELAYS; do
	BIN[relay-$r]=$RF_ROOT/scripts/bench/floor/target/release/relay-$r
	[[ -x ${BIN[relay-$r]} ]] || die "no relay named '$r' (scripts/bench/floor/src/bin/relay-$r.rs)"
	NAMES+=("relay-$r")
done

work_dir floor
# Per binary and workload, one line per run: req/s p99 binary-µs nginx-µs PHP-µs, from the
# report's two tables (the rustfpm columns).
for ((run = 1; run <= RUNS; run++)); do
	for name in "${NAMES[@]}"; do
		log "run $run/$RUNS: $name"
		only=rustfpm
		[[ $name == php-fpm ]] && only=php-fpm
		RUSTFPM_BIN=${BIN[$name]} ONLY=$only "$RF_ROOT/scripts/bench.sh" >"$TMP/report" 2>"$TMP/progress" ||
			die "bench.sh failed for $name: $(tail -n 5 "$TMP/progress")"
		awk -F' *\\| *' -v dir="$TMP" -v name="$name" -v fpm="$([[ $name == php-fpm ]] && echo 1 || echo 0)" '
			/^\| workload \| php-fpm req\/s/ { t = 1; next }
			/^\| workload \| rustfpm \|/ { t = 2; next }
			/^\|---/ || !/^\|/ { next }
			# The rustfpm columns, or those of php-fpm (its master; nginx and PHP right of the "/").
			function side(f) { gsub(/ *\/ */, " / ", f); split(f, v, " / "); return fpm ? v[2] : v[1] }
			t == 1 { split(fpm ? $6 : $7, p, " / "); sub(/ ms$/, "", p[2]); rps[$2] = fpm ? $3 : $4; p99[$2] = p[2]; order[++k] = $2 }
			t == 2 { cpu[$2] = (fpm ? $4 : $3) " " side($5) " " side($6) }
			END {
				# Files by the place of the workload in the report (its label may hold a "/").
				for (i = 1; i <= k; i++) { w = order[i]; print rps[w], p99[w], cpu[w] >> (dir "/" name "|" i) }
				if (name == "rustfpm") for (i = 1; i <= k; i++) print order[i] > (dir "/order")
			}
		' "$TMP/report"
	done
done

echo "rustfpm and minimal relays, $(date -u +%Y-%m-%d), $(uname -sr), $(nproc) CPUs; rustfpm $(git -C "$RF_ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
echo "bench.sh ONLY=rustfpm WORKLOADS=\"$WORKLOADS\" DURATION=$DURATION ROUNDS=$ROUNDS, each run's medians; $RUNS runs of each binary in turn"
i=0
while IFS= read -r w; do
	i=$((i + 1))
	echo
	echo "$w: req/s, p99 and CPU per request in µs (runs; median)"
	echo
	echo "| binary | req/s | p99 (ms) | CPU/req | nginx CPU/req | PHP CPU/req |"
	echo "|---|---|---|---|---|---|"
	for name in "${NAMES[@]}"; do
		g="$TMP/$name|$i"
		[[ -f $g ]] || continue
		row="| $name"
		for col in 1 2 3 4 5; do
			runs=$(awk -v c="$col" '{ printf "%s%s", (NR > 1 ? " · " : ""), $c }' "$g")
			mapfile -t vals < <(awk -v c="$col" '{ print $c + 0 }' "$g")
			row+=" | $runs; **$(median "${vals[@]}")**"
		done
		echo "$row |"
	done
done <"$TMP/order"
