//! Component specs: what to back up, from which inventory groups, on which hosts, with which
//! commands.
//!
//! A component is one YAML file in `components/` (embedded in the binary at build time). A user
//! can add or override components with `--components-dir DIR`: a file there with the same `name`
//! replaces the built-in one. The format is documented in `docs/components.md`.
//!
//! Steps are shell commands run on the host over the transport; their stdout becomes an archive
//! entry (`run`), a set of remote paths is copied through a remote `tar` stream (`copy`), a short
//! output is captured into a variable for later steps (`capture`), and cleanups run at the end
//! whatever happened (`cleanup`). `{{ var }}` in commands is replaced by the component's `vars`,
//! overridden by the host's inventory variables of the same name, overridden by `--set`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub mod alertmanager;
pub mod elasticsearch;
pub mod grafana;
pub mod haproxy;
pub mod jvm;
pub mod kafka;
pub mod kibana;
pub mod kubernetes;
pub mod kubernetes_volumes;
pub mod leftovers;
pub mod local_api;
mod monitoring;
pub mod prometheus;
pub mod rabbitmq;
pub mod template;
pub mod zookeeper;

use crate::engine::{Failed, HostCtx, StepError};

/// A component whose backup is written in Rust (`src/components/<name>.rs`): its facts (name,
/// groups, hosts, variables, what it does not cover) are a spec like any other, its logic is
/// code calling the [`HostCtx`] primitives.
#[async_trait::async_trait]
pub trait Native: Send + Sync + 'static {
    /// What `lsbackup plan` shows this component does on a host with these variables.
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String>;

    /// Whether this host should run the component (after the spec's `select`, if any): e.g.
    /// "the first host whose API answers". `Ok(None)`: yes; `Ok(Some(why))`: passed over.
    async fn select(&self, _h: &mut HostCtx<'_>) -> Result<Option<String>, StepError> {
        Ok(None)
    }

    /// What [`Native::select`] looks for ("alertmanager host"), shown like a spec's
    /// `select.name`: in the plan ("first reachable host that is ...") and as the role of the
    /// host used. `None`: `select` is not a choice worth naming.
    fn selects(&self) -> Option<&'static str> {
        None
    }

    /// Back the component up on this host. Failures of independent steps are recorded with
    /// [`HostCtx::fail`] and the rest goes on; an error returned ends the work on this host.
    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed>;

    /// Runs after `backup` whatever happened (a failure, an interrupt): undo what `backup` left
    /// on the host (snapshots, stopped services), from what it kept with [`HostCtx::set_var`].
    async fn cleanup(&self, _h: &mut HostCtx<'_>) -> Result<(), Failed> {
        Ok(())
    }
}

/// A shared handle to a [`Native`] component.
#[derive(Clone)]
pub struct NativeRef(pub std::sync::Arc<dyn Native>);

impl std::fmt::Debug for NativeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NativeRef")
    }
}

/// A built-in component: its spec (YAML facts; for a native component, a `SPEC` const in its
/// `.rs` file) and, for a native one, its Rust implementation.
struct Builtin {
    file: &'static str,
    spec: &'static str,
    native: Option<fn() -> NativeRef>,
}

const fn spec(file: &'static str, spec: &'static str) -> Builtin {
    Builtin {
        file,
        spec,
        native: None,
    }
}

const fn native(file: &'static str, spec: &'static str, make: fn() -> NativeRef) -> Builtin {
    Builtin {
        file,
        spec,
        native: Some(make),
    }
}

/// Built-in components, in default run order. A spec component is `spec("x.yaml",
/// include_str!(...))`; a native one is `native("src/components/x.rs", x::SPEC, x::make)`.
const BUILTIN: &[Builtin] = &[
    native(
        "src/components/kubernetes.rs",
        kubernetes::SPEC,
        kubernetes::make,
    ),
    native(
        "src/components/kubernetes_volumes.rs",
        kubernetes_volumes::SPEC,
        kubernetes_volumes::make,
    ),
    spec(
        "postgresql.yaml",
        include_str!("../../components/postgresql.yaml"),
    ),
    native("src/components/kafka.rs", kafka::SPEC, kafka::make),
    native(
        "src/components/zookeeper.rs",
        zookeeper::SPEC,
        zookeeper::make,
    ),
    native(
        "src/components/elasticsearch.rs",
        elasticsearch::SPEC,
        elasticsearch::make,
    ),
    native("src/components/kibana.rs", kibana::SPEC, kibana::make),
    native(
        "src/components/prometheus.rs",
        prometheus::SPEC,
        prometheus::make,
    ),
    native(
        "src/components/alertmanager.rs",
        alertmanager::SPEC,
        alertmanager::make,
    ),
    native("src/components/grafana.rs", grafana::SPEC, grafana::make),
    native("src/components/rabbitmq.rs", rabbitmq::SPEC, rabbitmq::make),
    native("src/components/haproxy.rs", haproxy::SPEC, haproxy::make),
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("component file {file}: {msg}")]
    Parse { file: String, msg: String },
    #[error("component {component}: {msg}")]
    Invalid { component: String, msg: String },
    #[error("{dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown component {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("template {template:?}: variable {var:?} is not defined")]
    UndefinedVar { template: String, var: String },
    /// Refused when the spec is loaded: a placeholder in quotes, an unknown filter, ...
    /// (`msg`: where, why, and the offending text).
    #[error("component {component}: {msg}")]
    Quoting { component: String, msg: String },
    #[error("template {template:?}: {reason}")]
    BadTemplate { template: String, reason: String },
    /// A value (from the inventory, `--set` or a host) unusable where it goes.
    #[error("{what} {reason}")]
    BadValue { what: String, reason: String },
}

