use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::rename_noreplace;
use crate::target::{Target, TargetError};

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

async fn write_and_commit(target: &Target, stem: &str, data: &[u8]) -> (String, PathBuf) {
    let mut up = target.create(stem, "tar.zst").await.unwrap();
    let mut w = up.writer();
    w.write_all(data).await.unwrap();
    w.shutdown().await.unwrap();
    let name = up.name.clone();
    let loc = up.commit().await.unwrap();
    (name, PathBuf::from(loc))
}

#[test]
fn parse_paths_and_urls() {
    assert!(
        matches!(Target::parse("/var/backups").unwrap(), Target::Local(p) if p == Path::new("/var/backups"))
    );
    assert!(
        matches!(Target::parse("backups/here").unwrap(), Target::Local(p) if p == Path::new("backups/here"))
    );
    assert!(matches!(Target::parse("./b").unwrap(), Target::Local(p) if p == Path::new("./b")));
    assert!(
        matches!(Target::parse("file:///mnt/nfs").unwrap(), Target::Local(p) if p == Path::new("/mnt/nfs"))
    );
    assert!(
        matches!(Target::parse("file://localhost/mnt/x").unwrap(), Target::Local(p) if p == Path::new("/mnt/x"))
    );
    assert!(matches!(
        Target::parse("file://host/x"),
        Err(TargetError::Local { .. })
    ));
    assert!(matches!(Target::parse(""), Err(TargetError::Local { .. })));
    // A colon without `//` is a path (e.g. `host:dir` is not ssh here).
    assert!(matches!(Target::parse("a:b").unwrap(), Target::Local(p) if p == Path::new("a:b")));

    // Object stores are parsed by the object module (no request is made).
    assert!(matches!(
        Target::parse("s3://bucket/prefix").unwrap(),
        Target::Object(_)
    ));
    assert!(
        matches!(
            Target::parse("az://container/dir").err().unwrap(),
            TargetError::Store { .. }
        ) || std::env::var_os("AZURE_STORAGE_ACCOUNT").is_some()
    );
    let e = Target::parse("gs://b").err().unwrap();
    assert!(
        e.to_string().contains("gs:// targets are not supported"),
        "{e}"
    );
}

#[tokio::test]
async fn check_accepts_a_writable_dir_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    Target::Local(dir.path().into()).check().await.unwrap();
    assert!(names_in(dir.path()).is_empty(), "probe file left behind");
}

#[tokio::test]
async fn check_missing_and_not_a_dir() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = Target::Local(missing.clone()).check().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("target {}: does not exist", missing.display())
    );

    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = Target::Local(file.clone()).check().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("target {}: is not a directory", file.display())
    );
}

/// A directory root cannot write to: a tmpfs mounted read-only (as root), a 0555 directory (not
/// root), or read-only sysfs (root without mount rights).
struct ReadOnlyDir {
    path: PathBuf,
    mounted: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl ReadOnlyDir {
    fn new() -> ReadOnlyDir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ro");
        std::fs::create_dir(&path).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
            return ReadOnlyDir {
                path,
                mounted: false,
                _tmp: Some(tmp),
            };
        }
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=64k", "lsbackup-test-ro"])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            ReadOnlyDir {
                path,
                mounted: true,
                _tmp: Some(tmp),
            }
        } else {
            ReadOnlyDir {
                path: PathBuf::from("/sys"),
                mounted: false,
                _tmp: None,
            }
        }
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(&self.path)
                .status();
        }
    }
}

#[tokio::test]
async fn check_and_create_on_a_read_only_dir() {
    let ro = ReadOnlyDir::new();
    let target = Target::Local(ro.path.clone());
    let e = target.check().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("target {}: is not writable (", ro.path.display())),
        "{msg}"
    );
    let e = target
        .create("lsbackup-x", "tar.zst")
        .await
        .err()
        .expect("create must fail");
    assert!(
        e.to_string()
            .starts_with(&format!("target {}: cannot create", ro.path.display())),
        "{e}"
    );
}

