//! Prometheus: a TSDB snapshot through the admin API plus the configuration and every file it
//! references, taken from the first reachable host of the `prometheus` group.
//!
//! Everything is learnt from the running server, not guessed, through its HTTP API reached from
//! lsbackup over the host's SSH connection (a direct-tcpip channel to `prometheus_url` as the
//! host sees it; TLS material read from the host, credentials never on it):
//!
//! 1. `GET /api/v1/status/buildinfo`: the version.
//! 2. `GET /api/v1/status/flags`: the data dir (`storage.tsdb.path`), the config file
//!    (`config.file`) and the web config file (`web.config.file`). Relative paths there are
//!    relative to the Prometheus process's working directory: a fixed script lists the
//!    `prometheus` processes with their cwd and owner, the choice is made here among those run
//!    by root or `prometheus_service_user` (another user's program named `prometheus` is noted
//!    and ignored: it would choose what lsbackup reads as root).
//! 3. `POST /api/v1/admin/tsdb/snapshot` (within `prometheus_snapshot_timeout`): hard links the
//!    blocks (and writes the head) into `<data dir>/snapshots/<name>`; that directory is copied
//!    and removed by the cleanup whatever happened. Needs `--web.enable-admin-api`; without it
//!    the step says so in one line.
//! 4. The config file, and what it, the loaded configuration (`GET /api/v1/status/config`) and
//!    the web config file reference: `rule_files`, file_sd `files` (globs, expanded on the host
//!    by a fixed script) and every `*_file` key (credentials, certificates). The YAML is parsed
//!    here. When the server does not answer, `prometheus_config_file` and what it references are
//!    taken.
//!
//! The host needs nothing but `sh`, `cat`, `readlink`, GNU `tar` and `rm`: no curl, no python.

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde::Deserialize;

use super::monitoring::{self, Api, Kind, Refs};
use super::{Native, NativeRef, leftovers};
use crate::archive::FailureKind;
use crate::engine::{At, Failed, HostCtx, StepError};
use crate::shell::Script;

pub const SPEC: &str = r#"
name: prometheus
description: Prometheus TSDB snapshot (admin API), config, rule files and file_sd targets
groups: [prometheus]
hosts: first
vars:
  # where the Prometheus HTTP API answers, as seen from the Prometheus host (lsbackup connects
  # to it through the host's SSH connection); may include a --web.route-prefix path
  prometheus_url: http://localhost:9090
  # https: the CA that signs the server's certificate, and a client certificate and key when
  # the server asks for one (PEM paths ON THE HOST; read by lsbackup, used in lsbackup)
  prometheus_ca_cert: ""
  prometheus_client_cert: ""
  prometheus_client_key: ""
  # https: check the server's certificate against prometheus_ca_cert (false: accept any; no
  # credentials are sent then)
  prometheus_tls_verify: "true"
  # basic auth (web.config.file basic_auth_users); https with verification only. The password
  # is masked in plan, logs and manifest and never reaches the host
  prometheus_user: ""
  prometheus_password: ""
  # seconds the snapshot may take (the head block is written to disk during it)
  prometheus_snapshot_timeout: "600"
  # used only when the server does not answer (normally learnt from the server)
  prometheus_config_file: /etc/prometheus/prometheus.yml
  # the user Prometheus runs as: a relative data dir or config file is looked for in the working
  # directory of a prometheus process run by root or this user only (any local user can start
  # a program named prometheus)
  prometheus_service_user: prometheus
