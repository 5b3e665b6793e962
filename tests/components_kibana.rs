//! The `kibana` component against the test bed's Kibana STAND-IN
//! (tests/testbed/standins/kibana.py, started by tests/testbed/svc_standins.sh on node3 of the
//! `kibana` group): no reachable registry packages Kibana, so a small HTTP server reading the real
//! kibana.yml serves the saved-objects API with Kibana 7.10's shapes, behind basic auth as with the
//! OpenDistro security plugin. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use support::{free_port, unique};

use std::process::{Command, Stdio};
use std::time::Duration;

use lsbackup::archive::Status;

const NODE: &str = "node3";

/// The opt-in to credentials over plain http (the test bed's Kibana is plain http).
const INSECURE_OK: &str = "kibana.kibana_allow_insecure=true";

/// This tree's Kibana stand-in (private instances; the shared one runs from the test bed).
const STANDIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/testbed/standins/kibana.py"
);

/// A private Kibana stand-in of its own `config_file` in `dir` (`config(port)` gives its text),
/// `args` passed on; returned once it listens, with its port. Its log: `dir/log`.
fn private_standin(
    dir: &std::path::Path,
    config_file: &str,
    args: &[String],
    config: impl Fn(u16) -> String,
) -> (std::process::Child, u16) {
    support::start_listening("the Kibana stand-in", Duration::from_secs(15), |port| {
        std::fs::write(dir.join(config_file), config(port)).unwrap();
        Command::new("/usr/bin/python3")
            .arg(STANDIN)
            .arg("--config")
            .arg(dir.join(config_file))
            .arg("--data")
            .arg(dir.join("saved-objects.json"))
            .arg("--log")
            .arg(dir.join("log"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the Kibana stand-in")
    })
}

fn backup(args: &[&str]) -> support::Run {
    support::backup(&common::testbed().build_dir(), args)
}

/// Create (POST) or delete (DELETE) a saved object through the stand-in's API as a user would
/// (kibanaserver credentials).
fn saved_object(method: &str, kind: &str, id: &str, body: &serde_json::Value) {
    let tb = common::testbed();
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "10", "-X", method])
        .args([
            "-H",
            "kbn-xsrf: true",
            "-H",
            "Content-Type: application/json",
        ])
        .arg("-u")
        .arg(format!(
            "{}:{}",
            tb.var("LSB_KIBANA_USER"),
            tb.var("LSB_KIBANA_PASSWORD")
        ))
        .arg("--data-binary")
        .arg(body.to_string())
        .arg(format!(
            "{}/api/saved_objects/{kind}/{id}?overwrite=true",
            tb.var("LSB_KIBANA_URL")
        ))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{method} {kind}/{id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn standin_export_holds_the_dashboard_created_before() {
    let tb = common::testbed();
    let id = unique("lsbackup-test-dashboard");
    let title = unique("lsbackup test dashboard");
    saved_object(
        "POST",
        "dashboard",
        &id,
        &serde_json::json!({
            "attributes": {
                "title": title,
                "description": "made by tests/components_kibana.rs",
                "panelsJSON": "[{\"version\":\"7.10.2\",\"gridData\":{\"x\":0,\"y\":0,\"w\":24,\"h\":15,\"i\":\"1\"},\"panelIndex\":\"1\",\"embeddableConfig\":{},\"panelRefName\":\"panel_0\"}]",
                "optionsJSON": "{\"useMargins\":true}",
                "timeRestore": false,
                "kibanaSavedObjectMeta": {"searchSourceJSON": "{\"query\":{\"query\":\"\",\"language\":\"kuery\"},\"filter\":[]}"}
            },
            "references": [{"id": "lsbackup-count-vis", "name": "panel_0", "type": "visualization"}]
        }),
    );

    // the test bed's Kibana is plain http, like LambdaStack's: sending the credentials there
    // needs the opt-in (also set for the group in the test bed inventory)
    let run = backup(&["--only", "kibana", "--set", INSECURE_OK]);
    saved_object("DELETE", "dashboard", &id, &serde_json::json!({}));
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("kibana")
    );
    let h = &run.component("kibana").hosts[0];
    assert_eq!(h.host, NODE);
    assert_eq!(h.status, Status::Ok);
    assert_eq!(h.versions.get("kibana").map(String::as_str), Some("7.10.2"));
    // lsbackup spoke the API itself: no curl, no python on the host
    for c in &h.commands {
        assert!(
            !c.command.contains("curl") && !c.command.contains("python"),
            "{c:?}"
        );
    }
    assert!(
        h.commands
            .iter()
            .any(|c| c.step == "saved objects" && c.command == "POST /api/saved_objects/_export"),
        "{:?}",
        h.commands
    );

    let text = String::from_utf8(run.read(&format!("kibana/{NODE}/saved_objects.ndjson"))).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, objects) = lines.split_last().unwrap();
    assert_eq!(
        summary["exportedCount"].as_u64(),
        Some(objects.len() as u64),
        "{summary}"
    );
    assert_eq!(summary["missingRefCount"], 0);
    let ours = objects
        .iter()
        .find(|o| o["type"] == "dashboard" && o["id"] == id.as_str())
        .unwrap_or_else(|| panic!("dashboard {id} not exported:\n{text}"));
    assert_eq!(ours["attributes"]["title"], title.as_str());
    assert_eq!(ours["references"][0]["id"], "lsbackup-count-vis");
    for kind in ["index-pattern", "visualization", "search", "config"] {
        assert!(
            objects.iter().any(|o| o["type"] == kind),
            "no {kind} exported"
        );
    }

    let yml = String::from_utf8(run.read(&format!("kibana/{NODE}/etc/kibana/kibana.yml"))).unwrap();
    assert!(yml.contains("server.port"), "{yml}");
    // the password was read from kibana.yml into lsbackup, never put in a command
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(
        !manifest.contains(tb.var("LSB_KIBANA_PASSWORD")),
        "password in the manifest"
    );
    assert!(
        !run.stderr().contains(tb.var("LSB_KIBANA_PASSWORD")),
        "password in the output"
    );
}

