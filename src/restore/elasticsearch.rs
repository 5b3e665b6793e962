//! Restore Elasticsearch / OpenDistro / OpenSearch indices from the backup's snapshot:
//!
//! 1. The repository: the backup holds the `fs` repository directory (where `index.latest` is)
//!    and `snapshot.json` (the snapshot's name, uuid and indices). When the cluster already sees
//!    the snapshot in repository `elasticsearch_repository` (registered with that location), the
//!    files are left alone. Otherwise the directory is replaced with the backup's (the current
//!    one kept beside as `DIR.lsbackup-<time>`), the repository being unregistered first so that
//!    the cluster reads it again, and registered (`PUT _snapshot/<repo>`, type `fs`, as the
//!    backup did). On a multi-node cluster the location is the shared file system every node
//!    mounts; the files are written through the node the backup was taken on.
//! 2. The indices: every index of the snapshot except system indices (names starting with `.`:
//!    `.kibana*` is restored by the Kibana restore, the security index with securityadmin) is
//!    restored with `POST _snapshot/<repo>/<snap>/_restore?wait_for_completion=true`
//!    (`include_global_state: false`: templates and cluster settings are left as they are). An
//!    index that is absent or closed is restored (a closed one is replaced). An open index of
//!    the same name cannot be restored over, as Elasticsearch refuses that: with `--yes` it is
//!    closed first (`POST <index>/_close`) and then replaced; without, it is left alone and
//!    listed. A restore that fails reopens the indices it closed.
//! 3. A repository registration made by the restore is removed again afterwards, as the backup
//!    does (the files stay).
//!
//! The node's config dir is not put back (`lsbackup extract`, docs/components/elasticsearch.md).
//! The REST API is reached as for the backup (`elasticsearch_url` or https/http on 127.0.0.1
//! and `network.host` at `http.port`; the admin client certificate found in the config dir, or
//! `elasticsearch_user`/`_password`). A dry run reads the cluster's state and says what it
//! would do.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::components::elasticsearch::{
    CONFIG_DIRS, CONFIG_FILES, es_error, parse_repository, pick_tls_files,
};
use crate::components::local_api;
use crate::http::{HttpClient, TlsSettings};
use crate::secret::Secret;
use crate::shell::Script;

use super::{HostRestore, Restore, RestoreError};

pub struct Elasticsearch;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

const CAT: &str = r#"exec cat -- "$1""#;

/// Exit 0 when `$1/snap-$2.dat` (the snapshot's file at the repository's top) exists.
const HAS_SNAPSHOT_FILE: &str = r#"[ -f "$1/snap-$2.dat" ]"#;

/// The backup's `snapshot.json`: `{"snapshot": <the snapshot's info>}`.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotJson {
    pub snapshot: SnapshotInfo,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotInfo {
    pub snapshot: String,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub indices: Vec<String>,
}

/// What becomes of each index of the snapshot.
#[derive(Debug, Default, PartialEq)]
pub struct IndexPlan {
    /// Restored: absent or closed now.
    pub restore: Vec<String>,
    /// Open now: closed first (with --yes), then restored.
    pub close_first: Vec<String>,
    /// Open now and left alone (without --yes).
    pub left_open: Vec<String>,
    /// System indices (`.name`), left out.
    pub system: Vec<String>,
    /// Names that cannot be Elasticsearch indices (never sent).
    pub invalid: Vec<String>,
}

/// An index name as Elasticsearch allows it (lowercase, none of `\/*?"<>| ,#:`, not starting
/// with `-_+`, not `.`/`..`, at most 255 bytes): it goes into request paths as is.
pub fn valid_index(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with(['-', '_', '+'])
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_uppercase() && !"\\/*?\"<>| ,#:".contains(c))
}

/// Elasticsearch's rules for repository names, stricter (as the backup checks them).
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['_', '-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
}

