//! Kibana / OpenDistro Kibana / OpenSearch Dashboards: every saved object (index patterns,
//! visualizations, dashboards, saved searches, advanced settings) through the saved-objects
//! export API, as one NDJSON file that `POST /api/saved_objects/_import` takes back, plus the
//! config dir.
//!
//! lsbackup speaks the API itself through the host's SSH connection (a direct-tcpip channel to
//! Kibana's address as the host sees it); the export is streamed into the archive. Credentials
//! (kibana_user/kibana_password, else the ones Kibana itself uses, read from its config file)
//! stay in lsbackup and are sent only over https with a verified certificate, unless the user
//! allows plain http explicitly (`kibana_allow_insecure`). The host needs no curl, no python.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};

use super::local_api::{self, Probe};
use super::{Native, NativeRef};
use crate::engine::{Failed, HostCtx, StepError};
use crate::http::{HttpClient, HttpError, Scheme, TlsSettings};
use crate::secret::Secret;

/// The declarative facts; the logic is [`Kibana`].
pub const SPEC: &str = r#"
name: kibana
description: Kibana/OpenSearch Dashboards saved objects (export API, NDJSON) and config
groups: [kibana, opensearch_dashboards]
hosts: first
vars:
  # http(s)://host:port; auto: server.port (else 5601) on 127.0.0.1, server.host, the host name
  # and the host's addresses; https when server.ssl.enabled is true in the config file, else http
  kibana_url: auto
  # auto: the first of /etc/kibana, /etc/opensearch-dashboards, /usr/share/opensearch-dashboards/config,
  # /usr/share/kibana/config holding kibana.yml or opensearch_dashboards.yml
  kibana_config_dir: auto
  # "" = the credentials from the config file (elasticsearch.username/password, opensearch.*)
  kibana_user: ""
  kibana_password: ""
  # OpenDistro/OpenSearch security multi-tenancy: export this tenant ("" = the user's default)
  kibana_tenant: ""
  # saved-object types to export (comma-separated)
  kibana_saved_object_types: index-pattern,visualization,dashboard,search,config
  # CA (PEM file on the host) of an https Kibana; auto: server.ssl.certificateAuthorities from
  # the config file; "" = none. false: do not verify its certificate (then no credentials are sent)
  kibana_ca_cert: auto
  kibana_tls_verify: "true"
  # TLS client certificate and key (PEM files on the host) when Kibana asks for one
  kibana_client_cert: ""
  kibana_client_key: ""
  # true: send the credentials over plain http (or unverified https) anyway. Anyone on the host
  # who can listen on Kibana's port while it is down could read them: prefer enabling TLS
  kibana_allow_insecure: "false"
  # seconds the export may take (between two reads of its answer)
  kibana_timeout: "300"
not_covered:
  - saved objects of other tenants than the one exported (OpenDistro/OpenSearch multi-tenancy; set kibana_tenant and run again per tenant)
  - the Kibana data dir (/var/lib/kibana holds only the instance uuid); the .kibana index itself is in the Elasticsearch snapshot
  - secrets kept in the Kibana keystore (kibana-keystore) rather than in kibana.yml
"#;

pub fn make() -> NativeRef {
    NativeRef(Arc::new(Kibana::default()))
}

