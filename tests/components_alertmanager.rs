//! The `alertmanager` component against the real Alertmanager 0.25 of the test bed (Debian
//! `prometheus-alertmanager`, /etc/prometheus/alertmanager.yml and templates in
//! /etc/prometheus/alertmanager_templates, tests/testbed/svc_monitoring.sh), which runs on the
//! `prometheus` host (node3) as LambdaStack deploys it. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lsbackup::archive::Status;

/// The archive entry of an absolute host path backed up from `node`.
fn entry(node: &str, path: &Path) -> String {
    format!(
        "alertmanager/{node}/{}",
        path.display().to_string().trim_start_matches('/')
    )
}

fn assert_same_file(run: &support::Run, node: &str, path: &Path) {
    let got = run.read(&entry(node, path));
    let want = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got == want,
        "{} differs from the archived copy",
        path.display()
    );
}

fn templates(tb: &common::TestBed) -> Vec<PathBuf> {
    let dir = Path::new(tb.var("LSB_ALERTMANAGER_TEMPLATES"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tmpl"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no templates in {}", dir.display());
    v
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A silence created through the real API for the duration of a test, expired on drop.
struct Silence {
    url: String,
    id: String,
    comment: String,
}

impl Silence {
    fn create(url: &str) -> Silence {
        let now = jiff::Timestamp::now();
        let comment = format!("lsbackup test {}", now.as_nanosecond());
        let body = serde_json::json!({
            "matchers": [{"name": "alertname", "value": "LsbackupTest", "isRegex": false, "isEqual": true}],
            "startsAt": now.to_string(),
            "endsAt": (now + jiff::SignedDuration::from_secs(3600)).to_string(),
            "createdBy": "lsbackup tests",
            "comment": comment,
        });
        let out = curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
            &format!("{url}/api/v2/silences"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = v["silenceID"].as_str().expect("silenceID").to_string();
        Silence {
            url: url.to_string(),
            id,
            comment,
        }
    }
}

impl Drop for Silence {
    fn drop(&mut self) {
        let _ = Command::new("curl")
            .args(["-fsS", "--max-time", "10", "-X", "DELETE"])
            .arg(format!("{}/api/v2/silence/{}", self.url, self.id))
            .output();
    }
}

/// A build dir whose inventory is the test bed's plus `extra` (e.g. an `[alertmanager]` group).
fn build_dir_with(extra: &str) -> tempfile::TempDir {
    let tb = common::testbed();
    let inv = std::fs::read_to_string(tb.inventory()).unwrap();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("inventory"), format!("{extra}\n{inv}")).unwrap();
    d
}

#[test]
fn spec_is_native_and_declares_what_it_needs() {
    let catalog = lsbackup::components::Catalog::load(None).unwrap();
    let spec = catalog.get("alertmanager").unwrap();
    assert!(spec.native.is_some(), "written in Rust");
    assert!(spec.steps.is_empty());
    assert_eq!(spec.groups, ["alertmanager", "prometheus"]);
    assert!(spec.requires.is_empty(), "no curl: {:?}", spec.requires);
    assert_eq!(
        spec.vars["alertmanager_config_file"],
        "/etc/prometheus/alertmanager.yml"
    );
    assert_eq!(spec.vars["alertmanager_url"], "http://localhost:9093");
    assert_eq!(spec.vars["alertmanager_tls_verify"], "true");
    for v in [
        "alertmanager_ca_cert",
        "alertmanager_client_cert",
        "alertmanager_client_key",
        "alertmanager_user",
        "alertmanager_password",
    ] {
        assert_eq!(spec.vars[v], "", "{v}");
    }
    assert!(lsbackup::components::is_secret_var("alertmanager_password"));
    assert_eq!(spec.select_name().as_deref(), Some("alertmanager host"));
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("components/alertmanager.yaml")
            .exists()
    );
}

#[test]
fn plan_shows_the_selection_and_api_calls() {
    let tb = common::testbed();
    let out = common::lsbackup()
        .arg("plan")
        .arg("-b")
        .arg(tb.build_dir())
        .args(["--only", "alertmanager"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    for want in [
        "runs on: first reachable host that is alertmanager host",
        "select alertmanager host: ",
        "running config: GET http://localhost:9093/api/v2/status -> status.json",
        "silences: GET http://localhost:9093/api/v2/silences -> silences.json [optional]",
        "files: ",
        "config: copy ",
    ] {
        assert!(text.contains(want), "plan lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("curl"), "{text}");
}

#[test]
fn config_templates_running_config_and_silences_on_the_prometheus_host() {
    let tb = common::testbed();
    let url = tb.var("LSB_ALERTMANAGER_URL");
    let config = PathBuf::from(tb.var("LSB_ALERTMANAGER_CONFIG"));
    let silence = Silence::create(url);

    // the default alertmanager_url (http://localhost:9093), as LambdaStack deploys it
    let run = support::backup(&tb.build_dir(), &["--only", "alertmanager"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("alertmanager");
    assert_eq!(c.status, Status::Ok, "{:?}", c.errors);
    assert_eq!(
        c.groups,
        ["prometheus"],
        "no alertmanager group in the test bed"
    );
    let h = c.hosts.iter().find(|h| h.status == Status::Ok).unwrap();
    assert_eq!(h.host, "node3");
    assert_eq!(h.role, "first reachable alertmanager host");
    assert_eq!(h.versions["alertmanager"], "0.25.0", "{:?}", h.versions);
    // The API is called by lsbackup through the SSH connection: no curl (or sed, awk, python)
    // on the host; the calls are in the manifest.
    let commands: Vec<&str> = h.commands.iter().map(|c| c.command.as_str()).collect();
    for tool in ["curl", "sed ", "awk", "python", "wget"] {
        assert!(
            commands.iter().all(|c| !c.contains(tool)),
            "{tool} ran: {commands:#?}"
        );
    }
    for call in [
        "GET http://localhost:9093/api/v2/status",
        "GET http://localhost:9093/api/v2/silences",
    ] {
        assert!(
            commands.contains(&call),
            "{call} not recorded: {commands:#?}"
        );
    }

    // The config file and every template: byte-identical.
    assert_same_file(&run, "node3", &config);
    for t in templates(tb) {
        assert_same_file(&run, "node3", &t);
    }
    // Only Alertmanager's files: Prometheus's config belongs to the prometheus component.
    let prom_cfg = config.parent().unwrap().join("prometheus.yml");
    assert!(!run.file(&entry("node3", &prom_cfg)).exists());

    // The running config as the server reports it, and the version.
    let status: serde_json::Value =
        serde_json::from_slice(&run.read("alertmanager/node3/status.json")).unwrap();
    let original = status["config"]["original"]
        .as_str()
        .expect("config.original");
    assert!(original.contains("receiver: operations"), "{original}");
    assert!(
        original.contains("alertmanager_templates/*.tmpl"),
        "{original}"
    );
    assert_eq!(status["versionInfo"]["version"], "0.25.0");

    // The silence created before the backup is in the export.
    let silences: serde_json::Value =
        serde_json::from_slice(&run.read("alertmanager/node3/silences.json")).unwrap();
    let found = silences
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == silence.id.as_str())
        .unwrap_or_else(|| panic!("silence {} not in the export: {silences}", silence.id));
    assert_eq!(found["comment"], silence.comment.as_str());
    assert_eq!(found["matchers"][0]["value"], "LsbackupTest");
}

/// Any local user can start a program named `alertmanager` with `--config.file` of their
/// choosing: it must never decide which files lsbackup reads as root. Such a process (user
/// nobody, naming a config that references a file of its own) is noted and ignored.
#[test]
fn a_lookalike_alertmanager_of_another_user_is_ignored() {
    let tb = common::testbed();
    let config = PathBuf::from(tb.var("LSB_ALERTMANAGER_CONFIG"));
    let evil = tempfile::tempdir().unwrap();
    let evil_cfg = evil.path().join("am.yml");
    std::fs::write(
        &evil_cfg,
        "templates: [/etc/lsb-lookalike/*.tmpl, mine.tmpl]\nroute: {receiver: x}\nreceivers: [{name: x}]\n",
    )
    .unwrap();
    std::fs::write(evil.path().join("mine.tmpl"), "x").unwrap();
    let arg = format!("--config.file={}", evil_cfg.display());
    let lookalike = support::UnprivilegedProcess::spawn_exe("alertmanager", evil.path(), &[&arg]);

    let run = support::backup(&tb.build_dir(), &["--only", "alertmanager"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let h = run
        .component("alertmanager")
        .hosts
        .iter()
        .find(|h| h.host == "node3")
        .unwrap();
    lookalike.assert_noted_as_ignored(&h.flags, "prometheus");
    assert_same_file(&run, "node3", &config);
    let evil_entry = entry("node3", evil.path());
    assert!(
        h.entries.iter().all(|e| !e.path.starts_with(&evil_entry)),
        "{:?}",
        h.entries
    );
    drop(lookalike);
}

#[test]
fn its_own_group_comes_first() {
    let tb = common::testbed();
    let node2 = tb.host_of("node2");
    let build = build_dir_with(&format!("[alertmanager]\nnode2 ansible_host={node2}\n"));
    let run = support::backup(build.path(), &["--only", "alertmanager"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("alertmanager");
    assert_eq!(c.groups, ["alertmanager", "prometheus"]);
    let ran: Vec<&str> = c
        .hosts
        .iter()
        .filter(|h| h.status == Status::Ok)
        .map(|h| h.host.as_str())
        .collect();
    assert_eq!(ran, ["node2"]);
    let skipped = c.hosts.iter().find(|h| h.host == "node3").unwrap();
    assert_eq!(skipped.status, Status::Skipped);
    assert_same_file(&run, "node2", Path::new(tb.var("LSB_ALERTMANAGER_CONFIG")));
}

#[test]
fn api_down_is_a_clear_error_and_the_files_and_other_components_are_kept() {
    let tb = common::testbed();
    // a port where nothing listens
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let set = format!("alertmanager.alertmanager_url=http://127.0.0.1:{port}");
    let run = support::backup(
        &tb.build_dir(),
        &["--only", "alertmanager,postgresql", "--set", &set],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let pg = run.component("postgresql");
    assert_eq!(pg.status, Status::Ok, "{:?}", pg.errors);
    assert!(run.file("postgresql/node1/globals.sql").is_file());

    let c = run.component("alertmanager");
    assert_eq!(c.status, Status::Partial, "{:?}", c.errors);
    let h = c.hosts.iter().find(|h| h.host == "node3").unwrap();
    assert_eq!(h.errors.len(), 1, "{:?}", h.errors);
    let e = &h.errors[0].message;
    assert!(!e.contains('\n'), "{e:?}");
    assert!(
        e.starts_with("node3: alertmanager: running config: ")
            && e.contains(&format!(
                "Alertmanager API at http://127.0.0.1:{port} did not answer"
            )),
        "{e}"
    );
    assert!(
        run.stderr().contains("did not answer"),
        "stderr:\n{}",
        run.stderr()
    );
    // the silences export is optional: a note, not a second error
    assert!(
        h.flags.iter().any(|f| f.contains("silences")),
        "{:?}",
        h.flags
    );

    // config and templates come from the running process's command line and the file itself
    assert_same_file(&run, "node3", Path::new(tb.var("LSB_ALERTMANAGER_CONFIG")));
    for t in templates(tb) {
        assert_same_file(&run, "node3", &t);
    }
}
