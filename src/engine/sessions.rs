//! The session pool: one session per host, opened on first use, shared by every component on
//! that host, closed at the end of the run. A connection that dropped is replaced once per host
//! and run ([`Sessions::renew`]). At most the run's concurrency of connections stay open: before
//! another host is connected, sessions no unit is using are closed to make room (a host needed
//! again later is connected again), so a run over many hosts holds a bounded number of sockets
//! and SSH sessions, not one per host.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::plan::PlannedHost;
use super::slots::SlotHooks;
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
    pool: Arc<Pool>,
    /// Hosts whose dropped connection was already replaced by a fresh one (once per run).
    renewed: Mutex<HashSet<String>>,
    /// Connections kept open at most (open or being opened; idle ones are closed for new ones).
    open_max: usize,
}

/// How long a new connection waits for an open one to become idle (and be closed) before it is
/// opened anyway. Open connections are bounded by the run's slots, so one becomes idle as soon as
/// a job that just ended lets go of it; only a session used outside the slots (a component
/// reaching a peer host) can hold one longer.
const ROOM_WAIT: Duration = Duration::from_secs(10);

/// The cells and the hosts holding slots, under one lock.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    cells: HashMap<String, SessionCell>,
    /// Slots held per host ([`SlotHooks`]): a reserved host's connection is never closed for
    /// another's.
    reserved: HashMap<String, usize>,
}

impl SlotHooks for Pool {
    fn warm(&self, host: &str) -> bool {
        self.state.lock().unwrap().cells.contains_key(host)
    }

    fn reserve(&self, host: &str) {
        *self
            .state
            .lock()
            .unwrap()
            .reserved
            .entry(host.to_string())
            .or_default() += 1;
    }

    fn unreserve(&self, host: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(n) = st.reserved.get_mut(host) {
            *n -= 1;
            if *n == 0 {
                st.reserved.remove(host);
            }
        }
    }
}

impl Sessions {
    pub(crate) fn new(open_max: usize) -> Sessions {
        Sessions {
            pool: Arc::default(),
            renewed: Mutex::default(),
            open_max: open_max.max(1),
        }
    }

    /// What [`super::slots::HostSlots`] asks the pool (is a host connected?) and tells it (which
    /// hosts hold slots).
    pub(crate) fn slot_hooks(&self) -> Arc<dyn SlotHooks> {
        self.pool.clone()
    }

    pub(crate) async fn get(
        &self,
        h: &PlannedHost,
        cfg: &TransportConfig,
    ) -> Result<Arc<Session>, Failure> {
        let cell = {
            let mut st = self.pool.state.lock().unwrap();
            st.cells.entry(h.name.clone()).or_default().clone()
        };
        // Room is made by the one task that connects the host, before it connects: another job
        // for the same host waits on the cell, never connects while an idle session is still
        // being closed for it.
        Self::open(cell, h, cfg, Some(self)).await
    }

    /// Close idle sessions until one more connection (to `host`) fits within `open_max`,
    /// waiting up to [`ROOM_WAIT`] for enough of them to become idle.
    async fn make_room(&self, host: &str) {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        let idle = loop {
            if let Some(idle) = self
                .pool
                .state
                .lock()
                .unwrap()
                .make_room(host, self.open_max)
            {
                break idle;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(
                    "{host}: connecting although {} connections are in use",
                    self.open_max
                );
                break Vec::new();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        futures::future::join_all(idle.into_iter().map(Session::close)).await;
    }
}

impl PoolState {
    /// Take out of the pool as many idle sessions as must close for one more connection (to
    /// `host`) to stay within `open_max`; None when not enough are idle yet. Idle: nothing but
    /// the pool holds the session or its cell and no job on its host holds a slot, so no unit
    /// uses it and none can start to while the pool is locked.
    fn make_room(&mut self, host: &str, open_max: usize) -> Option<Vec<Session>> {
        let open = self
            .cells
            .iter()
            .filter(|(n, c)| n.as_str() != host && !matches!(c.get(), Some(Err(_))))
            .count();
        let excess = (open + 1).saturating_sub(open_max);
        if excess == 0 {
            return Some(Vec::new());
        }
        let idle: Vec<String> = self
            .cells
            .iter()
            .filter(|(n, c)| {
                n.as_str() != host
                    && !self.reserved.contains_key(n.as_str())
                    && Arc::strong_count(c) == 1
                    && matches!(c.get(), Some(Ok(s)) if Arc::strong_count(s) == 1)
            })
            .map(|(n, _)| n.clone())
            .take(excess)
            .collect();
        if idle.len() < excess {
            return None;
        }
        Some(
            idle.iter()
                .filter_map(|n| self.cells.remove(n))
                .filter_map(|c| match Arc::try_unwrap(c).ok()?.into_inner() {
                    Some(Ok(s)) => Arc::try_unwrap(s).ok(),
                    _ => None,
                })
                .collect(),
        )
    }
}

impl Sessions {
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
            let mut st = self.pool.state.lock().unwrap();
            let map = &mut st.cells;
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
        // the dropped connection's place: no room to make
        Some(Self::open(cell, h, cfg, None).await)
    }

    /// The session of `cell`, connected by the first caller (after making room in `pool`, when
    /// given), awaited by the others.
    async fn open(
        cell: SessionCell,
        h: &PlannedHost,
        cfg: &TransportConfig,
        pool: Option<&Sessions>,
    ) -> Result<Arc<Session>, Failure> {
        cell.get_or_init(|| async {
            if let Some(pool) = pool {
                pool.make_room(&h.name).await;
            }
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
        let cells: Vec<SessionCell> = self
            .pool
            .state
            .lock()
            .unwrap()
            .cells
            .drain()
            .map(|(_, c)| c)
            .collect();
        let sessions = cells.into_iter().filter_map(|cell| {
            match Arc::try_unwrap(cell).ok().and_then(|c| c.into_inner()) {
                Some(Ok(s)) => Arc::try_unwrap(s).ok(),
                _ => None,
            }
        });
        futures::future::join_all(sessions.map(Session::close)).await;
    }
}
