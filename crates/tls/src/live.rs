//! A daemon's TLS while it runs: its certificate can be swapped for a renewed one, and the
//! authority's revocation list for a newer one, without a restart. The listener's and the
//! dialer's rustls configurations are built once, over this shared state ([`Live::server`],
//! [`Live::client`]): every new handshake presents the current certificate and checks the
//! other side against the current list. Links already up are watched too ([`Live::watch`]):
//! one whose peer's certificate was revoked, or has expired, is cut within a sweep
//! ([`Live::sweep`], which the daemon's keeper runs every second).
//!
//! A revocation list is adopted only when it is the authority's (its signature checked by
//! verifying this daemon's own certificate with it) and newer than the one held (its CRL
//! number); so a list from anywhere, the fabric included, can be offered safely.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::{certs_from_pem, key_from_pem, provider, roots, TlsError};
use crate::{Identity, ALPN_HTTP, ALPN_PEER};

/// What the daemon holds now.
struct Current {
    key: Arc<CertifiedKey>,
    /// `(not_before, not_after)` of the certificate, Unix seconds.
    validity: (u64, u64),
    serial: String,
    /// The revocation list held, with its CRL number.
    crl: Option<(u64, CertificateRevocationListDer<'static>)>,
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<dyn ServerCertVerifier>,
}

/// A link being watched: the certificate its other end presented, and its flag.
struct Watched {
    cert: CertificateDer<'static>,
    cut: Weak<Cut>,
}

/// Set when a watched link must end; wakes its reader.
#[derive(Default)]
struct Cut {
    set: AtomicBool,
    waker: AtomicWaker,
}

/// See the module's documentation.
pub struct Live {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    ca_pem: String,
    hints: Vec<DistinguishedName>,
    now: Arc<dyn Fn() -> UnixTime + Send + Sync>,
    current: RwLock<Current>,
    links: Mutex<Vec<Watched>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.current.read().expect("not poisoned");
        f.debug_struct("Live")
            .field("serial", &c.serial)
            .field("validity", &c.validity)
            .field("crl", &c.crl.as_ref().map(|c| c.0))
            .finish_non_exhaustive()
    }
}

/// What [`Live::offer_crl`] did with a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlOutcome {
    /// Adopted: newer than the one held.
    Adopted(u64),
    /// Not newer than the one held: nothing changed.
    Stale(u64),
}

/// Whether a certificate valid over `validity` (Unix seconds) is due for renewal at `now`:
/// two thirds of its life since its issue are gone (a day's certificate is renewed after 16
/// hours, leaving 8 for a renewal that fails to be tried again). Its validity starts
/// [`BACKDATE`](crate::ca::BACKDATE) before its issue.
pub fn renewal_due(validity: (u64, u64), now: u64) -> bool {
    let (start, end) = validity;
    let issued = (start + crate::ca::BACKDATE.as_secs()).min(end);
    now >= issued + (end - issued) / 3 * 2
}

/// The verifiers of client and of server certificates, as one list makes them.
type Verifiers = (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>);

fn verifiers(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    crl: Option<&CertificateRevocationListDer<'static>>,
) -> Result<Verifiers, TlsError> {
    let crls: Vec<_> = crl.into_iter().cloned().collect();
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls.clone())
        .only_check_end_entity_revocation()
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .with_crls(crls)
    .only_check_end_entity_revocation()
    .build()
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    Ok((clients, servers))
}

fn certified(provider: &CryptoProvider, id: &Identity) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs_from_pem(&id.cert_pem)?;
    let key = CertifiedKey::from_der(chain, key_from_pem(&id.key_pem)?, provider)?;
    Ok(Arc::new(key))
}

fn bad(what: &str) -> TlsError {
    TlsError::Pem("certificate".into(), what.into())
}

impl Live {
    /// A daemon's TLS from its identity and the cluster's root, with the system clock.
    pub fn new(id: &Identity, ca_pem: &str) -> Result<Arc<Live>, TlsError> {
        Live::with_clock(id, ca_pem, Arc::new(UnixTime::now))
    }

    /// The same with a clock of the caller's (tests).
    pub fn with_clock(
        id: &Identity,
        ca_pem: &str,
        now: Arc<dyn Fn() -> UnixTime + Send + Sync>,
    ) -> Result<Arc<Live>, TlsError> {
        let provider = provider();
        let roots = Arc::new(roots(ca_pem)?);
        let (clients, servers) = verifiers(&provider, &roots, None)?;
        let key = certified(&provider, id)?;
        let (validity, serial) = Self::describe(&key)?;
        Ok(Arc::new(Live {
            hints: roots.subjects(),
            provider,
            roots,
            ca_pem: ca_pem.to_string(),
            now,
            current: RwLock::new(Current {
                key,
                validity,
                serial,
                crl: None,
                clients,
                servers,
            }),
            links: Mutex::new(Vec::new()),
        }))
    }

