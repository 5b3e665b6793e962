//! Faults on the machine running lsbackup, against the real test bed: the process killed with
//! SIGKILL at any point of a backup, the target's disk full, a remote command flooding stderr.
//! Needs `tests/testbed/up.sh`; the disk-full test mounts a tmpfs (root).

mod common;
mod support;

use support::stores;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use lsbackup::archive::Status;
use sha2::{Digest, Sha256};

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn text(o: &Output) -> String {
    support::transcript(o)
}

/// `lsbackup verify PATH` passes.
fn verifies(path: &Path) -> Result<(), String> {
    let out = common::lsbackup().arg("verify").arg(path).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// A final (not `.partial`) archive name of prefix `lsbackup`.
fn is_archive(name: &str) -> bool {
    name.starts_with("lsbackup-") && name.ends_with(".tar.zst")
}

/// Kill a child with SIGKILL and reap it.
fn sigkill(child: &mut std::process::Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// SIGKILL at points spread over a whole backup of the test bed into one local target: every
/// final-named archive left behind passes `lsbackup verify` (a killed run never leaves an
/// incomplete one under a final name); the next run removes the stale `.partial` files of its
/// prefix (taking over the dead run's lock) and says so in one line naming them; files that are
/// not provably its own stale partials stay, and nothing is overwritten (a taken name gets `_1`).
#[test]
fn sigkill_during_backup_leaves_no_incomplete_archive_and_next_run_cleans_up() {
    let tb = common::testbed();
    let target = tempfile::Builder::new()
        .prefix("lsb-kill")
        .tempdir_in("/tmp")
        .unwrap();
    let t = target.path();
    let start = |stderr: &Path| {
        support::backup_command(&tb.build_dir(), t)
            .args(["--progress", "never"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap()
    };
    let logs = tempfile::tempdir().unwrap();

    // A first, complete run gives the length of a run.
    let began = Instant::now();
    let first = start(&logs.path().join("first"))
        .wait_with_output()
        .unwrap();
    let whole = began.elapsed();
    let first_err = std::fs::read_to_string(logs.path().join("first")).unwrap();
    assert!(
        matches!(first.status.code(), Some(0 | 2)),
        "first run: {first_err}"
    );
    eprintln!("a whole run takes {whole:?}");

    // Final archives already checked (name -> sha256): a later run must leave them unchanged.
    let mut verified: BTreeMap<String, String> = BTreeMap::new();
    let check_archives = |verified: &mut BTreeMap<String, String>, skip: &[String]| {
        for n in names(t) {
            if !is_archive(&n) || skip.contains(&n) {
                continue;
            }
            let p = t.join(&n);
            let digest = sha(&p);
            match verified.get(&n) {
                Some(before) => assert_eq!(before, &digest, "{n} was changed by a later run"),
                None => {
                    verifies(&p).unwrap_or_else(|e| {
                        panic!("final-named archive {n} does not verify:\n{e}")
                    });
                    verified.insert(n, digest);
                }
            }
        }
    };
    check_archives(&mut verified, &[]);
    assert_eq!(verified.len(), 1, "{:?}", names(t));

    let mut partials_left = 0;
    let mut locks_left = 0;
    for (i, fraction) in [0.03, 0.12, 0.25, 0.4, 0.55, 0.7, 0.82, 0.92, 0.98]
        .into_iter()
        .enumerate()
    {
        let before = names(t);
        let log = logs.path().join(format!("kill{i}"));
        let mut child = start(&log);
        let at = whole.mul_f64(fraction);
        std::thread::sleep(at);
        sigkill(&mut child);
        let after = names(t);
        let err = std::fs::read_to_string(&log).unwrap();
        eprintln!("SIGKILL after {at:?}: {after:?}");
        // A stale partial that was there before this run and is gone now: the run said so.
        for gone in before
            .iter()
            .filter(|n| n.ends_with(".partial") && !after.contains(n))
        {
            let lines: Vec<&str> = err.lines().filter(|l| l.contains(gone.as_str())).collect();
            assert_eq!(lines.len(), 1, "{gone} removed, said once:\n{err}");
        }
        partials_left += after.iter().filter(|n| n.ends_with(".partial")).count();
        locks_left += after.iter().filter(|n| *n == "lsbackup.lock").count();
        check_archives(&mut verified, &[]);
    }
    eprintln!(
        "killed runs left {partials_left} .partial files and {locks_left} locks; {} complete archives",
        verified.len()
    );
    assert!(
        partials_left > 0 && locks_left > 0,
        "no kill landed while an archive was being written: the test proves nothing"
    );

    // Before the next run: a stale sidecar partial of this prefix, other files that are not
    // this prefix's stale partials, and every name the run could take in the next 20 s taken.
    let stale_sidecar = "lsbackup-20200101T000000Z.tar.zst.manifest.json.4242.partial";
    std::fs::write(t.join(stale_sidecar), b"{").unwrap();
    let foreign = [
        "other-20200101T000000Z.tar.zst.partial",
        "lsbackup-foo-20200101T000000Z.tar.zst.partial",
        "notes.partial",
        "lsbackup-20200101T000000Z.tar.zst.keep",
    ];
    for f in foreign {
        std::fs::write(t.join(f), b"not lsbackup's").unwrap();
    }
    let now = jiff::Timestamp::now();
    let mut taken = Vec::new();
    for s in 0..20 {
        let stamp = (now + jiff::SignedDuration::from_secs(s)).strftime("%Y%m%dT%H%M%SZ");
        let name = format!("lsbackup-{stamp}.tar.zst");
        if !t.join(&name).exists() {
            std::fs::write(t.join(&name), b"taken: must stay as it is").unwrap();
            taken.push(name);
        }
    }
    let before = names(t);
    let stale: Vec<&String> = before
        .iter()
        .filter(|n| n.starts_with("lsbackup-2") && n.ends_with(".partial"))
        .collect();
    let lock_was_left = before.iter().any(|n| n == "lsbackup.lock");

    let log = logs.path().join("last");
    let out = start(&log).wait_with_output().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(matches!(out.status.code(), Some(0 | 2)), "{err}");
    let after = names(t);
    eprintln!("after the next run: {after:?}");
    // One line says what was removed, naming every stale partial.
    let said: Vec<&str> = err.lines().filter(|l| l.contains(".partial")).collect();
    assert_eq!(said.len(), 1, "one line about the removed partials:\n{err}");
    eprintln!("{}", said[0]);
    for s in &stale {
        assert!(said[0].contains(s.as_str()), "{s} not named: {}", said[0]);
        assert!(!after.contains(s), "{s} still there");
    }
    if lock_was_left {
        assert!(err.contains("took over the stale lock"), "{err}");
    }
    assert!(!after.iter().any(|n| n == "lsbackup.lock"), "{after:?}");
    assert!(
        !after
            .iter()
            .any(|n| n.ends_with(".partial") && !foreign.contains(&n.as_str())),
        "{after:?}"
    );
    for f in foreign {
        assert_eq!(std::fs::read(t.join(f)).unwrap(), b"not lsbackup's", "{f}");
    }
    for n in &taken {
        assert_eq!(
            std::fs::read(t.join(n)).unwrap(),
            b"taken: must stay as it is",
            "{n} overwritten"
        );
    }
    let new: Vec<&String> = after
        .iter()
        .filter(|n| is_archive(n) && !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "{after:?}");
    assert!(
        taken
            .iter()
            .any(|n| *new[0] == n.replace(".tar.zst", "_1.tar.zst")),
        "the new archive {} does not take the next free name of a taken one",
        new[0]
    );
    check_archives(&mut verified, &taken);
}

/// Unmounts a tmpfs on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("lsb-full")
            .tempdir_in("/tmp")
            .unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount (run the tests as root)");
        assert!(st.success(), "mounting a tmpfs on {}", dir.path().display());
        Tmpfs(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A component that streams `mib` MiB of incompressible data (so the archive cannot fit).
fn noise_component(dir: &Path, mib: u32) {
    std::fs::write(
        dir.join("noise.yaml"),
        format!(
            "name: noise\ndescription: incompressible data\ngroups: [haproxy]\n\
             steps:\n  - name: data\n    run: head -c {} /dev/urandom\n    output: noise.bin\n",
            mib << 20
        ),
    )
    .unwrap();
}

/// The target's disk fills up during the backup (a 1 MiB tmpfs): one error line naming the
/// target and the cause, no component blamed for it, no archive and no `.partial` left, exit 1.
/// With the spool beside the archive (the default) and with the spool elsewhere.
#[test]
fn target_disk_full_is_one_error_line_and_leaves_nothing() {
    let tb = common::testbed();
    let comps = tempfile::tempdir().unwrap();
    noise_component(comps.path(), 4);
    let spool = tempfile::tempdir().unwrap();
    for separate_spool in [false, true] {
        let full = Tmpfs::mount("1m");
        let mut cmd = support::backup_command(&tb.build_dir(), full.path());
        cmd.args(["--progress", "never", "--components-dir"])
            .arg(comps.path())
            .args(["--only", "noise,haproxy,postgresql,kubernetes"]);
        if separate_spool {
            cmd.arg("--spool-dir").arg(spool.path());
        }
        // HOME must not be on the full disk (known_hosts and the like are not written there
        // anyway: --known-hosts is given)
        cmd.env("HOME", spool.path());
        let out = cmd.output().unwrap();
        let all = text(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("spool separate: {separate_spool}\n{err}");
        assert_eq!(out.status.code(), Some(1), "{all}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("No space left on device"))
            .collect();
        assert_eq!(lines.len(), 1, "the cause said once:\n{all}");
        assert!(
            lines[0].contains(&full.path().display().to_string()),
            "the line names the target: {}",
            lines[0]
        );
        // No component is blamed: no ERROR line of a component or host, no "archive writer
        // stopped" passed on to the components.
        for l in err.lines() {
            assert!(
                !(l.contains(" ERROR ") && l.contains("component=")),
                "a component blamed for the full disk: {l}"
            );
            assert!(!l.contains("archive writer stopped"), "{l}");
        }
        assert!(out.stdout.is_empty(), "no archive path printed: {all}");
        assert_eq!(names(full.path()), Vec::<String>::new(), "{all}");
        assert_eq!(names(spool.path()), Vec::<String>::new());
    }
}

/// Peak resident set size of a `/usr/bin/time -v` run, in KiB.
fn max_rss_kib(time_output: &Path) -> u64 {
    let text = std::fs::read_to_string(time_output).unwrap();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap_or_else(|| panic!("no max RSS in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A remote command that writes 300 MB to stderr (and a little to stdout), once ending well and
/// once failing: lsbackup's memory stays bounded (peak RSS printed), the run completes, the last
/// part of stderr is kept in the manifest (the command's record for both, the failure line for
/// the failed one).
#[test]
fn stderr_flood_keeps_memory_bounded_and_the_tail() {
    let tb = common::testbed();
    let comps = tempfile::tempdir().unwrap();
    for (name, exit) in [("flood-ok", 0), ("flood-fail", 3)] {
        std::fs::write(
            comps.path().join(format!("{name}.yaml")),
            format!(
                "name: {name}\ndescription: floods stderr\ngroups: [haproxy]\n\
                 steps:\n  - name: dump\n    run: \"yes 'stderr noise line' | head -c 300000000 >&2; \
                 echo >&2; echo 'last words of {name}' >&2; echo payload; exit {exit}\"\n    output: out.txt\n"
            ),
        )
        .unwrap();
    }
    let target = tempfile::tempdir().unwrap();
    let time_out = target.path().join("time.txt");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v").arg("-o").arg(&time_out).arg(support::bin());
    let probe = support::backup_command(&tb.build_dir(), target.path());
    cmd.args(probe.get_args()).env("HOME", target.path());
    let began = Instant::now();
    let out = cmd
        .args(["--progress", "never", "--components-dir"])
        .arg(comps.path())
        .args(["--only", "flood-ok,flood-fail", "--command-timeout", "600"])
        .output()
        .unwrap();
    let took = began.elapsed();
    let all = text(&out);
    let rss = max_rss_kib(&time_out);
    eprintln!("600 MB of stderr in {took:?}: peak RSS {} MiB", rss / 1024);
    // One command failed, the other is kept: a partial archive.
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(rss < 100 * 1024, "peak RSS {} KiB", rss);
    let archive: PathBuf = names(target.path())
        .into_iter()
        .find(|n| is_archive(n))
        .map(|n| target.path().join(n))
        .unwrap_or_else(|| panic!("no archive: {all}"));
    let x = support::extract(&archive);
    let manifest: lsbackup::archive::Manifest =
        serde_json::from_slice(&std::fs::read(x.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        std::fs::read(x.path().join("flood-ok/node3/out.txt")).unwrap(),
        b"payload\n"
    );
    for (name, status) in [("flood-ok", Status::Ok), ("flood-fail", Status::Failed)] {
        let c = manifest.components.iter().find(|c| c.name == name).unwrap();
        assert_eq!(c.status, status, "{name}: {all}");
        let cmd = &c.hosts[0].commands[0];
        let tail = &cmd.stderr_tail;
        eprintln!("{name}: stderr tail of {} bytes", tail.len());
        assert!(
            tail.ends_with(&format!("last words of {name}")),
            "{name}: the stderr tail is not kept: {:?}",
            &tail[tail.len().saturating_sub(200)..]
        );
        assert!(
            tail.contains("stderr noise line") && tail.len() <= 8192,
            "{name}"
        );
    }
    let fail = manifest
        .components
        .iter()
        .find(|c| c.name == "flood-fail")
        .unwrap();
    let msg = support::messages(&fail.hosts[0].errors);
    assert!(
        msg.contains("node3: flood-fail: dump: exit status 3: last words of flood-fail"),
        "{msg}"
    );
    assert!(msg.len() < 1000, "one short line: {msg}");
}

/// An object-store backup killed with SIGKILL while uploading leaves its `NAME.partial` marker
/// (and on Azure uncommitted blocks, on S3 the multipart upload); the next run removes the
/// marker (and Azure's blocks) and says so in one line. S3's parts of the killed upload are
/// left to the bucket's lifecycle rule (object_store cannot name them without the upload id).
fn object_store_kill(store: stores::Store) {
    let tb = common::testbed();
    let prefix = support::unique("kill");
    let creds = tempfile::tempdir().unwrap();
    let settings = store.settings(creds.path());
    let comps = tempfile::tempdir().unwrap();
    std::fs::write(
        comps.path().join("slow.yaml"),
        "name: slow\ndescription: a burst, then a slow stream\ngroups: [haproxy]\n\
         steps:\n  - name: burst\n    run: head -c 12582912 /dev/urandom\n    output: burst\n\
         \x20 - name: stream\n    run: for i in $(seq 1 600); do head -c 1048576 /dev/urandom; sleep 0.05; done\n    output: big\n",
    )
    .unwrap();
    let run = |only: &str| {
        let mut c = common::lsbackup();
        c.args([
            "backup",
            "--progress",
            "never",
            "--no-agent",
            "--only",
            only,
        ])
        .arg("--components-dir")
        .arg(comps.path())
        .arg("-b")
        .arg(tb.build_dir())
        .arg("-t")
        .arg(store.url(&prefix))
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .env("HOME", creds.path());
        for s in &settings {
            c.arg("--target-setting").arg(s);
        }
        for v in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "AZURE_STORAGE_CONNECTION_STRING",
        ] {
            c.env_remove(v);
        }
        c
    };
    let mut child = run("slow")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + std::time::Duration::from_secs(60);
    while store.unfinished(&prefix).is_empty() {
        assert!(Instant::now() < end, "no upload started");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    sigkill(&mut child);
    let objects = store.objects(&prefix);
    let unfinished = store.unfinished(&prefix);
    eprintln!("{store:?} after SIGKILL: objects {objects:?}, unfinished {unfinished:?}");
    let markers: Vec<&String> = objects.iter().filter(|n| n.ends_with(".partial")).collect();
    assert_eq!(markers.len(), 1, "{objects:?}");
    assert!(
        objects.contains(&"lsbackup.lock".to_string()),
        "{objects:?}"
    );

    let out = run("haproxy").output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let said: Vec<&str> = all.lines().filter(|l| l.contains(".partial")).collect();
    assert_eq!(said.len(), 1, "{all}");
    assert!(said[0].contains(markers[0].as_str()), "{}", said[0]);
    eprintln!("{}", said[0]);
    let after = store.objects(&prefix);
    let left = store.unfinished(&prefix);
    eprintln!("{store:?} after the next run: objects {after:?}, unfinished {left:?}");
    assert!(!after.iter().any(|n| n.ends_with(".partial")), "{after:?}");
    assert!(!after.iter().any(|n| n == "lsbackup.lock"), "{after:?}");
    if store == stores::Store::Azure {
        assert_eq!(left, Vec::<String>::new(), "uncommitted blocks left");
    }
    store.empty(&prefix);
}

#[test]
fn s3_killed_upload_marker_removed_by_next_run() {
    object_store_kill(stores::Store::S3);
}

#[test]
fn azure_killed_upload_marker_and_blocks_removed_by_next_run() {
    object_store_kill(stores::Store::Azure);
}
