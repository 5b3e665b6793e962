//! The streaming archive writer (tar.zst default, tar.gz, zip), entry spooling and hashing, and
//! the manifest.
//!
//! OWNER: archive helper. Public interface below is relied on by engine/cli; extend, don't break.
//!
//! # How it works
//!
//! [`ArchiveWriter::new`] spawns one *writer task* that owns the sink (which is never seeked, so
//! it can be a pipe, an upload or an encryption layer). Any number of tasks add entries through
//! cloned [`EntrySink`]s, each entry compressed **by the task that receives it, while its bytes
//! arrive**: the data is cut into [`CHUNK`]s, each compressed on its own (a zstd frame, a gzip
//! member, or a deflate run ending in a sync flush for zip) on a pool of
//! [`WriterOptions::zstd_workers`] blocking threads, and the finished pieces go to the entry's
//! spool (memory up to 256 KiB, then an anonymous temp file, 0600, unlinked from the start). When
//! the entry ends, its tar header (now that the size is known) is compressed as one more piece
//! and the finished entry is queued; the writer task only copies pieces to the sink, unchanged.
//! The archive still decompresses to one ordinary tar stream (or is an ordinary zip), because
//! concatenated zstd frames and gzip members decompress to the concatenation of their contents.
//!
//! So no host ever waits for another one's stream, a failed stream adds nothing, and memory is
//! bounded by [`ACTIVE_ENTRIES`] chunks being filled plus the pool's chunks, whatever the sizes.
//!
//! - [`EntrySink::begin_stream`] → [`StreamEntry`]: write or `copy_from`, then `commit` (or drop
//!   to add nothing). [`EntrySink::add_stream`] and [`EntrySink::add_sized`] wrap it; a sized
//!   source that ends early adds nothing and returns [`ArchiveError::Truncated`].
//! - [`ArchiveWriter::finish`] waits for entries in flight, appends `manifest.json` last (with
//!   tar's end blocks, or zip's central directory) and shuts the sink down.
//!
//! Reading back (for `verify` and tests) lives in [`read`]. The format is documented in
//! `docs/format.md`.

mod codec;
pub mod crypt;
pub mod digest;
pub mod entries;
mod entry;
pub mod extract;
pub mod manifest;
pub mod read;
mod tar_backend;
mod targuard;
mod zip_backend;

pub use codec::CHUNK;
pub use entry::{CopyError, StreamEntry};

pub use digest::ArchiveDigest;
pub use entries::{Entries, EntrySpool};
pub use manifest::*;
pub use read::{Mismatch, VerifyReport, read_manifest, verify_archive};

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::sync::atomic::AtomicU64;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use codec::Codec;
use entry::Prepared;

/// Finished entries queued for the writer task before commits wait (each holds at most a small
/// in-memory spool; larger ones are in files).
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
    /// Extracting refused the archive (a hostile or damaged entry, a mismatch with the
    /// manifest); `cause` holds one line per problem. Nothing was written outside the
    /// destination, nothing was moved into it.
    #[error("archive {archive}: {cause}")]
    Refused { archive: String, cause: String },
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub format: Format,
    /// Compression level (None: format default; zstd 3, gzip 6).
    pub level: Option<i32>,
    /// Compression threads: chunks compressed at once (0 or 1: one).
    pub zstd_workers: u32,
    /// Where entries' compressed bytes are spooled (None: the system temp dir).
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

enum Msg {
    Entry(Box<Prepared>),
    Finish {
        done: oneshot::Sender<Result<(), ArchiveError>>,
    },
}

/// Entries being received at once, across all hosts (each holds at most one chunk being filled
/// and [`entry::PIECES_IN_FLIGHT`]-bounded pieces): the bound on the writer's share of memory.
pub const ACTIVE_ENTRIES: usize = 16;

