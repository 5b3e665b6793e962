//! The streaming archive writer (tar.zst default, tar.gz, zip), entry spooling and hashing, and
//! the manifest.
//!
//! OWNER: archive helper. Public interface below is relied on by engine/cli; extend, don't break.
//!
//! # How it works
//!
//! [`ArchiveWriter::new`] spawns one *writer task* that owns the compressor and the sink (which
//! is never seeked, so it can be a pipe, an upload or an encryption layer). Any number of tasks
//! add entries through cloned [`EntrySink`]s: each entry is a request on a bounded queue that
//! carries the entry's header and a bounded channel of data chunks
//! ([`CHUNK_SIZE`] × [`CHUNKS_IN_FLIGHT`]). The writer task takes one entry at a time, in the
//! order they were queued, and copies its chunks into the archive, so memory stays flat whatever
//! the sizes: at most about 1 MiB per entry waiting or being written.
//!
//! - [`EntrySink::add_stream`]: length unknown (a command's stdout). The stream is first spooled
//!   to an anonymous temp file (mode 0600, already unlinked, so nothing is ever left behind) while
//!   its sha256 is computed; only a complete stream is queued. A failed stream adds nothing.
//! - [`EntrySink::add_sized`]: length known (a file of a remote `tar` stream). Hashed while
//!   written straight into the archive. If the source ends early (or fails), the entry is padded
//!   with zeros to its declared size so the archive stays valid, and [`ArchiveError::Truncated`]
//!   (or [`ArchiveError::Entry`]) is returned: the entry then *exists but is invalid*; the caller
//!   records it as failed (see [`EntryRecord::failed_file`]).
//! - [`ArchiveWriter::finish`] waits for entries in flight, appends `manifest.json` last,
//!   finishes the compressor and shuts the sink down.
//!
//! Reading back (for `verify` and tests) lives in [`read`]. The format is documented in
//! `docs/format.md`.

pub mod manifest;
pub mod read;
mod tar_backend;
mod zip_backend;

pub use manifest::*;
pub use read::{Mismatch, VerifyReport, read_manifest, verify_archive};

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};

/// Size of the data chunks passed from an entry's source to the writer task.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Chunks queued per entry (besides the one being filled and the one being written).
pub const CHUNKS_IN_FLIGHT: usize = 2;
/// Entries queued for the writer task before `add_*` calls wait.
const QUEUE_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    TarZst,
    TarGz,
    Zip,
}