not_covered:
  - the write-ahead log (samples of the last minutes not yet in a block are in the snapshot's head block; nothing after the snapshot)
  - remote-write/remote-read storage and other Prometheus servers (only the first reachable host of the group)
  - console templates and libraries shipped with the package (web.console.*)
"#;

pub fn make() -> NativeRef {
    NativeRef(std::sync::Arc::new(Prometheus))
}

struct Prometheus;

/// Kept for the cleanup: the snapshot directory lsbackup derived (not a declared variable, so
/// no inventory or `--set` can give it).
const SNAPSHOT_DIR: &str = "prometheus_snapshot_dir";

/// The variable naming the user Prometheus runs as (whose processes are believed).
const SERVICE_USER: &str = "prometheus_service_user";

/// Executable names of a Prometheus server process.
const EXES: &[&str] = &["prometheus"];

const API_TIMEOUT: Duration = Duration::from_secs(30);

/// `{"status": "success", "data": ...}`, Prometheus' answer envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    status: String,
    data: Option<T>,
    #[serde(default)]
    error: String,
}

#[derive(Debug, Deserialize)]
struct BuildInfo {
    #[serde(default)]
    version: String,
}

#[derive(Debug, Deserialize)]
struct Snapshot {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct LoadedConfig {
    #[serde(default)]
    yaml: String,
}

/// The flags the component uses, from `GET /api/v1/status/flags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flags {
    pub(crate) data: String,
    pub(crate) config: String,
    pub(crate) web_config: String,
}

