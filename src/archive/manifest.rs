//! The manifest embedded in every archive as `manifest.json` (the last entry). Schema documented
//! in `docs/format.md`; bump [`MANIFEST_FORMAT`] on incompatible change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MANIFEST_FORMAT: u32 = 1;
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(default)]
    pub entries: Vec<EntryRecord>,
    /// Remarks on the data's quality, e.g. `taken while running`.
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentReport {
    pub name: String,
    pub description: String,
    pub groups: Vec<String>,
    pub status: Status,
    pub hosts: Vec<HostReport>,
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryInfo {
    pub path: String,
    /// Group name -> hosts (resolved, children included).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Host name -> address:port.
    pub hosts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub components: Vec<ComponentReport>,
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

impl Manifest {
    /// Every entry record of every component and host, in manifest order.
    pub fn entries(&self) -> impl Iterator<Item = &EntryRecord> {
        self.components
            .iter()
            .flat_map(|c| c.hosts.iter())
            .flat_map(|h| h.entries.iter())
    }
}
