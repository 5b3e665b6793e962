//! One component on one host: [`HostCtx`], the primitives every component's backup is built
//! from (run a script, stream its output into an entry, copy paths, add bytes, speak an HTTP
//! API, note, record), and [`StepError`], the typed outcome of a failed step.
//!
//! Spec components (`components/*.yaml`) are interpreted into these calls by `steps.rs`; native
//! components (`src/components/*.rs`) call them directly.
//!
//! Work done once per run for all hosts of a component (e.g. one API listing used by every
//! node): [`HostCtx::shared`] (a per-run, per-component `OnceCell` kept on the run's [`Ctx`]),
//! [`HostCtx::peers`] (every planned host with its groups, address and variables) and
//! [`HostCtx::run_on`] (a script on one of them, through the run's session pool).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::plan::{PlannedComponent, PlannedHost};
use super::progress::Progress;
use super::sessions::{Sessions, transport_kind};
use crate::archive::{
    ArchiveError, CommandRecord, CopyError, EntryMeta, EntrySink, Failure, FailureKind, HostReport,
    Status, StreamEntry,
};
use crate::http::{Endpoint, HttpClient, HttpClientBuilder, HttpError, TlsSettings};
use crate::shell::Script;
use crate::transport::{ExitInfo, Output, Session, TransportConfig, TransportError};

/// What every unit of a run shares.
pub(crate) struct Ctx {
    pub(crate) sink: EntrySink,
    pub(crate) sessions: Sessions,
    pub(crate) transport: TransportConfig,
    /// Host jobs at once (`--concurrency`).
    pub(crate) slots: super::slots::HostSlots,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) cancel: CancellationToken,
    /// Per-run values shared by the hosts of one component ([`HostCtx::shared`]), keyed by
    /// (component, key). Lives and dies with the run, never in the catalog (which may serve
    /// several runs).
    pub(crate) shared: SharedStore,
    /// Where the units' entry records go during the run (None: they stay in memory).
    pub(crate) entry_spool: Option<Arc<crate::archive::EntrySpool>>,
}

impl Ctx {
    /// An empty list of entry records for a unit (or branch) of this run.
    fn new_entries(&self) -> crate::archive::Entries {
        match &self.entry_spool {
            Some(s) => crate::archive::Entries::spooled(s.clone()),
            None => crate::archive::Entries::default(),
        }
    }
}

/// See [`Ctx::shared`].
#[derive(Default)]
pub(crate) struct SharedStore(
    std::sync::Mutex<HashMap<(String, String), Arc<dyn Any + Send + Sync>>>,
);

/// A failed step: its kind (from the typed error that caused it) and one line of cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cause}")]
pub struct StepError {
    pub kind: FailureKind,
    pub cause: String,
}

impl StepError {
    pub fn new(kind: FailureKind, cause: impl Into<String>) -> StepError {
        StepError {
            kind,
            cause: clean_text(&cause.into()),
        }
    }

    /// A command that exited non-zero: its status and last stderr line.
    pub fn command(exit: &ExitInfo) -> StepError {
        let kind = if exit.code == Some(127) {
            FailureKind::MissingTool
        } else {
            FailureKind::CommandFailed
        };
        StepError::new(kind, exit_text(exit))
    }

    /// Not run because `because` (an earlier failure) happened.
    pub fn skipped(because: impl Into<String>) -> StepError {
        StepError::new(FailureKind::Skipped, because)
    }

    /// What a host or service answered is unusable.
    pub fn bad_data(cause: impl Into<String>) -> StepError {
        StepError::new(FailureKind::BadData, cause)
    }

    pub fn config(cause: impl Into<String>) -> StepError {
        StepError::new(FailureKind::Config, cause)
    }

    pub fn local(cause: impl Into<String>) -> StepError {
        StepError::new(FailureKind::Local, cause)
    }

    pub fn api(cause: impl Into<String>) -> StepError {
        StepError::new(FailureKind::Api, cause)
    }
}

/// A step's failure with the step's name: what a native component's `backup` returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {error}")]
pub struct Failed {
    pub step: String,
    pub error: StepError,
}

impl StepError {
    /// This error as the failure of `step`.
    pub fn at(self, step: &str) -> Failed {
        Failed {
            step: step.to_string(),
            error: self,
        }
    }
}

