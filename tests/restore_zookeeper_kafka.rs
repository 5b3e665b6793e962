//! `lsbackup restore` of ZooKeeper and Kafka on the test bed (tests/testbed/up.sh): the real
//! ZooKeeper 3.8 on node1, run by Debian's /etc/init.d/zookeeper (svc_zookeeper.sh), and the
//! Kafka stand-in broker on node2 (svc_kafka.sh: the real log dir layout, a broker process that
//! holds the log dir and its listener, stopped and started by kafka-server-{stop,start}.sh).
//!
//! Each test backs its component up, damages what the backup holds (znodes deleted, changed and
//! added; a partition dir removed and a segment altered), checks that `--dry-run` changes
//! nothing (same data, same server process), then restores with `--yes` and compares with what
//! was there before the damage: every znode under /lsbackup-testbed with its data and stat, every
//! file of the Kafka log dir byte for byte; the server runs again (a new process) and answers,
//! and the damaged data is kept beside as DIR.lsbackup-<time> (removed by the test). What must be
//! refused (a ZooKeeper ensemble, another broker's data) is refused before anything is changed.
//!
//! The tests stop and start the services, so they run one at a time (a lock).

mod common;
mod support;

use support::{kept_beside as kept_dirs, transcript};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use lsbackup::archive::Status;

const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";
const ZK_PID_FILE: &str = "/var/run/zookeeper/zookeeper.pid";
const ZK_ROOT: &str = "/lsbackup-testbed";

static SERVICES: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERVICES.lock().unwrap_or_else(|e| e.into_inner())
}

/// `lsbackup restore ARCHIVE -b BUILD ARGS...` with the test bed's known_hosts, no agent and a
/// HOME of its own.
fn restore(archive: &Path, args: &[&str]) -> Output {
    support::restore(&common::testbed().build_dir(), archive, args)
}

/// The pid a pid file names, if that process runs.
fn live_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    (!stat.contains(") Z ")).then_some(pid)
}

// --- ZooKeeper ------------------------------------------------------------------------------

/// zkCli.sh against the test bed's server with `commands` on its stdin (one session); stdout.
fn zkcli(commands: &str) -> String {
    let port = common::testbed().var("LSB_ZK_PORT");
    let mut child = Command::new(ZKCLI)
        .current_dir("/")
        .arg("-server")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running zkCli.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{commands}quit\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every znode under [`ZK_ROOT`] with its data and stat (`get -s`), read in one zkCli session.
fn znodes() -> BTreeMap<String, String> {
    let listing = zkcli(&format!("ls -R {ZK_ROOT}\n"));
    let mut paths: Vec<String> = listing
        .lines()
        .filter(|l| *l == ZK_ROOT || l.starts_with(&format!("{ZK_ROOT}/")))
        .map(str::to_string)
        .collect();
    paths.sort();
    paths.dedup();
    assert!(paths.len() > 100, "ls -R {ZK_ROOT}: {listing}");
    let cmds: String = paths.iter().map(|p| format!("get -s {p}\n")).collect();
    let out = zkcli(&cmds);
    // each answer: the data lines, then the stat from "cZxid = " to "numChildren = "
    let body = out
        .split_once("state:SyncConnected type:None path:null\n")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("zkCli did not connect: {out}"));
    let mut answers = Vec::new();
    let mut cur = String::new();
    for line in body.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("numChildren = ") {
            answers.push(std::mem::take(&mut cur));
        }
    }
    assert_eq!(
        answers.len(),
        paths.len(),
        "one get -s answer per znode: {out}"
    );
    paths.into_iter().zip(answers).collect()
}

/// The server's answer to `srvr`, "" when nothing answers.
fn srvr() -> String {
    let port: u16 = common::testbed().var("LSB_ZK_PORT").parse().unwrap();
    let Ok(mut s) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"srvr").is_err() {
        return String::new();
    }
    let mut ans = String::new();
    let _ = s.read_to_string(&mut ans);
    ans
}

