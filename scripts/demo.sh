#!/usr/bin/env bash
# Demo: bring up the local test bed (three SSH hosts on 127.0.0.2-4 running PostgreSQL, etcd with
# kubeadm's TLS layout, HAProxy, ZooKeeper, Prometheus, Alertmanager, RabbitMQ and the stand-ins)
# and back it all up with lsbackup into ./demo-backups. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/demo.sh: needs root (it installs packages and starts services); try: sudo $0" >&2
  exit 1
fi
tests/testbed/up.sh
cargo build --release --locked
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/lsbackup
mkdir -p demo-backups
set +e
# stdout carries the archive's path and nothing else (the summary goes to stderr)
latest=$("$BIN" backup -b /tmp/lsbackup-testbed/build -t demo-backups "$@")
code=$?
set -e
if [ -n "$latest" ]; then
  echo "$latest"
  echo
  echo "== verify $latest"
  "$BIN" verify "$latest"
  echo
  echo "The manifest:  tar -xOf $latest manifest.json | less"
fi
exit $code
