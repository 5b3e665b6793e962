//! The archive's own size and sha256, over its bytes as stored (compressed, encrypted when it
//! is): computed while it is written, recorded in the manifest sidecar beside it, and computed
//! again by `verify` while it reads. Entry checksums cover entry contents; this covers every
//! other byte (tar headers and padding, gzip member headers, zip local headers, the zstd frame
//! headers), so a flipped byte anywhere in the file is caught.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Size and sha256 (lowercase hex) of an archive file as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveDigest {
    pub size: u64,
    pub sha256: String,
}

/// The running digest, shared between the stream that feeds it and whoever reads it at the
/// end.
#[derive(Clone)]
pub struct Digesting {
    state: Arc<Mutex<(Sha256, u64)>>,
    on: bool,
}

impl Default for Digesting {
    fn default() -> Digesting {
        Digesting::new()
    }
}

impl Digesting {
    pub fn new() -> Digesting {
        Digesting {
            state: Arc::default(),
            on: true,
        }
    }

    /// One that computes nothing (a reader that only wants the manifest).
    pub fn off() -> Digesting {
        Digesting {
            state: Arc::default(),
            on: false,
        }
    }

    pub fn update(&self, bytes: &[u8]) {
        if !self.on {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.update(bytes);
        s.1 += bytes.len() as u64;
    }

    /// The digest of everything fed so far.
    pub fn digest(&self) -> ArchiveDigest {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        ArchiveDigest {
            size: s.1,
            sha256: hex::encode(s.0.clone().finalize()),
        }
    }

    /// Feed a whole file, read from its start (a zip read in place, whose reader seeks
    /// instead of streaming); the file is left at its start.
    pub fn feed_file(&self, file: &mut std::fs::File) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        if !self.on {
            return Ok(());
        }
        file.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        file.seek(SeekFrom::Start(0))?;
        Ok(())
    }

    /// `inner`, with every byte written through it fed to this digest.
    pub fn writer<W: AsyncWrite + Unpin>(&self, inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            digest: self.clone(),
        }
    }

    /// `inner`, with every byte read through it fed to this digest.
    pub fn reader<R: AsyncRead + Unpin>(&self, inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            digest: self.clone(),
        }
    }
}

pub struct HashingWriter<W> {
    inner: W,
    digest: Digesting,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            // Only what the inner writer took: a short write is retried with the rest.
            this.digest.update(&buf[..*n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub struct HashingReader<R> {
    inner: R,
    digest: Digesting,
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            this.digest.update(&buf.filled()[before..]);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writer_and_reader_agree_with_sha256() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let w = Digesting::new();
        let mut out = w.writer(Vec::new());
        out.write_all(&data).await.unwrap();
        out.flush().await.unwrap();
        let r = Digesting::new();
        let mut back = Vec::new();
        r.reader(data.as_slice())
            .read_to_end(&mut back)
            .await
            .unwrap();
        let want = ArchiveDigest {
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(&data)),
        };
        assert_eq!(w.digest(), want);
        assert_eq!(r.digest(), want);
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let d = Digesting::new();
        d.feed_file(&mut f).unwrap();
        assert_eq!(d.digest(), want);
    }
}
