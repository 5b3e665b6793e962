//! One run at a time per target: the lock file `PREFIX.lock`, its holder named when a second
//! run comes, stale locks taken over with a warning, the lock gone after the run (also after an
//! interrupt). Needs `tests/testbed/up.sh` (backups of HAProxy).

mod common;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn lock(dir: &Path, host: &str, pid: u32, started: &str) {
    let body = serde_json::json!({
        "user": "someone", "host": host, "pid": pid, "started": started, "command": "backup",
    });
    std::fs::write(dir.join("lsbackup.lock"), body.to_string()).unwrap();
}

fn archives(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .to_string();
            n.ends_with(".tar.zst")
        })
        .count()
}

#[test]
fn a_live_lock_stops_the_run_and_names_its_holder() {
    let tb = common::testbed();
    let target = tempfile::tempdir().unwrap();
    // held by this test process: alive, on this machine
    let now = jiff::Timestamp::now().to_string();
    lock(target.path(), &hostname(), std::process::id(), &now);
    let out = support::backup_command(&tb.build_dir(), target.path())
        .args(["--only", "haproxy"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "is in use: backup by someone@{} (pid {}) since {now} holds",
            hostname(),
            std::process::id()
        )),
        "{err}"
    );
    assert_eq!(archives(target.path()), 0);
    assert!(
        target.path().join("lsbackup.lock").exists(),
        "not ours to remove"
    );

    // prune too
    let out = Command::new(support::bin())
        .args(["prune", "--keep-last", "1", "-t"])
        .arg(target.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in use"));
}

#[test]
fn stale_locks_are_taken_over_with_a_warning_and_the_lock_goes_after_the_run() {
    let tb = common::testbed();
    for (host, pid, started, why) in [
        // this machine, a pid that is not running
        (
            hostname(),
            u32::MAX - 7,
            jiff::Timestamp::now().to_string(),
            "no longer runs on this machine",
        ),
        // another machine, two days old
        (
            "elsewhere.example".to_string(),
            1,
            (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48)).to_string(),
            "older than the 86400s limit",
        ),
    ] {
        let target = tempfile::tempdir().unwrap();
        lock(target.path(), &host, pid, &started);
        let out = support::backup_command(&tb.build_dir(), target.path())
            .args(["--only", "haproxy"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(err.contains("took over the stale lock"), "{err}");
        assert!(err.contains(why), "{err}");
        assert_eq!(archives(target.path()), 1);
        assert!(!target.path().join("lsbackup.lock").exists());
    }
}

#[test]
fn two_runs_at_once_on_one_target_the_second_is_refused() {
    let tb = common::testbed();
    let comps = tempfile::tempdir().unwrap();
    std::fs::write(
        comps.path().join("slow.yaml"),
        "name: slow\ndescription: a slow stream\ngroups: [haproxy]\n\
         steps:\n  - name: stream\n    run: for i in $(seq 1 40); do head -c 100000 /dev/urandom; sleep 0.1; done\n    output: big\n",
    )
    .unwrap();
    let target = tempfile::tempdir().unwrap();
    let first = support::backup_command(&tb.build_dir(), target.path())
        .args(["--only", "slow", "--components-dir"])
        .arg(comps.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock_file = target.path().join("lsbackup.lock");
    for _ in 0..100 {
        if lock_file.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let holder: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock_file).unwrap()).unwrap();
    assert_eq!(holder["pid"], first.id());
    assert_eq!(holder["command"], "backup");
    let second = support::backup_command(&tb.build_dir(), target.path())
        .args(["--only", "haproxy"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("(pid {})", first.id())), "{err}");
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(!lock_file.exists());
    assert_eq!(archives(target.path()), 1);
}
