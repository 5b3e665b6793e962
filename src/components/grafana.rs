//! `grafana`: datasources, folders and every dashboard through Grafana's HTTP API, spoken by
//! lsbackup itself through the host's SSH connection (a direct-tcpip tunnel: no curl, no python
//! on the host, and the credentials never exist there); the SQLite database copied consistently
//! with `sqlite3 .backup` when the host has the sqlite3 CLI (else a plain copy, flagged); the
//! rest of the data dir and `/etc/grafana`.
//!
//! `grafana.ini` is read from the host and parsed here ([`Ini`]), as Grafana (go-ini) reads it.
//!
//! Credentials (a token, a user and password, or `admin_user`/`admin_password` of grafana.ini)
//! are sent only over https with the certificate checked (against `grafana_ca_cert`, by default
//! the `[server] cert_file` Grafana itself serves), unless the user opts in to plain http with
//! `grafana_allow_plain_http_credentials=true`: the tunnel ends on the host, where any local user
//! could listen on Grafana's port while Grafana is down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde::Deserialize;

use super::{Native, NativeRef, leftovers};
use crate::archive::FailureKind;
use crate::engine::{At, Failed, HostCtx, StepError};
use crate::http::{Endpoint, HttpClient, HttpError, Response, Scheme, TlsSettings};
use crate::secret::Secret;
use crate::shell::Script;

/// The declarative facts (see `docs/components.md`); the logic is [`Grafana`].
pub const SPEC: &str = r#"
name: grafana
description: Grafana dashboards and datasources (HTTP API), grafana.db (online backup), data dir and config
groups: [grafana]
hosts: first
vars:
  # http(s)://host:port (several: separated by spaces, the first that answers is used);
  # auto: from grafana.ini [server] protocol, http_addr, http_port (defaults http, 127.0.0.1, 3000)
  grafana_url: auto
  grafana_config_dir: /etc/grafana
  # auto: grafana.ini [paths] data, else /var/lib/grafana
  grafana_data_dir: auto
  # "" = admin_user/admin_password from grafana.ini [security]
  grafana_user: ""
  grafana_password: ""
  # API key / service-account token (Admin role); used instead of user and password when set
  grafana_token: ""
  # CA (PEM file on the host) that signs Grafana's certificate; "" = the [server] cert_file of
  # grafana.ini (the certificate Grafana serves, with its chain). false: do not verify (then no
  # credentials are sent)
  grafana_ca_cert: ""
  grafana_tls_verify: "true"
  # true: send credentials to a plain-http Grafana too (anyone on the host who can listen on its
  # port while Grafana is down gets them). Default: credentials over verified https only
  grafana_allow_plain_http_credentials: "false"
  # how grafana.db is copied: auto (sqlite3 online backup if the CLI is installed, else a plain
  # copy), sqlite3, or copy (a plain file copy, flagged: not consistent while Grafana writes)
  grafana_db_copy: auto
not_covered:
  - datasource secrets (secureJsonData) are not returned by the API; they are in grafana.db (encrypted with secret_key of grafana.ini, which the config copy holds)
  - a MySQL or PostgreSQL Grafana database (back that database up with its own component)
  - dashboards beyond the first 5000 of /api/search; alert rules, users and teams only as part of grafana.db
  - GF_* environment overrides of grafana.ini (give grafana_url, grafana_data_dir, credentials as vars)
"#;

pub fn make() -> NativeRef {
    NativeRef(Arc::new(Grafana))
}

/// Kept between `select` and `backup`: the URL that answered.
const URL_VAR: &str = "gf_url";
/// Kept for the cleanup: the work dir made on the host for the database copy.
const WORK_VAR: &str = "gf_work";
const WORK_PREFIX: &str = "/tmp/lsbackup-grafana.";
const SEARCH_LIMIT: usize = 5000;

pub struct Grafana;

/// `grafana.ini` as Grafana reads it (go-ini): `[section]`, `key = value` (or `key: value`),
/// whole-line comments starting with `;` or `#`; an unquoted value ends at a `;` or `#`
/// (Grafana's docs: wrap such values in `"""`); `"""..."""` (may span lines), `"..."` and
/// `` `...` `` quote a value. Keys before any section are in section "".
#[derive(Debug, Default, Clone)]
pub struct Ini {
    values: BTreeMap<(String, String), String>,
}

