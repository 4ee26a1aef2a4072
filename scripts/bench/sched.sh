#!/usr/bin/env bash
# Who waits for a CPU, and how long, while a backend serves a bench.sh workload (issue 12's
# latency tail): `perf sched record` of the whole machine for RECORD seconds in the middle of a
# bench.sh round, then, per program, how long a woken process waited to run (mean, p50, p90,
# p99, max) and how long each of its stretches on a CPU lasted; and the longest stretches of
# rustfpm's threads with their times (work done on a timer shows as evenly spaced times; while
# the thread that relays every request runs, no request moves).
#
#   scripts/bench/sched.sh                   # as root; both backends, ~1 minute
#   ONLY=rustfpm RUSTFPM_BIN=... scripts/bench/sched.sh
#
# perf's recording costs CPU too: compare the backends, or two builds, in the same kind of run.
# Environment (defaults): WORKLOAD=hello (a bench.sh workload), RECORD=3 (s), ONLY=
#   (rustfpm | php-fpm), RUSTFPM_BIN (instead of `cargo build --release`), LONGEST=12.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

WORKLOAD=${WORKLOAD:-hello}
RECORD=${RECORD:-3}
ONLY=${ONLY:-}
LONGEST=${LONGEST:-12}
case $ONLY in
"") BACKENDS=(rustfpm php-fpm) ;;
rustfpm | php-fpm) BACKENDS=("$ONLY") ;;
*) die "ONLY must be empty, rustfpm or php-fpm (got '$ONLY')" ;;
esac
[[ $RECORD =~ ^[1-9][0-9]*$ ]] || die "RECORD must be a positive number of seconds (got '$RECORD')"
((EUID == 0)) || die "run as root (perf records every CPU)"
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
[[ " ${BACKENDS[*]} " == *" rustfpm "* ]] && build_release

work_dir sched

# summarize TIMEHIST: per program, wake-up delay and stretch on a CPU; rustfpm's longest stretches.
summarize() {
	python3 - "$1" "$LONGEST" <<'EOF'
import collections, re, sys
delay, run, longest = collections.defaultdict(list), collections.defaultdict(list), []
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) < 6 or not p[0][0].isdigit():
        continue
    try:
        at, wait_ms, run_ms = float(p[0]), float(p[-2]), float(p[-1])
    except ValueError:
        continue
    name = re.sub(r"\[.*", "", p[2])
    delay[name].append(wait_ms)
    run[name].append(run_ms)
    if name.startswith("rustfpm") or name in ("tokio-rt-worker", "proc-events", "supervisor"):
        longest.append((run_ms, at, p[2]))
def pct(v, q):
    return sorted(v)[min(len(v) - 1, int(q * len(v)))]
print("%-16s %7s | %-36s | %s" % ("", "", "wake-up to running, ms", "stretch on a CPU, ms"))
print("%-16s %7s | %6s %6s %6s %6s %7s | %6s %6s %7s" % ("program", "runs", "mean", "p50", "p90", "p99", "max", "p50", "p99", "max"))
for name, v in sorted(delay.items(), key=lambda kv: -len(kv[1]))[:8]:
    r = run[name]
    print("%-16s %7d | %6.3f %6.3f %6.3f %6.3f %7.3f | %6.3f %6.3f %7.3f" % (
        name[:16], len(v), sum(v) / len(v), pct(v, .5), pct(v, .9), pct(v, .99), max(v), pct(r, .5), pct(r, .99), max(r)))
if longest:
    print("\nrustfpm's longest stretches on a CPU (ms, ending at s):")
    for run_ms, at, who in sorted(longest, reverse=True)[:int(sys.argv[2])]:
        print("  %6.3f  %.6f  %s" % (run_ms, at, who))
EOF
}

for b in "${BACKENDS[@]}"; do
	log "$b: bench.sh round with perf sched recording ${RECORD}s of it"
	# One round long enough that the recording falls inside it, after the warm-up.
	start_bg bench "$TMP/bench-$b.err" env ONLY="$b" WORKLOADS="$WORKLOAD" DURATION=$((RECORD + 8)) ROUNDS=1 \
		WARMUP=1 RUSTFPM_BIN="${RUSTFPM_BIN:-}" "$RF_ROOT/scripts/bench.sh"
	bench_pid=$RF_LAST_PID
	until grep -q "warm-up" "$TMP/bench-$b.err" 2>/dev/null; do
		pid_alive "$bench_pid" || die "bench.sh ended before its warm-up: $(tail -3 "$TMP/bench-$b.err")"
		sleep 0.2
	done
	sleep 4 # the warm-up (1 s) and the round's start
	perf sched record -a -o "$TMP/perf-$b.data" -- sleep "$RECORD" >"$TMP/perf-$b.log" 2>&1 ||
		die "perf sched record failed: $(tail -3 "$TMP/perf-$b.log")"
	wait "$bench_pid" || die "bench.sh failed: $(tail -3 "$TMP/bench-$b.err")"
	forget_pid "$bench_pid"
	perf sched timehist -i "$TMP/perf-$b.data" >"$TMP/timehist-$b.txt" 2>/dev/null
	section "$b, $WORKLOAD ($(grep -o 'round 1/1 .*' "$TMP/bench-$b.err" | cut -c1-90))"
	summarize "$TMP/timehist-$b.txt"
done