#[test]
fn zookeeper_restore_puts_the_znodes_back_and_dry_run_changes_nothing() {
    let _l = lock();
    let tb = common::testbed();
    let data_dir = PathBuf::from(tb.var("LSB_ZK_DATA_DIR"));
    let id = support::unique("restore");
    let mine = format!("{ZK_ROOT}/{id}");
    let created = zkcli(&format!(
        "create {mine} \"before the backup {id}\"\ncreate {mine}/a \"child a\"\ncreate {mine}/b \"child b\"\n"
    ));
    let before = znodes();
    assert_eq!(
        before
            .get(&format!("{mine}/a"))
            .and_then(|t| t.lines().next()),
        Some("child a"),
        "{created}"
    );

    let run = support::backup(&tb.build_dir(), &["--only", "zookeeper"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("zookeeper").status, Status::Ok);
    let archive = run.archive.clone().unwrap();

    // damage: a subtree deleted, data changed, znodes added and removed
    zkcli(&format!(
        "deleteall {mine}\nset {ZK_ROOT}/config \"changed after the backup\"\ncreate {ZK_ROOT}/after-{id} x\ndelete {ZK_ROOT}/items/item-007\n"
    ));
    let damaged = znodes();
    assert!(!damaged.contains_key(&mine) && damaged.contains_key(&format!("{ZK_ROOT}/after-{id}")));
    assert_ne!(damaged, before);
    let pid = live_pid(Path::new(ZK_PID_FILE)).expect("ZooKeeper runs by /etc/init.d/zookeeper");
    let kept_before = kept_dirs(&data_dir);

    // a dry run says what it would do and changes nothing
    let dry = restore(&archive, &["--dry-run", "--only", "zookeeper"]);
    let out = transcript(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out}");
    for want in [
        format!("would stop ZooKeeper (pid {pid}, /etc/init.d/zookeeper stop)"),
        format!("would replace directory {}", data_dir.display()),
        "would start ZooKeeper (/etc/init.d/zookeeper start)".to_string(),
        "dry run: nothing was changed".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} in {out}");
    }
    assert_eq!(live_pid(Path::new(ZK_PID_FILE)), Some(pid), "{out}");
    assert_eq!(kept_dirs(&data_dir), kept_before);
    assert_eq!(znodes(), damaged);

    // the restore: stopped, data back, started, serving what the backup held
    let done = restore(&archive, &["--yes", "--only", "zookeeper"]);
    let out = transcript(&done);
    assert_eq!(done.status.code(), Some(0), "{out}");
    assert!(out.contains("restore complete: 1 of 1 restored"), "{out}");
    assert!(
        out.contains("ZooKeeper serves on 127.0.0.1:2181 again"),
        "{out}"
    );
    let new_pid = live_pid(Path::new(ZK_PID_FILE)).expect("ZooKeeper runs again");
    assert_ne!(new_pid, pid, "a new server process");
    assert!(srvr().contains("Mode: standalone"), "srvr: {}", srvr());
    let after = znodes();
    assert_eq!(after.len(), before.len());
    for (path, want) in &before {
        assert_eq!(after.get(path), Some(want), "{path}");
    }
    assert_eq!(after, before);

    // the damaged data dir is kept beside
    let kept: Vec<PathBuf> = kept_dirs(&data_dir)
        .into_iter()
        .filter(|p| !kept_before.contains(p))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}\n{out}");
    assert!(kept[0].join("version-2").is_dir());
    assert!(out.contains(&format!("{}", kept[0].display())), "{out}");
    std::fs::remove_dir_all(&kept[0]).unwrap();
    zkcli(&format!("deleteall {mine}\n"));
    purge_restored_logs(&data_dir, &format!("{ZK_ROOT}/purge-{id}"));
}

