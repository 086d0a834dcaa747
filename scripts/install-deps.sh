#!/usr/bin/env bash
# Installs everything smtplb needs to build and test on Debian 12, from
# Debian's own packages only.  Safe to rerun: packages already present are
# skipped by apt-get, and nothing is downloaded outside apt.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang libfuzzer-14-dev
  libclang-rt-14-dev clang-format
  # libraries (DESIGN.md, "Dependencies")
  libboost1.81-dev libboost-json1.81-dev libssl-dev libc-ares-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev libcrypt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # real peers for the tests and the benchmark
  postfix swaks libnet-ssleay-perl python3 haproxy dnsmasq-base openssl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how it is to be configured; smtplb only needs its programs
# (smtp-sink, smtp-source, a private instance), not a system mail server.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
