//! The cluster's certificate authority: one ECDSA P-256 key, kept 0600 in its directory, that
//! signs a short-lived certificate for each principal (the center, a cluster's manager, an
//! agent, a node, an operator). A certificate names its principal twice: as its common name
//! (`manager:web`) and as a URI (`yard://manager/web`), the form a verifier reads.
//!
//! The directory holds `ca.crt` (the root every client trusts), `ca.key` (0600), `ca.name` (the
//! root's distinguished name, so the key can sign again without parsing the certificate) and
//! `issued.jsonl` (one line per certificate issued: serial, subject, hosts, validity), 0600.
//! Revocations are kept in `revoked.json` (with the number of the newest list) and published as
//! `crl.der`, a revocation list (RFC 5280) signed by the root's key, which every daemon checks
//! its callers and peers against (see [`crate::live`]).
//!
//! **Rotation** ([`Authority::rotate`]) replaces the root without a pause: a new key and root,
//! and `cross.crt`, the new root's name and key certified by the old root, valid until the old
//! root retires. The old root's files move to `previous/` (an authority directory of its own,
//! which keeps signing the revocation list of what it issued). Until the retirement `ca.crt` is
//! the trust bundle: the new root, the old root, the cross certificate. A certificate issued
//! meanwhile comes with the cross certificate after it, so that whoever trusts only the old
//! root still accepts it; a daemon that sees the bundle (from its host's authority, or on the
//! fabric) checks the cross certificate's signature and trusts the new root beside the old one.
//! At the retirement ([`Authority::finish`]) `previous/` and `cross.crt` are removed and
//! `ca.crt` is the new root alone; the daemons stop trusting the old root on the same clock.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use yard_auth::secret;
use yard_auth::tokens::write_private;

/// How long the root is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long an issued certificate is valid unless asked otherwise: short, and renewed before
/// it ends.
pub const CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How far before its issue a certificate's validity starts (for clocks a little behind).
pub const BACKDATE: Duration = Duration::from_secs(60);
/// How long a revocation list says it stands (a new one is made at every revocation).
pub const CRL_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest lifetime `issue` grants.
pub const MAX_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest overlap a rotation gives by default: time for every daemon to hear of the new
/// root and renew its certificate under it.
pub const MIN_OVERLAP: Duration = Duration::from_secs(300);
/// The shortest overlap a rotation may be asked for.
pub const MIN_ASKED_OVERLAP: Duration = Duration::from_secs(10);
/// The directory the old root's files move to during a rotation.
const PREVIOUS: &str = "previous";
/// The new root certified by the old one, during a rotation.
const CROSS: &str = "cross.crt";

/// Whom a certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subject {
    Center,
    Manager { cluster: String },
    Agent { cluster: String, agent: String },
    Node { name: String },
    Operator { name: String },
}

/// A subject that is not one of the five forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a subject: center, manager:CLUSTER, agent:CLUSTER/AGENT, node:NAME or operator:NAME"
)]
pub struct BadSubject(pub String);

/// A name inside a subject: letters, digits and `-_.`, 1 to 63 of them.
fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl std::str::FromStr for Subject {
    type Err = BadSubject;

    fn from_str(s: &str) -> Result<Subject, BadSubject> {
        let bad = || BadSubject(s.to_string());
        let subject = match s.split_once(':') {
            None if s == "center" => Subject::Center,
            Some(("manager", c)) => Subject::Manager {
                cluster: c.to_string(),
            },
            Some(("agent", rest)) => {
                let (c, a) = rest.split_once('/').ok_or_else(bad)?;
                Subject::Agent {
                    cluster: c.to_string(),
                    agent: a.to_string(),
                }
            }
            Some(("node", n)) => Subject::Node {
                name: n.to_string(),
            },
            Some(("operator", n)) => Subject::Operator {
                name: n.to_string(),
            },
            _ => return Err(bad()),
        };
        if subject.names().iter().all(|n| name_ok(n)) {
            Ok(subject)
        } else {
            Err(bad())
        }
    }
}

