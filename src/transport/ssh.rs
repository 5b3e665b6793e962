//! SSH sessions over russh: connection (TCP, `ProxyCommand`, `ProxyJump` chains), host key
//! check, public key authentication, one channel per command.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{self, Handle, Handler};
use russh::keys::agent::client::AgentClient;
use russh::keys::{
    self, Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{ChannelMsg, Disconnect, Preferred, Sig, cipher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use super::known_hosts::{self, Verdict};
use super::pipe::{PipeWriter, Tail};
use super::{ExitInfo, MAX_CHANNELS, TransportConfig, TransportError};
use crate::inventory::{ConnectionSpec, StrictHostKeyChecking};
use crate::shell::quote as shell_quote;

/// Per-channel receive window. russh re-opens the window as data arrives (it does not wait for
/// the consumer); backpressure comes from its bounded per-channel queue instead (see below), so
/// a large window only lets more bytes be in flight on a fast link.
const WINDOW: u32 = 16 * 1024 * 1024;
/// Largest packet we accept; russh warns above 65535.
const MAX_PACKET: u32 = 65535;
/// Messages russh queues per channel before its receive loop waits for us (x MAX_PACKET bytes).
const CHANNEL_QUEUE: usize = 4;
/// Keepalive when the inventory sets no `ServerAliveInterval`: a dead peer is noticed after
/// about interval x count instead of never.
const DEFAULT_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_ALIVE_COUNT: u32 = 4;

/// What to do with a host key that is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnknownKey {
    /// Refuse it (strict checking).
    Refuse,
    /// Record it in the known_hosts file (accept-new); a changed key is still refused.
    Record,
    /// `--insecure-skip-host-key-check`: accept unknown and changed keys, record nothing.
    Insecure,
}

/// The russh handler: checks the server's key and remembers why it refused one.
struct Client {
    host: String,
    name: String,
    port: u16,
    addr: String,
    known_hosts: PathBuf,
    policy: UnknownKey,
    refusal: Arc<Mutex<Option<TransportError>>>,
    gone: Gone,
}

/// Why a connection ended, once it has (set by [`Client::disconnected`]): the cause a command
/// cut short reports.
type Gone = Arc<Mutex<Option<String>>>;

impl Client {
    fn refuse(&self, e: TransportError) -> bool {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        false
    }

    fn changed(&self, fingerprint: String, line: usize) -> bool {
        self.refuse(TransportError::ChangedHostKey {
            host: self.host.clone(),
            addr: self.addr.clone(),
            fingerprint,
            known_hosts: self.known_hosts.clone(),
            line,
        })
    }

    fn revoked(&self, fingerprint: &str, line: usize) -> bool {
        self.refuse(TransportError::Other {
            host: self.host.clone(),
            cause: format!(
                "host key {fingerprint} of {} is marked @revoked in {}:{line}: refusing to connect",
                self.addr,
                self.known_hosts.display()
            ),
        })
    }

    /// `--insecure-skip-host-key-check` lets an unverified key through: say so, every time.
    fn insecure_accept(&self, fingerprint: &str, why: &str) -> bool {
        tracing::warn!(
            "{}: host key NOT verified (--insecure-skip-host-key-check): accepting {fingerprint} for {} ({why})",
            self.host,
            self.addr
        );
        true
    }

    fn judge(&self, key: &PublicKey) -> bool {
        let fingerprint = known_hosts::describe(key);
        let kh = &self.known_hosts;
        match known_hosts::check(kh, &self.name, self.port, key) {
            Ok(Verdict::Known) => true,
            Ok(Verdict::Revoked { line }) => self.revoked(&fingerprint, line),
            Ok(Verdict::Changed { line }) if self.policy == UnknownKey::Insecure => self
                .insecure_accept(
                    &fingerprint,
                    &format!("CHANGED: {}:{line} has another key", kh.display()),
                ),
            Ok(Verdict::Changed { line }) => self.changed(fingerprint, line),
            Ok(Verdict::Unknown) => match self.policy {
                UnknownKey::Insecure => self.insecure_accept(
                    &fingerprint,
                    &format!("not in {}; not recorded", kh.display()),
                ),
                // Re-checked under the file lock: another connection may have recorded a key
                // for this host since the check above.
                UnknownKey::Record => match known_hosts::record(kh, &self.name, self.port, key) {
                    Ok(Verdict::Unknown) => {
                        tracing::info!(
                            "{}: recorded new host key {fingerprint} for {} in {}",
                            self.host,
                            self.addr,
                            kh.display()
                        );
                        true
                    }
                    Ok(Verdict::Known) => true,
                    Ok(Verdict::Changed { line }) => self.changed(fingerprint, line),
                    Ok(Verdict::Revoked { line }) => self.revoked(&fingerprint, line),
                    Err(e) => self.refuse(TransportError::Other {
                        host: self.host.clone(),
                        cause: format!(
                            "cannot record host key for {} in {}: {e}",
                            self.addr,
                            kh.display()
                        ),
                    }),
                },
                UnknownKey::Refuse => self.refuse(TransportError::UnknownHostKey {
                    host: self.host.clone(),
                    addr: self.addr.clone(),
                    fingerprint,
                    known_hosts: kh.clone(),
                }),
            },
            Err(e) => self.refuse(TransportError::Other {
                host: self.host.clone(),
                cause: format!("cannot read known_hosts file {}: {e}", kh.display()),
            }),
        }
    }
}

impl Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // Not requested (no certificate algorithms are offered); check the certified key.
            PublicKeyOrCertificate::Certificate(c) => PublicKey::new(c.public_key().clone(), ""),
        };
        Ok(self.judge(&key))
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let (why, result) = match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                let said = clean_line(&info.message);
                let why = if said.is_empty() {
                    format!("the server ended the connection ({:?})", info.reason_code)
                } else {
                    format!("the server ended the connection: {said}")
                };
                (why, Ok(()))
            }
            client::DisconnectReason::Error(e) => {
                let why = match &e {
                    russh::Error::IO(io) => format!("the connection dropped: {}", io_cause(io)),
                    russh::Error::Disconnect => "the server closed the connection".to_string(),
                    russh::Error::KeepaliveTimeout => {
                        "the host stopped answering keepalives".to_string()
                    }
                    other => format!("the connection failed: {}", ssh_cause(other)),
                };
                (why, Err(e))
            }
        };
        self.gone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        result
    }
}

