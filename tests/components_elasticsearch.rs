//! The `elasticsearch` component against the test bed's Elasticsearch STAND-IN
//! (tests/testbed/standins/elasticsearch.py, started by tests/testbed/svc_standins.sh on node2 of
//! the `logging` group): no reachable registry packages an Elasticsearch/OpenSearch server, so a
//! small HTTPS server with OpenDistro's client-certificate auth serves the snapshot API and writes
//! a real fs-repository layout. Needs `tests/testbed/up.sh`.
//!
//! The failure cases start their own stand-in instances (plain http, spare port, temp config) so
//! that they never disturb the shared one: path.repo not set, a snapshot that never completes, a
//! multi-node cluster whose second node cannot see the repository.

mod common;
mod support;

use support::es::{EsStandIn, Repo};
use support::{free_port, unique};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lsbackup::archive::Status;

const NODE: &str = "node2";

/// Tests that snapshot the shared stand-in run one at a time (one repository directory).
static SHARED: Mutex<()> = Mutex::new(());

/// curl against the shared stand-in with the admin client certificate.
fn es(method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let tb = common::testbed();
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "-X", method])
        .arg("--cacert")
        .arg(tb.var("LSB_ES_CA"))
        .arg("--cert")
        .arg(tb.var("LSB_ES_ADMIN_CERT"))
        .arg("--key")
        .arg(tb.var("LSB_ES_ADMIN_KEY"))
        .args([
            "-H",
            "Content-Type: application/json",
            "-w",
            "\n%{http_code}",
        ]);
    if let Some(b) = body {
        c.args(["--data-binary", b]);
    }
    let out = c
        .arg(format!("{}{path}", tb.var("LSB_ES_URL")))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A private stand-in (tests/support/es.rs) holding one document in `lsbackup-test-index`.
fn standin(repo: Repo<'_>, args: &[&str]) -> EsStandIn {
    let s = EsStandIn::start(repo, args);
    let (code, _) = s.call(
        "PUT",
        "/lsbackup-test-index/_doc/1",
        Some(r#"{"message":"private stand-in"}"#),
    );
    assert_eq!(code, 201);
    s
}

fn backup(args: &[String]) -> support::Run {
    let tb = common::testbed();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::backup(&tb.build_dir(), &args)
}

fn host<'a>(
    run: &'a support::Run,
    component: &str,
    node: &str,
) -> &'a lsbackup::archive::HostReport {
    run.component(component)
        .hosts
        .iter()
        .find(|h| h.host == node)
        .unwrap_or_else(|| {
            panic!(
                "{component} did not report {node}; stderr:\n{}",
                run.stderr()
            )
        })
}

