//! What the `prometheus` and `alertmanager` components share: their HTTP API reached through the
//! host's SSH session (TLS material read from the host, credentials kept in lsbackup), the few
//! fixed scripts they run on the host (processes by executable name, the first existing path,
//! glob expansion), and the Rust parsers of what comes back (the paths a Prometheus-style YAML
//! file references, `/proc` listings, NUL-separated output).
//!
//! Nothing read from a host or an API becomes shell text: every script here is fixed and takes
//! its values as positional parameters; every answer is parsed here, in Rust.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::engine::{HostCtx, StepError};
use http::Method;

use crate::http::{HttpClient, HttpError, Response, Scheme, TlsSettings};
use crate::secret::Secret;
use crate::shell::Script;

/// How to reach a component's API: `<c>_url`, `<c>_ca_cert`, `<c>_client_cert`,
/// `<c>_client_key` (paths on the host), `<c>_tls_verify`, `<c>_user`, `<c>_password`.
pub(crate) struct Api {
    /// Shown in messages ("Prometheus API at URL ...").
    pub(crate) what: &'static str,
    /// The variables' prefix (`prometheus`).
    prefix: String,
    pub(crate) url: String,
    tls: Option<TlsSettings>,
    user: String,
    password: Secret,
}

impl Api {
    /// The API settings of component prefix `c` (`prometheus`), the TLS files read from the
    /// host when the URL is https.
    pub(crate) async fn from_vars(
        h: &mut HostCtx<'_>,
        step: &str,
        c: &str,
        what: &'static str,
    ) -> Result<Api, StepError> {
        let var = |h: &HostCtx<'_>, n: &str| h.var(&format!("{c}_{n}")).trim().to_string();
        let url = var(h, "url");
        let tls = if crate::http::Endpoint::parse(&url)?.scheme == Scheme::Https {
            let verify = !matches!(
                var(h, "tls_verify").to_ascii_lowercase().as_str(),
                "false" | "no" | "off" | "0"
            );
            let (ca, cert, key) = (
                var(h, "ca_cert"),
                var(h, "client_cert"),
                var(h, "client_key"),
            );
            Some(h.tls_from_host(step, &ca, &cert, &key, verify).await?)
        } else {
            None
        };
        Ok(Api {
            what,
            prefix: c.to_string(),
            url,
            tls,
            user: var(h, "user"),
            password: Secret::new(h.var(&format!("{c}_password"))),
        })
    }

    /// A client with this request timeout.
    fn client(&self, h: &HostCtx<'_>, timeout: Duration) -> Result<HttpClient, HttpError> {
        let endpoint = crate::http::Endpoint::parse(&self.url)?;
        let mut b = HttpClient::builder(h.session().clone(), endpoint).timeout(timeout);
        if let Some(tls) = &self.tls {
            b = b.tls(tls.clone());
        }
        if !self.user.is_empty() {
            b = b.basic_auth(self.user.clone(), self.password.clone());
        }
        b.build()
    }

    /// `METHOD PATH` as recorded in the manifest: the full URL (it holds no credential).
    pub(crate) fn shown(&self, method: &str, path: &str) -> String {
        format!("{method} {}{path}", self.url.trim_end_matches('/'))
    }

    /// An error of a call as one line: "<what> API at URL did not answer: cause" when nothing
    /// usable came back, the status and start of the body when it answered with an error.
    pub(crate) fn error(&self, e: HttpError) -> StepError {
        let no_answer = matches!(
            e,
            HttpError::Tunnel(_)
                | HttpError::Timeout { .. }
                | HttpError::Protocol { .. }
                | HttpError::Tls { .. }
        );
        let denied = match &e {
            HttpError::Status { status, .. } => matches!(status.as_u16(), 401 | 403),
            _ => false,
        };
        let e = StepError::from(e);
        if denied {
            let c = &self.prefix;
            StepError::new(
                e.kind,
                format!(
                    "{} (check {c}_user and {c}_password, or the client certificate {c}_client_cert)",
                    e.cause
                ),
            )
        } else if !no_answer {
            e
        } else {
            StepError::new(
                e.kind,
                format!(
                    "{} API at {} did not answer: {}",
                    self.what, self.url, e.cause
                ),
            )
        }
    }

