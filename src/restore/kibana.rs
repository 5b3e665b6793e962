//! Restore Kibana / OpenSearch Dashboards saved objects: the backup's `saved_objects.ndjson`
//! (the saved-objects export) is imported again with `POST /api/saved_objects/_import?overwrite=true`
//! (a multipart form, `kbn-xsrf`/`osd-xsrf` headers; `securitytenant` when `kibana_tenant` is
//! set). Objects with the ids of the backup are created, or replace the current ones of the same
//! type and id; objects that were created since are left alone. The export's summary line is not
//! sent. Kibana's answer (`success`, `successCount`, `errors`) is checked: any object it refused
//! (missing references, unsupported type, ...) fails the restore, naming them.
//!
//! The config dir is not put back (`lsbackup extract` and docs/components/kibana.md). The API is
//! reached as for the backup: `kibana_url`, else Kibana's config file (`server.port`,
//! `server.host`, `server.ssl.*`); credentials from `kibana_user`/`kibana_password`, else the
//! ones Kibana uses (`elasticsearch.username`/`password` of its config file), sent only over
//! verified https unless `kibana_allow_insecure`. A dry run counts the objects it would import.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;

use crate::components::kibana::{CONFIG_DIRS, CONFIG_FILES, is_summary, kibana_error};
use crate::components::local_api;
use crate::http::{HttpClient, HttpError, TlsSettings};
use crate::shell::Script;

use super::{HostRestore, Restore, RestoreError};

pub struct Kibana;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const ENTRY: &str = "saved_objects.ndjson";

const CAT: &str = r#"exec cat -- "$1""#;

/// The saved objects of an export, without its summary line: the NDJSON to import and the
/// number of objects per type.
#[derive(Debug, PartialEq)]
pub struct Objects {
    pub ndjson: Vec<u8>,
    pub count: usize,
    pub by_type: BTreeMap<String, usize>,
}

/// Read an export: each non-empty line a saved object (`type` and `id`), the summary line
/// (`exportedCount`) left out.
pub fn parse_export(data: &[u8]) -> Result<Objects, String> {
    #[derive(Deserialize)]
    struct Obj {
        #[serde(rename = "type")]
        kind: String,
        id: String,
    }
    let mut out = Objects {
        ndjson: Vec::with_capacity(data.len()),
        count: 0,
        by_type: BTreeMap::new(),
    };
    for (n, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) || is_summary(line) {
            continue;
        }
        let o: Obj = serde_json::from_slice(line)
            .map_err(|e| format!("line {}: not a saved object: {e}", n + 1))?;
        if o.kind.is_empty() || o.id.is_empty() {
            return Err(format!("line {}: a saved object without type or id", n + 1));
        }
        *out.by_type
            .entry(local_api::one_line(&o.kind, 60))
            .or_default() += 1;
        out.count += 1;
        out.ndjson.extend_from_slice(line);
        out.ndjson.push(b'\n');
    }
    Ok(out)
}

/// A `multipart/form-data` body with the one file field `file` Kibana's import reads, and its
/// content type (with a boundary not found in the data).
pub fn multipart(filename: &str, data: &[u8], seed: u64) -> (String, Vec<u8>) {
    let mut n = seed;
    let boundary = loop {
        let b = format!("lsbackup-{n:016x}");
        if !data.windows(b.len()).any(|w| w == b.as_bytes()) {
            break b;
        }
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    };
    let mut body = Vec::with_capacity(data.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/ndjson\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Kibana's answer to `_import`.
#[derive(Debug, Deserialize)]
pub struct ImportResult {
    pub success: bool,
    #[serde(rename = "successCount", default)]
    pub success_count: u64,
    #[serde(default)]
    pub errors: Vec<ImportError>,
}

#[derive(Debug, Deserialize)]
pub struct ImportError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub id: String,
}

impl ImportResult {
    /// The objects refused, one line each (at most `max`, then how many more).
    pub fn describe_errors(&self, max: usize) -> String {
        let mut lines: Vec<String> = self
            .errors
            .iter()
            .take(max)
            .map(|e| {
                let mut s = format!("{}/{}", e.kind, e.id);
                if let Some(t) = e.title.as_deref().filter(|t| !t.is_empty()) {
                    s.push_str(&format!(" ({t:?})"));
                }
                s.push_str(&format!(": {}", e.error.kind));
                if !e.error.references.is_empty() {
                    let refs: Vec<String> = e
                        .error
                        .references
                        .iter()
                        .map(|r| format!("{}/{}", r.kind, r.id))
                        .collect();
                    s.push_str(&format!(" {}", refs.join(", ")));
                }
                if let Some(m) = e.error.message.as_deref().filter(|m| !m.is_empty()) {
                    s.push_str(&format!(" ({m})"));
                }
                local_api::one_line(&s, 300)
            })
            .collect();
        if self.errors.len() > max {
            lines.push(format!("and {} more", self.errors.len() - max));
        }
        lines.join("; ")
    }
}

fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1"
    )
}

