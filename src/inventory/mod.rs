//! Ansible inventory: discovery in a build directory, INI and YAML parsing, variable
//! precedence, and per-host connection settings.
//!
//! The parser follows Ansible's own code (ansible-core 2.19: `plugins/inventory/ini.py`,
//! `yaml.py`, `inventory/data.py`, `group.py`, `host.py`, `vars/manager.py`,
//! `plugins/vars/host_group_vars.py`) rule for rule, and `tests/inventory_ansible.rs` compares
//! [`Inventory::to_ansible_list`] with the output of a real `ansible-inventory --list` on the
//! corpus in `fixtures/inventories/`.
//!
//! # Sources
//!
//! A file is tried as a YAML inventory when it has no extension or ends in `.yml`, `.yaml` or
//! `.json`, then as an INI inventory (any extension but `.toml`), like Ansible's default plugin
//! order. A directory is read entry by entry in name order (recursively), skipping hidden names,
//! `group_vars`, `host_vars`, `vars_plugins` and names ending in `.pyc .pyo .swp .bak ~ .rpm .md
//! .txt .rst .orig .cfg .retry`. See the `ini` and `source` submodules for the syntax rules.
//!
//! # Variable precedence
//!
//! For each host, lowest first (each step replaces whole top-level keys; dictionaries are not
//! merged, Ansible's default `hash_behaviour=replace`):
//!
//! 1. the `all` group's vars from the inventory file(s);
//! 2. the vars of every other group of the host, from the inventory file(s), groups sorted by
//!    depth (parents before children), then `ansible_group_priority` (default 1; higher wins),
//!    then name;
//! 3. `group_vars/all`;
//! 4. `group_vars/<group>` for the host's groups, in the same order as 2;
//! 5. the host's own inventory vars (inline `key=value`, YAML host vars; `host:port` sets
//!    `ansible_port`);
//! 6. `host_vars/<host>`.
//!
//! So a `group_vars/all.yml` value beats a `[child:vars]` value from the inventory file, as in
//! Ansible. `group_vars/` and `host_vars/` are looked up beside the inventory file (in the
//! inventory directory itself when the inventory is a directory). Ansible also reads them beside
//! the playbook (`ansible-inventory`: the current directory); lsbackup has no playbook and does
//! not.
//!
//! # Connection settings
//!
//! [`Inventory::connection`] reads `ansible_host`, `ansible_port` (or `host:port`),
//! `ansible_user`, `ansible_ssh_private_key_file`, `ansible_connection=local`,
//! `ansible_become`/`ansible_become_user` (and the older `ansible_ssh_*` aliases), and the
//! OpenSSH options in `ansible_ssh_args`, `ansible_ssh_common_args` and
//! `ansible_ssh_extra_args`, in the order and with the "first value wins" rule of Ansible's ssh
//! command line; see [`ConnectionSpec`] and [`SshOptions`]. Options lsbackup does not honour,
//! missing key files, passwords in the inventory and unusable connection settings are reported
//! in [`Inventory::warnings`], one line per remark naming the hosts.
//!
//! Jinja2 templates (`"{{ ... }}"`) are kept as text in [`Host::vars`], as
//! `ansible-inventory --list` prints them; [`Host::origins`] records which file each variable
//! came from. Only the variables lsbackup uses are ever resolved, with the small, side-effect
//! free subset of Jinja in [`jinja`] (`{{ var }}`, `default()`, a few filters, `{% raw %}`,
//! comments; `!unsafe` values are literal): [`Inventory::connection`] for connection
//! variables, the engine for the variables a component declares. A variable using anything else
//! (`lookup()`, `hostvars[...]`, `{% if %}`) is an error naming the host, the variable and its
//! file; unused variables may hold any Jinja.
//!
//! # Known deviations from Ansible
//!
//! - Inventory scripts and inventory plugin configurations (`plugin: ...`) are not run; TOML
//!   inventories are not read. Vault-encrypted values are kept as `{"__ansible_vault": ...}` and
//!   cannot be used for connection settings; vault-encrypted files are refused.
//! - A malformed inventory source is an error (Ansible only warns and skips the source).
//! - Where Python iterates a set, Ansible's order is undefined; lsbackup uses discovery order:
//!   the order of hosts from grandchild groups in [`Inventory::group_hosts`], and the members of
//!   a Python set literal (`{1, 2}`) in an INI value.
//! - Integers beyond 64 bits become floating point numbers in JSON; `\N{NAME}` escapes and lone
//!   surrogates in INI string literals leave the value as plain text; YAML `!!binary` is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A variable value as Ansible would hold it (strings, numbers, bools, lists, maps).
pub type Vars = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Nothing to read: the message lists the names that were tried.
    #[error("no inventory found in {dir} (looked for: {looked})")]
    NotFound { dir: PathBuf, looked: String },
    #[error("{file}:{line}: {msg}")]
    Syntax {
        file: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// Fully resolved variables for this host, exactly what `ansible-inventory --list` shows in
    /// `_meta.hostvars` (Ansible precedence applied, see the module docs: `all` < groups by
    /// depth, then `ansible_group_priority`, then name < `group_vars/all` <
    /// `group_vars/GROUP` < host vars < `host_vars/HOST`; Ansible's internal names such as
    /// `inventory_hostname` or `group_names` are left out).
    pub vars: Vars,
    /// The file each of `vars` came from (the one whose value won): the inventory file,
    /// `group_vars/...` or `host_vars/...`, relative to the directory holding the inventory
    /// (for an inventory directory, to its parent, so paths start with the directory's name).
    /// Not part of `ansible-inventory --list`.
    pub origins: BTreeMap<String, PathBuf>,
}

