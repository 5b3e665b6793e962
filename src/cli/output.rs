//! What the CLI draws: progress bars on a terminal, log lines otherwise, the summary table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use lsbackup::archive::Status;
use lsbackup::engine::{Outcome, Progress};
use lsbackup::inventory::Inventory;

use super::LogFormat;

/// Progress bars per component × host on a terminal; log lines otherwise.
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<(String, String), ProgressBar>>,
}

pub fn make_progress(enabled: bool) -> (Arc<Bars>, Option<MultiProgress>) {
    let multi = enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    (
        Arc::new(Bars {
            multi: multi.clone(),
            bars: Mutex::new(HashMap::new()),
        }),
        multi,
    )
}

impl Bars {
    pub fn clear(&self) {
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
}

impl Progress for Bars {
    fn started(&self, component: &str, host: &str) {
        let Some(m) = &self.multi else {
            return;
        };
        let pb = m.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:<28} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed:>4} {wide_msg}",
            )
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
            None => tracing::info!(component, host, "step: {step}"),
        }
    }

    fn bytes(&self, component: &str, host: &str, n: u64) {
        if let Some(pb) = self.bar(component, host) {
            pb.inc(n);
        }
    }

    fn finished(&self, component: &str, host: &str, status: Status, error: Option<&str>) {
        let text = match (status, error) {
            (Status::Ok, _) => "done".to_string(),
            (s, Some(e)) => format!("{}: {e}", status_word(s)),
            (s, None) => status_word(s).to_string(),
        };
        match self.bar(component, host) {
            Some(pb) => pb.finish_with_message(text),
            None => tracing::info!(component, host, "finished: {text}"),
        }
    }

    fn message(&self, text: &str) {
        tracing::warn!("{text}");
    }
}

/// Log writer that keeps progress bars intact.
#[derive(Clone)]
struct BarWriter(Option<MultiProgress>);

impl std::io::Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf))?,
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
    let ansi = bars;
    let _ = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(ansi)
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

fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The table printed at the end of a backup.
pub fn summary(o: &Outcome) -> String {
    let m = &o.manifest;
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:<10} {:<10} {:>8} {:>11}  versions",
        "COMPONENT", "HOST", "STATUS", "ENTRIES", "SIZE"
    );
    let mut errors = Vec::new();
    for c in &m.components {
        errors.extend(c.errors.iter().cloned());
        for h in &c.hosts {
            if h.status == Status::Skipped && h.errors.is_empty() {
                continue;
            }
            let size: u64 = h.entries.iter().map(|e| e.size).sum();
            let versions: Vec<String> =
                h.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                out,
                "{:<18} {:<10} {:<10} {:>8} {:>11}  {}",
                c.name,
                h.host,
                if h.status == Status::Skipped {
                    h.role.clone()
                } else {
                    status_word(h.status).to_string()
                },
                h.entries.len(),
                human(size),
                ellipsize(&versions.join(", "), 60)
            );
            errors.extend(h.errors.iter().cloned());
            for f in &h.flags {
                let _ = writeln!(out, "{:<18} {:<10} note: {f}", "", "");
            }
        }
        if c.hosts.iter().all(|h| h.status == Status::Skipped) {
            let _ = writeln!(
                out,
                "{:<18} {:<10} {:<10}",
                c.name,
                "-",
                status_word(c.status)
            );
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(out, "\nerrors:");
        errors.dedup();
        for e in errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    let _ = writeln!(out);
    match (&o.location, m.status) {
        (Some(loc), Status::Ok) => {
            let _ = writeln!(out, "backup complete: {loc}");
        }
        (Some(loc), _) => {
            let _ = writeln!(
                out,
                "backup PARTIAL: {loc} (holds what succeeded; failures are in its manifest)"
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "backup FAILED: nothing usable was backed up; no archive written"
            );
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
    if r.is_ok() {
        let _ = writeln!(
            out,
            "{p}: ok ({} entries, {} bytes checked against the manifest; backup status {:?})",
            r.entries, r.bytes, r.manifest.status
        );
    } else {
        let _ = writeln!(out, "{p}: FAILED ({n} problems)");
    }
    out
}
