//! Object-store targets: `s3://BUCKET/PREFIX` (AWS S3 and S3-compatible stores) and
//! `az://CONTAINER/PREFIX` (Azure Blob storage), through the object_store crate (its request
//! signing, credential chains and retries; nothing of that is written here).
//!
//! The archive is streamed as a multipart upload (S3 parts, Azure blocks) while it is written:
//! no local copy, at most [`INFLIGHT`] + 1 parts in memory. Nothing exists under the final name
//! until the upload is completed by [`ObjectUpload::commit`]: S3 shows an object only after
//! CompleteMultipartUpload, Azure only after Put Block List.
//!
//! **Names.** `NAME.partial`, a small marker object (holder host, pid, start time), is created
//! first with a conditional create (`If-None-Match: *`): of two runs that pick the same name,
//! only one gets the marker. The winner then checks that `NAME` itself does not exist (a run
//! that finished between our listing and our marker), streams, completes `NAME`, and deletes the
//! marker last, so at every moment a taken name is visible as `NAME` or `NAME.partial`.
//!
//! **Failure.** An aborted upload (error, interrupt, or an [`ObjectUpload`] dropped without
//! commit) aborts the multipart upload (S3 deletes its parts) and deletes the marker. Azure
//! has no call that drops uncommitted blocks (object_store's abort leaves them to expire after
//! a week); a Put Block List discards every block it does not name, so the abort commits an
//! empty block list under the name and deletes the empty blob at once: for the time of those
//! two requests an empty `NAME` exists beside its `NAME.partial`, which `lsbackup list` leaves
//! out. A process killed with SIGKILL leaves the
//! marker and, on S3, the parts: docs/format.md gives the lifecycle rule that expires them.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream};

use super::TargetError;
use super::settings::{Settings, aws_profile, connection_string};
use super::stream::{Streamed, TaskEnd, error_chain, unreachable};

/// Parts being uploaded at once (plus the one being filled).
pub const INFLIGHT: usize = 2;
/// First part size; doubled every [`PARTS_PER_STEP`] parts up to 16 times this (S3 allows
/// 10 000 parts: 8 MiB parts carry 16 GiB, the whole schedule about 484 GiB).
pub const FIRST_PART: usize = 8 << 20;
const PARTS_PER_STEP: usize = 2000;
const MAX_PARTS: usize = 10_000;

fn part_size(n: usize) -> usize {
    FIRST_PART << (n / PARTS_PER_STEP).min(4)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    S3,
    AzureBlob,
}

impl Kind {
    fn container_word(self) -> &'static str {
        match self {
            Kind::S3 => "bucket",
            Kind::AzureBlob => "container",
        }
    }
}

pub struct ObjectTarget {
    /// `s3://bucket/prefix` as normalised, for messages (never holds a secret).
    pub url: String,
    kind: Kind,
    prefix: String,
    store: Arc<dyn ObjectStore>,
    /// Azure: the same client, for the empty Put Block List that drops uncommitted blocks.
    blocks: Option<Arc<dyn MultipartStore>>,
}

/// Split `scheme://container/prefix` for the object-store schemes, `None` for others.
pub fn parse_url(s: &str) -> Option<Result<(Kind, String, String), TargetError>> {
    let (scheme, rest) = s.split_once("://")?;
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "s3" => Kind::S3,
        "az" | "azure" => Kind::AzureBlob,
        _ => return None,
    };
    let fail = |cause: &str| {
        Some(Err(TargetError::Store {
            target: s.to_string(),
            cause: cause.to_string(),
        }))
    };
    if rest.contains(['?', '#']) {
        return fail(
            "no query or fragment in a target URL (settings come from the environment or --target-setting)",
        );
    }
    let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if container.contains('@') || container.contains(':') {
        return fail(
            "no credentials or port in a target URL: give them in the environment or with --target-setting",
        );
    }
    if container.is_empty() {
        return fail(&format!("the URL names no {}", kind.container_word()));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") {
        return fail("`.` and `..` are not allowed in the prefix");
    }
    Some(Ok((kind, container.to_string(), prefix.to_string())))
}

fn client_options(endpoint: Option<&str>) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(15 * 60))
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 4,
        retry_timeout: Duration::from_secs(90),
        ..Default::default()
    }
}

