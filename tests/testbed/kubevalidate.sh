#!/usr/bin/env bash
# Install kubernetes-validate (PyPI: validates manifests against the Kubernetes API's own JSON
# schemas, offline) into a private virtualenv (idempotent) and print the path of its command
# (the only line on stdout). Used by tests/cli_tools.rs for docs/examples/lsbackup-cronjob.yaml:
# `kubectl apply --dry-run=client` needs a real API server, and kubeconform is not packaged in
# the registries this project installs from.
#
#   export LSB_KUBERNETES_VALIDATE="$(tests/testbed/kubevalidate.sh)"
set -euo pipefail

venv="${LSB_KUBEVALIDATE_VENV:-/opt/lsbackup-kubevalidate}"
version="${LSB_KUBEVALIDATE_VERSION:-1.37.0}"
log() { echo "kubevalidate.sh: $*" >&2; }

if [ -x "$venv/bin/kubernetes-validate" ] &&
    "$venv/bin/python" -m pip show kubernetes-validate 2>/dev/null | grep -qx "Version: $version"; then
    echo "$venv/bin/kubernetes-validate"
    exit 0
fi
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
fi
log "installing kubernetes-validate $version into $venv"
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install -q "kubernetes-validate==$version" >&2
"$venv/bin/kubernetes-validate" --version >&2
echo "$venv/bin/kubernetes-validate"
