//! S3 and Azure Blob targets against the test bed's emulators: moto_server (S3, with
//! authentication enforced) and azurite (Blob). Store state is inspected with a client of its
//! own (tests/testbed/objstore_probe.py: boto3, azure-storage-blob), not with lsbackup's.
//! Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::io::Write as _;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lsbackup::target::Target;
use lsbackup::target::settings::Settings;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::stores::Store;

/// `s3` or `az`: the prefix of objstore_probe.py's commands for `store`.
fn probe_prefix(store: Store) -> &'static str {
    match store {
        Store::S3 => "s3",
        Store::Azure => "az",
    }
}

/// Secrets in files (0600), referenced by `--target-setting KEY=file:PATH`.
struct Creds {
    _dir: tempfile::TempDir,
    settings: Vec<String>,
}

fn creds(store: Store) -> Creds {
    let dir = tempfile::tempdir().unwrap();
    let settings = store.settings(dir.path());
    Creds {
        _dir: dir,
        settings,
    }
}

fn target(store: Store, prefix: &str, c: &Creds) -> Target {
    Target::parse_with(&store.url(prefix), &Settings::parse(&c.settings).unwrap()).unwrap()
}

/// Run the probe: `objstore_probe.py CMD ARGS...`, JSON out.
fn probe(args: &[&str]) -> serde_json::Value {
    let tb = common::testbed();
    let out = Command::new(tb.var("LSB_OBJSTORE_PYTHON"))
        .arg(tb.var("LSB_OBJSTORE_PROBE"))
        .args(args)
        .env("LSB_TESTBED", tb.dir())
        .output()
        .expect("running objstore_probe.py");
    assert!(
        out.status.success(),
        "probe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("probe prints JSON")
}

/// 20 MiB (three parts or blocks): nothing under the name while it uploads, only the marker;
/// after commit the object is whole (sha256), the marker is gone and no upload is left.
fn multipart_round_trip(store: Store) {
    let prefix = support::unique("mp");
    let c = creds(store);
    let data = support::noise(20 << 20, 7);
    support::rt().block_on(async {
        let t = target(store, &prefix, &c);
        t.check().await.unwrap();
        let mut up = t
            .create("lsbackup-20261206T000000Z", "tar.zst")
            .await
            .unwrap();
        assert_eq!(up.name, "lsbackup-20261206T000000Z.tar.zst");
        let mut w = up.writer();
        for chunk in data.chunks(1 << 20) {
            w.write_all(chunk).await.unwrap();
        }
        // Two parts are written and uploading by now; the name itself does not exist.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            store.objects(&prefix),
            vec!["lsbackup-20261206T000000Z.tar.zst.partial".to_string()]
        );
        assert_eq!(store.unfinished(&prefix).len(), 1, "one upload in progress");
        assert!(t.list().await.unwrap().is_empty(), "list leaves it out");
        w.shutdown().await.unwrap();
        drop(w);
        let loc = up.commit().await.unwrap();
        assert_eq!(
            loc,
            format!("{}/lsbackup-20261206T000000Z.tar.zst", store.url(&prefix))
        );
        assert_eq!(
            store.objects(&prefix),
            vec!["lsbackup-20261206T000000Z.tar.zst".to_string()]
        );
        assert!(store.unfinished(&prefix).is_empty());
        let listed = t.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, data.len() as u64);
        let mut r = t
            .open_read("lsbackup-20261206T000000Z.tar.zst")
            .await
            .unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert_eq!(Sha256::digest(&back), Sha256::digest(&data));
    });
    store.empty(&prefix);
}

#[test]
fn s3_multipart_upload_round_trip() {
    multipart_round_trip(Store::S3);
}

#[test]
fn azure_block_upload_round_trip() {
    multipart_round_trip(Store::Azure);
}