#[tokio::test]
async fn create_commit_mode_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().into());
    let mut up = target
        .create("lsbackup-20261125T013904Z", ".tar.zst")
        .await
        .unwrap();
    assert_eq!(up.name, "lsbackup-20261125T013904Z.tar.zst");
    assert_eq!(up.location, dir.path().join(&up.name).display().to_string());
    let partial = up.partial_path().unwrap().to_path_buf();
    assert_eq!(
        partial,
        dir.path().join("lsbackup-20261125T013904Z.tar.zst.partial")
    );
    assert_eq!(mode_of(&partial), 0o600);
    assert_eq!(
        names_in(dir.path()),
        vec!["lsbackup-20261125T013904Z.tar.zst.partial"]
    );

    let mut w = up.writer();
    let data = vec![7u8; 1_000_000];
    w.write_all(&data).await.unwrap();
    w.shutdown().await.unwrap();
    let loc = up.commit().await.unwrap();
    assert_eq!(
        names_in(dir.path()),
        vec!["lsbackup-20261125T013904Z.tar.zst"]
    );
    assert_eq!(std::fs::read(&loc).unwrap(), data);
    assert_eq!(mode_of(Path::new(&loc)), 0o600);
}

#[tokio::test]
async fn name_collisions_get_suffixes() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().into());
    let (n0, _) = write_and_commit(&target, "b", b"0").await;
    let (n1, _) = write_and_commit(&target, "b", b"1").await;
    // A partial left by another (running) backup also takes its name.
    std::fs::write(dir.path().join("b_2.tar.zst.partial"), b"other run").unwrap();
    let (n3, p3) = write_and_commit(&target, "b", b"3").await;
    assert_eq!(
        (n0.as_str(), n1.as_str(), n3.as_str()),
        ("b.tar.zst", "b_1.tar.zst", "b_3.tar.zst")
    );
    assert_eq!(std::fs::read(p3).unwrap(), b"3");
    assert_eq!(std::fs::read(dir.path().join("b.tar.zst")).unwrap(), b"0");
    assert_eq!(
        std::fs::read(dir.path().join("b_2.tar.zst.partial")).unwrap(),
        b"other run"
    );
}

#[tokio::test]
async fn concurrent_creates_get_distinct_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let d = dir.path().to_path_buf();
        tasks.push(tokio::spawn(async move {
            Target::Local(d).create("same", "zip").await.unwrap()
        }));
    }
    let mut uploads = Vec::new();
    for t in tasks {
        uploads.push(t.await.unwrap());
    }
    let mut names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 16);
    assert!(
        names.contains(&"same.zip".to_string()) && names.contains(&"same_15.zip".to_string()),
        "{names:?}"
    );
    drop(uploads);
    assert!(
        names_in(dir.path()).is_empty(),
        "dropped uploads must leave nothing: {:?}",
        names_in(dir.path())
    );
}

#[tokio::test]
async fn abort_and_drop_remove_the_partial() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().into());

    let mut up = target.create("a", "tar.gz").await.unwrap();
    let mut w = up.writer();
    w.write_all(b"half an archive").await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(names_in(dir.path()), vec!["a.tar.gz.partial"]);
    up.abort().await;
    assert!(names_in(dir.path()).is_empty());
    drop(w);

    let mut up = target.create("a", "tar.gz").await.unwrap();
    assert_eq!(up.name, "a.tar.gz");
    let mut w = up.writer();
    w.write_all(b"interrupted").await.unwrap();
    drop(up); // e.g. the run's future was dropped on Ctrl-C
    assert!(names_in(dir.path()).is_empty());
    // Writing on after the drop goes to an unlinked file, never to a final name.
    w.write_all(b" more").await.unwrap();
    w.shutdown().await.unwrap();
    assert!(names_in(dir.path()).is_empty());
}

#[tokio::test]
async fn commit_refuses_an_unclosed_stream_and_a_second_writer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().into());
    let mut up = target.create("c", "zip").await.unwrap();
    let mut w = up.writer();
    let mut second = up.writer();
    assert!(second.write_all(b"x").await.is_err());
    w.write_all(b"data").await.unwrap();
    let e = up.commit().await.unwrap_err();
    assert!(
        e.to_string().contains("was not closed before commit"),
        "{e}"
    );
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );
}

