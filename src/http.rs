//! An HTTP/1.1 client for hosts' local APIs (Prometheus, Alertmanager, Elasticsearch/OpenSearch,
//! Kibana, Grafana), spoken by lsbackup itself through the host's SSH connection.
//!
//! Each request opens a tunnel with [`Session::connect_tcp`] to the service's address as the
//! host sees it (`127.0.0.1:9200` is the host's loopback, like `ssh -L`), optionally wraps it in
//! TLS (rustls; CA and client certificate given as PEM bytes), and speaks HTTP/1.1 over it
//! (hyper). Credentials (basic auth, bearer tokens, client keys) therefore stay in lsbackup's
//! memory: they never reach a command line, a file or a process on the host.
//!
//! One connection per request (`Connection: close`): no pool to go stale, no half-read response
//! left on a shared connection, and a request that fails cannot affect the next one. A response
//! is always read to its end or dropped (which closes the tunnel): on SSH an unread tunnel would
//! eventually stall the session's other channels.
//!
//! ```no_run
//! # async fn f(session: lsbackup::transport::Session) -> Result<(), lsbackup::http::HttpError> {
//! use lsbackup::http::{Endpoint, HttpClient};
//! #[derive(serde::Deserialize)]
//! struct BuildInfo { data: serde_json::Value }
//! let prom = HttpClient::builder(session, Endpoint::parse("http://127.0.0.1:9090")?).build()?;
//! let info: BuildInfo = prom.get_json("/api/v1/status/buildinfo").await?;
//! # Ok(()) }
//! ```
//!
//! Credentials are refused unless the endpoint is `https` with certificate verification on
//! ([`HttpError::InsecureCredentials`]): a plain-http port on a host's loopback may be any local
//! user's listener, and an unverified TLS peer may be too.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;

use crate::secret::Secret;
use crate::transport::{Session, TransportError};

/// Default limit on one request (connect, TLS, request, whole response for the buffered calls;
/// up to the response headers, then between two reads, for [`HttpClient::stream`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on a buffered response body ([`HttpClient::send`] and the JSON calls).
pub const DEFAULT_BODY_LIMIT: usize = 64 << 20;
/// Characters of a response body quoted in a [`HttpError::Status`].
const SNIPPET_CHARS: usize = 300;

