//! The session pool: one session per host, opened on first use, shared by every component on
//! that host, closed at the end of the run. A connection that dropped is replaced once per host
//! and run ([`Sessions::renew`]). At most the run's concurrency of connections stay open: before
//! another host is connected, sessions no unit is using are closed to make room (a host needed
//! again later is connected again), so a run over many hosts holds a bounded number of sockets
//! and SSH sessions, not one per host.

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
pub(crate) struct Sessions {
    cells: Arc<Mutex<HashMap<String, SessionCell>>>,
    /// Hosts whose dropped connection was already replaced by a fresh one (once per run).
    renewed: Mutex<HashSet<String>>,
    /// Connections kept open at most (open or being opened; idle ones are closed for new ones).
    open_max: usize,
}

impl Sessions {
    pub(crate) fn new(open_max: usize) -> Sessions {
        Sessions {
            cells: Arc::default(),
            renewed: Mutex::default(),
            open_max: open_max.max(1),
        }
    }

    /// Whether a host has a connection in the pool (open, being opened, or failed: a job for
    /// it needs no new login), for [`super::slots::HostSlots`].
    pub(crate) fn warm_probe(&self) -> super::slots::WarmProbe {
        let cells = self.cells.clone();
        Arc::new(move |host: &str| cells.lock().unwrap().contains_key(host))
    }

    pub(crate) async fn get(
        &self,
        h: &PlannedHost,
        cfg: &TransportConfig,
    ) -> Result<Arc<Session>, Failure> {
        let (cell, idle) = {
            let mut map = self.cells.lock().unwrap();
            let cell = map.entry(h.name.clone()).or_default().clone();
            // the first to connect this host makes room (others wait on the same cell)
            let idle = if cell.initialized() || Arc::strong_count(&cell) > 2 {
                Vec::new()
            } else {
                self.make_room(&mut map, &h.name)
            };
            (cell, idle)
        };
        futures::future::join_all(idle.into_iter().map(Session::close)).await;
        Self::open(cell, h, cfg).await
    }

    /// Take out of the pool as many idle sessions as must close for one more connection (to
    /// `host`) to stay within `open_max`. Idle: nothing but the pool holds the session or its
    /// cell, so no unit uses it and none can start to while the map is locked.
    fn make_room(&self, map: &mut HashMap<String, SessionCell>, host: &str) -> Vec<Session> {
        let open = map
            .iter()
            .filter(|(n, c)| n.as_str() != host && !matches!(c.get(), Some(Err(_))))
            .count();
        let excess = (open + 1).saturating_sub(self.open_max);
        if excess == 0 {
            return Vec::new();
        }
        let idle: Vec<String> = map
            .iter()
            .filter(|(n, c)| {
                n.as_str() != host
                    && Arc::strong_count(c) == 1
                    && matches!(c.get(), Some(Ok(s)) if Arc::strong_count(s) == 1)
            })
            .map(|(n, _)| n.clone())
            .take(excess)
            .collect();
        idle.iter()
            .filter_map(|n| map.remove(n))
            .filter_map(|c| match Arc::try_unwrap(c).ok()?.into_inner() {
                Some(Ok(s)) => Arc::try_unwrap(s).ok(),
                _ => None,
            })
            .collect()
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
        let sessions = cells.into_iter().filter_map(|cell| {
            match Arc::try_unwrap(cell).ok().and_then(|c| c.into_inner()) {
                Some(Ok(s)) => Arc::try_unwrap(s).ok(),
                _ => None,
            }
        });
        futures::future::join_all(sessions.map(Session::close)).await;
    }
}
