//! What a killed run leaves on a host is removed by the next run, which says so once per host;
//! what is not exactly lsbackup's own (another user's directory, a symlink, a name of another
//! shape, a snapshot lsbackup did not mark, anything a running lsbackup still holds) is kept; and
//! no temporary file lsbackup writes on a host holds a credential.
//!
//! The leftovers are real: `lsbackup backup` is SIGKILLed at the moment its Grafana work dir or
//! its marked Prometheus snapshot exists on the host (the test bed's hosts are this machine, so
//! the test sees their filesystem). Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::es::{EsStandIn, Repo};

const REMOVED: &str = "removed what an earlier run left";

/// One test at a time: each makes and watches the same kinds of things on the same hosts.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The root-owned entries of `dir` whose names start with `prefix` (symlinks not followed).
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.uid() == 0 && m.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// The holder pid in a leftover's name (`...<prefix>HOLDER<sep>...`).
fn holder_in(name: &str, prefix: &str, sep: char) -> u32 {
    name.strip_prefix(prefix)
        .and_then(|r| r.split(sep).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no holder in {name:?}"))
}

/// Wait until `pid` is no longer a running sshd (its connection ended with the killed run).
fn wait_gone(pid: u32) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(c) if ["sshd", "sshd-session", "lsbackup"].contains(&c.trim()) => {}
            _ => return,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the connection holder {pid} is still running 20 s after lsbackup was killed");
}

