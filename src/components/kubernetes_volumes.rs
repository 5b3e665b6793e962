//! `kubernetes_volumes`: the data of Kubernetes local and hostPath persistent volumes, copied on
//! the node that holds it, and the coverage report of every persistent volume.
//!
//! - **Once per run**, on the first host of `kubernetes_master` whose kubeconfig (var
//!   `kubeconfig`, kubeadm's `admin.conf`) is readable: `kubectl get
//!   persistentvolumes,nodes,pods --all-namespaces -o json`, parsed here (serde). The result is
//!   shared by every host of the component through [`HostCtx::shared`]; the command is recorded
//!   in the manifest of the host it ran on, which also gets `volumes/coverage.txt` and one note
//!   "not covered: pv NAME (...)" per PV whose data no host copies. Workers need no kubeconfig
//!   and no kubectl.
//! - Where each PV's data lives: a local PV on the node(s) of its node affinity
//!   (`kubernetes.io/hostname`, resolved through the Nodes' hostname labels); a hostPath PV on
//!   every node where a pod using its claim is scheduled, else the nodes of its affinity.
//! - Which inventory host is which node: `kubernetes_node_name` when set; else the Node named like
//!   the inventory host (kubeadm's default); else the Node one of whose InternalIP/Hostname
//!   addresses is the host's address (`ansible_host`); else the inventory name itself.
//! - Each host then copies, as literal paths, the directories of the volumes on its node.
//!
//! If the listing fails, the host that tried it reports the one error; the other hosts report
//! "skipped" naming it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::{Native, NativeRef, leftovers};
use crate::engine::{Failed, HostCtx, StepError};
use crate::shell::Script;
use crate::transport::ExitInfo;

pub const SPEC: &str = r#"
name: kubernetes_volumes
description: data of local and hostPath persistent volumes, from the node that holds it
groups: [kubernetes_master, kubernetes_node]
hosts: all
vars:
  # kubeconfig that may list persistent volumes, nodes and pods: used once per run, on the first
  # kubernetes_master host where it is readable (kubeadm puts admin.conf on masters only;
  # workers need none)
  kubeconfig: /etc/kubernetes/admin.conf
  kubectl_timeout: 60s
  # this host's Kubernetes node name; empty: the Node named like the inventory host, else the
  # Node with an InternalIP/Hostname address equal to the host's ansible_host, else the
  # inventory name
  kubernetes_node_name: ""
not_covered:
  - >-
    data of persistent volumes other than local and hostPath (CSI, cloud disks, NFS, ...),
    listed in volumes/coverage.txt and named in the manifest as "not covered: pv NAME (...)"
  - data of local/hostPath volumes on nodes that are no host of kubernetes_master/kubernetes_node
  - "consistency: volumes are copied while pods write to them (stop or quiesce applications first)"
"#;

pub fn make() -> NativeRef {
    NativeRef(Arc::new(KubernetesVolumes))
}

struct KubernetesVolumes;

/// The group whose hosts have a kubeconfig able to list the cluster.
const MASTERS: &str = "kubernetes_master";
/// Largest `kubectl get ... -o json` answer read (pods of a big cluster are a few MiB).
const LISTING_LIMIT: usize = 64 * 1024 * 1024;
const LISTING_STEP: &str = "volume listing";
const COPIED_FLAG: &str = "volume data copied while in use (not a crash-consistent snapshot)";

/// Exit status of [`LIST`] when the kubeconfig is not readable.
const NO_KUBECONFIG: u32 = 3;
/// `$1` kubeconfig, `$2` request timeout. Prints kubectl's client version (JSON, `{}` when this
/// kubectl cannot say) then one List of every PV, Node and Pod. The discovery cache lives in a
/// temp dir removed on exit (named for the connection's holder: what a killed shell leaves is
/// removed by a later run, see [`leftovers`]).
const LIST: &str = concat!(
    r#"[ -r "$1" ] || { echo "no kubeconfig $1 on this host" >&2; exit 3; }
"#,
    leftovers::holder_sh!(),
    r#"d=$(mktemp -d "/tmp/lsbackup-kvol.$lsb_holder.XXXXXX") || exit 1
trap 'rm -rf "$d"' EXIT
trap 'exit 1' HUP INT TERM PIPE
kubectl version --client -o json 2>/dev/null || echo '{}'
kubectl --kubeconfig "$1" --request-timeout "$2" --cache-dir "$d" get persistentvolumes,nodes,pods --all-namespaces -o json"#
);

