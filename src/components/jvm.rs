//! What the JVM components (kafka, zookeeper) share: Java `.properties` files (server.properties,
//! zoo.cfg) parsed in Rust, and the running JVM of a main class found from `/proc`.
//!
//! Everything read here comes from the host and is data: a process's command line (which any
//! local user can make say anything), a config file's values. Nothing of it becomes shell text;
//! paths found are passed to fixed scripts as positional parameters.

use crate::engine::{HostCtx, StepError};
use crate::shell::Script;

/// A parsed Java properties file: `(key, value)` in file order. A key given twice: the last
/// value wins, as in `java.util.Properties`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub entries: Vec<(String, String)>,
}

impl Properties {
    /// The value of `key` (the last one given), if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` trimmed, when it is not empty.
    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Set `key` (as `--override key=value` on Kafka's command line does).
    pub fn set(&mut self, key: &str, value: &str) {
        self.entries.push((key.to_string(), value.to_string()));
    }
}

/// The text of a config file: UTF-8 when it is valid UTF-8, else ISO-8859-1 (what
/// `Properties.load(InputStream)` reads).
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Parse a Java properties file by `java.util.Properties.load`'s rules: natural lines end at
/// `\n`, `\r` or `\r\n`; a line ending in an odd number of backslashes continues on the next one
/// (whose leading whitespace is skipped); lines whose first non-blank character is `#` or `!` are
/// comments; the key ends at the first unescaped `=`, `:` or blank, followed by optional blanks,
/// one optional `=`/`:` and blanks again; `\t \n \r \f \uXXXX` and `\X` (X itself) are escapes in
/// keys and values.
pub fn parse_properties(text: &str) -> Properties {
    let mut props = Properties::default();
    for line in logical_lines(text) {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        // key: up to the first unescaped separator or blank
        let key_start = i;
        while i < chars.len() {
            match chars[i] {
                '\\' => i += 2,
                '=' | ':' | ' ' | '\t' | '\x0c' => break,
                _ => i += 1,
            }
        }
        let key_end = i.min(chars.len());
        while i < chars.len() && is_blank(chars[i]) {
            i += 1;
        }
        if i < chars.len() && (chars[i] == '=' || chars[i] == ':') {
            i += 1;
            while i < chars.len() && is_blank(chars[i]) {
                i += 1;
            }
        }
        let key = unescape(&chars[key_start..key_end]);
        let value = unescape(&chars[i.min(chars.len())..]);
        props.entries.push((key, value));
    }
    props
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\x0c'
}

/// The logical lines of a properties text: comments and blank lines dropped, continuations
/// joined (the backslash and line end removed, leading blanks of the next line skipped), each
/// line's leading blanks removed. Escapes other than the continuation stay for `unescape`.
fn logical_lines(text: &str) -> Vec<String> {
    // natural lines
    let mut natural: Vec<&str> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(p) => {
                natural.push(&rest[..p]);
                let skip = if rest[p..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[p + skip..];
            }
            None => {
                natural.push(rest);
                rest = "";
            }
        }
    }
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in natural {
        let trimmed = line.trim_start_matches(is_blank);
        let continuing = cur.is_some();
        if !continuing && (trimmed.is_empty() || trimmed.starts_with(['#', '!'])) {
            continue;
        }
        let trailing = trimmed.chars().rev().take_while(|c| *c == '\\').count();
        let mut acc = cur.take().unwrap_or_default();
        if trailing % 2 == 1 {
            acc.push_str(&trimmed[..trimmed.len() - 1]);
            cur = Some(acc);
        } else {
            acc.push_str(trimmed);
            out.push(acc);
        }
    }
    // a continuation at the end of the file ends the line there
    if let Some(acc) = cur {
        out.push(acc);
    }
    out
}

