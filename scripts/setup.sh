#!/usr/bin/env bash
# Idempotent setup for a fresh Debian/Ubuntu machine: system packages, .venv, C builds.
# Used by `make demo` and `make test`; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto mosquitto-clients rabbitmq-server gcc make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm zstd xdelta3 clang chromium)
need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing system packages: ${need_apt[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: missing system packages; run: sudo apt-get install -y ${need_apt[*]}" >&2
        exit 1
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.tinyfleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing Python packages (first run downloads TensorFlow; later runs are quick)"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,ml,bench]'
    touch "$stamp"
fi

echo "setup: building the C runtime"
make -s -C agent_firmware all