pub(crate) const CONFIG_DIRS: &[&str] = &[
    "/etc/kibana",
    "/etc/opensearch-dashboards",
    "/usr/share/opensearch-dashboards/config",
    "/usr/share/kibana/config",
];
pub(crate) const CONFIG_FILES: &[&str] = &["kibana.yml", "opensearch_dashboards.yml"];
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The credentials Kibana is called with: `kibana_user`/`kibana_password` when set, else
/// Kibana's own from its config file `yml_path` (`elasticsearch.username`/`.password`, or the
/// OpenSearch Dashboards names); and where they came from, for messages.
pub(crate) fn credentials(
    user: &str,
    password: &str,
    settings: &BTreeMap<String, Vec<String>>,
    yml_path: &str,
) -> (Option<(String, Secret)>, String) {
    let setting = |k: &str| local_api::first(settings, k).map(str::to_string);
    match user {
        "" => match setting("elasticsearch.username").or_else(|| setting("opensearch.username")) {
            Some(u) => {
                let p = setting("elasticsearch.password")
                    .or_else(|| setting("opensearch.password"))
                    .unwrap_or_default();
                let from = format!("{u} from {yml_path}");
                (Some((u, Secret::from(p))), from)
            }
            None => (None, "none".to_string()),
        },
        u => (
            Some((u.to_string(), Secret::from(password.to_string()))),
            "kibana_user".to_string(),
        ),
    }
}

/// The component; per host of a run, how to reach its Kibana.
#[derive(Default)]
pub struct Kibana {
    conns: Mutex<HashMap<String, Conn>>,
}

/// What select found: the URLs that answer, TLS, the credentials and where they came from.
#[derive(Clone)]
struct Conn {
    urls: Vec<String>,
    tls: TlsSettings,
    creds: Option<(String, Secret)>,
    /// `kibana_user`, `kibanaserver from /etc/kibana/kibana.yml`, `none`.
    from: String,
    insecure_ok: bool,
    tenant: Option<HeaderValue>,
    /// The settings cannot work at all (TLS without a CA, ...): the connect step says so.
    unusable: Option<StepError>,
}

impl Conn {
    fn client(
        &self,
        h: &HostCtx<'_>,
        url: &str,
        timeout: Duration,
        with_creds: bool,
    ) -> Result<HttpClient, StepError> {
        let mut b = h
            .http(url)?
            .timeout(timeout)
            .tls(self.tls.clone())
            .header(
                HeaderName::from_static("kbn-xsrf"),
                HeaderValue::from_static("true"),
            )
            .header(
                HeaderName::from_static("osd-xsrf"),
                HeaderValue::from_static("true"),
            );
        if let Some(t) = &self.tenant {
            b = b.header(HeaderName::from_static("securitytenant"), t.clone());
        }
        if with_creds && let Some((user, password)) = &self.creds {
            b = b
                .basic_auth(user.clone(), password.clone())
                .allow_insecure_credentials(self.insecure_ok);
        }
        b.build().map_err(|e| match e {
            HttpError::InsecureCredentials { why, .. } => StepError::config(format!(
                "{url}: not sending the credentials ({}): {why}; enable TLS in Kibana (server.ssl.enabled, server.ssl.certificate/key) and give its CA with kibana_ca_cert, or set kibana_allow_insecure=true to send them anyway",
                self.from
            )),
            e => e.into(),
        })
    }
}

impl Kibana {
    fn conn(&self, host: &str) -> Option<Conn> {
        self.conns.lock().ok()?.get(host).cloned()
    }

    fn set_conn(&self, host: &str, c: Option<Conn>) {
        if let Ok(mut m) = self.conns.lock() {
            match c {
                Some(c) => m.insert(host.to_string(), c),
                None => m.remove(host),
            };
        }
    }
}

const V_CONF: &str = "kb_conf";

#[async_trait::async_trait]
impl Native for Kibana {
    fn describe(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let v = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let url = match v("kibana_url") {
            "auto" => "server.port of the config file (5601) on 127.0.0.1, server.host, the host name and addresses; https when server.ssl.enabled".to_string(),
            u => u.to_string(),
        };
        let creds = match v("kibana_user") {
            "" => "elasticsearch.username/password (opensearch.*) of the config file".to_string(),
            u => format!("user {u}, password {}", v("kibana_password")),
        };
        vec![
            format!("config dir: {} (kibana_config_dir)", v("kibana_config_dir")),
            format!(
                "HTTP API from lsbackup through the SSH connection: {url}; TLS CA {}, verify {}",
                v("kibana_ca_cert"),
                v("kibana_tls_verify")
            ),
            format!(
                "credentials: {creds}; sent only over verified https{}",
                if v("kibana_allow_insecure") == "true" {
                    " (kibana_allow_insecure=true: also over plain http)"
                } else {
                    ""
                }
            ),
            "GET /api/status (version)".into(),
            format!(
                "POST /api/saved_objects/_export (types {}{}) streamed into saved_objects.ndjson, which must end with the export summary",
                v("kibana_saved_object_types"),
                match v("kibana_tenant") {
                    "" => String::new(),
                    t => format!(", tenant {t}"),
                }
            ),
            "copy the config dir".into(),
        ]
    }

