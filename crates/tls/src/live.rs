//! A daemon's TLS while it runs: its certificate can be swapped for a renewed one, and the
//! authority's revocation list for a newer one, without a restart. The listener's and the
//! dialer's rustls configurations are built once, over this shared state ([`Live::server`],
//! [`Live::client`]): every new handshake presents the current certificate and checks the
//! other side against the current list. Links already up are watched too ([`Live::watch`]):
//! one whose peer's certificate was revoked, or has expired, is cut within a sweep
//! ([`Live::sweep`], which the daemon's keeper runs every second).
//!
//! A revocation list is adopted only when one of the roots held signed it and it is newer than
//! the one held of that root (its CRL number); a new root only when a cross certificate signed
//! by a root held certifies it ([`Live::offer_roots`], a rotation: see [`crate::ca`]). So lists
//! and bundles from anywhere, the fabric included, can be offered safely. A root retires on
//! this daemon's clock, when the cross certificate that introduced its successor ends.

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
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::{certs_from_pem, key_from_pem, provider, roots, TlsError};
use crate::{Identity, ALPN_HTTP, ALPN_PEER};

/// A root this daemon trusts.
#[derive(Clone)]
struct Anchor {
    der: CertificateDer<'static>,
    /// Its name, a whole DER element.
    subject: Vec<u8>,
    /// When it stops being trusted (Unix seconds): the end of the cross certificate that
    /// introduced its successor.
    retires: Option<u64>,
}

/// A revocation list held: its issuer's name, its number, the list.
#[derive(Clone)]
struct HeldCrl {
    issuer: Vec<u8>,
    number: u64,
    der: CertificateRevocationListDer<'static>,
}

/// What this daemon trusts: its roots, the cross certificates that introduced the newer ones,
/// and a revocation list per root.
#[derive(Clone, Default)]
struct Trust {
    anchors: Vec<Anchor>,
    crosses: Vec<CertificateDer<'static>>,
    crls: Vec<HeldCrl>,
}

/// What the daemon holds now.
struct Current {
    key: Arc<CertifiedKey>,
    /// `(not_before, not_after)` of the certificate, Unix seconds.
    validity: (u64, u64),
    serial: String,
    trust: Trust,
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<dyn ServerCertVerifier>,
}

