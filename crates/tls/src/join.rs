//! Joining a host to the system: a join token carries a secret, the authority's fingerprint
//! and the center's address (as kubeadm's and k3s's tokens do). The new host makes its own
//! key, fetches the root from the center and checks it against the fingerprint, then proves
//! the secret over TLS checked against that root and gets a certificate for its principal.
//!
//! A token allows one subject or a family of them (`agent:web/*`), a bounded number of uses,
//! until it expires. The book of tokens (`joins.json` beside the authority, 0600) keeps only a
//! hash of each secret. [`Joins`] is the center's desk: the book, the authority, and the mesh
//! key a joined daemon also needs to peer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use yard_auth::secret;
use yard_auth::tokens::write_private;

use crate::ca::{Authority, CaError, Request, Subject, CERT_LIFETIME};

/// The prefix of a join token's text.
const PREFIX: &str = "yj1";
/// Most tokens kept in the book (used-up and expired ones are dropped first).
const MAX_TOKENS: usize = 1024;
/// The longest a token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A join token as given to a new host: `yj1.ID.SECRET.FINGERPRINT@CENTER`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
    /// SHA-256 of the root certificate's DER, hex.
    pub fingerprint: String,
    /// The center's address, `HOST:PORT`.
    pub center: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("center", &self.center)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}@{}",
            self.id, self.secret, self.fingerprint, self.center
        )
    }
}

/// Why a text is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a join token ({0}); one looks like yj1.ID.SECRET.FINGERPRINT@HOST:PORT (`yard join create` prints one)")]
pub struct BadToken(pub &'static str);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl std::str::FromStr for JoinToken {
    type Err = BadToken;
    fn from_str(s: &str) -> Result<JoinToken, BadToken> {
        let s = s.trim();
        let (head, center) = s.rsplit_once('@').ok_or(BadToken("no @CENTER"))?;
        let parts: Vec<&str> = head.split('.').collect();
        let [prefix, id, secret, fingerprint] = parts.as_slice() else {
            return Err(BadToken("expected four dot-separated parts before the @"));
        };
        if *prefix != PREFIX {
            return Err(BadToken("it does not start with yj1."));
        }
        if !is_hex(id, 8) || !is_hex(secret, 32) {
            return Err(BadToken("the id or the secret is not of its form"));
        }
        if !is_hex(fingerprint, 64) {
            return Err(BadToken("the fingerprint is not a SHA-256 in hex"));
        }
        if center.is_empty() || !center.contains(':') {
            return Err(BadToken("the center is not HOST:PORT"));
        }
        Ok(JoinToken {
            id: id.to_string(),
            secret: secret.to_string(),
            fingerprint: fingerprint.to_ascii_lowercase(),
            center: center.to_string(),
        })
    }
}

/// The subjects a token lets a host join as: one (`manager:web`), or every agent of a
/// cluster (`agent:web/*`), or every node (`node:*`).
pub fn allows(pattern: &str, subject: &Subject) -> bool {
    let s = subject.to_string();
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') || prefix.ends_with(':') => {
            s.starts_with(prefix) && s.len() > prefix.len()
        }
        Some(_) => false,
        None => s == pattern,
    }
}

/// Whether `pattern` is one [`allows`] reads, and names no operator (an operator gets a
/// token of the registry, not a host certificate).
pub fn pattern_ok(pattern: &str) -> bool {
    let probe = pattern.strip_suffix('*').map(|p| format!("{p}x"));
    let probe = match (&probe, pattern.strip_suffix('*')) {
        (Some(p), Some(prefix)) if prefix.ends_with('/') || prefix.ends_with(':') => p.as_str(),
        (Some(_), _) => return false,
        (None, _) => pattern,
    };
    match probe.parse::<Subject>() {
        Ok(Subject::Operator { .. }) | Err(_) => false,
        Ok(_) => true,
    }
}

/// One token of the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    /// The subject pattern it allows.
    pub allows: String,
    pub uses_left: u32,
    /// Unix seconds.
    pub created: u64,
    pub expires: u64,
    /// The subjects that joined with it, in order.
    #[serde(default)]
    pub joined: Vec<String>,
}

