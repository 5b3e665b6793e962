//! The `grafana` component against the test bed's Grafana STAND-IN
//! (tests/testbed/standins/grafana.py, started by tests/testbed/svc_standins.sh on node3 of the
//! `grafana` group): no reachable registry packages the Grafana server, so a small HTTP server
//! reading the real grafana.ini keeps its dashboards, datasources, users and API keys in a real
//! SQLite grafana.db and serves Grafana 9.5's API shapes. Needs `tests/testbed/up.sh`.
//!
//! The stand-in serves https (grafana.ini [server] protocol https, cert_file = its certificate and
//! the test bed's CA): the default path, where lsbackup sends the admin credentials only after
//! checking the certificate. The API is spoken by lsbackup through the SSH connection (no curl or
//! python on the host). The archived grafana.db is opened with the sqlite3 CLI (an independent
//! reader).

mod common;
mod support;

use support::{free_port, unique};

use std::path::Path;
use std::process::Command;

use lsbackup::archive::Status;

const NODE: &str = "node3";

fn backup(args: &[&str]) -> support::Run {
    support::backup(&common::testbed().build_dir(), args)
}

/// Call the stand-in's API as the admin (the test bed's password), returning the JSON answer.
fn api(method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let tb = common::testbed();
    let out = Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "10",
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
        ])
        .arg("--cacert")
        .arg(tb.var("LSB_GRAFANA_CA"))
        .arg("-u")
        .arg(format!(
            "{}:{}",
            tb.var("LSB_GRAFANA_USER"),
            tb.var("LSB_GRAFANA_PASSWORD")
        ))
        .arg("--data-binary")
        .arg(body.to_string())
        .arg(format!("{}{path}", tb.var("LSB_GRAFANA_URL")))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{method} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 CLI");
    assert!(
        out.status.success(),
        "sqlite3 {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn json(run: &support::Run, entry: &str) -> serde_json::Value {
    serde_json::from_slice(&run.read(entry)).unwrap_or_else(|e| panic!("{entry}: {e}"))
}

