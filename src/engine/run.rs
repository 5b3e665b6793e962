//! Executing a plan: sessions, steps, entries, and the run report.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::plan::{Plan, PlannedComponent, PlannedHost};
use super::progress::Progress;
use super::shell::{copy_script, missing_patterns, quote};
use crate::archive::{
    ArchiveError, ArchiveWriter, CommandRecord, ComponentReport, EntryMeta, EntryRecord, EntrySink,
    Format, HostReport, InventoryInfo, MANIFEST_FORMAT, Manifest, Status, ToolInfo, WriterOptions,
};
use crate::components::template;
use crate::components::{HostMode, SpecError, Step, StepKind};
use crate::target::{Target, TargetError};
use crate::transport::{ExitInfo, Session, TransportConfig};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("interrupted: no archive was written")]
    Interrupted,
}

/// How a run is stopped early: `stop` lets hosts run their cleanups; `abort` does not wait.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
}

/// How long an interrupted run waits for hosts' cleanups before giving up on them.
const CLEANUP_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub format: Format,
    pub level: Option<i32>,
    pub zstd_workers: u32,
    /// Where command output is spooled before it enters the archive (None: system temp dir).
    pub spool_dir: Option<PathBuf>,
    /// At most this many host jobs at once.
    pub concurrency: usize,
    pub transport: TransportConfig,
    pub build_dir: PathBuf,
    /// Archive names are `<prefix>-<UTC timestamp>.<ext>`.
    pub name_prefix: String,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub manifest: Manifest,
    /// Where the archive was written; None when nothing usable was backed up (no archive kept).
    pub location: Option<String>,
}

impl Outcome {
    /// 0: everything succeeded; 2: partial (archive kept); 1: nothing usable.
    pub fn exit_code(&self) -> i32 {
        match (self.manifest.status, &self.location) {
            (_, None) => 1,
            (Status::Ok, _) => 0,
            _ => 2,
        }
    }
}

/// Run a backup of `plan` into `target`. Ctrl-C / SIGTERM handling belongs to the caller, which
/// cancels `interrupt.stop`: no new step starts, running streams stop, every started host's
/// cleanups still run (so no snapshot is left behind on a host), then the partial archive is
/// removed and `Interrupted` returned. `interrupt.abort` (a second Ctrl-C) skips the cleanups.
pub async fn run_backup(
    plan: &Plan,
    target: &Target,
    opts: &RunOptions,
    progress: Arc<dyn Progress>,
    interrupt: Interrupt,
) -> Result<Outcome, EngineError> {
    let cancel = interrupt.stop.clone();
    let started = jiff::Timestamp::now();
    target.check().await?;
    let stem = format!(
        "{}-{}",
        opts.name_prefix,
        started.strftime("%Y%m%dT%H%M%SZ")
    );
    let mut upload = target.create(&stem, opts.format.extension()).await?;
    let archive_name = upload.name.clone();
    let writer = match ArchiveWriter::new(
        upload.writer(),
        WriterOptions {
            format: opts.format,
            level: opts.level,
            zstd_workers: opts.zstd_workers,
            spool_dir: opts.spool_dir.clone(),
        },
    )
    .await
    {
        Ok(w) => w,
        Err(e) => {
            upload.abort().await;
            return Err(e.into());
        }
    };
    let ctx = Arc::new(Ctx {
        sink: writer.sink(),
        sessions: Sessions::default(),
        transport: opts.transport.clone(),
        limit: Arc::new(Semaphore::new(opts.concurrency.max(1))),
        progress,
        spool_dir: opts.spool_dir.clone(),
        cancel: cancel.clone(),
    });

    let work = async {
        let tasks: Vec<_> = plan
            .components
            .iter()
            .map(|pc| {
                let ctx = ctx.clone();
                let pc = pc.clone();
                tokio::spawn(async move { run_component(&ctx, &pc).await })
            })
            .collect();
        let mut reports = Vec::new();
        for (t, pc) in tasks.into_iter().zip(&plan.components) {
            reports.push(t.await.unwrap_or_else(|e| ComponentReport {
                name: pc.spec.name.clone(),
                description: pc.spec.description.clone(),
                groups: pc.groups.clone(),
                status: Status::Failed,
                hosts: vec![],
                errors: vec![format!("{}: internal error: {e}", pc.spec.name)],
            }));
        }
        reports
    };
    tokio::pin!(work);
    let reports = tokio::select! {
        r = &mut work => r,
        _ = cancel.cancelled() => {
            tracing::warn!("interrupted: stopping; hosts run their cleanups (Ctrl-C again to skip them)");
            tokio::select! {
                _ = &mut work => {}
                _ = tokio::time::sleep(CLEANUP_GRACE) => {
                    tracing::warn!("cleanups still running after {}s: giving up on them", CLEANUP_GRACE.as_secs());
                }
                _ = interrupt.abort.cancelled() => {}
            }
            drop(writer);
            upload.abort().await;
            return Err(EngineError::Interrupted);
        }
    };
    ctx.sessions.close_all().await;

    let status = overall_status(&reports);
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT,
        tool: ToolInfo {
            name: "lsbackup".into(),
            version: crate::VERSION.into(),
        },
        started_at: started.to_string(),
        finished_at: jiff::Timestamp::now().to_string(),
        build_dir: opts.build_dir.display().to_string(),
        archive_name,
        archive_format: opts.format,
        status,
        inventory: inventory_info(plan),
        selection: plan
            .components
            .iter()
            .map(|c| c.spec.name.clone())
            .collect(),
        components: reports,
    };
    if status == Status::Failed {
        drop(writer);
        upload.abort().await;
        return Ok(Outcome {
            manifest,
            location: None,
        });
    }
    let finished = tokio::select! {
        r = writer.finish(&manifest) => r,
        _ = cancel.cancelled() => {
            upload.abort().await;
            return Err(EngineError::Interrupted);
        }
    };
    if let Err(e) = finished {
        upload.abort().await;
        return Err(e.into());
    }
    let location = upload.commit().await?;
    Ok(Outcome {
        manifest,
        location: Some(location),
    })
}