fn unescape(chars: &[char]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = chars.get(i) else {
            break;
        };
        i += 1;
        match e {
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'f' => out.push('\x0c'),
            'u' => {
                let hex: String = chars[i..].iter().take(4).collect();
                match (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                {
                    Some(n) => {
                        out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                        i += 4;
                    }
                    // Java refuses a malformed \u escape; keep the text as it is
                    None => out.push_str("\\u"),
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A running process whose command line holds a JVM main class as one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JvmProcess {
    pub pid: u32,
    /// Real and effective uid (from `/proc/PID/status`).
    pub uid: Option<(u32, u32)>,
    /// The command name (`Name:` of `/proc/PID/status`).
    pub name: String,
    /// The executable (`/proc/PID/exe`), when readable.
    pub exe: String,
    /// The working directory (`/proc/PID/cwd`), when readable.
    pub cwd: String,
    pub args: Vec<String>,
}

impl JvmProcess {
    /// Runs a JVM: its executable (or command name) is `java`.
    pub fn is_java(&self) -> bool {
        let exe = self.exe.trim_end_matches(" (deleted)");
        exe.rsplit('/').next() == Some("java") || self.name == "java"
    }

    /// Owned by root or by `uid` (both real and effective uid).
    pub fn owned_by_root_or(&self, uid: Option<u32>) -> bool {
        match self.uid {
            Some((r, e)) => [r, e].iter().all(|u| *u == 0 || Some(*u) == uid),
            None => false,
        }
    }

    /// The arguments after the main class argument `main` (None: `main` is not an argument).
    pub fn args_after(&self, main: &str) -> Option<&[String]> {
        let i = self.args.iter().skip(1).position(|a| a == main)? + 1;
        Some(&self.args[i + 1..])
    }

    /// The argument after `main` as a path, made absolute against the process's working
    /// directory; None when there is none, it is an option, or it is relative and the working
    /// directory is unknown.
    pub fn config_arg(&self, main: &str) -> Option<String> {
        let arg = self.args_after(main)?.first()?;
        if arg.is_empty() || arg.starts_with('-') {
            return None;
        }
        if arg.starts_with('/') {
            return Some(arg.clone());
        }
        if self.cwd.starts_with('/') {
            return Some(format!("{}/{arg}", self.cwd.trim_end_matches('/')));
        }
        None
    }
}

/// Parse what [`PROCESS_INFO`] prints: status, NUL, exe, NUL, cwd, NUL, then the raw cmdline.
pub fn parse_process_info(pid: u32, raw: &[u8]) -> Option<JvmProcess> {
    let mut parts = raw.splitn(4, |b| *b == 0);
    let status = decode(parts.next()?);
    let exe = String::from_utf8_lossy(parts.next()?).to_string();
    let cwd = String::from_utf8_lossy(parts.next()?).to_string();
    let cmdline = parts.next()?;
    let strip_nl = |s: String| s.strip_suffix('\n').map(str::to_string).unwrap_or(s);
    let mut uid = None;
    let mut name = String::new();
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("Uid:") {
            let ids: Vec<u32> = v
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if ids.len() >= 2 {
                uid = Some((ids[0], ids[1]));
            }
        } else if let Some(v) = line.strip_prefix("Name:") {
            name = v.trim().to_string();
        }
    }
    let mut args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).to_string())
        .collect();
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    Some(JvmProcess {
        pid,
        uid,
        name,
        exe: strip_nl(exe),
        cwd: strip_nl(cwd),
        args,
    })
}

/// Candidate pids: processes whose command line contains `$1` anywhere (a cheap filter; the
/// exact argument is checked in Rust), then the uid of user `$2` on the first line (`-` when
/// there is no such user). Only `sh` and `cat`.
pub(crate) const CANDIDATES: &str = r#"id -u -- "$2" 2>/dev/null || echo -
for d in /proc/[0-9]*; do
  c=$(cat "$d/cmdline" 2>/dev/null) || continue
  case $c in *"$1"*) echo "${d#/proc/}" ;; esac
done 2>/dev/null
exit 0"#;

/// One process: its status, NUL, its executable, NUL, its working directory, NUL, then its
/// command line as the kernel keeps it (NUL-separated, read to the end: no framing to forge).
pub(crate) const PROCESS_INFO: &str = r#"d=/proc/$1
cat "$d/status" 2>/dev/null || exit 3
printf '\000'
readlink "$d/exe" 2>/dev/null
printf '\000'
(cd -P "$d/cwd" 2>/dev/null && pwd -P)
printf '\000'
exec cat "$d/cmdline" 2>/dev/null"#;

/// At most this many candidate processes are looked at.
const MAX_CANDIDATES: usize = 32;

/// The processes of a host found for a main class.
#[derive(Debug, Default)]
pub struct Found {
    /// Owned by root or the service user, best first (running `java` before others).
    pub trusted: Vec<JvmProcess>,
    /// Holding the main class argument but owned by someone else: never used.
    pub ignored: Vec<JvmProcess>,
}

/// Find the processes that have `main` as one of their arguments (the way Kafka's
/// `kafka-server-stop.sh` finds the broker). Processes of other users than root and `user`
/// are returned apart and never trusted.
/// `step`: record the search in the manifest under that step (None: not recorded, for polls).
pub async fn find(
    h: &mut HostCtx<'_>,
    step: Option<&str>,
    main: &str,
    user: &str,
) -> Result<Found, StepError> {
    let script = Script::new(CANDIDATES).arg(main).arg(user);
    let shown = format!("find processes with the argument {main}");
    let out = match step {
        Some(step) => h.run_ok(step, &script, None, Some(&shown)).await?,
        None => {
            let out = h
                .session()
                .run(&script, None, 1024 * 1024)
                .await
                .map_err(StepError::from)?;
            if !out.exit.success() {
                return Err(StepError::command(&out.exit));
            }
            out
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let user_uid: Option<u32> = lines.next().and_then(|l| l.trim().parse().ok());
    let pids: Vec<u32> = lines
        .filter_map(|l| l.trim().parse().ok())
        .take(MAX_CANDIDATES)
        .collect();
    let mut found = Found::default();
    for pid in pids {
        let script = Script::new(PROCESS_INFO).arg(pid.to_string());
        let out = h
            .session()
            .run(&script, None, 1024 * 1024)
            .await
            .map_err(StepError::from)?;
        if !out.exit.success() {
            continue; // gone meanwhile
        }
        let Some(p) = parse_process_info(pid, &out.stdout) else {
            continue;
        };
        if p.args_after(main).is_none() {
            continue;
        }
        if p.owned_by_root_or(user_uid) {
            found.trusted.push(p);
        } else {
            found.ignored.push(p);
        }
    }
    found.trusted.sort_by_key(|p| (!p.is_java(), p.pid));
    Ok(found)
}

/// A note for processes that hold the main class argument but were not trusted.
pub fn ignored_note(main: &str, user: &str, p: &JvmProcess) -> String {
    let owner = p
        .uid
        .map(|(r, _)| format!("uid {r}"))
        .unwrap_or_else(|| "an unknown user".into());
    format!(
        "ignored process {} ({main} on its command line, owned by {owner}, neither root nor {user})",
        p.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_separators_comments_and_blanks() {
        let p = parse_properties(
            "# comment\n! also a comment\n\nlog.dirs=/var/lib/kafka\n  listeners : PLAINTEXT://h:9092\n\
             key value with spaces\nempty=\nnovalue\n  spaced   =   x  \n",
        );
        assert_eq!(p.get("log.dirs"), Some("/var/lib/kafka"));
        assert_eq!(p.get("listeners"), Some("PLAINTEXT://h:9092"));
        assert_eq!(p.get("key"), Some("value with spaces"));
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.get("novalue"), Some(""));
        // trailing blanks are kept in the value, as Java does
        assert_eq!(p.get("spaced"), Some("x  "));
        assert_eq!(p.get_nonempty("spaced"), Some("x"));
        assert_eq!(p.get_nonempty("empty"), None);
        assert_eq!(p.get("# comment"), None);
    }

    #[test]
    fn properties_last_value_wins_and_crlf() {
        let p = parse_properties("a=1\r\nb=2\ra=3\r\n");
        assert_eq!(p.get("a"), Some("3"));
        assert_eq!(p.get("b"), Some("2"));
    }

    #[test]
    fn properties_continuations_and_escapes() {
        let p = parse_properties(
            "log.dirs=/data/a,\\\n    /data/b,\\\n\t/data/c\nk\\=x\\:y=v\\tw\npath=C:\\\\dir\nu=\\u0041\\u00e9\n\
             odd=x\\\\\nnext=1\nsp\\ ace=1\n",
        );
        assert_eq!(p.get("log.dirs"), Some("/data/a,/data/b,/data/c"));
        assert_eq!(p.get("k=x:y"), Some("v\tw"));
        assert_eq!(p.get("path"), Some("C:\\dir"));
        assert_eq!(p.get("u"), Some("Aé"));
        // an even number of trailing backslashes does not continue the line
        assert_eq!(p.get("odd"), Some("x\\"));
        assert_eq!(p.get("next"), Some("1"));
        assert_eq!(p.get("sp ace"), Some("1"));
    }

    #[test]
    fn properties_comment_inside_continuation_is_value() {
        // a continued line's next natural line is never a comment
        let p = parse_properties("a=1,\\\n# not a comment\nb=2\n");
        assert_eq!(p.get("a"), Some("1,# not a comment"));
        assert_eq!(p.get("b"), Some("2"));
    }

    #[test]
    fn properties_hostile_input_is_data() {
        let p = parse_properties(
            "log.dirs=/x$(touch /tmp/MARK)`id`;rm -rf /\nbad=\\u12\ntrailing=\\\n",
        );
        assert_eq!(p.get("log.dirs"), Some("/x$(touch /tmp/MARK)`id`;rm -rf /"));
        assert_eq!(p.get("bad"), Some("\\u12"));
        assert_eq!(p.get("trailing"), Some(""));
        // binary garbage does not panic
        let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let _ = parse_properties(&decode(&junk));
        assert_eq!(decode(b"a=\xe9"), "a=é");
    }

    fn info(status: &str, exe: &str, cwd: &str, args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(status.as_bytes());
        v.push(0);
        v.extend_from_slice(exe.as_bytes());
        v.push(0);
        v.extend_from_slice(cwd.as_bytes());
        v.push(0);
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn process_info_parses_and_resolves_the_config_argument() {
        let raw = info(
            "Name:\tjava\nUid:\t998\t998\t998\t998\n",
            "/usr/lib/jvm/java-11/bin/java\n",
            "/opt/kafka\n",
            &["java", "-Xmx1G", "kafka.Kafka", "config/server.properties"],
        );
        let p = parse_process_info(42, &raw).unwrap();
        assert_eq!(p.uid, Some((998, 998)));
        assert!(p.is_java());
        assert!(p.owned_by_root_or(Some(998)));
        assert!(!p.owned_by_root_or(Some(1000)));
        assert_eq!(
            p.config_arg("kafka.Kafka").as_deref(),
            Some("/opt/kafka/config/server.properties")
        );
        assert_eq!(p.config_arg("org.Other"), None);
    }

    #[test]
    fn process_info_hostile_command_lines_stay_data() {
        // an argument holding NULs cannot exist; one holding a fake frame is just an argument
        let raw = info(
            "Name:\tsleep\nUid:\t65534\t65534\t65534\t65534\n",
            "/usr/bin/python3\n",
            "/tmp\n",
            &[
                "python3",
                "kafka.Kafka",
                "/x$(touch MARK)",
                "Uid:\t0\t0\t0\t0",
            ],
        );
        let p = parse_process_info(7, &raw).unwrap();
        assert_eq!(p.uid, Some((65534, 65534)));
        assert!(!p.owned_by_root_or(Some(998)));
        assert!(!p.is_java());
        assert_eq!(
            p.config_arg("kafka.Kafka").as_deref(),
            Some("/x$(touch MARK)")
        );
        // argv[0] is not an argument; the main class as the last argument has no config
        let raw = info("Uid:\t0\t0\t0\t0\n", "", "", &["kafka.Kafka", "x"]);
        assert_eq!(
            parse_process_info(1, &raw)
                .unwrap()
                .args_after("kafka.Kafka"),
            None
        );
        let raw = info("Uid:\t0\t0\t0\t0\n", "", "", &["java", "kafka.Kafka"]);
        let p = parse_process_info(1, &raw).unwrap();
        assert_eq!(p.config_arg("kafka.Kafka"), None);
        // relative path with an unknown cwd: unusable
        let raw = info(
            "Uid:\t0\t0\t0\t0\n",
            "",
            "",
            &["java", "kafka.Kafka", "rel"],
        );
        assert_eq!(
            parse_process_info(1, &raw)
                .unwrap()
                .config_arg("kafka.Kafka"),
            None
        );
        // truncated output
        assert_eq!(parse_process_info(1, b"Uid: 0 0"), None);
        // a missing status Uid line is never trusted
        let raw = info("Name:\tjava\n", "", "", &["java", "kafka.Kafka", "/c"]);
        assert!(
            !parse_process_info(1, &raw)
                .unwrap()
                .owned_by_root_or(Some(0))
        );
    }

    /// Run a fixed script the way the transport does: `sh -s` with the script on stdin, so the
    /// runner's own command line holds none of the values.
    fn sh(script: &Script) -> std::process::Output {
        use std::io::Write;
        let mut c = std::process::Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(&crate::transport::script_stdin(script))
            .unwrap();
        c.wait_with_output().unwrap()
    }

    #[test]
    fn candidate_and_info_scripts_run_in_sh() {
        let needle = format!("lsbackup-needle-{}x", std::process::id());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30", &needle])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = sh(&Script::new(CANDIDATES).arg(needle.clone()).arg("root"));
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("0"));
        let pid = child.id().to_string();
        assert!(lines.any(|l| l == pid), "{text}");
        // the needle is a literal string, not a pattern
        let out = sh(&Script::new(CANDIDATES)
            .arg("lsbackup-needle-[0-9]*")
            .arg("no-such-user-x"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(text.lines().next(), Some("-"));
        assert!(!text.lines().any(|l| l == pid), "{text}");
        // the info script on the child
        let out = sh(&Script::new(PROCESS_INFO).arg(pid.clone()));
        assert!(out.status.success());
        let p = parse_process_info(child.id(), &out.stdout).unwrap();
        assert!(p.uid.is_some(), "{p:?}");
        assert!(p.cwd.starts_with('/'), "{p:?}");
        assert_eq!(p.args, ["sh", "-c", "sleep 30", needle.as_str()]);
        assert_eq!(p.args_after("sleep 30"), Some(&[needle.clone()][..]));
        let _ = child.kill();
        let _ = child.wait();
        // a process that is gone: exit 3
        let out = sh(&Script::new(PROCESS_INFO).arg(pid));
        assert_eq!(out.status.code(), Some(3));
    }
}
