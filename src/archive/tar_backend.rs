//! tar.zst / tar.gz: astral-tokio-tar's `Builder` over an async-compression encoder over the
//! sink. GNU tar headers; paths over 100 bytes get a GNU long-name entry, long symlink targets a
//! GNU long-link entry; sizes over 8 GiB use the GNU base-256 size field.

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

pub(crate) struct TarBackend {
    builder: Builder<DynWrite>,
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
            builder: Builder::new_non_terminated(encoder),
        }
    }

    pub async fn write_entry(
        &mut self,
        h: &EntryHeader,
        data: Option<mpsc::Receiver<Bytes>>,
    ) -> std::io::Result<()> {
        let mut header = Header::new_gnu();
        header.set_mode(h.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(h.mtime.max(0) as u64);
        match h.kind {
            EntryKind::File => {
                header.set_entry_type(EntryType::Regular);
                header.set_size(h.size);
                let mut reader = ChunkReader::new(data, h.size);
                self.builder
                    .append_data(&mut header, &h.path, &mut reader)
                    .await
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
        let mut header = Header::new_gnu();
        header.set_mode(manifest_header.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(manifest_header.mtime.max(0) as u64);
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
