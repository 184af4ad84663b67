#!/usr/bin/env bash
# System packages the tests use: a real MQTT broker (mosquitto), serial pseudo-terminals (socat),
# git (a source tarball has none; tests check what git ignores), and Python's venv support
# (Debian/Ubuntu split it into pythonX.Y-venv).
#   (no option)  install what is missing when that needs no password (root, or `sudo -n` works),
#                else exit 1 with the one command to run (`make test` calls this before anything else)
#   --check      only check: exit 1 with that command if something is missing
#   --install    install what is missing (root or password-less sudo), failing if it cannot
# SYSTEM_DEPS_PATH: where to look for the commands (default: $PATH plus the sbin folders, where
# Debian puts mosquitto).
set -euo pipefail
search_path="${SYSTEM_DEPS_PATH:-$PATH:/usr/local/sbin:/usr/sbin:/sbin}"
python="${PYTHON:-python3}"
missing=()
for cmd in mosquitto socat git; do
  PATH="$search_path" command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if command -v "$python" >/dev/null 2>&1 && ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=("$("$python" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (install them with your system's package manager)" >&2
  exit 1
fi
command_line="sudo apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  sudo=(none)
fi
if [ "${1:-}" = "--check" ] || [ "${sudo[*]}" = "none" ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with:  $command_line" >&2
  exit 1
fi
echo "installing missing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
