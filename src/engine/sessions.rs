//! The session pool: one session per host, opened on first use, shared by every component on
//! that host, closed at the end of the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::plan::PlannedHost;
use crate::archive::{Failure, FailureKind};
use crate::transport::{Session, TransportConfig, TransportError};

type SessionCell = Arc<OnceCell<Result<Arc<Session>, Failure>>>;

/// The failure kind of a transport error.
pub fn transport_kind(e: &TransportError) -> FailureKind {
    match e {
        TransportError::Connect { .. } => FailureKind::Connection,
        TransportError::ConnectTimeout { .. } | TransportError::CommandTimeout { .. } => {
            FailureKind::Timeout
        }
        TransportError::UnknownHostKey { .. } | TransportError::ChangedHostKey { .. } => {
            FailureKind::HostKey
        }
        TransportError::Auth { .. } => FailureKind::Auth,
        TransportError::Lost { .. } => FailureKind::ConnectionLost,
        TransportError::NothingListening { .. } | TransportError::ForwardingRefused { .. } => {
            FailureKind::Api
        }
        TransportError::Other { .. } => FailureKind::Connection,
    }
}

/// One session per host. A failed connection is remembered, so each host is tried once per run
/// and its failure is reported with the same kind and line by every component that needed it.
#[derive(Default)]
pub(crate) struct Sessions {
    cells: Mutex<HashMap<String, SessionCell>>,
}

impl Sessions {
    pub(crate) async fn get(
        &self,
        h: &PlannedHost,
        cfg: &TransportConfig,
    ) -> Result<Arc<Session>, Failure> {
        let cell = {
            let mut map = self.cells.lock().unwrap();
            map.entry(h.name.clone()).or_default().clone()
        };
        cell.get_or_init(|| async {
            Session::connect(&h.conn, cfg)
                .await
                .map(Arc::new)
                .map_err(|e| {
                    // Logged here, once per host, not by each component that needed it.
                    let f = Failure::new(transport_kind(&e), None, e.to_string());
                    tracing::warn!("{}", f.message);
                    f
                })
        })
        .await
        .clone()
    }

    pub(crate) async fn close_all(&self) {
        let cells: Vec<SessionCell> = self.cells.lock().unwrap().drain().map(|(_, c)| c).collect();
        for cell in cells {
            if let Some(Ok(s)) = Arc::try_unwrap(cell).ok().and_then(|c| c.into_inner())
                && let Ok(s) = Arc::try_unwrap(s)
            {
                s.close().await;
            }
        }
    }
}
