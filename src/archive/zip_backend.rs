//! zip: the sync `zip` crate's streaming writer (`ZipWriter::new_stream`: local headers with
//! data descriptors, no seeking; ZIP64 extra fields for entries that may pass 4 GiB) on a
//! blocking thread. Its output goes in [`CHUNK_SIZE`] pieces through a bounded channel to an
//! async task that writes them to the sink.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::{CHUNK_SIZE, ChunkReader, EntryHeader, EntryKind};

type DynWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Entries at least this large are written with ZIP64 sizes (deflate can grow incompressible
/// data a little, so stay well below 4 GiB).
const LARGE_FILE: u64 = 0xF000_0000;

enum Job {
    Entry(
        EntryHeader,
        Option<mpsc::Receiver<Bytes>>,
        oneshot::Sender<std::io::Result<()>>,
    ),
    Finish(EntryHeader, Vec<u8>, oneshot::Sender<std::io::Result<()>>),
}

pub(crate) struct ZipBackend {
    jobs: mpsc::Sender<Job>,
    pump: Option<tokio::task::JoinHandle<std::io::Result<DynWrite>>>,
}

impl Drop for ZipBackend {
    fn drop(&mut self) {
        if let Some(p) = self.pump.take() {
            p.abort();
        }
    }
}

impl ZipBackend {
    pub fn new(sink: DynWrite, level: i32) -> ZipBackend {
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(super::CHUNKS_IN_FLIGHT);
        let (jobs, jobs_rx) = mpsc::channel::<Job>(1);
        let pump = tokio::spawn(pump_out(out_rx, sink));
        let out = ChannelWriter {
            tx: out_tx,
            buf: BytesMut::new(),
            discard: Arc::new(AtomicBool::new(false)),
        };
        tokio::task::spawn_blocking(move || zip_thread(jobs_rx, out, level));
        ZipBackend {
            jobs,
            pump: Some(pump),
        }
    }

    /// When the thread reports an error, the sink's own error (if the pump failed) says more.
    async fn explain(&mut self, e: std::io::Error) -> std::io::Error {
        if let Some(p) = self.pump.as_ref()
            && p.is_finished()
            && let Some(p) = self.pump.take()
            && let Ok(Err(sink_err)) = p.await
        {
            return sink_err;
        }
        e
    }

    async fn run(
        &mut self,
        job: Job,
        done: oneshot::Receiver<std::io::Result<()>>,
    ) -> std::io::Result<()> {
        let gone = || std::io::Error::other("zip writer thread stopped");
        if self.jobs.send(job).await.is_err() {
            return Err(self.explain(gone()).await);
        }
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.explain(e).await),
            Err(_) => Err(self.explain(gone()).await),
        }
    }

    pub async fn write_entry(
        &mut self,
        h: &EntryHeader,
        data: Option<mpsc::Receiver<Bytes>>,
    ) -> std::io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.run(Job::Entry(h.clone(), data, tx), rx).await
    }

    pub async fn finish(mut self, h: &EntryHeader, manifest: Vec<u8>) -> std::io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.run(Job::Finish(h.clone(), manifest, tx), rx).await?;
        let pump = self.pump.take().expect("pump task");
        let mut sink = pump.await.map_err(std::io::Error::other)??;
        sink.flush().await?;
        sink.shutdown().await
    }
}

async fn pump_out(mut rx: mpsc::Receiver<Bytes>, mut sink: DynWrite) -> std::io::Result<DynWrite> {
    while let Some(b) = rx.recv().await {
        sink.write_all(&b).await?;
    }
    Ok(sink)
}

/// `Write` for the zip thread: collects output into chunks and sends them to the pump task.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    /// Set when the archive is abandoned: the zip crate finalizes on drop, write into the void.
    discard: Arc<AtomicBool>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        if self.discard.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "archive sink closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buf()?;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK_SIZE);
        }
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}

fn dos_time(mtime: i64) -> DateTime {
    let Ok(ts) = jiff::Timestamp::from_second(mtime) else {
        return DateTime::default();
    };
    let t = ts.to_zoned(jiff::tz::TimeZone::UTC);
    let (Ok(year), Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) = (
        u16::try_from(t.year()),
        u8::try_from(t.month()),
        u8::try_from(t.day()),
        u8::try_from(t.hour()),
        u8::try_from(t.minute()),
        u8::try_from(t.second()),
    ) else {
        return DateTime::default();
    };
    DateTime::from_date_and_time(year, month, day, hour, minute, second).unwrap_or_default()
}

fn zip_err(e: zip::result::ZipError) -> std::io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

fn write_one(
    zw: &mut ZipWriter<zip::write::StreamWriter<ChannelWriter>>,
    h: &EntryHeader,
    data: Option<mpsc::Receiver<Bytes>>,
    level: i32,
) -> std::io::Result<()> {
    // Level 0 means "store": deflate's own range is 1-9.
    let (method, level) = match level {
        0 => (CompressionMethod::Stored, None),
        l => (CompressionMethod::Deflated, Some(l as i64)),
    };
    let opts = SimpleFileOptions::default()
        .compression_method(method)
        .compression_level(level)
        .unix_permissions(h.mode)
        .last_modified_time(dos_time(h.mtime))
        .large_file(h.size >= LARGE_FILE);
    match h.kind {
        EntryKind::File => {
            zw.start_file(h.path.as_str(), opts).map_err(zip_err)?;
            let mut reader = ChunkReader::new(data, h.size);
            while let Some(chunk) = reader.blocking_next() {
                zw.write_all(&chunk)?;
            }
            Ok(())
        }
        EntryKind::Dir => zw.add_directory(h.path.as_str(), opts).map_err(zip_err),
        EntryKind::Symlink => {
            let target = h.link_target.as_deref().unwrap_or_default();
            zw.add_symlink(h.path.as_str(), target, opts)
                .map_err(zip_err)
        }
    }
}

fn zip_thread(mut jobs: mpsc::Receiver<Job>, out: ChannelWriter, level: i32) {
    let discard = out.discard.clone();
    let mut zw = ZipWriter::new_stream(out);
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::Entry(h, data, done) => {
                let r = write_one(&mut zw, &h, data, level);
                let failed = r.is_err();
                let _ = done.send(r);
                if failed {
                    break;
                }
            }
            Job::Finish(h, manifest, done) => {
                let (tx, rx) = mpsc::channel(1);
                let size = manifest.len() as u64;
                let r = (|| {
                    tx.try_send(Bytes::from(manifest))
                        .map_err(|_| std::io::Error::other("manifest channel"))?;
                    drop(tx);
                    write_one(&mut zw, &EntryHeader { size, ..h }, Some(rx), level)?;
                    let mut out = zw.finish().map_err(zip_err)?.into_inner();
                    out.flush()
                    // `out` drops here: the pump task sees the end of the stream.
                })();
                let _ = done.send(r);
                return;
            }
        }
    }
    // Abandoned (the writer task was dropped or an entry failed): don't let the zip crate's
    // drop-time finalization write anything or complain.
    discard.store(true, Ordering::SeqCst);
    drop(zw);
}
