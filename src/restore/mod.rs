//! `lsbackup restore`: put a backup back on the cluster, component by component, the documented
//! way of each.
//!
//! The archive is first unpacked with [`crate::archive::extract`] into a private staging
//! directory, so every entry is checked against the manifest (and hostile archives refused)
//! before any host is touched. The hosts are the ones the manifest recorded, looked up by name
//! in the current inventory (their address, port, user and variables come from there); a host
//! that no longer exists is an error naming it.
//!
//! Each component's restore is one file here (`src/restore/<component>.rs`), implementing
//! [`Restore`] with the primitives of [`host::HostRestore`]: queries that only read, and changes
//! that a dry run only describes. Components run one after another in [`ORDER`] (databases
//! first, API services last), hosts one at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive::{EntryKind, Manifest, Status};
use crate::components::{Catalog, SpecError};
use crate::engine::{Plan, PlanError, PlannedHost, Selection};
use crate::inventory::Inventory;
use crate::transport::{Session, TransportConfig};

pub mod alertmanager;
pub mod elasticsearch;
pub mod grafana;
pub mod haproxy;
pub mod host;
pub mod kafka;
pub mod kibana;
pub mod kubernetes;
pub mod kubernetes_volumes;
pub mod postgresql;
pub mod prometheus;
pub mod rabbitmq;
pub mod zookeeper;

pub use host::{HostRestore, Put};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{component} on {host}: {step}: {cause}")]
    Step {
        component: String,
        host: String,
        step: String,
        cause: String,
    },
    /// What was asked cannot be done (selection, inventory, archive content).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// One component's restore.
#[async_trait::async_trait]
pub trait Restore: Send + Sync {
    /// Put the component back on one of the hosts the backup recorded for it.
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError>;
}

/// The order components are restored in: data stores first, then configuration, then the
/// services that read them.
pub const ORDER: &[&str] = &[
    "postgresql",
    "kubernetes",
    "kubernetes_volumes",
    "zookeeper",
    "kafka",
    "prometheus",
    "alertmanager",
    "haproxy",
    "rabbitmq",
    "elasticsearch",
    "kibana",
    "grafana",
];

/// The restore of a component, if lsbackup has one.
pub fn restorer(name: &str) -> Option<Box<dyn Restore>> {
    match name {
        "postgresql" => Some(Box::new(postgresql::PostgreSql)),
        "kubernetes" => Some(Box::new(kubernetes::Kubernetes)),
        "kubernetes_volumes" => Some(Box::new(kubernetes_volumes::KubernetesVolumes)),
        "alertmanager" => Some(Box::new(alertmanager::Alertmanager)),
        "haproxy" => Some(Box::new(haproxy::HaProxy)),
        "prometheus" => Some(Box::new(prometheus::Prometheus)),
        "rabbitmq" => Some(Box::new(rabbitmq::RabbitMq)),
        "zookeeper" => Some(Box::new(zookeeper::ZooKeeper)),
        "kafka" => Some(Box::new(kafka::Kafka)),
        "elasticsearch" => Some(Box::new(elasticsearch::Elasticsearch)),
        "kibana" => Some(Box::new(kibana::Kibana)),
        "grafana" => Some(Box::new(grafana::Grafana)),
        _ => None,
    }
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub only: Vec<String>,
    pub skip: Vec<String>,
    /// `--set COMPONENT.VAR=VALUE` / `VAR=VALUE`, as for backup.
    pub sets: Vec<String>,
    pub yes: bool,
    /// Only say what would be done (queries that read still run).
    pub dry_run: bool,
    /// Suffix of the copies kept beside replaced files: `lsbackup-<UTC time>`.
    pub keep_suffix: String,
}

/// One component on one host to restore.
#[derive(Debug, Clone)]
pub struct Unit {
    pub component: String,
    pub host: PlannedHost,
}

/// The components and hosts to restore, resolved against the current inventory.
#[derive(Debug)]
pub struct Prepared {
    pub units: Vec<Unit>,
    /// Components of the archive left out, with why (not selected, nothing backed up, ...).
    pub left_out: Vec<(String, String)>,
}

