#!/usr/bin/env bash
# Benchmark (not a test): lsbackup streaming a multi-GiB backup to the test bed's object stores
# (moto S3, azurite Blob, the Azure Files stand-in) against the same backup to a local directory
# and against the OpenSSH way to S3 (ssh 'tar c' | zstd | boto3 upload_fileobj, a streamed
# multipart upload), on the same data in the same run. Prints wall time, peak RSS and archive
# size per row, one sample each (the stores are emulators on this machine: their own CPU is in
# the wall time, not in lsbackup's RSS).
#
#   sudo bench/objstore.sh                  # 4 GiB of 16-64 MiB files, half random, half text
#   sudo BENCH_SCALE=0.1 bench/objstore.sh  # a quick check of the script
#
# Run by bench/run.sh at its end; uses its data cache (/var/lib/lsbackup-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${BENCH_SCALE:-1}
TB=${LSB_TESTBED:-/tmp/lsbackup-testbed}
CACHE=/var/lib/lsbackup-bench
OUT=$(mktemp -d /tmp/lsbackup-objbench.XXXXXX)
PREFIX=bench-$$
tbvar() { sed -n "s/^$1=//p" "$TB/env" | tail -n 1; }
PY=$(tbvar LSB_OBJSTORE_PYTHON)
PROBE=$(tbvar LSB_OBJSTORE_PROBE)
cleanup() {
  "$PY" "$PROBE" s3-empty "$(tbvar LSB_S3_BUCKET)" "$PREFIX/" >/dev/null 2>&1 || true
  "$PY" "$PROBE" az-empty "$(tbvar LSB_AZURE_CONTAINER)" "$PREFIX/" >/dev/null 2>&1 || true
  rm -f "$(tbvar LSB_AZFILE_DATA)/$(tbvar LSB_AZFILE_SHARE)/$(tbvar LSB_AZFILE_DIR)"/lsbackup-objbench-* 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '%s\n' "$*" >&2; }

tests/testbed/up.sh >/dev/null
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/lsbackup

mib=$(awk -v s="$SCALE" 'BEGIN { v = int(4096 * s + 0.5); if (v < 1) v = 1; print v }')
DATA=$CACHE/large-${mib}m
if [ ! -d "$DATA" ]; then
  log "generating $DATA ..."
  mkdir -p "$CACHE"
  python3 bench/gentree.py "$DATA" "$mib" large >&2
fi
tar -cf - -C "$DATA" . | cat >/dev/null # warm the page cache
input=$(du -sb "$DATA" | cut -f1)

SSH_PORT=$(tbvar LSB_SSH_PORT)
SSH_USER=$(tbvar LSB_SSH_USER)
KEY=$(tbvar LSB_CLIENT_KEY)
KNOWN=$(tbvar LSB_KNOWN_HOSTS)
mkdir -p "$OUT/components" "$OUT/inv" "$OUT/local"
printf 'name: objbench\ndescription: benchmark directory %s\ngroups: [bench]\nhosts: all\nsteps:\n  - name: files\n    copy: ["%s"]\n' \
  "$DATA" "$DATA" >"$OUT/components/objbench.yaml"
cat >"$OUT/inv/inventory" <<EOF
[bench]
node1 ansible_host=127.0.0.2
[all:vars]
ansible_user=$SSH_USER
ansible_port=$SSH_PORT
ansible_become=true
ansible_ssh_private_key_file=$KEY
ansible_ssh_common_args='-o UserKnownHostsFile=$KNOWN'
EOF

# Credentials by reference, as a scheduled job would give them.
printf '%s' "$(tbvar LSB_S3_ACCESS_KEY_ID)" >"$OUT/s3-id"
printf '%s' "$(tbvar LSB_S3_SECRET_ACCESS_KEY)" >"$OUT/s3-secret"
printf '%s' "$(tbvar LSB_AZURE_CONNECTION_STRING)" >"$OUT/az-cs"
printf '%s' "$(tbvar LSB_AZFILE_CONNECTION_STRING)" >"$OUT/azfile-cs"
chmod 600 "$OUT"/s3-* "$OUT"/az*-cs
S3=(--target-setting "aws_access_key_id=file:$OUT/s3-id" --target-setting "aws_secret_access_key=file:$OUT/s3-secret"
  --target-setting "aws_endpoint_url=$(tbvar LSB_S3_ENDPOINT)" --target-setting "aws_region=$(tbvar LSB_S3_REGION)")
AZ=(--target-setting "azure_storage_connection_string=file:$OUT/az-cs")
AZF=(--target-setting "azure_storage_connection_string=file:$OUT/azfile-cs")

