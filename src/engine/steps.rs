//! The interpreter of spec components (`components/*.yaml`): each step becomes calls to the
//! [`HostCtx`] primitives.

use std::time::Instant;

use futures::StreamExt;

use super::unit::{CAPTURE_LIMIT, HostCtx, StepError, exit_text};
use crate::archive::FailureKind;
use crate::components::{Cleanup, SpecError, Step, StepKind, template};
use crate::shell::Script;

/// Items of a `foreach` step run at the same time.
const FOREACH_AT_ONCE: usize = 4;

impl HostCtx<'_> {
    /// A template error as a step error: a variable that a failed `capture` step should have
    /// set is reported as that dependency (skipped), not as a typo.
    pub(crate) fn explain<T>(&self, r: Result<T, SpecError>) -> Result<T, StepError> {
        r.map_err(|e| match &e {
            SpecError::UndefinedVar { var, .. } => {
                match self
                    .pc
                    .spec
                    .steps
                    .iter()
                    .find(|s| s.into.as_deref() == Some(var))
                {
                    Some(s) => StepError::skipped(format!(
                        "not run: it needs {var} from step {:?}, which failed",
                        s.name
                    )),
                    None => StepError::config(e.to_string()),
                }
            }
            _ => StepError::config(e.to_string()),
        })
    }

    /// A spec template rendered for the shell: every value one quoted word.
    pub(crate) fn script(&self, t: &str) -> Result<Script, StepError> {
        self.explain(template::shell(t, &self.vars, &self.pc.spec.snippets))
    }

    /// A template as the manifest shows it (secret variables masked).
    pub(crate) fn shown(&self, t: &str) -> String {
        template::shell_redacted(t, &self.vars, &self.pc.spec.snippets)
            .unwrap_or_else(|_| t.to_string())
    }

    pub(crate) fn user(&self, u: &Option<String>) -> Result<Option<String>, StepError> {
        match u {
            Some(u) => self.explain(template::user(u, &self.vars)).map(Some),
            None => Ok(None),
        }
    }

    /// Run a `when:` condition (as the login/become user of the inventory); exit 0 means yes.
    async fn condition(&self, when: &str) -> Result<bool, StepError> {
        let script = self.script(when)?;
        let out = self.session.run(&script, None, 64 * 1024).await?;
        Ok(out.exit.success())
    }

    /// Every step of the spec, in order; a failing step does not stop the next ones.
    pub(crate) async fn run_steps(&mut self) {
        for step in self.pc.spec.steps.clone() {
            if self.is_cancelled() {
                self.fail(
                    &step.name,
                    StepError::new(FailureKind::Interrupted, "not run: interrupted"),
                );
                break;
            }
            let cancel = self.ctx.cancel.clone();
            let result = tokio::select! {
                r = self.spec_step(&step) => r,
                _ = cancel.cancelled() => Err(StepError::new(FailureKind::Interrupted, "interrupted")),
            };
            if let Err(e) = result {
                if step.optional {
                    self.optional_failed(&step.name, &e);
                } else {
                    self.fail(&step.name, e);
                }
            }
        }
    }

    /// The spec's cleanups, each whatever happened before.
    pub(crate) async fn run_cleanups(&mut self) {
        for c in self.pc.spec.cleanup.clone() {
            if let Err(e) = self.cleanup(&c).await {
                self.cleanup_failed = true;
                self.fail(&format!("cleanup {}", c.name), e);
            }
        }
    }

    async fn cleanup(&mut self, c: &Cleanup) -> Result<(), StepError> {
        if let Some(w) = &c.when
            && !self.condition(w).await?
        {
            return Ok(());
        }
        let script = self.script(&c.run)?;
        let user = self.user(&c.become_user)?;
        let shown = self.shown(&c.run);
        self.run_ok(&c.name, &script, user.as_deref(), Some(&shown))
            .await
            .map(|_| ())
    }

    /// The notes a step declares with `flags:`, once it ran.
    fn flags_of_step(&mut self, step: &Step) {
        for f in &step.flags {
            self.note(f);
        }
    }

    async fn spec_step(&mut self, step: &Step) -> Result<(), StepError> {
        self.step(&step.name);
        if let Some(when) = &step.when {
            let t = Instant::now();
            if !self.condition(when).await? {
                // Recorded with the commands (not as a note): a skipped alternative is normal.
                let shown = format!("skipped: condition `{}` not met", self.shown(when));
                self.record_call(&step.name, &shown, None, t);
                return Ok(());
            }
        }
        match step.kind() {
            StepKind::Capture => self.capture(step).await,
            StepKind::Exec => {
                let template = step.exec.as_deref().unwrap_or_default();
                let script = self.script(template)?;
                let user = self.user(&step.become_user)?;
                let shown = self.shown(template);
                let out = self
                    .run(&step.name, &script, user.as_deref(), Some(&shown))
                    .await?;
                // An exec step may report many notes: on stdout too (stderr keeps only a tail).
                self.notes_from(&String::from_utf8_lossy(&out.stdout));
                if !out.exit.success() {
                    return Err(StepError::command(&out.exit));
                }
                self.flags_of_step(step);
                Ok(())
            }
            StepKind::Copy => {
                let patterns = self.explain(template::copy_patterns(&step.copy, &self.vars))?;
                let (patterns, shown_each): (Vec<_>, Vec<_>) =
                    patterns.into_iter().map(|p| (p.pattern, p.shown)).unzip();
                let user = self.user(&step.become_user)?;
                if !patterns.is_empty() {
                    self.copy_patterns(
                        &step.name,
                        &patterns,
                        &shown_each,
                        step.optional,
                        user.as_deref(),
                    )
                    .await?;
                } else if !step.optional {
                    return Err(StepError::new(
                        FailureKind::BadData,
                        "nothing to copy: no path given",
                    ));
                }
                self.flags_of_step(step);
                Ok(())
            }
            StepKind::Run => {
                let items = match &step.foreach {
                    None => vec![None],
                    Some(f) => {
                        let script = self.script(f)?;
                        let user = self.user(&step.foreach_become_user)?;
                        let out = self
                            .session
                            .run(&script, user.as_deref(), CAPTURE_LIMIT)
                            .await?;
                        if !out.exit.success() {
                            return Err(StepError::new(
                                FailureKind::CommandFailed,
                                format!("listing items: {}", exit_text(&out.exit)),
                            ));
                        }
                        String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(|l| Some(l.to_string()))
                            .collect()
                    }
                };
                // the items at once (at most FOREACH_AT_ONCE), each on its own channel and in
                // its own branch of this unit; joined in the listed order
                let jobs: Vec<_> = items
                    .into_iter()
                    .map(|item| {
                        let mut b = self.fork();
                        async move {
                            if let Some(item) = &item {
                                if item.contains('/') || item == ".." || item == "." {
                                    let e = StepError::bad_data(format!(
                                        "item {item:?} is not usable as a file name"
                                    ));
                                    return (b, Some(e));
                                }
                                b.vars.insert("item".into(), item.clone());
                            }
                            let r = b.run_output(step).await.err().map(|e| match &item {
                                Some(i) => StepError::new(e.kind, format!("{i}: {}", e.cause)),
                                None => e,
                            });
                            (b, r)
                        }
                    })
                    .collect();
                let done: Vec<_> = futures::stream::iter(jobs)
                    .buffered(FOREACH_AT_ONCE)
                    .collect()
                    .await;
                let mut errors: Vec<StepError> = Vec::new();
                for (b, e) in done {
                    self.join(b);
                    errors.extend(e);
                }
                self.vars.remove("item");
                match errors.len() {
                    0 => {
                        self.flags_of_step(step);
                        Ok(())
                    }
                    _ => {
                        let kind = errors[0].kind;
                        let cause = errors
                            .iter()
                            .map(|e| e.cause.clone())
                            .collect::<Vec<_>>()
                            .join("; ");
                        Err(StepError::new(kind, cause))
                    }
                }
            }
        }
    }

    async fn capture(&mut self, step: &Step) -> Result<(), StepError> {
        let into = step.into.clone().unwrap_or_default();
        let template = step.capture.as_deref().unwrap_or_default();
        let r = async {
            let script = self.script(template)?;
            let user = self.user(&step.become_user)?;
            let shown = self.shown(template);
            let out = self
                .run_ok(&step.name, &script, user.as_deref(), Some(&shown))
                .await?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match &step.regex {
                Some(r) => {
                    let re = regex::Regex::new(r).map_err(|e| StepError::config(e.to_string()))?;
                    match re.captures(&text) {
                        Some(c) => Ok(c
                            .get(1)
                            .or_else(|| c.get(0))
                            .map(|m| m.as_str().to_string())
                            .unwrap_or_default()),
                        None => Err(StepError::bad_data(format!(
                            "output {text:?} does not match {r:?}"
                        ))),
                    }
                }
                None => Ok(text),
            }
        }
        .await;
        match r {
            Ok(value) => {
                self.vars.insert(into, value);
                Ok(())
            }
            Err(e) => {
                if step.optional {
                    self.vars.insert(into, String::new());
                }
                Err(e)
            }
        }
    }

    /// A `run` step: stdout becomes the entry `output`, only when the command succeeded.
    async fn run_output(&mut self, step: &Step) -> Result<(), StepError> {
        let template = step.run.as_deref().unwrap_or_default();
        let script = self.script(template)?;
        let output = self.explain(template::entry_name(
            step.output.as_deref().unwrap_or_default(),
            &self.vars,
        ))?;
        let user = self.user(&step.become_user)?;
        let shown = self.shown(template);
        self.stream(&step.name, &script, user.as_deref(), &output, Some(&shown))
            .await?;
        Ok(())
    }

    /// `requires:`: the binaries the component needs on the host. With the `versions:` probes
    /// at the same time (each on its own channel): their versions are recorded only when
    /// nothing is missing.
    pub(crate) async fn check_requires(&mut self) -> Result<(), StepError> {
        let (requires, versions) = tokio::join!(self.missing_tools(), self.probe_versions());
        let missing = requires?;
        if missing.is_empty() {
            for (name, v) in versions {
                self.version(&name, &v);
            }
            Ok(())
        } else {
            Err(StepError::new(
                FailureKind::MissingTool,
                format!("missing on host: {missing}"),
            ))
        }
    }

    /// The binaries of `requires:` the host lacks, comma-separated ("" when none).
    async fn missing_tools(&self) -> Result<String, StepError> {
        if self.pc.spec.requires.is_empty() {
            return Ok(String::new());
        }
        let script =
            Script::new(r#"for b in "$@"; do command -v "$b" >/dev/null 2>&1 || echo "$b"; done"#)
                .args(self.pc.spec.requires.iter().cloned());
        let out = self.session.run(&script, None, 64 * 1024).await?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// `versions:`: each probe's first line of stdout, when it succeeds; all at once.
    async fn probe_versions(&self) -> Vec<(String, String)> {
        let probes = self.pc.spec.versions.iter().filter_map(|(vname, probe)| {
            let script = self.script(&probe.command).ok()?;
            let user = self.user(&probe.become_user).ok()?;
            Some(async move {
                match self.session.run(&script, user.as_deref(), 64 * 1024).await {
                    Ok(out) if out.exit.success() => Some((
                        vname.clone(),
                        String::from_utf8_lossy(&out.stdout).into_owned(),
                    )),
                    _ => None,
                }
            })
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
