#!/usr/bin/env bash
# The project's one test command (README "Run the tests", and what CI runs).
# Installs what the tests need (Debian packages, ansible-core for the inventory comparison),
# brings up the local test bed (real sshd hosts and services, see tests/testbed/), then runs
# formatting and lint checks and every test. Needs root (apt-get, services on default paths).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: needs root (it installs packages and starts services); try: sudo $0" >&2
  exit 1
fi

echo "== test bed"
tests/testbed/up.sh
echo "== ansible-core (for comparing inventory parsing with ansible-inventory)"
LSB_ANSIBLE_INVENTORY="$(tests/testbed/ansible.sh | tail -n 1)"
export LSB_ANSIBLE_INVENTORY
echo "== kubernetes-validate (for the CronJob example, tests/cli_tools.rs)"
LSB_KUBERNETES_VALIDATE="$(tests/testbed/kubevalidate.sh | tail -n 1)"
export LSB_KUBERNETES_VALIDATE

# A full run gains nothing from cargo's incremental cache (about 6 GB for this crate's test
# binaries); keep the disk for the tests. Set CARGO_INCREMENTAL=1 to keep it anyway.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets "$@"
echo "== static build (x86_64 musl), and a backup of the test bed with it"
set +e
static="$(scripts/build-static.sh --check | tail -n 1)"
rc=$?
set -e
case $rc in
  0)
    out="$(mktemp -d)"
    tb_env=/tmp/lsbackup-testbed/env
    build="$(sed -n 's/^LSB_BUILD_DIR=//p' "$tb_env" | tail -n 1)"
    known="$(sed -n 's/^LSB_KNOWN_HOSTS=//p' "$tb_env" | tail -n 1)"
    HOME="$out" "$static" backup -b "$build" -t "$out" --only haproxy,postgresql \
        --known-hosts "$known" --no-agent --progress never -q >"$out/path"
    "$static" verify "$(cat "$out/path")"
    rm -rf "$out"
    ;;
  3) echo "static build: rustup cannot install x86_64-unknown-linux-musl here: not checked" ;;
  *) exit "$rc" ;;
esac
