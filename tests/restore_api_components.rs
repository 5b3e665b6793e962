//! `lsbackup restore` of the API components against the test bed's STAND-INS for Grafana,
//! Kibana and Elasticsearch (tests/testbed/standins/*.py, started by
//! tests/testbed/svc_standins.sh): back up, change or delete objects through the service's API,
//! restore, then check at the request level that the objects are back. A `--dry-run` changes
//! nothing. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use support::es::{EsStandIn, Repo};
use support::transcript as text;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::unique;

/// curl with `auth` arguments: the HTTP status and the JSON answer (Null when not JSON).
fn curl(auth: &[String], method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "30", "-X", method])
        .args(auth)
        .args([
            "-H",
            "Content-Type: application/json",
            "-w",
            "\n%{http_code}",
        ]);
    if let Some(b) = body {
        c.arg("--data-binary").arg(b.to_string());
    }
    let out = c.arg(url).output().expect("curl");
    assert!(
        out.status.success(),
        "curl {method} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn restore(archive: &Path, args: &[&str]) -> Output {
    support::restore(&common::testbed().build_dir(), archive, args)
}

// --- Grafana -----------------------------------------------------------------------------

fn grafana(method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let tb = common::testbed();
    let auth = vec![
        "--cacert".to_string(),
        tb.var("LSB_GRAFANA_CA").to_string(),
        "-u".to_string(),
        format!(
            "{}:{}",
            tb.var("LSB_GRAFANA_USER"),
            tb.var("LSB_GRAFANA_PASSWORD")
        ),
    ];
    curl(
        &auth,
        method,
        &format!("{}{path}", tb.var("LSB_GRAFANA_URL")),
        body,
    )
}

fn grafana_ok(method: &str, path: &str, body: Option<&Value>) -> Value {
    let (code, v) = grafana(method, path, body);
    assert_eq!(code, 200, "{method} {path}: {v}");
    v
}

