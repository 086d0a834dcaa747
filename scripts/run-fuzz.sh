#!/usr/bin/env bash
# run-fuzz.sh [SECONDS] [--runs N] [--corpus DIR] [TARGET...]
#
# Builds the libFuzzer targets (fuzz/, with clang, ASan and UBSan) and runs
# each one (or the TARGETs named, e.g. `reply data_decoder`) for SECONDS
# (default 15).  CI runs the short form; the deep run is
#
#   scripts/run-fuzz.sh 5400 --runs 10000000 --corpus build-fuzz/deep-corpus
#
# --runs N    stop a target after N executions (SECONDS still caps it); the
#             target fails if it ran fewer, so a deep run that was cut short
#             by time says so instead of passing quietly.
# --corpus D  keep the inputs each target found in D/<name>/ (and start from
#             them next time), instead of a temporary directory.
#
# The checked-in seeds (fuzz/corpus/<name>/) are read as a second corpus
# directory, so the repository is never modified.  A crash input is kept
# under $BUILD/fuzz-artifacts/<name>/ and the script exits non-zero.  Every
# target prints one line: executions, executions per second, coverage.
# Environment: SMTPLB_FUZZ_BUILD (default build-fuzz), CXX (default clang++).
set -euo pipefail

usage() {
  echo "usage: $0 [SECONDS] [--runs N] [--corpus DIR] [TARGET...]" >&2
  exit 2
}

all=(command address reply data_decoder line_reader proxy_header sasl xtext idna session_machine agent_reply
  mx_answer)
secs=15
runs=""
keep=""
targets=()
while (($#)); do
  case "$1" in
    --runs)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage
      runs="$2"
      shift 2
      ;;
    --corpus)
      [[ $# -ge 2 ]] || usage
      keep="$2"
      shift 2
      ;;
    -*) usage ;;
    *)
      if [[ "$1" =~ ^[0-9]+$ ]]; then
        secs="$1"
      elif [[ " ${all[*]} " == *" $1 "* ]]; then
        targets+=("$1")
      else
        echo "unknown fuzz target: $1 (targets: ${all[*]})" >&2
        exit 2
      fi
      shift
      ;;
  esac
done
((${#targets[@]})) || targets=("${all[@]}")

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SMTPLB_FUZZ_BUILD:-$root/build-fuzz}"

CXX="${CXX:-clang++}" cmake -S "$root" -B "$build" -G Ninja -DSMTPLB_FUZZ=ON >/dev/null
cmake --build "$build"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
corpora="${keep:-$work}"
mkdir -p "$corpora"
corpora="$(cd "$corpora" && pwd)"

export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
limit=(-max_total_time="$secs")
[[ -n "$runs" ]] && limit+=(-runs="$runs")
failed=()
for name in "${targets[@]}"; do
  bin="$build/fuzz/${name}_fuzz"
  seeds="$root/fuzz/corpus/$name"
  artifacts="$build/fuzz-artifacts/$name"
  mkdir -p "$corpora/$name" "$artifacts"
  log="$work/$name.log"
  started=$SECONDS
  if "$bin" "${limit[@]}" -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$corpora/$name" "$seeds" >"$log" 2>&1; then
    done_runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
    per_sec="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    line="${name}_fuzz: ${done_runs:-?} runs in $((SECONDS - started)) s (${per_sec:-?}/s), ${cov:-cov ?}"
    if [[ -n "$runs" && "${done_runs:-0}" -lt "$runs" ]]; then
      echo "SHORT $line, fewer than $runs (raise SECONDS)"
      failed+=("$name")
    else
      echo "ok    $line"
    fi
  else
    echo "FAIL  ${name}_fuzz (inputs in $artifacts):"
    tail -n 40 "$log" | sed 's/^/      /'
    failed+=("$name")
  fi
done

echo "$((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
