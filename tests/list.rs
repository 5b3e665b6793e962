//! `lsbackup list -t DIR`: the backups of a local target as a person and a script see them,
//! with the manifest read from its sidecar, or from the archive when there is none, and never
//! from an encrypted archive. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lsbackup"))
        .args(args)
        .env("COLUMNS", "80")
        .output()
        .expect("running lsbackup")
}

fn backup(target: &Path, extra: &[&str]) {
    let out = support::backup_command(&common::testbed().build_dir(), target)
        .args(["--progress", "never", "-q"])
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn lists_plain_encrypted_and_sidecarless_archives() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key.txt");
    let id = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    std::fs::write(&key, id.to_string().expose_secret()).unwrap();
    let public = id.to_public().to_string();

    backup(t, &["--only", "haproxy,postgresql"]);
    backup(t, &["--only", "haproxy", "--encrypt-to", &public]);
    backup(t, &["--only", "haproxy", "--format", "zip"]);
    // the zip's sidecar is gone: its manifest is read from the archive itself
    let mut names: Vec<String> = std::fs::read_dir(t)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let sidecars: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(".manifest.json"))
        .collect();
    assert_eq!(sidecars.len(), 2, "{names:?}"); // none for the encrypted archive
    let zip_sidecar = sidecars.iter().find(|n| n.contains(".zip.")).unwrap();
    std::fs::remove_file(t.join(zip_sidecar)).unwrap();
    // what is not an archive is not listed
    std::fs::write(t.join("lsbackup-20990101T000000Z.tar.zst.partial"), b"x").unwrap();
    std::fs::write(t.join("notes.txt"), b"x").unwrap();

    let out = run(&["list", "-t", t.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v:#}");
    // newest first: every row has a time, and they do not go up
    let times: Vec<&str> = rows.iter().map(|r| r["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let by = |suffix: &str| {
        rows.iter()
            .find(|r| r["name"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} not listed: {v:#}"))
    };
    let plain = by(".tar.zst");
    assert_eq!(plain["encrypted"], false);
    assert_eq!(plain["manifest"], "sidecar");
    assert_eq!(plain["status"], "ok");
    let comps: Vec<&str> = plain["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        comps.contains(&"haproxy") && comps.contains(&"postgresql"),
        "{comps:?}"
    );
    let size = std::fs::metadata(t.join(plain["name"].as_str().unwrap()))
        .unwrap()
        .len();
    assert_eq!(plain["size"], size);

    let enc = by(".tar.zst.age");
    assert_eq!(enc["encrypted"], true);
    assert_eq!(enc["format"], "tar.zst");
    assert!(
        enc["manifest"].is_null() && enc.get("components").is_none(),
        "{enc:#}"
    );

    let zip = by(".zip");
    assert_eq!(zip["manifest"], "archive");
    assert_eq!(zip["components"][0]["hosts"][0]["host"], "node3");

    // the table, at 80 columns
    let out = run(&["list", "-t", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("encrypted"), "{text}");
    assert!(text.contains("haproxy@node3"), "{text}");
    assert!(text.contains("3 backup(s) in"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");

    // an empty target, and a missing one
    let empty = tempfile::tempdir().unwrap();
    let out = run(&["list", "-t", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no backups in"));
    let out = run(&["list", "-t", "/nonexistent/backups"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/backups"));
}

/// Peak RSS (KiB) of `lsbackup ARGS`, from the kernel's accounting of that one child.
fn peak_rss_kib(args: &[&str]) -> (Output, i64) {
    // reaped below by wait4, which also gives that child's own resource usage
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_lsbackup"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let out = {
        use std::io::Read;
        let mut stdout = Vec::new();
        child.stdout.unwrap().read_to_end(&mut stdout).unwrap();
        stdout
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let output = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: out,
        stderr: Vec::new(),
    };
    (output, usage.ru_maxrss)
}

/// A listing holds what it shows of each backup (status, components, hosts), not every entry
/// record: eight backups whose sidecars record 80,000 entries each take about the memory of
/// one, not eight.
#[test]
fn listing_many_large_backups_holds_one_manifest_at_a_time() {
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    backup(t, &["--only", "haproxy"]);
    let name = std::fs::read_dir(t)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".tar.zst"))
        .unwrap();
    let mut m: lsbackup::archive::Manifest =
        serde_json::from_slice(&std::fs::read(t.join(format!("{name}.manifest.json"))).unwrap())
            .unwrap();
    let one = m.components[0].hosts[0].entries[0].clone();
    m.components[0].hosts[0].entries = (0..80_000)
        .map(|i| lsbackup::archive::EntryRecord {
            path: format!("{}/copy-{i:06}", one.path),
            ..one.clone()
        })
        .collect();
    let big = serde_json::to_vec_pretty(&m).unwrap();
    // one manifest, parsed: the measure of what eight would take if all were held
    let (_, single) = peak_rss_kib(&["list", "-t", t.to_str().unwrap()]);
    let stem = name.trim_end_matches(".tar.zst");
    for i in 1..=8 {
        let copy = format!("{stem}_{i}.tar.zst");
        std::fs::copy(t.join(&name), t.join(&copy)).unwrap();
        std::fs::write(t.join(format!("{copy}.manifest.json")), &big).unwrap();
    }
    let (out, eight) = peak_rss_kib(&["list", "--json", "-t", t.to_str().unwrap()]);
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 9);
    for l in listed.as_array().unwrap() {
        assert_eq!(l["manifest"], "sidecar", "{l}");
        assert_eq!(l["components"][0]["name"], "haproxy", "{l}");
    }
    // one manifest of 80,000 records parsed at a time: ~13 MiB above a small listing here;
    // all eight held at once: ~80 MiB above it
    assert!(
        eight < single + 40 * 1024,
        "list of eight large backups peaked at {eight} KiB (one small: {single} KiB)"
    );
}