/// Taken names are skipped (an archive, or another run's marker), and two runs starting at
/// once with the same timestamp get different names.
fn collisions(store: Store) {
    let prefix = support::unique("col");
    let c = creds(store);
    support::rt().block_on(async {
        let t = target(store, &prefix, &c);
        t.put_small("lsbackup-X.tar.zst", b"x".to_vec())
            .await
            .unwrap();
        t.put_small("lsbackup-X_1.tar.zst.partial", b"{}".to_vec())
            .await
            .unwrap();
        let up = t.create("lsbackup-X", "tar.zst").await.unwrap();
        assert_eq!(up.name, "lsbackup-X_2.tar.zst");
        up.abort().await;
        // Concurrent runs: every one gets its own name.
        let t = std::sync::Arc::new(t);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                t.create("lsbackup-Y", "tar.zst").await.unwrap()
            }));
        }
        let mut names = Vec::new();
        let mut ups = Vec::new();
        for task in tasks {
            let up = task.await.unwrap();
            names.push(up.name.clone());
            ups.push(up);
        }
        names.sort();
        assert_eq!(
            names,
            vec![
                "lsbackup-Y.tar.zst",
                "lsbackup-Y_1.tar.zst",
                "lsbackup-Y_2.tar.zst",
                "lsbackup-Y_3.tar.zst"
            ]
        );
        for up in ups {
            up.abort().await;
        }
        let left = store.objects(&prefix);
        assert_eq!(
            left,
            vec!["lsbackup-X.tar.zst", "lsbackup-X_1.tar.zst.partial"],
            "aborts removed their markers"
        );
    });
    store.empty(&prefix);
}

#[test]
fn s3_names_are_claimed_once() {
    collisions(Store::S3);
}

#[test]
fn azure_names_are_claimed_once() {
    collisions(Store::Azure);
}