fn overall_status(reports: &[ComponentReport]) -> Status {
    let ok = reports.iter().filter(|r| r.status == Status::Ok).count();
    let usable = reports
        .iter()
        .filter(|r| matches!(r.status, Status::Ok | Status::Partial))
        .count();
    if ok == reports.len() {
        Status::Ok
    } else if usable == 0 {
        Status::Failed
    } else {
        Status::Partial
    }
}

fn inventory_info(plan: &Plan) -> InventoryInfo {
    let inv = &plan.inventory;
    let groups = inv
        .groups
        .keys()
        .map(|g| {
            (
                g.clone(),
                inv.group_hosts(g).iter().map(|h| h.name.clone()).collect(),
            )
        })
        .collect();
    let hosts = inv
        .hosts
        .iter()
        .map(|h| {
            let addr = match inv.connection(&h.name) {
                Ok(c) if c.local => "local".to_string(),
                Ok(c) => format!("{}:{}", c.address, c.port),
                Err(_) => String::new(),
            };
            (h.name.clone(), addr)
        })
        .collect();
    InventoryInfo {
        path: inv.source.display().to_string(),
        groups,
        hosts,
    }
}

struct Ctx {
    sink: EntrySink,
    sessions: Sessions,
    transport: TransportConfig,
    limit: Arc<Semaphore>,
    progress: Arc<dyn Progress>,
    spool_dir: Option<PathBuf>,
    cancel: CancellationToken,
}

type SessionCell = Arc<OnceCell<Result<Arc<Session>, String>>>;