impl Ini {
    pub fn parse(text: &str) -> Ini {
        let mut values = BTreeMap::new();
        let mut section = String::new();
        let mut lines = text.lines();
        while let Some(raw) = lines.next() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                if let Some(end) = rest.find(']') {
                    section = rest[..end].trim().to_string();
                }
                continue;
            }
            let Some(at) = line.find(['=', ':']) else {
                continue;
            };
            let key = line[..at].trim().to_string();
            let rest = line[at + 1..].trim();
            let value = if let Some(after) = rest.strip_prefix("\"\"\"") {
                match after.find("\"\"\"") {
                    Some(end) => after[..end].to_string(),
                    None => {
                        let mut v = after.to_string();
                        for next in lines.by_ref() {
                            v.push('\n');
                            if let Some(end) = next.find("\"\"\"") {
                                v.push_str(&next[..end]);
                                break;
                            }
                            v.push_str(next);
                        }
                        v
                    }
                }
            } else if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '`')
                && rest.len() > 1
                && rest.ends_with(q)
            {
                rest[1..rest.len() - 1].to_string()
            } else {
                let cut = rest.find(['#', ';']).unwrap_or(rest.len());
                rest[..cut].trim().to_string()
            };
            if !key.is_empty() {
                values.insert((section.clone(), key), value);
            }
        }
        Ini { values }
    }

    /// A value, `None` when absent or empty.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values
            .get(&(section.to_string(), key.to_string()))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The URL Grafana serves on, from `[server]` (defaults http, 127.0.0.1, 3000; a wildcard
    /// address is reached on the loopback).
    pub fn url(&self) -> String {
        let proto = match self.get("server", "protocol") {
            Some("https" | "h2") => "https",
            _ => "http",
        };
        let addr = match self.get("server", "http_addr") {
            None | Some("0.0.0.0" | "[::]" | "::") => "127.0.0.1",
            Some(a) => a,
        };
        let port = self.get("server", "http_port").unwrap_or("3000");
        if addr.contains(':') && !addr.starts_with('[') {
            format!("{proto}://[{addr}]:{port}")
        } else {
            format!("{proto}://{addr}:{port}")
        }
    }

    /// The data dir: `[paths] data` (relative: under /usr/share/grafana), else /var/lib/grafana.
    pub fn data_dir(&self) -> String {
        match self.get("paths", "data") {
            None => "/var/lib/grafana".into(),
            Some(d) => home_relative(d),
        }
    }

    /// The SQLite file (relative: in the data dir), or `Err(type)` for another database.
    pub fn sqlite_path(&self, data_dir: &str) -> Result<String, String> {
        match self.get("database", "type").unwrap_or("sqlite3") {
            "sqlite3" => {}
            other => return Err(other.to_string()),
        }
        let p = self.get("database", "path").unwrap_or("grafana.db");
        Ok(if p.starts_with('/') {
            p.to_string()
        } else {
            format!("{}/{p}", data_dir.trim_end_matches('/'))
        })
    }
}

/// Grafana resolves relative paths against its home, /usr/share/grafana on Debian.
fn home_relative(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/usr/share/grafana/{p}")
    }
}

/// A dashboard uid as Grafana allows it (`^[a-zA-Z0-9_-]+$`, at most 40; a little slack): it
/// becomes an archive file name and a request path.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A work dir name only of the form `mktemp -d /tmp/lsbackup-grafana.HOLDER.XXXXXXXX` makes
/// (HOLDER: the pid holding the run's connection, see [`leftovers`]): the only thing the cleanup
/// ever removes.
fn valid_work_dir(d: &str) -> bool {
    d.strip_prefix("/tmp/")
        .is_some_and(|name| work_dir_holder(name).is_some())
}

/// The holder pid in a work dir's name (`lsbackup-grafana.HOLDER.XXXXXXXX`).
fn work_dir_holder(name: &str) -> Option<u32> {
    leftovers::mktemp_name(name, "lsbackup-grafana.", 8)
}

/// Work dirs an earlier run left in /tmp.
const LEFTOVERS: &[leftovers::Kind<'static>] = &[leftovers::Kind {
    dir: "/tmp",
    glob: "lsbackup-grafana.*",
    file_type: 'd',
    parse: |name| {
        work_dir_holder(name).map(|holder| leftovers::Found {
            holder,
            marks: None,
        })
    },
}];

