//! The run's host jobs at once: at most `--concurrency` (component × host) jobs hold a slot.
//! A freed slot goes to the oldest job waiting for a host whose connection is open, else to
//! the oldest job: with more hosts than slots, the components of a host run while its session
//! is open instead of queueing behind every other host and connecting it again (50 hosts ×
//! 2 components at 8 slots: 50 logins, not 100). No job waits forever: each host has a bounded
//! number of jobs, so preferred ones run out. A host holding a slot is reserved in the pool
//! ([`SlotHooks::reserve`]) from the moment the slot is granted, so its open connection is not
//! closed for another host's between the grant and the job's first use of it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What the slots tell the session pool, and ask it.
pub(crate) trait SlotHooks: Send + Sync {
    /// Whether `host` has a connection in the pool.
    fn warm(&self, host: &str) -> bool;
    /// A job on `host` got a slot.
    fn reserve(&self, host: &str);
    /// A job on `host` gave its slot back.
    fn unreserve(&self, host: &str);
}

pub(crate) struct HostSlots {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    hooks: Arc<dyn SlotHooks>,
}

struct State {
    free: usize,
    waiting: VecDeque<Waiter>,
    next_id: u64,
}

struct Waiter {
    id: u64,
    host: String,
    grant: oneshot::Sender<()>,
}

/// A held slot; freed when dropped.
pub(crate) struct HostSlot {
    inner: Arc<Inner>,
    host: String,
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        self.inner.hooks.unreserve(&self.host);
        self.inner.release();
    }
}

impl Inner {
    /// Hand a freed slot to the preferred waiter, or keep it free.
    fn release(&self) {
        let mut st = self.state.lock().unwrap();
        while !st.waiting.is_empty() {
            let at = st
                .waiting
                .iter()
                .position(|w| self.hooks.warm(&w.host))
                .unwrap_or(0);
            let w = st.waiting.remove(at).expect("index in range");
            self.hooks.reserve(&w.host);
            if w.grant.send(()).is_ok() {
                return;
            }
            self.hooks.unreserve(&w.host);
            // its job was dropped while waiting (its guard could not take it out yet)
        }
        st.free += 1;
    }
}

/// A waiting job's place: taken out of the queue if the job is dropped before its grant, the
/// slot passed on if it was granted but never taken.
struct Place<'a> {
    inner: &'a Arc<Inner>,
    id: u64,
    host: &'a str,
    done: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let was_waiting = {
            let mut st = self.inner.state.lock().unwrap();
            let before = st.waiting.len();
            let id = self.id;
            st.waiting.retain(|w| w.id != id);
            st.waiting.len() != before
        };
        if !was_waiting {
            // granted while being dropped: pass the slot on
            self.inner.hooks.unreserve(self.host);
            self.inner.release();
        }
    }
}

impl HostSlots {
    pub(crate) fn new(slots: usize, hooks: Arc<dyn SlotHooks>) -> HostSlots {
        HostSlots {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    free: slots.max(1),
                    waiting: VecDeque::new(),
                    next_id: 0,
                }),
                hooks,
            }),
        }
    }

    /// A slot for a job on `host`, waiting for one if all are held.
    pub(crate) async fn acquire(&self, host: &str) -> HostSlot {
        let (id, rx) = {
            let mut st = self.inner.state.lock().unwrap();
            if st.free > 0 {
                st.free -= 1;
                self.inner.hooks.reserve(host);
                return HostSlot {
                    inner: self.inner.clone(),
                    host: host.to_string(),
                };
            }
            let id = st.next_id;
            st.next_id += 1;
            let (tx, rx) = oneshot::channel();
            st.waiting.push_back(Waiter {
                id,
                host: host.to_string(),
                grant: tx,
            });
            (id, rx)
        };
        let mut place = Place {
            inner: &self.inner,
            id,
            host,
            done: false,
        };
        // The sender is only dropped after a send (release) or with the queue itself.
        let _ = rx.await;
        place.done = true;
        HostSlot {
            inner: self.inner.clone(),
            host: host.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Open hosts as the test sets them; reservations counted.
    #[derive(Default)]
    struct Pool {
        open: Mutex<HashSet<String>>,
        reserved: Mutex<Vec<String>>,
    }

    impl SlotHooks for Pool {
        fn warm(&self, host: &str) -> bool {
            self.open.lock().unwrap().contains(host)
        }
        fn reserve(&self, host: &str) {
            self.reserved.lock().unwrap().push(host.to_string());
        }
        fn unreserve(&self, host: &str) {
            let mut r = self.reserved.lock().unwrap();
            let at = r.iter().position(|h| h == host).expect("reserved");
            r.remove(at);
        }
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_host_whose_connection_is_open() {
        let pool = Arc::new(Pool::default());
        let slots = Arc::new(HostSlots::new(1, pool.clone()));
        let first = slots.acquire("h1").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for host in ["h2", "h3", "h1"] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _s = slots.acquire(host).await;
                order.lock().unwrap().push(host);
            }));
            tokio::task::yield_now().await;
        }
        // all three are waiting; h1's connection is open
        pool.open.lock().unwrap().insert("h1".to_string());
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["h1", "h2", "h3"]);
        assert!(pool.reserved.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn oldest_first_when_no_host_is_open_and_a_dropped_waiter_passes_its_slot_on() {
        let pool = Arc::new(Pool::default());
        let slots = Arc::new(HostSlots::new(2, pool.clone()));
        let a = slots.acquire("a").await;
        let b = slots.acquire("b").await;
        // a waiter that gives up: its place is removed
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(20), slots.acquire("x")).await;
        assert!(gave_up.is_err());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for host in ["c", "d"] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _s = slots.acquire(host).await;
                order.lock().unwrap().push(host);
            }));
            tokio::task::yield_now().await;
        }
        drop(a);
        drop(b);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["c", "d"]);
        // every slot is free again
        let _x = slots.acquire("e").await;
        let _y = slots.acquire("f").await;
        assert_eq!(*pool.reserved.lock().unwrap(), ["e", "f"]);
        assert_eq!(slots.inner.state.lock().unwrap().free, 0);
        assert!(slots.inner.state.lock().unwrap().waiting.is_empty());
    }
}
