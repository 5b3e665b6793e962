//! Elasticsearch / OpenDistro for Elasticsearch / OpenSearch: an `fs` snapshot of the whole
//! cluster through the REST API of the first node that answers, the repository directory
//! streamed into the archive, then the snapshot deleted again (unless kept); plus that node's
//! configuration dir.
//!
//! lsbackup speaks the API itself, through the host's SSH connection (a direct-tcpip channel to
//! the node's address as the host sees it): TLS, the admin client certificate and basic-auth
//! credentials stay in lsbackup (the PEM files are read from the host into this process), and
//! every answer is parsed with serde. The host needs no curl, no python; nothing is written on
//! it but what Elasticsearch itself writes into its repository.
//!
//! What a killed run left (see `leftovers`): its snapshot is named
//! `lsbackup-<UTC time>-<host id>-<holder>-<random>` (the machine and the pid of the sshd process
//! holding the connection it was taken through), and a repository registration it made carries
//! `lsbackup_run: <host id>-<holder>` in its settings. At its start the next run on the same
//! machine deletes (`DELETE _snapshot/<repo>/<snapshot>`, never a file) the snapshots of that
//! shape whose holder is gone, and unregisters such a registration when the repository then
//! holds no snapshot at all. A snapshot kept on purpose (`elasticsearch_keep_snapshot=true`) is
//! named `lsbackup-kept-<UTC time>-<random>` and its registration has no `lsbackup_run`: neither
//! is ever a leftover; nor is any other name, another machine's or a running run's snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::leftovers::{self, Identity};
use super::local_api::{self, OneOrMany, Probe};
use super::{Native, NativeRef};
use crate::engine::{At, Failed, HostCtx, StepError};
use crate::http::{HttpClient, TlsSettings};
use crate::secret::Secret;

/// The declarative facts; the logic is [`Elasticsearch`].
pub const SPEC: &str = r#"
name: elasticsearch
description: Elasticsearch/OpenSearch fs snapshot (repository dir) and node config
groups: [logging, opendistro_for_elasticsearch, opensearch]
hosts: first
vars:
  # http(s)://host:port of the node's REST API; auto: https then http (https only with a user)
  # on 127.0.0.1, network.host from the config, the host name and the host's addresses, at
  # elasticsearch_http_port
  elasticsearch_url: auto
  # auto: http.port from the config file, else 9200
  elasticsearch_http_port: auto
  # auto: the first of /etc/elasticsearch, /etc/opensearch, /usr/share/opensearch/config,
  # /usr/share/elasticsearch/config holding elasticsearch.yml or opensearch.yml
  elasticsearch_config_dir: auto
  # TLS client certificate and key, CA (PEM files on the host, read by lsbackup); auto: found in
  # the config dir (*admin*.pem + *admin*-key.pem or kirk.pem, *root-ca*.pem); "" = none
  elasticsearch_client_cert: auto
  elasticsearch_client_key: auto
  elasticsearch_ca_cert: auto
  # false: do not verify the node's certificate (e.g. its name does not match the URL); no
  # password is sent then (the client certificate still is)
  elasticsearch_tls_verify: "true"
  # HTTP basic authentication instead of (or besides) the client certificate (https only)
  elasticsearch_user: ""
  elasticsearch_password: ""
  # snapshot repository name (registered by lsbackup when absent, unregistered again after the
  # run) and its directory; auto: /var/lib/elasticsearch-snapshots or
  # /var/lib/opensearch-snapshots when in path.repo, else the first path.repo entry
  elasticsearch_repository: lsbackup
  elasticsearch_repository_location: auto
  # indices to snapshot (comma-separated, wildcards); "" = Elasticsearch's default (all)
  elasticsearch_indices: ""
  # seconds to wait for the snapshot to complete
  elasticsearch_snapshot_timeout: "3600"
  # true: leave the snapshot (and the repository registration) after copying it
  elasticsearch_keep_snapshot: "false"
not_covered:
  - snapshots are taken on a shared repository only; a multi-node cluster without a shared file system at the location fails with repository_verification_exception
  - other snapshots already in the repository directory are copied along; the archive holds the whole directory
  - closed indices are not in the snapshot (Elasticsearch skips them); they are named in a note
  - the data directory (path.data) is not copied; restore from the snapshot with POST _snapshot/<repo>/<snapshot>/_restore
  - the configuration of the other nodes (only the node that took the snapshot; their elasticsearch.yml differ in node.name and certificates)
  - the security plugin's own index is only in the snapshot when the admin certificate is used (restore it with securityadmin)
"#;

pub fn make() -> NativeRef {
    NativeRef(Arc::new(Elasticsearch::default()))
}

pub(crate) const CONFIG_DIRS: &[&str] = &[
    "/etc/elasticsearch",
    "/etc/opensearch",
    "/usr/share/opensearch/config",
    "/usr/share/elasticsearch/config",
];
pub(crate) const CONFIG_FILES: &[&str] = &["elasticsearch.yml", "opensearch.yml"];
const DEFAULT_LOCATIONS: &[&str] = &[
    "/var/lib/elasticsearch-snapshots",
    "/var/lib/opensearch-snapshots",
];
/// How long one probe of a candidate URL may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cleanup waits for a snapshot deletion (it may have to abort a running one).
const DELETE_TIMEOUT: Duration = Duration::from_secs(600);

/// The component. Per host of a run it keeps how to reach the URL that answered, for the
/// backup and the cleanup (the host's state itself is in its variables).
#[derive(Default)]
pub struct Elasticsearch {
    conns: Mutex<HashMap<String, Conn>>,
}

/// The URL that answered and how to speak to it (TLS material and password stay in memory).
#[derive(Clone)]
struct Conn {
    url: String,
    tls: TlsSettings,
    user: String,
    password: Secret,
}

impl Conn {
    fn client(&self, h: &HostCtx<'_>, timeout: Duration) -> Result<HttpClient, StepError> {
        let mut b = h.http(&self.url)?.timeout(timeout).tls(self.tls.clone());
        if !self.user.is_empty() {
            b = b.basic_auth(self.user.clone(), self.password.clone());
        }
        Ok(b.build()?)
    }
}

/// Limit on one API call (the snapshot itself is polled).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

// Variables set on a host during the run.
const V_CONF: &str = "es_conf";
const V_CONNECT_ERROR: &str = "es_connect_error";
const V_SNAPSHOT: &str = "es_snapshot";
const V_SNAPSHOT_OK: &str = "es_snapshot_ok";
const V_REGISTERED: &str = "es_repository_registered";
const V_HOLDER: &str = "es_holder";
const V_HOST_ID: &str = "es_host_id";
/// The repository setting that marks a registration as made by a run (`<host id>-<holder>`).
const RUN_SETTING: &str = "lsbackup_run";

impl Elasticsearch {
    fn conn(&self, host: &str) -> Option<Conn> {
        self.conns.lock().ok()?.get(host).cloned()
    }

    fn keep_conn(&self, host: &str, c: Conn) {
        if let Ok(mut m) = self.conns.lock() {
            m.insert(host.to_string(), c);
        }
    }

    fn forget_conn(&self, host: &str) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(host);
        }
    }
}