#[test]
fn grafana_folders_datasources_and_dashboards_come_back_through_the_api() {
    let folder_uid = unique("f").replace('-', "");
    let folder_uid = &folder_uid[..folder_uid.len().min(40)];
    let dash_uid = unique("d").replace('-', "");
    let dash_uid = &dash_uid[..dash_uid.len().min(40)];
    let ds_name = unique("lsbackup restore ds");
    let ds_uid = unique("ds").replace('-', "");
    let ds_uid = &ds_uid[..ds_uid.len().min(40)];
    let other_name = unique("lsbackup restore ds changed");
    grafana_ok(
        "POST",
        "/api/folders",
        Some(&json!({"uid": folder_uid, "title": format!("Restore {folder_uid}")})),
    );
    grafana_ok(
        "POST",
        "/api/dashboards/db",
        Some(
            &json!({"folderUid": folder_uid, "overwrite": true, "dashboard": {
                "uid": dash_uid, "title": format!("Restore test {dash_uid}"), "schemaVersion": 37,
                "panels": [{"id": 1, "type": "stat", "title": "up", "targets": [{"refId": "A", "expr": "up"}]}]
            }}),
        ),
    );
    grafana_ok(
        "POST",
        "/api/datasources",
        Some(
            &json!({"name": ds_name, "uid": ds_uid, "type": "prometheus", "access": "proxy",
            "url": "http://127.0.0.1:9090", "jsonData": {"timeInterval": "15s"},
            "secureJsonData": {"httpHeaderValue1": "secret"}}),
        ),
    );
    let other = grafana_ok(
        "POST",
        "/api/datasources",
        Some(
            &json!({"name": other_name, "type": "loki", "access": "proxy",
            "url": "http://127.0.0.1:3100", "secureJsonData": {"basicAuthPassword": "kept"}}),
        ),
    );
    let other_uid = other["datasource"]["uid"].as_str().unwrap().to_string();

    let run = support::backup(&common::testbed().build_dir(), &["--only", "grafana"]);
    assert_eq!(
        run.code(),
        0,
        "{}\n{}",
        run.stderr(),
        run.errors_of("grafana")
    );
    let archive = run.archive.clone().unwrap();

    // The damage: the folder (with its dashboard) and a datasource deleted, another changed.
    grafana_ok("DELETE", &format!("/api/folders/{folder_uid}"), None);
    assert_eq!(
        grafana("GET", &format!("/api/dashboards/uid/{dash_uid}"), None).0,
        404
    );
    grafana_ok("DELETE", &format!("/api/datasources/uid/{ds_uid}"), None);
    grafana_ok(
        "PUT",
        &format!("/api/datasources/uid/{other_uid}"),
        Some(
            &json!({"name": other_name, "type": "loki", "access": "proxy", "url": "http://elsewhere:3100"}),
        ),
    );

    // A dry run says what it would do and changes nothing.
    let dry = restore(&archive, &["--dry-run", "--only", "grafana"]);
    let out = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("would create folder \"Restore {folder_uid}\"")),
        "{out}"
    );
    assert!(
        out.contains(&format!("would create datasource {ds_name:?}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("would update datasource {other_name:?}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "would create dashboard \"Restore test {dash_uid}\" ({dash_uid}) in folder {folder_uid}"
        )),
        "{out}"
    );
    assert_eq!(
        grafana("GET", &format!("/api/folders/{folder_uid}"), None).0,
        404
    );
    assert_eq!(
        grafana("GET", &format!("/api/datasources/uid/{ds_uid}"), None).0,
        404
    );
    assert_eq!(
        grafana_ok("GET", &format!("/api/datasources/uid/{other_uid}"), None)["url"],
        "http://elsewhere:3100"
    );

    let done = restore(&archive, &["--yes", "--only", "grafana"]);
    let out = text(&done);
    assert_eq!(done.status.code(), Some(0), "{out}");
    assert!(
        out.contains("secrets (passwords, tokens) are not in Grafana's export"),
        "{out}"
    );

    let folder = grafana_ok("GET", &format!("/api/folders/{folder_uid}"), None);
    assert_eq!(folder["title"], format!("Restore {folder_uid}"));
    let d = grafana_ok("GET", &format!("/api/dashboards/uid/{dash_uid}"), None);
    assert_eq!(d["dashboard"]["title"], format!("Restore test {dash_uid}"));
    assert_eq!(d["dashboard"]["panels"][0]["title"], "up");
    assert_eq!(d["meta"]["folderUid"], folder_uid);
    let ds = grafana_ok("GET", &format!("/api/datasources/uid/{ds_uid}"), None);
    assert_eq!(ds["name"], ds_name.as_str());
    assert_eq!(ds["url"], "http://127.0.0.1:9090");
    assert_eq!(ds["jsonData"]["timeInterval"], "15s");
    assert_eq!(
        ds["secureJsonFields"],
        json!({}),
        "a secret is never in the export"
    );
    let other = grafana_ok("GET", &format!("/api/datasources/uid/{other_uid}"), None);
    assert_eq!(other["url"], "http://127.0.0.1:3100");
    assert_eq!(
        other["secureJsonFields"]["basicAuthPassword"], true,
        "an update keeps the secret Grafana holds"
    );

    // Again: everything is as backed up, nothing is sent.
    let again = restore(&archive, &["--yes", "--only", "grafana"]);
    let out = text(&again);
    assert_eq!(again.status.code(), Some(0), "{out}");
    assert!(!out.contains(folder_uid), "{out}");
    assert!(!out.contains(&ds_name), "{out}");
    assert!(!out.contains(&other_name), "{out}");
    assert!(!out.contains(dash_uid), "{out}");
    assert!(out.contains("dashboards as backed up:"), "{out}");

    grafana_ok("DELETE", &format!("/api/folders/{folder_uid}"), None);
    grafana_ok("DELETE", &format!("/api/datasources/uid/{ds_uid}"), None);
    grafana_ok("DELETE", &format!("/api/datasources/uid/{other_uid}"), None);
}

// --- Kibana ------------------------------------------------------------------------------

fn kibana(method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let tb = common::testbed();
    let auth = vec![
        "-H".to_string(),
        "kbn-xsrf: true".to_string(),
        "-u".to_string(),
        format!(
            "{}:{}",
            tb.var("LSB_KIBANA_USER"),
            tb.var("LSB_KIBANA_PASSWORD")
        ),
    ];
    curl(
        &auth,
        method,
        &format!("{}{path}", tb.var("LSB_KIBANA_URL")),
        body,
    )
}