#[test]
fn standin_dashboards_datasources_and_database_come_back() {
    let tb = common::testbed();
    let uid = unique("t").replace('-', "");
    let title = unique("lsbackup test dashboard");
    let created = api(
        "POST",
        "/api/dashboards/db",
        &serde_json::json!({
            "folderUid": "lsbackup-folder",
            "overwrite": true,
            "dashboard": {
                "uid": uid,
                "title": title,
                "schemaVersion": 37,
                "panels": [
                    {"id": 1, "type": "timeseries", "title": "load", "targets": [{"refId": "A", "expr": "node_load1"}]},
                    {"id": 2, "type": "stat", "title": "up", "targets": [{"refId": "A", "expr": "up"}]},
                    {"id": 3, "type": "table", "title": "disks", "targets": [{"refId": "A", "expr": "node_filesystem_avail_bytes"}]}
                ]
            }
        }),
    );
    assert_eq!(created["status"], "success");

    let run = backup(&["--only", "grafana"]);
    api(
        "DELETE",
        &format!("/api/dashboards/uid/{uid}"),
        &serde_json::json!({}),
    );
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("grafana")
    );
    let h = &run.component("grafana").hosts[0];
    assert_eq!(h.host, NODE);
    assert_eq!(h.status, Status::Ok);
    assert_eq!(h.versions.get("grafana").map(String::as_str), Some("9.5.2"));

    // each dashboard as its own readable JSON file, with its title, panels and folder
    let d = json(&run, &format!("grafana/{NODE}/api/dashboards/{uid}.json"));
    assert_eq!(d["dashboard"]["title"], title.as_str());
    assert_eq!(d["dashboard"]["panels"].as_array().map(Vec::len), Some(3));
    assert_eq!(d["dashboard"]["panels"][2]["title"], "disks");
    assert_eq!(d["meta"]["folderTitle"], "LambdaStack");
    let text =
        String::from_utf8(run.read(&format!("grafana/{NODE}/api/dashboards/{uid}.json"))).unwrap();
    assert!(text.lines().count() > 10, "not pretty-printed:\n{text}");
    for seeded in tb.var("LSB_GRAFANA_DASHBOARDS").split(',') {
        let s = json(
            &run,
            &format!("grafana/{NODE}/api/dashboards/{seeded}.json"),
        );
        assert!(
            !s["dashboard"]["panels"].as_array().unwrap().is_empty(),
            "{seeded}"
        );
    }
    let ds = json(&run, &format!("grafana/{NODE}/api/datasources.json"));
    let prom = ds
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "Prometheus")
        .expect("Prometheus datasource");
    assert_eq!(prom["type"], "prometheus");
    assert_eq!(prom["uid"], "lsbackup-prom");
    let folders = json(&run, &format!("grafana/{NODE}/api/folders.json"));
    assert!(
        folders
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["uid"] == "lsbackup-folder"),
        "{folders}"
    );

    // grafana.db: a consistent SQLite copy that holds the rows
    let db = run.file(&format!("grafana/{NODE}/grafana.db"));
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        sqlite(
            &db,
            &format!("SELECT title FROM dashboard WHERE uid = '{uid}'")
        ),
        title
    );
    assert_eq!(
        sqlite(&db, "SELECT url FROM data_source WHERE name = 'Prometheus'"),
        "http://127.0.0.1:9090"
    );
    assert_eq!(
        sqlite(&db, "SELECT login FROM user WHERE is_admin = 1"),
        tb.var("LSB_GRAFANA_USER")
    );

    // the rest of the data dir without the database; the config with its provisioning
    let data = tb.var("LSB_GRAFANA_DATA_DIR").trim_start_matches('/');
    assert!(
        run.file(&format!(
            "grafana/{NODE}/{data}/plugins/lsbackup-testbed-panel/plugin.json"
        ))
        .is_file()
    );
    assert!(
        !run.file(&format!("grafana/{NODE}/{data}/grafana.db"))
            .exists(),
        "raw grafana.db copied too"
    );
    let conf = tb.var("LSB_GRAFANA_CONF_DIR").trim_start_matches('/');
    assert!(
        run.file(&format!("grafana/{NODE}/{conf}/grafana.ini"))
            .is_file()
    );
    let prov = String::from_utf8(run.read(&format!(
        "grafana/{NODE}/{conf}/provisioning/datasources/datasource.yml"
    )))
    .unwrap();
    assert!(prov.contains("prometheus"), "{prov}");

    // the API was called by lsbackup itself, over https; nothing ran curl or python on the host
    let shown: Vec<&str> = h.commands.iter().map(|c| c.command.as_str()).collect();
    assert!(
        shown.contains(&"GET https://127.0.0.1:3000/api/datasources (credentials: admin_user/admin_password of /etc/grafana/grafana.ini)"),
        "{shown:#?}"
    );
    assert!(
        !shown
            .iter()
            .any(|c| c.contains("curl") || c.contains("python")),
        "{shown:#?}"
    );
    // the database was copied with sqlite3's online backup in a mktemp dir the cleanup removed
    let work = h
        .commands
        .iter()
        .find(|c| c.step == "remove work dir")
        .map(|c| c.command.clone())
        .expect("cleanup ran");
    let dir = work
        .split_whitespace()
        .find(|w| w.starts_with("/tmp/lsbackup-grafana."))
        .unwrap_or_else(|| panic!("{work}"));
    assert!(!Path::new(dir).exists(), "{dir} left on the host");
    assert!(
        shown.iter().any(|c| c.contains("sqlite3 -readonly")),
        "{shown:#?}"
    );

    // the admin password was read from grafana.ini by lsbackup, never put in a command
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(
        !manifest.contains(tb.var("LSB_GRAFANA_PASSWORD")),
        "password in the manifest"
    );
    assert!(
        !run.stderr().contains(tb.var("LSB_GRAFANA_PASSWORD")),
        "password in the output"
    );
}