    async fn select(&self, h: &mut HostCtx<'_>) -> Result<Option<String>, StepError> {
        self.set_conn(h.host(), None);
        let step = "connect";
        let (conf, file) = match h.var("kibana_config_dir") {
            "auto" => local_api::find_config(h, step, CONFIG_DIRS, CONFIG_FILES)
                .await?
                .unwrap_or_else(|| (CONFIG_DIRS[0].to_string(), CONFIG_FILES[0].to_string())),
            d => {
                let d = d.trim_end_matches('/').to_string();
                match local_api::find_config(h, step, &[d.as_str()], CONFIG_FILES).await? {
                    Some(x) => x,
                    None => (d, CONFIG_FILES[0].to_string()),
                }
            }
        };
        h.set_var(V_CONF, conf.clone());
        let yml_path = format!("{conf}/{file}");
        let settings = match h.read_file(step, &yml_path, None).await? {
            Some(bytes) => local_api::flat_yaml(&String::from_utf8_lossy(&bytes)).map_err(|e| {
                StepError::bad_data(format!("{yml_path}: {}", local_api::one_line(&e, 200)))
            })?,
            None => BTreeMap::new(),
        };
        let setting = |k: &str| local_api::first(&settings, k).map(str::to_string);

        let (creds, from) = credentials(
            h.var("kibana_user"),
            h.var("kibana_password"),
            &settings,
            &yml_path,
        );

        let ca = match h.var("kibana_ca_cert").trim() {
            "auto" => settings
                .get("server.ssl.certificateAuthorities")
                .and_then(|v| v.first().cloned())
                .unwrap_or_default(),
            c => c.to_string(),
        };
        let verify = !matches!(
            h.var("kibana_tls_verify")
                .trim()
                .to_ascii_lowercase()
                .as_str(),
            "false" | "no" | "off" | "0"
        );
        let cert = h.var("kibana_client_cert").trim().to_string();
        let key = h.var("kibana_client_key").trim().to_string();
        let tls = h.tls_from_host(step, &ca, &cert, &key, verify).await?;
        let tenant = match h.var("kibana_tenant").trim() {
            "" => None,
            t => Some(HeaderValue::from_str(t).map_err(|_| {
                StepError::config(format!(
                    "kibana_tenant {t:?} cannot be an HTTP header value"
                ))
            })?),
        };

        let urls = match h.var("kibana_url") {
            "auto" => {
                let port = setting("server.port").unwrap_or_else(|| "5601".into());
                port.parse::<u16>().map_err(|_| {
                    StepError::bad_data(format!(
                        "server.port in {yml_path} is not a port: {port:?}"
                    ))
                })?;
                let scheme = if setting("server.ssl.enabled").as_deref() == Some("true") {
                    "https"
                } else {
                    "http"
                };
                let mut hosts = vec!["127.0.0.1".to_string()];
                if let Some(sh) = setting("server.host")
                    .filter(|a| local_api::is_host_name(a) && a != "0.0.0.0" && a != "localhost")
                    && !hosts.contains(&sh)
                {
                    hosts.push(sh);
                }
                for a in local_api::host_addresses(h, step).await {
                    if !hosts.contains(&a) {
                        hosts.push(a);
                    }
                }
                hosts
                    .iter()
                    .map(|a| format!("{scheme}://{a}:{port}"))
                    .collect::<Vec<_>>()
            }
            u => vec![u.trim().trim_end_matches('/').to_string()],
        };

        let mut conn = Conn {
            urls: vec![],
            tls,
            creds,
            from,
            insecure_ok: h.var_is_true("kibana_allow_insecure"),
            tenant,
            unusable: None,
        };
        // Does anything answer there? Asked without credentials (a 401 is an answer).
        let mut silent: Vec<String> = Vec::new();
        for url in &urls {
            let c = match conn.client(h, url, PROBE_TIMEOUT, false) {
                Ok(c) => c,
                Err(e) => {
                    // the same settings for every URL: this host is the one, its settings
                    // are wrong
                    let hint = if e.cause.contains("CA") {
                        ": set kibana_ca_cert (the CA of Kibana's certificate, a PEM file on the host), or kibana_tls_verify=false (then no credentials are sent)"
                    } else {
                        ""
                    };
                    conn.unusable = Some(StepError::new(e.kind, format!("{}{hint}", e.cause)));
                    break;
                }
            };
            match local_api::probe(h, step, &c, "/api/status", kibana_error).await {
                Probe::Ok(_) | Probe::Refused(_) => conn.urls.push(url.clone()),
                Probe::Silent(why) => silent.push(format!("{url}: {why}")),
            }
        }
        if conn.urls.is_empty() && conn.unusable.is_none() {
            return Err(StepError::api(format!(
                "no Kibana/OpenSearch Dashboards HTTP API answers at {} ({})",
                urls.join(" "),
                silent.first().map(String::as_str).unwrap_or("no URL")
            )));
        }
        self.set_conn(h.host(), Some(conn));
        Ok(None)
    }

