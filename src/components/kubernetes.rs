//! The Kubernetes control plane of a kubeadm cluster, from the first reachable master: an etcd
//! snapshot, the PKI, kubeconfigs, static-pod manifests, kubeadm's config file and ConfigMap,
//! every listable API resource as YAML (one file per namespace, `_cluster.yaml` for the
//! cluster-scoped ones) and the PV/PVC definitions.
//!
//! `etcdctl`, `crictl` and `kubectl` stay remote commands (fixed [`Script`]s, every value a quoted
//! positional parameter); everything they print, and the etcd static-pod manifest, is parsed here
//! in Rust. Steps that need the API depend on one `kubernetes api` step: a missing kubeconfig or
//! an API that does not answer is one failure, the steps that needed it are recorded as skipped
//! because of it, and the etcd, PKI and file steps still run.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Native, NativeRef, leftovers};
use crate::archive::FailureKind;
use crate::engine::{Failed, HostCtx, StepError};
use crate::shell::{Script, quote, quote_words};

/// The declarative facts of the component (no steps: the backup is [`Kubernetes`]).
pub const SPEC: &str = r#"
name: kubernetes
description: etcd snapshot, PKI and kubeadm config, every API resource as YAML, PV/PVC definitions
groups: [kubernetes_master]
hosts: first
vars:
  # kubeconfig kubectl uses (cluster-admin); kubectl reads it on the host
  kubeconfig: /etc/kubernetes/admin.conf
  kubectl_timeout: 60s
  kubernetes_pki_dir: /etc/kubernetes/pki
  kubeadm_config_file: /etc/kubeadm/kubeadm-config.yml
  # etcd client endpoint(s) tried first (comma-separated); then the client URLs of the members
  # (`member list`) and of the etcd static pod's --initial-cluster (peer port 2380 -> 2379)
  etcd_endpoints: https://127.0.0.1:2379
  # kubeadm's etcd static-pod manifest (--data-dir, --initial-cluster)
  etcd_manifest: /etc/kubernetes/manifests/etcd.yaml
  # auto: the host's etcdctl if installed, else crictl exec into the etcd container;
  # host: only the host's etcdctl; crictl: only the etcd container's etcdctl
  etcd_snapshot_via: auto
  # where the snapshot is written before it is read (must be mounted into the etcd pod for
  # crictl); empty: the --data-dir of etcd_manifest, else /var/lib/etcd
  etcd_data_dir: ""
  # resource types left out of resources/ (space-separated, as `kubectl api-resources -o name`)
  kubernetes_resources_skip: events events.events.k8s.io
  # objects per request when kubectl lists a type across all namespaces (limit/continue paging)
  kubectl_chunk_size: "500"
not_covered:
  - >-
    data of persistent volumes (local and hostPath volumes: the kubernetes_volumes component;
    other types are named there as not covered)
  - container images and the node-local state of kubelet and the container runtime
  - etcd encryption keys outside /etc/kubernetes (secrets in the snapshot need the same encryption-provider-config to be read)
"#;

pub fn make() -> NativeRef {
    NativeRef(std::sync::Arc::new(Kubernetes))
}

pub struct Kubernetes;

/// Where kubeadm keeps kubeconfigs, manifests and its own files.
const KUBERNETES_DIR: &str = "/etc/kubernetes";
/// The etcd data dir when neither `etcd_data_dir` nor the manifest names one.
const DEFAULT_ETCD_DATA_DIR: &str = "/var/lib/etcd";
/// Prefix of the snapshot files written in the etcd data dir (removed by the cleanup).
const SNAPSHOT_PREFIX: &str = "lsbackup-etcd-snapshot-";

// --- remote scripts: fixed text, values as positional parameters ------------------------------

/// `NAME PATH` for each of the tools installed.
const TOOLS: &str = r#"for b in etcdctl crictl kubectl; do
  p=$(command -v "$b" 2>/dev/null) && printf '%s %s\n' "$b" "$p"
done
exit 0"#;

/// The running etcd container's id(s).
const CRICTL_PS: &str = "exec crictl ps --name '^etcd$' --state running -q";

/// etcdctl on the host (`$1` = host) or in the etcd container `$2` (`$1` = crictl).
const ETCDCTL: &str = r#"via=$1; id=$2; shift 2
if [ "$via" = host ]; then
  ETCDCTL_API=3; export ETCDCTL_API
  exec etcdctl "$@"
fi
exec crictl exec "$id" etcdctl "$@""#;

/// Exit 0 when `$1` is a regular file.
const IS_FILE: &str = r#"[ -f "$1" ]"#;
/// Exit 0 when `$1` exists and is not empty.
const NOT_EMPTY: &str = r#"[ -s "$1" ]"#;
const CAT: &str = r#"exec cat -- "$1""#;
/// The snapshot and etcdctl's partial file.
const RM_SNAPSHOT: &str = r#"rm -f -- "$1" "$1.part""#;
/// Named for the connection's holder (see [`leftovers`]).
const MKTEMP_CACHE: &str = concat!(
    leftovers::holder_sh!(),
    r#"exec mktemp -d "/tmp/lsbackup-kubectl.$lsb_holder.XXXXXX""#
);
/// The holder pid of the run's connection, as the leftovers sweep found it.
const HOLDER_VAR: &str = "k8s_holder";
const RM_CACHE: &str = r#"rm -rf -- "$1""#;
/// The names in directory `$1`, NUL-terminated (nothing when it does not exist).
const LIST_DIR: &str = r#"cd -- "$1" 2>/dev/null || exit 0
for f in *; do
  if [ -e "$f" ]; then printf '%s\0' "$f"; fi
done
exit 0"#;

/// kubectl with the kubeconfig `$1`, request timeout `$2`, cache dir `$3` (none when empty).
const KUBECTL: &str = r#"k=$1; t=$2; c=$3; shift 3
if [ -n "$c" ]; then set -- --cache-dir "$c" "$@"; fi
exec kubectl --kubeconfig "$k" --request-timeout "$t" "$@""#;

/// The API check: exit 3 when the kubeconfig `$1` does not exist, else the server's /version.
const KUBE_API: &str = r#"[ -e "$1" ] || exit 3
exec kubectl --kubeconfig "$1" --request-timeout "$2" get --raw /version"#;

/// Whether each resource type `$5...` lists (`$4`: `*` all namespaces, empty cluster-wide, else
/// that namespace): `TYPE\0EXIT\0STDERR\0` per type.
const PROBE_TYPES: &str = r#"k=$1; t=$2; c=$3; ns=$4; shift 4
kc() { kubectl --kubeconfig "$k" --request-timeout "$t" --cache-dir "$c" "$@"; }
for r in "$@"; do
  case $ns in
    '*') err=$(kc get "$r" --all-namespaces -o name 2>&1 >/dev/null) ;;
    '') err=$(kc get "$r" -o name 2>&1 >/dev/null) ;;
    *) err=$(kc get "$r" -n "$ns" -o name 2>&1 >/dev/null) ;;
  esac
  rc=$?
  printf '%s\0%s\0%s\0' "$r" "$rc" "$err"
done
exit 0"#;

// --- parsers (everything a host prints is read here) -----------------------------------------

/// What the etcd static-pod manifest tells: its `--data-dir` and `--initial-cluster`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EtcdManifest {
    pub data_dir: Option<String>,
    pub initial_cluster: Option<String>,
}

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    spec: Option<PodSpec>,
}

#[derive(Deserialize)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// The value of `--flag=VALUE` or `--flag VALUE` in a command line.
fn flag_value(argv: &[String], flag: &str) -> Option<String> {
    let eq = format!("{flag}=");
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let a = a.trim();
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v.to_string());
        }
        if a == flag {
            return it.next().map(|v| v.trim().to_string());
        }
    }
    None
}

/// Parse kubeadm's etcd static-pod manifest (YAML): the etcd container's (else the first
/// container's) `--data-dir` and `--initial-cluster`, from its command and args.
pub fn parse_etcd_manifest(text: &str) -> Result<EtcdManifest, String> {
    let pod: Pod = serde_saphyr::from_str(text).map_err(|e| {
        let e = e.to_string();
        format!("not a pod manifest: {}", e.lines().next().unwrap_or(""))
    })?;
    let containers = pod.spec.map(|s| s.containers).unwrap_or_default();
    let c = containers
        .iter()
        .find(|c| c.name.as_deref() == Some("etcd"))
        .or_else(|| containers.first());
    let Some(c) = c else {
        return Ok(EtcdManifest::default());
    };
    let argv: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
    Ok(EtcdManifest {
        data_dir: flag_value(&argv, "--data-dir").filter(|v| !v.is_empty()),
        initial_cluster: flag_value(&argv, "--initial-cluster").filter(|v| !v.is_empty()),
    })
}

/// A directory the snapshot may be written to: absolute, no `..`, no control characters (a
/// value with `$(...)`, quotes or spaces is only ever a quoted argument). Trailing `/` removed.
pub fn check_data_dir(d: &str) -> Result<String, String> {
    if d.chars().any(char::is_control) {
        return Err(format!("{d:?} holds control characters"));
    }
    if !d.starts_with('/') {
        return Err(format!("{d:?} is not an absolute path"));
    }
    if d.split('/').any(|p| p == "..") {
        return Err(format!("{d:?} holds `..`"));
    }
    let t = d.trim_end_matches('/');
    Ok(if t.is_empty() { "/".into() } else { t.into() })
}

/// An etcd client URL etcdctl may be given: `http(s)://host:port` (IPv6 in brackets), nothing
/// else (no spaces, commas, quotes, paths).
pub fn endpoint_ok(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(r) => {
            !r.is_empty()
                && r.len() < 256
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]_%".contains(c))
        }
        None => false,
    }
}

