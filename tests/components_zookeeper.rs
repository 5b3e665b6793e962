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
        Self::spawn(dir, port)
    }

    /// Stop it and start it again on the same data dir (what it wrote since included).
    fn restart(mut self) -> TempZooKeeper {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        let port = self.port;
        drop(self);
        Self::spawn(dir, port)
    }

    fn spawn(dir: tempfile::TempDir, port: u16) -> TempZooKeeper {
        let cfg = dir.path().join("zoo.cfg");
        // the running server's JVM options and classpath, with our config as the argument
        let cmd = running_server_cmdline();
        let main = cmd
            .iter()
            .position(|a| a == "org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .expect("QuorumPeerMain in the test bed's ZooKeeper command line");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("zookeeper.log"))
            .unwrap();
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
    // the copied transaction logs end at their last transaction (no padding): the restored
    // server takes new writes, and after a restart serves the old and the new znodes
    let after = format!("{path}-after-restore");
    let out = zkcli(zk.port, &["create", &after, "written after the restore"]);
    assert!(
        out.contains(&format!("Created {after}")),
        "zkCli create: {out}"
    );
    let zk = zk.restart();
    let got = zkcli(zk.port, &["get", &path]);
    assert!(
        got.lines().any(|l| l == data),
        "after restart, {path}: {got}"
    );
    let got = zkcli(zk.port, &["get", &after]);
    assert!(
        got.lines().any(|l| l == "written after the restore"),
        "after restart, {after}: {got}"
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

// --- transaction logs: the used part -------------------------------------------------------------

/// The used length of a transaction log, read independently of lsbackup: the 16-byte header, then
/// records `crc(8) len(4) txn(len) 'B'` while len > 0 and the record is complete.
fn used_length(log: &[u8]) -> usize {
    assert!(log.starts_with(b"ZKLG"), "not a transaction log");
    let mut p = 16;
    while p + 12 <= log.len() {
        let len = i32::from_be_bytes(log[p + 8..p + 12].try_into().unwrap());
        if len <= 0 || p + 12 + len as usize + 1 > log.len() {
            break;
        }
        assert_eq!(log[p + 12 + len as usize], b'B', "record end marker");
        p += 12 + len as usize + 1;
    }
    p
}

/// The test bed's logs are preallocated (64 MiB each): the archive holds their used part only,
/// byte-identical to the start of the host's file; the manifest's sizes are those of the entries.
#[test]
fn transaction_logs_are_stored_without_their_padding() {
    let tb = common::testbed();
    let data_dir = PathBuf::from(tb.var("LSB_ZK_DATA_DIR"));
    let host_logs = files_named(&data_dir.join("version-2"), "log.");
    assert!(!host_logs.is_empty());
    let used_before: Vec<usize> = host_logs
        .iter()
        .map(|p| used_length(&std::fs::read(p).unwrap()))
        .collect();

    let run = support::backup(&tb.build_dir(), &["--only", "zookeeper"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let h = host(&run);
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    let mut kept = 0u64;
    for (p, before) in host_logs.iter().zip(used_before) {
        let host = std::fs::read(p).unwrap();
        let copied = run.read(&entry(p));
        // the live log may have grown during the run, never shrunk
        assert!(
            copied.len() >= before && copied.len() <= used_length(&host),
            "{}: {} bytes copied, used {before}..{}",
            p.display(),
            copied.len(),
            used_length(&host)
        );
        assert!(copied.len() < host.len(), "{}: padding copied", p.display());
        assert_eq!(copied[..], host[..copied.len()], "{}", p.display());
        assert_eq!(used_length(&copied), copied.len());
        let rec = h
            .entries
            .iter()
            .find(|e| e.path == entry(p))
            .unwrap_or_else(|| panic!("no manifest entry for {}", p.display()));
        assert_eq!(rec.size, copied.len() as u64);
        kept += rec.size;
    }
    // Other tests of this file write to the same ZooKeeper at the same time, so a new log can
    // start during the run: the flag counts every log the archive holds.
    let logs: Vec<_> = h
        .entries
        .iter()
        .filter(|e| {
            e.path
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("log."))
        })
        .collect();
    assert!(logs.len() >= host_logs.len());
    let all: u64 = logs.iter().map(|e| e.size).sum();
    assert!(all >= kept);
    assert!(
        h.flags.iter().any(|f| f
            == &format!(
                "transaction logs stored without their preallocated zero padding: {} files, {all} bytes (their used part)",
                logs.len()
            )),
        "flags: {:?}",
        h.flags
    );
    // the snapshots are copied as they are
    for s in files_named(&data_dir.join("version-2"), "snapshot.") {
        assert_eq!(run.read(&entry(&s)), std::fs::read(&s).unwrap());
    }
}

/// A log: header, records with these payloads, then `pad` zero bytes (a sparse tail).
fn write_log(path: &Path, payloads: &[&[u8]], pad: u64, cut: usize) -> Vec<u8> {
    let mut v = b"ZKLG".to_vec();
    v.extend_from_slice(&2i32.to_be_bytes());
    v.extend_from_slice(&0i64.to_be_bytes());
    for p in payloads {
        v.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        v.extend_from_slice(&(p.len() as i32).to_be_bytes());
        v.extend_from_slice(p);
        v.push(b'B');
    }
    v.truncate(v.len() - cut);
    std::fs::write(path, &v).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(v.len() as u64 + pad).unwrap();
    v
}

/// zoo.cfg pointing at a data dir of our own (a hostile name; logs that are padded, torn, or not
/// logs at all), the server asked being the test bed's: each is stored as documented, and the
/// directory name runs nothing.
#[test]
fn padded_torn_and_foreign_logs_of_a_hostile_data_dir() {
    let tb = common::testbed();
    let base = tempfile::Builder::new()
        .prefix("lsb-zk-logs")
        .tempdir_in("/tmp")
        .unwrap();
    let mark = base.path().join("MARK");
    let data = base
        .path()
        .join(format!("data $(touch {}) `id`", mark.display()));
    let v2 = data.join("version-2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(data.join("myid"), "1\n").unwrap();
    std::fs::write(v2.join("snapshot.0"), b"snapshot bytes").unwrap();
    let padded = write_log(
        &v2.join("log.1"),
        &[b"txn one", &[9u8; 5000], b"three"],
        256 << 20,
        0,
    );
    let torn_full = write_log(&v2.join("log.2"), &[b"complete", b"torn record"], 0, 4);
    let foreign = b"this file is named like a log but is none".to_vec();
    std::fs::write(v2.join("log.3"), &foreign).unwrap();
    std::fs::create_dir(base.path().join("conf")).unwrap();
    let cfg = base.path().join("conf/zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "dataDir={}\nclientPortAddress=127.0.0.1\nclientPort={}\n",
            data.display(),
            tb.var("LSB_ZK_PORT")
        ),
    )
    .unwrap();

    let set = format!("zookeeper.zookeeper_config_file={}", cfg.display());
    let t = Instant::now();
    let run = support::backup(&tb.build_dir(), &["--only", "zookeeper", "--set", &set]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    assert!(!mark.exists(), "the data dir's name ran as code");
    let h = host(&run);
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    // 256 MiB of padding did not cross: the stream was stopped after the used part
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(run.read(&entry(&v2.join("log.1"))), padded);
    let log1 = format!(
        "cat -- '{}' (stopped after the part kept)",
        v2.join("log.1").display()
    );
    assert!(
        h.commands.iter().any(|c| c.command == log1),
        "{log1}\n{:?}",
        h.commands
    );
    // torn: the last record is dropped
    let first = 16 + 12 + b"complete".len() + 1;
    assert_eq!(run.read(&entry(&v2.join("log.2"))), torn_full[..first]);
    let dropped = torn_full.len() - first;
    let note = format!(
        "{}: ends with a partial transaction ({dropped} bytes, being written during the copy): not stored",
        v2.join("log.2").display()
    );
    assert!(h.flags.contains(&note), "{note}\n{:?}", h.flags);
    // not a log: stored whole, noted
    assert_eq!(run.read(&entry(&v2.join("log.3"))), foreign);
    let note = format!(
        "{}: no ZooKeeper transaction log header (ZKLG): stored whole",
        v2.join("log.3").display()
    );
    assert!(h.flags.contains(&note), "{note}\n{:?}", h.flags);
    assert_eq!(run.read(&entry(&v2.join("snapshot.0"))), b"snapshot bytes");
    assert_eq!(run.read(&entry(&data.join("myid"))), b"1\n");
    assert_eq!(run.read(&entry(&cfg)), std::fs::read(&cfg).unwrap());
}

/// A process of an unprivileged user whose arguments say `QuorumPeerMain /x$(touch MARK)`: not
/// believed, nothing runs, the real server's zoo.cfg is used.
#[test]
fn hostile_server_lookalike_process_is_ignored() {
    let tb = common::testbed();
    let dir = tempfile::Builder::new()
        .prefix("lsb-zk-hostile")
        .tempdir_in("/tmp")
        .unwrap();
    let mark = dir.path().join("MARK");
    let arg = format!("/x$(touch {})", mark.display());
    let p = support::UnprivilegedProcess::spawn(&[
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        &arg,
    ]);
    let run = support::backup(&tb.build_dir(), &["--only", "zookeeper"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    assert!(!mark.exists(), "a command line argument ran as code");
    let h = host(&run);
    let note = format!(
        "ignored process {} (org.apache.zookeeper.server.quorum.QuorumPeerMain on its command line",
        p.pid()
    );
    assert!(
        h.flags.iter().any(|f| f.starts_with(&note)),
        "{:?}",
        h.flags
    );
    let conf = std::fs::canonicalize(tb.var("LSB_ZK_CONF_DIR")).unwrap();
    assert_eq!(
        run.read(&entry(&conf.join("zoo.cfg"))),
        std::fs::read(conf.join("zoo.cfg")).unwrap()
    );
}