/// Files under `dir`, recursively, relative to it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn standin_snapshot_repository_holds_the_indices_and_the_config() {
    let _guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let tb = common::testbed();
    let index = unique("lsbackup-test-es");
    let marker = unique("marker");
    let (code, _) = es(
        "PUT",
        &format!("/{index}/_doc/doc-1"),
        Some(&format!(r#"{{"message":"{marker}"}}"#)),
    );
    assert_eq!(code, 201);

    let (registered_before, _) = es("GET", "/_snapshot/lsbackup", None);
    let run = backup(&["--only".into(), "elasticsearch".into()]);
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("elasticsearch")
    );
    let h = host(&run, "elasticsearch", NODE);
    assert_eq!(h.status, Status::Ok);
    assert_eq!(
        h.versions.get("elasticsearch").map(String::as_str),
        Some("elasticsearch 7.10.2")
    );
    // lsbackup spoke the API itself: no curl, no python, no work dir on the host
    for c in &h.commands {
        assert!(
            !c.command.contains("curl") && !c.command.contains("python"),
            "{c:?}"
        );
    }
    assert!(
        h.commands
            .iter()
            .any(|c| c.step == "snapshot"
                && c.command.starts_with("PUT /_snapshot/lsbackup/lsbackup-")),
        "{:?}",
        h.commands
    );

    // the snapshot's own report: SUCCESS, and it holds the index written above
    let snap: serde_json::Value =
        serde_json::from_slice(&run.read(&format!("elasticsearch/{NODE}/snapshot.json"))).unwrap();
    let snap = &snap["snapshot"];
    assert_eq!(snap["state"], "SUCCESS");
    let name = snap["snapshot"].as_str().unwrap().to_string();
    let uuid = snap["uuid"].as_str().unwrap().to_string();
    assert!(name.starts_with("lsbackup-"), "{name}");
    let indices: Vec<&str> = snap["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(indices.contains(&index.as_str()), "{indices:?}");
    for seeded in tb.var("LSB_ES_INDICES").split(',') {
        let seeded = seeded.split('=').next().unwrap();
        assert!(indices.contains(&seeded), "{seeded} not in {indices:?}");
    }

    // the repository directory in the archive: index.latest -> index-N listing the snapshot,
    // its snap/meta blobs, and the index's shard blob holding the document
    let repo = run.file(&format!(
        "elasticsearch/{NODE}/{}",
        tb.var("LSB_ES_REPO_DIR").trim_start_matches('/')
    ));
    let latest = std::fs::read(repo.join("index.latest")).unwrap();
    let generation = i64::from_be_bytes(latest[..8].try_into().unwrap());
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join(format!("index-{generation}"))).unwrap())
            .unwrap();
    assert!(
        data["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == name.as_str()),
        "snapshot {name} not in index-{generation}: {data}"
    );
    assert!(repo.join(format!("snap-{uuid}.dat")).is_file());
    assert!(repo.join(format!("meta-{uuid}.dat")).is_file());
    let index_id = data["indices"][&index]["id"].as_str().unwrap();
    let shard = repo.join("indices").join(index_id).join("0");
    let blobs: Vec<PathBuf> = walk(&shard)
        .into_iter()
        .filter(|p| p.to_string_lossy().starts_with("__"))
        .collect();
    assert!(!blobs.is_empty(), "no data blob in {}", shard.display());
    let content: String = blobs
        .iter()
        .map(|b| String::from_utf8_lossy(&std::fs::read(shard.join(b)).unwrap()).into_owned())
        .collect();
    assert!(
        content.contains(&marker),
        "the document is not in the snapshot's shard data"
    );

    // the node's configuration, including path.repo and the TLS material
    let yml = String::from_utf8(run.read(&format!(
        "elasticsearch/{NODE}/etc/elasticsearch/elasticsearch.yml"
    )))
    .unwrap();
    assert!(
        yml.contains("path.repo") && yml.contains(tb.var("LSB_ES_REPO_DIR")),
        "{yml}"
    );
    assert!(
        run.file(&format!(
            "elasticsearch/{NODE}/etc/elasticsearch/lambdastack-root-ca.pem"
        ))
        .is_file()
    );

    let (code, _) = es("DELETE", &format!("/{index}"), None);
    assert_eq!(code, 200);

    // cleanup: the snapshot is deleted from the live repository (its files gone), and the
    // repository is registered after the run exactly when it was before
    let (code, body) = es("GET", &format!("/_snapshot/lsbackup/{name}"), None);
    assert_eq!(code, 404, "snapshot still there: {body}");
    let (registered_after, _) = es("GET", "/_snapshot/lsbackup", None);
    assert_eq!(registered_before, registered_after);
    let missing = if registered_after == 200 {
        "snapshot_missing_exception"
    } else {
        "repository_missing_exception"
    };
    assert_eq!(body["error"]["root_cause"][0]["type"], missing, "{body}");
    assert!(
        !Path::new(tb.var("LSB_ES_REPO_DIR"))
            .join(format!("snap-{uuid}.dat"))
            .exists(),
        "the snapshot's files are still in the live repository"
    );
}