#[test]
fn api_token_authentication() {
    let key = api(
        "POST",
        "/api/auth/keys",
        &serde_json::json!({"name": unique("lsbackup-test-key"), "role": "Admin"}),
    );
    let token = key["key"].as_str().unwrap().to_string();
    let set = format!("grafana.grafana_token={token}");
    // the CA given explicitly this time (default: grafana.ini [server] cert_file)
    let ca = format!(
        "grafana.grafana_ca_cert={}",
        common::testbed().var("LSB_GRAFANA_CA")
    );
    let run = backup(&["--only", "grafana", "--set", &set, "--set", &ca]);
    api(
        "DELETE",
        &format!("/api/auth/keys/{}", key["id"]),
        &serde_json::json!({}),
    );
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("grafana")
    );
    let ds = json(&run, &format!("grafana/{NODE}/api/datasources.json"));
    assert!(
        ds.as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "Prometheus")
    );
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(!manifest.contains(&token), "token in the manifest");
    // the manifest says which credentials the API calls used, not what they are
    assert!(
        manifest
            .contains("GET https://127.0.0.1:3000/api/datasources (credentials: grafana_token)"),
        "{manifest}"
    );
}

#[test]
fn plain_copy_of_the_database_is_flagged() {
    let run = backup(&["--only", "grafana", "--set", "grafana.grafana_db_copy=copy"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let h = &run.component("grafana").hosts[0];
    assert!(
        h.flags
            .iter()
            .any(|f| f.contains("grafana.db copied as a plain file")),
        "{:?}",
        h.flags
    );
    assert!(!run.file(&format!("grafana/{NODE}/grafana.db")).exists());
    let data = common::testbed()
        .var("LSB_GRAFANA_DATA_DIR")
        .trim_start_matches('/');
    let db = run.file(&format!("grafana/{NODE}/{data}/grafana.db"));
    assert_eq!(sqlite(&db, "SELECT count(*) > 0 FROM dashboard"), "1");
}

#[test]
fn wrong_password_keeps_the_files_and_says_why() {
    let wrong = unique("not-the-password");
    let set_pw = format!("grafana.grafana_password={wrong}");
    let run = backup(&[
        "--only",
        "grafana",
        "--set",
        "grafana.grafana_user=admin",
        "--set",
        &set_pw,
    ]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let c = run.component("grafana");
    assert_eq!(c.status, Status::Partial);
    let err = run.errors_of("grafana");
    assert!(
        err.contains("node3: grafana: connect: https://127.0.0.1:3000: GET /api/datasources: HTTP 401: invalid username or password (credentials: grafana_user; set grafana_token, or grafana_user and grafana_password, of an Admin)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // the database, data dir and config are still taken
    assert!(run.file(&format!("grafana/{NODE}/grafana.db")).is_file());
    assert!(!run.file(&format!("grafana/{NODE}/api")).exists());
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(!manifest.contains(&wrong) && !run.stderr().contains(&wrong));
}

#[test]
fn grafana_down_fails_the_component_and_keeps_the_others() {
    let set_url = format!("grafana.grafana_url=http://127.0.0.1:{}", free_port());
    let run = backup(&["--only", "grafana,kibana", "--set", &set_url]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("grafana").status, Status::Failed);
    let err = run.errors_of("grafana");
    assert!(
        err.contains("grafana: no reachable host in grafana"),
        "{err}"
    );
    assert!(
        err.contains("no Grafana HTTP API answers at http://127.0.0.1:"),
        "{err}"
    );
    assert_eq!(
        run.component("kibana").status,
        Status::Ok,
        "the other component is kept"
    );
}

#[test]
fn an_unusable_db_copy_mode_is_one_clear_error() {
    // python3 is no longer used on hosts: the value is refused, the rest is still taken
    let run = backup(&[
        "--only",
        "grafana",
        "--set",
        "grafana.grafana_db_copy=python3",
    ]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("grafana");
    assert_eq!(
        err,
        "node3: grafana: database: grafana_db_copy must be auto, sqlite3 or copy, not \"python3\""
    );
    assert_eq!(run.component("grafana").status, Status::Partial);
    assert!(!run.file(&format!("grafana/{NODE}/grafana.db")).exists());
    assert!(
        run.file(&format!("grafana/{NODE}/api/datasources.json"))
            .is_file()
    );
}

#[test]
fn certificate_is_checked_before_credentials_are_sent() {
    // a CA that did not sign Grafana's certificate: the handshake fails, nothing is sent
    let run = backup(&[
        "--only",
        "grafana",
        "--set",
        "grafana.grafana_ca_cert=/etc/elasticsearch/lambdastack-root-ca.pem",
    ]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("grafana");
    assert!(
        err.starts_with("node3: grafana: connect: TLS with https://127.0.0.1:3000 failed: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(run.component("grafana").status, Status::Partial);
    assert!(run.file(&format!("grafana/{NODE}/grafana.db")).is_file());

    // verification switched off: the credentials are not sent at all
    let run = backup(&[
        "--only",
        "grafana",
        "--set",
        "grafana.grafana_tls_verify=false",
    ]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("grafana");
    assert!(
        err.contains("node3: grafana: connect: refusing to send credentials to https://127.0.0.1:3000: certificate verification is off"),
        "{err}"
    );
    assert!(!run.file(&format!("grafana/{NODE}/api")).exists());
}

/// A plain-http Grafana stand-in of this test's own (same program as the test bed's, its own
/// grafana.ini, data dir and port), stopped by pid when dropped.
struct PlainGrafana {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
}

impl PlainGrafana {
    fn start() -> PlainGrafana {
        let dir = tempfile::Builder::new()
            .prefix("lsb-grafana-plain")
            .tempdir_in("/tmp")
            .unwrap();
        let password = unique("pw");
        let data = dir.path().join("data");
        let standin =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/standins/grafana.py");
        let (child, port) = support::start_listening(
            "the plain-http Grafana stand-in",
            std::time::Duration::from_secs(10),
            |port| {
                std::fs::write(
                    dir.path().join("grafana.ini"),
                    format!(
                        "[paths]\ndata = {}\n[server]\nprotocol = http\nhttp_addr = 127.0.0.1\nhttp_port = {port}\n\
                         [security]\nadmin_user = admin\nadmin_password = {password}\n",
                        data.display()
                    ),
                )
                .unwrap();
                Command::new("python3")
                    .arg(&standin)
                    .arg("--config")
                    .arg(dir.path().join("grafana.ini"))
                    .arg("--log")
                    .arg(dir.path().join("log"))
                    .spawn()
                    .expect("python3")
            },
        );
        PlainGrafana {
            child,
            dir,
            port,
            password,
        }
    }
}

impl Drop for PlainGrafana {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn plain_http_gets_credentials_only_when_allowed() {
    let g = PlainGrafana::start();
    let conf = format!("grafana.grafana_config_dir={}", g.dir.path().display());
    // default: the admin credentials of grafana.ini are not sent to plain http
    let run = backup(&["--only", "grafana", "--set", &conf]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("grafana");
    let url = format!("http://127.0.0.1:{}", g.port);
    assert!(
        err.contains(&format!(
            "node3: grafana: connect: refusing to send credentials to {url}: it is plain http"
        )) && err.contains("grafana_allow_plain_http_credentials=true"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // the rest (its database, its config) is still taken
    assert!(run.file(&format!("grafana/{NODE}/grafana.db")).is_file());
    assert!(!run.file(&format!("grafana/{NODE}/api")).exists());

    // opted in: the same Grafana is backed up
    let run = backup(&[
        "--only",
        "grafana",
        "--set",
        &conf,
        "--set",
        "grafana.grafana_allow_plain_http_credentials=true",
    ]);
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("grafana")
    );
    let ds = json(&run, &format!("grafana/{NODE}/api/datasources.json"));
    assert_eq!(ds, serde_json::json!([]));
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(!manifest.contains(&g.password), "password in the manifest");
}
