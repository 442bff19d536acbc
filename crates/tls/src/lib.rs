//! TLS 1.3 for Switchyard's listeners and dialers (rustls with ring), and the cluster's
//! certificate authority that issues each principal its certificate.

pub mod ca;
pub mod config;
pub mod der;
pub mod join;
pub mod listen;
pub mod live;

pub use ca::{Authority, CaError, Issued, Record, Request, Subject};
pub use config::{Identity, TlsError, ALPN_HTTP, ALPN_PEER};
pub use tokio_rustls::{TlsAcceptor, TlsConnector};
pub use {rcgen, rustls, tokio_rustls};