/// A line a server sent, shown to the user: control characters dropped, at most 200 chars.
fn clean_line(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

/// One hop: a jump host or the target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    user: String,
    host: String,
    port: u16,
    jump: bool,
}

impl Hop {
    fn addr(&self) -> String {
        let a = host_port(&self.host, self.port);
        if self.jump {
            format!("{a} (jump host)")
        } else {
            a
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parse `ProxyJump`: `[user@]host[:port]` or `ssh://[user@]host[:port]`, comma-separated;
/// `none` means no jump.
fn parse_jumps(spec: &str, default_user: &str) -> Result<Vec<Hop>, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|part| {
            let part = part.trim();
            let rest = part.strip_prefix("ssh://").unwrap_or(part);
            let (user, hostport) = match rest.rsplit_once('@') {
                Some((u, h)) => (u.to_string(), h),
                None => (default_user.to_string(), rest),
            };
            let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
                let (h, after) = inner
                    .split_once(']')
                    .ok_or_else(|| format!("bad ProxyJump host {part:?}"))?;
                match after.strip_prefix(':') {
                    Some(p) => (
                        h.to_string(),
                        p.parse()
                            .map_err(|_| format!("bad port in ProxyJump {part:?}"))?,
                    ),
                    None => (h.to_string(), 22),
                }
            } else {
                match hostport.split_once(':') {
                    Some((h, p)) => (
                        h.to_string(),
                        p.parse()
                            .map_err(|_| format!("bad port in ProxyJump {part:?}"))?,
                    ),
                    None => (hostport.to_string(), 22),
                }
            };
            if host.is_empty() || user.is_empty() {
                return Err(format!("bad ProxyJump host {part:?}"));
            }
            Ok(Hop {
                user,
                host,
                port,
                jump: true,
            })
        })
        .collect()
}

/// `ProxyCommand` with `%h %p %r %n %%` substituted, for `sh -c`.
///
/// OpenSSH pastes the values in as they are; lsbackup's come from the inventory, so each is
/// quoted by [`shell_quote`] and stays one word of data (`x;touch /tmp/pwn` is a strange host
/// name, not a command). A value made only of characters that are never special to `sh`
/// (letters, digits, `-_./:=@,+%`: every host name, IP address and port) is unchanged, so
/// `ssh -W %h:%p jump` and `socat - TCP:%h:%p` mean what they mean to OpenSSH. Other values are
/// quoted for where the `%` sequence stands:
///
/// - outside quotes: `'x;touch /tmp/pwn'`;
/// - inside `'...'` (usually a script for an inner `sh -c`): quoted for that inner shell, and
///   that text escaped for the single quotes around it;
/// - inside `"..."`: likewise, with `\ $ ` " ` escaped for the double quotes.
///
/// After an unquoted backslash, inside `$(...)`, backquotes, `${...}` or after a `<<` here-
/// document, no quoting can be relied upon: such a value is refused (Err names the sequence).
fn proxy_command_line(
    template: &str,
    host: &str,
    port: u16,
    user: &str,
    name: &str,
) -> Result<String, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let port = port.to_string();
    let mut out = String::new();
    let mut q = Q::None;
    let mut escaped = false;
    // Anything past this point is parsed again by the shell in ways quoting cannot follow.
    let mut unsure = false;
    let mut prev: Option<char> = None;
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let (seq, value) = match chars.next() {
                Some('h') => ("%h", host),
                Some('p') => ("%p", port.as_str()),
                Some('r') => ("%r", user),
                Some('n') => ("%n", name),
                Some('%') => ("%%", "%"),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                    prev = Some(other);
                    escaped = false;
                    continue;
                }
                None => {
                    out.push('%');
                    break;
                }
            };
            let quoted = shell_quote(value);
            if quoted == value {
                out.push_str(value);
            } else if escaped || unsure {
                return Err(format!(
                    "ProxyCommand: {seq} ({value:?}) cannot be quoted safely where it stands in {template:?}"
                ));
            } else {
                match q {
                    Q::None => out.push_str(&quoted),
                    Q::Single => out.push_str(&quoted.replace('\'', r"'\''")),
                    Q::Double => {
                        for ch in quoted.chars() {
                            if matches!(ch, '\\' | '$' | '`' | '"') {
                                out.push('\\');
                            }
                            out.push(ch);
                        }
                    }
                }
            }
            // A substituted value ends in a character that is not special where it stands.
            prev = Some('x');
            escaped = false;
            continue;
        }
        out.push(c);
        if escaped {
            escaped = false;
            prev = Some(c);
            continue;
        }
        match (q, c) {
            (Q::None | Q::Double, '\\') => escaped = true,
            (Q::None, '\'') => q = Q::Single,
            (Q::Single, '\'') => q = Q::None,
            (Q::None, '"') => q = Q::Double,
            (Q::Double, '"') => q = Q::None,
            (Q::None | Q::Double, '`') => unsure = true,
            (Q::None | Q::Double, '(' | '{') if prev == Some('$') => unsure = true,
            (Q::None, '<') if prev == Some('<') => unsure = true,
            _ => {}
        }
        prev = Some(c);
    }
    Ok(out)
}

