//! `--config FILE`: options from a YAML file, for scheduled jobs.
//!
//! The file maps long option names (with `-` or `_`) to values, e.g.
//!
//! ```yaml
//! build-dir: /srv/clusters/prod
//! target: /mnt/backups
//! skip: [haproxy]
//! concurrency: 4
//! log-format: json
//! accept-new-host-keys: false
//! set: ["postgresql.postgresql_port=5433"]
//! # an object-store target: its secrets by reference only (env:NAME or file:PATH)
//! # target: s3://backups/prod
//! # target-setting: ["aws_secret_access_key=file:/etc/lsbackup/s3-secret", "aws_region=eu-west-1"]
//! ```
//!
//! `--config` is a global option (before or after the command's name). The command line wins:
//! an option given there (long or short form) leaves the file's value of it out, so a
//! single-valued option takes the command line's value and a list option (`only`, `skip`, `set`,
//! `target-setting`, ...) given on the command line replaces the file's list. `backup` and `plan`
//! read every key; `list` and `prune` the keys that are theirs.

use std::ffi::OsString;

/// The commands that read a config file. `backup` and `plan` take every key (plan leaves out
/// what only backup takes); `list` and `prune` take the keys that are theirs (target,
/// target-setting, name-prefix, keep-*, ...) and leave the rest, so one file serves a scheduled
/// job's backup, prune and list.
const READERS: &[&str] = &["backup", "plan", "list", "prune"];

/// Global options that take a value (`--config FILE`, `--log-format FORMAT`): what follows them
/// is not the command's name.
const GLOBAL_VALUED: &[&str] = &["--config", "--log-format"];

