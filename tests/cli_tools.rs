//! The binary's own tooling: `--version` with the commit, shell completions, manual pages.

mod common;
mod support;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_names_the_commit_built_from() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let v = out.trim();
    assert!(
        v.starts_with(&format!("lsbackup {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if head.status.success() {
        let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(v.contains(&format!("({commit}")), "{v} (HEAD {commit})");
    }
}

#[test]
fn completions_for_each_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for cmd in ["backup", "restore", "verify", "extract", "prune"] {
            assert!(out.contains(cmd), "{shell}: no {cmd}");
        }
    }
    // the bash script is valid bash
    let (_, script, _) = run(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lsbackup.bash");
    std::fs::write(&f, script).unwrap();
    let st = Command::new("bash").arg("-n").arg(&f).status().unwrap();
    assert!(st.success());
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid value"), "{err}");
}

#[test]
fn manual_pages_render() {
    let (code, out, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(out.contains(".TH lsbackup 1"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "lsbackup.1",
        "lsbackup-backup.1",
        "lsbackup-restore.1",
        "lsbackup-prune.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
    // and man(1) formats them, where it is installed
    if Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.path().join("lsbackup-restore.1"))
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("--dry-run"));
    }
}
