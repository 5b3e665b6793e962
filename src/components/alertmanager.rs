//! Alertmanager: its configuration file, the notification templates it loads and every other file
//! it references (credentials, certificates), the running configuration and version as the
//! server reports them (`GET /api/v2/status`), and the active silences (`GET /api/v2/silences`).
//!
//! LambdaStack runs Alertmanager on the `prometheus` hosts with /etc/prometheus/alertmanager.yml;
//! an inventory may also give it its own `alertmanager` group, whose hosts then come first. The
//! first reachable host where Alertmanager runs (an alertmanager process runs, or its API
//! answers) or is configured (the config file exists) is used.
//!
//! The API is reached from lsbackup through the host's SSH connection (a direct-tcpip channel to
//! `alertmanager_url` as the host sees it; TLS material read from the host, credentials never on
//! it). The config file is the one the running process was started with (`--config.file` on its
//! command line, read from `/proc/PID/cmdline` and parsed here; only a process run by root or
//! `alertmanager_service_user`: another user's program named `alertmanager` is noted and
//! ignored), else `alertmanager_config_file`.
//! Templates and `*_file` paths come from the configuration the server has loaded and from the
//! file on disk (relative to its directory); the YAML is parsed here, globs are expanded on the
//! host by a fixed script.
//!
//! The host needs nothing but `sh`, `cat`, `readlink` and GNU `tar`: no curl, no python.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::monitoring::{self, Api, Kind, Refs};
use super::{Native, NativeRef};
use crate::engine::{Failed, HostCtx, StepError};
use crate::shell::Script;

pub const SPEC: &str = r#"
name: alertmanager
description: Alertmanager config, notification templates, running config and silences
groups: [alertmanager, prometheus]
hosts: first
vars:
  # where the Alertmanager HTTP API answers, as seen from its host (lsbackup connects to it
  # through the host's SSH connection); may include a --web.route-prefix path
  alertmanager_url: http://localhost:9093
  # https: the CA that signs the server's certificate, and a client certificate and key when
  # the server asks for one (PEM paths ON THE HOST; read by lsbackup, used in lsbackup)
  alertmanager_ca_cert: ""
  alertmanager_client_cert: ""
  alertmanager_client_key: ""
  # https: check the server's certificate against alertmanager_ca_cert (false: accept any; no
  # credentials are sent then)
  alertmanager_tls_verify: "true"
  # basic auth (web.config.file basic_auth_users); https with verification only. The password
  # is masked in plan, logs and manifest and never reaches the host
  alertmanager_user: ""
  alertmanager_password: ""
  # the config file when no running alertmanager process names one with --config.file
  alertmanager_config_file: /etc/prometheus/alertmanager.yml
  # the user Alertmanager runs as (Debian's and LambdaStack's: prometheus): the config file named
  # on the command line of an alertmanager process run by root or this user only is believed
  # (any local user can start a program named alertmanager)
  alertmanager_service_user: prometheus
not_covered:
  - the notification log (nflog) in the data dir (--storage.path); silences are exported as JSON
  - other members of an Alertmanager cluster (their config is expected to be the same)
"#;

pub fn make() -> NativeRef {
    NativeRef(std::sync::Arc::new(Alertmanager))
}

struct Alertmanager;

/// The variable naming the user Alertmanager runs as (whose processes are believed).
const SERVICE_USER: &str = "alertmanager_service_user";

/// Executable names of an Alertmanager process (Debian ships `prometheus-alertmanager`).
const EXES: &[&str] = &["alertmanager", "prometheus-alertmanager"];

const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The lists of paths in an Alertmanager config: `templates` (globs).
const LISTS: &[&str] = &["templates"];

/// The version from a local binary when the API does not answer: `alertmanager, version X ...`.
const VERSION: &str = r#"for b in alertmanager prometheus-alertmanager; do
  if command -v "$b" >/dev/null 2>&1; then exec "$b" --version 2>&1; fi
done
exit 0"#;