#[async_trait::async_trait]
impl Native for Elasticsearch {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let v = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let url = match v("elasticsearch_url") {
            "auto" => format!(
                "https then http (https only with a user) on 127.0.0.1, network.host, the host name and addresses, port {}",
                match v("elasticsearch_http_port") {
                    "auto" => "http.port of the config file (9200)",
                    p => p,
                }
            ),
            u => u.to_string(),
        };
        let auth = match (v("elasticsearch_client_cert"), v("elasticsearch_user")) {
            ("", "") => "no client certificate, no user".to_string(),
            (c, "") => format!("client certificate {c}"),
            ("", u) => format!("user {u}, password {}", v("elasticsearch_password")),
            (c, u) => format!(
                "client certificate {c}, user {u}, password {}",
                v("elasticsearch_password")
            ),
        };
        let repo = v("elasticsearch_repository");
        vec![
            format!(
                "config dir: {} (elasticsearch_config_dir)",
                v("elasticsearch_config_dir")
            ),
            format!(
                "REST API from lsbackup through the SSH connection: {url}; TLS CA {}, verify {}; {auth}",
                v("elasticsearch_ca_cert"),
                v("elasticsearch_tls_verify")
            ),
            "GET / (version), GET /_cluster/health".into(),
            format!(
                "GET /_nodes/settings: location {} must be in path.repo of every node",
                v("elasticsearch_repository_location")
            ),
            format!(
                "leftovers: GET /_snapshot/{repo}/_all; DELETE the snapshots lsbackup-<time>-<this host>-<pid>-<random> whose run's connection is gone, then /_snapshot/{repo} when such a run registered it and nothing is left in it"
            ),
            format!(
                "GET /_snapshot/{repo}; PUT /_snapshot/{repo} (type fs{}) when not registered",
                if v("elasticsearch_keep_snapshot") == "true" {
                    ""
                } else {
                    ", lsbackup_run: <host id>-<pid>"
                }
            ),
            format!(
                "PUT /_snapshot/{repo}/{} (indices: {}), polled until done (timeout {}s)",
                if v("elasticsearch_keep_snapshot") == "true" {
                    "lsbackup-kept-<UTC time>-<random>"
                } else {
                    "lsbackup-<UTC time>-<host id>-<pid>-<random>"
                },
                match v("elasticsearch_indices") {
                    "" => "all",
                    i => i,
                },
                v("elasticsearch_snapshot_timeout")
            ),
            "snapshot.json: the snapshot's report; the repository dir streamed into the archive"
                .into(),
            "copy the config dir".into(),
            if v("elasticsearch_keep_snapshot") == "true" {
                "cleanup: the snapshot is kept (elasticsearch_keep_snapshot=true) when it succeeded, else DELETEd; so is a repository registration lsbackup made".to_string()
            } else {
                format!(
                    "cleanup: DELETE the snapshot, DELETE /_snapshot/{repo} if lsbackup registered it"
                )
            },
        ]
    }

    async fn select(&self, h: &mut HostCtx<'_>) -> Result<Option<String>, StepError> {
        self.forget_conn(h.host());
        let step = "connect";
        let conf = match h.var("elasticsearch_config_dir") {
            "auto" => local_api::find_config(h, step, CONFIG_DIRS, CONFIG_FILES)
                .await?
                .map(|(d, _)| d)
                .unwrap_or_else(|| CONFIG_DIRS[0].to_string()),
            d => d.trim_end_matches('/').to_string(),
        };
        h.set_var(V_CONF, conf.clone());
        let settings = node_config(h, step, &conf).await;
        let (cert, key, ca) = tls_files(h, step, &conf).await?;
        let verify = !matches!(
            h.var("elasticsearch_tls_verify")
                .trim()
                .to_ascii_lowercase()
                .as_str(),
            "false" | "no" | "off" | "0"
        );
        let tls = h.tls_from_host(step, &ca, &cert, &key, verify).await?;
        let user = h.var("elasticsearch_user").to_string();
        let password = Secret::from(h.var("elasticsearch_password").to_string());

        let urls = match h.var("elasticsearch_url") {
            "auto" => {
                let port = match h.var("elasticsearch_http_port").trim() {
                    "auto" => settings
                        .as_ref()
                        .and_then(|c| local_api::first(c, "http.port"))
                        .unwrap_or("9200")
                        .to_string(),
                    p => p.to_string(),
                };
                port.parse::<u16>().map_err(|_| {
                    StepError::config(format!(
                        "elasticsearch_http_port must be a port number, not {port:?}"
                    ))
                })?;
                let mut hosts = vec!["127.0.0.1".to_string()];
                if let Some(nh) = settings
                    .as_ref()
                    .and_then(|c| local_api::first(c, "network.host"))
                    .filter(|a| local_api::is_host_name(a) && *a != "0.0.0.0")
                    && !hosts.iter().any(|x| x == nh)
                {
                    hosts.push(nh.to_string());
                }
                for a in local_api::host_addresses(h, step).await {
                    if !hosts.contains(&a) {
                        hosts.push(a);
                    }
                }
                let mut urls: Vec<String> = hosts
                    .iter()
                    .map(|a| format!("https://{a}:{port}"))
                    .collect();
                // credentials are never sent over plain http: no use trying it with a user
                if user.is_empty() {
                    urls.extend(hosts.iter().map(|a| format!("http://{a}:{port}")));
                }
                urls
            }
            u => vec![u.trim().trim_end_matches('/').to_string()],
        };

        let mut refused: Vec<String> = Vec::new();
        let mut silent: Vec<String> = Vec::new();
        for url in &urls {
            let conn = Conn {
                url: url.clone(),
                tls: tls.clone(),
                user: user.clone(),
                password: password.clone(),
            };
            let c = match conn.client(h, PROBE_TIMEOUT) {
                Ok(c) => c,
                Err(e) => {
                    refused.push(format!("{url}: {}", e.cause));
                    continue;
                }
            };
            match local_api::probe(h, step, &c, "/_cluster/health", es_error).await {
                Probe::Ok(_) => {
                    self.keep_conn(h.host(), conn);
                    return Ok(None);
                }
                Probe::Refused(why) => refused.push(format!("{url}: {why}")),
                Probe::Silent(why) => silent.push(format!("{url}: {why}")),
            }
        }
        if refused.is_empty() {
            return Err(StepError::api(format!(
                "no Elasticsearch/OpenSearch HTTP API answers at {} ({})",
                urls.join(" "),
                silent.first().map(String::as_str).unwrap_or("no URL")
            )));
        }
        // Something answers but refuses us: the host is the right one; the backup says why.
        let all = refused.join("; ");
        let hint = if all.contains("HTTP 401") || all.contains("HTTP 403") {
            format!(
                " (client certificate: {}; set elasticsearch_client_cert/_key or elasticsearch_user/_password)",
                if cert.is_empty() { "none" } else { &cert }
            )
        } else if all.contains("TLS") || all.contains("certificate") {
            " (set elasticsearch_ca_cert, or elasticsearch_tls_verify=false)".to_string()
        } else {
            String::new()
        };
        h.set_var(V_CONNECT_ERROR, format!("no usable REST API: {all}{hint}"));
        Ok(None)
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let conf = h.var(V_CONF).to_string();
        match self.conn(h.host()) {
            Some(conn) => {
                let r = match conn.client(h, CALL_TIMEOUT) {
                    Ok(c) => snapshot(h, &c, &conf).await,
                    Err(e) => Err(e.at("connect")),
                };
                if let Err(f) = r {
                    h.fail(&f.step, f.error.clone());
                    skip_after(h, &f.step);
                }
            }
            None => {
                let why = match h.var(V_CONNECT_ERROR) {
                    "" => "no usable REST API".to_string(),
                    e => e.to_string(),
                };
                h.fail("connect", StepError::api(why));
                skip_after(h, "connect");
            }
        }
        h.step("config");
        if let Err(e) = h.copy("config", &[conf], false).await {
            h.fail("config", e);
        }
        Ok(())
    }

    async fn cleanup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let Some(conn) = self.conn(h.host()) else {
            return Ok(());
        };
        self.forget_conn(h.host());
        let c = conn.client(h, DELETE_TIMEOUT).at("delete snapshot")?;
        let repo = h.var("elasticsearch_repository").to_string();
        let snap = h.var(V_SNAPSHOT).to_string();
        let keep = h.var_is_true("elasticsearch_keep_snapshot") && h.var_is_true(V_SNAPSHOT_OK);
        let mut first_err: Option<Failed> = None;
        if !snap.is_empty() && !keep {
            // only a name of the form lsbackup made ever reaches the DELETE
            if !is_our_snapshot(&snap) {
                return Err(StepError::bad_data(format!(
                    "not deleting snapshot {snap:?}: not a name lsbackup made"
                ))
                .at("delete snapshot"));
            }
            h.step("delete snapshot");
            let path = format!("/_snapshot/{repo}/{snap}");
            match local_api::call_any(h, "delete snapshot", &c, Method::DELETE, &path, None).await {
                Ok((s, _)) if s.is_success() || s == StatusCode::NOT_FOUND => {}
                Ok((s, body)) => {
                    first_err = Some(
                        StepError::api(format!("DELETE {path}: {}", es_error(s, &body)))
                            .at("delete snapshot"),
                    )
                }
                Err(e) => first_err = Some(e.at("delete snapshot")),
            }
        }
        if h.var_is_true(V_REGISTERED) && !keep {
            h.step("unregister repository");
            let path = format!("/_snapshot/{repo}");
            match local_api::call_any(h, "unregister repository", &c, Method::DELETE, &path, None)
                .await
            {
                Ok((s, _)) if s.is_success() || s == StatusCode::NOT_FOUND => {}
                Ok((s, body)) => {
                    first_err.get_or_insert(
                        StepError::api(format!("DELETE {path}: {}", es_error(s, &body)))
                            .at("unregister repository"),
                    );
                }
                Err(e) => {
                    first_err.get_or_insert(e.at("unregister repository"));
                }
            }
        }
        match first_err {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

/// The steps of the backup, in order (for recording those skipped after a failure).
const STEPS: &[&str] = &[
    "connect",
    "leftovers",
    "check path.repo",
    "register repository",
    "snapshot",
    "repository",
];

/// Record the steps after `failed` as skipped (with the commands, as a spec component does).
fn skip_after(h: &mut HostCtx<'_>, failed: &str) {
    let Some(i) = STEPS.iter().position(|s| *s == failed) else {
        return;
    };
    for s in &STEPS[i + 1..] {
        h.record_call(
            s,
            &format!("skipped: {failed:?} failed"),
            None,
            Instant::now(),
        );
    }
}

/// connect (version), check path.repo, register repository, snapshot, repository.
async fn snapshot(h: &mut HostCtx<'_>, c: &HttpClient, conf: &str) -> Result<(), Failed> {
    let step = "connect";
    h.step(step);
    let root = local_api::call(h, step, c, Method::GET, "/", None, es_error)
        .await
        .map_err(|e| e.at(step))?;
    if let Some(v) = version_of(&root) {
        h.version("elasticsearch", &v);
    }

    let repo = h.var("elasticsearch_repository").to_string();
    check_repository_name(&repo).map_err(|e| e.at("check path.repo"))?;

    let step = "leftovers";
    h.step(step);
    match leftovers::identity(h, step).await {
        Ok(me) => {
            h.set_var(V_HOLDER, me.holder.to_string());
            h.set_var(V_HOST_ID, me.host.clone());
            if let Err(e) = sweep(h, c, &repo, &me).await {
                h.optional_failed(step, &e);
            }
        }
        Err(e) => h.optional_failed(step, &e),
    }
    let me = Identity {
        holder: h.var(V_HOLDER).parse().unwrap_or(0),
        host: match h.var(V_HOST_ID) {
            "" => "00000000".to_string(),
            id => id.to_string(),
        },
    };
    let keep = h.var_is_true("elasticsearch_keep_snapshot");

    let step = "check path.repo";
    h.step(step);
    let body = local_api::call(
        h,
        step,
        c,
        Method::GET,
        "/_nodes/settings?filter_path=nodes.*.name,nodes.*.settings.path.repo",
        None,
        es_error,
    )
    .await
    .map_err(|e| e.at(step))?;
    let nodes = parse_nodes_settings(&body).map_err(|e| e.at(step))?;
    let wanted = h.var("elasticsearch_repository_location").to_string();
    let location = choose_location(&wanted, &nodes, conf).map_err(|e| e.at(step))?;
    check_path_repo(&location, &nodes).map_err(|e| e.at(step))?;

    let step = "register repository";
    h.step(step);
    let path = format!("/_snapshot/{repo}");
    let (status, body) = local_api::call_any(h, step, c, Method::GET, &path, None)
        .await
        .map_err(|e| e.at(step))?;
    if status.is_success() {
        let existing = parse_repository(&body, &repo).map_err(|e| e.at(step))?;
        if existing.kind != "fs" || !same_dir(&existing.location, &location) {
            return Err(StepError::config(format!(
                "repository {repo} is already registered (type {}, location {}), not by this run: choose another name with elasticsearch_repository, or use its location with elasticsearch_repository_location",
                local_api::one_line(&existing.kind, 40),
                local_api::one_line(&existing.location, 200)
            ))
            .at(step));
        }
    } else if status == StatusCode::NOT_FOUND {
        // Registered from here on (a failed verification may leave it registered): the cleanup
        // unregisters it.
        h.set_var(V_REGISTERED, "true");
        let mut body = json!({"type": "fs", "settings": {"location": location}});
        // marked as this run's: a later run unregisters it if this one is killed (a registration
        // kept on purpose is not marked)
        if !keep && me.holder != 0 {
            body["settings"][RUN_SETTING] = Value::String(format!("{}-{}", me.host, me.holder));
        }
        if let Err(e) = local_api::call(h, step, c, Method::PUT, &path, Some(&body), es_error).await
        {
            let cause = if e.cause.contains("repository_verification_exception") {
                format!(
                    "{} -- every node of the cluster must see {location}: mount one shared file system (e.g. NFS) there on all nodes, writable by the elasticsearch user",
                    e.cause
                )
            } else {
                e.cause
            };
            return Err(StepError::new(e.kind, cause).at(step));
        }
    } else {
        return Err(StepError::api(format!("GET {path}: {}", es_error(status, &body))).at(step));
    }

    let step = "snapshot";
    h.step(step);
    let name = snapshot_name(&me, keep);
    h.set_var(V_SNAPSHOT, name.clone());
    let indices = h.var("elasticsearch_indices").trim().to_string();
    let mut body = json!({"ignore_unavailable": true, "include_global_state": true});
    if !indices.is_empty() {
        body["indices"] = Value::String(indices);
    }
    let timeout_s = h.var("elasticsearch_snapshot_timeout").trim().to_string();
    let timeout = timeout_s
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            StepError::config(format!(
                "elasticsearch_snapshot_timeout must be a number of seconds, not {timeout_s:?}"
            ))
            .at(step)
        })?;
    let started = Instant::now();
    let snap_path = format!("/_snapshot/{repo}/{name}");
    local_api::call(
        h,
        step,
        c,
        Method::PUT,
        &format!("{snap_path}?wait_for_completion=false"),
        Some(&body),
        es_error,
    )
    .await
    .map_err(|e| e.at(step))?;
    let info = wait_for_snapshot(h, c, &snap_path, &name, started, timeout)
        .await
        .map_err(|e| e.at(step))?;
    let report = serde_json::to_vec_pretty(&json!({ "snapshot": info }))
        .map_err(|e| StepError::local(e.to_string()).at(step))?;
    h.add_bytes("snapshot.json", &report)
        .await
        .map_err(|e| e.at(step))?;
    h.set_var(V_SNAPSHOT_OK, "true");
    closed_indices(h, c).await;

    let step = "repository";
    h.step(step);
    h.copy(step, &[location], false)
        .await
        .map_err(|e| e.at(step))?;
    Ok(())
}