impl Format {
    /// File name extension without the leading dot: `tar.zst`, `tar.gz`, `zip`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::TarZst => "tar.zst",
            Format::TarGz => "tar.gz",
            Format::Zip => "zip",
        }
    }

    /// The compression level used when none is given: zstd 3, gzip 6, zip deflate 6.
    pub fn default_level(self) -> i32 {
        match self {
            Format::TarZst => 3,
            Format::TarGz | Format::Zip => 6,
        }
    }

    /// Accepted compression levels.
    pub fn level_range(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Format::TarZst => 1..=22,
            Format::TarGz | Format::Zip => 0..=9,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s.trim_start_matches('.') {
            "tar.zst" | "tzst" | "zst" | "zstd" => Ok(Format::TarZst),
            "tar.gz" | "tgz" | "gz" | "gzip" => Ok(Format::TarGz),
            "zip" => Ok(Format::Zip),
            other => Err(format!(
                "unknown archive format {other:?} (expected tar.zst, tar.gz or zip)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("writing archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("entry {path}: source ended after {got} of {expected} bytes")]
    Truncated {
        path: String,
        got: u64,
        expected: u64,
    },
    #[error("entry {path}: {cause}")]
    Entry { path: String, cause: String },
    #[error("archive writer stopped: {0}")]
    Closed(String),
    /// Reading an existing archive failed (bad magic, corrupt or incomplete stream, no manifest).
    #[error("archive {archive}: {cause}")]
    Read { archive: String, cause: String },
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub format: Format,
    /// Compression level (None: format default; zstd 3, gzip 6).
    pub level: Option<i32>,
    /// zstd worker threads (0: single-threaded).
    pub zstd_workers: u32,
    /// Where streams of unknown length are spooled (None: the system temp dir).
    pub spool_dir: Option<std::path::PathBuf>,
}

impl WriterOptions {
    /// Defaults for `format`: default level, single-threaded, system temp dir.
    pub fn new(format: Format) -> WriterOptions {
        WriterOptions {
            format,
            level: None,
            zstd_workers: 0,
            spool_dir: None,
        }
    }
}

/// Metadata of an entry whose size is known up front.
#[derive(Debug, Clone)]
pub struct EntryMeta {
    /// Path inside the archive, `/`-separated, relative (`<component>/<host>/<file>`).
    pub path: String,
    pub size: u64,
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// What the writer task is told to append.
#[derive(Debug, Clone)]
pub(crate) struct EntryHeader {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    pub link_target: Option<String>,
}

pub(crate) struct EntryRequest {
    pub header: EntryHeader,
    /// File data, exactly `header.size` bytes; if the channel closes early the backend pads with
    /// zeros. `None` for dirs and symlinks.
    pub data: Option<mpsc::Receiver<Bytes>>,
    pub done: oneshot::Sender<Result<(), String>>,
}

enum Msg {
    Entry(EntryRequest),
    Finish {
        manifest: Vec<u8>,
        done: oneshot::Sender<Result<(), ArchiveError>>,
    },
}

/// State shared by the writer handle and every [`EntrySink`].
struct Shared {
    inflight: AtomicUsize,
    idle: Notify,
    closing: AtomicBool,
    /// Paths taken so far (entries written or being written), to refuse duplicates.
    paths: Mutex<HashSet<String>>,
    /// The writer task's fatal error, once it has stopped.
    fatal: Mutex<Option<String>>,
    spool_dir: PathBuf,
}

impl Shared {
    fn closed_error(&self) -> ArchiveError {
        match self.fatal.lock().unwrap().clone() {
            Some(e) => ArchiveError::Closed(e),
            None if self.closing.load(Ordering::SeqCst) => {
                ArchiveError::Closed("the archive is already finished".into())
            }
            None => ArchiveError::Closed("the writer task ended".into()),
        }
    }
}

/// Counts an entry in flight for as long as it lives.
struct InflightGuard(Arc<Shared>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Writes one archive to `sink`. Entries come from any number of tasks through cloned
/// [`EntrySink`]s; one writer appends finished entries, so memory stays flat.
///
/// Dropping it without [`finish`](ArchiveWriter::finish) stops the writer task; what was written
/// so far is an incomplete archive (no manifest), which the target's `abort` removes.
pub struct ArchiveWriter {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A cloneable handle that adds entries to the archive.
#[derive(Clone)]
pub struct EntrySink {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

/// The compressor/format behind the writer task.
enum Backend {
    Tar(tar_backend::TarBackend),
    Zip(zip_backend::ZipBackend),
}

impl Backend {
    async fn write_entry(
        &mut self,
        header: &EntryHeader,
        data: Option<mpsc::Receiver<Bytes>>,
    ) -> std::io::Result<()> {
        match self {
            Backend::Tar(t) => t.write_entry(header, data).await,
            Backend::Zip(z) => z.write_entry(header, data).await,
        }
    }

    async fn finish(self, manifest: Vec<u8>) -> std::io::Result<()> {
        let header = EntryHeader {
            path: MANIFEST_PATH.to_string(),
            kind: EntryKind::File,
            size: manifest.len() as u64,
            mode: 0o600,
            mtime: jiff::Timestamp::now().as_second(),
            link_target: None,
        };
        match self {
            Backend::Tar(t) => t.finish(&header, manifest).await,
            Backend::Zip(z) => z.finish(&header, manifest).await,
        }
    }
}

impl ArchiveWriter {
    pub async fn new(
        sink: Box<dyn AsyncWrite + Send + Unpin>,
        opts: WriterOptions,
    ) -> Result<ArchiveWriter, ArchiveError> {
        let level = opts.level.unwrap_or(opts.format.default_level());
        if !opts.format.level_range().contains(&level) {
            let r = opts.format.level_range();
            return Err(ArchiveError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "compression level {level} is out of range for {} ({}-{})",
                    opts.format,
                    r.start(),
                    r.end()
                ),
            )));
        }
        let spool_dir = opts.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
        // Fail now, not on the first command's output, if the spool dir is unusable.
        let probe = spool_dir.clone();
        tokio::task::spawn_blocking(move || tempfile::tempfile_in(&probe))
            .await
            .map_err(|e| ArchiveError::Closed(e.to_string()))?
            .map_err(|e| ArchiveError::Entry {
                path: spool_dir.display().to_string(),
                cause: format!("spool directory is not usable: {e}"),
            })?;

        let backend = match opts.format {
            Format::TarZst | Format::TarGz => Backend::Tar(tar_backend::TarBackend::new(
                sink,
                opts.format,
                level,
                opts.zstd_workers,
            )),
            Format::Zip => Backend::Zip(zip_backend::ZipBackend::new(sink, level)),
        };
        let shared = Arc::new(Shared {
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            closing: AtomicBool::new(false),
            paths: Mutex::new(HashSet::new()),
            fatal: Mutex::new(None),
            spool_dir,
        });
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(writer_task(backend, rx, shared.clone()));
        Ok(ArchiveWriter {
            tx,
            shared,
            task: Some(task),
        })
    }

    pub fn sink(&self) -> EntrySink {
        EntrySink {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Wait until no entry is in flight (every `add_*` call started so far has returned), then
    /// write `manifest.json` as the last entry, finish the compressor and flush and shut down
    /// the sink. `add_*` calls started after this begins fail with [`ArchiveError::Closed`].
    pub async fn finish(mut self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| ArchiveError::Entry {
            path: MANIFEST_PATH.into(),
            cause: format!("serializing: {e}"),
        })?;
        self.shared.closing.store(true, Ordering::SeqCst);
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.inflight.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
        let (done, done_rx) = oneshot::channel();
        if self
            .tx
            .send(Msg::Finish {
                manifest: json,
                done,
            })
            .await
            .is_err()
        {
            return Err(self.shared.closed_error());
        }
        let result = match done_rx.await {
            Ok(r) => r,
            Err(_) => Err(self.shared.closed_error()),
        };
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        result
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.shared.closing.store(true, Ordering::SeqCst);
            self.shared
                .fatal
                .lock()
                .unwrap()
                .get_or_insert_with(|| "the archive was abandoned before it was finished".into());
            task.abort();
        }
    }
}

async fn writer_task(mut backend: Backend, mut rx: mpsc::Receiver<Msg>, shared: Arc<Shared>) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Entry(req) => {
                let EntryRequest { header, data, done } = req;
                match backend.write_entry(&header, data).await {
                    Ok(()) => {
                        let _ = done.send(Ok(()));
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        *shared.fatal.lock().unwrap() = Some(msg.clone());
                        let _ = done.send(Err(msg));
                        break;
                    }
                }
            }
            Msg::Finish { manifest, done } => {
                let r = backend.finish(manifest).await.map_err(ArchiveError::Io);
                if let Err(e) = &r {
                    *shared.fatal.lock().unwrap() = Some(e.to_string());
                }
                let _ = done.send(r);
                return;
            }
        }
    }
    // The writer failed (or every sender is gone): refuse what is still queued.
    rx.close();
    let msg = shared
        .fatal
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| "the writer task ended".into());
    while let Some(m) = rx.recv().await {
        match m {
            Msg::Entry(req) => {
                let _ = req.done.send(Err(msg.clone()));
            }
            Msg::Finish { done, .. } => {
                let _ = done.send(Err(ArchiveError::Closed(msg.clone())));
            }
        }
    }
}