/// Decide per index of the snapshot, from the current `index -> status` (`open`/`close`).
pub fn plan_indices(
    snapshot: &[String],
    current: &BTreeMap<String, String>,
    yes: bool,
) -> IndexPlan {
    let mut p = IndexPlan::default();
    for name in snapshot {
        if !valid_index(name) {
            p.invalid.push(local_api::one_line(name, 100));
        } else if name.starts_with('.') {
            p.system.push(name.clone());
        } else {
            match current.get(name).map(String::as_str) {
                None | Some("close") => p.restore.push(name.clone()),
                Some(_) if yes => p.close_first.push(name.clone()),
                Some(_) => p.left_open.push(name.clone()),
            }
        }
    }
    p
}

/// `GET _cat/indices?format=json&h=index,status`: index -> status.
pub fn parse_cat_indices(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    #[derive(Deserialize)]
    struct Row {
        index: String,
        #[serde(default)]
        status: String,
    }
    let rows: Vec<Row> = serde_json::from_slice(body)
        .map_err(|e| format!("not an index list: {e}: {}", local_api::body_snippet(body)))?;
    Ok(rows.into_iter().map(|r| (r.index, r.status)).collect())
}

/// The answer of `_restore?wait_for_completion=true`: the indices restored, and the shards
/// that failed (an error when any did).
pub fn parse_restore(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Answer {
        snapshot: Restored,
    }
    #[derive(Deserialize)]
    struct Restored {
        #[serde(default)]
        indices: Vec<String>,
        shards: Shards,
    }
    #[derive(Deserialize)]
    struct Shards {
        total: u64,
        failed: u64,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a restore report: {e}: {}",
            local_api::body_snippet(body)
        )
    })?;
    if a.snapshot.shards.failed > 0 {
        return Err(format!(
            "{} of {} shards failed to restore",
            a.snapshot.shards.failed, a.snapshot.shards.total
        ));
    }
    Ok(a.snapshot.indices)
}

/// Whether `GET _snapshot/<repo>/<snap>` lists the snapshot (by name, and uuid when known).
pub fn lists_snapshot(body: &[u8], name: &str, uuid: &str) -> bool {
    #[derive(Deserialize)]
    struct Snaps {
        #[serde(default)]
        snapshots: Vec<Snap>,
    }
    #[derive(Deserialize)]
    struct Snap {
        snapshot: String,
        #[serde(default)]
        uuid: String,
    }
    serde_json::from_slice::<Snaps>(body).is_ok_and(|s| {
        s.snapshots
            .iter()
            .any(|x| x.snapshot == name && (uuid.is_empty() || x.uuid == uuid))
    })
}

/// The repository directory in the backup: the directory of its `index.latest` (relative).
pub fn repository_dir(files: &[String]) -> Option<String> {
    let mut dirs: Vec<&str> = files
        .iter()
        .filter_map(|f| f.strip_suffix("/index.latest"))
        .collect();
    dirs.sort_by_key(|d| d.len());
    dirs.first().map(|d| d.to_string())
}

fn is_false(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "false" | "no" | "off" | "0"
    )
}

