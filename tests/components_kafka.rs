//! The `kafka` component against the test bed's Kafka STAND-IN on node2 (Apache Kafka is not in
//! Debian; tests/testbed/svc_kafka.sh): the real on-disk layout of a broker (log dir /var/lib/kafka
//! with topic-partition folders whose .log/.index/.timeindex files are in Kafka's formats, written
//! by tests/testbed/standins/kafka_layout.py; /opt/kafka/config/server.properties) and a stand-in
//! broker process (tests/testbed/standins/kafka_broker.py) that holds the log dir lock and the
//! listener port, is stopped and started by stand-in kafka-server-{stop,start}.sh, writes
//! `.kafka_cleanshutdown` on a clean stop as Kafka does, and records its starts and stops.
//! Needs `tests/testbed/up.sh`.
//!
//! The tests stop and start the broker, so they run one at a time (a lock).

mod common;
mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use lsbackup::archive::{HostReport, Status};

const NODE: &str = "node2";
const TAKEN_WHILE_RUNNING: &str = "taken while running";
const STOPPED_FLAG: &str = "broker stopped for the copy";

static BROKER: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    BROKER.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_dir() -> PathBuf {
    PathBuf::from(common::testbed().var("LSB_KAFKA_LOG_DIRS"))
}

fn standin_logs() -> PathBuf {
    PathBuf::from(common::testbed().var("LSB_KAFKA_STANDIN_LOGS"))
}

fn listener() -> SocketAddr {
    common::testbed().var("LSB_KAFKA_LISTENER").parse().unwrap()
}

/// Archive entry of an absolute host path backed up from node2.
fn entry(path: &Path) -> String {
    format!(
        "kafka/{NODE}/{}",
        path.display().to_string().trim_start_matches('/')
    )
}

