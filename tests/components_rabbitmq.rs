//! The `rabbitmq` component against the test bed's real RabbitMQ 3.10 (Debian `rabbitmq-server`
//! on node1, tests/testbed/svc_rabbitmq.sh: node rabbit@localhost, vhost, user, exchange, queues,
//! binding and policy imported at start). Needs `tests/testbed/up.sh`.
//!
//! The test adds a vhost, a user with permissions and a policy of its own with rabbitmqctl just
//! before the backup; all must be in the definitions that come back.

mod common;
mod support;

use support::build_dir_with_group;

use std::path::Path;
use std::process::Command;

use lsbackup::archive::{HostReport, Status};
use serde_json::Value;

const NODE: &str = "node1";

fn host(run: &support::Run) -> &HostReport {
    run.component("rabbitmq")
        .hosts
        .iter()
        .find(|h| h.host == NODE)
        .unwrap_or_else(|| {
            panic!(
                "no {NODE} in the rabbitmq report; stderr:\n{}",
                run.stderr()
            )
        })
}

fn rabbitmqctl(args: &[&str]) -> String {
    let node = common::testbed().var("LSB_RABBITMQ_NODE");
    let out = Command::new("rabbitmqctl")
        .current_dir("/")
        .args(["-q", "-n", node])
        .args(args)
        .output()
        .expect("running rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Objects of `defs[key]` whose fields equal all of `want`.
fn find<'a>(defs: &'a Value, key: &str, want: &[(&str, &str)]) -> Option<&'a Value> {
    defs[key]
        .as_array()
        .unwrap_or_else(|| panic!("definitions have no {key} array"))
        .iter()
        .find(|o| want.iter().all(|(k, v)| o[*k].as_str() == Some(*v)))
}

/// Removes what the test added, also when it fails.
struct Added {
    vhost: String,
    user: String,
}

impl Drop for Added {
    fn drop(&mut self) {
        let node = common::testbed().var("LSB_RABBITMQ_NODE").to_string();
        for args in [
            vec!["delete_vhost", self.vhost.as_str()],
            vec!["delete_user", self.user.as_str()],
        ] {
            let _ = Command::new("rabbitmqctl")
                .current_dir("/")
                .args(["-q", "-n", &node])
                .args(&args)
                .output();
        }
    }
}

