//! What the streamed remote uploads (object stores, Azure Files) share: the archive bytes go
//! through a pipe to an upload task, which commits when told to and aborts when cancelled (or
//! when the handle is dropped without either).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWrite, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::TargetError;

/// An error and its sources, `: `-joined, for classifying it.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut chain = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    chain
}

/// `cannot reach the endpoint (why)` when an error chain says the connection failed.
pub(super) fn unreachable(chain: &str) -> Option<String> {
    let lower = chain.to_ascii_lowercase();
    let why = if lower.contains("connection refused") {
        "connection refused"
    } else if lower.contains("dns error") {
        "name not resolved"
    } else if lower.contains("timed out") {
        "timed out"
    } else if lower.contains("error sending request") || lower.contains("tcp connect error") {
        "no answer"
    } else {
        return None;
    };
    Some(format!("cannot reach the endpoint ({why})"))
}

/// Bytes between the archive writer and the upload task.
const PIPE: usize = 256 * 1024;

/// The upload task's side: the stream to read, and how it learns to commit or abort.
pub(super) struct TaskEnd {
    pub input: DuplexStream,
    pub cancel: CancellationToken,
    pub commit: tokio::sync::oneshot::Receiver<()>,
    /// The task records here why it failed; a write after that reports it.
    pub failure: Arc<Mutex<Option<String>>>,
}

/// The caller's side of a streamed upload whose task returns `T` when committed.
pub(super) struct Streamed<T> {
    url: String,
    writer: Option<UploadWriter>,
    cancel: CancellationToken,
    commit: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<T, String>>>,
}

impl<T: Send + 'static> Streamed<T> {
    /// Start `task` (given its end of the pipe) on the runtime.
    pub fn start<F, Fut>(url: &str, task: F) -> Streamed<T>
    where
        F: FnOnce(TaskEnd) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    {
        let (write_half, read_half) = tokio::io::duplex(PIPE);
        let failure = Arc::new(Mutex::new(None));
        let cancel = CancellationToken::new();
        let (commit_tx, commit_rx) = tokio::sync::oneshot::channel();
        let end = TaskEnd {
            input: read_half,
            cancel: cancel.clone(),
            commit: commit_rx,
            failure: failure.clone(),
        };
        Streamed {
            url: url.to_string(),
            writer: Some(UploadWriter {
                inner: write_half,
                failure,
            }),
            cancel,
            commit: Some(commit_tx),
            task: Some(tokio::spawn(task(end))),
        }
    }

    pub fn writer(&mut self) -> Box<dyn AsyncWrite + Send + Unpin> {
        match self.writer.take() {
            Some(w) => Box::new(w),
            None => Box::new(super::local::FailingWriter(
                "the archive writer was already taken".into(),
            )),
        }
    }

    async fn join(&mut self) -> Result<T, String> {
        match self.task.take() {
            Some(t) => t.await.unwrap_or_else(|e| Err(format!("upload task: {e}"))),
            None => Err("upload already finished".into()),
        }
    }

    /// Tell the task to commit and wait for it.
    pub async fn commit(&mut self) -> Result<T, TargetError> {
        self.writer.take();
        if let Some(tx) = self.commit.take() {
            let _ = tx.send(());
        }
        self.join().await.map_err(|cause| TargetError::Store {
            target: self.url.clone(),
            cause,
        })
    }

    /// Abort and wait until the task has cleaned up.
    pub async fn abort(&mut self) {
        self.writer.take();
        self.cancel.cancel();
        let _ = self.join().await;
    }
}

impl<T> Drop for Streamed<T> {
    fn drop(&mut self) {
        // The task aborts on its own (it cannot be awaited here).
        self.cancel.cancel();
    }
}

/// The archive bytes' way into the upload task. A write after the upload failed reports the
/// upload's cause rather than a broken pipe.
struct UploadWriter {
    inner: DuplexStream,
    failure: Arc<Mutex<Option<String>>>,
}

impl UploadWriter {
    fn map(&self, e: std::io::Error) -> std::io::Error {
        match self.failure.lock().unwrap().as_ref() {
            Some(cause) => std::io::Error::other(cause.clone()),
            None => e,
        }
    }
}

impl AsyncWrite for UploadWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        r.map_err(|e| self.map(e))
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        r.map_err(|e| self.map(e))
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        r.map_err(|e| self.map(e))
    }
}
