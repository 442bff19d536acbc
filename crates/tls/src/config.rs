//! rustls configurations, TLS 1.3 only: a listener's (its certificate, and the cluster's root to
//! check the certificates callers may present) and a dialer's (the root it checks servers
//! against, and its own certificate when it has one).
//!
//! One port carries HTTP, WebSocket and native peering; inside TLS, ALPN tells them apart:
//! a peer offers [`ALPN_PEER`], browsers and HTTP clients offer `http/1.1` (or nothing).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol of native peering inside TLS.
pub const ALPN_PEER: &[u8] = b"yard-peer/1";
/// The ALPN protocol of HTTP (and the WebSocket upgrade) inside TLS.
pub const ALPN_HTTP: &[u8] = b"http/1.1";

/// Whether a connection whose first byte is `b` starts a TLS handshake (a record of type
/// handshake, 22).
pub fn is_tls(b: u8) -> bool {
    b == 0x16
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Io(std::path::PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Pem(String, String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client-certificate verifier: {0}")]
    Verifier(String),
}

/// ring: a small, pure build (aws-lc-rs would add a C library and cmake to every build). rustls
/// marks it deprecated because it has no post-quantum key exchange; X25519 and the P-curves it
/// has are what TLS 1.3 deployments use today. A switch to aws-lc-rs is one line here.
///
/// Key exchange: X25519 first, then P-256, P-384 last. ring's own order puts P-384 first, whose
/// arithmetic in ring is generic (no curve-specific code): a client's first key share then
/// cost most of a handshake, and new connections ran at under a third of the rate (docs/BENCHMARKS.md,
/// `yard bench handshake`). A peer that offers only P-384 still gets it.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    Arc::new(CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    })
}

/// One certificate (DER) as a PEM block.
pub fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The certificates in a PEM text, in order.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| TlsError::Pem("certificate".into(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(
            "certificate".into(),
            "no CERTIFICATE block".into(),
        ));
    }
    Ok(certs)
}

pub(crate) fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Pem("private key".into(), e.to_string()))
}

pub(crate) fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// A certificate with its key, as PEM texts.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads `CERT` and `KEY` files.
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| TlsError::Io(p.to_path_buf(), e));
        Ok(Identity {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }
}

/// A listener's configuration: TLS 1.3, `id`'s certificate, and, with `client_ca`, callers'
/// certificates checked against that root (a caller without one is still served: its
/// credential decides, as on a plain listener).
pub fn server(id: &Identity, client_ca: Option<&str>) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certs_from_pem(&id.cert_pem)?, key_from_pem(&id.key_pem)?)?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_HTTP.to_vec()];
    Ok(Arc::new(config))
}