/// The REST API as the backup finds it: the client and its URL.
async fn connect(
    r: &mut HostRestore<'_>,
    timeout: Duration,
) -> Result<(HttpClient, String), RestoreError> {
    let step = "connect";
    let dirs: Vec<String> = match r.var("elasticsearch_config_dir").trim() {
        "auto" | "" => CONFIG_DIRS.iter().map(|d| d.to_string()).collect(),
        d => vec![d.trim_end_matches('/').to_string()],
    };
    // the backup's search: the first elasticsearch.yml / opensearch.yml of those dirs
    let found = r
        .query_status(
            step,
            &Script::new(local_api::FIRST_FILE)
                .args(local_api::config_candidates(&dirs, CONFIG_FILES)),
            None,
        )
        .await?
        .stdout_text();
    let (conf, settings) = match found.rsplit_once('/') {
        Some((dir, _)) => {
            let bytes = r
                .query(step, &Script::new(CAT).arg(found.as_str()), None)
                .await?
                .stdout;
            (
                dir.to_string(),
                local_api::flat_yaml(&String::from_utf8_lossy(&bytes)).unwrap_or_default(),
            )
        }
        None => (dirs[0].clone(), BTreeMap::new()),
    };
    // the config dir's files, as the backup lists them (exit 3: no such directory, no files)
    let names = local_api::parse_nul_list(
        &r.query_status(
            step,
            &Script::new(local_api::LIST_FILES).arg(conf.as_str()),
            None,
        )
        .await?
        .stdout,
    );
    let (auto_cert, auto_key, auto_ca) = pick_tls_files(&names);
    let in_conf = |n: Option<String>| n.map(|n| format!("{conf}/{n}")).unwrap_or_default();
    let pick = |v: &str, auto: String| match v.trim() {
        "auto" => auto,
        x => x.to_string(),
    };
    let cert = pick(r.var("elasticsearch_client_cert"), in_conf(auto_cert));
    let key = pick(r.var("elasticsearch_client_key"), in_conf(auto_key));
    let ca = pick(r.var("elasticsearch_ca_cert"), in_conf(auto_ca));
    if cert.is_empty() != key.is_empty() {
        return Err(r.failed(
            step,
            "elasticsearch_client_cert and elasticsearch_client_key go together",
        ));
    }
    let mut tls = TlsSettings {
        verify: !is_false(r.var("elasticsearch_tls_verify")),
        ..Default::default()
    };
    for (path, slot) in [
        (&ca, &mut tls.ca_pem),
        (&cert, &mut tls.client_cert_pem),
        (&key, &mut tls.client_key_pem),
    ] {
        if !path.is_empty() {
            *slot = Some(
                r.query(step, &Script::new(CAT).arg(path.as_str()), None)
                    .await?
                    .stdout,
            );
        }
    }
    let user = r.var("elasticsearch_user").to_string();
    let password = Secret::from(r.var("elasticsearch_password").to_string());
    let urls: Vec<String> = match r.var("elasticsearch_url").trim() {
        "auto" | "" => {
            let port = match r.var("elasticsearch_http_port").trim() {
                "auto" | "" => local_api::first(&settings, "http.port")
                    .unwrap_or("9200")
                    .to_string(),
                p => p.to_string(),
            };
            if port.parse::<u16>().is_err() {
                return Err(r.failed(
                    step,
                    format!("elasticsearch_http_port must be a port number, not {port:?}"),
                ));
            }
            let mut hosts = vec!["127.0.0.1".to_string()];
            if let Some(nh) = local_api::first(&settings, "network.host")
                .filter(|a| local_api::is_host_name(a) && *a != "0.0.0.0")
                && !hosts.iter().any(|x| x == nh)
            {
                hosts.push(nh.to_string());
            }
            let mut urls: Vec<String> = hosts
                .iter()
                .map(|a| format!("https://{a}:{port}"))
                .collect();
            if user.is_empty() {
                urls.extend(hosts.iter().map(|a| format!("http://{a}:{port}")));
            }
            urls
        }
        u => vec![u.trim_end_matches('/').to_string()],
    };
    let mut errors = Vec::new();
    for url in &urls {
        let mut b = r.http(url)?.timeout(timeout).tls(tls.clone());
        if !user.is_empty() {
            b = b.basic_auth(user.clone(), password.clone());
        }
        let client = match b.build() {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{url}: {e}"));
                continue;
            }
        };
        let probe = tokio::time::timeout(
            PROBE_TIMEOUT,
            client.send(Method::GET, "/_cluster/health", None),
        )
        .await;
        match probe {
            Ok(Ok(resp)) if resp.status.is_success() => return Ok((client, url.clone())),
            Ok(Ok(resp)) => errors.push(format!(
                "{url}: GET /_cluster/health: {}",
                es_error(resp.status, &resp.body)
            )),
            Ok(Err(e)) => errors.push(format!("{url}: {e}")),
            Err(_) => errors.push(format!(
                "{url}: no answer within {}s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }
    let all = errors.join("; ");
    let hint = if all.contains("HTTP 401") || all.contains("HTTP 403") {
        format!(
            " (client certificate: {}; set elasticsearch_client_cert/_key or elasticsearch_user/_password)",
            if cert.is_empty() { "none" } else { &cert }
        )
    } else {
        String::new()
    };
    Err(r.failed(step, format!("no usable REST API: {all}{hint}")))
}

/// One call; the status and body (any status).
async fn call(
    r: &HostRestore<'_>,
    c: &HttpClient,
    step: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Vec<u8>), RestoreError> {
    let resp = c
        .send(method, path, body)
        .await
        .map_err(|e| r.failed(step, e))?;
    Ok((resp.status, resp.body.to_vec()))
}

/// A change: said ("would ..." in a dry run, where nothing is sent); 2xx required.
async fn change(
    r: &mut HostRestore<'_>,
    c: &HttpClient,
    step: &str,
    what: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Option<Vec<u8>>, RestoreError> {
    r.say(format!("{}{what}", r.would()));
    if r.is_dry_run() {
        return Ok(None);
    }
    let (status, answer) = call(r, c, step, method.clone(), path, body).await?;
    if !status.is_success() {
        return Err(r.failed(
            step,
            format!("{method} {path}: {}", es_error(status, &answer)),
        ));
    }
    Ok(Some(answer))
}

/// Whether the registered repository lists the snapshot.
async fn sees_snapshot(
    r: &HostRestore<'_>,
    c: &HttpClient,
    repo: &str,
    snap: &SnapshotInfo,
) -> Result<bool, RestoreError> {
    let path = format!("/_snapshot/{repo}/{}", snap.snapshot);
    let (status, body) = call(r, c, "repository", Method::GET, &path, None).await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(false);
    }
    if !status.is_success() {
        return Err(r.failed(
            "repository",
            format!("GET {path}: {}", es_error(status, &body)),
        ));
    }
    Ok(lists_snapshot(&body, &snap.snapshot, &snap.uuid))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[async_trait::async_trait]
impl Restore for Elasticsearch {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        if r.entry("snapshot.json").is_none() {
            r.note("the backup holds no snapshot (snapshot.json): nothing to restore from; the config dir is in `lsbackup extract`");
            return Ok(());
        }
        let step = "snapshot";
        let snap: SnapshotJson = serde_json::from_slice(&r.read_local("snapshot.json")?)
            .map_err(|e| r.failed(step, format!("snapshot.json: {e}")))?;
        let snap = snap.snapshot;
        if !valid_index(&snap.snapshot) {
            return Err(r.failed(
                step,
                format!(
                    "snapshot.json names snapshot {:?}, not a name Elasticsearch allows",
                    local_api::one_line(&snap.snapshot, 100)
                ),
            ));
        }
        let files: Vec<String> = r.files_under("").into_iter().map(|(_, p)| p).collect();
        let Some(rel) = repository_dir(&files) else {
            return Err(r.failed(
                "repository",
                "the backup holds no repository directory (no index.latest)",
            ));
        };
        let location = format!("/{rel}");
        let repo = r.var("elasticsearch_repository").trim().to_string();
        if !valid_repository(&repo) {
            return Err(r.failed(
                "repository",
                format!("elasticsearch_repository must be lowercase letters, digits, '_', '-', '.' (not first), not {repo:?}"),
            ));
        }
        let secs = r.var("elasticsearch_snapshot_timeout").trim().to_string();
        let timeout = match secs.as_str() {
            "" => Duration::from_secs(3600),
            s => Duration::from_secs(s.parse::<u64>().map_err(|_| {
                r.failed(
                    "connect",
                    format!(
                        "elasticsearch_snapshot_timeout must be a number of seconds, not {secs:?}"
                    ),
                )
            })?),
        };
        let (c, url) = connect(r, timeout).await?;
        r.say(format!(
            "REST API at {url}; snapshot {} of repository directory {location}",
            snap.snapshot
        ));

        // 1. The repository.
        let step = "repository";
        let repo_path = format!("/_snapshot/{repo}");
        let (status, body) = call(r, &c, step, Method::GET, &repo_path, None).await?;
        let registered = if status.is_success() {
            let existing = parse_repository(&body, &repo).map_err(|e| r.failed(step, e.cause))?;
            if existing.kind != "fs"
                || existing.location.trim_end_matches('/') != location.trim_end_matches('/')
            {
                return Err(r.failed(
                    step,
                    format!(
                        "repository {repo} is registered with type {}, location {}, not the backup's {location}: give another name with --set elasticsearch_repository=NAME",
                        local_api::one_line(&existing.kind, 40),
                        local_api::one_line(&existing.location, 200)
                    ),
                ));
            }
            true
        } else if status == StatusCode::NOT_FOUND {
            false
        } else {
            return Err(r.failed(
                step,
                format!("GET {repo_path}: {}", es_error(status, &body)),
            ));
        };
        let register_body = json!({"type": "fs", "settings": {"location": location}});
        let mut registered_here = false;
        let visible = if registered {
            sees_snapshot(r, &c, &repo, &snap).await?
        } else {
            let has = r
                .query_status(
                    step,
                    &Script::new(HAS_SNAPSHOT_FILE)
                        .arg(location.as_str())
                        .arg(snap.uuid.as_str()),
                    None,
                )
                .await?;
            if has.exit.success() && !snap.uuid.is_empty() {
                change(
                    r,
                    &c,
                    step,
                    &format!("register repository {repo} (fs, {location}): its directory holds the snapshot"),
                    Method::PUT,
                    &repo_path,
                    Some(&register_body),
                )
                .await?;
                registered_here = true;
                r.is_dry_run() || sees_snapshot(r, &c, &repo, &snap).await?
            } else {
                false
            }
        };
        if visible {
            r.say(format!(
                "repository {repo} holds snapshot {}: its files are left as they are",
                snap.snapshot
            ));
        } else {
            if registered || registered_here {
                change(
                    r,
                    &c,
                    step,
                    &format!("unregister repository {repo} (the cluster reads it again when registered; no file is removed)"),
                    Method::DELETE,
                    &repo_path,
                    None,
                )
                .await?;
            }
            r.put_tree(&rel, &location).await?;
            change(
                r,
                &c,
                step,
                &format!("register repository {repo} (fs, {location})"),
                Method::PUT,
                &repo_path,
                Some(&register_body),
            )
            .await?;
            registered_here = !registered;
            if !r.is_dry_run() && !sees_snapshot(r, &c, &repo, &snap).await? {
                return Err(r.failed(
                    step,
                    format!(
                        "repository {repo} does not list snapshot {} after its directory was put back",
                        snap.snapshot
                    ),
                ));
            }
        }

        // 2. The indices.
        let step = "indices";
        let cat = "/_cat/indices?format=json&h=index,status&expand_wildcards=all";
        let (status, body) = call(r, &c, step, Method::GET, cat, None).await?;
        if !status.is_success() {
            return Err(r.failed(step, format!("GET {cat}: {}", es_error(status, &body))));
        }
        let current = parse_cat_indices(&body).map_err(|e| r.failed(step, e))?;
        let plan = plan_indices(&snap.indices, &current, r.yes());
        if !plan.system.is_empty() {
            r.say(format!(
                "left out: system {} {} (Kibana's saved objects: the kibana restore; the security index: securityadmin)",
                if plan.system.len() == 1 { "index" } else { "indices" },
                plan.system.join(", ")
            ));
        }
        if !plan.invalid.is_empty() {
            r.say(format!(
                "left out: {} the snapshot names that cannot be index names: {}",
                plural(plan.invalid.len(), "entry", "entries"),
                plan.invalid.join(", ")
            ));
        }
        if !plan.left_open.is_empty() {
            r.note(format!(
                "open {} left alone (Elasticsearch restores only over a closed index; run again with --yes to close and replace {}): {}",
                if plan.left_open.len() == 1 { "index" } else { "indices" },
                if plan.left_open.len() == 1 { "it" } else { "them" },
                plan.left_open.join(", ")
            ));
        }
        let mut closed: Vec<String> = Vec::new();
        for index in &plan.close_first {
            let done = change(
                r,
                &c,
                step,
                &format!("close open index {index} to restore over it"),
                Method::POST,
                &format!("/{index}/_close"),
                None,
            )
            .await;
            match done {
                Ok(_) => closed.push(index.clone()),
                Err(e) => {
                    reopen(r, &c, &closed).await;
                    return Err(e);
                }
            }
        }
        let mut todo: Vec<String> = plan.restore.clone();
        todo.extend(plan.close_first.iter().cloned());
        todo.sort();
        if todo.is_empty() {
            r.say("no index to restore");
        } else {
            let path = format!(
                "/_snapshot/{repo}/{}/_restore?wait_for_completion=true",
                snap.snapshot
            );
            let body = json!({
                "indices": todo,
                "ignore_unavailable": false,
                "include_global_state": false,
                "include_aliases": true,
            });
            let answer = change(
                r,
                &c,
                step,
                &format!(
                    "restore {} from snapshot {}: {}",
                    plural(todo.len(), "index", "indices"),
                    snap.snapshot,
                    todo.join(", ")
                ),
                Method::POST,
                &path,
                Some(&body),
            )
            .await;
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    reopen(r, &c, &closed).await;
                    return Err(e);
                }
            };
            if let Some(answer) = answer {
                match parse_restore(&answer) {
                    Ok(done) => r.say(format!(
                        "restored {}",
                        plural(done.len(), "index", "indices")
                    )),
                    Err(e) => return Err(r.failed(step, e)),
                }
            }
        }

        // 3. A registration of ours is removed again (the files stay).
        if registered_here {
            change(
                r,
                &c,
                "repository",
                &format!("unregister repository {repo} again (registered for this restore; the files stay in {location})"),
                Method::DELETE,
                &repo_path,
                None,
            )
            .await?;
        }
        let config = files
            .iter()
            .filter(|f| *f != "snapshot.json" && !f.starts_with(&format!("{rel}/")))
            .count();
        if config > 0 {
            let done = r
                .put_config_files(&[
                    "/etc/elasticsearch".to_string(),
                    "/etc/opensearch".to_string(),
                ])
                .await?;
            if done.iter().any(|(_, p)| *p != super::Put::Unchanged) {
                r.note("Elasticsearch reads its configuration at start: restart the node (one node at a time) to use the restored one");
            }
            if done.len() < config {
                r.say(format!(
                    "not restored: {} outside /etc/elasticsearch and /etc/opensearch (by hand from `lsbackup extract`)",
                    plural(config - done.len(), "file", "files")
                ));
            }
        }
        Ok(())
    }
}

/// Open again the indices closed for a restore that then failed (said; errors only said).
async fn reopen(r: &mut HostRestore<'_>, c: &HttpClient, closed: &[String]) {
    for index in closed {
        let path = format!("/{index}/_open");
        match c.send(Method::POST, &path, None).await {
            Ok(resp) if resp.status.is_success() => r.say(format!("reopened index {index}")),
            Ok(resp) => r.say(format!(
                "could not reopen index {index}: {}",
                es_error(resp.status, &resp.body)
            )),
            Err(e) => r.say(format!("could not reopen index {index}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_json_and_repository_dir() {
        let s: SnapshotJson = serde_json::from_str(
            r#"{"snapshot":{"snapshot":"lsbackup-20260101-000000-0a1b2c3d","uuid":"u1","version":"7.10.2",
               "indices":["logs","metrics",".kibana_1"],"state":"SUCCESS","shards":{"total":3,"failed":0,"successful":3}}}"#,
        )
        .unwrap();
        assert_eq!(s.snapshot.snapshot, "lsbackup-20260101-000000-0a1b2c3d");
        assert_eq!(s.snapshot.indices.len(), 3);
        let files: Vec<String> = [
            "snapshot.json",
            "etc/elasticsearch/elasticsearch.yml",
            "var/lib/elasticsearch-snapshots/index-4",
            "var/lib/elasticsearch-snapshots/index.latest",
            "var/lib/elasticsearch-snapshots/indices/x/0/index.latest",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            repository_dir(&files).as_deref(),
            Some("var/lib/elasticsearch-snapshots")
        );
        assert_eq!(repository_dir(&files[..2]), None);
    }

    #[test]
    fn indices_planned_by_their_state() {
        let snap: Vec<String> = ["logs", "metrics", "gone", ".kibana_1", "Bad/Name", "-x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let current = parse_cat_indices(
            br#"[{"index":"logs","status":"open"},{"index":"metrics","status":"close"},{"index":".kibana_1","status":"open"}]"#,
        )
        .unwrap();
        let p = plan_indices(&snap, &current, false);
        assert_eq!(p.restore, ["metrics", "gone"]);
        assert_eq!(p.left_open, ["logs"]);
        assert!(p.close_first.is_empty());
        assert_eq!(p.system, [".kibana_1"]);
        assert_eq!(p.invalid, ["Bad/Name", "-x"]);
        let p = plan_indices(&snap, &current, true);
        assert_eq!(p.close_first, ["logs"]);
        assert!(p.left_open.is_empty());
        assert!(parse_cat_indices(b"{\"error\":1}").is_err());
    }

    #[test]
    fn names_checked_before_they_reach_a_path() {
        for ok in [
            "logs-2024.01.01",
            "lsbackup-testbed-metrics",
            ".kibana_1",
            "a+b",
        ] {
            assert!(valid_index(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "_all", "-x", "A", "a/b", "a b", "a,b", "a*", "a?b", "a#b", "a:b",
            "a\nb",
        ] {
            assert!(!valid_index(bad), "{bad:?}");
        }
        assert!(valid_repository("lsbackup"));
        for bad in ["", "_x", "a/b", "A", "../x"] {
            assert!(!valid_repository(bad), "{bad:?}");
        }
    }

    #[test]
    fn restore_and_snapshot_answers() {
        assert_eq!(
            parse_restore(
                br#"{"snapshot":{"snapshot":"s","indices":["a","b"],"shards":{"total":2,"failed":0,"successful":2}}}"#
            )
            .unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            parse_restore(
                br#"{"snapshot":{"snapshot":"s","indices":["a"],"shards":{"total":2,"failed":1,"successful":1}}}"#
            )
            .unwrap_err(),
            "1 of 2 shards failed to restore"
        );
        assert!(parse_restore(br#"{"accepted":true}"#).is_err());
        let listed = br#"{"snapshots":[{"snapshot":"s1","uuid":"u1","state":"SUCCESS"}]}"#;
        assert!(lists_snapshot(listed, "s1", "u1"));
        assert!(lists_snapshot(listed, "s1", ""));
        assert!(!lists_snapshot(listed, "s1", "other"));
        assert!(!lists_snapshot(listed, "s2", "u1"));
        assert!(!lists_snapshot(b"<html>", "s1", ""));
    }
}