/// Start `lsbackup backup --only COMPONENT` and SIGKILL it as soon as `appeared` finds something
/// new (not in `before`); returns what appeared. Tries a few times (a run can finish first).
fn kill_when(component: &str, appeared: impl Fn() -> Vec<PathBuf>) -> Vec<PathBuf> {
    let tb = common::testbed();
    for _ in 0..5 {
        let before = appeared();
        let target = tempfile::tempdir().unwrap();
        let mut child = support::backup_command(&tb.build_dir(), target.path())
            .args(["--only", component])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        loop {
            let new: Vec<PathBuf> = appeared()
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            if !new.is_empty() {
                child.kill().unwrap();
                child.wait().unwrap();
                return new;
            }
            if child.try_wait().unwrap().is_some() || t.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    panic!("{component}: never caught what it makes on the host before the run ended");
}

/// A pid that no process has now.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn mkdir_owned(path: &Path, uid: u32) {
    std::fs::create_dir(path).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn notes_with(run: &support::Run, component: &str, what: &str) -> Vec<String> {
    run.component(component)
        .hosts
        .iter()
        .flat_map(|h| h.flags.iter().map(move |f| format!("{}: {f}", h.host)))
        .filter(|f| f.contains(what))
        .collect()
}

#[test]
fn killed_runs_leave_nothing_after_the_next_run_and_decoys_are_kept() {
    let _one = serial();
    let tb = common::testbed();
    let tmp = Path::new("/tmp");
    let snapshots = PathBuf::from(tb.var("LSB_PROMETHEUS_DATA_DIR")).join("snapshots");

    // the leftovers, made the way a crash makes them
    let grafana = kill_when("grafana", || entries(tmp, "lsbackup-grafana."));
    let prometheus = kill_when("prometheus", || entries(&snapshots, ".lsbackup-"));
    assert_eq!(grafana.len(), 1, "{grafana:?}");
    assert_eq!(prometheus.len(), 1, "{prometheus:?}");
    let work = &grafana[0];
    let marker = &prometheus[0];
    let mname = marker.file_name().unwrap().to_string_lossy().into_owned();
    let snap_name = mname.splitn(3, '-').nth(2).unwrap().to_string();
    let snap = snapshots.join(&snap_name);
    assert!(snap.is_dir(), "{} (marked by {mname})", snap.display());
    wait_gone(holder_in(
        &work.file_name().unwrap().to_string_lossy(),
        "lsbackup-grafana.",
        '.',
    ));
    wait_gone(holder_in(&mname, ".lsbackup-", '-'));

    // decoys: another user's dir, a symlink, names of other shapes, an unmarked snapshot
    let dead = dead_pid();
    let scratch = tempfile::tempdir().unwrap();
    let foreign = tmp.join(format!("lsbackup-grafana.{dead}.UserDir1"));
    mkdir_owned(&foreign, 65534);
    let link = tmp.join(format!("lsbackup-grafana.{dead}.SymLink1"));
    std::os::unix::fs::symlink(scratch.path(), &link).unwrap();
    let short = tmp.join(format!("lsbackup-grafana.{dead}.Ab"));
    mkdir_owned(&short, 0);
    let no_holder = tmp.join("lsbackup-grafana.NoHolder");
    mkdir_owned(&no_holder, 0);
    let unmarked = snapshots.join(format!("20200101T000000Z-{:016x}", dead));
    std::fs::create_dir(&unmarked).unwrap();
    let marker_link = snapshots.join(format!(".lsbackup-{dead}-20200101T000001Z-00aa"));
    std::os::unix::fs::symlink(scratch.path(), &marker_link).unwrap();
    let decoys = [&foreign, &link, &short, &no_holder, &unmarked, &marker_link];

    let run = support::backup(&tb.build_dir(), &["--only", "grafana,prometheus"]);
    let left: Vec<&PathBuf> = [work, marker, &snap]
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    let kept: Vec<&&PathBuf> = decoys
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    // the decoys go before any assertion can fail
    for d in decoys {
        let _ = std::fs::remove_file(d).or_else(|_| std::fs::remove_dir(d));
    }
    assert!(left.is_empty(), "still there: {left:?}\n{}", run.stderr());
    assert_eq!(kept.len(), decoys.len(), "decoys removed");
    for c in ["grafana", "prometheus"] {
        let notes = notes_with(&run, c, REMOVED);
        assert_eq!(notes.len(), 1, "{c}: one note per host: {notes:?}");
        let shown = if c == "grafana" { work } else { &snap };
        assert!(
            notes[0].contains(&*shown.to_string_lossy()),
            "{c}: the note names {}: {notes:?}",
            shown.display()
        );
        assert!(
            !notes[0].contains(".lsbackup-"),
            "markers are not named: {notes:?}"
        );
    }
    assert!(
        run.stdout().contains(REMOVED) || run.stderr().contains(REMOVED),
        "the run says so:\n{}{}",
        run.stdout(),
        run.stderr()
    );
    // a run with nothing left over says nothing about it
    let again = support::backup(&tb.build_dir(), &["--only", "grafana,prometheus"]);
    for c in ["grafana", "prometheus"] {
        assert!(notes_with(&again, c, REMOVED).is_empty(), "{c}");
    }
}

#[test]
fn what_a_running_lsbackup_holds_and_unknown_holders_are_kept() {
    let _one = serial();
    let tb = common::testbed();
    let tmp = Path::new("/tmp");
    // a holder that is a live sshd: the test bed's own (this machine's) sshd of node1
    let pidfile = tb.dir().join("ssh/node1/sshd.pid");
    let live: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let held = tmp.join(format!("lsbackup-grafana.{live}.LiveRun1"));
    mkdir_owned(&held, 0);
    // holder unknown (0) and young: kept
    let young = tmp.join("lsbackup-grafana.0.YoungOne");
    mkdir_owned(&young, 0);
    let dead = dead_pid();
    let gone = tmp.join(format!("lsbackup-grafana.{dead}.GoneRun1"));
    mkdir_owned(&gone, 0);
    std::fs::write(gone.join("grafana.db"), b"x").unwrap();

    let run = support::backup(&tb.build_dir(), &["--only", "grafana"]);
    let held_kept = held.is_dir();
    let young_kept = young.is_dir();
    let gone_left = gone.exists();
    let _ = std::fs::remove_dir_all(&held);
    let _ = std::fs::remove_dir_all(&young);
    let _ = std::fs::remove_dir_all(&gone);
    assert!(held_kept, "a dir whose holder runs was removed");
    assert!(young_kept, "a young dir of unknown holder was removed");
    assert!(!gone_left, "{}", run.stderr());
    let notes = notes_with(&run, "grafana", REMOVED);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&*gone.to_string_lossy()), "{notes:?}");
}