    async fn backup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        let conf = h.var(V_CONF).to_string();
        if let Some(conn) = self.conn(h.host()) {
            match connect(h, &conn).await {
                Ok(url) => {
                    if let Err(e) = export(h, &conn, &url).await {
                        h.fail("saved objects", e);
                    }
                }
                Err(e) => {
                    h.fail("connect", e);
                    h.record_call(
                        "saved objects",
                        "skipped: \"connect\" failed",
                        None,
                        Instant::now(),
                    );
                }
            }
        }
        h.step("config");
        if let Err(e) = h.copy("config", &[conf], false).await {
            h.fail("config", e);
        }
        Ok(())
    }

    async fn cleanup(&self, h: &mut HostCtx<'_>) -> Result<(), Failed> {
        // nothing was left on the host; forget what this run kept in memory
        self.set_conn(h.host(), None);
        Ok(())
    }
}

/// `GET /api/status` with the credentials on each URL that answered: the first that works
/// (its version recorded).
async fn connect(h: &mut HostCtx<'_>, conn: &Conn) -> Result<String, StepError> {
    let step = "connect";
    h.step(step);
    if let Some(e) = &conn.unusable {
        return Err(e.clone());
    }
    let mut errs: Vec<String> = Vec::new();
    for url in &conn.urls {
        // a refusal to send the credentials holds for every URL alike: said once
        let c = conn.client(h, url, CALL_TIMEOUT, true)?;
        match local_api::probe(h, step, &c, "/api/status", kibana_error).await {
            Probe::Ok(body) => {
                if let Some(v) = version_of(&body) {
                    h.version("kibana", &v);
                }
                return Ok(url.clone());
            }
            Probe::Refused(why) | Probe::Silent(why) => errs.push(format!("{url}: {why}")),
        }
    }
    let all = errs.join("; ");
    let hint = if all.contains("HTTP 401") || all.contains("HTTP 403") {
        format!(
            " (credentials: {}; set kibana_user/kibana_password)",
            conn.from
        )
    } else {
        String::new()
    };
    Err(StepError::api(format!("no usable HTTP API: {all}{hint}")))
}