#[derive(Debug, Default, Deserialize)]
struct Status {
    #[serde(default)]
    config: StatusConfig,
    #[serde(default, rename = "versionInfo")]
    version_info: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct StatusConfig {
    #[serde(default)]
    original: String,
}

/// The version in `alertmanager --version` output.
pub(crate) fn parse_version(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix("alertmanager, version ")
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    })
}

/// The command line options of a running Alertmanager that name its files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) config: Option<String>,
    pub(crate) web_config: Option<String>,
    pub(crate) listen: Option<String>,
}

/// Parse `/proc/PID/cmdline` (NUL-separated): `--name=value`, `--name value`, one dash or two;
/// the last one wins, as in kingpin.
pub(crate) fn parse_cmdline(cmdline: &[u8]) -> Options {
    let args = monitoring::split_nul(cmdline);
    let mut o = Options::default();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        let Some(opt) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (opt, None),
        };
        let slot = match name {
            "config.file" => &mut o.config,
            "web.config.file" => &mut o.web_config,
            "web.listen-address" => &mut o.listen,
            _ => continue,
        };
        let value = match value {
            Some(v) => v,
            None if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            None => continue,
        };
        *slot = Some(value);
    }
    o
}

/// The port of a URL (`http://h:9093/x` → 9093), 9093 when it names none.
pub(crate) fn url_port(url: &str) -> u16 {
    crate::http::Endpoint::parse(url)
        .ok()
        .filter(|_| {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            let authority = rest.split('/').next().unwrap_or("");
            authority
                .rsplit_once(']')
                .map_or(authority, |(_, p)| p)
                .contains(':')
        })
        .map_or(9093, |e| e.port)
}

#[async_trait::async_trait]
impl Native for Alertmanager {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let get = |n: &str| vars.get(n).map(String::as_str).unwrap_or("");
        let url = get("alertmanager_url").trim_end_matches('/');
        let mut v = vec![format!(
            "select alertmanager host: an alertmanager process runs, or {} exists, or GET {url}/-/ready answers",
            get("alertmanager_config_file")
        )];
        v.extend(monitoring::describe_api(vars, "alertmanager"));
        v.extend([
            format!("version alertmanager: GET {url}/api/v2/status (versionInfo), else `alertmanager --version` on the host"),
            format!("running config: GET {url}/api/v2/status -> status.json"),
            format!("silences: GET {url}/api/v2/silences -> silences.json [optional]"),
            format!(
                "files: the config file of the running alertmanager (--config.file in /proc/PID/cmdline; else {}), --web.config.file, and what they and the loaded configuration reference: templates (globs expanded on the host), every *_file key",
                get("alertmanager_config_file")
            ),
            "config: copy those files".to_string(),
        ]);
        v
    }

    fn selects(&self) -> Option<&'static str> {
        Some("alertmanager host")
    }

    async fn select(&self, h: &mut HostCtx<'_>) -> Result<Option<String>, StepError> {
        if !monitoring::processes(h, "select", EXES, SERVICE_USER)
            .await?
            .is_empty()
        {
            return Ok(None);
        }
        let cfg = h.var("alertmanager_config_file").trim().to_string();
        if !cfg.is_empty()
            && monitoring::first_existing(h, "select", Kind::File, std::slice::from_ref(&cfg))
                .await?
                .is_some()
        {
            return Ok(None);
        }
        // the API of an alertmanager running elsewhere (a container) but reached from here
        if let Ok(api) = Api::from_vars(h, "select", "alertmanager", "Alertmanager").await
            && api
                .get(h, "select", "/-/ready", Duration::from_secs(10))
                .await
                .is_ok()
        {
            return Ok(None);
        }
        Ok(Some("not alertmanager host".to_string()))
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        h.step("running config");
        let api = Api::from_vars(h, "running config", "alertmanager", "Alertmanager").await;
        let mut status = Status::default();
        let mut version = None;
        match &api {
            Ok(api) => match api
                .get(h, "running config", "/api/v2/status", API_TIMEOUT)
                .await
            {
                Ok(r) => {
                    match serde_json::from_slice::<Status>(&r.body) {
                        Ok(s) => status = s,
                        Err(e) => h.note(&format!("GET /api/v2/status: cannot parse: {e}")),
                    }
                    version = status
                        .version_info
                        .get("version")
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    let mut body = r.body.to_vec();
                    if !body.ends_with(b"\n") {
                        body.push(b'\n');
                    }
                    if let Err(e) = h.add_bytes("status.json", &body).await {
                        h.fail("running config", e);
                    }
                }
                Err(e) => h.fail("running config", e),
            },
            Err(e) => h.fail("running config", e.clone()),
        }
        if version.is_none()
            && let Ok(out) = h
                .run(
                    "version",
                    &Script::new(VERSION),
                    None,
                    Some("alertmanager --version"),
                )
                .await
        {
            version = parse_version(&String::from_utf8_lossy(&out.stdout));
        }
        if let Some(v) = version {
            h.version("alertmanager", &v);
        }

        h.step("silences");
        let silences = match &api {
            Ok(api) => {
                api.get(h, "silences", "/api/v2/silences", API_TIMEOUT)
                    .await
            }
            Err(e) => Err(StepError::skipped(format!("not run: {}", e.cause))),
        };
        match silences {
            Ok(r) => {
                let mut body = r.body.to_vec();
                if !body.ends_with(b"\n") {
                    body.push(b'\n');
                }
                if let Err(e) = h.add_bytes("silences.json", &body).await {
                    h.optional_failed("silences", &e);
                }
            }
            Err(e) => h.optional_failed("silences", &e),
        }

        h.step("files");
        match self.files(h, &status.config.original).await {
            Ok(paths) => {
                h.step("config");
                if let Err(e) = h.copy("config", &paths, false).await {
                    h.fail("config", e);
                }
            }
            Err(e) => h.fail("files", e),
        }
        Ok(())
    }
}