/// The stdio of a `ProxyCommand` as one duplex stream; the process lives as long as the stream.
struct ProxyStream {
    io: tokio::io::Join<ChildStdout, ChildStdin>,
    _child: Child,
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What a `ProxyCommand` wrote to stderr.
struct ProxyStderr {
    tail: Arc<Mutex<Tail>>,
    reader: Option<JoinHandle<()>>,
}

impl ProxyStderr {
    /// The last non-empty line, once the command closed stderr (or after a short wait).
    async fn last_line(self) -> String {
        if let Some(r) = self.reader {
            let _ = tokio::time::timeout(Duration::from_millis(500), r).await;
        }
        let text = self.tail.lock().unwrap_or_else(|p| p.into_inner()).text();
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An I/O error as a short lowercase cause ("connection refused").
pub(super) fn io_cause(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => {
            let s = e.to_string();
            let s = match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// A russh error as a short cause.
fn ssh_cause(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io_cause(io),
        russh::Error::Disconnect => "the server closed the connection".into(),
        other => other.to_string(),
    }
}

fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::Custom(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Host key algorithms with those recorded for the host first (as OpenSSH orders them), so a
/// server with several keys presents the one we can check.
fn host_key_preference(recorded: &[Algorithm]) -> Vec<Algorithm> {
    let defaults: Vec<Algorithm> = Preferred::DEFAULT.key.to_vec();
    let mut out: Vec<Algorithm> = Vec::new();
    for r in recorded {
        for d in &defaults {
            if known_hosts::same_type(r, d) && !out.contains(d) {
                out.push(d.clone());
            }
        }
    }
    for d in defaults {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

fn client_config(spec: &ConnectionSpec, recorded: &[Algorithm]) -> Arc<client::Config> {
    let preferred = Preferred {
        key: host_key_preference(recorded).into(),
        // AES-GCM first: hardware-accelerated on the machines backups run on, and the fastest
        // cipher russh offers; ChaCha20 next for CPUs without AES instructions.
        cipher: vec![
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
            cipher::AES_192_CTR,
            cipher::AES_128_CTR,
        ]
        .into(),
        ..Preferred::DEFAULT
    };
    let (interval, count) = match spec.ssh.server_alive_interval {
        Some(d) if d.is_zero() => (None, 0),
        Some(d) => (Some(d), spec.ssh.server_alive_count_max.unwrap_or(3)),
        None => (
            Some(DEFAULT_ALIVE_INTERVAL),
            spec.ssh
                .server_alive_count_max
                .unwrap_or(DEFAULT_ALIVE_COUNT),
        ),
    };
    Arc::new(client::Config {
        window_size: WINDOW,
        maximum_packet_size: MAX_PACKET,
        channel_buffer_size: CHANNEL_QUEUE,
        keepalive_interval: interval,
        keepalive_max: count as usize,
        inactivity_timeout: None,
        nodelay: true,
        preferred,
        ..Default::default()
    })
}

/// One authenticated SSH connection (plus the jump host connections it runs through).
pub(super) struct SshConn {
    handle: Handle<Client>,
    /// Jump host connections, kept open as long as the tunnel through them is used.
    jumps: Vec<Handle<Client>>,
    slots: Arc<Semaphore>,
    /// Open `direct-tcpip` tunnels, bounded apart from `slots` (see [`super::tunnel::MAX_TUNNELS`]).
    tunnels: Arc<Semaphore>,
    /// How long the server may take to confirm a command's channel: the connect timeout. A
    /// host that stopped answering (its sshd stopped, the network gone quiet) would otherwise
    /// hold every later command of the session until the keepalives give up.
    open_timeout: OpenTimeout,
    /// Why the connection ended, once it has.
    gone: Gone,
}

/// How long a command whose channel closed without an exit status waits to learn whether the
/// whole connection ended (and why).
const GONE_WAIT: Duration = Duration::from_secs(1);

/// How long [`SshConn::close`] waits for the connection to end after its disconnect.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// See [`SshConn::open_timeout`].
struct OpenTimeout {
    timeout: Duration,
    addr: String,
    limit: &'static str,
}

/// Settings every hop of one connection shares.
struct Ctx<'a> {
    host: &'a str,
    spec: &'a ConnectionSpec,
    cfg: &'a TransportConfig,
    known_hosts: PathBuf,
    policy: UnknownKey,
    timeout: Duration,
}

impl Ctx<'_> {
    fn timeout_err(&self, hop: &Hop, during: &'static str) -> TransportError {
        TransportError::ConnectTimeout {
            host: self.host.to_string(),
            addr: hop.addr(),
            secs: self.timeout.as_secs_f64().ceil() as u64,
            during,
            limit: self.limit(),
        }
    }

    /// Where the connect timeout was set.
    fn limit(&self) -> &'static str {
        if self.spec.ssh.connect_timeout.is_some() {
            "the inventory's ConnectTimeout"
        } else {
            "--connect-timeout"
        }
    }

    fn connect_err(&self, hop: &Hop, cause: String) -> TransportError {
        TransportError::Connect {
            host: self.host.to_string(),
            addr: hop.addr(),
            cause,
        }
    }

    async fn tcp(&self, hop: &Hop) -> Result<Box<dyn Stream>, TransportError> {
        let addrs: Vec<_> = tokio::net::lookup_host((hop.host.as_str(), hop.port))
            .await
            .map_err(|e| {
                self.connect_err(
                    hop,
                    format!("cannot resolve {}: {}", hop.host, io_cause(&e)),
                )
            })?
            .collect();
        let mut last = None;
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(Box::new(s));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(self.connect_err(
            hop,
            last.map(|e| io_cause(&e))
                .unwrap_or_else(|| format!("no address found for {}", hop.host)),
        ))
    }

    /// Start `ProxyCommand`; its stderr is kept for error messages.
    fn proxy_command(
        &self,
        template: &str,
        hop: &Hop,
    ) -> Result<(Box<dyn Stream>, ProxyStderr), TransportError> {
        let line = proxy_command_line(template, &hop.host, hop.port, &hop.user, &self.spec.host)
            .map_err(|cause| self.connect_err(hop, cause))?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.connect_err(hop, format!("cannot start ProxyCommand: {e}")))?;
        let (Some(out), Some(inp)) = (child.stdout.take(), child.stdin.take()) else {
            return Err(self.connect_err(hop, "ProxyCommand has no stdio".into()));
        };
        let tail = Arc::new(Mutex::new(Tail::default()));
        let reader = child.stderr.take().map(|mut err| {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(&buf[..n]);
                }
            })
        });
        let stream = Box::new(ProxyStream {
            io: tokio::io::join(out, inp),
            _child: child,
        });
        Ok((stream, ProxyStderr { tail, reader }))
    }

