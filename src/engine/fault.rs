//! The archive cannot be written: its target failed (a write error such as a full disk, an
//! object store that stopped taking the upload), or a spool file on the target's own disk
//! (the default spool) could not be written, so the archive could not fit either. That is no
//! component's failure: the run stops (components end as if interrupted, their cleanups run),
//! the partial archive is removed, and the run ends with one error naming the target and the
//! cause. No component failure is shown for it: the errors it causes in the components (an
//! entry whose spool failed, "archive writer stopped", interrupted steps) are not passed on to
//! the progress display or log.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;

use super::progress::Progress;
use crate::archive::{EntrySink, Failure, Status};
use crate::target::{Target, TargetError};

/// How often the run looks for a failed spool.
const POLL: Duration = Duration::from_millis(100);

/// The run's storage fault, once there is one.
#[derive(Clone)]
pub(crate) struct Fault {
    cause: Arc<OnceLock<String>>,
    sink: EntrySink,
    /// The spool is on the target's disk: a failed spool is a failed target.
    spool_on_target: bool,
}

impl Fault {
    /// `cause` is the cell [`watch`] fills.
    pub(crate) fn new(
        cause: Arc<OnceLock<String>>,
        sink: EntrySink,
        spool_on_target: bool,
    ) -> Fault {
        Fault {
            cause,
            sink,
            spool_on_target,
        }
    }

    /// The cause, once the archive cannot be written.
    pub(crate) fn cause(&self) -> Option<String> {
        if let Some(c) = self.cause.get() {
            return Some(c.clone());
        }
        let spool = self.sink.spool_failure().filter(|_| self.spool_on_target)?;
        Some(self.cause.get_or_init(|| spool).clone())
    }

    /// Wait until there is a fault.
    pub(crate) async fn occurred(&self) {
        while self.cause().is_none() {
            tokio::time::sleep(POLL).await;
        }
    }

    /// The run's error: `target DIR: CAUSE; no archive was written`.
    pub(crate) fn error(&self, target: &Target) -> Option<TargetError> {
        let cause = format!("{}; no archive was written", self.cause()?);
        Some(match target {
            Target::Local(dir) => TargetError::Local {
                path: dir.clone(),
                cause,
            },
            _ => TargetError::Store {
                target: target.display(),
                cause,
            },
        })
    }

    /// `progress`, with no failure passed on once there is a fault.
    pub(crate) fn progress(&self, progress: Arc<dyn Progress>) -> Arc<dyn Progress> {
        Arc::new(Blameless {
            inner: progress,
            fault: self.clone(),
        })
    }
}

/// A writer into the target whose first error is the fault (`writing NAME: CAUSE`), kept in
/// `cause`.
pub(crate) fn watch(
    cause: &Arc<OnceLock<String>>,
    name: &str,
    inner: Box<dyn AsyncWrite + Send + Unpin>,
) -> Box<dyn AsyncWrite + Send + Unpin> {
    Box::new(Watched {
        inner,
        name: name.to_string(),
        cause: cause.clone(),
    })
}

struct Watched {
    inner: Box<dyn AsyncWrite + Send + Unpin>,
    name: String,
    cause: Arc<OnceLock<String>>,
}

impl Watched {
    fn seen<T>(&self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            let _ = self.cause.set(format!("writing {}: {e}", self.name));
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.seen(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.seen(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.seen(r)
    }
}

struct Blameless {
    inner: Arc<dyn Progress>,
    fault: Fault,
}

impl Progress for Blameless {
    fn planned(&self, components: usize) {
        self.inner.planned(components)
    }
    fn component_done(&self, component: &str, status: Status) {
        self.inner.component_done(component, status)
    }
    fn started(&self, component: &str, host: &str) {
        self.inner.started(component, host)
    }
    fn step(&self, component: &str, host: &str, step: &str) {
        self.inner.step(component, host, step)
    }
    fn bytes(&self, component: &str, host: &str, n: u64) {
        self.inner.bytes(component, host, n)
    }
    fn finished(&self, component: &str, host: &str, status: Status, errors: &[Failure]) {
        let errors = if self.fault.cause().is_some() {
            &[]
        } else {
            errors
        };
        self.inner.finished(component, host, status, errors)
    }
    fn message(&self, text: &str) {
        self.inner.message(text)
    }
}