impl Alertmanager {
    /// The config file (and web config file) of the running process, and what they and the
    /// loaded configuration `loaded` reference.
    async fn files(&self, h: &mut HostCtx<'_>, loaded: &str) -> Result<Vec<String>, StepError> {
        const STEP: &str = "files";
        let default = h.var("alertmanager_config_file").trim().to_string();
        let port = url_port(h.var("alertmanager_url"));
        // with several processes, the one listening on the port of alertmanager_url
        let mut chosen: Option<(String, Option<String>, String)> = None;
        let mut first = None;
        let mut default_exists = None;
        for p in monitoring::processes(h, STEP, EXES, SERVICE_USER).await? {
            let Some(cmdline) = h
                .read_file(STEP, &format!("/proc/{}/cmdline", p.pid), None)
                .await?
            else {
                continue; // exited meanwhile
            };
            let o = parse_cmdline(&cmdline);
            let cwd = if p.cwd.starts_with('/') {
                p.cwd.clone()
            } else {
                "/".into()
            };
            let cfg = match o.config {
                Some(c) if !c.is_empty() => c,
                _ => {
                    if default_exists.is_none() {
                        let d = std::slice::from_ref(&default);
                        default_exists = Some(
                            !default.is_empty()
                                && monitoring::first_existing(h, STEP, Kind::File, d)
                                    .await?
                                    .is_some(),
                        );
                    }
                    if default_exists == Some(true) {
                        default.clone()
                    } else {
                        "alertmanager.yml".to_string()
                    }
                }
            };
            let cfg = monitoring::absolute(&cwd, &cfg);
            let web = o
                .web_config
                .filter(|w| !w.is_empty())
                .map(|w| monitoring::absolute(&cwd, &w));
            let listen = o.listen.unwrap_or_else(|| ":9093".into());
            let this = (cfg, web, cwd);
            if listen.ends_with(&format!(":{port}")) {
                chosen = Some(this);
                break;
            }
            if first.is_none() {
                first = Some(this);
            }
        }
        let (cfg, web, cwd) = chosen
            .or(first)
            .unwrap_or_else(|| (monitoring::absolute("/", &default), None, "/".into()));

        let mut paths = vec![cfg.clone()];
        let mut refs = Refs::default();
        // the loaded configuration (paths joined with the config dir, relative to the cwd)
        if !loaded.is_empty() {
            match monitoring::yaml_refs(loaded, LISTS, &cwd) {
                Ok(r) => refs.extend(r),
                Err(e) => h.note(&format!("the loaded configuration does not parse: {e}")),
            }
        }
        self.file_refs(h, &cfg, &mut refs).await?;
        if let Some(w) = web {
            paths.push(w.clone());
            self.file_refs(h, &w, &mut refs).await?;
        }
        paths.extend(refs.files);
        let patterns = monitoring::unique(refs.patterns);
        let (found, missing) = monitoring::expand_globs(h, STEP, &patterns).await?;
        paths.extend(found);
        paths.extend(missing);
        Ok(monitoring::unique(paths))
    }