#[test]
fn wrong_password_is_a_clear_error() {
    let wrong = unique("not-the-password");
    let set_pw = format!("kibana.kibana_password={wrong}");
    let run = backup(&[
        "--only",
        "kibana,haproxy",
        "--set",
        "kibana.kibana_user=kibanaserver",
        "--set",
        &set_pw,
        "--set",
        INSECURE_OK,
    ]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("kibana");
    assert!(err.contains("node3: kibana: connect: no usable HTTP API: http://127.0.0.1:5601: GET /api/status: HTTP 401 Unauthorized: Authentication Exception"), "{err}");
    assert!(
        err.contains("(credentials: kibana_user; set kibana_user/kibana_password)"),
        "{err}"
    );
    let h = &run.component("kibana").hosts[0];
    // a step skipped by its condition is recorded with the commands
    assert!(
        h.commands
            .iter()
            .any(|c| c.step == "saved objects" && c.command.starts_with("skipped: ")),
        "{:?}",
        h.commands
    );
    // the config is still taken; the wrong password appears nowhere
    assert!(
        run.file(&format!("kibana/{NODE}/etc/kibana/kibana.yml"))
            .is_file()
    );
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(!manifest.contains(&wrong) && !run.stderr().contains(&wrong));
    assert_eq!(
        run.component("haproxy").status,
        Status::Ok,
        "the other component is kept"
    );
}

#[test]
fn kibana_down_fails_the_component_and_keeps_the_others() {
    let set_url = format!("kibana.kibana_url=http://127.0.0.1:{}", free_port());
    let run = backup(&["--only", "kibana,haproxy", "--set", &set_url]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("kibana").status, Status::Failed);
    let err = run.errors_of("kibana");
    assert!(err.contains("kibana: no reachable host in kibana"), "{err}");
    assert!(
        err.contains("no Kibana/OpenSearch Dashboards HTTP API answers at http://127.0.0.1:"),
        "{err}"
    );
    assert_eq!(
        run.component("haproxy").status,
        Status::Ok,
        "the other component is kept"
    );
}

#[test]
fn opensearch_dashboards_layout_port_and_credentials_from_its_config() {
    // opensearch_dashboards.yml with opensearch.username/password; no kibana_url given: the port
    // is read from the file
    let dir = tempfile::tempdir().unwrap();
    let password = unique("osd-pw");
    let (mut child, _) = private_standin(
        dir.path(),
        "opensearch_dashboards.yml",
        &["--distribution".into(), "opensearch-dashboards".into()],
        |port| {
            format!(
                "server.host: \"127.0.0.1\"\nserver.port: {port}\nopensearch.hosts: [\"https://127.0.0.1:9200\"]\n\
                 opensearch.username: kibanaserver\nopensearch.password: '{password}'\nopensearch.ssl.verificationMode: none\n"
            )
        },
    );
    let set_conf = format!("kibana.kibana_config_dir={}", dir.path().display());
    let run = backup(&["--only", "kibana", "--set", &set_conf, "--set", INSECURE_OK]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("kibana")
    );
    let h = &run.component("kibana").hosts[0];
    assert_eq!(h.versions.get("kibana").map(String::as_str), Some("1.3.14"));
    let text = String::from_utf8(run.read(&format!("kibana/{NODE}/saved_objects.ndjson"))).unwrap();
    assert!(text.contains("\"lsbackup-overview-dashboard\""), "{text}");
    assert!(
        text.lines().last().unwrap().contains("\"exportedCount\":5"),
        "{text}"
    );
    let conf = dir.path().display().to_string();
    assert!(
        run.file(&format!(
            "kibana/{NODE}/{}/opensearch_dashboards.yml",
            conf.trim_start_matches('/')
        ))
        .is_file()
    );
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(!manifest.contains(&password), "password in the manifest");
}

#[test]
fn plain_http_credentials_are_refused_without_the_opt_in() {
    // the test bed's Kibana is plain http like LambdaStack's: without kibana_allow_insecure
    // (set for the group in the test bed inventory) the credentials are not sent at all
    let tb = common::testbed();
    let run = backup(&[
        "--only",
        "kibana",
        "--set",
        "kibana.kibana_allow_insecure=false",
    ]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("kibana");
    assert!(
        err.contains("node3: kibana: connect: http://127.0.0.1:5601: not sending the credentials (kibanaserver from /etc/kibana/kibana.yml)"),
        "{err}"
    );
    assert!(
        err.contains("set kibana_allow_insecure=true") && err.contains("kibana_ca_cert"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let h = &run.component("kibana").hosts[0];
    assert_eq!(
        h.errors[0].kind,
        lsbackup::archive::FailureKind::Config,
        "{:?}",
        h.errors
    );
    // the config is still taken
    assert!(
        run.file(&format!("kibana/{NODE}/etc/kibana/kibana.yml"))
            .is_file()
    );
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(!manifest.contains(tb.var("LSB_KIBANA_PASSWORD")));
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`: (ca, cert, key).
fn pki(dir: &std::path::Path) -> (String, String, String) {
    let p = |f: &str| dir.join(f).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/O=lsbackup-test/CN=kibana test CA",
        "-keyout",
        &p("ca-key.pem"),
        "-out",
        &p("ca.pem"),
    ]);
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/O=lsbackup-test/CN=node3",
        "-keyout",
        &p("kibana-key.pem"),
        "-out",
        &p("kibana.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &p("kibana.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca-key.pem"),
        "-CAcreateserial",
        "-CAserial",
        &p("ca.srl"),
        "-extfile",
        &p("server.ext"),
        "-out",
        &p("kibana.pem"),
    ]);
    (p("ca.pem"), p("kibana.pem"), p("kibana-key.pem"))
}

/// Files under `dir` changed since `since` whose content holds `needle` (unreadable ones,
/// symlinks and the `skip` dir aside).
fn files_holding(
    dir: &std::path::Path,
    needle: &str,
    since: std::time::SystemTime,
    skip: &std::path::Path,
) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.starts_with(skip) {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                todo.push(p);
            } else if m.is_file()
                && m.len() < 64 << 20
                && m.modified().is_ok_and(|t| t >= since)
                && std::fs::read(&p)
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn https_with_its_ca_and_a_password_that_never_reaches_the_host() {
    // Kibana with server.ssl like a hardened install: https, its CA named in the config file
    // (server.ssl.certificateAuthorities, found with kibana_ca_cert=auto); credentials given as
    // variables are sent without any opt-in, and exist nowhere but in lsbackup's memory
    let tb = common::testbed();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path());
    let user = "backup-operator";
    let password = unique("kb-secret");
    let (mut child, port) = private_standin(
        dir.path(),
        "kibana.yml",
        &["--user".into(), format!("{user}:{password}")],
        |port| {
            format!(
                "server.host: \"127.0.0.1\"\nserver.port: {port}\nserver.ssl.enabled: true\n\
                 server.ssl.certificate: {cert}\nserver.ssl.key: {key}\n\
                 server.ssl.certificateAuthorities: [\"{ca}\"]\n"
            )
        },
    );
    let since = std::time::SystemTime::now() - Duration::from_secs(2);
    let set_conf = format!("kibana.kibana_config_dir={}", dir.path().display());
    let set_pw = format!("kibana.kibana_password={password}");
    let set_user = format!("kibana.kibana_user={user}");
    let args = [
        "--only",
        "kibana",
        "--set",
        &set_conf,
        "--set",
        &set_user,
        "--set",
        &set_pw,
        "--set",
        "kibana.kibana_allow_insecure=false",
    ];
    let run = backup(&args);
    let plan = Command::new(support::bin())
        .arg("plan")
        .args(args)
        .arg("-b")
        .arg(tb.build_dir())
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("kibana")
    );
    let h = &run.component("kibana").hosts[0];
    assert_eq!(h.versions.get("kibana").map(String::as_str), Some("7.10.2"));
    assert!(
        h.commands
            .iter()
            .any(|c| c.command == format!("GET https://127.0.0.1:{port}/api/status")),
        "{:?}",
        h.commands
    );
    let text = String::from_utf8(run.read(&format!("kibana/{NODE}/saved_objects.ndjson"))).unwrap();
    assert!(text.contains("\"lsbackup-overview-dashboard\""), "{text}");

    // the password: masked in the plan, absent from the manifest and the output, and in no
    // file on the host (the stand-in's own dir aside) - no curl config, no temp file
    let plan_out = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        plan_out.contains(&format!("user {user}, password ********")),
        "{plan_out}"
    );
    assert!(!plan_out.contains(&password));
    let manifest = String::from_utf8(run.read("manifest.json")).unwrap();
    assert!(!manifest.contains(&password), "password in the manifest");
    assert!(!run.stderr().contains(&password), "password in the output");
    for c in &h.commands {
        assert!(
            !c.command.contains("curl") && !c.command.contains(&password),
            "{c:?}"
        );
    }
    let left = files_holding(std::path::Path::new("/tmp"), &password, since, dir.path());
    assert!(left.is_empty(), "the password is in {left:?}");
    let left = files_holding(
        std::path::Path::new("/var/tmp"),
        &password,
        since,
        dir.path(),
    );
    assert!(left.is_empty(), "the password is in {left:?}");
}

#[test]
fn https_without_its_ca_is_a_clear_error() {
    // https with credentials but no CA to verify Kibana's certificate: nothing is sent
    let dir = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = pki(dir.path());
    let password = unique("kb-secret");
    let (mut child, port) = private_standin(dir.path(), "kibana.yml", &[], |port| {
        format!(
            "server.port: {port}\nserver.ssl.enabled: true\nserver.ssl.certificate: {cert}\nserver.ssl.key: {key}\n\
             elasticsearch.username: kibanaserver\nelasticsearch.password: {password}\n"
        )
    });
    let set_conf = format!("kibana.kibana_config_dir={}", dir.path().display());
    let run = backup(&["--only", "kibana,haproxy", "--set", &set_conf]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("kibana");
    assert!(
        err.contains(&format!(
            "node3: kibana: connect: TLS settings for https://127.0.0.1:{port}: no CA certificate given"
        )),
        "{err}"
    );
    assert!(err.contains("set kibana_ca_cert"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // the host was chosen (its config is taken), nothing was sent
    let conf = dir.path().display().to_string();
    assert!(
        run.file(&format!(
            "kibana/{NODE}/{}/kibana.yml",
            conf.trim_start_matches('/')
        ))
        .is_file()
    );
    assert!(!err.contains(&password));
    assert_eq!(run.component("haproxy").status, Status::Ok);
}