/// Every regular file under lsbackup's temporary names on the hosts, read while a run goes on.
fn sample_temp_files(
    needles: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let tb = common::testbed();
        let roots = [
            PathBuf::from("/tmp"),
            PathBuf::from(tb.var("LSB_PROMETHEUS_DATA_DIR")).join("snapshots"),
            PathBuf::from(tb.var("LSB_ETCD_DATA_DIR")),
        ];
        let mut hits = Vec::new();
        let mut files = 0;
        while !stop.load(Ordering::Relaxed) {
            for root in &roots {
                let Ok(rd) = std::fs::read_dir(root) else {
                    continue;
                };
                for e in rd.filter_map(|e| e.ok()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let ours = (name.starts_with("lsbackup-") || name.starts_with(".lsbackup-"))
                        && name != "lsbackup-testbed"
                        && !name.starts_with("lsbackup-kvol-pwned");
                    if !ours {
                        continue;
                    }
                    let mut stack = vec![e.path()];
                    while let Some(p) = stack.pop() {
                        let Ok(m) = std::fs::symlink_metadata(&p) else {
                            continue;
                        };
                        if m.is_dir() {
                            if let Ok(rd) = std::fs::read_dir(&p) {
                                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
                            }
                        } else if m.is_file()
                            && m.len() < 64 * 1024 * 1024
                            && let Ok(bytes) = std::fs::read(&p)
                        {
                            files += 1;
                            let text = String::from_utf8_lossy(&bytes);
                            for n in &needles {
                                if text.contains(n.as_str()) {
                                    hits.push(format!("{}: {n}", p.display()));
                                }
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (files, hits)
    })
}

#[test]
fn temporary_files_on_hosts_never_hold_credentials() {
    let _one = serial();
    let tb = common::testbed();
    // the credentials lsbackup is given, set where LambdaStack keeps them
    let secrets: Vec<(String, String)> = [
        (
            "grafana_password",
            tb.var("LSB_GRAFANA_PASSWORD").to_string(),
        ),
        ("kibana_password", tb.var("LSB_KIBANA_PASSWORD").to_string()),
        (
            "elasticsearch_password",
            format!("Lsb-es-{}-Zq9", std::process::id()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(tb.inventory(), d.path().join("inventory")).unwrap();
    std::fs::create_dir(d.path().join("group_vars")).unwrap();
    let yml: String = secrets
        .iter()
        .map(|(n, v)| format!("{n}: \"{v}\"\n"))
        .collect();
    std::fs::write(d.path().join("group_vars/all.yml"), yml).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_temp_files(
        secrets.iter().map(|(_, v)| v.clone()).collect(),
        stop.clone(),
    );
    let run = support::backup(
        d.path(),
        &[
            "--only",
            "grafana,prometheus,kibana,elasticsearch,kubernetes_volumes",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    let (files, hits) = sampler.join().unwrap();
    assert!(run.manifest.is_some(), "{}", run.stderr());
    assert!(
        files > 0,
        "no temporary file was ever seen: the sampler saw nothing to check"
    );
    assert!(
        hits.is_empty(),
        "credentials in temporary files on the hosts:\n{}",
        hits.join("\n")
    );
    // the grafana password was the right one: the database went through a work dir
    assert!(
        run.component("grafana")
            .hosts
            .iter()
            .any(|h| h.entries.iter().any(|e| e.path.ends_with("grafana.db"))),
        "{}",
        run.errors_of("grafana")
    );
}

// --- Elasticsearch: snapshots and a repository registration in the cluster ------------------

/// A private Elasticsearch stand-in (tests/support/es.rs; path.repo in its temp dir) holding one
/// document, started with `args`.
fn es_start(args: &[&str]) -> EsStandIn {
    let es = EsStandIn::start(Repo::Own, args);
    let (code, v) = es.call(
        "PUT",
        "/leftovers-index/_doc/1",
        Some(r#"{"message":"private stand-in"}"#),
    );
    assert_eq!(code, 201, "{v}");
    es
}

/// `--only elasticsearch` and `--set`s pointing the component at `es`.
fn es_args(es: &EsStandIn) -> Vec<String> {
    let mut v = vec!["--only".to_string(), "elasticsearch".to_string()];
    v.extend(es.sets());
    v
}

/// The names of the snapshots in repository lsbackup (none when it is not registered).
fn es_snapshots(es: &EsStandIn) -> Vec<String> {
    let (_, v) = es.call("GET", "/_snapshot/lsbackup/_all", None);
    v["snapshots"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["snapshot"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `lsbackup-<date>-<time>-<host id>-<holder>-<random>`: (host id, holder).
fn es_run_snapshot(name: &str) -> Option<(String, u32)> {
    let f: Vec<&str> = name.split('-').collect();
    (f.len() == 6 && f[0] == "lsbackup" && f[3].len() == 8)
        .then(|| Some((f[3].to_string(), f[4].parse().ok()?)))
        .flatten()
}

/// Start a backup of the stand-in and SIGKILL it as soon as its snapshot is in the repository
/// (still running: the stand-in completes snapshots 3 s after they start); its name.
fn kill_es_run(es: &EsStandIn) -> String {
    let tb = common::testbed();
    let before = es_snapshots(es);
    let target = tempfile::tempdir().unwrap();
    let mut child = support::backup_command(&tb.build_dir(), target.path())
        .args(es_args(es))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        if let Some(new) = es_snapshots(es)
            .into_iter()
            .find(|n| !before.contains(n) && es_run_snapshot(n).is_some())
        {
            child.kill().unwrap();
            child.wait().unwrap();
            return new;
        }
        let ended = child.try_wait().unwrap();
        assert!(
            ended.is_none() && t.elapsed() < Duration::from_secs(60),
            "the backup ended ({ended:?}) before its snapshot was seen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_elasticsearch_run_leaves_no_snapshot_nor_registration() {
    let tb = common::testbed();
    let es = es_start(&["--snapshot-completes-after", "3"]);
    let args: Vec<String> = es_args(&es);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // 1. killed while its snapshot runs, in a repository it registered
    let left = kill_es_run(&es);
    let (host_id, holder) = es_run_snapshot(&left).unwrap();
    wait_gone(holder);
    let (code, reg) = es.call("GET", "/_snapshot/lsbackup", None);
    assert_eq!(code, 200, "{reg}");
    assert_eq!(
        reg["lsbackup"]["settings"]["lsbackup_run"],
        format!("{host_id}-{holder}"),
        "{reg}"
    );
    let run = support::backup(&tb.build_dir(), &args);
    assert_eq!(
        run.code(),
        0,
        "{}\n{}",
        run.stderr(),
        run.errors_of("elasticsearch")
    );
    let notes = notes_with(&run, "elasticsearch", REMOVED);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains(&format!("snapshot lsbackup/{left}"))
            && notes[0].contains("repository registration lsbackup"),
        "{notes:?}"
    );
    let h = &run.component("elasticsearch").hosts[0];
    for call in [
        format!("DELETE /_snapshot/lsbackup/{left}"),
        "DELETE /_snapshot/lsbackup".to_string(),
    ] {
        assert!(
            h.commands
                .iter()
                .any(|c| c.step == "leftovers" && c.command == call),
            "{call}: {:?}",
            h.commands
        );
    }
    assert_eq!(es.call("GET", "/_snapshot/lsbackup", None).0, 404);

    // 2. killed again; beside its snapshot: a user's, a kept one, one of an older lsbackup, one
    // of a run that still runs, one taken through another machine
    let left = kill_es_run(&es);
    let (_, holder) = es_run_snapshot(&left).unwrap();
    wait_gone(holder);
    let live: u32 = std::fs::read_to_string(tb.dir().join("ssh/node1/sshd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let other = if host_id == "ffffffff" {
        "eeeeeeee"
    } else {
        "ffffffff"
    };
    let dead = dead_pid();
    let decoys = [
        "nightly-2024.01.01".to_string(),
        "lsbackup-kept-20240101-000000-0123abcd".to_string(),
        "lsbackup-20240101-000000-0123abcd".to_string(),
        format!("lsbackup-20240101-000000-{host_id}-{live}-0123abcd"),
        format!("lsbackup-20240101-000000-{other}-{dead}-0123abcd"),
    ];
    for d in &decoys {
        let (code, v) = es.call(
            "PUT",
            &format!("/_snapshot/lsbackup/{d}?wait_for_completion=false"),
            Some(r#"{"indices":"leftovers-index"}"#),
        );
        assert_eq!(code, 200, "{d}: {v}");
    }
    let run = support::backup(&tb.build_dir(), &args);
    assert_eq!(
        run.code(),
        0,
        "{}\n{}",
        run.stderr(),
        run.errors_of("elasticsearch")
    );
    let now = es_snapshots(&es);
    assert!(!now.contains(&left), "{left} is still there: {now:?}");
    for d in &decoys {
        assert!(now.contains(d), "{d} was removed: {now:?}");
    }
    assert_eq!(
        es.call("GET", "/_snapshot/lsbackup", None).0,
        200,
        "a registration holding others' snapshots is kept"
    );
    let notes = notes_with(&run, "elasticsearch", REMOVED);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&left), "{notes:?}");
    assert!(!notes[0].contains("registration"), "{notes:?}");
    for d in &decoys {
        assert!(!notes[0].contains(d.as_str()), "{notes:?}");
    }
}

// --- restore: files and directories on their way in -----------------------------------------

/// The processes below `pid` (its children, theirs, ...).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent = std::collections::BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        if let Some(pp) = stat
            .rsplit_once(") ")
            .and_then(|(_, r)| r.split(' ').nth(1))
            .and_then(|s| s.parse::<u32>().ok())
        {
            parent.insert(p, pp);
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// `lsbackup.lsbackup-new.<holder>.lsbackup-<time>` in `dir`: what `restore` fills before it
/// takes the repository directory's place.
fn new_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("lsbackup.lsbackup-new.")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_restore_leaves_nothing_after_the_next_restore() {
    let tb = common::testbed();
    let es = es_start(&[]);
    // a big document: the repository directory takes a moment to arrive on the host
    let doc = tempfile::NamedTempFile::new().unwrap();
    let mut noise = vec![0u8; 12 * 1024 * 1024];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut noise))
        .unwrap();
    let body = format!(r#"{{"message":"{}"}}"#, hex_of(&noise));
    std::fs::write(doc.path(), body).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", doc.path().display()))
        .arg(format!("http://127.0.0.1:{}/leftovers-big/_doc/1", es.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    let args = es_args(&es);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = support::backup(&tb.build_dir(), &args);
    assert_eq!(
        run.code(),
        0,
        "{}\n{}",
        run.stderr(),
        run.errors_of("elasticsearch")
    );
    let archive = run.archive.clone().unwrap();
    let mut restore_args = vec!["--yes"];
    restore_args.extend(&args);

    // killed, it and its shell on the host, while the directory it puts back is on its way in
    let repos = es.repos();
    let mut left = None;
    for _ in 0..5 {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(support::bin())
            .arg("restore")
            .arg(&archive)
            .arg("-b")
            .arg(tb.build_dir())
            .arg("--known-hosts")
            .arg(tb.known_hosts())
            .arg("--no-agent")
            .args(&restore_args)
            .env("HOME", home.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let seen = loop {
            if let Some(p) = new_dirs(&repos).pop() {
                break Some(p);
            }
            if child.try_wait().unwrap().is_some() || t.elapsed() > Duration::from_secs(60) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let Some(new) = seen else {
            let _ = child.kill();
            let _ = child.wait();
            continue;
        };
        let name = new.file_name().unwrap().to_string_lossy().into_owned();
        let holder = holder_in(&name, "lsbackup.lsbackup-new.", '.');
        let below: Vec<String> = descendants(holder).iter().map(u32::to_string).collect();
        if !below.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&below).status();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        wait_gone(holder);
        if new.is_dir() {
            left = Some(new);
            break;
        }
    }
    let left = left.expect("never caught the restore's new directory before it was done");

    // decoys: a live run's temporary file, a symlink and a name of another shape; and a dead
    // run's temporary file that goes too
    let dead = dead_pid();
    let live: u32 = std::fs::read_to_string(tb.dir().join("ssh/node1/sshd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = repos.join(format!(".lsbackup-restore.{dead}.GoneRn"));
    std::fs::write(&gone, b"x").unwrap();
    let held = repos.join(format!(".lsbackup-restore.{live}.LiveRn"));
    std::fs::write(&held, b"x").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let link = repos.join(format!("x.lsbackup-new.{dead}.lsbackup-20240101T000000Z"));
    std::os::unix::fs::symlink(scratch.path(), &link).unwrap();
    let other = repos.join(format!("y.lsbackup-new-{dead}"));
    std::fs::create_dir(&other).unwrap();

    let again = support::restore(&tb.build_dir(), &archive, &restore_args);
    let text = support::transcript(&again);
    assert_eq!(again.status.code(), Some(0), "{text}");
    assert!(!left.exists(), "{} is still there\n{text}", left.display());
    assert!(!gone.exists(), "{text}");
    for d in [&held, &link, &other] {
        assert!(
            std::fs::symlink_metadata(d).is_ok(),
            "{} removed",
            d.display()
        );
    }
    let said: Vec<String> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .filter(|l| l.contains(&format!("note: {REMOVED}")))
        .map(String::from)
        .collect();
    assert_eq!(said.len(), 1, "{text}");
    assert!(said[0].contains(&*left.to_string_lossy()), "{text}");
    assert!(said[0].contains(&*gone.to_string_lossy()), "{text}");
    // the restore that was killed did not touch the data: the second put it back
    assert_eq!(es.call("GET", "/leftovers-big/_count", None).1["count"], 1);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