    /// `GET`/`POST path` (any status returned), recorded in the manifest with the status of an
    /// answer that is not 2xx; the error kept as it came (the caller words it).
    pub(crate) async fn send(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let shown = self.shown(method.as_str(), path);
        let t = Instant::now();
        let client = match self.client(h, timeout) {
            Ok(c) => c,
            Err(e) => {
                h.record_call(step, &shown, None, t);
                return Err(e);
            }
        };
        let r = client.send(method, path, None).await;
        let status = match &r {
            Ok(resp) if !resp.status.is_success() => Some(resp.status.as_u16()),
            Err(HttpError::Status { status, .. }) => Some(status.as_u16()),
            _ => None,
        };
        h.record_call(step, &shown, status, t);
        r
    }

    /// `GET path`: 2xx required, the body returned.
    pub(crate) async fn get(
        &self,
        h: &mut HostCtx<'_>,
        step: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Response, StepError> {
        self.send(h, step, Method::GET, path, timeout)
            .await
            .and_then(Response::error_for_status)
            .map_err(|e| self.error(e))
    }
}

/// A process found on the host by its executable's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// The executable (without a " (deleted)" suffix).
    pub(crate) exe: String,
    /// Its working directory ("" when it could not be read).
    pub(crate) cwd: String,
    /// Real and effective uid (`Uid:` of `/proc/PID/status`; None when it could not be read).
    pub(crate) uid: Option<(u32, u32)>,
}

impl Process {
    /// Run by root or by `uid`, as real and effective user both.
    pub(crate) fn owned_by_root_or(&self, uid: Option<u32>) -> bool {
        match self.uid {
            Some((r, e)) => [r, e].iter().all(|u| *u == 0 || Some(*u) == uid),
            None => false,
        }
    }
}

/// `$1`: a user name; the others: executable file names. Prints the uid of that user (`-` when
/// there is none), then for every process whose executable's file name is one of the names:
/// pid, exe, cwd and the `Uid:` line of its status, all NUL-terminated (paths may hold newlines).
const PROCESSES: &str = r#"u=$1
shift
printf '%s\0' "$(id -u -- "$u" 2>/dev/null || echo -)"
for p in /proc/[0-9]*; do
  e=$(readlink "$p/exe" 2>/dev/null) || continue
  b=${e##*/}
  b=${b% (deleted)}
  for n in "$@"; do
    [ "$b" = "$n" ] || continue
    c=$(readlink "$p/cwd" 2>/dev/null) || c=
    s=
    while IFS= read -r l; do
      case $l in Uid:*) s=$l; break ;; esac
    done <"$p/status" 2>/dev/null
    printf '%s\0%s\0%s\0%s\0' "${p#/proc/}" "$e" "$c" "$s"
    break
  done
done
exit 0"#;

/// The processes of a host running one of the executables looked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Processes {
    /// Run by root or by the service user: their working directory and command line are
    /// believed (config paths relative to them, `--config.file`).
    pub(crate) trusted: Vec<Process>,
    /// Run by any other user: an executable of that name is whatever a local user started, so
    /// these never choose a file lsbackup reads as root.
    pub(crate) ignored: Vec<Process>,
}

