//! The manifest embedded in every archive as `manifest.json` (the last entry). Schema documented
//! in `docs/format.md`; bump [`MANIFEST_FORMAT`] on incompatible change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MANIFEST_FORMAT: u32 = 2;
pub const MANIFEST_PATH: &str = "manifest.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Partial,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// What kind of failure a [`Failure`] is: decided from typed errors, never from message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The host could not be reached (TCP, DNS, proxy, handshake).
    Connection,
    /// SSH authentication or `sudo` was refused.
    Auth,
    /// The host key was unknown or changed.
    HostKey,
    /// A connect, command or API call ran past its time limit.
    Timeout,
    /// The connection dropped while the component ran.
    ConnectionLost,
    /// A program the component needs is missing on the host.
    MissingTool,
    /// A command on the host exited non-zero (or was killed).
    CommandFailed,
    /// A service's HTTP API answered with an error or could not be reached.
    Api,
    /// What the host or a service answered could not be used (bad JSON, a path that is not one).
    BadData,
    /// The component's variables or spec are unusable for this host.
    Config,
    /// Writing the archive or a spool on the machine running lsbackup failed.
    Local,
    /// Not run because an earlier step it depends on failed (that step's failure is the cause).
    Skipped,
    /// Stopped by Ctrl-C / SIGTERM.
    Interrupted,
}

impl FailureKind {
    /// Short lowercase words for summaries ("command failed").
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Connection => "connection",
            FailureKind::Auth => "authentication",
            FailureKind::HostKey => "host key",
            FailureKind::Timeout => "timeout",
            FailureKind::ConnectionLost => "connection lost",
            FailureKind::MissingTool => "missing tool",
            FailureKind::CommandFailed => "command failed",
            FailureKind::Api => "api",
            FailureKind::BadData => "bad data",
            FailureKind::Config => "config",
            FailureKind::Local => "local",
            FailureKind::Skipped => "skipped",
            FailureKind::Interrupted => "interrupted",
        }
    }
}

/// One failure: its kind, the step it happened in (if any) and one line naming host, component
/// and cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, step: Option<&str>, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            step: step.map(str::to_string),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Hex sha256 of the content (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Step name from the component spec.
    pub step: String,
    /// The command line as run (after templating; never holds secrets).
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub become_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    pub address: String,
    /// Why this host ran (`first reachable`, `primary`, `all`) or was passed over.
    pub role: String,
    pub status: Status,
    /// Software versions detected on the host, e.g. `{"postgresql": "15.8"}`.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    #[serde(default)]
    pub commands: Vec<CommandRecord>,
    /// In memory when read from a manifest; spooled to disk during a backup (see
    /// [`super::entries`]).
    #[serde(default)]
    pub entries: super::Entries,
    /// Remarks on the data's quality, e.g. `taken while running`.
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub errors: Vec<Failure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentReport {
    pub name: String,
    pub description: String,
    pub groups: Vec<String>,
    pub status: Status,
    pub hosts: Vec<HostReport>,
    /// Failures of the component as a whole (no host could run it), one line each.
    #[serde(default)]
    pub errors: Vec<Failure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryInfo {
    pub path: String,
    /// Group name -> hosts (resolved, children included).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Host name -> address:port.
    pub hosts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub tool: ToolInfo,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub build_dir: String,
    pub archive_name: String,
    pub archive_format: super::Format,
    pub status: Status,
    pub inventory: InventoryInfo,
    /// Components selected on the command line (`--only`/`--skip`), in run order.
    pub selection: Vec<String>,
    /// How host keys were checked in this run: `known_hosts` (a changed key refused; unknown
    /// ones accepted only where `--accept-new-host-keys` or the inventory's
    /// `StrictHostKeyChecking=no|accept-new` allow), or `OFF` (`--insecure-skip-host-key-check`:
    /// nothing was checked, whoever answered got the commands).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_key_checking: String,
    pub components: Vec<ComponentReport>,
    /// The archive file's own size and sha256 as stored: only in the sidecar beside it (the
    /// manifest inside cannot hold the digest of the file that holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<super::digest::ArchiveDigest>,
}

impl EntryRecord {
    /// The record of a file entry that is in the archive but whose content is invalid (the
    /// source ended early or failed after its header was written, see
    /// [`super::EntrySink::add_sized`]): no sha256, so `verify` reports it as unverified rather
    /// than as extra. The host's `errors` say why.
    pub fn failed_file(path: &str, size: u64, mode: u32) -> EntryRecord {
        EntryRecord {
            path: path.to_string(),
            kind: EntryKind::File,
            size,
            sha256: None,
            mode: mode & 0o7777,
            link_target: None,
        }
    }
}

impl ComponentReport {
    /// The component's status as its hosts and its own errors give it: failed when the
    /// component as a whole failed or no host ran it, ok when every host that ran is ok,
    /// failed when every one failed, partial otherwise. The engine sets `status` with this
    /// and `verify` checks a manifest against it.
    pub fn derived_status(&self) -> Status {
        let ran: Vec<Status> = self
            .hosts
            .iter()
            .map(|h| h.status)
            .filter(|s| *s != Status::Skipped)
            .collect();
        if !self.errors.is_empty() || ran.is_empty() {
            Status::Failed
        } else if ran.iter().all(|s| *s == Status::Ok) {
            Status::Ok
        } else if ran.iter().all(|s| *s == Status::Failed) {
            Status::Failed
        } else {
            Status::Partial
        }
    }
}

/// A backup's status from its components': ok when all are ok, failed when none is usable
/// (ok or partial), partial otherwise.
pub fn overall_status(components: &[ComponentReport]) -> Status {
    let ok = components.iter().filter(|c| c.status == Status::Ok).count();
    let usable = components
        .iter()
        .filter(|c| matches!(c.status, Status::Ok | Status::Partial))
        .count();
    if ok == components.len() {
        Status::Ok
    } else if usable == 0 {
        Status::Failed
    } else {
        Status::Partial
    }
}

impl Manifest {
    /// Every entry record of every component and host, in manifest order.
    pub fn entries(&self) -> impl Iterator<Item = &EntryRecord> {
        self.components
            .iter()
            .flat_map(|c| c.hosts.iter())
            .flat_map(|h| h.entries.iter())
    }
}
