#!/usr/bin/env bash
# The full check, as CI runs it (.ci/run):
#   cargo fmt --check, cargo clippy -D warnings, cargo test (unit + integration tests), and
#   fmt + clippy of scripts/bench/floor (the benchmark relays, a workspace of their own).
#
#   scripts/test.sh        # as root on a fresh Debian bookworm: installs what is missing
#
# Installs php8.2-cgi, php8.2-fpm, nginx, systemd's tools, tmux, man-db and acl when missing (the integration tests drive real
# php-cgi children and compare with php-fpm behind nginx; they pick free ports, so a system
# nginx on port 80 does not matter), plus a C toolchain / pkg-config only when absent.
# Every step runs even if an earlier one failed; the exit status is non-zero if any failed.
#
# Environment: TEST_THREADS (default 2), extra arguments are passed to `cargo test`.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEST_THREADS=${TEST_THREADS:-2}

section "prerequisites"
# systemd: systemd-socket-activate and systemd-analyze for the socket-activation and unit tests.
# tmux: tests/top.rs runs `rustfpm top` in it and reads the screen.
# man-db: tests/cli.rs renders the generated man pages with `man -l`.
# acl: tests/listen_sockets.rs reads listen.acl_users' entries with getfacl.
pkgs=(php8.2-cgi php8.2-fpm nginx systemd tmux man-db acl)
command -v cc >/dev/null 2>&1 || pkgs+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
ensure_packages "${pkgs[@]}"
require_cargo
cd "$RF_ROOT"
cargo --version
rustc --version
for component in rustfmt clippy; do
	if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
		if command -v rustup >/dev/null 2>&1; then
			log "installing the $component component"
			rustup component add "$component"
		else
			die "cargo $component is missing and rustup is not available to add it"
		fi
	fi
done

failed=()
run_step() {
	local name=$1
	shift
	section "$name: $*"
	local start=$SECONDS
	if "$@"; then
		printf -- '---- %s: ok (%ds)\n' "$name" $((SECONDS - start))
	else
		printf -- '---- %s: FAILED (exit %d, %ds)\n' "$name" "$?" $((SECONDS - start))
		failed+=("$name")
	fi
}

run_step fmt cargo fmt --all -- --check
run_step clippy cargo clippy --all-targets -- -D warnings
run_step test cargo test --all-targets "$@" -- --test-threads="$TEST_THREADS"
# The floor relays (scripts/bench/floor.sh's measuring tools) are a workspace of their own
# that builds against rustfpm's library: checked here so that a change to either shows.
floor=scripts/bench/floor/Cargo.toml
run_step floor bash -c "cargo fmt --manifest-path $floor -- --check && cargo clippy --manifest-path $floor --all-targets -- -D warnings"

section "summary"
if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "all checks passed (fmt, clippy, test, floor)"