/// Parse the flags answer. Values are kept as text: they are only ever used as paths (data).
pub(crate) fn parse_flags(body: &[u8]) -> Result<Flags, String> {
    let env: Envelope<BTreeMap<String, serde_json::Value>> =
        serde_json::from_slice(body).map_err(|e| format!("cannot parse the flags: {e}"))?;
    let data = env
        .data
        .ok_or_else(|| format!("no flags in the answer (status {:?})", env.status))?;
    // every flag is a string; anything else is no value
    let get = |k: &str| {
        data.get(k)
            .and_then(|v| v.as_str())
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Ok(Flags {
        data: get("storage.tsdb.path"),
        config: get("config.file"),
        web_config: get("web.config.file"),
    })
}

/// A snapshot name as the API makes it: `20261205T130000Z-1a2b3c4d5e6f7a8b`.
pub(crate) fn valid_snapshot_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &b[15..17] == b"Z-"
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// `<data>/snapshots/<name>` for an absolute data dir, or `None` when the name is not a snapshot
/// name (a server could answer anything).
pub(crate) fn snapshot_dir(data: &str, name: &str) -> Option<String> {
    if !valid_snapshot_name(name) || !data.starts_with('/') {
        return None;
    }
    Some(monitoring::absolute(data, &format!("snapshots/{name}")))
}

/// Whether `path` is one lsbackup may remove: absolute, normalized (no `.`, `..` or empty
/// parts), ending in `snapshots/<snapshot name>`.
pub(crate) fn is_snapshot_dir(path: &str) -> bool {
    if !path.starts_with('/') || monitoring::absolute("/", path) != path {
        return false;
    }
    let mut parts = path.rsplit('/');
    let name = parts.next().unwrap_or("");
    parts.next() == Some("snapshots") && valid_snapshot_name(name)
}

/// Removes the snapshot directory, if it is still there.
const REMOVE: &str = r#"if [ -d "$1" ]; then rm -rf -- "$1"; fi"#;

/// Kept for the cleanup: the marker made beside the snapshot.
const MARKER_VAR: &str = "prometheus_snapshot_marker";

/// `$1` = the snapshots dir, `$2` = the snapshot's name: makes the marker directory
/// `.lsbackup-HOLDER-NAME` beside it (`mkdir` never follows a symlink a local user put there) and
/// prints its path. A later run removes a snapshot so marked once HOLDER, the process holding
/// this run's connection, is gone (see [`leftovers`]).
const MARK: &str = concat!(
    leftovers::holder_sh!(),
    r#"m="$1/.lsbackup-$lsb_holder-$2"
mkdir -m 700 -- "$m" && printf '%s\n' "$m""#
);

/// The marker of a snapshot a run made (`.lsbackup-HOLDER-NAME`): the holder and the snapshot.
fn marker(name: &str) -> Option<leftovers::Found> {
    let (pid, snap) = name.strip_prefix(".lsbackup-")?.split_once('-')?;
    if pid.is_empty() || pid.len() > 10 || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !valid_snapshot_name(snap) {
        return None;
    }
    Some(leftovers::Found {
        holder: pid.parse().ok()?,
        marks: Some((snap.to_string(), 'd')),
    })
}

/// Whether `path` is the marker of the snapshot directory `dir`.
fn is_marker_of(path: &str, dir: &str) -> bool {
    let (Some((mp, mn)), Some((dp, dn))) = (path.rsplit_once('/'), dir.rsplit_once('/')) else {
        return false;
    };
    mp == dp && marker(mn).is_some_and(|f| f.marks.is_some_and(|(n, _)| n == dn))
}

#[async_trait::async_trait]
impl Native for Prometheus {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let get = |n: &str| vars.get(n).map(String::as_str).unwrap_or("");
        let url = get("prometheus_url").trim_end_matches('/');
        let mut v = monitoring::describe_api(vars, "prometheus");
        v.extend([
            format!("version prometheus: GET {url}/api/v1/status/buildinfo"),
            format!(
                "snapshot: GET {url}/api/v1/status/flags (storage.tsdb.path, config.file, web.config.file), then POST {url}/api/v1/admin/tsdb/snapshot within {}s (needs --web.enable-admin-api); a relative data dir is found in the working directory of the prometheus process",
                get("prometheus_snapshot_timeout")
            ),
            "snapshot data: copy <storage.tsdb.path>/snapshots/<name>".to_string(),
            format!(
                "config files: config.file (or {} when the server does not answer), web.config.file, and what they and GET {url}/api/v1/status/config reference: rule_files, file_sd files (globs expanded on the host), every *_file key",
                get("prometheus_config_file")
            ),
            "config: copy those files".to_string(),
            "leftovers: mkdir <storage.tsdb.path>/snapshots/.lsbackup-HOLDER-<name> (marks the snapshot as this run's), then removes the snapshots (and markers) that earlier runs marked and whose connection (HOLDER) is gone".to_string(),
            "cleanup remove snapshot: rm -rf -- <storage.tsdb.path>/snapshots/<name> (only a directory of that form, whatever happened) and its marker".to_string(),
        ]);
        v
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        h.step("snapshot");
        // The API settings and the server's flags: what both steps start from.
        let live: Result<(Api, Flags), StepError> =
            match Api::from_vars(h, "snapshot", "prometheus", "Prometheus").await {
                Ok(api) => {
                    let buildinfo = api
                        .get(
                            h,
                            "version",
                            "/api/v1/status/buildinfo",
                            Duration::from_secs(10),
                        )
                        .await;
                    if let Ok(r) = buildinfo
                        && let Ok(b) = serde_json::from_slice::<Envelope<BuildInfo>>(&r.body)
                        && let Some(b) = b.data
                    {
                        h.version("prometheus", &b.version);
                    }
                    match api
                        .get(h, "snapshot", "/api/v1/status/flags", API_TIMEOUT)
                        .await
                    {
                        Ok(r) => match parse_flags(&r.body) {
                            Ok(f) => Ok((api, f)),
                            Err(e) => Err(StepError::bad_data(format!(
                                "Prometheus at {}: {e}",
                                api.url
                            ))),
                        },
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };

        match &live {
            Ok((api, flags)) => match self.snapshot(h, api, flags).await {
                Ok(dir) => {
                    h.step("snapshot data");
                    if let Err(e) = h.copy("snapshot data", &[dir], false).await {
                        h.fail("snapshot data", e);
                    }
                }
                Err(e) => h.fail("snapshot", e),
            },
            Err(e) => h.fail("snapshot", e.clone()),
        }

        h.step("config files");
        // when the server does not answer (the snapshot step said so), the config on disk
        match self.config_files(h, live.as_ref().ok()).await {
            Ok(paths) => {
                h.step("config");
                if let Err(e) = h.copy("config", &paths, false).await {
                    h.fail("config", e);
                }
            }
            Err(e) => h.fail("config files", e),
        }
        Ok(())
    }

    async fn cleanup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        const STEP: &str = "remove snapshot";
        let dir = h.var(SNAPSHOT_DIR).to_string();
        if dir.is_empty() {
            return Ok(());
        }
        if !is_snapshot_dir(&dir) {
            return Err(StepError::bad_data(format!(
                "refusing to remove {dir:?}: not a Prometheus snapshot directory"
            ))
            .at(STEP));
        }
        h.step(STEP);
        let shown = format!("rm -rf -- {}", crate::shell::quote(&dir));
        h.run_ok(
            STEP,
            &Script::new(REMOVE).arg(dir.as_str()),
            None,
            Some(&shown),
        )
        .await
        .at(STEP)?;
        h.set_var(SNAPSHOT_DIR, "");
        let mark = h.var(MARKER_VAR).to_string();
        if is_marker_of(&mark, &dir) {
            let shown = format!("rm -rf -- {}", crate::shell::quote(&mark));
            h.run_ok(STEP, &Script::new(REMOVE).arg(mark), None, Some(&shown))
                .await
                .at(STEP)?;
            h.set_var(MARKER_VAR, "");
        }
        Ok(())
    }
}

impl Prometheus {
    /// Take the snapshot and find its directory on this host (kept for the cleanup).
    async fn snapshot(
        &self,
        h: &mut HostCtx<'_>,
        api: &Api,
        flags: &Flags,
    ) -> Result<String, StepError> {
        let url = &api.url;
        let data = &flags.data;
        if data.is_empty() {
            return Err(StepError::bad_data(format!(
                "Prometheus at {url} reports no storage.tsdb.path"
            )));
        }
        let secs = h.var("prometheus_snapshot_timeout").trim().to_string();
        let timeout = secs
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                StepError::config(format!(
                    "prometheus_snapshot_timeout must be a number of seconds, not {secs:?}"
                ))
            })?;
        const PATH: &str = "/api/v1/admin/tsdb/snapshot";
        let resp = match api.send(h, "snapshot", Method::POST, PATH, timeout).await {
            Ok(r) => r,
            Err(crate::http::HttpError::Timeout { .. }) => {
                return Err(StepError::new(
                    FailureKind::Timeout,
                    format!(
                        "the snapshot did not complete within {secs}s (prometheus_snapshot_timeout); Prometheus may still finish it in {}/snapshots: remove it there",
                        data.trim_end_matches('/')
                    ),
                ));
            }
            Err(e) => return Err(api.error(e)),
        };
        let body = String::from_utf8_lossy(&resp.body);
        if body.contains("admin APIs disabled") {
            return Err(StepError::config(format!(
                "the Prometheus admin API is disabled at {url}: start Prometheus with --web.enable-admin-api"
            )));
        }
        if resp.status.as_u16() == 404 {
            return Err(StepError::config(format!(
                "{}{PATH}: 404 Not Found: start Prometheus with --web.enable-admin-api (and check prometheus_url includes any --web.route-prefix)",
                url.trim_end_matches('/')
            )));
        }
        let parsed = serde_json::from_slice::<Envelope<Snapshot>>(&resp.body).ok();
        let name = parsed
            .as_ref()
            .and_then(|e| e.data.as_ref())
            .map(|d| d.name.clone())
            .unwrap_or_default();
        if !resp.status.is_success() || name.is_empty() {
            let err = parsed
                .map(|e| e.error)
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| body.chars().take(300).collect());
            return Err(StepError::api(format!(
                "snapshot failed (HTTP {}): {err}",
                resp.status.as_u16()
            )));
        }
        if !valid_snapshot_name(&name) {
            return Err(StepError::bad_data(format!(
                "Prometheus at {url} named its snapshot {name:?}, which is not a snapshot name"
            )));
        }

        // Where it is: <data>/snapshots/<name>, a relative data dir being relative to the
        // working directory of the Prometheus process.
        let candidates: Vec<String> = if data.starts_with('/') {
            snapshot_dir(data, &name).into_iter().collect()
        } else {
            monitoring::processes(h, "snapshot", EXES, SERVICE_USER)
                .await?
                .iter()
                .filter(|p| p.cwd.starts_with('/'))
                .filter_map(|p| snapshot_dir(&monitoring::absolute(&p.cwd, data), &name))
                .collect()
        };
        if data.starts_with('/')
            && let Some(d) = candidates.first()
        {
            // kept at once: an interrupt from here on still has the cleanup remove it
            h.set_var(SNAPSHOT_DIR, d.clone());
        }
        let found = monitoring::first_existing(h, "snapshot", Kind::Dir, &candidates).await?;
        match found {
            Some(dir) if is_snapshot_dir(&dir) => {
                h.set_var(SNAPSHOT_DIR, dir.clone());
                self.mark(h, &dir, &name).await;
                Ok(dir)
            }
            _ => {
                h.set_var(SNAPSHOT_DIR, "");
                let shown = candidates
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("{}/snapshots/{name}", data.trim_end_matches('/')));
                Err(StepError::bad_data(format!(
                    "snapshot {name} was taken but {shown} is not on this host (does {url} point at a Prometheus on another host?)"
                )))
            }
        }
    }

    /// Mark the snapshot as this run's, then remove the snapshots earlier runs marked and left
    /// (their connection is gone). Neither failing fails the backup.
    async fn mark(&self, h: &mut HostCtx<'_>, dir: &str, name: &str) {
        let Some((snapshots, _)) = dir.rsplit_once('/') else {
            return;
        };
        let shown = format!(
            "mkdir -m 700 {}/.lsbackup-HOLDER-{name}",
            crate::shell::quote(snapshots)
        );
        let script = Script::new(MARK).arg(snapshots).arg(name);
        match h.run_ok("leftovers", &script, None, Some(&shown)).await {
            Ok(out) => {
                let m = out.stdout_text();
                if is_marker_of(&m, dir) {
                    h.set_var(MARKER_VAR, m);
                }
            }
            Err(e) => h.optional_failed("leftovers", &e),
        }
        let kinds = [leftovers::Kind {
            dir: snapshots,
            glob: ".lsbackup-*",
            file_type: 'd',
            parse: marker,
        }];
        if let Err(e) = leftovers::sweep(h, "leftovers", &kinds).await {
            h.optional_failed("leftovers", &e);
        }
    }

    /// The config file, the web config file and every file they (and the loaded configuration)
    /// reference, globs expanded; patterns that match nothing are kept (the copy notes them).
    async fn config_files(
        &self,
        h: &mut HostCtx<'_>,
        live: Option<&(Api, Flags)>,
    ) -> Result<Vec<String>, StepError> {
        const STEP: &str = "config files";
        let (cfg, web) = match live {
            Some((api, flags)) => {
                if flags.config.is_empty() {
                    return Err(StepError::bad_data(format!(
                        "Prometheus at {} reports no config.file",
                        api.url
                    )));
                }
                (flags.config.clone(), flags.web_config.clone())
            }
            // the server does not answer (the snapshot step reports it)
            None => (
                h.var("prometheus_config_file").trim().to_string(),
                String::new(),
            ),
        };
        // relative paths are relative to the Prometheus process's working directory
        let base = if cfg.starts_with('/') {
            "/".to_string()
        } else {
            let procs = monitoring::processes(h, STEP, EXES, SERVICE_USER).await?;
            let cands: Vec<(String, String)> = procs
                .iter()
                .filter(|p| p.cwd.starts_with('/'))
                .map(|p| (monitoring::absolute(&p.cwd, &cfg), p.cwd.clone()))
                .collect();
            let paths: Vec<String> = cands.iter().map(|(p, _)| p.clone()).collect();
            let found = monitoring::first_existing(h, STEP, Kind::File, &paths).await?;
            match found.and_then(|f| cands.into_iter().find(|(p, _)| *p == f)) {
                Some((_, cwd)) => cwd,
                None => {
                    return Err(StepError::config(format!(
                        "config.file {cfg} is relative and no Prometheus process on this host has it in its working directory"
                    )));
                }
            }
        };
        let lists = ["rule_files", "files"];
        let file = monitoring::absolute(&base, &cfg);
        let mut paths = vec![file.clone()];
        let mut refs = Refs::default();
        if let Some((api, _)) = live {
            match api.get(h, STEP, "/api/v1/status/config", API_TIMEOUT).await {
                Ok(r) => {
                    let yaml = serde_json::from_slice::<Envelope<LoadedConfig>>(&r.body)
                        .ok()
                        .and_then(|e| e.data)
                        .map(|d| d.yaml)
                        .unwrap_or_default();
                    match monitoring::yaml_refs(&yaml, &lists, &base) {
                        Ok(r) => refs.extend(r),
                        Err(e) => h.note(&format!("the loaded configuration does not parse: {e}")),
                    }
                }
                Err(e) => h.note(&format!(
                    "the loaded configuration was not read: {}",
                    e.cause
                )),
            }
        }
        self.file_refs(h, &file, &lists, &mut refs).await?;
        if !web.is_empty() {
            let w = monitoring::absolute(&base, &web);
            paths.push(w.clone());
            self.file_refs(h, &w, &lists, &mut refs).await?;
        }
        paths.extend(refs.files);
        let patterns = monitoring::unique(refs.patterns);
        let (found, missing) = monitoring::expand_globs(h, STEP, &patterns).await?;
        paths.extend(found);
        paths.extend(missing);
        Ok(monitoring::unique(paths))
    }

    /// What the YAML file `path` on the host references (relative to its directory); nothing
    /// when it does not exist (the copy notes it), a note when it does not parse.
    async fn file_refs(
        &self,
        h: &mut HostCtx<'_>,
        path: &str,
        lists: &[&str],
        refs: &mut Refs,
    ) -> Result<(), StepError> {
        if let Some(text) = h.read_file("config files", path, None).await? {
            let text = String::from_utf8_lossy(&text);
            match monitoring::yaml_refs(&text, lists, &monitoring::dirname(path)) {
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
    fn markers_name_a_snapshot_beside_them() {
        let n = "20261205T130000Z-1a2b3c4d5e6f7a8b";
        let m = marker(&format!(".lsbackup-42-{n}")).unwrap();
        assert_eq!(m.holder, 42);
        assert_eq!(m.marks, Some((n.to_string(), 'd')));
        for bad in [
            format!(".lsbackup--{n}"),
            format!(".lsbackup-4x-{n}"),
            format!("lsbackup-42-{n}"),
            ".lsbackup-42-../etc".to_string(),
            ".lsbackup-42-latest".to_string(),
        ] {
            assert!(marker(&bad).is_none(), "{bad:?}");
        }
        let d = format!("/data/snapshots/{n}");
        assert!(is_marker_of(
            &format!("/data/snapshots/.lsbackup-42-{n}"),
            &d
        ));
        assert!(!is_marker_of(
            &format!("/other/snapshots/.lsbackup-42-{n}"),
            &d
        ));
        assert!(!is_marker_of("", &d));
    }

    #[test]
    fn flags_are_data() {
        let body = br#"{"status":"success","data":{"config.file":"$(touch /tmp/x)","storage.tsdb.path":"data\n; rm -rf /","web.config.file":"","log.level":"info"}}"#;
        let f = parse_flags(body).unwrap();
        assert_eq!(f.config, "$(touch /tmp/x)");
        assert_eq!(f.data, "data\n; rm -rf /");
        assert_eq!(f.web_config, "");
        let f = parse_flags(br#"{"status":"success","data":{}}"#).unwrap();
        assert_eq!(f.data, "");
        assert!(parse_flags(b"<html>").is_err());
        assert!(parse_flags(br#"{"status":"error","error":"x"}"#).is_err());
        let f = parse_flags(
            br#"{"status":"success","data":{"config.file":1,"storage.tsdb.path":["/x"]}}"#,
        )
        .unwrap();
        assert_eq!((f.config.as_str(), f.data.as_str()), ("", ""));
    }

    #[test]
    fn snapshot_paths_only_of_the_api_form() {
        let n = "20261205T130102Z-1a2b3c4d5e6f7a8b";
        assert!(valid_snapshot_name(n));
        for bad in [
            "",
            "..",
            "../../etc",
            "20261205T130102Z-",
            "20261205T130102Z-../x",
            "20261205T130102Z-abc/../../x",
            "20261205T130102Z-abc\n",
            "20261205T130102Z-ABC",
            "$(touch x)",
            "2026120xT130102Z-abc",
        ] {
            assert!(!valid_snapshot_name(bad), "{bad:?}");
            assert_eq!(snapshot_dir("/var/lib/prometheus", bad), None, "{bad:?}");
        }
        assert_eq!(
            snapshot_dir("/var/lib/prometheus/metrics2/", n).unwrap(),
            format!("/var/lib/prometheus/metrics2/snapshots/{n}")
        );
        // a hostile data dir stays data, and what comes out still ends in snapshots/<name>
        let d = snapshot_dir("/x/$(touch y)/../..", n).unwrap();
        assert_eq!(d, format!("/snapshots/{n}"));
        assert!(is_snapshot_dir(&d));
        let d = snapshot_dir("/a\nb", n).unwrap();
        assert_eq!(d, format!("/a\nb/snapshots/{n}"));
        assert!(is_snapshot_dir(&d));
        assert_eq!(snapshot_dir("data", n), None, "relative: resolved first");
        for bad in [
            "/".to_string(),
            String::new(),
            format!("snapshots/{n}"),
            format!("/var/lib/snapshots/../{n}"),
            format!("/var/lib/snapshots/{n}/.."),
            format!("/var/lib/snapshots/./{n}"),
            format!("/var/lib//snapshots/{n}/"),
            format!("/var/lib/snap/{n}"),
            "/var/lib/snapshots/x".to_string(),
            "/etc".to_string(),
        ] {
            assert!(!is_snapshot_dir(&bad), "{bad:?}");
        }
        assert!(is_snapshot_dir(&format!(
            "/var/lib/prometheus/snapshots/{n}"
        )));
    }

    /// The removal script run by a real `sh`: a path with shell syntax is one directory.
    #[test]
    fn remove_script_removes_exactly_that_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mark = format!("{d}/MARK");
        let n = "20261205T130102Z-00ff";
        let data = format!("{d}/$(touch {mark}) x");
        let snap = snapshot_dir(&data, n).unwrap();
        std::fs::create_dir_all(format!("{snap}/01H")).unwrap();
        std::fs::write(format!("{snap}/01H/index"), "x").unwrap();
        let keep = format!("{data}/snapshots/20261205T130102Z-00fe");
        std::fs::create_dir_all(&keep).unwrap();
        for _ in 0..2 {
            let s = Script::new(REMOVE).arg(snap.clone());
            let st = std::process::Command::new("sh")
                .arg("-c")
                .arg(s.to_shell())
                .status()
                .unwrap();
            assert!(st.success());
        }
        assert!(!std::path::Path::new(&snap).exists());
        assert!(std::path::Path::new(&keep).is_dir());
        assert!(!std::path::Path::new(&mark).exists());
    }

    #[test]
    fn spec_parses_as_native() {
        let s = super::super::ComponentSpec::from_yaml_with("prometheus.rs", SPEC, Some(make()))
            .unwrap();
        assert_eq!(s.groups, ["prometheus"]);
        assert!(s.steps.is_empty() && s.requires.is_empty());
        assert_eq!(s.vars["prometheus_url"], "http://localhost:9090");
        assert_eq!(s.vars["prometheus_tls_verify"], "true");
        assert!(super::super::is_secret_var("prometheus_password"));
        assert!(!s.vars.contains_key(SNAPSHOT_DIR), "never settable");
    }
}