/// Check an entry path: relative, `/`-separated, no empty, `.` or `..` components, not the
/// reserved manifest name.
fn check_path(path: &str) -> Result<(), ArchiveError> {
    let bad = |cause: &str| {
        Err(ArchiveError::Entry {
            path: path.to_string(),
            cause: cause.to_string(),
        })
    };
    if path.is_empty() {
        return bad("empty path");
    }
    if path.starts_with('/') {
        return bad("absolute path; entry paths are relative (<component>/<host>/<file>)");
    }
    if path.contains('\0') {
        return bad("path contains a NUL byte");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("path has an empty, `.` or `..` component");
    }
    if path == MANIFEST_PATH {
        return bad("path is reserved for the manifest");
    }
    Ok(())
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl EntrySink {
    /// Register an entry in flight and reserve its path.
    fn begin(&self, path: &str) -> Result<InflightGuard, ArchiveError> {
        check_path(path)?;
        self.shared.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = InflightGuard(self.shared.clone());
        if self.shared.closing.load(Ordering::SeqCst) || self.shared.fatal.lock().unwrap().is_some()
        {
            return Err(self.shared.closed_error());
        }
        if !self.shared.paths.lock().unwrap().insert(path.to_string()) {
            return Err(ArchiveError::Entry {
                path: path.to_string(),
                cause: "already in the archive".into(),
            });
        }
        Ok(guard)
    }

    fn release(&self, path: &str) {
        self.shared.paths.lock().unwrap().remove(path);
    }

    /// Queue an entry; returns the data sender (files) and the completion receiver.
    async fn submit(
        &self,
        header: EntryHeader,
        with_data: bool,
    ) -> Result<
        (
            Option<mpsc::Sender<Bytes>>,
            oneshot::Receiver<Result<(), String>>,
        ),
        ArchiveError,
    > {
        let (data_tx, data_rx) = if with_data {
            let (t, r) = mpsc::channel(CHUNKS_IN_FLIGHT);
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let (done, done_rx) = oneshot::channel();
        let req = EntryRequest {
            header,
            data: data_rx,
            done,
        };
        if self.tx.send(Msg::Entry(req)).await.is_err() {
            return Err(self.shared.closed_error());
        }
        Ok((data_tx, done_rx))
    }

    async fn wait_done(
        &self,
        path: &str,
        done: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), ArchiveError> {
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ArchiveError::Closed(format!("entry {path}: {e}"))),
            Err(_) => Err(self.shared.closed_error()),
        }
    }

    /// Add a stream of unknown length (e.g. a command's stdout): spooled to a temp file while
    /// hashed, then appended. On a read error nothing is added and the error is returned.
    pub async fn add_stream<R: AsyncRead + Unpin + Send>(
        &self,
        path: &str,
        mode: u32,
        reader: R,
    ) -> Result<EntryRecord, ArchiveError> {
        let guard = self.begin(path)?;
        let spooled = match spool(&self.shared.spool_dir, path, reader).await {
            Ok(s) => s,
            Err(e) => {
                self.release(path);
                drop(guard);
                return Err(e);
            }
        };
        let header = EntryHeader {
            path: path.to_string(),
            kind: EntryKind::File,
            size: spooled.size,
            mode: mode & 0o7777,
            mtime: now(),
            link_target: None,
        };
        let (data_tx, done) = self.submit(header, true).await?;
        let mut file = spooled.file;
        let pumped = pump(
            &mut file,
            spooled.size,
            data_tx.expect("file entry has data"),
            None,
        )
        .await;
        self.wait_done(path, done).await?;
        drop(guard);
        match pumped {
            PumpEnd::Complete(n) if n == spooled.size => Ok(EntryRecord {
                path: path.to_string(),
                kind: EntryKind::File,
                size: spooled.size,
                sha256: Some(spooled.sha256),
                mode: mode & 0o7777,
                link_target: None,
            }),
            PumpEnd::Complete(n) | PumpEnd::Short(n) => Err(ArchiveError::Entry {
                path: path.to_string(),
                cause: format!("spool file gave {n} of {} bytes", spooled.size),
            }),
            PumpEnd::ReadError(n, e) => Err(ArchiveError::Entry {
                path: path.to_string(),
                cause: format!("reading spool file after {n} bytes: {e}"),
            }),
            PumpEnd::WriterGone => Err(self.shared.closed_error()),
        }
    }

    /// Add an entry of known size (e.g. a file from a remote `tar` stream), hashed while it is
    /// written straight into the archive (the writer is held for this entry meanwhile).
    ///
    /// If the reader yields more than `meta.size` bytes, the rest is not read. If it ends early
    /// or fails, the entry is padded with zeros to `meta.size` so the archive stays valid, and
    /// [`ArchiveError::Truncated`] (early end) or [`ArchiveError::Entry`] (read error) is
    /// returned: the entry is then in the archive but its content is invalid; record it as
    /// failed ([`EntryRecord::failed_file`]).
    pub async fn add_sized<R: AsyncRead + Unpin + Send>(
        &self,
        meta: EntryMeta,
        reader: R,
    ) -> Result<EntryRecord, ArchiveError> {
        let guard = self.begin(&meta.path)?;
        let header = EntryHeader {
            path: meta.path.clone(),
            kind: EntryKind::File,
            size: meta.size,
            mode: meta.mode & 0o7777,
            mtime: meta.mtime,
            link_target: None,
        };
        let (data_tx, done) = match self.submit(header, true).await {
            Ok(x) => x,
            Err(e) => {
                self.release(&meta.path);
                return Err(e);
            }
        };
        let mut hasher = Sha256::new();
        let mut reader = reader;
        let pumped = pump(
            &mut reader,
            meta.size,
            data_tx.expect("file entry has data"),
            Some(&mut hasher),
        )
        .await;
        self.wait_done(&meta.path, done).await?;
        drop(guard);
        match pumped {
            PumpEnd::Complete(_) => Ok(EntryRecord {
                path: meta.path,
                kind: EntryKind::File,
                size: meta.size,
                sha256: Some(hex::encode(hasher.finalize())),
                mode: meta.mode & 0o7777,
                link_target: None,
            }),
            PumpEnd::Short(got) => Err(ArchiveError::Truncated {
                path: meta.path,
                got,
                expected: meta.size,
            }),
            PumpEnd::ReadError(got, e) => Err(ArchiveError::Entry {
                path: meta.path,
                cause: format!(
                    "reading source failed after {got} of {} bytes: {e} (entry padded with zeros, content invalid)",
                    meta.size
                ),
            }),
            PumpEnd::WriterGone => Err(self.shared.closed_error()),
        }
    }

    /// Add a directory entry.
    pub async fn add_dir(
        &self,
        path: &str,
        mode: u32,
        mtime: i64,
    ) -> Result<EntryRecord, ArchiveError> {
        let path = path.trim_end_matches('/');
        let guard = self.begin(path)?;
        let header = EntryHeader {
            path: path.to_string(),
            kind: EntryKind::Dir,
            size: 0,
            mode: mode & 0o7777,
            mtime,
            link_target: None,
        };
        let (_, done) = self.submit(header, false).await?;
        self.wait_done(path, done).await?;
        drop(guard);
        Ok(EntryRecord {
            path: path.to_string(),
            kind: EntryKind::Dir,
            size: 0,
            sha256: None,
            mode: mode & 0o7777,
            link_target: None,
        })
    }

    /// Add a symbolic link entry.
    pub async fn add_symlink(
        &self,
        path: &str,
        target: &str,
        mtime: i64,
    ) -> Result<EntryRecord, ArchiveError> {
        if target.is_empty() || target.contains('\0') {
            return Err(ArchiveError::Entry {
                path: path.to_string(),
                cause: "empty or invalid symlink target".into(),
            });
        }
        let guard = self.begin(path)?;
        let header = EntryHeader {
            path: path.to_string(),
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime,
            link_target: Some(target.to_string()),
        };
        let (_, done) = self.submit(header, false).await?;
        self.wait_done(path, done).await?;
        drop(guard);
        Ok(EntryRecord {
            path: path.to_string(),
            kind: EntryKind::Symlink,
            size: 0,
            sha256: None,
            mode: 0o777,
            link_target: Some(target.to_string()),
        })
    }
}