    fn describe(key: &CertifiedKey) -> Result<((u64, u64), String), TlsError> {
        let der = key.end_entity_cert().map_err(TlsError::Rustls)?;
        let validity = crate::der::validity(der).ok_or_else(|| bad("no validity"))?;
        let serial = crate::der::serial_hex(der).ok_or_else(|| bad("no serial"))?;
        Ok((validity, serial))
    }

    /// The cluster's root, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The current certificate's `(not_before, not_after)`, Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        self.current.read().expect("not poisoned").validity
    }

    /// The current certificate's serial (hex).
    pub fn serial(&self) -> String {
        self.current.read().expect("not poisoned").serial.clone()
    }

    /// The CRL number of the revocation list held.
    pub fn crl_number(&self) -> Option<u64> {
        self.current
            .read()
            .expect("not poisoned")
            .crl
            .as_ref()
            .map(|c| c.0)
    }

    /// The revocation list held, DER.
    pub fn crl(&self) -> Option<CertificateRevocationListDer<'static>> {
        self.current
            .read()
            .expect("not poisoned")
            .crl
            .as_ref()
            .map(|c| c.1.clone())
    }

    /// Swaps in a renewed certificate: it must be of the same root and not revoked by the list
    /// held. New handshakes present it; links already up keep theirs.
    pub fn renew(&self, id: &Identity) -> Result<(), TlsError> {
        let key = certified(&self.provider, id)?;
        let (validity, serial) = Self::describe(&key)?;
        let der = key.end_entity_cert().map_err(TlsError::Rustls)?.clone();
        {
            let c = self.current.read().expect("not poisoned");
            c.clients
                .verify_client_cert(&der, &[], (self.now)())
                .map_err(TlsError::Rustls)?;
        }
        let mut c = self.current.write().expect("not poisoned");
        c.key = key;
        c.validity = validity;
        c.serial = serial;
        Ok(())
    }

    /// Offers a revocation list (DER); adopted when signed by the root and newer (by its CRL
    /// number) than the one held (see the module's documentation).
    pub fn offer_crl(&self, der: Vec<u8>) -> Result<CrlOutcome, TlsError> {
        let crl = CertificateRevocationListDer::from(der);
        let (clients, servers) = verifiers(&self.provider, &self.roots, Some(&crl))?;
        // The list is checked by using it: this daemon's own certificate, verified with it,
        // is either good or revoked; any other answer (a bad signature, another issuer, garbage)
        // refuses the list.
        let own = self
            .current
            .read()
            .expect("not poisoned")
            .key
            .end_entity_cert()
            .map_err(TlsError::Rustls)?
            .clone()
            .into_owned();
        match clients.verify_client_cert(&own, &[], (self.now)()) {
            Ok(_) | Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => {}
            Err(e) => {
                return Err(TlsError::Verifier(format!(
                    "a revocation list refused: {e}"
                )))
            }
        }
        let number = crate::der::crl_number(crl.as_ref())
            .ok_or_else(|| TlsError::Verifier("a revocation list without a CRL number".into()))?;
        if let Some(held) = self.crl_number() {
            if number <= held {
                return Ok(CrlOutcome::Stale(held));
            }
        }
        {
            let mut c = self.current.write().expect("not poisoned");
            c.clients = clients;
            c.servers = servers;
            c.crl = Some((number, crl));
        }
        self.sweep();
        Ok(CrlOutcome::Adopted(number))
    }

    /// Whether a certificate the handshake accepted is still good now: of the root, in its
    /// validity, not revoked.
    pub fn still_good(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let clients = self.current.read().expect("not poisoned").clients.clone();
        clients
            .verify_client_cert(cert, &[], (self.now)())
            .map(|_| ())
    }

    /// Cuts every watched link whose other end's certificate is no longer good; forgets the
    /// links that ended. Returns how many were cut.
    pub fn sweep(&self) -> usize {
        let mut links = self.links.lock().expect("not poisoned");
        links.retain(|l| l.cut.strong_count() > 0);
        let mut n = 0;
        for l in links.iter() {
            if let (Err(e), Some(cut)) = (self.still_good(&l.cert), l.cut.upgrade()) {
                if !cut.set.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        subject = ?crate::der::subject(&l.cert),
                        "a link is cut: its peer's certificate is no longer good ({e})"
                    );
                    n += 1;
                }
                cut.waker.wake();
            }
        }
        n
    }

    /// How many links are watched.
    pub fn watched(&self) -> usize {
        let mut links = self.links.lock().expect("not poisoned");
        links.retain(|l| l.cut.strong_count() > 0);
        links.len()
    }

    /// Watches a link whose other end presented `cert` (see [`Live::sweep`]).
    pub fn watch<S>(&self, cert: CertificateDer<'static>, io: S) -> Guarded<S> {
        let cut = Arc::new(Cut::default());
        self.links.lock().expect("not poisoned").push(Watched {
            cert,
            cut: Arc::downgrade(&cut),
        });
        Guarded { io, cut }
    }

    /// A listener's configuration: TLS 1.3, the current certificate, callers' certificates
    /// (optional; their credential decides otherwise) checked against the root and the list.
    pub fn server(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(Clients(self.clone())))
            .with_cert_resolver(Arc::new(Own(self.clone())));
        config.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_HTTP.to_vec()];
        // No resumption: a resumed session skips the certificate check, so a peer whose
        // certificate was revoked (or has expired) would come back in on its old session.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// A dialer's configuration: TLS 1.3, servers checked against the root and the list, the
    /// current certificate presented, offering `alpn`.
    pub fn client(self: &Arc<Self>, alpn: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Servers(self.clone())))
            .with_client_cert_resolver(Arc::new(Own(self.clone())));
        config.alpn_protocols = vec![alpn.to_vec()];
        // Each link is checked afresh (see `server`), and presents the current certificate.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