    /// SSH handshake and host key check on `stream`, then authentication.
    async fn establish(
        &self,
        stream: Box<dyn Stream>,
        hop: &Hop,
        proxy_stderr: Option<ProxyStderr>,
        gone: Gone,
    ) -> Result<Handle<Client>, TransportError> {
        let refusal = Arc::new(Mutex::new(None));
        let handler = Client {
            host: self.host.to_string(),
            name: hop.host.clone(),
            port: hop.port,
            addr: hop.addr(),
            known_hosts: self.known_hosts.clone(),
            policy: self.policy,
            refusal: refusal.clone(),
            gone,
        };
        let recorded = known_hosts::recorded_algorithms(&self.known_hosts, &hop.host, hop.port);
        let config = client_config(self.spec, &recorded);
        let handshake = tokio::time::timeout(
            self.timeout,
            client::connect_stream(config, stream, handler),
        )
        .await;
        let mut handle = match handshake {
            Err(_) => {
                return Err(self.timeout_err(
                    hop,
                    "in the SSH handshake: the server took the connection and never completed it",
                ));
            }
            Ok(Err(e)) => {
                if let Some(refused) = refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(refused);
                }
                let mut cause = format!("SSH handshake failed: {}", ssh_cause(&e));
                if let Some(said) = proxy_stderr {
                    let said = said.last_line().await;
                    if !said.is_empty() {
                        cause = format!("ProxyCommand failed: {said}");
                    }
                }
                return Err(self.connect_err(hop, cause));
            }
            Ok(Ok(h)) => h,
        };
        match tokio::time::timeout(self.timeout, self.authenticate(&mut handle, hop)).await {
            Err(_) => Err(self.timeout_err(hop, "in authentication")),
            Ok(r) => r.map(|()| handle),
        }
    }

    /// Key files, then `--identity` files, then ssh-agent.
    async fn authenticate(
        &self,
        handle: &mut Handle<Client>,
        hop: &Hop,
    ) -> Result<(), TransportError> {
        let mut tried: Vec<String> = Vec::new();
        let mut files: Vec<PathBuf> = Vec::new();
        for f in self.spec.key_file.iter().chain(self.cfg.identities.iter()) {
            if !files.contains(f) {
                files.push(f.clone());
            }
        }
        if files.is_empty()
            && let Some(home) = std::env::var_os("HOME")
        {
            let ssh_dir = Path::new(&home).join(".ssh");
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let p = ssh_dir.join(name);
                if p.is_file() {
                    files.push(p);
                }
            }
        }
        let mut rsa_hash: Option<Option<HashAlg>> = None;
        let mut encrypted = false;
        for path in &files {
            let key = match keys::load_secret_key(path, None) {
                Ok(k) => k,
                Err(keys::Error::KeyIsEncrypted) => {
                    encrypted = true;
                    tried.push(format!("{} (passphrase-protected)", path.display()));
                    continue;
                }
                Err(keys::Error::IO(e)) if e.kind() == io::ErrorKind::NotFound => {
                    tried.push(format!("{} (not found)", path.display()));
                    continue;
                }
                Err(keys::Error::IO(e)) => {
                    tried.push(format!(
                        "{} (cannot read: {})",
                        path.display(),
                        io_cause(&e)
                    ));
                    continue;
                }
                Err(e) => {
                    tried.push(format!(
                        "{} (not a usable private key: {e})",
                        path.display()
                    ));
                    continue;
                }
            };
            let hash = rsa_hash_for(handle, key.algorithm().is_rsa(), &mut rsa_hash).await;
            let res = handle
                .authenticate_publickey(
                    hop.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await;
            tried.push(path.display().to_string());
            match res {
                Ok(r) if r.success() => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(self.auth_err(hop, tried, Some(ssh_cause(&e)))),
            }
        }
        if self.cfg.use_agent {
            match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
                None => tried.push("agent (SSH_AUTH_SOCK not set)".into()),
                Some(sock) => match AgentClient::connect_uds(&sock).await {
                    Err(e) => tried.push(format!("agent (cannot connect to SSH_AUTH_SOCK: {e})")),
                    Ok(mut agent) => {
                        if let Some(binding) = handle.agent_session_binding().cloned() {
                            let _ = agent.bind_session(&binding, false).await;
                        }
                        let idents = agent.request_identities().await.unwrap_or_default();
                        let mut n = 0;
                        for ident in idents {
                            let keys::agent::AgentIdentity::PublicKey { key, .. } = ident else {
                                continue;
                            };
                            n += 1;
                            let hash =
                                rsa_hash_for(handle, key.algorithm().is_rsa(), &mut rsa_hash).await;
                            match handle
                                .authenticate_publickey_with(
                                    hop.user.clone(),
                                    key,
                                    hash,
                                    &mut agent,
                                )
                                .await
                            {
                                Ok(r) if r.success() => return Ok(()),
                                Ok(_) => {}
                                Err(russh::AgentAuthError::Send(_)) => {
                                    tried.push(format!("agent ({n} keys)"));
                                    return Err(self.auth_err(
                                        hop,
                                        tried,
                                        Some("the server closed the connection".into()),
                                    ));
                                }
                                // The agent declined to sign with this key; try the next.
                                Err(_) => {}
                            }
                        }
                        tried.push(format!("agent ({n} keys)"));
                    }
                },
            }
        }
        let note = if encrypted && !self.cfg.use_agent {
            Some("passphrase-protected keys need ssh-agent: load them with ssh-add".into())
        } else if encrypted {
            Some(
                "passphrase-protected keys are only used through ssh-agent: load them with ssh-add"
                    .into(),
            )
        } else if tried.is_empty() {
            Some("no key file, --identity or ssh-agent to try".into())
        } else {
            None
        };
        Err(self.auth_err(hop, tried, note))
    }

    fn auth_err(&self, hop: &Hop, tried: Vec<String>, note: Option<String>) -> TransportError {
        let mut tried = if tried.is_empty() {
            "nothing".to_string()
        } else {
            tried.join(", ")
        };
        if let Some(n) = note {
            tried.push_str("; ");
            tried.push_str(&n);
        }
        let user = if hop.jump {
            format!("{} on jump host {}", hop.user, hop.addr())
        } else {
            hop.user.clone()
        };
        TransportError::Auth {
            host: self.host.to_string(),
            user,
            tried,
        }
    }
}