struct Spooled {
    file: tokio::fs::File,
    size: u64,
    sha256: String,
}

/// Copy `reader` to an anonymous temp file in `dir` (0600, unlinked), hashing as it goes.
async fn spool<R: AsyncRead + Unpin>(
    dir: &std::path::Path,
    path: &str,
    mut reader: R,
) -> Result<Spooled, ArchiveError> {
    let d = dir.to_path_buf();
    let std_file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(&d))
        .await
        .map_err(|e| ArchiveError::Closed(e.to_string()))?
        .map_err(|e| ArchiveError::Entry {
            path: path.to_string(),
            cause: format!("creating spool file in {}: {e}", dir.display()),
        })?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let spool_err = |e: std::io::Error| ArchiveError::Entry {
        path: path.to_string(),
        cause: format!("writing spool file in {}: {e}", dir.display()),
    };
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ArchiveError::Entry {
                    path: path.to_string(),
                    cause: format!("reading source failed after {size} bytes: {e} (nothing added)"),
                });
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).await.map_err(spool_err)?;
        size += n as u64;
    }
    file.flush().await.map_err(spool_err)?;
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(spool_err)?;
    Ok(Spooled {
        file,
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

enum PumpEnd {
    /// All `size` bytes sent.
    Complete(u64),
    /// The reader ended after this many bytes.
    Short(u64),
    ReadError(u64, std::io::Error),
    /// The writer task dropped the data channel (it failed).
    WriterGone,
}

/// Read up to `size` bytes from `reader` in [`CHUNK_SIZE`] chunks into `tx`, hashing them.
async fn pump<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: u64,
    tx: mpsc::Sender<Bytes>,
    mut hasher: Option<&mut Sha256>,
) -> PumpEnd {
    let mut sent = 0u64;
    while sent < size {
        let want = (size - sent).min(CHUNK_SIZE as u64) as usize;
        let mut buf = BytesMut::with_capacity(want);
        let mut eof = false;
        while buf.len() < want {
            let mut limited = (&mut *reader).take((want - buf.len()) as u64);
            match limited.read_buf(&mut buf).await {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let n = buf.len() as u64;
                    if let Some(h) = hasher.as_deref_mut() {
                        h.update(&buf);
                    }
                    if !buf.is_empty() && tx.send(buf.freeze()).await.is_err() {
                        return PumpEnd::WriterGone;
                    }
                    return PumpEnd::ReadError(sent + n, e);
                }
            }
        }
        let n = buf.len() as u64;
        if n > 0 {
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&buf);
            }
            if tx.send(buf.freeze()).await.is_err() {
                return PumpEnd::WriterGone;
            }
            sent += n;
        }
        if eof {
            return PumpEnd::Short(sent);
        }
    }
    PumpEnd::Complete(sent)
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The reading side of an entry's data channel, as the backends see it: yields exactly `size`
/// bytes, padding with zeros when the channel closes early.
pub(crate) struct ChunkReader {
    rx: Option<mpsc::Receiver<Bytes>>,
    current: Bytes,
    remaining: u64,
}

