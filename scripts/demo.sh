#!/usr/bin/env bash
# Demo: bring up the local test bed (three SSH hosts on 127.0.0.2-4 running PostgreSQL, etcd with
# kubeadm's TLS layout, HAProxy, ZooKeeper, Prometheus, Alertmanager, RabbitMQ and the stand-ins)
# and back it all up with lsbackup into ./demo-backups. Needs root.
#
#   scripts/demo.sh                                   # into ./demo-backups
#   scripts/demo.sh -t s3://lsbackup-test/demo        # the test bed's S3 (moto)
#   scripts/demo.sh -t az://lsbackup-test/demo        # the test bed's Azure Blob (azurite)
#   scripts/demo.sh -t azfile://lsbackup-test/backups # the test bed's Azure Files stand-in
#
# For a URL target the credentials are the test bed's, unless AWS_* / AZURE_STORAGE_* are set
# already (then a real bucket, container or share is used). Other arguments go to `backup`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/demo.sh: needs root (it installs packages and starts services); try: sudo $0" >&2
  exit 1
fi
tests/testbed/up.sh
cargo build --release --locked
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/lsbackup
target=demo-backups
if [ "${1:-}" = -t ] || [ "${1:-}" = --target ]; then
  target=${2:?"$1 needs a target"}
  shift 2
fi
tbvar() { sed -n "s/^$1=//p" /tmp/lsbackup-testbed/env | tail -n 1; }
case "$target" in
s3://*)
  if [ -z "${AWS_ACCESS_KEY_ID:-}" ] && [ -z "${AWS_PROFILE:-}" ]; then
    AWS_ACCESS_KEY_ID=$(tbvar LSB_S3_ACCESS_KEY_ID)
    AWS_SECRET_ACCESS_KEY=$(tbvar LSB_S3_SECRET_ACCESS_KEY)
    AWS_ENDPOINT_URL=$(tbvar LSB_S3_ENDPOINT)
    AWS_REGION=$(tbvar LSB_S3_REGION)
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL AWS_REGION
  fi
  ;;
az://* | azure://*)
  if [ -z "${AZURE_STORAGE_CONNECTION_STRING:-}" ] && [ -z "${AZURE_STORAGE_ACCOUNT:-}" ]; then
    AZURE_STORAGE_CONNECTION_STRING=$(tbvar LSB_AZURE_CONNECTION_STRING)
    export AZURE_STORAGE_CONNECTION_STRING
  fi
  ;;
azfile://*)
  if [ -z "${AZURE_STORAGE_CONNECTION_STRING:-}" ] && [ -z "${AZURE_STORAGE_ACCOUNT:-}" ]; then
    AZURE_STORAGE_CONNECTION_STRING=$(tbvar LSB_AZFILE_CONNECTION_STRING)
    export AZURE_STORAGE_CONNECTION_STRING
  fi
  ;;
*) mkdir -p "$target" ;;
esac
set +e
# stdout carries the archive's path and nothing else (the summary goes to stderr)
latest=$("$BIN" backup -b /tmp/lsbackup-testbed/build -t "$target" "$@")
code=$?
set -e
if [ -n "$latest" ]; then
  echo "$latest"
  echo
  echo "== verify $latest"
  "$BIN" verify "$latest"
  echo
  echo "== list $target"
  "$BIN" list -t "$target"
  case "$latest" in
  *://*) ;;
  *) echo "The manifest:  tar -xOf $latest manifest.json | less" ;;
  esac
fi
exit $code
