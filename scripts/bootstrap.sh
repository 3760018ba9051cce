#!/usr/bin/env bash
# Install everything svcnet and its lab need on a Debian 12 machine, then the package
# itself into ./.venv. Idempotent: a second run installs nothing. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Python, and the tools the lab nodes and the apply use (sudo and openssl: the
# lab's opt-in login users that become root, see svcnet/lab/users.py).
DEBS=(python3 python3-venv python3-pip iproute2 iptables nftables openssh-server openssh-client
      netcat-openbsd conntrack procps util-linux kmod curl ca-certificates git sudo openssl)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: run as root to install: ${missing[*]}" >&2; exit 1
  fi
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Python environment.
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.svcnet-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "bootstrap: installing svcnet and its dependencies into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# Byte-compile svcnet as a regular (non-editable) install would, so that no command compiles it
# at start-up (where PYTHONDONTWRITEBYTECODE is set, Python never caches it by itself).
.venv/bin/python -m compileall -q svcnet >/dev/null
