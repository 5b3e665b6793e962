//! One file entry being received: hashed, counted and compressed while its bytes arrive, into
//! a spool that holds compressed bytes only; committed to the writer when it is complete.
//!
//! The writer task never waits for a host: it receives finished entries ([`Prepared`]) and
//! copies their compressed pieces into the archive unchanged (see `docs/format.md`).

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::codec::{CHUNK, Codec};
use super::{
    ArchiveError, EntryHeader, EntryKind, EntryRecord, EntrySink, Format, InflightGuard, Msg,
    Shared, tar_backend,
};

/// Chunks of one entry submitted for compression and not yet collected.
const PIECES_IN_FLIGHT: usize = 2;
/// Compressed bytes of an entry kept in memory before its spool moves to a file.
const MEM_SPOOL: usize = 64 * 1024;
/// Entries whose data is at most this size are compressed inline (header, data and padding in
/// one piece) instead of on the pool.
const INLINE: usize = 16 * 1024;

/// An entry's compressed bytes, in memory while small, else in an anonymous temp file (0600,
/// unlinked from the start) in the spool directory. The bytes on disk are counted in the
/// writer's spool statistics while the spool lives.
pub(crate) struct Spool {
    shared: Arc<Shared>,
    mem: Vec<u8>,
    file: Option<std::fs::File>,
    on_disk: u64,
}

impl Spool {
    fn new(shared: Arc<Shared>) -> Spool {
        Spool {
            shared,
            mem: Vec::new(),
            file: None,
            on_disk: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.on_disk + self.mem.len() as u64
    }

    async fn push(&mut self, piece: Vec<u8>) -> std::io::Result<()> {
        if self.file.is_none() && self.mem.len() + piece.len() <= MEM_SPOOL {
            self.mem.extend_from_slice(&piece);
            return Ok(());
        }
        // Written on a blocking thread that owns the piece: no copy into another buffer.
        let mem = std::mem::take(&mut self.mem);
        let file = self.file.take();
        let dir = self.shared.spool_dir.clone();
        let n = (mem.len() + piece.len()) as u64;
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            use std::io::Write;
            let mut file = match file {
                Some(f) => f,
                None => tempfile::tempfile_in(&dir)?,
            };
            file.write_all(&mem)?;
            file.write_all(&piece)?;
            Ok(file)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.file = Some(file);
        self.count(n);
        Ok(())
    }

    fn count(&mut self, n: u64) {
        self.on_disk += n;
        let now = self.shared.spool_bytes.fetch_add(n, Ordering::SeqCst) + n;
        self.shared.spool_peak.fetch_max(now, Ordering::SeqCst);
    }

    /// Copy the spool's bytes to `out` (the writer task's splice).
    pub async fn copy_to<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        out: &mut W,
    ) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            let mut file = tokio::fs::File::from_std(file);
            file.seek(SeekFrom::Start(0)).await?;
            let mut left = self.on_disk;
            let mut buf = vec![0u8; 256 * 1024];
            while left > 0 {
                let want = (left as usize).min(buf.len());
                let n = file.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("spool file ended {left} bytes early"),
                    ));
                }
                out.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
        }
        out.write_all(&self.mem).await
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.on_disk > 0 {
            self.shared
                .spool_bytes
                .fetch_sub(self.on_disk, Ordering::SeqCst);
        }
    }
}

/// A finished entry, ready to be spliced: for tar formats `head` and `body` and `tail` are
/// complete compressed pieces; for zip `body` is the raw deflate data (without headers).
pub(crate) struct Prepared {
    pub header: EntryHeader,
    pub head: Vec<u8>,
    pub body: Option<Spool>,
    pub tail: Vec<u8>,
    /// zip: CRC-32 of the uncompressed data.
    pub crc32: u32,
}

impl Prepared {
    /// Bytes this entry adds to the archive (zip: data only, without its headers).
    pub fn compressed_len(&self) -> u64 {
        self.head.len() as u64
            + self.body.as_ref().map(|b| b.len()).unwrap_or(0)
            + self.tail.len() as u64
    }
}