impl Host {
    /// Where variable `name` came from, for messages (`group_vars/all.yml`, `inventory.ini`).
    pub fn origin(&self, name: &str) -> Option<&Path> {
        self.origins.get(name).map(PathBuf::as_path)
    }

    /// [`Host::origin`] as text (`the inventory` when unknown).
    pub fn origin_text(&self, name: &str) -> String {
        self.origin(name)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the inventory".into())
    }
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
    /// Options given but not honoured, as written, with the variable they came from
    /// (e.g. `-o ControlMaster=auto (from ansible_ssh_args)`); also summarised in
    /// [`Inventory::warnings`].
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
    /// `ansible_ssh_private_key_file` (or `ansible_private_key_file`, `-i`, `IdentityFile`),
    /// resolved as Ansible resolves it: `~` expanded, then a relative path taken relative to the
    /// current working directory (Ansible's ssh plugin only applies `os.path.expanduser` and
    /// hands the path to `ssh`, which opens it relative to its working directory, i.e. the
    /// directory `ansible-playbook` was started from).
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

mod data;
mod hostpattern;
mod ini;
pub mod jinja;
mod pylit;
mod source;
mod sshargs;
mod value;
mod vars;
mod yaml;

use data::{ALL, InvData};
use vars::VarsWithOrigins;

type Origins = std::collections::HashMap<String, PathBuf>;
use value::Data;

/// The names [`Inventory::discover`] tries in a build directory, in order.
pub const DISCOVERY_NAMES: &[&str] = &[
    "inventory",
    "inventory.ini",
    "inventory.yml",
    "inventory.yaml",
    "hosts",
    "hosts.ini",
    "hosts.yml",
    "hosts.yaml",
];

/// Variables Ansible sets itself and `ansible-inventory --list` never shows
/// (`constants.INTERNAL_STATIC_VARS`).
/// At most this many values (JSON nodes) in all hosts' variables together: every host holds its
/// own copy of its groups' variables, so a large list in `[all:vars]` times a wide host range
/// would otherwise take gigabytes (found by fuzzing: 10,000 hosts × a 1,500-element list).
pub const MAX_HOST_VAR_VALUES: usize = 5_000_000;

/// Values (JSON nodes) in `v`, counted up to `limit`.
fn json_values(v: &serde_json::Value, limit: usize) -> usize {
    let mut n = 1;
    match v {
        serde_json::Value::Array(a) => {
            for x in a {
                if n > limit {
                    break;
                }
                n += json_values(x, limit - n);
            }
        }
        serde_json::Value::Object(o) => {
            for x in o.values() {
                if n > limit {
                    break;
                }
                n += json_values(x, limit - n);
            }
        }
        _ => {}
    }
    n
}

const INTERNAL_STATIC_VARS: &[&str] = &[
    "ansible_async_path",
    "ansible_collection_name",
    "ansible_config_file",
    "ansible_dependent_role_names",
    "ansible_diff_mode",
    "ansible_facts",
    "ansible_forks",
    "ansible_inventory_sources",
    "ansible_limit",
    "ansible_play_batch",
    "ansible_play_hosts",
    "ansible_play_hosts_all",
    "ansible_play_role_names",
    "ansible_playbook_python",
    "ansible_role_name",
    "ansible_role_names",
    "ansible_run_tags",
    "ansible_skip_tags",
    "ansible_verbosity",
    "ansible_version",
    "inventory_dir",
    "inventory_file",
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "hostvars",
    "playbook_dir",
    "play_hosts",
    "role_name",
    "role_names",
    "role_path",
    "role_uuid",
];

fn combine(into: &mut Vec<(String, Data)>, from: &[(String, Data)]) {
    for (k, v) in from {
        data::set_var(into, k, v.clone());
    }
}

fn to_vars(pairs: &[(String, Data)], what: &str) -> Result<Vars, InventoryError> {
    let mut m = Vars::new();
    for (k, v) in pairs {
        let j = v
            .to_json()
            .map_err(|e| InventoryError::Other(format!("{what}: {k}: {e}")))?;
        m.insert(k.clone(), j);
    }
    Ok(m)
}

/// A JSON value with every object's keys sorted (what `json.dumps(sort_keys=True)` prints).
fn sorted_value(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted_value(&m[k]));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(sorted_value).collect())
        }
        other => other.clone(),
    }
}

