//! `lsbackup restore` of Prometheus and RabbitMQ on the real test bed (tests/testbed/up.sh).
//!
//! Prometheus (node3, Prometheus 2.42 started by hand as user prometheus, no systemd): back up,
//! delete a series through the admin API and change a rule file, check that a dry run changes
//! nothing, restore: the process is stopped, the data dir replaced by the snapshot (the old one
//! kept beside), the same command line started again as the same user, and the deleted
//! series' samples are back, sample for sample (queried through the HTTP API); the rule file is
//! back with the changed one kept beside it. A local user's program named `prometheus` running
//! meanwhile is asked for its flags' defaults as that user, never as root.
//!
//! RabbitMQ (node1, RabbitMQ 3.10): a vhost of the test's own with queues, an exchange, a
//! binding, a policy and a user with permissions; back up, delete the vhost and the user and
//! change rabbitmq.conf, check the dry run, restore: `rabbitmqctl import_definitions` brings
//! them back (compared with what `rabbitmqctl --formatter json list_*` said before, parsed with
//! serde; the user's password works again), rabbitmq.conf is back with the changed one kept
//! beside it and a note says to restart the node.

mod common;
mod support;

use support::{archive_of, kept_beside, transcript as text};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Puts a file's content back on drop (also when the test fails), and removes kept copies.
struct FileGuard {
    path: PathBuf,
    content: Vec<u8>,
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        if std::fs::read(&self.path).ok().as_deref() != Some(&self.content[..]) {
            let _ = std::fs::write(&self.path, &self.content);
        }
        for k in kept_beside(&self.path) {
            let _ = std::fs::remove_file(k);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: u32,
    uid: u32,
    cwd: PathBuf,
    args: Vec<String>,
}

/// A local user's program named `prometheus` (user nobody, its own executable in a dir of its
/// own, no flags): restore reads its flags' defaults from `EXE --help`, which must run as that
/// user, never as root. Its `--help` appends the uid it ran as to `ran_as`; killed on drop.
struct FakePrometheus {
    child: std::process::Child,
    ran_as: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakePrometheus {
    fn start() -> FakePrometheus {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("lsb-fake-prom")
            .tempdir_in("/tmp")
            .unwrap();
        let open = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(dir.path(), open).unwrap();
        let ran_as = dir.path().join("ran-as");
        let exe = support::compile_c(
            dir.path(),
            "prometheus",
            r#"#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help")) {
      FILE *f = fopen(RAN_AS, "a");
      if (f) { fprintf(f, "%d\n", (int)getuid()); fclose(f); }
      return 0;
    }
  for (;;) pause();
}
"#,
            &[format!("-DRAN_AS=\"{}\"", ran_as.display())],
        );
        let child = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&exe)
            .spawn()
            .unwrap();
        // running under its own name before the restore looks for it
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "prometheus" {
            assert!(
                Instant::now() < deadline,
                "the fake prometheus did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        FakePrometheus {
            child,
            ran_as,
            _dir: dir,
        }
    }

    /// The uids its `--help` ran as, one per run.
    fn help_ran_as(&self) -> Vec<String> {
        std::fs::read_to_string(&self.ran_as)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Prometheus process using `data` (its `--storage.tsdb.path`), read from /proc.
fn prometheus_using(data: &str) -> Option<Proc> {
    use std::os::unix::fs::MetadataExt;
    let flag = format!("--storage.tsdb.path={data}");
    for e in std::fs::read_dir("/proc").unwrap() {
        let e = e.unwrap();
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) else {
            continue;
        };
        if comm.trim() != "prometheus" {
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            continue;
        }
        let raw = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = raw
            .strip_suffix(b"\0")
            .unwrap_or(&raw)
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a.trim_end_matches('/') == flag) {
            return Some(Proc {
                pid,
                uid: std::fs::metadata(e.path()).unwrap().uid(),
                cwd: std::fs::read_link(e.path().join("cwd")).unwrap(),
                args,
            });
        }
    }
    None
}

/// Keeps the test bed's record of its Prometheus (pids/prometheus.pid, read by up.sh and
/// down.sh) on the process that runs after the restore, and removes the kept data dir.
struct PrometheusRecord {
    data: PathBuf,
}

