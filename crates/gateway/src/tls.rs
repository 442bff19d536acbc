//! TLS on the gateway's one port, and on the links its endpoint dials. The first byte of a
//! connection tells a TLS ClientHello (22) from plain HTTP and plain peering; inside TLS, ALPN
//! tells peering (`yard-peer/1`) from HTTP. A listener with TLS refuses plain connections unless
//! it is on loopback and asked to serve them (`plain`), for clients that cannot speak TLS.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use yard_fabric::transport::{Dialer, PeerStream};
use yard_tls::rustls::{ClientConfig, ServerConfig};
use yard_tls::tokio_rustls::{server::TlsStream, TlsAcceptor, TlsConnector};

/// A listener's TLS.
#[derive(Clone)]
pub struct GatewayTls {
    pub server: Arc<ServerConfig>,
    /// Serve plain connections too (allowed on a loopback listener only).
    pub plain: bool,
}

impl std::fmt::Debug for GatewayTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTls")
            .field("plain", &self.plain)
            .finish_non_exhaustive()
    }
}

/// An HTTP connection of the gateway: plain, or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Plain(_) => "Conn::Plain",
            Conn::Tls(_) => "Conn::Tls",
        })
    }
}

impl yard_auth::http::LocalAddr for Conn {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Conn::Plain(s) => s.local_addr(),
            Conn::Tls(t) => t.get_ref().0.local_addr(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where an accepted connection goes.
#[derive(Debug)]
pub(crate) enum Accepted {
    Http(Conn),
    Peer(PeerStream),
}

/// The TLS handshake of an accepted connection, then its protocol by ALPN.
pub(crate) async fn accept(tls: &GatewayTls, stream: TcpStream) -> io::Result<Accepted> {
    let t = TlsAcceptor::from(tls.server.clone()).accept(stream).await?;
    let peering = t.get_ref().1.alpn_protocol() == Some(yard_tls::ALPN_PEER);
    // A peer proves itself with a certificate of the cluster's root (checked by the handshake);
    // one that offers none is not a peer. (HTTP callers may still come without one: their
    // credential decides.)
    if peering
        && t.get_ref()
            .1
            .peer_certificates()
            .is_none_or(|c| c.is_empty())
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a peering connection without a certificate",
        ));
    }
    Ok(if peering {
        Accepted::Peer(PeerStream::Wrapped(Box::new(t)))
    } else {
        Accepted::Http(Conn::Tls(Box::new(t)))
    })
}

/// What a listener that speaks TLS only says to a plain connection before closing it: an HTTP
/// client gets a 400 that says so; a plain peer gets nothing (its dial fails and says why).
pub(crate) async fn refuse_plain(mut stream: TcpStream, http: bool, remote: SocketAddr) {
    tracing::debug!(%remote, "a plain connection to a TLS-only listener, refused");
    if http {
        let body = "this listener speaks TLS only: use https:// (or wss://)\n";
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// Dials peers over TLS: their certificate checked against the cluster's root, this endpoint's
/// own certificate presented.
pub struct TlsDialer {
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDialer").finish_non_exhaustive()
    }
}

impl TlsDialer {
    /// A dialer of `config` (made by [`yard_tls::config::client`] with [`yard_tls::ALPN_PEER`]).
    pub fn new(config: Arc<ClientConfig>) -> TlsDialer {
        TlsDialer {
            connector: TlsConnector::from(config),
        }
    }
}

impl Dialer for TlsDialer {
    fn wrap<'a>(
        &'a self,
        tcp: TcpStream,
        addr: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<PeerStream>> + Send + 'a>> {
        Box::pin(async move {
            let name = yard_tls::config::server_name(addr)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let t = self.connector.connect(name, tcp).await?;
            Ok(PeerStream::Wrapped(Box::new(t)))
        })
    }
}