/// `result.at("snapshot")?`: name the step of an error.
pub trait At<T> {
    fn at(self, step: &str) -> Result<T, Failed>;
}

impl<T, E: Into<StepError>> At<T> for Result<T, E> {
    fn at(self, step: &str) -> Result<T, Failed> {
        self.map_err(|e| e.into().at(step))
    }
}

impl From<TransportError> for StepError {
    fn from(e: TransportError) -> StepError {
        // The host name is already in the line the unit prints; keep the cause.
        let text = e.to_string();
        let host = e.host().to_string();
        let cause = text
            .strip_prefix(&format!("{host}: "))
            .unwrap_or(&text)
            .to_string();
        StepError::new(transport_kind(&e), cause)
    }
}

impl From<HttpError> for StepError {
    fn from(e: HttpError) -> StepError {
        let kind = match &e {
            HttpError::Tunnel(t) => transport_kind(t),
            HttpError::Timeout { .. } => FailureKind::Timeout,
            HttpError::BadUrl { .. }
            | HttpError::BadPath { .. }
            | HttpError::TlsSettings { .. }
            | HttpError::InsecureCredentials { .. } => FailureKind::Config,
            HttpError::Tls { .. }
            | HttpError::Status { .. }
            | HttpError::TooLarge { .. }
            | HttpError::Json { .. }
            | HttpError::Protocol { .. } => FailureKind::Api,
        };
        if let HttpError::Tunnel(t) = e {
            return t.into();
        }
        // Messages start with the host name, already in the line the unit prints.
        let text = e.to_string();
        let cause = text
            .split_once(": ")
            .filter(|(host, _)| !host.contains(' '))
            .map_or(text.as_str(), |(_, rest)| rest)
            .to_string();
        StepError::new(kind, cause)
    }
}

impl From<ArchiveError> for StepError {
    fn from(e: ArchiveError) -> StepError {
        StepError::local(e.to_string())
    }
}

/// Remote text (stderr, notes, answers) made safe for a terminal and a one-line message:
/// control characters (escape sequences among them) become `?`; tabs become spaces.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => '?',
            // bidi overrides can make a line read as something it is not
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => '?',
            c => c,
        })
        .collect()
}

/// A command's exit as one line: status, then the last meaningful stderr line.
pub fn exit_text(e: &ExitInfo) -> String {
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
    let line = if last.is_empty() {
        status
    } else {
        format!("{status}: {last}")
    };
    clean_text(&line)
}

/// Counts bytes read from a host for the progress display.
pub(crate) struct Counting<R> {
    inner: R,
    progress: Arc<dyn Progress>,
    component: String,
    host: String,
    /// Set once a byte arrived, for a stream into the archive ([`HostCtx::streamed`]).
    streamed: Option<Arc<std::sync::atomic::AtomicBool>>,
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
            self.progress.bytes(&self.component, &self.host, n);
            if let Some(s) = &self.streamed {
                s.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        r
    }
}

/// Remembers that the reader it wraps ended (EOF or error): see [`HostCtx::stream_filtered`].
struct EndWatch<R> {
    inner: R,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for EndWatch<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Err(_)) => self.ended.store(true, std::sync::atomic::Ordering::SeqCst),
            Poll::Ready(Ok(())) if room && buf.filled().len() == before => {
                self.ended.store(true, std::sync::atomic::Ordering::SeqCst)
            }
            _ => {}
        }
        r
    }
}

