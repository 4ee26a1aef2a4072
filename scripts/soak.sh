#!/usr/bin/env bash
# The soak of issue 13: 1,000,000 requests through nginx (hello world, one in 100 a 1 MiB
# upload, one in 100 a 1 MiB response), release build; prints rustfpm's RSS and open fds
# after the first 10,000 requests and at the end, and fails if the end values are more than
# 2 MiB / 5 fds above them. The test suite runs the same test with 20,000 requests.
#
#   scripts/soak.sh                      # 1,000,000 requests
#   SOAK_REQUESTS=200000 scripts/soak.sh # another count
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_cargo
cd "$RF_ROOT"
export FAULTS_FULL=1
section "soak: ${SOAK_REQUESTS:-1000000} requests (release)"
cargo test --release --test soak -- --nocapture