/// What can go wrong. Every message starts with the inventory host name and names the request;
/// none contains a credential.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {cause}")]
    BadUrl { url: String, cause: String },
    #[error("{host}: bad request path {path:?} for {endpoint}: {cause}")]
    BadPath {
        host: String,
        endpoint: String,
        path: String,
        cause: String,
    },
    /// The tunnel to the service could not be opened (nothing listening, forwarding refused,
    /// connection lost): see [`Session::connect_tcp`].
    #[error(transparent)]
    Tunnel(#[from] TransportError),
    /// The TLS settings cannot be used (PEM that holds no certificate, a key that does not
    /// match, ...).
    #[error("{host}: TLS settings for {endpoint}: {cause}")]
    TlsSettings {
        host: String,
        endpoint: String,
        cause: String,
    },
    /// The TLS handshake failed (certificate not signed by the CA, not valid for the name, the
    /// server refused our client certificate, not TLS at all, ...).
    #[error("{host}: TLS with {endpoint} failed: {cause}")]
    Tls {
        host: String,
        endpoint: String,
        cause: String,
    },
    /// Basic auth, a bearer token or a custom header marked sensitive on an endpoint that is
    /// not https with certificate verification.
    #[error("{host}: refusing to send credentials to {endpoint}: {why}")]
    InsecureCredentials {
        host: String,
        endpoint: String,
        why: String,
    },
    #[error("{host}: {method} {url} timed out after {secs}s")]
    Timeout {
        host: String,
        method: Method,
        url: String,
        secs: u64,
    },
    /// A non-2xx answer (from the calls that require success).
    #[error("{host}: {method} {url} returned HTTP {status}: {snippet}")]
    Status {
        host: String,
        method: Method,
        url: String,
        status: StatusCode,
        /// The start of the body, control characters replaced, whitespace collapsed.
        snippet: String,
    },
    #[error("{host}: {method} {url}: response body is larger than {limit} bytes")]
    TooLarge {
        host: String,
        method: Method,
        url: String,
        limit: usize,
    },
    #[error("{host}: {method} {url}: cannot parse the JSON response: {cause}")]
    Json {
        host: String,
        method: Method,
        url: String,
        cause: String,
    },
    /// The exchange broke off (connection closed early, malformed response, ...).
    #[error("{host}: {method} {url}: {cause}")]
    Protocol {
        host: String,
        method: Method,
        url: String,
        cause: String,
    },
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where a service listens, as the host sees it: `https://127.0.0.1:9200/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Host name or IP address, resolved by the host (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Prefix of every request path: empty, or `/prefix` (no trailing slash).
    pub base_path: String,
}

/// Whether `text` holds a URL with a user name or password (`scheme://user:pw@host`).
pub fn has_userinfo(text: &str) -> bool {
    userinfo_span(text).is_some()
}

/// `text` with the user name and password of a URL in it replaced by `***`, for messages.
pub fn without_userinfo(text: &str) -> String {
    match userinfo_span(text) {
        Some((a, b)) => format!("{}***{}", &text[..a], without_userinfo(&text[b..])),
        None => text.to_string(),
    }
}

/// Where the first `user[:password]` of a `scheme://user[:password]@host` in `text` is.
fn userinfo_span(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let start = from + i + 3;
        let rest = &text[start..];
        let end = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return Some((start, start + at));
        }
        from = start;
    }
    None
}

impl Endpoint {
    /// Parse `http[s]://host[:port][/base/path]`; the port defaults to 80 / 443. A user name or
    /// password in the URL, a query or a fragment are refused.
    pub fn parse(url: &str) -> Result<Endpoint, HttpError> {
        let bad = |cause: &str| HttpError::BadUrl {
            url: without_userinfo(url),
            cause: cause.to_string(),
        };
        let uri: Uri =
            url.trim()
                .parse()
                .map_err(|e: http::uri::InvalidUri| HttpError::BadUrl {
                    url: without_userinfo(url),
                    cause: e.to_string(),
                })?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(_) => return Err(bad("the scheme must be http or https")),
            None => return Err(bad("no scheme (http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials do not belong in the URL (give them to the client)",
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let after_host = authority
            .as_str()
            .rsplit_once(']')
            .map_or(authority.as_str(), |(_, rest)| rest);
        if authority.port_u16().is_none() && after_host.contains(':') {
            return Err(bad("bad port"));
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        if uri.query().is_some() || url.contains('#') {
            return Err(bad("a base URL takes no query or fragment"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Endpoint {
            scheme,
            host,
            port,
            base_path,
        })
    }

    /// `host:port` (brackets around IPv6), as sent in the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The request target for `path` (`/api/v1/x?y=1`): the base path joined with it.
    fn path_and_query(&self, path: &str) -> Result<PathAndQuery, String> {
        let joined = format!("{}/{}", self.base_path, path.trim_start_matches('/'));
        joined.parse::<PathAndQuery>().map_err(|e| e.to_string())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.base_path)
    }
}

/// TLS for an https [`Endpoint`]. `Default` is verification on with nothing else set, which
/// [`HttpClientBuilder::build`] refuses: give the CA.
#[derive(Clone)]
pub struct TlsSettings {
    /// CA certificate(s) that sign the server's certificate (PEM). Required when `verify`.
    /// The system's roots are not used: cluster services use the cluster's own CA.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain (PEM) for services that authenticate by certificate
    /// (Elasticsearch/OpenDistro admin). Needs `client_key_pem`.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1). Never printed.
    pub client_key_pem: Option<Vec<u8>>,
    /// Check the server's certificate against `ca_pem` and the server name. `false` accepts
    /// ANY certificate (the handshake signature is still checked): an explicit opt-out for
    /// services whose CA is unavailable; no credentials are sent then (see the module docs).
    pub verify: bool,
    /// Name to check the certificate against (and send as SNI) instead of the endpoint's host,
    /// e.g. the node name when the service is reached as `127.0.0.1`.
    pub server_name: Option<String>,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            verify: true,
            server_name: None,
        }
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map(|v| format!("{} bytes", v.len()));
        f.debug_struct("TlsSettings")
            .field("ca_pem", &len(&self.ca_pem))
            .field("client_cert_pem", &len(&self.client_cert_pem))
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "********"),
            )
            .field("verify", &self.verify)
            .field("server_name", &self.server_name)
            .finish()
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Basic { user, password } => write!(f, "basic {user}:{password}"),
            Auth::Bearer(token) => write!(f, "bearer {token}"),
        }
    }
}