/// `json.dumps(v, sort_keys=True, indent=4, ensure_ascii=False)` byte for byte (Python float
/// repr).
fn python_json(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = |n: usize| " ".repeat(n * 4);
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_f64() {
                let f = n.as_f64().unwrap_or(0.0);
                out.push_str(&value::py_float_repr(f, true));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\x08' => out.push_str("\\b"),
                    '\x0c' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                python_json(x, indent + 1, out);
                if i + 1 < a.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                python_json(&Value::String((*k).clone()), indent + 1, out);
                out.push_str(": ");
                python_json(&m[*k], indent + 1, out);
                if i + 1 < keys.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
    }
}

/// A remark about a key file that does not exist, with a hint when the path is relative and
/// exists beside the inventory (Ansible, like lsbackup, resolves it against the working
/// directory).
fn key_file_remark(key: &Path, vars: &Vars, inv_dir: &Path) -> String {
    let raw = ["ansible_private_key_file", "ansible_ssh_private_key_file"]
        .iter()
        .filter_map(|n| vars.get(*n).and_then(|v| v.as_str()))
        .next_back()
        .unwrap_or_default();
    let mut msg = format!("key file {} does not exist", key.display());
    if !raw.is_empty() && !raw.starts_with('/') && !raw.starts_with('~') {
        let beside = inv_dir.join(raw);
        msg.push_str(
            " (a relative key path is resolved against the current directory, as Ansible does",
        );
        if beside.exists() {
            msg.push_str(&format!(
                "; {} exists: run lsbackup from {} or make the path absolute",
                beside.display(),
                inv_dir.display()
            ));
        }
        msg.push(')');
    }
    msg
}

