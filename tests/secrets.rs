//! No secret on any command line, in any log format, in `plan` or in the manifest.
//!
//! Every declared variable of every built-in component whose name marks it as a secret
//! (`password`, `token`, `secret`, ... : `components::is_secret_var`) is set to a value of its
//! own, and a whole backup of the test bed runs while `ps -eo args` is sampled every few
//! milliseconds on the machine (the test bed's hosts are this machine, so that is every host's
//! process table). None of the values may appear in a sample, the text or JSON logs, the plan
//! (text and JSON) or the manifest. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lsbackup::components::{Catalog, is_secret_var};

/// `(component, variable, value)` for every secret variable of the built-in components.
fn secrets() -> Vec<(String, String, String)> {
    let catalog = Catalog::load(None).unwrap();
    let mut v = Vec::new();
    for c in &catalog.components {
        for name in c.vars.keys().filter(|n| is_secret_var(n)) {
            let value = format!("Lsb-{}-{}-Zq9", name.replace('_', ""), std::process::id());
            v.push((c.name.clone(), name.clone(), value));
        }
    }
    v
}

/// A copy of the test bed's build dir whose `group_vars/all.yml` sets every secret: where
/// LambdaStack inventories keep them (a value given with `--set` would be on lsbackup's own
/// command line, which is why lsbackup warns about it).
fn build_dir_with(secrets: &[(String, String, String)]) -> tempfile::TempDir {
    let tb = common::testbed();
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(tb.inventory(), d.path().join("inventory")).unwrap();
    std::fs::create_dir(d.path().join("group_vars")).unwrap();
    let yml: String = secrets
        .iter()
        .map(|(_, n, v)| format!("{n}: \"{v}\"\n"))
        .collect();
    std::fs::write(d.path().join("group_vars/all.yml"), yml).unwrap();
    d
}

/// Samples `ps -eo args` until stopped; returns every line that held one of `needles`.
fn sample_ps(
    needles: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut found = Vec::new();
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new("ps").args(["-eo", "args"]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                if needles.iter().any(|n| line.contains(n.as_str())) {
                    found.push(line.to_string());
                }
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        (samples, found)
    })
}

fn assert_clean(what: &str, text: &str, secrets: &[(String, String, String)]) {
    for (c, n, v) in secrets {
        assert!(
            !text.contains(v.as_str()),
            "{c}.{n} appears in {what}:\n{}",
            text.lines()
                .filter(|l| l.contains(v.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn secrets_never_appear_on_command_lines_logs_plan_or_manifest() {
    let tb = common::testbed();
    let secrets = secrets();
    // The built-in components that speak authenticated APIs declare credentials.
    let with_creds: std::collections::BTreeSet<&str> =
        secrets.iter().map(|(c, _, _)| c.as_str()).collect();
    for c in [
        "elasticsearch",
        "kibana",
        "grafana",
        "prometheus",
        "alertmanager",
    ] {
        assert!(
            with_creds.contains(c),
            "{c} declares no credential variable: {with_creds:?}"
        );
    }
    let build = build_dir_with(&secrets);

    // plan, text and JSON
    let mut placeholders = 0;
    for json in [false, true] {
        let mut cmd = Command::new(support::bin());
        cmd.arg("plan").arg("-b").arg(build.path());
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        placeholders += text.matches("********").count();
        assert_clean(if json { "plan --json" } else { "plan" }, &text, &secrets);
    }

    assert!(placeholders > 0, "plan shows placeholders for the secrets");

    // A secret given with --set is on lsbackup's own command line: said so.
    let (c, n, v) = &secrets[0];
    let out = Command::new(support::bin())
        .arg("plan")
        .arg("-b")
        .arg(tb.build_dir())
        .arg("--set")
        .arg(format!("{c}.{n}={v}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "--set {c}.{n}=... puts a secret on lsbackup's command line"
        )),
        "{stderr}"
    );
    assert_clean("the warning", &stderr, &secrets);

    // backups, text log at -vv and JSON log, with ps sampled throughout
    let needles: Vec<String> = secrets.iter().map(|(_, _, v)| v.clone()).collect();
    for log in [
        ["--log-format", "text", "-vv"],
        ["--log-format", "json", "-vv"],
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_ps(needles.clone(), stop.clone());
        let run = support::backup(build.path(), &log);
        stop.store(true, Ordering::Relaxed);
        let (samples, found) = sampler.join().unwrap();
        assert!(samples > 20, "only {samples} ps samples during the run");
        assert!(
            found.is_empty(),
            "secrets on command lines:\n{}",
            found.join("\n")
        );
        assert!(run.archive.is_some(), "an archive: {}", run.stderr());
        assert_clean(&format!("the {} log", log[1]), &run.stderr(), &secrets);
        assert_clean("stdout", &run.stdout(), &secrets);
        let manifest = serde_json::to_string_pretty(run.manifest()).unwrap();
        assert_clean("the manifest", &manifest, &secrets);
    }
}
