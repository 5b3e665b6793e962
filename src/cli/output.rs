//! What the CLI draws: progress bars on a terminal, log lines otherwise, the summary table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use lsbackup::archive::{Failure, FailureKind, Status};
use lsbackup::engine::{Outcome, Progress};
use lsbackup::inventory::Inventory;

use super::LogFormat;

/// Progress bars per component × host on a terminal, under one line for the whole run; log
/// lines otherwise (one per step done and per component × host finished, each with `component`,
/// `host`, `step`, `duration_seconds` and `bytes` as fields).
pub struct Bars {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: Mutex<HashMap<(String, String), ProgressBar>>,
    units: Mutex<HashMap<(String, String), Unit>>,
    count: Mutex<Count>,
}

/// What a log line needs of a component × host: when it and its step began, bytes so far.
struct Unit {
    started: Instant,
    bytes: u64,
    step: Option<(String, Instant, u64)>,
}

impl Unit {
    /// The step running, ended now: (name, seconds, bytes during it).
    fn end_step(&mut self) -> Option<(String, f64, u64)> {
        self.step
            .take()
            .map(|(name, t, at)| (name, t.elapsed().as_secs_f64(), self.bytes - at))
    }
}

#[derive(Default)]
struct Count {
    planned: usize,
    done: usize,
    failed: usize,
}

impl Count {
    fn text(&self) -> String {
        let mut t = format!("{}/{} components", self.done, self.planned);
        if self.failed > 0 {
            let _ = write!(t, ", {} failed", self.failed);
        }
        t
    }
}