#[derive(Clone)]
struct Tls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    verified: bool,
    client_cert: bool,
}

/// Builds an [`HttpClient`]; see [`HttpClient::builder`].
pub struct HttpClientBuilder {
    session: Session,
    endpoint: Endpoint,
    tls: Option<TlsSettings>,
    auth: Auth,
    headers: HeaderMap,
    timeout: Duration,
    body_limit: usize,
    plain_http_credentials: bool,
    insecure_credentials: bool,
}

impl HttpClientBuilder {
    /// TLS settings (required for https, ignored for http).
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// HTTP basic auth (https with verification only).
    pub fn basic_auth(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.auth = Auth::Basic {
            user: user.into(),
            password,
        };
        self
    }

    /// `Authorization: Bearer TOKEN` (https with verification only).
    pub fn bearer(mut self, token: Secret) -> Self {
        self.auth = Auth::Bearer(token);
        self
    }

    /// A header sent with every request (e.g. Kibana's `kbn-xsrf: true`). A value marked
    /// sensitive counts as a credential.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Limit on one request (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Let credentials go to a plain-http endpoint (never to unverified https). Only for an
    /// explicit, documented opt-in of the user (e.g. `grafana_allow_plain_http_credentials`):
    /// whoever listens on that port of the host then gets them.
    pub fn allow_plain_http_credentials(mut self, allow: bool) -> Self {
        self.plain_http_credentials = allow;
        self
    }

    /// Send the credentials even where [`HttpClientBuilder::build`] refuses them (plain http,
    /// or https without verification): an explicit, documented opt-in by the user (e.g.
    /// `kibana_allow_insecure`) for a service that cannot serve verified https. Never a default.
    pub fn allow_insecure_credentials(mut self, allow: bool) -> Self {
        self.insecure_credentials = allow;
        self
    }

    /// Cap on buffered response bodies (default [`DEFAULT_BODY_LIMIT`]).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Check the settings: PEM parsed, key matched to certificate, credentials only over
    /// verified https.
    pub fn build(self) -> Result<HttpClient, HttpError> {
        let host = self.session.host().to_string();
        let endpoint = self.endpoint.to_string();
        let tls = match self.endpoint.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let settings = self.tls.clone().unwrap_or_default();
                Some(tls_config(&settings, &self.endpoint).map_err(|cause| {
                    HttpError::TlsSettings {
                        host: host.clone(),
                        endpoint: endpoint.clone(),
                        cause,
                    }
                })?)
            }
        };
        let has_credentials = !matches!(self.auth, Auth::None)
            || self.headers.values().any(HeaderValue::is_sensitive);
        if has_credentials && !self.insecure_credentials {
            let why = match &tls {
                None if self.plain_http_credentials => None,
                None => Some(
                    "it is plain http: anyone on the host could be listening on that port; use https with a CA",
                ),
                Some(t) if !t.verified => Some(
                    "certificate verification is off, so the server could be anyone; give its CA",
                ),
                Some(_) => None,
            };
            if let Some(why) = why {
                return Err(HttpError::InsecureCredentials {
                    host,
                    endpoint,
                    why: why.to_string(),
                });
            }
        }
        Ok(HttpClient {
            session: self.session,
            endpoint: self.endpoint,
            tls,
            auth: self.auth,
            headers: self.headers,
            timeout: self.timeout,
            body_limit: self.body_limit,
        })
    }
}

