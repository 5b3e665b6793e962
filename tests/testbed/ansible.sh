#!/usr/bin/env bash
# Install ansible-core from PyPI into a private virtualenv (idempotent) and print the path of
# its `ansible-inventory` (the only line on stdout; progress goes to stderr). Used by
# tests/inventory_ansible.rs to compare lsbackup's inventory parser with real Ansible.
#
#   tests/testbed/ansible.sh                                # /opt/lsbackup-ansible, pinned version
#   LSB_ANSIBLE_VENV=/some/dir tests/testbed/ansible.sh
#   LSB_ANSIBLE_VERSION=2.19.14 tests/testbed/ansible.sh    # another ansible-core ("latest": newest)
#
# Then: export LSB_ANSIBLE_INVENTORY="$(tests/testbed/ansible.sh)"
#
# ansible-core 2.19 needs Python >= 3.11 (Debian 12's python3 is 3.11). Creating the venv needs
# python3-venv on Debian/Ubuntu; it is installed with apt-get when missing (as root).
set -euo pipefail

venv="${LSB_ANSIBLE_VENV:-/opt/lsbackup-ansible}"
# The version the fixture corpus was verified against.
version="${LSB_ANSIBLE_VERSION:-2.19.14}"

log() { echo "ansible.sh: $*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "cannot install $* (needs root and apt-get); install it and rerun"
        exit 1
    fi
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# A Python >= 3.11.
pick_python() {
    local c
    for c in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

if [ -x "$venv/bin/ansible-inventory" ] && [ -x "$venv/bin/python" ]; then
    have="$("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)' 2>/dev/null || true)"
    if [ -n "$have" ] && { [ "$version" = latest ] || [ "$have" = "$version" ]; }; then
        log "ansible-core $have already installed in $venv"
        "$venv/bin/ansible-inventory" --version >/dev/null
        echo "$venv/bin/ansible-inventory"
        exit 0
    fi
fi

python="$(pick_python || true)"
if [ -z "$python" ]; then
    apt_install python3 python3-venv
    python="$(pick_python || true)"
    [ -n "$python" ] || { log "no Python >= 3.11 available for ansible-core $version"; exit 1; }
fi

if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv with $python"
    if ! "$python" -m venv "$venv" >&2; then
        rm -rf "$venv"
        apt_install python3-venv
        "$python" -m venv "$venv" >&2
    fi
fi

spec="ansible-core"
[ "$version" != latest ] && spec="ansible-core==$version"
log "installing $spec into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" >&2

"$venv/bin/ansible-inventory" --version >/dev/null
echo "$venv/bin/ansible-inventory"