/// One session per host, opened on first use and shared by every component on that host. A
/// failed connection is remembered, so each host is tried once per run.
#[derive(Default)]
struct Sessions {
    cells: Mutex<HashMap<String, SessionCell>>,
    streams: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Sessions {
    /// The lock a streaming step holds on its host. A session has one receive loop: a command
    /// whose output waits unread (its reader waiting for the archive writer) stalls every other
    /// channel of that session. Were two streams of one host in flight, the one holding the
    /// archive writer could wait on data stuck behind the other: a deadlock. One stream per
    /// host at a time rules that out; hosts still stream in parallel.
    fn stream_lock(&self, host: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.streams
            .lock()
            .unwrap()
            .entry(host.to_string())
            .or_default()
            .clone()
    }

    async fn get(&self, h: &PlannedHost, cfg: &TransportConfig) -> Result<Arc<Session>, String> {
        let cell = {
            let mut map = self.cells.lock().unwrap();
            map.entry(h.name.clone()).or_default().clone()
        };
        cell.get_or_init(|| async {
            Session::connect(&h.conn, cfg)
                .await
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .await
        .clone()
    }

    async fn close_all(&self) {
        let cells: Vec<SessionCell> = self.cells.lock().unwrap().drain().map(|(_, c)| c).collect();
        for cell in cells {
            if let Some(Ok(s)) = Arc::try_unwrap(cell).ok().and_then(|c| c.into_inner())
                && let Ok(s) = Arc::try_unwrap(s)
            {
                s.close().await;
            }
        }
    }
}

fn host_report(h: &PlannedHost, role: &str, status: Status) -> HostReport {
    HostReport {
        host: h.name.clone(),
        address: if h.conn.local {
            "local".into()
        } else {
            format!("{}:{}", h.conn.address, h.conn.port)
        },
        role: role.into(),
        status,
        versions: BTreeMap::new(),
        commands: vec![],
        entries: vec![],
        flags: vec![],
        errors: vec![],
    }
}

enum Selected {
    Yes,
    No(String),
}

async fn check_select(
    pc: &PlannedComponent,
    h: &PlannedHost,
    s: &Session,
) -> Result<Selected, String> {
    let Some(sel) = &pc.spec.select else {
        return Ok(Selected::Yes);
    };
    let cmd =
        template::shell(&sel.command, &h.vars, &pc.spec.snippets).map_err(|e| e.to_string())?;
    let user = match &sel.become_user {
        Some(u) => Some(template::user(u, &h.vars).map_err(|e| e.to_string())?),
        None => None,
    };
    let out = s
        .run(&cmd.to_shell(), user.as_deref(), 64 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    if !out.exit.success() {
        return Err(format!(
            "{}: {}: checking {}: {}",
            h.name,
            pc.spec.name,
            sel.name,
            exit_text(&out.exit)
        ));
    }
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if got == sel.expect {
        Ok(Selected::Yes)
    } else {
        Ok(Selected::No(format!("not {} ({got:?})", sel.name)))
    }
}

async fn run_component(ctx: &Ctx, pc: &PlannedComponent) -> ComponentReport {
    let name = &pc.spec.name;
    let mut report = ComponentReport {
        name: name.clone(),
        description: pc.spec.description.clone(),
        groups: pc.groups.clone(),
        status: Status::Failed,
        hosts: vec![],
        errors: vec![],
    };
    match pc.spec.hosts {
        HostMode::First => {
            let mut chosen = false;
            for (i, h) in pc.hosts.iter().enumerate() {
                if chosen {
                    report.hosts.push(host_report(
                        h,
                        "not needed (another host was used)",
                        Status::Skipped,
                    ));
                    continue;
                }
                let _permit = ctx.limit.clone().acquire_owned().await;
                let session = match ctx.sessions.get(h, &ctx.transport).await {
                    Ok(s) => s,
                    Err(e) => {
                        let mut r = host_report(h, "unreachable", Status::Skipped);
                        tracing::warn!("{name}: {e}");
                        r.errors.push(e);
                        report.hosts.push(r);
                        continue;
                    }
                };
                match check_select(pc, h, &session).await {
                    Ok(Selected::Yes) => {
                        let role = match &pc.spec.select {
                            Some(s) => format!("first reachable {}", s.name),
                            None => "first reachable host".into(),
                        };
                        let mut r = run_unit(ctx, pc, h, &session, &role).await;
                        // Nothing at all came from this host (e.g. its etcd is down): the next
                        // candidate of the group may do better. Its errors stay in the manifest.
                        if r.status == Status::Failed && i + 1 < pc.hosts.len() {
                            tracing::warn!("{name}: {}: failed, trying the next host", h.name);
                            r.role = "failed; next host tried".into();
                            r.status = Status::Skipped;
                            report.hosts.push(r);
                            continue;
                        }
                        chosen = true;
                        report.hosts.push(r);
                    }
                    Ok(Selected::No(why)) => {
                        report.hosts.push(host_report(h, &why, Status::Skipped));
                    }
                    Err(e) => {
                        let mut r = host_report(h, "selection failed", Status::Skipped);
                        r.errors.push(e);
                        report.hosts.push(r);
                    }
                }
            }
            if !chosen {
                let what = match &pc.spec.select {
                    Some(s) => format!("no reachable host is {}", s.name),
                    None => "no reachable host".into(),
                };
                let why: Vec<String> = report.hosts.iter().flat_map(|h| h.errors.clone()).collect();
                let msg = if why.is_empty() {
                    format!("{name}: {what} in {}", pc.groups.join(", "))
                } else {
                    format!(
                        "{name}: {what} in {} ({})",
                        pc.groups.join(", "),
                        why.join("; ")
                    )
                };
                report.errors.push(msg);
            }
        }
        HostMode::All => {
            let units = pc.hosts.iter().map(|h| async move {
                let _permit = ctx.limit.clone().acquire_owned().await;
                let session = match ctx.sessions.get(h, &ctx.transport).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("{name}: {e}");
                        // With a selection, an unreachable host may simply be a standby: the
                        // component fails only if no host is selected.
                        let status = if pc.spec.select.is_some() {
                            Status::Skipped
                        } else {
                            Status::Failed
                        };
                        let mut r = host_report(h, "unreachable", status);
                        r.errors.push(e);
                        return (r, false);
                    }
                };
                match check_select(pc, h, &session).await {
                    Ok(Selected::Yes) => {
                        let role = match &pc.spec.select {
                            Some(s) => s.name.clone(),
                            None => "every host".into(),
                        };
                        (run_unit(ctx, pc, h, &session, &role).await, true)
                    }
                    Ok(Selected::No(why)) => (host_report(h, &why, Status::Skipped), false),
                    Err(e) => {
                        let mut r = host_report(h, "selection failed", Status::Skipped);
                        r.errors.push(e);
                        (r, false)
                    }
                }
            });
            // A serial flag that cannot be evaluated (undefined variable) errs on the safe side.
            let serial = pc
                .hosts
                .first()
                .map(|h| pc.spec.serial.eval(&h.vars).unwrap_or(true))
                .unwrap_or(false);
            let results = if serial {
                let mut v = Vec::new();
                for u in units {
                    v.push(u.await);
                }
                v
            } else {
                futures::future::join_all(units).await
            };
            let any_ran = results.iter().any(|(_, ran)| *ran);
            report.hosts = results.into_iter().map(|(r, _)| r).collect();
            if !any_ran && pc.spec.select.is_some() {
                let sel = pc
                    .spec
                    .select
                    .as_ref()
                    .map(|s| s.name.as_str())
                    .unwrap_or("");
                let why: Vec<String> = report.hosts.iter().flat_map(|h| h.errors.clone()).collect();
                report.errors.push(if why.is_empty() {
                    format!("{name}: no host is {sel} in {}", pc.groups.join(", "))
                } else {
                    format!("{name}: no reachable host is {sel} ({})", why.join("; "))
                });
            }
        }
    }
    let ran: Vec<&HostReport> = report
        .hosts
        .iter()
        .filter(|h| h.status != Status::Skipped)
        .collect();
    report.status = if !report.errors.is_empty() || ran.is_empty() {
        Status::Failed
    } else if ran.iter().all(|h| h.status == Status::Ok) {
        Status::Ok
    } else if ran.iter().all(|h| h.status == Status::Failed) {
        Status::Failed
    } else {
        Status::Partial
    };
    report
}

fn exit_text(e: &ExitInfo) -> String {
    let last = e
        .stderr_tail
        .lines()
        .rev()
        .find(|l| {
            !l.trim().is_empty()
                && !l.starts_with("lsbackup-missing:")
                && !l.starts_with("lsbackup-note:")
        })
        .unwrap_or("")
        .trim()
        .to_string();
    let status = match (e.code, &e.signal) {
        (Some(127), _) => "command not found on host (exit 127)".to_string(),
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "no exit status".to_string(),
    };
    if last.is_empty() {
        status
    } else {
        format!("{status}: {last}")
    }
}

/// Counts bytes read from a host for the progress display.
struct Counting<R> {
    inner: R,
    progress: Arc<dyn Progress>,
    component: String,
    host: String,
    total: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.total += n;
            self.progress.bytes(&self.component, &self.host, n);
        }
        r
    }
}

