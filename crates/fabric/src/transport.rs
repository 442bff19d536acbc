//! What a peering link runs over: a TCP stream, or a stream wrapped around one (TLS, made by
//! the daemon: the fabric knows no certificate). A plain TCP stream keeps its owned halves; any
//! other stream is split through a lock.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A byte stream a link can run over.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// A peering connection, before it is split.
pub enum PeerStream {
    Tcp(TcpStream),
    Wrapped(Box<dyn PeerIo>),
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerStream::Tcp(_) => "PeerStream::Tcp",
            PeerStream::Wrapped(_) => "PeerStream::Wrapped",
        })
    }
}

impl PeerStream {
    pub(crate) fn split(self) -> (Rd, Wr) {
        match self {
            PeerStream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Rd::Tcp(r), Wr::Tcp(w))
            }
            PeerStream::Wrapped(s) => {
                let (r, w) = tokio::io::split(s);
                (Rd::Wrapped(r), Wr::Wrapped(w))
            }
        }
    }
}

/// Wraps each connection this endpoint dials (TLS toward `addr`), before the peering handshake.
pub trait Dialer: Send + Sync + 'static {
    fn wrap<'a>(
        &'a self,
        tcp: TcpStream,
        addr: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<PeerStream>> + Send + 'a>>;
}

/// The dialer of an endpoint's config (`None`: plain TCP).
pub type SharedDialer = Option<Arc<dyn Dialer>>;

pub(crate) enum Rd {
    Tcp(OwnedReadHalf),
    Wrapped(ReadHalf<Box<dyn PeerIo>>),
}

pub(crate) enum Wr {
    Tcp(OwnedWriteHalf),
    Wrapped(WriteHalf<Box<dyn PeerIo>>),
}

impl AsyncRead for Rd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Rd::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Rd::Wrapped(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wr {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wr::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            Wr::Wrapped(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wr::Tcp(w) => Pin::new(w).poll_flush(cx),
            Wr::Wrapped(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wr::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Wr::Wrapped(w) => Pin::new(w).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wr::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Wr::Wrapped(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Wr::Tcp(w) => w.is_write_vectored(),
            Wr::Wrapped(w) => w.is_write_vectored(),
        }
    }
}