/// The configured endpoints (`a,b c`), each checked.
pub fn configured_endpoints(v: &str) -> Result<Vec<String>, String> {
    let eps: Vec<String> = v
        .split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if eps.is_empty() {
        return Err("etcd_endpoints is empty".into());
    }
    if let Some(bad) = eps.iter().find(|e| !endpoint_ok(e)) {
        return Err(format!(
            "etcd_endpoints: {bad:?} is not a client URL (https://HOST:PORT)"
        ));
    }
    Ok(eps)
}

/// The client URLs of `--initial-cluster=name=https://ip:2380,...`: each peer URL on port 2380
/// becomes the same host on 2379; anything else is left out.
pub fn initial_cluster_endpoints(ic: &str) -> Vec<String> {
    ic.split(',')
        .filter_map(|m| m.split_once('=').map(|(_, url)| url.trim()))
        .filter_map(|url| url.strip_suffix(":2380"))
        .map(|base| format!("{base}:2379"))
        .filter(|e| endpoint_ok(e))
        .collect()
}

#[derive(Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Member {
    #[serde(default, rename = "clientURLs")]
    client_urls: Vec<String>,
}

/// Every member's client URLs from `etcdctl member list -w json` (unusable ones left out).
pub fn parse_member_list(json: &[u8]) -> Result<Vec<String>, String> {
    let l: MemberList = serde_json::from_slice(json)
        .map_err(|e| format!("member list is not the JSON etcdctl prints: {e}"))?;
    Ok(l.members
        .into_iter()
        .flat_map(|m| m.client_urls)
        .map(|u| u.trim().to_string())
        .filter(|u| endpoint_ok(u))
        .collect())
}

/// Each value once, in first-seen order.
pub fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|e| seen.insert(e.clone())).collect()
}

/// etcdctl's error output reduced to its meaningful last line: not its JSON log lines (whose
/// `error` is used when nothing else is left) nor `Error: unhealthy cluster`.
pub fn etcdctl_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(l) = lines
        .iter()
        .rev()
        .find(|l| !l.starts_with('{') && **l != "Error: unhealthy cluster")
    {
        return l.to_string();
    }
    for l in lines.iter().rev() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l)
            && let Some(e) = v.get("error").and_then(|e| e.as_str())
        {
            return e.to_string();
        }
    }
    lines.last().map(|l| l.to_string()).unwrap_or_default()
}

/// The last non-empty line of a command's error output.
pub fn last_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// `etcdctl snapshot status -w json`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

pub fn parse_snapshot_status(json: &[u8]) -> Result<SnapshotStatus, String> {
    serde_json::from_slice(json)
        .map_err(|e| format!("snapshot status is not the JSON etcdctl prints: {e}"))
}

impl SnapshotStatus {
    /// The table `etcdctl snapshot status -w table` prints.
    pub fn table(&self) -> String {
        let cells = [
            format!("{:x}", self.hash),
            self.revision.to_string(),
            self.total_key.to_string(),
            self.total_size.to_string(),
        ];
        let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE (bytes)"];
        let widths: Vec<usize> = heads
            .iter()
            .zip(&cells)
            .map(|(h, c)| h.len().max(c.len()) + 2)
            .collect();
        let sep = format!(
            "+{}+\n",
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("+")
        );
        let row = |v: &[String]| {
            format!(
                "|{}|\n",
                v.iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:^w$}"))
                    .collect::<Vec<_>>()
                    .join("|")
            )
        };
        let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
        format!("{sep}{}{sep}{}{sep}", row(&heads), row(&cells))
    }
}

/// The server version from `etcdctl endpoint status -w json`.
pub fn parse_endpoint_version(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let first = v.as_array()?.first()?;
    first["Status"]["version"].as_str().map(str::to_string)
}

/// `etcdctl version` prints `etcdctl version: 3.4.23` first.
pub fn parse_etcdctl_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("etcdctl version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `gitVersion` of the server's `/version` (`client`: false) or of `kubectl version --client -o
/// json` (`clientVersion.gitVersion`).
pub fn parse_git_version(json: &[u8], client: bool) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
    let v = if client { &v["clientVersion"] } else { &v };
    v["gitVersion"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "no gitVersion in the answer".into())
}

/// `NODE=IMAGE ...` of the etcd pods (`kubectl get pods -l component=etcd -o json`).
pub fn parse_etcd_images(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let word = |s: &str| s.split_whitespace().collect::<Vec<_>>().join("_");
    let items: Vec<String> = v["items"]
        .as_array()?
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                word(p["spec"]["nodeName"].as_str().unwrap_or("?")),
                word(p["spec"]["containers"][0]["image"].as_str().unwrap_or("?"))
            )
        })
        .collect();
    (!items.is_empty()).then(|| items.join(" "))
}

/// A namespace name usable as a file name: a DNS-1123 label.
pub fn namespace_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

/// The namespaces of `kubectl get namespaces -o name` (`namespace/NAME` lines), and the lines
/// that are not usable names.
pub fn parse_namespaces(text: &str) -> (Vec<String>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match l.strip_prefix("namespace/") {
            Some(n) if namespace_ok(n) => ok.push(n.to_string()),
            _ => bad.push(l.to_string()),
        }
    }
    (dedup(ok), bad)
}

/// A resource type name as `kubectl api-resources -o name` prints it (`deployments.apps`).
pub fn type_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 253
        && !t.starts_with(['-', '.'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// The types of `kubectl api-resources -o name`, without those of `skip` (words separated by
/// spaces or commas), and the lines that are not type names.
pub fn parse_types(text: &str, skip: &str) -> (Vec<String>, Vec<String>) {
    let skip: Vec<&str> = skip
        .split([' ', ',', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .collect();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if skip.contains(&l) {
            continue;
        }
        if type_ok(l) {
            ok.push(l.to_string());
        } else {
            bad.push(l.to_string());
        }
    }
    (dedup(ok), bad)
}

/// The output of [`PROBE_TYPES`]: the types that failed to list, each with the last line of
/// kubectl's error.
pub fn parse_probe(out: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(out);
    let fields: Vec<&str> = text.split('\0').collect();
    fields
        .chunks(3)
        .filter(|c| c.len() == 3)
        .filter(|c| c[1].trim() != "0")
        .map(|c| {
            let err = last_line(c[2]);
            let err = if err.is_empty() {
                format!("exit status {}", c[1].trim())
            } else {
                err
            };
            (c[0].to_string(), err)
        })
        .collect()
}

/// The files and directories of `/etc/kubernetes` that are taken: kubeconfigs and other
/// `*.conf`/`*.yml`/`*.yaml`, `manifests`, `audit-policy` (NUL-separated names from
/// [`LIST_DIR`]; `tmp`, kubeadm's upgrade backups, and anything else are left out).
pub fn kubernetes_config_names(listing: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(listing);
    let mut names: Vec<String> = text
        .split('\0')
        .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
        .filter(|n| !n.chars().any(char::is_control))
        .filter(|n| {
            *n == "manifests"
                || *n == "audit-policy"
                || [".conf", ".yml", ".yaml"]
                    .iter()
                    .any(|s| n.len() > s.len() && n.ends_with(s))
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `kubectl_chunk_size`: a positive number of objects per list request.
pub fn check_chunk_size(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "kubectl_chunk_size {v:?} is not a positive number of objects"
        )),
    }
}

/// The objects of a kubectl JSON `List` split by `metadata.namespace`: for each namespace the
/// YAML of its items (each a `- ` sequence entry, in the order of the listing) and their count.
#[derive(Debug, Default)]
pub struct SplitList {
    pub namespaces: BTreeMap<String, (String, usize)>,
    /// Items left out: without a namespace, or with one that is not a usable name.
    pub left_out: Vec<String>,
}

impl SplitList {
    fn push(&mut self, item: serde_json::Value) -> Result<(), String> {
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if !namespace_ok(ns) {
            let what = |p: &str| {
                item.pointer(p)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            };
            self.left_out.push(format!(
                "{} {:?} in namespace {ns:?}",
                what("/kind"),
                what("/metadata/name")
            ));
            return Ok(());
        }
        let yaml = serde_saphyr::to_string(&[&item])
            .map_err(|e| format!("writing an item as YAML: {e}"))?;
        let entry = self
            .namespaces
            .entry(ns.to_string())
            .or_insert_with(|| (String::new(), 0));
        entry.0.push_str(&yaml);
        if !yaml.ends_with('\n') {
            entry.0.push('\n');
        }
        entry.1 += 1;
        Ok(())
    }

    /// The YAML `List` of namespace `ns` (an empty one when it holds nothing), as
    /// `kubectl get -o yaml` lays a list out; the items' text is taken out of `self`.
    pub fn take_yaml(&mut self, ns: &str) -> String {
        let (items, _) = self.namespaces.remove(ns).unwrap_or_default();
        list_yaml(&items)
    }
}

/// A `List` around YAML sequence entries (`- ...` lines; empty: no items).
pub fn list_yaml(items: &str) -> String {
    let mut out = String::with_capacity(items.len() + 64);
    out.push_str("apiVersion: v1\n");
    if items.is_empty() {
        out.push_str("items: []\n");
    } else {
        out.push_str("items:\n");
        out.push_str(items);
    }
    out.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n");
    out
}

/// Read a kubectl JSON `List` (`{"apiVersion": "v1", "items": [...], "kind": "List", ...}`)
/// from `r` item by item: only one item is held as JSON at a time, each is kept as YAML under
/// its namespace.
pub fn split_list<R: std::io::Read>(r: R) -> Result<SplitList, String> {
    use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

    struct ListSeed<'a>(&'a mut SplitList);
    struct ItemsSeed<'a>(&'a mut SplitList);

    impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
        type Value = bool;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for ListSeed<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a Kubernetes List object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut items = false;
            while let Some(key) = map.next_key::<String>()? {
                if key == "items" && !items {
                    map.next_value_seed(ItemsSeed(&mut *self.0))?;
                    items = true;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(items)
        }
    }
    impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for ItemsSeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("the items of a List")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            Ok(()) // "items": null
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<serde_json::Value>()? {
                self.0.push(item).map_err(A::Error::custom)?;
            }
            Ok(())
        }
    }

    let mut split = SplitList::default();
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(256 * 1024, r));
    let has_items = ListSeed(&mut split)
        .deserialize(&mut de)
        .and_then(|items| de.end().map(|_| items))
        .map_err(|e| format!("kubectl's JSON list: {e}"))?;
    if !has_items {
        return Err("kubectl's JSON has no items: not a List".into());
    }
    Ok(split)
}