    /// What the YAML file `path` on the host references (relative to its directory).
    async fn file_refs(
        &self,
        h: &mut HostCtx<'_>,
        path: &str,
        refs: &mut Refs,
    ) -> Result<(), StepError> {
        if let Some(text) = h.read_file("files", path, None).await? {
            let text = String::from_utf8_lossy(&text);
            match monitoring::yaml_refs(&text, LISTS, &monitoring::dirname(path)) {
                Ok(r) => refs.extend(r),
                Err(e) => h.note(&format!("{path} does not parse as YAML: {e}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_options_are_data() {
        let o = parse_cmdline(
            b"/usr/bin/prometheus-alertmanager\0--config.file=/etc/am.yml\0--web.listen-address\x00127.0.0.1:9093\0-web.config.file=$(touch x)\0",
        );
        assert_eq!(o.config.as_deref(), Some("/etc/am.yml"));
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:9093"));
        assert_eq!(o.web_config.as_deref(), Some("$(touch x)"));
        // the last one wins; a value with newlines and '=' is one value; a flag at the end
        // without its value is ignored
        let o = parse_cmdline(
            b"am\0--config.file=a\0--config.file\0b\nc=d\0--storage.path=/x\0--web.config.file",
        );
        assert_eq!(o.config.as_deref(), Some("b\nc=d"));
        assert_eq!(o.web_config, None);
        assert_eq!(parse_cmdline(b"").config, None);
        assert_eq!(parse_cmdline(b"am\0config.file=x\0").config, None);
    }

    #[test]
    fn versions_and_ports() {
        assert_eq!(
            parse_version(
                "alertmanager, version 0.25.0 (branch: debian/sid, revision: 0.25.0-1)\n  build user: x\n"
            ),
            Some("0.25.0".into())
        );
        assert_eq!(parse_version("sh: 1: alertmanager: not found"), None);
        assert_eq!(url_port("http://localhost:9093"), 9093);
        assert_eq!(url_port("http://localhost:19093/am"), 19093);
        assert_eq!(url_port("http://localhost/am"), 9093);
        assert_eq!(url_port("https://[::1]:9443"), 9443);
        assert_eq!(url_port("https://[::1]"), 9093);
        assert_eq!(url_port("not a url"), 9093);
    }

    #[test]
    fn spec_parses_as_native() {
        let s = super::super::ComponentSpec::from_yaml_with("alertmanager.rs", SPEC, Some(make()))
            .unwrap();
        assert_eq!(s.groups, ["alertmanager", "prometheus"]);
        assert!(s.steps.is_empty() && s.requires.is_empty() && s.select.is_none());
        assert_eq!(s.vars["alertmanager_url"], "http://localhost:9093");
        assert_eq!(
            s.vars["alertmanager_config_file"],
            "/etc/prometheus/alertmanager.yml"
        );
        assert!(super::super::is_secret_var("alertmanager_password"));
    }
}