pub fn make_progress(enabled: bool) -> (Arc<Bars>, Option<MultiProgress>) {
    let multi = enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    // The whole run, first: components done of all, bytes, elapsed, rate.
    let overall = multi.as_ref().map(|m| {
        let pb = m.add(ProgressBar::new_spinner());
        let template = if term_width() >= 100 {
            "{spinner:.cyan} {prefix:<28.bold} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed:>4} {wide_msg}"
        } else {
            "{spinner:.cyan} {prefix:<14.bold} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed:>4} {wide_msg}"
        };
        pb.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_prefix("all");
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    (
        Arc::new(Bars {
            multi: multi.clone(),
            overall,
            bars: Mutex::new(HashMap::new()),
            units: Mutex::new(HashMap::new()),
            count: Mutex::new(Count::default()),
        }),
        multi,
    )
}

impl Bars {
    pub fn clear(&self) {
        // A bar still ticking would draw them all again after the summary.
        if let Some(pb) = &self.overall {
            pb.finish_and_clear();
        }
        for pb in self.bars.lock().unwrap().values() {
            if !pb.is_finished() {
                pb.finish_and_clear();
            }
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    fn bar(&self, component: &str, host: &str) -> Option<ProgressBar> {
        self.bars
            .lock()
            .unwrap()
            .get(&(component.to_string(), host.to_string()))
            .cloned()
    }

    fn update_overall(&self) {
        if let Some(pb) = &self.overall {
            pb.set_message(self.count.lock().unwrap().text());
        }
    }

    /// Logs the step `component` × `host` was in as done (not on a terminal).
    fn log_step_done(component: &str, host: &str, unit: &mut Unit) {
        if let Some((step, secs, bytes)) = unit.end_step() {
            tracing::info!(
                component,
                host,
                step = step.as_str(),
                duration_seconds = round_ms(secs),
                bytes,
                "step done"
            );
        }
    }
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

impl Progress for Bars {
    fn planned(&self, components: usize) {
        self.count.lock().unwrap().planned = components;
        self.update_overall();
    }

    fn component_done(&self, _component: &str, status: Status) {
        {
            let mut c = self.count.lock().unwrap();
            c.done += 1;
            if matches!(status, Status::Failed | Status::Partial) {
                c.failed += 1;
            }
        }
        self.update_overall();
    }

    fn started(&self, component: &str, host: &str) {
        self.units.lock().unwrap().insert(
            (component.to_string(), host.to_string()),
            Unit {
                started: Instant::now(),
                bytes: 0,
                step: None,
            },
        );
        let Some(m) = &self.multi else {
            return;
        };
        let pb = m.add(ProgressBar::new_spinner());
        // Below 100 columns the rate goes, so the step (or the cause of a failure) stays legible.
        let template = if term_width() >= 100 {
            "{spinner:.cyan} {prefix:<28} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed:>4} {wide_msg}"
        } else {
            "{spinner:.cyan} {prefix:<26} {bytes:>10} {elapsed:>4} {wide_msg}"
        };
        pb.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_prefix(format!("{component} @ {host}"));
        pb.enable_steady_tick(Duration::from_millis(120));
        self.bars
            .lock()
            .unwrap()
            .insert((component.to_string(), host.to_string()), pb);
    }

    fn step(&self, component: &str, host: &str, step: &str) {
        match self.bar(component, host) {
            Some(pb) => pb.set_message(step.to_string()),
            None => {
                let mut units = self.units.lock().unwrap();
                if let Some(u) = units.get_mut(&(component.to_string(), host.to_string())) {
                    Self::log_step_done(component, host, u);
                    u.step = Some((step.to_string(), Instant::now(), u.bytes));
                }
                tracing::debug!(component, host, step, "step started");
            }
        }
    }

    fn bytes(&self, component: &str, host: &str, n: u64) {
        if let Some(u) = self
            .units
            .lock()
            .unwrap()
            .get_mut(&(component.to_string(), host.to_string()))
        {
            u.bytes += n;
        }
        if let Some(pb) = &self.overall {
            pb.inc(n);
        }
        if let Some(pb) = self.bar(component, host) {
            pb.inc(n);
        }
    }

    fn finished(&self, component: &str, host: &str, status: Status, errors: &[Failure]) {
        let unit = self
            .units
            .lock()
            .unwrap()
            .remove(&(component.to_string(), host.to_string()));
        match self.bar(component, host) {
            // On a terminal the bar says how it ended, in one line; the summary lists every
            // failure in full, grouped by cause.
            Some(pb) => {
                let text = match (
                    status,
                    errors.iter().find(|f| f.kind != FailureKind::Skipped),
                ) {
                    (Status::Ok, _) => "done".to_string(),
                    // "exit status 1: why" -> "why": the width goes to the reason
                    (s, Some(f)) => format!(
                        "{}: {}",
                        status_word(s),
                        without_exit_status(cause_of(f, component, host))
                    ),
                    (s, None) => status_word(s).to_string(),
                };
                pb.finish_with_message(text);
            }
            // In a log each failure is one line, once.
            None => {
                let mut unit = unit;
                if let Some(u) = unit.as_mut() {
                    Self::log_step_done(component, host, u);
                }
                for f in errors {
                    tracing::error!(
                        component,
                        host,
                        step = f.step.as_deref().unwrap_or(""),
                        kind = f.kind.label(),
                        "{}",
                        f.message
                    );
                }
                let (secs, bytes) = unit.map_or((0.0, 0), |u| {
                    (round_ms(u.started.elapsed().as_secs_f64()), u.bytes)
                });
                tracing::info!(
                    component,
                    host,
                    status = status_word(status),
                    duration_seconds = secs,
                    bytes,
                    "finished: {}",
                    status_word(status)
                );
            }
        }
    }

    fn message(&self, text: &str) {
        tracing::warn!("{text}");
    }
}

/// Log writer that keeps progress bars intact; on a terminal each line is cut to its width
/// (the summary shows every failure in full).
#[derive(Clone)]
struct BarWriter(Option<MultiProgress>);

impl std::io::Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(m) => {
                let width = term_width();
                let text = String::from_utf8_lossy(buf);
                let mut out = String::with_capacity(buf.len());
                for line in text.split_inclusive('\n') {
                    let (body, nl) = match line.strip_suffix('\n') {
                        Some(b) => (b, "\n"),
                        None => (line, ""),
                    };
                    out.push_str(&console::truncate_str(body, width, "…"));
                    out.push_str(nl);
                }
                m.suspend(|| std::io::stderr().write_all(out.as_bytes()))?
            }
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn init_logging(
    format: LogFormat,
    verbose: u8,
    quiet: bool,
    bars: bool,
    multi: Option<MultiProgress>,
) {
    use tracing_subscriber::EnvFilter;
    let level = if quiet {
        "error"
    } else {
        match (verbose, bars) {
            (0, true) => "warn",
            (0, false) | (1, _) => "info",
            _ => "debug",
        }
    };
    let filter = EnvFilter::try_from_env("LSBACKUP_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("lsbackup={level},warn")));
    let writer = move || BarWriter(multi.clone());
    let _ = match (format, bars) {
        (LogFormat::Json, _) => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_current_span(false)
            .try_init(),
        // At a terminal: `WARN message`, no timestamp, cut to the width (BarWriter).
        (LogFormat::Text, true) => tracing_subscriber::fmt()
            .compact()
            .without_time()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(true)
            .with_target(false)
            .try_init(),
        // In a log file or journal: timestamps, fields as key=value.
        (LogFormat::Text, false) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false)
            .try_init(),
    };
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Partial => "PARTIAL",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
    }
}

fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max - 1).collect();
    format!("{cut}…")
}

pub(crate) fn human(n: u64) -> String {
    lsbackup::human_bytes(n)
}

/// Width of the terminal on stderr (100 when it is not one).
pub fn term_width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map(|(_, w)| w as usize)
        .filter(|w| *w >= 40)
        .unwrap_or(100)
}

/// One line of restore's report: as is, or on a terminal folded to its width under its own
/// indentation (continuation lines 4 columns further in).
pub(crate) fn report_line(line: &str, width: Option<usize>) -> String {
    let line = printable(line);
    match width {
        None => format!("{line}\n"),
        Some(w) => {
            let body = line.trim_start_matches(' ');
            let lead = " ".repeat(line.len() - body.len());
            wrap(body, w, &lead, &format!("{lead}    "))
        }
    }
}

/// `cause` without a leading `exit status N: `.
fn without_exit_status(cause: &str) -> &str {
    cause
        .strip_prefix("exit status ")
        .and_then(|r| r.split_once(": "))
        .filter(|(code, _)| code.bytes().all(|b| b.is_ascii_digit()))
        .map_or(cause, |(_, why)| why)
}

/// A failure's cause: its message without the `HOST: COMPONENT: STEP: ` it starts with.
fn cause_of<'a>(f: &'a Failure, component: &str, host: &str) -> &'a str {
    let mut m = f.message.as_str();
    for prefix in [host, component] {
        if let Some(rest) = m.strip_prefix(prefix).and_then(|r| r.strip_prefix(": ")) {
            m = rest;
        }
    }
    if let Some(step) = &f.step
        && let Some(rest) = m
            .strip_prefix(step.as_str())
            .and_then(|r| r.strip_prefix(": "))
    {
        m = rest;
    }
    m
}

