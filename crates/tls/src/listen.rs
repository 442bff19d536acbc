//! HTTP listeners that speak TLS: the first byte of a connection tells a ClientHello (22) from
//! plain HTTP. A listener with TLS refuses plain connections unless it is on loopback and asked
//! to serve them ([`ServerTls::plain`]), for clients that cannot speak TLS.
//!
//! [`HttpListener`] is what a daemon's HTTP-only API (the Mesos master's and agents') is served
//! on; the gateway, which also carries peering on its port, demultiplexes itself with the same
//! [`Conn`] and [`refuse_plain`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A listener's TLS.
#[derive(Clone)]
pub struct ServerTls {
    pub server: Arc<ServerConfig>,
    /// Serve plain connections too (allowed on a loopback listener only).
    pub plain: bool,
    /// The daemon's live TLS, when `server` was made by it: peering links accepted are watched
    /// (cut once their peer's certificate is revoked or expires).
    pub live: Option<Arc<crate::live::Live>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("plain", &self.plain)
            .finish_non_exhaustive()
    }
}

/// A served connection: plain, or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The certificates the caller presented (checked against the cluster's root by the
    /// handshake), none over plain text.
    pub fn peer_certificates(&self) -> Option<&[rustls_pki_types::CertificateDer<'static>]> {
        match self {
            Conn::Plain(_) => None,
            Conn::Tls(t) => t.get_ref().1.peer_certificates(),
        }
    }
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

    fn peer_cert(&self) -> Option<yard_auth::http::PeerCert> {
        let der = self.peer_certificates()?.first()?;
        Some(yard_auth::http::PeerCert {
            principal: crate::der::subject(der).map(|s| s.to_string()),
            serial: crate::der::serial_hex(der)?,
            der: der.to_vec(),
        })
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

/// What a listener that speaks TLS only says to a plain connection before closing it: an HTTP
/// client gets a 400 that says so; anything else gets nothing.
pub async fn refuse_plain(mut stream: TcpStream, http: bool, remote: SocketAddr) {
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

/// Connections handed over but not yet taken by the server: past this, the acceptor waits
/// (the kernel's backlog holds the rest).
const READY_QUEUE: usize = 256;

/// What a listener counts (and a daemon shows in its metrics).
#[derive(Debug, Default)]
pub struct ListenerCounters {
    pub handshake_failures: AtomicU64,
    pub plain_refused: AtomicU64,
}

/// An HTTP listener with TLS, or plain without: handshakes run side by side (a slow caller
/// holds up no other), each bounded by the handshake timeout.
pub struct HttpListener {
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
    pub counters: Arc<ListenerCounters>,
}

impl std::fmt::Debug for HttpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl HttpListener {
    /// Serves `listener` with `tls` (plain HTTP without). The acceptor stops when this is
    /// dropped.
    pub fn new(
        listener: TcpListener,
        tls: Option<ServerTls>,
        handshake_timeout: Duration,
    ) -> io::Result<HttpListener> {
        let local = listener.local_addr()?;
        if tls.as_ref().is_some_and(|t| t.plain) && !local.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("plain text beside TLS is for loopback only, and {local} is not loopback"),
            ));
        }
        let (tx, rx) = mpsc::channel(READY_QUEUE);
        let counters = Arc::new(ListenerCounters::default());
        tokio::spawn(accept_loop(
            listener,
            tls,
            handshake_timeout,
            tx,
            counters.clone(),
        ));
        Ok(HttpListener {
            rx,
            local,
            counters,
        })
    }
}

/// The next connection of `listener`. An accept that fails (out of file descriptors and the
/// like) is retried after a short wait rather than spun on.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<ServerTls>,
    timeout: Duration,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
    counters: Arc<ListenerCounters>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = tx.closed() => return,
            c = accept(&listener) => c,
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls.clone() else {
            if tx.send((Conn::Plain(stream), remote)).await.is_err() {
                return;
            }
            continue;
        };
        let (tx, counters) = (tx.clone(), counters.clone());
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            let b = match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
                Ok(Ok(1)) => first[0],
                _ => return,
            };
            if !crate::config::is_tls(b) {
                if tls.plain {
                    let _ = tx.send((Conn::Plain(stream), remote)).await;
                } else {
                    counters.plain_refused.fetch_add(1, Ordering::Relaxed);
                    refuse_plain(stream, b.is_ascii_uppercase(), remote).await;
                }
                return;
            }
            let acceptor = TlsAcceptor::from(tls.server.clone());
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(t)) => {
                    let _ = tx.send((Conn::Tls(Box::new(t)), remote)).await;
                }
                Ok(Err(e)) => {
                    counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                }
                Err(_) => {
                    counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "TLS handshake timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor stopped: nothing more comes; graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl yard_auth::http::RemoteListener for HttpListener {}