#[tokio::test]
async fn commit_never_replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().into());
    let mut up = target.create("r", "tar.zst").await.unwrap();
    // Another process takes the final name after we chose it.
    std::fs::write(dir.path().join("r.tar.zst"), b"theirs").unwrap();
    let mut w = up.writer();
    w.write_all(b"ours").await.unwrap();
    w.shutdown().await.unwrap();
    let e = up.commit().await.unwrap_err();
    assert!(e.to_string().contains("renaming"), "{e}");
    assert_eq!(
        std::fs::read(dir.path().join("r.tar.zst")).unwrap(),
        b"theirs"
    );
    assert_eq!(names_in(dir.path()), vec!["r.tar.zst"]);
}

#[test]
fn rename_noreplace_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    for use_renameat2 in [true, false] {
        let from = dir.path().join(format!("from-{use_renameat2}"));
        let to = dir.path().join(format!("to-{use_renameat2}"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        let e = rename_noreplace(&from, &to, use_renameat2).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
        assert_eq!(std::fs::read(&from).unwrap(), b"new");
        std::fs::remove_file(&to).unwrap();
        rename_noreplace(&from, &to, use_renameat2).unwrap();
        assert!(!from.exists());
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
    }
}

#[tokio::test]
async fn relative_target_path() {
    // Relative to the working directory (the crate root under `cargo test`).
    let tmp = tempfile::Builder::new()
        .prefix(".lsbackup-reltest-")
        .tempdir_in(".")
        .unwrap();
    let rel = tmp
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let target = Target::parse(&rel).unwrap();
    target.check().await.unwrap();
    let (name, loc) = write_and_commit(&target, "rel", b"x").await;
    assert_eq!(name, "rel.tar.zst");
    assert_eq!(loc, Path::new(&rel).join("rel.tar.zst"));
    assert_eq!(std::fs::read(tmp.path().join("rel.tar.zst")).unwrap(), b"x");
}

#[tokio::test]
async fn small_files_are_whole_0600_and_never_replace() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::Local(dir.path().to_path_buf());
    t.put_small("a.manifest.json", b"{}".to_vec())
        .await
        .unwrap();
    let p = dir.path().join("a.manifest.json");
    assert_eq!(std::fs::read(&p).unwrap(), b"{}");
    assert_eq!(mode_of(&p), 0o600);
    let e = t
        .put_small("a.manifest.json", b"[]".to_vec())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("a.manifest.json"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"{}");
    assert_eq!(names_in(dir.path()), vec!["a.manifest.json"]);
    assert_eq!(t.get_small("a.manifest.json").await.unwrap(), b"{}");
}

#[tokio::test]
async fn list_finds_archives_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    for n in [
        "lsbackup-20261201T000000Z.tar.zst",
        "lsbackup-20261203T000000Z_1.zip.age",
        "nightly-20261202T120000Z.tar.gz",
        "lsbackup-20261204T000000Z.tar.zst.partial",
        "lsbackup-20261201T000000Z.tar.zst.manifest.json",
        "readme.txt",
    ] {
        std::fs::write(dir.path().join(n), n).unwrap();
    }
    let t = Target::Local(dir.path().to_path_buf());
    let l = t.list().await.unwrap();
    let names: Vec<&str> = l.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "lsbackup-20261203T000000Z_1.zip.age",
            "nightly-20261202T120000Z.tar.gz",
            "lsbackup-20261201T000000Z.tar.zst",
        ]
    );
    assert!(l[0].encrypted && l[0].format == "zip" && l[0].sidecar.is_none());
    assert_eq!(l[1].time, 1_796_212_800); // 2026-12-02T12:00:00Z
    assert_eq!(
        l[2].sidecar.as_deref(),
        Some("lsbackup-20261201T000000Z.tar.zst.manifest.json")
    );
}

#[tokio::test]
async fn an_oversized_sidecar_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("x.tar.zst.manifest.json")).unwrap();
    f.set_len(super::super::SMALL_MAX + 1).unwrap(); // sparse
    let t = Target::Local(dir.path().into());
    let e = t
        .get_small("x.tar.zst.manifest.json")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("larger than 64 MiB"), "{e}");
    std::fs::write(dir.path().join("small.json"), b"{}").unwrap();
    assert_eq!(t.get_small("small.json").await.unwrap(), b"{}");
}