/// The restored transaction logs are their used part, without the preallocated padding (the
/// backup stores them so; ZooKeeper reads them as they are and pads the new logs it starts).
/// The test bed's other tests expect only padded logs: write enough transactions for ZooKeeper
/// to take several snapshots (each starting a new, padded log), then purge what is older than
/// the last three snapshots, as zkCleanup.sh does.
fn purge_restored_logs(data_dir: &Path, scratch: &str) {
    let unpadded = || -> Vec<String> {
        std::fs::read_dir(data_dir.join("version-2"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("log."))
            .filter(|e| e.metadata().unwrap().len() < 64 << 20)
            .map(|e| e.path().display().to_string())
            .collect()
    };
    for _ in 0..6 {
        if unpadded().is_empty() {
            return;
        }
        let mut cmds = format!("create {scratch} x\n");
        for i in 0..200 {
            cmds.push_str(&format!("create {scratch}/n{i} x\n"));
        }
        cmds.push_str(&format!("deleteall {scratch}\n"));
        zkcli(&cmds);
        let out = Command::new("/usr/bin/java")
            .arg("-cp")
            .arg("/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar")
            .arg("org.apache.zookeeper.server.PurgeTxnLog")
            .arg(data_dir)
            .arg(data_dir)
            .args(["-n", "3"])
            .current_dir("/")
            .output()
            .expect("running PurgeTxnLog");
        assert!(out.status.success(), "PurgeTxnLog: {}", transcript(&out));
    }
    assert_eq!(
        unpadded(),
        Vec::<String>::new(),
        "restored logs left after the purge"
    );
}

// --- Kafka ----------------------------------------------------------------------------------

fn kafka_log_dir() -> PathBuf {
    PathBuf::from(common::testbed().var("LSB_KAFKA_LOG_DIRS"))
}

fn broker_pid() -> Option<u32> {
    let logs = PathBuf::from(common::testbed().var("LSB_KAFKA_STANDIN_LOGS"));
    live_pid(&logs.join("lsbackup-standin-broker.pid"))
}

fn broker_listens() -> bool {
    let addr: SocketAddr = common::testbed().var("LSB_KAFKA_LISTENER").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Every regular file of the log dir (relative path, content) but the broker's own lock and
/// clean-shutdown marker and the stand-in's stop-delay switch.
fn log_files() -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(base, &p, out);
            } else if t.is_file()
                && ![
                    ".lock",
                    ".kafka_cleanshutdown",
                    "lsbackup-standin-stop-delay",
                ]
                .contains(&rel.as_str())
            {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&kafka_log_dir(), &kafka_log_dir(), &mut out);
    out
}

