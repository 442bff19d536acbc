//! The one error of the client library.

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the address (or the address is not one).
    #[error("no yard listener at {addr} ({why})")]
    NotRunning { addr: String, why: String },
    /// The TLS handshake failed: the server's certificate is not of the CA, the listener does
    /// not speak TLS, or no CA is known.
    #[error("TLS to {addr}: {why}")]
    Tls { addr: String, why: String },
    /// The connection broke, or the answer is not HTTP (or not the WebSocket API).
    #[error("{addr}: {why}")]
    Protocol { addr: String, why: String },
    /// The server refused: its status, and the `code` and `context` of its JSON error body (the
    /// whole body as `context` when it is not one).
    #[error("{method} {path}: HTTP {status}: {code}: {context}")]
    Refused {
        method: String,
        path: String,
        status: u16,
        code: String,
        context: String,
    },
    /// The body is not what the route documents.
    #[error("{what}: the answer is not what the API documents ({why})")]
    Decode { what: String, why: String },
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}