#[test]
fn definitions_hold_the_vhosts_users_queues_and_policies() {
    let tb = common::testbed();
    let id = unique();
    let added = Added {
        vhost: format!("lsbackup_test_vhost_{id}"),
        user: format!("lsbackup_test_user_{id}"),
    };
    let password = format!("lsbackup-test-password-{id}");
    rabbitmqctl(&["add_vhost", &added.vhost]);
    rabbitmqctl(&["add_user", &added.user, &password]);
    rabbitmqctl(&[
        "set_permissions",
        "-p",
        &added.vhost,
        &added.user,
        "^test-.*",
        ".*",
        ".*",
    ]);
    rabbitmqctl(&[
        "set_policy",
        "-p",
        &added.vhost,
        "lsbackup-test-max-length",
        "^test\\.",
        r#"{"max-length":1000}"#,
        "--apply-to",
        "queues",
    ]);

    let run = support::backup(&tb.build_dir(), &["--only", "rabbitmq"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("rabbitmq");
    assert_eq!(c.status, Status::Ok, "{:?}", c.errors);
    let h = host(&run);
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    let server_version = rabbitmqctl(&["eval", "rabbit_misc:version()."]);
    let server_version = server_version.trim().trim_matches('"');
    assert_eq!(
        h.versions.get("rabbitmq").map(String::as_str),
        Some(server_version)
    );
    assert!(
        h.versions
            .get("erlang")
            .is_some_and(|v| v.starts_with("Erlang/OTP")),
        "{:?}",
        h.versions
    );

    let text = run.read(&format!("rabbitmq/{NODE}/definitions.json"));
    let defs: Value = serde_json::from_slice(&text).expect("definitions.json is JSON");
    assert_eq!(defs["rabbitmq_version"].as_str(), Some(server_version));

    // the test bed's definitions
    let vhost = tb.var("LSB_RABBITMQ_VHOST");
    let user = tb.var("LSB_RABBITMQ_USER");
    assert!(
        find(&defs, "vhosts", &[("name", vhost)]).is_some(),
        "vhost {vhost}"
    );
    let u = find(&defs, "users", &[("name", user)]).unwrap_or_else(|| panic!("user {user}"));
    assert!(
        u["password_hash"].as_str().is_some_and(|h| !h.is_empty()),
        "{u}"
    );
    assert!(
        find(
            &defs,
            "permissions",
            &[("user", user), ("vhost", vhost), ("configure", ".*")]
        )
        .is_some(),
        "permissions of {user}"
    );
    for q in tb.var("LSB_RABBITMQ_QUEUES").split(',') {
        let q = find(&defs, "queues", &[("name", q), ("vhost", vhost)])
            .unwrap_or_else(|| panic!("queue {q}"));
        assert_eq!(q["durable"], Value::Bool(true));
    }
    let ex = tb.var("LSB_RABBITMQ_EXCHANGE");
    let e = find(&defs, "exchanges", &[("name", ex), ("vhost", vhost)])
        .unwrap_or_else(|| panic!("exchange {ex}"));
    assert_eq!(e["type"].as_str(), Some("topic"));
    assert!(
        find(
            &defs,
            "bindings",
            &[
                ("source", ex),
                ("destination", "orders"),
                ("routing_key", "order.*"),
                ("vhost", vhost)
            ]
        )
        .is_some(),
        "binding {ex} -> orders"
    );
    let p = find(
        &defs,
        "policies",
        &[("name", "lsbackup-ttl"), ("vhost", vhost)],
    )
    .expect("policy lsbackup-ttl");
    assert_eq!(p["definition"]["message-ttl"], Value::from(60000));

    // what the test added just before
    assert!(
        find(&defs, "vhosts", &[("name", &added.vhost)]).is_some(),
        "vhost {}",
        added.vhost
    );
    assert!(
        find(&defs, "users", &[("name", &added.user)]).is_some(),
        "user {}",
        added.user
    );
    assert!(
        find(
            &defs,
            "permissions",
            &[
                ("user", &added.user),
                ("vhost", &added.vhost),
                ("configure", "^test-.*")
            ]
        )
        .is_some(),
        "permissions of {}",
        added.user
    );
    let p = find(
        &defs,
        "policies",
        &[
            ("name", "lsbackup-test-max-length"),
            ("vhost", &added.vhost),
        ],
    )
    .expect("the test's policy");
    assert_eq!(p["definition"]["max-length"], Value::from(1000));
    // passwords only as hashes, never in clear, nor in the manifest
    assert!(!String::from_utf8_lossy(&text).contains(&password));
    assert!(
        !run.read("manifest.json")
            .windows(password.len())
            .any(|w| w == password.as_bytes())
    );

    // cluster status: this node runs
    let status: Value =
        serde_json::from_slice(&run.read(&format!("rabbitmq/{NODE}/cluster_status.json")))
            .expect("cluster_status.json is JSON");
    let node = tb.var("LSB_RABBITMQ_NODE");
    assert!(
        status["running_nodes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == node)),
        "{status}"
    );

    // config files byte-identical
    for f in ["rabbitmq.conf", "rabbitmq-env.conf"] {
        let p = Path::new("/etc/rabbitmq").join(f);
        assert_eq!(
            run.read(&format!("rabbitmq/{NODE}/etc/rabbitmq/{f}")),
            std::fs::read(&p).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn node_not_running_fails_clearly_and_keeps_the_others() {
    let tb = common::testbed();
    // the CLI is pointed at a node that does not exist: as if RabbitMQ were down, without
    // stopping the real one
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "rabbitmq,haproxy",
            "--set",
            "rabbitmq.rabbitmq_node=rabbit@lsbackup-nonexistent",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let c = run.component("rabbitmq");
    assert_eq!(c.status, Status::Failed);
    let err = support::messages(&c.errors);
    assert!(
        err.contains("RabbitMQ node rabbit@lsbackup-nonexistent is not running")
            && err.contains("unable to connect"),
        "errors: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        run.stderr()
            .contains("rabbit@lsbackup-nonexistent is not running"),
        "stderr:\n{}",
        run.stderr()
    );
    assert!(!run.file("rabbitmq").exists());
    assert_eq!(run.component("haproxy").status, Status::Ok);
}

#[test]
fn once_per_cluster_on_the_first_node_that_runs() {
    let tb = common::testbed();
    // node3 first in the group, but "its" node does not run; node1's does
    let build = build_dir_with_group(
        "rabbitmq",
        &[
            &format!(
                "node3 ansible_host={} rabbitmq_node=rabbit@lsbackup-nonexistent",
                tb.host_of("node3")
            ),
            &format!("node1 ansible_host={}", tb.host_of("node1")),
            &format!("node2 ansible_host={}", tb.host_of("node2")),
        ],
    );
    let run = support::backup(build.path(), &["--only", "rabbitmq"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("rabbitmq");
    assert_eq!(c.status, Status::Ok, "{:?}", c.errors);
    let node3 = c.hosts.iter().find(|h| h.host == "node3").unwrap();
    assert_eq!(node3.status, Status::Skipped);
    assert!(
        node3.errors.iter().any(|e| e
            .message
            .contains("rabbit@lsbackup-nonexistent is not running")),
        "{:?}",
        node3.errors
    );
    assert_eq!(host(&run).status, Status::Ok);
    // once per cluster: node2 (also running) is not used
    let node2 = c.hosts.iter().find(|h| h.host == "node2").unwrap();
    assert_eq!(node2.status, Status::Skipped, "{node2:?}");
    assert!(!run.file("rabbitmq/node3").exists() && !run.file("rabbitmq/node2").exists());
    let defs: Value =
        serde_json::from_slice(&run.read(&format!("rabbitmq/{NODE}/definitions.json"))).unwrap();
    assert!(find(&defs, "vhosts", &[("name", tb.var("LSB_RABBITMQ_VHOST"))]).is_some());
}
