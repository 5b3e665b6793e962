//! `--report FILE` and `--metrics-file FILE` of a backup on the test bed: the JSON report's
//! fields, the metrics checked by the real `promtool check metrics`, the last success carried
//! over a failed run. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::process::Command;

fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        panic!("promtool (Debian's prometheus package) is needed by this test");
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn report_and_metrics_of_a_good_then_a_partial_run() {
    let tb = common::testbed();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let metrics = dir.path().join("lsbackup.prom");
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "haproxy,alertmanager",
            "--report",
            report.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["status"], "ok");
    assert_eq!(r["exit_code"], 0);
    let archive = run.archive.as_ref().unwrap();
    assert_eq!(
        r["archive"]["size"].as_u64().unwrap(),
        std::fs::metadata(archive).unwrap().len()
    );
    assert_eq!(
        r["archive"]["name"].as_str().unwrap(),
        archive.file_name().unwrap().to_str().unwrap()
    );
    let comps = r["components"].as_array().unwrap();
    assert_eq!(comps.len(), 2);
    let h = &comps.iter().find(|c| c["name"] == "haproxy").unwrap()["hosts"][0];
    assert_eq!(h["host"], "node3");
    assert_eq!(h["status"], "ok");
    assert!(h["bytes"].as_u64().unwrap() > 1000, "{h}");
    assert!(h["entries"].as_u64().unwrap() >= 9, "{h}");
    assert!(h["duration_seconds"].as_f64().unwrap() > 0.0, "{h}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&report).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let m1 = std::fs::read_to_string(&metrics).unwrap();
    promtool_check(&m1);
    let success = value(&m1, "lsbackup_last_success_timestamp_seconds").expect("last success");
    assert_eq!(value(&m1, "lsbackup_last_run_exit_code"), Some(0.0));
    assert!(m1.contains("lsbackup_component_ok{target=\""), "{m1}");

    // A partial run (PostgreSQL on a port nothing listens on): the last success stays.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "haproxy,postgresql",
            "--set",
            "postgresql.postgresql_port=1",
            "--report",
            report.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["status"], "partial");
    assert_eq!(r["exit_code"], 2);
    let pg = r["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "postgresql")
        .unwrap()
        .clone();
    let failures: Vec<&serde_json::Value> = pg["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["failures"].as_array().unwrap())
        .chain(pg["failures"].as_array().unwrap())
        .collect();
    assert!(!failures.is_empty(), "{pg}");
    assert!(
        failures
            .iter()
            .all(|f| f["kind"].is_string() && f["cause"].is_string())
    );
    let m2 = std::fs::read_to_string(&metrics).unwrap();
    promtool_check(&m2);
    assert_eq!(
        value(&m2, "lsbackup_last_success_timestamp_seconds"),
        Some(success)
    );
    assert_eq!(value(&m2, "lsbackup_last_run_exit_code"), Some(2.0));
    assert!(value(&m2, "lsbackup_last_run_timestamp_seconds").unwrap() > success);
    assert!(
        m2.lines()
            .any(|l| l.starts_with("lsbackup_component_failures{")
                && l.contains("component=\"postgresql\"")
                && !l.ends_with(" 0")),
        "{m2}"
    );
}

/// A run that stops on an error before backing anything up (here another live run's lock on
/// the target) still writes the report and the metrics: failed, exit 1, the error line; the last
/// success stays.
#[test]
fn report_and_metrics_of_a_run_stopped_by_an_error() {
    let tb = common::testbed();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let metrics = dir.path().join("lsbackup.prom");
    let args = [
        "--only",
        "haproxy",
        "--report",
        report.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    let target = tempfile::tempdir().unwrap();
    let ok = support::backup_command(&tb.build_dir(), target.path())
        .args(args)
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let success = value(
        &std::fs::read_to_string(&metrics).unwrap(),
        "lsbackup_last_success_timestamp_seconds",
    )
    .unwrap();
    // a live holder: this test's own process, on this machine
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lock = serde_json::json!({
        "user": "someone", "host": host.trim(), "pid": std::process::id(),
        "started": jiff::Timestamp::now().to_string(), "command": "backup",
    });
    std::fs::write(target.path().join("lsbackup.lock"), lock.to_string()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = support::backup_command(&tb.build_dir(), target.path())
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["exit_code"], 1);
    let e = r["error"].as_str().unwrap();
    assert!(
        err.contains(e),
        "the report's error is the line printed: {e} / {err}"
    );
    assert!(e.contains("lsbackup.lock"), "{e}");
    let m = std::fs::read_to_string(&metrics).unwrap();
    promtool_check(&m);
    assert_eq!(value(&m, "lsbackup_last_run_exit_code"), Some(1.0));
    assert_eq!(
        value(&m, "lsbackup_last_success_timestamp_seconds"),
        Some(success)
    );
    assert!(value(&m, "lsbackup_last_run_timestamp_seconds").unwrap() > success);
}

/// A scheduled `backup` whose options clap refuses (a mistyped flag after an upgrade) is a failed
/// run in the report and the metrics too, not a run that never happened; another command with
/// the same mistake writes nothing.
#[test]
fn report_and_metrics_of_a_run_with_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let metrics = dir.path().join("lsbackup.prom");
    let out = std::process::Command::new(support::bin())
        .args(["backup", "-b", "/nonexistent", "-t", "/var/backups/x"])
        .arg("--report")
        .arg(&report)
        .arg(format!("--metrics-file={}", metrics.display()))
        .arg("--no-such-option")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unexpected argument '--no-such-option'"),
        "{err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["exit_code"], 1);
    assert_eq!(r["target"], "/var/backups/x");
    assert_eq!(
        r["error"],
        "invalid arguments: unexpected argument '--no-such-option' found"
    );
    let m = std::fs::read_to_string(&metrics).unwrap();
    promtool_check(&m);
    assert_eq!(value(&m, "lsbackup_last_run_exit_code"), Some(1.0));

    let other = dir.path().join("other.json");
    let out = std::process::Command::new(support::bin())
        .args(["verify", "x.tar.zst", "--report"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!other.exists());
}
