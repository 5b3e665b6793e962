//! Sessions to hosts: SSH (russh) or local processes, command execution with become/sudo,
//! streamed stdout, kept stderr tail, checked exit status.
//!
//! OWNER: transport helper. Public interface below is relied on by engine; extend, don't break.
//!
//! # Layout
//!
//! - this file: the public types ([`Session`], [`RemoteProcess`], [`TransportError`], ...), the
//!   become/sudo wrapping and shell quoting shared by both backends.
//! - `ssh.rs`: russh connection (TCP, `ProxyJump`, `ProxyCommand`), host key check, public key
//!   authentication (key files, ssh-agent), one channel per command.
//! - `local.rs`: `ansible_connection=local` hosts, run as `sh -c` child processes.
//! - `known_hosts.rs`: OpenSSH known_hosts lookup (hashed entries, `[host]:port`, patterns,
//!   `@revoked`) and recording of accepted keys.
//! - `tunnel.rs`: [`Session::connect_tcp`], TCP connections to an address as the host sees it
//!   (SSH `direct-tcpip` channels, like `ssh -L`), used by [`crate::http`].
//! - `pipe.rs`: the bounded pipe that carries stdout to the reader with backpressure, and the
//!   stderr tail.
//!
//! # Streams, backpressure and memory
//!
//! A command's stdout reaches [`RemoteProcess::stdout`] through a bounded pipe (`pipe.rs`).
//! When the reader is slower than the host, the pipe fills, the task feeding it waits, and the wait
//! reaches the SSH connection: russh stops reading from the socket, the SSH window and the TCP
//! window close, and the remote command blocks on write. Memory stays flat whatever the size of
//! the stream. One consequence: russh has one receive loop per connection, so a command whose
//! stdout is neither read nor dropped eventually stalls every other command of the same session.
//! Read each stream you start (concurrently if you start several), or drop its `stdout`: a
//! dropped reader is drained in the background and the command runs to completion.
//!
//! # Outcomes
//!
//! A clean end of stdout plus an exit status from [`RemoteProcess::wait`] is the only success.
//! A channel that closes without an exit status (connection lost, remote sshd killed) ends the
//! stdout stream with an I/O error and makes `wait()` return [`TransportError::Lost`]; a command
//! timeout ends it with an error and makes `wait()` return [`TransportError::CommandTimeout`]; so
//! a truncated stream is never mistaken for a complete one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::inventory::ConnectionSpec;
use crate::shell::{Script, quote as shell_quote};

mod known_hosts;
pub(crate) mod local;
mod pipe;
mod ssh;
mod tunnel;

pub use tunnel::{MAX_TUNNELS, TcpTunnel};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{host}: cannot connect to {addr}: {cause}")]
    Connect {
        host: String,
        addr: String,
        cause: String,
    },
    /// `during`: what had not finished (the TCP connect, the SSH handshake, ...); `limit`: where
    /// the time limit was set (`--connect-timeout` or the inventory's `ConnectTimeout`).
    #[error("{host}: connection timed out after {secs}s ({addr}) {during} (limit: {limit})")]
    ConnectTimeout {
        host: String,
        addr: String,
        secs: u64,
        during: &'static str,
        limit: &'static str,
    },
    #[error(
        "{host}: host key for {addr} is not known ({fingerprint}); check it and rerun with --accept-new-host-keys to record it in {known_hosts}"
    )]
    UnknownHostKey {
        host: String,
        addr: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "{host}: HOST KEY CHANGED for {addr} (now {fingerprint}, {known_hosts}:{line} has another): refusing to connect"
    )]
    ChangedHostKey {
        host: String,
        addr: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error("{host}: authentication failed for user {user} (tried: {tried})")]
    Auth {
        host: String,
        user: String,
        tried: String,
    },
    #[error("{host}: command timed out after {secs}s")]
    CommandTimeout { host: String, secs: u64 },
    #[error("{host}: connection lost: {cause}")]
    Lost { host: String, cause: String },
    #[error("{host}: {cause}")]
    Other { host: String, cause: String },
    /// [`Session::connect_tcp`]: nothing accepts connections at `target` on the host.
    #[error("{host}: nothing answers at {target} as seen from {host} ({cause})")]
    NothingListening {
        host: String,
        target: String,
        cause: String,
    },
    /// [`Session::connect_tcp`]: the SSH server refuses to forward connections.
    #[error(
        "{host}: the SSH server refuses to forward a connection to {target} ({cause}); tunnels need AllowTcpForwarding yes (or local) in its sshd_config and no PermitOpen excluding {target}"
    )]
    ForwardingRefused {
        host: String,
        target: String,
        cause: String,
    },
}

