#!/usr/bin/env bash
# The benchmark, from a fresh Debian 12 machine: installs what it needs
# (apt), builds smtplb and bench/smtp_load (Release), and runs
# bench/bench.py, which writes bench/RESULTS.md, bench/results.png and
# bench/results.json.  Safe to rerun.  About 15 minutes on 2 cores.
#
#   bench/run.sh                 # the full run (3 interleaved repetitions)
#   bench/run.sh --reps 5        # any bench.py option passes through
#   bench/run.sh --workloads all --systems direct,haproxy,nginx,smtplb
#   bench/run.sh --quick         # a smoke run of a few minutes (RESULTS.md not rewritten)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# The chart: Debian's matplotlib (for /usr/bin/python3); nginx's mail proxy
# (`--systems ...,nginx`).
missing=()
for pkg in python3-matplotlib nginx-light libnginx-mod-mail; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSMTPLB_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target smtplb smtp_load

out=(--markdown bench/RESULTS.md --chart bench/results.png --out bench/results.json)
for a in "$@"; do
  [ "$a" = "--quick" ] && out=(--markdown /tmp/smtplb-quick-RESULTS.md --chart /tmp/smtplb-quick-results.png)
done
exec python3 bench/bench.py "${out[@]}" "$@"
