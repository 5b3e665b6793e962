//! A bounded in-process pipe carrying a command's stdout from the task that receives it to the
//! reader the engine holds, plus the small pieces every backend shares (stderr tail, process
//! completion plumbing).
//!
//! The pipe holds at most [`PIPE_CHUNKS`] chunks (each at most one SSH packet or one 64 KiB
//! local read): when the reader stops reading, the sender waits, and the wait propagates back
//! to the SSH connection (and from there through the SSH window and TCP to the remote
//! command), so memory stays flat whatever the stream's length. Each pipe may always hold
//! [`OWN_CHUNKS`]; beyond that it borrows from one budget of [`SHARED_CHUNKS`] all pipes share,
//! so a lone stream gets a deep buffer and many streams at once stay within a fixed total
//! (`OWN_CHUNKS` x streams + `SHARED_CHUNKS`). A pipe that finds the budget spent waits only for
//! its own reader, never for another pipe, so no stream can starve another into a deadlock. A stream that ends
//! abnormally (timeout, lost connection) ends with an error at the reader instead of a clean
//! EOF, so a truncated stream can never pass for a complete one.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

/// Chunks buffered between the receiving task and the reader, at most.
pub(crate) const PIPE_CHUNKS: usize = 24;
/// Chunks a pipe may always hold.
pub(crate) const OWN_CHUNKS: usize = 8;
/// Chunks beyond their own that all pipes together may hold.
pub(crate) const SHARED_CHUNKS: usize = 48;

static SHARED: std::sync::LazyLock<Arc<Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(Semaphore::new(SHARED_CHUNKS)));

/// A chunk and, when it was queued beyond the pipe's own share, its place in the shared budget
/// (given back once the reader has consumed the chunk).
type Queued = (Bytes, Option<OwnedSemaphorePermit>);
/// Bytes of stderr kept per command.
pub(crate) const STDERR_TAIL: usize = 8 * 1024;

type Failure = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = mpsc::channel(PIPE_CHUNKS);
    let failure: Failure = Arc::new(Mutex::new(None));
    let taken = Arc::new(Notify::new());
    (
        PipeWriter {
            tx: Some(tx),
            failure: failure.clone(),
            taken: taken.clone(),
        },
        PipeReader {
            rx,
            cur: Bytes::new(),
            cur_permit: None,
            failure,
            taken,
        },
    )
}

/// The sending side. Once the reader is gone, sends are no-ops (the data is discarded) so the
/// producer keeps draining its source.
pub(crate) struct PipeWriter {
    tx: Option<mpsc::Sender<Queued>>,
    failure: Failure,
    /// Signalled each time the reader takes a chunk.
    taken: Arc<Notify>,
}

impl PipeWriter {
    /// Send one chunk, waiting while the pipe is full.
    pub(crate) async fn send(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        let permit = loop {
            let queued = PIPE_CHUNKS - tx.capacity();
            if queued < OWN_CHUNKS {
                break None;
            }
            if let Ok(p) = SHARED.clone().try_acquire_owned() {
                break Some(p);
            }
            // Budget spent: wait for our own reader (a stored notification covers a chunk
            // taken since the check above).
            tokio::select! {
                _ = self.taken.notified() => {}
                _ = tx.closed() => {
                    self.tx = None;
                    return;
                }
            }
        };
        if tx.send((chunk, permit)).await.is_err() {
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
    rx: mpsc::Receiver<Queued>,
    cur: Bytes,
    /// The shared-budget place of `cur`, if it has one.
    cur_permit: Option<OwnedSemaphorePermit>,
    failure: Failure,
    taken: Arc<Notify>,
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
                if self.cur.is_empty() {
                    self.cur_permit = None;
                }
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some((chunk, permit))) => {
                    self.cur = chunk;
                    self.cur_permit = permit;
                    self.taken.notify_one();
                }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_pipes_share_one_budget_and_all_finish() {
        const PIPES: usize = 10;
        const SENDS: usize = 30;
        let mut readers = Vec::new();
        let mut senders = Vec::new();
        for p in 0..PIPES {
            let (mut w, r) = pipe();
            readers.push(r);
            senders.push(tokio::spawn(async move {
                for i in 0..SENDS {
                    w.send(Bytes::from(format!("{p}:{i};"))).await;
                }
                w.finish();
            }));
        }
        // Nobody reads yet: the senders fill their own share, then the shared budget, and wait.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let queued: usize = readers.iter().map(|r| r.rx.len()).sum();
        assert!(queued <= PIPES * OWN_CHUNKS + SHARED_CHUNKS, "{queued}");
        assert!(queued >= PIPES * OWN_CHUNKS, "{queued}");
        assert!(readers.iter().all(|r| r.rx.len() <= PIPE_CHUNKS));
        // Reading the pipes one after another (each waits for nobody but its own reader).
        for (p, mut r) in readers.into_iter().enumerate() {
            let mut s = String::new();
            r.read_to_string(&mut s).await.unwrap();
            let want: String = (0..SENDS).map(|i| format!("{p}:{i};")).collect();
            assert_eq!(s, want);
        }
        for s in senders {
            s.await.unwrap();
        }
    }
}