/// The processes running one of the executables `names` (file names, e.g. `prometheus`), parted
/// by owner: root or the service user named by the host variable `user_var` are trusted, the
/// others noted and ignored.
pub(crate) async fn processes(
    h: &mut HostCtx<'_>,
    step: &str,
    names: &[&str],
    user_var: &str,
) -> Result<Vec<Process>, StepError> {
    let user = h.var(user_var).trim().to_string();
    let script = Script::new(PROCESSES)
        .arg(user.as_str())
        .args(names.iter().copied());
    let shown = format!("list processes of {}", names.join(", "));
    let out = h.run_ok(step, &script, None, Some(&shown)).await?;
    let found = parse_processes(&out.stdout);
    for p in &found.ignored {
        let owner = p
            .uid
            .map(|(r, _)| format!("uid {r}"))
            .unwrap_or_else(|| "an unknown user".into());
        let service = if user.is_empty() {
            String::new()
        } else {
            format!(" nor {user} ({user_var})")
        };
        h.note(&format!(
            "ignored process {} ({}, run by {owner}, neither root{service})",
            p.pid, p.exe
        ));
    }
    Ok(found.trusted)
}

/// Parse the output of [`PROCESSES`]; incomplete or malformed records are dropped, and so is
/// everything when the first field (the service user's uid or `-`) is missing.
pub(crate) fn parse_processes(out: &[u8]) -> Processes {
    let fields = split_nul(out);
    let Some((first, rest)) = fields.split_first() else {
        return Processes::default();
    };
    let user_uid: Option<u32> = first.trim().parse().ok();
    let mut found = Processes::default();
    for r in rest.chunks_exact(4) {
        let Ok(pid) = r[0].parse() else { continue };
        let exe = r[1].strip_suffix(" (deleted)").unwrap_or(&r[1]).to_string();
        let ids: Vec<u32> = r[3]
            .strip_prefix("Uid:")
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let p = Process {
            pid,
            exe,
            cwd: r[2].clone(),
            uid: (ids.len() >= 2).then(|| (ids[0], ids[1])),
        };
        if p.owned_by_root_or(user_uid) {
            found.trusted.push(p);
        } else {
            found.ignored.push(p);
        }
    }
    found
}

/// NUL-terminated fields (lossy UTF-8); a last field without its NUL is kept.
pub(crate) fn split_nul(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = out
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    if out.last() == Some(&0) || out.is_empty() {
        v.pop();
    }
    v
}

/// What kind of path [`first_existing`] looks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    File,
    Dir,
}

const FIRST_EXISTING: &str = r#"t=$1; shift
for f in "$@"; do
  if test "$t" "$f"; then printf '%s\0' "$f"; exit 0; fi
done
exit 3"#;

/// The first of `candidates` that exists on the host as a `kind`.
pub(crate) async fn first_existing(
    h: &mut HostCtx<'_>,
    step: &str,
    kind: Kind,
    candidates: &[String],
) -> Result<Option<String>, StepError> {
    if candidates.is_empty() {
        return Ok(None);
    }
    let (flag, word) = match kind {
        Kind::File => ("-f", "file"),
        Kind::Dir => ("-d", "directory"),
    };
    let script = Script::new(FIRST_EXISTING)
        .arg(flag)
        .args(candidates.iter().cloned());
    let shown = format!(
        "first existing {word} of {}",
        crate::shell::quote_words(candidates)
    );
    let out = h.run(step, &script, None, Some(&shown)).await?;
    match out.exit.code {
        Some(0) => Ok(split_nul(&out.stdout).into_iter().next()),
        Some(3) => Ok(None),
        _ => Err(StepError::command(&out.exit)),
    }
}

/// Each positional parameter expanded as a pathname pattern (IFS empty: no field splitting,
/// never code): `m<path>\0` per existing match, `u<pattern>\0` for a pattern matching nothing.
const GLOB: &str = r#"IFS=
for pat in "$@"; do
  for f in $pat; do
    if [ -e "$f" ] || [ -L "$f" ]; then printf 'm%s\0' "$f"; else printf 'u%s\0' "$f"; fi
  done
done
exit 0"#;

/// Expand glob patterns (absolute paths) on the host: the paths that exist, and the patterns
/// that matched nothing.
pub(crate) async fn expand_globs(
    h: &mut HostCtx<'_>,
    step: &str,
    patterns: &[String],
) -> Result<(Vec<String>, Vec<String>), StepError> {
    if patterns.is_empty() {
        return Ok((vec![], vec![]));
    }
    let script = Script::new(GLOB).args(patterns.iter().cloned());
    let shown = format!("expand {}", crate::shell::quote_words(patterns));
    let out = h.run_ok(step, &script, None, Some(&shown)).await?;
    Ok(parse_globs(&out.stdout))
}

