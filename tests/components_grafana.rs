//! The `grafana` component against the test bed's Grafana STAND-IN
//! (tests/testbed/standins/grafana.py, started by tests/testbed/svc_standins.sh on node3 of the
//! `grafana` group): no reachable registry packages the Grafana server, so a small HTTP server
//! reading the real grafana.ini keeps its dashboards, datasources, users and API keys in a real
//! SQLite grafana.db and serves Grafana 9.5's API shapes. Needs `tests/testbed/up.sh`.
//!
//! The archived grafana.db is opened with the sqlite3 CLI (an independent reader).

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

    // the admin password was read on the host from grafana.ini, never put in a command
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
    let run = backup(&["--only", "grafana", "--set", &set]);
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
    assert!(
        manifest.contains("********"),
        "the token var is shown masked"
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
    assert!(err.contains("node3: grafana: connect: exit status 1: no usable HTTP API: http://127.0.0.1:3000: GET /api/datasources: HTTP 401: invalid username or password"), "{err}");
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
        err.contains("grafana: no reachable host is serving the HTTP API in grafana"),
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
fn python3_online_backup_when_chosen() {
    // the fallback for hosts without the sqlite3 CLI: python3's sqlite3 backup API
    let run = backup(&[
        "--only",
        "grafana",
        "--set",
        "grafana.grafana_db_copy=python3",
    ]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let db = run.file(&format!("grafana/{NODE}/grafana.db"));
    assert_eq!(sqlite(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        sqlite(
            &db,
            "SELECT title FROM dashboard WHERE uid = 'lsbackup-node'"
        ),
        "Node Exporter Full"
    );
    let h = &run.component("grafana").hosts[0];
    assert!(
        !h.flags.iter().any(|f| f.contains("plain file")),
        "{:?}",
        h.flags
    );
}