/// An aborted upload (and one dropped without commit or abort) leaves no object, no marker and
/// no parts or uncommitted blocks.
fn abort_leaves_nothing(store: Store) {
    let prefix = support::unique("ab");
    let c = creds(store);
    support::rt().block_on(async {
        let t = target(store, &prefix, &c);
        for explicit in [true, false] {
            let mut up = t.create("lsbackup-Z", "tar.zst").await.unwrap();
            let mut w = up.writer();
            w.write_all(&support::noise(12 << 20, 3)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!store.unfinished(&prefix).is_empty(), "parts uploaded");
            if explicit {
                drop(w);
                up.abort().await;
            } else {
                drop(up);
                drop(w);
            }
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                let (o, u) = (store.objects(&prefix), store.unfinished(&prefix));
                if o.is_empty() && u.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "explicit={explicit}: left behind: {o:?} {u:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
}

#[test]
fn s3_abort_leaves_nothing() {
    abort_leaves_nothing(Store::S3);
}

#[test]
fn azure_abort_leaves_nothing() {
    abort_leaves_nothing(Store::Azure);
}

fn lsbackup_cmd(c: &Creds, args: &[&str]) -> Command {
    let mut cmd = common::lsbackup();
    cmd.args(args);
    for s in &c.settings {
        cmd.arg("--target-setting").arg(s);
    }
    // Nothing from the developer's own environment.
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_KEY",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

fn backup(c: &Creds, url: &str, extra: &[&str]) -> Output {
    let tb = common::testbed();
    let mut cmd = lsbackup_cmd(c, &["backup", "--progress", "never", "--no-agent"]);
    cmd.arg("-b")
        .arg(tb.build_dir())
        .arg("-t")
        .arg(url)
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .args(extra);
    cmd.output().expect("running lsbackup backup")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The CLI end to end: backup to the store, `list` reads the sidecar, `verify` streams the
/// archive from the store (and checks it against the sidecar there), `extract` unpacks it.
fn cli_round_trip(store: Store) {
    let prefix = support::unique("cli");
    let c = creds(store);
    let url = store.url(&prefix);
    let out = backup(&c, &url, &["--only", "haproxy", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let location = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        location.starts_with(&format!("{url}/lsbackup-")),
        "{location}"
    );
    let name = location.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        store.objects(&prefix),
        vec![name.clone(), format!("{name}.manifest.json")]
    );
    let out = lsbackup_cmd(&c, &["list", "--json", "-t", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], name.as_str());
    assert_eq!(v[0]["manifest"], "sidecar");
    assert_eq!(v[0]["components"][0]["name"], "haproxy");
    let out = lsbackup_cmd(&c, &["verify", &location]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The sidecar on the store was found and the archive's own sha256 compared with it.
    assert!(
        text(&out).contains(": ok (")
            && text(&out).contains(&format!("matches {name}.manifest.json")),
        "{}",
        text(&out)
    );
    // extract streams it from the store too.
    let dir = tempfile::tempdir().unwrap();
    let out = lsbackup_cmd(&c, &["extract", &location, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        dir.path()
            .join("haproxy/node3/etc/haproxy/haproxy.cfg")
            .is_file(),
        "{}",
        text(&out)
    );
    assert!(dir.path().join("manifest.json").is_file());
    // Without the sidecar, list reads the manifest from the archive itself.
    probe(&[
        &format!("{}-empty", probe_prefix(store)),
        store.container(),
        &format!("{prefix}/{name}.manifest.json"),
    ]);
    let out = lsbackup_cmd(&c, &["list", "--json", "-t", &url])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["manifest"], "archive", "{v}");
    store.empty(&prefix);
}

#[test]
fn s3_backup_list_verify() {
    cli_round_trip(Store::S3);
}

#[test]
fn azure_backup_list_verify() {
    cli_round_trip(Store::Azure);
}

/// Wrong credentials, a missing bucket/container, an unreachable endpoint: one line naming the
/// target, exit 1, and no host contacted (no component started).
fn bad_targets(store: Store) {
    let tb = common::testbed();
    let good = creds(store);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    let mut cases: Vec<(String, Vec<String>, &str)> = Vec::new();
    match store {
        Store::S3 => {
            std::fs::write(&wrong, "not-the-secret").unwrap();
            let mut s = good.settings.clone();
            s[1] = format!("aws_secret_access_key=file:{}", wrong.display());
            cases.push((store.url("x"), s, "refused the credentials"));
            cases.push((
                "s3://no-such-bucket-lsb/x".into(),
                good.settings.clone(),
                "bucket does not exist",
            ));
            let mut s = good.settings.clone();
            s[2] = "aws_endpoint_url=http://127.0.0.1:9".into();
            cases.push((store.url("x"), s, "cannot reach the endpoint"));
        }
        Store::Azure => {
            let cs = tb
                .var("LSB_AZURE_CONNECTION_STRING")
                .replace("AccountKey=", "AccountKey=AAAA");
            std::fs::write(&wrong, cs).unwrap();
            cases.push((
                store.url("x"),
                vec![format!(
                    "azure_storage_connection_string=file:{}",
                    wrong.display()
                )],
                "refused",
            ));
            cases.push((
                "az://no-such-container-lsb/x".into(),
                good.settings.clone(),
                "container does not exist",
            ));
            let cs = tb
                .var("LSB_AZURE_CONNECTION_STRING")
                .replace("127.0.0.1:10000", "127.0.0.1:9");
            let unreachable = dir.path().join("unreachable");
            std::fs::write(&unreachable, cs).unwrap();
            cases.push((
                store.url("x"),
                vec![format!(
                    "azure_storage_connection_string=file:{}",
                    unreachable.display()
                )],
                "cannot reach the endpoint",
            ));
        }
    }
    for (url, settings, expect) in cases {
        let c = Creds {
            _dir: tempfile::tempdir().unwrap(),
            settings,
        };
        let started = Instant::now();
        let out = backup(&c, &url, &["--only", "haproxy"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {all}");
        let lines: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{url}: one line: {all}");
        assert!(
            lines[0].contains(&format!("target {}", url.trim_end_matches('/')))
                && lines[0].contains(expect),
            "{url}: {all}"
        );
        assert!(!all.contains("haproxy"), "no host contacted: {all}");
        assert!(started.elapsed() < Duration::from_secs(60), "{url}: slow");
        // The secret is never printed.
        assert!(!all.contains(tb.var("LSB_S3_SECRET_ACCESS_KEY")), "{all}");
        assert!(!all.contains(tb.var("LSB_AZURE_KEY")), "{all}");
    }
}

#[test]
fn s3_bad_targets_fail_first() {
    bad_targets(Store::S3);
}

#[test]
fn azure_bad_targets_fail_first() {
    bad_targets(Store::Azure);
}

/// Encrypted to the store: what lies there is age ciphertext, not a readable archive; `age -d`
/// gives back an archive that verifies, and so does `lsbackup verify URL --age-identity`.
fn encrypted(store: Store) {
    let prefix = support::unique("enc");
    let c = creds(store);
    let url = store.url(&prefix);
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = support::keygen(dir.path());
    let out = backup(
        &c,
        &url,
        &["--only", "haproxy", "-q", "--encrypt-to", &public],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let location = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(location.ends_with(".tar.zst.age"), "{location}");
    let name = location.rsplit('/').next().unwrap().to_string();
    // No sidecar: the manifest stays inside the ciphertext.
    assert_eq!(store.objects(&prefix), vec![name.clone()]);
    let local = dir.path().join(&name);
    probe(&[
        &format!("{}-get", probe_prefix(store)),
        store.container(),
        &format!("{prefix}/{name}"),
        local.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&local).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let tar = Command::new("bash")
        .arg("-c")
        .arg(r#"zstd -dc "$1" | tar -tf -"#)
        .arg("sh")
        .arg(&local)
        .output()
        .unwrap();
    assert!(!tar.status.success(), "ciphertext is not a readable tar");
    let plain = dir.path().join("plain.tar.zst");
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(&plain)
        .arg(&local)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = common::lsbackup()
        .arg("verify")
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = lsbackup_cmd(
        &c,
        &["verify", &location, "--age-identity", key.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = lsbackup_cmd(&c, &["verify", &location]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "no key: {}", text(&out));
    assert!(text(&out).contains("--age-identity"), "{}", text(&out));
    let out = lsbackup_cmd(&c, &["list", "-t", &url]).output().unwrap();
    assert!(text(&out).contains("encrypted"), "{}", text(&out));
    // With the key, list decrypts the archive through to show its manifest.
    let out = lsbackup_cmd(
        &c,
        &[
            "list",
            "--json",
            "-t",
            &url,
            "--age-identity",
            key.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["encrypted"], true, "{v}");
    assert_eq!(v[0]["manifest"], "archive", "{v}");
    assert_eq!(v[0]["components"][0]["name"], "haproxy", "{v}");
    store.empty(&prefix);
}

#[test]
fn s3_encrypted_archive() {
    encrypted(Store::S3);
}

#[test]
fn azure_encrypted_archive() {
    encrypted(Store::Azure);
}

/// A backup interrupted with SIGINT while its archive streams to the store (a first entry's
/// 12 MiB already uploaded as parts or blocks, a second still streaming): lsbackup stops within
/// seconds, exits 1 saying so, and the store holds no object, no marker, no parts or blocks.
fn interrupted(store: Store) {
    let tb = common::testbed();
    let prefix = support::unique("int");
    let c = creds(store);
    let comps = tempfile::tempdir().unwrap();
    std::fs::write(
        comps.path().join("slow.yaml"),
        "name: slow\ndescription: a burst, then a slow stream\ngroups: [haproxy]\n\
         steps:\n  - name: burst\n    run: head -c 12582912 /dev/urandom\n    output: burst\n\
         \x20 - name: stream\n    run: for i in $(seq 1 600); do head -c 1048576 /dev/urandom; sleep 0.05; done\n    output: big\n",
    )
    .unwrap();
    let mut cmd = lsbackup_cmd(&c, &["backup", "--progress", "never", "--no-agent"]);
    let child = cmd
        .args(["--only", "slow", "--components-dir"])
        .arg(comps.path())
        .arg("-b")
        .arg(tb.build_dir())
        .arg("-t")
        .arg(store.url(&prefix))
        .arg("--known-hosts")
        .arg(tb.known_hosts())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while store.unfinished(&prefix).is_empty() {
        assert!(Instant::now() < end, "no upload started");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "stopped {:?} after SIGINT: {all}",
        signalled.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(all.contains("interrupted"), "{all}");
    let (o, u) = (store.objects(&prefix), store.unfinished(&prefix));
    assert!(o.is_empty() && u.is_empty(), "left: {o:?} {u:?}: {all}");
}

#[test]
fn s3_interrupted_backup_leaves_nothing() {
    interrupted(Store::S3);
}

#[test]
fn azure_interrupted_backup_leaves_nothing() {
    interrupted(Store::Azure);
}

/// Settings from where users keep them: the AWS profile files (`AWS_PROFILE`), and the
/// Azure variables (`AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY`, endpoint from the
/// connection string's BlobEndpoint given as a setting).
#[test]
fn settings_from_profiles_and_environment() {
    let tb = common::testbed();
    let prefix = support::unique("prof");
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    let mut f = std::fs::File::create(home.path().join(".aws/credentials")).unwrap();
    writeln!(
        f,
        "[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[lsb]\naws_access_key_id = {}\naws_secret_access_key = {}",
        tb.var("LSB_S3_ACCESS_KEY_ID"),
        tb.var("LSB_S3_SECRET_ACCESS_KEY")
    )
    .unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        format!(
            "[profile lsb]\nregion = {}\nendpoint_url = {}\n",
            tb.var("LSB_S3_REGION"),
            tb.var("LSB_S3_ENDPOINT")
        ),
    )
    .unwrap();
    let none = Creds {
        _dir: tempfile::tempdir().unwrap(),
        settings: vec![],
    };
    let out = lsbackup_cmd(&none, &["list", "-t", &Store::S3.url(&prefix)])
        .env("HOME", home.path())
        .env("AWS_PROFILE", "lsb")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no backups in s3://"), "{}", text(&out));
    // No credentials anywhere (the instance metadata service pointed at a closed port).
    let out = lsbackup_cmd(&none, &["list", "-t", &Store::S3.url(&prefix)])
        .env("HOME", "/nonexistent")
        .env("AWS_ENDPOINT_URL", tb.var("LSB_S3_ENDPOINT"))
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no credentials"), "{}", text(&out));
    let out = lsbackup_cmd(&none, &["list", "-t", &Store::Azure.url(&prefix)])
        .env("AZURE_STORAGE_ACCOUNT", tb.var("LSB_AZURE_ACCOUNT"))
        .env("AZURE_STORAGE_KEY", tb.var("LSB_AZURE_KEY"))
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            format!("BlobEndpoint={}", tb.var("LSB_AZURE_BLOB_ENDPOINT")),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// A `--config` file names the target and its settings by reference; an inline secret in it is
/// refused before anything runs; neither the sidecar nor the archive's manifest holds a secret.
#[test]
fn config_file_settings_by_reference() {
    let tb = common::testbed();
    let prefix = support::unique("cfg");
    let c = creds(Store::S3);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lsbackup.yaml");
    let mut yaml = format!(
        "build-dir: {}\ntarget: {}\nonly: [haproxy]\nknown-hosts: {}\nno-agent: true\nprogress: never\nquiet: true\ntarget-setting:\n",
        tb.build_dir().display(),
        Store::S3.url(&prefix),
        tb.known_hosts().display()
    );
    for s in &c.settings {
        yaml.push_str(&format!("  - \"{s}\"\n"));
    }
    std::fs::write(&config, &yaml).unwrap();
    let none = Creds {
        _dir: tempfile::tempdir().unwrap(),
        settings: vec![],
    };
    let out = lsbackup_cmd(&none, &["backup", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let location = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let name = location.rsplit('/').next().unwrap().to_string();
    for object in [name.clone(), format!("{name}.manifest.json")] {
        let local = dir.path().join(&object);
        probe(&[
            "s3-get",
            Store::S3.container(),
            &format!("{prefix}/{object}"),
            local.to_str().unwrap(),
        ]);
        let bytes = std::fs::read(&local).unwrap();
        for secret in [
            tb.var("LSB_S3_SECRET_ACCESS_KEY"),
            tb.var("LSB_S3_ACCESS_KEY_ID"),
        ] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{object} holds a credential"
            );
        }
    }
    // The archive's own manifest (zstd-compressed in the tar) holds none either.
    let extracted = support::extract(&dir.path().join(&name));
    let manifest = std::fs::read_to_string(extracted.path().join("manifest.json")).unwrap();
    assert!(!manifest.contains(tb.var("LSB_S3_SECRET_ACCESS_KEY")));
    Store::S3.empty(&prefix);

    std::fs::write(
        &config,
        yaml.replace(
            &c.settings[1],
            &format!(
                "aws_secret_access_key={}",
                tb.var("LSB_S3_SECRET_ACCESS_KEY")
            ),
        ),
    )
    .unwrap();
    let out = lsbackup_cmd(&none, &["backup", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("by reference only"), "{}", text(&out));
    assert!(
        !text(&out).contains(tb.var("LSB_S3_SECRET_ACCESS_KEY")),
        "the refused secret is not echoed: {}",
        text(&out)
    );
}
