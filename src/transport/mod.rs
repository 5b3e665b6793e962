//! Sessions to hosts: SSH (russh) or local processes, command execution with become/sudo,
//! streamed stdout, kept stderr tail, checked exit status.
//!
//! OWNER: transport helper. Public interface below is relied on by engine; extend, don't break.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncRead;

use crate::inventory::ConnectionSpec;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{host}: cannot connect to {addr}: {cause}")]
    Connect { host: String, addr: String, cause: String },
    #[error("{host}: connection timed out after {secs}s ({addr})")]
    ConnectTimeout { host: String, addr: String, secs: u64 },
    #[error(
        "{host}: host key for {addr} is not known ({fingerprint}); check it and rerun with --accept-new-host-keys to record it in {known_hosts}"
    )]
    UnknownHostKey { host: String, addr: String, fingerprint: String, known_hosts: PathBuf },
    #[error(
        "{host}: HOST KEY CHANGED for {addr} (now {fingerprint}, {known_hosts}:{line} has another): refusing to connect"
    )]
    ChangedHostKey { host: String, addr: String, fingerprint: String, known_hosts: PathBuf, line: usize },
    #[error("{host}: authentication failed for user {user} (tried: {tried})")]
    Auth { host: String, user: String, tried: String },
    #[error("{host}: command timed out after {secs}s")]
    CommandTimeout { host: String, secs: u64 },
    #[error("{host}: connection lost: {cause}")]
    Lost { host: String, cause: String },
    #[error("{host}: {cause}")]
    Other { host: String, cause: String },
}

/// Settings shared by all sessions of a run (from the CLI / config file).
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// known_hosts file to check against (default `~/.ssh/known_hosts`), unless the inventory's
    /// `UserKnownHostsFile` names another for a host.
    pub known_hosts: PathBuf,
    /// Record unknown host keys in `known_hosts` instead of refusing (`--accept-new-host-keys`).
    /// A changed key is refused regardless.
    pub accept_new_host_keys: bool,
    /// Extra identity files (`--identity`), tried after the inventory's key file.
    pub identities: Vec<PathBuf>,
    /// Use ssh-agent at `SSH_AUTH_SOCK` when set.
    pub use_agent: bool,
    pub connect_timeout: Duration,
    /// Limit on one command's run time (None: no limit).
    pub command_timeout: Option<Duration>,
}

/// What a finished remote command reports.
#[derive(Debug, Clone)]
pub struct ExitInfo {
    /// Exit code; None when killed by a signal (see `signal`) or when the channel closed without one.
    pub code: Option<u32>,
    pub signal: Option<String>,
    /// Last few KiB of stderr, lossily decoded, trimmed.
    pub stderr_tail: String,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A running command: read `stdout` to EOF, then `wait()`.
pub struct RemoteProcess {
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    // private: completion future / task handle
}

impl RemoteProcess {
    /// Wait for exit status; Err(Lost) if the channel closed without one (truncation), never
    /// confused with a clean exit.
    pub async fn wait(self) -> Result<ExitInfo, TransportError> {
        todo!("transport helper")
    }
}

/// Captured output of a short command.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: ExitInfo,
    pub stdout: Vec<u8>,
}

/// One session to one host; reused for all of that host's commands (opens a channel per command).
pub struct Session {
    // private
}

impl Session {
    pub async fn connect(spec: &ConnectionSpec, cfg: &TransportConfig) -> Result<Session, TransportError> {
        let _ = (spec, cfg);
        todo!("transport helper")
    }

    /// Inventory host name of this session.
    pub fn host(&self) -> &str {
        todo!("transport helper")
    }

    /// Start `command` (a POSIX `sh` command line) on the host. `become_user`: run as that user
    /// (`sudo -n -u USER -- sh -c '...'`, skipped when already that user); when None and the
    /// inventory sets `ansible_become`, runs as `ansible_become_user`.
    pub async fn exec(&self, command: &str, become_user: Option<&str>) -> Result<RemoteProcess, TransportError> {
        let _ = (command, become_user);
        todo!("transport helper")
    }

    /// Run a short command and capture stdout (capped at `limit` bytes; more is an error).
    pub async fn run(&self, command: &str, become_user: Option<&str>, limit: usize) -> Result<Output, TransportError> {
        let _ = (command, become_user, limit);
        todo!("transport helper")
    }

    pub async fn close(self) {}
}
