#!/usr/bin/env bash
# Benchmark (not a test): the small LambdaStack layout, where round trips and not bytes make the
# wall time. lsbackup --only kubernetes,postgresql,haproxy against a serial script of plain
# OpenSSH calls (one after another) doing what lsbackup does minus the API export: etcd snapshot,
# tar of the PKI, kubeadm config, pg_dumpall, haproxy.cfg, each to a file.
#
#   sudo bench/small.sh [RUNS]      # default 3: median of RUNS, lsbackup and baseline interleaved
#   LSB_BIN=/path/to/lsbackup bench/small.sh     # another build (e.g. to compare two versions)
#
# Prints both medians and ratio = baseline / lsbackup (1.00 or more: lsbackup is as fast or
# faster). Needs the test bed up (tests/testbed/up.sh) and a release build (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
TB=${LSB_TESTBED:-/tmp/lsbackup-testbed}
OUT=$(mktemp -d /tmp/lsbackup-small.XXXXXX)
# A database of about 1 MB beside the test bed's own; dropped at the end so the tests' backups
# stay as they were.
DB=lsb_small
trap 'rm -rf "$OUT"; su postgres -c "dropdb --if-exists $DB" >/dev/null 2>&1 || true' EXIT

[ -f "$TB/env" ] || { echo "bench/small.sh: no test bed ($TB/env); run tests/testbed/up.sh" >&2; exit 1; }
# The env file is KEY=value lines, some values not shell-safe: read only what is used here.
for v in LSB_SSH_PORT LSB_SSH_USER LSB_CLIENT_KEY LSB_KNOWN_HOSTS LSB_BUILD_DIR LSB_ETCD_ENDPOINT \
  LSB_ETCD_CACERT LSB_ETCD_CERT LSB_ETCD_KEY LSB_ETCD_DATA_DIR LSB_K8S_PKI LSB_KUBEADM_CONFIG \
  LSB_HAPROXY_CFG; do
  printf -v "$v" '%s' "$(sed -n "s/^$v=//p" "$TB/env")"
done
cargo build --release --locked -q
BIN=${LSB_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/lsbackup}
SSH="ssh -q -i $LSB_CLIENT_KEY -o UserKnownHostsFile=$LSB_KNOWN_HOSTS -p $LSB_SSH_PORT -o BatchMode=yes"
USER_AT=${LSB_SSH_USER}@
PG_HOST=127.0.0.2 K8S_HOST=127.0.0.3 HAPROXY_HOST=127.0.0.4

su postgres -c "dropdb --if-exists $DB && createdb $DB" >/dev/null 2>&1
su postgres -c "psql -Xq -d $DB -c \"CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 10000) g\"" >/dev/null

others=$(su postgres -c "psql -XtAc \"SELECT datname FROM pg_database WHERE datname <> '$DB' AND pg_database_size(datname) > 64 * 1024 * 1024\"")
[ -z "$others" ] || echo "note: large databases present ($others): both sides dump them too; not the small workload" >&2

# The serial OpenSSH script: one ssh call per step, one after another, output to files.
baseline() {
  local d=$1 snap=$LSB_ETCD_DATA_DIR/lsbackup-bench-snapshot.db
  local tls="--endpoints=$LSB_ETCD_ENDPOINT --cacert=$LSB_ETCD_CACERT --cert=$LSB_ETCD_CERT --key=$LSB_ETCD_KEY"
  $SSH "$USER_AT$K8S_HOST" "sudo ETCDCTL_API=3 etcdctl $tls snapshot save $snap" >/dev/null 2>&1
  $SSH "$USER_AT$K8S_HOST" "sudo cat $snap" > "$d/etcd-snapshot.db"
  $SSH "$USER_AT$K8S_HOST" "sudo rm -f $snap"
  $SSH "$USER_AT$K8S_HOST" "sudo tar -C / -cf - ${LSB_K8S_PKI#/}" > "$d/pki.tar"
  $SSH "$USER_AT$K8S_HOST" "sudo cat $LSB_KUBEADM_CONFIG" > "$d/kubeadm-config.yml"
  $SSH "$USER_AT$PG_HOST" "sudo -u postgres pg_dumpall" > "$d/all.sql"
  $SSH "$USER_AT$HAPROXY_HOST" "sudo cat $LSB_HAPROXY_CFG" > "$d/haproxy.cfg"
}

lsb() {
  "$BIN" backup -b "$LSB_BUILD_DIR" --only kubernetes,postgresql,haproxy -t "$1" \
    --progress never -q --no-agent >/dev/null 2>"$OUT/lsb.err" ||
    { echo "lsbackup failed:" >&2; cat "$OUT/lsb.err" >&2; exit 1; }
}

secs() { # command...: wall seconds (3 decimals)
  local t0 t1
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}'
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

b=() l=()
for i in $(seq "$RUNS"); do
  rm -rf "$OUT/b" "$OUT/l"; mkdir -p "$OUT/b" "$OUT/l"
  b+=("$(secs baseline "$OUT/b")")
  l+=("$(secs lsb "$OUT/l")")
  echo "run $i: baseline ${b[-1]}s  lsbackup ${l[-1]}s" >&2
done
bm=$(median "${b[@]}")
lm=$(median "${l[@]}")
printf '%-60s %8ss\n' "small: serial ssh script (etcd, pki, kubeadm, pg_dumpall, haproxy)" "$bm"
printf '%-60s %8ss\n' "small: lsbackup --only kubernetes,postgresql,haproxy" "$lm"
awk -v b="$bm" -v l="$lm" 'BEGIN{printf "ratio baseline/lsbackup: %.2f (1.00 or more: lsbackup as fast or faster; median of '"$RUNS"')\n", b / l}'