/// Where the command's name is in `args` (program name first): the first word that is not an
/// option or the value of a global option before it.
fn command_position(strs: &[String]) -> Option<usize> {
    let mut i = 1;
    while i < strs.len() {
        let a = &strs[i];
        if a == "--" {
            return None;
        }
        if GLOBAL_VALUED.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Expand `--config FILE` (or `LSBACKUP_CONFIG`), before or after the command's name, in `args`
/// (program name first): the file's options are placed right after the command's name, and a
/// key also given on the command line is left out, so the command line wins.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(sub) = command_position(&strs) else {
        return Ok(args);
    };
    let reads = READERS.contains(&strs[sub].as_str());
    let mut file = None;
    let mut given: Vec<OsString> = Vec::new();
    let mut name_at = 0;
    let mut i = 1;
    while i < args.len() {
        let a = &strs[i];
        if i == sub {
            name_at = given.len();
        }
        if a == "--" {
            given.extend(args[i..].iter().cloned());
            break;
        }
        if a == "--config" {
            file = Some(strs.get(i + 1).cloned().ok_or("--config needs a FILE")?);
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("--config=") {
            file = Some(v.to_string());
            i += 1;
            continue;
        }
        given.push(args[i].clone());
        i += 1;
    }
    let file = match (file, reads) {
        (Some(f), true) => f,
        (Some(_), false) => {
            return Err(format!(
                "--config: `lsbackup {}` reads no config file (backup, plan, list and prune do)",
                strs[sub]
            ));
        }
        (None, true) => match std::env::var("LSBACKUP_CONFIG") {
            Ok(f) => f,
            Err(_) => return Ok(args),
        },
        (None, false) => return Ok(args),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| format!("config {file}: {e}"))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_saphyr::from_str(&text).map_err(|e| format!("config {file}: {e}"))?;
    let given_strs: Vec<String> = given
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let given_on_cli = |name: &str| {
        let short = short_of(&strs[sub], name);
        given_strs.iter().any(|a| {
            a == &format!("--{name}")
                || a.starts_with(&format!("--{name}="))
                || short.is_some_and(|c| {
                    !a.starts_with("--") && a.starts_with('-') && a[1..].starts_with(c)
                })
        })
    };
    let mut from_file: Vec<OsString> = Vec::new();
    for (key, value) in map {
        let name = key.replace('_', "-");
        if name == "config" {
            return Err(format!("config {file}: `config` cannot name another file"));
        }
        if given_on_cli(&name) {
            continue;
        }
        // One file serves several commands: they leave out what only `backup` takes (target,
        // encryption, ...); a key no command takes is still an error, from the parser.
        if strs[sub] != "backup" && !takes(&strs[sub], &name) && takes("backup", &name) {
            continue;
        }
        let flag = OsString::from(format!("--{name}"));
        match value {
            serde_json::Value::Bool(true) => from_file.push(flag),
            serde_json::Value::Bool(false) | serde_json::Value::Null => {}
            serde_json::Value::Array(items) => {
                for item in items {
                    from_file.push(flag.clone());
                    from_file.push(scalar(&file, &key, &item)?.into());
                }
            }
            other => {
                from_file.push(flag);
                from_file.push(scalar(&file, &key, &other)?.into());
            }
        }
    }
    // The command line as given (its global options before the name stay there), the file's
    // options right after the command's name.
    let mut out: Vec<OsString> = vec![args[0].clone()];
    out.extend(given[..=name_at].iter().cloned());
    out.extend(from_file);
    out.extend(given[name_at + 1..].iter().cloned());
    Ok(out)
}

/// `lsbackup config check FILE`: every problem of a config file, one line each
/// (`FILE:LINE: ...` where a key is at fault); empty when `backup --config FILE` would accept it.
pub fn check(file: &str) -> Vec<String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return vec![format!("{file}: {e}")],
    };
    let map: serde_json::Map<String, serde_json::Value> = match serde_saphyr::from_str(&text) {
        Ok(m) => m,
        Err(e) => return vec![format!("{file}: not a YAML mapping of options: {e}")],
    };
    let line_of = |key: &str| {
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                l.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
                    || l.strip_prefix(&format!("\"{key}\""))
                        .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map_or(0, |i| i + 1)
    };
    let mut problems = Vec::new();
    for (key, value) in &map {
        let name = key.replace('_', "-");
        let at = format!("{file}:{}", line_of(key));
        if name == "config" {
            problems.push(format!("{at}: `config` cannot name another file"));
        } else if !takes("backup", &name) {
            problems.push(format!(
                "{at}: unknown key {key:?} (not an option of `lsbackup backup`; see `lsbackup backup --help`)"
            ));
        } else if let serde_json::Value::Array(items) = value {
            if let Some(bad) = items.iter().find_map(|i| scalar(file, key, i).err()) {
                problems.push(format!("{at}: {bad}"));
            }
        } else if let serde_json::Value::Object(_) = value {
            problems.push(format!("{at}: {key}: expected a value or a list of values"));
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    // The values, as `backup` would take them (types, choices, what is required).
    let args: Vec<OsString> = ["lsbackup", "backup", "--config", file]
        .iter()
        .map(OsString::from)
        .collect();
    let expanded = match expand(args) {
        Ok(a) => a,
        Err(e) => return vec![e],
    };
    use clap::Parser;
    if let Err(e) = super::Cli::try_parse_from(expanded) {
        let msg = e.to_string();
        // clap's message up to its usage line, on one line
        let first = msg
            .lines()
            .take_while(|l| !l.starts_with("Usage:"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .trim_start_matches("error: ")
            .to_string();
        // the option at fault, found back in the file
        let at = map
            .keys()
            .find(|k| first.contains(&format!("--{}", k.replace('_', "-"))))
            .map(|k| format!("{file}:{}", line_of(k)))
            .unwrap_or_else(|| file.to_string());
        problems.push(format!("{at}: {first}"));
    }
    problems
}

/// Whether the subcommand `sub` has the long option `--name` (its own or a global one).
fn takes(sub: &str, name: &str) -> bool {
    arg_of(sub, name, |_| ()).is_some()
}

/// The short form (`-v`) of the option `--name` of `sub`, if it has one.
fn short_of(sub: &str, name: &str) -> Option<char> {
    arg_of(sub, name, |a| a.get_short()).flatten()
}

fn arg_of<T>(sub: &str, name: &str, f: impl Fn(&clap::Arg) -> T) -> Option<T> {
    use clap::CommandFactory;
    let root = super::Cli::command();
    let own = root.find_subcommand(sub).and_then(|c| {
        c.get_arguments()
            .find(|a| a.get_long() == Some(name))
            .map(&f)
    });
    own.or_else(|| {
        root.get_arguments()
            .find(|a| a.is_global_set() && a.get_long() == Some(name))
            .map(&f)
    })
}

fn scalar(file: &str, key: &str, v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!(
            "config {file}: {key}: expected a value or a list of values"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    /// A config file holding `text`, in a temp dir kept alive by the first value.
    fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, text).unwrap();
        (dir, f)
    }

    #[test]
    fn file_options_come_first_and_cli_lists_replace() {
        let (_dir, f) = config_file(
            "build_dir: /b\ntarget: /t\nskip: [haproxy]\nonly: [postgresql]\nconcurrency: 4\naccept-new-host-keys: true\nno-agent: false\n",
        );
        let args = os(&[
            "lsbackup",
            "backup",
            "--config",
            f.to_str().unwrap(),
            "--only",
            "kubernetes",
            "-t",
            "/other",
        ]);
        let got = strs(expand(args).unwrap());
        assert_eq!(
            got,
            [
                "lsbackup",
                "backup",
                "--build-dir",
                "/b",
                "--skip",
                "haproxy",
                "--concurrency",
                "4",
                "--accept-new-host-keys",
                "--only",
                "kubernetes",
                "-t",
                "/other"
            ]
        );
    }

    #[test]
    fn plan_leaves_out_what_only_backup_takes() {
        let (_dir, f) =
            config_file("build-dir: /b\ntarget: /t\nencrypt-to: [age1x]\nskip: [haproxy]\n");
        let plan =
            strs(expand(os(&["lsbackup", "plan", "--config", f.to_str().unwrap()])).unwrap());
        assert_eq!(
            plan,
            ["lsbackup", "plan", "--build-dir", "/b", "--skip", "haproxy"]
        );
        let backup =
            strs(expand(os(&["lsbackup", "backup", "--config", f.to_str().unwrap()])).unwrap());
        assert!(backup.contains(&"--target".to_string()), "{backup:?}");
        assert!(backup.contains(&"--encrypt-to".to_string()), "{backup:?}");
        // a key neither command takes still reaches the parser (and fails there)
        std::fs::write(&f, "build-dir: /b\ntargte: /t\n").unwrap();
        let plan =
            strs(expand(os(&["lsbackup", "plan", "--config", f.to_str().unwrap()])).unwrap());
        assert!(plan.contains(&"--targte".to_string()), "{plan:?}");
    }

    #[test]
    fn host_key_options_from_the_file() {
        use clap::Parser;
        let (_dir, f) = config_file(
            "build-dir: /b\ntarget: /t\nknown-hosts: /etc/lsbackup/known_hosts\ninsecure_skip_host_key_check: true\n",
        );
        let args = expand(os(&["lsbackup", "backup", "--config", f.to_str().unwrap()])).unwrap();
        let super::super::Command::Backup(a) =
            super::super::Cli::try_parse_from(args).unwrap().command
        else {
            panic!("not backup");
        };
        assert!(a.ssh.insecure_skip_host_key_check);
        assert_eq!(
            a.ssh.known_hosts.as_deref(),
            Some(std::path::Path::new("/etc/lsbackup/known_hosts"))
        );
        assert!(!a.ssh.accept_new_host_keys);
    }

    #[test]
    fn no_config_leaves_args_alone_and_errors_are_clear() {
        let args = os(&["lsbackup", "inventory", "-b", "/x"]);
        assert_eq!(expand(args.clone()).unwrap(), args);
        let e = expand(os(&["lsbackup", "backup", "--config", "/nonexistent.yaml"])).unwrap_err();
        assert!(e.starts_with("config /nonexistent.yaml: "), "{e}");
    }

    #[test]
    fn global_options_before_or_after_the_command() {
        use clap::Parser;
        let (_dir, f) = config_file(
            "build-dir: /b\ntarget: /t\nlog-format: json\nverbose: true\nkeep-last: 3\nskip: [x]\n",
        );
        let f = f.to_str().unwrap();
        // --config before the command's name; the file's global options after it still count
        let got = strs(expand(os(&["lsbackup", "--config", f, "backup"])).unwrap());
        assert_eq!(
            got,
            [
                "lsbackup",
                "backup",
                "--build-dir",
                "/b",
                "--target",
                "/t",
                "--log-format",
                "json",
                "--verbose",
                "--keep-last",
                "3",
                "--skip",
                "x"
            ]
        );
        let cli = super::super::Cli::try_parse_from(got).unwrap();
        assert_eq!(cli.global.log_format, super::super::LogFormat::Json);
        assert_eq!(cli.global.verbose, 1);
        // the command line wins, also for a global option given before the name (long or short)
        let got = strs(
            expand(os(&[
                "lsbackup",
                "-vv",
                "--log-format",
                "text",
                "backup",
                "--config",
                f,
            ]))
            .unwrap(),
        );
        assert!(!got.contains(&"json".to_string()), "{got:?}");
        assert!(!got.contains(&"--verbose".to_string()), "{got:?}");
        let cli = super::super::Cli::try_parse_from(&got).unwrap();
        assert_eq!(cli.global.log_format, super::super::LogFormat::Text);
        assert_eq!(cli.global.verbose, 2);
        // list and prune take the keys that are theirs
        let got = strs(expand(os(&["lsbackup", "list", "--config", f])).unwrap());
        assert_eq!(
            got,
            [
                "lsbackup",
                "list",
                "--target",
                "/t",
                "--log-format",
                "json",
                "--verbose"
            ]
        );
        super::super::Cli::try_parse_from(&got).unwrap();
        let got = strs(expand(os(&["lsbackup", "-q", "prune", "--config", f])).unwrap());
        assert!(got.windows(2).any(|w| w == ["--keep-last", "3"]), "{got:?}");
        assert!(!got.contains(&"--build-dir".to_string()), "{got:?}");
        super::super::Cli::try_parse_from(&got).unwrap();
        // a command that reads no config file says so
        let e = expand(os(&["lsbackup", "--config", f, "verify", "x.tar.zst"])).unwrap_err();
        assert!(e.contains("`lsbackup verify` reads no config file"), "{e}");
        // -v, -q and --log-format on every command, before or after its name
        for args in [
            &["lsbackup", "-v", "verify", "x"][..],
            &["lsbackup", "verify", "x", "-v"],
            &["lsbackup", "--log-format", "json", "list", "-t", "/t"],
            &["lsbackup", "list", "-t", "/t", "--log-format=json", "-q"],
            &["lsbackup", "-q", "inventory", "-b", "/b"],
        ] {
            super::super::Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