/// The stand-in broker's pid when it runs (pid file + `kafka.Kafka` on its command line).
fn broker_pid() -> Option<u32> {
    let text = std::fs::read_to_string(standin_logs().join("lsbackup-standin-broker.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline
        .split(|b| *b == 0)
        .any(|a| a == b"kafka.Kafka")
        .then_some(pid)
}

fn listening() -> bool {
    TcpStream::connect_timeout(&listener(), Duration::from_secs(2)).is_ok()
}

/// The broker must run before a test (a failed earlier run may have left it stopped).
fn running_broker() -> u32 {
    let pid = broker_pid().unwrap_or_else(|| {
        panic!("the Kafka stand-in broker does not run: run `sudo tests/testbed/up.sh` first")
    });
    assert!(
        listening(),
        "the Kafka stand-in broker does not listen on {}",
        listener()
    );
    pid
}

/// `(what, unix ms, pid)` lines of the stand-in's event log.
fn events() -> Vec<(String, u64, u32)> {
    let text = std::fs::read_to_string(standin_logs().join("lsbackup-standin-events.log"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.to_string(),
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn host(run: &support::Run) -> &HostReport {
    run.component("kafka")
        .hosts
        .iter()
        .find(|h| h.host == NODE)
        .unwrap_or_else(|| panic!("no {NODE} in the kafka report; stderr:\n{}", run.stderr()))
}

fn has_flag(h: &HostReport, prefix: &str) -> bool {
    h.flags.iter().any(|f| f.starts_with(prefix))
}

/// Every regular file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// The broker's data files (what the fixture holds, without the lock and clean-shutdown marker).
fn data_files() -> Vec<PathBuf> {
    files_under(&log_dir())
        .into_iter()
        .filter(|p| p != Path::new(".lock") && p != Path::new(".kafka_cleanshutdown"))
        .collect()
}

/// Every data file and the broker config came back byte for byte.
fn assert_copy_identical(run: &support::Run) {
    let files = data_files();
    assert!(files.len() >= 20, "test bed log dir looks empty: {files:?}");
    for rel in &files {
        let path = log_dir().join(rel);
        let got = run.read(&entry(&path));
        let want = std::fs::read(&path).unwrap();
        assert!(
            got == want,
            "{} differs from the archived copy",
            path.display()
        );
    }
    let cfg = PathBuf::from(common::testbed().var("LSB_KAFKA_CONFIG"));
    assert_eq!(run.read(&entry(&cfg)), std::fs::read(&cfg).unwrap());
    let text = String::from_utf8(run.read(&entry(&cfg))).unwrap();
    assert!(text.contains("log.dirs=/var/lib/kafka"), "{text}");
}

// --- Kafka's on-disk formats, read independently of the generator --------------------------------

fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn varint(buf: &[u8], pos: &mut usize) -> i64 {
    let (mut z, mut shift) = (0u64, 0);
    loop {
        let b = buf[*pos];
        *pos += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().unwrap())
}

/// One record batch (magic 2) of a .log segment: its file position and records `(offset, key)`.
struct Batch {
    position: usize,
    records: Vec<(i64, Vec<u8>)>,
}

/// Parse a segment: batch headers, CRC-32C, varint records; panics on anything malformed.
fn parse_segment(name: &str, data: &[u8]) -> Vec<Batch> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < data.len() {
        let base_offset = be_i64(&data[pos..]);
        let len = be_i32(&data[pos + 8..]) as usize;
        let b = &data[pos..pos + 12 + len];
        assert_eq!(b[16], 2, "{name}@{pos}: magic");
        let crc = u32::from_be_bytes(b[17..21].try_into().unwrap());
        assert_eq!(crc32c(&b[21..]), crc, "{name}@{pos}: CRC-32C");
        let last_delta = be_i32(&b[23..]);
        let count = be_i32(&b[57..]);
        let mut p = 61;
        let mut records = Vec::new();
        for _ in 0..count {
            let rlen = varint(b, &mut p) as usize;
            let start = p;
            p += 1; // attributes
            varint(b, &mut p); // timestamp delta
            let off = varint(b, &mut p);
            let klen = varint(b, &mut p) as usize;
            let key = b[p..p + klen].to_vec();
            p += klen;
            let vlen = varint(b, &mut p) as usize;
            p += vlen;
            assert_eq!(varint(b, &mut p), 0, "{name}: headers");
            assert_eq!(p - start, rlen, "{name}@{pos}: record length");
            records.push((base_offset + off, key));
        }
        assert_eq!(p, b.len(), "{name}@{pos}: batch length");
        assert_eq!(
            records.last().map(|r| r.0),
            Some(base_offset + i64::from(last_delta))
        );
        out.push(Batch {
            position: pos,
            records,
        });
        pos += 12 + len;
    }
    out
}

/// Check every partition folder of an (extracted) log dir: segments parse, offsets run from 0
/// without gaps across segments up to the recovery point, index entries point at the batch that
/// holds their offset, keys are the test bed's. Returns the number of records read.
fn check_log_dir(dir: &Path) -> usize {
    let checkpoint = std::fs::read_to_string(dir.join("recovery-point-offset-checkpoint")).unwrap();
    let mut lines = checkpoint.lines();
    assert_eq!(lines.next(), Some("0"), "checkpoint version");
    let n: usize = lines.next().unwrap().parse().unwrap();
    let points: Vec<(String, i64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (format!("{}-{}", f[0], f[1]), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(points.len(), n);
    assert!(n >= 4, "{points:?}");
    let meta = std::fs::read_to_string(dir.join("meta.properties")).unwrap();
    assert!(
        meta.contains("broker.id=1") && meta.contains("cluster.id="),
        "{meta}"
    );
    let mut total = 0;
    for (part, end) in points {
        let pdir = dir.join(&part);
        let partition: i64 = part.rsplit('-').next().unwrap().parse().unwrap();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&pdir)
            .unwrap_or_else(|e| panic!("{}: {e}", pdir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        let mut next = 0i64;
        for log in &logs {
            let name = log.display().to_string();
            let base: i64 = log.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            assert_eq!(base, next, "{name}: segment base offset");
            let data = std::fs::read(log).unwrap();
            let batches = parse_segment(&name, &data);
            for b in &batches {
                for (off, key) in &b.records {
                    assert_eq!(*off, next, "{name}: offsets");
                    let key = String::from_utf8(key.clone()).unwrap();
                    if part.starts_with("lsbackup-orders") {
                        assert_eq!(key, format!("order-{partition}-{off:04}"));
                    } else {
                        assert_eq!(key, format!("event-{off:04}"));
                    }
                    next += 1;
                    total += 1;
                }
            }
            let index = std::fs::read(log.with_extension("index")).unwrap();
            let timeindex = std::fs::read(log.with_extension("timeindex")).unwrap();
            assert_eq!(index.len() % 8, 0, "{name}: .index entry size");
            assert_eq!(timeindex.len() % 12, 0, "{name}: .timeindex entry size");
            assert_eq!(
                index.len() / 8,
                timeindex.len() / 12,
                "{name}: index entries"
            );
            for e in index.chunks(8) {
                let off = base + i64::from(be_i32(e));
                let position = be_i32(&e[4..]) as usize;
                let b = batches
                    .iter()
                    .find(|b| b.position == position)
                    .unwrap_or_else(|| panic!("{name}: index points at no batch ({position})"));
                assert!(
                    b.records.iter().any(|r| r.0 == off),
                    "{name}: index offset {off}"
                );
            }
        }
        assert_eq!(next, end, "{part}: records up to the recovery point");
        assert!(pdir.join("leader-epoch-checkpoint").is_file());
        assert!(pdir.join("partition.metadata").is_file());
    }
    total
}

// --- tests ----------------------------------------------------------------------------------------

#[test]
fn running_broker_is_copied_byte_identical_and_flagged_taken_while_running() {
    let _g = lock();
    let tb = common::testbed();
    let pid = running_broker();
    let before = events().len();

    let run = support::backup(&tb.build_dir(), &["--only", "kafka"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let c = run.component("kafka");
    assert_eq!(c.status, Status::Ok, "{:?}", c.errors);
    let h = host(&run);
    assert_eq!(h.status, Status::Ok);
    assert!(has_flag(h, TAKEN_WHILE_RUNNING), "flags: {:?}", h.flags);
    assert!(!has_flag(h, STOPPED_FLAG), "flags: {:?}", h.flags);
    assert_eq!(
        h.versions.get("kafka").map(String::as_str),
        Some(format!("{} (Scala 2.12)", tb.var("LSB_KAFKA_VERSION")).as_str())
    );

    assert_copy_identical(&run);
    let copied = run.file(&entry(&log_dir()));
    assert_eq!(check_log_dir(&copied), 3 * 60 + 25);
    // taken from a running broker: no clean-shutdown marker, and the broker was left alone
    assert!(!copied.join(".kafka_cleanshutdown").exists());
    assert_eq!(broker_pid(), Some(pid), "the broker was restarted");
    assert_eq!(
        events().len(),
        before,
        "the broker was stopped or started: {:?}",
        events()
    );
    assert!(listening());
}

#[test]
fn stop_broker_option_stops_copies_and_starts_it_again() {
    let _g = lock();
    let tb = common::testbed();
    let old_pid = running_broker();
    let before = events().len();
    let t0 = now_ms();

    let run = support::backup(
        &tb.build_dir(),
        &["--only", "kafka", "--set", "kafka.kafka_stop_broker=true"],
    );
    let t1 = now_ms();
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let h = host(&run);
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    assert!(has_flag(h, STOPPED_FLAG), "flags: {:?}", h.flags);
    assert!(!has_flag(h, TAKEN_WHILE_RUNNING), "flags: {:?}", h.flags);
    let start = h
        .commands
        .iter()
        .find(|c| c.step == "start broker")
        .unwrap_or_else(|| panic!("no start broker command: {:?}", h.commands));
    assert_eq!(start.exit_code, Some(0), "{start:?}");

    // the copy is the cleanly stopped broker's: Kafka's clean-shutdown marker is in it
    assert_copy_identical(&run);
    let copied = run.file(&entry(&log_dir()));
    assert!(
        copied.join(".kafka_cleanshutdown").is_file(),
        "copy not taken from a stopped broker"
    );
    assert_eq!(check_log_dir(&copied), 3 * 60 + 25);

    // stopped once and started once during the run, and running (listening) again now
    let new: Vec<_> = events().into_iter().skip(before).collect();
    assert_eq!(new.len(), 2, "events: {new:?}");
    let (stop, start) = (&new[0], &new[1]);
    assert_eq!((stop.0.as_str(), stop.2), ("stop", old_pid), "{new:?}");
    assert_eq!(start.0, "start", "{new:?}");
    assert!(
        t0 <= stop.1 && stop.1 <= start.1 && start.1 <= t1,
        "{new:?} not within {t0}..{t1}"
    );
    let new_pid = broker_pid().expect("the broker runs again after the backup");
    assert_eq!(new_pid, start.2);
    assert_ne!(new_pid, old_pid);
    assert!(
        listening(),
        "the broker does not listen again on {}",
        listener()
    );
    // the running broker removed the marker from the live log dir again
    assert!(!log_dir().join(".kafka_cleanshutdown").exists());
}

#[test]
fn missing_log_dir_fails_kafka_clearly_and_keeps_the_others() {
    let _g = lock();
    let tb = common::testbed();
    let pid = running_broker();
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "kafka,haproxy",
            "--set",
            "kafka.kafka_log_dirs=/nonexistent/kafka-logs",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let c = run.component("kafka");
    assert_ne!(c.status, Status::Ok);
    let h = host(&run);
    let err = support::messages(&h.errors);
    assert!(
        err.contains("node2: kafka: log dirs copy:") && err.contains("/nonexistent/kafka-logs"),
        "errors: {err}"
    );
    assert!(
        run.stderr().contains("/nonexistent/kafka-logs"),
        "stderr:\n{}",
        run.stderr()
    );
    assert_eq!(run.component("haproxy").status, Status::Ok);
    assert!(run.file("haproxy").is_dir());
    assert_eq!(broker_pid(), Some(pid));
}

#[test]
fn failed_stop_leaves_the_broker_running_and_flags_the_copy() {
    let _g = lock();
    let tb = common::testbed();
    let pid = running_broker();
    let before = events().len();
    // kafka-server-stop.sh is not where kafka_home says: the stop fails, the copy is still taken
    // (flagged), and the cleanup does not start a second broker
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "kafka",
            "--set",
            "kafka.kafka_stop_broker=true",
            "--set",
            "kafka.kafka_home=/nonexistent/kafka",
        ],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let h = host(&run);
    assert_eq!(h.status, Status::Partial, "{:?}", h.errors);
    let err = support::messages(&h.errors);
    assert!(
        err.contains("node2: kafka: stop broker:")
            && err.contains("/nonexistent/kafka/bin/kafka-server-stop.sh"),
        "errors: {err}"
    );
    assert!(has_flag(h, TAKEN_WHILE_RUNNING), "flags: {:?}", h.flags);
    assert!(!has_flag(h, STOPPED_FLAG), "flags: {:?}", h.flags);
    assert!(
        h.commands.iter().all(|c| c.step != "start broker"),
        "{:?}",
        h.commands
    );
    assert_copy_identical(&run);
    assert_eq!(broker_pid(), Some(pid));
    assert_eq!(events().len(), before);
}

#[test]
fn config_file_and_log_dirs_are_learnt_from_the_running_broker() {
    let _g = lock();
    let tb = common::testbed();
    running_broker();
    // a wrong config dir: the running broker's own config file (its argument after kafka.Kafka)
    // still gives the log dirs and is copied; the missing dir is noted
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "kafka",
            "--set",
            "kafka.kafka_config_dir=/nonexistent/config",
        ],
    );
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let h = host(&run);
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    assert!(
        h.flags
            .iter()
            .any(|f| f == "not found on host: /nonexistent/config"),
        "flags: {:?}",
        h.flags
    );
    assert_copy_identical(&run);
    assert!(!run.file("kafka/node2/nonexistent").exists());
}

// --- the broker process is found safely; the broker is always started again ---------------------

/// A process of an unprivileged user whose arguments say `kafka.Kafka /x$(touch MARK)`, and one
/// pointing at a config of its own (log.dirs=/etc): neither is believed, nothing of them runs, and
/// the real broker's server.properties and log dirs are used.
#[test]
fn hostile_broker_lookalike_processes_are_ignored() {
    let _g = lock();
    let tb = common::testbed();
    running_broker();
    let dir = tempfile::Builder::new()
        .prefix("lsb-kafka-hostile")
        .tempdir_in("/tmp")
        .unwrap();
    let mark = dir.path().join("MARK");
    let evil_cfg = dir.path().join("evil.properties");
    std::fs::write(&evil_cfg, "log.dirs=/etc/ssh\nlisteners=PLAINTEXT://:1\n").unwrap();
    let hostile_arg = format!("/x$(touch {})", mark.display());
    let p1 = support::UnprivilegedProcess::spawn(&["kafka.Kafka", &hostile_arg]);
    let p2 = support::UnprivilegedProcess::spawn(&["kafka.Kafka", &evil_cfg.display().to_string()]);

    let run = support::backup(&tb.build_dir(), &["--only", "kafka"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    assert!(!mark.exists(), "a command line argument ran as code");
    let h = host(&run);
    assert_eq!(h.status, Status::Ok, "{:?}", h.errors);
    for p in [&p1, &p2] {
        let note = format!(
            "ignored process {} (kafka.Kafka on its command line",
            p.pid()
        );
        assert!(
            h.flags.iter().any(|f| f.starts_with(&note)),
            "no note for {}: {:?}",
            p.pid(),
            h.flags
        );
    }
    // the real broker's config and log dirs, nothing of the lookalikes'
    assert_copy_identical(&run);
    assert!(!run.file("kafka/node2/etc").exists());
    assert!(
        h.commands
            .iter()
            .any(|c| c.command == "cat /opt/kafka/config/server.properties"),
        "{:?}",
        h.commands
    );
    assert!(
        h.commands
            .iter()
            .all(|c| !c.command.contains("touch") && !c.command.contains("evil")),
        "{:?}",
        h.commands
    );
}

/// Makes the stand-in broker's shutdown `secs` slower while alive (its documented flag file).
struct SlowStop(PathBuf);

impl SlowStop {
    fn set(secs: u32) -> SlowStop {
        let honours = || {
            std::fs::read_to_string(standin_logs().join("lsbackup-standin-broker.pid"))
                .unwrap_or_default()
                .lines()
                .any(|l| l == "stop-delay-flag")
        };
        if !honours() {
            // up.sh installed a stand-in that honours the flag, but the broker running was
            // started before: restart it (with the component itself)
            let installed = PathBuf::from(common::testbed().var("LSB_KAFKA_HOME"))
                .join("bin/lsbackup-standin-broker.py");
            let text = std::fs::read_to_string(&installed).unwrap_or_default();
            assert!(
                text.contains("stop-delay-flag"),
                "{} predates the stop-delay flag: run `sudo tests/testbed/up.sh`",
                installed.display()
            );
            let run = support::backup(
                &common::testbed().build_dir(),
                &["--only", "kafka", "--set", "kafka.kafka_stop_broker=true"],
            );
            assert_eq!(run.code(), 0, "restarting the broker:\n{}", run.stderr());
            assert!(honours(), "the restarted stand-in does not honour the flag");
        }
        let p = standin_logs().join("lsbackup-standin-stop-delay");
        std::fs::write(&p, secs.to_string()).unwrap();
        SlowStop(p)
    }
}

impl Drop for SlowStop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The broker takes longer to stop than kafka_stop_timeout: the stop fails (one clear error),
/// the copy is flagged as taken while running, and the cleanup waits for the broker to be gone
/// and starts it again: it is not left stopped.
#[test]
fn stop_timeout_still_starts_the_broker_again() {
    let _g = lock();
    let tb = common::testbed();
    running_broker();
    let slow = SlowStop::set(3);
    let old_pid = running_broker();
    let before = events().len();
    let run = support::backup(
        &tb.build_dir(),
        &[
            "--only",
            "kafka",
            "--set",
            "kafka.kafka_stop_broker=true",
            "--set",
            "kafka.kafka_stop_timeout=3",
        ],
    );
    drop(slow);
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let h = host(&run);
    assert_eq!(h.status, Status::Partial, "{:?}", h.errors);
    let err = support::messages(&h.errors);
    assert!(
        err.contains("node2: kafka: stop broker:")
            && err.contains(&format!(
                "(pid {old_pid}) is still running 3s after the stop request"
            )),
        "errors: {err}"
    );
    assert_eq!(h.errors.len(), 1, "errors: {err}");
    assert!(has_flag(h, TAKEN_WHILE_RUNNING), "flags: {:?}", h.flags);
    assert!(!has_flag(h, STOPPED_FLAG), "flags: {:?}", h.flags);
    assert!(
        has_flag(h, "broker started again after the copy"),
        "flags: {:?}",
        h.flags
    );
    let start = h
        .commands
        .iter()
        .find(|c| c.step == "start broker")
        .unwrap_or_else(|| panic!("no start broker command: {:?}", h.commands));
    assert_eq!(start.exit_code, Some(0), "{start:?}");
    // stopped once (late) and started once, and running again now
    let new: Vec<_> = events().into_iter().skip(before).collect();
    assert_eq!(new.len(), 2, "events: {new:?}");
    assert_eq!((new[0].0.as_str(), new[0].2), ("stop", old_pid), "{new:?}");
    assert_eq!(new[1].0, "start", "{new:?}");
    let new_pid = broker_pid().expect("the broker runs again after the backup");
    assert_eq!(new_pid, new[1].2);
    assert!(listening());
    assert_copy_identical(&run);
}

/// Ctrl-C while the broker is stopped for the copy: lsbackup stops, but first starts the broker
/// again (the cleanup runs on interrupt), and leaves no archive.
#[test]
fn interrupt_while_the_broker_is_stopped_starts_it_again() {
    let _g = lock();
    let tb = common::testbed();
    let old_pid = running_broker();
    let before = events().len();
    let target = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(support::bin())
        .arg("backup")
        .arg("-b")
        .arg(tb.build_dir())
        .arg("-t")
        .arg(target.path())
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .args([
            "--no-agent",
            "--only",
            "kafka",
            "--set",
            "kafka.kafka_stop_broker=true",
        ])
        .env("HOME", target.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // the moment the broker has stopped (its "stop" event), lsbackup is waiting for its pid or
    // copying: interrupt it there
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !events().iter().skip(before).any(|e| e.0 == "stop") {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker was not stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        std::fs::read_dir(target.path()).unwrap().next().is_none(),
        "an archive was left"
    );
    let new: Vec<_> = events().into_iter().skip(before).collect();
    assert_eq!(new.len(), 2, "events: {new:?}\n{err}");
    assert_eq!((new[0].0.as_str(), new[0].2), ("stop", old_pid), "{new:?}");
    assert_eq!(new[1].0, "start", "{new:?}");
    let new_pid = broker_pid().expect("the broker runs again after the interrupted backup");
    assert_eq!(new_pid, new[1].2);
    assert!(listening(), "{err}");
}

/// Brokers are done one at a time; when a broker does not come back (here: it is not seen
/// listening on the port lsbackup was told to wait for), the loop stops: the next broker is not
/// stopped. node3 is on the same machine and would otherwise stop the same broker again.
#[test]
fn a_failed_restart_stops_the_one_at_a_time_loop() {
    let _g = lock();
    let tb = common::testbed();
    let old_pid = running_broker();
    let before = events().len();
    let build = support::build_dir_with_group(
        "kafka",
        &[
            &format!(
                "node2 ansible_host={} kafka_port=1 kafka_start_timeout=3",
                tb.host_of("node2")
            ),
            &format!("node3 ansible_host={}", tb.host_of("node3")),
        ],
    );
    let run = support::backup(
        build.path(),
        &["--only", "kafka", "--set", "kafka.kafka_stop_broker=true"],
    );
    assert_eq!(run.code(), 2, "stderr:\n{}", run.stderr());
    let h = host(&run);
    let err = support::messages(&h.errors);
    assert!(
        err.contains("node2: kafka: cleanup start broker:")
            && err.contains("does not accept connections on 127.0.0.3:1 3s after the start"),
        "errors: {err}"
    );
    assert!(has_flag(h, STOPPED_FLAG), "flags: {:?}", h.flags);
    assert!(
        has_flag(h, "BROKER MAY NOT BE RUNNING"),
        "flags: {:?}",
        h.flags
    );
    let node3 = run
        .component("kafka")
        .hosts
        .iter()
        .find(|x| x.host == "node3")
        .unwrap();
    assert_eq!(node3.status, Status::Failed);
    let err3 = support::messages(&node3.errors);
    assert!(
        err3.contains("not run: the cleanup on node2 failed"),
        "node3: {err3}"
    );
    assert!(node3.commands.is_empty(), "{:?}", node3.commands);
    // one stop and one start: node3 did not stop the broker again
    let new: Vec<_> = events().into_iter().skip(before).collect();
    assert_eq!(new.len(), 2, "events: {new:?}");
    assert_eq!((new[0].0.as_str(), new[0].2), ("stop", old_pid), "{new:?}");
    assert_eq!(new[1].0, "start", "{new:?}");
    assert!(listening());
    assert_eq!(broker_pid(), Some(new[1].2));
}