impl TransportError {
    /// The inventory name of the host the error is about.
    pub fn host(&self) -> &str {
        match self {
            TransportError::Connect { host, .. }
            | TransportError::ConnectTimeout { host, .. }
            | TransportError::UnknownHostKey { host, .. }
            | TransportError::ChangedHostKey { host, .. }
            | TransportError::Auth { host, .. }
            | TransportError::CommandTimeout { host, .. }
            | TransportError::Lost { host, .. }
            | TransportError::Other { host, .. }
            | TransportError::NothingListening { host, .. }
            | TransportError::ForwardingRefused { host, .. } => host,
        }
    }
}

/// Settings shared by all sessions of a run (from the CLI / config file).
///
/// Host key policy, per host (jump hosts included):
///
/// - The known_hosts file in force is [`TransportConfig::known_hosts`] when the operator named
///   it (`known_hosts_overrides_inventory`, i.e. `--known-hosts`), else the inventory's
///   `UserKnownHostsFile` for the host, else `known_hosts`. An inventory `UserKnownHostsFile`
///   of `/dev/null` is ignored with a warning: it would disable checking.
/// - A key recorded there passes. A key that differs from the one recorded (or a host with
///   recorded keys, none of them the one offered) is ALWAYS refused
///   ([`TransportError::ChangedHostKey`]), whatever `accept_new_host_keys` or the inventory's
///   `StrictHostKeyChecking` say: lsbackup moves every secret of a cluster and will not send
///   them to a host it cannot vouch for. So is a key marked `@revoked`.
/// - An unknown key is refused ([`TransportError::UnknownHostKey`]) unless
///   `accept_new_host_keys` is set or the inventory says `StrictHostKeyChecking=accept-new`,
///   `no` or `off` (or `ansible_host_key_checking=false`): the inventory cannot switch
///   checking off, `no` is treated as `accept-new`. The key is then recorded in the file in
///   force (created `0600`; recording is serialised and re-checked under a file lock, see
///   `known_hosts::record`).
/// - Only `insecure_skip_host_key_check` (`--insecure-skip-host-key-check`) switches checking
///   off: unknown and changed keys are accepted, nothing is recorded, and each such host gets a
///   warning naming the key. `@revoked` keys are still refused.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// known_hosts file to check against (default [`TransportConfig::default_known_hosts`]).
    pub known_hosts: PathBuf,
    /// `known_hosts` was named by the operator (`--known-hosts`, on the command line or in the
    /// config file): it then wins over the inventory's `UserKnownHostsFile`.
    pub known_hosts_overrides_inventory: bool,
    /// Record unknown host keys in the known_hosts file instead of refusing
    /// (`--accept-new-host-keys`). A changed key is refused regardless.
    pub accept_new_host_keys: bool,
    /// Do not check host keys at all (`--insecure-skip-host-key-check`): connect to hosts whose
    /// key is unknown or CHANGED, with a warning per host. Only ever set from the command line.
    pub insecure_skip_host_key_check: bool,
    /// Extra identity files (`--identity`), tried after the inventory's key file.
    pub identities: Vec<PathBuf>,
    /// Use ssh-agent at `SSH_AUTH_SOCK` when set.
    pub use_agent: bool,
    /// TCP connect + SSH handshake limit; the inventory's `ConnectTimeout` for a host wins.
    pub connect_timeout: Duration,
    /// Limit on one command's run time (None: no limit).
    pub command_timeout: Option<Duration>,
    /// A streaming command (output that becomes an archive entry) that sends nothing for this
    /// long is stopped and fails as timed out (None: no limit).
    pub idle_timeout: Option<Duration>,
}

/// Default of [`TransportConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

