//! What a scheduled backup leaves for its operators: `--report FILE` (one JSON document about the
//! run) and `--metrics-file FILE` (Prometheus textfile-collector metrics, for the cluster's own
//! Prometheus to alert on missed or failed backups). Both are written atomically (a temporary
//! file in the same directory, fsynced, renamed).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lsbackup::archive::{Failure, Manifest, Status};
use lsbackup::engine::Progress;
use serde::Serialize;

/// (component, host) -> when it started, how long it took once finished.
type Times = HashMap<(String, String), (Instant, Option<Duration>)>;

/// A [`Progress`] that also times each component on each host, passing everything on.
pub struct Timing {
    inner: Arc<dyn Progress>,
    times: Mutex<Times>,
}

impl Timing {
    pub fn new(inner: Arc<dyn Progress>) -> Timing {
        Timing {
            inner,
            times: Mutex::new(HashMap::new()),
        }
    }

    /// How long the component ran on the host (0 when it never started there).
    pub fn duration(&self, component: &str, host: &str) -> Duration {
        let times = self.times.lock().unwrap();
        match times.get(&(component.to_string(), host.to_string())) {
            Some((_, Some(d))) => *d,
            Some((start, None)) => start.elapsed(),
            None => Duration::ZERO,
        }
    }
}