/// `text` in lines of at most `width` columns, the first starting with `first`, the others with
/// `indent` (a word longer than a line gets a line of its own).
pub(crate) fn wrap(text: &str, width: usize, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut fresh = true;
    for word in text.split_whitespace() {
        let w = console::measure_text_width(word);
        if !fresh && console::measure_text_width(&line) + 1 + w > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        line.push_str(word);
        fresh = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Failures grouped by cause: one group per (kind, cause), naming every component, host and
/// step it hit; failures of kind `skipped` are counted under the failure of the same component
/// and host that caused them.
struct Cause {
    kind: FailureKind,
    cause: String,
    /// (component, step) -> hosts
    hit: Vec<((String, String), Vec<String>)>,
    skipped: usize,
}

fn group_failures(components: &[lsbackup::archive::ComponentReport]) -> Vec<Cause> {
    let mut all: Vec<(String, String, &Failure)> = Vec::new();
    for c in components {
        for f in &c.errors {
            all.push((c.name.clone(), String::new(), f));
        }
        for h in &c.hosts {
            for f in &h.errors {
                all.push((c.name.clone(), h.host.clone(), f));
            }
        }
    }
    let mut groups: Vec<Cause> = Vec::new();
    let (skipped, real): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(_, _, f)| f.kind == FailureKind::Skipped);
    for (comp, host, f) in real {
        let cause = cause_of(f, &comp, &host).to_string();
        let step = f.step.clone().unwrap_or_default();
        let i = match groups
            .iter()
            .position(|g| g.kind == f.kind && g.cause == cause)
        {
            Some(i) => i,
            None => {
                groups.push(Cause {
                    kind: f.kind,
                    cause,
                    hit: vec![],
                    skipped: 0,
                });
                groups.len() - 1
            }
        };
        let key = (comp, step);
        let g = &mut groups[i];
        match g.hit.iter_mut().find(|(k, _)| *k == key) {
            Some((_, hosts)) => {
                if !host.is_empty() && !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            None => g
                .hit
                .push((key, if host.is_empty() { vec![] } else { vec![host] })),
        }
    }
    for (comp, host, f) in skipped {
        let owner = groups.iter_mut().find(|g| {
            g.hit
                .iter()
                .any(|((c, _), hosts)| *c == comp && (host.is_empty() || hosts.contains(&host)))
        });
        match owner {
            Some(g) => g.skipped += 1,
            None => groups.push(Cause {
                kind: f.kind,
                cause: cause_of(f, &comp, &host).to_string(),
                hit: vec![((comp, f.step.clone().unwrap_or_default()), vec![host])],
                skipped: 0,
            }),
        }
    }
    groups
}

/// The table printed at the end of a backup, fitted to `width` columns.
pub fn summary(o: &Outcome, width: usize) -> String {
    let m = &o.manifest;
    let mut out = String::new();
    let _ = writeln!(out);
    // COMPONENT HOST STATUS ENTRIES SIZE: 18+1+10+1+8+1+7+1+10 = 57 columns; versions get the rest
    // on a wide terminal only (they are in the manifest, and in `-v` logs).
    let fixed = 57;
    let vw = if width >= 120 {
        width.saturating_sub(fixed + 2)
    } else {
        0
    };
    let head = format!(
        "{:<18} {:<10} {:<8} {:>7} {:>10}",
        "COMPONENT", "HOST", "STATUS", "ENTRIES", "SIZE"
    );
    let _ = writeln!(out, "{head}{}", if vw >= 12 { "  VERSIONS" } else { "" });
    let mut notes = Vec::new();
    for c in &m.components {
        for h in &c.hosts {
            if h.status == Status::Skipped && h.errors.is_empty() {
                continue;
            }
            let size: u64 = h.entries.total_size();
            let versions: Vec<String> =
                h.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let status = if h.status == Status::Skipped {
                "skipped".to_string()
            } else {
                status_word(h.status).to_string()
            };
            let row = format!(
                "{:<18} {:<10} {:<8} {:>7} {:>10}",
                ellipsize(&c.name, 18),
                ellipsize(&h.host, 10),
                status,
                h.entries.len(),
                human(size),
            );
            if vw >= 12 && !versions.is_empty() {
                let _ = writeln!(out, "{row}  {}", ellipsize(&versions.join(", "), vw));
            } else {
                let _ = writeln!(out, "{row}");
            }
            for f in &h.flags {
                notes.push(format!("{} @ {}: {f}", c.name, h.host));
            }
        }
        if c.hosts.iter().all(|h| h.status == Status::Skipped) {
            let _ = writeln!(
                out,
                "{:<18} {:<10} {:<8}",
                ellipsize(&c.name, 18),
                "-",
                status_word(c.status)
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in notes {
            out.push_str(&wrap(&n, width, "  ", "      "));
        }
    }
    let groups = group_failures(&m.components);
    if !groups.is_empty() {
        let failures: usize = groups
            .iter()
            .map(|g| g.hit.iter().map(|(_, h)| h.len().max(1)).sum::<usize>() + g.skipped)
            .sum();
        let _ = writeln!(
            out,
            "\nerrors: {} {} ({failures} {}):",
            groups.len(),
            if groups.len() == 1 { "cause" } else { "causes" },
            if failures == 1 { "failure" } else { "failures" },
        );
        for g in &groups {
            out.push_str(&wrap(
                &format!("{} [{}]", g.cause, g.kind.label()),
                width,
                "  ",
                "    ",
            ));
            let mut by_hosts: Vec<(String, Vec<String>)> = Vec::new();
            for ((comp, step), hosts) in &g.hit {
                let what = if step.is_empty() {
                    comp.clone()
                } else {
                    format!("{comp} ({step})")
                };
                let at = hosts.join(", ");
                match by_hosts.iter_mut().find(|(h, _)| *h == at) {
                    Some((_, w)) => w.push(what),
                    None => by_hosts.push((at, vec![what])),
                }
            }
            for (at, what) in by_hosts {
                let line = if at.is_empty() {
                    what.join(", ")
                } else {
                    format!("{} @ {at}", what.join(", "))
                };
                out.push_str(&wrap(&line, width, "      ", "        "));
            }
            if g.skipped > 0 {
                let _ = writeln!(
                    out,
                    "      + {} {} skipped because of it",
                    g.skipped,
                    if g.skipped == 1 { "step" } else { "steps" }
                );
            }
        }
    }
    // the whole run on one line
    let hosts: std::collections::BTreeSet<&str> = m
        .components
        .iter()
        .flat_map(|c| c.hosts.iter())
        .filter(|h| !h.entries.is_empty())
        .map(|h| h.host.as_str())
        .collect();
    let entries: usize = m
        .components
        .iter()
        .flat_map(|c| c.hosts.iter())
        .map(|h| h.entries.len())
        .sum();
    let bytes: u64 = m
        .components
        .iter()
        .flat_map(|c| c.hosts.iter())
        .map(|h| h.entries.total_size())
        .sum();
    let secs = match (
        m.started_at.parse::<jiff::Timestamp>(),
        m.finished_at.parse::<jiff::Timestamp>(),
    ) {
        (Ok(a), Ok(b)) => (b - a).total(jiff::Unit::Second).unwrap_or(0.0),
        _ => 0.0,
    };
    let n_ok = m
        .components
        .iter()
        .filter(|c| c.status == Status::Ok)
        .count();
    let _ = writeln!(out);
    out.push_str(&wrap(
        &format!(
            "{n_ok} of {} components ok on {} {}: {} {}, {} read, archive {}, {:.0} s ({}/s)",
            m.components.len(),
            hosts.len(),
            if hosts.len() == 1 { "host" } else { "hosts" },
            entries,
            if entries == 1 { "entry" } else { "entries" },
            human(bytes),
            human(o.stats.written),
            secs,
            human((bytes as f64 / secs.max(0.001)) as u64),
        ),
        width,
        "",
        "  ",
    ));
    match (&o.location, m.status) {
        (Some(loc), Status::Ok) => {
            let _ = writeln!(out, "backup complete: {loc}");
            out.push_str(&wrap(
                &format!("next: `lsbackup verify {loc}` checks it"),
                width,
                "",
                "  ",
            ));
        }
        (Some(loc), _) => {
            out.push_str(&wrap(
                &format!(
                    "backup PARTIAL: {loc} (holds what succeeded; failures are in its manifest). next: mend the causes under \"errors\" above and run it again"
                ),
                width,
                "",
                "  ",
            ));
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "backup FAILED: nothing usable was backed up; no archive written"
            );
            out.push_str(&wrap(
                "next: mend the causes under \"errors\" above and run it again; `lsbackup plan` shows what it will run",
                width,
                "",
                "  ",
            ));
        }
    }
    out
}

pub fn inventory_table(inv: &Inventory) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "inventory: {}", inv.source.display());
    let _ = writeln!(out, "\ngroups:");
    for g in inv.groups.keys() {
        let hosts: Vec<String> = inv.group_hosts(g).iter().map(|h| h.name.clone()).collect();
        let _ = writeln!(out, "  {:<28} {}", g, hosts.join(", "));
    }
    let _ = writeln!(out, "\nhosts:");
    for h in &inv.hosts {
        match inv.connection(&h.name) {
            Ok(c) => {
                let addr = if c.local {
                    "local".to_string()
                } else {
                    format!(
                        "{}@{}:{}",
                        c.user.clone().unwrap_or_else(|| "(local user)".into()),
                        c.address,
                        c.port
                    )
                };
                let mut extra = Vec::new();
                if let Some(k) = &c.key_file {
                    extra.push(format!("key {}", k.display()));
                }
                if c.become_ {
                    extra.push(format!("become {}", c.become_user));
                }
                if let Some(j) = &c.ssh.proxy_jump {
                    extra.push(format!("via {j}"));
                }
                let _ = writeln!(out, "  {:<16} {:<32} {}", h.name, addr, extra.join(", "));
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<16} error: {e}", h.name);
            }
        }
    }
    out
}

