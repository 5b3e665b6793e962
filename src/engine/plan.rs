//! The resolved plan: components × hosts × variables, built once from the inventory and the
//! selection, printed by `lsbackup plan` and executed by `lsbackup backup`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::vars::{Sets, VarError, component_vars};
use crate::components::template;
use crate::components::{Catalog, ComponentSpec, HostMode, SpecError, StepKind};
use crate::inventory::{ConnectionSpec, Inventory, InventoryError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("component {component}: none of its inventory groups ({groups}) is in the inventory")]
    Absent { component: String, groups: String },
    #[error("--set {0:?}: expected NAME=VALUE or COMPONENT.NAME=VALUE")]
    BadSet(String),
    #[error("nothing to back up: no component's inventory group is in the inventory ({0})")]
    Empty(String),
    #[error("component {component}, host {host}: {source}")]
    Template {
        component: String,
        host: String,
        #[source]
        source: SpecError,
    },
}

/// What the user selected on the command line.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
    /// `NAME=VALUE` (every component) or `COMPONENT.NAME=VALUE`.
    pub sets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PlannedHost {
    pub name: String,
    pub conn: ConnectionSpec,
    /// The component's declared variables (its `vars:` keys) and nothing else: the default,
    /// overridden by the host's inventory variable of that name, overridden by `--set`, then
    /// resolved (see `engine::vars`). Plain values, not shell-quoted. A variable that could
    /// not be resolved is absent here and reported in `var_error`.
    pub vars: BTreeMap<String, String>,
    /// A declared variable that cannot be resolved for this host (unsupported Jinja, an
    /// undefined reference, a loop, a vault value; any others are named in it too): the
    /// component fails on this host with this one line, other components and hosts go on.
    pub var_error: Option<VarError>,
    /// The component's inventory groups this host is in (in the component's group order).
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PlannedComponent {
    pub spec: ComponentSpec,
    /// The component's groups that exist in the inventory.
    pub groups: Vec<String>,
    /// Candidate hosts in order (first group's hosts first).
    pub hosts: Vec<PlannedHost>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub inventory: Inventory,
    pub components: Vec<PlannedComponent>,
    /// Selected components none of whose groups is in the inventory (not run).
    pub absent: Vec<String>,
}

impl Plan {
    pub fn build(
        inventory: Inventory,
        catalog: &Catalog,
        sel: &Selection,
    ) -> Result<Plan, PlanError> {
        let selected = catalog.select(&sel.only, &sel.skip)?;
        let mut sets = Sets::default();
        for s in &sel.sets {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| PlanError::BadSet(s.clone()))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(PlanError::BadSet(s.clone()));
            }
            match k.split_once('.') {
                Some((c, name)) => {
                    if catalog.get(c).is_none() {
                        return Err(SpecError::Unknown {
                            name: c.to_string(),
                            known: catalog.names().join(", "),
                        }
                        .into());
                    }
                    sets.per_component
                        .entry(c.to_string())
                        .or_default()
                        .insert(name.to_string(), v.to_string());
                }
                None => {
                    sets.global.insert(k.to_string(), v.to_string());
                }
            }
        }

        let mut components = Vec::new();
        let mut absent = Vec::new();
        for spec in selected {
            let groups: Vec<String> = spec
                .groups
                .iter()
                .filter(|g| inventory.has_group(g) && !inventory.group_hosts(g).is_empty())
                .cloned()
                .collect();
            if groups.is_empty() {
                if !sel.only.is_empty() {
                    return Err(PlanError::Absent {
                        component: spec.name.clone(),
                        groups: spec.groups.join(", "),
                    });
                }
                absent.push(spec.name.clone());
                continue;
            }
            // Each group's hosts once (not once per host: a group may hold thousands).
            let members: Vec<std::collections::HashSet<&str>> = groups
                .iter()
                .map(|g| {
                    inventory
                        .group_hosts(g)
                        .into_iter()
                        .map(|h| h.name.as_str())
                        .collect()
                })
                .collect();
            let mut names: Vec<String> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for g in &groups {
                for h in inventory.group_hosts(g) {
                    if seen.insert(h.name.as_str()) {
                        names.push(h.name.clone());
                    }
                }
            }
            let mut hosts = Vec::new();
            for name in names {
                let conn = inventory.connection(&name)?;
                let (vars, var_error) = match inventory.host(&name) {
                    Some(h) => component_vars(&spec.name, &spec.vars, h, &sets),
                    None => (BTreeMap::new(), None),
                };
                let host_groups = groups
                    .iter()
                    .zip(&members)
                    .filter(|(_, m)| m.contains(name.as_str()))
                    .map(|(g, _)| g.clone())
                    .collect();
                hosts.push(PlannedHost {
                    name,
                    conn,
                    vars,
                    var_error,
                    groups: host_groups,
                });
            }
            let pc = PlannedComponent {
                spec: spec.clone(),
                groups,
                hosts,
            };
            for h in pc.hosts.iter().filter(|h| h.var_error.is_none()) {
                pc.describe_host(h, false)
                    .map_err(|source| PlanError::Template {
                        component: pc.spec.name.clone(),
                        host: h.name.clone(),
                        source,
                    })?;
            }
            components.push(pc);
        }
        if components.is_empty() {
            return Err(PlanError::Empty(if absent.is_empty() {
                "nothing selected".into()
            } else {
                format!("absent: {}", absent.join(", "))
            }));
        }
        Ok(Plan {
            inventory,
            components,
            absent,
        })
    }

    /// Every declared variable that could not be resolved, over all components and hosts (those
    /// component × host pairs will not run).
    pub fn var_errors(&self) -> Vec<&VarError> {
        self.components
            .iter()
            .flat_map(|c| c.hosts.iter().filter_map(|h| h.var_error.as_ref()))
            .collect()
    }

    /// Human-readable plan, as printed by `lsbackup plan`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "inventory: {}", self.inventory.source.display());
        for c in &self.components {
            let mode = match (c.spec.hosts, c.spec.select_name()) {
                (HostMode::First, None) => "first reachable host".to_string(),
                (HostMode::All, None) => "every host".to_string(),
                (HostMode::First, Some(s)) => format!("first reachable host that is {s}"),
                (HostMode::All, Some(s)) => format!("every host that is {s}"),
            };
            let serial = c
                .hosts
                .first()
                .map(|h| c.spec.serial.eval(&h.vars).unwrap_or(true))
                .unwrap_or(false);
            let mode = if serial && c.spec.hosts == HostMode::All {
                format!("{mode}, one at a time")
            } else {
                mode
            };
            let _ = writeln!(out, "\n{} — {}", c.spec.name, c.spec.description);
            let _ = writeln!(out, "  groups: {}; runs on: {mode}", c.groups.join(", "));
            for h in &c.hosts {
                let addr = if h.conn.local {
                    "local".to_string()
                } else {
                    format!("{}:{}", h.conn.address, h.conn.port)
                };
                let _ = writeln!(out, "  host {} ({addr})", h.name);
                if let Some(e) = &h.var_error {
                    let _ = writeln!(out, "    error (nothing runs here): {}", e.cause());
                    continue;
                }
                for line in c.describe_host(h, false).unwrap_or_default() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            for n in &c.spec.not_covered {
                let _ = writeln!(out, "  not covered: {n}");
            }
        }
        if !self.absent.is_empty() {
            let _ = writeln!(
                out,
                "\nnot in the inventory (skipped): {}",
                self.absent.join(", ")
            );
        }
        out
    }

    /// The plan as JSON (`lsbackup plan --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let comps: Vec<_> = self
            .components
            .iter()
            .map(|c| {
                let hosts: Vec<_> = c
                    .hosts
                    .iter()
                    .map(|h| {
                        serde_json::json!({
                            "host": h.name,
                            "address": h.conn.address,
                            "port": h.conn.port,
                            "local": h.conn.local,
                            "steps": if h.var_error.is_none() {
                                c.describe_host(h, true).unwrap_or_default()
                            } else {
                                Vec::new()
                            },
                            "error": h.var_error.as_ref().map(|e| e.to_string()),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": c.spec.name,
                    "description": c.spec.description,
                    "groups": c.groups,
                    "hosts_mode": format!("{:?}", c.spec.hosts).to_lowercase(),
                    "select": c.spec.select_name(),
                    "hosts": hosts,
                    "not_covered": c.spec.not_covered,
                })
            })
            .collect();
        serde_json::json!({
            "inventory": self.inventory.source.display().to_string(),
            "components": comps,
            "absent": self.absent,
        })
    }
}

