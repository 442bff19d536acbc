//! What a peering link runs over: a TCP stream, or a stream wrapped around one (TLS, made by
//! the daemon: the fabric knows no certificate). A plain TCP stream keeps its owned halves; any
//! other stream is split through a lock.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// A byte stream a link can run over.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// A peering connection, before it is split.
pub enum PeerStream {
    Tcp(TcpStream),
    /// A stream the fabric knows nothing more about than its bytes.
    Wrapped(Box<dyn PeerIo>),
    /// Mutual TLS whose other end showed a daemon's certificate of the cluster's root, checked
    /// by the daemon that made the stream: that authenticates the peer, and the mesh key's
    /// proof is not required of it (see `peer`'s handshake).
    Certified(Box<dyn PeerIo>),
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerStream::Tcp(_) => "PeerStream::Tcp",
            PeerStream::Wrapped(_) => "PeerStream::Wrapped",
            PeerStream::Certified(_) => "PeerStream::Certified",
        })
    }
}

impl PeerStream {
    /// Whether the other end is authenticated by its certificate.
    pub fn is_certified(&self) -> bool {
        matches!(self, PeerStream::Certified(_))
    }

    pub(crate) fn split(self) -> (Rd, Wr) {
        match self {
            PeerStream::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Either::Left(r), Either::Left(w))
            }
            PeerStream::Wrapped(s) | PeerStream::Certified(s) => {
                let (r, w) = tokio::io::split(s);
                (Either::Right(r), Either::Right(w))
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

/// A link's halves: owned TCP halves, or the halves of a wrapped stream.
pub(crate) type Rd = Either<OwnedReadHalf, ReadHalf<Box<dyn PeerIo>>>;
pub(crate) type Wr = Either<OwnedWriteHalf, WriteHalf<Box<dyn PeerIo>>>;
