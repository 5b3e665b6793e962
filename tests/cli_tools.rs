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

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples")
}

#[test]
fn the_example_config_holds_every_backup_option_and_passes_config_check() {
    let file = examples().join("lsbackup.yaml");
    let (code, out, err) = run(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(": ok\n"), "{out}");
    // every long option of `backup` is a key of the example (help, version and config aside)
    let text = std::fs::read_to_string(&file).unwrap();
    let (_, help, _) = run(&["backup", "--help"]);
    for line in help.lines() {
        let Some(rest) = line.trim_start().split("--").nth(1) else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.is_empty()
            || ["help", "version", "config"].contains(&name.as_str())
            || !line.trim_start().starts_with('-')
        {
            continue;
        }
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name}:"))),
            "docs/examples/lsbackup.yaml lacks {name}"
        );
    }
}

#[test]
fn config_check_names_the_line_of_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "build-dir: /srv/b\ntarget: /t\n# a comment\nretention_days: 7\n",
    )
    .unwrap();
    let (code, _, err) = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{}:4: unknown key \"retention_days\"",
            f.display()
        )),
        "{err}"
    );
    std::fs::write(&f, "build-dir: /srv/b\ntarget: /t\nformat: tar.bz2\n").unwrap();
    let (code, _, err) = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{}:3: invalid value 'tar.bz2'", f.display())),
        "{err}"
    );
    std::fs::write(&f, "target: /t\n").unwrap();
    let (code, _, err) = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("--build-dir"), "{err}");
    std::fs::write(&f, "build-dir: [unclosed\n").unwrap();
    let (code, _, err) = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a YAML mapping"), "{err}");
}

#[test]
fn the_systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        // the test bed installs it (tests/testbed/up.sh): in CI it must be there
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is missing under CI=true"
        );
        eprintln!("systemd-analyze is not installed: the units were not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in ["lsbackup-backup.service", "lsbackup-backup.timer"] {
        let text = std::fs::read_to_string(examples().join(unit))
            .unwrap()
            .replace("/usr/local/bin/lsbackup", support::bin());
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("lsbackup-backup.service"))
        .arg(dir.path().join("lsbackup-backup.timer"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // no complaint about these files (systemd may speak of units of the machine it runs on)
    assert!(!err.contains("lsbackup-backup"), "{err}");
}

/// The README's Scheduling section shows the example units as they are in docs/examples/.
#[test]
fn the_readme_shows_the_example_units() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let scheduling = &readme[readme.find("## Scheduling").expect("a Scheduling section")..];
    for unit in ["lsbackup-backup.timer", "lsbackup-backup.service"] {
        let text = std::fs::read_to_string(examples().join(unit)).unwrap();
        assert!(
            scheduling.contains(&format!("```ini\n{text}```")),
            "README's Scheduling section does not show docs/examples/{unit} as it is"
        );
    }
    for shown in [
        "lsbackup_last_success_timestamp_seconds",
        "alert: BackupMissed",
        "--metrics-file",
    ] {
        assert!(scheduling.contains(shown), "Scheduling lacks {shown}");
    }
}

#[test]
fn the_cronjob_example_is_a_batch_v1_cronjob_running_backup() {
    // against the Kubernetes API's own schemas, strictly (unknown fields refused)
    match std::env::var("LSB_KUBERNETES_VALIDATE") {
        Ok(tool) => {
            let out = Command::new(&tool)
                .arg("--strict")
                .arg(examples().join("lsbackup-cronjob.yaml"))
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{said}");
            assert!(
                said.contains("passed for resource cronjob/lsbackup"),
                "{said}"
            );
        }
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "LSB_KUBERNETES_VALIDATE is unset under CI=true (scripts/test.sh sets it)"
            );
            eprintln!(
                "LSB_KUBERNETES_VALIDATE unset (tests/testbed/kubevalidate.sh): schema check skipped"
            );
        }
    }
    let text = std::fs::read_to_string(examples().join("lsbackup-cronjob.yaml")).unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(v["apiVersion"], "batch/v1");
    assert_eq!(v["kind"], "CronJob");
    assert_eq!(v["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &v["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "backup");
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, volumes);
    // the key only from a Secret, read-only to its owner
    assert_eq!(pod["volumes"][0]["secret"]["defaultMode"], 0o400);
}