#[test]
fn keep_snapshot_leaves_it_in_the_repository() {
    let _guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let run = backup(&[
        "--only".into(),
        "elasticsearch".into(),
        "--set".into(),
        "elasticsearch_keep_snapshot=true".into(),
    ]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let snap: serde_json::Value =
        serde_json::from_slice(&run.read(&format!("elasticsearch/{NODE}/snapshot.json"))).unwrap();
    let name = snap["snapshot"]["snapshot"].as_str().unwrap();
    let (code, body) = es("GET", &format!("/_snapshot/lsbackup/{name}"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["snapshots"][0]["state"], "SUCCESS");
    let (code, _) = es("DELETE", &format!("/_snapshot/lsbackup/{name}"), None);
    assert_eq!(code, 200);
}

#[test]
fn without_the_admin_certificate_the_cluster_refuses_and_says_so() {
    let run = backup(&[
        "--only".into(),
        "elasticsearch,haproxy".into(),
        "--set".into(),
        "elasticsearch.elasticsearch_client_cert=".into(),
    ]);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("elasticsearch");
    assert!(err.contains("node2: elasticsearch: connect: "), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("elasticsearch_client_cert"), "{err}");
    assert_eq!(
        run.component("haproxy").status,
        Status::Ok,
        "the other component is kept"
    );
}

#[test]
fn repository_outside_path_repo_is_a_clear_error() {
    let es = standin(Repo::None, &[]);
    let mut args = vec!["--only".into(), "elasticsearch,haproxy".into()];
    args.extend(es.sets());
    let run = backup(&args);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let c = run.component("elasticsearch");
    assert_ne!(c.status, Status::Ok);
    let err = run.errors_of("elasticsearch");
    assert!(
        err.contains("check path.repo: repository location /var/lib/elasticsearch-snapshots is not in path.repo of node node-a (path.repo: not set)"),
        "{err}"
    );
    let h = host(&run, "elasticsearch", NODE);
    // a step skipped by its condition is recorded with the commands
    assert!(
        h.commands
            .iter()
            .any(|c| c.step == "snapshot" && c.command.starts_with("skipped: ")),
        "{:?}",
        h.commands
    );
    // nothing registered, no snapshot taken, config still copied
    let (code, _) = es.call("GET", "/_snapshot/lsbackup", None);
    assert_eq!(code, 404);
    assert!(
        run.file(&format!(
            "elasticsearch/{NODE}{}/elasticsearch.yml",
            es.path().display()
        ))
        .is_file()
    );
    assert_eq!(
        run.component("haproxy").status,
        Status::Ok,
        "the other component is kept"
    );
}

#[test]
fn snapshot_that_never_completes_times_out_and_is_aborted() {
    let repo_root = tempfile::tempdir().unwrap();
    let root = repo_root.path().display().to_string();
    let es = standin(Repo::At(&root), &["--snapshot-never-completes"]);
    let mut args = vec![
        "--only".into(),
        "elasticsearch,haproxy".into(),
        "--set".into(),
        "elasticsearch_snapshot_timeout=3".into(),
        "--set".into(),
        format!("elasticsearch_repository_location={root}/lsbackup"),
    ];
    args.extend(es.sets());
    let t = Instant::now();
    let run = backup(&args);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("elasticsearch");
    assert!(err.contains("snapshot: snapshot lsbackup-"), "{err}");
    assert!(err.contains("did not complete within 3s"), "{err}");
    // the repository was registered where asked (the directory exists), the running snapshot
    // was aborted and the registration removed again in cleanup, after the failure
    assert!(repo_root.path().join("lsbackup").is_dir());
    let (code, body) = es.call("GET", "/_snapshot/lsbackup", None);
    assert_eq!(
        code, 404,
        "the repository lsbackup registered is still there: {body}"
    );
    let h = host(&run, "elasticsearch", NODE);
    assert!(
        h.commands.iter().any(|c| c.step == "delete snapshot"
            && c.command
                .starts_with("DELETE /_snapshot/lsbackup/lsbackup-")),
        "{:?}",
        h.commands
    );
    let again = format!(r#"{{"type":"fs","settings":{{"location":"{root}/lsbackup"}}}}"#);
    let (code, _) = es.call("PUT", "/_snapshot/lsbackup", Some(&again));
    assert_eq!(code, 200);
    let (code, body) = es.call("GET", "/_snapshot/lsbackup/_all", None);
    assert_eq!(code, 200);
    assert_eq!(
        body["snapshots"].as_array().map(Vec::len),
        Some(0),
        "{body}"
    );
    let h = host(&run, "elasticsearch", NODE);
    // a step skipped by its condition is recorded with the commands
    assert!(
        h.commands
            .iter()
            .any(|c| c.step == "repository" && c.command.starts_with("skipped: ")),
        "{:?}",
        h.commands
    );
    assert_eq!(
        run.component("haproxy").status,
        Status::Ok,
        "the other component is kept"
    );
}

#[test]
fn multi_node_cluster_without_a_shared_repository_is_a_clear_error() {
    let repo_root = tempfile::tempdir().unwrap();
    let root = repo_root.path().display().to_string();
    let node_b = format!("node-b:{root}:unshared");
    let es = standin(Repo::At(&root), &["--extra-node", &node_b]);
    let mut args = vec![
        "--only".into(),
        "elasticsearch".into(),
        "--set".into(),
        format!("elasticsearch_repository_location={root}/lsbackup"),
    ];
    args.extend(es.sets());
    let run = backup(&args);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("elasticsearch");
    assert!(err.contains("register repository: PUT /_snapshot/lsbackup: HTTP 500 repository_verification_exception"), "{err}");
    assert!(
        err.contains("is not shared between this node and the master node"),
        "{err}"
    );
    assert!(err.contains("mount one shared file system"), "{err}");
    assert_eq!(err.lines().count(), 1, "one error line: {err}");

    // a second node without path.repo at all is named by the path.repo check
    let es2 = standin(Repo::At(&root), &["--extra-node", "node-c"]);
    let mut args = vec![
        "--only".into(),
        "elasticsearch".into(),
        "--set".into(),
        format!("elasticsearch_repository_location={root}/lsbackup"),
    ];
    args.extend(es2.sets());
    let run = backup(&args);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let err = run.errors_of("elasticsearch");
    assert!(
        err.contains("is not in path.repo of node node-c (path.repo: not set)"),
        "{err}"
    );
}

#[test]
fn service_down_fails_the_component_and_keeps_the_others() {
    let mut args = vec![
        "--only".into(),
        "elasticsearch,haproxy".into(),
        "--set".into(),
        format!(
            "elasticsearch.elasticsearch_url=https://127.0.0.1:{}",
            free_port()
        ),
    ];
    args.push("--set".into());
    args.push("elasticsearch.elasticsearch_http_port=1".into());
    let run = backup(&args);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let c = run.component("elasticsearch");
    assert_eq!(c.status, Status::Failed);
    let err = run.errors_of("elasticsearch");
    assert!(
        err.contains("elasticsearch: no reachable host in logging"),
        "{err}"
    );
    assert!(
        err.contains("no Elasticsearch/OpenSearch HTTP API answers at https://127.0.0.1:"),
        "{err}"
    );
    assert_eq!(
        run.component("haproxy").status,
        Status::Ok,
        "the other component is kept"
    );
    assert!(run.file("haproxy").is_dir());
}

/// openssl, for the private OpenSearch stand-in's PKI.
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

#[test]
fn opensearch_layout_with_demo_certificates_over_https() {
    // an OpenSearch config dir as the demo installer leaves it: opensearch.yml with
    // plugins.security.*, root-ca.pem, node certificate, and the admin certificate kirk.pem
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("config");
    let pki = dir.path().join("pki");
    let snaps = dir.path().join("opensearch-snapshots");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&pki).unwrap();
    let c = |f: &str| conf.join(f).display().to_string();
    let k = |f: &str| pki.join(f).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/DC=com/DC=example/O=Example Com Inc./OU=Example Com Inc. Root CA/CN=Example Com Inc. Root CA",
        "-keyout",
        &k("ca.key"),
        "-out",
        &c("root-ca.pem"),
    ]);
    std::fs::write(k("node.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    std::fs::write(k("kirk.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, subj) in [
        ("node", "/DC=de/L=test/O=node/OU=node/CN=node-0.example.com"),
        ("kirk", "/C=de/L=test/O=client/OU=client/CN=kirk"),
    ] {
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subj,
            "-keyout",
            &c(&format!("{name}-key.pem")),
            "-out",
            &k(&format!("{name}.csr")),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &k(&format!("{name}.csr")),
            "-CA",
            &c("root-ca.pem"),
            "-CAkey",
            &k("ca.key"),
            "-CAcreateserial",
            "-CAserial",
            &k("ca.srl"),
            "-extfile",
            &k(&format!("{name}.ext")),
            "-out",
            &c(&format!("{name}.pem")),
        ]);
    }
    let (mut child, port) = support::start_listening(
        "the OpenSearch stand-in",
        Duration::from_secs(15),
        |port| {
            std::fs::write(
                conf.join("opensearch.yml"),
                format!(
                    "cluster.name: opensearch-cluster\nnode.name: opensearch-node1\npath.data: {data}\npath.repo:\n  - {snaps}\nnetwork.host: 127.0.0.1\nhttp.port: {port}\n\
                     plugins.security.ssl.http.enabled: true\nplugins.security.ssl.http.pemcert_filepath: node.pem\n\
                     plugins.security.ssl.http.pemkey_filepath: node-key.pem\nplugins.security.ssl.http.pemtrustedcas_filepath: root-ca.pem\n\
                     plugins.security.authcz.admin_dn:\n  - 'CN=kirk,OU=client,O=client,L=test,C=de'\n",
                    data = dir.path().join("data").display(),
                    snaps = snaps.display(),
                ),
            )
            .unwrap();
            support::es::spawn_standin(
                &conf.join("opensearch.yml"),
                &["--distribution".into(), "opensearch".into()],
            )
        },
    );
    let marker = unique("opensearch-marker");
    let put = Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "10",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
        ])
        .args([
            "--cacert",
            &c("root-ca.pem"),
            "--cert",
            &c("kirk.pem"),
            "--key",
            &c("kirk-key.pem"),
        ])
        .arg("--data-binary")
        .arg(format!(r#"{{"message":"{marker}"}}"#))
        .arg(format!(
            "https://127.0.0.1:{port}/security-auditlog-test/_doc/1"
        ))
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    let run = backup(&[
        "--only".into(),
        "elasticsearch".into(),
        "--set".into(),
        format!("elasticsearch.elasticsearch_url=https://127.0.0.1:{port}"),
        "--set".into(),
        format!("elasticsearch.elasticsearch_config_dir={}", conf.display()),
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("elasticsearch")
    );
    let h = host(&run, "elasticsearch", NODE);
    assert_eq!(
        h.versions.get("elasticsearch").map(String::as_str),
        Some("opensearch 1.3.14")
    );
    // the client certificate was found as kirk.pem, the CA as root-ca.pem: the snapshot went
    // into the only path.repo entry
    let repo = run.file(&format!(
        "elasticsearch/{NODE}/{}",
        snaps.display().to_string().trim_start_matches('/')
    ));
    assert!(repo.join("index.latest").is_file(), "{}", repo.display());
    let content: String = walk(&repo)
        .iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("__"))
        .map(|p| String::from_utf8_lossy(&std::fs::read(repo.join(p)).unwrap()).into_owned())
        .collect();
    assert!(
        content.contains(&marker),
        "the document is not in the snapshot"
    );
    assert!(
        run.file(&format!(
            "elasticsearch/{NODE}/{}/opensearch.yml",
            conf.display().to_string().trim_start_matches('/')
        ))
        .is_file()
    );
}

#[test]
fn closed_indices_are_named_in_a_note() {
    let repo_root = tempfile::tempdir().unwrap();
    let root = repo_root.path().display().to_string();
    let es = standin(Repo::At(&root), &[]);
    let (code, _) = es.call(
        "PUT",
        "/lsbackup-closed-index/_doc/1",
        Some(r#"{"message":"closed"}"#),
    );
    assert_eq!(code, 201);
    let (code, _) = es.call("POST", "/lsbackup-closed-index/_close", None);
    assert_eq!(code, 200);
    let mut args = vec![
        "--only".into(),
        "elasticsearch".into(),
        "--set".into(),
        format!("elasticsearch_repository_location={root}/lsbackup"),
    ];
    args.extend(es.sets());
    let run = backup(&args);
    assert_eq!(
        run.code(),
        0,
        "stderr:\n{}\nerrors: {}",
        run.stderr(),
        run.errors_of("elasticsearch")
    );
    let flags = run.flags_of("elasticsearch");
    assert!(
        flags.contains("closed indices are not in the snapshot: lsbackup-closed-index"),
        "{flags}"
    );
    let snap: serde_json::Value =
        serde_json::from_slice(&run.read(&format!("elasticsearch/{NODE}/snapshot.json"))).unwrap();
    let indices = snap["snapshot"]["indices"].as_array().unwrap();
    assert!(indices.iter().any(|i| i == "lsbackup-test-index"), "{snap}");
    assert!(
        !indices.iter().any(|i| i == "lsbackup-closed-index"),
        "{snap}"
    );
    // lsbackup registered the repository for this run: unregistered again afterwards
    let (code, _) = es.call("GET", "/_snapshot/lsbackup", None);
    assert_eq!(code, 404);
}

/// Files under `dir` changed since `since` whose content holds `needle` (unreadable ones and
/// symlinks aside).
fn files_holding(dir: &Path, needle: &str, since: std::time::SystemTime) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
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
fn basic_auth_over_verified_https_and_the_password_never_reaches_the_host() {
    // a cluster with the security plugin's TLS and a user/password instead of the admin
    // certificate: the password goes from lsbackup's memory into the TLS tunnel, nowhere else
    let tb = common::testbed();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("config");
    let pki = dir.path().join("pki");
    let snaps = dir.path().join("snapshots");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&pki).unwrap();
    let c = |f: &str| conf.join(f).display().to_string();
    let k = |f: &str| pki.join(f).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/O=lsbackup-test/CN=es test root CA",
        "-keyout",
        &k("ca.key"),
        "-out",
        &c("root-ca.pem"),
    ]);
    std::fs::write(k("node.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/O=lsbackup-test/CN=node-0",
        "-keyout",
        &c("node-key.pem"),
        "-out",
        &k("node.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &k("node.csr"),
        "-CA",
        &c("root-ca.pem"),
        "-CAkey",
        &k("ca.key"),
        "-CAcreateserial",
        "-CAserial",
        &k("ca.srl"),
        "-extfile",
        &k("node.ext"),
        "-out",
        &c("node.pem"),
    ]);
    let user = "backup-operator";
    let password = unique("es-secret");
    let (mut child, port) = support::start_listening(
        "the Elasticsearch stand-in",
        Duration::from_secs(15),
        |port| {
            std::fs::write(
                conf.join("elasticsearch.yml"),
                format!(
                    "cluster.name: pw-cluster\nnode.name: pw-node\npath.data: {data}\npath.repo: [\"{snaps}\"]\n\
                     network.host: 127.0.0.1\nhttp.port: {port}\n\
                     opendistro_security.ssl.http.enabled: true\nopendistro_security.ssl.http.pemcert_filepath: node.pem\n\
                     opendistro_security.ssl.http.pemkey_filepath: node-key.pem\n\
                     opendistro_security.ssl.http.pemtrustedcas_filepath: root-ca.pem\n",
                    data = dir.path().join("data").display(),
                    snaps = snaps.display(),
                ),
            )
            .unwrap();
            support::es::spawn_standin(
                &conf.join("elasticsearch.yml"),
                &["--basic-auth".into(), format!("{user}:{password}")],
            )
        },
    );
    let since = std::time::SystemTime::now() - Duration::from_secs(2);
    let args = [
        "--only".to_string(),
        "elasticsearch".into(),
        "--set".into(),
        format!("elasticsearch.elasticsearch_config_dir={}", conf.display()),
        "--set".into(),
        format!("elasticsearch.elasticsearch_user={user}"),
        "--set".into(),
        format!("elasticsearch.elasticsearch_password={password}"),
    ];
    let run = backup(&args);
    let plan = Command::new(support::bin())
        .arg("plan")
        .args(&args)
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
        run.errors_of("elasticsearch")
    );
    let h = host(&run, "elasticsearch", NODE);
    // auto: https on 127.0.0.1 answered first, verified with the config dir's root-ca.pem
    assert!(
        h.commands
            .iter()
            .any(|c| c.command == format!("GET https://127.0.0.1:{port}/_cluster/health")),
        "{:?}",
        h.commands
    );
    let repo = run.file(&format!(
        "elasticsearch/{NODE}/{}",
        snaps.display().to_string().trim_start_matches('/')
    ));
    assert!(repo.join("index.latest").is_file(), "{}", repo.display());

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
    for d in ["/tmp", "/var/tmp"] {
        let left = files_holding(Path::new(d), &password, since);
        assert!(left.is_empty(), "the password is in {left:?}");
    }
}
