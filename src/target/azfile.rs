//! `azfile://SHARE/DIR`: Azure Files through its REST API.
//!
//! Written here, by hand, because no crate streams to Azure Files: OpenDAL's azfile service
//! writes a file in one Put Range (at most 4 MiB) and renames with replace-if-exists forced on.
//! Requests are signed by `reqsign-azure-storage` (Shared Key or SAS; no signing code here)
//! and sent with reqwest (the client object_store already brings).
//!
//! An archive is written as `NAME.<pid>-<n>.partial` (its own name per run, so two runs never
//! write the same file): Create File, then Put Range requests of at most 4 MiB ([`RANGE`]),
//! [`INFLIGHT`] at a time, growing the file ahead of them with Set File Properties (doubling,
//! so a few resizes for any size) and trimming it to its length at the end. Commit renames it
//! to `NAME` with `x-ms-file-rename-replace-if-exists: false`: an existing archive is never
//! replaced (if another run took `NAME` meanwhile, the next free `_N` is used and a warning says
//! so). Abort deletes the partial file. Memory: [`INFLIGHT`] + 1 ranges.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use reqsign_azure_storage::{Credential, RequestSigner};
use reqsign_core::{Context, SignRequest};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream};

use super::TargetError;
use super::settings::{Settings, connection_string};
use super::stream::{Streamed, TaskEnd, error_chain, unreachable};

/// Largest Put Range body Azure Files accepts.
pub const RANGE: usize = 4 << 20;
/// Put Range requests at once.
pub const INFLIGHT: usize = 4;
const VERSION: &str = "2022-11-02";
/// Smallest growth step of the partial file.
const GROW_MIN: u64 = 64 << 20;

pub struct AzFileTarget {
    /// `azfile://share/dir`, for messages.
    pub url: String,
    inner: Arc<Client>,
}

struct Client {
    url: String,
    /// `https://ACCOUNT.file.core.windows.net` or an emulator's `http://host:port/ACCOUNT`.
    endpoint: String,
    share: String,
    /// Directory inside the share, `""` for its root; segments checked by [`parse_url`].
    dir: String,
    cred: Credential,
    /// The SAS token when that is the credential: a rename's source URL carries it too.
    sas: Option<String>,
    http: reqwest::Client,
}

/// Split `azfile://SHARE/DIR`; `None` for other schemes.
pub fn parse_url(s: &str) -> Option<Result<(String, String), TargetError>> {
    let (scheme, rest) = s.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("azfile") {
        return None;
    }
    let fail = |cause: &str| {
        Some(Err(TargetError::Store {
            target: s.to_string(),
            cause: cause.to_string(),
        }))
    };
    let (share, dir) = rest.split_once('/').unwrap_or((rest, ""));
    if share.is_empty() {
        return fail("the URL names no share");
    }
    let ok = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-~".contains(c))
    };
    if !ok(share) {
        return fail("a share name is letters, digits and '-'");
    }
    let dir = dir.trim_matches('/');
    if !dir.is_empty() && !dir.split('/').all(ok) {
        return fail(
            "directory names in the URL are letters, digits, '.', '_', '-' and '~' (no `.`/`..` segments)",
        );
    }
    Some(Ok((share.to_string(), dir.to_string())))
}

/// A failed request: the status and the service's error code, said in words.
#[derive(Debug)]
struct Failed {
    status: Option<u16>,
    code: Option<String>,
    cause: String,
}

impl Failed {
    fn io(e: reqwest::Error) -> Failed {
        // Never the chain itself: reqwest's messages carry the URL, which holds a SAS token
        // when that is the credential.
        let cause = match unreachable(&error_chain(&e)) {
            Some(c) => c,
            None if e.is_timeout() => "cannot reach the endpoint (timed out)".into(),
            None => "cannot reach the endpoint (no answer)".into(),
        };
        Failed {
            status: None,
            code: None,
            cause,
        }
    }

    fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }
}