/// Why [`StreamEntry::copy_from`] stopped.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the source failed (e.g. the connection was lost).
    Source(std::io::Error),
    /// Compressing or spooling on this machine failed (e.g. the spool's disk is full).
    Local(ArchiveError),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Source(e) => write!(f, "{e}"),
            CopyError::Local(e) => write!(f, "{e}"),
        }
    }
}

/// A file entry being received. Bytes written to it are hashed and compressed at once;
/// [`commit`](StreamEntry::commit) hands the finished entry to the writer; dropping it instead
/// adds nothing and frees its path.
pub struct StreamEntry {
    sink: EntrySink,
    path: String,
    guard: Option<InflightGuard>,
    _slot: Option<OwnedSemaphorePermit>,
    codec: Arc<Codec>,
    hasher: Sha256,
    crc: crc32fast::Hasher,
    zip: bool,
    size: u64,
    pending: BytesMut,
    submitted: bool,
    inflight: VecDeque<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>,
    spool: Spool,
}

impl StreamEntry {
    pub(crate) fn new(
        sink: EntrySink,
        path: String,
        guard: InflightGuard,
        slot: Option<OwnedSemaphorePermit>,
    ) -> StreamEntry {
        let codec = sink.shared.codec.clone();
        let zip = sink.shared.format == Format::Zip;
        let spool = Spool::new(sink.shared.clone());
        StreamEntry {
            sink,
            path,
            guard: Some(guard),
            _slot: slot,
            codec,
            hasher: Sha256::new(),
            crc: crc32fast::Hasher::new(),
            zip,
            size: 0,
            pending: BytesMut::new(),
            submitted: false,
            inflight: VecDeque::new(),
            spool,
        }
    }