/// Poll the snapshot until it is done or `timeout` after `started`: its info on SUCCESS.
async fn wait_for_snapshot(
    h: &mut HostCtx<'_>,
    c: &HttpClient,
    path: &str,
    name: &str,
    started: Instant,
    timeout: Duration,
) -> Result<Value, StepError> {
    let mut pause = Duration::from_millis(250);
    let mut polls = 0u32;
    let t = Instant::now();
    loop {
        polls += 1;
        let r = c.send(Method::GET, path, None).await;
        let failed_status = r
            .as_ref()
            .ok()
            .filter(|r| !r.status.is_success())
            .map(|r| r.status.as_u16());
        let done = |h: &mut HostCtx<'_>, status| {
            h.record_call(
                "snapshot",
                &format!("GET {path} (polled {polls} times)"),
                status,
                t,
            )
        };
        let resp = match r {
            Ok(resp) => resp,
            Err(e) => {
                done(h, None);
                return Err(e.into());
            }
        };
        if !resp.status.is_success() {
            done(h, failed_status);
            return Err(StepError::api(format!(
                "GET {path}: {}",
                es_error(resp.status, &resp.body)
            )));
        }
        let (state, info) = match parse_snapshot(&resp.body, name) {
            Ok(x) => x,
            Err(e) => {
                done(h, None);
                return Err(e);
            }
        };
        match state {
            SnapState::Success => {
                done(h, None);
                return Ok(info);
            }
            SnapState::Failed(state, why) => {
                done(h, None);
                let why = if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                };
                return Err(StepError::api(format!(
                    "snapshot {name} ended in state {state}{why}"
                )));
            }
            SnapState::Running => {}
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout || h.is_cancelled() {
            done(h, None);
            return Err(StepError::new(
                crate::archive::FailureKind::Timeout,
                format!(
                    "snapshot {name} did not complete within {}s (elasticsearch_snapshot_timeout); it is aborted and deleted in cleanup",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(pause.min(timeout - elapsed)).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Closed indices are skipped by the snapshot (`ignore_unavailable`): name them in a note. A
/// cluster that cannot say (an old version, no permission) is not an error.
async fn closed_indices(h: &mut HostCtx<'_>, c: &HttpClient) {
    let path = "/_cat/indices?format=json&h=index,status&expand_wildcards=all";
    let Ok((status, body)) = local_api::call_any(h, "snapshot", c, Method::GET, path, None).await
    else {
        return;
    };
    if !status.is_success() {
        return;
    }
    let closed = parse_closed_indices(&body);
    if !closed.is_empty() {
        h.note(&format!(
            "closed indices are not in the snapshot: {}",
            closed.join(", ")
        ));
    }
}

/// The config file of the node, as flat settings (None when unreadable: only used for hints).
async fn node_config(
    h: &mut HostCtx<'_>,
    step: &str,
    conf: &str,
) -> Option<BTreeMap<String, Vec<String>>> {
    for f in CONFIG_FILES {
        if let Ok(Some(bytes)) = h.read_file(step, &format!("{conf}/{f}"), None).await {
            return local_api::flat_yaml(&String::from_utf8_lossy(&bytes)).ok();
        }
    }
    None
}

/// Client certificate, key and CA paths (`auto`: found in the config dir; "" = none).
async fn tls_files(
    h: &mut HostCtx<'_>,
    step: &str,
    conf: &str,
) -> Result<(String, String, String), StepError> {
    let cert_var = h.var("elasticsearch_client_cert").trim().to_string();
    let key_var = h.var("elasticsearch_client_key").trim().to_string();
    let ca_var = h.var("elasticsearch_ca_cert").trim().to_string();
    let names = if [&cert_var, &key_var, &ca_var].iter().any(|v| *v == "auto") {
        local_api::list_files(h, step, conf).await?
    } else {
        vec![]
    };
    let (auto_cert, auto_key, auto_ca) = pick_tls_files(&names);
    let in_conf = |n: Option<String>| n.map(|n| format!("{conf}/{n}")).unwrap_or_default();
    let cert = match cert_var.as_str() {
        "auto" => in_conf(auto_cert),
        c => c.to_string(),
    };
    let key = match key_var.as_str() {
        "auto" if cert.is_empty() => String::new(),
        "auto" if cert_var == "auto" => in_conf(auto_key),
        "auto" => cert
            .strip_suffix(".pem")
            .map(|s| format!("{s}-key.pem"))
            .unwrap_or_default(),
        k => k.to_string(),
    };
    let ca = match ca_var.as_str() {
        "auto" => in_conf(auto_ca),
        c => c.to_string(),
    };
    if cert.is_empty() != key.is_empty() {
        return Err(StepError::config(
            "elasticsearch_client_cert and elasticsearch_client_key go together",
        ));
    }
    Ok((cert, key, ca))
}

/// From the config dir's file names: the admin client certificate (`*admin*.pem`, else the
/// OpenSearch demo `kirk.pem`) with its `-key.pem`, and the root CA (`*root-ca*.pem`).
pub fn pick_tls_files(names: &[String]) -> (Option<String>, Option<String>, Option<String>) {
    let has = |n: &str| names.iter().any(|x| x == n);
    let cert = names
        .iter()
        .filter(|n| n.ends_with(".pem") && !n.contains("key") && !n.contains("root-ca"))
        .find(|n| n.contains("admin"))
        .cloned()
        .or_else(|| has("kirk.pem").then(|| "kirk.pem".to_string()));
    let (cert, key) = match cert {
        Some(c) => {
            let k = format!("{}-key.pem", c.trim_end_matches(".pem"));
            if has(&k) {
                (Some(c), Some(k))
            } else {
                (None, None)
            }
        }
        None => (None, None),
    };
    let ca = names
        .iter()
        .find(|n| {
            n.ends_with(".pem")
                && !n.contains("key")
                && (n.contains("root-ca") || n.contains("root_ca"))
        })
        .cloned();
    (cert, key, ca)
}

/// A snapshot name lsbackup makes: `lsbackup-YYYYMMDD-HHMMSS-<host id>-<holder>-xxxxxxxx`
/// (UTC, the run's [`Identity`] on the host it is taken through, random hex), or
/// `lsbackup-kept-YYYYMMDD-HHMMSS-xxxxxxxx` for a snapshot to be kept.
fn snapshot_name(me: &Identity, keep: bool) -> String {
    let now = jiff::Timestamp::now();
    let mut r = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut r));
    if random.is_err() {
        r = (now.as_nanosecond() as u32 ^ std::process::id()).to_be_bytes();
    }
    let time = now.strftime("%Y%m%d-%H%M%S");
    if keep {
        format!("lsbackup-kept-{time}-{}", hex::encode(r))
    } else {
        format!(
            "lsbackup-{time}-{}-{}-{}",
            me.host,
            me.holder,
            hex::encode(r)
        )
    }
}

fn run_snapshot_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^lsbackup-([0-9]{8}-[0-9]{6})-([0-9a-f]{8})-(0|[1-9][0-9]{0,9})-[0-9a-f]{8}$",
        )
        .unwrap()
    })
}