/// A dialer's configuration: TLS 1.3, servers checked against `ca_pem`, `id` presented when
/// given, offering `alpn`.
pub fn client(
    ca_pem: &str,
    id: Option<&Identity>,
    alpn: &[u8],
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match id {
        Some(id) => builder
            .with_client_auth_cert(certs_from_pem(&id.cert_pem)?, key_from_pem(&id.key_pem)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// A dialer's configuration that takes any server certificate (its handshake signatures still
/// checked): only for fetching the public root a join token names, whose fingerprint the caller
/// then checks before trusting anything (as kubeadm's discovery does). Nothing secret is sent
/// over it.
pub fn client_for_discovery() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyServer(provider.signature_verification_algorithms));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP.to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyServer(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // TLS 1.3 only: never called.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The server name to check a server's certificate against, from a `HOST:PORT` address.
pub fn server_name(addr: &str) -> Result<rustls_pki_types::ServerName<'static>, TlsError> {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Pem(format!("server name {host:?}"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Authority, Request, CERT_LIFETIME};
    use std::time::SystemTime;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn identity(ca: &Authority, subject: &str, hosts: &[&str]) -> Identity {
        let issued = ca
            .issue(
                &Request {
                    subject: subject.parse().unwrap(),
                    hosts: hosts.iter().map(|h| h.to_string()).collect(),
                    lifetime: CERT_LIFETIME,
                },
                SystemTime::now(),
            )
            .unwrap();
        Identity {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        }
    }

    /// One exchange: the client connects, the server answers what it read, uppercased.
    async fn exchange(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<(String, Option<Vec<u8>>, bool), String> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut t = tokio_rustls::TlsAcceptor::from(server)
                .accept(s)
                .await
                .map_err(|e| e.to_string())?;
            let client_cert = t.get_ref().1.peer_certificates().is_some();
            let mut b = [0u8; 5];
            t.read_exact(&mut b).await.map_err(|e| e.to_string())?;
            t.write_all(&b.to_ascii_uppercase())
                .await
                .map_err(|e| e.to_string())?;
            t.shutdown().await.ok();
            Ok::<_, String>(client_cert)
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let c = tokio_rustls::TlsConnector::from(client)
            .connect(server_name(name).unwrap(), tcp)
            .await;
        let mut c = match c {
            Ok(c) => c,
            Err(e) => {
                srv.abort();
                return Err(e.to_string());
            }
        };
        let alpn = c.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        c.write_all(b"hello").await.map_err(|e| e.to_string())?;
        let mut back = String::new();
        c.read_to_string(&mut back).await.ok();
        let client_cert = srv.await.unwrap()?;
        Ok((back, alpn, client_cert))
    }

    #[tokio::test]
    async fn a_server_of_the_cluster_s_root_is_trusted_and_a_stranger_is_not() {
        let tmp = yard_testkit::TempDir::new("tls");
        let ca = Authority::init(&tmp.join("ca"), SystemTime::now()).unwrap();
        let me = identity(&ca, "manager:web", &["127.0.0.1", "localhost"]);
        let server_cfg = server(&me, Some(ca.cert_pem())).unwrap();

        // A peer with its own certificate, offering the peering protocol.
        let agent = identity(&ca, "agent:web/a1", &["127.0.0.1"]);
        let c = client(ca.cert_pem(), Some(&agent), ALPN_PEER).unwrap();
        let (back, alpn, with_cert) = exchange(server_cfg.clone(), c, "127.0.0.1").await.unwrap();
        assert_eq!(back, "HELLO");
        assert_eq!(alpn.as_deref(), Some(ALPN_PEER));
        assert!(with_cert);

        // An HTTP client without a certificate: served, no certificate seen.
        let c = client(ca.cert_pem(), None, ALPN_HTTP).unwrap();
        let (_, alpn, with_cert) = exchange(server_cfg.clone(), c, "localhost").await.unwrap();
        assert_eq!(alpn.as_deref(), Some(ALPN_HTTP));
        assert!(!with_cert);

        // The wrong name: refused by the client.
        let c = client(ca.cert_pem(), None, ALPN_HTTP).unwrap();
        let e = exchange(server_cfg.clone(), c, "other.example")
            .await
            .unwrap_err();
        assert!(
            e.contains("NotValidForName") || e.contains("not valid"),
            "{e}"
        );

        // Another authority's server, and another authority's client certificate: refused.
        let other = Authority::init(&tmp.join("other"), SystemTime::now()).unwrap();
        let stranger = identity(&other, "manager:web", &["127.0.0.1"]);
        let c = client(ca.cert_pem(), None, ALPN_HTTP).unwrap();
        let e = exchange(server(&stranger, None).unwrap(), c, "127.0.0.1")
            .await
            .unwrap_err();
        assert!(
            e.contains("UnknownIssuer") || e.contains("invalid peer certificate"),
            "{e}"
        );
        let forged = identity(&other, "agent:web/a1", &["127.0.0.1"]);
        let c = client(ca.cert_pem(), Some(&forged), ALPN_PEER).unwrap();
        let e = exchange(server_cfg, c, "127.0.0.1").await.unwrap_err();
        assert!(
            e.contains("UnknownIssuer") || e.contains("invalid peer certificate"),
            "{e}"
        );
    }

    #[test]
    fn server_names_come_from_addresses_and_garbage_pem_is_named() {
        assert_eq!(
            format!("{:?}", server_name("10.0.0.2:9911").unwrap()),
            format!("{:?}", server_name("10.0.0.2").unwrap())
        );
        assert!(server_name("[::1]:80").is_ok());
        assert!(server_name("db.example:5").is_ok());
        let e = certs_from_pem("nothing here").unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = key_from_pem("-----BEGIN NOTHING-----")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("private key"), "{e}");
    }

    /// A handshake in memory: the key-exchange group the two sides agreed.
    fn agreed(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<rustls::NamedGroup, rustls::Error> {
        let mut c = rustls::ClientConnection::new(client, server_name("127.0.0.1").unwrap())?;
        let mut s = rustls::ServerConnection::new(server)?;
        while c.is_handshaking() || s.is_handshaking() {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()?;
            }
        }
        Ok(c.negotiated_key_exchange_group().expect("agreed").name())
    }

    #[test]
    fn the_key_exchange_is_x25519_and_a_p384_only_client_still_gets_in() {
        let tmp = yard_testkit::TempDir::new("tls-kx");
        let ca = Authority::init(&tmp.join("ca"), SystemTime::now()).unwrap();
        let me = identity(&ca, "manager:web", &["127.0.0.1"]);
        let srv = server(&me, Some(ca.cert_pem())).unwrap();
        let ours = client(ca.cert_pem(), None, ALPN_HTTP).unwrap();
        assert_eq!(
            agreed(srv.clone(), ours).unwrap(),
            rustls::NamedGroup::X25519
        );
        #[allow(deprecated)]
        let p384_only = Arc::new(CryptoProvider {
            kx_groups: vec![rustls::crypto::ring::kx_group::SECP384R1],
            ..rustls::crypto::ring::default_provider()
        });
        let mut theirs = ClientConfig::builder_with_provider(p384_only)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots(ca.cert_pem()).unwrap())
            .with_no_client_auth();
        theirs.alpn_protocols = vec![ALPN_HTTP.to_vec()];
        assert_eq!(
            agreed(srv, Arc::new(theirs)).unwrap(),
            rustls::NamedGroup::secp384r1
        );
    }
}