/// The Kibana tests run one at a time: one leaves a broken object in Kibana while it runs.
static KIBANA: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn kibana_saved_objects_are_imported_again() {
    let _one = KIBANA.lock().unwrap_or_else(|e| e.into_inner());
    let pattern = unique("lsbackup-restore-pattern");
    let dash = unique("lsbackup-restore-dash");
    let (code, v) = kibana(
        "POST",
        &format!("/api/saved_objects/index-pattern/{pattern}?overwrite=true"),
        Some(&json!({"attributes": {"title": "restore-*", "timeFieldName": "@timestamp"}})),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = kibana(
        "POST",
        &format!("/api/saved_objects/dashboard/{dash}?overwrite=true"),
        Some(&json!({
            "attributes": {"title": "Restore me", "panelsJSON": "[]", "timeRestore": false},
            "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": pattern}]
        })),
    );
    assert_eq!(code, 200, "{v}");

    let run = support::backup(&common::testbed().build_dir(), &["--only", "kibana"]);
    assert_eq!(
        run.code(),
        0,
        "{}\n{}",
        run.stderr(),
        run.errors_of("kibana")
    );
    let archive = run.archive.clone().unwrap();

    // The damage: the dashboard deleted, the index pattern changed.
    let (code, _) = kibana(
        "DELETE",
        &format!("/api/saved_objects/dashboard/{dash}"),
        None,
    );
    assert_eq!(code, 200);
    let (code, _) = kibana(
        "POST",
        &format!("/api/saved_objects/index-pattern/{pattern}?overwrite=true"),
        Some(&json!({"attributes": {"title": "changed-*"}})),
    );
    assert_eq!(code, 200);

    let dry = restore(&archive, &["--dry-run", "--only", "kibana"]);
    let out = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out}");
    assert!(out.contains("would import "), "{out}");
    assert!(
        out.contains("POST /api/saved_objects/_import?overwrite=true"),
        "{out}"
    );
    assert_eq!(
        kibana("GET", &format!("/api/saved_objects/dashboard/{dash}"), None).0,
        404,
        "a dry run imports nothing"
    );

    let done = restore(&archive, &["--yes", "--only", "kibana"]);
    let out = text(&done);
    assert_eq!(done.status.code(), Some(0), "{out}");
    assert!(out.contains("Kibana imported "), "{out}");
    let (code, d) = kibana("GET", &format!("/api/saved_objects/dashboard/{dash}"), None);
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["attributes"]["title"], "Restore me");
    assert_eq!(d["references"][0]["id"], pattern.as_str());
    let (code, p) = kibana(
        "GET",
        &format!("/api/saved_objects/index-pattern/{pattern}"),
        None,
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["attributes"]["title"], "restore-*");
    assert_eq!(p["attributes"]["timeFieldName"], "@timestamp");

    kibana(
        "DELETE",
        &format!("/api/saved_objects/dashboard/{dash}"),
        None,
    );
    kibana(
        "DELETE",
        &format!("/api/saved_objects/index-pattern/{pattern}"),
        None,
    );
}

#[test]
fn kibana_refusals_fail_the_restore_and_are_named() {
    let _one = KIBANA.lock().unwrap_or_else(|e| e.into_inner());
    // A visualization whose index pattern is gone before the backup: the export holds it with
    // a dangling reference, and the import refuses it (missing_references), as Kibana does.
    let pattern = unique("lsbackup-gone-pattern");
    let vis = unique("lsbackup-restore-vis");
    let (code, v) = kibana(
        "POST",
        &format!("/api/saved_objects/visualization/{vis}?overwrite=true"),
        Some(&json!({
            "attributes": {"title": "Orphan", "visState": "{}"},
            "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": pattern}]
        })),
    );
    assert_eq!(code, 200, "{v}");
    let run = support::backup(&common::testbed().build_dir(), &["--only", "kibana"]);
    kibana(
        "DELETE",
        &format!("/api/saved_objects/visualization/{vis}"),
        None,
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let done = restore(
        run.archive.as_ref().unwrap(),
        &["--yes", "--only", "kibana"],
    );
    let out = text(&done);
    assert_ne!(done.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "it refused: visualization/{vis} (\"Orphan\"): missing_references index-pattern/{pattern}"
        )),
        "{out}"
    );
    assert_eq!(
        kibana(
            "GET",
            &format!("/api/saved_objects/visualization/{vis}"),
            None
        )
        .0,
        404
    );
}

// --- Elasticsearch -------------------------------------------------------------------------

/// `GET /INDEX/_count` of the stand-in.
fn count(es: &EsStandIn, index: &str) -> (u16, Value) {
    es.call("GET", &format!("/{index}/_count"), None)
}