    /// The entry's path in the archive.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn local(&self, what: &str, e: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Entry {
            path: self.path.clone(),
            cause: format!(
                "{what} (spool directory {}): {e}",
                self.sink.shared.spool_dir.display()
            ),
        }
    }

    /// Writing the spool failed: recorded for the run ([`EntrySink::spool_failure`]), and this
    /// entry's error.
    fn spool_failed(&self, e: std::io::Error) -> ArchiveError {
        let _ = self
            .sink
            .shared
            .spool_failure
            .set(format!("writing the spool file: {e}"));
        self.local("writing the spool file", e)
    }

    fn took(&mut self, from: usize) {
        let new = &self.pending[from..];
        self.hasher.update(new);
        if self.zip {
            self.crc.update(new);
        }
        self.size += new.len() as u64;
    }

    /// Append `data`.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        let mut data = data;
        while !data.is_empty() {
            let n = data.len().min(CHUNK - self.pending.len());
            let from = self.pending.len();
            self.pending.extend_from_slice(&data[..n]);
            self.took(from);
            data = &data[n..];
            if self.pending.len() == CHUNK {
                self.submit_pending().await?;
            }
        }
        Ok(())
    }

    /// Append everything `reader` yields until its end (or `limit` bytes). Returns the bytes
    /// read by this call.
    pub async fn copy_from<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        reader: &mut R,
        limit: Option<u64>,
    ) -> Result<u64, CopyError> {
        let mut got = 0u64;
        loop {
            let mut want = CHUNK - self.pending.len();
            if let Some(l) = limit {
                want = want.min((l - got) as usize);
                if want == 0 {
                    return Ok(got);
                }
            }
            // Read straight into the chunk being filled: no copy between.
            self.pending.reserve(want.min(256 * 1024));
            let from = self.pending.len();
            let n = {
                let mut limited = (&mut *reader).take(want as u64);
                match limited.read_buf(&mut self.pending).await {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CopyError::Source(e)),
                }
            };
            if n == 0 {
                return Ok(got);
            }
            self.took(from);
            got += n as u64;
            if self.pending.len() >= CHUNK {
                self.submit_pending().await.map_err(CopyError::Local)?;
            }
        }
    }

    /// Send the filled chunk to the pool, collecting the oldest piece first when enough are in
    /// flight.
    async fn submit_pending(&mut self) -> Result<(), ArchiveError> {
        let chunk = self.pending.split().freeze();
        self.submitted = true;
        while self.inflight.len() >= PIECES_IN_FLIGHT {
            self.collect_one().await?;
        }
        let job = self.codec.submit(chunk).await;
        self.inflight.push_back(job);
        // Pieces already done go to the spool now rather than wait in memory for the next chunk.
        while self.inflight.front().is_some_and(|j| j.is_finished()) {
            self.collect_one().await?;
        }
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), ArchiveError> {
        let Some(job) = self.inflight.pop_front() else {
            return Ok(());
        };
        let piece = job
            .await
            .map_err(|e| self.local("compressing", e))?
            .map_err(|e| self.local("compressing", e))?;
        self.spool
            .push(piece)
            .await
            .map_err(|e| self.spool_failed(e))
    }

    async fn compress(&self, data: Bytes) -> Result<Vec<u8>, ArchiveError> {
        if data.len() <= INLINE {
            return self
                .codec
                .compress_blocking(&data)
                .map_err(|e| self.local("compressing", e));
        }
        self.codec
            .submit(data)
            .await
            .await
            .map_err(|e| self.local("compressing", e))?
            .map_err(|e| self.local("compressing", e))
    }

    /// The entry is complete: finish its compression and queue it for the archive. Returns
    /// its record (size and sha256 of what was received).
    pub async fn commit(mut self, mode: u32, mtime: i64) -> Result<EntryRecord, ArchiveError> {
        let header = EntryHeader {
            path: self.path.clone(),
            kind: EntryKind::File,
            size: self.size,
            mode: mode & 0o7777,
            mtime,
            link_target: None,
        };
        let pending = std::mem::take(&mut self.pending).freeze();
        let mut prepared = if self.zip {
            if !pending.is_empty() {
                let piece = self.compress(pending).await?;
                while !self.inflight.is_empty() {
                    self.collect_one().await?;
                }
                self.spool
                    .push(piece)
                    .await
                    .map_err(|e| self.spool_failed(e))?;
            }
            while !self.inflight.is_empty() {
                self.collect_one().await?;
            }
            Prepared {
                header: header.clone(),
                head: Vec::new(),
                body: None,
                tail: self.codec.end_marker().to_vec(),
                crc32: self.crc.clone().finalize(),
            }
        } else if !self.submitted {
            // Small: header, data and padding in one piece.
            let mut whole = tar_backend::tar_header_bytes(&header);
            whole.extend_from_slice(&pending);
            whole.resize(whole.len() + tar_backend::padding(self.size), 0);
            let head = self.compress(Bytes::from(whole)).await?;
            Prepared {
                header: header.clone(),
                head,
                body: None,
                tail: Vec::new(),
                crc32: 0,
            }
        } else {
            // The header's piece can only be made now that the size is known; it goes before
            // the data's pieces, the padding after.
            let mut last = pending.to_vec();
            last.resize(last.len() + tar_backend::padding(self.size), 0);
            let tail = if last.is_empty() {
                Vec::new()
            } else {
                self.compress(Bytes::from(last)).await?
            };
            while !self.inflight.is_empty() {
                self.collect_one().await?;
            }
            let head = self
                .compress(tar_backend::tar_header_bytes(&header).into())
                .await?;
            Prepared {
                header: header.clone(),
                head,
                body: None,
                tail,
                crc32: 0,
            }
        };
        let spool = std::mem::replace(&mut self.spool, Spool::new(self.sink.shared.clone()));
        prepared.body = Some(spool);
        let record = EntryRecord {
            path: self.path.clone(),
            kind: EntryKind::File,
            size: self.size,
            sha256: Some(hex::encode(self.hasher.clone().finalize())),
            mode: mode & 0o7777,
            link_target: None,
        };
        self.sink.queue(prepared).await?;
        // Queued: the writer owns it now; the path stays taken.
        self.path.clear();
        drop(self.guard.take());
        Ok(record)
    }
}

impl Drop for StreamEntry {
    fn drop(&mut self) {
        // Not committed: nothing is added; the path is free again; compression jobs still
        // running finish on their own and are dropped.
        if !self.path.is_empty() {
            self.sink.release(&self.path);
        }
    }
}

impl EntrySink {
    pub(crate) async fn queue(&self, p: Prepared) -> Result<(), ArchiveError> {
        self.tx
            .send(Msg::Entry(Box::new(p)))
            .await
            .map_err(|_| self.shared.closed_error())
    }
}