/// Why a join was refused. The messages say what the operator can do; none says whether a
/// token id exists, so that a guesser learns nothing.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the join token is unknown, used up, expired or its secret is wrong")]
    Refused,
    #[error("this token does not allow joining as {0} (it allows {1})")]
    NotAllowed(String, String),
    #[error("{0}")]
    Bad(String),
    #[error("renewal refused: {0}")]
    Renewal(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

fn root_modified(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join("ca.crt"))
        .and_then(|m| m.modified())
        .ok()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The book of join tokens, kept in a file.
#[derive(Debug)]
pub struct JoinBook {
    path: PathBuf,
    tokens: Vec<TokenRecord>,
}

impl JoinBook {
    /// Opens the book of the authority in `ca_dir` (an empty one when there is no file).
    pub fn open(ca_dir: &Path) -> Result<JoinBook, JoinError> {
        let path = ca_dir.join("joins.json");
        let tokens = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| JoinError::Bad(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(JoinError::Io(path, e)),
        };
        Ok(JoinBook { path, tokens })
    }

    fn save(&self) -> Result<(), JoinError> {
        let text = serde_json::to_string_pretty(&self.tokens).expect("records serialize");
        write_private(&self.path, text.as_bytes()).map_err(|e| JoinError::Io(self.path.clone(), e))
    }

    /// A new token allowing `pattern`, `uses` times, for `ttl`. Returns its record and its
    /// secret (shown once: the book keeps only its hash).
    pub fn create(
        &mut self,
        pattern: &str,
        uses: u32,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(TokenRecord, String), JoinError> {
        if !pattern_ok(pattern) {
            return Err(JoinError::Bad(format!(
                "{pattern:?} is not a subject a host joins as: manager:CLUSTER, agent:CLUSTER/AGENT, \
                 agent:CLUSTER/*, node:NAME, node:* or center"
            )));
        }
        if uses == 0 || uses > 10_000 {
            return Err(JoinError::Bad(
                "a token is good for 1 to 10000 joins".into(),
            ));
        }
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(JoinError::Bad(format!(
                "a token lives 1 s to {} days",
                MAX_TOKEN_TTL.as_secs() / 86400
            )));
        }
        let now_s = unix(now);
        self.tokens.retain(|t| t.uses_left > 0 && t.expires > now_s);
        if self.tokens.len() >= MAX_TOKENS {
            return Err(JoinError::Bad(format!(
                "{MAX_TOKENS} live join tokens already: revoke some (`yard join revoke ID`)"
            )));
        }
        let id = secret::random_hex(4);
        let secret_text = secret::random_hex(16);
        let record = TokenRecord {
            id,
            sha256: secret::sha256_hex(secret_text.as_bytes()),
            allows: pattern.to_string(),
            uses_left: uses,
            created: now_s,
            expires: now_s + ttl.as_secs(),
            joined: vec![],
        };
        self.tokens.push(record.clone());
        self.save()?;
        Ok((record, secret_text))
    }

    pub fn list(&self) -> &[TokenRecord] {
        &self.tokens
    }

    /// Removes token `id`; whether there was one.
    pub fn revoke(&mut self, id: &str) -> Result<bool, JoinError> {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.id != id);
        let removed = self.tokens.len() != before;
        if removed {
            self.save()?;
        }
        Ok(removed)
    }

    /// Spends one use of token `id` for `subject`, if `secret` is its secret (compared in
    /// constant time), it is not expired or used up, and it allows the subject.
    pub fn redeem(
        &mut self,
        id: &str,
        secret_text: &str,
        subject: &Subject,
        now: SystemTime,
    ) -> Result<(), JoinError> {
        let now_s = unix(now);
        let given = secret::sha256_hex(secret_text.as_bytes());
        let t = self
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .filter(|t| secret::ct_eq(t.sha256.as_bytes(), given.as_bytes()))
            .filter(|t| t.uses_left > 0 && t.expires > now_s)
            .ok_or(JoinError::Refused)?;
        if !allows(&t.allows, subject) {
            return Err(JoinError::NotAllowed(subject.to_string(), t.allows.clone()));
        }
        t.uses_left -= 1;
        t.joined.push(subject.to_string());
        self.save()
    }
}

/// A P-256 public key, as its uncompressed point: what a joining host sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    /// A key from its uncompressed point in hex (65 bytes, starting 04).
    pub fn from_hex(hex: &str) -> Result<PublicKey, JoinError> {
        let bad = || {
            JoinError::Bad("public_key: expected a P-256 point, 65 bytes in hex starting 04".into())
        };
        if hex.len() != 130 {
            return Err(bad());
        }
        let bytes: Result<Vec<u8>, _> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect();
        let bytes = bytes.map_err(|_| bad())?;
        if bytes[0] != 4 {
            return Err(bad());
        }
        Ok(PublicKey(bytes))
    }
}