#[test]
fn elasticsearch_indices_come_back_from_the_snapshot() {
    let es = EsStandIn::start(Repo::Own, &[]);
    let docs = [
        ("restore-logs", 3),
        ("restore-metrics", 2),
        ("restore-open", 1),
    ];
    for (index, n) in docs {
        for i in 0..n {
            let (code, v) = es.call(
                "PUT",
                &format!("/{index}/_doc/{i}"),
                Some(&json!({"message": format!("{index} {i}")}).to_string()),
            );
            assert_eq!(code, 201, "{v}");
        }
    }
    let sets = es.sets();
    let mut args: Vec<&str> = vec!["--only", "elasticsearch"];
    args.extend(sets.iter().map(String::as_str));
    let run = support::backup(&common::testbed().build_dir(), &args);
    assert_eq!(
        run.code(),
        0,
        "{}\n{}",
        run.stderr(),
        run.errors_of("elasticsearch")
    );
    let archive = run.archive.clone().unwrap();
    // The backup deleted its snapshot and unregistered the repository it registered.
    assert_eq!(es.call("GET", "/_snapshot/lsbackup", None).0, 404);

    // The damage: an index deleted, one closed, one changed (still open).
    assert_eq!(es.call("DELETE", "/restore-logs", None).0, 200);
    assert_eq!(es.call("POST", "/restore-metrics/_close", None).0, 200);
    assert_eq!(
        es.call(
            "PUT",
            "/restore-open/_doc/extra",
            Some(&json!({"message": "after the backup"}).to_string())
        )
        .0,
        201
    );
    let repo_before: Vec<_> = std::fs::read_dir(es.repos())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    // A dry run without --yes: open indices would be left alone; nothing changes.
    let mut dry_args = vec!["--dry-run", "--only", "elasticsearch"];
    dry_args.extend(sets.iter().map(String::as_str));
    let dry = restore(&archive, &dry_args);
    let out = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "would replace directory {}/lsbackup with",
            es.repos().display()
        )),
        "{out}"
    );
    assert!(
        out.contains("would register repository lsbackup (fs, "),
        "{out}"
    );
    assert!(
        out.contains("would restore 2 indices from snapshot lsbackup-"),
        "{out}"
    );
    assert!(out.contains(": restore-logs, restore-metrics"), "{out}");
    assert!(
        out.contains("open index left alone (Elasticsearch restores only over a closed index; run again with --yes to close and replace it): restore-open"),
        "{out}"
    );
    assert_eq!(count(&es, "restore-logs").0, 404);
    assert_eq!(count(&es, "restore-metrics").0, 400, "still closed");
    assert_eq!(count(&es, "restore-open").1["count"], 2);
    assert_eq!(es.call("GET", "/_snapshot/lsbackup", None).0, 404);
    let repo_after: Vec<_> = std::fs::read_dir(es.repos())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(repo_before, repo_after, "a dry run touches no file");

    // The restore: the repository directory put back, registered, the indices restored (the
    // open one closed first), the registration removed again.
    let mut yes_args = vec!["--yes", "--only", "elasticsearch"];
    yes_args.extend(sets.iter().map(String::as_str));
    let done = restore(&archive, &yes_args);
    let out = text(&done);
    assert_eq!(done.status.code(), Some(0), "{out}");
    assert!(out.contains("close open index restore-open"), "{out}");
    assert!(
        out.contains("restore 3 indices from snapshot lsbackup-"),
        "{out}"
    );
    assert!(out.contains("restored 3 indices"), "{out}");
    for (index, n) in docs {
        let (code, v) = count(&es, index);
        assert_eq!((code, &v["count"]), (200, &json!(n)), "{index}: {v}");
    }
    assert_eq!(es.call("GET", "/_snapshot/lsbackup", None).0, 404);
    let kept: Vec<String> = std::fs::read_dir(es.repos())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lsbackup.lsbackup-"))
        .collect();
    assert_eq!(kept.len(), 1, "the previous directory is kept beside");

    // Again: the directory holds the snapshot now, so its files are left alone.
    assert_eq!(es.call("DELETE", "/restore-logs", None).0, 200);
    let again = restore(&archive, &yes_args);
    let out = text(&again);
    assert_eq!(again.status.code(), Some(0), "{out}");
    assert!(out.contains("its files are left as they are"), "{out}");
    assert!(!out.contains("replace directory"), "{out}");
    assert_eq!(count(&es, "restore-logs").1["count"], 3);

    // What the restore avoids: Elasticsearch refuses to restore over an open index.
    let location = format!("{}/lsbackup", es.repos().display());
    assert_eq!(
        es.call(
            "PUT",
            "/_snapshot/lsbackup",
            Some(&json!({"type": "fs", "settings": {"location": location}}).to_string())
        )
        .0,
        200
    );
    let snap: Value =
        serde_json::from_slice(&run.read("elasticsearch/node2/snapshot.json")).unwrap();
    let name = snap["snapshot"]["snapshot"].as_str().unwrap();
    let (code, v) = es.call(
        "POST",
        &format!("/_snapshot/lsbackup/{name}/_restore?wait_for_completion=true"),
        Some(&json!({"indices": "restore-logs"}).to_string()),
    );
    assert_eq!(code, 500, "{v}");
    assert_eq!(v["error"]["type"], "snapshot_restore_exception");
    assert!(
        v["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot restore index [restore-logs] because an open index with same name already exists"),
        "{v}"
    );
}
