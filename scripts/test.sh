#!/usr/bin/env bash
# Runs every test smtplb has, on a fresh Debian 12 machine or a used one:
#   1. installs what it needs (scripts/install-deps.sh, apt-get)
#   2. builds (RelWithDebInfo) and runs the unit tests (GoogleTest, ctest -L unit)
#   3. runs the integration tests: the real binary in front of real peers,
#      and a 60-second chaos soak (tests/soak/chaos_soak.py)
#   4. builds with ASan+UBSan and runs the unit and integration tests again
#   5. builds the libFuzzer targets with clang and runs each for a while
#   6. runs the external acceptance suite (../shared/acceptance) if present
# and ends with one line `N passed, N failed` summing every stage.
# Usage: scripts/test.sh [--quick]   (--quick: skip the sanitizer build and fuzzing)
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
quick=0
[ "${1:-}" = "--quick" ] && quick=1
fuzz_seconds=${SMTPLB_FUZZ_SECONDS:-10}

bash scripts/install-deps.sh || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }

total_pass=0
total_fail=0
stages=()
logdir=$(mktemp -d /tmp/smtplb-test.XXXXXX)

# Adds the counts of a finished stage: from its `N passed, N failed` line,
# or from ctest's summary; a stage that printed neither counts as 1 failure.
record() {  # name log rc
  local name=$1 log=$2 rc=$3 p f line
  line=$(grep -E '^[A-Za-z]*:? ?[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ -n "$line" ]; then
    p=$(sed -E 's/.*\b([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/.*passed, ([0-9]+) failed.*/\1/' <<<"$line")
  else
    line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
    if [ -n "$line" ]; then
      local n
      f=$(sed -E 's/.*tests passed, ([0-9]+) tests failed.*/\1/' <<<"$line")
      n=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
      p=$((n - f))
    else
      p=0
      f=1
    fi
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  stages+=("$(printf '%-28s %5d passed, %3d failed' "$name" "$p" "$f")")
}

stage() {  # name command...
  local name=$1
  shift
  local log="$logdir/${name// /_}.log"
  echo "=== $name"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  record "$name" "$log" "$rc"
}

# ccache (when installed, CMake uses it) shares compiled objects between
# checkouts of the same tree: paths relative to the checkout, and the
# precompiled header allowed (its defines and __TIME__ are not ours).
export CCACHE_BASEDIR="$top" CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime

build() {  # dir extra-cmake-args...
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null &&
    cmake --build "$dir" -j 2
}

if build build; then
  stage "unit" ctest --test-dir build -L unit --output-on-failure -j 2
  stage "integration" env SMTPLB_BIN="$top/build/smtplb" python3 tests/integration/run.py
  # The chaos soak's short form (the documented run is 10 minutes).
  stage "soak (60 s)" python3 tests/soak/chaos_soak.py --duration 60 \
    --smtplb "$top/build/smtplb" --smtp-load "$top/build/bench/smtp_load"
else
  stages+=("build: FAILED")
  total_fail=$((total_fail + 1))
fi

if [ "$quick" -eq 0 ]; then
  if build build-asan -DSMTPLB_SANITIZE=ON -DSMTPLB_BENCH=OFF; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    stage "unit (asan+ubsan)" ctest --test-dir build-asan -L unit --output-on-failure -j 2
    stage "integration (asan+ubsan)" env SMTPLB_BIN="$top/build-asan/smtplb" SMTPLB_SLOW=1 SMTPLB_SANITIZED=1 \
      python3 tests/integration/run.py
    unset ASAN_OPTIONS UBSAN_OPTIONS
  else
    stages+=("asan build: FAILED")
    total_fail=$((total_fail + 1))
  fi
  stage "fuzz" bash scripts/run-fuzz.sh "$fuzz_seconds"
fi

if [ -f ../shared/acceptance/run.py ]; then
  stage "acceptance" env SMTPLB_BIN="$top/build/smtplb" PROJECT_DIR="$top" \
    python3 ../shared/acceptance/run.py --sut smtplb
else
  echo "=== acceptance: ../shared/acceptance not found, not run"
fi

echo
echo "=== summary (logs in $logdir)"
for s in "${stages[@]}"; do echo "  $s"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