/// An HTTP/1.1 client for one service on one host, reached through the host's session. Cheap
/// to clone; requests may run concurrently (each has its own tunnel).
///
/// Paths are joined to the endpoint's base path and may carry a query (`/_cat/indices?format=json`).
/// Never put a secret in a path: paths appear in error messages.
#[derive(Clone)]
pub struct HttpClient {
    session: Session,
    endpoint: Endpoint,
    tls: Option<Tls>,
    auth: Auth,
    headers: HeaderMap,
    timeout: Duration,
    body_limit: usize,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = self.tls.as_ref().map(|t| {
            format!(
                "server name {:?}, verify {}, client certificate {}",
                t.server_name.to_str(),
                t.verified,
                t.client_cert
            )
        });
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| match (v.is_sensitive(), v.to_str()) {
                (false, Ok(s)) => format!("{k}: {s}"),
                _ => format!("{k}: ********"),
            })
            .collect();
        f.debug_struct("HttpClient")
            .field("host", &self.session.host())
            .field("endpoint", &self.endpoint.to_string())
            .field("tls", &tls)
            .field("auth", &self.auth)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// A buffered response (any status).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    ctx: Ctx,
}

impl Response {
    /// `Err(HttpError::Status)` unless the status is 2xx.
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.ctx.status_err(self.status, &self.body))
        }
    }

    /// The body parsed as JSON (whatever the status).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| self.ctx.err_json(&e))
    }
}

/// What a request is, for error messages.
#[derive(Debug, Clone)]
struct Ctx {
    host: String,
    method: Method,
    url: String,
}

impl Ctx {
    fn protocol(&self, cause: impl Into<String>) -> HttpError {
        HttpError::Protocol {
            host: self.host.clone(),
            method: self.method.clone(),
            url: self.url.clone(),
            cause: cause.into(),
        }
    }

    fn status_err(&self, status: StatusCode, body: &[u8]) -> HttpError {
        HttpError::Status {
            host: self.host.clone(),
            method: self.method.clone(),
            url: self.url.clone(),
            status,
            snippet: snippet(body),
        }
    }

    fn err_json(&self, e: &serde_json::Error) -> HttpError {
        HttpError::Json {
            host: self.host.clone(),
            method: self.method.clone(),
            url: self.url.clone(),
            cause: clean(&e.to_string(), SNIPPET_CHARS),
        }
    }

    fn timeout(&self, d: Duration) -> HttpError {
        HttpError::Timeout {
            host: self.host.clone(),
            method: self.method.clone(),
            url: self.url.clone(),
            secs: d.as_secs_f64().ceil() as u64,
        }
    }
}

/// A streamed response body ([`HttpClient::stream`]). Ends with an error, never a clean EOF,
/// when the body is cut short; errors when no data arrives for the client's timeout. Dropping
/// it closes the connection.
pub struct BodyReader {
    inner: StreamReader<Pin<Box<dyn futures::Stream<Item = io::Result<Bytes>> + Send>>, Bytes>,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    what: String,
    _conn: ConnTask,
}