/// A stream that ends with an error once its link is cut.
pub struct Guarded<S> {
    io: S,
    cut: Arc<Cut>,
}

impl<S> std::fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("cut", &self.cut.set.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S> Guarded<S> {
    fn check(&self, cx: &mut Context<'_>) -> io::Result<()> {
        self.cut.waker.register(cx.waker());
        if self.cut.set.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the peer's certificate is revoked or expired",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The current certificate, for both sides of a handshake.
#[derive(Debug)]
struct Own(Arc<Live>);

impl ResolvesServerCert for Own {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().expect("not poisoned").key.clone())
    }
}

impl ResolvesClientCert for Own {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().expect("not poisoned").key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct Clients(Arc<Live>);

impl Clients {
    fn now(&self) -> Arc<dyn ClientCertVerifier> {
        self.0.current.read().expect("not poisoned").clients.clone()
    }
}

impl ClientCertVerifier for Clients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.now()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.now().supported_verify_schemes()
    }
}

#[derive(Debug)]
struct Servers(Arc<Live>);

impl Servers {
    fn now(&self) -> Arc<dyn ServerCertVerifier> {
        self.0.current.read().expect("not poisoned").servers.clone()
    }
}

impl ServerCertVerifier for Servers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.now()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.now().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Authority, Request};
    use std::time::{Duration, SystemTime};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn identity(ca: &Authority, subject: &str, lifetime: Duration) -> (Identity, String) {
        let issued = ca
            .issue(
                &Request {
                    subject: subject.parse().unwrap(),
                    hosts: vec!["127.0.0.1".into()],
                    lifetime,
                },
                SystemTime::now(),
            )
            .unwrap();
        let serial = issued.record.serial.clone();
        (
            Identity {
                cert_pem: issued.cert_pem,
                key_pem: issued.key_pem,
            },
            serial,
        )
    }

    /// A server of `live` that echoes one byte on each connection, until its link is cut.
    async fn server(live: Arc<Live>) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(live.server().unwrap());
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let (acceptor, live) = (acceptor.clone(), live.clone());
                tokio::spawn(async move {
                    let Ok(t) = acceptor.accept(s).await else {
                        return;
                    };
                    let cert = t.get_ref().1.peer_certificates().unwrap()[0].clone();
                    let mut t = live.watch(cert, t);
                    let mut b = [0u8; 1];
                    while t.read_exact(&mut b).await.is_ok() {
                        if t.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Dials with one configuration (its session cache shared by its dials, as a daemon's
    /// dialer has).
    async fn dial(
        config: &Arc<ClientConfig>,
        addr: std::net::SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut t = tokio_rustls::TlsConnector::from(config.clone())
            .connect(crate::config::server_name("127.0.0.1").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        // TLS 1.3: the server's verdict on the client's certificate comes with the first read.
        t.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        t.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok(t)
    }

    #[tokio::test]
    async fn a_revoked_peer_is_refused_and_cut_a_renewed_certificate_is_presented_and_foreign_or_old_lists_are_refused(
    ) {
        let tmp = yard_testkit::TempDir::new("live");
        let ca = Authority::init(&tmp.join("ca"), SystemTime::now()).unwrap();
        let day = Duration::from_secs(86400);
        let (m, _) = identity(&ca, "manager:web", day);
        let manager = Live::new(&m, ca.cert_pem()).unwrap();
        let addr = server(manager.clone()).await;
        let (a1, a1_serial) = identity(&ca, "agent:web/a1", day);
        let agent = Live::new(&a1, ca.cert_pem()).unwrap();
        let dialer = agent.client(ALPN_PEER).unwrap();
        let mut link = dial(&dialer, addr).await.unwrap();
        dial(&dialer, addr).await.unwrap();

        // The first list (empty) is adopted; offered again, it is stale.
        let first = ca.crl(SystemTime::now()).unwrap();
        assert_eq!(
            manager.offer_crl(first.clone()).unwrap(),
            CrlOutcome::Adopted(1)
        );
        assert_eq!(
            manager.offer_crl(first.clone()).unwrap(),
            CrlOutcome::Stale(1)
        );

        // Another authority's list, and garbage: refused, the held one kept.
        let other = Authority::init(&tmp.join("other"), SystemTime::now()).unwrap();
        other
            .issue(
                &Request {
                    subject: "center".parse().unwrap(),
                    hosts: vec!["x".into()],
                    lifetime: day,
                },
                SystemTime::now(),
            )
            .unwrap();
        let mut foreign = other.crl(SystemTime::now()).unwrap();
        let e = manager.offer_crl(foreign.clone()).unwrap_err().to_string();
        assert!(e.contains("refused"), "{e}");
        foreign.truncate(20);
        assert!(manager.offer_crl(foreign).is_err());
        assert_eq!(manager.crl_number(), Some(1));

        // The agent's certificate is revoked: the list reaches the manager, its link is cut,
        // and a new handshake is refused.
        let revoked = ca.revoke(&a1_serial, SystemTime::now()).unwrap();
        assert_eq!(revoked.len(), 1);
        let second = ca.crl(SystemTime::now()).unwrap();
        assert_eq!(
            manager.offer_crl(second.clone()).unwrap(),
            CrlOutcome::Adopted(2)
        );
        let mut b = [0u8; 1];
        let cut = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = link.write_all(b"y").await;
            link.read_exact(&mut b).await
        })
        .await
        .expect("the link ends");
        assert!(cut.is_err(), "the revoked peer's link is cut");
        // Not by resuming an earlier session either (a resumed session skips the check).
        let e = dial(&dialer, addr).await.unwrap_err();
        assert!(
            e.to_lowercase().contains("revoked") || e.contains("alert"),
            "{e}"
        );
        // The older list cannot bring it back.
        assert_eq!(manager.offer_crl(first).unwrap(), CrlOutcome::Stale(2));

        // A renewed certificate for the agent is presented at the next handshake.
        let (a1b, a1b_serial) = identity(&ca, "agent:web/a1", day);
        agent.renew(&a1b).unwrap();
        assert_eq!(agent.serial(), a1b_serial);
        dial(&dialer, addr)
            .await
            .expect("the renewed certificate is accepted");
        // Renewing into a revoked certificate, or one of another root, is refused.
        let e = agent.offer_crl(second).map(|_| ());
        assert!(e.is_ok());
        assert!(agent.renew(&a1).is_err());
        let (stranger, _) = identity(&other, "agent:web/a1", day);
        assert!(agent.renew(&stranger).is_err());
        assert_eq!(agent.serial(), a1b_serial);
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_life() {
        // Issued at 1060 for 900 s (valid from 1000, a minute back).
        assert!(!renewal_due((1000, 1960), 1659));
        assert!(renewal_due((1000, 1960), 1660));
        assert!(renewal_due((1000, 1960), 5000));
        // A 15 s certificate is renewed after 10 s, not at once.
        assert!(!renewal_due((1000, 1075), 1069));
        assert!(renewal_due((1000, 1075), 1070));
        assert!(
            renewal_due((1000, 1000), 1000),
            "a certificate with no life left"
        );
    }

    #[tokio::test]
    async fn an_expired_peer_certificate_cuts_its_link_at_the_next_sweep() {
        let tmp = yard_testkit::TempDir::new("live-exp");
        let ca = Authority::init(&tmp.join("ca"), SystemTime::now()).unwrap();
        let (m, _) = identity(&ca, "manager:web", Duration::from_secs(86400));
        let later = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let clock = later.clone();
        let manager = Live::with_clock(
            &m,
            ca.cert_pem(),
            Arc::new(move || {
                UnixTime::since_unix_epoch(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        + Duration::from_secs(clock.load(Ordering::Relaxed)),
                )
            }),
        )
        .unwrap();
        let addr = server(manager.clone()).await;
        let (a1, _) = identity(&ca, "agent:web/a1", Duration::from_secs(600));
        let agent = Live::new(&a1, ca.cert_pem()).unwrap();
        let mut link = dial(&agent.client(ALPN_PEER).unwrap(), addr).await.unwrap();
        assert_eq!(manager.sweep(), 0, "still good");
        later.store(601, Ordering::Relaxed);
        assert_eq!(manager.sweep(), 1);
        let mut b = [0u8; 1];
        let _ = link.write_all(b"y").await;
        let r = tokio::time::timeout(Duration::from_secs(5), link.read_exact(&mut b))
            .await
            .expect("the link ends");
        assert!(r.is_err());
    }
}
