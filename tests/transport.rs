//! Transport against the real test bed: three OpenSSH sshd on 127.0.0.2-4 (tests/testbed/up.sh).
//!
//! Every test here talks to real sshd processes, sudo, ssh-agent and socat; nothing is mocked.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lsbackup::inventory::{ConnectionSpec, SshOptions, StrictHostKeyChecking};
use lsbackup::shell::Script;
use lsbackup::transport::{Session, TransportConfig, TransportError};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

fn tb() -> &'static common::TestBed {
    common::testbed()
}

/// node1..3 as the inventory describes them (login `operations`, client key, no become).
fn spec(node: &str) -> ConnectionSpec {
    let tb = tb();
    ConnectionSpec {
        host: node.to_string(),
        address: tb.host_of(node),
        port: tb.ssh_port(),
        user: Some(tb.ssh_user().to_string()),
        key_file: Some(tb.client_key()),
        local: false,
        become_: false,
        become_user: "root".to_string(),
        ssh: SshOptions::default(),
    }
}

/// The test bed's known_hosts, no agent, 10 s connect timeout.
fn cfg() -> TransportConfig {
    TransportConfig {
        known_hosts: tb().known_hosts(),
        known_hosts_overrides_inventory: false,
        accept_new_host_keys: false,
        insecure_skip_host_key_check: false,
        identities: Vec::new(),
        use_agent: false,
        connect_timeout: Duration::from_secs(10),
        command_timeout: None,
        idle_timeout: None,
    }
}

async fn connect(node: &str) -> Session {
    Session::connect(&spec(node), &cfg())
        .await
        .unwrap_or_else(|e| panic!("connect {node}: {e}"))
}

async fn text(s: &Session, cmd: &'static str, user: Option<&str>) -> String {
    script_text(s, &Script::new(cmd), user).await
}

async fn script_text(s: &Session, cmd: &Script, user: Option<&str>) -> String {
    let out = s
        .run(cmd, user, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.exit.success(), "{cmd:?}: {:?}", out.exit);
    out.stdout_text()
}

