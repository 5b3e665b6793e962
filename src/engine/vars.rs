//! The variables of one component on one host.
//!
//! A component takes from the inventory only the variables it declares (the keys of its spec's
//! `vars:`); the rest of the inventory is never looked at, whatever it holds. Each declared
//! variable's value is, lowest first: the component's default < the host's inventory variable
//! (Ansible precedence, see [`crate::inventory`]) < `--set NAME=VALUE` < `--set
//! COMPONENT.NAME=VALUE`. The winning value is then resolved with [`crate::inventory::jinja`]:
//! inventory values as Ansible templates (the supported subset), component defaults and `--set`
//! values with `{{ expr }}` only. A reference `{{ other }}` sees the same layers (a declared
//! variable's final value, else the host's inventory variable, else `--set`), recursively.
//!
//! A declared variable that cannot be resolved is a [`VarError`] for that component on that
//! host only: the plan keeps it, and the run records that host as failed without running
//! anything there.

use std::collections::BTreeMap;

use crate::inventory::Host;
use crate::inventory::jinja::{self, Def, HostScope, Raw, ResolveError, Resolver, Scope, Syntax};

/// A declared variable of a component that could not be resolved for a host (the first, by
/// name; `also` names any others). One line: `component C, host H: variable V (from FILE): ...`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("component {component}, host {host}: {}", self.cause())]
pub struct VarError {
    pub component: String,
    pub host: String,
    /// The declared variable.
    pub var: String,
    /// Where its value came from: `group_vars/all.yml`, `host_vars/db1.yml`, the inventory
    /// file, `component default`, `--set NAME`.
    pub origin: String,
    pub source: ResolveError,
    /// Other declared variables of the component that cannot be resolved on this host either.
    pub also: Vec<String>,
}

impl VarError {
    /// The line without the component and host (for reports that name them already).
    pub fn cause(&self) -> String {
        let e = &self.source;
        let mut inner = e;
        while let ResolveError::Via { source, .. } = inner {
            inner = source;
        }
        let sep = if matches!(e, ResolveError::Via { .. }) {
            " "
        } else {
            ": "
        };
        let hint = match inner {
            ResolveError::Unsupported { .. } => format!(
                "; lsbackup resolves only {} in inventory values: give it a literal value (or \
                 --set {}.{}=VALUE)",
                jinja::SUPPORTED,
                self.component,
                self.var
            ),
            _ => String::new(),
        };
        let also = match self.also.as_slice() {
            [] => String::new(),
            names => format!(" (not resolved either: {})", names.join(", ")),
        };
        format!(
            "variable {} (from {}){sep}{e}{hint}{also}",
            self.var, self.origin
        )
    }
}

/// `--set` values: for every component, and per component.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sets {
    pub global: BTreeMap<String, String>,
    pub per_component: BTreeMap<String, BTreeMap<String, String>>,
}

/// The names a component on a host can refer to, in precedence order.
struct ComponentScope<'a> {
    component: &'a str,
    defaults: &'a BTreeMap<String, String>,
    host: HostScope<'a>,
    sets: &'a Sets,
}

impl Scope for ComponentScope<'_> {
    fn lookup(&self, name: &str) -> Option<Def<'_>> {
        if let Some(v) = self
            .sets
            .per_component
            .get(self.component)
            .and_then(|m| m.get(name))
        {
            return Some(Def {
                raw: Raw::Text(v, Syntax::Component),
                origin: format!("--set {}.{name}", self.component),
            });
        }
        if let Some(v) = self.sets.global.get(name) {
            return Some(Def {
                raw: Raw::Text(v, Syntax::Component),
                origin: format!("--set {name}"),
            });
        }
        if let Some(d) = self.host.lookup(name) {
            return Some(d);
        }
        self.defaults.get(name).map(|v| Def {
            raw: Raw::Text(v, Syntax::Component),
            origin: "component default".into(),
        })
    }
}