/// Whether `name` has a form [`snapshot_name`] makes (the only names the cleanup deletes).
pub fn is_our_snapshot(name: &str) -> bool {
    static KEPT: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    run_snapshot_re().is_match(name)
        || KEPT
            .get_or_init(|| {
                regex::Regex::new(r"^lsbackup-kept-[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$").unwrap()
            })
            .is_match(name)
}

/// What the name of a snapshot a run made (not one kept on purpose) says.
#[derive(Debug, PartialEq, Eq)]
pub struct RunSnapshot {
    /// When it was taken (lsbackup's clock).
    pub taken: jiff::Timestamp,
    pub host: String,
    pub holder: u32,
}

/// The [`RunSnapshot`] of a name of exactly that shape, else `None`.
pub fn run_snapshot(name: &str) -> Option<RunSnapshot> {
    let c = run_snapshot_re().captures(name)?;
    let taken = jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S", &c[1])
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp();
    Some(RunSnapshot {
        taken,
        host: c[2].to_string(),
        holder: c[3].parse().ok()?,
    })
}

/// `<host id>-<holder>` of a registration's [`RUN_SETTING`].
fn run_marker(value: &str) -> Option<(String, u32)> {
    let (host, pid) = value.split_once('-')?;
    (host.len() == 8
        && host
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && !pid.is_empty()
        && pid.len() <= 10
        && pid.bytes().all(|b| b.is_ascii_digit()))
    .then(|| Some((host.to_string(), pid.parse().ok()?)))
    .flatten()
}