// --- the backup --------------------------------------------------------------------------------

/// How etcdctl is run.
enum Etcdctl {
    Host { path: String },
    Container { id: String },
}

impl Etcdctl {
    fn script(&self, args: &[String]) -> Script {
        match self {
            Etcdctl::Host { .. } => Script::new(ETCDCTL).arg("host").arg(""),
            Etcdctl::Container { id } => Script::new(ETCDCTL).arg("crictl").arg(id.clone()),
        }
        .args(args.iter().cloned())
    }

    fn shown(&self, args: &[String]) -> String {
        match self {
            Etcdctl::Host { .. } => format!("etcdctl {}", quote_words(args)),
            Etcdctl::Container { id } => {
                format!("crictl exec {} etcdctl {}", quote(id), quote_words(args))
            }
        }
    }

    /// Run etcdctl with `args` as a step of `h` (recorded as [`Etcdctl::shown`]).
    async fn run(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        args: &[String],
    ) -> Result<crate::transport::Output, StepError> {
        h.run(step, &self.script(args), None, Some(&self.shown(args)))
            .await
    }

    fn how(&self) -> String {
        match self {
            Etcdctl::Host { path } => format!("host etcdctl {path}"),
            Etcdctl::Container { id } => format!("crictl exec in etcd container {}", short(id)),
        }
    }

    fn version_label(&self, v: &str) -> String {
        match self {
            Etcdctl::Host { path } => format!("{v} (host: {path})"),
            Etcdctl::Container { id } => {
                format!("{v} (crictl exec in etcd container {})", short(id))
            }
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

/// kubectl with the component's kubeconfig, timeout and discovery cache.
#[derive(Clone)]
struct Kubectl {
    kubeconfig: String,
    timeout: String,
    cache: String,
}

impl Kubectl {
    fn script(&self, args: &[String]) -> Script {
        Script::new(KUBECTL)
            .arg(self.kubeconfig.clone())
            .arg(self.timeout.clone())
            .arg(self.cache.clone())
            .args(args.iter().cloned())
    }

    fn shown(&self, args: &[String]) -> String {
        let mut s = format!(
            "kubectl --kubeconfig {} --request-timeout {}",
            quote(&self.kubeconfig),
            quote(&self.timeout)
        );
        if !self.cache.is_empty() {
            s.push_str(&format!(" --cache-dir {}", quote(&self.cache)));
        }
        format!("{s} {}", quote_words(args))
    }

    async fn run(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        args: &[&str],
    ) -> Result<crate::transport::Output, StepError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        h.run(step, &self.script(&args), None, Some(&self.shown(&args)))
            .await
    }

    async fn stream(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        args: &[&str],
        rel: &str,
    ) -> Result<(), StepError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        h.stream(
            step,
            &self.script(&args),
            None,
            rel,
            Some(&self.shown(&args)),
        )
        .await
    }

    /// Run kubectl and keep its whole stdout in a spool on this machine (it must exit 0).
    async fn spooled(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        args: &[String],
    ) -> Result<std::fs::File, StepError> {
        h.run_spooled(step, &self.script(args), None, Some(&self.shown(args)))
            .await
            .map(|(f, _)| f)
    }

    /// Which of `types` fail to list in `ns` (`*`: all namespaces, "": cluster-wide).
    async fn failing_types(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        ns: &str,
        types: &[String],
    ) -> Result<Vec<(String, String)>, StepError> {
        let script = Script::new(PROBE_TYPES)
            .arg(self.kubeconfig.clone())
            .arg(self.timeout.clone())
            .arg(self.cache.clone())
            .arg(ns)
            .args(types.iter().cloned());
        let scope = match ns {
            "*" => " --all-namespaces".to_string(),
            "" => String::new(),
            n => format!(" -n {}", quote(n)),
        };
        let shown = format!(
            "for each type: {}",
            self.shown(&["get".into(), format!("TYPE{scope} -o name")])
        );
        let out = h.run_ok(step, &script, None, Some(&shown)).await?;
        Ok(parse_probe(&out.stdout))
    }
}

fn tools_of(out: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, p)| (n.to_string(), p.trim().to_string()))
        .collect()
}

/// The kubectl steps that need the API, in order: skipped together when it does not answer.
const API_STEPS: &[&str] = &[
    "kubeadm-config ConfigMap",
    "api resources",
    "resources listable",
    "resources",
    "persistent volumes",
    "persistent volume claims",
];

