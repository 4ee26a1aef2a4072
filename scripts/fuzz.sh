#!/usr/bin/env bash
# Runs one cargo-fuzz target (fuzz/fuzz_targets/TARGET.rs) for MINUTES, then minimises its corpus
# (fuzz/corpus/TARGET/, which `cargo test --test fuzz_corpus` replays) and prints the figures.
# A failing input found here goes, once fixed, into fuzz/corpus/TARGET/ under its libFuzzer name
# (crash-*, timeout-*, oom-*): minimising never drops those.
#
#   scripts/fuzz.sh TARGET MINUTES    # TARGET: record params request_head child_response fpm_ini
#   FUZZ_RUNS=10000000 scripts/fuzz.sh request_head 60   # stop after 10 M executions if sooner
#
# Each input must finish within 1 s (-timeout=1) and no single allocation may exceed 64 MiB
# (-malloc_limit_mb=64); a crash, hang or such allocation stops the run, leaves the input in
# fuzz/artifacts/TARGET/ and makes the script fail. One job, one process: the machine is shared.
# Installs cargo-fuzz from crates.io when it is missing.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGETS="record params request_head child_response fpm_ini"
(($# == 2)) || die "usage: scripts/fuzz.sh TARGET MINUTES (TARGET: $TARGETS)"
target=$1
minutes=$2
[[ " $TARGETS " == *" $target "* ]] || die "unknown target '$target' (one of: $TARGETS)"
[[ $minutes =~ ^[1-9][0-9]*$ ]] || die "MINUTES must be a positive whole number, got '$minutes'"
runs=${FUZZ_RUNS:--1}

require_cargo
if ! cargo fuzz --version >/dev/null 2>&1; then
	log "installing cargo-fuzz"
	cargo install --locked cargo-fuzz
fi

# Built without a sanitizer (`-s none`): the parsers are safe Rust, where AddressSanitizer finds
# nothing the bounds checks do not, and without it the targets run 2-3 times faster on this shared
# 2-core machine. It also keeps the build on stable Rust (the only toolchain installed):
# `-s address` passes -Zsanitizer, which needs nightly (or RUSTC_BOOTSTRAP=1 on stable, which
# works here too). -malloc_limit_mb needs a sanitizer's malloc hooks, so the 64 MiB limit is
# also kept by the fuzz crate's allocator (fuzz/src/lib.rs). Debug assertions and overflow
# checks are on (-a).
FUZZ_FLAGS=(-O -a -s none)
LIMITS=(-timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=64)

# The fpm_ini target writes its input as a file: in memory (a disk file rewritten 10 million
# times waits on the disk), in a directory removed afterwards.
TMPDIR=$(mktemp -d -p /dev/shm rustfpm-fuzz.XXXXXX)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

cd "$RF_ROOT"
corpus=fuzz/corpus/$target
mkdir -p "$corpus"
log_file=fuzz/target/$target.log
mkdir -p fuzz/target

# A timeout is checked again on its own: libFuzzer's -timeout is wall-clock time, and on a
# loaded machine a fast input can be descheduled for over a second. An input that runs within
# the second by itself was such a stall: it is set aside, and fuzzing resumes for what is left
# of the executions and minutes. The figures add up all the legs.
final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }
binary=fuzz/target/x86_64-unknown-linux-gnu/release/$target
execs=0 seconds=0 stalls=0
section "fuzzing $target for $minutes min"
while :; do
	leg_runs=-1 leg_start=$SECONDS
	((runs < 0)) || leg_runs=$((runs - execs))
	cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$corpus" -- -max_total_time=$((minutes * 60 - seconds)) \
		-runs="$leg_runs" "${LIMITS[@]}" -print_final_stats=1 >"$log_file" 2>&1 &
	fuzzer=$!
	tail -n +1 -f --pid=$fuzzer "$log_file" | grep --line-buffered -v -E '^#[0-9]+\s+(NEW|REDUCE)' || true
	status=0
	wait $fuzzer || status=$?
	leg_execs=$(final_stat number_of_executed_units "$log_file")
	execs=$((execs + ${leg_execs:-0}))
	seconds=$((seconds + SECONDS - leg_start))
	((status != 0)) || break
	artifact=$(sed -n 's/.*Test unit written to \(.*timeout-.*\)$/\1/p' "$log_file" | tail -1)
	if [[ -n $artifact ]] && "$binary" -timeout=1 "$artifact" >"$log_file.recheck" 2>&1; then
		stalls=$((stalls + 1))
		log "the timeout was a stall of the loaded machine: $artifact runs in time alone ($(grep -o 'in [0-9]* ms' "$log_file.recheck")); resuming"
		mkdir -p "fuzz/artifacts/$target/stalls"
		mv "$artifact" "fuzz/artifacts/$target/stalls/"
		((runs < 0 || execs < runs)) && ((seconds < minutes * 60)) && continue
		break
	fi
	die "$target failed (log: $log_file, inputs: fuzz/artifacts/$target/)"
done

# Minimised to the inputs that reach every branch reached (-use_counters=0: not every hit count,
# which keeps the committed corpus a few dozen small files). Inputs that once failed, named as
# libFuzzer names them (crash-*, timeout-*, oom-*) and committed with their fix, are kept as
# they are.
section "minimising $corpus"
kept=fuzz/target/kept/$target
mkdir -p "$kept"
find "$corpus" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) -exec mv -t "$kept" {} +
cargo fuzz cmin "${FUZZ_FLAGS[@]}" "$target" "$corpus" -- "${LIMITS[@]}" -use_counters=0 >"$log_file.cmin" 2>&1 ||
	die "cmin of $target failed (log: $log_file.cmin; inputs set aside: $kept)"
find "$kept" -type f -exec mv -t "$corpus" {} +

section "figures"
printf '%s: %s executions, %s exec/s, %s min, %s stall(s) set aside, corpus %s files / %s\n' \
	"$target" "$execs" "$((execs / (seconds > 0 ? seconds : 1)))" "$(awk "BEGIN { printf \"%.1f\", $seconds / 60 }")" \
	"$stalls" \
	"$(find "$corpus" -type f | wc -l)" "$(du -sh --apparent-size "$corpus" | cut -f1)"
if ((execs >= 10000000)); then
	log "$target: 10 M executions reached, clean"
else
	log "$target: clean, but only $execs executions (10 M wanted: give it more minutes)"
fi