/// On which hosts of the component's groups the steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HostMode {
    /// The first host of the groups that is reachable (and passes `select`, if given).
    #[default]
    First,
    /// Every host of the groups.
    All,
}

/// A test run on each candidate host; only hosts that pass run the steps (e.g. the PostgreSQL
/// primary).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// Shown in the plan and manifest, e.g. `primary`.
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub become_user: Option<String>,
    /// The command's trimmed stdout must equal this.
    pub expect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionProbe {
    pub command: String,
    #[serde(default)]
    pub become_user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// Run this command; its stdout becomes the entry `output`.
    #[serde(default)]
    pub run: Option<String>,
    /// Run this command for its effect (no archive entry), e.g. stopping a service; a non-zero
    /// exit fails the step.
    #[serde(default)]
    pub exec: Option<String>,
    /// Entry name (relative to `<component>/<host>/`) for `run`'s stdout.
    #[serde(default)]
    pub output: Option<String>,
    /// Copy these remote paths (files or directories; shell globs allowed) into
    /// `<component>/<host>/<path>`.
    #[serde(default)]
    pub copy: Vec<String>,
    /// Run this command and keep its trimmed stdout (or the `regex`'s first group) in the
    /// variable named by `into`.
    #[serde(default)]
    pub capture: Option<String>,
    #[serde(default)]
    pub into: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    /// Run as this user (sudo).
    #[serde(default)]
    pub become_user: Option<String>,
    /// Run the step once per line of this command's stdout, with the line in `{{ item }}` (one
    /// quoted word in commands, as is in `output`; lines holding `/` or `..` are refused).
    #[serde(default)]
    pub foreach: Option<String>,
    #[serde(default)]
    pub foreach_become_user: Option<String>,
    /// Shell condition: the step runs only when it exits 0 (e.g. `test -e /etc/kubeadm`).
    #[serde(default)]
    pub when: Option<String>,
    /// A failing optional step is recorded as a warning, not a failure. For `copy`: paths that
    /// do not exist are skipped silently unless `optional: false`, and it fails only if nothing
    /// matched at all.
    #[serde(default)]
    pub optional: bool,
    /// Flags recorded in the manifest when the step ran (e.g. `taken while running`).
    #[serde(default)]
    pub flags: Vec<String>,
}