impl Inventory {
    /// Find the inventory in `build_dir` (or use `explicit`, relative to the current directory),
    /// in this order:
    ///
    /// 1. `explicit` when given (`-i FILE`; a file or a directory);
    /// 2. the first of [`DISCOVERY_NAMES`] that exists in `build_dir`: `inventory` (a file, or a
    ///    directory of inventory files), `inventory.ini`, `inventory.yml`, `inventory.yaml`,
    ///    `hosts`, `hosts.ini`, `hosts.yml`, `hosts.yaml`. It must parse: a malformed one is
    ///    an error, not skipped;
    /// 3. otherwise the single `*.yml`/`*.yaml`/`*.ini` file in `build_dir` (not recursive) that
    ///    parses as an inventory with at least one host (a YAML file whose top-level keys are not
    ///    all group definitions, such as a LambdaStack manifest, does not count). Several such
    ///    files are an error asking for `-i`.
    pub fn discover(
        build_dir: &Path,
        explicit: Option<&Path>,
    ) -> Result<Inventory, InventoryError> {
        if let Some(p) = explicit {
            return Self::load(p);
        }
        if !build_dir.is_dir() {
            return Err(InventoryError::Io {
                file: build_dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "build directory not found (or not a directory)",
                ),
            });
        }
        for name in DISCOVERY_NAMES {
            let p = build_dir.join(name);
            if p.exists() {
                return Self::load(&p);
            }
        }
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(build_dir)
            .map_err(|source| InventoryError::Io {
                file: build_dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yml" | "yaml" | "ini"))
            })
            .collect();
        candidates.sort();
        let found: Vec<Inventory> = candidates
            .iter()
            .filter_map(|p| Self::load(p).ok())
            .filter(|inv| {
                !inv.hosts.is_empty()
                    && !inv
                        .warnings
                        .iter()
                        .any(|w| w.contains("not a valid group definition"))
            })
            .collect();
        let mut found = found;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(InventoryError::NotFound {
                dir: build_dir.to_path_buf(),
                looked: format!(
                    "{}, or a single *.yml/*.yaml/*.ini inventory",
                    DISCOVERY_NAMES.join(", ")
                ),
            }),
            _ => Err(InventoryError::Other(format!(
                "several files in {} look like inventories ({}); choose one with -i FILE",
                build_dir.display(),
                found
                    .iter()
                    .map(|i| i
                        .source
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Parse one inventory file or directory, with the `group_vars/` and `host_vars/` beside it.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let mut inv = InvData::new();
        let mut warnings = Vec::new();
        source::parse_source(&mut inv, path, &mut warnings)?;
        inv.reconcile()
            .map_err(|e| InventoryError::Other(format!("{}: {e}", path.display())))?;

        let base = if path.is_dir() {
            path.to_path_buf()
        } else {
            match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        };
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        let (gv_dir, hv_dir) = (base.join("group_vars"), base.join("host_vars"));
        let group_files: Vec<VarsWithOrigins> = inv
            .groups
            .iter()
            .map(|g| vars::entity_vars_with_origins(&gv_dir, &g.name))
            .collect::<Result<_, _>>()?;
        let host_files: Vec<VarsWithOrigins> = inv
            .hosts
            .iter()
            .map(|h| vars::entity_vars_with_origins(&hv_dir, &h.name))
            .collect::<Result<_, _>>()?;
        // Origins are shown relative to where the inventory lives.
        let shown_root = if path.is_dir() {
            let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            p.parent().map(Path::to_path_buf).unwrap_or(p)
        } else {
            base.clone()
        };
        let shown = |f: &Path| -> PathBuf {
            let c = std::fs::canonicalize(f).unwrap_or_else(|_| f.to_path_buf());
            c.strip_prefix(&shown_root)
                .map(Path::to_path_buf)
                .unwrap_or(c)
        };
        let note = |origins: &mut BTreeMap<String, PathBuf>,
                    vars: &[(String, Data)],
                    from: &std::collections::HashMap<String, PathBuf>| {
            for (k, _) in vars {
                if let Some(f) = from.get(k) {
                    origins.insert(k.clone(), shown(f));
                }
            }
        };

        let mut groups = BTreeMap::new();
        for (gi, g) in inv.groups.iter().enumerate() {
            let mut v = g.vars.clone();
            combine(&mut v, &group_files[gi].0);
            let mut vars = to_vars(&v, &format!("group {}", g.name))?;
            if g.priority != 1 {
                vars.insert("ansible_group_priority".into(), g.priority.into());
            }
            groups.insert(
                g.name.clone(),
                Group {
                    name: g.name.clone(),
                    hosts: g.hosts.iter().map(|h| inv.hosts[*h].name.clone()).collect(),
                    children: g
                        .children
                        .iter()
                        .map(|c| inv.groups[*c].name.clone())
                        .collect(),
                    vars,
                },
            );
        }

        let mut hosts = Vec::new();
        let mut values = 0usize;
        for (hi, h) in inv.hosts.iter().enumerate() {
            let others: Vec<usize> = h.groups.iter().copied().filter(|g| *g != ALL).collect();
            let sorted = inv.sorted_groups(&others);
            let mut v: Vec<(String, Data)> = Vec::new();
            let mut origins = BTreeMap::new();
            let mut layers: Vec<(&[(String, Data)], &Origins)> =
                vec![(&inv.groups[ALL].vars, &inv.groups[ALL].origins)];
            for g in &sorted {
                layers.push((&inv.groups[*g].vars, &inv.groups[*g].origins));
            }
            layers.push((&group_files[ALL].0, &group_files[ALL].1));
            for g in &sorted {
                layers.push((&group_files[*g].0, &group_files[*g].1));
            }
            layers.push((&h.vars, &h.origins));
            layers.push((&host_files[hi].0, &host_files[hi].1));
            for (vars, from) in layers {
                combine(&mut v, vars);
                note(&mut origins, vars, from);
            }
            v.retain(|(k, _)| !INTERNAL_STATIC_VARS.contains(&k.as_str()));
            origins.retain(|k, _| v.iter().any(|(n, _)| n == k));
            let vars = to_vars(&v, &format!("host {}", h.name))?;
            values += vars
                .values()
                .map(|x| json_values(x, MAX_HOST_VAR_VALUES + 1))
                .sum::<usize>();
            if values > MAX_HOST_VAR_VALUES {
                return Err(InventoryError::Other(format!(
                    "{}: the variables of its hosts add up to more than {MAX_HOST_VAR_VALUES} values by host {} of {} (each host holds its own copy of its groups' variables): a large list in a group's vars times many hosts",
                    path.display(),
                    hi + 1,
                    inv.hosts.len()
                )));
            }
            hosts.push(Host {
                name: h.name.clone(),
                vars,
                origins,
            });
        }

        for g in &inv.groups {
            if inv.host(&g.name).is_some() {
                warnings.push(format!("found both a group and a host named {}", g.name));
            }
        }

        let mut out = Inventory {
            source: path.to_path_buf(),
            groups,
            hosts,
            warnings,
        };
        out.collect_connection_warnings();
        Ok(out)
    }

    /// Summarise ignored ssh options and other connection remarks, one line per remark with
    /// the hosts it concerns.
    fn collect_connection_warnings(&mut self) {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let inv_dir = if self.source.is_dir() {
            self.source.clone()
        } else {
            self.source
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        let mut remarks: Vec<(String, Vec<String>)> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut add = |remark: String, host: &str| {
            if let Some(r) = remarks.iter_mut().find(|(r, _)| *r == remark) {
                r.1.push(host.to_string());
            } else {
                remarks.push((remark, vec![host.to_string()]));
            }
        };
        for h in &self.hosts {
            match sshargs::connection_spec(&h.name, &h.vars, &|n| h.origin_text(n), &cwd) {
                Ok((spec, notes)) => {
                    for i in &spec.ssh.ignored {
                        add(format!("ssh option {i} is ignored by lsbackup"), &h.name);
                    }
                    for n in notes {
                        add(n, &h.name);
                    }
                    if let Some(key) = &spec.key_file
                        && !key.exists()
                    {
                        add(key_file_remark(key, &h.vars, &inv_dir), &h.name);
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        for (remark, hosts) in remarks {
            let list = if hosts.len() > 8 {
                format!("{} and {} more", hosts[..8].join(", "), hosts.len() - 8)
            } else {
                hosts.join(", ")
            };
            let noun = if hosts.len() == 1 { "host" } else { "hosts" };
            self.warnings.push(format!("{noun} {list}: {remark}"));
        }
        self.warnings.extend(errors);
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// All hosts of a group including its children's, de-duplicated, in Ansible's order
    /// (what `groups['name']` gives in a playbook): the group's own hosts, then its children's in
    /// order, then grandchildren's, and so on. Unknown group: empty.
    pub fn group_hosts(&self, group: &str) -> Vec<&Host> {
        let Some(g) = self.groups.get(group) else {
            return Vec::new();
        };
        // Group._walk_relationship(include_self=True, preserve_ordering=True)
        let mut ordered: Vec<&str> = vec![g.name.as_str()];
        let mut seen: Vec<&str> = Vec::new();
        let mut unprocessed: Vec<&str> = vec![g.name.as_str()];
        for c in &g.children {
            if !ordered.contains(&c.as_str()) {
                ordered.push(c);
            }
            unprocessed.push(c);
        }
        while !unprocessed.is_empty() {
            for u in &unprocessed {
                if !seen.contains(u) {
                    seen.push(u);
                }
            }
            let mut next: Vec<&str> = Vec::new();
            for u in &unprocessed {
                if let Some(ug) = self.groups.get(*u) {
                    for c in &ug.children {
                        if !seen.contains(&c.as_str()) && !next.contains(&c.as_str()) {
                            next.push(c);
                        }
                        if !ordered.contains(&c.as_str()) {
                            ordered.push(c);
                        }
                    }
                }
            }
            unprocessed = next;
        }
        // Sets and a name index: a group of thousands of hosts is not searched once per host.
        let by_name: std::collections::HashMap<&str, &Host> =
            self.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
        let mut seen_hosts = std::collections::HashSet::new();
        let mut names: Vec<&str> = Vec::new();
        for gname in ordered {
            if let Some(gg) = self.groups.get(gname) {
                for h in &gg.hosts {
                    if seen_hosts.insert(h.as_str()) {
                        names.push(h);
                    }
                }
            }
        }
        names
            .into_iter()
            .filter_map(|n| by_name.get(n).copied())
            .collect()
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The same JSON `ansible-inventory -i FILE --list` prints: every non-empty group with its
    /// direct `hosts` and `children` (`all` lists children only), and `_meta.hostvars` with the
    /// fully resolved variables of every host that has any. Object keys are sorted like
    /// Ansible's `sort_keys=True`.
    pub fn to_ansible_list(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let mut out = Map::new();
        let mut hostvars = Map::new();
        let mut hosts: Vec<&Host> = self.hosts.iter().collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        for h in hosts {
            if !h.vars.is_empty() {
                hostvars.insert(h.name.clone(), sorted_value(&Value::Object(h.vars.clone())));
            }
        }
        out.insert(
            "_meta".into(),
            json!({"hostvars": Value::Object(hostvars), "profile": "inventory_legacy"}),
        );
        for (name, g) in &self.groups {
            let mut e = Map::new();
            if !g.children.is_empty() {
                e.insert("children".into(), json!(g.children));
            }
            if name != "all" && !g.hosts.is_empty() {
                e.insert("hosts".into(), json!(g.hosts));
            }
            if !e.is_empty() {
                out.insert(name.clone(), Value::Object(e));
            }
        }
        Value::Object(out)
    }

    /// [`Inventory::to_ansible_list`] formatted exactly as `ansible-inventory --list` prints it
    /// (Python's `json.dumps(indent=4, sort_keys=True)`: 4-space indent, UTF-8 kept), so
    /// the two outputs can be compared with `diff`.
    pub fn to_ansible_list_json(&self) -> String {
        let mut s = String::new();
        python_json(&self.to_ansible_list(), 0, &mut s);
        s
    }

    /// Connection settings of one host (see the `sshargs` rules: aliases, OpenSSH option
    /// parsing, first-value-wins order). Connection variables are resolved with [`jinja`]; one
    /// using unsupported Jinja, a vault-encrypted value or an unusable value is an error naming
    /// the host, the variable (and the file it came from).
    pub fn connection(&self, host: &str) -> Result<ConnectionSpec, InventoryError> {
        let h = self.host(host).ok_or_else(|| {
            InventoryError::Other(format!(
                "host {host} is not in the inventory {}",
                self.source.display()
            ))
        })?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        sshargs::connection_spec(&h.name, &h.vars, &|n| h.origin_text(n), &cwd)
            .map(|(spec, _)| spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input fuzzing found: a 3 KB inventory whose hosts' variables took 3.6 GB.
    #[test]
    fn hosts_times_a_large_group_list_is_refused_not_copied_into_gigabytes() {
        let t = tempfile::tempdir().unwrap();
        let list = vec!["1"; 1500].join(",");
        let ini = format!("[postgresql]\nh[1:10000]\n[all:vars]\nx=[{list}]\n");
        let path = t.path().join("inventory");
        std::fs::write(&path, ini).unwrap();
        let e = Inventory::load(&path).unwrap_err().to_string();
        assert!(e.contains("add up to more than 5000000 values"), "{e}");
        assert!(e.contains("of 10000"), "{e}");
        // a real-sized inventory of the same shape loads
        let list = vec!["1"; 100].join(",");
        std::fs::write(
            &path,
            format!("[postgresql]\nh[1:300]\n[all:vars]\nx=[{list}]\n"),
        )
        .unwrap();
        assert_eq!(Inventory::load(&path).unwrap().hosts.len(), 300);
        assert_eq!(
            json_values(&serde_json::json!([1, [2, 3], {"a": 4}]), 100),
            7
        );
    }

    #[test]
    fn origins_name_the_file_whose_value_won() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(
            d.join("inventory.ini"),
            "[db]\ndb1 a=inline\ndb2:2222\n[db:vars]\nb=groupvar\nc=groupvar\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("group_vars/db")).unwrap();
        std::fs::create_dir_all(d.join("host_vars")).unwrap();
        std::fs::write(d.join("group_vars/all.yml"), "c: all\nd: all\n").unwrap();
        std::fs::write(d.join("group_vars/db/10.yml"), "d: db10\n").unwrap();
        std::fs::write(d.join("host_vars/db2.yml"), "a: hv\n").unwrap();
        let inv = Inventory::load(&d.join("inventory.ini")).unwrap();
        let o = |h: &str, v: &str| {
            inv.host(h)
                .unwrap()
                .origin(v)
                .map(|p| p.display().to_string())
        };
        assert_eq!(o("db1", "a").as_deref(), Some("inventory.ini"));
        assert_eq!(o("db2", "a").as_deref(), Some("host_vars/db2.yml"));
        assert_eq!(o("db1", "b").as_deref(), Some("inventory.ini"));
        // group_vars/all beats [db:vars] from the inventory file, as in Ansible.
        assert_eq!(o("db1", "c").as_deref(), Some("group_vars/all.yml"));
        assert_eq!(o("db1", "d").as_deref(), Some("group_vars/db/10.yml"));
        assert_eq!(o("db2", "ansible_port").as_deref(), Some("inventory.ini"));
        assert_eq!(o("db1", "nope"), None);

        // An inventory directory: paths start with its name.
        let inv_dir = d.join("inv");
        std::fs::create_dir_all(inv_dir.join("group_vars")).unwrap();
        std::fs::write(
            inv_dir.join("hosts.yml"),
            "db:\n  hosts:\n    db1:\n      a: 1\n",
        )
        .unwrap();
        std::fs::write(inv_dir.join("group_vars/db.yml"), "b: 2\n").unwrap();
        let inv = Inventory::load(&inv_dir).unwrap();
        let h = inv.host("db1").unwrap();
        assert_eq!(h.origin("a"), Some(Path::new("inv/hosts.yml")));
        assert_eq!(h.origin("b"), Some(Path::new("inv/group_vars/db.yml")));
    }
}
