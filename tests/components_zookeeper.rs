//! The `zookeeper` component against the test bed's real ZooKeeper 3.8 (Debian `zookeeperd` on
//! node1, tests/testbed/svc_zookeeper.sh: /etc/zookeeper/conf -> conf_example, dataDir
//! /var/lib/zookeeper). Needs `tests/testbed/up.sh`.
//!
//! A znode written by the test just before the backup must come back: the data dir that comes
//! back is served by a second, temporary ZooKeeper (the real server, same jars, a spare port)
//! and the znode is read from it with zkCli.

mod common;
mod support;

use support::build_dir_with_group;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lsbackup::archive::{HostReport, Status};

const NODE: &str = "node1";
const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";

fn entry(path: &Path) -> String {
    format!(
        "zookeeper/{NODE}/{}",
        path.display().to_string().trim_start_matches('/')
    )
}

fn host(run: &support::Run) -> &HostReport {
    run.component("zookeeper")
        .hosts
        .iter()
        .find(|h| h.host == NODE)
        .unwrap_or_else(|| {
            panic!(
                "no {NODE} in the zookeeper report; stderr:\n{}",
                run.stderr()
            )
        })
}

/// Run zkCli.sh against `port` with one command; its stdout and stderr.
fn zkcli(port: u16, args: &[&str]) -> String {
    let out = Command::new(ZKCLI)
        .current_dir("/")
        .arg("-server")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running zkCli.sh");
    // zkCli prints data on stdout and "Created ..." / errors on stderr
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The answer to a four-letter word, or "" when nothing answers.
fn four_letter(port: u16, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    ) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut ans = String::new();
    let _ = s.read_to_string(&mut ans);
    ans
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if ft.is_dir() {
            copy_dir(&e.path(), &dest);
        } else if ft.is_file() {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The java command line of the test bed's running ZooKeeper (for the same classpath).
fn running_server_cmdline() -> Vec<String> {
    let tb = common::testbed();
    let pidfile = tb.dir().join("pids/zookeeper.pid");
    let text = std::fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("{}: {e}: run tests/testbed/up.sh", pidfile.display()));
    let pid = text.lines().next().unwrap().trim();
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the test bed's ZooKeeper runs");
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// A temporary real ZooKeeper serving a copied data dir on a spare port, killed on drop.
struct TempZooKeeper {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TempZooKeeper {
    fn start(data_dir: &Path) -> TempZooKeeper {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        copy_dir(data_dir, &data);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPortAddress=127.0.0.1\nclientPort={port}\n\
                 admin.enableServer=false\n4lw.commands.whitelist=srvr,ruok\n",
                data.display()
            ),
        )
        .unwrap();
        // the running server's JVM options and classpath, with our config as the argument
        let cmd = running_server_cmdline();
        let main = cmd
            .iter()
            .position(|a| a == "org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .expect("QuorumPeerMain in the test bed's ZooKeeper command line");
        let log = std::fs::File::create(dir.path().join("zookeeper.log")).unwrap();
        let child = Command::new(&cmd[0])
            .args(&cmd[1..=main])
            .arg(&cfg)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting a temporary ZooKeeper");
        let mut zk = TempZooKeeper {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !four_letter(port, "srvr").contains("Mode: standalone") {
            if let Ok(Some(st)) = zk.child.try_wait() {
                let log = std::fs::read_to_string(zk._dir.path().join("zookeeper.log"))
                    .unwrap_or_default();
                panic!("temporary ZooKeeper exited ({st}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "temporary ZooKeeper did not serve within 60s"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        zk
    }
}

impl Drop for TempZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn znodes_written_before_the_backup_are_in_the_copied_data_dir() {
    let tb = common::testbed();
    let port: u16 = tb.var("LSB_ZK_PORT").parse().unwrap();
    let conf_dir = PathBuf::from(tb.var("LSB_ZK_CONF_DIR"));
    let data_dir = PathBuf::from(tb.var("LSB_ZK_DATA_DIR"));

    // a znode of our own, written just before the backup
    let id = unique();
    let path = format!("/lsbackup-zk-test-{id}");
    let data = format!("lsbackup zookeeper test data {id}");
    let out = zkcli(port, &["create", &path, &data]);
    assert!(
        out.contains(&format!("Created {path}")),
        "zkCli create: {out}"
    );

    let run = support::backup(&tb.build_dir(), &["--only", "zookeeper"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("zookeeper");
    assert_eq!(c.status, Status::Ok, "{:?}", c.errors);
    let h = host(&run);
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    let srvr = four_letter(port, "srvr");
    let version = srvr
        .lines()
        .find_map(|l| l.strip_prefix("Zookeeper version: "))
        .unwrap()
        .split(['-', ','])
        .next()
        .unwrap();
    assert_eq!(
        h.versions.get("zookeeper").map(String::as_str),
        Some(version)
    );

    // config: Debian's /etc/zookeeper/conf is a symlink; the link and the directory it resolves
    // to both come back, with zoo.cfg and myid byte-identical
    let link = run.file(&entry(&conf_dir));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "{} should be the symlink",
        link.display()
    );
    let real = std::fs::canonicalize(&conf_dir).unwrap();
    assert_ne!(real, conf_dir);
    for f in ["zoo.cfg", "myid"] {
        assert_eq!(
            run.read(&entry(&real.join(f))),
            std::fs::read(real.join(f)).unwrap(),
            "{f}"
        );
    }

    // data: snapshots and transaction logs, and our znode's path and data in them
    let copied = run.file(&entry(&data_dir)).join("version-2");
    let snaps = files_named(&copied, "snapshot.");
    let logs = files_named(&copied, "log.");
    assert!(!snaps.is_empty() && !logs.is_empty(), "{snaps:?} {logs:?}");
    let all: Vec<u8> = snaps
        .iter()
        .chain(&logs)
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(
        contains(&all, path.as_bytes()),
        "znode path not in the copied files"
    );
    assert!(
        contains(&all, data.as_bytes()),
        "znode data not in the copied files"
    );

    // and a real ZooKeeper started on the copy serves it
    let zk = TempZooKeeper::start(&run.file(&entry(&data_dir)));
    let got = zkcli(zk.port, &["get", &path]);
    assert!(
        got.lines().any(|l| l == data),
        "get {path} from the restored copy: {got}"
    );
    let got = zkcli(zk.port, &["get", "/lsbackup-testbed/brokers/ids/1"]);
    assert!(
        got.contains("\"port\":9092"),
        "test bed znode from the restored copy: {got}"
    );
    let got = zkcli(zk.port, &["ls", "/lsbackup-testbed/items"]);
    assert!(
        got.contains("item-120"),
        "ls /lsbackup-testbed/items: {got}"
    );
    drop(zk);

    let _ = zkcli(port, &["delete", &path]);
}

#[test]
fn zookeeper_not_serving_fails_clearly_and_keeps_the_others() {
    let tb = common::testbed();
    // the component asks the server on a port where nothing listens: as if ZooKeeper were down
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "zookeeper,haproxy",
            "--set",
            "zookeeper.zookeeper_client_port=1",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let c = run.component("zookeeper");
    assert_eq!(c.status, Status::Failed);
    let err = support::messages(&c.errors);
    assert!(
        err.contains("no ZooKeeper serving at 127.0.0.1:1") && err.contains("node1"),
        "errors: {err}"
    );
    assert!(
        run.stderr().contains("no ZooKeeper serving at 127.0.0.1:1"),
        "stderr:\n{}",
        run.stderr()
    );
    assert!(
        !run.file("zookeeper").exists(),
        "nothing should be copied from a node that does not serve"
    );
    assert_eq!(run.component("haproxy").status, Status::Ok);
}

#[test]
fn a_node_that_does_not_serve_is_skipped_for_the_next_one() {
    let tb = common::testbed();
    // node3 first in the group, but its server "does not serve" (nothing on the port it is asked
    // on); node1's does
    let build = build_dir_with_group(
        "zookeeper",
        &[
            &format!(
                "node3 ansible_host={} zookeeper_client_port=1",
                tb.host_of("node3")
            ),
            &format!("node1 ansible_host={}", tb.host_of("node1")),
        ],
    );
    let run = support::backup(build.path(), &["--only", "zookeeper"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("zookeeper");
    assert_eq!(c.status, Status::Ok, "{:?}", c.errors);
    let node3 = c.hosts.iter().find(|h| h.host == "node3").unwrap();
    assert_eq!(node3.status, Status::Skipped);
    assert!(
        node3
            .errors
            .iter()
            .any(|e| e.message.contains("no ZooKeeper serving at 127.0.0.1:1")),
        "{:?}",
        node3.errors
    );
    assert_eq!(host(&run).status, Status::Ok);
    assert!(!run.file("zookeeper/node3").exists());
    let data = PathBuf::from(tb.var("LSB_ZK_DATA_DIR"));
    assert!(!files_named(&run.file(&entry(&data)).join("version-2"), "snapshot.").is_empty());
}