/// Decide what to restore: the manifest's components that hold entries, in [`ORDER`],
/// filtered by `--only`/`--skip`; each mapped to the current inventory's hosts by name.
pub fn prepare(
    manifest: &Manifest,
    inventory: Inventory,
    catalog: &Catalog,
    opts: &Options,
) -> Result<Prepared, RestoreError> {
    let in_archive: Vec<&str> = manifest
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for name in opts.only.iter().chain(&opts.skip) {
        if !in_archive.contains(&name.as_str()) {
            return Err(RestoreError::Input(format!(
                "the archive has no component {name:?} (it has: {})",
                in_archive.join(", ")
            )));
        }
    }
    let mut left_out = Vec::new();
    let mut chosen: Vec<&crate::archive::ComponentReport> = Vec::new();
    let mut ordered: Vec<&crate::archive::ComponentReport> = manifest.components.iter().collect();
    ordered.sort_by_key(|c| {
        ORDER
            .iter()
            .position(|o| *o == c.name)
            .unwrap_or(ORDER.len())
    });
    for c in ordered {
        if (!opts.only.is_empty() && !opts.only.contains(&c.name)) || opts.skip.contains(&c.name) {
            continue;
        }
        let has_files = c
            .hosts
            .iter()
            .any(|h| h.entries.iter().any(|e| e.kind == EntryKind::File));
        if !has_files {
            left_out.push((c.name.clone(), "the backup holds nothing of it".into()));
            continue;
        }
        if restorer(&c.name).is_none() {
            if opts.only.contains(&c.name) {
                return Err(RestoreError::Input(format!(
                    "lsbackup has no restore for {}: `lsbackup extract --only {}` unpacks its files",
                    c.name, c.name
                )));
            }
            left_out.push((
                c.name.clone(),
                format!(
                    "lsbackup has no restore for it: `lsbackup extract --only {}` unpacks its files",
                    c.name
                ),
            ));
            continue;
        }
        chosen.push(c);
    }
    if chosen.is_empty() {
        return Ok(Prepared {
            units: Vec::new(),
            left_out,
        });
    }
    let sel = Selection {
        only: chosen.iter().map(|c| c.name.clone()).collect(),
        skip: Vec::new(),
        sets: opts.sets.clone(),
    };
    let all_hosts: Vec<String> = inventory.hosts.iter().map(|h| h.name.clone()).collect();
    let plan = Plan::build(inventory, catalog, &sel)?;
    let mut units = Vec::new();
    for c in chosen {
        let Some(pc) = plan.components.iter().find(|p| p.spec.name == c.name) else {
            return Err(RestoreError::Input(format!(
                "{}: none of its groups ({}) is in the current inventory",
                c.name,
                c.groups.join(", ")
            )));
        };
        for h in &c.hosts {
            if !h.entries.iter().any(|e| e.kind == EntryKind::File) {
                continue;
            }
            let Some(ph) = pc.hosts.iter().find(|p| p.name == h.host) else {
                let why = if all_hosts.contains(&h.host) {
                    format!(
                        "is no longer in {}'s groups ({})",
                        c.name,
                        pc.groups.join(", ")
                    )
                } else {
                    "is not in the current inventory".to_string()
                };
                return Err(RestoreError::Input(format!(
                    "{}: host {} (recorded by the backup, address {}) {why}",
                    c.name, h.host, h.address
                )));
            };
            if let Some(e) = &ph.var_error {
                return Err(RestoreError::Input(format!("{}: {}: {e}", c.name, h.host)));
            }
            units.push(Unit {
                component: c.name.clone(),
                host: ph.clone(),
            });
        }
    }
    Ok(Prepared { units, left_out })
}

/// How one unit ended.
#[derive(Debug, Clone)]
pub struct UnitResult {
    pub component: String,
    pub host: String,
    pub error: Option<String>,
    pub notes: Vec<String>,
}

/// Run the units (a dry run only reads). `staging` holds the extracted archive; `say` prints.
pub async fn run(
    units: &[Unit],
    manifest: &Manifest,
    staging: &Path,
    transport: &TransportConfig,
    opts: &Options,
    say: &(dyn Fn(&str) + Sync),
) -> Vec<UnitResult> {
    let mut sessions: BTreeMap<String, Result<Arc<Session>, String>> = BTreeMap::new();
    // per host: the directories already looked at for what killed restores left
    let mut swept: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut results = Vec::new();
    for u in units {
        let host = u.host.name.clone();
        say(&format!("{} on {host}:", u.component));
        if !sessions.contains_key(&host) {
            let s = Session::connect(&u.host.conn, transport)
                .await
                .map(Arc::new)
                .map_err(|e| e.to_string());
            sessions.insert(host.clone(), s);
        }
        let session = match &sessions[&host] {
            Ok(s) => s.clone(),
            Err(e) => {
                say(&format!("  failed: {e}"));
                results.push(UnitResult {
                    component: u.component.clone(),
                    host,
                    error: Some(e.clone()),
                    notes: Vec::new(),
                });
                continue;
            }
        };
        let report = manifest
            .components
            .iter()
            .find(|c| c.name == u.component)
            .and_then(|c| c.hosts.iter().find(|h| h.host == host));
        let entries = report
            .map(|h| h.entries.iter().collect())
            .unwrap_or_default();
        let mut r = HostRestore {
            host: &host,
            component: &u.component,
            session,
            vars: &u.host.vars,
            root: staging.join(&u.component).join(&host),
            entries,
            dry_run: opts.dry_run,
            yes: opts.yes,
            keep_suffix: &opts.keep_suffix,
            lines: Vec::new(),
            say,
            notes: Vec::new(),
            keep_dirs: Vec::new(),
            swept: swept.remove(&host).unwrap_or_default(),
            removed: Vec::new(),
        };
        let restorer = restorer(&u.component).expect("prepare chose components with a restore");
        let done = restorer.restore_host(&mut r).await;
        r.note_leftovers();
        swept.insert(host.clone(), std::mem::take(&mut r.swept));
        let notes = std::mem::take(&mut r.notes);
        let error = match done {
            Ok(()) => None,
            Err(e) => {
                let line = match &e {
                    RestoreError::Step { step, cause, .. } => format!("{step}: {cause}"),
                    other => other.to_string(),
                };
                say(&format!("  failed: {line}"));
                Some(line)
            }
        };
        results.push(UnitResult {
            component: u.component.clone(),
            host,
            error,
            notes,
        });
    }
    for (_, s) in sessions {
        if let Ok(s) = s
            && let Ok(s) = Arc::try_unwrap(s)
        {
            s.close().await;
        }
    }
    results
}

/// The status a restore of this archive starts from, said before anything is done.
pub fn archive_status_line(manifest: &Manifest) -> Option<String> {
    match manifest.status {
        Status::Ok => None,
        other => Some(format!(
            "the backup's status is {other:?}: components that failed then are restored from what it holds, if anything"
        )),
    }
}

pub use crate::human_bytes;

/// Where restore unpacks the archive: a private directory under `base` (default: the system
/// temporary directory), removed at the end.
pub fn staging_dir(base: Option<&Path>) -> std::io::Result<tempfile::TempDir> {
    let base: PathBuf = base
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("lsbackup-restore-")
        .tempdir_in(base)
}
