//! `lsbackup prune` and `backup --prune` over targets filled with backups of made-up dates: a
//! local directory and the test bed's S3 (moto). Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::path::Path;
use std::process::Output;

use lsbackup::target::Target;
use lsbackup::target::settings::Settings;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A sidecar whose manifest status is `status`.
fn sidecar(status: &str) -> Vec<u8> {
    let doc = include_str!("../docs/format.md");
    let section = doc.find("## Manifest (`manifest.json`)").unwrap();
    let start = section + doc[section..].find("```json\n").unwrap() + 8;
    let end = start + doc[start..].find("```").unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&doc[start..end]).unwrap();
    m["status"] = serde_json::Value::String(status.into());
    serde_json::to_vec(&m).unwrap()
}

/// Backups every 8 hours over ten days (the newest partial), plus files prune must not touch.
fn fill(put: &mut dyn FnMut(&str, Vec<u8>)) -> Vec<String> {
    let mut all = Vec::new();
    for day in 1..=10 {
        for hour in [1, 9, 17] {
            let name = format!("lsbackup-202611{day:02}T{hour:02}0000Z.tar.zst");
            let status = if (day, hour) == (10, 17) {
                "partial"
            } else {
                "ok"
            };
            put(&name, b"archive".to_vec());
            put(&format!("{name}.manifest.json"), sidecar(status));
            all.push(name);
        }
    }
    put("other-20261101T010000Z.tar.zst", b"x".to_vec());
    put("lsbackup-prod-20261101T010000Z.tar.zst", b"x".to_vec());
    put("lsbackup-20261111T010000Z.tar.zst.partial", b"x".to_vec());
    put("notes.txt", b"x".to_vec());
    all
}

