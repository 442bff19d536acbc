//! TLS on the gateway's one port, and on the links its endpoint dials. The first byte of a
//! connection tells a TLS ClientHello (22) from plain HTTP and plain peering; inside TLS, ALPN
//! tells peering (`yard-peer/1`) from HTTP. A listener with TLS refuses plain connections unless
//! it is on loopback and asked to serve them (`plain`), for clients that cannot speak TLS.
//! A peering link over TLS is certified: both ends showed a daemon's certificate of the root,
//! which authenticates them without the mesh key ([`PeerStream::Certified`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;
use yard_fabric::transport::{Dialer, PeerStream};
use yard_tls::rustls::ClientConfig;
use yard_tls::tokio_rustls::{TlsAcceptor, TlsConnector};

pub use yard_tls::listen::{Conn, ServerTls as GatewayTls};

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
        let cert = t.get_ref().1.peer_certificates().and_then(|c| c.first());
        daemon_certificate(cert)?;
        match (&tls.live, cert) {
            (Some(live), Some(_)) => {
                let chain = chain_of(t.get_ref().1.peer_certificates());
                Accepted::Peer(PeerStream::Certified(Box::new(live.watch(chain, t))))
            }
            _ => Accepted::Peer(PeerStream::Certified(Box::new(t))),
        }
    } else {
        Accepted::Http(Conn::Tls(Box::new(t)))
    })
}

pub(crate) use yard_tls::listen::refuse_plain;

/// The chain a peer presented, kept to check it again while the link lasts.
fn chain_of(
    certs: Option<&[yard_tls::rustls::pki_types::CertificateDer<'_>]>,
) -> Vec<yard_tls::rustls::pki_types::CertificateDer<'static>> {
    certs
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect()
}

/// A peer's certificate (checked against the root by the handshake) must name a daemon: the
/// center, a manager, an agent or a node. An operator's certificate is a person's, not a
/// peer's.
fn daemon_certificate(
    cert: Option<&yard_tls::rustls::pki_types::CertificateDer<'_>>,
) -> io::Result<()> {
    match cert.and_then(|c| yard_tls::der::subject(c)) {
        Some(yard_tls::Subject::Operator { .. }) | None => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a peering connection needs a daemon's certificate (center, manager, agent or node)",
        )),
        Some(_) => Ok(()),
    }
}

/// Dials peers over TLS: their certificate checked against the cluster's root, this endpoint's
/// own certificate presented.
pub struct TlsDialer {
    connector: TlsConnector,
    live: Option<Arc<yard_tls::live::Live>>,
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
            live: None,
        }
    }

    /// A dialer of `live`'s configuration, whose links are watched (cut once the peer's
    /// certificate is revoked or expires).
    pub fn live(live: Arc<yard_tls::live::Live>) -> Result<TlsDialer, yard_tls::TlsError> {
        Ok(TlsDialer {
            connector: TlsConnector::from(live.client(yard_tls::ALPN_PEER)?),
            live: Some(live),
        })
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
            let cert = t.get_ref().1.peer_certificates().and_then(|c| c.first());
            daemon_certificate(cert)?;
            Ok(match (&self.live, cert) {
                (Some(live), Some(_)) => {
                    let chain = chain_of(t.get_ref().1.peer_certificates());
                    PeerStream::Certified(Box::new(live.watch(chain, t)))
                }
                _ => PeerStream::Certified(Box::new(t)),
            })
        })
    }
}
