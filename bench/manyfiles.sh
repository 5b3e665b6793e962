#!/usr/bin/env bash
# Benchmark (not a test): a tree of many small files, where every entry costs lsbackup a record
# (path, size, sha256 in the manifest) and not bytes. lsbackup copying the tree against
# `ssh 'tar c' | zstd` on the same tree, then lsbackup verify and extract of its archive; peak
# RSS of each.
#
#   sudo bench/manyfiles.sh [FILES]     # default 200000 files of 20 bytes in 200 directories
#   LSB_BIN=/path/to/lsbackup bench/manyfiles.sh
#
# Prints wall time and peak RSS per row, the ratio baseline / lsbackup and lsbackup's peak RSS
# per thousand entries. The tree is cached under /var/lib/lsbackup-bench. Needs the test bed up
# (tests/testbed/up.sh) and a release build (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-200000}
TB=${LSB_TESTBED:-/tmp/lsbackup-testbed}
OUT=$(mktemp -d /tmp/lsbackup-many.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

[ -f "$TB/env" ] || { echo "bench/manyfiles.sh: no test bed ($TB/env); run tests/testbed/up.sh" >&2; exit 1; }
# The env file is KEY=value lines, some values not shell-safe: read only what is used here.
for v in LSB_SSH_PORT LSB_SSH_USER LSB_CLIENT_KEY LSB_KNOWN_HOSTS; do
  printf -v "$v" '%s' "$(sed -n "s/^$v=//p" "$TB/env")"
done
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
BIN=${LSB_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/lsbackup}
SSH="ssh -q -i $LSB_CLIENT_KEY -o UserKnownHostsFile=$LSB_KNOWN_HOSTS -p $LSB_SSH_PORT -o BatchMode=yes"

TREE=/var/lib/lsbackup-bench/many-$FILES
if [ ! -f "$TREE/.complete" ]; then
  rm -rf "$TREE"
  python3 - "$TREE" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
for i in range(n):
    d = os.path.join(root, f"d{i // per:04}")
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file-with-a-longish-name-{i % per:05}.txt"), "w") as f:
        f.write("x" * 20)
open(os.path.join(root, ".complete"), "w").close()
EOF
fi
tar -cf - -C "$TREE" . | cat >/dev/null # a warm page cache for both

mkdir -p "$OUT/components" "$OUT/build" "$OUT/t"
printf 'name: many\ndescription: many small files\ngroups: [bench]\nhosts: all\nsteps:\n  - name: files\n    copy: ["%s"]\n' \
  "$TREE" >"$OUT/components/many.yaml"
cat >"$OUT/build/inventory" <<EOF
[bench]
node1 ansible_host=127.0.0.2
[all:vars]
ansible_user=$LSB_SSH_USER
ansible_port=$LSB_SSH_PORT
ansible_become=true
ansible_ssh_private_key_file=$LSB_CLIENT_KEY
ansible_ssh_common_args='-o UserKnownHostsFile=$LSB_KNOWN_HOSTS'
EOF

timed() { # label, command...: prints "label wall_s rss_kib"
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$OUT/time" "$@" >"$OUT/stdout" 2>"$OUT/err" || {
    echo "$label failed:" >&2; cat "$OUT/err" >&2; exit 1
  }
  echo "$label $(cat "$OUT/time")"
}
base=$(timed baseline bash -c "$SSH $LSB_SSH_USER@127.0.0.2 'sudo tar -C / -cf - ${TREE#/}' | zstd -q -T0 -3 >$OUT/t/base.tar.zst")
rm -f "$OUT/t/base.tar.zst"
lsb=$(timed lsbackup "$BIN" backup -b "$OUT/build" --components-dir "$OUT/components" -t "$OUT/t" --progress never -q --no-agent)
archive=$(cat "$OUT/stdout")
ver=$(timed verify "$BIN" verify "$archive")
entries=$(sed -n 's/.*: ok (\([0-9]*\) entries.*/\1/p' "$OUT/stdout")
ext=$(timed extract "$BIN" extract "$archive" "$OUT/x")
rm -rf "$OUT/x"
read -r _ bw _ <<<"$base"
read -r _ lw lr <<<"$lsb"
read -r _ vw vr <<<"$ver"
read -r _ xw xr <<<"$ext"
printf 'many files: %s files of 20 bytes in %s directories, %s archive entries\n' "$FILES" $(((FILES + 999) / 1000)) "$entries"
printf '  ssh tar | zstd -T0        %7.2f s\n' "$bw"
printf '  lsbackup backup           %7.2f s   peak RSS %6.1f MiB (%.0f KiB per 1000 entries)\n' "$lw" "$(echo "$lr / 1024" | bc -l)" "$(echo "$lr * 1000 / $entries" | bc -l)"
printf '  lsbackup verify           %7.2f s   peak RSS %6.1f MiB (%.0f KiB per 1000 entries)\n' "$vw" "$(echo "$vr / 1024" | bc -l)" "$(echo "$vr * 1000 / $entries" | bc -l)"
printf '  lsbackup extract          %7.2f s   peak RSS %6.1f MiB (%.0f KiB per 1000 entries)\n' "$xw" "$(echo "$xr / 1024" | bc -l)" "$(echo "$xr * 1000 / $entries" | bc -l)"
printf '  ratio baseline / lsbackup  %.2f×\n' "$(echo "$bw / $lw" | bc -l)"
printf '  manifest sidecar          %7.1f MiB\n' "$(echo "$(stat -c %s "$archive.manifest.json") / 1048576" | bc -l)"
