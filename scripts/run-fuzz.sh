#!/usr/bin/env bash
# run-fuzz.sh [SECONDS]: build the libFuzzer targets (fuzz/, with clang,
# ASan and UBSan) and run each for SECONDS (default 15).
#
# Each target writes new inputs to a temporary corpus directory given first,
# and reads the checked-in seeds (fuzz/corpus/<name>/) as a second directory,
# so the repository is never modified.  A crash input is kept under
# $BUILD/fuzz-artifacts/<name>/ and the script exits non-zero.
# Environment: SMTPLB_FUZZ_BUILD (default build-fuzz), CXX (default clang++).
set -euo pipefail

secs="${1:-15}"
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SMTPLB_FUZZ_BUILD:-$root/build-fuzz}"
targets=(command address reply data_decoder line_reader proxy_header sasl xtext session_machine agent_reply
  mx_answer)

CXX="${CXX:-clang++}" cmake -S "$root" -B "$build" -G Ninja -DSMTPLB_FUZZ=ON >/dev/null
cmake --build "$build"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
failed=()
for name in "${targets[@]}"; do
  bin="$build/fuzz/${name}_fuzz"
  seeds="$root/fuzz/corpus/$name"
  artifacts="$build/fuzz-artifacts/$name"
  mkdir -p "$work/$name" "$artifacts"
  log="$work/$name.log"
  if "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$work/$name" "$seeds" >"$log" 2>&1; then
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    echo "ok    ${name}_fuzz: ${runs:-?} runs, ${cov:-cov ?}"
  else
    echo "FAIL  ${name}_fuzz (inputs in $artifacts):"
    tail -n 40 "$log" | sed 's/^/      /'
    failed+=("$name")
  fi
done

echo "$((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  echo "crashes in: ${failed[*]}" >&2
  exit 1
fi