fn describe(status: u16, code: Option<&str>) -> String {
    match code {
        Some("AuthenticationFailed") | Some("InvalidAuthenticationInfo") => {
            "the store refused the credentials (AuthenticationFailed)".into()
        }
        Some("AuthorizationFailure") | Some("AuthorizationPermissionMismatch") => format!(
            "access denied ({}): the credentials lack permission",
            code.unwrap_or_default()
        ),
        Some("ShareNotFound") => "the share does not exist (ShareNotFound)".into(),
        Some("ParentNotFound") | Some("ResourceNotFound") => {
            format!("not found ({})", code.unwrap_or_default())
        }
        Some(c) => format!("the store answered {c} (HTTP {status})"),
        None => format!("HTTP {status}"),
    }
}

impl AzFileTarget {
    /// Build the client for `url` from `settings` (and the environment). No request is made.
    pub fn open(url: &str, settings: &Settings) -> Result<AzFileTarget, TargetError> {
        let (share, dir) = parse_url(url).ok_or_else(|| TargetError::Store {
            target: url.into(),
            cause: "not an azfile:// URL".into(),
        })??;
        let norm = format!(
            "azfile://{share}{}{dir}",
            if dir.is_empty() { "" } else { "/" }
        );
        let fail = |cause: &str| TargetError::Store {
            target: norm.clone(),
            cause: cause.to_string(),
        };
        let cs = settings
            .get("azure_storage_connection_string")
            .map(|s| connection_string(&s))
            .unwrap_or_default();
        let account = cs
            .get("AccountName")
            .cloned()
            .or_else(|| settings.get("azure_storage_account"))
            .ok_or_else(|| fail("no storage account: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN"))?;
        let mut sas_token = None;
        let cred = if let Some(key) = cs
            .get("AccountKey")
            .cloned()
            .or_else(|| settings.get("azure_storage_key"))
        {
            Credential::with_shared_key(&account, &key)
        } else if let Some(sas) = cs
            .get("SharedAccessSignature")
            .cloned()
            .or_else(|| settings.get("azure_storage_sas_token"))
        {
            let sas = sas.trim_start_matches('?').to_string();
            sas_token = Some(sas.clone());
            Credential::with_sas_token(&sas)
        } else {
            return Err(fail(
                "no key: set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (or a connection string with AccountKey or SharedAccessSignature)",
            ));
        };
        let endpoint = match cs.get("FileEndpoint") {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => {
                let proto = cs
                    .get("DefaultEndpointsProtocol")
                    .map(String::as_str)
                    .unwrap_or("https");
                let suffix = cs
                    .get("EndpointSuffix")
                    .map(String::as_str)
                    .unwrap_or("core.windows.net");
                format!("{proto}://{account}.file.{suffix}")
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(15 * 60))
            .build()
            .map_err(|e| fail(&format!("HTTP client: {e}")))?;
        Ok(AzFileTarget {
            url: norm.clone(),
            inner: Arc::new(Client {
                url: norm,
                endpoint,
                share,
                dir,
                cred,
                sas: sas_token,
                http,
            }),
        })
    }

    fn err(&self, doing: &str, f: Failed) -> TargetError {
        self.inner.err(doing, f)
    }

    /// The directory exists and the credentials are accepted (one request).
    pub async fn check(&self) -> Result<(), TargetError> {
        match self.inner.dir_properties().await {
            Ok(()) => Ok(()),
            Err(f) if f.status == Some(404) && f.code.as_deref() != Some("ShareNotFound") => {
                Err(TargetError::Store {
                    target: self.url.clone(),
                    cause: format!(
                        "the directory does not exist ({}); create it first",
                        f.code.unwrap_or_default()
                    ),
                })
            }
            Err(f) => Err(self.err("checking the directory", f)),
        }
    }

    /// Files directly in the directory: (name, size, modification time in epoch seconds).
    pub async fn list(&self) -> Result<Vec<(String, u64, i64)>, TargetError> {
        self.inner.list().await.map_err(|f| self.err("listing", f))
    }

    /// Pick the first name of `stem.ext`, `stem_1.ext`, ... not taken (by an archive or a
    /// partial one) and start writing its partial file.
    pub async fn create(&self, stem: &str, ext: &str) -> Result<AzFileUpload, TargetError> {
        let names: Vec<String> = self.list().await?.into_iter().map(|(n, _, _)| n).collect();
        let taken = |name: &str| {
            names.iter().any(|n| {
                n == name || (n.starts_with(&format!("{name}.")) && n.ends_with(".partial"))
            })
        };
        let n = (0..1000u32)
            .find(|n| !taken(&super::local::candidate(stem, ext, *n)))
            .ok_or_else(|| TargetError::Store {
                target: self.url.clone(),
                cause: format!("no free name for {stem}.{ext} (tried _1 to _999)"),
            })?;
        let name = super::local::candidate(stem, ext, n);
        let partial = format!(
            "{name}.{}-{}.partial",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond() % 1_000_000_000
        );
        self.inner
            .create_file(&partial, 0)
            .await
            .map_err(|f| self.err(&format!("creating {partial}"), f))?;
        let job = Job {
            client: self.inner.clone(),
            name: name.clone(),
            stem: stem.to_string(),
            ext: ext.to_string(),
            n,
            partial,
        };
        Ok(AzFileUpload {
            location: format!("{}/{name}", self.url),
            url: self.url.clone(),
            name,
            stream: Streamed::start(&self.url, move |end| job.run(end)),
        })
    }

    /// Write `bytes` under `name`, whole or not at all (written aside, then renamed over).
    pub async fn put_small(&self, name: &str, bytes: Vec<u8>) -> Result<(), TargetError> {
        let tmp = format!("{name}.{}.partial", std::process::id());
        let c = &self.inner;
        let r = async {
            self.write_aside(&tmp, bytes).await?;
            c.rename(&tmp, name, true).await
        }
        .await;
        if r.is_err() {
            let _ = c.delete(&tmp).await;
        }
        r.map_err(|f| self.err(&format!("writing {name}"), f))
    }

    /// Create file `tmp` holding `bytes` (in ranges of at most [`RANGE`]).
    async fn write_aside(&self, tmp: &str, bytes: Vec<u8>) -> Result<(), Failed> {
        let c = &self.inner;
        c.create_file(tmp, bytes.len() as u64).await?;
        let bytes = Bytes::from(bytes);
        let mut off = 0;
        while off < bytes.len() {
            let end = (off + RANGE).min(bytes.len());
            c.put_range(tmp, off as u64, bytes.slice(off..end)).await?;
            off = end;
        }
        Ok(())
    }

    /// Create `name` unless it exists (written aside, then renamed with replace-if-exists
    /// false, which the service refuses when `name` exists): `Ok(false)` when it does.
    pub async fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool, TargetError> {
        let tmp = format!("{name}.{}.partial", std::process::id());
        let c = &self.inner;
        let written = self.write_aside(&tmp, bytes).await;
        if let Err(f) = written {
            let _ = c.delete(&tmp).await;
            return Err(self.err(&format!("writing {name}"), f));
        }
        match c.rename(&tmp, name, false).await {
            Ok(()) => Ok(true),
            Err(f) => {
                let _ = c.delete(&tmp).await;
                if c.get(name).await.is_ok() {
                    Ok(false)
                } else {
                    Err(self.err(&format!("creating {name}"), f))
                }
            }
        }
    }

    pub async fn open_read(
        &self,
        name: &str,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, TargetError> {
        let resp = self
            .inner
            .get(name)
            .await
            .map_err(|f| self.err(&format!("reading {name}"), f))?;
        let stream = resp
            .bytes_stream()
            .map(|c| c.map_err(std::io::Error::other));
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    pub async fn delete(&self, name: &str) -> Result<(), TargetError> {
        self.inner
            .delete(name)
            .await
            .map_err(|f| self.err(&format!("deleting {name}"), f))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    entries: Option<Entries>,
    next_marker: Option<String>,
}

#[derive(Deserialize)]
struct Entries {
    #[serde(rename = "$value", default)]
    items: Vec<Entry>,
}

#[derive(Deserialize)]
enum Entry {
    File(FileEntry),
    Directory(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileEntry {
    name: String,
    properties: FileProps,
}

#[derive(Deserialize)]
struct FileProps {
    #[serde(rename = "Content-Length")]
    content_length: u64,
    #[serde(rename = "Last-Modified", alias = "LastModified", default)]
    last_modified: Option<String>,
}

/// A file found: name, size, modification time (epoch seconds, 0 when not given).
type Found = (String, u64, i64);

/// The files of one page of a List Directories and Files answer, and the next marker.
fn parse_listing(xml: &str) -> Result<(Vec<Found>, Option<String>), String> {
    let r: EnumerationResults =
        quick_xml::de::from_str(xml).map_err(|e| format!("unreadable listing: {e}"))?;
    let files = r
        .entries
        .map(|e| e.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            Entry::File(f) => {
                let t = f
                    .properties
                    .last_modified
                    .as_deref()
                    .and_then(|s| jiff::fmt::rfc2822::parse(s).ok())
                    .map(|z| z.timestamp().as_second())
                    .unwrap_or(0);
                Some((f.name, f.properties.content_length, t))
            }
            Entry::Directory(_) => None,
        })
        .collect();
    Ok((files, r.next_marker.filter(|m| !m.is_empty())))
}

impl Client {
    fn err(&self, doing: &str, f: Failed) -> TargetError {
        TargetError::Store {
            target: self.url.clone(),
            cause: format!("{doing}: {}", f.cause),
        }
    }

    /// The URL of `name` in the directory (or of the directory itself for `None`).
    fn file_url(&self, name: Option<&str>) -> String {
        let mut u = format!("{}/{}", self.endpoint, self.share);
        if !self.dir.is_empty() {
            u.push('/');
            u.push_str(&self.dir);
        }
        if let Some(n) = name {
            u.push('/');
            u.push_str(&encode(n));
        }
        u
    }

    /// Sign and send one request; idempotent ones are retried on a connection failure, 429 or
    /// 5xx (three more tries, 1, 2, 4 s apart).
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        idempotent: bool,
    ) -> Result<reqwest::Response, Failed> {
        let mut delay = Duration::from_secs(1);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.send_once(&method, url, headers, body.clone()).await {
                Err(f) if idempotent && tries < 4 && f.retryable() => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                r => return r,
            }
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<reqwest::Response, Failed> {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .body(())
            .map_err(|e| Failed {
                status: None,
                code: None,
                cause: format!("bad request URL: {e}"),
            })?;
        let h: &mut HeaderMap = req.headers_mut();
        h.insert("x-ms-version", HeaderValue::from_static(VERSION));
        h.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(body.len() as u64),
        );
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| Failed {
                status: None,
                code: None,
                cause: format!("header {k}: {e}"),
            })?;
            let value = HeaderValue::from_str(v).map_err(|e| Failed {
                status: None,
                code: None,
                cause: format!("header {k}: {e}"),
            })?;
            h.insert(name, value);
        }
        let (mut parts, ()) = req.into_parts();
        RequestSigner::new()
            .sign_request(&Context::new(), &mut parts, Some(&self.cred), None)
            .await
            .map_err(|e| Failed {
                status: None,
                code: None,
                cause: format!("signing the request: {e}"),
            })?;
        let req = http::Request::from_parts(parts, body);
        let req = reqwest::Request::try_from(req).map_err(|e| Failed {
            status: None,
            code: None,
            cause: format!("building the request: {e}"),
        })?;
        let resp = self.http.execute(req).await.map_err(Failed::io)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let mut code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if code.is_none() && *method != Method::HEAD {
            let text = resp.text().await.unwrap_or_default();
            code = text
                .split("<Code>")
                .nth(1)
                .and_then(|r| r.split("</Code>").next())
                .map(str::to_string);
        }
        Err(Failed {
            status: Some(status.as_u16()),
            cause: describe(status.as_u16(), code.as_deref()),
            code,
        })
    }

    async fn dir_properties(&self) -> Result<(), Failed> {
        let url = format!("{}?restype=directory", self.file_url(None));
        self.send(Method::GET, &url, &[], Bytes::new(), true)
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<(String, u64, i64)>, Failed> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = format!(
                "{}?restype=directory&comp=list&include=Timestamps",
                self.file_url(None)
            );
            if let Some(m) = &marker {
                url.push_str("&marker=");
                url.push_str(&encode(m));
            }
            let resp = self
                .send(Method::GET, &url, &[], Bytes::new(), true)
                .await?;
            let text = resp.text().await.map_err(Failed::io)?;
            let (files, next) = parse_listing(&text).map_err(|cause| Failed {
                status: None,
                code: None,
                cause,
            })?;
            out.extend(files);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    async fn create_file(&self, name: &str, size: u64) -> Result<(), Failed> {
        self.send(
            Method::PUT,
            &self.file_url(Some(name)),
            &[
                ("x-ms-type", "file".into()),
                ("x-ms-content-length", size.to_string()),
            ],
            Bytes::new(),
            true,
        )
        .await
        .map(|_| ())
    }

    async fn resize(&self, name: &str, size: u64) -> Result<(), Failed> {
        self.send(
            Method::PUT,
            &format!("{}?comp=properties", self.file_url(Some(name))),
            &[("x-ms-content-length", size.to_string())],
            Bytes::new(),
            true,
        )
        .await
        .map(|_| ())
    }

    async fn put_range(&self, name: &str, offset: u64, data: Bytes) -> Result<(), Failed> {
        let end = offset + data.len() as u64 - 1;
        self.send(
            Method::PUT,
            &format!("{}?comp=range", self.file_url(Some(name))),
            &[
                ("x-ms-write", "update".into()),
                ("x-ms-range", format!("bytes={offset}-{end}")),
            ],
            data,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Rename `from` to `to` in the directory; `replace: false` fails on an existing `to`.
    async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), Failed> {
        self.send(
            Method::PUT,
            &format!("{}?comp=rename", self.file_url(Some(to))),
            &[
                (
                    "x-ms-file-rename-source",
                    match &self.sas {
                        Some(sas) => format!("{}?{sas}", self.file_url(Some(from))),
                        None => self.file_url(Some(from)),
                    },
                ),
                ("x-ms-file-rename-replace-if-exists", replace.to_string()),
            ],
            Bytes::new(),
            false,
        )
        .await
        .map(|_| ())
    }

    async fn get(&self, name: &str) -> Result<reqwest::Response, Failed> {
        self.send(
            Method::GET,
            &self.file_url(Some(name)),
            &[],
            Bytes::new(),
            true,
        )
        .await
    }

    async fn delete(&self, name: &str) -> Result<(), Failed> {
        match self
            .send(
                Method::DELETE,
                &self.file_url(Some(name)),
                &[],
                Bytes::new(),
                true,
            )
            .await
        {
            Err(f) if f.status == Some(404) => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// Percent-encode a name for a URL path segment or query value (unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Job {
    client: Arc<Client>,
    name: String,
    stem: String,
    ext: String,
    n: u32,
    partial: String,
}

impl Job {
    async fn run(self, end: TaskEnd) -> Result<String, String> {
        let TaskEnd {
            mut input,
            cancel,
            commit,
            failure,
        } = end;
        let mut inflight = tokio::task::JoinSet::new();
        let streamed = tokio::select! {
            r = self.stream(&mut input, &mut inflight) => r,
            _ = cancel.cancelled() => Err("upload aborted".to_string()),
        };
        let total = match streamed {
            Ok(total) => total,
            Err(cause) => {
                *failure.lock().unwrap() = Some(cause.clone());
                drop(input);
                while inflight.join_next().await.is_some() {}
                self.discard().await;
                return Err(cause);
            }
        };
        drop(input);
        let go = tokio::select! {
            r = commit => r.is_ok(),
            _ = cancel.cancelled() => false,
        };
        if !go {
            self.discard().await;
            return Err("upload aborted".into());
        }
        if let Err(f) = self.client.resize(&self.partial, total).await {
            self.discard().await;
            return Err(format!("setting the final size: {}", f.cause));
        }
        // Never over an existing archive: on a name taken meanwhile, the next free one.
        let mut n = self.n;
        loop {
            let name = super::local::candidate(&self.stem, &self.ext, n);
            match self.client.rename(&self.partial, &name, false).await {
                Ok(()) => {
                    if name != self.name {
                        tracing::warn!(
                            "{}: {} was taken while this backup ran; the archive is {name} (its manifest names {})",
                            self.client.url,
                            self.name,
                            self.name
                        );
                    }
                    return Ok(name);
                }
                Err(f) if f.status == Some(409) && n < 999 => n += 1,
                Err(f) => {
                    self.discard().await;
                    return Err(format!("renaming {} to {name}: {}", self.partial, f.cause));
                }
            }
        }
    }

    async fn discard(&self) {
        if let Err(f) = self.client.delete(&self.partial).await {
            tracing::warn!(
                "{}: {} not removed ({})",
                self.client.url,
                self.partial,
                f.cause
            );
        }
    }

    /// Put Range the stream, growing the file ahead; returns its length.
    async fn stream(
        &self,
        input: &mut DuplexStream,
        inflight: &mut tokio::task::JoinSet<Result<(), Failed>>,
    ) -> Result<u64, String> {
        let mut offset = 0u64;
        let mut allocated = 0u64;
        let joined = |r: Result<Result<(), Failed>, tokio::task::JoinError>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) => Err(format!("uploading: {}", f.cause)),
            Err(e) => Err(format!("uploading: {e}")),
        };
        loop {
            let mut buf = BytesMut::with_capacity(RANGE);
            while buf.len() < RANGE {
                let n = input
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| format!("reading the archive stream: {e}"))?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                break;
            }
            let len = buf.len() as u64;
            if offset + len > allocated {
                allocated = (offset + len).max(allocated * 2).max(GROW_MIN);
                self.client
                    .resize(&self.partial, allocated)
                    .await
                    .map_err(|f| format!("growing {}: {}", self.partial, f.cause))?;
            }
            while inflight.len() >= INFLIGHT {
                if let Some(r) = inflight.join_next().await {
                    joined(r)?;
                }
            }
            let client = self.client.clone();
            let partial = self.partial.clone();
            let data = buf.freeze();
            inflight.spawn(async move { client.put_range(&partial, offset, data).await });
            offset += len;
        }
        while let Some(r) = inflight.join_next().await {
            joined(r)?;
        }
        Ok(offset)
    }
}

/// An archive being written to Azure Files; see the module docs.
pub struct AzFileUpload {
    pub name: String,
    pub location: String,
    url: String,
    stream: Streamed<String>,
}

impl AzFileUpload {
    pub fn writer(&mut self) -> Box<dyn AsyncWrite + Send + Unpin> {
        self.stream.writer()
    }

    /// Rename the partial file to its name; returns the final location.
    pub async fn commit(&mut self) -> Result<String, TargetError> {
        let name = self.stream.commit().await?;
        Ok(format!("{}/{name}", self.url))
    }

    pub async fn abort(&mut self) {
        self.stream.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("azfile://share/a/b/").unwrap().unwrap(),
            ("share".to_string(), "a/b".to_string())
        );
        assert_eq!(
            parse_url("azfile://share").unwrap().unwrap(),
            ("share".to_string(), String::new())
        );
        assert!(parse_url("az://c").is_none());
        for bad in [
            "azfile://",
            "azfile://sh/../x",
            "azfile://sh/a b",
            "azfile://k@sh/x",
        ] {
            assert!(parse_url(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn listing_pages() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="https://a.file.core.windows.net/" ShareName="s" DirectoryPath="d">
  <Marker>m0</Marker><MaxResults>2</MaxResults>
  <Entries>
    <Directory><Name>sub</Name><Properties /></Directory>
    <File><Name>lsbackup-20261206T000000Z.tar.zst</Name><Properties><Content-Length>1234</Content-Length><Last-Modified>Sun, 06 Dec 2026 09:00:00 GMT</Last-Modified></Properties></File>
    <File><Name>x.partial</Name><Properties><Content-Length>0</Content-Length></Properties></File>
  </Entries>
  <NextMarker>m1</NextMarker>
</EnumerationResults>"#;
        let (files, next) = parse_listing(xml).unwrap();
        assert_eq!(
            files,
            vec![
                (
                    "lsbackup-20261206T000000Z.tar.zst".to_string(),
                    1234,
                    1796547600
                ),
                ("x.partial".to_string(), 0, 0)
            ]
        );
        assert_eq!(next.as_deref(), Some("m1"));
        let (files, next) =
            parse_listing("<EnumerationResults><Entries /><NextMarker /></EnumerationResults>")
                .unwrap();
        assert!(files.is_empty() && next.is_none());
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("a b/c%"), "a%20b%2Fc%25");
        assert_eq!(encode("lsbackup-1_2.tar.zst~"), "lsbackup-1_2.tar.zst~");
    }
}