impl TransportConfig {
    /// [`TransportConfig::default_known_hosts`], no extra identities, agent on, 30 s connect
    /// timeout, no command timeout, unknown keys refused.
    pub fn with_defaults() -> TransportConfig {
        TransportConfig {
            known_hosts: TransportConfig::default_known_hosts(),
            known_hosts_overrides_inventory: false,
            accept_new_host_keys: false,
            insecure_skip_host_key_check: false,
            identities: Vec::new(),
            use_agent: true,
            connect_timeout: Duration::from_secs(30),
            command_timeout: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }

    /// The one default known_hosts file: `~/.ssh/known_hosts` of `$HOME`, else of the current
    /// user's home directory in the password database, else `/root/.ssh/known_hosts`.
    pub fn default_known_hosts() -> PathBuf {
        known_hosts::default_path()
    }
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
///
/// `stdout` ends with an I/O error (not a clean EOF) when the stream was cut short (timeout,
/// connection lost). Dropping `stdout` early is fine: the rest is drained and discarded.
/// Dropping the `RemoteProcess` itself without `wait()` stops the command (the SSH channel is
/// closed after a TERM signal; a local process group gets SIGTERM, then SIGKILL).
pub struct RemoteProcess {
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    done: Option<JoinHandle<Result<ExitInfo, TransportError>>>,
    /// Dropping this sender tells the task to stop the command.
    keep: Option<oneshot::Sender<()>>,
    host: String,
}

impl RemoteProcess {
    /// Wait for exit status; Err(Lost) if the channel closed without one (truncation), never
    /// confused with a clean exit. Unread stdout is discarded.
    pub async fn wait(mut self) -> Result<ExitInfo, TransportError> {
        self.stdout = Box::new(tokio::io::empty());
        let keep = self.keep.take();
        let done = self.done.take().expect("wait consumes the process");
        let res = match done.await {
            Ok(r) => r,
            Err(e) => Err(TransportError::Lost {
                host: self.host.clone(),
                cause: format!("command task failed: {e}"),
            }),
        };
        drop(keep);
        res
    }
}

/// Captured output of a short command.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: ExitInfo,
    pub stdout: Vec<u8>,
}

impl Output {
    /// stdout lossily decoded, trimmed.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }
}

enum Backend {
    Ssh(Box<ssh::SshConn>),
    Local,
}

struct Inner {
    host: String,
    /// The user commands run as before any become.
    login_user: String,
    /// `ansible_become_user` when `ansible_become` is set.
    become_default: Option<String>,
    command_timeout: Option<Duration>,
    backend: Backend,
}

/// One session to one host; reused for all of that host's commands (opens a channel per command).
///
/// `Session` is `Send + Sync` and all its methods take `&self`: share it (e.g. in an `Arc`, or
/// clone it, which is cheap) and run commands from several tasks at once. An SSH session runs at
/// most [`MAX_CHANNELS`] commands at a time (OpenSSH's `MaxSessions` defaults to 10); further
/// `exec` calls wait for a free channel.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// Concurrent channels (commands) per SSH session.
pub const MAX_CHANNELS: usize = 8;

impl Session {
    /// Connect (SSH, or nothing to do for a local host) and authenticate. See
    /// [`TransportConfig`] for the host key policy. Auth tries, in order: the inventory's key
    /// file, `cfg.identities`, then the keys of ssh-agent (`SSH_AUTH_SOCK`) when
    /// `cfg.use_agent`; when neither a key file nor identities are given, the default
    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that exist are tried instead. Passphrase-
    /// protected key files are never prompted for: load them into ssh-agent.
    ///
    /// `ProxyJump` (`[user@]host[:port]`, comma-separated chains; the user defaults to the local
    /// user name, as in OpenSSH) and `ProxyCommand` (`%h %p %r %n %%` substituted, each value
    /// quoted as one shell word where it needs quoting, run with `sh -c`) are honoured; each
    /// jump host's key is checked like the target's.
    pub async fn connect(
        spec: &ConnectionSpec,
        cfg: &TransportConfig,
    ) -> Result<Session, TransportError> {
        let become_default = spec.become_.then(|| spec.become_user.clone());
        let (login_user, backend) = if spec.local {
            (local::current_user(), Backend::Local)
        } else {
            let user = spec.user.clone().unwrap_or_else(local::current_user);
            let conn = ssh::SshConn::connect(spec, cfg, &user).await?;
            (user, Backend::Ssh(Box::new(conn)))
        };
        Ok(Session {
            inner: Arc::new(Inner {
                host: spec.host.clone(),
                login_user,
                become_default,
                command_timeout: cfg.command_timeout,
                backend,
            }),
        })
    }

    /// Inventory host name of this session.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The user commands run as when no become applies (`ansible_user`, or the local user).
    pub fn login_user(&self) -> &str {
        &self.inner.login_user
    }

    /// True for `ansible_connection=local` hosts.
    pub fn is_local(&self) -> bool {
        matches!(self.inner.backend, Backend::Local)
    }

