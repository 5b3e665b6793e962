//! tar.zst / tar.gz: astral-tokio-tar's `Builder` over an async-compression encoder over the
//! sink. GNU tar headers; paths over 100 bytes get a GNU long-name entry, long symlink targets a
//! GNU long-link entry; sizes over 8 GiB use the GNU base-256 size field.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::Level;
use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_tar::{Builder, EntryType, Header};

use super::{ChunkReader, EntryHeader, EntryKind, Format};

type DynWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Buffer between the compressor and the sink.
const SINK_BUFFER: usize = 256 * 1024;

/// Passes writes and shutdown through, but not flushes. tokio's `copy` (used by the tar builder)
/// flushes at the end of every entry; flushing a zstd encoder ends the current block and, with
/// worker threads, waits for all of them, so entries would be compressed one at a time, and
/// worse. The archive is flushed once, at the end, by `shutdown`.
struct NoFlush(DynWrite);

impl AsyncWrite for NoFlush {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

pub(crate) struct TarBackend {
    builder: Builder<NoFlush>,
}

fn base_header(h: &EntryHeader) -> Header {
    let mut header = Header::new_gnu();
    header.set_mode(h.mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(h.mtime.max(0) as u64);
    header
}

impl TarBackend {
    pub fn new(sink: DynWrite, format: Format, level: i32, zstd_workers: u32) -> TarBackend {
        let buffered = BufWriter::with_capacity(SINK_BUFFER, sink);
        let encoder: DynWrite = match format {
            Format::TarGz => Box::new(GzipEncoder::with_quality(buffered, Level::Precise(level))),
            _ => {
                let mut params = vec![CParameter::checksum_flag(true)];
                if zstd_workers > 0 {
                    params.push(CParameter::nb_workers(zstd_workers));
                }
                Box::new(ZstdEncoder::with_quality_and_params(
                    buffered,
                    Level::Precise(level),
                    &params,
                ))
            }
        };
        TarBackend {
            builder: Builder::new_non_terminated(NoFlush(encoder)),
        }
    }

    pub async fn write_entry(
        &mut self,
        h: &EntryHeader,
        data: Option<mpsc::Receiver<Bytes>>,
    ) -> std::io::Result<()> {
        let mut header = base_header(h);
        match h.kind {
            EntryKind::File => {
                header.set_entry_type(EntryType::Regular);
                header.set_size(h.size);
                // The header (after a GNU long-name entry when needed) with no data yet...
                self.builder
                    .append_data(&mut header, &h.path, tokio::io::empty())
                    .await?;
                // ...then the data in the chunks it came in (tokio's `copy`, which `append`
                // uses, would cut it into 8 KiB writes), then the padding to 512 bytes.
                let out = self.builder.get_mut();
                let mut reader = ChunkReader::new(data, h.size);
                while let Some(chunk) = reader.next().await {
                    out.write_all(&chunk).await?;
                }
                let pad = ((512 - h.size % 512) % 512) as usize;
                out.write_all(&[0u8; 512][..pad]).await
            }
            EntryKind::Dir => {
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &h.path, tokio::io::empty())
                    .await
            }
            EntryKind::Symlink => {
                header.set_entry_type(EntryType::Symlink);
                header.set_size(0);
                let target = h.link_target.as_deref().unwrap_or_default();
                if header.set_link_name(target).is_err() {
                    self.append_long_link(target).await?;
                }
                self.builder
                    .append_data(&mut header, &h.path, tokio::io::empty())
                    .await
            }
        }
    }

    /// A GNU `././@LongLink` entry (type `K`) carrying a symlink target too long for the header.
    async fn append_long_link(&mut self, target: &str) -> std::io::Result<()> {
        let mut data = target.as_bytes().to_vec();
        data.push(0);
        let mut header = Header::new_gnu();
        let name = b"././@LongLink";
        header.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        header.set_entry_type(EntryType::GNULongLink);
        header.set_cksum();
        self.builder.append(&header, data.as_slice()).await
    }

    pub async fn finish(
        mut self,
        manifest_header: &EntryHeader,
        manifest: Vec<u8>,
    ) -> std::io::Result<()> {
        let mut header = base_header(manifest_header);
        header.set_entry_type(EntryType::Regular);
        header.set_size(manifest.len() as u64);
        self.builder
            .append_data(&mut header, &manifest_header.path, manifest.as_slice())
            .await?;
        self.builder.finish().await?;
        let mut encoder = self.builder.into_inner().await?;
        // Ends the compressed stream, flushes the buffer and shuts the sink down.
        encoder.shutdown().await
    }
}