/// Discovery caches of [`LIST`] an earlier run left in /tmp.
const LEFTOVERS: &[leftovers::Kind<'static>] = &[leftovers::Kind {
    dir: "/tmp",
    glob: "lsbackup-kvol.*",
    file_type: 'd',
    parse: |name| {
        leftovers::mktemp_name(name, "lsbackup-kvol.", 6).map(|holder| leftovers::Found {
            holder,
            marks: None,
        })
    },
}];

fn list_shown(kubeconfig: &str, timeout: &str) -> String {
    format!(
        "kubectl --kubeconfig {} --request-timeout {} get persistentvolumes,nodes,pods --all-namespaces -o json",
        crate::shell::quote(kubeconfig),
        crate::shell::quote(timeout)
    )
}

// ---------------------------------------------------------------------------------------------
// The cluster, as far as volumes go

/// What the listing says about volumes, nodes and pods.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Cluster {
    pub pvs: Vec<Pv>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Pv {
    pub name: String,
    /// The volume source(s): `local`, `hostPath`, `csi`, `nfs`, ... (the spec keys that are not
    /// common PV fields).
    pub kind: String,
    /// local/hostPath: the path; csi: driver and handle; nfs: server:path.
    pub detail: String,
    /// local/hostPath: the directory holding the data.
    pub path: Option<String>,
    /// `namespace/name` of the bound claim.
    pub claim: Option<String>,
    /// Values of the `kubernetes.io/hostname` terms of the required node affinity.
    pub affinity: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Node {
    pub name: String,
    /// Its `kubernetes.io/hostname` label.
    pub hostname_label: Option<String>,
    /// InternalIP and Hostname addresses.
    pub addresses: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Pod {
    pub node: String,
    /// `namespace/claim` of every persistentVolumeClaim volume.
    pub claims: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Value,
    #[serde(default)]
    status: Value,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Object>,
}

/// PV spec fields that are not a volume source.
const PV_COMMON: &[&str] = &[
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeMode",
    "volumeAttributesClassName",
];

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("").to_string()
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

fn parse_pv(o: &Object) -> Pv {
    let spec = &o.spec;
    let kinds: Vec<&str> = spec
        .as_object()
        .map(|m| {
            m.keys()
                .map(String::as_str)
                .filter(|k| !PV_COMMON.contains(k))
                .collect()
        })
        .unwrap_or_default();
    let kind = kinds.join(" ");
    let path = match kind.as_str() {
        "local" => Some(text(spec, &["local", "path"])),
        "hostPath" => Some(text(spec, &["hostPath", "path"])),
        _ => None,
    };
    let detail = match kind.as_str() {
        "csi" => format!(
            "{} {}",
            text(spec, &["csi", "driver"]),
            text(spec, &["csi", "volumeHandle"])
        ),
        "nfs" => format!(
            "{}:{}",
            text(spec, &["nfs", "server"]),
            text(spec, &["nfs", "path"])
        ),
        _ => path.clone().unwrap_or_default(),
    };
    let claim = spec["claimRef"].is_object().then(|| {
        format!(
            "{}/{}",
            text(spec, &["claimRef", "namespace"]),
            text(spec, &["claimRef", "name"])
        )
    });
    let mut affinity = Vec::new();
    for term in items(&spec["nodeAffinity"]["required"], "nodeSelectorTerms") {
        for e in items(term, "matchExpressions") {
            if e["key"] == "kubernetes.io/hostname" && e["operator"] == "In" {
                for v in items(e, "values").filter_map(Value::as_str) {
                    if !affinity.iter().any(|a| a == v) {
                        affinity.push(v.to_string());
                    }
                }
            }
        }
    }
    Pv {
        name: o.metadata.name.clone(),
        kind,
        detail,
        path,
        claim,
        affinity,
    }
}

fn parse_node(o: &Object) -> Node {
    Node {
        name: o.metadata.name.clone(),
        hostname_label: o.metadata.labels.get("kubernetes.io/hostname").cloned(),
        addresses: items(&o.status, "addresses")
            .filter(|a| a["type"] == "InternalIP" || a["type"] == "Hostname")
            .map(|a| text(a, &["address"]))
            .filter(|a| !a.is_empty())
            .collect(),
    }
}

fn parse_pod(o: &Object) -> Pod {
    Pod {
        node: text(&o.spec, &["nodeName"]),
        claims: items(&o.spec, "volumes")
            .map(|v| text(v, &["persistentVolumeClaim", "claimName"]))
            .filter(|c| !c.is_empty())
            .map(|c| format!("{}/{c}", o.metadata.namespace))
            .collect(),
    }
}

/// The output of [`LIST`]: kubectl's client version (if it said) and the cluster.
pub(crate) fn parse_listing(out: &[u8]) -> Result<(Option<String>, Cluster), String> {
    let mut docs = serde_json::Deserializer::from_slice(out).into_iter::<Value>();
    let version = match docs.next() {
        Some(Ok(v)) => v["clientVersion"]["gitVersion"]
            .as_str()
            .map(str::to_string),
        Some(Err(e)) => return Err(format!("kubectl version: not JSON: {e}")),
        None => return Err("kubectl printed nothing".into()),
    };
    let list: List = match docs.next() {
        Some(Ok(v)) => {
            serde_json::from_value(v).map_err(|e| format!("kubectl get: not a List: {e}"))?
        }
        Some(Err(e)) => return Err(format!("kubectl get: not JSON: {e}")),
        None => return Err("kubectl get printed nothing".into()),
    };
    let mut c = Cluster::default();
    for o in &list.items {
        match o.kind.as_str() {
            "PersistentVolume" => c.pvs.push(parse_pv(o)),
            "Node" => c.nodes.push(parse_node(o)),
            "Pod" => c.pods.push(parse_pod(o)),
            _ => {}
        }
    }
    Ok((version, c))
}

// ---------------------------------------------------------------------------------------------
// Nodes <-> inventory hosts, coverage

/// An inventory host of the component, as the node mapping sees it.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    pub name: String,
    pub address: String,
    /// `kubernetes_node_name` ("" when unset).
    pub node_name: String,
}

/// The Kubernetes node an inventory host is, and why.
pub(crate) fn node_of_host(c: &Cluster, h: &HostInfo) -> (String, String) {
    if !h.node_name.trim().is_empty() {
        return (
            h.node_name.trim().to_string(),
            "kubernetes_node_name".into(),
        );
    }
    let lower = h.name.to_ascii_lowercase();
    if let Some(n) = c.nodes.iter().find(|n| n.name == lower || n.name == h.name) {
        return (
            n.name.clone(),
            "the Node named like the inventory host".into(),
        );
    }
    if let Some(n) = c
        .nodes
        .iter()
        .find(|n| n.addresses.iter().any(|a| a == &h.address))
    {
        return (
            n.name.clone(),
            format!("the Node with address {}", h.address),
        );
    }
    (
        lower,
        "the inventory name (no Node has this name or address)".into(),
    )
}

/// A node name from an affinity term: the Node whose hostname label it is, else itself.
fn affinity_node(c: &Cluster, value: &str) -> String {
    c.nodes
        .iter()
        .find(|n| n.hostname_label.as_deref() == Some(value))
        .map_or_else(|| value.to_string(), |n| n.name.clone())
}

/// Where a local/hostPath PV's data is: the nodes.
pub(crate) fn data_nodes(c: &Cluster, pv: &Pv) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if pv.kind == "hostPath"
        && let Some(claim) = &pv.claim
    {
        for p in &c.pods {
            if !p.node.is_empty() && p.claims.contains(claim) && !out.contains(&p.node) {
                out.push(p.node.clone());
            }
        }
    }
    if out.is_empty() {
        for a in &pv.affinity {
            let n = affinity_node(c, a);
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// A copyable path: absolute, not `/` itself, without `.`/`..` components.
fn clean_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.trim_matches('/').is_empty()
        && !p.split('/').any(|c| c == ".." || c == ".")
}

/// One PV's line of the coverage report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub pv: Pv,
    /// Nodes holding the data (local/hostPath).
    pub nodes: Vec<String>,
    /// (inventory host, node) pairs that copy it.
    pub copied_on: Vec<(String, String)>,
    /// Why (part of) its data is in no backup: the text inside "not covered (...)".
    pub not_covered: Option<String>,
}

impl Row {
    fn coverage(&self) -> String {
        let on: Vec<String> = self
            .copied_on
            .iter()
            .map(|(h, n)| {
                if h == n {
                    h.clone()
                } else {
                    format!("{h} (node {n})")
                }
            })
            .collect();
        match (&self.not_covered, on.is_empty()) {
            (None, _) => format!("copied by kubernetes_volumes on {}", on.join(", ")),
            (Some(why), true) => format!("not covered ({why})"),
            (Some(why), false) => format!(
                "copied by kubernetes_volumes on {}; not covered ({why})",
                on.join(", ")
            ),
        }
    }

    /// The manifest note of a PV whose data is (partly) in no backup.
    fn note(&self) -> Option<String> {
        let why = self.not_covered.as_ref()?;
        let claim = self
            .pv
            .claim
            .as_ref()
            .map(|c| format!(", claim {c}"))
            .unwrap_or_default();
        Some(format!("not covered: pv {} ({why}{claim})", self.pv.name))
    }
}

/// Every PV, where its data is, which hosts copy it.
pub(crate) fn coverage(c: &Cluster, hosts: &[HostInfo]) -> Vec<Row> {
    let host_nodes: Vec<(String, String)> = hosts
        .iter()
        .map(|h| (h.name.clone(), node_of_host(c, h).0))
        .collect();
    let mut rows = Vec::new();
    for pv in &c.pvs {
        let mut row = Row {
            pv: pv.clone(),
            nodes: vec![],
            copied_on: vec![],
            not_covered: None,
        };
        let kind = pv.kind.as_str();
        match kind {
            "local" | "hostPath" => {
                row.nodes = data_nodes(c, pv);
                let path = pv.path.as_deref().unwrap_or("");
                if !clean_path(path) {
                    row.not_covered = Some(format!(
                        "{kind}: path {path:?} is not an absolute path below / without . or .."
                    ));
                } else if row.nodes.is_empty() {
                    row.not_covered = Some(if kind == "hostPath" {
                        "hostPath: no pod uses it and no node affinity, node unknown".into()
                    } else {
                        "local: no node affinity, node unknown".into()
                    });
                } else {
                    let mut unmapped = Vec::new();
                    for n in &row.nodes {
                        let hs: Vec<&(String, String)> =
                            host_nodes.iter().filter(|(_, hn)| hn == n).collect();
                        if hs.is_empty() {
                            unmapped.push(n.clone());
                        }
                        row.copied_on.extend(hs.into_iter().cloned());
                    }
                    if !unmapped.is_empty() {
                        row.not_covered = Some(format!(
                            "{kind} on node {}: no host of kubernetes_master/kubernetes_node is that node",
                            unmapped.join(", ")
                        ));
                    }
                }
            }
            "csi" => row.not_covered = Some(format!("csi driver {}", pv.detail)),
            "nfs" => row.not_covered = Some(format!("nfs {}", pv.detail)),
            "" => row.not_covered = Some("unknown volume source".into()),
            k => row.not_covered = Some(k.to_string()),
        }
        rows.push(row);
    }
    rows
}

/// A field of a tab-separated line: no tabs, newlines or other control characters.
fn field(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `volumes/coverage.txt`: one line per PV.
pub(crate) fn coverage_text(rows: &[Row]) -> String {
    let mut out = String::from("PV\tTYPE\tDETAIL\tCLAIM\tNODES\tCOVERAGE\n");
    for r in rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            field(&r.pv.name),
            field(&r.pv.kind),
            field(&r.pv.detail),
            field(r.pv.claim.as_deref().unwrap_or("")),
            field(&r.nodes.join(" ")),
            field(&r.coverage())
        ));
    }
    out
}