/// State shared by the writer handle and every [`EntrySink`].
struct Shared {
    inflight: AtomicUsize,
    idle: Notify,
    closing: AtomicBool,
    /// Paths taken so far (entries written or being written), to refuse duplicates.
    /// Held as 128-bit digests of the paths, not the paths: 16 bytes an entry (a run of a
    /// million files held 100+ MB of path strings here).
    paths: Mutex<HashSet<PathKey>>,
    /// The writer task's fatal error, once it has stopped.
    fatal: Mutex<Option<String>>,
    /// The first failure to write a spool file ([`EntrySink::spool_failure`]).
    spool_failure: std::sync::OnceLock<String>,
    spool_dir: PathBuf,
    format: Format,
    codec: Arc<Codec>,
    /// Entries being received.
    active: Arc<Semaphore>,
    /// Compressed bytes in spool files now, and the most there ever were at once.
    spool_bytes: AtomicU64,
    spool_peak: AtomicU64,
    /// Bytes of the archive written so far.
    written: AtomicU64,
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
pub(crate) struct InflightGuard(Arc<Shared>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// See [`EntrySink::slot`].
pub struct Slot(tokio::sync::OwnedSemaphorePermit);

/// Figures of a writer, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Most compressed bytes held in spool files at once.
    pub spool_peak: u64,
    /// Compressed bytes in spool files now.
    pub spool_now: u64,
    /// Archive bytes written to the sink so far.
    pub written: u64,
}

/// Writes one archive to `sink`. Entries come from any number of tasks through cloned
/// [`EntrySink`]s; each is compressed by the task that receives it, and one writer task
/// splices finished entries into the sink, so no host waits for another and memory stays flat.
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

/// The container format behind the writer task.
enum Backend {
    Tar(tar_backend::TarBackend),
    Zip(zip_backend::ZipBackend),
}

impl Backend {
    async fn write(&mut self, p: Prepared) -> std::io::Result<()> {
        match self {
            Backend::Tar(t) => t.write(p).await,
            Backend::Zip(z) => z.write(p).await,
        }
    }

    async fn finish(self, codec: &Codec) -> std::io::Result<()> {
        match self {
            Backend::Tar(t) => t.finish(codec).await,
            Backend::Zip(z) => z.finish().await,
        }
    }
}

/// Counts the bytes that reach the sink.
struct CountingSink {
    inner: Box<dyn AsyncWrite + Send + Unpin>,
    shared: Arc<Shared>,
}

impl AsyncWrite for CountingSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.shared.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
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