/// The URL that answers `GET /api/status` with the credentials, and its client.
async fn connect(r: &mut HostRestore<'_>, timeout: Duration) -> Result<HttpClient, RestoreError> {
    let step = "connect";
    let dirs: Vec<String> = match r.var("kibana_config_dir").trim() {
        "auto" | "" => CONFIG_DIRS.iter().map(|d| d.to_string()).collect(),
        d => vec![d.trim_end_matches('/').to_string()],
    };
    // the backup's search: the first kibana.yml / opensearch_dashboards.yml of those dirs
    let found = r
        .query_status(
            step,
            &Script::new(local_api::FIRST_FILE)
                .args(local_api::config_candidates(&dirs, CONFIG_FILES)),
            None,
        )
        .await?
        .stdout_text();
    let settings = if found.is_empty() {
        BTreeMap::new()
    } else {
        let bytes = r
            .query(step, &Script::new(CAT).arg(found.as_str()), None)
            .await?
            .stdout;
        local_api::flat_yaml(&String::from_utf8_lossy(&bytes))
            .map_err(|e| r.failed(step, format!("{found}: {}", local_api::one_line(&e, 200))))?
    };
    let setting = |k: &str| local_api::first(&settings, k).map(str::to_string);
    let (creds, from) = crate::components::kibana::credentials(
        r.var("kibana_user"),
        r.var("kibana_password"),
        &settings,
        &found,
    );
    let urls: Vec<String> = match r.var("kibana_url").trim() {
        "auto" | "" => {
            let port = setting("server.port").unwrap_or_else(|| "5601".into());
            if port.parse::<u16>().is_err() {
                return Err(r.failed(
                    step,
                    format!("server.port in {found} is not a port: {port:?}"),
                ));
            }
            let scheme = if setting("server.ssl.enabled").as_deref() == Some("true") {
                "https"
            } else {
                "http"
            };
            let mut hosts = vec!["127.0.0.1".to_string()];
            if let Some(h) = setting("server.host")
                .filter(|a| local_api::is_host_name(a) && a != "0.0.0.0" && a != "localhost")
                && !hosts.contains(&h)
            {
                hosts.push(h);
            }
            hosts
                .iter()
                .map(|h| format!("{scheme}://{h}:{port}"))
                .collect()
        }
        u => vec![u.trim_end_matches('/').to_string()],
    };
    let mut tls = TlsSettings {
        verify: !matches!(
            r.var("kibana_tls_verify")
                .trim()
                .to_ascii_lowercase()
                .as_str(),
            "false" | "no" | "off" | "0"
        ),
        ..Default::default()
    };
    let ca = match r.var("kibana_ca_cert").trim() {
        "auto" => settings
            .get("server.ssl.certificateAuthorities")
            .and_then(|v| v.first().cloned())
            .unwrap_or_default(),
        c => c.to_string(),
    };
    let files = [
        (ca, 0),
        (r.var("kibana_client_cert").trim().to_string(), 1),
        (r.var("kibana_client_key").trim().to_string(), 2),
    ];
    for (path, slot) in files {
        if path.is_empty() || !urls.iter().any(|u| u.starts_with("https:")) {
            continue;
        }
        let pem = r
            .query(step, &Script::new(CAT).arg(path.as_str()), None)
            .await?
            .stdout;
        match slot {
            0 => tls.ca_pem = Some(pem),
            1 => tls.client_cert_pem = Some(pem),
            _ => tls.client_key_pem = Some(pem),
        }
    }
    let tenant = match r.var("kibana_tenant").trim() {
        "" => None,
        t => Some(HeaderValue::from_str(t).map_err(|_| {
            r.failed(
                step,
                format!("kibana_tenant {t:?} cannot be an HTTP header value"),
            )
        })?),
    };
    let insecure_ok = is_true(r.var("kibana_allow_insecure"));
    let mut errors = Vec::new();
    for url in &urls {
        let mut b = r
            .http(url)?
            .timeout(timeout)
            .tls(tls.clone())
            .header(
                HeaderName::from_static("kbn-xsrf"),
                HeaderValue::from_static("true"),
            )
            .header(
                HeaderName::from_static("osd-xsrf"),
                HeaderValue::from_static("true"),
            );
        if let Some(t) = &tenant {
            b = b.header(HeaderName::from_static("securitytenant"), t.clone());
        }
        if let Some((user, password)) = &creds {
            b = b
                .basic_auth(user.clone(), password.clone())
                .allow_insecure_credentials(insecure_ok);
        }
        let client = match b.build() {
            Ok(c) => c,
            Err(HttpError::InsecureCredentials { why, .. }) => {
                return Err(r.failed(
                    step,
                    format!(
                        "{url}: not sending the credentials ({from}): {why}; enable TLS in Kibana and give its CA with kibana_ca_cert, or set kibana_allow_insecure=true"
                    ),
                ));
            }
            Err(e) => return Err(r.failed(step, e)),
        };
        let probe =
            tokio::time::timeout(PROBE_TIMEOUT, client.send(Method::GET, "/api/status", None))
                .await;
        match probe {
            Ok(Ok(resp)) if resp.status.is_success() => {
                r.say(format!("Kibana API at {url} (credentials: {from})"));
                return Ok(client);
            }
            Ok(Ok(resp)) => errors.push(format!(
                "{url}: GET /api/status: {} (credentials: {from})",
                kibana_error(resp.status, &resp.body)
            )),
            Ok(Err(e)) => errors.push(format!("{url}: {e}")),
            Err(_) => errors.push(format!(
                "{url}: no answer within {}s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }
    Err(r.failed(step, format!("no usable HTTP API: {}", errors.join("; "))))
}

#[async_trait::async_trait]
impl Restore for Kibana {
    async fn restore_host(&self, r: &mut HostRestore<'_>) -> Result<(), RestoreError> {
        let config_files = r.files_under("").iter().filter(|(_, p)| p != ENTRY).count();
        if r.entry(ENTRY).is_none() {
            r.note("the backup holds no saved-objects export of Kibana: nothing to import");
            return Ok(());
        }
        let step = "saved objects";
        let objects = parse_export(&r.read_local(ENTRY)?)
            .map_err(|e| r.failed(step, format!("{ENTRY}: {e}")))?;
        let secs = r.var("kibana_timeout").trim().to_string();
        let timeout = match secs.as_str() {
            "" => Duration::from_secs(300),
            s => Duration::from_secs(s.parse::<u64>().map_err(|_| {
                r.failed(
                    step,
                    format!("kibana_timeout must be a number of seconds, not {secs:?}"),
                )
            })?),
        };
        let client = connect(r, timeout).await?;
        let kinds: Vec<String> = objects
            .by_type
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let path = "/api/saved_objects/_import?overwrite=true";
        if objects.count == 0 {
            r.say("the export holds no saved objects: nothing to import");
        } else {
            r.say(format!(
                "{}import {} saved objects ({}), replacing those with the same type and id (POST {path})",
                r.would(),
                objects.count,
                kinds.join(", ")
            ));
        }
        if config_files > 0 {
            let done = r
                .put_config_files(&[
                    "/etc/kibana".to_string(),
                    "/etc/opensearch-dashboards".to_string(),
                ])
                .await?;
            if done.iter().any(|(_, p)| *p != super::Put::Unchanged) {
                r.note(
                    "Kibana reads its configuration at start: restart it to use the restored one",
                );
            }
        }
        if r.is_dry_run() || objects.count == 0 {
            return Ok(());
        }
        let seed = jiff::Timestamp::now().as_nanosecond() as u64 ^ u64::from(std::process::id());
        let (ctype, body) = multipart(ENTRY, &objects.ndjson, seed);
        let ctype = HeaderValue::from_str(&ctype).map_err(|e| r.failed(step, e))?;
        let resp = client
            .send_encoded(Method::POST, path, ctype, body)
            .await
            .map_err(|e| r.failed(step, e))?;
        if !resp.status.is_success() {
            return Err(r.failed(
                step,
                format!("POST {path}: {}", kibana_error(resp.status, &resp.body)),
            ));
        }
        let result: ImportResult = resp.json().map_err(|e| r.failed(step, e))?;
        if !result.success || !result.errors.is_empty() {
            return Err(r.failed(
                step,
                format!(
                    "Kibana imported {} of {} saved objects; it refused: {}",
                    result.success_count,
                    objects.count,
                    result.describe_errors(10)
                ),
            ));
        }
        r.say(format!(
            "Kibana imported {} saved objects",
            result.success_count
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_read_without_its_summary() {
        let data =
            b"{\"type\":\"index-pattern\",\"id\":\"p\",\"attributes\":{\"title\":\"logs-*\"}}\n\
            {\"type\":\"dashboard\",\"id\":\"d1\",\"attributes\":{}}\n\n\
            {\"type\":\"dashboard\",\"id\":\"d2\"}\n\
            {\"exportedCount\":3,\"missingRefCount\":0,\"missingReferences\":[]}";
        let o = parse_export(data).unwrap();
        assert_eq!(o.count, 3);
        assert_eq!(o.by_type["dashboard"], 2);
        assert_eq!(o.by_type["index-pattern"], 1);
        let text = String::from_utf8(o.ndjson).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("exportedCount"));
        assert!(text.ends_with("{\"type\":\"dashboard\",\"id\":\"d2\"}\n"));
        assert!(parse_export(b"{\"type\":\"x\"}").is_err());
        assert!(parse_export(b"<html>").unwrap_err().contains("line 1"));
        assert_eq!(parse_export(b"{\"exportedCount\":0}\n").unwrap().count, 0);
    }

    #[test]
    fn multipart_form_with_a_boundary_not_in_the_data() {
        let seed = 7;
        let clash = format!("x lsbackup-{seed:016x} y");
        let (ctype, body) = multipart("saved_objects.ndjson", clash.as_bytes(), seed);
        let boundary = ctype
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        assert_ne!(boundary, format!("lsbackup-{seed:016x}"));
        assert!(!clash.contains(boundary));
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"saved_objects.ndjson\"\r\n")));
        assert!(text.contains(&format!("\r\n\r\n{clash}\r\n--{boundary}--\r\n")));
    }

    #[test]
    fn import_answers() {
        let ok: ImportResult = serde_json::from_str(
            r#"{"success":true,"successCount":2,"successResults":[{"type":"dashboard","id":"d","meta":{"title":"D","icon":"dashboardApp"}}]}"#,
        )
        .unwrap();
        assert!(ok.success && ok.errors.is_empty());
        assert_eq!(ok.success_count, 2);
        let bad: ImportResult = serde_json::from_str(
            r#"{"success":false,"successCount":1,"errors":[
                {"id":"v","type":"visualization","title":"My vis","meta":{"title":"My vis","icon":"visualizeApp"},
                 "error":{"type":"missing_references","references":[{"type":"index-pattern","id":"gone"}]}},
                {"id":"x","type":"canvas","title":"C","error":{"type":"unsupported_type"}},
                {"id":"y","type":"dashboard","error":{"type":"unknown","message":"boom\nline","statusCode":500}}]}"#,
        )
        .unwrap();
        assert!(!bad.success);
        assert_eq!(
            bad.describe_errors(2),
            "visualization/v (\"My vis\"): missing_references index-pattern/gone; canvas/x (\"C\"): unsupported_type; and 1 more"
        );
        assert!(
            bad.describe_errors(5)
                .ends_with("dashboard/y: unknown (boom line)")
        );
    }
}