#[async_trait::async_trait]
impl Native for Kubernetes {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let v = |n: &str| vars.get(n).map(String::as_str).unwrap_or("");
        let data_dir = if v("etcd_data_dir").is_empty() {
            format!(
                "the --data-dir of {}, else {DEFAULT_ETCD_DATA_DIR}",
                v("etcd_manifest")
            )
        } else {
            v("etcd_data_dir").to_string()
        };
        let kubectl = format!(
            "kubectl --kubeconfig {} --request-timeout {}",
            quote(v("kubeconfig")),
            quote(v("kubectl_timeout"))
        );
        vec![
            format!(
                "etcd snapshot: run `etcdctl snapshot save` (etcd_snapshot_via {}: the host's etcdctl, else `crictl exec` into the etcd container) from the first healthy of {}, the members `member list` reports and the --initial-cluster of {}; checked with `snapshot status`; written in {data_dir}, then read -> etcd/snapshot.db, etcd/snapshot-status.txt",
                v("etcd_snapshot_via"),
                v("etcd_endpoints"),
                v("etcd_manifest"),
            ),
            format!("pki: copy {}", quote(v("kubernetes_pki_dir"))),
            format!(
                "kubernetes config: copy {KUBERNETES_DIR}/*.conf *.yml *.yaml manifests audit-policy (those present), {}",
                quote(v("kubeadm_config_file"))
            ),
            format!(
                "kubernetes api: `{kubectl} get --raw /version` (the steps below need it; when it fails they are skipped)"
            ),
            "kubeadm-config ConfigMap: `kubectl -n kube-system get configmap kubeadm-config -o yaml` -> kubeadm/kubeadm-config-configmap.yaml".into(),
            "api resources: `kubectl api-resources -o wide` (fresh discovery cache in /tmp/lsbackup-kubectl.*) -> resources/api-resources.txt".into(),
            format!(
                "resources: every type `kubectl api-resources --verbs=list` names except {}: the namespaced ones listed once across all namespaces (`kubectl get TYPES --all-namespaces -o json --chunk-size={}`, split by namespace here) -> resources/<namespace>.yaml; the cluster-scoped ones (`kubectl get TYPES -o yaml`) -> resources/_cluster.yaml",
                quote(v("kubernetes_resources_skip")),
                quote(v("kubectl_chunk_size"))
            ),
            "persistent volumes: `kubectl get persistentvolumes -o yaml`, `kubectl get persistentvolumeclaims -A -o yaml` -> volumes/persistentvolumes.yaml, volumes/persistentvolumeclaims.yaml".into(),
            "cleanup: remove the snapshot file and the kubectl cache".into(),
            "first: removes the /tmp/lsbackup-kubectl.HOLDER.* dirs and <etcd data dir>/lsbackup-etcd-snapshot-*-HOLDER.db files (root's, not symlinks) whose run's connection (HOLDER) is gone".into(),
        ]
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        h.step("leftovers");
        let data_dir = match h.var("etcd_data_dir").trim() {
            "" => DEFAULT_ETCD_DATA_DIR.to_string(),
            d => d.to_string(),
        };
        let kinds = [
            leftovers::Kind {
                dir: "/tmp",
                glob: "lsbackup-kubectl.*",
                file_type: 'd',
                parse: |name| {
                    cache_holder(name).map(|holder| leftovers::Found {
                        holder,
                        marks: None,
                    })
                },
            },
            leftovers::Kind {
                dir: &data_dir,
                glob: "lsbackup-etcd-snapshot-*",
                file_type: 'f',
                parse: |name| {
                    snapshot_holder(name).map(|holder| leftovers::Found {
                        holder,
                        marks: None,
                    })
                },
            },
        ];
        match leftovers::sweep(h, "leftovers", &kinds).await {
            Ok(s) => h.set_var(HOLDER_VAR, s.holder.to_string()),
            Err(e) => h.optional_failed("leftovers", &e),
        }
        // Independent parts at once, each over its own channels of the host's session: the
        // files; and once the tools are known, the API and the etcd snapshot.
        let (mut t, mut api, mut etcd, mut files) = (h.fork(), h.fork(), h.fork(), h.fork());
        tokio::join!(
            async {
                let tools = t
                    .run(
                        "tools",
                        &Script::new(TOOLS),
                        None,
                        Some("command -v etcdctl crictl kubectl"),
                    )
                    .await;
                match tools {
                    Ok(o) => {
                        let tools = tools_of(&o.stdout);
                        tokio::join!(api_part(&mut api, &tools), etcd_part(&mut etcd, &tools));
                    }
                    Err(e) => t.fail("tools", e),
                }
            },
            files_part(&mut files),
        );
        h.join_all([t, api, etcd, files]);
        Ok(())
    }

    async fn cleanup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let snap = h.var("etcd_snapshot").to_string();
        let cache = h.var("kubectl_cache").to_string();
        let jobs = [
            (!snap.is_empty()).then(|| {
                (
                    "remove etcd snapshot",
                    Script::new(RM_SNAPSHOT).arg(snap.clone()),
                    format!("rm -f {} {}", quote(&snap), quote(&format!("{snap}.part"))),
                )
            }),
            (!cache.is_empty()).then(|| {
                (
                    "remove kubectl cache",
                    Script::new(RM_CACHE).arg(cache.clone()),
                    format!("rm -rf {}", quote(&cache)),
                )
            }),
        ];
        // at once, each on its own channel
        let done =
            futures::future::join_all(jobs.into_iter().flatten().map(|(step, script, shown)| {
                let mut b = h.fork();
                async move {
                    let r = b.run_ok(step, &script, None, Some(&shown)).await;
                    (b, r.err().map(|e| e.at(step)))
                }
            }))
            .await;
        let mut errors: Vec<Failed> = Vec::new();
        for (b, e) in done {
            h.join(b);
            errors.extend(e);
        }
        let last = errors.pop();
        for f in errors {
            h.fail(&format!("cleanup {}", f.step), f.error);
        }
        match last {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

/// The API: its check (kubectl's own version and the API's, which every kubectl step needs),
/// with a fresh discovery cache made at the same time, then every step that needs it.
async fn api_part(h: &mut HostCtx<'_>, tools: &BTreeMap<String, String>) {
    let mut mk = h.fork();
    let (check, cache) = tokio::join!(api_check(h, tools), async {
        if tools.contains_key("kubectl") {
            kubectl_cache(&mut mk).await
        } else {
            String::new()
        }
    });
    h.join(mk);
    match check {
        Ok(mut kc) => {
            kc.cache = cache;
            api_steps(h, &kc).await
        }
        Err(cause) => {
            for s in API_STEPS {
                h.fail(
                    s,
                    StepError::skipped(format!("not run: {cause} (see step kubernetes api)")),
                );
            }
        }
    }
}

async fn etcd_part(h: &mut HostCtx<'_>, tools: &BTreeMap<String, String>) {
    h.step("etcd snapshot");
    if let Err(e) = etcd_snapshot(h, tools).await {
        h.fail("etcd snapshot", e);
    }
}

/// The PKI, then the kubeconfigs, manifests and kubeadm's files.
async fn files_part(h: &mut HostCtx<'_>) {
    h.step("pki");
    let pki = h.var("kubernetes_pki_dir").to_string();
    if let Err(e) = h.copy("pki", &[pki], false).await {
        h.fail("pki", e);
    }
    h.step("kubernetes config");
    if let Err(e) = kubernetes_config(h).await {
        h.fail("kubernetes config", e);
    }
}

/// `kubernetes api`: the kubeconfig is there and the API answers `/version`. Records the
/// versions `kubectl` and `kubernetes`. Err: the one failure (recorded), as the cause the
/// dependent steps name.
async fn api_check(
    h: &mut HostCtx<'_>,
    tools: &BTreeMap<String, String>,
) -> Result<Kubectl, String> {
    const STEP: &str = "kubernetes api";
    h.step(STEP);
    let kc = Kubectl {
        kubeconfig: h.var("kubeconfig").to_string(),
        timeout: h.var("kubectl_timeout").to_string(),
        cache: String::new(),
    };
    if !tools.contains_key("kubectl") {
        let e = StepError::new(
            FailureKind::MissingTool,
            "kubectl is not installed on the host",
        );
        h.fail(STEP, e);
        return Err("kubectl is not installed".into());
    }
    // kubectl's version and the API's at once
    let script = Script::new(KUBE_API).arg(kc.kubeconfig.clone()).arg("10s");
    let shown = format!(
        "kubectl --kubeconfig {} --request-timeout 10s get --raw /version",
        quote(&kc.kubeconfig)
    );
    let (mut cv, mut sv) = (h.fork(), h.fork());
    let (client, server) = tokio::join!(
        kc.run(&mut cv, STEP, &["version", "--client", "-o", "json"]),
        sv.run(STEP, &script, None, Some(&shown)),
    );
    h.join_all([cv, sv]);
    if let Ok(out) = client
        && out.exit.success()
        && let Ok(v) = parse_git_version(&out.stdout, true)
    {
        h.version("kubectl", &v);
    }
    let r = match server {
        Err(e) => Err(e),
        Ok(out) if out.exit.code == Some(3) => Err(StepError::config(format!(
            "no kubeconfig {} on this host (set kubernetes.kubeconfig)",
            kc.kubeconfig
        ))),
        Ok(out) if !out.exit.success() => {
            let e = StepError::command(&out.exit);
            Err(StepError::new(
                if e.kind == FailureKind::MissingTool {
                    e.kind
                } else {
                    FailureKind::Api
                },
                format!(
                    "the API does not answer: {}",
                    last_line(&out.exit.stderr_tail)
                ),
            ))
        }
        Ok(out) => parse_git_version(&out.stdout, false)
            .map_err(|e| StepError::bad_data(format!("/version: {e}"))),
    };
    match r {
        Ok(v) => {
            h.version("kubernetes", &v);
            Ok(kc)
        }
        Err(e) => {
            let cause = if e.kind == FailureKind::Config {
                format!("no kubeconfig {}", kc.kubeconfig)
            } else {
                "the kubernetes API does not answer".to_string()
            };
            h.fail(STEP, e);
            Err(cause)
        }
    }
}

/// How etcdctl runs on this host (`etcd_snapshot_via`).
async fn etcdctl_for(
    h: &mut HostCtx<'_>,
    tools: &BTreeMap<String, String>,
) -> Result<Etcdctl, StepError> {
    const STEP: &str = "etcd snapshot";
    let via = h.var("etcd_snapshot_via").trim().to_string();
    let missing = |m: &str| StepError::new(FailureKind::MissingTool, m);
    let host = match via.as_str() {
        "auto" => tools.contains_key("etcdctl"),
        "host" => {
            if !tools.contains_key("etcdctl") {
                return Err(missing(
                    "etcdctl is not installed on the host (etcd_snapshot_via=host)",
                ));
            }
            true
        }
        "crictl" => false,
        other => {
            return Err(StepError::config(format!(
                "etcd_snapshot_via must be auto, host or crictl (not {other:?})"
            )));
        }
    };
    if host {
        return Ok(Etcdctl::Host {
            path: tools["etcdctl"].clone(),
        });
    }
    if !tools.contains_key("crictl") {
        return Err(if via == "auto" {
            missing("no etcdctl on the host and no crictl to run the etcd container's own etcdctl")
        } else {
            missing("crictl is not installed on the host (etcd_snapshot_via=crictl)")
        });
    }
    let out = h.run(STEP, &Script::new(CRICTL_PS), None, None).await?;
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string);
    match id {
        Some(id) if out.exit.success() && id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(Etcdctl::Container { id })
        }
        Some(id) if out.exit.success() => Err(StepError::bad_data(format!(
            "crictl ps printed {id:?}, not a container id"
        ))),
        _ => {
            let why = last_line(&out.exit.stderr_tail);
            Err(StepError::new(
                if out.exit.success() {
                    FailureKind::CommandFailed
                } else {
                    StepError::command(&out.exit).kind
                },
                format!(
                    "no running etcd container on this host (crictl ps --name ^etcd$ found none){}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                ),
            ))
        }
    }
}