/// The known_hosts file in force for `spec` and what to do with an unknown key (see
/// [`TransportConfig`] for the rules).
fn host_key_policy(spec: &ConnectionSpec, cfg: &TransportConfig) -> (PathBuf, UnknownKey) {
    let host = spec.host.as_str();
    let known_hosts = match &spec.ssh.user_known_hosts_file {
        _ if cfg.known_hosts_overrides_inventory => cfg.known_hosts.clone(),
        // The inventory parser already drops (and warns about) `/dev/null`; specs built
        // otherwise get the same treatment here.
        Some(f) if known_hosts::is_black_hole(f) => {
            tracing::warn!(
                "{host}: UserKnownHostsFile={} is ignored (it would switch host key checking off); checking against {}",
                f.display(),
                cfg.known_hosts.display()
            );
            cfg.known_hosts.clone()
        }
        Some(f) => f.clone(),
        None => cfg.known_hosts.clone(),
    };
    let policy = if cfg.insecure_skip_host_key_check {
        UnknownKey::Insecure
    } else if cfg.accept_new_host_keys {
        UnknownKey::Record
    } else {
        match spec.ssh.strict_host_key_checking {
            // The inventory cannot switch checking off: `no` records like `accept-new`.
            Some(StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No) => {
                UnknownKey::Record
            }
            Some(StrictHostKeyChecking::Yes) | None => UnknownKey::Refuse,
        }
    };
    (known_hosts, policy)
}