pub(crate) fn parse_globs(out: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut found, mut missing) = (vec![], vec![]);
    for f in split_nul(out) {
        if let Some(p) = f.strip_prefix('m') {
            found.push(p.to_string());
        } else if let Some(p) = f.strip_prefix('u') {
            missing.push(p.to_string());
        }
    }
    (found, missing)
}

/// Paths a Prometheus-style YAML file references.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Refs {
    /// Entries of the list keys (`rule_files`, file_sd `files`, `templates`): glob patterns.
    pub(crate) patterns: Vec<String>,
    /// Values of every `*_file` key (credentials, certificates): literal paths.
    pub(crate) files: Vec<String>,
}

impl Refs {
    pub(crate) fn extend(&mut self, other: Refs) {
        self.patterns.extend(other.patterns);
        self.files.extend(other.files);
    }
}

/// The paths a YAML document references: the string items of the keys `list_keys` (at any
/// depth) and the string value of every key ending in `_file`, each made absolute against
/// `base` and normalized. Placeholders Prometheus prints instead of values (`<secret>`) and
/// empty values are skipped. A document that does not parse is an error (one line).
pub(crate) fn yaml_refs(text: &str, list_keys: &[&str], base: &str) -> Result<Refs, String> {
    let doc: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| first_line(&e.to_string()))?;
    let mut refs = Refs::default();
    walk(&doc, list_keys, base, &mut refs);
    Ok(refs)
}

fn walk(v: &serde_json::Value, list_keys: &[&str], base: &str, refs: &mut Refs) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if list_keys.contains(&k.as_str()) {
                    let items: Vec<&str> = match v {
                        serde_json::Value::Array(a) => {
                            a.iter().filter_map(|i| i.as_str()).collect()
                        }
                        serde_json::Value::String(s) => vec![s.as_str()],
                        _ => vec![],
                    };
                    refs.patterns
                        .extend(items.into_iter().filter_map(|p| usable(p, base)));
                    continue;
                }
                if k.ends_with("_file")
                    && let Some(s) = v.as_str()
                {
                    refs.files.extend(usable(s, base));
                    continue;
                }
                walk(v, list_keys, base, refs);
            }
        }
        serde_json::Value::Array(a) => {
            for i in a {
                walk(i, list_keys, base, refs);
            }
        }
        _ => {}
    }
}