impl Progress for Timing {
    fn planned(&self, components: usize) {
        self.inner.planned(components);
    }
    fn component_done(&self, component: &str, status: Status) {
        self.inner.component_done(component, status);
    }
    fn started(&self, component: &str, host: &str) {
        self.times.lock().unwrap().insert(
            (component.to_string(), host.to_string()),
            (Instant::now(), None),
        );
        self.inner.started(component, host);
    }
    fn step(&self, component: &str, host: &str, step: &str) {
        self.inner.step(component, host, step);
    }
    fn bytes(&self, component: &str, host: &str, n: u64) {
        self.inner.bytes(component, host, n);
    }
    fn finished(&self, component: &str, host: &str, status: Status, errors: &[Failure]) {
        if let Some(t) = self
            .times
            .lock()
            .unwrap()
            .get_mut(&(component.to_string(), host.to_string()))
        {
            t.1 = Some(t.0.elapsed());
        }
        self.inner.finished(component, host, status, errors);
    }
    fn message(&self, text: &str) {
        self.inner.message(text);
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// ok, partial, failed, interrupted
    pub status: String,
    pub exit_code: i32,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub target: String,
    pub archive: Option<ArchiveInfo>,
    pub components: Vec<ComponentInfo>,
    /// Why the run stopped before it could back anything up (a full disk, a held lock, a bad
    /// inventory): the line lsbackup printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ArchiveInfo {
    pub name: String,
    pub location: String,
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct ComponentInfo {
    pub name: String,
    pub status: String,
    /// The longest of its hosts (hosts run at the same time).
    pub duration_seconds: f64,
    pub bytes: u64,
    pub entries: usize,
    pub hosts: Vec<HostInfo>,
    pub failures: Vec<FailureInfo>,
}

#[derive(Debug, Serialize)]
pub struct HostInfo {
    pub host: String,
    pub status: String,
    pub duration_seconds: f64,
    pub bytes: u64,
    pub entries: usize,
    pub failures: Vec<FailureInfo>,
}

#[derive(Debug, Serialize)]
pub struct FailureInfo {
    pub kind: String,
    pub step: Option<String>,
    pub cause: String,
}

fn status_name(s: Status) -> String {
    format!("{s:?}").to_lowercase()
}

fn failure(f: &Failure) -> FailureInfo {
    FailureInfo {
        kind: serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", f.kind)),
        step: f.step.clone(),
        cause: f.message.clone(),
    }
}

/// The report of a run that produced a manifest.
pub fn build(
    manifest: &Manifest,
    location: Option<&str>,
    archive_size: u64,
    target: &str,
    exit_code: i32,
    timing: &Timing,
) -> Report {
    let components = manifest
        .components
        .iter()
        .map(|c| {
            let hosts: Vec<HostInfo> = c
                .hosts
                .iter()
                .map(|h| HostInfo {
                    host: h.host.clone(),
                    status: status_name(h.status),
                    duration_seconds: timing.duration(&c.name, &h.host).as_secs_f64(),
                    bytes: h.entries.total_size(),
                    entries: h.entries.len(),
                    failures: h.errors.iter().map(failure).collect(),
                })
                .collect();
            ComponentInfo {
                name: c.name.clone(),
                status: status_name(c.status),
                duration_seconds: hosts.iter().map(|h| h.duration_seconds).fold(0.0, f64::max),
                bytes: hosts.iter().map(|h| h.bytes).sum(),
                entries: hosts.iter().map(|h| h.entries).sum(),
                hosts,
                failures: c.errors.iter().map(failure).collect(),
            }
        })
        .collect();
    let duration = match (
        manifest.started_at.parse::<jiff::Timestamp>(),
        manifest.finished_at.parse::<jiff::Timestamp>(),
    ) {
        (Ok(a), Ok(b)) => (b - a).total(jiff::Unit::Second).unwrap_or(0.0),
        _ => 0.0,
    };
    Report {
        status: match (exit_code, manifest.status) {
            (0, _) => "ok".into(),
            (2, _) => "partial".into(),
            _ => "failed".into(),
        },
        exit_code,
        started_at: manifest.started_at.clone(),
        finished_at: manifest.finished_at.clone(),
        duration_seconds: duration,
        target: target.to_string(),
        archive: location.map(|l| ArchiveInfo {
            name: manifest.archive_name.clone(),
            location: l.to_string(),
            size: archive_size,
        }),
        components,
        error: None,
    }
}

/// The report of a run that ended without a manifest (interrupted).
pub fn interrupted(target: &str, exit_code: i32, started: jiff::Timestamp) -> Report {
    without_manifest("interrupted", target, exit_code, started, None)
}

/// The report of a run that stopped on an error before it had a manifest (a full disk, a held
/// lock, a bad inventory): `error` is the line printed.
pub fn failed(target: &str, exit_code: i32, started: jiff::Timestamp, error: String) -> Report {
    without_manifest("failed", target, exit_code, started, Some(error))
}

fn without_manifest(
    status: &str,
    target: &str,
    exit_code: i32,
    started: jiff::Timestamp,
    error: Option<String>,
) -> Report {
    let now = jiff::Timestamp::now();
    Report {
        status: status.into(),
        exit_code,
        started_at: started.to_string(),
        finished_at: now.to_string(),
        duration_seconds: (now - started).total(jiff::Unit::Second).unwrap_or(0.0),
        target: target.to_string(),
        archive: None,
        components: Vec::new(),
        error,
    }
}

/// Write `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// A label value in the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `lsbackup_last_success_timestamp_seconds` of an earlier metrics file, kept when this run did
/// not succeed.
pub fn previous_success(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with("lsbackup_last_success_timestamp_seconds"))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Prometheus textfile-collector metrics of a run.
pub fn metrics(report: &Report, now: jiff::Timestamp, previous: Option<&str>) -> String {
    let t = label(&report.target);
    let now_s = now.as_millisecond() as f64 / 1000.0;
    let success = if report.exit_code == 0 {
        Some(now_s)
    } else {
        previous.and_then(previous_success)
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    };
    let tl = format!("target=\"{t}\"");
    gauge(
        "lsbackup_last_run_timestamp_seconds",
        "When the last backup run ended (Unix time).",
        vec![(tl.clone(), now_s)],
    );
    gauge(
        "lsbackup_last_run_exit_code",
        "Exit code of the last run: 0 ok, 2 partial, 1 failed, 130/143/129 interrupted.",
        vec![(tl.clone(), f64::from(report.exit_code))],
    );
    if let Some(s) = success {
        gauge(
            "lsbackup_last_success_timestamp_seconds",
            "When the last run that backed up everything ended (Unix time).",
            vec![(tl.clone(), s)],
        );
    }
    gauge(
        "lsbackup_last_run_duration_seconds",
        "How long the last run took.",
        vec![(tl.clone(), report.duration_seconds)],
    );
    gauge(
        "lsbackup_last_run_archive_bytes",
        "Size of the archive the last run wrote (0: none).",
        vec![(
            tl.clone(),
            report.archive.as_ref().map_or(0.0, |a| a.size as f64),
        )],
    );
    let per = |f: &dyn Fn(&ComponentInfo) -> f64| -> Vec<(String, f64)> {
        report
            .components
            .iter()
            .map(|c| (format!("{tl},component=\"{}\"", label(&c.name)), f(c)))
            .collect()
    };
    let ok = per(&|c| if c.status == "ok" { 1.0 } else { 0.0 });
    let dur = per(&|c| c.duration_seconds);
    let bytes = per(&|c| c.bytes as f64);
    let fails = per(&|c| {
        (c.failures.len() + c.hosts.iter().map(|h| h.failures.len()).sum::<usize>()) as f64
    });
    gauge(
        "lsbackup_component_ok",
        "1 when the component was backed up completely in the last run.",
        ok,
    );
    gauge(
        "lsbackup_component_duration_seconds",
        "How long the component took in the last run (its slowest host).",
        dur,
    );
    gauge(
        "lsbackup_component_bytes",
        "Bytes of the component's entries in the last run (before compression).",
        bytes,
    );
    gauge(
        "lsbackup_component_failures",
        "Failures of the component in the last run.",
        fails,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(exit_code: i32) -> Report {
        Report {
            status: "ok".into(),
            exit_code,
            started_at: "2026-12-06T01:00:00Z".into(),
            finished_at: "2026-12-06T01:01:00Z".into(),
            duration_seconds: 60.0,
            target: "s3://b/\"p\"".into(),
            archive: None,
            error: None,
            components: vec![ComponentInfo {
                name: "postgresql".into(),
                status: "partial".into(),
                duration_seconds: 12.5,
                bytes: 1024,
                entries: 3,
                hosts: vec![],
                failures: vec![FailureInfo {
                    kind: "command".into(),
                    step: None,
                    cause: "x".into(),
                }],
            }],
        }
    }

    #[test]
    fn metrics_keep_the_last_success_across_failed_runs() {
        let now: jiff::Timestamp = "2026-12-06T02:00:00Z".parse().unwrap();
        let ok = metrics(&report(0), now, None);
        assert!(
            ok.contains(
                "lsbackup_last_success_timestamp_seconds{target=\"s3://b/\\\"p\\\"\"} 1796522400\n"
            ),
            "{ok}"
        );
        assert!(ok.contains("lsbackup_component_failures{target=\"s3://b/\\\"p\\\"\",component=\"postgresql\"} 1\n"), "{ok}");
        assert!(
            ok.contains(
                "lsbackup_component_ok{target=\"s3://b/\\\"p\\\"\",component=\"postgresql\"} 0\n"
            ),
            "{ok}"
        );
        let later: jiff::Timestamp = "2026-12-07T02:00:00Z".parse().unwrap();
        let failed = metrics(&report(2), later, Some(&ok));
        assert!(
            failed.contains(
                "lsbackup_last_success_timestamp_seconds{target=\"s3://b/\\\"p\\\"\"} 1796522400\n"
            ),
            "{failed}"
        );
        assert!(
            failed.contains("lsbackup_last_run_exit_code{target=\"s3://b/\\\"p\\\"\"} 2\n"),
            "{failed}"
        );
        // no earlier success known: no such line (absent, so `absent()` alerts fire)
        assert!(!metrics(&report(1), later, None).contains("lsbackup_last_success"));
    }
}