impl fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyReader")
            .field("request", &self.what)
            .finish()
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: no data for {}s",
                        this.what,
                        this.idle.as_secs_f64().ceil() as u64
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// The task driving one HTTP connection; aborted (closing the tunnel) when dropped.
#[derive(Debug)]
struct ConnTask(JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl HttpClient {
    /// Start building a client for `endpoint` (as `session`'s host sees it).
    pub fn builder(session: Session, endpoint: Endpoint) -> HttpClientBuilder {
        HttpClientBuilder {
            session,
            endpoint,
            tls: None,
            auth: Auth::None,
            headers: HeaderMap::new(),
            timeout: DEFAULT_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
            plain_http_credentials: false,
            insecure_credentials: false,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Inventory name of the host the client goes through.
    pub fn host(&self) -> &str {
        self.session.host()
    }

    /// `GET path`, 2xx required, body parsed as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, HttpError> {
        self.send(Method::GET, path, None)
            .await?
            .error_for_status()?
            .json()
    }

    /// `POST path` with a JSON body, 2xx required, answer parsed as JSON.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, HttpError> {
        self.send_serialized(Method::POST, path, body)
            .await?
            .error_for_status()?
            .json()
    }

    /// `PUT path` with a JSON body, 2xx required, answer parsed as JSON.
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, HttpError> {
        self.send_serialized(Method::PUT, path, body)
            .await?
            .error_for_status()?
            .json()
    }

    /// `DELETE path`, 2xx required.
    pub async fn delete(&self, path: &str) -> Result<Response, HttpError> {
        self.send(Method::DELETE, path, None)
            .await?
            .error_for_status()
    }

    async fn send_serialized<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Response, HttpError> {
        let ctx = self.ctx(&method, path);
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ctx.protocol(format!("cannot encode the JSON body: {e}")))?;
        self.send_bytes(method, path, Some(bytes)).await
    }

    /// Any request; the whole body is read (up to the body limit). Every status is `Ok`: use
    /// [`Response::error_for_status`] to require 2xx.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, HttpError> {
        let ctx = self.ctx(&method, path);
        let bytes = match body {
            Some(v) => Some(
                serde_json::to_vec(v)
                    .map_err(|e| ctx.protocol(format!("cannot encode the JSON body: {e}")))?,
            ),
            None => None,
        };
        self.send_bytes(method, path, bytes).await
    }

    /// Any request with a body already encoded as `content_type` (e.g. a
    /// `multipart/form-data; boundary=...` form), answered like [`HttpClient::send`]. The
    /// client's own headers come after and may replace `Content-Type`.
    pub async fn send_encoded(
        &self,
        method: Method,
        path: &str,
        content_type: HeaderValue,
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        self.send_with_type(method, path, Some((body, content_type)))
            .await
    }

    async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, HttpError> {
        let body = body.map(|b| (b, HeaderValue::from_static("application/json")));
        self.send_with_type(method, path, body).await
    }

    async fn send_with_type(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, HeaderValue)>,
    ) -> Result<Response, HttpError> {
        let ctx = self.ctx(&method, path);
        let work = async {
            let (parts, mut incoming, conn) = self.open(&ctx, method.clone(), path, body).await?;
            let mut buf = BytesMut::new();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| self.hyper_err(&ctx, &e))?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > self.body_limit {
                        return Err(HttpError::TooLarge {
                            host: ctx.host.clone(),
                            method: ctx.method.clone(),
                            url: ctx.url.clone(),
                            limit: self.body_limit,
                        });
                    }
                    buf.extend_from_slice(&data);
                }
            }
            drop(conn);
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body: buf.freeze(),
                ctx: ctx.clone(),
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ctx.timeout(self.timeout)),
        }
    }

    /// A request whose (possibly huge) answer is read as a stream, e.g. piped into an archive
    /// entry. 2xx required (otherwise [`HttpError::Status`] with the start of the body). The
    /// client's timeout bounds the wait for the response headers and then each wait for data.
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, BodyReader), HttpError> {
        let ctx = self.ctx(&method, path);
        let bytes = match body {
            Some(v) => Some(
                serde_json::to_vec(v)
                    .map_err(|e| ctx.protocol(format!("cannot encode the JSON body: {e}")))?,
            ),
            None => None,
        };
        let bytes = bytes.map(|b| (b, HeaderValue::from_static("application/json")));
        let opened = tokio::time::timeout(self.timeout, self.open(&ctx, method, path, bytes)).await;
        let (parts, incoming, conn) = match opened {
            Ok(r) => r?,
            Err(_) => return Err(ctx.timeout(self.timeout)),
        };
        if !parts.status.is_success() {
            let mut start = Vec::new();
            let mut incoming = incoming;
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while start.len() < 4096 {
                    match incoming.frame().await {
                        Some(Ok(f)) => {
                            if let Ok(d) = f.into_data() {
                                start.extend_from_slice(&d);
                            }
                        }
                        _ => break,
                    }
                }
            })
            .await;
            return Err(ctx.status_err(parts.status, &start));
        }
        let what = format!("{}: {} {}", ctx.host, ctx.method, ctx.url);
        let what2 = what.clone();
        let stream = BodyDataStream::new(incoming)
            .map_err(move |e| io::Error::other(format!("{what2}: {}", hyper_cause(&e))));
        let stream: Pin<Box<dyn futures::Stream<Item = io::Result<Bytes>> + Send>> =
            Box::pin(stream);
        Ok((
            parts.status,
            BodyReader {
                inner: StreamReader::new(stream),
                idle: self.timeout,
                sleep: Box::pin(tokio::time::sleep(self.timeout)),
                what,
                _conn: conn,
            },
        ))
    }

    fn ctx(&self, method: &Method, path: &str) -> Ctx {
        let url = match self.endpoint.path_and_query(path) {
            Ok(pq) => format!("{}{pq}", self.endpoint_root()),
            Err(_) => format!("{}{path}", self.endpoint),
        };
        Ctx {
            host: self.session.host().to_string(),
            method: method.clone(),
            url,
        }
    }

    /// The endpoint without its base path.
    fn endpoint_root(&self) -> String {
        let scheme = match self.endpoint.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}", self.endpoint.authority())
    }

    fn tls_err(&self, cause: String) -> HttpError {
        HttpError::Tls {
            host: self.session.host().to_string(),
            endpoint: self.endpoint.to_string(),
            cause,
        }
    }

    fn hyper_err(&self, ctx: &Ctx, e: &hyper::Error) -> HttpError {
        match find_rustls(e) {
            Some(t) => self.tls_err(describe_tls(t, self.tls.as_ref())),
            None => ctx.protocol(hyper_cause(e)),
        }
    }

    /// Tunnel, TLS, request; returns the response head and its body still to be read.
    async fn open(
        &self,
        ctx: &Ctx,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, HeaderValue)>,
    ) -> Result<(http::response::Parts, Incoming, ConnTask), HttpError> {
        let pq = self
            .endpoint
            .path_and_query(path)
            .map_err(|cause| HttpError::BadPath {
                host: ctx.host.clone(),
                endpoint: self.endpoint.to_string(),
                path: path.to_string(),
                cause,
            })?;
        let mut req = Request::builder().method(method).uri(pq);
        let headers = req.headers_mut().expect("a fresh builder has headers");
        headers.insert(
            HOST,
            HeaderValue::from_str(&self.endpoint.authority())
                .map_err(|e| ctx.protocol(format!("bad Host header: {e}")))?,
        );
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("lsbackup/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let body = body.map(|(bytes, content_type)| {
            headers.insert(CONTENT_TYPE, content_type);
            bytes
        });
        for (k, v) in &self.headers {
            headers.insert(k.clone(), v.clone());
        }
        if let Some(v) = self.auth_header() {
            headers.insert(AUTHORIZATION, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ctx.protocol(format!("cannot build the request: {e}")))?;

        let tunnel = self
            .session
            .connect_tcp(&self.endpoint.host, self.endpoint.port)
            .await?;
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tunnel),
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(tls.server_name.clone(), tunnel)
                    .await
                    .map_err(|e| self.tls_err(describe_tls_io(&e, Some(tls))))?;
                Box::new(stream)
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.hyper_err(ctx, &e))?;
        let conn = ConnTask(tokio::spawn(async move {
            // Errors surface through the response and its body.
            let _ = conn.await;
        }));
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.hyper_err(ctx, &e))?;
        let (parts, incoming) = resp.into_parts();
        Ok((parts, incoming, conn))
    }

    fn auth_header(&self) -> Option<HeaderValue> {
        let text = match &self.auth {
            Auth::None => return None,
            Auth::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", password.expose()))
            ),
            Auth::Bearer(token) => format!("Bearer {}", token.expose()),
        };
        // A value that is not a valid header (a newline in a password) is sent as nothing
        // rather than echoed in an error; the server then answers 401.
        let mut v = HeaderValue::from_str(&text).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// rustls client configuration from the settings.