impl ObjectTarget {
    /// Build the client for `url` from `settings` (and the environment). No request is made.
    pub fn open(url: &str, settings: &Settings) -> Result<ObjectTarget, TargetError> {
        let (kind, container, prefix) = parse_url(url).ok_or_else(|| TargetError::Store {
            target: url.into(),
            cause: "not an s3:// or az:// URL".into(),
        })??;
        let norm = format!(
            "{}://{}{}{}",
            match kind {
                Kind::S3 => "s3",
                Kind::AzureBlob => "az",
            },
            container,
            if prefix.is_empty() { "" } else { "/" },
            prefix
        );
        let fail = |cause: String| TargetError::Store {
            target: norm.clone(),
            cause,
        };
        let (store, blocks): (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) = match kind {
            Kind::S3 => (Arc::new(s3(&container, settings).map_err(fail)?), None),
            Kind::AzureBlob => {
                let a = Arc::new(azure(&container, settings).map_err(fail)?);
                (a.clone(), Some(a))
            }
        };
        Ok(ObjectTarget {
            url: norm,
            kind,
            prefix,
            store,
            blocks,
        })
    }

    fn path(&self, name: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(name)
        } else {
            ObjPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn err(&self, doing: &str, e: object_store::Error) -> TargetError {
        TargetError::Store {
            target: self.url.clone(),
            cause: format!("{doing}: {}", describe(self.kind, &e)),
        }
    }

    /// One listing request: proves the endpoint answers, the credentials are accepted and the
    /// bucket/container exists, before any host is contacted.
    pub async fn check(&self) -> Result<(), TargetError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        self.store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| self.err("listing", e))
    }

    async fn exists(&self, name: &str) -> Result<bool, TargetError> {
        match self.store.head(&self.path(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(&format!("checking {name}"), e)),
        }
    }

    /// Take the first free name of `stem.ext`, `stem_1.ext`, ... and start its upload.
    pub async fn create(&self, stem: &str, ext: &str) -> Result<ObjectUpload, TargetError> {
        for n in 0..1000u32 {
            let name = super::local::candidate(stem, ext, n);
            let marker_name = format!("{name}.partial");
            if self.exists(&name).await? || self.exists(&marker_name).await? {
                continue;
            }
            let marker = self.path(&marker_name);
            let body = serde_json::json!({
                "lsbackup": env!("CARGO_PKG_VERSION"),
                "host": std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default(),
                "pid": std::process::id(),
                "started": jiff::Timestamp::now().to_string(),
            });
            match self
                .store
                .put_opts(
                    &marker,
                    PutPayload::from(body.to_string().into_bytes()),
                    PutMode::Create.into(),
                )
                .await
            {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => continue,
                Err(e) => return Err(self.err(&format!("creating {marker_name}"), e)),
            }
            // A run that completed `name` after our check and removed its marker before ours.
            if self.exists(&name).await? {
                let _ = self.store.delete(&marker).await;
                continue;
            }
            return self.start(name, marker).await;
        }
        Err(TargetError::Store {
            target: self.url.clone(),
            cause: format!("no free name for {stem}.{ext} (tried _1 to _999)"),
        })
    }

    async fn start(&self, name: String, marker: ObjPath) -> Result<ObjectUpload, TargetError> {
        let path = self.path(&name);
        let mp = match self.store.put_multipart(&path).await {
            Ok(mp) => mp,
            Err(e) => {
                let _ = self.store.delete(&marker).await;
                return Err(self.err(&format!("starting the upload of {name}"), e));
            }
        };
        let job = Job {
            store: self.store.clone(),
            blocks: self.blocks.clone(),
            kind: self.kind,
            url: self.url.clone(),
            name: name.clone(),
            path,
            marker,
        };
        let location = format!("{}/{name}", self.url);
        Ok(ObjectUpload {
            stream: Streamed::start(&location, move |end| job.run(mp, end)),
            location,
            name,
        })
    }

    /// Write `bytes` under `name` in one request (replacing what is there).
    pub async fn put_small(&self, name: &str, bytes: Vec<u8>) -> Result<(), TargetError> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.err(&format!("writing {name}"), e))
    }

    /// Create the object `name` unless it exists (a conditional put, `If-None-Match: *`):
    /// `Ok(false)` when it does.
    pub async fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool, TargetError> {
        match self
            .store
            .put_opts(
                &self.path(name),
                PutPayload::from(bytes),
                PutMode::Create.into(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err(&format!("creating {name}"), e)),
        }
    }

    /// Stream the object `name`.
    pub async fn open_read(
        &self,
        name: &str,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, TargetError> {
        let r = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.err(&format!("reading {name}"), e))?;
        let kind = self.kind;
        let stream = r
            .into_stream()
            .map(move |c| c.map_err(|e| std::io::Error::other(describe(kind, &e))));
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    /// Objects directly under the prefix: (name, size, modification time in epoch seconds).
    pub async fn list(&self) -> Result<Vec<(String, u64, i64)>, TargetError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        let listed = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.err("listing", e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?.to_string();
                Some((name, o.size, o.last_modified.timestamp()))
            })
            .collect())
    }

    /// Remove the marker `NAME.partial` of an upload that never finished (see
    /// [`super::Target::remove_stale_partials`]). On Azure the uncommitted blocks of `NAME` go
    /// first, as an abort drops them, unless `NAME` exists (the upload completed and only its
    /// marker stayed). S3 does not name an upload's parts without its id: they stay until the
    /// bucket's lifecycle rule expires them.
    pub async fn discard_stale(&self, marker: &str) -> Result<(), TargetError> {
        if let (Some(blocks), Some(name)) = (&self.blocks, marker.strip_suffix(".partial"))
            && !self.exists(name).await?
        {
            let path = self.path(name);
            blocks
                .complete_multipart(&path, &String::new(), Vec::new())
                .await
                .map_err(|e| self.err(&format!("dropping the uncommitted blocks of {name}"), e))?;
            self.delete(name).await?;
        }
        self.delete(marker).await
    }

    pub async fn delete(&self, name: &str) -> Result<(), TargetError> {
        self.store
            .delete(&self.path(name))
            .await
            .map_err(|e| self.err(&format!("deleting {name}"), e))
    }
}

