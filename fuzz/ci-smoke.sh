#!/usr/bin/env bash
# Build every fuzz target and run it for a bounded number of executions, seeded from
# fuzz/corpus_seed/<target>/ (and the captured coturn responses in fuzz/corpus_seed/coturn/ for
# the STUN/TURN targets). Fails (non-zero exit) on the first crash, leak or timeout.
# Every target of `cargo fuzz list` runs, the NetBird status and bundle readers
# (netbird_status, netbird_bundle) and the probe server's request handling (probe_request)
# included.
#
#   fuzz/ci-smoke.sh                 # 20000 runs per target
#   RUNS=200000 fuzz/ci-smoke.sh     # longer
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail

cd "$(dirname "$0")/.."
runs="${RUNS:-20000}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

cargo +"$toolchain" fuzz build
for target in $(cargo +"$toolchain" fuzz list); do
    seeds=("fuzz/corpus_seed/$target")
    case "$target" in
        stun_* | turn_* | machine_* | pair_session) seeds+=("fuzz/corpus_seed/coturn") ;;
    esac
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "== $target: $runs runs, seeds from ${seeds[*]}"
    # New inputs go to the scratch directory; the committed seeds are only read.
    cargo +"$toolchain" fuzz run "$target" "$work" "${seeds[@]}" -- \
        -runs="$runs" -max_len=4096 -timeout=10 -print_final_stats=1
    rm -rf "$work"
    trap - EXIT
done
echo "fuzz smoke: all targets passed"