/// The etcd snapshot: the first healthy member, `snapshot save` into the data dir, `snapshot
/// status`, then the file streamed into `etcd/snapshot.db` (the cleanup removes it). Steps that
/// do not need each other's answers run at once, each on its own channel.
async fn etcd_snapshot(
    h: &mut HostCtx<'_>,
    tools: &BTreeMap<String, String>,
) -> Result<(), StepError> {
    const STEP: &str = "etcd snapshot";
    let configured = configured_endpoints(h.var("etcd_endpoints")).map_err(StepError::config)?;
    let ectl = etcdctl_for(h, tools).await?;

    // at once: etcdctl's version (for the manifest), whether kubeadm's etcd CA is there (TLS),
    // and the static-pod manifest (data dir and the members of --initial-cluster)
    let pki = h
        .var("kubernetes_pki_dir")
        .trim_end_matches('/')
        .to_string();
    let ca = format!("{pki}/etcd/ca.crt");
    let manifest_path = h.var("etcd_manifest").to_string();
    let version_args = ["version".to_string()];
    let ca_script = Script::new(IS_FILE).arg(ca.clone());
    let ca_shown = format!("test -f {}", quote(&ca));
    let (mut v, mut c, mut m) = (h.fork(), h.fork(), h.fork());
    let (version, ca_found, manifest) = tokio::join!(
        ectl.run(&mut v, STEP, &version_args),
        c.run(STEP, &ca_script, None, Some(&ca_shown)),
        m.read_file(STEP, &manifest_path, None),
    );
    h.join_all([v, c, m]);
    let out = version?;
    if out.exit.success()
        && let Some(v) = parse_etcdctl_version(&String::from_utf8_lossy(&out.stdout))
    {
        h.version("etcdctl", &ectl.version_label(&v));
    }
    let tls: Vec<String> = if ca_found?.exit.success() {
        vec![
            format!("--cacert={ca}"),
            format!("--cert={pki}/etcd/healthcheck-client.crt"),
            format!("--key={pki}/etcd/healthcheck-client.key"),
        ]
    } else {
        vec![]
    };
    let manifest = match manifest? {
        None => EtcdManifest::default(),
        Some(bytes) => match parse_etcd_manifest(&String::from_utf8_lossy(&bytes)) {
            Ok(m) => m,
            Err(e) => {
                h.note(&format!("etcd manifest {manifest_path}: {e}"));
                EtcdManifest::default()
            }
        },
    };
    let data_dir = match h.var("etcd_data_dir").trim() {
        "" => match &manifest.data_dir {
            Some(d) => check_data_dir(d).map_err(|e| {
                StepError::bad_data(format!(
                    "the --data-dir of {manifest_path} {e}: set etcd_data_dir"
                ))
            })?,
            None => DEFAULT_ETCD_DATA_DIR.to_string(),
        },
        d => check_data_dir(d).map_err(|e| StepError::config(format!("etcd_data_dir {e}")))?,
    };

    // candidates: the configured endpoints, every member's client URLs, --initial-cluster; the
    // first configured endpoint's health is asked at the same time as the member list
    let timeouts = [
        "--dial-timeout=5s".to_string(),
        "--command-timeout=10s".into(),
    ];
    let with = |ep: &str, cmd: &[&str]| -> Vec<String> {
        let mut args = timeouts.to_vec();
        args.push(format!("--endpoints={ep}"));
        args.extend(tls.iter().cloned());
        args.extend(cmd.iter().map(|s| s.to_string()));
        args
    };
    let health = |ep: &str| with(ep, &["endpoint", "health"]);
    let first = configured[0].clone();
    let (mut ml, mut fh) = (h.fork(), h.fork());
    let first_args = health(&first);
    let (members, first_health) = tokio::join!(
        async {
            let mut urls = Vec::new();
            for ep in &configured {
                let args = with(ep, &["member", "list", "-w", "json"]);
                let out = ectl.run(&mut ml, STEP, &args).await?;
                if out.exit.success() {
                    match parse_member_list(&out.stdout) {
                        Ok(u) => {
                            urls = u;
                            break;
                        }
                        Err(e) => ml.note(&format!("etcd member list from {ep}: {e}")),
                    }
                }
            }
            Ok::<_, StepError>(urls)
        },
        async { ectl.run(&mut fh, STEP, &first_args).await },
    );
    h.join_all([ml, fh]);
    let mut cands = configured.clone();
    cands.extend(members?);
    if let Some(ic) = &manifest.initial_cluster {
        cands.extend(initial_cluster_endpoints(ic));
    }
    let cands = dedup(cands);

    let mut first_health = Some(first_health?);
    let mut chosen = None;
    let mut last_err = String::new();
    for ep in &cands {
        let out = match first_health.take().filter(|_| *ep == first) {
            Some(out) => out,
            None => {
                let args = health(ep);
                ectl.run(h, STEP, &args).await?
            }
        };
        if out.exit.success() {
            chosen = Some(ep.clone());
            break;
        }
        let e = etcdctl_error(&out.exit.stderr_tail);
        last_err = if e.is_empty() {
            StepError::command(&out.exit).cause
        } else {
            e
        };
    }
    let Some(chosen) = chosen else {
        return Err(StepError::new(
            FailureKind::Api,
            format!(
                "no healthy etcd member (tried {}): {last_err}",
                cands.join(" ")
            ),
        ));
    };

    // at once: the server's version, and the snapshot saved into the data dir (kubeadm mounts
    // it into the etcd pod at the same path)
    let ts = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let holder: u32 = h.var(HOLDER_VAR).parse().unwrap_or(0);
    let snap = format!(
        "{}/{SNAPSHOT_PREFIX}{ts}-{holder}.db",
        if data_dir == "/" { "" } else { &data_dir },
    );
    h.set_var("etcd_snapshot", snap.clone());
    let status_args = with(&chosen, &["endpoint", "status", "-w", "json"]);
    let save_args = vec![
        "--dial-timeout=10s".to_string(),
        format!("--endpoints={chosen}"),
    ]
    .into_iter()
    .chain(tls.iter().cloned())
    .chain(["snapshot".into(), "save".into(), snap.clone()])
    .collect::<Vec<_>>();
    let (mut es, mut sv) = (h.fork(), h.fork());
    let (status_out, saved) = tokio::join!(
        async { ectl.run(&mut es, STEP, &status_args).await },
        async { ectl.run(&mut sv, STEP, &save_args).await },
    );
    h.join_all([es, sv]);
    if let Ok(out) = status_out
        && out.exit.success()
        && let Some(v) = parse_endpoint_version(&out.stdout)
    {
        h.version("etcd", &v);
    }
    let out = saved?;
    if !out.exit.success() {
        return Err(StepError::new(
            FailureKind::CommandFailed,
            format!(
                "snapshot save from {chosen} failed: {}",
                etcdctl_error(&out.exit.stderr_tail)
            ),
        ));
    }
    let args: Vec<String> = vec![
        "snapshot".into(),
        "status".into(),
        snap.clone(),
        "-w".into(),
        "json".into(),
    ];
    let out = ectl.run(h, STEP, &args).await?;
    if !out.exit.success() {
        // an empty file (etcdctl could not write into the data dir) says more than its error
        if !h
            .run(
                STEP,
                &Script::new(NOT_EMPTY).arg(snap.clone()),
                None,
                Some(&format!("test -s {}", quote(&snap))),
            )
            .await?
            .exit
            .success()
        {
            return Err(StepError::bad_data(format!(
                "snapshot save from {chosen} wrote nothing to {snap} (is {data_dir} mounted into the etcd pod?)"
            )));
        }
        return Err(StepError::new(
            FailureKind::CommandFailed,
            format!(
                "snapshot status of {snap} failed: {}",
                etcdctl_error(&out.exit.stderr_tail)
            ),
        ));
    }
    let status = parse_snapshot_status(&out.stdout).map_err(StepError::bad_data)?;

    h.stream(
        STEP,
        &Script::new(CAT).arg(snap.clone()),
        None,
        "etcd/snapshot.db",
        Some(&format!("cat {}", quote(&snap))),
    )
    .await?;
    let info = format!(
        "member: {chosen}\netcdctl: {}\nendpoints considered: {}\n{}",
        ectl.how(),
        cands.join(" "),
        status.table()
    );
    h.add_bytes("etcd/snapshot-status.txt", info.as_bytes())
        .await?;
    Ok(())
}

/// `/etc/kubernetes`'s kubeconfigs, manifests and kubeadm's files, and `kubeadm_config_file`.
async fn kubernetes_config(h: &mut HostCtx<'_>) -> Result<(), StepError> {
    const STEP: &str = "kubernetes config";
    let out = h
        .run_ok(
            STEP,
            &Script::new(LIST_DIR).arg(KUBERNETES_DIR),
            None,
            Some(&format!("ls {KUBERNETES_DIR}")),
        )
        .await?;
    let mut paths: Vec<String> = kubernetes_config_names(&out.stdout)
        .into_iter()
        .map(|n| format!("{KUBERNETES_DIR}/{n}"))
        .collect();
    let kubeadm = h.var("kubeadm_config_file").to_string();
    if !kubeadm.is_empty() && !paths.contains(&kubeadm) {
        paths.push(kubeadm);
    }
    h.copy(STEP, &paths, false).await.map(|_| ())
}

/// The holder pid in a kubectl cache dir's name (`lsbackup-kubectl.HOLDER.XXXXXX`).
fn cache_holder(name: &str) -> Option<u32> {
    leftovers::mktemp_name(name, "lsbackup-kubectl.", 6)
}