        let codec = Codec::new(opts.format, level, opts.zstd_workers.max(1) as usize);
        let shared = Arc::new(Shared {
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            closing: AtomicBool::new(false),
            paths: Mutex::new(HashSet::new()),
            fatal: Mutex::new(None),
            spool_failure: Default::default(),
            spool_dir,
            format: opts.format,
            codec,
            active: Arc::new(Semaphore::new(ACTIVE_ENTRIES)),
            spool_bytes: AtomicU64::new(0),
            spool_peak: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        let sink: Box<dyn AsyncWrite + Send + Unpin> = Box::new(CountingSink {
            inner: sink,
            shared: shared.clone(),
        });
        let backend = match opts.format {
            Format::TarZst | Format::TarGz => Backend::Tar(tar_backend::TarBackend::new(sink)),
            Format::Zip => Backend::Zip(zip_backend::ZipBackend::new(sink)),
        };
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

    /// Spool and output figures so far.
    pub fn stats(&self) -> WriterStats {
        stats(&self.shared)
    }

    /// Wait until no entry is in flight (every `add_*` call started so far has returned), then
    /// write `manifest.json` as the last entry, finish the compressed stream and flush and shut
    /// down the sink. `add_*` calls started after this begins fail with [`ArchiveError::Closed`].
    pub async fn finish(mut self, manifest: &Manifest) -> Result<(), ArchiveError> {
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
        self.add_manifest(manifest).await?;
        let (done, done_rx) = oneshot::channel();
        if self.tx.send(Msg::Finish { done }).await.is_err() {
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

impl ArchiveWriter {
    /// `manifest.json` as the last entry: serialized to a spool file (its size grows with the
    /// number of entries: never a buffer in memory), then added like any other entry.
    async fn add_manifest(&self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let bad = |cause: String| ArchiveError::Entry {
            path: MANIFEST_PATH.into(),
            cause,
        };
        // Written here, not on a blocking thread (which would need a copy of the manifest):
        // nothing else runs at this point of the run.
        let dir = &self.shared.spool_dir;
        let file = (|| -> Result<std::fs::File, String> {
            use std::io::{Seek, Write};
            let file = tempfile::tempfile_in(dir)
                .map_err(|e| format!("spool file in {}: {e}", dir.display()))?;
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
            serde_json::to_writer_pretty(&mut w, manifest)
                .map_err(|e| format!("serializing: {e}"))?;
            w.flush().map_err(|e| format!("writing: {e}"))?;
            let mut file = w.into_inner().map_err(|e| format!("writing: {e}"))?;
            file.seek(std::io::SeekFrom::Start(0))
                .map_err(|e| format!("writing: {e}"))?;
            Ok(file)
        })()
        .map_err(bad)?;
        // The reserved name, past the closed door: counted in flight like any entry.
        self.shared.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = InflightGuard(self.shared.clone());
        let mut entry = StreamEntry::new(self.sink(), MANIFEST_PATH.to_string(), guard, None);
        let mut file = tokio::fs::File::from_std(file);
        match entry.copy_from(&mut file, None).await {
            Ok(_) => {}
            Err(CopyError::Local(e)) => return Err(e),
            Err(CopyError::Source(e)) => return Err(bad(format!("reading back: {e}"))),
        }
        entry.commit(0o600, now()).await.map(|_| ())
    }
}

fn stats(shared: &Shared) -> WriterStats {
    WriterStats {
        spool_peak: shared.spool_peak.load(Ordering::SeqCst),
        spool_now: shared.spool_bytes.load(Ordering::SeqCst),
        written: shared.written.load(Ordering::Relaxed),
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
            Msg::Entry(p) => {
                let path = p.header.path.clone();
                if let Err(e) = backend.write(*p).await {
                    *shared.fatal.lock().unwrap() = Some(format!("{e} (writing {path})"));
                    break;
                }
            }
            Msg::Finish { done } => {
                let r = backend
                    .finish(&shared.codec)
                    .await
                    .map_err(ArchiveError::Io);
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
        if let Msg::Finish { done, .. } = m {
            let _ = done.send(Err(ArchiveError::Closed(msg.clone())));
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

/// A path's key in [`Shared::paths`]: the first 128 bits of its sha256 (two different paths
/// sharing one is beyond any archive's count of entries).
type PathKey = [u8; 16];

fn path_key(path: &str) -> PathKey {
    use sha2::Digest;
    let d = sha2::Sha256::digest(path.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
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
        if !self.shared.paths.lock().unwrap().insert(path_key(path)) {
            return Err(ArchiveError::Entry {
                path: path.to_string(),
                cause: "already in the archive".into(),
            });
        }
        Ok(guard)
    }

    fn release(&self, path: &str) {
        self.shared.paths.lock().unwrap().remove(&path_key(path));
    }

    /// The first failure to write a spool file (`writing the spool file: CAUSE`, e.g. its disk
    /// is full), if one happened: the entry it hit failed with it; the run decides whether it
    /// goes on (a spool on the target's own disk means the archive cannot fit either).
    pub fn spool_failure(&self) -> Option<String> {
        self.shared.spool_failure.get().cloned()
    }

    /// Spool and output figures so far.
    pub fn stats(&self) -> WriterStats {
        stats(&self.shared)
    }

    /// Whether `path` is in the archive or being added.
    pub fn is_taken(&self, path: &str) -> bool {
        self.shared.paths.lock().unwrap().contains(&path_key(path))
    }

    /// Where entries are spooled (also the place for other temporary files of the run).
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.shared.spool_dir
    }

    /// A place among the [`ACTIVE_ENTRIES`] entries that may be received at once; waits for
    /// one. Take it *before* opening the stream it is for: a stream whose data waits unread
    /// stalls the other channels of its SSH session, so nothing may wait for a slot while
    /// holding one of those open. A stream of many entries (a file copy) takes one slot for all
    /// of them ([`EntrySink::begin_in`]).
    pub async fn slot(&self) -> Result<Slot, ArchiveError> {
        self.shared
            .active
            .clone()
            .acquire_owned()
            .await
            .map(Slot)
            .map_err(|_| self.shared.closed_error())
    }

    /// Start a file entry of unknown length at `path`, in its own slot: write to it, then
    /// [`commit`](StreamEntry::commit) it, or drop it to add nothing.
    pub async fn begin_stream(&self, path: &str) -> Result<StreamEntry, ArchiveError> {
        let slot = self.slot().await?;
        let guard = self.begin(path)?;
        Ok(StreamEntry::new(
            self.clone(),
            path.to_string(),
            guard,
            Some(slot.0),
        ))
    }

    /// Start a file entry in a slot the caller holds (one entry at a time per slot).
    pub fn begin_in(&self, _slot: &Slot, path: &str) -> Result<StreamEntry, ArchiveError> {
        let guard = self.begin(path)?;
        Ok(StreamEntry::new(
            self.clone(),
            path.to_string(),
            guard,
            None,
        ))
    }

    /// Add a stream of unknown length (e.g. a command's stdout), compressed while it arrives.
    /// On a read error nothing is added and the error is returned.
    pub async fn add_stream<R: AsyncRead + Unpin + Send>(
        &self,
        path: &str,
        mode: u32,
        mut reader: R,
    ) -> Result<EntryRecord, ArchiveError> {
        let mut entry = self.begin_stream(path).await?;
        match entry.copy_from(&mut reader, None).await {
            Ok(_) => entry.commit(mode, now()).await,
            Err(CopyError::Local(e)) => Err(e),
            Err(CopyError::Source(e)) => Err(ArchiveError::Entry {
                path: path.to_string(),
                cause: format!(
                    "reading source failed after {} bytes: {e} (nothing added)",
                    entry.size()
                ),
            }),
        }
    }

    /// Add an entry of known size (e.g. a file of a remote `tar` stream), compressed while it
    /// arrives. If the reader yields more than `meta.size` bytes, the rest is not read. If it
    /// ends early ([`ArchiveError::Truncated`]) or fails ([`ArchiveError::Entry`]), nothing is
    /// added.
    pub async fn add_sized<R: AsyncRead + Unpin + Send>(
        &self,
        meta: EntryMeta,
        reader: R,
    ) -> Result<EntryRecord, ArchiveError> {
        let slot = self.slot().await?;
        self.add_sized_in(&slot, meta, reader).await
    }

    /// [`add_sized`](EntrySink::add_sized) in a slot the caller holds.
    pub async fn add_sized_in<R: AsyncRead + Unpin + Send>(
        &self,
        slot: &Slot,
        meta: EntryMeta,
        reader: R,
    ) -> Result<EntryRecord, ArchiveError> {
        let (mode, mtime) = (meta.mode, meta.mtime);
        self.receive_in(slot, meta, reader)
            .await?
            .commit(mode, mtime)
            .await
    }

    /// Receive `meta.size` bytes from `reader` into a new entry under `slot`'s place, without
    /// committing it: the caller commits it (possibly on another task, so that the last
    /// piece's compression overlaps with receiving the next entry). A source that ends early
    /// or fails adds nothing ([`ArchiveError::Truncated`] or a "reading source failed" error).
    pub async fn receive_in<R: AsyncRead + Unpin + Send>(
        &self,
        slot: &Slot,
        meta: EntryMeta,
        mut reader: R,
    ) -> Result<StreamEntry, ArchiveError> {
        let mut entry = self.begin_in(slot, &meta.path)?;
        match entry.copy_from(&mut reader, Some(meta.size)).await {
            Ok(got) if got == meta.size => Ok(entry),
            Ok(got) => Err(ArchiveError::Truncated {
                path: meta.path,
                got,
                expected: meta.size,
            }),
            Err(CopyError::Local(e)) => Err(e),
            Err(CopyError::Source(e)) => Err(ArchiveError::Entry {
                path: meta.path,
                cause: format!(
                    "reading source failed after {} of {} bytes: {e} (nothing added)",
                    entry.size(),
                    meta.size
                ),
            }),
        }
    }

    /// Queue an entry without data (a directory or symlink).
    async fn add_empty(&self, header: EntryHeader) -> Result<(), ArchiveError> {
        let guard = self.begin(&header.path)?;
        let head = if self.shared.format == Format::Zip {
            Vec::new()
        } else {
            self.shared
                .codec
                .compress_blocking(&tar_backend::tar_header_bytes(&header))
                .map_err(ArchiveError::Io)?
        };
        let p = Prepared {
            header,
            head,
            body: None,
            tail: Vec::new(),
            crc32: 0,
        };
        let r = self.queue(p).await;
        drop(guard);
        r
    }

    /// Add a directory entry.
    pub async fn add_dir(
        &self,
        path: &str,
        mode: u32,
        mtime: i64,
    ) -> Result<EntryRecord, ArchiveError> {
        let path = path.trim_end_matches('/');
        self.add_empty(EntryHeader {
            path: path.to_string(),
            kind: EntryKind::Dir,
            size: 0,
            mode: mode & 0o7777,
            mtime,
            link_target: None,
        })
        .await?;
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
        self.add_empty(EntryHeader {
            path: path.to_string(),
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0o777,
            mtime,
            link_target: Some(target.to_string()),
        })
        .await?;
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

#[cfg(test)]
mod tests;