impl PlannedComponent {
    /// Variables for display: captured and per-item variables show as placeholders.
    fn display_vars(&self, h: &PlannedHost) -> BTreeMap<String, String> {
        let mut vars = h.vars.clone();
        for s in &self.spec.steps {
            if let Some(into) = &s.into {
                vars.insert(into.clone(), format!("<{into} from step '{}'>", s.name));
            }
        }
        vars.insert("item".into(), "<ITEM>".into());
        vars
    }

    /// One line per action on host `h`, with secrets masked.
    pub fn describe_host(&self, h: &PlannedHost, full: bool) -> Result<Vec<String>, SpecError> {
        let vars = self.display_vars(h);
        let r = |t: &str| template::shell_redacted(t, &vars, &self.spec.snippets);
        let p = |t: &str| template::plain_redacted(t, &vars);
        let who = |u: &Option<String>| -> Result<String, SpecError> {
            Ok(match u {
                Some(u) => format!(" (as {})", p(u)?),
                None => String::new(),
            })
        };
        let one_line = |s: String| {
            let t: Vec<&str> = s
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            match t.len() {
                _ if full => s.trim().to_string(),
                0 | 1 => t.join(""),
                n => format!("{} … ({n}-line script; `plan --json` shows it whole)", t[0]),
            }
        };
        let mut lines = Vec::new();
        if let Some(sel) = &self.spec.select {
            lines.push(format!(
                "select {}: `{}`{} == {:?}",
                sel.name,
                one_line(r(&sel.command)?),
                who(&sel.become_user)?,
                sel.expect
            ));
        }
        if !self.spec.requires.is_empty() {
            lines.push(format!("requires: {}", self.spec.requires.join(", ")));
        }
        for (name, p) in &self.spec.versions {
            lines.push(format!("version {name}: `{}`", one_line(r(&p.command)?)));
        }
        if let Some(native) = &self.spec.native {
            // Secret variables reach `describe` masked: what it prints cannot hold them.
            lines.extend(native.0.describe(&template::redact(&h.vars)));
            // Which credentials are set, never their values.
            let set: Vec<String> = h
                .vars
                .iter()
                .filter(|(k, v)| crate::components::is_secret_var(k) && !v.is_empty())
                .map(|(k, _)| format!("{k}=********"))
                .collect();
            if !set.is_empty() {
                lines.push(format!("credentials: {}", set.join(", ")));
            }
        }
        for s in &self.spec.steps {
            let cond = match &s.when {
                Some(w) => format!(" [when `{}`]", r(w)?),
                None => String::new(),
            };
            let opt = if s.optional { " [optional]" } else { "" };
            let each = match &s.foreach {
                Some(f) => format!(" [for each line of `{}`]", one_line(r(f)?)),
                None => String::new(),
            };
            let line = match s.kind() {
                StepKind::Run => format!(
                    "{}: run `{}`{} -> {}/{}/{}",
                    s.name,
                    one_line(r(s.run.as_deref().unwrap_or_default())?),
                    who(&s.become_user)?,
                    self.spec.name,
                    h.name,
                    p(s.output.as_deref().unwrap_or_default())?
                ),
                StepKind::Copy => {
                    let paths = template::copy_shown(&s.copy, &vars)?;
                    format!(
                        "{}: copy {} -> {}/{}/...",
                        s.name,
                        crate::shell::quote_words(paths),
                        self.spec.name,
                        h.name
                    )
                }
                StepKind::Exec => format!(
                    "{}: exec `{}`{}",
                    s.name,
                    one_line(r(s.exec.as_deref().unwrap_or_default())?),
                    who(&s.become_user)?
                ),
                StepKind::Capture => format!(
                    "{}: capture `{}`{} into {}",
                    s.name,
                    one_line(r(s.capture.as_deref().unwrap_or_default())?),
                    who(&s.become_user)?,
                    s.into.as_deref().unwrap_or_default()
                ),
            };
            lines.push(format!("{line}{each}{cond}{opt}"));
        }
        for c in &self.spec.cleanup {
            lines.push(format!(
                "cleanup {}: `{}`{}",
                c.name,
                one_line(r(&c.run)?),
                who(&c.become_user)?
            ));
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input libFuzzer timed out on (fuzz/regressions/ini_inventory/timeout-1d4a...): a group
    /// of 3038 hosts (host ranges) had its hosts listed again for every host, each list
    /// deduplicated by searching it, in the plan and in `Inventory::group_hosts` (over 30 s; now
    /// well under one).
    #[test]
    fn a_large_group_is_planned_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.ini");
        std::fs::write(
            &path,
            include_bytes!(
                "../../fuzz/regressions/ini_inventory/timeout-1d4aa6c8b07e05f3faf55aa8fa7ed58af6e3f2e0"
            ),
        )
        .unwrap();
        let inv = Inventory::load(&path).unwrap();
        let in_logging = inv.group_hosts("logging").len();
        let plan = Plan::build(inv, &Catalog::load(None).unwrap(), &Selection::default()).unwrap();
        let es = plan
            .components
            .iter()
            .find(|c| c.spec.name == "elasticsearch")
            .unwrap();
        assert_eq!((in_logging, es.hosts.len()), (3038, 3038));
        assert!(es.hosts.iter().all(|h| h.groups == ["logging"]));
    }
}
