#!/usr/bin/env bash
# The benchmark, from a fresh Debian 12 machine: installs what it needs
# (apt), builds smtplb and bench/smtp_load (Release), and runs
# bench/compare.py, which writes bench/RESULTS.md, bench/results.png and
# bench/results.json.  Safe to rerun.  About 15 minutes on 2 cores.
#
#   bench/run.sh                 # the full run (3 interleaved repetitions)
#   bench/run.sh --reps 5        # any compare.py option passes through
#   bench/run.sh --quick         # a smoke run of a few minutes (RESULTS.md not rewritten)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# The chart: Debian's matplotlib (for /usr/bin/python3).
if ! dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q 'ok installed'; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-matplotlib
fi

cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSMTPLB_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target smtplb smtp_load

out=(--markdown bench/RESULTS.md --chart bench/results.png --out bench/results.json)
for a in "$@"; do
  [ "$a" = "--quick" ] && out=(--markdown /tmp/smtplb-quick-RESULTS.md --chart /tmp/smtplb-quick-results.png)
done
exec python3 bench/compare.py "${out[@]}" "$@"
