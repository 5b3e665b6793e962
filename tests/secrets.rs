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

/// What `lsbackup plan -b BUILD [--json]` printed, stdout then stderr.
fn plan_output(build: &std::path::Path, json: bool) -> String {
    let mut cmd = Command::new(support::bin());
    cmd.arg("plan").arg("-b").arg(build);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
        let text = plan_output(build.path(), json);
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

/// Secrets that are not component variables: object-store credentials from the environment
/// (an S3 secret key, an Azure connection string with its AccountKey), passwords in URLs and
/// connection strings in inventory vars, Ansible's own password variables. A backup to each
/// store with `--report` and `--metrics-file`, in both log formats at -vv, and `plan` and
/// `list`: none of the values in any output. A URL with credentials is refused by name, unshown.
#[test]
fn secrets_from_env_urls_and_connection_strings_stay_out_of_every_output() {
    let tb = common::testbed();
    let pid = std::process::id();
    let url_secret = |n: &str| format!("UrlPw{n}x{pid}");
    let inventory_secrets = [
        (
            "prometheus_url",
            format!("http://admin:{}@127.0.0.1:9090", url_secret("p")),
        ),
        (
            "grafana_url",
            format!("http://admin:{}@127.0.0.1:3000", url_secret("g")),
        ),
        (
            "elasticsearch_url",
            format!("https://elastic:{}@127.0.0.1:9200", url_secret("e")),
        ),
        ("ansible_password", format!("SshPw{pid}")),
        ("ansible_become_password", format!("BecomePw{pid}")),
    ];
    // what must never be seen: each password (not the URL around it)
    let mut needles: Vec<(String, String, String)> = inventory_secrets
        .iter()
        .map(|(n, v)| {
            let pw = if let Some(rest) = v.split_once("://") {
                rest.1
                    .split_once('@')
                    .unwrap()
                    .0
                    .split_once(':')
                    .unwrap()
                    .1
                    .to_string()
            } else {
                v.clone()
            };
            ("inventory".to_string(), n.to_string(), pw)
        })
        .collect();
    let s3_secret = tb.var("LSB_S3_SECRET_ACCESS_KEY").to_string();
    let azure_cs = tb.var("LSB_AZURE_CONNECTION_STRING").to_string();
    let azure_key = azure_cs
        .split(';')
        .find_map(|p| p.strip_prefix("AccountKey="))
        .unwrap()
        .to_string();
    needles.push((
        "env".into(),
        "AWS_SECRET_ACCESS_KEY".into(),
        s3_secret.clone(),
    ));
    needles.push((
        "env".into(),
        "AZURE_STORAGE_CONNECTION_STRING".into(),
        azure_key.clone(),
    ));

    let build = tempfile::tempdir().unwrap();
    std::fs::copy(tb.inventory(), build.path().join("inventory")).unwrap();
    std::fs::create_dir(build.path().join("group_vars")).unwrap();
    let yml: String = inventory_secrets
        .iter()
        .map(|(n, v)| format!("{n}: \"{v}\"\n"))
        .collect();
    std::fs::write(build.path().join("group_vars/all.yml"), yml).unwrap();

    // plan: the URL variables are refused by name
    for json in [false, true] {
        let text = plan_output(build.path(), json);
        assert_clean("plan", &text, &needles);
        if !json {
            assert!(
                text.contains(
                    "variable prometheus_url (from group_vars/all.yml): holds credentials in a URL"
                ),
                "{text}"
            );
        }
    }

    let work = tempfile::tempdir().unwrap();
    let targets = [
        (
            format!("s3://{}/secrets-{pid}", tb.var("LSB_S3_BUCKET")),
            vec![
                (
                    "AWS_ACCESS_KEY_ID",
                    tb.var("LSB_S3_ACCESS_KEY_ID").to_string(),
                ),
                ("AWS_SECRET_ACCESS_KEY", s3_secret.clone()),
            ],
            vec![
                format!("aws_endpoint_url={}", tb.var("LSB_S3_ENDPOINT")),
                format!("aws_region={}", tb.var("LSB_S3_REGION")),
            ],
        ),
        (
            format!("az://{}/secrets-{pid}", tb.var("LSB_AZURE_CONTAINER")),
            vec![("AZURE_STORAGE_CONNECTION_STRING", azure_cs.clone())],
            vec![],
        ),
    ];
    for (i, (url, env, settings)) in targets.iter().enumerate() {
        for log in ["text", "json"] {
            let report = work.path().join(format!("report-{log}.json"));
            let metrics = work.path().join(format!("metrics-{log}.prom"));
            let mut cmd = Command::new(support::bin());
            cmd.args(["--log-format", log, "-vv", "backup", "--progress", "never"])
                .arg("-b")
                .arg(build.path())
                .arg("-t")
                .arg(url)
                .arg("--known-hosts")
                .arg(tb.known_hosts())
                .arg("--no-agent")
                .args(["--only", "prometheus,haproxy,grafana"])
                .arg("--report")
                .arg(&report)
                .arg("--metrics-file")
                .arg(&metrics)
                .env("HOME", work.path());
            for s in settings {
                cmd.arg("--target-setting").arg(s);
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            // haproxy is backed up; the components whose URL holds a password are refused
            assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
            assert_clean(&format!("the {log} log to {url}"), &stderr, &needles);
            assert_clean("stdout", &String::from_utf8_lossy(&out.stdout), &needles);
            let report_text = std::fs::read_to_string(&report).unwrap();
            assert!(
                report_text.contains("holds credentials in a URL"),
                "{report_text}"
            );
            assert_clean("the report", &report_text, &needles);
            assert_clean(
                "the metrics",
                &std::fs::read_to_string(&metrics).unwrap(),
                &needles,
            );
            // the manifest, read back from the store
            let archive = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let dir = work.path().join(format!("x-{log}-{i}"));
            let mut x = Command::new(support::bin());
            x.arg("extract").arg(&archive).arg(&dir);
            for s in settings {
                x.arg("--target-setting").arg(s);
            }
            for (k, v) in env {
                x.env(k, v);
            }
            let xo = x.output().unwrap();
            assert!(
                xo.status.success(),
                "{}",
                String::from_utf8_lossy(&xo.stderr)
            );
            let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
            assert!(manifest.contains("holds credentials in a URL"));
            assert_clean("the manifest", &manifest, &needles);
        }
        // list reads every manifest of the prefix
        let mut cmd = Command::new(support::bin());
        cmd.args(["list", "-t", url, "-vv"]);
        for s in settings {
            cmd.arg("--target-setting").arg(s);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(
            "list",
            &format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            &needles,
        );
    }
}
