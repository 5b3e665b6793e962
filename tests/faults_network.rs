//! Network and SSH faults during a backup, against real OpenSSH sshd instances that each test
//! starts itself (own port, own host key, own known_hosts, own pid), so killing or stopping one
//! never touches the test bed's sshd (node3 of the test bed is the host that stays fine).
//!
//! - an sshd killed mid-stream: that host's component fails as `connection lost`, the other
//!   host's components are kept, exit 2, one line naming host, component and cause;
//! - a host that accepts TCP and never speaks SSH: the connect timeout is named with its flag;
//! - a host that stalls mid-stream (its sshd stopped, or a command that goes quiet): the idle
//!   timeout fires, named with its flag, and the run ends;
//! - a dropped connection: the components of that host that had not streamed anything into the
//!   archive run again on a fresh connection, and the retry is reported.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lsbackup::archive::{FailureKind, Status};

/// An sshd of our own on 127.0.0.1 (the test bed's node1 config: its users, authorized keys and
/// sudo), with a host key of its own. Its whole process tree is killed on drop.
struct OwnSshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnSshd {
    fn start() -> OwnSshd {
        let tb = common::testbed();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("host_key");
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "faults-network",
                "-f",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", support::transcript(&out));
        let base = tb.dir().join("ssh").join("node1").join("sshd_config");
        let text = std::fs::read_to_string(&base).unwrap();
        let config: String = text
            .lines()
            .filter(|l| {
                let k = l.split_whitespace().next().unwrap_or_default();
                !["ListenAddress", "PidFile", "HostKey"].contains(&k)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let path = dir.path().join("sshd_config");
        let (child, port) = support::start_listening("sshd", Duration::from_secs(10), |port| {
            let mut config = config.clone();
            config.push_str(&format!(
                "ListenAddress 127.0.0.1:{port}\nPidFile none\nHostKey {}\n",
                key.display()
            ));
            std::fs::write(&path, config).unwrap();
            Command::new("/usr/sbin/sshd")
                .arg("-D")
                .arg("-f")
                .arg(&path)
                .arg("-E")
                .arg(dir.path().join("sshd.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        // known_hosts: the test bed's hosts and this one
        let public = std::fs::read_to_string(dir.path().join("host_key.pub")).unwrap();
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        let mut kh = std::fs::read_to_string(tb.known_hosts()).unwrap();
        kh.push_str(&format!("[127.0.0.1]:{port} {}\n", public.join(" ")));
        std::fs::write(dir.path().join("known_hosts"), kh).unwrap();
        OwnSshd { child, port, dir }
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The per-connection processes: every descendant of the listener (sshd children, the
    /// commands they run), deepest last.
    fn connections(&self) -> Vec<u32> {
        descendants(self.child.id())
    }

    /// SIGKILL the connections' processes; the listener keeps accepting new ones.
    fn kill_connections(&self) {
        let pids = self.connections();
        assert!(!pids.is_empty(), "no connection to kill");
        signal("KILL", &pids);
    }

    /// SIGKILL the whole process tree: the connections and the listener.
    fn kill_all(&mut self) {
        let mut pids = self.connections();
        pids.push(self.child.id());
        signal("KILL", &pids);
        let _ = self.child.wait();
    }

    /// SIGSTOP the connections' processes: the host stops answering without closing anything.
    fn stop_connections(&self) {
        let pids = self.connections();
        assert!(!pids.is_empty(), "no connection to stop");
        signal("STOP", &pids);
    }
}

impl Drop for OwnSshd {
    fn drop(&mut self) {
        let mut pids = self.connections();
        pids.push(self.child.id());
        signal("CONT", &pids);
        signal("KILL", &pids);
        let _ = self.child.wait();
    }
}

/// Every descendant of `root` (from /proc), parents before children.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces and parentheses
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        for (pid, ppid) in &parent_of {
            if *ppid == p && !found.contains(pid) {
                found.push(*pid);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// A build dir whose inventory has `faulty` hosts (name, address, port) besides the test bed's
/// node3 in group `fine` (and node1 in group `stall`).
fn build_dir(faulty: &[(&str, &str, u16)]) -> tempfile::TempDir {
    let tb = common::testbed();
    let mut inv = String::from("[faulty]\n");
    for (name, addr, port) in faulty {
        inv.push_str(&format!("{name} ansible_host={addr} ansible_port={port}\n"));
    }
    inv.push_str(&format!(
        "\n[fine]\nnode3 ansible_host={}\n\n[stall]\nnode1 ansible_host={}\n\n[all:vars]\n\
         ansible_user={}\nansible_port={}\nansible_become=true\nansible_ssh_private_key_file={}\n",
        tb.host_of("node3"),
        tb.host_of("node1"),
        tb.ssh_user(),
        tb.ssh_port(),
        tb.client_key().display()
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory"), inv).unwrap();
    dir
}

/// Component specs (`name`, group, steps as YAML) in a new components dir.
fn components(specs: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, group, steps) in specs {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            format!(
                "name: {name}\ndescription: faults test {name}\ngroups: [{group}]\nsteps:\n{steps}"
            ),
        )
        .unwrap();
    }
    dir
}

/// A `run` step streaming about 400 MiB slowly (1 MiB every 50 ms), touching `started` once
/// the first MiBs are out.
fn streaming_step(started: &Path) -> String {
    format!(
        "  - name: dump\n    run: 'i=0; while [ $i -lt 400 ]; do head -c 1048576 /dev/zero; \
         if [ $i = 2 ]; then touch {}; fi; sleep 0.05; i=$((i+1)); done'\n    output: dump\n",
        started.display()
    )
}

/// The fine host's component: a small stream from the test bed's node3.
const CALM: (&str, &str, &str) = (
    "calm",
    "fine",
    "  - name: data\n    run: 'echo calm-data; seq 1 20000'\n    output: data\n",
);

/// `lsbackup backup` of `build` into a fresh target, started (not waited for).
fn spawn_backup(
    build: &Path,
    comps: &Path,
    known_hosts: &Path,
    args: &[&str],
) -> (Child, tempfile::TempDir) {
    let target = tempfile::tempdir().unwrap();
    let child = Command::new(support::bin())
        .arg("backup")
        .arg("-b")
        .arg(build)
        .arg("-t")
        .arg(target.path())
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg("--no-agent")
        .arg("--components-dir")
        .arg(comps)
        .args(args)
        .env("HOME", target.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running lsbackup");
    (child, target)
}

/// Wait for the run to end (at most `limit`: a run that does not end is the failure) and open
/// what it wrote.
fn finish(child: Child, target: tempfile::TempDir, limit: Duration) -> support::Run {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(limit) {
        Ok(o) => o.expect("waiting for lsbackup"),
        Err(_) => {
            signal("KILL", &[pid]);
            let o = rx.recv().unwrap().unwrap();
            panic!(
                "the run did not end within {limit:?}:\n{}",
                support::transcript(&o)
            );
        }
    };
    let archive = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.to_string_lossy();
            !n.ends_with(".partial") && !n.ends_with(".manifest.json") && p.is_file()
        });
    let extracted = archive.as_deref().map(support::extract);
    let manifest = extracted.as_ref().map(|d| {
        let text = std::fs::read(d.path().join("manifest.json")).expect("manifest.json");
        serde_json::from_slice(&text).expect("manifest parses")
    });
    support::Run {
        output,
        target,
        archive,
        extracted,
        manifest,
    }
}

/// Wait until every file of `paths` exists (a command on a host said it got there).
fn wait_for(paths: &[&Path], child: &mut Child) {
    let t = Instant::now();
    while !paths.iter().all(|p| p.exists()) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("lsbackup ended ({status}) before {paths:?} appeared");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{paths:?} never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stderr lines that hold every one of `words`.
fn lines_with(text: &str, words: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

/// The fine host's component is whole in the archive.
fn calm_is_kept(run: &support::Run) {
    assert_eq!(run.component("calm").status, Status::Ok, "{}", run.stderr());
    let data = run.read("calm/node3/data");
    assert!(data.starts_with(b"calm-data\n1\n2\n"), "calm/node3/data");
    assert!(data.ends_with(b"\n20000\n"), "calm/node3/data is whole");
}

/// The streaming component failed as connection lost and nothing of its stream is in the
/// archive.
fn streamer_lost(run: &support::Run) {
    let s = run.component("streamer");
    assert_eq!(s.status, Status::Failed, "{}", run.stderr());
    let errors = &s.hosts[0].errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, FailureKind::ConnectionLost, "{errors:?}");
    assert!(
        errors[0]
            .message
            .starts_with("bad: streamer: dump: connection lost: the connection dropped"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0].message.ends_with("while the command ran"),
        "{}",
        errors[0].message
    );
    assert!(s.hosts[0].entries.is_empty(), "{:?}", s.hosts[0].entries);
    assert!(
        !run.file("streamer/bad/dump").exists(),
        "the cut stream is not in the archive"
    );
    // one line names host, component and cause
    let err = run.stderr();
    let lines = lines_with(&err, &["bad", "streamer", "connection lost"]);
    assert_eq!(lines.len(), 1, "{err}");
}

/// The whole sshd (listener and connections) is killed while a component streams from it: that
/// component fails as `connection lost` with one line, the fine host's component is kept, and the
/// run ends with exit 2 (partial).
#[test]
fn sshd_killed_mid_stream_fails_that_host_only() {
    let mut sshd = OwnSshd::start();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let build = build_dir(&[("bad", "127.0.0.1", sshd.port)]);
    let comps = components(&[("streamer", "faulty", &streaming_step(&started)), CALM]);
    let (mut child, target) = spawn_backup(
        build.path(),
        comps.path(),
        &sshd.known_hosts(),
        &["--only", "streamer,calm"],
    );
    wait_for(&[&started], &mut child);
    std::thread::sleep(Duration::from_millis(300));
    sshd.kill_all();
    let run = finish(child, target, Duration::from_secs(60));
    assert_eq!(run.code(), 2, "{}", run.stderr());
    streamer_lost(&run);
    calm_is_kept(&run);
    // the stream was cut, not retried
    assert!(
        !run.stderr().contains("fresh connection"),
        "{}",
        run.stderr()
    );
}

/// A host that accepts the TCP connection and never sends the SSH banner: the connect timeout
/// fires, named with the phase and its flag; the run ends and the other host is backed up.
#[test]
fn silent_host_times_out_on_connect_and_others_are_kept() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept() {
            held.push(sock);
        }
    });
    let build = build_dir(&[("bad", "127.0.0.1", port)]);
    let comps = components(&[
        (
            "small",
            "faulty",
            "  - name: data\n    run: 'echo never'\n    output: data\n",
        ),
        CALM,
    ]);
    let t = Instant::now();
    let (child, target) = spawn_backup(
        build.path(),
        comps.path(),
        &common::testbed().known_hosts(),
        &["--only", "small,calm", "--connect-timeout", "2"],
    );
    let run = finish(child, target, Duration::from_secs(60));
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let small = run.component("small");
    assert_eq!(small.status, Status::Failed);
    let f = &small.hosts[0].errors[0];
    assert_eq!(f.kind, FailureKind::Timeout, "{f:?}");
    assert_eq!(
        f.message,
        format!(
            "bad: connection timed out after 2s (127.0.0.1:{port}) in the SSH handshake: the server took the connection and never completed it (limit: --connect-timeout)"
        )
    );
    let err = run.stderr();
    assert!(
        !lines_with(&err, &["bad", "timed out after 2s", "--connect-timeout"]).is_empty(),
        "{err}"
    );
    calm_is_kept(&run);
}

/// Two stalls at once: the sshd serving one host is stopped (SIGSTOP) mid-stream, and a command
/// on another host writes a little then goes quiet. The idle timeout fires for both, named with
/// its flag; the stopped host's cleanup, which needs a new channel there, gives up after the
/// connect timeout (named with its flag); neither stalled connection keeps the run alive, and
/// the fine host is kept.
#[test]
fn stalled_streams_hit_the_idle_timeout_and_the_run_ends() {
    let sshd = OwnSshd::start();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let release = marks.path().join("release");
    let build = build_dir(&[("bad", "127.0.0.1", sshd.port)]);
    let quiet = format!(
        "  - name: dump\n    run: 'head -c 100000 /dev/zero; n=0; while [ ! -e {} ] && [ -d {} ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done'\n    output: dump\n",
        release.display(),
        marks.path().display()
    );
    let streamer = format!(
        "{}cleanup:\n  - name: tidy\n    run: 'true'\n",
        streaming_step(&started)
    );
    let comps = components(&[
        ("streamer", "faulty", &streamer),
        ("quiet", "stall", &quiet),
        CALM,
    ]);
    let (mut child, target) = spawn_backup(
        build.path(),
        comps.path(),
        &sshd.known_hosts(),
        &[
            "--only",
            "streamer,quiet,calm",
            "--idle-timeout",
            "3",
            "--connect-timeout",
            "4",
        ],
    );
    wait_for(&[&started], &mut child);
    sshd.stop_connections();
    let t = Instant::now();
    let run = finish(child, target, Duration::from_secs(90));
    let took = t.elapsed();
    // the quiet command ends now, or when `marks` is gone (it is not the run's business any more)
    std::fs::write(&release, "").unwrap();
    assert!(
        took < Duration::from_secs(30),
        "the run took {took:?} after the stall"
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    for (c, host) in [("streamer", "bad"), ("quiet", "node1")] {
        let r = run.component(c);
        assert_eq!(r.status, Status::Failed, "{c}: {}", run.stderr());
        let f = &r.hosts[0].errors[0];
        assert_eq!(f.kind, FailureKind::Timeout, "{f:?}");
        assert!(
            f.message.starts_with(&format!("{host}: {c}: dump: "))
                && f.message.contains("no data for 3 s")
                && f.message.contains("--idle-timeout"),
            "{}",
            f.message
        );
        assert!(!run.file(&format!("{c}/{host}/dump")).exists());
    }
    let errors = &run.component("streamer").hosts[0].errors;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[1].kind, FailureKind::Timeout, "{errors:?}");
    assert!(
        errors[1].message.starts_with(&format!(
            "bad: streamer: cleanup tidy: connection timed out after 4s (127.0.0.1:{}) opening a channel for a command: the host stopped answering (limit: --connect-timeout)",
            sshd.port
        )),
        "{}",
        errors[1].message
    );
    calm_is_kept(&run);
    drop(sshd);
}

/// The connection to a host is killed (its sshd's connection processes; the listener stays)
/// while one component streams from it and another waits in a command that streams nothing:
/// the streaming one fails as `connection lost` (nothing of its stream in the archive), the
/// other runs again on a fresh connection, succeeds, and the retry is in the log and in the
/// manifest.
#[test]
fn dropped_connection_is_retried_for_what_had_not_streamed() {
    let sshd = OwnSshd::start();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let waiting = marks.path().join("waiting");
    let killed = marks.path().join("killed");
    let build = build_dir(&[("bad", "127.0.0.1", sshd.port)]);
    let waiter = format!(
        "  - name: wait\n    exec: 'touch {}; while [ ! -e {} ]; do sleep 0.1; done'\n\
         \x20 - name: data\n    run: 'echo waiter-data'\n    output: data\n",
        waiting.display(),
        killed.display()
    );
    let comps = components(&[
        ("streamer", "faulty", &streaming_step(&started)),
        ("waiter", "faulty", &waiter),
        CALM,
    ]);
    let (mut child, target) = spawn_backup(
        build.path(),
        comps.path(),
        &sshd.known_hosts(),
        &["--only", "streamer,waiter,calm"],
    );
    wait_for(&[&started, &waiting], &mut child);
    std::thread::sleep(Duration::from_millis(300));
    sshd.kill_connections();
    std::fs::write(&killed, "").unwrap();
    let run = finish(child, target, Duration::from_secs(60));
    assert_eq!(run.code(), 2, "{}", run.stderr());
    streamer_lost(&run);
    let w = run.component("waiter");
    assert_eq!(w.status, Status::Ok, "{}", run.stderr());
    assert_eq!(run.read("waiter/bad/data"), b"waiter-data\n");
    let flags = run.flags_of("waiter");
    assert!(
        flags.starts_with("retried on a fresh connection after: wait: connection lost: "),
        "{flags}"
    );
    let err = run.stderr();
    let lines = lines_with(
        &err,
        &["bad: waiter: wait: connection lost", "fresh connection"],
    );
    assert_eq!(lines.len(), 1, "{err}");
    calm_is_kept(&run);
    // the archive as a whole checks out
    let out = Command::new(support::bin())
        .arg("verify")
        .arg(run.archive.as_ref().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::transcript(&out));
}