fn tls_config(s: &TlsSettings, endpoint: &Endpoint) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if s.verify {
        let pem = s.ca_pem.as_deref().ok_or(
            "no CA certificate given to verify the server with (ca_pem), and verify is on",
        )?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("CA PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA certificate unusable: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA PEM holds no certificate".into());
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    };
    let (config, client_cert) = match (&s.client_cert_pem, &s.client_key_pem) {
        (None, None) => (builder.with_no_client_auth(), false),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate PEM: {e}"))?;
            if chain.is_empty() {
                return Err("the client certificate PEM holds no certificate".into());
            }
            // The key's parse error is not quoted: it could carry key material.
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                "the client key PEM holds no usable private key (PKCS#8, PKCS#1 or SEC1)"
                    .to_string()
            })?;
            let config = builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key: {e}"))?;
            (config, true)
        }
        (Some(_), None) => return Err("a client certificate without its key".into()),
        (None, Some(_)) => return Err("a client key without its certificate".into()),
    };
    let name = s.server_name.as_deref().unwrap_or(&endpoint.host);
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a valid TLS server name"))?;
    Ok(Tls {
        config: Arc::new(config),
        server_name,
        verified: s.verify,
        client_cert,
    })
}

/// `verify: false`: any certificate passes; handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error somewhere in an error's source chain.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

