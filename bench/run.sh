#!/usr/bin/env bash
# Benchmark (not a test): lsbackup against the plain OpenSSH pipeline doing the same work, on the
# local test bed. Prints wall time, throughput, the ratio to the pipeline, and peak RSS.
#
#   sudo bench/run.sh [GiB]        # default 1: a directory of N GiB and a PostgreSQL db of ~N GiB
#
# Runs, in one go:
#   files   lsbackup (copy of DIR on node1)    vs  ssh node1 'tar c DIR' | zstd -T0 > f
#   pg      lsbackup --only postgresql         vs  ssh node1 'sudo -u postgres pg_dumpall' | zstd -T0 > f
#   3 hosts lsbackup (DIR on node1..node3)     vs  three ssh|zstd pipelines at once
# Memory must stay flat as N grows: compare peak RSS for N=1 and N=4.
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${1:-1}
TB=${LSB_TESTBED:-/tmp/lsbackup-testbed}
DATA=/var/lib/lsbackup-bench/data-${GIB}g
OUT=$(mktemp -d /tmp/lsbackup-bench.XXXXXX)
# The bench database lives in the test bed's cluster: drop it at the end so the tests' backups
# stay small.
trap 'rm -rf "$OUT"; su postgres -c "dropdb --if-exists bench" >/dev/null 2>&1 || true' EXIT

tests/testbed/up.sh >/dev/null
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
BIN=$PWD/target/release/lsbackup
. "$TB/env"
SSH="ssh -q -i $LSB_CLIENT_KEY -o UserKnownHostsFile=$LSB_KNOWN_HOSTS -p $LSB_SSH_PORT -o BatchMode=yes"

# --- data: N GiB of files (1 MiB .. 64 MiB, half compressible text, half random) ---
if [ ! -f "$DATA/.complete" ]; then
  echo "generating ${GIB} GiB of files in $DATA ..."
  rm -rf "$DATA"; mkdir -p "$DATA"
  total=$((GIB * 1024)); made=0; i=0
  while [ $made -lt $total ]; do
    sz=$(( (i % 7) * 9 + 1 )); [ $((made + sz)) -gt $total ] && sz=$((total - made))
    if [ $((i % 2)) = 0 ]; then
      head -c $((sz * 1024 * 1024)) /dev/urandom > "$DATA/f$i.bin"
    else
      { head -c $((sz * 768 * 1024)) /dev/urandom | base64 -w 120 | head -c $((sz * 1024 * 1024)) > "$DATA/f$i.txt"; } || true
    fi
    made=$((made + sz)); i=$((i + 1))
  done
  touch "$DATA/.complete"
fi
# --- data: a PostgreSQL database of about N GiB (pgbench scale ~68 per GiB) ---
scale=$((GIB * 68))
echo "generating PostgreSQL database bench (pgbench scale $scale) ..."
su postgres -c "dropdb --if-exists bench && createdb bench && /usr/lib/postgresql/15/bin/pgbench -q -i -s $scale bench" >/dev/null 2>&1
dbsize=$(su postgres -c "psql -XtAc \"SELECT pg_database_size('bench')\"")

# --- components and inventories for the runs ---
mkdir -p "$OUT/components" "$OUT/b1" "$OUT/b3" "$OUT/t"
cat > "$OUT/components/bench-files.yaml" <<YAML
name: bench-files
description: benchmark directory
groups: [bench]
hosts: all
steps:
  - name: files
    copy: ["$DATA"]
YAML
common="[all:vars]
ansible_user=operations
ansible_port=$LSB_SSH_PORT
ansible_become=true
ansible_ssh_private_key_file=$LSB_CLIENT_KEY
ansible_ssh_common_args='-o UserKnownHostsFile=$LSB_KNOWN_HOSTS'"
printf '[bench]\nnode1 ansible_host=127.0.0.2\n[postgresql]\nnode1 ansible_host=127.0.0.2\n%s\n' "$common" > "$OUT/b1/inventory"
printf '[bench]\nnode1 ansible_host=127.0.0.2\nnode2 ansible_host=127.0.0.3\nnode3 ansible_host=127.0.0.4\n%s\n' "$common" > "$OUT/b3/inventory"

measure() { # name, command...: prints "seconds rss_kib bytes_out"
  local name=$1; shift
  rm -rf "$OUT/t"/*; sync
  /usr/bin/time -f '%e %M' -o "$OUT/time" bash -c "$*" >/dev/null 2>"$OUT/err" || { echo "$name failed:"; cat "$OUT/err"; exit 1; }
  read -r secs rss < "$OUT/time"
  bytes=$(du -cb "$OUT"/t/* | tail -n 1 | cut -f1)
  echo "$secs $rss $bytes"
}
row() { # label, input bytes, "secs rss out", baseline secs
  local label=$1 input=$2 m=$3 base=${4:-}
  read -r secs rss out <<< "$m"
  mbps=$(awk -v b="$input" -v s="$secs" 'BEGIN{printf "%.0f", b/1048576/s}')
  ratio=""; [ -n "$base" ] && ratio=$(awk -v a="$secs" -v b="$base" 'BEGIN{printf "%.2fx", a/b}')
  printf '%-44s %8ss %7s MiB/s %9s MiB peak RSS %8s MiB out  %s\n' "$label" "$secs" "$mbps" "$((rss / 1024))" "$((out / 1048576))" "$ratio"
}

in_files=$(du -sb "$DATA" | cut -f1)
echo
echo "data: files $((in_files / 1048576)) MiB in $DATA; PostgreSQL db bench $((dbsize / 1048576)) MiB; $(nproc) cores"
echo

p=$(measure pipe-files "$SSH operations@127.0.0.2 'sudo tar -C / -cf - ${DATA#/}' | zstd -q -T0 -3 > $OUT/t/files.tar.zst")
row "files: ssh tar | zstd -T0 (baseline)" "$in_files" "$p"
l=$(measure lsb-files "$BIN backup -b $OUT/b1 --only bench-files --components-dir $OUT/components -t $OUT/t --progress never -q --no-agent")
row "files: lsbackup" "$in_files" "$l" "$(echo "$p" | cut -d' ' -f1)"

p=$(measure pipe-pg "$SSH operations@127.0.0.2 'sudo -u postgres pg_dumpall' | zstd -q -T0 -3 > $OUT/t/all.sql.zst")
row "postgresql: ssh pg_dumpall | zstd (baseline)" "$dbsize" "$p"
l=$(measure lsb-pg "$BIN backup -b $OUT/b1 --only postgresql -t $OUT/t --progress never -q --no-agent")
row "postgresql: lsbackup (globals + pg_dump -Fc)" "$dbsize" "$l" "$(echo "$p" | cut -d' ' -f1)"

p=$(measure pipe-3 "for h in 2 3 4; do ($SSH operations@127.0.0.\$h 'sudo tar -C / -cf - ${DATA#/}' | zstd -q -T0 -3 > $OUT/t/f\$h.tar.zst) & done; wait")
row "3 hosts: 3 × (ssh tar | zstd) at once" "$((in_files * 3))" "$p"
l=$(measure lsb-3 "$BIN backup -b $OUT/b3 --only bench-files --components-dir $OUT/components -t $OUT/t --progress never -q --no-agent")
row "3 hosts: lsbackup (one archive)" "$((in_files * 3))" "$l" "$(echo "$p" | cut -d' ' -f1)"
echo
echo "ratio: lsbackup wall time / baseline wall time (below 1.00 is faster). All hosts are this machine."