struct Unit<'a> {
    ctx: &'a Ctx,
    pc: &'a PlannedComponent,
    h: &'a PlannedHost,
    session: &'a Session,
    vars: BTreeMap<String, String>,
    report: HostReport,
    /// Entry paths already added for this host: overlapping copy patterns (a directory and a
    /// file inside it) stream the same file twice; the first copy wins.
    seen: std::collections::HashSet<String>,
}

async fn run_unit(
    ctx: &Ctx,
    pc: &PlannedComponent,
    h: &PlannedHost,
    session: &Session,
    role: &str,
) -> HostReport {
    let name = &pc.spec.name;
    ctx.progress.started(name, &h.name);
    tracing::info!(component = %name, host = %h.name, "starting");
    let mut u = Unit {
        ctx,
        pc,
        h,
        session,
        vars: h.vars.clone(),
        report: host_report(h, role, Status::Ok),
        seen: std::collections::HashSet::new(),
    };
    u.run().await;
    let r = &mut u.report;
    r.status = if r.errors.is_empty() {
        Status::Ok
    } else if r.entries.is_empty() {
        Status::Failed
    } else {
        Status::Partial
    };
    let first_err = r.errors.first().map(String::as_str);
    ctx.progress.finished(name, &h.name, r.status, first_err);
    for e in &r.errors {
        tracing::error!("{e}");
    }
    u.report
}