impl TryFrom<String> for Subject {
    type Error = BadSubject;
    fn try_from(s: String) -> Result<Subject, BadSubject> {
        s.parse()
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.to_string()
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Center => write!(f, "center"),
            Subject::Manager { cluster } => write!(f, "manager:{cluster}"),
            Subject::Agent { cluster, agent } => write!(f, "agent:{cluster}/{agent}"),
            Subject::Node { name } => write!(f, "node:{name}"),
            Subject::Operator { name } => write!(f, "operator:{name}"),
        }
    }
}

impl Subject {
    fn names(&self) -> Vec<&str> {
        match self {
            Subject::Center => vec![],
            Subject::Manager { cluster } => vec![cluster],
            Subject::Agent { cluster, agent } => vec![cluster, agent],
            Subject::Node { name } | Subject::Operator { name } => vec![name],
        }
    }

    /// The URI a certificate carries for this subject: `yard://manager/web`.
    pub fn uri(&self) -> String {
        format!("yard://{}", self.to_string().replacen(':', "/", 1))
    }

    /// The subject a certificate's URI names, if it is one.
    pub fn from_uri(uri: &str) -> Option<Subject> {
        let rest = uri.strip_prefix("yard://")?;
        let s = match rest.split_once('/') {
            Some((kind, name)) => format!("{kind}:{name}"),
            None => rest.to_string(),
        };
        s.parse().ok()
    }

    /// Whether this subject serves (a daemon, which listens) or only calls (an operator).
    fn serves(&self) -> bool {
        !matches!(self, Subject::Operator { .. })
    }
}

/// What went wrong with the authority.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("there is already a certificate authority in {0} (`yard ca show` describes it)")]
    Exists(PathBuf),
    #[error("no certificate authority in {0} (`yard ca init` makes one)")]
    Missing(PathBuf),
    #[error("{0}: {1}")]
    Corrupt(PathBuf, String),
    #[error("making a certificate: {0}")]
    Make(#[from] rcgen::Error),
    #[error("{0}")]
    Request(String),
    #[error(
        "a rotation is under way: the old root retires at {0} (Unix seconds); `yard ca rotate --finish` retires it now"
    )]
    Rotating(u64),
}

/// What a certificate is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub subject: Subject,
    /// The host names and addresses a serving certificate answers for.
    pub hosts: Vec<String>,
    pub lifetime: Duration,
}

/// A certificate just issued, with its private key (which the authority does not keep).
pub struct Issued {
    pub record: Record,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// One line of `issued.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Hex.
    pub serial: String,
    pub subject: Subject,
    pub hosts: Vec<String>,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    /// SHA-256 of the certificate's DER, hex.
    pub sha256: String,
    /// The fingerprint of the root that signed it (absent in records made before the first
    /// rotation: the first root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// One revoked certificate, in `revoked.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub serial: String,
    pub subject: Subject,
    /// Unix seconds.
    pub revoked_at: u64,
    /// Its own end of validity: once past, it need not stay listed.
    pub not_after: u64,
}

/// `revoked.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Revocations {
    /// The CRL number of the newest list made.
    pub crl_number: u64,
    pub revoked: Vec<Revoked>,
}

/// The authority, opened from its directory.
pub struct Authority {
    dir: PathBuf,
    name: String,
    /// `ca.crt` whole: the root, then during a rotation the old root and the cross certificate.
    trust_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
    /// During a rotation: the cross certificate (PEM) and when the old root retires.
    cross: Option<(String, u64)>,
}