pub fn verify_text(path: &Path, r: &lsbackup::archive::VerifyReport) -> String {
    let mut out = String::new();
    let p = path.display();
    let mut n = 0;
    for m in &r.missing {
        n += 1;
        let _ = writeln!(out, "{p}: missing from the archive: {m}");
    }
    for m in &r.extra {
        n += 1;
        let _ = writeln!(out, "{p}: not in the manifest: {m}");
    }
    for m in &r.mismatches {
        n += 1;
        let _ = writeln!(out, "{p}: {m}");
    }
    for m in &r.problems {
        n += 1;
        let _ = writeln!(out, "{p}: {m}");
    }
    for m in &r.unverified {
        let _ = writeln!(out, "{p}: recorded as failed, not checked: {m}");
    }
    for m in &r.notes {
        let _ = writeln!(out, "{p}: note: {m}");
    }
    if r.is_ok() {
        let whole = match &r.sidecar {
            Some(s) => format!("; the file's sha256 {} matches {s}", r.stored.sha256),
            None if p.to_string().ends_with(".age") => {
                "; every byte authenticated by age".to_string()
            }
            None if !r.notes.is_empty() => String::new(),
            None => format!(
                "; no sidecar beside it, so bytes outside entries were not compared (file sha256 {})",
                r.stored.sha256
            ),
        };
        let _ = writeln!(
            out,
            "{p}: ok ({} entries, {} bytes checked against the manifest{whole}; backup status {:?})",
            r.entries, r.bytes, r.manifest.status
        );
    } else {
        let _ = writeln!(out, "{p}: FAILED ({n} problems)");
    }
    out
}