fn describe_tls_io(e: &io::Error, tls: Option<&Tls>) -> String {
    if let Some(t) = find_rustls(e) {
        return describe_tls(t, tls);
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            "the service closed the connection during the handshake (does it speak TLS on this port?)".into()
        }
        _ => e.to_string(),
    }
}

/// A rustls error as a cause that says what to fix.
fn describe_tls(e: &rustls::Error, tls: Option<&Tls>) -> String {
    use rustls::AlertDescription as A;
    use rustls::CertificateError as C;
    use rustls::Error as E;
    let name = tls
        .map(|t| t.server_name.to_str().into_owned())
        .unwrap_or_default();
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the server's certificate is not signed by the given CA (wrong ca_pem?)".into()
        }
        E::InvalidCertificate(C::NotValidForName) => {
            format!(
                "the server's certificate is not valid for the name {name:?} (set server_name?)"
            )
        }
        E::InvalidCertificate(C::NotValidForNameContext {
            expected,
            presented,
        }) => format!(
            "the server's certificate is not valid for the name {:?}; it names {} (set server_name?)",
            expected.to_str(),
            presented.join(", ")
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired".into()
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet (clock skew?)".into()
        }
        E::InvalidCertificate(other) => format!("the server's certificate is refused: {other:?}"),
        E::AlertReceived(
            a @ (A::BadCertificate
            | A::CertificateRequired
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateUnknown
            | A::UnsupportedCertificate),
        ) => {
            let with = if tls.is_some_and(|t| t.client_cert) {
                "refused our client certificate"
            } else {
                "wants a client certificate"
            };
            format!("the server {with} (TLS alert {a:?})")
        }
        E::AlertReceived(a) => format!("the server sent TLS alert {a:?}"),
        other => other.to_string(),
    }
}

fn hyper_cause(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "the service closed the connection before the response was complete".into();
    }
    if e.is_parse() {
        return format!("not an HTTP response ({e})");
    }
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Control characters replaced, whitespace collapsed, cut at `max` characters.
fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for word in s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if n >= max {
                out.push_str("...");
                return out;
            }
            out.push(c);
            n += 1;
        }
    }
    out
}

