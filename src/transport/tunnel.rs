//! TCP connections to an address as a host sees it: a `direct-tcpip` channel of the host's SSH
//! connection (what `ssh -L` does), or a plain TCP connection for `ansible_connection=local`.
//!
//! Used by [`crate::http`] to speak a host's local HTTP APIs (Prometheus on `127.0.0.1:9090`,
//! Elasticsearch on `127.0.0.1:9200`, ...) from lsbackup itself, so that no credential ever
//! reaches the host.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::{Backend, Session, TransportError};

/// Open tunnels (`direct-tcpip` channels) per SSH session.
///
/// Tunnels do not take one of the [`super::MAX_CHANNELS`] command slots: OpenSSH's
/// `MaxSessions` counts session channels only, and sharing the slots would let long-running
/// commands hold up every API call (or deadlock a component that calls an API while it reads a
/// command's output). They get their own bound so that a runaway caller cannot open hundreds
/// of sockets on a production host; a further [`Session::connect_tcp`] waits for one to close.
pub const MAX_TUNNELS: usize = 16;

/// A TCP connection to `host:port` as seen from a session's host (see
/// [`Session::connect_tcp`]). Reading and writing go to the service; dropping it closes the
/// connection (and the SSH channel).
///
/// Over SSH, russh has one receive loop per connection: data the service sends that nobody
/// reads eventually stalls every other channel of the session. Read what you asked for to the
/// end, or drop the tunnel.
pub struct TcpTunnel {
    io: TunnelIo,
    host: String,
    target: String,
    _permit: Option<OwnedSemaphorePermit>,
}

enum TunnelIo {
    Ssh(Box<ChannelStream<Msg>>),
    Tcp(TcpStream),
}

impl TcpTunnel {
    pub(super) fn ssh(
        stream: ChannelStream<Msg>,
        host: &str,
        target: String,
        permit: OwnedSemaphorePermit,
    ) -> TcpTunnel {
        TcpTunnel {
            io: TunnelIo::Ssh(Box::new(stream)),
            host: host.to_string(),
            target,
            _permit: Some(permit),
        }
    }

    /// Inventory name of the host the tunnel runs through.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port` as the host sees it.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl fmt::Debug for TcpTunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.io {
            TunnelIo::Ssh(_) => "ssh direct-tcpip",
            TunnelIo::Tcp(_) => "local tcp",
        };
        f.debug_struct("TcpTunnel")
            .field("host", &self.host)
            .field("target", &self.target)
            .field("kind", &kind)
            .finish()
    }
}

impl AsyncRead for TcpTunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            TunnelIo::Ssh(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            TunnelIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TcpTunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            TunnelIo::Ssh(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            TunnelIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            TunnelIo::Ssh(s) => Pin::new(s.as_mut()).poll_flush(cx),
            TunnelIo::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            TunnelIo::Ssh(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            TunnelIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(super) fn target_of(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Session {
    /// Connect to `host:port` as this session's host sees it: over SSH a `direct-tcpip` channel
    /// (like `ssh -L`; needs `AllowTcpForwarding` on the server, OpenSSH's default), for a local
    /// host a plain TCP connection. `host` is resolved by the host (`localhost` is the host's
    /// own loopback).
    ///
    /// Errors: [`TransportError::NothingListening`] when nothing accepts the connection there,
    /// [`TransportError::ForwardingRefused`] when the SSH server will not forward at all,
    /// [`TransportError::Lost`] when the SSH connection is gone. No timeout is applied here;
    /// callers bound the whole exchange (as [`crate::http::HttpClient`] does).
    pub async fn connect_tcp(&self, host: &str, port: u16) -> Result<TcpTunnel, TransportError> {
        let inner = &self.inner;
        let target = target_of(host, port);
        match &inner.backend {
            Backend::Ssh(conn) => conn.direct_tcpip(&inner.host, host, port, target).await,
            Backend::Local => match TcpStream::connect((host, port)).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    Ok(TcpTunnel {
                        io: TunnelIo::Tcp(s),
                        host: inner.host.clone(),
                        target,
                        _permit: None,
                    })
                }
                Err(e) => Err(TransportError::NothingListening {
                    host: inner.host.clone(),
                    target,
                    cause: super::ssh::io_cause(&e),
                }),
            },
        }
    }
}
