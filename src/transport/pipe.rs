//! A bounded in-process pipe carrying a command's stdout from the task that receives it to the
//! reader the engine holds, plus the small pieces every backend shares (stderr tail, process
//! completion plumbing).
//!
//! The pipe holds at most [`PIPE_CHUNKS`] chunks (each at most one SSH packet or one 64 KiB
//! local read), about 1-2 MiB: when the reader stops reading, the sender waits, and the wait
//! propagates back to the SSH connection (and from there through the SSH window and TCP to the
//! remote command), so memory stays flat whatever the stream's length. A stream that ends
//! abnormally (timeout, lost connection) ends with an error at the reader instead of a clean
//! EOF, so a truncated stream can never pass for a complete one.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Chunks buffered between the receiving task and the reader.
pub(crate) const PIPE_CHUNKS: usize = 24;
/// Bytes of stderr kept per command.
pub(crate) const STDERR_TAIL: usize = 8 * 1024;

type Failure = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = mpsc::channel(PIPE_CHUNKS);
    let failure: Failure = Arc::new(Mutex::new(None));
    (
        PipeWriter {
            tx: Some(tx),
            failure: failure.clone(),
        },
        PipeReader {
            rx,
            cur: Bytes::new(),
            failure,
        },
    )
}

/// The sending side. Once the reader is gone, sends are no-ops (the data is discarded) so the
/// producer keeps draining its source.
pub(crate) struct PipeWriter {
    tx: Option<mpsc::Sender<Bytes>>,
    failure: Failure,
}

impl PipeWriter {
    /// Send one chunk, waiting while the pipe is full.
    pub(crate) async fn send(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx
            && tx.send(chunk).await.is_err()
        {
            self.tx = None;
        }
    }

    /// End the stream with an error the reader sees after the data already sent.
    pub(crate) fn fail(&mut self, kind: io::ErrorKind, msg: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some((kind, msg));
        self.tx = None;
    }

    /// End the stream cleanly.
    pub(crate) fn finish(&mut self) {
        self.tx = None;
    }
}

/// The reading side, handed out as `RemoteProcess::stdout`.
pub(crate) struct PipeReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    failure: Failure,
}

impl AsyncRead for PipeReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.cur.is_empty() {
                let n = self.cur.len().min(buf.remaining());
                buf.put_slice(&self.cur[..n]);
                self.cur.advance(n);
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.cur = chunk,
                Poll::Ready(None) => {
                    let failure = self
                        .failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    return Poll::Ready(match failure {
                        Some((kind, msg)) => Err(io::Error::new(kind, msg)),
                        None => Ok(()),
                    });
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The last [`STDERR_TAIL`] bytes of a stream.
#[derive(Default)]
pub(crate) struct Tail {
    buf: VecDeque<u8>,
}

impl Tail {
    pub(crate) fn push(&mut self, data: &[u8]) {
        let data = if data.len() > STDERR_TAIL {
            &data[data.len() - STDERR_TAIL..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(STDERR_TAIL);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }

    /// Lossily decoded and trimmed.
    pub(crate) fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn tail_keeps_last_bytes() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; STDERR_TAIL]);
        t.push(b"  end\n");
        let s = t.text();
        assert!(s.ends_with("end"));
        assert_eq!(s.len(), STDERR_TAIL - 1); // the final newline trimmed
        let mut t = Tail::default();
        t.push(&vec![b'b'; 3 * STDERR_TAIL]);
        assert_eq!(t.text().len(), STDERR_TAIL);
    }

    #[tokio::test]
    async fn data_then_error_or_eof() {
        let (mut w, mut r) = pipe();
        tokio::spawn(async move {
            w.send(Bytes::from_static(b"hello ")).await;
            w.send(Bytes::from_static(b"world")).await;
            w.fail(io::ErrorKind::TimedOut, "late".into());
        });
        let mut s = Vec::new();
        let err = r.read_to_end(&mut s).await.unwrap_err();
        assert_eq!(s, b"hello world");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut w, mut r) = pipe();
        tokio::spawn(async move {
            w.send(Bytes::from_static(b"x")).await;
            w.finish();
        });
        let mut s = Vec::new();
        r.read_to_end(&mut s).await.unwrap();
        assert_eq!(s, b"x");
    }

    #[tokio::test]
    async fn sends_after_reader_drop_are_discarded() {
        let (mut w, r) = pipe();
        drop(r);
        for _ in 0..(PIPE_CHUNKS * 4) {
            w.send(Bytes::from_static(b"data")).await;
        }
        w.finish();
    }
}