/// Fails a read as timed out when the reader it wraps yields nothing for `limit` (a stalled
/// command or host), so one stalled stream cannot hold a backup forever.
pub(crate) struct Idle<R> {
    inner: R,
    limit: Option<std::time::Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl<R> Idle<R> {
    pub(crate) fn new(inner: R, limit: Option<std::time::Duration>) -> Idle<R> {
        Idle {
            inner,
            limit,
            sleep: None,
            fired: Default::default(),
        }
    }

    /// Set once the limit has passed with no data.
    pub(crate) fn fired(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.fired.clone()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Idle<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let Some(limit) = self.limit else {
            return r;
        };
        match r {
            Poll::Ready(r) => {
                if let Some(s) = self.sleep.as_mut() {
                    s.as_mut().reset(tokio::time::Instant::now() + limit);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.fired.store(true, std::sync::atomic::Ordering::SeqCst);
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "no data for {} s: stalled (--idle-timeout)",
                                limit.as_secs()
                            ),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Output cap of a captured command (`HostCtx::run`).
pub const CAPTURE_LIMIT: usize = 1024 * 1024;

/// One component on one host.
pub struct HostCtx<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) pc: &'a PlannedComponent,
    pub(crate) h: &'a PlannedHost,
    pub(crate) session: Arc<Session>,
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) report: HostReport,
    /// Entry paths already added for this host: overlapping copy patterns (a directory and a
    /// file inside it) stream the same file twice; the first copy wins.
    /// A cleanup failed (e.g. a stopped service did not start again): serial runs stop.
    pub(crate) cleanup_failed: bool,
    /// What [`HostCtx::set_var`] set, in this unit or any of its branches ([`HostCtx::fork`]),
    /// latest last: the cleanup sees a value a branch set even when the branch never joined
    /// (an interrupted run drops it).
    set_vars: Arc<std::sync::Mutex<BTreeMap<String, String>>>,
    /// Set once data from the host began to stream into an entry of this unit or a branch:
    /// after a dropped connection, only a unit that streamed nothing is run again.
    streamed: Arc<std::sync::atomic::AtomicBool>,
}

impl<'a> HostCtx<'a> {
    pub(crate) fn new(
        ctx: &'a Ctx,
        pc: &'a PlannedComponent,
        h: &'a PlannedHost,
        session: Arc<Session>,
        role: &str,
    ) -> HostCtx<'a> {
        HostCtx {
            ctx,
            pc,
            h,
            session,
            vars: h.vars.clone(),
            report: HostReport {
                entries: ctx.new_entries(),
                ..host_report(h, role, Status::Ok)
            },
            cleanup_failed: false,
            set_vars: Arc::default(),
            streamed: Arc::default(),
        }
    }

    /// A branch of this unit for steps that run at the same time as others on the host (over
    /// their own channels of the same session): same host, component, session and variables,
    /// and a report of its own that [`HostCtx::join`] adds to this one's. Branches run with
    /// `tokio::join!` / `futures::future::join_all`; each records its commands, entries, notes,
    /// versions and failures as a unit does, so a failing branch fails only its own steps.
    pub fn fork(&self) -> HostCtx<'a> {
        HostCtx {
            ctx: self.ctx,
            pc: self.pc,
            h: self.h,
            session: self.session.clone(),
            vars: self.vars.clone(),
            report: HostReport {
                entries: self.ctx.new_entries(),
                ..host_report(self.h, &self.report.role, Status::Ok)
            },
            cleanup_failed: false,
            set_vars: self.set_vars.clone(),
            streamed: self.streamed.clone(),
        }
    }

    /// Add what a branch made by [`HostCtx::fork`] recorded, after what this unit recorded so
    /// far: commands, entries, notes, versions, failures, and the variables it (or any
    /// branch) set with [`HostCtx::set_var`] (e.g. a snapshot path the cleanup needs).
    pub fn join(&mut self, branch: HostCtx<'a>) {
        let r = branch.report;
        self.report.commands.extend(r.commands);
        self.report.entries.append(r.entries);
        for f in r.flags {
            if !self.report.flags.contains(&f) {
                self.report.flags.push(f);
            }
        }
        self.report.versions.extend(r.versions);
        self.report.errors.extend(r.errors);
        self.cleanup_failed |= branch.cleanup_failed;
        self.adopt_set_vars();
    }

    /// Take the values set with [`HostCtx::set_var`] by branches (joined or not): before the
    /// cleanup.
    pub(crate) fn adopt_set_vars(&mut self) {
        let set = self.set_vars.lock().unwrap().clone();
        self.vars.extend(set);
    }

    /// Join several branches, in the order given (the manifest's order does not depend on
    /// which finished first).
    pub fn join_all(&mut self, branches: impl IntoIterator<Item = HostCtx<'a>>) {
        for b in branches {
            self.join(b);
        }
    }

    /// The inventory name of the host.
    pub fn host(&self) -> &str {
        &self.h.name
    }

    /// The component's name.
    pub fn component(&self) -> &str {
        &self.pc.spec.name
    }

    /// The host's address in the inventory: `ansible_host`, else the inventory name (also for
    /// an `ansible_connection=local` host).
    pub fn address(&self) -> &str {
        &self.h.conn.address
    }