fn s3(bucket: &str, settings: &Settings) -> Result<object_store::aws::AmazonS3, String> {
    let profile = aws_profile(
        &settings
            .get("aws_profile")
            .unwrap_or_else(|| "default".into()),
    );
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(retry());
    // The key pair comes from one place: settings/environment, else the profile.
    if let Some(id) = settings.get("aws_access_key_id") {
        let secret = settings
            .get("aws_secret_access_key")
            .ok_or("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".to_string())?;
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(t) = settings.get("aws_session_token") {
            b = b.with_token(t);
        }
    } else if let Some(id) = profile.access_key_id {
        let secret = profile.secret_access_key.ok_or(
            "the AWS profile has aws_access_key_id but no aws_secret_access_key".to_string(),
        )?;
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(t) = profile.session_token {
            b = b.with_token(t);
        }
    }
    let region = settings
        .get("aws_region")
        .or_else(|| settings.get("aws_default_region"))
        .or(profile.region)
        .unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    let endpoint = settings
        .get("aws_endpoint_url_s3")
        .or_else(|| settings.get("aws_endpoint_url"))
        .or(profile.endpoint_url);
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e.trim_end_matches('/'));
    }
    // Over TLS the payload is not hashed into the signature (UNSIGNED-PAYLOAD, as the AWS CLI
    // does on https): TLS guards it on the way and the manifest's sha256 after. A plain-http
    // endpoint (an in-house MinIO, an emulator) keeps the signed payload hash.
    if endpoint
        .as_deref()
        .is_none_or(|e| e.starts_with("https://"))
    {
        b = b.with_unsigned_payload(true);
    }
    b.with_client_options(client_options(endpoint.as_deref()))
        .build()
        .map_err(|e| first_line(&e))
}

fn azure(
    container: &str,
    settings: &Settings,
) -> Result<object_store::azure::MicrosoftAzure, String> {
    let cs = settings
        .get("azure_storage_connection_string")
        .map(|s| connection_string(&s))
        .unwrap_or_default();
    let account = cs
        .get("AccountName")
        .cloned()
        .or_else(|| settings.get("azure_storage_account"))
        .ok_or(
            "no storage account: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN"
                .to_string(),
        )?;
    let endpoint = cs.get("BlobEndpoint").cloned().or_else(|| {
        cs.get("EndpointSuffix").map(|suffix| {
            let proto = cs
                .get("DefaultEndpointsProtocol")
                .map(String::as_str)
                .unwrap_or("https");
            format!("{proto}://{account}.blob.{suffix}")
        })
    });
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_account(&account)
        .with_container_name(container)
        .with_retry(retry());
    if let Some(key) = cs
        .get("AccountKey")
        .cloned()
        .or_else(|| settings.get("azure_storage_key"))
    {
        b = b.with_access_key(key);
    } else if let Some(sas) = cs
        .get("SharedAccessSignature")
        .cloned()
        .or_else(|| settings.get("azure_storage_sas_token"))
    {
        b = b.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'));
    }
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e.trim_end_matches('/').to_string());
    }
    b.with_client_options(client_options(endpoint.as_deref()))
        .build()
        .map_err(|e| first_line(&e))
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 300 {
        format!("{}...", line.chars().take(300).collect::<String>())
    } else {
        line.to_string()
    }
}

