//! The session pool: one session per host, opened on first use, shared by every component on
//! that host, closed at the end of the run. A connection that dropped is replaced once per host
//! and run ([`Sessions::renew`]).

use std::collections::{HashMap, HashSet};
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
    /// Hosts whose dropped connection was already replaced by a fresh one (once per run).
    renewed: Mutex<HashSet<String>>,
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
        Self::open(cell, h, cfg).await
    }

    /// A fresh connection to `h` in place of `dropped`, a session of the pool whose connection
    /// dropped: opened once per host and run, and shared by every component that saw the drop.
    /// None when the host's connection was already replaced once (a second drop is not retried).
    pub(crate) async fn renew(
        &self,
        h: &PlannedHost,
        cfg: &TransportConfig,
        dropped: &Arc<Session>,
    ) -> Option<Result<Arc<Session>, Failure>> {
        let cell = {
            let mut map = self.cells.lock().unwrap();
            let current = map.entry(h.name.clone()).or_default().clone();
            let is_dropped = matches!(current.get(), Some(Ok(s)) if Arc::ptr_eq(s, dropped));
            let mut renewed = self.renewed.lock().unwrap();
            if is_dropped {
                if !renewed.insert(h.name.clone()) {
                    return None;
                }
                let fresh = SessionCell::default();
                map.insert(h.name.clone(), fresh.clone());
                fresh
            } else if renewed.contains(&h.name) {
                // another component already replaced it
                current
            } else {
                return None;
            }
        };
        Some(Self::open(cell, h, cfg).await)
    }

    async fn open(
        cell: SessionCell,
        h: &PlannedHost,
        cfg: &TransportConfig,
    ) -> Result<Arc<Session>, Failure> {
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