/// Why the connection ended, when it did: waits up to [`GONE_WAIT`] for the session to say so
/// (a channel is closed as its connection ends, maybe just before the reason is known).
async fn gone_cause(gone: &Gone) -> Option<String> {
    let deadline = tokio::time::Instant::now() + GONE_WAIT;
    loop {
        if let Some(why) = gone.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(why);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl SshConn {
    pub(super) async fn connect(
        spec: &ConnectionSpec,
        cfg: &TransportConfig,
        user: &str,
    ) -> Result<SshConn, TransportError> {
        let host = spec.host.as_str();
        let (known_hosts, policy) = host_key_policy(spec, cfg);
        let ctx = Ctx {
            host,
            spec,
            cfg,
            known_hosts,
            policy,
            timeout: spec.ssh.connect_timeout.unwrap_or(cfg.connect_timeout),
        };
        let target = Hop {
            user: user.to_string(),
            host: spec.address.clone(),
            port: spec.port,
            jump: false,
        };
        let local_user = super::local::current_user();
        let mut hops = match (&spec.ssh.proxy_jump, &spec.ssh.proxy_command) {
            (Some(j), _) => parse_jumps(j, &local_user).map_err(|cause| TransportError::Other {
                host: host.to_string(),
                cause,
            })?,
            _ => Vec::new(),
        };
        if spec.ssh.proxy_jump.is_some() && spec.ssh.proxy_command.is_some() {
            tracing::warn!("{host}: both ProxyJump and ProxyCommand are set; using ProxyJump");
        }
        hops.push(target);

        let mut jumps: Vec<Handle<Client>> = Vec::new();
        // the last hop's: the target's own connection
        let mut gone = Gone::default();
        for hop in &hops {
            let mut proxy_stderr = None;
            let stream: Box<dyn Stream> = match jumps.last() {
                None => match (&spec.ssh.proxy_command, hops.len()) {
                    (Some(cmd), 1) if !cmd.eq_ignore_ascii_case("none") => {
                        let (stream, stderr) = ctx.proxy_command(cmd, hop)?;
                        proxy_stderr = Some(stderr);
                        stream
                    }
                    _ => match tokio::time::timeout(ctx.timeout, ctx.tcp(hop)).await {
                        Err(_) => return Err(ctx.timeout_err(hop, "opening the TCP connection")),
                        Ok(r) => r?,
                    },
                },
                Some(prev) => {
                    let opened = tokio::time::timeout(
                        ctx.timeout,
                        prev.channel_open_direct_tcpip(
                            hop.host.clone(),
                            u32::from(hop.port),
                            "127.0.0.1",
                            0,
                        ),
                    )
                    .await;
                    match opened {
                        Err(_) => {
                            return Err(
                                ctx.timeout_err(hop, "opening the way through the jump host")
                            );
                        }
                        Ok(Err(e)) => {
                            return Err(ctx.connect_err(
                                hop,
                                format!("jump host cannot reach it: {}", ssh_cause(&e)),
                            ));
                        }
                        Ok(Ok(ch)) => Box::new(ch.into_stream()),
                    }
                }
            };
            gone = Gone::default();
            let handle = ctx
                .establish(stream, hop, proxy_stderr, gone.clone())
                .await?;
            jumps.push(handle);
        }
        let handle = jumps.pop().expect("at least the target hop");
        let open_timeout = OpenTimeout {
            timeout: ctx.timeout,
            addr: hops.last().expect("at least the target hop").addr(),
            limit: ctx.limit(),
        };
        tracing::debug!(
            "{host}: connected to {} as {user}{}",
            host_port(&spec.address, spec.port),
            if jumps.is_empty() {
                String::new()
            } else {
                format!(" through {} jump host(s)", jumps.len())
            }
        );
        Ok(SshConn {
            handle,
            jumps,
            slots: Arc::new(Semaphore::new(MAX_CHANNELS)),
            tunnels: Arc::new(Semaphore::new(super::tunnel::MAX_TUNNELS)),
            open_timeout,
            gone,
        })
    }

    /// Open a channel, run `line`, and spawn the task that feeds `writer`.
    pub(super) async fn exec(
        &self,
        host: &str,
        line: String,
        stdin: super::Stdin,
        timeout: Option<Duration>,
        mut writer: PipeWriter,
        mut keep: oneshot::Receiver<()>,
    ) -> Result<JoinHandle<Result<ExitInfo, TransportError>>, TransportError> {
        let lost = |cause: String| TransportError::Lost {
            host: host.to_string(),
            cause,
        };
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| lost("session closed".into()))?;
        if self.handle.is_closed() {
            return Err(lost("the connection is closed".into()));
        }
        let open = &self.open_timeout;
        let channel = tokio::time::timeout(open.timeout, self.handle.channel_open_session())
            .await
            .map_err(|_| TransportError::ConnectTimeout {
                host: host.to_string(),
                addr: open.addr.clone(),
                secs: open.timeout.as_secs_f64().ceil() as u64,
                during: "opening a channel for a command: the host stopped answering",
                limit: open.limit,
            })?
            .map_err(|e| match e {
                russh::Error::ChannelOpenFailure(reason) => TransportError::Other {
                    host: host.to_string(),
                    cause: format!("the server refused a new session channel ({reason:?})"),
                },
                other => lost(ssh_cause(&other)),
            })?;
        channel
            .exec(true, line.into_bytes())
            .await
            .map_err(|e| lost(ssh_cause(&e)))?;
        // The script on stdin, then EOF (`sh -s` runs it; its commands read /dev/null); or the
        // script, then the data streamed by its own task, then EOF.
        channel
            .data(&stdin.script[..])
            .await
            .map_err(|e| lost(ssh_cause(&e)))?;
        let (mut rx, tx) = channel.split();
        let tx = Arc::new(tx);
        let feed = match stdin.input {
            None => {
                tx.eof().await.map_err(|e| lost(ssh_cause(&e)))?;
                None
            }
            Some(mut input) => {
                let tx = tx.clone();
                Some(tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut w = tx.make_writer();
                    let sent = async {
                        let n = tokio::io::copy(&mut input, &mut w).await?;
                        w.shutdown().await?;
                        Ok::<u64, io::Error>(n)
                    }
                    .await;
                    // An error: no EOF (data that did not all arrive must not look complete); the
                    // command task sees the error and stops the command.
                    sent
                }))
            }
        };
        let host = host.to_string();
        let gone = self.gone.clone();
        Ok(tokio::spawn(async move {
            let _permit = permit;
            let mut feed = feed;
            let mut tail = Tail::default();
            let mut code: Option<u32> = None;
            let mut signal: Option<String> = None;
            let mut refused = false;
            enum End {
                Closed,
                Timeout,
                Abort,
                Feed(String),
            }
            let mut feed_ok = false;
            let end = {
                let work = async {
                    while let Some(msg) = rx.wait().await {
                        match msg {
                            ChannelMsg::Data { data } => writer.send(data).await,
                            ChannelMsg::ExtendedData { data, ext: 1 } => tail.push(&data),
                            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                            ChannelMsg::ExitSignal {
                                signal_name,
                                core_dumped,
                                error_message,
                                ..
                            } => {
                                let mut s = sig_name(&signal_name);
                                if core_dumped {
                                    s.push_str(" (core dumped)");
                                }
                                if !error_message.is_empty() {
                                    s.push_str(": ");
                                    s.push_str(&error_message);
                                }
                                signal = Some(s);
                            }
                            ChannelMsg::Failure => {
                                refused = true;
                                break;
                            }
                            ChannelMsg::Close => break,
                            _ => {}
                        }
                    }
                    End::Closed
                };
                let deadline = async {
                    match timeout {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                };
                let feed_failed = async {
                    let cause = match feed.as_mut() {
                        Some(f) => match f.await {
                            Ok(Ok(_)) => {
                                feed_ok = true;
                                return std::future::pending().await;
                            }
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => e.to_string(),
                        },
                        None => return std::future::pending().await,
                    };
                    End::Feed(cause)
                };
                tokio::select! {
                    end = work => end,
                    _ = deadline => End::Timeout,
                    _ = &mut keep => End::Abort,
                    end = feed_failed => end,
                }
            };
            if feed_ok {
                feed = None;
            }
            if let End::Feed(cause) = &end {
                let _ = tx.signal(Sig::TERM).await;
                let _ = tx.close().await;
                let cause = format!("sending data to the command: {cause}");
                writer.fail(io::ErrorKind::BrokenPipe, format!("{host}: {cause}"));
                return Err(TransportError::Other { host, cause });
            }
            // Data that could not be read or sent: the command got an early EOF, whatever it
            // reported; its result is not trusted.
            let feed_error =
                super::feed_result(feed.take(), matches!(end, End::Closed) && code == Some(0))
                    .await;
            if let Some(cause) = feed_error {
                let cause = format!("sending data to the command: {cause}");
                writer.fail(io::ErrorKind::BrokenPipe, format!("{host}: {cause}"));
                return Err(TransportError::Other { host, cause });
            }
            match end {
                End::Closed if refused => {
                    let _ = tx.close().await;
                    writer.fail(
                        io::ErrorKind::Other,
                        format!("{host}: the server refused to run the command"),
                    );
                    Err(TransportError::Other {
                        host,
                        cause: "the server refused to run the command".into(),
                    })
                }
                End::Closed if code.is_some() || signal.is_some() => {
                    writer.finish();
                    Ok(ExitInfo {
                        code,
                        signal,
                        stderr_tail: tail.text(),
                    })
                }
                End::Closed => {
                    let cause = match gone_cause(&gone).await {
                        Some(why) => format!("{why} while the command ran"),
                        None => "the server closed the command's channel before it reported an \
                                 exit status"
                            .to_string(),
                    };
                    writer.fail(
                        io::ErrorKind::ConnectionAborted,
                        format!("{host}: connection lost: {cause}"),
                    );
                    Err(TransportError::Lost { host, cause })
                }
                End::Feed(_) => unreachable!("handled above"),
                End::Timeout | End::Abort => {
                    let _ = tx.signal(Sig::TERM).await;
                    let _ = tx.close().await;
                    if matches!(end, End::Timeout) {
                        let secs = timeout
                            .map(|d| d.as_secs_f64().ceil() as u64)
                            .unwrap_or_default();
                        writer.fail(
                            io::ErrorKind::TimedOut,
                            format!("{host}: command timed out after {secs}s"),
                        );
                        Err(TransportError::CommandTimeout { host, secs })
                    } else {
                        writer.fail(
                            io::ErrorKind::Interrupted,
                            format!("{host}: command stopped"),
                        );
                        Err(TransportError::Other {
                            host,
                            cause: "command stopped".into(),
                        })
                    }
                }
            }
        }))
    }

    pub(super) async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        // The connection's task ends, and its socket closes, once the disconnect is sent: waited
        // for (a little, for a host that no longer answers), so that a closed session holds no
        // socket when this returns.
        let _ = tokio::time::timeout(CLOSE_WAIT, self.handle).await;
        for j in self.jumps.iter().rev() {
            let _ = j.disconnect(Disconnect::ByApplication, "", "en").await;
        }
    }
}