/// One line saying what went wrong, from an object_store error: the store's error code where
/// the response carried one (S3 `<Code>`, Azure `x-ms-error-code`/`<Code>`), said in words.
pub fn describe(kind: Kind, e: &object_store::Error) -> String {
    let chain = error_chain(e);
    let code = chain
        .split("<Code>")
        .nth(1)
        .and_then(|r| r.split("</Code>").next())
        .map(str::to_string);
    let word = kind.container_word();
    if let Some(code) = code.as_deref() {
        return match code {
            "NoSuchBucket" | "ContainerNotFound" => format!("the {word} does not exist ({code})"),
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AuthenticationFailed"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired" => {
                format!("the store refused the credentials ({code})")
            }
            "AccessDenied" | "AuthorizationPermissionMismatch" => {
                format!("access denied ({code}): the credentials lack permission")
            }
            // Azure (and Azurite for a wrong key): not authorized to perform this request.
            "AuthorizationFailure" => {
                format!("the store refused the request ({code}): wrong key, or no permission")
            }
            other => format!("the store answered {other}"),
        };
    }
    let lower = chain.to_ascii_lowercase();
    if lower.contains("169.254.169.254")
        || lower.contains("169.254.170.2")
        || lower.contains("/latest/api/token")
        || lower.contains("/latest/meta-data")
    {
        return "no credentials: none in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE's files, --target-setting or the web identity and container variables, and the instance metadata service gave none (not on EC2, or no role attached)".into();
    }
    if let Some(c) = unreachable(&chain) {
        return c;
    }
    match e {
        object_store::Error::NotFound { .. } => format!("not found (or the {word} does not exist)"),
        object_store::Error::PermissionDenied { .. } => "access denied".into(),
        object_store::Error::Unauthenticated { .. } => "the store refused the credentials".into(),
        _ => first_line(&chain),
    }
}

/// The upload task's state.
struct Job {
    store: Arc<dyn ObjectStore>,
    blocks: Option<Arc<dyn MultipartStore>>,
    kind: Kind,
    url: String,
    name: String,
    path: ObjPath,
    marker: ObjPath,
}

impl Job {
    async fn run(self, mut mp: Box<dyn MultipartUpload>, end: TaskEnd) -> Result<(), String> {
        let TaskEnd {
            mut input,
            cancel,
            commit,
            failure,
        } = end;
        let mut parts = 0usize;
        let mut inflight = tokio::task::JoinSet::new();
        let streamed = tokio::select! {
            r = stream_parts(mp.as_mut(), &mut input, &mut inflight, &mut parts, self.kind) => r,
            _ = cancel.cancelled() => Err("upload aborted".to_string()),
        };
        if let Err(cause) = streamed {
            *failure.lock().unwrap() = Some(cause.clone());
            drop(input);
            // Parts already sent finish (or fail) first: one landing after the abort would
            // stay behind as an S3 part or an uncommitted Azure block.
            let settle = async { while inflight.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(120), settle)
                .await
                .is_err()
            {
                inflight.shutdown().await;
            }
            self.discard(mp, parts).await;
            return Err(cause);
        }
        drop(input);
        let go = tokio::select! {
            r = commit => r.is_ok(),
            _ = cancel.cancelled() => false,
        };
        if !go {
            self.discard(mp, parts).await;
            return Err("upload aborted".into());
        }
        if let Err(e) = mp.complete().await {
            let cause = format!("completing {}: {}", self.name, describe(self.kind, &e));
            self.discard(mp, parts).await;
            return Err(cause);
        }
        if let Err(e) = self.store.delete(&self.marker).await {
            tracing::warn!(
                "{}: {}.partial not removed ({}); the archive is complete, the marker only keeps its name from reuse",
                self.url,
                self.name,
                describe(self.kind, &e)
            );
        }
        Ok(())
    }

