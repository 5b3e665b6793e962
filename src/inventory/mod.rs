//! Ansible inventory: discovery in a build directory, INI and YAML parsing, variable
//! precedence, and per-host connection settings.
//!
//! OWNER: inventory helper. Public interface below is relied on by engine/cli; extend, don't break.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A variable value as Ansible would hold it (strings, numbers, bools, lists, maps).
pub type Vars = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("no inventory found in {dir} (looked for: {looked})")]
    NotFound { dir: PathBuf, looked: String },
    #[error("{file}:{line}: {msg}")]
    Syntax { file: PathBuf, line: usize, msg: String },
    #[error("{file}: {source}")]
    Io { file: PathBuf, #[source] source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// Hosts listed directly in this group, in file order.
    pub hosts: Vec<String>,
    /// Child group names, in file order.
    pub children: Vec<String>,
    /// The group's own vars (inventory file + group_vars/).
    pub vars: Vars,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Fully resolved variables for this host (Ansible precedence applied: all < parent groups <
    /// child groups (by depth, then name, then ansible_group_priority) < host vars; group_vars/
    /// and host_vars/ files beside the inventory included).
    pub vars: Vars,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file (or directory) the inventory was read from.
    pub source: PathBuf,
    pub groups: BTreeMap<String, Group>,
    /// Hosts in the order Ansible first sees them.
    pub hosts: Vec<Host>,
    /// Non-fatal remarks (e.g. ignored ssh options), to be shown to the user.
    pub warnings: Vec<String>,
}

/// How `StrictHostKeyChecking` was set for a host, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    Yes,
    No,
    AcceptNew,
}

/// The OpenSSH options lsbackup honours from `ansible_ssh_common_args` / `ansible_ssh_extra_args`
/// / `ansible_ssh_args`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshOptions {
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    pub user_known_hosts_file: Option<PathBuf>,
    /// `-J` / `ProxyJump`, e.g. `user@bastion:22`.
    pub proxy_jump: Option<String>,
    pub proxy_command: Option<String>,
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: Option<u32>,
    pub connect_timeout: Option<Duration>,
    /// Options given but not honoured, as written (for a warning).
    pub ignored: Vec<String>,
}

/// Everything needed to reach one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSpec {
    /// Inventory host name.
    pub host: String,
    /// `ansible_host`, else the inventory name.
    pub address: String,
    /// `ansible_port`, else 22.
    pub port: u16,
    /// `ansible_user` (None: the local user name).
    pub user: Option<String>,
    /// `ansible_ssh_private_key_file`, resolved as Ansible resolves it (relative to the current
    /// directory; `~` expanded).
    pub key_file: Option<PathBuf>,
    /// `ansible_password` is deliberately not supported (no passwords anywhere).
    /// `ansible_connection=local`.
    pub local: bool,
    /// `ansible_become` truthy.
    pub become_: bool,
    /// `ansible_become_user`, default `root`.
    pub become_user: String,
    pub ssh: SshOptions,
}

impl Inventory {
    /// Find the inventory in `build_dir` (or use `explicit`), in the documented order:
    /// `inventory` (file or dir), `inventory.ini`, `inventory.yml`, `inventory.yaml`, `hosts`,
    /// `hosts.ini`, `hosts.yml`, `hosts.yaml`, then a single `*.yml`/`*.yaml`/`*.ini` that parses as
    /// an inventory.
    pub fn discover(build_dir: &Path, explicit: Option<&Path>) -> Result<Inventory, InventoryError> {
        let _ = (build_dir, explicit);
        todo!("inventory helper")
    }

    /// Parse one inventory file or directory.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let _ = path;
        todo!("inventory helper")
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// All hosts of a group including its children's, de-duplicated, in Ansible's order
    /// (what `groups['name']` gives in a playbook).
    pub fn group_hosts(&self, group: &str) -> Vec<&Host> {
        let _ = group;
        todo!("inventory helper")
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The same JSON `ansible-inventory -i FILE --list` prints.
    pub fn to_ansible_list(&self) -> serde_json::Value {
        todo!("inventory helper")
    }

    /// Connection settings of one host.
    pub fn connection(&self, host: &str) -> Result<ConnectionSpec, InventoryError> {
        let _ = host;
        todo!("inventory helper")
    }
}