/// What [`Authority::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The fingerprints of the old root and of the new one.
    pub old: String,
    pub new: String,
    /// When the old root retires, Unix seconds.
    pub retires_at: u64,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|e| CaError::Io(path.to_path_buf(), e))
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Switchyard");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens (a `*.` first label
/// allowed), 253 characters at most.
fn host_ok(h: &str) -> bool {
    let h = h.strip_prefix("*.").unwrap_or(h);
    h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// 16 random bytes, the top bit clear (a positive serial).
fn serial() -> Vec<u8> {
    let mut b = secret::random_bytes(16);
    b[0] &= 0x7f;
    b
}

impl Authority {
    /// Makes a new authority in `dir` (created 0700); refuses a directory that has one.
    pub fn init(dir: &Path, now: SystemTime) -> Result<Authority, CaError> {
        let io = |e| CaError::Io(dir.to_path_buf(), e);
        if dir.join("ca.key").exists() {
            return Err(CaError::Exists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let name = format!("Switchyard CA {}", secret::random_hex(4));
        let key = KeyPair::generate()?;
        let mut params = ca_params(&name);
        params.serial_number = Some(SerialNumber::from_slice(&serial()));
        params.not_before = now.into();
        params.not_after = (now + CA_LIFETIME).into();
        let cert = params.self_signed(&key)?;
        let put = |file: &str, text: &str, private: bool| {
            let path = dir.join(file);
            let r = if private {
                write_private(&path, text.as_bytes())
            } else {
                std::fs::write(&path, text)
            };
            r.map_err(|e| CaError::Io(path, e))
        };
        // The key first: a directory with a certificate and no key is not an authority.
        put("ca.key", &key.serialize_pem(), true)?;
        put("ca.name", &format!("{name}\n"), false)?;
        put("ca.crt", &cert.pem(), false)?;
        Authority::open(dir)
    }

    /// Opens the authority in `dir`.
    pub fn open(dir: &Path) -> Result<Authority, CaError> {
        if !dir.join("ca.key").exists() {
            return Err(CaError::Missing(dir.to_path_buf()));
        }
        let key_path = dir.join("ca.key");
        let key = KeyPair::from_pem(&read(&key_path)?)
            .map_err(|e| CaError::Corrupt(key_path.clone(), e.to_string()))?;
        let name = read(&dir.join("ca.name"))?.trim().to_string();
        let cert_path = dir.join("ca.crt");
        let trust_pem = read(&cert_path)?;
        let cert_der = crate::config::certs_from_pem(&trust_pem)
            .ok()
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| CaError::Corrupt(cert_path.clone(), "no certificate".into()))?
            .to_vec();
        let cross_path = dir.join(CROSS);
        let cross = match std::fs::read_to_string(&cross_path) {
            Ok(pem) => {
                let retires = crate::config::certs_from_pem(&pem)
                    .ok()
                    .and_then(|c| crate::der::validity(c.first()?).map(|v| v.1 + 1))
                    .ok_or_else(|| CaError::Corrupt(cross_path.clone(), "no certificate".into()))?;
                Some((pem, retires))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(CaError::Io(cross_path, e)),
        };
        Ok(Authority {
            dir: dir.to_path_buf(),
            name,
            trust_pem,
            cert_der,
            key,
            cross,
        })
    }

    /// Opens the authority in `dir`, making one first when there is none.
    pub fn open_or_init(dir: &Path, now: SystemTime) -> Result<Authority, CaError> {
        match Authority::open(dir) {
            Err(CaError::Missing(_)) => Authority::init(dir, now),
            other => other,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What every client and daemon trusts, PEM: the root (`ca.crt`); during a rotation, the
    /// bundle of the new root, the old root and the cross certificate.
    pub fn cert_pem(&self) -> &str {
        &self.trust_pem
    }

    /// During a rotation, when the old root retires (Unix seconds).
    pub fn retiring(&self) -> Option<u64> {
        self.cross.as_ref().map(|c| c.1)
    }

    /// The old root's authority (in `previous/`), during a rotation.
    fn previous(&self) -> Result<Option<Authority>, CaError> {
        if self.cross.is_none() {
            return Ok(None);
        }
        Authority::open(&self.dir.join(PREVIOUS)).map(Some)
    }

    /// SHA-256 of the root's DER, hex: what a join token carries so that a new host can check
    /// it reached the right authority.
    pub fn fingerprint(&self) -> String {
        secret::sha256_hex(&self.cert_der)
    }

    /// Signs a certificate for `req.subject` and a new key, valid from `now` for
    /// `req.lifetime`, and records it in `issued.jsonl`.
    pub fn issue(&self, req: &Request, now: SystemTime) -> Result<Issued, CaError> {
        let key = KeyPair::generate()?;
        let (record, cert_pem) = self.sign(req, &key, now)?;
        Ok(Issued {
            record,
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a certificate for `req.subject` and a key its holder made (and keeps), and
    /// records it: what a joining host is given.
    pub fn sign(
        &self,
        req: &Request,
        key: &impl rcgen::PublicKeyData,
        now: SystemTime,
    ) -> Result<(Record, String), CaError> {
        if req.lifetime.is_zero() || req.lifetime > MAX_CERT_LIFETIME {
            return Err(CaError::Request(format!(
                "a certificate lives 1 s to {} days, not {} s",
                MAX_CERT_LIFETIME.as_secs() / 86400,
                req.lifetime.as_secs()
            )));
        }
        if req.subject.serves() && req.hosts.is_empty() {
            return Err(CaError::Request(format!(
                "{} serves: name the hosts it answers for (names or addresses)",
                req.subject
            )));
        }
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.subject.to_string());
        dn.push(DnType::OrganizationName, "Switchyard");
        p.distinguished_name = dn;
        let mut sans =
            vec![SanType::URI(req.subject.uri().try_into().map_err(
                |e: rcgen::Error| CaError::Request(e.to_string()),
            )?)];
        for h in &req.hosts {
            sans.push(match h.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if !host_ok(h) => {
                    return Err(CaError::Request(format!("{h:?} is not a host name")))
                }
                Err(_) => SanType::DnsName(
                    h.as_str()
                        .try_into()
                        .map_err(|_| CaError::Request(format!("{h:?} is not a host name")))?,
                ),
            });
        }
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if req.subject.serves() {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        p.use_authority_key_identifier_extension = true;
        let serial = serial();
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        // A minute's slack for clocks a little behind.
        let start = now - BACKDATE;
        let end = now + req.lifetime;
        p.not_before = start.into();
        p.not_after = end.into();
        let issuer = Issuer::new(ca_params(&self.name), &self.key);
        let cert = p.signed_by(key, &issuer)?;
        let record = Record {
            serial: secret::hex(&serial),
            subject: req.subject.clone(),
            hosts: req.hosts.clone(),
            not_before: unix(start),
            not_after: unix(end),
            sha256: secret::sha256_hex(cert.der()),
            issuer: Some(self.fingerprint()),
        };
        self.append(&record)?;
        let mut pem = cert.pem();
        // During a rotation the chain goes on to the cross certificate, for whoever trusts
        // only the old root.
        if let Some((cross, retires)) = &self.cross {
            if unix(now) < *retires {
                pem.push_str(cross);
            }
        }
        Ok((record, pem))
    }

    fn append(&self, r: &Record) -> Result<(), CaError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("issued.jsonl");
        let line = serde_json::to_string(r).expect("a record serializes") + "\n";
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| CaError::Io(path, e))
    }

    /// The revocations made so far.
    pub fn revocations(&self) -> Result<Revocations, CaError> {
        let path = self.dir.join("revoked.json");
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| CaError::Corrupt(path, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Revocations::default()),
            Err(e) => Err(CaError::Io(path, e)),
        }
    }

    /// Revokes the certificates issued whose serial is `which`, or every one still valid for
    /// the subject `which`; writes `revoked.json` and a new `crl.der`. Returns those revoked
    /// now (none when all were already).
    pub fn revoke(&self, which: &str, now: SystemTime) -> Result<Vec<Record>, CaError> {
        let issued = self.issued()?;
        let by_subject = which.parse::<Subject>().ok();
        let t = unix(now);
        let found: Vec<Record> = issued
            .into_iter()
            .filter(|r| match &by_subject {
                Some(s) => &r.subject == s && r.not_after > t,
                None => r.serial.eq_ignore_ascii_case(which),
            })
            .collect();
        if found.is_empty() {
            return Err(CaError::Request(match by_subject {
                Some(s) => format!("no certificate of {s} is still valid (`yard cert list`)"),
                None => format!("no certificate with serial {which} (`yard cert list`)"),
            }));
        }
        let mut fresh = Vec::new();
        // Each root lists what it issued: during a rotation the old root's book is in
        // `previous/`.
        let previous = self.previous()?;
        let own = self.fingerprint();
        for ca in std::iter::once(self).chain(previous.as_ref()) {
            let mine = |r: &Record| match &previous {
                None => true,
                Some(_) => (r.issuer.as_deref() == Some(own.as_str())) == std::ptr::eq(ca, self),
            };
            let mut book = ca.revocations()?;
            let new: Vec<Record> = found
                .iter()
                .filter(|r| mine(r) && !book.revoked.iter().any(|x| x.serial == r.serial))
                .cloned()
                .collect();
            if new.is_empty() {
                continue;
            }
            book.revoked.extend(new.iter().map(|r| Revoked {
                serial: r.serial.clone(),
                subject: r.subject.clone(),
                revoked_at: t,
                not_after: r.not_after,
            }));
            ca.publish(&mut book, now)?;
            fresh.extend(new);
        }
        Ok(fresh)
    }

    /// Whether the certificate `serial` is revoked (by whichever root issued it).
    pub fn is_revoked(&self, serial: &str) -> Result<bool, CaError> {
        let listed = |ca: &Authority| -> Result<bool, CaError> {
            Ok(ca
                .revocations()?
                .revoked
                .iter()
                .any(|r| r.serial.eq_ignore_ascii_case(serial)))
        };
        Ok(listed(self)? || self.previous()?.map(|p| listed(&p)).transpose()? == Some(true))
    }

    /// The revocation lists in force, DER: this root's, and during a rotation the old root's.
    pub fn crls(&self, now: SystemTime) -> Result<Vec<Vec<u8>>, CaError> {
        let mut lists = vec![self.crl(now)?];
        if let Some(p) = self.previous()? {
            lists.push(p.crl(now)?);
        }
        Ok(lists)
    }

    /// Replaces the root (see the module's documentation). The old root retires after
    /// `overlap` (at least [`MIN_ASKED_OVERLAP`]), or by default when the last certificate it
    /// issued that is still good expires, and not sooner than [`MIN_OVERLAP`]. Refused while a
    /// rotation is under way.
    pub fn rotate(
        &mut self,
        overlap: Option<Duration>,
        now: SystemTime,
    ) -> Result<Rotation, CaError> {
        let t = unix(now);
        match self.cross {
            Some((_, retires)) if t < retires => return Err(CaError::Rotating(retires)),
            Some(_) => {
                self.finish()?;
            }
            None => {}
        }
        let retires_at = match overlap {
            Some(d) if d < MIN_ASKED_OVERLAP => {
                return Err(CaError::Request(format!(
                    "an overlap of at least {} s, for the daemons to hear of the new root",
                    MIN_ASKED_OVERLAP.as_secs()
                )))
            }
            Some(d) => t + d.as_secs(),
            None => {
                let book = self.revocations()?;
                self.issued()?
                    .iter()
                    .filter(|r| {
                        r.not_after > t && !book.revoked.iter().any(|x| x.serial == r.serial)
                    })
                    .map(|r| r.not_after + BACKDATE.as_secs())
                    .max()
                    .unwrap_or(0)
                    .max(t + MIN_OVERLAP.as_secs())
            }
        };
        let io = |p: &Path, e| CaError::Io(p.to_path_buf(), e);
        let old_pem = crate::config::pem_of(&self.cert_der);
        // The new root, and its name and key certified by the old root until it retires.
        let name = format!("Switchyard CA {}", secret::random_hex(4));
        let key = KeyPair::generate()?;
        let mut params = ca_params(&name);
        params.serial_number = Some(SerialNumber::from_slice(&serial()));
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_LIFETIME).into();
        let root = params.self_signed(&key)?;
        let mut params = ca_params(&name);
        params.serial_number = Some(SerialNumber::from_slice(&serial()));
        params.not_before = (now - BACKDATE).into();
        // Its last valid second is the one before the retirement.
        params.not_after = (SystemTime::UNIX_EPOCH + Duration::from_secs(retires_at - 1)).into();
        let cross = params.signed_by(&key, &Issuer::new(ca_params(&self.name), &self.key))?;
        // The old root's files become `previous/`, an authority of their own (its list made
        // first, so that it moves with them).
        self.crl(now)?;
        let previous = self.dir.join(PREVIOUS);
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| io(&previous, e))?;
        }
        std::fs::create_dir(&previous).map_err(|e| io(&previous, e))?;
        for file in ["ca.key", "ca.name", "revoked.json", "crl.der"] {
            let (from, to) = (self.dir.join(file), previous.join(file));
            let bytes = std::fs::read(&from).map_err(|e| io(&from, e))?;
            write_private(&to, &bytes).map_err(|e| io(&to, e))?;
        }
        write_public(&previous.join("ca.crt"), old_pem.as_bytes()).map_err(|e| io(&previous, e))?;
        // Then the new root's, the key first (see `init`), the bundle last.
        let put = |file: &str, bytes: &[u8], private: bool| {
            let path = self.dir.join(file);
            let r = if private {
                write_private(&path, bytes)
            } else {
                write_public(&path, bytes)
            };
            r.map_err(|e| io(&path, e))
        };
        put("ca.key", key.serialize_pem().as_bytes(), true)?;
        put("ca.name", format!("{name}\n").as_bytes(), false)?;
        put(CROSS, cross.pem().as_bytes(), false)?;
        for file in ["revoked.json", "crl.der"] {
            let path = self.dir.join(file);
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
        let bundle = format!("{}{old_pem}{}", root.pem(), cross.pem());
        put("ca.crt", bundle.as_bytes(), false)?;
        let old = self.fingerprint();
        *self = Authority::open(&self.dir)?;
        // The new root's list, empty.
        self.crl(now)?;
        Ok(Rotation {
            old,
            new: self.fingerprint(),
            retires_at,
        })
    }

    /// Ends a rotation now: the old root's files and the cross certificate are removed and
    /// `ca.crt` is the new root alone. Certificates the old root issued are no longer good
    /// anywhere once the daemons' clocks reach the retirement (or they see the bundle without
    /// the old root). Returns whether there was a rotation to end.
    pub fn finish(&mut self) -> Result<bool, CaError> {
        if self.cross.is_none() {
            return Ok(false);
        }
        let path = self.dir.join("ca.crt");
        let root = crate::config::pem_of(&self.cert_der);
        write_public(&path, root.as_bytes()).map_err(|e| CaError::Io(path, e))?;
        for p in [self.dir.join(CROSS), self.dir.join(PREVIOUS)] {
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CaError::Io(p, e)),
            }
        }
        *self = Authority::open(&self.dir)?;
        Ok(true)
    }

    /// Ends the rotation when its old root's time is up; returns whether it did.
    pub fn finish_if_due(&mut self, now: SystemTime) -> Result<bool, CaError> {
        match self.cross {
            Some((_, retires)) if unix(now) >= retires => self.finish(),
            _ => Ok(false),
        }
    }

    /// The revocation list in force, DER (made, empty, on first use).
    pub fn crl(&self, now: SystemTime) -> Result<Vec<u8>, CaError> {
        let path = self.dir.join("crl.der");
        match std::fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut book = self.revocations()?;
                self.publish(&mut book, now)?;
                std::fs::read(&path).map_err(|e| CaError::Io(path, e))
            }
            Err(e) => Err(CaError::Io(path, e)),
        }
    }

    /// Signs a new list of `book` (entries whose certificate has expired are dropped: no
    /// handshake accepts them anyway), under the next CRL number; writes it and the book.
    fn publish(&self, book: &mut Revocations, now: SystemTime) -> Result<(), CaError> {
        let t = unix(now);
        book.revoked.retain(|r| r.not_after + 3600 > t);
        book.crl_number += 1;
        let at = |s: u64| -> time::OffsetDateTime {
            (SystemTime::UNIX_EPOCH + Duration::from_secs(s)).into()
        };
        let mut revoked_certs = Vec::new();
        for r in &book.revoked {
            let serial = secret::unhex(&r.serial).ok_or_else(|| {
                CaError::Corrupt(
                    self.dir.join("revoked.json"),
                    format!("serial {}", r.serial),
                )
            })?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at(r.revoked_at),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: at(t),
            next_update: at(t + CRL_LIFETIME.as_secs()),
            crl_number: SerialNumber::from(book.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = Issuer::new(ca_params(&self.name), &self.key);
        let crl = params.signed_by(&issuer)?;
        let put = |file: &str, bytes: &[u8]| {
            let path = self.dir.join(file);
            write_private(&path, bytes).map_err(|e| CaError::Io(path, e))
        };
        put(
            "revoked.json",
            serde_json::to_string_pretty(book)
                .expect("revocations serialize")
                .as_bytes(),
        )?;
        put("crl.der", crl.der())
    }

    /// Every certificate issued, oldest first.
    pub fn issued(&self) -> Result<Vec<Record>, CaError> {
        let path = self.dir.join("issued.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(CaError::Io(path, e)),
        };
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| CaError::Corrupt(path.clone(), format!("line {}: {e}", i + 1)))
            })
            .collect()
    }
}