/// The snapshot names of `GET /_snapshot/REPO/_all`.
pub fn parse_snapshot_names(body: &[u8]) -> Result<Vec<String>, StepError> {
    #[derive(Deserialize)]
    struct Snaps {
        snapshots: Vec<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        snapshot: String,
    }
    let s: Snaps = serde_json::from_slice(body).map_err(|e| {
        StepError::bad_data(format!(
            "the snapshot list: {e}: {}",
            local_api::body_snippet(body)
        ))
    })?;
    Ok(s.snapshots.into_iter().map(|n| n.snapshot).collect())
}

/// Which snapshots of `names` an earlier run on this machine left: made by a run of this
/// machine whose holder is not in `running` (holder unknown: older than a day).
fn left_over(
    names: &[String],
    me: &Identity,
    running: &std::collections::BTreeSet<u32>,
    now: jiff::Timestamp,
) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            let Some(s) = run_snapshot(n) else {
                return false;
            };
            if s.host != me.host {
                return false;
            }
            if s.holder == 0 {
                let age = now.as_second() - s.taken.as_second();
                return age >= leftovers::UNKNOWN_HOLDER_AGE as i64;
            }
            s.holder != me.holder && !running.contains(&s.holder)
        })
        .cloned()
        .collect()
}

/// Delete the snapshots earlier runs on this machine left in `repo`, then the repository's
/// registration when such a run made it and nothing is left in it; one note says what went.
async fn sweep(
    h: &mut HostCtx<'_>,
    c: &HttpClient,
    repo: &str,
    me: &Identity,
) -> Result<(), StepError> {
    let step = "leftovers";
    let path = format!("/_snapshot/{repo}");
    let (status, body) = local_api::call_any(h, step, c, Method::GET, &path, None).await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(());
    }
    if !status.is_success() {
        return Err(StepError::api(format!(
            "GET {path}: {}",
            es_error(status, &body)
        )));
    }
    let registration = parse_repository(&body, repo)?;
    // a registration is only ever judged by the run that can see its holder: same machine
    let made_by = registration
        .run
        .as_deref()
        .and_then(run_marker)
        .filter(|(host, pid)| *host == me.host && *pid != 0 && *pid != me.holder)
        .map(|(_, pid)| pid);
    let all = format!("{path}/_all");
    let names = parse_snapshot_names(
        &local_api::call(h, step, c, Method::GET, &all, None, es_error).await?,
    )?;
    let mut pids: Vec<u32> = names
        .iter()
        .filter_map(|n| run_snapshot(n))
        .filter(|s| s.host == me.host && s.holder != 0 && s.holder != me.holder)
        .map(|s| s.holder)
        .chain(made_by)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    if pids.is_empty()
        && names
            .iter()
            .all(|n| run_snapshot(n).is_none_or(|s| s.holder != 0))
    {
        return Ok(());
    }
    let running = leftovers::running(h, step, &pids).await?;
    let mut removed = Vec::new();
    let mut first_err = None;
    for name in left_over(&names, me, &running, jiff::Timestamp::now()) {
        let snap = format!("{path}/{name}");
        match local_api::call_any(h, step, c, Method::DELETE, &snap, None).await {
            Ok((s, _)) if s.is_success() || s == StatusCode::NOT_FOUND => {
                removed.push(format!("snapshot {repo}/{name}"))
            }
            Ok((s, body)) => {
                first_err.get_or_insert(StepError::api(format!(
                    "DELETE {snap}: {}",
                    es_error(s, &body)
                )));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if first_err.is_none() && made_by.is_some_and(|pid| !running.contains(&pid)) {
        // only a registration that holds nothing any more (a snapshot of anyone's keeps it)
        let rest = parse_snapshot_names(
            &local_api::call(h, step, c, Method::GET, &all, None, es_error).await?,
        )?;
        if rest.is_empty() {
            match local_api::call_any(h, step, c, Method::DELETE, &path, None).await {
                Ok((s, _)) if s.is_success() || s == StatusCode::NOT_FOUND => {
                    removed.push(format!("repository registration {repo}"))
                }
                Ok((s, body)) => {
                    first_err = Some(StepError::api(format!(
                        "DELETE {path}: {}",
                        es_error(s, &body)
                    )))
                }
                Err(e) => first_err = Some(e),
            }
        }
    }
    if !removed.is_empty() {
        h.note(&leftovers::removed_note(&removed));
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Elasticsearch's rules for repository names, stricter: it goes into request paths as is.
fn check_repository_name(name: &str) -> Result<(), StepError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['_', '-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StepError::config(format!(
            "elasticsearch_repository must be lowercase letters, digits, '_', '-', '.' (not first), not {name:?}"
        )))
    }
}