impl Drop for PrometheusRecord {
    fn drop(&mut self) {
        let tb = common::testbed();
        if let Some(p) = prometheus_using(&self.data.display().to_string()) {
            let exe = std::fs::read_link(format!("/proc/{}/exe", p.pid)).unwrap();
            let _ = std::fs::write(
                tb.dir().join("pids/prometheus.pid"),
                format!("{}\n{}\n", p.pid, exe.display()),
            );
        }
        for k in kept_beside(&self.data) {
            let _ = std::fs::remove_dir_all(k);
        }
    }
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "10", "-g"])
        .args(args)
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[derive(Deserialize)]
struct QueryAnswer {
    status: String,
    data: QueryData,
}

#[derive(Deserialize)]
struct QueryData {
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the instant query `q` at `time` (seconds), 0 when it has no result.
fn query_at(url: &str, q: &str, time: i64) -> f64 {
    let body = curl(&[&format!(
        "{url}/api/v1/query?query={}&time={time}",
        urlencode(q)
    )]);
    let a: QueryAnswer = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    assert_eq!(a.status, "success");
    a.data
        .result
        .iter()
        .map(|s| s.value.1.parse::<f64>().unwrap())
        .sum()
}

fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "--max-time", "2"])
        .arg(format!("{url}/-/ready"))
        .status()
        .is_ok_and(|s| !s.success())
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready within 120s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_data_dir_replaced_from_the_snapshot_and_restarted_as_it_ran() {
    let tb = common::testbed();
    let url = tb.var("LSB_PROMETHEUS_URL").to_string();
    let data = PathBuf::from(tb.var("LSB_PROMETHEUS_DATA_DIR"));
    let data_s = data.display().to_string();
    let rules = Path::new("/etc/prometheus/rules/testbed.yml");
    let _record = PrometheusRecord { data: data.clone() };
    let rules_before = std::fs::read(rules).unwrap();
    let _rules_guard = FileGuard {
        path: rules.to_path_buf(),
        content: rules_before.clone(),
    };
    wait_ready(&url);
    let before = prometheus_using(&data_s).expect("the test bed's Prometheus runs");

    // Samples until `mark`, all of them in the snapshot taken after it.
    let mark = jiff::Timestamp::now().as_second() - 1;
    let up = r#"sum(count_over_time(up{job="prometheus"}[6h]))"#;
    let head = r#"sum(count_over_time(prometheus_tsdb_head_series{job="prometheus"}[6h]))"#;
    let up_before = query_at(&url, up, mark);
    let head_before = query_at(&url, head, mark);
    assert!(up_before > 10.0, "{up_before} samples of up");
    let run = support::backup(&tb.build_dir(), &["--only", "prometheus"]);
    let archive = archive_of(&run);

    // Destroy: the series of `up` deleted (tombstones cleaned), a rule file changed.
    curl(&[
        "-X",
        "POST",
        &format!(
            "{url}/api/v1/admin/tsdb/delete_series?match[]={}",
            urlencode(r#"up{job="prometheus"}"#)
        ),
    ]);
    curl(&[
        "-X",
        "POST",
        &format!("{url}/api/v1/admin/tsdb/clean_tombstones"),
    ]);
    assert_eq!(query_at(&url, up, mark), 0.0, "up deleted");
    let mut changed = rules_before.clone();
    changed.extend_from_slice(b"# changed after the backup\n");
    std::fs::write(rules, &changed).unwrap();

    // A local user's program named prometheus runs meanwhile.
    let fake = FakePrometheus::start();
    let nobody = String::from_utf8(
        Command::new("id")
            .args(["-u", "nobody"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();

    // The dry run says what it would do and changes nothing.
    let dry = support::restore(
        &tb.build_dir(),
        &archive,
        &["--only", "prometheus", "--dry-run"],
    );
    let t = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{t}");
    for want in [
        &format!("Prometheus runs as pid {}", before.pid),
        &format!("would replace {} (current kept as", rules.display()),
        &format!("would stop Prometheus (SIGTERM to pid {}", before.pid),
        &format!("would replace directory {data_s} with "),
        "would start Prometheus as prometheus in",
        "would wait for Prometheus to be ready",
        "dry run: nothing was changed",
    ] {
        assert!(t.contains(want), "{want:?} in:\n{t}");
    }
    assert_eq!(prometheus_using(&data_s).map(|p| p.pid), Some(before.pid));
    assert_eq!(query_at(&url, up, mark), 0.0);
    assert_eq!(std::fs::read(rules).unwrap(), changed);
    assert!(kept_beside(rules).is_empty() && kept_beside(&data).is_empty());

    // The restore.
    let started = Instant::now();
    let out = support::restore(
        &tb.build_dir(),
        &archive,
        &["--only", "prometheus", "--yes"],
    );
    let took = started.elapsed();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for want in [
        &format!("replace {} (current kept as", rules.display()),
        "checked the configuration (promtool check config /etc/prometheus/prometheus.yml)",
        &format!("stop Prometheus (SIGTERM to pid {}", before.pid),
        &format!("replace directory {data_s} with "),
        "start Prometheus as prometheus in /",
        "Prometheus is ready after",
        &format!("the previous data dir is kept as {data_s}.lsbackup-"),
        "restore complete: 1 of 1 restored",
    ] {
        assert!(t.contains(want), "{want:?} in:\n{t}");
    }
    // the fake's --help ran (to learn its defaults), as its own user each time, never as root
    let ran_as = fake.help_ran_as();
    assert!(
        !ran_as.is_empty(),
        "the fake prometheus was not asked for its defaults"
    );
    assert!(
        ran_as.iter().all(|u| *u == nobody),
        "--help ran as {ran_as:?}"
    );
    assert!(!t.contains(&format!("pid {}", fake.child.id())), "{t}");
    drop(fake);
    // the same command line, user and directory, a new process
    let after = prometheus_using(&data_s).expect("Prometheus runs after the restore");
    assert_ne!(after.pid, before.pid);
    assert_eq!(
        (&after.args, after.uid, &after.cwd),
        (&before.args, before.uid, &before.cwd)
    );
    wait_ready(&url);
    // the deleted samples are back, and the rest is as it was
    let up_after = query_at(&url, up, mark);
    let head_after = query_at(&url, head, mark);
    assert_eq!(up_after, up_before, "samples of up until the backup");
    assert_eq!(head_after, head_before);
    // the previous data dir is kept beside (without the deleted samples)
    let kept = kept_beside(&data);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].join("wal").is_dir(), "{kept:?}");
    // the rule file is back, the changed one beside it
    assert_eq!(std::fs::read(rules).unwrap(), rules_before);
    let kept = kept_beside(rules);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), changed);
    eprintln!(
        "prometheus restore: {up_after} samples of up back, restore took {:.1}s",
        took.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ

fn rabbitmqctl(args: &[&str]) -> Output {
    let node = common::testbed().var("LSB_RABBITMQ_NODE");
    Command::new("rabbitmqctl")
        .current_dir("/")
        .args(["-q", "-n", node])
        .args(args)
        .output()
        .expect("running rabbitmqctl")
}

fn rabbitmqctl_ok(args: &[&str]) -> Vec<u8> {
    let out = rabbitmqctl(args);
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", text(&out));
    out.stdout
}

/// `rabbitmqctl --formatter json list_... -p VHOST COLUMNS`, parsed.
fn list<T: for<'de> Deserialize<'de> + Ord>(
    what: &str,
    vhost: Option<&str>,
    cols: &[&str],
) -> Vec<T> {
    let mut args = vec!["--formatter", "json", what];
    if let Some(v) = vhost {
        args.extend(["-p", v]);
    }
    args.extend(cols);
    let out = rabbitmqctl_ok(&args);
    let mut v: Vec<T> = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out)));
    v.sort();
    v
}