/// Makes the work dir, named for the connection's holder.
const MKTEMP: &str = concat!(
    leftovers::holder_sh!(),
    r#"umask 077 && exec mktemp -d "/tmp/lsbackup-grafana.$lsb_holder.XXXXXXXX""#
);

/// Pretty-printed JSON (with a final newline), or why the answer is not JSON.
fn pretty(body: &[u8]) -> Result<Vec<u8>, StepError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| StepError::bad_data(format!("the answer is not JSON: {e}")))?;
    let mut out =
        serde_json::to_vec_pretty(&v).map_err(|e| StepError::local(format!("JSON: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

#[derive(Deserialize)]
struct Health {
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct SearchHit {
    #[serde(default)]
    uid: String,
}

enum Auth {
    Token(Secret),
    Basic(String, Secret),
}

/// The candidate URLs: `grafana_url` (words), or the one grafana.ini gives.
fn urls(var: &str, ini: &Ini) -> Vec<String> {
    if var.trim() == "auto" || var.trim().is_empty() {
        vec![ini.url()]
    } else {
        var.split_whitespace().map(str::to_string).collect()
    }
}

async fn load_ini(h: &mut HostCtx<'_>, step: &str) -> Result<Ini, StepError> {
    let path = format!(
        "{}/grafana.ini",
        h.var("grafana_config_dir").trim_end_matches('/')
    );
    Ok(match h.read_file(step, &path, None).await? {
        Some(bytes) => Ini::parse(&String::from_utf8_lossy(&bytes)),
        None => Ini::default(),
    })
}

/// One API call, recorded as `GET URL` (+ `note`, never a secret); a non-2xx answer is an
/// error carrying Grafana's `message`.
async fn call(
    h: &mut HostCtx<'_>,
    api: &HttpClient,
    step: &str,
    path: &str,
    note: &str,
) -> Result<Response, StepError> {
    let t = Instant::now();
    let shown = format!("GET {}{path}{note}", api.endpoint());
    let r = api.send(Method::GET, path, None).await;
    h.record_call(step, &shown, r.as_ref().ok().map(|r| r.status.as_u16()), t);
    let r = r?;
    if r.status.is_success() {
        return Ok(r);
    }
    let reason = serde_json::from_slice::<Message>(&r.body)
        .map(|m| m.message)
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        });
    let status = r.status.as_u16();
    Err(StepError::api(if reason.is_empty() {
        format!("{}: GET {path}: HTTP {status}", api.endpoint())
    } else {
        format!("{}: GET {path}: HTTP {status}: {reason}", api.endpoint())
    }))
}

impl Grafana {
    /// The credentials and where they come from (for error messages).
    async fn credentials(
        &self,
        h: &mut HostCtx<'_>,
        ini: &Ini,
    ) -> Result<(Auth, String), StepError> {
        if !h.var("grafana_token").is_empty() {
            return Ok((
                Auth::Token(Secret::new(h.var("grafana_token"))),
                "grafana_token".into(),
            ));
        }
        if !h.var("grafana_user").is_empty() {
            return Ok((
                Auth::Basic(
                    h.var("grafana_user").to_string(),
                    Secret::new(h.var("grafana_password")),
                ),
                "grafana_user".into(),
            ));
        }
        let from = format!(
            "admin_user/admin_password of {}/grafana.ini",
            h.var("grafana_config_dir").trim_end_matches('/')
        );
        let user = ini
            .get("security", "admin_user")
            .unwrap_or("admin")
            .to_string();
        let raw = ini.get("security", "admin_password").unwrap_or("admin");
        let password = if let Some(f) = raw
            .strip_prefix("$__file{")
            .and_then(|r| r.strip_suffix('}'))
        {
            let bytes = h.read_required("connect", f.trim(), None).await?;
            Secret::new(String::from_utf8_lossy(&bytes).trim_end_matches(['\r', '\n']))
        } else if raw.starts_with("$__env{") || raw.starts_with("$__vault{") {
            return Err(StepError::config(format!(
                "admin_password in {from} comes from {}: give grafana_user and grafana_password (or grafana_token)",
                raw.split('{').next().unwrap_or(raw)
            )));
        } else {
            Secret::new(raw)
        };
        Ok((Auth::Basic(user, password), from))
    }

    /// A client with TLS and credentials, checked with `GET /api/datasources` (needs the Admin
    /// role). Returns it with that answer.
    async fn connect(
        &self,
        h: &mut HostCtx<'_>,
        ini: &Ini,
        url: &str,
    ) -> Result<(HttpClient, Response), StepError> {
        let endpoint = Endpoint::parse(url)?;
        let (auth, from) = self.credentials(h, ini).await?;
        let mut b = h.http(url)?.timeout(Duration::from_secs(60));
        if endpoint.scheme == Scheme::Https {
            let verify = !matches!(
                h.var("grafana_tls_verify")
                    .trim()
                    .to_ascii_lowercase()
                    .as_str(),
                "false" | "no" | "off" | "0"
            );
            let ca = match h.var("grafana_ca_cert") {
                "" => ini
                    .get("server", "cert_file")
                    .map(home_relative)
                    .unwrap_or_default(),
                v => v.to_string(),
            };
            if verify && ca.is_empty() {
                return Err(StepError::config(format!(
                    "{url} is https but there is no CA to check its certificate with: set grafana_ca_cert (grafana.ini [server] names no cert_file)"
                )));
            }
            let tls = h
                .tls_from_host("connect", if verify { &ca } else { "" }, "", "", verify)
                .await?;
            b = b.tls(tls);
        }
        b = match auth {
            Auth::Token(t) => b.bearer(t),
            Auth::Basic(u, p) => b.basic_auth(u, p),
        };
        let b =
            b.allow_plain_http_credentials(h.var_is_true("grafana_allow_plain_http_credentials"));
        let api = b.build().map_err(|e| {
            let insecure = matches!(e, HttpError::InsecureCredentials { .. });
            let mut e = StepError::from(e);
            if insecure {
                e.cause = format!(
                    "{} (credentials: {from}; serve Grafana over https, or set grafana_allow_plain_http_credentials=true to accept the risk)",
                    e.cause
                );
            }
            e
        })?;
        let ds = call(
            h,
            &api,
            "connect",
            "/api/datasources",
            &format!(" (credentials: {from})"),
        )
            .await
            .map_err(|mut e| {
                if e.cause.contains("HTTP 401") || e.cause.contains("HTTP 403") {
                    e.cause = format!(
                        "{} (credentials: {from}; set grafana_token, or grafana_user and grafana_password, of an Admin)",
                        e.cause
                    );
                }
                e
            })?;
        Ok((api, ds))
    }

    /// Datasources, folders and each dashboard, one pretty JSON file each.
    async fn export(&self, h: &mut HostCtx<'_>, api: &HttpClient, datasources: &Response) {
        h.step("datasources");
        let r = match pretty(&datasources.body) {
            Ok(p) => h.add_bytes("api/datasources.json", &p).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            h.fail("datasources", e);
        }
        h.step("folders");
        let r = match call(h, api, "folders", "/api/folders", "").await {
            Ok(resp) => match pretty(&resp.body) {
                Ok(p) => h.add_bytes("api/folders.json", &p).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            h.fail("folders", e);
        }
        h.step("dashboards");
        let search = format!("/api/search?type=dash-db&limit={SEARCH_LIMIT}");
        let hits: Vec<SearchHit> = match call(h, api, "dashboards", &search, "").await {
            Ok(resp) => match serde_json::from_slice(&resp.body) {
                Ok(v) => v,
                Err(e) => {
                    h.fail(
                        "dashboards",
                        StepError::bad_data(format!("GET {search}: not a search result: {e}")),
                    );
                    return;
                }
            },
            Err(e) => {
                h.fail("dashboards", e);
                return;
            }
        };
        if hits.len() >= SEARCH_LIMIT {
            h.note(&format!(
                "the dashboard search returned its limit of {SEARCH_LIMIT}: further dashboards are only in grafana.db"
            ));
        }
        let uids: BTreeSet<String> = hits.into_iter().map(|h| h.uid).collect();
        for uid in uids {
            if h.is_cancelled() {
                return;
            }
            if !valid_uid(&uid) {
                h.fail(
                    "dashboards",
                    StepError::bad_data(format!(
                        "dashboard uid {uid:?} is not one Grafana makes (letters, digits, - and _): not exported (it is in grafana.db)"
                    )),
                );
                continue;
            }
            let step = format!("dashboard {uid}");
            h.step(&step);
            let r = match call(h, api, &step, &format!("/api/dashboards/uid/{uid}"), "").await {
                Ok(resp) => match pretty(&resp.body) {
                    Ok(p) => h.add_bytes(&format!("api/dashboards/{uid}.json"), &p).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                h.fail(&step, e);
            }
        }
    }

    /// grafana.db: SQLite's online backup on the host when it has the sqlite3 CLI, else a plain
    /// copy (flagged).
    async fn database(&self, h: &mut HostCtx<'_>, db: &str) -> Result<(), StepError> {
        let mode = h.var("grafana_db_copy").trim().to_ascii_lowercase();
        if !matches!(mode.as_str(), "auto" | "sqlite3" | "copy") {
            return Err(StepError::config(format!(
                "grafana_db_copy must be auto, sqlite3 or copy, not {mode:?}"
            )));
        }
        if !db.starts_with('/') {
            return Err(StepError::config(format!(
                "database path {db:?} is not absolute"
            )));
        }
        const PROBE: &str = "if [ ! -f \"$1\" ]; then echo absent; \
             elif command -v sqlite3 >/dev/null 2>&1; then echo sqlite3; else echo no-sqlite3; fi";
        let found = h
            .run_ok("database", &Script::new(PROBE).arg(db), None, None)
            .await?
            .stdout_text();
        match found.as_str() {
            "absent" => {
                h.note(&format!("no database file {db} on the host"));
                return Ok(());
            }
            "no-sqlite3" if mode == "sqlite3" => {
                return Err(StepError::new(
                    FailureKind::MissingTool,
                    "missing on host: sqlite3 (grafana_db_copy=sqlite3)",
                ));
            }
            "sqlite3" | "no-sqlite3" => {}
            other => {
                return Err(StepError::bad_data(format!(
                    "unexpected answer of the database probe: {other:?}"
                )));
            }
        }
        if mode == "copy" || found == "no-sqlite3" {
            h.step("database (plain copy)");
            let files: Vec<String> = ["", "-wal", "-shm", "-journal"]
                .iter()
                .map(|s| format!("{db}{s}"))
                .collect();
            let n = h.copy("database (plain copy)", &files, true).await?;
            if n == 0 {
                return Err(StepError::bad_data(format!("{db}: nothing copied")));
            }
            h.note(&format!(
                "grafana.db copied as a plain file ({}): it may be inconsistent if Grafana wrote to it meanwhile",
                if mode == "copy" {
                    "grafana_db_copy=copy"
                } else {
                    "no sqlite3 on the host"
                }
            ));
            return Ok(());
        }
        h.step("database");
        let made = h
            .run_ok(
                "database",
                &Script::new(MKTEMP),
                None,
                Some("umask 077 && mktemp -d /tmp/lsbackup-grafana.HOLDER.XXXXXXXX"),
            )
            .await?
            .stdout_text();
        if !valid_work_dir(&made) {
            return Err(StepError::bad_data(format!(
                "mktemp -d printed {made:?}, not a directory of the form {WORK_PREFIX}HOLDER.XXXXXXXX"
            )));
        }
        h.set_var(WORK_VAR, made.clone());
        const BACKUP: &str = "cd -- \"$2\" && exec sqlite3 -readonly -cmd '.timeout 30000' \"$1\" '.backup grafana.db'";
        h.run_ok(
            "database",
            &Script::new(BACKUP).arg(db).arg(made.as_str()),
            None,
            None,
        )
        .await?;
        const CHECK: &str = "exec sqlite3 \"$1/grafana.db\" 'PRAGMA integrity_check'";
        let check = h
            .run_ok(
                "database",
                &Script::new(CHECK).arg(made.as_str()),
                None,
                None,
            )
            .await?
            .stdout_text();
        if check != "ok" {
            return Err(StepError::bad_data(format!(
                "integrity check of the copy of {db}: {}",
                check.lines().next().unwrap_or("")
            )));
        }
        const CAT: &str = "exec cat -- \"$1/grafana.db\"";
        h.stream(
            "database",
            &Script::new(CAT).arg(made.as_str()),
            None,
            "grafana.db",
            None,
        )
        .await
    }

    /// The data dir without the database (which [`Grafana::database`] takes).
    async fn data_dir(
        &self,
        h: &mut HostCtx<'_>,
        data: &str,
        db: Option<&str>,
    ) -> Result<(), StepError> {
        let data = data.trim_end_matches('/');
        let db_in_data = db
            .and_then(|d| d.rsplit_once('/'))
            .filter(|(dir, _)| *dir == data);
        let paths: Vec<String> = match db_in_data {
            None => vec![data.to_string()],
            Some((_, name)) => {
                const LIST: &str = "[ -d \"$1\" ] || exit 0\n\
                    for f in \"$1\"/* \"$1\"/.[!.]* \"$1\"/..?*; do\n\
                    if [ -e \"$f\" ] || [ -L \"$f\" ]; then printf '%s\\0' \"$f\"; fi\n\
                    done";
                let out = h
                    .run_ok("data dir", &Script::new(LIST).arg(data), None, None)
                    .await?;
                let skip = format!("{name}-");
                out.stdout
                    .split(|b| *b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .filter(|p| {
                        let base = p.rsplit('/').next().unwrap_or("");
                        base != name && !base.starts_with(&skip)
                    })
                    .collect()
            }
        };
        if !paths.is_empty() {
            h.copy("data dir", &paths, true).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Native for Grafana {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let v = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let conf = v("grafana_config_dir").trim_end_matches('/').to_string();
        let url = match v("grafana_url") {
            "auto" | "" => {
                "the URL of grafana.ini [server] (protocol, http_addr, http_port)".to_string()
            }
            u => u.to_string(),
        };
        // Secret variables arrive masked, set or not: name the order of precedence.
        let auth = if !v("grafana_user").is_empty() {
            format!(
                "grafana_token (bearer) if set, else user {} with grafana_password",
                v("grafana_user")
            )
        } else {
            format!(
                "grafana_token (bearer) if set, else admin_user/admin_password of {conf}/grafana.ini [security]"
            )
        };
        let ca = match v("grafana_ca_cert") {
            "" => "grafana.ini [server] cert_file".to_string(),
            c => c.to_string(),
        };
        let data = match v("grafana_data_dir") {
            "auto" | "" => {
                "the data dir (grafana.ini [paths] data, else /var/lib/grafana)".to_string()
            }
            d => d.to_string(),
        };
        let db = match v("grafana_db_copy") {
            "copy" => "grafana.db copied as a plain file (flagged)".to_string(),
            _ => "grafana.db: `sqlite3 -readonly DB '.backup grafana.db'` in a `mktemp -d` dir, `PRAGMA integrity_check`, -> grafana.db (no sqlite3 on the host: a plain copy, flagged)".to_string(),
        };
        let plain = if matches!(
            v("grafana_allow_plain_http_credentials")
                .to_ascii_lowercase()
                .as_str(),
            "true" | "yes" | "on" | "1"
        ) {
            "https checked against {ca}, or plain http (grafana_allow_plain_http_credentials)"
                .replace("{ca}", &ca)
        } else {
            format!("only over https checked against {ca}")
        };
        vec![
            format!("settings: read {conf}/grafana.ini ([server], [paths], [database], [security]; parsed by lsbackup)"),
            format!("select: GET /api/health (no credentials) at {url}, through the SSH connection; the first that answers"),
            format!("connect: GET /api/datasources as {auth}, {plain}"),
            "datasources, folders: GET /api/datasources, /api/folders -> api/datasources.json, api/folders.json".into(),
            format!("dashboards: GET /api/search?type=dash-db&limit={SEARCH_LIMIT}, then GET /api/dashboards/uid/<uid> -> api/dashboards/<uid>.json (pretty-printed)"),
            format!("database: {db}"),
            format!("data dir: copy {data} without the database"),
            format!("config: copy {conf}"),
            "cleanup: rm -rf the mktemp dir".into(),
            "first: removes /tmp/lsbackup-grafana.HOLDER.* dirs (root's, not symlinks) whose run's connection (HOLDER) is gone".into(),
        ]
    }

    async fn select(&self, h: &mut HostCtx<'_>) -> Result<Option<String>, StepError> {
        let ini = load_ini(h, "select").await?;
        let urls = urls(h.var("grafana_url"), &ini);
        let mut causes = Vec::new();
        for url in &urls {
            // No credentials go with the health check, so its TLS need not be verified: the
            // calls that carry them are (see connect).
            let tls = TlsSettings {
                verify: false,
                ..TlsSettings::default()
            };
            let api = h
                .http(url)?
                .tls(tls)
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(StepError::from)?;
            let t = Instant::now();
            let r = api.send(Method::GET, "/api/health", None).await;
            let status = r.as_ref().ok().map(|r| r.status.as_u16());
            h.record_call("select", &format!("GET {url}/api/health"), status, t);
            match r {
                Ok(resp) => {
                    if let Ok(health) = resp.json::<Health>() {
                        h.version("grafana", &health.version);
                    }
                    h.set_var(URL_VAR, url.clone());
                    return Ok(None);
                }
                Err(e @ (HttpError::Tunnel(_) | HttpError::Timeout { .. })) => {
                    causes.push(StepError::from(e).cause);
                }
                Err(e @ (HttpError::BadUrl { .. } | HttpError::BadPath { .. })) => {
                    return Err(e.into());
                }
                // Something answers there (not TLS, a broken exchange): connect will say what.
                Err(_) => {
                    h.set_var(URL_VAR, url.clone());
                    return Ok(None);
                }
            }
        }
        Err(StepError::api(format!(
            "no Grafana HTTP API answers at {} ({})",
            urls.join(" "),
            causes.join("; ")
        )))
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        h.step("leftovers");
        if let Err(e) = leftovers::sweep(h, "leftovers", LEFTOVERS).await {
            h.optional_failed("leftovers", &e);
        }
        h.step("settings");
        let ini = load_ini(h, "settings").await.at("settings")?;
        let data = match h.var("grafana_data_dir") {
            "auto" | "" => ini.data_dir(),
            d => d.to_string(),
        };
        let db = match ini.sqlite_path(&data) {
            Ok(p) => Some(p),
            Err(kind) => {
                h.note(&format!(
                    "Grafana's database is {kind}, not SQLite: not copied (back it up with its own component)"
                ));
                None
            }
        };

        h.step("connect");
        let url = match h.var(URL_VAR) {
            "" => urls(h.var("grafana_url"), &ini)
                .into_iter()
                .next()
                .unwrap_or_default(),
            u => u.to_string(),
        };
        match self.connect(h, &ini, &url).await {
            Ok((api, datasources)) => self.export(h, &api, &datasources).await,
            Err(e) => h.fail("connect", e),
        }

        if let Some(db) = &db
            && !h.is_cancelled()
            && let Err(e) = self.database(h, db).await
        {
            h.fail("database", e);
        }

        if !h.is_cancelled() {
            h.step("data dir");
            if let Err(e) = self.data_dir(h, &data, db.as_deref()).await {
                h.optional_failed("data dir", &e);
            }
        }

        h.step("config");
        let conf = h.var("grafana_config_dir").to_string();
        h.copy("config", &[conf], false).await.at("config")?;
        Ok(())
    }

    async fn cleanup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let work = h.var(WORK_VAR).to_string();
        if work.is_empty() || !valid_work_dir(&work) {
            return Ok(());
        }
        h.run_ok(
            "remove work dir",
            &Script::new("exec rm -rf -- \"$1\"").arg(work.as_str()),
            None,
            None,
        )
        .await
        .at("remove work dir")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_comments_and_quoting() {
        let ini = Ini::parse(
            "app_mode = production\n\
             ; a comment\n\
             # another = x\n\
             [server]\n\
             protocol = https\n\
             http_addr =\n\
             http_port = 3443 ; inline comment\n\
             cert_file = /etc/grafana/ssl/grafana.crt\n\
             [ security ]\n\
             admin_user = \"root\"\n\
             admin_password = \"\"\"p#ss;word \"\"\"\n\
             secret_key: `k;ey`\n\
             [paths]\n\
             data = data\n\
             [database]\n\
             path = /srv/grafana/g.db\n",
        );
        assert_eq!(ini.get("", "app_mode"), Some("production"));
        assert_eq!(ini.get("", "another"), None);
        assert_eq!(ini.get("server", "http_port"), Some("3443"));
        assert_eq!(ini.get("server", "http_addr"), None, "empty is unset");
        assert_eq!(ini.url(), "https://127.0.0.1:3443");
        assert_eq!(ini.get("security", "admin_user"), Some("root"));
        assert_eq!(ini.get("security", "admin_password"), Some("p#ss;word "));
        assert_eq!(ini.get("security", "secret_key"), Some("k;ey"));
        assert_eq!(ini.data_dir(), "/usr/share/grafana/data");
        assert_eq!(
            ini.sqlite_path(&ini.data_dir()).unwrap(),
            "/srv/grafana/g.db"
        );
    }

    #[test]
    fn ini_defaults_and_multiline_values() {
        let ini = Ini::parse(
            "[security]\nadmin_password = \"\"\"first\nsecond\"\"\"\n[server]\nhttp_addr = ::1\n",
        );
        assert_eq!(ini.get("security", "admin_password"), Some("first\nsecond"));
        assert_eq!(ini.url(), "http://[::1]:3000");
        let empty = Ini::parse("");
        assert_eq!(empty.url(), "http://127.0.0.1:3000");
        assert_eq!(empty.data_dir(), "/var/lib/grafana");
        assert_eq!(
            empty.sqlite_path("/var/lib/grafana/").unwrap(),
            "/var/lib/grafana/grafana.db"
        );
        let wild = Ini::parse(
            "[server]\nprotocol = h2\nhttp_addr = 0.0.0.0\n[database]\ntype = postgres\n",
        );
        assert_eq!(wild.url(), "https://127.0.0.1:3000");
        assert_eq!(wild.sqlite_path("/d"), Err("postgres".to_string()));
    }

    #[test]
    fn hostile_ini_values_stay_data() {
        // values are data: they reach the host only as quoted script arguments (Script::arg)
        let ini = Ini::parse(
            "[paths]\ndata = /var/lib/$(touch /tmp/x) ;c\n[database]\npath = \"a'b\nc\"\n",
        );
        assert_eq!(ini.data_dir(), "/var/lib/$(touch /tmp/x)");
        assert_eq!(
            ini.sqlite_path(&ini.data_dir()).unwrap(),
            "/var/lib/$(touch /tmp/x)/\"a'b"
        );
        // a URL with a user part is refused before any connection
        let at = Ini::parse("[server]\nhttp_addr = evil@127.0.0.1\n");
        assert!(Endpoint::parse(&at.url()).is_err());
    }

    #[test]
    fn urls_from_var_or_ini() {
        let ini = Ini::parse("[server]\nhttp_port = 3001\n");
        assert_eq!(urls("auto", &ini), ["http://127.0.0.1:3001"]);
        assert_eq!(
            urls(" https://a:1  http://b:2 ", &ini),
            ["https://a:1", "http://b:2"]
        );
    }

    #[test]
    fn uids_and_work_dirs_are_checked() {
        assert!(valid_uid("lsbackup-node"));
        assert!(valid_uid("aB_9-x"));
        for bad in ["", "..", "a/b", "a b", "x;rm", "ü"] {
            assert!(!valid_uid(bad), "{bad:?}");
        }
        assert!(valid_work_dir("/tmp/lsbackup-grafana.4242.Ab12Cd34"));
        for bad in [
            "/tmp/lsbackup-grafana.",
            "/tmp/lsbackup-grafana.Ab12Cd34",
            "/tmp/lsbackup-grafana.4242.Ab12Cd3",
            "/tmp/x/lsbackup-grafana.4242.Ab12Cd34",
            "/tmp/lsbackup-grafana.../../etc",
            "/tmp/lsbackup-grafana.ab cd ef",
            "/",
            "/tmp",
        ] {
            assert!(!valid_work_dir(bad), "{bad:?}");
        }
    }

    #[test]
    fn pretty_json_or_bad_data() {
        let p = pretty(br#"{"b":1,"a":[1,2]}"#).unwrap();
        let text = String::from_utf8(p).unwrap();
        assert!(text.lines().count() > 3, "{text}");
        assert!(
            text.find("\"b\"").unwrap() < text.find("\"a\"").unwrap(),
            "order kept"
        );
        assert_eq!(pretty(b"<html>").unwrap_err().kind, FailureKind::BadData);
    }

    #[test]
    fn describe_masks_nothing_it_was_not_given() {
        let vars: BTreeMap<String, String> = [
            ("grafana_url", "auto"),
            ("grafana_config_dir", "/etc/grafana"),
            ("grafana_token", "********"),
            ("grafana_ca_cert", ""),
            ("grafana_db_copy", "auto"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let lines = Grafana.describe(&vars).join("\n");
        assert!(
            lines.contains("as grafana_token (bearer) if set, else admin_user/admin_password of /etc/grafana/grafana.ini [security]"),
            "{lines}"
        );
        assert!(
            lines.contains("only over https checked against grafana.ini [server] cert_file"),
            "{lines}"
        );
        assert!(lines.contains("config: copy /etc/grafana"), "{lines}");
    }
}