    /// The component's inventory groups this host is in.
    pub fn groups(&self) -> &[String] {
        &self.h.groups
    }

    /// Every host this component runs on in this run (this one included), in plan order, with
    /// its variables and groups: for work done once for all of them (see [`HostCtx::shared`]
    /// and [`HostCtx::run_on`]).
    pub fn peers(&self) -> &[PlannedHost] {
        &self.pc.hosts
    }

    /// A value computed once per run for this component and shared by all its hosts, under
    /// `key`: the first host that calls `get_or_init` on the cell computes it, the others wait
    /// for it and get the same value. Per run and per component (kept on the run's context,
    /// never in the catalog). Panics if `key` is used with two different types.
    ///
    /// ```ignore
    /// let cell = h.shared::<Listing>("listing");
    /// let listing = cell.get_or_init(|| list_once(h)).await;
    /// ```
    pub fn shared<T: Send + Sync + 'static>(&self, key: &str) -> Arc<tokio::sync::OnceCell<T>> {
        let mut map = self.ctx.shared.0.lock().unwrap();
        let any = map
            .entry((self.pc.spec.name.clone(), key.to_string()))
            .or_insert_with(|| Arc::new(tokio::sync::OnceCell::<T>::new()))
            .clone();
        any.downcast::<tokio::sync::OnceCell<T>>()
            .unwrap_or_else(|_| panic!("shared value {key:?} used with two types"))
    }

    /// Run a short script on `host`, one of [`HostCtx::peers`], over the run's session to it
    /// (opened now if no component has yet; a host that could not be reached stays unreachable
    /// for the run) and capture at most `limit` bytes of stdout. The exit status is returned, not
    /// judged, and nothing is recorded: the caller records the command in the report it
    /// belongs to. For work done once per run on a chosen host (e.g. an API listing on a
    /// control-plane host used by every node).
    pub async fn run_on(
        &self,
        host: &str,
        script: &Script,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Output, StepError> {
        let peer = self
            .pc
            .hosts
            .iter()
            .find(|p| p.name == host)
            .ok_or_else(|| {
                StepError::local(format!("{host} is not a host of {}", self.pc.spec.name))
            })?;
        let session = if peer.name == self.h.name {
            self.session.clone()
        } else {
            self.ctx
                .sessions
                .get(peer, &self.ctx.transport)
                .await
                .map_err(|f| StepError::new(f.kind, f.message))?
        };
        Ok(session.run(script, user, limit).await?)
    }

    /// A variable's value ("" when not set). Declared variables always have one (their default).
    pub fn var(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or("")
    }

    /// A yes/no variable: true for `true`, `yes`, `on`, `1` (any case).
    pub fn var_is_true(&self, name: &str) -> bool {
        matches!(
            self.var(name).trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "1"
        )
    }

    /// Keep a value for later steps and the cleanup (e.g. the snapshot directory made).
    pub fn set_var(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        self.set_vars
            .lock()
            .unwrap()
            .insert(name.to_string(), value.clone());
        self.vars.insert(name.to_string(), value);
    }

    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The host's session (for `Session::connect_tcp` and other direct uses).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// True once the run was interrupted: start nothing new.
    pub fn is_cancelled(&self) -> bool {
        self.ctx.cancel.is_cancelled()
    }

    /// Show the step in progress.
    pub fn step(&self, name: &str) {
        self.ctx
            .progress
            .step(&self.pc.spec.name, &self.h.name, name);
    }

    /// Add a remark to this host's entry in the manifest, once.
    pub fn note(&mut self, note: &str) {
        let note = clean_text(note.trim());
        if !note.is_empty() && !self.report.flags.contains(&note) {
            self.report.flags.push(note);
        }
    }

    /// Notes a command reported with lines `lsbackup-note: TEXT`.
    pub fn notes_from(&mut self, text: &str) {
        let notes: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("lsbackup-note: "))
            .map(str::to_string)
            .collect();
        for n in notes {
            self.note(&n);
        }
    }

    /// Record a software version detected on the host.
    pub fn version(&mut self, name: &str, value: &str) {
        let v = clean_text(value.lines().next().unwrap_or("").trim());
        if !v.is_empty() {
            self.report.versions.insert(name.to_string(), v);
        }
    }

    /// Record a failed step: one line `HOST: COMPONENT: STEP: cause`, with its kind.
    pub fn fail(&mut self, step: &str, e: StepError) {
        let msg = format!(
            "{}: {}: {step}: {}",
            self.h.name, self.pc.spec.name, e.cause
        );
        self.report
            .errors
            .push(Failure::new(e.kind, Some(step), msg));
    }

    /// Record a step that failed but was optional: a note, not a failure.
    pub fn optional_failed(&mut self, step: &str, e: &StepError) {
        self.note(&format!("optional step {step:?} failed: {}", e.cause));
    }

    /// Record a command (or API call) in the manifest. `shown` never holds secrets.
    pub fn record(
        &mut self,
        step: &str,
        shown: &str,
        user: Option<&str>,
        exit: Option<&ExitInfo>,
        t: Instant,
    ) {
        if let Some(e) = exit {
            self.notes_from(&e.stderr_tail);
        }
        self.report.commands.push(CommandRecord {
            step: step.to_string(),
            command: shown.to_string(),
            become_user: user.map(str::to_string),
            exit_code: exit.and_then(|e| e.code),
            duration_ms: t.elapsed().as_millis() as u64,
            // kept whether the command succeeded or not: a warning on stderr of a command
            // that exited 0 is worth as much (the transport keeps only its last few KiB)
            stderr_tail: exit.map(|e| clean_text(&e.stderr_tail)).unwrap_or_default(),
        });
    }

    /// Record an HTTP API call (`GET /api/v1/status/flags`) and its status code.
    pub fn record_call(&mut self, step: &str, call: &str, status: Option<u16>, t: Instant) {
        self.report.commands.push(CommandRecord {
            step: step.to_string(),
            command: call.to_string(),
            become_user: None,
            exit_code: status.map(u32::from),
            duration_ms: t.elapsed().as_millis() as u64,
            stderr_tail: String::new(),
        });
    }

    /// The stderr tail of the last command recorded (what a failed [`HostCtx::stream`] said),
    /// control characters already made safe.
    pub fn last_stderr(&self) -> &str {
        self.report
            .commands
            .last()
            .map_or("", |c| c.stderr_tail.as_str())
    }

    /// Run a short script and capture its stdout (at most [`CAPTURE_LIMIT`] bytes). The exit
    /// status is returned, not judged; the command is recorded as `shown` (None: the script).
    pub async fn run(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
        shown: Option<&str>,
    ) -> Result<Output, StepError> {
        let t = Instant::now();
        let res = self.session.run(script, user, CAPTURE_LIMIT).await;
        let shown = shown
            .map(str::to_string)
            .unwrap_or_else(|| script.to_shell());
        match res {
            Ok(out) => {
                self.record(step, &shown, user, Some(&out.exit), t);
                Ok(out)
            }
            Err(e) => {
                self.record(step, &shown, user, None, t);
                Err(e.into())
            }
        }
    }

    /// [`HostCtx::run`], and a non-zero exit is a [`StepError`].
    pub async fn run_ok(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
        shown: Option<&str>,
    ) -> Result<Output, StepError> {
        let out = self.run(step, script, user, shown).await?;
        if out.exit.success() {
            Ok(out)
        } else {
            Err(StepError::command(&out.exit))
        }
    }

    /// Read a file on the host (as `user`, default the become user of the connection): its
    /// bytes, or `None` when it does not exist. At most [`CAPTURE_LIMIT`] bytes. The read is
    /// recorded as `cat PATH`.
    pub async fn read_file(
        &mut self,
        step: &str,
        path: &str,
        user: Option<&str>,
    ) -> Result<Option<Vec<u8>>, StepError> {
        const READ: &str = "if [ -e \"$1\" ]; then exec cat -- \"$1\"; else exit 3; fi";
        let script = Script::new(READ).arg(path);
        let shown = format!("cat {}", crate::shell::quote(path));
        let out = self.run(step, &script, user, Some(&shown)).await?;
        match out.exit.code {
            Some(0) => Ok(Some(out.stdout)),
            Some(3) => Ok(None),
            _ => Err(StepError::command(&out.exit)),
        }
    }

    /// [`HostCtx::read_file`] of a file that must exist.
    pub async fn read_required(
        &mut self,
        step: &str,
        path: &str,
        user: Option<&str>,
    ) -> Result<Vec<u8>, StepError> {
        self.read_file(step, path, user)
            .await?
            .ok_or_else(|| StepError::config(format!("{path}: no such file on the host")))
    }

    /// TLS settings whose CA, client certificate and key (PEM, paths on the host; "" = none)
    /// are read from the host, so they never leave it except into this process.
    pub async fn tls_from_host(
        &mut self,
        step: &str,
        ca: &str,
        client_cert: &str,
        client_key: &str,
        verify: bool,
    ) -> Result<TlsSettings, StepError> {
        let mut tls = TlsSettings {
            verify,
            ..TlsSettings::default()
        };
        if !ca.is_empty() {
            tls.ca_pem = Some(self.read_required(step, ca, None).await?);
        }
        if !client_cert.is_empty() {
            tls.client_cert_pem = Some(self.read_required(step, client_cert, None).await?);
        }
        if !client_key.is_empty() {
            tls.client_key_pem = Some(self.read_required(step, client_key, None).await?);
        }
        Ok(tls)
    }

    /// A client for an HTTP API at `url` as this host sees it (a direct-tcpip tunnel through
    /// the host's SSH session): add TLS, credentials, timeouts, then `build`.
    pub fn http(&self, url: &str) -> Result<HttpClientBuilder, StepError> {
        let endpoint = Endpoint::parse(url)?;
        Ok(HttpClient::builder((*self.session).clone(), endpoint))
    }

    /// Await an API call and record it in the manifest as `call` (`GET /_snapshot`), with the
    /// HTTP status of a failed call when the service answered one (success records none: the
    /// calls accept any 2xx).
    pub async fn api<T, F>(&mut self, step: &str, call: &str, fut: F) -> Result<T, StepError>
    where
        F: std::future::Future<Output = Result<T, HttpError>>,
    {
        let t = Instant::now();
        let r = fut.await;
        let status = match &r {
            Err(HttpError::Status { status, .. }) => Some(status.as_u16()),
            _ => None,
        };
        self.record_call(step, call, status, t);
        r.map_err(StepError::from)
    }

    /// Whether the entry `rel` of this component and host is in the archive (or being added).
    pub fn is_taken(&self, rel: &str) -> bool {
        self.ctx.sink.is_taken(&self.entry_path(rel))
    }

    /// The archive path of an entry of this component and host.
    pub fn entry_path(&self, rel: &str) -> String {
        format!("{}/{}/{}", self.pc.spec.name, self.h.name, rel)
    }

    pub(crate) fn counting<R>(&self, inner: R) -> Counting<R> {
        Counting {
            inner,
            progress: self.ctx.progress.clone(),
            component: self.pc.spec.name.clone(),
            host: self.h.name.clone(),
            streamed: Some(self.streamed.clone()),
        }
    }

    /// Whether data from the host began to stream into an entry of this unit (or a branch), or
    /// an entry was added.
    pub(crate) fn streamed(&self) -> bool {
        self.streamed.load(std::sync::atomic::Ordering::SeqCst) || !self.report.entries.is_empty()
    }

    /// Add `bytes` as the entry `rel` (relative to `<component>/<host>/`).
    pub async fn add_bytes(&mut self, rel: &str, bytes: &[u8]) -> Result<(), StepError> {
        let meta = EntryMeta {
            path: self.entry_path(rel),
            size: bytes.len() as u64,
            mode: 0o600,
            mtime: jiff::Timestamp::now().as_second(),
        };
        let rec = self.ctx.sink.add_sized(meta, bytes).await?;
        self.report.entries.push(rec);
        Ok(())
    }

    /// Add what `reader` yields (of unknown length: compressed as it arrives) as the entry
    /// `rel`. A read error adds nothing.
    pub async fn add_reader<R: AsyncRead + Unpin + Send>(
        &mut self,
        rel: &str,
        reader: R,
    ) -> Result<(), StepError> {
        let mut entry = self.ctx.sink.begin_stream(&self.entry_path(rel)).await?;
        let mut reader = self.counting(reader);
        match entry.copy_from(&mut reader, None).await {
            Ok(_) => {}
            Err(CopyError::Local(e)) => return Err(e.into()),
            Err(CopyError::Source(e)) => {
                return Err(StepError::new(FailureKind::Api, format!("reading: {e}")));
            }
        }
        self.commit(entry).await
    }

    /// Queue a complete entry for the archive and record it.
    async fn commit(&mut self, entry: StreamEntry) -> Result<(), StepError> {
        let rec = entry
            .commit(0o600, jiff::Timestamp::now().as_second())
            .await?;
        self.report.entries.push(rec);
        Ok(())
    }

    /// The reader of a streaming command's stdout: counted for progress, and failing as timed
    /// out when the command sends nothing for the idle limit.
    pub(crate) fn watched<R: AsyncRead + Unpin>(&self, inner: R) -> Idle<Counting<R>> {
        Idle::new(self.counting(inner), self.ctx.transport.idle_timeout)
    }

    /// Run `script` and make its stdout the entry `rel`, only when it exits 0.
    pub async fn stream(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
        rel: &str,
        shown: Option<&str>,
    ) -> Result<(), StepError> {
        // The whole stdout passes: the command always runs to its end and must exit 0.
        self.stream_filtered(step, script, user, rel, shown, |out| out)
            .await
            .map(|_| ())
    }

    /// Run `script` and make the entry `rel` of what `filter` passes of its stdout: `filter`
    /// wraps the stdout in a reader that may end before it (e.g. at the end of the used part of
    /// a preallocated file). When the filtered reader ends first, the command is stopped and its
    /// channel closed (the rest never crosses the network beyond what was in flight), and the
    /// entry is what the filter passed; when the command's stdout ended, the command must exit
    /// 0. Returns the entry's size.
    pub async fn stream_filtered<F, R>(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
        rel: &str,
        shown: Option<&str>,
        filter: F,
    ) -> Result<u64, StepError>
    where
        F: FnOnce(Box<dyn AsyncRead + Send + Unpin>) -> R,
        R: AsyncRead + Send + Unpin,
    {
        let t = Instant::now();
        let shown = shown
            .map(str::to_string)
            .unwrap_or_else(|| script.to_shell());
        let mut entry = self.ctx.sink.begin_stream(&self.entry_path(rel)).await?;
        let (proc, stdout) = self.start(step, script, user, &shown, t).await?;
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watched = EndWatch {
            inner: self.watched(stdout),
            ended: ended.clone(),
        };
        let mut reader = filter(Box::new(watched));
        // Compressed into the entry's spool while it arrives.
        let copied = entry.copy_from(&mut reader, None).await;
        drop(reader);
        let copied = match copied {
            Err(CopyError::Local(e)) => {
                drop(proc);
                self.record(step, &shown, user, None, t);
                return Err(e.into());
            }
            Ok(n) => Ok(n),
            Err(CopyError::Source(e)) => Err(e),
        };
        if copied.is_ok() && !ended.load(std::sync::atomic::Ordering::SeqCst) {
            // The filter has what it needs: stop the command (dropping it closes the channel).
            drop(proc);
            self.record(
                step,
                &format!("{shown} (stopped after the part kept)"),
                user,
                None,
                t,
            );
            let size = entry.size();
            self.commit(entry).await?;
            return Ok(size);
        }
        self.finish_read(step, &shown, user, t, proc, copied)
            .await?;
        let size = entry.size();
        self.commit(entry).await?;
        Ok(size)
    }

    /// Start `script` for a step whose output is read: the process and its stdout, taken out
    /// of it. A failure to start is recorded and is the step's error.
    async fn start(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
        shown: &str,
        t: Instant,
    ) -> Result<
        (
            crate::transport::RemoteProcess,
            Box<dyn AsyncRead + Send + Unpin>,
        ),
        StepError,
    > {
        let mut proc = match self.session.exec(script, user).await {
            Ok(p) => p,
            Err(e) => {
                self.record(step, shown, user, None, t);
                return Err(e.into());
            }
        };
        let stdout = std::mem::replace(&mut proc.stdout, Box::new(tokio::io::empty()));
        Ok((proc, stdout))
    }

    /// After a command's stdout has been read (`copied`: what reading it gave): stop the command
    /// if the read stalled, else wait for its exit; record it. A stall, a read error or a
    /// non-zero exit is the step's error.
    async fn finish_read<T>(
        &mut self,
        step: &str,
        shown: &str,
        user: Option<&str>,
        t: Instant,
        proc: crate::transport::RemoteProcess,
        copied: std::io::Result<T>,
    ) -> Result<T, StepError> {
        if let Err(e) = &copied
            && e.kind() == std::io::ErrorKind::TimedOut
        {
            // Stalled: stop it rather than wait for an exit that may never come.
            drop(proc);
            self.record(step, shown, user, None, t);
            return Err(StepError::new(FailureKind::Timeout, e.to_string()));
        }
        let exit = match proc.wait().await {
            Ok(e) => e,
            Err(e) => {
                self.record(step, shown, user, None, t);
                return Err(e.into());
            }
        };
        self.record(step, shown, user, Some(&exit), t);
        let value = copied.map_err(|e| {
            StepError::new(FailureKind::ConnectionLost, format!("reading output: {e}"))
        })?;
        if !exit.success() {
            return Err(StepError::command(&exit));
        }
        Ok(value)
    }

    /// Run `script` and keep its whole stdout in a spool file on this machine, not as an entry:
    /// for output too large to capture that lsbackup parses itself (a listing split into several
    /// entries). The command must exit 0. Returns the spool, rewound, and its size.
    pub async fn run_spooled(
        &mut self,
        step: &str,
        script: &Script,
        user: Option<&str>,
        shown: Option<&str>,
    ) -> Result<(std::fs::File, u64), StepError> {
        let t = Instant::now();
        let shown = shown
            .map(str::to_string)
            .unwrap_or_else(|| script.to_shell());
        let dir = self.ctx.sink.spool_dir().to_path_buf();
        let mut spool = tokio::fs::File::from_std(
            tempfile::tempfile_in(&dir)
                .map_err(|e| StepError::local(format!("spool file in {}: {e}", dir.display())))?,
        );
        let (proc, stdout) = self.start(step, script, user, &shown, t).await?;
        // kept on this machine, not an entry: not a stream into the archive
        let mut counted = self.counting(stdout);
        counted.streamed = None;
        let watched = Idle::new(counted, self.ctx.transport.idle_timeout);
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, watched);
        let copied = tokio::io::copy_buf(&mut reader, &mut spool).await;
        drop(reader);
        let size = self
            .finish_read(step, &shown, user, t, proc, copied)
            .await?;
        spool
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| StepError::local(format!("spool: {e}")))?;
        Ok((spool.into_std().await, size))
    }

    /// Copy remote paths (files or directories, literal: no glob) into
    /// `<component>/<host>/<path>` (see `copy.rs`). Returns the number of entries added; paths
    /// that do not exist are noted unless `optional`, and nothing at all found is an error
    /// unless `optional`.
    pub async fn copy(
        &mut self,
        step: &str,
        paths: &[String],
        optional: bool,
    ) -> Result<usize, StepError> {
        let patterns: Vec<String> = paths
            .iter()
            .map(|p| crate::components::template::glob_escape(p))
            .collect();
        super::copy::copy(self, step, &patterns, paths, optional, None).await
    }

    /// Copy glob patterns (values already glob-escaped by the template renderer) with a
    /// `become_user`: spec steps.
    pub(crate) async fn copy_patterns(
        &mut self,
        step: &str,
        patterns: &[String],
        shown_each: &[String],
        optional: bool,
        user: Option<&str>,
    ) -> Result<usize, StepError> {
        super::copy::copy(self, step, patterns, shown_each, optional, user).await
    }
}

pub(crate) fn host_report(h: &PlannedHost, role: &str, status: Status) -> HostReport {
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
        entries: Default::default(),
        flags: vec![],
        errors: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_strips_control_characters() {
        assert_eq!(clean_text("a\x1b[31mred\x1b[0m"), "a?[31mred?[0m");
        assert_eq!(clean_text("x\ty\r\nz"), "x y?\nz");
        assert_eq!(clean_text("ok \u{202e}txt.exe"), "ok ?txt.exe");
    }

    #[test]
    fn exit_text_is_one_clean_line() {
        let e = ExitInfo {
            code: Some(2),
            signal: None,
            stderr_tail: "first\n\x1b]0;title\x07last line\nlsbackup-note: x\n".into(),
        };
        assert_eq!(exit_text(&e), "exit status 2: ?]0;title?last line");
        let e = ExitInfo {
            code: Some(127),
            signal: None,
            stderr_tail: String::new(),
        };
        assert_eq!(
            StepError::command(&e).kind,
            FailureKind::MissingTool,
            "exit 127 is a missing tool"
        );
    }
}
