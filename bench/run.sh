#!/usr/bin/env bash
# Benchmark (not a test): lsbackup against the plain OpenSSH pipeline doing the same work, on the
# local test bed, in one run. Prints a machine description, every measurement, the ratios with a
# PASS/MISS mark against issue 8's targets, and a markdown block for docs/benchmarks.md.
#
#   sudo bench/run.sh
#   sudo BENCH_SCALE=0.05 bench/run.sh     # all data sizes × 0.05: a quick check of the script
#   sudo BENCH_RUNS=5 bench/run.sh         # samples per compared row (default 3, median shown)
#
# Compared rows, interleaved (baseline, lsbackup, baseline, lsbackup, ...), median of BENCH_RUNS:
#   files    ssh node1 'tar c DIR' | zstd -T0 > f           vs  lsbackup copying DIR (1 GiB, mixed)
#   pg       ssh node1 'sudo -u postgres pg_dumpall' | zstd  vs  lsbackup --only postgresql
#   3 hosts  lsbackup, DIR on node1..node3 at once           vs  lsbackup on each host alone (slowest)
#            (and three ssh|zstd pipelines at once, for reference)
# Memory rows (one run each): lsbackup on 100 MiB, 1 GiB (the files runs) and 4 GiB trees, and on
# 8 hosts at once (two inventory names per test bed sshd address, ~256 MiB tree each).
# Then bench/small.sh, bench/k8s_api.sh, bench/objstore.sh and bench/manyfiles.sh when they exist
# and are executable.
#
# Data is generated once and cached under /var/lib/lsbackup-bench; the PostgreSQL database
# `bench` (pgbench scale 68 per GiB) is created for the run and dropped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
SCALE=${BENCH_SCALE:-1}
RUNS=${BENCH_RUNS:-3}
TB=${LSB_TESTBED:-/tmp/lsbackup-testbed}
CACHE=/var/lib/lsbackup-bench
OUT=$(mktemp -d /tmp/lsbackup-bench.XXXXXX)
# The bench database lives in the test bed's cluster: drop it at the end so the tests' backups
# stay small.
cleanup() {
  rm -rf "$OUT"
  su postgres -c "dropdb --if-exists bench" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
# scaled MiB, at least 1
mib() { awk -v s="$SCALE" -v m="$1" 'BEGIN { v = int(m * s + 0.5); if (v < 1) v = 1; print v }'; }

# The bench needs the test bed's sshd hosts and PostgreSQL only: a failure elsewhere is reported
# and the run goes on when those answer (checked below).
tests/testbed/up.sh >/dev/null || log "warning: tests/testbed/up.sh failed; going on: the bench needs sshd and PostgreSQL only"
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
BUILT=$SECONDS
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/lsbackup
# $TB/env is KEY=value lines, not shell: some values hold shell syntax on purpose (never source it)
tbvar() { sed -n "s/^$1=//p" "$TB/env" | tail -n 1; }
LSB_SSH_PORT=$(tbvar LSB_SSH_PORT)
LSB_SSH_USER=$(tbvar LSB_SSH_USER)
LSB_CLIENT_KEY=$(tbvar LSB_CLIENT_KEY)
LSB_KNOWN_HOSTS=$(tbvar LSB_KNOWN_HOSTS)
LSB_PG_VERSION=$(tbvar LSB_PG_VERSION)
SSH="ssh -q -i $LSB_CLIENT_KEY -o UserKnownHostsFile=$LSB_KNOWN_HOSTS -p $LSB_SSH_PORT -o BatchMode=yes"
for ip in 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5; do
  $SSH "$LSB_SSH_USER@$ip" true || { log "sshd on $ip:$LSB_SSH_PORT does not answer"; exit 1; }
done
su postgres -c "psql -XtAc 'SELECT 1'" >/dev/null || { log "PostgreSQL does not answer"; exit 1; }

# --- data ---
tree() { # kind MiB: prints the path of a cached tree, generating it when missing
  local dir="$CACHE/$1-$2m"
  if [ ! -d "$dir" ]; then
    log "generating $dir ..."
    mkdir -p "$CACHE"
    python3 bench/gentree.py "$dir" "$2" "$1" >&2
  fi
  echo "$dir"
}
rm -rf "$CACHE"/data-*g # the previous script's cache (one directory of 1-55 MiB files), unused
D1G=$(tree mixed "$(mib 1024)")
D100M=$(tree mixed "$(mib 100)")
D4G=$(tree large "$(mib 4096)")
D256M=$(tree mixed "$(mib 256)")
scale=$(awk -v s="$SCALE" 'BEGIN { v = int(68 * s + 0.5); if (v < 1) v = 1; print v }')
log "generating PostgreSQL database bench (pgbench scale $scale) ..."
su postgres -c "dropdb --if-exists bench && createdb bench && /usr/lib/postgresql/$LSB_PG_VERSION/bin/pgbench -q -i -s $scale bench" >/dev/null 2>&1
dbsize=$(su postgres -c "psql -XtAc \"SELECT pg_database_size('bench')\"")
pgall=$(su postgres -c "psql -XtAc \"SELECT sum(pg_database_size(datname)) FROM pg_database WHERE datallowconn AND NOT datistemplate\"")
# read every tree once so that no run pays for a cold page cache
for d in "$D1G" "$D100M" "$D4G" "$D256M"; do tar -cf - -C "$d" . | cat >/dev/null; done

# --- components and inventories ---
mkdir -p "$OUT/components" "$OUT/t" "$OUT/res"
component() { # name dir
  printf 'name: %s\ndescription: benchmark directory %s\ngroups: [bench]\nhosts: all\nsteps:\n  - name: files\n    copy: ["%s"]\n' \
    "$1" "$2" "$2" >"$OUT/components/$1.yaml"
}
component bench-1g "$D1G"
component bench-100m "$D100M"
component bench-4g "$D4G"
component bench-256m "$D256M"
common="[all:vars]
ansible_user=$LSB_SSH_USER
ansible_port=$LSB_SSH_PORT
ansible_become=true
ansible_ssh_private_key_file=$LSB_CLIENT_KEY
ansible_ssh_common_args='-o UserKnownHostsFile=$LSB_KNOWN_HOSTS'"
inventory() { # name, then "host address" pairs for [bench]; [postgresql] is node1
  local name=$1; shift
  mkdir -p "$OUT/$name"
  {
    echo "[bench]"
    while [ $# -gt 0 ]; do echo "$1 ansible_host=$2"; shift 2; done
    printf '[postgresql]\nnode1 ansible_host=127.0.0.2\n%s\n' "$common"
  } >"$OUT/$name/inventory"
}
inventory b1 node1 127.0.0.2
inventory n1 node1 127.0.0.2
inventory n2 node2 127.0.0.3
inventory n3 node3 127.0.0.4
inventory b3 node1 127.0.0.2 node2 127.0.0.3 node3 127.0.0.4
inventory b8 h1 127.0.0.2 h2 127.0.0.3 h3 127.0.0.4 h4 127.0.0.5 h5 127.0.0.2 h6 127.0.0.3 h7 127.0.0.4 h8 127.0.0.5

# --- measuring ---
# Each sample appends "wall rss_kib user sys out_bytes" to $OUT/res/KEY. lsbackup runs under
# /usr/bin/time directly (peak RSS is lsbackup's own); a pipeline runs under bash -c (peak RSS is
# its largest process, CPU the sum of ssh and zstd). Remote work (sshd, tar, pg_dump) is on this
# machine too but in neither figure.
sample() { # key, command...
  local key=$1; shift
  rm -rf "${OUT:?}/t"/*
  sync
  if ! /usr/bin/time -f '%e %M %U %S' -o "$OUT/time" "$@" >"$OUT/stdout" 2>"$OUT/err"; then
    log "$key failed:"; cat "$OUT/err" >&2; exit 1
  fi
  local out
  # the archive (or the pipeline's file), not lsbackup's manifest sidecar
  out=$(find "$OUT/t" -maxdepth 1 -type f ! -name '*.manifest.json' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  echo "$(tail -n 1 "$OUT/time") $out" >>"$OUT/res/$key"
}
pipe() { sample "$1" bash -c "$2"; }
lsb() { # key inventory-dir --only ...
  local key=$1 inv=$2; shift 2
  sample "$key" "$BIN" backup -b "$OUT/$inv" --components-dir "$OUT/components" -t "$OUT/t" \
    --progress never -q --no-agent "$@"
}
tarpipe() { # ip, output file
  echo "$SSH $LSB_SSH_USER@$1 'sudo tar -C / -cf - ${D1G#/}' | zstd -q -T0 -3 >$2"
}
# median by wall time of KEY's samples: "wall rss user sys out"; max RSS over the samples instead
med() { sort -n "$OUT/res/$1" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }
maxrss() { awk '$2 > m { m = $2 } END { print m }' "$OUT/res/$1"; }
walls() { cut -d' ' -f1 "$OUT/res/$1" | paste -sd/ -; }
field() { med "$1" | cut -d' ' -f"$2"; }
cpu_per_gib() { # key input-bytes
  med "$1" | awk -v b="$2" '{ printf "%.1f", ($3 + $4) / (b / 1073741824) }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mark() { # value op limit
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= l : v <= l; print ok ? "PASS" : "MISS" }'
}

in1g=$(du -sb "$D1G" | cut -f1)
in100m=$(du -sb "$D100M" | cut -f1)
in4g=$(du -sb "$D4G" | cut -f1)
in256m=$(du -sb "$D256M" | cut -f1)
n1g=$(find "$D1G" -type f | wc -l)

log "files: $RUNS × (pipeline, lsbackup) ..."
for _ in $(seq "$RUNS"); do
  pipe files-base "$(tarpipe 127.0.0.2 "$OUT/t/files.tar.zst")"
  lsb files-lsb b1 --only bench-1g
done
"$BIN" verify "$OUT"/t/lsbackup-*.tar.zst >/dev/null 2>"$OUT/err" || { log "verify failed:"; cat "$OUT/err" >&2; exit 1; }

log "postgresql: $RUNS × (pipeline, lsbackup) ..."
for _ in $(seq "$RUNS"); do
  pipe pg-base "$SSH $LSB_SSH_USER@127.0.0.2 'sudo -u postgres pg_dumpall' | zstd -q -T0 -3 >$OUT/t/all.sql.zst"
  lsb pg-lsb b1 --only postgresql
done
"$BIN" verify "$OUT"/t/lsbackup-*.tar.zst >/dev/null 2>"$OUT/err" || { log "verify failed:"; cat "$OUT/err" >&2; exit 1; }

log "3 hosts: $RUNS × (3 pipelines, lsbackup on 3 hosts, lsbackup on each host alone) ..."
for _ in $(seq "$RUNS"); do
  # shellcheck disable=SC2016 # $h is the pipeline's loop variable
  pipe h3-base "for h in 2 3 4; do ($(tarpipe '127.0.0.$h' "$OUT/t/f\$h.tar.zst")) & done; wait"
  lsb h3-lsb b3 --only bench-1g
  lsb h1-node1 n1 --only bench-1g
  lsb h1-node2 n2 --only bench-1g
  lsb h1-node3 n3 --only bench-1g
done

log "memory: 100 MiB, 4 GiB, 8 hosts × 256 MiB ..."
lsb rss-100m b1 --only bench-100m
lsb rss-4g b1 --only bench-4g
lsb rss-8h b8 --only bench-256m

# Where the time goes, stage by stage, on the files data (one run each): what the remote side and
# SSH cost alone, then each local stage on a tar of the same tree read from the page cache.
log "stages: ssh transfer, zstd, sha256, fsync'd write ..."
raw=$OUT/raw.tar
tar -C / -cf "$raw" "${D1G#/}"
cat "$raw" >/dev/null
pipe st-ssh "$SSH $LSB_SSH_USER@127.0.0.2 'sudo tar -C / -cf - ${D1G#/}' | wc -c >$OUT/t/n"
pipe st-zstd "zstd -q -T0 -3 <$raw >$OUT/t/x.zst"
pipe st-zstd1 "zstd -q -T1 -3 <$raw >$OUT/t/x.zst"
pipe st-sha "sha256sum $raw >$OUT/t/sum"
arch_bytes=$(field files-lsb 5)
pipe st-disk "head -c $arch_bytes $raw | dd of=$OUT/t/w bs=1M conv=fsync status=none"
rm -f "$raw"

# --- report ---
slowest=node1
for h in node2 node3; do
  if awk -v a="$(field "h1-$h" 1)" -v b="$(field "h1-$slowest" 1)" 'BEGIN { exit !(a > b) }'; then slowest=$h; fi
done
files_r=$(ratio "$(field files-base 1)" "$(field files-lsb 1)")
pg_r=$(ratio "$(field pg-base 1)" "$(field pg-lsb 1)")
h3_r=$(ratio "$(field h3-lsb 1)" "$(field "h1-$slowest" 1)")
h3_ref=$(ratio "$(field h3-base 1)" "$(field h3-lsb 1)")

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
# shellcheck source=/dev/null
os=$(. /etc/os-release && echo "$PRETTY_NAME")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
zstd_v=$(zstd --version | grep -o 'v[0-9.]*' | head -n 1)
ssh_v=$(ssh -V 2>&1 | cut -d, -f1)
pg_v=$(su postgres -c "psql -XtAc 'SHOW server_version'" | awk '{ print $1 }')

mibs() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
rss_mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
row() { # label, key, input bytes, [ratio, target-mark]
  local m wall rss; m=$(med "$2"); wall=${m%% *}; rss=$(maxrss "$2")
  printf '| %s | %s s (%s) | %s MiB/s | %s MiB | %s | %s MiB | %s |\n' "$1" "$wall" "$(walls "$2")" \
    "$(awk -v b="$3" -v s="$wall" 'BEGIN { printf "%.0f", b / 1048576 / s }')" "$(rss_mib "$rss")" \
    "$(cpu_per_gib "$2" "$3")" "$(awk -v b="$(field "$2" 5)" 'BEGIN { printf "%.1f", b / 1048576 }')" "${4:-}"
}
rssline() { # key, what: "N MiB on WHAT PASS"
  local r; r=$(rss_mib "$(maxrss "$1")"); echo "$r MiB on $2 $(mark "$r" '<=' 64)"
}
rssrow() { # label, key, input bytes
  local rss; rss=$(maxrss "$2")
  printf '| %s | %s s | %s MiB | %s | %s |\n' "$1" "$(field "$2" 1)" "$(rss_mib "$rss")" \
    "$(cpu_per_gib "$2" "$3")" "$(mark "$(rss_mib "$rss")" '<=' 64)"
}

report() {
  cat <<EOF
## $(date -u +%Y-%m-%d), \`bench/run.sh\` (commit $commit)

Machine: $(nproc) CPUs ($cpu_model), $mem_gib GiB RAM, $os, kernel $(uname -r); zstd $zstd_v,
$ssh_v, PostgreSQL $pg_v. Every "host" is this machine (sshd on 127.0.0.2-5): sshd, tar or
pg_dump, lsbackup and zstd share its CPUs. BENCH_SCALE=$SCALE, $RUNS samples per compared row
(interleaved, median shown, all samples in brackets); the run took $((elapsed / 60)) min $((elapsed % 60)) s after
the build ($((BUILT - START)) s), data generation included when the cache was empty.

Data: a $(mibs "$in1g") MiB tree of $n1g mixed files (1-64 KiB in nested directories, 100 KiB-4 MiB,
16-64 MiB; half log text, half random), PostgreSQL database \`bench\` of $(mibs "$dbsize") MiB
(pgbench scale $scale; $(mibs "$pgall") MiB in all databases of the cluster).

| run | wall, median (samples) | throughput | peak RSS | CPU s/GiB | out | speed ratio |
|---|---|---|---|---|---|---|
$(row "files: \`ssh host 'tar c DIR' \\| zstd -T0\`" files-base "$in1g")
$(row "files: lsbackup" files-lsb "$in1g" "**${files_r}×** $(mark "$files_r" '>=' 1.0) (target ≥ 1.0)")
$(row "PostgreSQL: \`ssh host 'sudo -u postgres pg_dumpall' \\| zstd -T0\`" pg-base "$pgall")
$(row "PostgreSQL: lsbackup (globals + \`pg_dump -Fc\` per db)" pg-lsb "$pgall" "**${pg_r}×** $(mark "$pg_r" '>=' 1.0) (target ≥ 1.0)")
$(row "3 hosts at once: 3 × (ssh tar \\| zstd)" h3-base "$((in1g * 3))")
$(row "node1 alone: lsbackup" h1-node1 "$in1g")
$(row "node2 alone: lsbackup" h1-node2 "$in1g")
$(row "node3 alone: lsbackup" h1-node3 "$in1g")
$(row "3 hosts at once: lsbackup, one archive" h3-lsb "$((in1g * 3))" "**${h3_r}×** the slowest alone ($slowest) $(mark "$h3_r" '<=' 1.2) (target ≤ 1.2); 3 pipelines / lsbackup: ${h3_ref}×")

Speed ratio: baseline wall time / lsbackup wall time (1.00 or more: lsbackup as fast or faster);
for 3 hosts: 3-host wall time / the slowest host's time alone. CPU s/GiB: user + system seconds
of the measured local processes (lsbackup; ssh + zstd for a pipeline) per GiB of input. Peak RSS:
lsbackup's own; a pipeline's largest process. out: archive or file size. Each kind of archive
(files, PostgreSQL) passed \`lsbackup verify\` once, untimed. The three hosts share
this machine's $(nproc) CPUs, so three hosts at once do three times the work on the same CPUs.

| memory: lsbackup on | wall | peak RSS | CPU s/GiB | target ≤ 64 MiB |
|---|---|---|---|---|
$(rssrow "$(mibs "$in100m") MiB (mixed tree)" rss-100m "$in100m")
$(rssrow "$(mibs "$in1g") MiB (mixed tree, the files runs)" files-lsb "$in1g")
$(rssrow "$(mibs "$in4g") MiB (16-64 MiB files)" rss-4g "$in4g")
$(rssrow "8 hosts at once × $(mibs "$in256m") MiB (mixed tree)" rss-8h "$((in256m * 8))")

Where the time goes on the files data (one run each; the local stages read a tar of the same
tree from the page cache):

| stage | wall | CPU s (local) |
|---|---|---|
$(stagerow "remote \`tar c\` + sshd + ssh, output discarded" st-ssh)
$(stagerow "zstd -3 of the tar, all CPUs (\`-T0\`)" st-zstd)
$(stagerow "zstd -3 of the tar, one thread" st-zstd1)
$(stagerow "sha256 of the tar" st-sha)
$(stagerow "write + fsync of the archive's size" st-disk)
$(stagerow "lsbackup, whole copy (median of the files runs)" files-lsb)

The remote side's CPU (sshd encrypting, tar reading) is on this machine too and in no column:
lsbackup and the pipeline both pay it, on the same $(nproc) CPUs as their own work.
EOF
}
stagerow() { # label, key
  printf '| %s | %s s | %s |\n' "$1" "$(field "$2" 1)" "$(med "$2" | awk '{ printf "%.2f", $3 + $4 }')"
}

extra() { # script: runs it and prints its output as a fenced block
  [ -x "bench/$1" ] || return 0
  log "bench/$1 ..."
  local rc=0
  "bench/$1" >"$OUT/$1.out" 2>&1 || rc=$?
  # shellcheck disable=SC2016 # markdown backquotes
  printf '\n### bench/%s%s\n\n```\n%s\n```\n' "$1" "$([ $rc = 0 ] || echo " (exit $rc)")" "$(cat "$OUT/$1.out")"
}

# The small workload is small: the bench database goes before it runs.
su postgres -c "dropdb --if-exists bench" >/dev/null 2>&1 || true
{
  extra small.sh
  extra k8s_api.sh
  extra objstore.sh
  extra manyfiles.sh
} >"$OUT/extra.md"
elapsed=$((SECONDS - BUILT))
{ report; cat "$OUT/extra.md"; } >"$OUT/report.md"

cat <<EOF

== lsbackup benchmark: ratios ==
$(printf '%-17s' "files $(mibs "$in1g") MiB:") ${files_r}× (baseline / lsbackup)   $(mark "$files_r" '>=' 1.0)  target ≥ 1.0
PostgreSQL:       ${pg_r}× (baseline / lsbackup)   $(mark "$pg_r" '>=' 1.0)  target ≥ 1.0
3 hosts at once:  ${h3_r}× the slowest host alone     $(mark "$h3_r" '<=' 1.2)  target ≤ 1.2
peak RSS:         $(rssline rss-100m "$(mibs "$in100m") MiB"), $(rssline files-lsb "$(mibs "$in1g") MiB"),
                  $(rssline rss-4g "$(mibs "$in4g") MiB"), $(rssline rss-8h "8 hosts × $(mibs "$in256m") MiB")   target ≤ 64 MiB
total time: $((elapsed / 60)) min $((elapsed % 60)) s after the build ($((BUILT - START)) s)

== markdown for docs/benchmarks.md ==

EOF
cat "$OUT/report.md"
