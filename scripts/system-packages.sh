#!/usr/bin/env bash
# Install the Debian packages Shetphone needs, only those that are missing.
#   scripts/system-packages.sh build   what `make run` needs to build the venv (uWSGI compiles from source)
#   scripts/system-packages.sh test    that, and what the tests drive: a browser, servers, audio tools
set -euo pipefail
build=(gcc python3-dev python3-venv)
test=(chromium redis-server nginx libopus0 espeak-ng sox postgresql fonts-dejavu-core openssl)
case "${1:-test}" in
  build) packages=("${build[@]}") ;;
  test) packages=("${build[@]}" "${test[@]}") ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