    /// The user `command` would run as for this `become_user` argument (see [`Session::exec`]).
    pub fn effective_user<'a>(&'a self, become_user: Option<&'a str>) -> &'a str {
        become_user
            .or(self.inner.become_default.as_deref())
            .unwrap_or(&self.inner.login_user)
    }

    /// The exact command line sent to the host for a script (shown in plans and manifests):
    /// `sh -s`, wrapped in `sudo -n -H [-u USER] -- ` when a become applies. The script itself
    /// travels over the channel's stdin (see [`script_stdin`]), never on a command line.
    pub fn command_line(&self, become_user: Option<&str>) -> String {
        match self.become_target(become_user) {
            Some(user) => sudo_command_line(user),
            None => "sh -s".to_string(),
        }
    }

    /// The become target when it differs from the login user.
    fn become_target<'a>(&'a self, become_user: Option<&'a str>) -> Option<&'a str> {
        let target = become_user.or(self.inner.become_default.as_deref())?;
        (target != self.inner.login_user).then_some(target)
    }

    /// Start `script` on the host: `sh -s` reads it from the channel's stdin, so no part of it
    /// (values, paths) appears in any process's command line on the host. `become_user`: run as
    /// that user (`sudo -n -H -u USER -- sh -s`, skipped when already that user); when None and
    /// the inventory sets `ansible_become`, runs as `ansible_become_user`. The commands of the
    /// script get `/dev/null` as stdin.
    pub async fn exec(
        &self,
        script: &Script,
        become_user: Option<&str>,
    ) -> Result<RemoteProcess, TransportError> {
        self.start(script, become_user, None).await
    }

    /// Start `script` with `input` streamed to it: the script reads the data on file
    /// descriptor 3 (its commands get `/dev/null` as stdin unless they redirect `<&3`), e.g.
    /// `cat <&3 >"$1"`. The command line is constant (see [`INPUT_COMMAND`]): the script travels
    /// first on the channel's stdin, length-prefixed, then the data, then EOF.
    ///
    /// The data's end is an EOF, which the host cannot tell from a cut connection or a local
    /// read error: a script that installs what it received must check it (size and sha256)
    /// before using it. A local read error stops the command and is returned by `wait()`.
    pub async fn exec_with_input(
        &self,
        script: &Script,
        become_user: Option<&str>,
        input: Input,
    ) -> Result<RemoteProcess, TransportError> {
        self.start(script, become_user, Some(input)).await
    }

    /// The command line of [`Session::exec_with_input`] (shown in plans and records).
    pub fn input_command_line(&self, become_user: Option<&str>) -> String {
        let base = format!("sh -c {}", shell_quote(INPUT_COMMAND));
        match self.become_target(become_user) {
            Some(user) => sudo_command_line(user).replace("sh -s", &base),
            None => base,
        }
    }

    async fn start(
        &self,
        script: &Script,
        become_user: Option<&str>,
        input: Option<Input>,
    ) -> Result<RemoteProcess, TransportError> {
        let inner = &self.inner;
        let become_target = self.become_target(become_user);
        let (writer, reader) = pipe::pipe();
        let (keep_tx, keep_rx) = oneshot::channel();
        let stdin = match input {
            None => Stdin {
                script: script_stdin(script),
                input: None,
            },
            Some(input) => Stdin {
                script: input_script_stdin(script),
                input: Some(input),
            },
        };
        let with_input = stdin.input.is_some();
        let done = match &inner.backend {
            Backend::Ssh(conn) => {
                let line = if with_input {
                    self.input_command_line(become_user)
                } else {
                    self.command_line(become_user)
                };
                conn.exec(
                    &inner.host,
                    line,
                    stdin,
                    inner.command_timeout,
                    writer,
                    keep_rx,
                )
                .await?
            }
            Backend::Local => local::exec(
                &inner.host,
                stdin,
                become_target,
                inner.command_timeout,
                writer,
                keep_rx,
            )?,
        };
        Ok(RemoteProcess {
            stdout: Box::new(reader),
            done: Some(done),
            keep: Some(keep_tx),
            host: inner.host.clone(),
        })
    }

