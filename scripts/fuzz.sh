#!/usr/bin/env bash
# scripts/fuzz.sh - build the libFuzzer targets and run each for a fixed time on a copy of its seed corpus.
#
#   scripts/fuzz.sh [--seconds N] [--smoke] [--skip-known] [TARGET...]
#   scripts/fuzz.sh --crashers [TARGET...]
#
# TARGET is decode, template, config or jscan (default: all four, one after the other). --seconds N runs
# each target for N seconds (default 600); --smoke is --seconds 20. The seed corpora live in
# tests/fuzz/corpus/<target>/ and are copied to build-fuzz/corpus/<target>/ (which grows; tests/ is not
# touched). Crashes go to build-fuzz/crashes/<target>/. Per target one line is printed:
#   fuzz: target=decode runs=N crashes=0 seconds=S
# The exit status is non-zero when any target crashed (or failed to run).
#
# --skip-known steps around the known bugs whose reproducers are in tests/fuzz/crashers/ (see the
# comments in the targets) so a long run can look for new ones; --crashers only runs each reproducer
# tests/fuzz/crashers/<target>-* once and says whether it still fails ("reproduces") or not ("fixed").
# A single input running longer than FUZZ_TIMEOUT seconds (default 25) is a hang: a crash.
# Targets run one at a time. Environment: FUZZ_NICE (default 10) is the nice level; FUZZ_ARGS adds
# libFuzzer options (e.g. FUZZ_ARGS="-max_len=8192").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-fuzz"
SECONDS_PER_TARGET=600
ALL_TARGETS=(decode template config jscan)
CRASHERS=0
TARGETS=()

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) [ $# -ge 2 ] || { usage >&2; exit 2; }; SECONDS_PER_TARGET="$2"; shift 2 ;;
    --seconds=*) SECONDS_PER_TARGET="${1#--seconds=}"; shift ;;
    --smoke) SECONDS_PER_TARGET=20; shift ;;
    --skip-known) export FUZZ_TEMPLATE_SKIP_KNOWN=1 FUZZ_CONFIG_SKIP_KNOWN=1; shift ;;
    --crashers) CRASHERS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    decode|template|config|jscan) TARGETS+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument \"$1\"" >&2; usage >&2; exit 2 ;;
    esac
done
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*) echo "fuzz.sh: --seconds needs a positive integer" >&2; exit 2 ;; esac
[ "$SECONDS_PER_TARGET" -gt 0 ] || { echo "fuzz.sh: --seconds needs a positive integer" >&2; exit 2; }
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

# clang with the libFuzzer runtime (libclang-rt-14-dev on Debian/Ubuntu).
have_libfuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    local rt
    rt="$(clang -print-resource-dir 2>/dev/null)" || return 1
    ls "$rt"/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1 || ls "$rt"/lib/*/libclang_rt.fuzzer*.a >/dev/null 2>&1
}
"$ROOT/scripts/install-deps.sh" fuzz
have_libfuzzer || { echo "fuzz.sh: clang has no libFuzzer runtime (install libclang-rt-14-dev)" >&2; exit 1; }

# The whole library is instrumented (coverage for libFuzzer, ASan, UBSan); the fuzz targets add
# -fsanitize=fuzzer themselves (CMakeLists.txt, option WC_FUZZ). UBSan findings abort, so they count.
SAN_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
cmake -S "$ROOT" -B "$BUILD" -DWC_FUZZ=ON -DWC_BUILD_TESTS=OFF -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$SAN_FLAGS" >/dev/null
build_targets=()
for t in "${TARGETS[@]}"; do build_targets+=("fuzz_$t"); done
cmake --build "$BUILD" --target "${build_targets[@]}" -j "$(nproc)"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

if [ "$CRASHERS" = 1 ]; then
    unset FUZZ_TEMPLATE_SKIP_KNOWN FUZZ_CONFIG_SKIP_KNOWN # the reproducers are what the skips avoid
    status=0
    for t in "${TARGETS[@]}"; do
        for f in "$ROOT"/tests/fuzz/crashers/"$t"-*; do
            [ -e "$f" ] || continue
            if timeout 120 "$BUILD/fuzz_$t" -timeout="${FUZZ_TIMEOUT:-25}" "$f" >"$BUILD/crasher-$(basename "$f").log" 2>&1; then
                echo "fuzz: crasher=$(basename "$f") fixed"
            else
                echo "fuzz: crasher=$(basename "$f") reproduces (log $BUILD/crasher-$(basename "$f").log)"
                status=1
            fi
        done
    done
    exit "$status"
fi

status=0
for t in "${TARGETS[@]}"; do
    corpus="$BUILD/corpus/$t"
    crashes="$BUILD/crashes/$t"
    log="$BUILD/fuzz-$t.log"
    mkdir -p "$corpus" "$crashes"
    cp -n "$ROOT/tests/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
    before=$(find "$crashes" -type f | wc -l)
    echo "fuzz: running $t for ${SECONDS_PER_TARGET}s (log $log)" >&2
    rc=0
    start=$(date +%s)
    # shellcheck disable=SC2086
    nice -n "${FUZZ_NICE:-10}" "$BUILD/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" \
        -timeout="${FUZZ_TIMEOUT:-25}" -artifact_prefix="$crashes/" -print_final_stats=1 ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1 || rc=$?
    after=$(find "$crashes" -type f | wc -l)
    ncrash=$((after - before))
    # libFuzzer's last words: "Done 123456 runs in 600 second(s)" (absent when it stopped on a crash).
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    if [ -n "$done_line" ]; then
        runs=$(echo "$done_line" | awk '{print $2}')
        secs=$(echo "$done_line" | awk '{print $5}')
    else
        runs=$(grep -E '^stat::number_of_executed_units:' "$log" | tail -n 1 | awk '{print $2}' || true)
        runs=${runs:-?}
        secs=$(($(date +%s) - start))
    fi
    if [ "$rc" -ne 0 ] && [ "$ncrash" -eq 0 ]; then
        ncrash=1 # died without writing an artifact (e.g. a timeout or OOM): still a failure
    fi
    echo "fuzz: target=$t runs=$runs crashes=$ncrash seconds=$secs"
    if [ "$ncrash" -gt 0 ] || [ "$rc" -ne 0 ]; then
        status=1
        echo "fuzz: $t failed (exit $rc); see $log and $crashes/" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5 >&2 || true
    fi
done
exit "$status"