/// The start of a response body for an error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_CHARS * 4)]);
    let s = clean(&text, SNIPPET_CHARS);
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://127.0.0.1:9200/prefix/").unwrap();
        assert_eq!(
            e,
            Endpoint {
                scheme: Scheme::Https,
                host: "127.0.0.1".into(),
                port: 9200,
                base_path: "/prefix".into()
            }
        );
        assert_eq!(e.to_string(), "https://127.0.0.1:9200/prefix");
        assert_eq!(
            e.path_and_query("_cat/indices?format=json")
                .unwrap()
                .as_str(),
            "/prefix/_cat/indices?format=json"
        );
        let e = Endpoint::parse("http://localhost").unwrap();
        assert_eq!((e.port, e.base_path.as_str()), (80, ""));
        assert_eq!(e.path_and_query("/api/x").unwrap().as_str(), "/api/x");
        assert_eq!(Endpoint::parse("HTTPS://node2").unwrap().port, 443);
        let e = Endpoint::parse("http://[::1]:9090").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.authority(), "[::1]:9090");
        for bad in [
            "ftp://x",
            "127.0.0.1:9200",
            "http://u:pw@127.0.0.1/",
            "http://h/?q=1",
            "http://h/#f",
            "http://h:99999",
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(matches!(err, HttpError::BadUrl { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
            assert!(!err.to_string().contains(":p@") || bad.contains(":p@"));
        }
        assert!(e.path_and_query("/a b").is_err());
    }

    #[test]
    fn userinfo_is_found_and_left_out_of_messages() {
        assert!(has_userinfo("http://admin:s3cret@127.0.0.1:9090"));
        assert!(has_userinfo("postgresql://u:p@db/x"));
        assert!(has_userinfo("see https://u@h/x"));
        assert!(!has_userinfo("http://127.0.0.1:9090/a@b"));
        assert!(!has_userinfo("user@host"));
        assert!(!has_userinfo("auto"));
        assert_eq!(
            without_userinfo("a http://admin:s3cret@h:1/p and https://x:y@z"),
            "a http://***@h:1/p and https://***@z"
        );
        assert_eq!(without_userinfo("http://h/a@b"), "http://h/a@b");
    }

    #[test]
    fn snippets_are_one_clean_line() {
        assert_eq!(
            snippet(b"{\"error\":\n\t\"no\x1b[31m such\"}\r\n"),
            "{\"error\": \"no [31m such\"}"
        );
        assert_eq!(snippet(b""), "(empty body)");
        let long = "x".repeat(1000);
        assert_eq!(snippet(long.as_bytes()).len(), SNIPPET_CHARS + 3);
    }

    #[test]
    fn tls_settings_checked() {
        let ep = Endpoint::parse("https://127.0.0.1:9200").unwrap();
        let err = tls_config(&TlsSettings::default(), &ep).err().unwrap();
        assert!(err.contains("no CA certificate"), "{err}");
        let s = TlsSettings {
            ca_pem: Some(b"not a pem".to_vec()),
            ..TlsSettings::default()
        };
        assert!(
            tls_config(&s, &ep)
                .err()
                .unwrap()
                .contains("no certificate")
        );
        let s = TlsSettings {
            verify: false,
            client_key_pem: Some(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n".to_vec()),
            ..TlsSettings::default()
        };
        assert!(
            tls_config(&s, &ep)
                .err()
                .unwrap()
                .contains("without its certificate")
        );
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("c2VjcmV0") && dbg.contains("********"),
            "{dbg}"
        );
        let s = TlsSettings {
            verify: false,
            ..TlsSettings::default()
        };
        let t = tls_config(&s, &ep).unwrap();
        assert!(!t.verified);
        assert_eq!(t.server_name.to_str(), "127.0.0.1");
    }
}