    /// Abort: no object, no parts or blocks left, marker removed.
    async fn discard(&self, mut mp: Box<dyn MultipartUpload>, parts: usize) {
        if let Err(e) = mp.abort().await {
            tracing::warn!(
                "{}: aborting the upload of {} failed ({}); its parts stay until the bucket's lifecycle rule expires them",
                self.url,
                self.name,
                describe(self.kind, &e)
            );
        }
        if let Some(blocks) = self.blocks.as_ref().filter(|_| parts > 0) {
            // An empty block list drops the name's uncommitted blocks (the name is ours: our
            // marker holds it), leaving an empty blob that goes at once.
            match blocks
                .complete_multipart(&self.path, &String::new(), Vec::new())
                .await
            {
                Ok(_) => {
                    let _ = self.store.delete(&self.path).await;
                }
                Err(e) => tracing::warn!(
                    "{}: the uncommitted blocks of {} were not dropped ({}); Azure removes them after a week",
                    self.url,
                    self.name,
                    describe(self.kind, &e)
                ),
            }
        }
        let _ = self.store.delete(&self.marker).await;
    }
}

async fn stream_parts(
    mp: &mut dyn MultipartUpload,
    input: &mut DuplexStream,
    inflight: &mut tokio::task::JoinSet<object_store::Result<()>>,
    parts: &mut usize,
    kind: Kind,
) -> Result<(), String> {
    // Each part uploads on a task of its own while the next one fills.
    let joined = |r: Result<object_store::Result<()>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("uploading: {}", describe(kind, &e))),
        Err(e) => Err(format!("uploading: {e}")),
    };
    loop {
        let size = part_size(*parts);
        let mut buf = BytesMut::with_capacity(size);
        while buf.len() < size {
            let n = input
                .read_buf(&mut buf)
                .await
                .map_err(|e| format!("reading the archive stream: {e}"))?;
            if n == 0 {
                break;
            }
        }
        let eof = buf.len() < size;
        if buf.is_empty() && *parts > 0 {
            break;
        }
        if *parts >= MAX_PARTS {
            return Err(format!(
                "the archive is larger than {MAX_PARTS} parts allow (about 484 GiB)"
            ));
        }
        while inflight.len() >= INFLIGHT {
            if let Some(r) = inflight.join_next().await {
                joined(r)?;
            }
        }
        inflight.spawn(mp.put_part(PutPayload::from(buf.freeze())));
        *parts += 1;
        if eof {
            break;
        }
    }
    while let Some(r) = inflight.join_next().await {
        joined(r)?;
    }
    Ok(())
}

/// An archive being uploaded; see the module docs.
pub struct ObjectUpload {
    pub name: String,
    pub location: String,
    stream: Streamed<()>,
}

impl ObjectUpload {
    pub fn writer(&mut self) -> Box<dyn AsyncWrite + Send + Unpin> {
        self.stream.writer()
    }

    /// Complete the upload (the object appears under its name), then remove the marker.
    pub async fn commit(&mut self) -> Result<(), TargetError> {
        self.stream.commit().await
    }

    /// Abort the upload and wait until it is cleaned up.
    pub async fn abort(&mut self) {
        self.stream.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (k, c, p) = parse_url("s3://bkt/a/b/").unwrap().unwrap();
        assert_eq!((k, c.as_str(), p.as_str()), (Kind::S3, "bkt", "a/b"));
        let (k, c, p) = parse_url("az://cont").unwrap().unwrap();
        assert_eq!((k, c.as_str(), p.as_str()), (Kind::AzureBlob, "cont", ""));
        assert!(parse_url("/some/dir").is_none());
        assert!(parse_url("azfile://share").is_none());
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://key:secret@bkt/x",
            "s3://bkt/x?sig=1",
            "az://c/../x",
        ] {
            assert!(parse_url(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn part_schedule() {
        assert_eq!(part_size(0), 8 << 20);
        assert_eq!(part_size(1999), 8 << 20);
        assert_eq!(part_size(2000), 16 << 20);
        assert_eq!(part_size(9999), 128 << 20);
        let total: u64 = (0..MAX_PARTS).map(|n| part_size(n) as u64).sum();
        assert_eq!(total, (2000 * (8 + 16 + 32 + 64 + 128)) << 20);
    }
}