/// The holder pid in an etcd snapshot file's name (`lsbackup-etcd-snapshot-<UTC time>-HOLDER.db`,
/// or etcdctl's `.db.part` of it).
fn snapshot_holder(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(SNAPSHOT_PREFIX)?;
    let rest = rest
        .strip_suffix(".db.part")
        .or_else(|| rest.strip_suffix(".db"))?;
    let (ts, pid) = rest.split_once('-')?;
    let t = ts.as_bytes();
    let ts_ok = t.len() == 16
        && t[..8].iter().all(u8::is_ascii_digit)
        && t[8] == b'T'
        && t[9..15].iter().all(u8::is_ascii_digit)
        && t[15] == b'Z';
    (ts_ok && !pid.is_empty() && pid.len() <= 10 && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// A fresh kubectl discovery cache (a stale one would miss CRDs created since), kept for the
/// cleanup, which removes it: its path, or "" (kubectl then uses its default cache).
async fn kubectl_cache(h: &mut HostCtx<'_>) -> String {
    match h
        .run_ok("kubectl cache", &Script::new(MKTEMP_CACHE), None, None)
        .await
    {
        Ok(out) => {
            let dir = out.stdout_text();
            if dir.strip_prefix("/tmp/").and_then(cache_holder).is_some() {
                h.set_var("kubectl_cache", dir.clone());
                return dir;
            }
            h.note(&format!(
                "kubectl cache: mktemp printed {dir:?}; kubectl uses its default cache"
            ));
        }
        Err(e) => h.optional_failed("kubectl cache", &e),
    }
    String::new()
}

/// Every step that needs the API, once it answered, at once (each on its own channel): the
/// etcd image of each master's etcd pod (masters may differ), the kubeadm-config ConfigMap,
/// api-resources, the listable types then the resources, the PVs, the PVCs.
async fn api_steps(h: &mut HostCtx<'_>, kc: &Kubectl) {
    const CM: &str = "kubeadm-config ConfigMap";
    let (mut img, mut cm) = (h.fork(), h.fork());
    // at once: api-resources, the listable types then the resources, the PVs, the PVCs
    let (mut ar, mut rs, mut pv, mut pvc) = (h.fork(), h.fork(), h.fork(), h.fork());
    let (images, config_map, _, _, _, _) = tokio::join!(
        kc.run(
            &mut img,
            "kubernetes api",
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-l",
                "component=etcd",
                "-o",
                "json",
            ],
        ),
        async {
            cm.step(CM);
            kc.stream(
                &mut cm,
                CM,
                &[
                    "-n",
                    "kube-system",
                    "get",
                    "configmap",
                    "kubeadm-config",
                    "-o",
                    "yaml",
                ],
                "kubeadm/kubeadm-config-configmap.yaml",
            )
            .await
        },
        async {
            ar.step("api resources");
            if let Err(e) = kc
                .stream(
                    &mut ar,
                    "api resources",
                    &["api-resources", "-o", "wide"],
                    "resources/api-resources.txt",
                )
                .await
            {
                ar.fail("api resources", e);
            }
        },
        async {
            rs.step("resources listable");
            let mut ns = rs.fork();
            let (types, namespaces) = tokio::join!(
                listable(&mut rs, kc),
                kc.run(&mut ns, "resources", &["get", "namespaces", "-o", "name"]),
            );
            match types {
                Ok((namespaced, cluster)) => {
                    rs.join(ns);
                    rs.step("resources");
                    if let Err(e) = resources(&mut rs, kc, namespaces, &namespaced, &cluster).await
                    {
                        rs.fail("resources", e);
                    }
                }
                Err(e) => {
                    let skipped = StepError::skipped(format!(
                        "not run: no listable resource types ({})",
                        e.cause
                    ));
                    rs.fail("resources listable", e);
                    rs.join(ns);
                    rs.fail("resources", skipped);
                }
            }
        },
        volume_step(
            &mut pv,
            kc,
            "persistent volumes",
            &["get", "persistentvolumes", "-o", "yaml"],
            "volumes/persistentvolumes.yaml",
        ),
        volume_step(
            &mut pvc,
            kc,
            "persistent volume claims",
            &[
                "get",
                "persistentvolumeclaims",
                "--all-namespaces",
                "-o",
                "yaml",
            ],
            "volumes/persistentvolumeclaims.yaml",
        ),
    );
    h.join_all([img, cm, ar, rs, pv, pvc]);
    if let Ok(out) = images
        && out.exit.success()
        && let Some(v) = parse_etcd_images(&out.stdout)
    {
        h.version("etcd_images", &v);
    }
    if let Err(e) = config_map {
        h.fail(CM, e);
    }
}

/// One step whose whole output is one entry (`persistent volumes`, ...).
async fn volume_step(h: &mut HostCtx<'_>, kc: &Kubectl, step: &str, args: &[&str], rel: &str) {
    h.step(step);
    if let Err(e) = kc.stream(h, step, args, rel).await {
        h.fail(step, e);
    }
}

/// The listable types (namespaced, cluster-scoped) of `kubectl api-resources --verbs=list`,
/// without the skipped ones. Err: none at all. (Types that fail to list are found, and recorded
/// as this step's failure, when the listing of `resources` fails: see [`without_failing`].)
async fn listable(
    h: &mut HostCtx<'_>,
    kc: &Kubectl,
) -> Result<(Vec<String>, Vec<String>), StepError> {
    let skip = h.var("kubernetes_resources_skip").to_string();
    let mut lists = Vec::new();
    let mut last_err = String::new();
    // both scopes at once
    let (mut nb, mut cb) = (h.fork(), h.fork());
    let (n, c) = tokio::join!(
        kc.run(
            &mut nb,
            LISTABLE,
            &[
                "api-resources",
                "--verbs=list",
                "--namespaced=true",
                "-o",
                "name"
            ],
        ),
        kc.run(
            &mut cb,
            LISTABLE,
            &[
                "api-resources",
                "--verbs=list",
                "--namespaced=false",
                "-o",
                "name"
            ],
        ),
    );
    h.join_all([nb, cb]);
    for out in [n?, c?] {
        // exits 1 with a partial list when an API group is unavailable (the api resources step
        // names it): what it listed is used
        if !out.exit.success() {
            last_err = last_line(&out.exit.stderr_tail);
        }
        let (types, bad) = parse_types(&String::from_utf8_lossy(&out.stdout), &skip);
        for b in bad {
            h.note(&format!(
                "resources: {b:?} is not a resource type name: left out"
            ));
        }
        lists.push(types);
    }
    let cluster = lists.pop().unwrap_or_default();
    let mut namespaced = lists.pop().unwrap_or_default();
    namespaced.retain(|t| !cluster.contains(t));
    if namespaced.is_empty() && cluster.is_empty() {
        return Err(StepError::new(
            FailureKind::CommandFailed,
            format!("kubectl api-resources listed nothing: {last_err}"),
        ));
    }
    Ok((namespaced, cluster))
}

const LISTABLE: &str = "resources listable";

/// After a listing of `types` failed: the types that list in `scope` (`*` all namespaces, ""
/// cluster-wide), when some do not (those are recorded as one failure of the step `resources
/// listable`, with kubectl's error for each). None: every type lists one by one, or none does
/// (the listing's own error stands).
async fn without_failing(
    h: &mut HostCtx<'_>,
    kc: &Kubectl,
    scope: &str,
    types: &[String],
) -> Result<Option<Vec<String>>, StepError> {
    let failed = kc.failing_types(h, LISTABLE, scope, types).await?;
    let ok: Vec<String> = types
        .iter()
        .filter(|t| !failed.iter().any(|(f, _)| f == *t))
        .cloned()
        .collect();
    if failed.is_empty() || ok.is_empty() {
        return Ok(None);
    }
    h.fail(
        LISTABLE,
        StepError::new(
            FailureKind::CommandFailed,
            format!(
                "cannot list: {}",
                failed
                    .iter()
                    .map(|(t, e)| format!("{t} ({e})"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
    );
    Ok(Some(ok))
}

/// One YAML List per namespace (`resources/<ns>.yaml`) and `resources/_cluster.yaml`.
///
/// The namespaced types are listed **once**, across all namespaces, by one kubectl (`get
/// T1,T2,... --all-namespaces -o json --chunk-size=N`: one paged list per type, whatever the
/// number of namespaces); its JSON is spooled here and split by `metadata.namespace`. The
/// cluster-scoped types are one `kubectl get ... -o yaml`.
async fn resources(
    h: &mut HostCtx<'_>,
    kc: &Kubectl,
    listed: Result<crate::transport::Output, StepError>,
    namespaced: &[String],
    cluster: &[String],
) -> Result<(), StepError> {
    let chunk = check_chunk_size(h.var("kubectl_chunk_size")).map_err(StepError::config)?;
    let out = listed?;
    if !out.exit.success() {
        return Err(StepError::new(
            FailureKind::CommandFailed,
            format!(
                "listing namespaces: {}",
                crate::engine::exit_text(&out.exit)
            ),
        ));
    }
    let (namespaces, bad) = parse_namespaces(&String::from_utf8_lossy(&out.stdout));
    let mut errors: Vec<String> = bad
        .iter()
        .map(|b| format!("{b:?} is not a namespace name usable as a file name"))
        .collect();

    if namespaced.is_empty() {
        errors.push("no listable namespaced resource types".into());
    } else {
        match all_namespaces(h, kc, namespaced, chunk).await {
            Ok(mut split) => {
                if !split.left_out.is_empty() {
                    errors.push(format!(
                        "left out (no usable namespace): {}",
                        split.left_out.join(", ")
                    ));
                }
                // every namespace has its file (an empty List when it holds nothing), and so
                // has a namespace created since `get namespaces`
                let mut names = namespaces;
                names.extend(split.namespaces.keys().cloned());
                names.sort();
                names.dedup();
                for ns in names {
                    if h.is_cancelled() {
                        break;
                    }
                    let yaml = split.take_yaml(&ns);
                    if let Err(e) = h
                        .add_bytes(&format!("resources/{ns}.yaml"), yaml.as_bytes())
                        .await
                    {
                        errors.push(format!("{ns}: {}", e.cause));
                    }
                }
            }
            Err(e) => errors.push(format!("namespaced types: {}", e.cause)),
        }
    }

    if cluster.is_empty() {
        errors.push("_cluster: no listable resource types".into());
    } else if !h.is_cancelled()
        && let Err(e) = cluster_file(h, kc, cluster).await
    {
        errors.push(format!("_cluster: {}", e.cause));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StepError::new(
            FailureKind::CommandFailed,
            errors.join("; "),
        ))
    }
}

/// The namespaced `types` across all namespaces, split by namespace: one kubectl, paged by
/// `chunk`; when it fails, again without the types that fail to list (named by [`without_failing`]).
async fn all_namespaces(
    h: &mut HostCtx<'_>,
    kc: &Kubectl,
    types: &[String],
    chunk: u32,
) -> Result<SplitList, StepError> {
    const STEP: &str = "resources";
    let get = |types: &[String]| -> Vec<String> {
        vec![
            "get".into(),
            types.join(","),
            "--all-namespaces".into(),
            "-o".into(),
            "json".into(),
            format!("--chunk-size={chunk}"),
        ]
    };
    let spool = match kc.spooled(h, STEP, &get(types)).await {
        Ok(f) => f,
        Err(first) => match without_failing(h, kc, "*", types).await? {
            Some(ok) => kc.spooled(h, STEP, &get(&ok)).await?,
            None => return Err(first),
        },
    };
    tokio::task::spawn_blocking(move || split_list(spool))
        .await
        .map_err(|e| StepError::local(format!("splitting the listing: {e}")))?
        .map_err(StepError::bad_data)
}

/// `resources/_cluster.yaml`: every cluster-scoped type at once; when that fails, the types
/// that list (the others named by [`without_failing`]).
async fn cluster_file(
    h: &mut HostCtx<'_>,
    kc: &Kubectl,
    types: &[String],
) -> Result<(), StepError> {
    const STEP: &str = "resources";
    const REL: &str = "resources/_cluster.yaml";
    let get = |types: &[String]| -> Vec<String> {
        vec!["get".into(), types.join(","), "-o".into(), "yaml".into()]
    };
    let args = get(types);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = kc.stream(h, STEP, &refs, REL).await;
    if first.is_ok() {
        return first;
    }
    match without_failing(h, kc, "", types).await? {
        Some(ok) => {
            let args = get(&ok);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            kc.stream(h, STEP, &refs, REL).await
        }
        None => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names() {
        assert_eq!(
            snapshot_holder("lsbackup-etcd-snapshot-20260101T000000Z-4242.db"),
            Some(4242)
        );
        assert_eq!(
            snapshot_holder("lsbackup-etcd-snapshot-20260101T000000Z-4242.db.part"),
            Some(4242)
        );
        for bad in [
            "lsbackup-etcd-snapshot-20260101T000000Z-.db",
            "lsbackup-etcd-snapshot-20260101T000000Z-42.dbx",
            "lsbackup-etcd-snapshot-2026010T000000Z-42.db",
            "lsbackup-etcd-snapshot-20260101T000000Z-4a.db",
            "member",
        ] {
            assert_eq!(snapshot_holder(bad), None, "{bad:?}");
        }
        assert_eq!(cache_holder("lsbackup-kubectl.77.aB3dE9"), Some(77));
        assert_eq!(cache_holder("lsbackup-kubectl.aB3dE9"), None);
    }

    const MANIFEST: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.2:2379
    - --data-dir=/var/lib/etcd
    - --initial-cluster=m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380,m3=https://[fd00::3]:2380
    - --name=m2
    image: registry.k8s.io/etcd:3.5.4-0
    name: etcd
  hostNetwork: true
"#;

    #[test]
    fn manifest_gives_data_dir_and_initial_cluster() {
        let m = parse_etcd_manifest(MANIFEST).unwrap();
        assert_eq!(m.data_dir.as_deref(), Some("/var/lib/etcd"));
        assert_eq!(
            initial_cluster_endpoints(m.initial_cluster.as_deref().unwrap()),
            [
                "https://10.0.0.1:2379",
                "https://10.0.0.2:2379",
                "https://[fd00::3]:2379"
            ]
        );
        // separate-word flags and args
        let t = "spec:\n  containers:\n  - name: sidecar\n    command: [x]\n  - name: etcd\n    command: [etcd]\n    args: [--data-dir, /data/etcd]\n";
        let m = parse_etcd_manifest(t).unwrap();
        assert_eq!(m.data_dir.as_deref(), Some("/data/etcd"));
        assert_eq!(m.initial_cluster, None);
        // no containers, or not YAML at all
        assert_eq!(
            parse_etcd_manifest("kind: Pod\n").unwrap(),
            EtcdManifest::default()
        );
        assert!(parse_etcd_manifest("{ not: [yaml").is_err());
    }

    #[test]
    fn hostile_data_dirs_are_refused_or_stay_data() {
        // a shell expansion in a data dir is a directory name like any other (it only ever
        // travels as a quoted argument); .., relative paths and newlines are refused
        let t = "spec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    - --data-dir=/var/lib/$(touch x)\n";
        let m = parse_etcd_manifest(t).unwrap();
        let d = m.data_dir.unwrap();
        assert_eq!(d, "/var/lib/$(touch x)");
        assert_eq!(check_data_dir(&d).unwrap(), "/var/lib/$(touch x)");
        let s = Script::new(NOT_EMPTY).arg(format!("{d}/snap.db"));
        assert!(
            s.to_shell()
                .starts_with("set -- '/var/lib/$(touch x)/snap.db'\n")
        );
        assert!(check_data_dir("/var/lib/../../etc").is_err());
        assert!(check_data_dir("var/lib/etcd").is_err());
        assert!(check_data_dir("/var/lib/etcd\n/etc").is_err());
        assert!(check_data_dir("").is_err());
        assert_eq!(check_data_dir("/var/lib/etcd/").unwrap(), "/var/lib/etcd");
        let t =
            "spec:\n  containers:\n  - name: etcd\n    command:\n    - \"--data-dir=/a\\n/b\"\n";
        let d = parse_etcd_manifest(t).unwrap().data_dir.unwrap();
        assert!(check_data_dir(&d).is_err(), "{d:?}");
    }

    #[test]
    fn hostile_endpoints_are_left_out() {
        assert_eq!(
            initial_cluster_endpoints(
                "a=https://$(touch x):2380,b=https://ok:2380,c=http://x y:2380,d=https://e:2381,f=https://g\n:2380,h"
            ),
            ["https://ok:2379"]
        );
        assert!(endpoint_ok("https://127.0.0.1:2379"));
        assert!(endpoint_ok("http://[::1]:2379"));
        assert!(!endpoint_ok("https://a,b:2379"));
        assert!(!endpoint_ok("unix:///run/etcd.sock"));
        assert!(!endpoint_ok("https://a:2379/../x"));
        assert!(!endpoint_ok("https://"));
        assert_eq!(
            configured_endpoints("https://a:2379, https://b:2379").unwrap(),
            ["https://a:2379", "https://b:2379"]
        );
        assert!(configured_endpoints("https://a:2379,$(touch x)").is_err());
        assert!(configured_endpoints(" ").is_err());
    }

    #[test]
    fn member_list_and_dedup() {
        let json = br#"{"header":{"cluster_id":14537075681467705206,"member_id":758659209188475983,"raft_term":4},"members":[{"ID":758659209188475983,"name":"node2","peerURLs":["https://127.0.0.1:2380"],"clientURLs":["https://127.0.0.1:2379","https://10.0.0.2:2379"]},{"ID":1,"name":"learner"},{"ID":2,"clientURLs":["https://$(reboot):2379"]}]}"#;
        let urls = parse_member_list(json).unwrap();
        assert_eq!(urls, ["https://127.0.0.1:2379", "https://10.0.0.2:2379"]);
        assert!(parse_member_list(b"member list\n").is_err());
        let all = dedup(vec![
            "https://a:1".into(),
            "https://127.0.0.1:2379".into(),
            "https://a:1".into(),
            "https://127.0.0.1:2379".into(),
        ]);
        assert_eq!(all, ["https://a:1", "https://127.0.0.1:2379"]);
    }

    #[test]
    fn etcdctl_errors_come_down_to_their_meaningful_line() {
        let health = "{\"level\":\"warn\",\"ts\":\"2026-12-05T13:07:59.469Z\",\"msg\":\"retrying of unary invoker failed\",\"error\":\"rpc error: code = DeadlineExceeded\"}\nhttps://127.0.0.1:2399 is unhealthy: failed to commit proposal: context deadline exceeded\nError: unhealthy cluster\n";
        assert_eq!(
            etcdctl_error(health),
            "https://127.0.0.1:2399 is unhealthy: failed to commit proposal: context deadline exceeded"
        );
        let only_json = "{\"level\":\"warn\",\"error\":\"rpc error: code = Unavailable\"}\n";
        assert_eq!(etcdctl_error(only_json), "rpc error: code = Unavailable");
        assert_eq!(
            etcdctl_error("{\"level\":\"info\",\"msg\":\"x\"}\nError: context deadline exceeded\n"),
            "Error: context deadline exceeded"
        );
        assert_eq!(etcdctl_error(""), "");
    }

    #[test]
    fn snapshot_status_and_versions() {
        let s = parse_snapshot_status(
            br#"{"hash":1335739760,"revision":178,"totalKey":181,"totalSize":61440}"#,
        )
        .unwrap();
        assert_eq!(s.total_key, 181);
        let t = s.table();
        assert!(
            t.contains("TOTAL KEYS") && t.contains("4f9dc570") && t.contains(" 181 "),
            "{t}"
        );
        assert!(parse_snapshot_status(b"not json").is_err());
        assert_eq!(
            parse_endpoint_version(br#"[{"Endpoint":"https://127.0.0.1:2379","Status":{"header":{"cluster_id":14537075681467705206},"version":"3.4.23","dbSize":61440}}]"#).as_deref(),
            Some("3.4.23")
        );
        assert_eq!(parse_endpoint_version(b"[]"), None);
        assert_eq!(
            parse_etcdctl_version("etcdctl version: 3.4.23\nAPI version: 3.4\n").as_deref(),
            Some("3.4.23")
        );
        assert_eq!(parse_etcdctl_version("garbage"), None);
        assert_eq!(
            parse_git_version(br#"{"major": "1", "gitVersion": "v1.24.7"}"#, false).unwrap(),
            "v1.24.7"
        );
        assert_eq!(
            parse_git_version(
                br#"{"clientVersion": {"gitVersion": "v1.32.4"}, "kustomizeVersion": "v5"}"#,
                true
            )
            .unwrap(),
            "v1.32.4"
        );
        assert!(parse_git_version(b"<html>", false).is_err());
        assert!(parse_git_version(b"{}", false).is_err());
        let pods = br#"{"items":[{"spec":{"nodeName":"node1","containers":[{"image":"registry.k8s.io/etcd:3.5.4-0"}]}},{"spec":{"nodeName":"node 2\n","containers":[{"image":"etcd:3.5.6"}]}}]}"#;
        assert_eq!(
            parse_etcd_images(pods).as_deref(),
            Some("node1=registry.k8s.io/etcd:3.5.4-0 node_2=etcd:3.5.6")
        );
        assert_eq!(parse_etcd_images(br#"{"items":[]}"#), None);
    }

    #[test]
    fn namespaces_and_types_are_names_or_left_out() {
        let (ns, bad) = parse_namespaces(
            "namespace/default\nnamespace/kube-system\nnamespace/..\nnamespace/a/b\nnamespace/$(touch x)\nnamespace/default\npod/x\n",
        );
        assert_eq!(ns, ["default", "kube-system"]);
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(!namespace_ok("-x") && !namespace_ok("X") && !namespace_ok(&"a".repeat(64)));
        let (types, bad) = parse_types(
            "configmaps\nevents\nevents.events.k8s.io\ndeployments.apps\n../../x\n$(touch y)\nwidgets.example.com\n",
            "events events.events.k8s.io",
        );
        assert_eq!(
            types,
            ["configmaps", "deployments.apps", "widgets.example.com"]
        );
        assert_eq!(bad, ["../../x", "$(touch y)"]);
        let (types, _) = parse_types("events\npods\n", "events,nodes");
        assert_eq!(types, ["pods"]);
    }

    /// A list as `kubectl get ... --all-namespaces -o json` prints it (indented, kinds mixed).
    fn kubectl_list(items: &[serde_json::Value]) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "apiVersion": "v1",
            "items": items,
            "kind": "List",
            "metadata": {"resourceVersion": ""}
        }))
        .unwrap()
    }

    fn obj(kind: &str, ns: Option<&str>, name: &str, data: serde_json::Value) -> serde_json::Value {
        let mut m =
            serde_json::json!({"name": name, "uid": "00000000-0000-4000-8000-000000001001"});
        if let Some(ns) = ns {
            m["namespace"] = ns.into();
        }
        serde_json::json!({"apiVersion": "v1", "kind": kind, "metadata": m, "data": data})
    }

    fn parsed(yaml: &str) -> serde_json::Value {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"))
    }

    #[test]
    fn a_listing_is_split_by_namespace_into_yaml_lists() {
        let items = vec![
            obj(
                "ConfigMap",
                Some("shop"),
                "a",
                serde_json::json!({"k": "v"}),
            ),
            obj("ConfigMap", Some("kube-system"), "b", serde_json::json!({})),
            obj(
                "Secret",
                Some("shop"),
                "c",
                serde_json::json!({"password": "czNjcjN0"}),
            ),
            obj(
                "ConfigMap",
                Some("$(touch x)"),
                "evil",
                serde_json::json!({}),
            ),
            obj("ConfigMap", Some("../etc"), "up", serde_json::json!({})),
            obj("ConfigMap", None, "nowhere", serde_json::json!({})),
        ];
        let json = kubectl_list(&items);
        let mut split = split_list(json.as_bytes()).unwrap();
        assert_eq!(
            split.namespaces.keys().collect::<Vec<_>>(),
            ["kube-system", "shop"]
        );
        assert_eq!(split.namespaces["shop"].1, 2);
        assert_eq!(
            split.left_out,
            [
                r#"ConfigMap "evil" in namespace "$(touch x)""#,
                r#"ConfigMap "up" in namespace "../etc""#,
                r#"ConfigMap "nowhere" in namespace """#,
            ]
        );
        // the same objects, in the listing's order, in a List as kubectl -o yaml lays it out
        let shop = split.take_yaml("shop");
        assert!(shop.starts_with("apiVersion: v1\nitems:\n- "), "{shop}");
        assert!(
            shop.ends_with("kind: List\nmetadata:\n  resourceVersion: \"\"\n"),
            "{shop}"
        );
        assert_eq!(
            parsed(&shop),
            serde_json::json!({"apiVersion": "v1", "items": [items[0], items[2]], "kind": "List",
                               "metadata": {"resourceVersion": ""}})
        );
        assert_eq!(
            parsed(&split.take_yaml("kube-system"))["items"],
            serde_json::json!([items[1]])
        );
        // a namespace without objects: an empty List
        let empty = split.take_yaml("kube-public");
        assert_eq!(parsed(&empty)["items"], serde_json::json!([]));
        assert_eq!(parsed(&empty)["kind"], "List");
    }

    #[test]
    fn yaml_items_keep_every_value_exactly() {
        let tricky = [
            "",
            "true",
            "false",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "null",
            "~",
            "Null",
            "1",
            "-1",
            "1.0",
            "1e3",
            ".inf",
            "-.Inf",
            ".NaN",
            "0755",
            "0x1F",
            "0o17",
            "1_000",
            "12:30:45",
            "2024-05-01",
            "2024-05-01T10:00:00Z",
            "- x",
            "-",
            "?",
            ":",
            "a: b",
            "a:b",
            "#c",
            "a #c",
            " lead",
            "trail ",
            "  both  ",
            "multi\nline",
            "multi\nline\n",
            "ends\n\n\n",
            "\nstarts",
            "tab\there",
            "\ttab",
            "cr\r\nlf",
            "\u{1}ctl\u{7f}",
            "bs\\",
            "'q'",
            "\"dq\"",
            "it's",
            "*alias",
            "&anchor",
            "!tag",
            "%dir",
            "@at",
            "`bt",
            "{a: 1}",
            "[1, 2]",
            ",",
            "|",
            ">",
            "---",
            "...",
            "--- x",
            "é ü 日本 🚀",
            "\u{feff}bom",
            "a  b   c    d",
            &"word ".repeat(40),
            &"x".repeat(300),
            "line one\n  indented two\n\tthree\n",
            "trailing spaces  \nnext",
            "cert:\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ];
        let mut data = serde_json::Map::new();
        for (i, t) in tricky.iter().enumerate() {
            data.insert(format!("s{i}"), serde_json::Value::from(*t));
            data.insert(t.to_string(), serde_json::Value::from(i));
        }
        let numbers = serde_json::json!({
            "zero": 0, "neg": -5, "big": u64::MAX, "small": i64::MIN, "f": 1.5, "e": 1e300,
            "tiny": 5e-324, "t": true, "nul": null, "arr": [[], {}, [null], ""], "obj": {}
        });
        let items = vec![
            obj(
                "ConfigMap",
                Some("ns1"),
                "tricky",
                serde_json::Value::Object(data),
            ),
            obj("ConfigMap", Some("ns1"), "numbers", numbers),
        ];
        let mut split = split_list(kubectl_list(&items).as_bytes()).unwrap();
        let back = parsed(&split.take_yaml("ns1"));
        assert_eq!(back["items"], serde_json::Value::Array(items));
    }

    #[test]
    fn what_is_not_a_list_is_an_error() {
        for bad in [
            "",
            "{",
            r#"{"apiVersion": "v1", "items": [{"metadata": {"namespace": "a"}}"#,
            r#"{"kind": "Status", "status": "Failure"}"#,
            r#"[1, 2]"#,
            r#"{"items": 3}"#,
            r#"{"items": []} trailing"#,
        ] {
            assert!(split_list(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
        let empty =
            split_list(r#"{"apiVersion":"v1","items":[],"kind":"List"}"#.as_bytes()).unwrap();
        assert!(empty.namespaces.is_empty() && empty.left_out.is_empty());
        assert_eq!(check_chunk_size("500"), Ok(500));
        for bad in ["0", "-1", "", "5 0", "$(touch x)", "1e3"] {
            assert!(check_chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn probe_output_names_the_types_that_fail() {
        let out = b"pods\x000\x00\x00widgets.x\x001\x00Error from server (InternalError): conversion webhook\nfailed\x00secrets\x001\x00\x00";
        assert_eq!(
            parse_probe(out),
            [
                ("widgets.x".to_string(), "failed".to_string()),
                ("secrets".to_string(), "exit status 1".to_string())
            ]
        );
        assert!(parse_probe(b"").is_empty());
    }

    #[test]
    fn kubernetes_config_takes_kubeconfigs_manifests_and_yaml() {
        let listing = b"admin.conf\0kubelet.conf\0manifests\0pki\0tmp\0encryption-provider-config.yml\0audit-policy\0x.yaml\0.conf\0notes.txt\0a\nb.conf\0";
        assert_eq!(
            kubernetes_config_names(listing),
            [
                "admin.conf",
                "audit-policy",
                "encryption-provider-config.yml",
                "kubelet.conf",
                "manifests",
                "x.yaml"
            ]
        );
    }

    /// The scripts are valid `sh` and keep hostile values as data.
    #[test]
    fn scripts_parse_and_keep_values_as_data() {
        for s in [
            TOOLS,
            CRICTL_PS,
            ETCDCTL,
            IS_FILE,
            NOT_EMPTY,
            CAT,
            RM_SNAPSHOT,
            MKTEMP_CACHE,
            RM_CACHE,
            LIST_DIR,
            KUBECTL,
            KUBE_API,
            PROBE_TYPES,
        ] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(s)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{s}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // LIST_DIR on a directory with hostile names: NUL-separated, exact
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("MARK");
        for n in ["admin.conf", "$(touch MARK).conf", "a\nb.yaml", "manifests"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let s = Script::new(LIST_DIR).arg(dir.path().display().to_string());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(s.to_shell())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let names = kubernetes_config_names(&out.stdout);
        assert_eq!(names, ["$(touch MARK).conf", "admin.conf", "manifests"]);
        assert!(!mark.exists());
        // a missing directory lists nothing
        let s = Script::new(LIST_DIR).arg("/nonexistent/lsbackup");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(s.to_shell())
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.is_empty());
    }

    #[test]
    fn spec_parses_as_a_native_component() {
        let c = super::super::ComponentSpec::from_yaml_with("kubernetes.rs", SPEC, Some(make()))
            .unwrap();
        assert_eq!(c.name, "kubernetes");
        assert!(c.steps.is_empty());
        let lines = make().0.describe(&c.vars);
        assert!(lines.iter().any(|l| l.starts_with("etcd snapshot: run")));
    }
}
