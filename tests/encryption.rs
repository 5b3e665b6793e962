//! `--encrypt-to` / `--encrypt-to-file`: a backup of the test bed (HAProxy on node3) encrypted
//! with age on its way out, checked with the real `age` command line tool (Debian's `age`) and
//! with `lsbackup verify --age-identity`. Needs `tests/testbed/up.sh`.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn lsbackup(args: &[&str], target: &Path) -> Output {
    support::backup_command(&common::testbed().build_dir(), target)
        .args(["--progress", "never", "--only", "haproxy"])
        .args(args)
        .output()
        .expect("running lsbackup")
}

fn verify(archive: &Path, ids: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lsbackup"));
    c.arg("verify").arg(archive);
    for i in ids {
        c.arg("--age-identity").arg(i);
    }
    c.output().expect("running lsbackup verify")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// `age -d -i KEY ARCHIVE | zstd -d | tar -t`: the entries, as the standard tools see them.
fn age_tar_list(archive: &Path, key: &Path) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; age -d -i "$1" "$2" | zstd -dc | tar -tf -"#)
        .arg("sh")
        .arg(key)
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn encrypted_to_an_age_key_decrypts_with_age_and_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = support::keygen(keys.path());
    let target = tempfile::tempdir().unwrap();
    let out = lsbackup(&["--encrypt-to", &public], target.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let names = files(target.path());
    assert_eq!(names.len(), 1, "{names:?}");
    let archive = &names[0];
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("lsbackup-") && name.ends_with(".tar.zst.age"),
        "{name}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(archive).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // On the target: an age file, not a readable archive.
    let bytes = std::fs::read(archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let cfg = std::fs::read(common::testbed().var("LSB_HAPROXY_CFG")).unwrap();
    assert!(!bytes.windows(32).any(|w| w == &cfg[..32]));
    let zstd = Command::new("zstd")
        .arg("-t")
        .arg(archive)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !zstd.success(),
        "an encrypted archive must not pass for zstd"
    );

    // The age tool gives back the archive, entries and manifest included.
    let list = age_tar_list(archive, &key);
    assert!(
        list.contains("haproxy/node3/etc/haproxy/haproxy.cfg"),
        "{list}"
    );
    assert!(list.lines().last() == Some("manifest.json"), "{list}");

    // lsbackup verify: with the key it checks every entry; without it, one clear line.
    let v = verify(archive, &[&key]);
    assert_eq!(v.status.code(), Some(0), "{v:?}");
    assert!(
        String::from_utf8_lossy(&v.stdout).contains(": ok ("),
        "{v:?}"
    );
    let v = verify(archive, &[]);
    assert_eq!(v.status.code(), Some(1), "{v:?}");
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("--age-identity"),
        "{v:?}"
    );
    let (other, _) = support::keygen(tempfile::tempdir().unwrap().path());
    let v = verify(archive, &[&other]);
    assert_eq!(v.status.code(), Some(1), "{v:?}");
}

#[test]
fn recipients_file_with_an_ssh_key_and_a_wrong_recipient_refused_first() {
    let keys = tempfile::tempdir().unwrap();
    let ssh_key = keys.path().join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ssh_key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(keys.path().join("id_ed25519.pub")).unwrap();
    let recipients = keys.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# the backup team\n\n{public}")).unwrap();

    let target = tempfile::tempdir().unwrap();
    let out = lsbackup(
        &[
            "--encrypt-to-file",
            recipients.to_str().unwrap(),
            "--format",
            "tar.gz",
        ],
        target.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let archive = files(target.path()).pop().unwrap();
    assert!(archive.to_string_lossy().ends_with(".tar.gz.age"));
    // age decrypts with the SSH private key
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; age -d -i "$1" "$2" | tar -tzf -"#)
        .arg("sh")
        .arg(&ssh_key)
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("manifest.json"));
    let v = verify(&archive, &[&ssh_key]);
    assert_eq!(v.status.code(), Some(0), "{v:?}");

    // A bad recipient: one line naming it, exit 1, before any host is contacted and with
    // nothing left in the target.
    let target = tempfile::tempdir().unwrap();
    let out = lsbackup(&["--encrypt-to", "age1notakey"], target.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("age1notakey"), "{err}");
    assert!(!err.contains("haproxy @"), "{err}");
    assert!(files(target.path()).is_empty());
}

#[test]
fn encrypted_zip_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = support::keygen(keys.path());
    let target = tempfile::tempdir().unwrap();
    let out = lsbackup(&["--encrypt-to", &public, "--format", "zip"], target.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let archive = files(target.path()).pop().unwrap();
    assert!(archive.to_string_lossy().ends_with(".zip.age"));
    let v = verify(&archive, &[&key]);
    assert_eq!(v.status.code(), Some(0), "{v:?}");
    // and `age -d` gives a zip that unzip accepts
    let plain = keys.path().join("plain.zip");
    let st = Command::new("age")
        .args(["-d", "-i"])
        .arg(&key)
        .arg("-o")
        .arg(&plain)
        .arg(&archive)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("unzip")
        .arg("-tq")
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
}