    /// Run a short command and capture stdout (capped at `limit` bytes; more is an error, and
    /// the command is then stopped).
    pub async fn run(
        &self,
        script: &Script,
        become_user: Option<&str>,
        limit: usize,
    ) -> Result<Output, TransportError> {
        let mut proc = self.exec(script, become_user).await?;
        let mut stdout = Vec::new();
        let mut reader = std::mem::replace(&mut proc.stdout, Box::new(tokio::io::empty()));
        let read = (&mut reader)
            .take(limit as u64 + 1)
            .read_to_end(&mut stdout)
            .await;
        drop(reader);
        if read.is_ok() && stdout.len() > limit {
            // `proc` dropped: the command is stopped.
            return Err(TransportError::Other {
                host: self.inner.host.clone(),
                cause: format!(
                    "output of `{}` is larger than {limit} bytes",
                    one_line(script.text())
                ),
            });
        }
        let exit = proc.wait().await?;
        if let Err(e) = read {
            return Err(TransportError::Lost {
                host: self.inner.host.clone(),
                cause: e.to_string(),
            });
        }
        Ok(Output { exit, stdout })
    }

    /// Close the connection when this is the last handle to it (clones keep it open). Commands
    /// still running on it are cut off and report [`TransportError::Lost`].
    pub async fn close(self) {
        if let Ok(inner) = Arc::try_unwrap(self.inner)
            && let Backend::Ssh(conn) = inner.backend
        {
            conn.close().await;
        }
    }
}

/// `sudo -n -H [-u USER] -- sh -s` (no `-u` for root).
fn sudo_command_line(user: &str) -> String {
    let user_part = if user == "root" {
        String::new()
    } else {
        format!("-u {} ", shell_quote(user))
    };
    format!("sudo -n -H {user_part}-- sh -s")
}

/// What `sh -s` reads on stdin for `script`: the script as one compound command whose own stdin
/// is `/dev/null`. The shell parses the whole `{ ...; }` before running any of it, so a command
/// in the script can never read (and run) the rest of the script as its input.
pub fn script_stdin(script: &Script) -> Vec<u8> {
    format!("{{\n{}\n}} </dev/null\n", script.to_shell()).into_bytes()
}

/// Data streamed to a command's file descriptor 3 ([`Session::exec_with_input`]).
pub type Input = Box<dyn AsyncRead + Send + Unpin>;

/// What a command's stdin carries: the script, then (with input) the data.
pub(crate) struct Stdin {
    pub script: Vec<u8>,
    pub input: Option<Input>,
}

/// The constant command of [`Session::exec_with_input`]: read the script's length (one line),
/// exactly that many bytes of script (`dd bs=1` never reads ahead, so the data after it stays
/// on stdin), and run it. No value is ever part of this line.
pub const INPUT_COMMAND: &str =
    r#"IFS= read -r n && s=$(dd bs=1 count="$n" 2>/dev/null) && eval "$s""#;

/// What [`INPUT_COMMAND`] reads: the length, a newline, the script as one compound command
/// that gets the data on fd 3 and `/dev/null` as stdin.
fn input_script_stdin(script: &Script) -> Vec<u8> {
    let body = format!("{{\n{}\n}} 3<&0 </dev/null\n", script.to_shell());
    let mut out = format!("{}\n", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// How the task streaming a command's input ended, once the command has ended: an error when
/// the command `succeeded` yet its data was not all read and sent (a read error here, a cut
/// connection, or a command that ended without reading it all). When the command failed, its
/// own exit is the cause unless the feed failed first (which stops the command).
pub(crate) async fn feed_result(
    feed: Option<JoinHandle<std::io::Result<u64>>>,
    succeeded: bool,
) -> Option<String> {
    let mut feed = feed?;
    if !succeeded {
        // A feed that failed stopped the command: its error is the cause. One still running
        // (the command ended without reading everything) is just stopped.
        return match tokio::time::timeout(Duration::from_secs(1), &mut feed).await {
            Ok(Ok(Err(e))) => Some(e.to_string()),
            Ok(_) => None,
            Err(_) => {
                feed.abort();
                None
            }
        };
    }
    tokio::select! {
        r = &mut feed => match r {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        },
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            feed.abort();
            Some("the command ended before it read all of the data".to_string())
        }
    }
}

/// First line of a command, shortened, for error messages.
fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or_default();
    if first.len() > 80 || s.lines().count() > 1 {
        let cut: String = first.chars().take(77).collect();
        format!("{cut}...")
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            sudo_command_line("postgres"),
            "sudo -n -H -u postgres -- sh -s"
        );
        assert_eq!(sudo_command_line("root"), "sudo -n -H -- sh -s");
        assert_eq!(
            sudo_command_line("we ird"),
            "sudo -n -H -u 'we ird' -- sh -s"
        );
    }

    #[test]
    fn session_is_send_sync() {
        fn check<T: Send + Sync>() {}
        fn check_send<T: Send>() {}
        check::<Session>();
        check_send::<RemoteProcess>();
    }
}