/// The declared variables of `component` (its `vars:` defaults) on `host`, resolved; the ones
/// that cannot be are left out and reported in one [`VarError`].
pub(crate) fn component_vars(
    component: &str,
    defaults: &BTreeMap<String, String>,
    host: &Host,
    sets: &Sets,
) -> (BTreeMap<String, String>, Option<VarError>) {
    let origin = |n: &str| host.origin_text(n);
    let scope = ComponentScope {
        component,
        defaults,
        host: HostScope {
            host: &host.name,
            vars: &host.vars,
            origin: &origin,
        },
        sets,
    };
    let mut r = Resolver::new(&scope);
    let mut vars = BTreeMap::new();
    let mut error: Option<VarError> = None;
    for name in defaults.keys() {
        // A URL with credentials would be shown in plans, logs and errors: refused, unshown.
        let resolved = r.resolve(name).and_then(|v| {
            let plain = v.to_plain();
            if crate::http::has_userinfo(&plain) {
                Err(ResolveError::CredentialsInUrl)
            } else {
                Ok(plain)
            }
        });
        match resolved {
            Ok(v) => {
                vars.insert(name.clone(), v);
            }
            Err(_) if error.is_some() => {
                if let Some(e) = error.as_mut() {
                    e.also.push(name.clone());
                }
            }
            Err(source) => {
                error = Some(VarError {
                    component: component.to_string(),
                    host: host.name.clone(),
                    var: name.clone(),
                    origin: r.origin(name),
                    source,
                    also: Vec::new(),
                })
            }
        }
    }
    (vars, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host(vars: serde_json::Value, origins: &[(&str, &str)]) -> Host {
        let serde_json::Value::Object(vars) = vars else {
            panic!()
        };
        Host {
            name: "db1".into(),
            vars,
            origins: origins
                .iter()
                .map(|(k, f)| (k.to_string(), f.into()))
                .collect(),
        }
    }

    fn defaults(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_declared_variables_are_taken_and_resolved() {
        let h = host(
            json!({
                "home": "{{ lookup('env','HOME') }}",
                "cond": "{% if x %}a{% endif %}",
                "unrelated": {"nested": ["{{ whatever() }}"]},
                "base": "/srv",
                "pg_dir": "{{ base }}/pg",
                "pg_port": 5433,
                "pg_dirs": ["/a", "{{ base }}/b"],
            }),
            &[],
        );
        let d = defaults(&[
            ("pg_dir", "/var/lib/pg"),
            ("pg_port", "5432"),
            ("pg_dirs", ""),
            ("pg_user", "postgres"),
            ("pg_files", "{{ pg_dir }}/*.conf"),
        ]);
        let (vars, error) = component_vars("postgresql", &d, &h, &Sets::default());
        assert_eq!(error, None);
        assert_eq!(
            vars,
            defaults(&[
                ("pg_dir", "/srv/pg"),
                ("pg_port", "5433"),
                ("pg_dirs", "/a,/srv/b"),
                ("pg_user", "postgres"),
                ("pg_files", "/srv/pg/*.conf"),
            ])
        );
    }

    #[test]
    fn set_beats_inventory_and_component_set_beats_set() {
        let h = host(
            json!({"a": "inv", "b": "inv", "c": "inv", "base": "/inv"}),
            &[],
        );
        let d = defaults(&[
            ("a", "def"),
            ("b", "def"),
            ("c", "def"),
            ("d", "{{ base }}/x"),
        ]);
        let mut sets = Sets::default();
        sets.global.insert("b".into(), "set".into());
        sets.global.insert("c".into(), "set".into());
        sets.global.insert("base".into(), "/set".into());
        sets.per_component
            .entry("comp".into())
            .or_default()
            .insert("c".into(), "comp-set {{ a }}".into());
        let (vars, error) = component_vars("comp", &d, &h, &sets);
        assert_eq!(error, None);
        assert_eq!(vars["a"], "inv");
        assert_eq!(vars["b"], "set");
        assert_eq!(vars["c"], "comp-set inv");
        assert_eq!(vars["d"], "/set/x");
        // Other components do not see COMPONENT.NAME sets.
        let (vars, _) = component_vars("other", &d, &h, &sets);
        assert_eq!(vars["c"], "set");
    }

    #[test]
    fn an_unresolvable_variable_is_one_error_naming_variable_host_and_file() {
        let h = host(
            json!({"pg_dir": "{{ home }}/pg", "home": "{{ lookup('env','HOME') }}",
                   "pg_user": "{% if a %}x{% endif %}"}),
            &[
                ("pg_dir", "host_vars/db1.yml"),
                ("home", "group_vars/all.yml"),
                ("pg_user", "inventory.ini"),
            ],
        );
        let d = defaults(&[("pg_dir", ""), ("pg_user", "postgres"), ("pg_port", "5432")]);
        let (vars, error) = component_vars("postgresql", &d, &h, &Sets::default());
        assert_eq!(vars, defaults(&[("pg_port", "5432")]));
        assert_eq!(
            error.unwrap().to_string(),
            "component postgresql, host db1: variable pg_dir (from host_vars/db1.yml) uses \
             home (from group_vars/all.yml), which {{ lookup('env','HOME') }}: lookup() is \
             not supported; lsbackup resolves only {{ var }}, default(), string, int, lower, \
             upper, trim, {% raw %} and {# comments #} in inventory values: give it a \
             literal value (or --set postgresql.pg_dir=VALUE) (not resolved either: pg_user)"
        );
        // --set repairs one; the other is reported alone.
        let mut sets = Sets::default();
        sets.global.insert("home".into(), "/root".into());
        let (vars, error) = component_vars("postgresql", &d, &h, &sets);
        assert_eq!(vars["pg_dir"], "/root/pg");
        let e = error.unwrap();
        assert_eq!(
            e.cause(),
            "variable pg_user (from inventory.ini): {% if a %}: {% if %} blocks are not \
             supported (only {% raw %} is); lsbackup resolves only {{ var }}, default(), \
             string, int, lower, upper, trim, {% raw %} and {# comments #} in inventory \
             values: give it a literal value (or --set postgresql.pg_user=VALUE)"
        );
    }

    #[test]
    fn undefined_references_and_cycles_are_errors() {
        let h = host(
            json!({"a": "{{ nowhere }}", "b": "{{ c }}", "c": "{{ b }}"}),
            &[],
        );
        let d = defaults(&[("a", ""), ("b", ""), ("ok", "{{ inventory_hostname }}")]);
        let (vars, error) = component_vars("x", &d, &h, &Sets::default());
        assert_eq!(vars["ok"], "db1");
        let e = error.unwrap();
        assert_eq!(
            e.to_string(),
            "component x, host db1: variable a (from the inventory): nowhere is not defined \
             (not resolved either: b)"
        );
        let d = defaults(&[("b", "")]);
        let e = component_vars("x", &d, &h, &Sets::default()).1.unwrap();
        assert!(e.cause().contains("refers to itself (b -> c -> b)"), "{e}");
    }

    #[test]
    fn unsafe_values_stay_literal() {
        let h = host(json!({"a": {"__ansible_unsafe": "{{ x }}{% y %}"}}), &[]);
        let d = defaults(&[("a", ""), ("b", "{{ a }}/z")]);
        let (vars, error) = component_vars("x", &d, &h, &Sets::default());
        assert_eq!(error, None);
        assert_eq!(vars["a"], "{{ x }}{% y %}");
        assert_eq!(vars["b"], "{{ x }}{% y %}/z");
    }
}