/// A JSON value as canonical text (objects with sorted keys), so rows can be sorted and compared.
fn canonical<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.to_string())
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct QueueRow {
    name: String,
    durable: bool,
    auto_delete: bool,
    #[serde(deserialize_with = "canonical")]
    arguments: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct ExchangeRow {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    durable: bool,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct BindingRow {
    source_name: String,
    destination_name: String,
    destination_kind: String,
    routing_key: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct UserRow {
    user: String,
    #[serde(deserialize_with = "canonical")]
    tags: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct PermissionRow {
    user: String,
    configure: String,
    write: String,
    read: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct PolicyRow {
    name: String,
    pattern: String,
    #[serde(deserialize_with = "canonical")]
    definition: String,
}

#[derive(Debug, PartialEq)]
struct VhostState {
    queues: Vec<QueueRow>,
    exchanges: Vec<ExchangeRow>,
    bindings: Vec<BindingRow>,
    permissions: Vec<PermissionRow>,
    policies: Vec<PolicyRow>,
}

fn vhost_state(vhost: &str) -> VhostState {
    VhostState {
        queues: list(
            "list_queues",
            Some(vhost),
            &["name", "durable", "auto_delete", "arguments"],
        ),
        exchanges: list("list_exchanges", Some(vhost), &["name", "type", "durable"]),
        bindings: list(
            "list_bindings",
            Some(vhost),
            &[
                "source_name",
                "destination_name",
                "destination_kind",
                "routing_key",
            ],
        ),
        permissions: list("list_permissions", Some(vhost), &[]),
        policies: list("list_policies", Some(vhost), &[]),
    }
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct NameRow {
    name: String,
}

fn vhosts() -> BTreeSet<String> {
    list::<NameRow>("list_vhosts", None, &["name"])
        .into_iter()
        .map(|r| r.name)
        .collect()
}

fn users() -> BTreeSet<String> {
    list::<UserRow>("list_users", None, &[])
        .into_iter()
        .map(|r| r.user)
        .collect()
}

/// Removes the test's vhost and user, and what the restore brought back that was gone before
/// it (other tests' objects present at backup time), also when the test fails.
struct RabbitCleanup {
    vhosts: Vec<String>,
    users: Vec<String>,
}

impl Drop for RabbitCleanup {
    fn drop(&mut self) {
        for v in &self.vhosts {
            let _ = rabbitmqctl(&["delete_vhost", v]);
        }
        for u in &self.users {
            let _ = rabbitmqctl(&["delete_user", u]);
        }
    }
}

#[test]
fn rabbitmq_definitions_imported_back_and_config_file_restored() {
    let tb = common::testbed();
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let vhost = format!("lsbackup_restore_vhost_{id}");
    let user = format!("lsbackup_restore_user_{id}");
    let password = format!("lsbackup-restore-password-{id}");
    let mut cleanup = RabbitCleanup {
        vhosts: vec![vhost.clone()],
        users: vec![user.clone()],
    };
    let conf = Path::new("/etc/rabbitmq/rabbitmq.conf");
    let conf_before = std::fs::read(conf).unwrap();
    let _conf_guard = FileGuard {
        path: conf.to_path_buf(),
        content: conf_before.clone(),
    };

    // The test's own objects: a vhost with two queues, an exchange, bindings and a policy.
    rabbitmqctl_ok(&["add_vhost", &vhost]);
    rabbitmqctl_ok(&["add_user", &user, &password]);
    rabbitmqctl_ok(&["set_user_tags", &user, "monitoring"]);
    rabbitmqctl_ok(&["set_permissions", "-p", &vhost, &user, "^r-.*", ".*", "^x"]);
    rabbitmqctl_ok(&[
        "set_policy",
        "-p",
        &vhost,
        "restore-max-length",
        "^r\\.",
        r#"{"max-length":500}"#,
        "--apply-to",
        "queues",
    ]);
    let setup = tempfile::tempdir().unwrap();
    let defs = setup.path().join("defs.json");
    std::fs::write(
        &defs,
        serde_json::json!({
            "queues": [
                {"name": "r.orders", "vhost": vhost, "durable": true, "auto_delete": false,
                 "arguments": {"x-queue-type": "classic", "x-max-priority": 5}},
                {"name": "r.audit", "vhost": vhost, "durable": true, "auto_delete": false,
                 "arguments": {}}
            ],
            "exchanges": [
                {"name": "r.shop", "vhost": vhost, "type": "topic", "durable": true,
                 "auto_delete": false, "internal": false, "arguments": {}}
            ],
            "bindings": [
                {"source": "r.shop", "vhost": vhost, "destination": "r.orders",
                 "destination_type": "queue", "routing_key": "order.#", "arguments": {}},
                {"source": "r.shop", "vhost": vhost, "destination": "r.audit",
                 "destination_type": "queue", "routing_key": "#", "arguments": {}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    // readable by the rabbitmq user (Debian's rabbitmqctl switches to it)
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(setup.path())
        .status()
        .unwrap();
    rabbitmqctl_ok(&["import_definitions", &defs.display().to_string()]);
    let before = vhost_state(&vhost);
    assert_eq!(before.queues.len(), 2, "{before:?}");
    assert!(
        before.exchanges.iter().any(|e| e.name == "r.shop"),
        "{before:?}"
    );
    assert_eq!(
        before
            .bindings
            .iter()
            .filter(|b| b.source_name == "r.shop")
            .count(),
        2,
        "{before:?}"
    );
    let users_before: Vec<UserRow> = list("list_users", None, &[]);
    let my_user_before: Vec<&UserRow> = users_before.iter().filter(|u| u.user == user).collect();
    assert_eq!(my_user_before.len(), 1);

    let run = support::backup(&tb.build_dir(), &["--only", "rabbitmq"]);
    let archive = archive_of(&run);

    // Destroy: the vhost (its queues, exchange, bindings, policy, permissions) and the user;
    // change rabbitmq.conf.
    rabbitmqctl_ok(&["delete_vhost", &vhost]);
    rabbitmqctl_ok(&["delete_user", &user]);
    assert!(!vhosts().contains(&vhost) && !users().contains(&user));
    let mut changed = conf_before.clone();
    changed.extend_from_slice(b"# changed after the backup\n");
    std::fs::write(conf, &changed).unwrap();

    // The dry run says what it would do and changes nothing.
    let dry = support::restore(
        &tb.build_dir(),
        &archive,
        &["--only", "rabbitmq", "--dry-run"],
    );
    let t = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{t}");
    for want in [
        &format!("would replace {} (current kept as", conf.display()),
        "would import the definitions (",
        "dry run: nothing was changed",
    ] {
        assert!(t.contains(want), "{want:?} in:\n{t}");
    }
    assert!(!vhosts().contains(&vhost) && !users().contains(&user));
    assert_eq!(std::fs::read(conf).unwrap(), changed);
    assert!(kept_beside(conf).is_empty());

    // The restore.
    let vhosts_now = vhosts();
    let users_now = users();
    let out = support::restore(&tb.build_dir(), &archive, &["--only", "rabbitmq", "--yes"]);
    let t = text(&out);
    // what else the import brought back (other tests' objects gone since the backup) goes again
    cleanup.vhosts.extend(
        vhosts()
            .difference(&vhosts_now)
            .filter(|v| **v != vhost)
            .cloned(),
    );
    cleanup.users.extend(
        users()
            .difference(&users_now)
            .filter(|u| **u != user)
            .cloned(),
    );
    assert_eq!(out.status.code(), Some(0), "{t}");
    for want in [
        &format!("replace {} (current kept as", conf.display()),
        "RabbitMQ reads its configuration only when the node starts: restart the node",
        "import the definitions (",
        "the node has every definition of the backup",
        "restore complete: 1 of 1 restored",
    ] {
        assert!(t.contains(want), "{want:?} in:\n{t}");
    }
    assert_eq!(vhost_state(&vhost), before);
    let users_after: Vec<UserRow> = list("list_users", None, &[]);
    let my_user_after: Vec<&UserRow> = users_after.iter().filter(|u| u.user == user).collect();
    assert_eq!(my_user_after, my_user_before);
    // the password hash came back: the password works
    rabbitmqctl_ok(&["authenticate_user", &user, &password]);
    // the config file is back, the changed one beside it
    assert_eq!(std::fs::read(conf).unwrap(), conf_before);
    let kept = kept_beside(conf);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), changed);
}