impl Unit<'_> {
    fn err(&mut self, step: &str, what: impl std::fmt::Display) {
        let msg = format!("{}: {}: {step}: {what}", self.h.name, self.pc.spec.name);
        self.report.errors.push(msg);
    }

    fn user(&self, u: &Option<String>) -> Result<Option<String>, String> {
        match u {
            Some(u) => self.explain(template::user(u, &self.vars)).map(Some),
            None => Ok(None),
        }
    }

    /// Run a `when:` condition (as the login/become user of the inventory); exit 0 means yes.
    async fn condition(&self, when: &str) -> Result<ExitInfo, String> {
        let cmd = self.shell(when)?;
        let out = self
            .session
            .run(&cmd.to_shell(), None, 64 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        Ok(out.exit)
    }

    /// Add a note to this host's report once.
    fn note(&mut self, note: &str) {
        let note = note.trim();
        if !note.is_empty() && !self.report.flags.iter().any(|f| f == note) {
            self.report.flags.push(note.to_string());
        }
    }

    /// Notes a command reported with lines `lsbackup-note: TEXT` (e.g. "not covered: pv X").
    fn notes_from(&mut self, text: &str) {
        for note in text
            .lines()
            .filter_map(|l| l.strip_prefix("lsbackup-note: "))
        {
            self.note(note);
        }
    }

    /// The notes a step declares with `flags:`, once it ran.
    fn flags_of_step(&mut self, step: &Step) {
        for f in &step.flags {
            self.note(f);
        }
    }

    /// Render a template with this host's variables; a variable that a failed `capture` step
    /// should have set is reported as that dependency, not as a typo.
    fn shell(&self, t: &str) -> Result<crate::shell::Script, String> {
        self.explain(template::shell(t, &self.vars, &self.pc.spec.snippets))
    }

    fn explain<T>(&self, r: Result<T, SpecError>) -> Result<T, String> {
        r.map_err(|e| match &e {
            SpecError::UndefinedVar { var, .. } => {
                match self
                    .pc
                    .spec
                    .steps
                    .iter()
                    .find(|s| s.into.as_deref() == Some(var))
                {
                    Some(s) => format!(
                        "not run: it needs {var} from step {:?}, which failed",
                        s.name
                    ),
                    None => e.to_string(),
                }
            }
            _ => e.to_string(),
        })
    }

    async fn run(&mut self) {
        if !self.pc.spec.requires.is_empty() {
            let bins: Vec<String> = self.pc.spec.requires.iter().map(|b| quote(b)).collect();
            let cmd = format!(
                "for b in {}; do command -v \"$b\" >/dev/null 2>&1 || echo \"$b\"; done",
                bins.join(" ")
            );
            match self.session.run(&cmd, None, 64 * 1024).await {
                Ok(out) => {
                    let missing = String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(", ");
                    if !missing.is_empty() {
                        self.err("requires", format!("missing on host: {missing}"));
                        return;
                    }
                }
                Err(e) => {
                    self.err("requires", e);
                    return;
                }
            }
        }
        for (vname, probe) in self.pc.spec.versions.clone() {
            let Ok(cmd) = self.shell(&probe.command) else {
                continue;
            };
            let Ok(user) = self.user(&probe.become_user) else {
                continue;
            };
            if let Ok(out) = self
                .session
                .run(&cmd.to_shell(), user.as_deref(), 64 * 1024)
                .await
                && out.exit.success()
            {
                let v = String::from_utf8_lossy(&out.stdout);
                let v = v.lines().next().unwrap_or("").trim();
                if !v.is_empty() {
                    self.report.versions.insert(vname, v.to_string());
                }
            }
        }
        for step in self.pc.spec.steps.clone() {
            if self.ctx.cancel.is_cancelled() {
                self.err(&step.name, "not run: interrupted");
                break;
            }
            let cancel = self.ctx.cancel.clone();
            let result = tokio::select! {
                r = self.step(&step) => r,
                _ = cancel.cancelled() => Err("interrupted".to_string()),
            };
            if let Err(e) = result {
                if step.optional {
                    self.report
                        .flags
                        .push(format!("optional step {:?} failed: {e}", step.name));
                } else {
                    self.err(&step.name, e);
                }
            }
        }
        for c in self.pc.spec.cleanup.clone() {
            let r = async {
                if let Some(w) = &c.when
                    && !self.condition(w).await?.success()
                {
                    return Ok(());
                }
                let cmd = self.shell(&c.run)?;
                let user = self.user(&c.become_user)?;
                let t = Instant::now();
                let out = self
                    .session
                    .run(&cmd.to_shell(), user.as_deref(), 1024 * 1024)
                    .await
                    .map_err(|e| e.to_string())?;
                self.record(&c.name, &c.run, user, Some(&out.exit), t);
                if out.exit.success() {
                    Ok(())
                } else {
                    Err(exit_text(&out.exit))
                }
            }
            .await;
            if let Err(e) = r {
                self.err(&format!("cleanup {}", c.name), e);
            }
        }
    }

    fn record(
        &mut self,
        step: &str,
        template: &str,
        user: Option<String>,
        exit: Option<&ExitInfo>,
        t: Instant,
    ) {
        let command = template::shell_redacted(template, &self.vars, &self.pc.spec.snippets)
            .unwrap_or_else(|_| template.to_string());
        // A command reports a remark for the manifest with a stderr line `lsbackup-note: TEXT`
        // (e.g. "not covered: pv X (csi driver Y)"), whatever its exit status.
        if let Some(e) = exit {
            self.notes_from(&e.stderr_tail);
        }
        self.report.commands.push(CommandRecord {
            step: step.to_string(),
            command,
            become_user: user,
            exit_code: exit.and_then(|e| e.code),
            duration_ms: t.elapsed().as_millis() as u64,
            stderr_tail: exit
                .filter(|e| !e.success())
                .map(|e| e.stderr_tail.clone())
                .unwrap_or_default(),
        });
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        let progress = &self.ctx.progress;
        progress.step(&self.pc.spec.name, &self.h.name, &step.name);
        if let Some(when) = &step.when {
            let exit = self.condition(when).await?;
            if !exit.success() {
                // Recorded with the commands (not as a note): a skipped alternative is normal.
                self.report.commands.push(CommandRecord {
                    step: step.name.clone(),
                    command: format!(
                        "skipped: condition `{}` not met",
                        template::shell_redacted(when, &self.vars, &self.pc.spec.snippets)
                            .unwrap_or_else(|_| when.clone())
                    ),
                    become_user: None,
                    exit_code: exit.code,
                    duration_ms: 0,
                    stderr_tail: String::new(),
                });
                return Ok(());
            }
        }
        match step.kind() {
            StepKind::Capture => self.capture(step).await,
            StepKind::Exec => {
                let template = step.exec.as_deref().unwrap_or_default();
                let cmd = self.shell(template)?;
                let user = self.user(&step.become_user)?;
                let t = Instant::now();
                let out = self
                    .session
                    .run(&cmd.to_shell(), user.as_deref(), 1024 * 1024)
                    .await
                    .map_err(|e| e.to_string())?;
                self.record(&step.name, template, user, Some(&out.exit), t);
                // An exec step may report many notes: on stdout too (stderr keeps only a tail).
                self.notes_from(&String::from_utf8_lossy(&out.stdout));
                if !out.exit.success() {
                    return Err(exit_text(&out.exit));
                }
                self.flags_of_step(step);
                Ok(())
            }
            StepKind::Copy => self.copy(step).await,
            StepKind::Run => {
                let items = match &step.foreach {
                    None => vec![None],
                    Some(f) => {
                        let cmd = self.shell(f)?;
                        let user = self.user(&step.foreach_become_user)?;
                        let out = self
                            .session
                            .run(&cmd.to_shell(), user.as_deref(), 1024 * 1024)
                            .await
                            .map_err(|e| e.to_string())?;
                        if !out.exit.success() {
                            return Err(format!("listing items: {}", exit_text(&out.exit)));
                        }
                        String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(|l| Some(l.to_string()))
                            .collect()
                    }
                };
                let mut errors = Vec::new();
                for item in items {
                    if let Some(item) = &item {
                        if item.contains('/') || item == ".." || item == "." {
                            errors.push(format!("item {item:?} is not usable as a file name"));
                            continue;
                        }
                        self.vars.insert("item".into(), item.clone());
                    }
                    if let Err(e) = self.run_output(step).await {
                        errors.push(match &item {
                            Some(i) => format!("{i}: {e}"),
                            None => e,
                        });
                    }
                }
                self.vars.remove("item");
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors.join("; "))
                }
            }
        }
    }

    async fn capture(&mut self, step: &Step) -> Result<(), String> {
        let into = step.into.clone().unwrap_or_default();
        let template = step.capture.as_deref().unwrap_or_default();
        let cmd = self.shell(template)?;
        let user = self.user(&step.become_user)?;
        let t = Instant::now();
        let res = self
            .session
            .run(&cmd.to_shell(), user.as_deref(), 1024 * 1024)
            .await;
        let out = match res {
            Ok(o) => o,
            Err(e) => {
                if step.optional {
                    self.vars.insert(into, String::new());
                }
                return Err(e.to_string());
            }
        };
        self.record(&step.name, template, user, Some(&out.exit), t);
        if !out.exit.success() {
            if step.optional {
                self.vars.insert(into, String::new());
            }
            return Err(exit_text(&out.exit));
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let value = match &step.regex {
            Some(r) => {
                let re = regex::Regex::new(r).map_err(|e| e.to_string())?;
                match re.captures(&text) {
                    Some(c) => c
                        .get(1)
                        .or_else(|| c.get(0))
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_default(),
                    None => {
                        if step.optional {
                            self.vars.insert(into, String::new());
                        }
                        return Err(format!("output {text:?} does not match {r:?}"));
                    }
                }
            }
            None => text,
        };
        self.vars.insert(into, value);
        Ok(())
    }

    fn entry_prefix(&self) -> String {
        format!("{}/{}", self.pc.spec.name, self.h.name)
    }

    fn counting<R>(&self, inner: R) -> Counting<R> {
        Counting {
            inner,
            progress: self.ctx.progress.clone(),
            component: self.pc.spec.name.clone(),
            host: self.h.name.clone(),
            total: 0,
        }
    }

    /// A `run` step: spool stdout, and add it to the archive only when the command succeeded.
    async fn run_output(&mut self, step: &Step) -> Result<(), String> {
        let template = step.run.as_deref().unwrap_or_default();
        let cmd = self.shell(template)?;
        let output = self.explain(template::entry_name(
            step.output.as_deref().unwrap_or_default(),
            &self.vars,
        ))?;
        let user = self.user(&step.become_user)?;
        let t = Instant::now();
        let stream_lock = self.ctx.sessions.stream_lock(&self.h.name);
        let streaming = stream_lock.lock().await;
        let spool = match &self.ctx.spool_dir {
            Some(d) => tempfile::tempfile_in(d),
            None => tempfile::tempfile(),
        }
        .map_err(|e| format!("spooling output on this machine: {e}"))?;
        let mut spool = tokio::fs::File::from_std(spool);
        let mut proc = self
            .session
            .exec(&cmd.to_shell(), user.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let stdout = std::mem::replace(&mut proc.stdout, Box::new(tokio::io::empty()));
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, self.counting(stdout));
        let copied = tokio::io::copy_buf(&mut reader, &mut spool).await;
        drop(reader);
        let exit = match proc.wait().await {
            Ok(e) => e,
            Err(e) => {
                self.record(&step.name, template, user, None, t);
                return Err(e.to_string());
            }
        };
        drop(streaming);
        self.record(&step.name, template, user, Some(&exit), t);
        let size = copied.map_err(|e| format!("reading output: {e}"))?;
        if !exit.success() {
            return Err(exit_text(&exit));
        }
        spool
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| format!("spool: {e}"))?;
        let meta = EntryMeta {
            path: format!("{}/{}", self.entry_prefix(), output),
            size,
            mode: 0o600,
            mtime: jiff::Timestamp::now().as_second(),
        };
        let rec = self
            .ctx
            .sink
            .add_sized(meta, spool)
            .await
            .map_err(|e| e.to_string())?;
        self.seen.insert(rec.path.clone());
        self.report.entries.push(rec);
        self.flags_of_step(step);
        Ok(())
    }

    /// A `copy` step: a remote tar stream, re-rooted under `<component>/<host>/`.
    async fn copy(&mut self, step: &Step) -> Result<(), String> {
        let patterns = self.explain(template::copy_patterns(&step.copy, &self.vars))?;
        let (globs, shown): (Vec<_>, Vec<_>) =
            patterns.into_iter().map(|p| (p.pattern, p.shown)).unzip();
        let script = copy_script(&globs);
        let user = self.user(&step.become_user)?;
        let stream_lock = self.ctx.sessions.stream_lock(&self.h.name);
        let _streaming = stream_lock.lock().await;
        let t = Instant::now();
        let mut proc = self
            .session
            .exec(&script.to_shell(), user.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let stdout = std::mem::replace(&mut proc.stdout, Box::new(tokio::io::empty()));
        let prefix = self.entry_prefix();
        let mut added = 0usize;
        let mut stream_err: Option<String> = None;
        let mut skipped_special = Vec::new();
        let reader = self.counting(stdout);
        {
            let mut ar = tokio_tar::Archive::new(reader);
            match ar.entries() {
                Err(e) => stream_err = Some(format!("reading tar stream: {e}")),
                Ok(mut entries) => {
                    while let Some(entry) = entries.next().await {
                        let mut entry = match entry {
                            Ok(e) => e,
                            Err(e) => {
                                stream_err = Some(format!("reading tar stream: {e}"));
                                break;
                            }
                        };
                        let hdr = entry.header().clone();
                        let rel = match entry.path() {
                            Ok(p) => p.to_string_lossy().trim_end_matches('/').to_string(),
                            Err(e) => {
                                stream_err = Some(format!("bad path in tar stream: {e}"));
                                break;
                            }
                        };
                        let path = format!("{prefix}/{rel}");
                        if !self.seen.insert(path.clone()) {
                            continue;
                        }
                        let mode = hdr.mode().unwrap_or(0o600);
                        let mtime = hdr.mtime().unwrap_or(0) as i64;
                        let et = hdr.entry_type();
                        let size = entry.effective_size();
                        let res = if et.is_file() {
                            let meta = EntryMeta {
                                path: path.clone(),
                                size,
                                mode,
                                mtime,
                            };
                            let r = self.ctx.sink.add_sized(meta, &mut entry).await;
                            let padded = match &r {
                                Err(ArchiveError::Truncated { .. }) => true,
                                Err(ArchiveError::Entry { cause, .. }) => {
                                    cause.starts_with("reading source failed")
                                }
                                _ => false,
                            };
                            if padded {
                                // The entry is in the archive, zero-padded: record it as failed
                                // (no sha256) so `verify` lists it as unverified, not as extra.
                                self.report
                                    .entries
                                    .push(EntryRecord::failed_file(&path, size, mode));
                            }
                            r
                        } else if et.is_dir() {
                            self.ctx.sink.add_dir(&path, mode, mtime).await
                        } else if et.is_symlink() {
                            let target = entry
                                .link_name()
                                .ok()
                                .flatten()
                                .map(|p| p.to_string_lossy().to_string())
                                .unwrap_or_default();
                            self.ctx.sink.add_symlink(&path, &target, mtime).await
                        } else {
                            skipped_special.push(rel);
                            continue;
                        };
                        match res {
                            Ok(rec) => {
                                added += 1;
                                self.report.entries.push(rec);
                            }
                            Err(e) => {
                                stream_err = Some(e.to_string());
                                break;
                            }
                        }
                    }
                }
            }
        }
        let exit = proc.wait().await;
        let exit = match exit {
            Ok(e) => e,
            Err(e) => {
                self.record(&step.name, &step.copy.join(" "), user, None, t);
                return Err(e.to_string());
            }
        };
        let tar = format!("tar -c {}", step.copy.join(" "));
        self.record(&step.name, &tar, user, Some(&exit), t);
        for s in skipped_special {
            self.report
                .flags
                .push(format!("not copied (special file): /{s}"));
        }
        let missing = missing_patterns(&exit.stderr_tail, &shown);
        // An optional copy names alternatives (wherever a package may put a file): absent ones
        // are expected and not worth a note.
        for m in missing.iter().filter(|_| !step.optional) {
            self.note(&format!("not found on host: {m}"));
        }
        if let Some(e) = stream_err {
            return Err(e);
        }
        match exit.code {
            Some(0) => {}
            Some(1) => self.report.flags.push(format!(
                "step {:?}: some files changed while being copied",
                step.name
            )),
            _ => return Err(format!("tar: {}", exit_text(&exit))),
        }
        if added == 0 && !step.optional {
            return Err(format!(
                "nothing to copy: no such file or directory on host: {}",
                missing.join(" ")
            ));
        }
        self.flags_of_step(step);
        Ok(())
    }
}
