#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (one at a time), starting from the committed
# seeds in tests/fuzz/corpus/<target>/. New inputs go to tests/fuzz/work/corpus/<target>/ (not
# committed), logs to tests/fuzz/work/logs/, crashes to tests/fuzz/artifacts/<target>/.
# Exits non-zero when any target crashes, times out or runs out of memory.
#
#   tests/fuzz/run.sh 20            # CI smoke run: 20 s per target
#   tests/fuzz/run.sh 300 pkcs12    # one target, five minutes
#
# Environment: FUZZ_SANITIZER (default none: the code under test is safe Rust, so panics, overflow
# checks, timeouts and memory limits are what find bugs, at twice the speed of ASan; `address`
# also works), FUZZ_TIMEOUT (seconds one input may take, default 25), CARGO_TARGET_DIR.
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$fuzz_dir/../.."
sanitizer=${FUZZ_SANITIZER:-none}
timeout=${FUZZ_TIMEOUT:-25}

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo +nightly install cargo-fuzz --version 0.13.2 --locked
fi

fuzz() {
    local command=$1
    shift
    cargo +nightly fuzz "$command" --fuzz-dir "$fuzz_dir" "$@"
}

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(fuzz list)
fi

# The two runtime targets need the `runtime` feature (a nightly wasmtime build); ask for it only
# when one of them is wanted.
features=()
for target in "${targets[@]}"; do
    case $target in runtime_policy | resolve_override) features=(--features runtime) ;; esac
done

build_start=$(date +%s)
for target in "${targets[@]}"; do
    fuzz build -s "$sanitizer" "${features[@]}" "$target"
done
build_end=$(date +%s)
echo "built ${#targets[@]} targets in $((build_end - build_start)) s"

mkdir -p "$fuzz_dir/work/logs"
failed=()
printf '%-18s %12s %8s %8s %s\n' target executions cov ft result
for target in "${targets[@]}"; do
    corpus="$fuzz_dir/work/corpus/$target"
    log="$fuzz_dir/work/logs/$target.log"
    mkdir -p "$corpus" "$fuzz_dir/corpus/$target"
    status=ok
    if ! fuzz run -s "$sanitizer" "${features[@]}" "$target" "$corpus" "$fuzz_dir/corpus/$target" -- \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        status="FAILED (see $log)"
        failed+=("$target")
    fi
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
    printf '%-18s %12s %8s %8s %s\n' "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$status"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz targets failed: ${failed[*]}" >&2
    for target in "${failed[@]}"; do
        echo "--- $target" >&2
        grep -E -A20 'panicked|ERROR: libFuzzer|SUMMARY' "$fuzz_dir/work/logs/$target.log" | head -40 >&2 || true
    done
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${seconds} s each without a failure"