/// "elasticsearch 7.10.2" / "opensearch 1.3.14" from `GET /`.
pub fn version_of(root: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Root {
        version: Version,
    }
    #[derive(Deserialize)]
    struct Version {
        number: String,
        #[serde(default)]
        distribution: Option<String>,
    }
    let r: Root = serde_json::from_slice(root).ok()?;
    let dist = r
        .version
        .distribution
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "elasticsearch".into());
    Some(local_api::one_line(
        &format!("{dist} {}", r.version.number),
        80,
    ))
}

/// One node's name and path.repo, from `GET _nodes/settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRepos {
    pub name: String,
    pub path_repo: Vec<String>,
}

/// Every node of `GET /_nodes/settings` (nested or flat settings) with its path.repo. Names and
/// paths are the node's own; other fields (any number of other `name`s among them) are ignored.
pub fn parse_nodes_settings(body: &[u8]) -> Result<Vec<NodeRepos>, StepError> {
    #[derive(Deserialize)]
    struct Nodes {
        #[serde(default)]
        nodes: BTreeMap<String, Node>,
    }
    #[derive(Deserialize)]
    struct Node {
        #[serde(default)]
        name: String,
        #[serde(default)]
        settings: Settings,
    }
    #[derive(Deserialize, Default)]
    struct Settings {
        #[serde(default)]
        path: Path,
        #[serde(default, rename = "path.repo")]
        flat: OneOrMany,
    }
    #[derive(Deserialize, Default)]
    struct Path {
        #[serde(default)]
        repo: OneOrMany,
    }
    let n: Nodes = serde_json::from_slice(body).map_err(|e| {
        StepError::bad_data(format!(
            "cannot read path.repo from GET _nodes/settings: {e}: {}",
            local_api::body_snippet(body)
        ))
    })?;
    if n.nodes.is_empty() {
        return Err(StepError::bad_data(format!(
            "cannot read path.repo from GET _nodes/settings: no nodes in {}",
            local_api::body_snippet(body)
        )));
    }
    Ok(n.nodes
        .into_iter()
        .map(|(id, node)| {
            let mut path_repo = node.settings.path.repo.to_vec();
            path_repo.extend(node.settings.flat.to_vec());
            NodeRepos {
                name: local_api::one_line(
                    if node.name.is_empty() {
                        &id
                    } else {
                        &node.name
                    },
                    100,
                ),
                path_repo,
            }
        })
        .collect())
}

/// The repository location: the one asked for, or (auto) the LambdaStack default when the
/// first node lists it in path.repo, else that node's first path.repo entry, else the default
/// for the distribution (the path.repo check then says what to do).
pub fn choose_location(wanted: &str, nodes: &[NodeRepos], conf: &str) -> Result<String, StepError> {
    let loc = if wanted.trim() == "auto" {
        let first: Vec<String> = nodes
            .first()
            .map(|n| n.path_repo.clone())
            .unwrap_or_default();
        DEFAULT_LOCATIONS
            .iter()
            .find(|c| first.iter().any(|r| r.trim_end_matches('/') == **c))
            .map(|c| c.to_string())
            .or_else(|| first.first().cloned())
            .unwrap_or_else(|| {
                if conf.contains("opensearch") {
                    DEFAULT_LOCATIONS[1].to_string()
                } else {
                    DEFAULT_LOCATIONS[0].to_string()
                }
            })
    } else {
        wanted.trim().to_string()
    };
    if !is_clean_abs_path(&loc) {
        return Err(StepError::config(format!(
            "the repository location must be an absolute path without '..' (elasticsearch_repository_location), not {}",
            local_api::one_line(&loc, 200)
        )));
    }
    Ok(loc.trim_end_matches('/').to_string())
}

/// Absolute, no `.`/`..` components, no control characters.
pub fn is_clean_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|c| c != ".." && c != ".")
}