/// The export, streamed into `saved_objects.ndjson`; an answer that does not end with the
/// export's summary line adds nothing.
async fn export(h: &mut HostCtx<'_>, conn: &Conn, url: &str) -> Result<(), StepError> {
    let step = "saved objects";
    h.step(step);
    let secs = h.var("kibana_timeout").trim().to_string();
    let timeout = secs.parse::<u64>().map(Duration::from_secs).map_err(|_| {
        StepError::config(format!(
            "kibana_timeout must be a number of seconds, not {secs:?}"
        ))
    })?;
    let types: Vec<String> = h
        .var("kibana_saved_object_types")
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if types.is_empty() {
        return Err(StepError::config("kibana_saved_object_types is empty"));
    }
    let c = conn.client(h, url, timeout, true)?;
    let body = json!({"type": types, "includeReferencesDeep": true});
    let path = "/api/saved_objects/_export";
    let t = Instant::now();
    let r = c.stream(Method::POST, path, Some(&body)).await;
    let status = match &r {
        Ok((s, _)) => Some(s.as_u16()),
        Err(HttpError::Status { status, .. }) => Some(status.as_u16()),
        Err(_) => None,
    };
    h.record_call(step, &format!("POST {path}"), status, t);
    let (_, reader) = r.map_err(|e| match e {
        HttpError::Status {
            status, snippet, ..
        } => StepError::api(format!(
            "POST {path}: {}",
            kibana_error(status, snippet.as_bytes())
        )),
        e => e.into(),
    })?;
    h.add_reader("saved_objects.ndjson", ExportCheck::new(reader))
        .await
}

/// Passes an NDJSON export through, and turns its end into an error unless the last line is
/// the export's summary (`{"exportedCount": N, ...}`): a truncated answer, or something that is
/// no export, never becomes an entry.
pub struct ExportCheck<R> {
    inner: R,
    /// The bytes after the last newline seen (the last line so far), at most `LAST_MAX`.
    last: Vec<u8>,
    /// The line before (when `last` is empty after a trailing newline).
    prev: Vec<u8>,
    overflow: bool,
}

const LAST_MAX: usize = 64 * 1024;

impl<R> ExportCheck<R> {
    pub fn new(inner: R) -> ExportCheck<R> {
        ExportCheck {
            inner,
            last: Vec::new(),
            prev: Vec::new(),
            overflow: false,
        }
    }

    fn track(&mut self, data: &[u8]) {
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            let (line, ends) = match chunk.strip_suffix(b"\n") {
                Some(l) => (l, true),
                None => (chunk, false),
            };
            if self.last.len() + line.len() <= LAST_MAX {
                self.last.extend_from_slice(line);
            } else {
                self.overflow = true;
            }
            if ends {
                if !self.last.iter().all(u8::is_ascii_whitespace) || self.overflow {
                    self.prev = std::mem::take(&mut self.last);
                    if self.overflow {
                        self.prev.clear();
                    }
                }
                self.last.clear();
                self.overflow = false;
            }
        }
    }

    /// Whether what passed ends with the summary line.
    pub fn complete(&self) -> bool {
        let line = if self.last.iter().all(u8::is_ascii_whitespace) {
            &self.prev
        } else {
            &self.last
        };
        is_summary(line)
    }
}

/// `{"exportedCount": N, ...}`.
pub fn is_summary(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Summary {
        #[serde(rename = "exportedCount")]
        exported_count: u64,
    }
    serde_json::from_slice::<Summary>(line).is_ok_and(|s| s.exported_count < u64::MAX)
}

impl<R: AsyncRead + Unpin> AsyncRead for ExportCheck<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n == 0 {
                    if !self.complete() {
                        return Poll::Ready(Err(io::Error::other(
                            "the export does not end with its summary line (exportedCount): truncated or not an export",
                        )));
                    }
                } else {
                    let data = buf.filled()[before..].to_vec();
                    self.track(&data);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// The version from `GET /api/status`.
pub fn version_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Status {
        version: Version,
    }
    #[derive(Deserialize)]
    struct Version {
        number: String,
    }
    let s: Status = serde_json::from_slice(body).ok()?;
    Some(local_api::one_line(&s.version.number, 40))
}