#[test]
fn prune_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    fill(&mut |name, bytes| std::fs::write(dir.path().join(name), bytes).unwrap());
    let t = dir.path().to_str().unwrap();
    let dry = common::lsbackup()
        .args([
            "prune",
            "-t",
            t,
            "--keep-last",
            "2",
            "--keep-daily",
            "3",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", text(&dry));
    assert_eq!(names(dir.path()).len(), 64, "dry run removes nothing");
    let out = common::lsbackup()
        .args(["prune", "-t", t, "--keep-last", "2", "--keep-daily", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let words = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .replace("would remove", "remove")
            .replace("would be removed", "removed")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        words(&dry),
        words(&out),
        "the dry run said what the run did"
    );
    // last 2: 10T17 (partial, newest), 10T09; daily 3: 10T17, 09T17, 08T17; the newest
    // complete is 10T09, kept already.
    let kept: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("lsbackup-2") && n.ends_with(".tar.zst"))
        .collect();
    assert_eq!(
        kept,
        vec![
            "lsbackup-20261108T170000Z.tar.zst",
            "lsbackup-20261109T170000Z.tar.zst",
            "lsbackup-20261110T090000Z.tar.zst",
            "lsbackup-20261110T170000Z.tar.zst",
        ]
    );
    let all = names(dir.path());
    assert_eq!(all.len(), 4 * 2 + 4, "{all:?}"); // sidecars of the removed ones went too
    for untouched in [
        "other-20261101T010000Z.tar.zst",
        "lsbackup-prod-20261101T010000Z.tar.zst",
        "lsbackup-20261111T010000Z.tar.zst.partial",
        "notes.txt",
    ] {
        assert!(all.contains(&untouched.to_string()), "{untouched}: {all:?}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "lsbackup-20261110T170000Z.tar.zst  2026-11-10 17:00:00  (last, daily, newest)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("4 kept, 26 removed"), "{stdout}");
}

#[test]
fn the_newest_complete_backup_survives_a_run_of_partial_ones() {
    let dir = tempfile::tempdir().unwrap();
    for (name, status) in [
        ("lsbackup-20261101T000000Z.tar.zst", "ok"),
        ("lsbackup-20261102T000000Z.tar.zst", "partial"),
        ("lsbackup-20261103T000000Z.tar.zst", "partial"),
    ] {
        std::fs::write(dir.path().join(name), b"a").unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.manifest.json")),
            sidecar(status),
        )
        .unwrap();
    }
    let out = common::lsbackup()
        .args([
            "prune",
            "-t",
            dir.path().to_str().unwrap(),
            "--keep-last",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        dir.path()
            .join("lsbackup-20261101T000000Z.tar.zst")
            .exists()
    );
    assert!(
        dir.path()
            .join("lsbackup-20261103T000000Z.tar.zst")
            .exists()
    );
    assert!(
        !dir.path()
            .join("lsbackup-20261102T000000Z.tar.zst")
            .exists()
    );
    assert!(text(&out).contains("(newest complete)"), "{}", text(&out));
}

#[test]
fn prune_an_s3_prefix() {
    let tb = common::testbed();
    let prefix = support::unique("prune");
    let creds = tempfile::tempdir().unwrap();
    let secret = creds.path().join("secret");
    std::fs::write(&secret, tb.var("LSB_S3_SECRET_ACCESS_KEY")).unwrap();
    let id = creds.path().join("id");
    std::fs::write(&id, tb.var("LSB_S3_ACCESS_KEY_ID")).unwrap();
    let settings = vec![
        format!("aws_access_key_id=file:{}", id.display()),
        format!("aws_secret_access_key=file:{}", secret.display()),
        format!("aws_endpoint_url={}", tb.var("LSB_S3_ENDPOINT")),
    ];
    let url = format!("s3://{}/{prefix}", tb.var("LSB_S3_BUCKET"));
    let target = Target::parse_with(&url, &Settings::parse(&settings).unwrap()).unwrap();
    let rt = support::rt();
    let mut puts = Vec::new();
    fill(&mut |name, bytes| puts.push((name.to_string(), bytes)));
    rt.block_on(async {
        for (n, b) in puts {
            target.put_small(&n, b).await.unwrap();
        }
    });
    let mut cmd = common::lsbackup();
    cmd.args([
        "prune",
        "-t",
        &url,
        "--keep-weekly",
        "1",
        "--keep-monthly",
        "1",
    ]);
    for s in &settings {
        cmd.arg("--target-setting").arg(s);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Weekly 1 and monthly 1 both pick the newest (10T17, partial); it is not complete, so the
    // newest complete one (10T09) stays too.
    let left: Vec<String> = rt.block_on(async {
        target
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect()
    });
    assert_eq!(
        left,
        vec![
            "lsbackup-20261110T170000Z.tar.zst",
            "lsbackup-20261110T090000Z.tar.zst",
            "other-20261101T010000Z.tar.zst",
            "lsbackup-prod-20261101T010000Z.tar.zst",
        ]
    );
    rt.block_on(async {
        for n in [
            "lsbackup-20261101T010000Z.tar.zst.manifest.json",
            "lsbackup-20261105T090000Z.tar.zst",
        ] {
            assert!(target.get_small(n).await.is_err(), "{n} removed");
        }
        assert!(target.get_small("notes.txt").await.is_ok());
        assert!(
            target
                .get_small("lsbackup-20261111T010000Z.tar.zst.partial")
                .await
                .is_ok()
        );
    });
}

/// `backup --prune --keep-last 2`: the new archive and the newest old one stay.
#[test]
fn backup_then_prune() {
    let tb = common::testbed();
    let dir = tempfile::tempdir().unwrap();
    for day in 1..=3 {
        let name = format!("lsbackup-202611{day:02}T000000Z.tar.zst");
        std::fs::write(dir.path().join(&name), b"old").unwrap();
    }
    let out = support::backup_command(&tb.build_dir(), dir.path())
        .args([
            "--only",
            "haproxy",
            "--progress",
            "never",
            "--prune",
            "--keep-last",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let location = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        location.contains("/lsbackup-2026"),
        "stdout is the path only: {location}"
    );
    let archives: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".tar.zst"))
        .collect();
    assert_eq!(archives.len(), 2, "{archives:?}");
    assert!(archives.contains(&"lsbackup-20261103T000000Z.tar.zst".to_string()));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 kept, 2 removed"),
        "{}",
        text(&out)
    );
    // --keep-* without --prune (or --prune without a rule) is refused before anything runs.
    let out = support::backup_command(&tb.build_dir(), dir.path())
        .args(["--only", "haproxy", "--keep-last", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--prune"), "{}", text(&out));
}