fn same_dir(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Every node must list (a parent of) the location in path.repo.
pub fn check_path_repo(location: &str, nodes: &[NodeRepos]) -> Result<(), StepError> {
    let bad: Vec<String> = nodes
        .iter()
        .filter(|n| {
            !n.path_repo.iter().any(|r| {
                let r = r.trim_end_matches('/');
                !r.is_empty() && format!("{location}/").starts_with(&format!("{r}/"))
            })
        })
        .map(|n| {
            let repos = if n.path_repo.is_empty() {
                "not set".to_string()
            } else {
                local_api::one_line(&n.path_repo.join(" "), 300)
            };
            format!("{} (path.repo: {repos})", n.name)
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(StepError::config(format!(
        "repository location {location} is not in path.repo of node {}: add it to path.repo in elasticsearch.yml (opensearch.yml) on every node and restart them, or choose a location that is with --set elasticsearch_repository_location=DIR",
        bad.join(", ")
    )))
}

/// A registered repository (`GET /_snapshot/NAME`).
#[derive(Debug, PartialEq, Eq)]
pub struct Repository {
    pub kind: String,
    pub location: String,
    /// The [`RUN_SETTING`] of a registration a run made (not kept on purpose).
    pub run: Option<String>,
}

pub fn parse_repository(body: &[u8], name: &str) -> Result<Repository, StepError> {
    #[derive(Deserialize)]
    struct Repo {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        settings: RepoSettings,
    }
    #[derive(Deserialize, Default)]
    struct RepoSettings {
        #[serde(default)]
        location: String,
        #[serde(default, rename = "lsbackup_run")]
        run: Option<String>,
    }
    let mut m: BTreeMap<String, Repo> = serde_json::from_slice(body)
        .map_err(|e| StepError::bad_data(format!("GET /_snapshot/{name}: {e}")))?;
    let r = m.remove(name).ok_or_else(|| {
        StepError::bad_data(format!(
            "GET /_snapshot/{name}: the answer does not describe it: {}",
            local_api::body_snippet(body)
        ))
    })?;
    Ok(Repository {
        kind: r.kind,
        location: r.settings.location,
        run: r.settings.run,
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum SnapState {
    Running,
    Success,
    /// The state and the reasons given.
    Failed(String, String),
}

/// `GET /_snapshot/REPO/NAME`: the state of snapshot `name` and its info as the node gave it.
/// An answer about another snapshot is refused.
pub fn parse_snapshot(body: &[u8], name: &str) -> Result<(SnapState, Value), StepError> {
    #[derive(Deserialize)]
    struct Snaps {
        snapshots: Vec<Value>,
    }
    #[derive(Deserialize)]
    struct Info {
        snapshot: String,
        #[serde(default)]
        state: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        failures: Vec<Failure>,
    }
    #[derive(Deserialize)]
    struct Failure {
        #[serde(default)]
        reason: String,
    }
    let bad = |why: String| StepError::bad_data(format!("snapshot {name}: {why}"));
    let s: Snaps = serde_json::from_slice(body)
        .map_err(|e| bad(format!("{e}: {}", local_api::body_snippet(body))))?;
    for v in s.snapshots {
        let Ok(info) = serde_json::from_value::<Info>(v.clone()) else {
            continue;
        };
        if info.snapshot != name {
            continue;
        }
        let state = match info.state.as_str() {
            "SUCCESS" => SnapState::Success,
            "IN_PROGRESS" | "STARTED" | "INIT" | "" => SnapState::Running,
            other => {
                let mut why: Vec<String> = info.reason.into_iter().collect();
                why.extend(info.failures.into_iter().map(|f| f.reason).take(3));
                SnapState::Failed(
                    local_api::one_line(other, 40),
                    local_api::one_line(&why.join("; "), 300),
                )
            }
        };
        return Ok((state, v));
    }
    Err(bad(format!(
        "not in the answer: {}",
        local_api::body_snippet(body)
    )))
}

/// The closed indices of `GET _cat/indices?format=json&h=index,status`.
pub fn parse_closed_indices(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Row {
        index: String,
        #[serde(default)]
        status: String,
    }
    serde_json::from_slice::<Vec<Row>>(body)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.status == "close")
        .map(|r| local_api::one_line(&r.index, 100))
        .collect()
}

/// An Elasticsearch error answer as one line: `HTTP 500 type: reason`.
pub fn es_error(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: ErrorField,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Detail {
            #[serde(rename = "type", default)]
            kind: String,
            #[serde(default)]
            reason: String,
            #[serde(default)]
            root_cause: Vec<Cause>,
        },
    }
    #[derive(Deserialize)]
    struct Cause {
        #[serde(default)]
        reason: String,
    }
    let code = status.as_u16();
    let detail = match serde_json::from_slice::<Body>(body) {
        Ok(Body {
            error: ErrorField::Text(t),
        }) => local_api::one_line(&t, 300),
        Ok(Body {
            error:
                ErrorField::Detail {
                    kind,
                    reason,
                    root_cause,
                },
        }) => {
            let mut s = local_api::one_line(&kind, 80);
            if !reason.is_empty() {
                s.push_str(&format!(": {}", local_api::one_line(&reason, 1000)));
            }
            if let Some(root) = root_cause.first()
                && !root.reason.is_empty()
                && root.reason != reason
            {
                s.push_str(&format!(" ({})", local_api::one_line(&root.reason, 300)));
            }
            s
        }
        Err(_) => {
            let snippet = local_api::body_snippet(body);
            if snippet.is_empty() {
                status.canonical_reason().unwrap_or("").to_string()
            } else {
                format!(": {snippet}")
            }
        }
    };
    let sep = if detail.starts_with(':') || detail.is_empty() {
        ""
    } else {
        " "
    };
    format!("HTTP {code}{sep}{detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_settings_every_node_and_only_its_own_name() {
        // other `name` fields (cluster, node attributes, a plugin) around and inside the
        // settings, a node with a flat path.repo, one with a string, one without
        let body = br#"{"_nodes":{"total":4},"cluster_name":"x","nodes":{
          "a1":{"name":"node-a","settings":{"cluster":{"name":"evil"},"node":{"name":"also-evil","attr":{"name":"x"}},"path":{"repo":["/var/lib/elasticsearch-snapshots"]}}},
          "b2":{"settings":{"name":"not-a-node"},"name":"node-b","attributes":{"name":"zzz"}},
          "c3":{"name":"node-c","settings":{"path.repo":"/srv/snap,/var/lib/elasticsearch-snapshots"}},
          "d4":{"name":"node-d\u001b[31m","settings":{"path":{"repo":"/mnt/x"}}}}}"#;
        let nodes = parse_nodes_settings(body).unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].name, "node-a");
        assert_eq!(nodes[0].path_repo, vec!["/var/lib/elasticsearch-snapshots"]);
        assert_eq!(nodes[1].name, "node-b");
        assert!(nodes[1].path_repo.is_empty());
        assert_eq!(
            nodes[2].path_repo,
            vec!["/srv/snap", "/var/lib/elasticsearch-snapshots"]
        );
        assert_eq!(nodes[3].name, "node-d?[31m");
        let e = check_path_repo("/var/lib/elasticsearch-snapshots", &nodes).unwrap_err();
        assert!(
            e.cause.contains("not in path.repo of node node-b (path.repo: not set), node-d?[31m (path.repo: /mnt/x)"),
            "{}",
            e.cause
        );
        assert!(!e.cause.contains("evil"));
        assert!(parse_nodes_settings(b"{\"nodes\":{}}").is_err());
        assert!(parse_nodes_settings(b"<html>").is_err());
    }

    #[test]
    fn path_repo_prefixes_are_whole_components() {
        let n = |r: &[&str]| {
            vec![NodeRepos {
                name: "n".into(),
                path_repo: r.iter().map(|s| s.to_string()).collect(),
            }]
        };
        assert!(check_path_repo("/srv/snap/lsbackup", &n(&["/srv/snap/"])).is_ok());
        assert!(check_path_repo("/srv/snap", &n(&["/srv/snap"])).is_ok());
        assert!(check_path_repo("/srv/snapshots", &n(&["/srv/snap"])).is_err());
        assert!(check_path_repo("/srv/snap", &n(&[""])).is_err());
    }

    #[test]
    fn locations_from_hostile_path_repo_are_refused() {
        let n = |r: &str| {
            vec![NodeRepos {
                name: "n".into(),
                path_repo: vec![r.into()],
            }]
        };
        for bad in [
            "../../etc",
            "/var/lib/../../etc",
            "relative",
            "/x/\n/y",
            "/a/./b",
        ] {
            assert!(
                choose_location("auto", &n(bad), "/etc/elasticsearch").is_err(),
                "{bad}"
            );
            assert!(
                choose_location(bad, &[], "/etc/elasticsearch").is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            choose_location("auto", &n("/srv/$(reboot)"), "/etc/x").unwrap(),
            "/srv/$(reboot)",
            "an odd but absolute directory is only ever a value (JSON, a copy parameter)"
        );
        assert_eq!(
            choose_location("auto", &[], "/etc/opensearch").unwrap(),
            "/var/lib/opensearch-snapshots"
        );
        let two = vec![NodeRepos {
            name: "n".into(),
            path_repo: vec!["/srv/a".into(), "/var/lib/elasticsearch-snapshots/".into()],
        }];
        assert_eq!(
            choose_location("auto", &two, "/etc/elasticsearch").unwrap(),
            "/var/lib/elasticsearch-snapshots"
        );
    }

    #[test]
    fn snapshot_names_and_answers() {
        let me = Identity {
            holder: 4242,
            host: "0a1b2c3d".into(),
        };
        let name = snapshot_name(&me, false);
        assert!(is_our_snapshot(&name), "{name}");
        let s = run_snapshot(&name).unwrap();
        assert_eq!((s.host.as_str(), s.holder), ("0a1b2c3d", 4242));
        let kept = snapshot_name(&me, true);
        assert!(kept.starts_with("lsbackup-kept-"), "{kept}");
        assert!(is_our_snapshot(&kept), "{kept}");
        assert_eq!(
            run_snapshot(&kept),
            None,
            "a kept snapshot is never a leftover"
        );
        for bad in [
            "lsbackup-20240101-000000-0a1b2c3d-01-00000000",
            "lsbackup-20240101-000000-0A1B2C3D-1-00000000",
            "lsbackup-20240101-000000-0a1b2c3d-12345678901-00000000",
            "lsbackup-20240101-000000-0a1b2c3d--00000000",
            "lsbackup-20240101-000000-0a1b2c3d-1-00000000/..",
            "lsbackup-20241301-000000-0a1b2c3d-1-00000000",
        ] {
            assert_eq!(run_snapshot(bad), None, "{bad:?}");
        }
        for bad in [
            "../lsbackup-20240101-000000-00000000",
            "lsbackup-20240101-000000-00000000/..",
            "lsbackup-$(reboot)",
            "lsbackup-20240101-000000-0000000g",
            "lsbackup-20240101-000000-00000000\n",
            "lsbackup-20240101-000000-00000000",
            "",
        ] {
            assert!(!is_our_snapshot(bad), "{bad:?}");
        }
        let ok = format!(
            r#"{{"snapshots":[{{"snapshot":"other","state":"SUCCESS"}},{{"snapshot":"{name}","uuid":"u","state":"SUCCESS","indices":["a"]}}]}}"#
        );
        let (state, info) = parse_snapshot(ok.as_bytes(), &name).unwrap();
        assert_eq!(state, SnapState::Success);
        assert_eq!(info["uuid"], "u");
        // an answer about another snapshot (a hostile name) is not ours
        let other = br#"{"snapshots":[{"snapshot":"../$(reboot)","state":"SUCCESS"}]}"#;
        assert!(parse_snapshot(other, &name).is_err());
        let partial = format!(
            r#"{{"snapshots":[{{"snapshot":"{name}","state":"PARTIAL","failures":[{{"reason":"shard\nfailed"}}]}}]}}"#
        );
        assert_eq!(
            parse_snapshot(partial.as_bytes(), &name).unwrap().0,
            SnapState::Failed("PARTIAL".into(), "shard failed".into())
        );
        let running = format!(r#"{{"snapshots":[{{"snapshot":"{name}","state":"IN_PROGRESS"}}]}}"#);
        assert_eq!(
            parse_snapshot(running.as_bytes(), &name).unwrap().0,
            SnapState::Running
        );
    }

    #[test]
    fn leftovers_are_dead_runs_of_this_machine_only() {
        let me = Identity {
            holder: 10,
            host: "0a1b2c3d".into(),
        };
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let names: Vec<String> = [
            "lsbackup-20240101-000000-0a1b2c3d-11-00000001", // dead holder: left over
            "lsbackup-20240101-000000-0a1b2c3d-12-00000002", // running
            "lsbackup-20240101-000000-0a1b2c3d-10-00000003", // this run
            "lsbackup-20240101-000000-ffffffff-11-00000004", // another machine
            "lsbackup-20240101-000000-0a1b2c3d-0-00000005",  // unknown holder, old: left over
            "lsbackup-kept-20240101-000000-00000006",        // kept on purpose
            "lsbackup-20240101-000000-00000007",             // made by an older lsbackup
            "nightly-2024.01.01",                            // someone else's
        ]
        .map(String::from)
        .to_vec();
        let running = [12].into_iter().collect();
        assert_eq!(
            left_over(&names, &me, &running, now),
            [
                "lsbackup-20240101-000000-0a1b2c3d-11-00000001",
                "lsbackup-20240101-000000-0a1b2c3d-0-00000005"
            ]
        );
        // an unknown holder's snapshot of less than a day is kept
        let young = now
            .strftime("lsbackup-%Y%m%d-%H%M%S-0a1b2c3d-0-00000008")
            .to_string();
        assert!(left_over(&[young], &me, &running, now).is_empty());
        assert_eq!(
            parse_snapshot_names(
                br#"{"snapshots":[{"snapshot":"a","state":"SUCCESS"},{"snapshot":"b"}]}"#
            )
            .unwrap(),
            ["a", "b"]
        );
        assert!(parse_snapshot_names(b"{}").is_err());
    }

    #[test]
    fn repository_names_are_checked() {
        assert!(check_repository_name("lsbackup").is_ok());
        assert!(check_repository_name("my-repo.2").is_ok());
        for bad in ["", "../x", "a/b", "A", "_all", "x?y", "$(id)", "a b"] {
            assert!(check_repository_name(bad).is_err(), "{bad}");
        }
        let r = parse_repository(
            br#"{"lsbackup":{"type":"fs","settings":{"location":"/srv/s"}}}"#,
            "lsbackup",
        )
        .unwrap();
        assert_eq!(
            r,
            Repository {
                kind: "fs".into(),
                location: "/srv/s".into(),
                run: None,
            }
        );
        let r = parse_repository(
            br#"{"lsbackup":{"type":"fs","settings":{"location":"/srv/s","lsbackup_run":"0a1b2c3d-77"}}}"#,
            "lsbackup",
        )
        .unwrap();
        assert_eq!(
            r.run.as_deref().and_then(run_marker),
            Some(("0a1b2c3d".into(), 77))
        );
        for bad in [
            "0a1b2c3d-",
            "0a1b2c3-77",
            "0a1b2c3d-7x",
            "-77",
            "0a1b2c3d77",
        ] {
            assert_eq!(run_marker(bad), None, "{bad:?}");
        }
        assert!(parse_repository(br#"{"other":{"type":"fs"}}"#, "lsbackup").is_err());
    }

    #[test]
    fn tls_files_found_by_name() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (c, k, ca) = pick_tls_files(&names(&[
            "elasticsearch.yml",
            "lambdastack-admin-key.pem",
            "lambdastack-admin.pem",
            "lambdastack-node-node2-key.pem",
            "lambdastack-node-node2.pem",
            "lambdastack-root-ca.pem",
        ]));
        assert_eq!(c.as_deref(), Some("lambdastack-admin.pem"));
        assert_eq!(k.as_deref(), Some("lambdastack-admin-key.pem"));
        assert_eq!(ca.as_deref(), Some("lambdastack-root-ca.pem"));
        let (c, k, ca) = pick_tls_files(&names(&["kirk.pem", "kirk-key.pem", "root-ca.pem"]));
        assert_eq!(
            (c.as_deref(), k.as_deref(), ca.as_deref()),
            (Some("kirk.pem"), Some("kirk-key.pem"), Some("root-ca.pem"))
        );
        // a certificate without its key is not used
        assert_eq!(pick_tls_files(&names(&["admin.pem"])).0, None);
    }

    #[test]
    fn errors_and_versions() {
        let body = br#"{"error":{"root_cause":[{"type":"repository_exception","reason":"[x] location [/a] doesn't match"}],"type":"repository_exception","reason":"[x] failed to create repository"},"status":500}"#;
        assert_eq!(
            es_error(StatusCode::INTERNAL_SERVER_ERROR, body),
            "HTTP 500 repository_exception: [x] failed to create repository ([x] location [/a] doesn't match)"
        );
        assert_eq!(
            es_error(StatusCode::UNAUTHORIZED, b"Unauthorized"),
            "HTTP 401: Unauthorized"
        );
        assert_eq!(es_error(StatusCode::FORBIDDEN, b""), "HTTP 403 Forbidden");
        assert_eq!(
            es_error(StatusCode::BAD_REQUEST, br#"{"error":"line\none"}"#),
            "HTTP 400 line one"
        );
        assert_eq!(
            version_of(br#"{"version":{"number":"7.10.2"}}"#).as_deref(),
            Some("elasticsearch 7.10.2")
        );
        assert_eq!(
            version_of(br#"{"version":{"distribution":"opensearch","number":"1.3.14"}}"#)
                .as_deref(),
            Some("opensearch 1.3.14")
        );
        assert_eq!(
            parse_closed_indices(
                br#"[{"index":"a","status":"open"},{"index":"b","status":"close"}]"#
            ),
            vec!["b"]
        );
        assert!(parse_closed_indices(b"{}").is_empty());
    }
}
