//! The streaming archive writer (tar.zst default, tar.gz, zip), entry spooling and hashing, and
//! the manifest.
//!
//! OWNER: archive helper. Public interface below is relied on by engine/cli; extend, don't break.

pub mod manifest;

pub use manifest::*;

use tokio::io::{AsyncRead, AsyncWrite};

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
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("writing archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("entry {path}: source ended after {got} of {expected} bytes")]
    Truncated { path: String, got: u64, expected: u64 },
    #[error("entry {path}: {cause}")]
    Entry { path: String, cause: String },
    #[error("archive writer stopped: {0}")]
    Closed(String),
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

/// Writes one archive to `sink`. Entries come from any number of tasks through cloned
/// [`EntrySink`]s; one writer appends finished entries, so memory stays flat.
pub struct ArchiveWriter {
    // private
}

/// A cloneable handle that adds entries to the archive.
#[derive(Clone)]
pub struct EntrySink {
    // private
}

impl ArchiveWriter {
    pub async fn new(sink: Box<dyn AsyncWrite + Send + Unpin>, opts: WriterOptions) -> Result<ArchiveWriter, ArchiveError> {
        let _ = (sink, opts);
        todo!("archive helper")
    }

    pub fn sink(&self) -> EntrySink {
        todo!("archive helper")
    }

    /// Write `manifest.json` as the last entry, finish the compressor and flush the sink.
    /// Fails if any EntrySink clones still have entries in flight.
    pub async fn finish(self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let _ = manifest;
        todo!("archive helper")
    }
}

impl EntrySink {
    /// Add a stream of unknown length (e.g. a command's stdout): spooled to a temp file while
    /// hashed, then appended. On a read error nothing is added and the error is returned.
    pub async fn add_stream<R: AsyncRead + Unpin + Send>(&self, path: &str, mode: u32, reader: R) -> Result<EntryRecord, ArchiveError> {
        let _ = (path, mode, reader);
        todo!("archive helper")
    }

    /// Add an entry of known size (e.g. a file from a remote `tar` stream).
    pub async fn add_sized<R: AsyncRead + Unpin + Send>(&self, meta: EntryMeta, reader: R) -> Result<EntryRecord, ArchiveError> {
        let _ = (meta, reader);
        todo!("archive helper")
    }

    /// Add a directory entry.
    pub async fn add_dir(&self, path: &str, mode: u32, mtime: i64) -> Result<EntryRecord, ArchiveError> {
        let _ = (path, mode, mtime);
        todo!("archive helper")
    }

    /// Add a symbolic link entry.
    pub async fn add_symlink(&self, path: &str, target: &str, mtime: i64) -> Result<EntryRecord, ArchiveError> {
        let _ = (path, target, mtime);
        todo!("archive helper")
    }
}
