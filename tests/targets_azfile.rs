//! `azfile://SHARE/DIR` against the test bed's Azure Files STAND-IN
//! (tests/testbed/standins/azfile.py: no emulator serves Azure Files). The stand-in checks Shared
//! Key signatures and answers with Azure's codes and XML; it keeps files on disk under
//! $LSB_AZFILE_DATA and logs every request to $LSB_AZFILE_LOG, which these tests read to check
//! the requests lsbackup's client makes. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use lsbackup::target::Target;
use lsbackup::target::settings::Settings;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fresh directory in the share (made on the stand-in's disk), removed on drop.
struct Dir {
    name: String,
    path: PathBuf,
    _creds: tempfile::TempDir,
    settings: Vec<String>,
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn dir(tag: &str) -> Dir {
    let tb = common::testbed();
    let name = format!("{}/{}", tb.var("LSB_AZFILE_DIR"), support::unique(tag));
    let path = PathBuf::from(tb.var("LSB_AZFILE_DATA"))
        .join(tb.var("LSB_AZFILE_SHARE"))
        .join(&name);
    std::fs::create_dir_all(&path).unwrap();
    let creds = tempfile::tempdir().unwrap();
    let cs = creds.path().join("cs");
    std::fs::write(&cs, tb.var("LSB_AZFILE_CONNECTION_STRING")).unwrap();
    Dir {
        settings: vec![format!(
            "azure_storage_connection_string=file:{}",
            cs.display()
        )],
        _creds: creds,
        name,
        path,
    }
}

impl Dir {
    fn url(&self) -> String {
        format!(
            "azfile://{}/{}",
            common::testbed().var("LSB_AZFILE_SHARE"),
            self.name
        )
    }
    fn target(&self) -> Target {
        Target::parse_with(&self.url(), &Settings::parse(&self.settings).unwrap()).unwrap()
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// The stand-in's logged requests whose path contains `needle`.
fn requests(needle: &str) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(common::testbed().var("LSB_AZFILE_LOG")).unwrap();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["path"].as_str().unwrap_or("").contains(needle))
        .collect()
}

/// 21 MiB streamed: only the run's own `.partial` exists while it is written, every Put Range is
/// at most 4 MiB, the file is trimmed to its length and renamed without replace; the bytes read
/// back are the bytes written.
#[test]
fn streamed_upload_round_trip() {
    let d = dir("rt");
    let data = support::noise((21 << 20) + 12345, 11);
    support::rt().block_on(async {
        let t = d.target();
        t.check().await.unwrap();
        let mut up = t
            .create("lsbackup-20261206T000000Z", "tar.zst")
            .await
            .unwrap();
        let mut w = up.writer();
        for c in data.chunks(1 << 20) {
            w.write_all(c).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let during = d.files();
        assert_eq!(during.len(), 1, "{during:?}");
        assert!(
            during[0].starts_with("lsbackup-20261206T000000Z.tar.zst.")
                && during[0].ends_with(".partial"),
            "{during:?}"
        );
        assert!(t.list().await.unwrap().is_empty(), "list leaves it out");
        w.shutdown().await.unwrap();
        drop(w);
        let loc = up.commit().await.unwrap();
        assert_eq!(
            loc,
            format!("{}/lsbackup-20261206T000000Z.tar.zst", d.url())
        );
        assert_eq!(d.files(), vec!["lsbackup-20261206T000000Z.tar.zst"]);
        let on_disk = std::fs::read(d.path.join("lsbackup-20261206T000000Z.tar.zst")).unwrap();
        assert_eq!(on_disk.len(), data.len(), "trimmed to its length");
        assert_eq!(Sha256::digest(&on_disk), Sha256::digest(&data));
        let mut back = Vec::new();
        t.open_read("lsbackup-20261206T000000Z.tar.zst")
            .await
            .unwrap()
            .read_to_end(&mut back)
            .await
            .unwrap();
        assert_eq!(Sha256::digest(&back), Sha256::digest(&data));
    });
    let reqs = requests(&d.name);
    let ranges: Vec<u64> = reqs
        .iter()
        .filter(|r| r["query"]["comp"] == "range")
        .map(|r| {
            r["headers"]["content-length"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(ranges.iter().sum::<u64>(), data.len() as u64);
    assert!(ranges.iter().all(|n| *n <= 4 << 20), "{ranges:?}");
    let rename: Vec<_> = reqs
        .iter()
        .filter(|r| r["query"]["comp"] == "rename")
        .collect();
    assert_eq!(rename.len(), 1);
    assert_eq!(
        rename[0]["headers"]["x-ms-file-rename-replace-if-exists"],
        "false"
    );
    assert!(
        reqs.iter().all(|r| r["status"].as_u64().unwrap() < 300),
        "{reqs:?}"
    );
}

/// A taken name is skipped at the start (an archive, or another run's partial file); a name taken
/// while the run wrote is not replaced: the archive is renamed to the next free `_N`.
#[test]
fn names_never_replace() {
    let d = dir("names");
    support::rt().block_on(async {
        let t = d.target();
        std::fs::write(d.path.join("lsbackup-A.tar.zst"), b"older").unwrap();
        let up = t.create("lsbackup-A", "tar.zst").await.unwrap();
        assert_eq!(up.name, "lsbackup-A_1.tar.zst");
        up.abort().await;
        assert_eq!(d.files(), vec!["lsbackup-A.tar.zst"]);

        // A second run sees this run's partial file and takes the next name.
        let mut a = t.create("lsbackup-B", "tar.zst").await.unwrap();
        let b = t.create("lsbackup-B", "tar.zst").await.unwrap();
        assert_eq!(
            (a.name.as_str(), b.name.as_str()),
            ("lsbackup-B.tar.zst", "lsbackup-B_1.tar.zst")
        );
        b.abort().await;
        // A run that took the name meanwhile (another machine that listed before our partial
        // existed): the rename does not replace it, the archive goes to the next free name.
        let mut w = a.writer();
        w.write_all(&[1u8; 1000]).await.unwrap();
        w.shutdown().await.unwrap();
        std::fs::write(d.path.join("lsbackup-B.tar.zst"), [2u8; 10]).unwrap();
        let la = a.commit().await.unwrap();
        assert!(la.ends_with("/lsbackup-B_1.tar.zst"), "{la}");
    });
    assert_eq!(
        std::fs::read(d.path.join("lsbackup-B.tar.zst")).unwrap(),
        vec![2u8; 10]
    );
    assert_eq!(
        std::fs::read(d.path.join("lsbackup-B_1.tar.zst")).unwrap(),
        vec![1u8; 1000]
    );
    assert_eq!(
        std::fs::read(d.path.join("lsbackup-A.tar.zst")).unwrap(),
        b"older"
    );
}

/// Abort, or an upload dropped without commit, leaves nothing.
#[test]
fn abort_leaves_nothing() {
    let d = dir("abort");
    support::rt().block_on(async {
        let t = d.target();
        for explicit in [true, false] {
            let mut up = t.create("lsbackup-C", "tar.zst").await.unwrap();
            let mut w = up.writer();
            w.write_all(&support::noise(9 << 20, 5)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(d.files().len(), 1);
            drop(w);
            if explicit {
                up.abort().await;
            } else {
                drop(up);
            }
            for _ in 0..100 {
                if d.files().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(d.files().is_empty(), "explicit={explicit}: {:?}", d.files());
        }
    });
}

fn run(d: &Dir, settings: &[String], args: &[&str]) -> Output {
    let mut c = common::lsbackup();
    c.args(args);
    for s in settings {
        c.arg("--target-setting").arg(s);
    }
    c.env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .env_remove("AZURE_STORAGE_KEY");
    let _ = d;
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn backup_args(url: &str) -> Vec<String> {
    let tb = common::testbed();
    vec![
        "backup".into(),
        "--progress".into(),
        "never".into(),
        "--no-agent".into(),
        "-q".into(),
        "--only".into(),
        "haproxy".into(),
        "-b".into(),
        tb.build_dir().display().to_string(),
        "--known-hosts".into(),
        tb.known_hosts().display().to_string(),
        "-t".into(),
        url.into(),
    ]
}

/// The CLI: backup, list (sidecar), verify streamed from the share.
#[test]
fn cli_backup_list_verify() {
    let d = dir("cli");
    let args = backup_args(&d.url());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&d, &d.settings, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let location = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let name = location.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        d.files(),
        vec![name.clone(), format!("{name}.manifest.json")]
    );
    let out = run(&d, &d.settings, &["list", "--json", "-t", &d.url()]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(v[0]["name"], name.as_str());
    assert_eq!(v[0]["manifest"], "sidecar");
    let out = run(&d, &d.settings, &["verify", &location]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(": ok ("), "{}", text(&out));
}

/// Wrong key, missing share, missing directory, unreachable endpoint: one line, exit 1, no
/// host contacted.
#[test]
fn bad_targets_fail_first() {
    let tb = common::testbed();
    let d = dir("bad");
    let creds = tempfile::tempdir().unwrap();
    let file = |name: &str, cs: String| {
        let p = creds.path().join(name);
        std::fs::write(&p, cs).unwrap();
        vec![format!(
            "azure_storage_connection_string=file:{}",
            p.display()
        )]
    };
    let cs = tb.var("LSB_AZFILE_CONNECTION_STRING");
    let share = tb.var("LSB_AZFILE_SHARE");
    let cases = [
        (
            d.url(),
            file("wrong", cs.replace("AccountKey=", "AccountKey=AAAA")),
            "refused the credentials",
        ),
        (
            format!("azfile://no-such-share/{}", d.name),
            d.settings.clone(),
            "share does not exist",
        ),
        (
            format!("azfile://{share}/{}/missing", d.name),
            d.settings.clone(),
            "directory does not exist",
        ),
        (
            d.url(),
            file("unreachable", cs.replace("127.0.0.1:10004", "127.0.0.1:9")),
            "cannot reach the endpoint",
        ),
    ];
    for (url, settings, expect) in cases {
        let args = backup_args(&url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&d, &settings, &args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {all}");
        let lines: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{url}: {all}");
        assert!(
            lines[0].contains(&format!("target {url}")) && lines[0].contains(expect),
            "{url}: {all}"
        );
        assert!(!all.contains("haproxy"), "{all}");
        assert!(!all.contains(tb.var("LSB_AZURE_KEY")), "{all}");
    }
    assert!(d.files().is_empty());
}