/// One archive found by `lsbackup list`, with its manifest when it could be read.
pub struct Listed {
    pub entry: lsbackup::target::Listed,
    pub manifest: Option<lsbackup::archive::Manifest>,
    /// `sidecar` or `archive`: where the manifest was read.
    pub source: Option<&'static str>,
    /// Why the manifest could not be read.
    pub problem: Option<String>,
}

fn utc(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| secs.to_string())
}

/// `component@host` for every host of every component, with the status when not ok.
fn parts(m: &lsbackup::archive::Manifest) -> Vec<String> {
    let mut v = Vec::new();
    for c in &m.components {
        for h in &c.hosts {
            match h.status {
                Status::Ok => v.push(format!("{}@{}", c.name, h.host)),
                s => v.push(format!("{}@{} ({})", c.name, h.host, status_word(s))),
            }
        }
        if c.hosts.is_empty() {
            v.push(format!("{} ({})", c.name, status_word(c.status)));
        }
    }
    v
}

/// `s` with control characters (an object name in a bucket others write to may carry terminal
/// escape sequences) shown escaped instead of sent to the terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub fn list_text(target: &str, rows: &[Listed], width: usize) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        let _ = writeln!(out, "no backups in {target}");
        return out;
    }
    let width = width.clamp(60, 160);
    let name_w = rows
        .iter()
        .map(|r| printable(&r.entry.name).chars().count())
        .max()
        .unwrap_or(0);
    for r in rows {
        let e = &r.entry;
        let state = match (&r.manifest, e.encrypted) {
            (Some(m), true) => format!("{}, encrypted", status_word(m.status)),
            (None, true) => "encrypted".to_string(),
            (Some(m), false) => status_word(m.status).to_string(),
            (None, _) => "manifest unreadable".to_string(),
        };
        let _ = writeln!(
            out,
            "{:name_w$}  {}  {:>9}  {state}",
            printable(&e.name),
            utc(e.time),
            human(e.size)
        );
        if let Some(m) = &r.manifest {
            out.push_str(&wrap(
                &printable(&parts(m).join(", ")),
                width,
                "    ",
                "    ",
            ));
        }
        if let Some(p) = &r.problem {
            out.push_str(&wrap(&printable(p), width, "    ", "    "));
        }
    }
    let _ = writeln!(out, "{} backup(s) in {target} (times in UTC)", rows.len());
    out
}