#[test]
fn kafka_restore_puts_the_log_dir_back_and_dry_run_changes_nothing() {
    let _l = lock();
    let tb = common::testbed();
    let dir = kafka_log_dir();
    let pid = broker_pid().expect("the Kafka stand-in broker runs (tests/testbed/up.sh)");
    assert!(broker_listens());
    let before = log_files();
    assert!(
        before.keys().any(|k| k.ends_with(".log")) && before.contains_key("meta.properties"),
        "{:?}",
        before.keys()
    );

    let run = support::backup(&tb.build_dir(), &["--only", "kafka"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    assert_eq!(run.component("kafka").status, Status::Ok);
    let archive = run.archive.clone().unwrap();

    // damage: a partition dir removed, a segment of another one altered
    let partitions: Vec<String> = before
        .keys()
        .filter_map(|k| k.split_once('/').map(|(d, _)| d.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(partitions.len() >= 2, "{partitions:?}");
    let gone = &partitions[0];
    std::fs::remove_dir_all(dir.join(gone)).unwrap();
    let segment = before
        .keys()
        .find(|k| k.starts_with(&format!("{}/", partitions[1])) && k.ends_with(".log"))
        .unwrap()
        .clone();
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(&segment))
        .unwrap()
        .write_all(b"written after the backup")
        .unwrap();
    let damaged = log_files();
    assert_ne!(damaged, before);
    let kept_before = kept_dirs(&dir);

    // a dry run changes nothing
    let dry = restore(&archive, &["--dry-run", "--only", "kafka"]);
    let out = transcript(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out}");
    for want in [
        format!("would stop the broker (pid {pid};"),
        format!("would wait until pid {pid} exits"),
        format!("would replace directory {}", dir.display()),
        "would start the broker".to_string(),
        "dry run: nothing was changed".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} in {out}");
    }
    assert_eq!(broker_pid(), Some(pid), "{out}");
    assert_eq!(log_files(), damaged);
    assert_eq!(kept_dirs(&dir), kept_before);

    // the restore
    let done = restore(&archive, &["--yes", "--only", "kafka"]);
    let out = transcript(&done);
    assert_eq!(done.status.code(), Some(0), "{out}");
    assert!(out.contains("restore complete: 1 of 1 restored"), "{out}");
    assert!(
        out.contains("the broker accepts connections on 127.0.0.3:9092 again"),
        "{out}"
    );
    let new_pid = broker_pid().expect("the broker runs again");
    assert_ne!(new_pid, pid);
    assert!(broker_listens());
    let after = log_files();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (rel, bytes) in &before {
        assert!(
            after.get(rel) == Some(bytes),
            "{rel} differs after the restore"
        );
    }

    // the damaged log dir is kept beside, as it was
    let kept: Vec<PathBuf> = kept_dirs(&dir)
        .into_iter()
        .filter(|p| !kept_before.contains(p))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}\n{out}");
    assert!(!kept[0].join(gone).exists());
    assert_eq!(
        std::fs::read(kept[0].join(&segment)).unwrap(),
        damaged[&segment]
    );
    std::fs::remove_dir_all(&kept[0]).unwrap();
}

// --- refused before anything is changed -----------------------------------------------------

#[test]
fn zookeeper_ensemble_is_refused_and_nothing_changes() {
    let _l = lock();
    let tb = common::testbed();
    let data_dir = PathBuf::from(tb.var("LSB_ZK_DATA_DIR"));
    let run = support::backup(&tb.build_dir(), &["--only", "zookeeper"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    // the test bed's zoo.cfg made one server of an ensemble of two
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zoo.cfg");
    let mut text =
        std::fs::read_to_string(Path::new(tb.var("LSB_ZK_CONF_DIR")).join("zoo.cfg")).unwrap();
    text.push_str("server.1=127.0.0.2:2888:3888\nserver.2=127.0.0.9:2888:3888\n");
    std::fs::write(&cfg, text).unwrap();
    let pid = live_pid(Path::new(ZK_PID_FILE)).expect("ZooKeeper runs");
    let kept_before = kept_dirs(&data_dir);
    let set = format!("zookeeper.zookeeper_config_file={}", cfg.display());
    let out = restore(
        run.archive.as_deref().unwrap(),
        &["--yes", "--only", "zookeeper", "--set", &set],
    );
    let t = transcript(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("ensemble of 2 (server.1, server.2)") && t.contains("nothing was changed"),
        "{t}"
    );
    assert!(!t.contains("stop ZooKeeper"), "{t}");
    assert_eq!(live_pid(Path::new(ZK_PID_FILE)), Some(pid));
    assert_eq!(kept_dirs(&data_dir), kept_before);
    assert!(srvr().contains("Mode: standalone"));
}

#[test]
fn another_brokers_data_is_refused_and_nothing_changes() {
    let _l = lock();
    let tb = common::testbed();
    let dir = kafka_log_dir();
    let run = support::backup(&tb.build_dir(), &["--only", "kafka"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    // the broker's config file as it would be if this host were broker 2
    let tmp = tempfile::tempdir().unwrap();
    let props = tmp.path().join("server.properties");
    let text = std::fs::read_to_string(tb.var("LSB_KAFKA_CONFIG")).unwrap();
    assert!(text.contains("\nbroker.id=1\n"));
    std::fs::write(&props, text.replace("\nbroker.id=1\n", "\nbroker.id=2\n")).unwrap();
    let pid = broker_pid().expect("the broker runs");
    let files = log_files();
    let kept_before = kept_dirs(&dir);
    let set = format!("kafka.kafka_config_file={}", props.display());
    let out = restore(
        run.archive.as_deref().unwrap(),
        &["--yes", "--only", "kafka", "--set", &set],
    );
    let t = transcript(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("meta.properties is of broker.id 1, this broker is 2"),
        "{t}"
    );
    assert!(!t.contains("stop the broker"), "{t}");
    assert_eq!(broker_pid(), Some(pid));
    assert!(broker_listens());
    assert_eq!(log_files(), files);
    assert_eq!(kept_dirs(&dir), kept_before);
}