/// A link being watched: the chain its other end presented, and its flag.
struct Watched {
    chain: Vec<CertificateDer<'static>>,
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
            .field("roots", &c.trust.anchors.len())
            .field(
                "crls",
                &c.trust.crls.iter().map(|c| c.number).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What [`Live::offer_crl`] did with a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlOutcome {
    /// Adopted: newer than the one held of its root.
    Adopted(u64),
    /// Not newer than the one held: nothing changed.
    Stale(u64),
}

/// What [`Live::offer_roots`] did with a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootsOutcome {
    /// This many new roots are trusted (each certified by one held).
    Adopted(usize),
    /// Nothing new.
    Known,
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

/// The verifiers of client and of server certificates, as one trust makes them.
type Verifiers = (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>);

fn verifiers(provider: &Arc<CryptoProvider>, trust: &Trust) -> Result<Verifiers, TlsError> {
    let mut roots = RootCertStore::empty();
    for a in &trust.anchors {
        roots.add(a.der.clone())?;
    }
    let roots = Arc::new(roots);
    let crls: Vec<_> = trust.crls.iter().map(|c| c.der.clone()).collect();
    // Each root's certificates are checked against that root's list. A root whose list has not
    // arrived yet (one just introduced) has its certificates taken without: refusing them would
    // cut a daemon that missed the rotation off from the peers that bring it the news.
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls.clone())
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let servers =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
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

/// A certificate of `certs` that certifies `root` (another of them, self-signed): the same
/// name and key, issued by someone else.
fn certifies(cross: &[u8], root: &[u8]) -> bool {
    let (Some((issuer, subject)), Some((r_issuer, r_subject))) =
        (crate::der::names(cross), crate::der::names(root))
    else {
        return false;
    };
    issuer != subject
        && r_issuer == r_subject
        && subject == r_subject
        && crate::der::public_key(cross) == crate::der::public_key(root)
}

impl Trust {
    /// Trusts the roots of `certs` that a held root certifies (through a cross certificate in
    /// `certs`, in its validity at `now`), and retires the certifying root when the cross
    /// certificate ends. Returns how many roots are new.
    fn extend(
        &mut self,
        provider: &CryptoProvider,
        certs: &[CertificateDer<'static>],
        now: u64,
    ) -> usize {
        let mut new = 0;
        for cross in certs {
            let Some(root) = certs.iter().find(|r| certifies(cross, r)) else {
                continue;
            };
            let (Some((issuer, subject)), Some((_, end))) =
                (crate::der::names(cross), crate::der::validity(cross))
            else {
                continue;
            };
            let Some(by) = self.anchors.iter().position(|a| {
                a.subject == issuer && crate::der::signed_by(provider, cross, &a.der)
            }) else {
                continue;
            };
            // Retired once the cross certificate's last second is over.
            let end = end + 1;
            let retires = self.anchors[by].retires.map_or(end, |r| r.min(end));
            self.anchors[by].retires = Some(retires);
            // An ended cross certificate still says when its issuer retired, but introduces
            // nothing.
            if end <= now {
                continue;
            }
            if !self.crosses.contains(cross) {
                self.crosses.push(cross.clone());
            }
            if !self
                .anchors
                .iter()
                .any(|a| a.subject == subject && a.der == *root)
            {
                self.anchors.push(Anchor {
                    der: root.clone(),
                    subject: subject.to_vec(),
                    retires: None,
                });
                new += 1;
            }
        }
        new
    }

    /// A daemon's trust from its root file: every certificate in it is a root, except the
    /// cross certificates that certify another of them (which give the older root its
    /// retirement).
    fn from_file(
        provider: &CryptoProvider,
        certs: Vec<CertificateDer<'static>>,
        now: u64,
    ) -> Trust {
        let crosses: Vec<bool> = certs
            .iter()
            .map(|c| certs.iter().any(|r| certifies(c, r)))
            .collect();
        let mut trust = Trust::default();
        for (c, cross) in certs.iter().zip(&crosses) {
            if !cross {
                let subject = crate::der::names(c)
                    .map(|n| n.1.to_vec())
                    .unwrap_or_default();
                trust.anchors.push(Anchor {
                    der: c.clone(),
                    subject,
                    retires: None,
                });
            }
        }
        trust.extend(provider, &certs, now);
        trust.retire(now);
        trust
    }

    /// Drops the roots whose time is up, the cross certificates that ended, and the lists of
    /// roots no longer held; returns whether anything changed.
    fn retire(&mut self, now: u64) -> bool {
        let before = (self.anchors.len(), self.crosses.len(), self.crls.len());
        // The newest root stays whatever its file says.
        let keep = |a: &Anchor| a.retires.is_none_or(|r| now < r);
        if self.anchors.iter().any(keep) {
            self.anchors.retain(keep);
        }
        self.crosses
            .retain(|c| crate::der::validity(c).is_some_and(|(_, end)| now <= end));
        let anchors = &self.anchors;
        self.crls
            .retain(|c| anchors.iter().any(|a| a.subject == c.issuer));
        before != (self.anchors.len(), self.crosses.len(), self.crls.len())
    }
}

impl Live {
    /// A daemon's TLS from its identity and the cluster's root file, with the system clock.
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
        let trust = Trust::from_file(&provider, certs_from_pem(ca_pem)?, now().as_secs());
        let hints = roots(ca_pem)?.subjects();
        let (clients, servers) = verifiers(&provider, &trust)?;
        let key = certified(&provider, id)?;
        let (validity, serial) = Self::describe(&key)?;
        Ok(Arc::new(Live {
            hints,
            provider,
            now,
            current: RwLock::new(Current {
                key,
                validity,
                serial,
                trust,
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

    /// What this daemon trusts, PEM, in the order of an authority's `ca.crt`: the roots that
    /// are not retiring, those that are, then the cross certificates that introduced the newer
    /// ones (what its root file holds, and what it hands on).
    pub fn ca_pem(&self) -> String {
        let c = self.current.read().expect("not poisoned");
        let t = &c.trust;
        let (staying, retiring): (Vec<&Anchor>, Vec<&Anchor>) =
            t.anchors.iter().partition(|a| a.retires.is_none());
        staying
            .into_iter()
            .chain(retiring)
            .map(|a| &a.der)
            .chain(&t.crosses)
            .map(|d| crate::config::pem_of(d))
            .collect()
    }

    /// How many roots are trusted.
    pub fn roots(&self) -> usize {
        self.current
            .read()
            .expect("not poisoned")
            .trust
            .anchors
            .len()
    }

    /// Whether this daemon's own certificate is of a root that is retiring: it renews it now,
    /// under the newer root.
    pub fn on_retiring_root(&self) -> bool {
        let c = self.current.read().expect("not poisoned");
        let issuer = c
            .key
            .end_entity_cert()
            .ok()
            .and_then(|d| crate::der::names(d).map(|n| n.0.to_vec()));
        c.trust
            .anchors
            .iter()
            .any(|a| Some(&a.subject) == issuer.as_ref() && a.retires.is_some())
    }

    /// The current certificate's `(not_before, not_after)`, Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        self.current.read().expect("not poisoned").validity
    }

    /// The current certificate's serial (hex).
    pub fn serial(&self) -> String {
        self.current.read().expect("not poisoned").serial.clone()
    }

    /// The highest CRL number of the revocation lists held.
    pub fn crl_number(&self) -> Option<u64> {
        let c = self.current.read().expect("not poisoned");
        c.trust.crls.iter().map(|c| c.number).max()
    }

    /// The revocation lists held (one per root), DER.
    pub fn crls(&self) -> Vec<CertificateRevocationListDer<'static>> {
        let c = self.current.read().expect("not poisoned");
        c.trust.crls.iter().map(|c| c.der.clone()).collect()
    }

    /// Puts a changed trust in force: new verifiers, then a sweep of the links.
    fn adopt(&self, trust: Trust) -> Result<(), TlsError> {
        let (clients, servers) = verifiers(&self.provider, &trust)?;
        {
            let mut c = self.current.write().expect("not poisoned");
            c.trust = trust;
            c.clients = clients;
            c.servers = servers;
        }
        self.sweep();
        Ok(())
    }

    /// Swaps in a renewed certificate: it must be of a trusted root and not revoked by the
    /// lists held. New handshakes present it; links already up keep theirs.
    pub fn renew(&self, id: &Identity) -> Result<(), TlsError> {
        let key = certified(&self.provider, id)?;
        let (validity, serial) = Self::describe(&key)?;
        let der = key.end_entity_cert().map_err(TlsError::Rustls)?.clone();
        {
            let c = self.current.read().expect("not poisoned");
            c.clients
                .verify_client_cert(&der, key.cert.get(1..).unwrap_or_default(), (self.now)())
                .map_err(TlsError::Rustls)?;
        }
        let mut c = self.current.write().expect("not poisoned");
        c.key = key;
        c.validity = validity;
        c.serial = serial;
        Ok(())
    }

    /// Offers a bundle of roots (PEM, as `ca.crt` holds during a rotation): a new root is
    /// trusted when a cross certificate in the bundle, signed by a root held, certifies it; the
    /// certifying root then retires when that cross certificate ends. Anything else in the
    /// bundle is ignored, so a bundle from anywhere, the fabric included, can be offered.
    pub fn offer_roots(&self, bundle: &str) -> Result<RootsOutcome, TlsError> {
        let certs = certs_from_pem(bundle)?;
        let now = (self.now)().as_secs();
        let mut trust = self.current.read().expect("not poisoned").trust.clone();
        let before: Vec<_> = trust.anchors.iter().map(|a| a.retires).collect();
        let new = trust.extend(&self.provider, &certs, now);
        let after: Vec<_> = trust
            .anchors
            .iter()
            .take(before.len())
            .map(|a| a.retires)
            .collect();
        if new == 0 && before == after {
            return Ok(RootsOutcome::Known);
        }
        self.adopt(trust)?;
        Ok(if new == 0 {
            RootsOutcome::Known
        } else {
            RootsOutcome::Adopted(new)
        })
    }

    /// Offers a revocation list (DER); adopted when signed by a root held and newer (by its
    /// CRL number) than the list held of that root (see the module's documentation).
    pub fn offer_crl(&self, der: Vec<u8>) -> Result<CrlOutcome, TlsError> {
        let refused = |why: &str| TlsError::Verifier(format!("a revocation list refused: {why}"));
        let issuer = crate::der::crl_issuer(&der)
            .ok_or_else(|| refused("not a revocation list"))?
            .to_vec();
        let number = crate::der::crl_number(&der)
            .ok_or_else(|| TlsError::Verifier("a revocation list without a CRL number".into()))?;
        let mut trust = self.current.read().expect("not poisoned").trust.clone();
        if !trust
            .anchors
            .iter()
            .any(|a| a.subject == issuer && crate::der::signed_by(&self.provider, &der, &a.der))
        {
            return Err(refused("not signed by a root this daemon trusts"));
        }
        let held = trust.crls.iter().position(|c| c.issuer == issuer);
        if let Some(i) = held {
            if number <= trust.crls[i].number {
                return Ok(CrlOutcome::Stale(trust.crls[i].number));
            }
            trust.crls.remove(i);
        }
        trust.crls.push(HeldCrl {
            issuer,
            number,
            der: CertificateRevocationListDer::from(der),
        });
        self.adopt(trust)?;
        Ok(CrlOutcome::Adopted(number))
    }

    /// Whether a chain the handshake accepted is still good now: of a root trusted, in its
    /// validity, not revoked.
    pub fn still_good(&self, chain: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        let (leaf, rest) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        let clients = self.current.read().expect("not poisoned").clients.clone();
        clients
            .verify_client_cert(leaf, rest, (self.now)())
            .map(|_| ())
    }

    /// Retires the roots whose time is up, then cuts every watched link whose other end's
    /// certificate is no longer good; forgets the links that ended. Returns how many were cut.
    pub fn sweep(&self) -> usize {
        let now = (self.now)().as_secs();
        let mut trust = self.current.read().expect("not poisoned").trust.clone();
        if trust.retire(now) {
            match verifiers(&self.provider, &trust) {
                Ok((clients, servers)) => {
                    tracing::info!(
                        roots = trust.anchors.len(),
                        "a retired root is no longer trusted"
                    );
                    let mut c = self.current.write().expect("not poisoned");
                    c.trust = trust;
                    c.clients = clients;
                    c.servers = servers;
                }
                Err(e) => tracing::warn!("cannot retire a root: {e}"),
            }
        }
        let mut links = self.links.lock().expect("not poisoned");
        links.retain(|l| l.cut.strong_count() > 0);
        let mut n = 0;
        for l in links.iter() {
            if let (Err(e), Some(cut)) = (self.still_good(&l.chain), l.cut.upgrade()) {
                if !cut.set.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        subject = ?l.chain.first().and_then(|c| crate::der::subject(c)),
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

    /// Watches a link whose other end presented `chain` (see [`Live::sweep`]).
    pub fn watch<S>(&self, chain: Vec<CertificateDer<'static>>, io: S) -> Guarded<S> {
        let cut = Arc::new(Cut::default());
        self.links.lock().expect("not poisoned").push(Watched {
            chain,
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
                    let chain = t.get_ref().1.peer_certificates().unwrap().to_vec();
                    let mut t = live.watch(chain, t);
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

    /// A clock `ahead` seconds ahead of the system's (moved by the test).
    fn clock(ahead: &Arc<std::sync::atomic::AtomicU64>) -> Arc<dyn Fn() -> UnixTime + Send + Sync> {
        let ahead = ahead.clone();
        Arc::new(move || {
            UnixTime::since_unix_epoch(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    + Duration::from_secs(ahead.load(Ordering::Relaxed)),
            )
        })
    }

    #[tokio::test]
    async fn a_rotated_root_is_trusted_through_its_cross_certificate_lists_of_both_roots_hold_and_the_old_root_retires_on_time(
    ) {
        let tmp = yard_testkit::TempDir::new("live-rot");
        let mut ca = Authority::init(&tmp.join("ca"), SystemTime::now()).unwrap();
        let day = Duration::from_secs(86400);
        let ahead = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (m, _) = identity(&ca, "manager:web", day);
        let manager = Live::with_clock(&m, ca.cert_pem(), clock(&ahead)).unwrap();
        let addr = server(manager.clone()).await;
        let (old, old_serial) = identity(&ca, "agent:web/old", day);
        let old_agent = Live::new(&old, ca.cert_pem()).unwrap();
        let old_dialer = old_agent.client(ALPN_PEER).unwrap();
        let mut old_link = dial(&old_dialer, addr).await.unwrap();
        manager
            .offer_crl(ca.crl(SystemTime::now()).unwrap())
            .unwrap();

        let rotation = ca
            .rotate(Some(Duration::from_secs(3600)), SystemTime::now())
            .unwrap();
        assert_ne!(rotation.old, rotation.new);
        // A certificate of the new root, with the cross certificate after it, is accepted by a
        // daemon that has not heard of the rotation (and holds the old root's list only).
        let (new, new_serial) = identity(&ca, "agent:web/new", day);
        assert_eq!(
            crate::config::certs_from_pem(&new.cert_pem).unwrap().len(),
            2
        );
        let new_agent = Live::new(&new, ca.cert_pem()).unwrap();
        assert_eq!(
            new_agent.roots(),
            2,
            "the bundle's two roots, the cross set aside"
        );
        assert!(!new_agent.on_retiring_root());
        let new_dialer = new_agent.client(ALPN_PEER).unwrap();
        dial(&new_dialer, addr)
            .await
            .expect("the cross certificate links it to the old root");
        assert!(!manager.on_retiring_root(), "it does not know yet");

        // Roots that no root held certifies are ignored (another authority's rotation), and
        // garbage is refused.
        let mut other = Authority::init(&tmp.join("other"), SystemTime::now()).unwrap();
        other.rotate(None, SystemTime::now()).unwrap();
        assert_eq!(
            manager.offer_roots(other.cert_pem()).unwrap(),
            RootsOutcome::Known
        );
        assert_eq!(manager.roots(), 1);
        assert!(manager.offer_roots("garbage").is_err());

        // The bundle is taken: two roots, the old one retiring, the manager's own certificate
        // due for renewal under the new one.
        assert_eq!(
            manager.offer_roots(ca.cert_pem()).unwrap(),
            RootsOutcome::Adopted(1)
        );
        assert_eq!(
            manager.offer_roots(ca.cert_pem()).unwrap(),
            RootsOutcome::Known
        );
        assert_eq!(manager.roots(), 2);
        assert!(manager.on_retiring_root());
        assert_eq!(manager.ca_pem(), new_agent.ca_pem());
        let (m2, _) = identity(&ca, "manager:web", day);
        manager.renew(&m2).unwrap();
        assert!(!manager.on_retiring_root());

        // Each root's list: the new root's, then the old root's revoking the old agent (whose
        // link is cut); the new agent revoked by the new root's list.
        let lists = ca.crls(SystemTime::now()).unwrap();
        assert_eq!(lists.len(), 2);
        for l in lists {
            assert!(matches!(
                manager.offer_crl(l).unwrap(),
                CrlOutcome::Adopted(_) | CrlOutcome::Stale(_)
            ));
        }
        assert_eq!(ca.revoke(&old_serial, SystemTime::now()).unwrap().len(), 1);
        assert_eq!(ca.revoke(&new_serial, SystemTime::now()).unwrap().len(), 1);
        assert!(ca.is_revoked(&old_serial).unwrap() && ca.is_revoked(&new_serial).unwrap());
        let mut adopted = 0;
        for l in ca.crls(SystemTime::now()).unwrap() {
            if let CrlOutcome::Adopted(_) = manager.offer_crl(l).unwrap() {
                adopted += 1;
            }
        }
        assert_eq!(adopted, 2, "a newer list of each root");
        let mut b = [0u8; 1];
        let cut = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = old_link.write_all(b"y").await;
            old_link.read_exact(&mut b).await
        })
        .await
        .expect("the link ends");
        assert!(cut.is_err(), "the old root's revoked agent is cut");
        assert!(
            dial(&new_dialer, addr).await.is_err(),
            "the new root's revoked agent is refused"
        );

        // At the retirement, the old root is no longer trusted: a certificate it issued is
        // refused, one of the new root accepted.
        let (late_old, _) = {
            let prev = Authority::open(&tmp.join("ca").join("previous")).unwrap();
            identity(&prev, "agent:web/late", day)
        };
        let late_old = Live::new(&late_old, ca.cert_pem()).unwrap();
        let late_dialer = late_old.client(ALPN_PEER).unwrap();
        dial(&late_dialer, addr)
            .await
            .expect("still in the overlap");
        let (fresh, _) = identity(&ca, "agent:web/fresh", day);
        let fresh = Live::new(&fresh, ca.cert_pem()).unwrap();
        let fresh_dialer = fresh.client(ALPN_PEER).unwrap();
        ahead.store(3601, Ordering::Relaxed);
        manager.sweep();
        assert_eq!(manager.roots(), 1, "the old root retired");
        assert!(
            dial(&late_dialer, addr).await.is_err(),
            "the old root's certificate is refused"
        );
        dial(&fresh_dialer, addr)
            .await
            .expect("the new root's certificate is accepted");
        // A daemon started on the bundle after the retirement trusts the new root alone.
        let restarted = Live::with_clock(&m2, ca.cert_pem(), clock(&ahead)).unwrap();
        assert_eq!(restarted.roots(), 1);
        // And the authority ends the rotation: its ca.crt is the new root alone.
        assert!(!ca.finish_if_due(SystemTime::now()).unwrap());
        assert!(ca.finish().unwrap());
        assert_eq!(
            crate::config::certs_from_pem(ca.cert_pem()).unwrap().len(),
            1
        );
        assert!(!tmp.join("ca").join("previous").exists());
    }
}