pub fn list_json(rows: &[Listed]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            let e = &r.entry;
            let mut v = serde_json::json!({
                "name": e.name,
                "time": jiff::Timestamp::from_second(e.time).map(|t| t.to_string()).unwrap_or_default(),
                "size": e.size,
                "format": e.format,
                "encrypted": e.encrypted,
                "manifest": r.source,
            });
            if let Some(m) = &r.manifest {
                v["status"] = serde_json::to_value(m.status).unwrap_or_default();
                v["components"] = m
                    .components
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "name": c.name,
                            "status": c.status,
                            "hosts": c.hosts.iter().map(|h| serde_json::json!({"host": h.host, "status": h.status})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
            }
            if let Some(p) = &r.problem {
                v["error"] = p.clone().into();
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lsbackup::archive::ComponentReport;

    fn component(name: &str, hosts: serde_json::Value) -> ComponentReport {
        serde_json::from_value(serde_json::json!({
            "name": name, "description": "", "groups": [], "status": "partial",
            "hosts": hosts,
        }))
        .unwrap()
    }

    fn host(name: &str, errors: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"host": name, "address": "x", "role": "all", "status": "failed",
            "errors": errors})
    }

    #[test]
    fn failures_are_grouped_by_cause_with_skipped_steps_counted_under_it() {
        let cause = "no kubeconfig /x on this node";
        let f = |h: &str, step: &str, kind: &str, c: &str| serde_json::json!({"kind": kind, "step": step, "message": format!("{h}: kv: {step}: {c}")});
        let comps = vec![
            component(
                "kv",
                serde_json::json!([
                    host(
                        "n1",
                        serde_json::json!([
                            f("n1", "list", "config", cause),
                            f("n1", "copy", "skipped", "list failed")
                        ])
                    ),
                    host("n2", serde_json::json!([f("n2", "list", "config", cause)])),
                ]),
            ),
            component(
                "kafka",
                serde_json::json!([host(
                    "n9",
                    serde_json::json!([
                    {"kind": "connection", "message": "n9: cannot connect to 127.0.0.9:22: refused"}])
                )]),
            ),
            component(
                "zk",
                serde_json::json!([host(
                    "n9",
                    serde_json::json!([
                    {"kind": "connection", "message": "n9: cannot connect to 127.0.0.9:22: refused"}])
                )]),
            ),
        ];
        let g = group_failures(&comps);
        assert_eq!(g.len(), 2, "two causes");
        assert_eq!(g[0].cause, cause);
        assert_eq!(
            g[0].hit,
            vec![(
                ("kv".into(), "list".into()),
                vec!["n1".to_string(), "n2".to_string()]
            )]
        );
        assert_eq!(g[0].skipped, 1);
        assert_eq!(g[1].cause, "cannot connect to 127.0.0.9:22: refused");
        assert_eq!(g[1].hit.len(), 2, "kafka and zk on n9");
    }

    #[test]
    fn wrapped_lines_fit_the_width() {
        let text = "exit status 1: no kubeconfig /nonexistent on this node: set kubernetes_volumes.kubeconfig to one that may list persistent volumes";
        let w = wrap(text, 40, "  ", "    ");
        assert!(w.lines().count() > 2);
        for l in w.lines() {
            assert!(console::measure_text_width(l) <= 40, "{l:?}");
        }
        assert_eq!(
            w.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn names_with_control_characters_are_escaped() {
        let rows = vec![Listed {
            entry: lsbackup::target::Listed {
                name: "lsbackup-x\u{1b}[2J\u{7}.tar.zst".into(),
                size: 10,
                time: 0,
                format: "tar.zst".into(),
                encrypted: true,
                sidecar: None,
            },
            manifest: None,
            source: None,
            problem: Some("bad\u{1b}]0;title\u{7}".into()),
        }];
        let text = list_text("s3://b/p", &rows, 80);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("lsbackup-x\\u{1b}[2J\\u{7}.tar.zst"),
            "{text}"
        );
    }
}
