//! One run at a time per target: a lock file (or object) `PREFIX.lock` beside the archives,
//! created only if absent (see [`Target::put_new`]), holding who holds it. Released at the end of
//! the run, whatever the outcome. A lock whose holder is gone is taken over with a warning:
//! the same machine and its process no longer running, or older than the stale limit (a holder
//! on another machine cannot be checked otherwise).

use serde::{Deserialize, Serialize};

use super::{Target, TargetError};

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub started: String,
    /// What holds it (`backup`, `prune`).
    pub command: String,
}

impl Holder {
    /// This process.
    pub fn me(command: &str) -> Holder {
        Holder {
            user: crate::transport::local::current_user(),
            host: hostname(),
            pid: std::process::id(),
            started: jiff::Timestamp::now().to_string(),
            command: command.to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} by {}@{} (pid {}) since {}",
            self.command, self.user, self.host, self.pid, self.started
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{target} is in use: {holder} holds {lock} (another run against this target; if it is gone, delete {lock})"
    )]
    Held {
        target: String,
        lock: String,
        holder: String,
    },
    #[error(
        "{target}: {lock} exists but is not a lock lsbackup wrote ({cause}); delete it if no run is using this target"
    )]
    Unreadable {
        target: String,
        lock: String,
        cause: String,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// A lock held on a target; [`TargetLock::release`] it at the end.
#[derive(Debug)]
pub struct TargetLock {
    name: String,
    /// What was taken over to get it (a warning to show).
    pub took_over: Option<String>,
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether process `pid` runs on this machine (not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

/// Why a lock held by `h` is stale (its holder is gone), if it is.
pub fn stale(h: &Holder, now: jiff::Timestamp, stale_after: std::time::Duration) -> Option<String> {
    if h.host == hostname() && !alive(h.pid) {
        return Some(format!(
            "left by {} (pid {} no longer runs on this machine)",
            h.describe(),
            h.pid
        ));
    }
    let started: jiff::Timestamp = h.started.parse().ok()?;
    let age = now.duration_since(started);
    let limit = jiff::SignedDuration::try_from(stale_after).ok()?;
    (age > limit).then(|| {
        format!(
            "left by {} ({}s old, older than the {}s limit)",
            h.describe(),
            age.as_secs(),
            stale_after.as_secs()
        )
    })
}

/// Take the lock `PREFIX.lock` of `target` for `command`.
pub async fn acquire(
    target: &Target,
    prefix: &str,
    command: &str,
    stale_after: std::time::Duration,
) -> Result<TargetLock, LockError> {
    let name = format!("{prefix}.lock");
    let me = serde_json::to_vec_pretty(&Holder::me(command)).expect("serializable");
    let mut took_over = None;
    for _ in 0..3 {
        if target.put_new(&name, me.clone()).await? {
            return Ok(TargetLock { name, took_over });
        }
        let lock_shown = format!("{}/{name}", target.display().trim_end_matches('/'));
        let bytes = match target.get_small(&name).await {
            Ok(b) => b,
            // gone between the two calls: its holder released it
            Err(_) => continue,
        };
        let holder: Holder = serde_json::from_slice(&bytes).map_err(|e| LockError::Unreadable {
            target: target.display(),
            lock: lock_shown.clone(),
            cause: e.to_string(),
        })?;
        match stale(&holder, jiff::Timestamp::now(), stale_after) {
            Some(why) => {
                target.delete(&name).await?;
                took_over = Some(format!("took over the stale lock {lock_shown}: {why}"));
            }
            None => {
                return Err(LockError::Held {
                    target: target.display(),
                    lock: lock_shown,
                    holder: holder.describe(),
                });
            }
        }
    }
    Err(LockError::Held {
        target: target.display(),
        lock: name.clone(),
        holder: "another run (the lock changed hands while being taken)".into(),
    })
}

impl TargetLock {
    /// Remove the lock.
    pub async fn release(self, target: &Target) -> Result<(), TargetError> {
        target.delete(&self.name).await
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str, pid: u32, started: &str) -> Holder {
        Holder {
            user: "root".into(),
            host: host.into(),
            pid,
            started: started.into(),
            command: "backup".into(),
        }
    }

    #[test]
    fn stale_when_the_process_is_gone_or_too_old() {
        let now: jiff::Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let day = std::time::Duration::from_secs(86400);
        // this very process, recent: held
        let me = holder(&hostname(), std::process::id(), "2026-12-06T11:00:00Z");
        assert_eq!(stale(&me, now, day), None);
        // a pid that cannot run here
        let gone = holder(&hostname(), u32::MAX - 1, "2026-12-06T11:00:00Z");
        assert!(stale(&gone, now, day).unwrap().contains("no longer runs"));
        // another machine: only age tells
        let other = holder("elsewhere.example", 1, "2026-12-06T11:00:00Z");
        assert_eq!(stale(&other, now, day), None);
        let old = holder("elsewhere.example", 1, "2026-12-04T11:00:00Z");
        assert!(
            stale(&old, now, day)
                .unwrap()
                .contains("older than the 86400s limit")
        );
    }
}
