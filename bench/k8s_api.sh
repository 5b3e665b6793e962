#!/usr/bin/env bash
# Benchmark (not a test): the kubernetes component's export of the API's resources on a cluster of
# NAMESPACES namespaces holding OBJECTS objects, served by the test bed's kube-apiserver stand-in
# (tests/testbed/standins/kube_apiserver.py, real kubectl in front of it).
#
#   sudo bench/k8s_api.sh [NAMESPACES] [OBJECTS]       # default 100 10000
#   LSB_BENCH_BIN=/path/to/lsbackup bench/k8s_api.sh    # another build (e.g. an older commit's)
#
# Loads the fixture into the running stand-in (POST /lsbackup-testbed/fixture: namespaces
# bench-000..., the objects spread over ConfigMaps, Secrets, Services, ServiceAccounts,
# Deployments, ReplicaSets, Pods, Roles, RoleBindings and PVCs, on top of the default data), runs
# `lsbackup backup --only kubernetes` (release build) against the test bed's Kubernetes inventory,
# prints wall time, peak RSS, API requests served during the run, the resources step's own time,
# entries and objects in the archive, then puts the stand-in's default data back (also on failure).
# The Kubernetes tests must not run meanwhile: they would see the fixture.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${1:-100}
OBJ=${2:-10000}
TB=${LSB_TESTBED:-/tmp/lsbackup-testbed}
OUT=$(mktemp -d /tmp/lsbackup-bench-k8s.XXXXXX)

tests/testbed/up.sh >/dev/null 2>"$OUT/up.err" ||
  echo "warning: tests/testbed/up.sh failed ($(tail -n 1 "$OUT/up.err")); going on if the kube-apiserver stand-in answers" >&2
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
if [ -n "${LSB_BENCH_BIN:-}" ]; then
  BIN=$LSB_BENCH_BIN
else
  cargo build --release --locked -q
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/lsbackup
fi
# the env file is KEY=VALUE lines, not shell: some values hold shell syntax on purpose (the hostile
# PV path), so it is read, never sourced
tbvar() { sed -n "s/^$1=//p" "$TB/env" | tail -n 1; }
LSB_KUBECONFIG=$(tbvar LSB_KUBECONFIG)
LSB_K8S_BUILD_DIR=$(tbvar LSB_K8S_BUILD_DIR)
kc() { kubectl --kubeconfig "$LSB_KUBECONFIG" --request-timeout=120s --cache-dir "$OUT/kube-cache" "$@"; }
stat() { kc get --raw /lsbackup-testbed/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
kc get --raw /version >/dev/null || { echo "the kube-apiserver stand-in does not answer" >&2; exit 1; }

restore() { kc delete --raw /lsbackup-testbed/fixture >/dev/null 2>&1 || echo "warning: could not restore the stand-in's default data" >&2; rm -rf "$OUT"; }
trap restore EXIT
echo "{\"namespaces\": $NS, \"objects\": $OBJ}" >"$OUT/fixture.json"
kc create --raw /lsbackup-testbed/fixture -f "$OUT/fixture.json" >/dev/null
held=$(stat objects)

mkdir -p "$OUT/t"
/usr/bin/time -f '%e %M' -o "$OUT/time" "$BIN" backup -b "$LSB_K8S_BUILD_DIR" --only kubernetes -t "$OUT/t" \
  --progress never -q --no-agent >"$OUT/archive" 2>"$OUT/err" || {
  code=$?
  [ "$code" = 2 ] || { echo "lsbackup failed (exit $code):" >&2; cat "$OUT/err" >&2; exit 1; }
}
requests=$(stat requests)
lists=$(stat lists)
read -r secs rss <"$OUT/time"
archive=$(cat "$OUT/archive")
tar --zstd -xf "$archive" -C "$OUT/t" manifest.json 'kubernetes/node2/resources'
read -r entries resources_s kubectl_runs failures < <(python3 - "$OUT/t/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
c = next(c for c in m["components"] if c["name"] == "kubernetes")
h = c["hosts"][0]
res = [x for x in h["commands"] if x.get("step") == "resources"]
entries = sum(1 for e in h["entries"] if "/resources/" in e["path"] and e["path"].endswith(".yaml"))
print(entries, "%.2f" % (sum(x["duration_ms"] for x in res) / 1000), len(res), len(c.get("errors", [])))
PY
)
objects=$(cat "$OUT/t/kubernetes/node2/resources/"bench-*.yaml | grep -c '^- ' || true)
size=$(du -cb "$OUT/t/kubernetes/node2/resources" | tail -n 1 | cut -f1)

echo
echo "kubernetes API export: $NS namespaces, $OBJ objects (stand-in holds $held with its default data); $(nproc) cores; $("$BIN" --version 2>/dev/null || echo lsbackup)"
printf '| lsbackup backup --only kubernetes | %s s | %s MiB peak RSS | %s API requests (%s lists) | resources step %s s in %s kubectl runs | %s resource entries, %s MiB | %s objects in bench-* files | %s failures |\n' \
  "$secs" "$((rss / 1024))" "$requests" "$lists" "$resources_s" "$kubectl_runs" "$entries" "$((size / 1048576))" "$objects" "$failures"
[ "$objects" = "$OBJ" ] || { echo "expected $OBJ objects in the bench-* namespace files, found $objects" >&2; exit 1; }