impl SshConn {
    /// Open a `direct-tcpip` channel to `host:port` as the server sees it.
    pub(super) async fn direct_tcpip(
        &self,
        inventory_host: &str,
        host: &str,
        port: u16,
        target: String,
    ) -> Result<super::TcpTunnel, TransportError> {
        let lost = |cause: String| TransportError::Lost {
            host: inventory_host.to_string(),
            cause,
        };
        let permit = self
            .tunnels
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| lost("session closed".into()))?;
        if self.handle.is_closed() {
            return Err(lost("the connection is closed".into()));
        }
        let channel = self
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| match e {
                russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed) => {
                    TransportError::NothingListening {
                        host: inventory_host.to_string(),
                        target: target.clone(),
                        cause: "the SSH server could not connect".into(),
                    }
                }
                russh::Error::ChannelOpenFailure(
                    russh::ChannelOpenFailure::AdministrativelyProhibited,
                ) => TransportError::ForwardingRefused {
                    host: inventory_host.to_string(),
                    target: target.clone(),
                    cause: "administratively prohibited".into(),
                },
                russh::Error::ChannelOpenFailure(reason) => TransportError::ForwardingRefused {
                    host: inventory_host.to_string(),
                    target: target.clone(),
                    cause: format!("{reason:?}"),
                },
                other => lost(ssh_cause(&other)),
            })?;
        Ok(super::TcpTunnel::ssh(
            channel.into_stream(),
            inventory_host,
            target,
            permit,
        ))
    }
}

