#!/usr/bin/env bash
# Install ansible-core from PyPI into a private virtualenv (idempotent) and print the path of
# its `ansible-inventory`. Used by tests/inventory_ansible.rs to compare lsbackup's inventory
# parser with real Ansible.
#
#   tests/testbed/ansible.sh                 # installs into /opt/lsbackup-ansible
#   LSB_ANSIBLE_VENV=/some/dir tests/testbed/ansible.sh
#   LSB_ANSIBLE_VERSION=2.17.7 tests/testbed/ansible.sh   # pin another ansible-core
#
# Then: export LSB_ANSIBLE_INVENTORY="$(tests/testbed/ansible.sh)"
set -euo pipefail

venv="${LSB_ANSIBLE_VENV:-/opt/lsbackup-ansible}"
version="${LSB_ANSIBLE_VERSION:-}"
python="${PYTHON:-python3}"

log() { echo "ansible.sh: $*" >&2; }

if ! command -v "$python" >/dev/null 2>&1; then
    log "$python not found; installing python3 with apt-get"
    apt-get update -qq >&2 && apt-get install -y -qq python3 python3-venv >&2
fi

if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv"
    if ! "$python" -m venv "$venv" >&2; then
        log "python3 -m venv failed; installing python3-venv with apt-get"
        apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
        "$python" -m venv "$venv" >&2
    fi
fi

spec="ansible-core"
[ -n "$version" ] && spec="ansible-core==$version"

want_install=1
if [ -x "$venv/bin/ansible-inventory" ]; then
    have="$("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)' 2>/dev/null || true)"
    if [ -n "$have" ] && { [ -z "$version" ] || [ "$have" = "$version" ]; }; then
        want_install=0
        log "ansible-core $have already installed in $venv"
    fi
fi

if [ "$want_install" = 1 ]; then
    log "installing $spec into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" >&2
fi

"$venv/bin/ansible-inventory" --version >/dev/null
echo "$venv/bin/ansible-inventory"