rows=()
run() { # label, command...: one sample; appends "label|wall|rss_kib|archive bytes"
  local label=$1; shift
  sync
  if ! /usr/bin/time -f '%e %M' -o "$OUT/time" "$@" >"$OUT/stdout" 2>"$OUT/err"; then
    log "$label failed:"; cat "$OUT/err" >&2; exit 1
  fi
  read -r wall rss <"$OUT/time"
  rows+=("$label|$wall|$rss")
}
lsb() { # label, target, settings...
  local label=$1 target=$2; shift 2
  run "$label" "$BIN" backup -b "$OUT/inv" --components-dir "$OUT/components" -t "$target" \
    --name-prefix lsbackup-objbench --progress never -q --no-agent --only objbench "$@"
  location=$(tail -n 1 "$OUT/stdout")
}
size_of() { # URL or path: the archive's size from `lsbackup list --json`
  local target=${1%/*} name=${1##*/}; shift
  "$BIN" list --json -t "$target" "$@" | python3 -c "import json,sys; print(next(b['size'] for b in json.load(sys.stdin) if b['name'] == sys.argv[1]))" "$name"
}

log "local directory ..."
lsb "lsbackup → local directory" "$OUT/local"
sizes=("$(stat -c %s "$location")")
rm -f "$OUT"/local/*
log "S3 (moto) ..."
lsb "lsbackup → s3:// (moto)" "s3://$(tbvar LSB_S3_BUCKET)/$PREFIX" "${S3[@]}"
sizes+=("$(size_of "$location" "${S3[@]}")")
"$BIN" verify "$location" "${S3[@]}" >/dev/null 2>"$OUT/err" || { log "verify $location failed:"; cat "$OUT/err" >&2; exit 1; }
log "Azure Blob (azurite) ..."
lsb "lsbackup → az:// (azurite)" "az://$(tbvar LSB_AZURE_CONTAINER)/$PREFIX" "${AZ[@]}"
sizes+=("$(size_of "$location" "${AZ[@]}")")
log "Azure Files (stand-in) ..."
lsb "lsbackup → azfile:// (stand-in)" "azfile://$(tbvar LSB_AZFILE_SHARE)/$(tbvar LSB_AZFILE_DIR)" "${AZF[@]}"
sizes+=("$(size_of "$location" "${AZF[@]}")")
"$PY" "$PROBE" az-empty "$(tbvar LSB_AZURE_CONTAINER)" "$PREFIX/" >/dev/null
log "OpenSSH way to S3 ..."
cat >"$OUT/upload.py" <<'EOF'
import os, sys, boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3", endpoint_url=os.environ["EP"], region_name=os.environ["RG"],
                  aws_access_key_id=open(os.environ["ID"]).read(),
                  aws_secret_access_key=open(os.environ["SK"]).read())
s3.upload_fileobj(sys.stdin.buffer, os.environ["BK"], os.environ["KY"],
                  Config=TransferConfig(multipart_chunksize=8 << 20, max_concurrency=2))
EOF
run "ssh tar, zstd -T0, boto3 → S3" env EP="$(tbvar LSB_S3_ENDPOINT)" RG="$(tbvar LSB_S3_REGION)" \
  ID="$OUT/s3-id" SK="$OUT/s3-secret" BK="$(tbvar LSB_S3_BUCKET)" KY="$PREFIX/pipeline.tar.zst" \
  bash -c "ssh -q -i $KEY -o UserKnownHostsFile=$KNOWN -p $SSH_PORT -o BatchMode=yes $SSH_USER@127.0.0.2 'sudo tar -C / -cf - ${DATA#/}' | zstd -q -T0 -3 | $PY $OUT/upload.py"
sizes+=("$("$PY" "$PROBE" s3-objects "$(tbvar LSB_S3_BUCKET)" "$PREFIX/pipeline" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["size"])')")

base_wall=$(echo "${rows[4]}" | cut -d'|' -f2)
s3_wall=$(echo "${rows[1]}" | cut -d'|' -f2)
printf '\n%s MiB input (%s, 16-64 MiB files, half random, half log text), one sample per row\n\n' \
  "$((input / 1048576))" "$DATA"
printf '| run | wall | peak RSS | archive |\n|---|---|---|---|\n'
for i in "${!rows[@]}"; do
  IFS='|' read -r label wall rss <<<"${rows[$i]}"
  printf '| %s | %s s | %s MiB | %s MiB |\n' "$label" "$wall" "$((rss / 1024))" "$((${sizes[$i]} / 1048576))"
done
printf '\nS3: OpenSSH way / lsbackup = %s× (wall time; ≥ 1 means lsbackup is faster)\n' \
  "$(awk -v a="$base_wall" -v b="$s3_wall" 'BEGIN { printf "%.2f", a / b }')"