impl rcgen::PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// `POST /v1/join`: a host's request.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: String,
    pub secret: String,
    pub subject: Subject,
    /// The names and addresses the host serves on.
    pub hosts: Vec<String>,
    /// Its P-256 public key (uncompressed point, hex); the private key never leaves the host.
    pub public_key: String,
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// What a joined host is given.
#[derive(Clone, Serialize, Deserialize)]
pub struct Joined {
    pub subject: Subject,
    pub cert_pem: String,
    pub ca_pem: String,
    pub serial: String,
    /// Unix seconds.
    pub not_after: u64,
    /// The secret peers prove they hold.
    pub mesh_key: String,
}

impl fmt::Debug for Joined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Joined")
            .field("subject", &self.subject)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/renew`: a holder's new key; the certificate it presented over TLS is its
/// credential and names what is renewed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    /// Its new P-256 public key (uncompressed point, hex).
    pub public_key: String,
}

/// A renewed certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renewed {
    pub subject: Subject,
    pub cert_pem: String,
    pub ca_pem: String,
    pub serial: String,
    /// Unix seconds.
    pub not_after: u64,
}

/// The center's join desk.
pub struct Joins {
    /// The authority, opened again when its `ca.crt` changes (a rotation, by `yard ca rotate`
    /// in another process).
    ca: Mutex<(std::sync::Arc<Authority>, Option<SystemTime>)>,
    book: Mutex<JoinBook>,
    mesh_key: String,
    lifetime: Duration,
}

impl fmt::Debug for Joins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Joins").finish_non_exhaustive()
    }
}

impl Joins {
    /// The desk of the authority `ca`, giving joined hosts `mesh_key`.
    pub fn new(ca: Authority, mesh_key: String) -> Result<Joins, JoinError> {
        let book = JoinBook::open(ca.dir())?;
        let seen = root_modified(ca.dir());
        Ok(Joins {
            ca: Mutex::new((std::sync::Arc::new(ca), seen)),
            book: Mutex::new(book),
            mesh_key,
            lifetime: CERT_LIFETIME,
        })
    }

    /// How long the certificates given to joining hosts live [default: [`CERT_LIFETIME`]].
    pub fn with_lifetime(self, lifetime: Duration) -> Joins {
        Joins { lifetime, ..self }
    }

    /// The authority as its directory holds it now.
    pub fn ca(&self) -> std::sync::Arc<Authority> {
        let mut held = self.ca.lock().expect("authority");
        let now = root_modified(held.0.dir());
        if now != held.1 {
            match Authority::open(held.0.dir()) {
                Ok(ca) => *held = (std::sync::Arc::new(ca), now),
                // Half-rotated: the one held serves until the files are whole.
                Err(e) => tracing::warn!("the authority changed and cannot be opened: {e}"),
            }
        }
        held.0.clone()
    }

    /// A token for `pattern`, as the text to hand to the new host (reaching the center at
    /// `center`).
    pub fn create(
        &self,
        pattern: &str,
        uses: u32,
        ttl: Duration,
        center: &str,
        now: SystemTime,
    ) -> Result<(TokenRecord, JoinToken), JoinError> {
        let (record, secret_text) = self
            .book
            .lock()
            .expect("join book")
            .create(pattern, uses, ttl, now)?;
        let token = JoinToken {
            id: record.id.clone(),
            secret: secret_text,
            fingerprint: self.ca().fingerprint(),
            center: center.to_string(),
        };
        Ok((record, token))
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        self.book.lock().expect("join book").list().to_vec()
    }

    pub fn revoke(&self, id: &str) -> Result<bool, JoinError> {
        self.book.lock().expect("join book").revoke(id)
    }

    /// A new certificate, for a new key, of the same subject and hosts and for as long as the
    /// certificate `serial` (which its holder proved over TLS) that this authority issued and
    /// has not revoked.
    pub fn renew(
        &self,
        serial: &str,
        req: &RenewRequest,
        now: SystemTime,
    ) -> Result<Renewed, JoinError> {
        let key = PublicKey::from_hex(&req.public_key)?;
        let ca = self.ca();
        let old = ca
            .issued()?
            .into_iter()
            .find(|r| r.serial.eq_ignore_ascii_case(serial))
            .ok_or_else(|| {
                JoinError::Renewal(format!(
                    "certificate {serial} was not issued by this authority"
                ))
            })?;
        if ca.is_revoked(serial)? {
            return Err(JoinError::Renewal(format!(
                "certificate {serial} is revoked"
            )));
        }
        let t = unix(now);
        if old.not_after <= t {
            return Err(JoinError::Renewal(format!(
                "certificate {serial} has expired: join again"
            )));
        }
        // As long as the old one was meant to live (its start had a minute's slack).
        let lifetime = Duration::from_secs(
            old.not_after
                .saturating_sub(old.not_before + crate::ca::BACKDATE.as_secs())
                .clamp(1, crate::ca::MAX_CERT_LIFETIME.as_secs()),
        );
        let (record, cert_pem) = ca.sign(
            &Request {
                subject: old.subject.clone(),
                hosts: old.hosts.clone(),
                lifetime,
            },
            &key,
            now,
        )?;
        Ok(Renewed {
            subject: old.subject,
            cert_pem,
            ca_pem: ca.cert_pem().to_string(),
            serial: record.serial,
            not_after: record.not_after,
        })
    }

    /// Spends the token and signs the host's key for its subject.
    pub fn join(&self, req: &JoinRequest, now: SystemTime) -> Result<Joined, JoinError> {
        let key = PublicKey::from_hex(&req.public_key)?;
        self.book
            .lock()
            .expect("join book")
            .redeem(&req.id, &req.secret, &req.subject, now)?;
        let ca = self.ca();
        let (record, cert_pem) = ca.sign(
            &Request {
                subject: req.subject.clone(),
                hosts: req.hosts.clone(),
                lifetime: self.lifetime,
            },
            &key,
            now,
        )?;
        Ok(Joined {
            subject: req.subject.clone(),
            cert_pem,
            ca_pem: ca.cert_pem().to_string(),
            serial: record.serial,
            not_after: record.not_after,
            mesh_key: self.mesh_key.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(s: &str) -> Subject {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_round_trips_through_its_text_and_garbage_says_why() {
        let t = JoinToken {
            id: "0a1b2c3d".into(),
            secret: "00112233445566778899aabbccddeeff".into(),
            fingerprint: "ab".repeat(32),
            center: "10.77.0.1:9900".into(),
        };
        let text = t.to_string();
        assert_eq!(
            text,
            format!(
                "yj1.0a1b2c3d.00112233445566778899aabbccddeeff.{}@10.77.0.1:9900",
                "ab".repeat(32)
            )
        );
        assert_eq!(text.parse::<JoinToken>().unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
        for (bad, why) in [
            ("", "no @CENTER"),
            ("yj1.a.b@h:1", "four"),
            (
                "yj2.0a1b2c3d.00112233445566778899aabbccddeeff.ff@h:1",
                "yj1",
            ),
            ("yj1.0a1b2c3d.short.ff@h:1", "secret"),
            (
                &format!(
                    "yj1.0a1b2c3d.00112233445566778899aabbccddeeff.{}@h",
                    "ab".repeat(32)
                ),
                "HOST:PORT",
            ),
        ] {
            let e = bad.parse::<JoinToken>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn patterns_allow_one_subject_or_a_family_and_never_an_operator() {
        assert!(allows("agent:web/*", &subject("agent:web/a1")));
        assert!(!allows("agent:web/*", &subject("agent:db/a1")));
        assert!(!allows("agent:web/*", &subject("manager:web")));
        assert!(allows("manager:web", &subject("manager:web")));
        assert!(!allows("manager:web", &subject("manager:webx")));
        assert!(allows("node:*", &subject("node:n1")));
        assert!(!allows("node*", &subject("node:n1")));
        for ok in [
            "agent:web/*",
            "manager:web",
            "node:*",
            "center",
            "agent:web/a1",
        ] {
            assert!(pattern_ok(ok), "{ok}");
        }
        for bad in [
            "operator:ada",
            "operator:*",
            "*",
            "agent:*x",
            "manager:",
            "web",
        ] {
            assert!(!pattern_ok(bad), "{bad}");
        }
    }

    #[test]
    fn a_token_is_spent_once_per_use_expires_and_refuses_a_wrong_secret() {
        let tmp = yard_testkit::TempDir::new("join");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut book = JoinBook::open(tmp.path()).unwrap();
        let (rec, secret_text) = book
            .create("agent:web/*", 2, Duration::from_secs(600), now)
            .unwrap();
        assert_eq!(rec.uses_left, 2);
        let a1 = subject("agent:web/a1");
        // Wrong secret, a subject it does not allow: refused, nothing spent.
        assert!(matches!(
            book.redeem(&rec.id, "00000000000000000000000000000000", &a1, now),
            Err(JoinError::Refused)
        ));
        assert!(matches!(
            book.redeem(&rec.id, &secret_text, &subject("manager:web"), now),
            Err(JoinError::NotAllowed(..))
        ));
        book.redeem(&rec.id, &secret_text, &a1, now).unwrap();
        // The book on disk keeps the hash only, is private, and survives a reopen.
        let path = tmp.path().join("joins.json");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret_text));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut book = JoinBook::open(tmp.path()).unwrap();
        assert_eq!(book.list()[0].uses_left, 1);
        assert_eq!(book.list()[0].joined, vec!["agent:web/a1".to_string()]);
        // Past its expiry: refused.
        let later = now + Duration::from_secs(601);
        assert!(matches!(
            book.redeem(&rec.id, &secret_text, &subject("agent:web/a2"), later),
            Err(JoinError::Refused)
        ));
        book.redeem(&rec.id, &secret_text, &subject("agent:web/a2"), now)
            .unwrap();
        // Used up.
        assert!(matches!(
            book.redeem(&rec.id, &secret_text, &subject("agent:web/a3"), now),
            Err(JoinError::Refused)
        ));
        // Bounds.
        assert!(book
            .create("operator:ada", 1, Duration::from_secs(60), now)
            .is_err());
        assert!(book
            .create("node:*", 0, Duration::from_secs(60), now)
            .is_err());
        assert!(book.create("node:*", 1, MAX_TOKEN_TTL * 2, now).is_err());
        // Revoked: gone.
        let (rec, s) = book
            .create("node:*", 1, Duration::from_secs(60), now)
            .unwrap();
        assert!(book.revoke(&rec.id).unwrap());
        assert!(matches!(
            book.redeem(&rec.id, &s, &subject("node:n1"), now),
            Err(JoinError::Refused)
        ));
    }

    #[test]
    fn a_joined_key_gets_a_certificate_of_the_authority_for_its_subject() {
        let tmp = yard_testkit::TempDir::new("join-desk");
        let now = SystemTime::now();
        let ca = Authority::init(&tmp.join("ca"), now).unwrap();
        let desk = Joins::new(ca, "mesh".into()).unwrap();
        let (_, token) = desk
            .create(
                "agent:web/*",
                1,
                Duration::from_secs(60),
                "10.0.0.1:9900",
                now,
            )
            .unwrap();
        assert_eq!(token.fingerprint, desk.ca().fingerprint());
        let key = rcgen::KeyPair::generate().unwrap();
        let req = JoinRequest {
            id: token.id.clone(),
            secret: token.secret.clone(),
            subject: subject("agent:web/a1"),
            hosts: vec!["10.0.0.2".into()],
            public_key: secret::hex(key.public_key_raw()),
        };
        let joined = desk.join(&req, now).unwrap();
        assert_eq!(joined.mesh_key, "mesh");
        // The certificate works with the key the host kept, against the root.
        let id = crate::Identity {
            cert_pem: joined.cert_pem.clone(),
            key_pem: key.serialize_pem(),
        };
        crate::config::server(&id, Some(&joined.ca_pem)).unwrap();
        assert!(desk
            .ca()
            .issued()
            .unwrap()
            .iter()
            .any(|r| r.serial == joined.serial));
        // A second use of a one-use token: refused.
        assert!(matches!(desk.join(&req, now), Err(JoinError::Refused)));
        // A key that is not a point: refused before the token is spent.
        let (_, token) = desk
            .create("node:*", 1, Duration::from_secs(60), "h:1", now)
            .unwrap();
        let bad = JoinRequest {
            id: token.id,
            secret: token.secret,
            subject: subject("node:n1"),
            hosts: vec!["h".into()],
            public_key: "04".into(),
        };
        assert!(matches!(desk.join(&bad, now), Err(JoinError::Bad(_))));
        assert_eq!(
            desk.list()
                .iter()
                .find(|t| t.allows == "node:*")
                .unwrap()
                .uses_left,
            1
        );
    }
}