/// A Kibana error answer as one line: `HTTP 401 Unauthorized: Authentication Exception`.
pub fn kibana_error(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        error: String,
        #[serde(default)]
        message: String,
    }
    let code = status.as_u16();
    match serde_json::from_slice::<Body>(body) {
        Ok(b) if !b.error.is_empty() || !b.message.is_empty() => {
            let mut s = format!("HTTP {code}");
            if !b.error.is_empty() {
                s.push_str(&format!(" {}", local_api::one_line(&b.error, 80)));
            }
            if !b.message.is_empty() {
                s.push_str(&format!(": {}", local_api::one_line(&b.message, 300)));
            }
            s
        }
        _ => {
            let snippet = local_api::body_snippet(body);
            if snippet.is_empty() {
                format!("HTTP {code} {}", status.canonical_reason().unwrap_or(""))
                    .trim_end()
                    .to_string()
            } else {
                format!("HTTP {code}: {snippet}")
            }
        }
    }
}

/// Whether a URL is https (for messages and tests).
pub fn is_https(url: &str) -> bool {
    crate::http::Endpoint::parse(url).is_ok_and(|e| e.scheme == Scheme::Https)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pass(chunks: &[&[u8]]) -> io::Result<Vec<u8>> {
        let data: Vec<u8> = chunks.concat();
        // a reader that yields small pieces, so lines span reads
        let mut r = ExportCheck::new(tokio_test_reader(data));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.map(|_| out)
    }

    fn tokio_test_reader(data: Vec<u8>) -> impl AsyncRead + Unpin {
        let chunks: Vec<io::Result<bytes::Bytes>> = data
            .chunks(7)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        tokio_util::io::StreamReader::new(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn export_must_end_with_its_summary() {
        let ok: &[&[u8]] = &[
            b"{\"type\":\"dashboard\",\"id\":\"a\"}\n",
            b"{\"exportedCount\":1,\"missingRefCount\":0,\"missingReferences\":[]}",
        ];
        assert_eq!(pass(ok).await.unwrap(), ok.concat());
        let trailing: &[&[u8]] = &[b"{\"x\":1}\n{\"exportedCount\":0}\n\n"];
        assert!(pass(trailing).await.is_ok());
        let truncated: &[&[u8]] = &[b"{\"exportedCount\":1}\n{\"type\":\"dash"];
        let e = pass(truncated).await.unwrap_err();
        assert!(e.to_string().contains("summary line"), "{e}");
        assert!(pass(&[b"<html>exportedCount</html>"]).await.is_err());
        assert!(pass(&[b""]).await.is_err());
        // a summary look-alike inside a string is no summary
        assert!(
            pass(&[b"{\"title\":\"{\\\"exportedCount\\\":1}\"}"])
                .await
                .is_err()
        );
    }

    #[test]
    fn errors_and_versions() {
        assert_eq!(
            kibana_error(
                StatusCode::UNAUTHORIZED,
                br#"{"statusCode":401,"error":"Unauthorized","message":"Authentication Exception"}"#
            ),
            "HTTP 401 Unauthorized: Authentication Exception"
        );
        assert_eq!(
            kibana_error(StatusCode::BAD_GATEWAY, b"<html>\n\x1b[31mbad</html>"),
            "HTTP 502: <html> ?[31mbad</html>"
        );
        assert_eq!(
            kibana_error(StatusCode::FORBIDDEN, b""),
            "HTTP 403 Forbidden"
        );
        assert_eq!(
            version_of(br#"{"name":"n","version":{"number":"7.10.2","build_number":1}}"#)
                .as_deref(),
            Some("7.10.2")
        );
        assert_eq!(version_of(b"{}"), None);
        assert!(is_https("https://127.0.0.1:5601"));
        assert!(!is_https("http://127.0.0.1:5601"));
    }
}
