#!/usr/bin/env bash
# Installs the Debian 12 packages mxguard needs to build, run and test.
# Idempotent: when everything is installed already it changes nothing and
# does not touch the network.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config git
  libboost1.81-dev libssl-dev libtomlplusplus-dev libre2-dev libfmt-dev libcli11-dev
  libldns-dev libhiredis-dev libclamav-dev nlohmann-json3-dev libpsl-dev
  libgtest-dev googletest
  # real peers for the tests and the demo: smtp-sink/smtp-source (postfix),
  # swaks with TLS, openssl for test certificates
  postfix swaks libnet-ssleay-perl openssl rbldnsd ldnsutils redis-server redis-sentinel
  # an authoritative DNS with PTR records for the reverse-DNS tests; stunnel
  # for the TLS tunnel to Redis (hiredis 0.14 speaks no TLS)
  dnsmasq-base stunnel4
  # the firewall feeders' targets, and network namespaces for their tests
  nftables ipset iproute2
  # zip for the scanner tests; clamd for the scan benchmark against it
  zip clamav-daemon clamdscan
  # the HTML report test: headless Chromium takes a screenshot, libpng decodes it
  chromium libpng-dev
  # fuzzing (tests/fuzz/run.sh) and formatting
  clang libclang-rt-14-dev clang-format
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or with sudo)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix is only wanted for its smtp-sink/smtp-source test programs and as a
# benchmark peer: install it unconfigured, so it starts no mail service.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
