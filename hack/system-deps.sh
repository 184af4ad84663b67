#!/usr/bin/env bash
# System packages the tests use: a real MQTT broker (mosquitto) and serial pseudo-terminals (socat).
#   --check    exit 1 with instructions if one is missing
#   --install  apt-get install what is missing (root, Debian/Ubuntu)
set -euo pipefail
PACKAGES=(mosquitto socat)
missing=()
for pkg in "${PACKAGES[@]}"; do
  command -v "$pkg" >/dev/null 2>&1 || [ -x "/usr/sbin/$pkg" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
case "${1:-}" in
  --install)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    ;;
  *)
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}   (or run hack/system-deps.sh --install as root)" >&2
    exit 1
    ;;
esac