fn usable(p: &str, base: &str) -> Option<String> {
    let p = p.trim();
    if p.is_empty() || (p.starts_with('<') && p.ends_with('>')) {
        return None;
    }
    Some(absolute(base, p))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// `p` made absolute against `base` (an absolute directory) and normalized lexically: empty and
/// `.` parts dropped, `..` removes the part before it (never above `/`). Whatever a host or a
/// config says, the result is an absolute path without `..`.
pub(crate) fn absolute(base: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", base)
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The directory of an absolute path (`/` for a file at the root).
pub(crate) fn dirname(p: &str) -> String {
    match p.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((d, _)) => d.to_string(),
    }
}

/// Sorted, each once.
pub(crate) fn unique(paths: impl IntoIterator<Item = String>) -> Vec<String> {
    paths
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The describe() lines about how the API is reached (TLS, auth), secret values never shown.
pub(crate) fn describe_api(
    vars: &std::collections::BTreeMap<String, String>,
    c: &str,
) -> Vec<String> {
    let get = |n: &str| {
        vars.get(&format!("{c}_{n}"))
            .map(|s| s.trim())
            .unwrap_or("")
    };
    let mut v = Vec::new();
    let files: Vec<String> = [
        ("CA", "ca_cert"),
        ("client certificate", "client_cert"),
        ("client key", "client_key"),
    ]
    .iter()
    .filter(|(_, n)| !get(n).is_empty())
    .map(|(w, n)| format!("{w} {}", get(n)))
    .collect();
    if get("url").starts_with("https") {
        let verify = if matches!(
            get("tls_verify").to_ascii_lowercase().as_str(),
            "false" | "no" | "off" | "0"
        ) {
            "certificate NOT verified"
        } else {
            "certificate verified"
        };
        let files = if files.is_empty() {
            String::new()
        } else {
            format!("; {} (read from the host)", files.join(", "))
        };
        v.push(format!("TLS: {verify}{files}"));
    }
    if !get("user").is_empty() {
        v.push(format!(
            "basic auth as {} (password {}; sent by lsbackup, never on the host)",
            get("user"),
            if get("password").is_empty() {
                "empty"
            } else {
                "********"
            }
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_normalizes_and_never_climbs_above_root() {
        assert_eq!(
            absolute("/etc/prometheus", "rules/a.yml"),
            "/etc/prometheus/rules/a.yml"
        );
        assert_eq!(absolute("/etc/prometheus", "/x//y/./z"), "/x/y/z");
        assert_eq!(
            absolute("/etc/prometheus", "../../../../etc/shadow"),
            "/etc/shadow"
        );
        assert_eq!(absolute("/", ".."), "/");
        assert_eq!(absolute("/a", "$(touch x)/b"), "/a/$(touch x)/b");
        assert_eq!(absolute("/a", "x\ny"), "/a/x\ny");
        assert_eq!(dirname("/etc/prometheus/prometheus.yml"), "/etc/prometheus");
        assert_eq!(dirname("/x"), "/");
    }

    #[test]
    fn yaml_refs_lists_and_file_keys() {
        let yaml = r#"
global:
  scrape_interval: 5s
rule_files:
  - rules/*.yml
  - /abs/rules.yml
  - "$(touch /tmp/pwn)"
scrape_configs:
  - job_name: a
    basic_auth:
      username: u
      password_file: ../secrets/pw
    tls_config:
      ca_file: /etc/ssl/ca.pem
      cert_file: "<secret>"
    file_sd_configs:
      - files: ['sd/*.json', "/x/../../y.json"]
  - job_name: b
    bearer_token_file: "line1\nline2"
    authorization:
      credentials_file: ""
"#;
        let r = yaml_refs(yaml, &["rule_files", "files"], "/etc/prometheus").unwrap();
        assert_eq!(
            r.patterns,
            [
                "/etc/prometheus/rules/*.yml",
                "/abs/rules.yml",
                "/etc/prometheus/$(touch /tmp/pwn)",
                "/etc/prometheus/sd/*.json",
                "/y.json"
            ]
        );
        assert_eq!(
            r.files,
            [
                "/etc/secrets/pw",
                "/etc/ssl/ca.pem",
                "/etc/prometheus/line1\nline2"
            ]
        );
        // Alertmanager: templates
        let am = "templates: ['/etc/am/*.tmpl']\nreceivers:\n- name: x\n  slack_configs:\n  - api_url_file: s\n";
        let r = yaml_refs(am, &["templates"], "/etc/am").unwrap();
        assert_eq!(r.patterns, ["/etc/am/*.tmpl"]);
        assert_eq!(r.files, ["/etc/am/s"]);
        assert!(yaml_refs("a: [", &["x"], "/").is_err());
        assert_eq!(yaml_refs("", &["x"], "/").unwrap(), Refs::default());
    }

    #[test]
    fn nul_separated_output_is_data() {
        let out = b"998\0\
                    12\0/usr/bin/prometheus\0/opt/x\n$(touch y)\0Uid:\t998\t998\t998\t998\0\
                    13\0/usr/bin/prometheus (deleted)\0\0Uid:\t0\t0\t0\t0\0\
                    bad\0/x\0/y\0Uid:\t0\t0\t0\t0\0\
                    15\0/home/eve/prometheus\0/home/eve\0Uid:\t1000\t1000\t1000\t1000\0\
                    16\0/usr/bin/prometheus\0/\0Uid:\t1000\t0\t1000\t0\0\
                    17\0/usr/bin/prometheus\0/\0\0\
                    14\0/trunc";
        let p = parse_processes(out);
        assert_eq!(p.trusted.len(), 2, "{p:?}");
        assert_eq!(p.trusted[0].cwd, "/opt/x\n$(touch y)");
        assert_eq!(p.trusted[0].uid, Some((998, 998)));
        assert_eq!(p.trusted[1].exe, "/usr/bin/prometheus");
        assert_eq!(p.trusted[1].cwd, "");
        // another user's, a setuid mix with another user, an unreadable status: never trusted
        let ignored: Vec<u32> = p.ignored.iter().map(|p| p.pid).collect();
        assert_eq!(ignored, [15, 16, 17]);
        // no service user on the host: root's only
        let p = parse_processes(b"-\x0012\0/usr/bin/prometheus\0/\0Uid:\t998\t998\t998\t998\0");
        assert!(p.trusted.is_empty() && p.ignored.len() == 1, "{p:?}");
        assert_eq!(parse_processes(b""), Processes::default());
        let (found, missing) = parse_globs(b"m/etc/a b\0m/etc/x\ny\0u/etc/r/*.yml\0");
        assert_eq!(found, ["/etc/a b", "/etc/x\ny"]);
        assert_eq!(missing, ["/etc/r/*.yml"]);
        assert_eq!(split_nul(b""), Vec::<String>::new());
    }

    /// The fixed scripts run by a real `sh`: hostile paths are data, globs expand, nothing runs.
    #[test]
    fn scripts_treat_paths_as_data() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mark = format!("{d}/MARK");
        std::fs::create_dir(format!("{d}/r")).unwrap();
        std::fs::write(format!("{d}/r/a.yml"), "").unwrap();
        std::fs::write(format!("{d}/r/b c.yml"), "").unwrap();
        let hostile = format!("{d}/$(touch {mark})");
        let run = |s: Script| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(s.to_shell())
                .output()
                .unwrap();
            (out.status.code(), out.stdout)
        };
        let (code, out) = run(Script::new(GLOB).args([
            format!("{d}/r/*.yml"),
            hostile.clone(),
            format!("{d}/nothing/*.yml; touch {mark}"),
        ]));
        assert_eq!(code, Some(0));
        let (found, missing) = parse_globs(&out);
        assert_eq!(found, [format!("{d}/r/a.yml"), format!("{d}/r/b c.yml")]);
        assert_eq!(
            missing,
            [hostile.clone(), format!("{d}/nothing/*.yml; touch {mark}")]
        );
        let (code, out) = run(Script::new(FIRST_EXISTING).args([
            "-d".to_string(),
            hostile,
            format!("{d}/r/a.yml"),
            format!("{d}/r"),
        ]));
        assert_eq!(code, Some(0));
        assert_eq!(split_nul(&out), [format!("{d}/r")]);
        let (code, _) = run(Script::new(FIRST_EXISTING).args(["-f", "/nonexistent/x"]));
        assert_eq!(code, Some(3));
        // this very test process is found by its executable's name, with its cwd
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_string_lossy().into_owned();
        let me_user = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let me_user = String::from_utf8(me_user.stdout).unwrap();
        let (code, out) = run(Script::new(PROCESSES).arg(me_user.trim()).arg(name));
        assert_eq!(code, Some(0));
        let procs = parse_processes(&out);
        let mine = procs
            .trusted
            .iter()
            .find(|p| p.pid == std::process::id())
            .unwrap_or_else(|| panic!("{procs:?}"));
        assert_eq!(mine.exe, me.display().to_string());
        assert_eq!(
            mine.cwd,
            std::env::current_dir().unwrap().display().to_string()
        );
        assert!(!std::path::Path::new(&mark).exists());
    }
}