/// The host key line of a node as OpenSSH's `ssh-keyscan` would print it (from its pub file).
fn host_pub(node: &str) -> String {
    let p = tb()
        .dir()
        .join("ssh")
        .join(node)
        .join("ssh_host_ed25519_key.pub");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn err_of(r: Result<Session, TransportError>) -> TransportError {
    match r {
        Ok(_) => panic!("connect unexpectedly succeeded"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stdout_streams_intact() {
    let s = connect("node1").await;
    // Non-trivial content (~98 MB) checked against sha256sum run on the host itself.
    let cmd = "seq 1 12000000";
    let want = text(&s, "seq 1 12000000 | sha256sum | cut -d' ' -f1", None).await;
    let mut p = s.exec(&Script::new(cmd), None).await.unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = p.stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let exit = p.wait().await.unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(hex::encode(hasher.finalize()), want);
    let size: u64 = text(&s, "seq 1 12000000 | wc -c", None)
        .await
        .parse()
        .unwrap();
    assert_eq!(total, size);
    assert!(total > 90_000_000);

    // 128 MiB of zeros, counted.
    let mut p = s
        .exec(&Script::new("head -c 134217728 /dev/zero"), None)
        .await
        .unwrap();
    let n = tokio::io::copy(&mut p.stdout, &mut tokio::io::sink())
        .await
        .unwrap();
    assert_eq!(n, 128 << 20);
    assert!(p.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_tail_and_exit_code() {
    let s = connect("node2").await;
    let out = s
        .run(&Script::new("echo out; echo first-err >&2; i=0; while [ $i -lt 3000 ]; do echo line$i >&2; i=$((i+1)); done; exit 3"), None, 1024)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.exit.code, Some(3));
    assert!(!out.exit.success());
    assert!(
        out.exit.stderr_tail.ends_with("line2999"),
        "{}",
        out.exit.stderr_tail
    );
    assert!(!out.exit.stderr_tail.contains("first-err"));
    assert!(out.exit.stderr_tail.len() <= 8192);

    // A missing binary: 127 and the shell's complaint.
    let out = s
        .run(&Script::new("no-such-binary-lsbackup --x"), None, 1024)
        .await
        .unwrap();
    assert_eq!(out.exit.code, Some(127));
    assert!(
        out.exit.stderr_tail.contains("not found"),
        "{}",
        out.exit.stderr_tail
    );

    // Killed by a signal: no code, the signal name.
    let out = s
        .run(&Script::new("kill -TERM $$"), None, 1024)
        .await
        .unwrap();
    assert_eq!(out.exit.code, None);
    assert_eq!(out.exit.signal.as_deref(), Some("TERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn become_via_sudo() {
    // ansible_become=true, become_user root (the inventory's default).
    let mut sp = spec("node1");
    sp.become_ = true;
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    assert_eq!(text(&s, "id -u", None).await, "0");
    assert_eq!(text(&s, "id -un", Some("postgres")).await, "postgres");
    // Already the login user: no sudo at all.
    assert_eq!(text(&s, "id -un", Some("operations")).await, "operations");
    assert_eq!(s.command_line(Some("operations")), "sh -s");
    assert_eq!(s.command_line(None), "sudo -n -H -- sh -s");
    assert_eq!(
        s.command_line(Some("postgres")),
        "sudo -n -H -u postgres -- sh -s"
    );
    // Quoting survives sudo: quotes, $, backslashes, newlines.
    let tricky = "printf '%s|' \"it's\" '$HOME' 'a\\b'; echo\necho second";
    assert_eq!(
        script_text(&s, &Script::new(tricky), Some("postgres")).await,
        "it's|$HOME|a\\b|\nsecond"
    );

    // No become in the inventory: the login user, unless asked.
    let s = connect("node1").await;
    assert_eq!(text(&s, "id -un", None).await, "operations");
    assert_eq!(text(&s, "id -u", Some("root")).await, "0");
    assert_eq!(s.effective_user(Some("postgres")), "postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host_is_one_clear_line() {
    let mut sp = spec("node1");
    sp.host = "node9".into();
    sp.address = "127.0.0.99".into();
    let e = err_of(Session::connect(&sp, &cfg()).await);
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "node9: cannot connect to 127.0.0.99:{}: connection refused",
            tb().ssh_port()
        )
    );
    assert_eq!(e.host(), "node9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_on_silent_server() {
    // Accepts TCP connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut sp = spec("node1");
    sp.address = "127.0.0.1".into();
    sp.port = port;
    let mut c = cfg();
    c.connect_timeout = Duration::from_secs(1);
    let t = Instant::now();
    let e = err_of(Session::connect(&sp, &c).await);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(e, TransportError::ConnectTimeout { secs: 1, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "node1: connection timed out after 1s (127.0.0.1:{port}) in the SSH handshake: the server took the connection and never completed it (limit: --connect-timeout)"
        )
    );

    // The inventory's ConnectTimeout wins over the run's.
    sp.ssh.connect_timeout = Some(Duration::from_secs(2));
    c.connect_timeout = Duration::from_secs(60);
    let t = Instant::now();
    let e = err_of(Session::connect(&sp, &c).await);
    assert!(
        matches!(e, TransportError::ConnectTimeout { secs: 2, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .ends_with("(limit: the inventory's ConnectTimeout)"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(6));
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_refused_listing_what_was_tried() {
    let mut sp = spec("node2");
    sp.key_file = Some(tb().other_key());
    let missing = PathBuf::from("/nonexistent/lsbackup/id_ed25519");
    let mut c = cfg();
    c.identities = vec![missing.clone()];
    let e = err_of(Session::connect(&sp, &c).await);
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("node2: authentication failed for user operations (tried: "),
        "{msg}"
    );
    assert!(
        msg.contains(&tb().other_key().display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{} (not found)", missing.display())),
        "{msg}"
    );
    assert!(!msg.contains("PRIVATE KEY"), "{msg}");

    // The right key given with --identity after a wrong inventory key works.
    c.identities = vec![tb().client_key()];
    let s = Session::connect(&sp, &c).await.unwrap();
    assert_eq!(text(&s, "echo ok", None).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_with_how_to_accept() {
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, "").unwrap();
    let mut c = cfg();
    c.known_hosts = kh.clone();
    let e = err_of(Session::connect(&spec("node1"), &c).await);
    assert!(matches!(e, TransportError::UnknownHostKey { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "node1: host key for 127.0.0.2:{} is not known (ssh-ed25519 SHA256:",
            tb().ssh_port()
        )),
        "{msg}"
    );
    assert!(msg.contains("--accept-new-host-keys"), "{msg}");
    assert!(msg.contains(&kh.display().to_string()), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        "",
        "nothing recorded"
    );

    // The inventory's UserKnownHostsFile wins over the run's file.
    let mut sp = spec("node1");
    sp.ssh.user_known_hosts_file = Some(tb().known_hosts());
    Session::connect(&sp, &c).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_the_key_then_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("new/.ssh/known_hosts");
    let mut c = cfg();
    c.known_hosts = kh.clone();
    c.accept_new_host_keys = true;
    let s = Session::connect(&spec("node1"), &c).await.unwrap();
    assert_eq!(text(&s, "echo ok", None).await, "ok");
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(
        recorded,
        format!("[127.0.0.2]:{} {}\n", tb().ssh_port(), host_pub("node1"))
    );
    assert_eq!(
        std::fs::metadata(&kh).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Second time, without the flag: the recorded key passes.
    c.accept_new_host_keys = false;
    Session::connect(&spec("node1"), &c).await.unwrap();

    // StrictHostKeyChecking=accept-new in the inventory does the same for another host.
    let mut sp = spec("node2");
    sp.ssh.strict_host_key_checking = Some(StrictHostKeyChecking::AcceptNew);
    Session::connect(&sp, &c).await.unwrap();
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(recorded.lines().count(), 2);
    assert!(recorded.contains(&format!(
        "[127.0.0.3]:{} {}",
        tb().ssh_port(),
        host_pub("node2")
    )));
    // And node2 now passes with strict checking.
    Session::connect(&spec("node2"), &c).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_always_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let port = tb().ssh_port();
    // node1's address recorded with node2's key, on line 2.
    std::fs::write(
        &kh,
        format!("# comment\n[127.0.0.2]:{port} {}\n", host_pub("node2")),
    )
    .unwrap();
    let before = std::fs::read_to_string(&kh).unwrap();
    let mut c = cfg();
    c.known_hosts = kh.clone();
    c.accept_new_host_keys = true;
    for strict in [
        None,
        Some(StrictHostKeyChecking::AcceptNew),
        Some(StrictHostKeyChecking::No),
    ] {
        let mut sp = spec("node1");
        sp.ssh.strict_host_key_checking = strict;
        let e = err_of(Session::connect(&sp, &c).await);
        assert!(
            matches!(e, TransportError::ChangedHostKey { line: 2, .. }),
            "{strict:?}: {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "node1: HOST KEY CHANGED for 127.0.0.2:{port} (now ssh-ed25519 SHA256:"
            )),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{}:2 has another", kh.display())),
            "{msg}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        before,
        "file untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_strict_no_records_like_accept_new_and_refuses_a_changed_key() {
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let port = tb().ssh_port();
    let mut c = cfg();
    c.known_hosts = kh.clone();
    let mut sp = spec("node3");
    sp.ssh.strict_host_key_checking = Some(StrictHostKeyChecking::No);
    // Unknown key: recorded on first use, the connection works.
    let s = Session::connect(&sp, &c).await.unwrap();
    assert_eq!(text(&s, "echo ok", None).await, "ok");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("[127.0.0.4]:{port} {}\n", host_pub("node3"))
    );
    // Recorded: strict checking passes now.
    Session::connect(&spec("node3"), &c).await.unwrap();

    // Another host's key recorded under node3's address: refused, even with
    // StrictHostKeyChecking=no + UserKnownHostsFile=/dev/null (ignored: the run's file is used)
    // and --accept-new-host-keys.
    std::fs::write(&kh, format!("[127.0.0.4]:{port} {}\n", host_pub("node1"))).unwrap();
    let before = std::fs::read_to_string(&kh).unwrap();
    sp.ssh.user_known_hosts_file = Some(PathBuf::from("/dev/null"));
    for accept_new in [false, true] {
        c.accept_new_host_keys = accept_new;
        let e = err_of(Session::connect(&sp, &c).await);
        assert!(
            matches!(&e, TransportError::ChangedHostKey { line: 1, known_hosts, .. } if *known_hosts == kh),
            "{e:?}"
        );
    }
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), before);

    // The same through the inventory parser, as an operator's inventory says it.
    let b = tempfile::tempdir().unwrap();
    std::fs::write(
        b.path().join("inventory"),
        format!(
            "[all]\nnode3 ansible_host=127.0.0.4 ansible_port={port} ansible_user={} ansible_ssh_private_key_file={}\n[all:vars]\nansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n",
            tb().ssh_user(),
            tb().client_key().display()
        ),
    )
    .unwrap();
    let inv = lsbackup::inventory::Inventory::discover(b.path(), None).unwrap();
    let from_inv = inv.connection("node3").unwrap();
    assert_eq!(from_inv.ssh.user_known_hosts_file, None);
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.starts_with("host node3: ") && w.contains("treated as accept-new")),
        "{:?}",
        inv.warnings
    );
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.contains("UserKnownHostsFile=/dev/null is ignored")),
        "{:?}",
        inv.warnings
    );
    c.accept_new_host_keys = false;
    let e = err_of(Session::connect(&from_inv, &c).await);
    assert!(matches!(e, TransportError::ChangedHostKey { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_known_hosts_wins_over_the_inventorys() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    // The inventory names the test bed's file (node1 known there); --known-hosts an empty one.
    let mut sp = spec("node1");
    sp.ssh.user_known_hosts_file = Some(tb().known_hosts());
    let mut c = cfg();
    c.known_hosts = empty.clone();
    c.known_hosts_overrides_inventory = true;
    let e = err_of(Session::connect(&sp, &c).await);
    assert!(
        matches!(&e, TransportError::UnknownHostKey { known_hosts, .. } if *known_hosts == empty),
        "{e:?}"
    );
    // And the other way round: the inventory's file knows nothing, --known-hosts does.
    sp.ssh.user_known_hosts_file = Some(empty.clone());
    c.known_hosts = tb().known_hosts();
    Session::connect(&sp, &c).await.unwrap();
    // Without --known-hosts, the inventory's file is the one in force.
    c.known_hosts_overrides_inventory = false;
    let e = err_of(Session::connect(&sp, &c).await);
    assert!(
        matches!(&e, TransportError::UnknownHostKey { known_hosts, .. } if *known_hosts == empty),
        "{e:?}"
    );
}

/// A `tracing` subscriber for this thread that keeps what is logged.
fn capture_log() -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    tracing::subscriber::DefaultGuard,
) {
    #[derive(Clone)]
    struct W(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let w = W(buf.clone());
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

// One thread: russh's tasks run where the capturing subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn insecure_flag_connects_to_a_changed_key_with_a_warning() {
    let (log, _guard) = capture_log();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let port = tb().ssh_port();
    std::fs::write(&kh, format!("[127.0.0.2]:{port} {}\n", host_pub("node2"))).unwrap();
    let mut c = cfg();
    c.known_hosts = kh.clone();
    // Refused without the flag ...
    let e = err_of(Session::connect(&spec("node1"), &c).await);
    assert!(matches!(e, TransportError::ChangedHostKey { .. }), "{e:?}");
    // ... connected with it, with a warning naming the host, and nothing recorded.
    c.insecure_skip_host_key_check = true;
    let s = Session::connect(&spec("node1"), &c).await.unwrap();
    assert_eq!(text(&s, "echo insecure", None).await, "insecure");
    let got = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    let warning = got
        .lines()
        .find(|l| l.contains("WARN") && l.contains("node1: host key NOT verified"))
        .unwrap_or_else(|| panic!("no warning in {got:?}"));
    assert!(warning.contains("CHANGED"), "{warning}");
    assert!(
        warning.contains("--insecure-skip-host-key-check"),
        "{warning}"
    );
    // An unknown key too, again with a warning, and still nothing recorded.
    let s = Session::connect(&spec("node3"), &c).await.unwrap();
    assert_eq!(text(&s, "echo ok", None).await, "ok");
    let got = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert!(
        got.lines()
            .any(|l| l.contains("WARN") && l.contains("node3: host key NOT verified")),
        "{got}"
    );
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("[127.0.0.2]:{port} {}\n", host_pub("node2"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connections_record_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let mut c = cfg();
    c.known_hosts = kh.clone();
    c.accept_new_host_keys = true;
    // Eight inventory names for one address, all connecting at once.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let mut sp = spec("node2");
            sp.host = format!("alias{i}");
            let c = c.clone();
            tokio::spawn(async move { Session::connect(&sp, &c).await })
        })
        .collect();
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        assert_eq!(text(&s, "echo ok", None).await, "ok");
    }
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("[127.0.0.3]:{} {}\n", tb().ssh_port(), host_pub("node2"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_and_bracketed_known_hosts_entries() {
    // The test bed's file: node1/node2 as `[ip]:port`, node3 hashed.
    let text_kh = std::fs::read_to_string(tb().known_hosts()).unwrap();
    assert!(text_kh.contains("|1|"));
    for node in ["node1", "node2", "node3"] {
        connect(node).await;
    }
    // Our own file hashed by OpenSSH (ssh-keygen -H) for all three.
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let port = tb().ssh_port();
    let plain: String = ["node1", "node2", "node3"]
        .iter()
        .map(|n| format!("[{}]:{port} {}\n", tb().host_of(n), host_pub(n)))
        .collect();
    std::fs::write(&kh, plain).unwrap();
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(
        hashed.lines().filter(|l| l.starts_with("|1|")).count(),
        3,
        "{hashed}"
    );
    let mut c = cfg();
    c.known_hosts = kh.clone();
    for node in ["node1", "node2", "node3"] {
        Session::connect(&spec(node), &c)
            .await
            .unwrap_or_else(|e| panic!("{node}: {e}"));
    }
    // A hashed entry holding another key is a changed key, with its line number.
    let node2_line = hashed
        .lines()
        .position(|l| l.contains(&host_pub("node2")[12..]))
        .unwrap()
        + 1;
    let swapped = hashed.replace(&host_pub("node2"), &host_pub("node3"));
    std::fs::write(&kh, swapped).unwrap();
    let e = err_of(Session::connect(&spec("node2"), &c).await);
    assert!(
        matches!(e, TransportError::ChangedHostKey { line, .. } if line == node2_line),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_session() {
    let sp = ConnectionSpec {
        host: "localhost".into(),
        address: "localhost".into(),
        port: 22,
        user: None,
        key_file: None,
        local: true,
        become_: true,
        become_user: "root".into(),
        ssh: SshOptions::default(),
    };
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    assert!(s.is_local());
    assert_eq!(s.host(), "localhost");
    assert_eq!(text(&s, "echo $((40+2))", None).await, "42");
    assert_eq!(text(&s, "id -un", Some("postgres")).await, "postgres");
    let out = s
        .run(&Script::new("echo e >&2; exit 4"), None, 10)
        .await
        .unwrap();
    assert_eq!(
        (out.exit.code, out.exit.stderr_tail.as_str()),
        (Some(4), "e")
    );
    // Streams like the remote ones.
    let mut p = s
        .exec(&Script::new("head -c 50000000 /dev/zero"), None)
        .await
        .unwrap();
    let n = tokio::io::copy(&mut p.stdout, &mut tokio::io::sink())
        .await
        .unwrap();
    assert_eq!(n, 50_000_000);
    assert!(p.wait().await.unwrap().success());
    // Timeout kills the whole pipeline.
    let mut c = cfg();
    c.command_timeout = Some(Duration::from_secs(1));
    let s = Session::connect(&sp, &c).await.unwrap();
    let t = Instant::now();
    let e = s
        .run(&Script::new("sleep 30 | cat"), None, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(e, TransportError::CommandTimeout { secs: 1, .. }),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "localhost: command timed out after 1s");
    assert!(t.elapsed() < Duration::from_secs(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_commands_at_once_on_one_session() {
    let s = connect("node3").await;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let out = s
                .run(
                    &Script::new(r#"sleep 0.3; echo "$1""#).arg(i.to_string()),
                    None,
                    100,
                )
                .await
                .unwrap();
            assert!(out.exit.success());
            assert_eq!(out.stdout_text(), i.to_string());
        }));
    }
    // Streams at the same time as the short commands.
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut p = s
                    .exec(&Script::new("head -c 20000000 /dev/urandom"), None)
                    .await
                    .unwrap();
                let n = tokio::io::copy(&mut p.stdout, &mut tokio::io::sink())
                    .await
                    .unwrap();
                assert!(p.wait().await.unwrap().success());
                n
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for st in streams {
        assert_eq!(st.await.unwrap(), 20_000_000);
    }
    // 40 x 0.3 s in batches of 8 channels, not one after another.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_timeout_closes_the_channel_and_session_survives() {
    let mut c = cfg();
    c.command_timeout = Some(Duration::from_secs(1));
    let s = Session::connect(&spec("node1"), &c).await.unwrap();
    let t = Instant::now();
    let mut p = s
        .exec(&Script::new("echo started; sleep 30; echo never"), None)
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = p.stdout.read_to_end(&mut got).await;
    assert_eq!(got, b"started\n");
    assert_eq!(
        read.unwrap_err().kind(),
        std::io::ErrorKind::TimedOut,
        "a cut stream is an error, not EOF"
    );
    let e = p.wait().await.unwrap_err();
    assert!(
        matches!(e, TransportError::CommandTimeout { secs: 1, .. }),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "node1: command timed out after 1s");
    assert!(t.elapsed() < Duration::from_secs(5));
    // The connection is still good.
    assert_eq!(text(&s, "echo still", None).await, "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_dropped_reader_drains_and_dropped_process_stops() {
    let s = connect("node2").await;
    // Drop stdout after 1 KiB: the rest is drained, the exit status still arrives.
    let mut p = s
        .exec(
            &Script::new("head -c 30000000 /dev/zero; echo done >&2"),
            None,
        )
        .await
        .unwrap();
    let mut first = vec![0u8; 1024];
    p.stdout.read_exact(&mut first).await.unwrap();
    p.stdout = Box::new(tokio::io::empty());
    let exit = p.wait().await.unwrap();
    assert!(exit.success());
    assert_eq!(exit.stderr_tail, "done");

    // Drop the whole process: the remote command is stopped.
    let marker = format!("/tmp/lsbackup-transport-drop-{}", std::process::id());
    let p = s
        .exec(
            &Script::new(r#"sleep 3; touch "$1""#).arg(marker.clone()),
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(p);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!Path::new(&marker).exists(), "dropped command kept running");
    // run() over the limit is an error, and the session stays usable.
    let e = s
        .run(&Script::new("head -c 5000 /dev/zero"), None, 1000)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("node2: output of `head -c 5000 /dev/zero` is larger than 1000 bytes"),
        "{e}"
    );
    assert_eq!(text(&s, "echo ok", None).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_is_not_a_clean_exit() {
    let s = connect("node3").await;
    // Kill this connection's sshd process from inside: the channel closes without a status.
    let mut p = s
        .exec(&Script::new("echo partial; sleep 0.2; pid=$$; while [ \"$(ps -o comm= -p $pid)\" != sshd ] && [ \"$(ps -o comm= -p $pid)\" != sshd-session ]; do pid=$(ps -o ppid= -p $pid | tr -d ' '); done; kill -9 $pid"), None)
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = p.stdout.read_to_end(&mut got).await;
    assert_eq!(got, b"partial\n");
    assert!(read.is_err(), "truncated stream must end in an error");
    let e = p.wait().await.unwrap_err();
    assert!(matches!(e, TransportError::Lost { .. }), "{e:?}");
    // the cause is the connection's end, not only the channel's
    assert!(
        e.to_string()
            .starts_with("node3: connection lost: the connection dropped: "),
        "{e}"
    );
    // Later commands on the dead session fail with Lost too.
    let e = s.run(&Script::new("true"), None, 10).await.unwrap_err();
    assert!(matches!(e, TransportError::Lost { .. }), "{e:?}");
}

/// An ssh-agent of our own, stopped by PID on drop.
struct Agent {
    pid: u32,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let out = Command::new("ssh-agent")
            .arg("-s")
            .arg("-a")
            .arg(&sock)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let pid = text
            .split(';')
            .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("ssh-agent: {text}"));
        Agent {
            pid,
            sock,
            _dir: dir,
        }
    }

    fn add(&self, key: &Path) {
        let st = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "ssh-add: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_encrypted_keys() {
    // A passphrase-protected copy of the client key.
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc_key");
    std::fs::copy(tb().client_key(), &enc).unwrap();
    std::fs::set_permissions(&enc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let st = Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "s3cret-pass", "-P", ""])
        .arg("-f")
        .arg(&enc)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    // Without an agent: a clear error, no secret in it.
    let mut sp = spec("node1");
    sp.key_file = Some(enc.clone());
    let e = err_of(Session::connect(&sp, &cfg()).await);
    let msg = e.to_string();
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");
    assert!(
        msg.contains(&format!("{} (passphrase-protected)", enc.display())),
        "{msg}"
    );
    assert!(
        msg.contains("ssh-agent") && msg.contains("ssh-add"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret"), "{msg}");

    // With an agent holding the key (this test alone sets SSH_AUTH_SOCK; the others do not use
    // the agent).
    let agent = Agent::start();
    agent.add(&tb().other_key());
    agent.add(&tb().client_key());
    // SAFETY: no other test reads SSH_AUTH_SOCK (they all run with use_agent = false).
    unsafe { std::env::set_var("SSH_AUTH_SOCK", &agent.sock) };
    let mut c = cfg();
    c.use_agent = true;
    let s = Session::connect(&sp, &c).await.unwrap();
    assert_eq!(text(&s, "id -un", None).await, "operations");
    // Agent only, no key file.
    sp.key_file = None;
    let s = Session::connect(&sp, &c).await.unwrap();
    assert_eq!(text(&s, "echo via-agent", None).await, "via-agent");
    // An agent with only the wrong key: the error says so.
    let wrong = Agent::start();
    wrong.add(&tb().other_key());
    unsafe { std::env::set_var("SSH_AUTH_SOCK", &wrong.sock) };
    let e = err_of(Session::connect(&sp, &c).await);
    assert!(e.to_string().contains("agent (1 keys)"), "{e}");
    unsafe { std::env::remove_var("SSH_AUTH_SOCK") };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_jump_and_proxy_command() {
    let port = tb().ssh_port();
    // node1 through node2 (direct-tcpip on the jump host); both keys checked.
    let mut sp = spec("node1");
    sp.ssh.proxy_jump = Some(format!("operations@127.0.0.3:{port}"));
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    assert_eq!(
        text(&s, "echo jumped; id -un", None).await,
        "jumped\noperations"
    );

    // Two jumps: node3 -> node2 -> node1.
    sp.ssh.proxy_jump = Some(format!(
        "operations@127.0.0.4:{port},operations@127.0.0.3:{port}"
    ));
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    assert_eq!(text(&s, "echo twice", None).await, "twice");

    // A jump host whose key is not known is refused and named as the jump host.
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, format!("[127.0.0.2]:{port} {}\n", host_pub("node1"))).unwrap();
    let mut c = cfg();
    c.known_hosts = kh;
    sp.ssh.proxy_jump = Some(format!("operations@127.0.0.3:{port}"));
    let e = err_of(Session::connect(&sp, &c).await);
    assert!(matches!(e, TransportError::UnknownHostKey { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("127.0.0.3:{port} (jump host)")),
        "{e}"
    );

    // ProxyCommand: socat relays stdio to %h:%p.
    let mut sp = spec("node2");
    sp.ssh.proxy_command = Some("socat - TCP:%h:%p".into());
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    assert_eq!(text(&s, "echo proxied", None).await, "proxied");
    // A ProxyCommand that fails: a connect error naming the host.
    sp.ssh.proxy_command = Some("echo 'no route to bastion' >&2; exit 1".into());
    let e = err_of(Session::connect(&sp, &cfg()).await);
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "node2: cannot connect to 127.0.0.3:{port}: ProxyCommand failed: no route to bastion"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_command_with_a_hostile_host_name_runs_nothing() {
    let port = tb().ssh_port();
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("MARK");
    // The inventory accepts this ansible_host; it reaches the ProxyCommand as %h.
    let b = tempfile::tempdir().unwrap();
    std::fs::write(
        b.path().join("inventory"),
        format!(
            "[all]\nnode2 ansible_host='127.0.0.3;touch {}' ansible_port={port} ansible_user={} ansible_ssh_private_key_file={}\n[all:vars]\nansible_ssh_common_args='-o \"ProxyCommand socat - TCP:%h:%p\"'\n",
            mark.display(),
            tb().ssh_user(),
            tb().client_key().display()
        ),
    )
    .unwrap();
    let inv = lsbackup::inventory::Inventory::discover(b.path(), None).unwrap();
    let sp = inv.connection("node2").unwrap();
    assert_eq!(sp.address, format!("127.0.0.3;touch {}", mark.display()));
    assert_eq!(sp.ssh.proxy_command.as_deref(), Some("socat - TCP:%h:%p"));
    let e = err_of(Session::connect(&sp, &cfg()).await);
    // socat is handed the whole name as one address and cannot resolve it.
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("node2: cannot connect to ")
            && e.to_string().contains("ProxyCommand failed"),
        "{e}"
    );
    assert!(!mark.exists(), "the host name ran as a command");

    // The same inside a quoted script for an inner shell.
    let mut sp = sp.clone();
    sp.ssh.proxy_command = Some("sh -c 'exec socat - TCP:%h:%p'".into());
    let e = err_of(Session::connect(&sp, &cfg()).await);
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert!(!mark.exists(), "the host name ran as a command");

    // A host name that needs no quoting is passed as OpenSSH would, and works.
    let mut sp = spec("node2");
    sp.ssh.proxy_command = Some("sh -c 'exec socat - TCP:%h:%p'".into());
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    assert_eq!(text(&s, "echo proxied", None).await, "proxied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_settings_keep_a_quiet_command_alive() {
    let mut sp = spec("node3");
    sp.ssh.server_alive_interval = Some(Duration::from_secs(1));
    sp.ssh.server_alive_count_max = Some(2);
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    // Silent for longer than interval x count: keepalives are answered, nothing breaks.
    assert_eq!(text(&s, "sleep 4; echo awake", None).await, "awake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_reaches_the_remote_command() {
    let s = connect("node1").await;
    let probe = connect("node1").await;
    // A byte count unique to this run, to find the process on the host.
    let count = 300_000_000 + u64::from(std::process::id() % 100_000);
    let mut p = s
        .exec(
            &Script::new(r#"head -c "$1" /dev/zero"#).arg(count.to_string()),
            None,
        )
        .await
        .unwrap();
    // Read nothing for a while: the host's `head` must be blocked, not finished into our memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // `[h]ead` so the probe's own command line does not match.
    let probe_cmd =
        Script::new(r#"pgrep -f "[h]ead -c $1 /dev/zero" >/dev/null && echo blocked || echo gone"#)
            .arg(count.to_string());
    let running = probe
        .run(&probe_cmd, None, 100)
        .await
        .unwrap()
        .stdout_text();
    assert_eq!(running, "blocked");
    let n = tokio::io::copy(&mut p.stdout, &mut tokio::io::sink())
        .await
        .unwrap();
    assert_eq!(n, count);
    assert_eq!(
        probe
            .run(&probe_cmd, None, 100)
            .await
            .unwrap()
            .stdout_text(),
        "gone"
    );
    assert!(p.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_notices_a_frozen_server() {
    let mut sp = spec("node2");
    sp.ssh.server_alive_interval = Some(Duration::from_secs(1));
    sp.ssh.server_alive_count_max = Some(2);
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    // The sshd process serving this connection (the shell's nearest sshd ancestor).
    let pid = text(
        &s,
        "pid=$$; while c=$(ps -o comm= -p $pid) && [ \"$c\" != sshd ] && [ \"$c\" != sshd-session ]; do pid=$(ps -o ppid= -p $pid | tr -d ' '); done; echo $pid",
        None,
    )
    .await;
    let mut p = s.exec(&Script::new("sleep 60"), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(20), async {
        let mut sink = Vec::new();
        let read = p.stdout.read_to_end(&mut sink).await;
        (read, p.wait().await)
    })
    .await;
    // Let the frozen process go again whatever happened (it exits with the dead connection).
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let (read, waited) = res.expect("a frozen server must be noticed by keepalives");
    assert!(read.is_err());
    assert!(
        matches!(waited, Err(TransportError::Lost { .. })),
        "{waited:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// A script travels over stdin: nothing in it (a value, a secret) is in any process's command
/// line on the host while it runs, as another user sees it with `ps`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_contents_never_reach_a_command_line() {
    let mut sp = spec("node1");
    sp.become_ = true;
    let s = Session::connect(&sp, &cfg()).await.unwrap();
    let probe = connect("node2").await;
    let secret = format!("lsb-secret-{}", std::process::id());
    // As root through sudo, and as another user: the value sits in a shell variable while
    // `sleep` runs.
    for user in [None, Some("postgres")] {
        let p = s
            .exec(
                &Script::new(r#"pw=$1; sleep 2; printf '%s' "$pw" | wc -c"#).arg(secret.clone()),
                user,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let seen = probe
            .run(&Script::new("ps -eo args"), None, 1 << 20)
            .await
            .unwrap();
        let args = String::from_utf8_lossy(&seen.stdout);
        assert!(
            args.contains("sleep 2"),
            "probe saw no running step:\n{args}"
        );
        assert!(!args.contains(&secret), "secret visible in ps:\n{args}");
        let exit = p.wait().await.unwrap();
        assert!(exit.success(), "{user:?}: {exit:?}");
    }
}

/// Data streamed to a command on fd 3 (`Session::exec_with_input`, used by restore): large
/// binary data arrives intact, as another user through sudo too; the script's own commands do
/// not read it unless they ask; a local read error fails the command instead of looking like a
/// clean end of data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_streams_to_fd3_intact_and_a_read_error_is_not_an_eof() {
    use sha2::Digest;
    let s = connect("node2").await;
    // 24 MiB of non-repeating bytes (every byte value, newlines, NULs).
    let size: usize = 24 << 20;
    let mut data = Vec::with_capacity(size);
    let mut x: u32 = 1;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let want = hex::encode(Sha256::digest(&data));
    for user in [None, Some("postgres")] {
        // `cat` without <&3 reads /dev/null: the data is only where the script asks for it.
        let script = Script::new(r#"cat; id -un; sha256sum <&3 | cut -d' ' -f1; printf '%s' "$1""#)
            .arg("it's $x");
        let mut p = s
            .exec_with_input(&script, user, Box::new(std::io::Cursor::new(data.clone())))
            .await
            .unwrap();
        let mut out = String::new();
        p.stdout.read_to_string(&mut out).await.unwrap();
        let exit = p.wait().await.unwrap();
        assert!(exit.success(), "{exit:?}");
        let who = user.unwrap_or("operations");
        assert_eq!(out, format!("{who}\n{want}\nit's $x"));
    }
    assert!(
        s.input_command_line(Some("postgres"))
            .starts_with("sudo -n -H -u postgres -- sh -c 'IFS= read -r n"),
        "{}",
        s.input_command_line(Some("postgres"))
    );

    // A reader that fails half-way: the command is not reported as a success.
    struct Failing(usize);
    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("disk read failed")));
            }
            let n = self.0.min(buf.remaining()).min(65536);
            buf.put_slice(&vec![b'a'; n]);
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }
    let p = s
        .exec_with_input(
            &Script::new("cat <&3 >/dev/null"),
            None,
            Box::new(Failing(1 << 20)),
        )
        .await
        .unwrap();
    let err = p.wait().await.unwrap_err().to_string();
    assert!(err.contains("disk read failed"), "{err}");
}
