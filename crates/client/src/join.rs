//! A host's side of joining: fetch the root the token names (over TLS that checks nothing, then
//! checked against the token's fingerprint), make a key, prove the token over TLS checked
//! against that root, and take the certificate. The key never leaves the host.

use yard_tls::join::{JoinRequest, JoinToken, Joined};
use yard_tls::Subject;

use crate::http::{self, Request};
use crate::trust::Roots;
use crate::ClientError;

/// A joined host's certificate, its new key (PEM) and what the center gave with them.
pub struct Identity {
    pub joined: Joined,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("joined", &self.joined)
            .finish_non_exhaustive()
    }
}

/// The root of the token's center, once its fingerprint is the token's.
pub async fn fetch_root(token: &JoinToken) -> Result<Roots, ClientError> {
    let tls = |why: String| ClientError::Tls {
        addr: token.center.clone(),
        why,
    };
    let discovery = yard_tls::config::client_for_discovery().map_err(|e| tls(e.to_string()))?;
    let answer = http::request_using(&token.center, discovery, Request::get("/v1/ca"))
        .await?
        .ok("GET", "/v1/ca")?;
    let pem = answer.text();
    let der = yard_tls::config::certs_from_pem(&pem).map_err(|e| tls(e.to_string()))?;
    let got = yard_auth::secret::sha256_hex(&der[0]);
    if !yard_auth::secret::ct_eq(got.as_bytes(), token.fingerprint.as_bytes()) {
        return Err(tls(format!(
            "the center's root has fingerprint sha256:{got}, not the token's sha256:{}: this is \
             not the authority that made the token (or someone sits in between)",
            token.fingerprint
        )));
    }
    // Only the root the token names: during a rotation the center's bundle also holds the old
    // root, which nothing here has checked. The bundle the center gives with the certificate,
    // over TLS checked against this root, carries the rest.
    let root = yard_tls::config::pem_of(&der[0]);
    Roots::from_pem(&root).map_err(|e| tls(e.to_string()))
}

/// Joins as `subject`, serving on `hosts`.
pub async fn join(
    token: &JoinToken,
    subject: &Subject,
    hosts: &[String],
) -> Result<(Identity, Roots), ClientError> {
    let roots = fetch_root(token).await?;
    let key = yard_tls::rcgen::KeyPair::generate().map_err(|e| ClientError::Tls {
        addr: token.center.clone(),
        why: format!("cannot make a key: {e}"),
    })?;
    let req = JoinRequest {
        id: token.id.clone(),
        secret: token.secret.clone(),
        subject: subject.clone(),
        hosts: hosts.to_vec(),
        public_key: yard_auth::secret::hex(key.public_key_raw()),
    };
    let body = serde_json::to_vec(&req).expect("a request serializes");
    let answer = http::request_using(
        &token.center,
        roots.http(),
        Request::json("POST", "/v1/join", &body),
    )
    .await?
    .ok("POST", "/v1/join")?;
    let joined: Joined = serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode {
        what: "POST /v1/join".into(),
        why: e.to_string(),
    })?;
    Ok((
        Identity {
            joined,
            key_pem: key.serialize_pem(),
        },
        roots,
    ))
}

/// Renews the certificate `current` (presented over TLS as the credential) at the center
/// `center`, for a new key; returns the new certificate and its key (PEM).
pub async fn renew(
    center: &str,
    current: &yard_tls::Identity,
    ca_pem: &str,
) -> Result<(yard_tls::join::Renewed, String), ClientError> {
    let tls = |why: String| ClientError::Tls {
        addr: center.to_string(),
        why,
    };
    let config = yard_tls::config::client(ca_pem, Some(current), yard_tls::ALPN_HTTP)
        .map_err(|e| tls(e.to_string()))?;
    let key =
        yard_tls::rcgen::KeyPair::generate().map_err(|e| tls(format!("cannot make a key: {e}")))?;
    let req = yard_tls::join::RenewRequest {
        public_key: yard_auth::secret::hex(key.public_key_raw()),
    };
    let body = serde_json::to_vec(&req).expect("a request serializes");
    let answer = http::request_using(center, config, Request::json("POST", "/v1/renew", &body))
        .await?
        .ok("POST", "/v1/renew")?;
    let renewed: yard_tls::join::Renewed =
        serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode {
            what: "POST /v1/renew".into(),
            why: e.to_string(),
        })?;
    Ok((renewed, key.serialize_pem()))
}
