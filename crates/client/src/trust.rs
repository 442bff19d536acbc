//! Which listeners are spoken to over TLS, and the root their certificates are checked
//! against.
//!
//! An address names its transport: `https://HOST:PORT` (or `wss://`, `tls://`) is TLS,
//! `http://` (or `ws://`) is plain, and a bare `HOST:PORT` is TLS whenever a root is known.
//! The root is the CLI's rule: `--ca FILE` (set once with [`use_ca_file`]) or `YARD_CA`, else
//! the `ca.crt` of the home [`yard_auth::home::resolve`] picks (an operator's bundle), else
//! that home's authority (`ca/ca.crt`, where `yard up` keeps it), else the root a joined home
//! got (`tls/ca.crt`, `yard join`). A home with `operator.crt` and `operator.key` (an
//! operator's bundle made with `--certificate`) presents that certificate to every server. A daemon sets its own
//! with [`use_roots`]. There is no fallback from TLS to plain text: a listener that does not
//! speak TLS is an error that says how to reach it.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_util::either::Either;
use yard_tls::rustls::ClientConfig;
use yard_tls::tokio_rustls::client::TlsStream;

use crate::ClientError;

static FILE: OnceLock<PathBuf> = OnceLock::new();
static GIVEN: OnceLock<Roots> = OnceLock::new();

/// The root certificates servers are checked against, as the two client configurations made
/// from them (HTTP, and the peering protocol's ALPN is not a client's).
#[derive(Clone)]
pub struct Roots {
    pub pem: String,
    http: Arc<ClientConfig>,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots").finish_non_exhaustive()
    }
}

impl Roots {
    /// Roots from a PEM text (one or more certificates: during a rotation, the old and the new).
    pub fn from_pem(pem: &str) -> Result<Roots, yard_tls::TlsError> {
        Roots::with_identity(pem, None)
    }

    /// The same, presenting `id` (an operator's certificate, which then is the credential).
    pub fn with_identity(
        pem: &str,
        id: Option<&yard_tls::Identity>,
    ) -> Result<Roots, yard_tls::TlsError> {
        let http = yard_tls::config::client(pem, id, yard_tls::ALPN_HTTP)?;
        Ok(Roots {
            pem: pem.to_string(),
            http,
        })
    }

    /// The client configuration for HTTP and WebSocket.
    pub fn http(&self) -> Arc<ClientConfig> {
        self.http.clone()
    }
}

/// Makes [`found`] read `path` (call it before the first request).
pub fn use_ca_file(path: PathBuf) {
    let _ = FILE.set(path);
}

/// Makes [`found`] answer `roots` (a daemon's own, from its configuration).
pub fn use_roots(roots: Roots) {
    let _ = GIVEN.set(roots);
}

/// The roots found, read once per process; `None` when none is configured. A file named
/// explicitly that cannot be read or parsed is said on stderr once.
pub fn found() -> Option<Roots> {
    static FOUND: OnceLock<Option<Roots>> = OnceLock::new();
    if let Some(r) = GIVEN.get() {
        return Some(r.clone());
    }
    FOUND
        .get_or_init(|| {
            let explicit = FILE.get().cloned().or_else(|| {
                std::env::var_os("YARD_CA")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            });
            let home = yard_auth::home::resolve(None);
            let path = match explicit {
                Some(p) => p,
                None => [
                    home.join("ca.crt"),
                    home.join("ca").join("ca.crt"),
                    home.join("tls").join("ca.crt"),
                ]
                .into_iter()
                .find(|p| p.exists())?,
            };
            // An operator's bundle may hold a certificate instead of a token.
            let (cert, key) = (home.join("operator.crt"), home.join("operator.key"));
            let id = (cert.exists() && key.exists())
                .then(|| yard_tls::Identity::load(&cert, &key))
                .transpose();
            let loaded = id.map_err(|e| e.to_string()).and_then(|id| {
                std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| {
                        Roots::with_identity(&pem, id.as_ref()).map_err(|e| e.to_string())
                    })
            });
            match loaded {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("yard: the CA file {}: {e}", path.display());
                    None
                }
            }
        })
        .clone()
}

/// Where an address leads: `HOST:PORT`, and whether over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: String,
    pub tls: bool,
}

/// Reads an address: its scheme if it has one, else TLS when `roots_known`.
pub fn target(addr: &str, roots_known: bool) -> Target {
    let (rest, tls) = match addr.split_once("://") {
        Some(("https" | "wss" | "tls", rest)) => (rest, Some(true)),
        Some(("http" | "ws", rest)) => (rest, Some(false)),
        _ => (addr, None),
    };
    Target {
        addr: rest.trim_end_matches('/').to_string(),
        tls: tls.unwrap_or(roots_known),
    }
}

/// A connection to a listener: plain, or TLS.
pub type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Connects to `addr` (read by [`target`] with the roots [`found`]), and over TLS checks the
/// server's certificate against them, offering `http/1.1`.
pub async fn connect(addr: &str) -> Result<(Stream, Target), ClientError> {
    let roots = found();
    let t = target(addr, roots.is_some());
    let config = roots.map(|r| r.http());
    connect_to(t, config).await
}

/// Connects to `t`, over TLS with `config` when `t.tls`.
pub async fn connect_to(
    t: Target,
    config: Option<Arc<ClientConfig>>,
) -> Result<(Stream, Target), ClientError> {
    let tcp = TcpStream::connect(&t.addr)
        .await
        .map_err(|e| ClientError::NotRunning {
            addr: t.addr.clone(),
            why: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    if !t.tls {
        return Ok((Either::Left(tcp), t));
    }
    let config = config.ok_or_else(|| ClientError::Tls {
        addr: t.addr.clone(),
        why: "TLS asked for, but no CA is known to check the server against: give --ca FILE \
              or YARD_CA (`yard ca show --pem` on the authority's host prints it)"
            .into(),
    })?;
    let name = yard_tls::config::server_name(&t.addr).map_err(|e| ClientError::Tls {
        addr: t.addr.clone(),
        why: e.to_string(),
    })?;
    match yard_tls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    {
        Ok(s) => Ok((Either::Right(s), t)),
        Err(e) => Err(ClientError::Tls {
            addr: t.addr.clone(),
            why: explain(&e),
        }),
    }
}

/// A handshake failure said so that the reader knows what to do.
fn explain(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("InvalidContentType")
        || text.contains("corrupt message")
        || e.kind() == std::io::ErrorKind::UnexpectedEof
    {
        format!("the listener does not speak TLS ({text}); if it is a plain one, write http:// (or ws://) before its address")
    } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        format!("the server's certificate is not of the CA given ({text})")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_says_its_transport_or_the_roots_decide() {
        let t = |a: &str, known| {
            let t = target(a, known);
            (t.addr, t.tls)
        };
        assert_eq!(
            t("https://10.0.0.2:9900/", false),
            ("10.0.0.2:9900".into(), true)
        );
        assert_eq!(t("wss://h:1", false), ("h:1".into(), true));
        assert_eq!(t("tls://h:1", false), ("h:1".into(), true));
        assert_eq!(t("http://h:1", true), ("h:1".into(), false));
        assert_eq!(t("ws://h:1", true), ("h:1".into(), false));
        assert_eq!(t("h:1", true), ("h:1".into(), true));
        assert_eq!(t("h:1", false), ("h:1".into(), false));
    }
}