/// Writes a file others may read, whole: a new file renamed over the old one.
pub fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", secret::random_hex(6)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Replaces a certificate and its key (0600), each file whole: a renewal rewrites them under a
/// running daemon, which reloads them (the key first, so that a reader that sees the new
/// certificate finds its key).
pub fn replace_identity(
    cert: &Path,
    key: &Path,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), CaError> {
    write_private(key, key_pem.as_bytes()).map_err(|e| CaError::Io(key.to_path_buf(), e))?;
    write_public(cert, cert_pem.as_bytes()).map_err(|e| CaError::Io(cert.to_path_buf(), e))
}

/// Writes an issued certificate and its key as `DIR/NAME.crt` and `DIR/NAME.key` (0600), with
/// the root beside them as `DIR/ca.crt`.
pub fn write_identity(
    dir: &Path,
    name: &str,
    issued: &Issued,
    ca_pem: &str,
) -> Result<(PathBuf, PathBuf), CaError> {
    std::fs::create_dir_all(dir).map_err(|e| CaError::Io(dir.to_path_buf(), e))?;
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    replace_identity(&cert, &key, &issued.cert_pem, &issued.key_pem)?;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, ca_pem).map_err(|e| CaError::Io(ca, e))?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_through_text_and_uris_and_bad_ones_say_the_forms() {
        for s in [
            "center",
            "manager:web",
            "agent:web/agent-1",
            "node:n1",
            "operator:ada",
        ] {
            let subject: Subject = s.parse().unwrap();
            assert_eq!(subject.to_string(), s);
            assert_eq!(Subject::from_uri(&subject.uri()), Some(subject));
        }
        assert_eq!(
            "agent:web/agent-1".parse::<Subject>().unwrap().uri(),
            "yard://agent/web/agent-1"
        );
        for bad in [
            "",
            "centre",
            "manager:",
            "agent:web",
            "agent:web/a/b",
            "operator:a b",
            "node:x:y",
        ] {
            let e = bad.parse::<Subject>().unwrap_err();
            assert!(e.to_string().contains("manager:CLUSTER"), "{bad:?}: {e}");
        }
        assert_eq!(Subject::from_uri("https://manager/web"), None);
    }

    #[test]
    fn an_authority_is_made_once_kept_private_and_opened_again() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = yard_testkit::TempDir::new("ca");
        let dir = tmp.join("ca");
        let now = SystemTime::now();
        let ca = Authority::init(&dir, now).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert!(matches!(
            Authority::init(&dir, now),
            Err(CaError::Exists(_))
        ));
        let again = Authority::open(&dir).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        assert_eq!(again.name(), ca.name());
        assert!(matches!(
            Authority::open(&tmp.join("none")),
            Err(CaError::Missing(_))
        ));
        let text = format!("{ca:?}");
        assert!(!text.contains("PRIVATE"), "{text}");
    }

    #[test]
    fn issued_certificates_are_recorded_and_requests_out_of_bounds_refused() {
        let tmp = yard_testkit::TempDir::new("issue");
        let now = SystemTime::now();
        let ca = Authority::init(&tmp.join("ca"), now).unwrap();
        let req = |subject: &str, hosts: &[&str], lifetime: Duration| Request {
            subject: subject.parse().unwrap(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            lifetime,
        };
        let a = ca
            .issue(
                &req("agent:web/a1", &["10.0.0.2", "a1.example"], CERT_LIFETIME),
                now,
            )
            .unwrap();
        let b = ca
            .issue(&req("operator:ada", &[], CERT_LIFETIME), now)
            .unwrap();
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.key_pem.contains("PRIVATE KEY"));
        assert_ne!(a.record.serial, b.record.serial);
        assert_eq!(a.record.not_after, unix(now) + CERT_LIFETIME.as_secs());
        assert_eq!(
            ca.issued().unwrap(),
            vec![a.record.clone(), b.record.clone()]
        );
        assert!(!format!("{a:?}").contains("PRIVATE"));
        for (r, why) in [
            (req("center", &[], CERT_LIFETIME), "name the hosts"),
            (req("center", &["h"], Duration::ZERO), "lives"),
            (req("center", &["h"], MAX_CERT_LIFETIME * 2), "lives"),
            (
                req("center", &["bad host!"], CERT_LIFETIME),
                "not a host name",
            ),
        ] {
            let e = ca.issue(&r, now).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn a_rotation_keeps_the_old_root_until_its_certificates_end_and_only_one_runs_at_a_time() {
        let tmp = yard_testkit::TempDir::new("rotate");
        let dir = tmp.join("ca");
        let now = SystemTime::now();
        let mut ca = Authority::init(&dir, now).unwrap();
        let req = |subject: &str, lifetime: Duration| Request {
            subject: subject.parse().unwrap(),
            hosts: vec!["h".into()],
            lifetime,
        };
        let long = ca.issue(&req("node:n1", 3 * CERT_LIFETIME), now).unwrap();
        let short = ca.issue(&req("node:n2", CERT_LIFETIME), now).unwrap();
        ca.revoke(&long.record.serial, now).unwrap();
        let old = ca.fingerprint();
        assert!(!ca.finish().unwrap(), "nothing to finish");

        // By default the old root stays until its last good certificate ends (the revoked
        // one does not count).
        let r = ca.rotate(None, now).unwrap();
        assert_eq!(r.old, old);
        assert_eq!(r.new, ca.fingerprint());
        assert_eq!(r.retires_at, short.record.not_after + BACKDATE.as_secs());
        assert_eq!(ca.retiring(), Some(r.retires_at));
        let bundle = crate::config::certs_from_pem(ca.cert_pem()).unwrap();
        assert_eq!(bundle.len(), 3, "new root, old root, cross certificate");
        assert_eq!(secret::sha256_hex(&bundle[1]), old);
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir.join("previous").join("ca.key")), 0o600);
        // Opened again, it is the same rotation.
        let again = Authority::open(&dir).unwrap();
        assert_eq!(
            (again.fingerprint(), again.retiring()),
            (r.new.clone(), Some(r.retires_at))
        );

        // What it issues now names the new root and carries the cross certificate.
        let fresh = ca.issue(&req("node:n3", CERT_LIFETIME), now).unwrap();
        assert_eq!(fresh.record.issuer.as_deref(), Some(r.new.as_str()));
        assert_eq!(
            crate::config::certs_from_pem(&fresh.cert_pem)
                .unwrap()
                .len(),
            2
        );
        // Each revocation goes to the list of the root that issued the certificate.
        ca.revoke(&short.record.serial, now).unwrap();
        ca.revoke(&fresh.record.serial, now).unwrap();
        let previous = Authority::open(&dir.join("previous")).unwrap();
        let listed = |ca: &Authority| -> Vec<String> {
            ca.revocations()
                .unwrap()
                .revoked
                .into_iter()
                .map(|r| r.serial)
                .collect()
        };
        assert_eq!(
            listed(&previous),
            vec![long.record.serial.clone(), short.record.serial.clone()]
        );
        assert_eq!(listed(&ca), vec![fresh.record.serial.clone()]);
        assert!(ca.is_revoked(&long.record.serial).unwrap());
        assert_eq!(ca.crls(now).unwrap().len(), 2);

        // One rotation at a time; an explicit overlap; the end of it.
        let e = ca.rotate(None, now).unwrap_err();
        assert!(
            matches!(e, CaError::Rotating(t) if t == r.retires_at),
            "{e}"
        );
        assert!(!ca.finish_if_due(now).unwrap());
        assert!(ca
            .finish_if_due(SystemTime::UNIX_EPOCH + Duration::from_secs(r.retires_at))
            .unwrap());
        assert_eq!(ca.retiring(), None);
        assert_eq!(
            crate::config::certs_from_pem(ca.cert_pem()).unwrap().len(),
            1
        );
        assert!(!dir.join("previous").exists() && !dir.join("cross.crt").exists());
        assert_eq!(
            crate::config::certs_from_pem(
                &ca.issue(&req("node:n4", CERT_LIFETIME), now)
                    .unwrap()
                    .cert_pem
            )
            .unwrap()
            .len(),
            1
        );
        assert!(ca.rotate(Some(Duration::from_secs(9)), now).is_err());
        let r2 = ca.rotate(Some(Duration::from_secs(60)), now).unwrap();
        assert_eq!(r2.retires_at, unix(now) + 60);
        assert_eq!(r2.old, r.new);
    }
}