/// `volumes.txt` of one host: the volumes it copies.
pub(crate) fn host_index(rows: &[Row], host: &str, node: &str, how: &str) -> String {
    let mut out = format!(
        "# this host is Kubernetes node {} ({})\nPV\tTYPE\tPATH\tCLAIM\tNODES\n",
        field(node),
        field(how)
    );
    let mine: Vec<&Row> = rows
        .iter()
        .filter(|r| r.copied_on.iter().any(|(h, _)| h == host))
        .collect();
    for r in &mine {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            field(&r.pv.name),
            field(&r.pv.kind),
            field(r.pv.path.as_deref().unwrap_or("")),
            field(r.pv.claim.as_deref().unwrap_or("")),
            field(&r.nodes.join(" "))
        ));
    }
    if mine.is_empty() {
        out.push_str(&format!(
            "# no local or hostPath persistent volume has its data on node {}\n",
            field(node)
        ));
    }
    out
}

/// The directories `host` copies (each once, in PV order).
pub(crate) fn host_paths(rows: &[Row], host: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if r.copied_on.iter().any(|(h, _)| h == host)
            && let Some(p) = &r.pv.path
            && !out.contains(p)
        {
            out.push(p.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The listing, once per run

/// One try of the listing on a control-plane host, recorded in that host's manifest.
#[derive(Debug)]
struct Attempt {
    host: String,
    shown: String,
    exit: Option<ExitInfo>,
    took: Duration,
    error: Option<StepError>,
}

#[derive(Debug)]
struct Listed {
    host: String,
    kubectl: Option<String>,
    cluster: Cluster,
}

/// The shared outcome of the listing.
#[derive(Debug)]
struct Listing {
    attempts: Vec<Attempt>,
    result: Result<Listed, StepError>,
    /// The host that reports a failed listing (the first master that was reached, else the
    /// first host); the others report skipped.
    reporter: Option<String>,
}

async fn list_once(h: &HostCtx<'_>) -> Listing {
    let masters: Vec<_> = h
        .peers()
        .iter()
        .filter(|p| p.groups.iter().any(|g| g == MASTERS) && p.var_error.is_none())
        .collect();
    let mut attempts = Vec::new();
    if masters.is_empty() {
        return Listing {
            attempts,
            result: Err(StepError::config(format!(
                "no host of {MASTERS} in this run to list the persistent volumes from"
            ))),
            reporter: h.peers().first().map(|p| p.name.clone()),
        };
    }
    let mut reporter = None;
    let mut causes = Vec::new();
    for m in &masters {
        let kubeconfig = m.vars.get("kubeconfig").cloned().unwrap_or_default();
        let timeout = m
            .vars
            .get("kubectl_timeout")
            .cloned()
            .unwrap_or_else(|| "60s".into());
        let script = Script::new(LIST).arg(&kubeconfig).arg(&timeout);
        let t = Instant::now();
        let res = h.run_on(&m.name, &script, None, LISTING_LIMIT).await;
        let mut attempt = Attempt {
            host: m.name.clone(),
            shown: list_shown(&kubeconfig, &timeout),
            exit: None,
            took: t.elapsed(),
            error: None,
        };
        let outcome = match res {
            Err(e) => Err(e),
            Ok(out) => {
                attempt.exit = Some(out.exit.clone());
                reporter.get_or_insert_with(|| m.name.clone());
                if out.exit.code == Some(NO_KUBECONFIG) {
                    Err(StepError::config(format!(
                        "no kubeconfig {kubeconfig} on this host: set kubernetes_volumes.kubeconfig to one that may list persistent volumes, nodes and pods"
                    )))
                } else if !out.exit.success() {
                    Err(StepError::command(&out.exit))
                } else {
                    parse_listing(&out.stdout).map_err(StepError::bad_data)
                }
            }
        };
        match outcome {
            Ok((kubectl, cluster)) => {
                attempts.push(attempt);
                return Listing {
                    attempts,
                    result: Ok(Listed {
                        host: m.name.clone(),
                        kubectl,
                        cluster,
                    }),
                    reporter: Some(m.name.clone()),
                };
            }
            Err(e) => {
                causes.push((m.name.clone(), e.clone()));
                attempt.error = Some(e);
                attempts.push(attempt);
            }
        }
    }
    let error = if causes.len() == 1 {
        causes.remove(0).1
    } else {
        let kind = causes[0].1.kind;
        StepError::new(
            kind,
            format!(
                "no host of {MASTERS} could list the persistent volumes: {}",
                causes
                    .iter()
                    .map(|(host, e)| format!("{host}: {}", e.cause))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    };
    Listing {
        attempts,
        result: Err(error),
        reporter,
    }
}

fn host_infos(h: &HostCtx<'_>) -> Vec<HostInfo> {
    h.peers()
        .iter()
        .map(|p| HostInfo {
            name: p.name.clone(),
            address: p.conn.address.clone(),
            node_name: p
                .vars
                .get("kubernetes_node_name")
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}

#[async_trait::async_trait]
impl Native for KubernetesVolumes {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let node = match get("kubernetes_node_name") {
            "" => {
                "the Node named like this host, else the Node with this host's address".to_string()
            }
            n => format!("node {n} (kubernetes_node_name)"),
        };
        vec![
            format!(
                "once per run, on the first {MASTERS} host that can: {}; on that host: volumes/coverage.txt and a note per PV whose data is in no backup",
                list_shown(get("kubeconfig"), get("kubectl_timeout"))
            ),
            format!("volumes.txt: the local/hostPath volumes whose data is on {node}"),
            "copy: their directories (literal paths, no kubectl or kubeconfig needed here)".into(),
        ]
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let me = h.host().to_string();
        h.step("leftovers");
        if let Err(e) = leftovers::sweep(h, "leftovers", LEFTOVERS).await {
            h.optional_failed("leftovers", &e);
        }
        h.step(LISTING_STEP);
        let cell = h.shared::<Listing>("listing");
        let listing = cell.get_or_init(|| list_once(h)).await;
        for a in listing.attempts.iter().filter(|a| a.host == me) {
            let t = Instant::now()
                .checked_sub(a.took)
                .unwrap_or_else(Instant::now);
            h.record(LISTING_STEP, &a.shown, None, a.exit.as_ref(), t);
        }
        let listed = match &listing.result {
            Err(e) if listing.reporter.as_deref() == Some(me.as_str()) => {
                return Err(e.clone().at(LISTING_STEP));
            }
            Err(e) => {
                let why = match &listing.reporter {
                    Some(r) => format!("the volume listing on {r} failed"),
                    None => format!("the volume listing failed: {}", e.cause),
                };
                return Err(StepError::skipped(why).at("volumes"));
            }
            Ok(l) => l,
        };
        if let Some(a) = listing.attempts.iter().find(|a| a.host == me)
            && let Some(e) = &a.error
        {
            h.note(&format!(
                "volume listing done on {} (here: {})",
                listed.host, e.cause
            ));
        }
        let hosts = host_infos(h);
        let rows = coverage(&listed.cluster, &hosts);
        if listed.host == me {
            if let Some(v) = &listed.kubectl {
                h.version("kubectl", v);
            }
            h.step("volume coverage");
            if let Err(e) = h
                .add_bytes("volumes/coverage.txt", coverage_text(&rows).as_bytes())
                .await
            {
                h.fail("volume coverage", e);
            }
            for n in rows.iter().filter_map(Row::note) {
                h.note(&n);
            }
        }
        let info = hosts
            .iter()
            .find(|i| i.name == me)
            .cloned()
            .ok_or_else(|| StepError::local("this host is not planned").at("volumes"))?;
        let (node, how) = node_of_host(&listed.cluster, &info);
        h.add_bytes(
            "volumes.txt",
            host_index(&rows, &me, &node, &how).as_bytes(),
        )
        .await
        .map_err(|e| e.at("volumes on this node"))?;
        let paths = host_paths(&rows, &me);
        if paths.is_empty() {
            return Ok(());
        }
        h.step("volume data");
        h.copy("volume data", &paths, false)
            .await
            .map_err(|e| e.at("volume data"))?;
        h.note(COPIED_FLAG);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing shaped like the test bed's stand-in answers (kubectl's output).
    fn listing() -> Vec<u8> {
        let version = serde_json::json!({"clientVersion": {"gitVersion": "v1.24.7"}});
        let node = |name: &str, ip: &str| {
            serde_json::json!({"kind": "Node", "metadata": {"name": name,
                "labels": {"kubernetes.io/hostname": name}},
                "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                          {"type": "Hostname", "address": name}]}})
        };
        let affinity = |n: &str| {
            serde_json::json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}})
        };
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "PersistentVolume", "metadata": {"name": "pv-local-db"},
             "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                      "local": {"path": "/data/db"}, "nodeAffinity": affinity("node3"),
                      "claimRef": {"namespace": "shop", "name": "data-db-0"},
                      "storageClassName": "local-storage", "volumeMode": "Filesystem"}},
            {"kind": "PersistentVolume", "metadata": {"name": "pv-hostpath-uploads"},
             "spec": {"hostPath": {"path": "/data/uploads", "type": "DirectoryOrCreate"},
                      "claimRef": {"namespace": "shop", "name": "uploads"}}},
            {"kind": "PersistentVolume", "metadata": {"name": "pv-hostpath-unused"},
             "spec": {"hostPath": {"path": "/data/unused"}}},
            {"kind": "PersistentVolume", "metadata": {"name": "pvc-cache"},
             "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"},
                      "claimRef": {"namespace": "shop", "name": "cache"}}},
            {"kind": "PersistentVolume", "metadata": {"name": "pv-nfs"},
             "spec": {"nfs": {"server": "10.0.0.9", "path": "/exports/r"}}},
            {"kind": "PersistentVolume", "metadata": {"name": "pv-worker"},
             "spec": {"local": {"path": "/data/odd $(touch x)\tdir"},
                      "nodeAffinity": affinity("k8s-worker-4")}},
            {"kind": "PersistentVolume", "metadata": {"name": "pv-far"},
             "spec": {"local": {"path": "/data/far"}, "nodeAffinity": affinity("node9")}},
            {"kind": "PersistentVolume", "metadata": {"name": "pv-dotdot"},
             "spec": {"hostPath": {"path": "/data/../etc"}, "nodeAffinity": affinity("node1")}},
            node("node1", "127.0.0.2"), node("node2", "127.0.0.3"), node("node3", "127.0.0.4"),
            node("k8s-worker-4", "127.0.0.5"), node("node9", "10.0.0.99"),
            {"kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
             "spec": {"nodeName": "node1", "volumes": [
                 {"name": "u", "persistentVolumeClaim": {"claimName": "uploads"}},
                 {"name": "tmp", "emptyDir": {}}]}},
            {"kind": "Pod", "metadata": {"name": "web2", "namespace": "other"},
             "spec": {"nodeName": "node2", "volumes": [
                 {"name": "u", "persistentVolumeClaim": {"claimName": "uploads"}}]}},
            {"kind": "Pod", "metadata": {"name": "pending", "namespace": "shop"},
             "spec": {"volumes": [{"name": "u", "persistentVolumeClaim": {"claimName": "uploads"}}]}}
        ]});
        format!("{version}\n{list}\n").into_bytes()
    }

    fn hosts() -> Vec<HostInfo> {
        let h = |name: &str, address: &str, node_name: &str| HostInfo {
            name: name.into(),
            address: address.into(),
            node_name: node_name.into(),
        };
        vec![
            h("node2", "127.0.0.3", ""),
            h("node1", "127.0.0.2", ""),
            h("node3", "10.9.9.9", "node3"),
            h("node4", "127.0.0.5", ""),
        ]
    }

    fn row<'a>(rows: &'a [Row], pv: &str) -> &'a Row {
        rows.iter().find(|r| r.pv.name == pv).unwrap()
    }

    #[test]
    fn parses_kubectl_json() {
        let (v, c) = parse_listing(&listing()).unwrap();
        assert_eq!(v.as_deref(), Some("v1.24.7"));
        assert_eq!(c.pvs.len(), 8);
        assert_eq!(c.nodes.len(), 5);
        assert_eq!(c.pods.len(), 3);
        let db = &c.pvs[0];
        assert_eq!(db.kind, "local");
        assert_eq!(db.path.as_deref(), Some("/data/db"));
        assert_eq!(db.claim.as_deref(), Some("shop/data-db-0"));
        assert_eq!(db.affinity, vec!["node3"]);
        assert_eq!(c.pvs[3].detail, "ebs.csi.aws.com vol-1");
        assert_eq!(c.pvs[4].detail, "10.0.0.9:/exports/r");
        assert_eq!(c.pods[0].claims, vec!["shop/uploads"]);
        assert_eq!(c.nodes[3].addresses, vec!["127.0.0.5", "k8s-worker-4"]);
        // kubectl without `version -o json` printed {}
        let old = String::from_utf8(listing()).unwrap().replacen(
            r#"{"clientVersion":{"gitVersion":"v1.24.7"}}"#,
            "{}",
            1,
        );
        assert_eq!(parse_listing(old.as_bytes()).unwrap().0, None);
    }

    #[test]
    fn bad_listings_are_errors() {
        assert!(parse_listing(b"").unwrap_err().contains("printed nothing"));
        assert!(
            parse_listing(b"{}\n")
                .unwrap_err()
                .contains("kubectl get printed nothing")
        );
        assert!(
            parse_listing(b"{}\nerror: x")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_listing(b"{}\n{\"items\": 3}")
                .unwrap_err()
                .contains("not a List")
        );
    }

    #[test]
    fn hosts_map_to_nodes_by_var_name_then_address() {
        let (_, c) = parse_listing(&listing()).unwrap();
        let hs = hosts();
        assert_eq!(node_of_host(&c, &hs[0]).0, "node2");
        assert_eq!(node_of_host(&c, &hs[2]).0, "node3");
        assert_eq!(node_of_host(&c, &hs[2]).1, "kubernetes_node_name");
        let (n, how) = node_of_host(&c, &hs[3]);
        assert_eq!(n, "k8s-worker-4");
        assert!(how.contains("address 127.0.0.5"), "{how}");
        let stray = HostInfo {
            name: "Edge7".into(),
            address: "192.0.2.7".into(),
            node_name: String::new(),
        };
        assert_eq!(node_of_host(&c, &stray).0, "edge7");
    }

    #[test]
    fn coverage_of_each_pv() {
        let (_, c) = parse_listing(&listing()).unwrap();
        let rows = coverage(&c, &hosts());
        let db = row(&rows, "pv-local-db");
        assert_eq!(db.copied_on, vec![("node3".into(), "node3".into())]);
        assert_eq!(db.not_covered, None);
        // hostPath: the nodes of the pods using its claim (same namespace only), not pending ones
        let up = row(&rows, "pv-hostpath-uploads");
        assert_eq!(up.nodes, vec!["node1"]);
        assert_eq!(up.copied_on, vec![("node1".into(), "node1".into())]);
        let w = row(&rows, "pv-worker");
        assert_eq!(w.copied_on, vec![("node4".into(), "k8s-worker-4".into())]);
        let text = coverage_text(&rows);
        assert!(
            text.starts_with("PV\tTYPE\tDETAIL\tCLAIM\tNODES\tCOVERAGE\n"),
            "{text}"
        );
        assert!(
            text.contains("pv-local-db\tlocal\t/data/db\tshop/data-db-0\tnode3\tcopied by kubernetes_volumes on node3\n"),
            "{text}"
        );
        assert!(
            text.contains("copied by kubernetes_volumes on node4 (node k8s-worker-4)"),
            "{text}"
        );
        // a tab in a path does not break the line into more fields
        let line = text.lines().find(|l| l.starts_with("pv-worker\t")).unwrap();
        assert_eq!(line.split('\t').count(), 6, "{line}");
        let notes: Vec<String> = rows.iter().filter_map(Row::note).collect();
        assert_eq!(
            notes,
            vec![
                "not covered: pv pv-hostpath-unused (hostPath: no pod uses it and no node affinity, node unknown)",
                "not covered: pv pvc-cache (csi driver ebs.csi.aws.com vol-1, claim shop/cache)",
                "not covered: pv pv-nfs (nfs 10.0.0.9:/exports/r)",
                "not covered: pv pv-far (local on node node9: no host of kubernetes_master/kubernetes_node is that node)",
                "not covered: pv pv-dotdot (hostPath: path \"/data/../etc\" is not an absolute path below / without . or ..)",
            ]
        );
    }

    #[test]
    fn a_hostpath_used_on_two_nodes_is_copied_on_both_or_noted_for_the_missing_one() {
        let (_, mut c) = parse_listing(&listing()).unwrap();
        c.pods[1].claims = vec!["shop/uploads".into()];
        let rows = coverage(&c, &hosts());
        let up = row(&rows, "pv-hostpath-uploads");
        assert_eq!(up.nodes, vec!["node1", "node2"]);
        assert_eq!(up.not_covered, None);
        assert_eq!(host_paths(&rows, "node2"), vec!["/data/uploads"]);
        c.pods[1].node = "node9".into();
        let rows = coverage(&c, &hosts());
        let up = row(&rows, "pv-hostpath-uploads");
        assert_eq!(up.copied_on, vec![("node1".into(), "node1".into())]);
        assert!(
            up.coverage().starts_with(
                "copied by kubernetes_volumes on node1; not covered (hostPath on node node9"
            ),
            "{}",
            up.coverage()
        );
    }

    #[test]
    fn each_host_gets_its_own_volumes() {
        let (_, c) = parse_listing(&listing()).unwrap();
        let rows = coverage(&c, &hosts());
        assert_eq!(host_paths(&rows, "node3"), vec!["/data/db"]);
        assert_eq!(
            host_paths(&rows, "node4"),
            vec!["/data/odd $(touch x)\tdir"]
        );
        assert!(host_paths(&rows, "node2").is_empty());
        let idx = host_index(&rows, "node3", "node3", "kubernetes_node_name");
        assert!(
            idx.contains("\npv-local-db\tlocal\t/data/db\tshop/data-db-0\tnode3\n"),
            "{idx}"
        );
        let none = host_index(&rows, "node2", "node2", "x");
        assert!(
            none.contains("# no local or hostPath persistent volume has its data on node node2"),
            "{none}"
        );
    }

    #[test]
    fn clean_paths_only() {
        assert!(clean_path("/var/lib/x y/$(touch z)"));
        assert!(!clean_path("relative/x"));
        assert!(!clean_path("/a/../b"));
        assert!(!clean_path("/a/./b"));
        assert!(!clean_path(""));
        assert!(!clean_path("/"));
        assert!(!clean_path("//"));
    }

    #[test]
    fn spec_parses_as_native() {
        let s = super::super::ComponentSpec::from_yaml_with(
            "kubernetes_volumes.rs",
            SPEC,
            Some(make()),
        )
        .unwrap();
        assert!(s.steps.is_empty());
        assert!(s.requires.is_empty(), "workers need no kubectl");
        let lines = KubernetesVolumes.describe(&s.vars);
        assert!(
            lines[0].contains("--kubeconfig /etc/kubernetes/admin.conf"),
            "{lines:?}"
        );
    }
}