impl Step {
    pub fn kind(&self) -> StepKind {
        if self.run.is_some() {
            StepKind::Run
        } else if self.exec.is_some() {
            StepKind::Exec
        } else if self.capture.is_some() {
            StepKind::Capture
        } else {
            StepKind::Copy
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Run,
    Exec,
    Copy,
    Capture,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    pub name: String,
    pub run: String,
    #[serde(default)]
    pub become_user: Option<String>,
    /// Shell condition: the cleanup runs only when it exits 0.
    #[serde(default)]
    pub when: Option<String>,
}

/// A yes/no setting that may depend on variables: `true`, `false`, or a template such as
/// `"{{ kafka_stop_broker }}"` (true when it renders to true/yes/on/1).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Flag {
    Fixed(bool),
    Template(String),
}

impl Default for Flag {
    fn default() -> Flag {
        Flag::Fixed(false)
    }
}

impl Flag {
    pub fn eval(&self, vars: &BTreeMap<String, String>) -> Result<bool, SpecError> {
        match self {
            Flag::Fixed(b) => Ok(*b),
            Flag::Template(t) => Ok(matches!(
                template::plain(t, vars)?
                    .trim()
                    .to_ascii_lowercase()
                    .as_str(),
                "true" | "yes" | "on" | "1"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    pub name: String,
    pub description: String,
    /// Inventory groups; the component runs when any of them exists. The first group present wins
    /// for host order; hosts of further groups follow.
    pub groups: Vec<String>,
    #[serde(default)]
    pub hosts: HostMode,
    #[serde(default)]
    pub select: Option<Select>,
    /// With `hosts: all`, work on one host at a time (e.g. stopping brokers in turn).
    #[serde(default)]
    pub serial: Flag,
    /// Binaries that must exist on the host (checked with `command -v` before any step).
    #[serde(default)]
    pub requires: Vec<String>,
    /// Default variables, overridable by inventory host vars and `--set`. Values only: in
    /// commands a variable is always one quoted word (see `template`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Name -> shell text, inserted as code with `{{> name }}` in commands. Never overridden by
    /// the inventory or `--set` (snippets are not variables).
    #[serde(default)]
    pub snippets: BTreeMap<String, String>,
    /// Name -> probe; the first line of stdout is recorded.
    #[serde(default)]
    pub versions: BTreeMap<String, VersionProbe>,
    /// The steps of a spec component (empty for a native one).
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub cleanup: Vec<Cleanup>,
    /// What this component does not cover (shown by `plan` and in the docs).
    #[serde(default)]
    pub not_covered: Vec<String>,
    /// The Rust implementation of a built-in native component.
    #[serde(skip)]
    pub native: Option<NativeRef>,
}

impl ComponentSpec {
    /// The name of what selects its hosts: the spec's `select`, else the native component's
    /// [`Native::selects`].
    pub fn select_name(&self) -> Option<String> {
        match (&self.select, &self.native) {
            (Some(s), _) => Some(s.name.clone()),
            (None, Some(n)) => n.0.selects().map(str::to_string),
            (None, None) => None,
        }
    }

    pub fn from_yaml(file: &str, text: &str) -> Result<ComponentSpec, SpecError> {
        Self::from_yaml_with(file, text, None)
    }

    /// A spec with its Rust implementation (native components).
    pub fn from_yaml_with(
        file: &str,
        text: &str,
        native: Option<NativeRef>,
    ) -> Result<ComponentSpec, SpecError> {
        let mut spec: ComponentSpec =
            serde_saphyr::from_str(text).map_err(|e| SpecError::Parse {
                file: file.to_string(),
                msg: e.to_string(),
            })?;
        spec.native = native;
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), SpecError> {
        let bad = |msg: String| SpecError::Invalid {
            component: self.name.clone(),
            msg,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(bad(
                "name must be lowercase letters, digits, '-' or '_'".into()
            ));
        }
        if self.groups.is_empty() {
            return Err(bad("no groups".into()));
        }
        if self.steps.is_empty() && self.native.is_none() {
            return Err(bad("no steps".into()));
        }
        let mut outputs = std::collections::BTreeSet::new();
        for s in &self.steps {
            let kinds = [
                s.run.is_some(),
                s.exec.is_some(),
                !s.copy.is_empty(),
                s.capture.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if kinds != 1 {
                return Err(bad(format!(
                    "step {:?} must have exactly one of run, exec, copy, capture",
                    s.name
                )));
            }
            match s.kind() {
                StepKind::Run => {
                    let out = s
                        .output
                        .as_deref()
                        .ok_or_else(|| bad(format!("step {:?}: run needs output", s.name)))?;
                    if out.starts_with('/') || out.split('/').any(|p| p == ".." || p.is_empty()) {
                        return Err(bad(format!(
                            "step {:?}: output must be a relative path",
                            s.name
                        )));
                    }
                    if s.foreach.is_some() && !out.contains("item") {
                        return Err(bad(format!(
                            "step {:?}: foreach output must use {{{{ item }}}}",
                            s.name
                        )));
                    }
                    if !outputs.insert(out.to_string()) {
                        return Err(bad(format!("output {out:?} used twice")));
                    }
                }
                StepKind::Capture => {
                    if s.into.is_none() {
                        return Err(bad(format!("step {:?}: capture needs into", s.name)));
                    }
                    if let Some(r) = &s.regex {
                        regex::Regex::new(r)
                            .map_err(|e| bad(format!("step {:?}: regex: {e}", s.name)))?;
                    }
                }
                StepKind::Copy | StepKind::Exec => {}
            }
        }
        self.check_templates()
    }

    /// Every template of the spec, checked for its context (see `template`): shell text with
    /// placeholders outside quotes, plain values without filters, copy entries as patterns.
    fn check_templates(&self) -> Result<(), SpecError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Check {
            Shell,
            Plain,
            Copy,
        }
        use Check::{Copy as copy, Plain as plain, Shell as shell};
        let mut all: Vec<(String, &str, Check)> = Vec::new();
        fn opt<'a>(
            all: &mut Vec<(String, &'a str, Check)>,
            place: String,
            t: &'a Option<String>,
            c: Check,
        ) {
            if let Some(t) = t {
                all.push((place, t.as_str(), c));
            }
        }
        if let Some(sel) = &self.select {
            all.push(("select command".into(), &sel.command, shell));
            opt(
                &mut all,
                "select become_user".into(),
                &sel.become_user,
                plain,
            );
        }
        for (n, p) in &self.versions {
            all.push((format!("version {n:?}"), &p.command, shell));
            opt(
                &mut all,
                format!("version {n:?} become_user"),
                &p.become_user,
                plain,
            );
        }
        for s in &self.steps {
            let at = |f: &str| format!("step {:?} {f}", s.name);
            for (f, t) in [
                ("run", &s.run),
                ("exec", &s.exec),
                ("capture", &s.capture),
                ("foreach", &s.foreach),
                ("when", &s.when),
            ] {
                opt(&mut all, at(f), t, shell);
            }
            for (f, t) in [
                ("output", &s.output),
                ("become_user", &s.become_user),
                ("foreach_become_user", &s.foreach_become_user),
            ] {
                opt(&mut all, at(f), t, plain);
            }
            for c in &s.copy {
                all.push((at("copy"), c, copy));
            }
        }
        for c in &self.cleanup {
            all.push((format!("cleanup {:?} run", c.name), &c.run, shell));
            opt(
                &mut all,
                format!("cleanup {:?} when", c.name),
                &c.when,
                shell,
            );
            opt(
                &mut all,
                format!("cleanup {:?} become_user", c.name),
                &c.become_user,
                plain,
            );
        }
        for (n, t) in &self.snippets {
            all.push((format!("snippet {n:?}"), t, shell));
        }
        for (n, t) in &self.vars {
            all.push((format!("var {n:?}"), t, plain));
        }
        if let Flag::Template(t) = &self.serial {
            all.push(("serial".into(), t, plain));
        }
        for (place, text, check) in &all {
            let checked = match check {
                Check::Shell => template::check_shell(text),
                Check::Plain => template::check_plain(text),
                Check::Copy => template::check_copy(text),
            };
            checked.map_err(|(text, reason)| SpecError::Quoting {
                component: self.name.clone(),
                msg: format!("{place}: {reason}: {text}"),
            })?;
            if *check == Check::Shell {
                for r in template::snippet_refs(text) {
                    if !self.snippets.contains_key(&r) {
                        return Err(SpecError::Quoting {
                            component: self.name.clone(),
                            msg: format!("{place}: no such snippet: {{{{> {r} }}}}"),
                        });
                    }
                }
            }
        }
        // snippets that include each other in a cycle
        for n in self.snippets.keys() {
            let mut seen = vec![n.clone()];
            let mut todo = vec![n.clone()];
            while let Some(cur) = todo.pop() {
                for r in template::snippet_refs(&self.snippets[&cur]) {
                    if r == *n {
                        return Err(SpecError::Quoting {
                            component: self.name.clone(),
                            msg: format!(
                                "snippet {n:?}: snippets include each other in a cycle: {{{{> {r} }}}}"
                            ),
                        });
                    }
                    if !seen.contains(&r) && self.snippets.contains_key(&r) {
                        seen.push(r.clone());
                        todo.push(r);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The set of known components.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub components: Vec<ComponentSpec>,
}

impl Catalog {
    /// Built-in components, then those of `dir` (replacing built-ins of the same name, others
    /// appended in file name order).
    pub fn load(dir: Option<&Path>) -> Result<Catalog, SpecError> {
        let mut components = Vec::new();
        for b in BUILTIN {
            components.push(ComponentSpec::from_yaml_with(
                b.file,
                b.spec,
                b.native.map(|make| make()),
            )?);
        }
        if let Some(dir) = dir {
            let io = |source| SpecError::Io {
                dir: dir.display().to_string(),
                source,
            };
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            for path in files {
                let text = std::fs::read_to_string(&path).map_err(io)?;
                let spec = ComponentSpec::from_yaml(&path.display().to_string(), &text)?;
                match components.iter_mut().find(|c| c.name == spec.name) {
                    Some(slot) => *slot = spec,
                    None => components.push(spec),
                }
            }
        }
        Ok(Catalog { components })
    }

    pub fn get(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.components.iter().map(|c| c.name.as_str()).collect()
    }

    /// Apply `--only` / `--skip` (comma-separated names already split). Unknown names are errors.
    pub fn select(
        &self,
        only: &[String],
        skip: &[String],
    ) -> Result<Vec<&ComponentSpec>, SpecError> {
        for name in only.iter().chain(skip) {
            if self.get(name).is_none() {
                return Err(SpecError::Unknown {
                    name: name.clone(),
                    known: self.names().join(", "),
                });
            }
        }
        Ok(self
            .components
            .iter()
            .filter(|c| only.is_empty() || only.contains(&c.name))
            .filter(|c| !skip.contains(&c.name))
            .collect())
    }
}

/// Names of variables whose values must never be logged or recorded.
pub fn is_secret_var(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "private_key",
        "api_key",
    ]
    .iter()
    .any(|s| n.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn builtins_parse_and_validate() {
        let errors: Vec<String> = BUILTIN
            .iter()
            .filter_map(|b| {
                ComponentSpec::from_yaml_with(b.file, b.spec, b.native.map(|m| m())).err()
            })
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        let c = Catalog::load(None).unwrap();
        assert!(c.get("postgresql").is_some());
        assert!(c.get("kubernetes").is_some());
        assert!(c.get("haproxy").is_some());
    }

    #[test]
    fn flags_fixed_or_templated() {
        let v = vars(&[("stop", "true"), ("no", "false")]);
        assert!(Flag::Fixed(true).eval(&v).unwrap());
        assert!(Flag::Template("{{ stop }}".into()).eval(&v).unwrap());
        assert!(!Flag::Template("{{ no }}".into()).eval(&v).unwrap());
        assert!(Flag::Template("{{ missing }}".into()).eval(&v).is_err());
        let spec = "name: x\ndescription: d\ngroups: [g]\nserial: \"{{ stop }}\"\nsteps:\n  - name: c\n    copy: [/x]\n";
        let c = ComponentSpec::from_yaml("x.yaml", spec).unwrap();
        assert_eq!(c.serial, Flag::Template("{{ stop }}".into()));
    }

    #[test]
    fn render_replaces_and_rejects_unknown() {
        let v = vars(&[("dir", "/etc/x"), ("n", "3")]);
        assert_eq!(
            template::plain("ls {{dir}} {{ n }}", &v).unwrap(),
            "ls /etc/x 3"
        );
        assert_eq!(template::plain("no vars", &v).unwrap(), "no vars");
        let e = template::plain("ls {{ nope }}", &v).unwrap_err();
        assert!(e.to_string().contains("\"nope\" is not defined"), "{e}");
    }

    #[test]
    fn redaction_masks_secret_vars() {
        let v = vars(&[("es_password", "hunter2"), ("user", "admin")]);
        let s =
            template::shell_redacted("curl -u {{user}}:{{es_password}}", &v, &vars(&[])).unwrap();
        assert_eq!(s, "curl -u admin:'********'");
    }

    #[test]
    fn select_only_skip_and_unknown() {
        let c = Catalog::load(None).unwrap();
        let only = c.select(&["postgresql".into()], &[]).unwrap();
        assert_eq!(only.len(), 1);
        let skip = c.select(&[], &["haproxy".into()]).unwrap();
        assert!(skip.iter().all(|s| s.name != "haproxy"));
        let e = c.select(&["mongodb".into()], &[]).unwrap_err();
        assert!(
            e.to_string().contains("unknown component \"mongodb\""),
            "{e}"
        );
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let bad = "name: x\ndescription: d\ngroups: [g]\nsteps:\n  - name: s\n    run: echo\n";
        let e = ComponentSpec::from_yaml("x.yaml", bad).unwrap_err();
        assert!(e.to_string().contains("run needs output"), "{e}");
        let unknown_key = "name: x\ndescription: d\ngroups: [g]\nbogus: 1\nsteps: []\n";
        assert!(ComponentSpec::from_yaml("x.yaml", unknown_key).is_err());
    }

    #[test]
    fn user_dir_overrides_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("haproxy.yaml"),
            "name: haproxy\ndescription: mine\ngroups: [lb]\nsteps:\n  - name: c\n    copy: [/etc/x]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("redis.yml"),
            "name: redis\ndescription: r\ngroups: [redis]\nsteps:\n  - name: c\n    copy: [/etc/redis]\n",
        )
        .unwrap();
        let c = Catalog::load(Some(dir.path())).unwrap();
        assert_eq!(c.get("haproxy").unwrap().description, "mine");
        assert!(c.get("redis").is_some());
    }
}