impl ChunkReader {
    pub fn new(rx: Option<mpsc::Receiver<Bytes>>, size: u64) -> ChunkReader {
        ChunkReader {
            rx,
            current: Bytes::new(),
            remaining: size,
        }
    }

    /// Next piece of data (blocking; for the zip thread). `None` at the end.
    pub fn blocking_next(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        while self.current.is_empty() {
            match self.rx.as_mut().and_then(|rx| rx.blocking_recv()) {
                Some(b) => self.current = b,
                None => return Some(self.padding()),
            }
        }
        Some(self.take_current())
    }

    /// Next piece of data. `None` at the end.
    pub async fn next(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        while self.current.is_empty() {
            let got = match self.rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => None,
            };
            match got {
                Some(b) => self.current = b,
                None => return Some(self.padding()),
            }
        }
        Some(self.take_current())
    }

    /// The source ended early: zeros, up to what is missing.
    fn padding(&mut self) -> Bytes {
        self.rx = None;
        let n = self.remaining.min(ZEROS.len() as u64) as usize;
        self.remaining -= n as u64;
        Bytes::from_static(&ZEROS[..n])
    }

    fn take_current(&mut self) -> Bytes {
        let n = (self.current.len() as u64).min(self.remaining) as usize;
        self.remaining -= n as u64;
        let out = self.current.split_to(n);
        if self.remaining == 0 {
            self.current.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests;