/// The RSA signature hash to use with an RSA key: the best the server supports, asked once per
/// connection (`cache`); None for other key types.
async fn rsa_hash_for(
    handle: &Handle<Client>,
    is_rsa: bool,
    cache: &mut Option<Option<HashAlg>>,
) -> Option<HashAlg> {
    if !is_rsa {
        return None;
    }
    if cache.is_none() {
        *cache = Some(
            handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten(),
        );
    }
    cache.flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps() {
        let h = parse_jumps("bastion", "me").unwrap();
        assert_eq!(
            h,
            vec![Hop {
                user: "me".into(),
                host: "bastion".into(),
                port: 22,
                jump: true
            }]
        );
        let h = parse_jumps("ops@10.0.0.1:2222,ssh://x@[fe80::1]:23", "me").unwrap();
        assert_eq!(
            h[0],
            Hop {
                user: "ops".into(),
                host: "10.0.0.1".into(),
                port: 2222,
                jump: true
            }
        );
        assert_eq!(
            h[1],
            Hop {
                user: "x".into(),
                host: "fe80::1".into(),
                port: 23,
                jump: true
            }
        );
        assert!(parse_jumps("none", "me").unwrap().is_empty());
        assert!(parse_jumps("h:notaport", "me").is_err());
    }

    #[test]
    fn proxy_command_substitution() {
        assert_eq!(
            proxy_command_line(
                "nc -x %% %h %p # %r %n %q",
                "10.0.0.2",
                2222,
                "ops",
                "node1"
            ),
            Ok("nc -x % 10.0.0.2 2222 # ops node1 %q".to_string())
        );
    }

    /// What `sh -c LINE` passes to the command as arguments (`printf '<%s>'` in place of it).
    fn argv_of(line: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn proxy_command_values_stay_data() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("MARK");
        let evil = format!("x;touch {} #'\"$(id)`id`\\", mark.display());
        let sub = |t: &str| proxy_command_line(t, &evil, 22, "u", "n").unwrap();
        // Unquoted, next to other text: one argument, the exact bytes.
        let line = sub("printf '<%s>' %h:%p");
        assert_eq!(argv_of(&line), format!("<{evil}:22>"));
        // Inside single quotes that an inner sh runs.
        let line = sub("sh -c 'printf \"<%s>\" %h %p'");
        assert_eq!(argv_of(&line), format!("<{evil}><22>"));
        // Inside double quotes that an inner sh runs.
        let line = sub("sh -c \"printf '<%s>' %h %p\"");
        assert_eq!(argv_of(&line), format!("<{evil}><22>"));
        assert!(!mark.exists());
        // Safe values are pasted in unchanged, as OpenSSH does.
        assert_eq!(
            proxy_command_line("ssh -W %h:%p jump", "10.0.0.2", 22, "u", "n").unwrap(),
            "ssh -W 10.0.0.2:22 jump"
        );
        assert_eq!(
            proxy_command_line("sh -c 'nc %h %p'", "node-1.example.com", 22, "u", "n").unwrap(),
            "sh -c 'nc node-1.example.com 22'"
        );
        // Where quoting cannot be relied upon, an unsafe value is refused.
        for t in [
            "echo \\%h",
            "echo $(echo %h)",
            "echo `echo %h`",
            "echo ${x:-%h}",
        ] {
            let e = proxy_command_line(t, &evil, 22, "u", "n").unwrap_err();
            assert!(e.contains("cannot be quoted safely"), "{t}: {e}");
            assert!(proxy_command_line(t, "10.0.0.2", 22, "u", "n").is_ok());
        }
    }

    #[test]
    fn host_key_order_puts_recorded_first() {
        let order = host_key_preference(&[Algorithm::Rsa { hash: None }]);
        assert!(
            order[..3]
                .iter()
                .all(|a| matches!(a, Algorithm::Rsa { .. }))
        );
        assert_eq!(order.len(), Preferred::DEFAULT.key.len());
        assert_eq!(host_key_preference(&[])[0], Algorithm::Ed25519);
    }

    #[test]
    fn causes() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_cause(&e), "connection refused");
        assert_eq!(
            io_cause(&io::Error::from_raw_os_error(libc::EACCES)),
            "permission denied"
        );
    }
}
