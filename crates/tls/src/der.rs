//! What a daemon reads from a certificate it already trusts (one the handshake checked against
//! the cluster's root, or its own): the serial, the validity and the principal its URI names.
//! A minimal DER walk over the fields RFC 5280 puts first in `tbsCertificate`; anything it does
//! not expect is `None`, never a panic.
//!
//! And what it checks in something it does not yet trust, a root cross-signed by the one it
//! holds or a revocation list of one of its roots: [`signed_by`] verifies a certificate's or a
//! list's signature with an issuer's public key.

use crate::ca::Subject;

/// One DER element: its tag, its contents, and what follows it.
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &x| (l << 8) | x as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// One DER element whole (tag, length and contents), with its tag, and what follows it.
fn whole(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, _, rest) = element(b)?;
    Some((tag, &b[..b.len() - rest.len()], rest))
}

/// The fields of `tbsCertificate` up to the subject's public key.
struct Tbs<'a> {
    serial: &'a [u8],
    validity: &'a [u8],
    /// Whole `Name` elements.
    issuer: &'a [u8],
    subject: &'a [u8],
    /// The contents of `SubjectPublicKeyInfo`.
    spki: &'a [u8],
}

fn tbs(cert: &[u8]) -> Option<Tbs<'_>> {
    let (0x30, cert, _) = element(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = element(cert)? else {
        return None;
    };
    let (mut tag, mut field, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        // [0] EXPLICIT version.
        (tag, field, rest) = element(rest)?;
    }
    if tag != 0x02 {
        return None;
    }
    let serial = field;
    let (_, _, rest) = element(rest)?; // signature algorithm
    let (0x30, issuer, rest) = whole(rest)? else {
        return None;
    };
    let (0x30, validity, rest) = element(rest)? else {
        return None;
    };
    let (0x30, subject, rest) = whole(rest)? else {
        return None;
    };
    let (0x30, spki, _) = element(rest)? else {
        return None;
    };
    Some(Tbs {
        serial,
        validity,
        issuer,
        subject,
        spki,
    })
}

/// The issuer's and the subject's names (whole DER elements): equal in a self-signed root.
pub fn names(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    let t = tbs(cert)?;
    Some((t.issuer, t.subject))
}

/// The subject's public key: its algorithm identifier (contents) and the key's bits.
pub fn public_key(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, alg, rest) = element(tbs(cert)?.spki)? else {
        return None;
    };
    let (0x03, bits, _) = element(rest)? else {
        return None;
    };
    // A key's BIT STRING has no unused bits.
    let ([0], key) = bits.split_at_checked(1)? else {
        return None;
    };
    Some((alg, key))
}

/// A signed object (a certificate or a revocation list): the signed part whole, the signature
/// algorithm's identifier (contents) and the signature.
fn signed(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (0x30, outer, _) = element(der)? else {
        return None;
    };
    let (0x30, signed, rest) = whole(outer)? else {
        return None;
    };
    let (0x30, alg, rest) = element(rest)? else {
        return None;
    };
    let (0x03, bits, _) = element(rest)? else {
        return None;
    };
    let ([0], signature) = bits.split_at_checked(1)? else {
        return None;
    };
    Some((signed, alg, signature))
}

/// The issuer (a whole `Name`) of a revocation list: its `tbsCertList` starts with an optional
/// version, the signature algorithm and the issuer.
pub fn crl_issuer(crl: &[u8]) -> Option<&[u8]> {
    let (signed, _, _) = signed(crl)?;
    let (0x30, tbs, _) = element(signed)? else {
        return None;
    };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == 0x02 {
        (_, _, rest) = element(rest)?; // signature algorithm, after the version
    }
    let (0x30, issuer, _) = whole(rest)? else {
        return None;
    };
    Some(issuer)
}

/// Whether `der` (a certificate or a revocation list) carries a good signature by the key of
/// the certificate `issuer`, with one of `provider`'s algorithms. Whether the names match is the
/// caller's to check.
pub fn signed_by(provider: &rustls::crypto::CryptoProvider, der: &[u8], issuer: &[u8]) -> bool {
    let (Some((message, alg, signature)), Some((key_alg, key))) = (signed(der), public_key(issuer))
    else {
        return false;
    };
    provider
        .signature_verification_algorithms
        .all
        .iter()
        .filter(|a| {
            a.signature_alg_id().as_ref() == alg && a.public_key_alg_id().as_ref() == key_alg
        })
        .any(|a| a.verify_signature(key, message, signature).is_ok())
}

/// The serial number, lowercase hex without the sign byte DER may add (as `issued.jsonl` and
/// `yard cert list` write it).
pub fn serial_hex(cert: &[u8]) -> Option<String> {
    let s = tbs(cert)?.serial;
    let s = match s {
        [0, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    };
    Some(s.iter().map(|b| format!("{b:02x}")).collect())
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as Unix seconds.
fn time(tag: u8, t: &[u8]) -> Option<u64> {
    let t = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if t.len() == 12 => {
            let yy: i32 = t[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &t[2..])
        }
        0x18 if t.len() == 14 => (t[..4].parse().ok()?, &t[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<u8>().ok();
    let month = time::Month::try_from(n(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, n(2)?).ok()?;
    let at = date.with_hms(n(4)?, n(6)?, n(8)?).ok()?.assume_utc();
    u64::try_from(at.unix_timestamp()).ok()
}

/// `(not_before, not_after)`, Unix seconds.
pub fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    let v = tbs(cert)?.validity;
    let (t1, a, rest) = element(v)?;
    let (t2, b, _) = element(rest)?;
    Some((time(t1, a)?, time(t2, b)?))
}

/// The principal a certificate of this authority names: its one `yard://` URI (a subject
/// alternative name, context tag 6).
pub fn subject(cert: &[u8]) -> Option<Subject> {
    const URI: &[u8] = b"yard://";
    let mut i = 0;
    while i + 2 < cert.len() {
        if cert[i] == 0x86 {
            let len = cert[i + 1] as usize;
            if let Some(v) = cert.get(i + 2..i + 2 + len).filter(|v| v.starts_with(URI)) {
                return std::str::from_utf8(v).ok().and_then(Subject::from_uri);
            }
        }
        i += 1;
    }
    None
}

/// The CRL number of a revocation list (extension 2.5.29.20), read from a list whose signature
/// was checked (the authority writes it once, in its extensions).
pub fn crl_number(crl: &[u8]) -> Option<u64> {
    const OID: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x14];
    let at = crl.windows(OID.len()).position(|w| w == OID)? + OID.len();
    let (tag, octets, _) = element(&crl[at..])?;
    let octets = if tag == 0x01 {
        // `critical` BOOLEAN before the value.
        let (_, _, rest) = element(&crl[at..])?;
        let (0x04, o, _) = element(rest)? else {
            return None;
        };
        o
    } else if tag == 0x04 {
        octets
    } else {
        return None;
    };
    let (0x02, n, _) = element(octets)? else {
        return None;
    };
    if n.is_empty() || n.len() > 9 || (n.len() == 9 && n[0] != 0) {
        return None;
    }
    Some(n.iter().fold(0u64, |v, &b| (v << 8) | b as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Authority, Request};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_certificate_tells_its_serial_validity_and_principal_and_garbage_tells_nothing() {
        let tmp = yard_testkit::TempDir::new("der");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = Authority::init(&tmp.join("ca"), now).unwrap();
        let issued = ca
            .issue(
                &Request {
                    subject: "agent:web/a1".parse().unwrap(),
                    hosts: vec!["10.0.0.2".into()],
                    lifetime: Duration::from_secs(3600),
                },
                now,
            )
            .unwrap();
        let der = crate::config::certs_from_pem(&issued.cert_pem).unwrap()[0].to_vec();
        assert_eq!(serial_hex(&der).unwrap(), issued.record.serial);
        assert_eq!(
            validity(&der),
            Some((issued.record.not_before, issued.record.not_after))
        );
        assert_eq!(subject(&der), Some("agent:web/a1".parse().unwrap()));
        let root = crate::config::certs_from_pem(ca.cert_pem()).unwrap()[0].to_vec();
        assert_eq!(subject(&root), None, "the root names no principal");
        for bad in [
            &[][..],
            &[0x30, 0x85, 1, 2][..],
            &der[..der.len() / 3],
            b"yard://x",
        ] {
            assert!(serial_hex(bad).is_none(), "{bad:?}");
            assert_eq!(validity(bad), None);
        }
        // Signatures: the root's over the certificate and over its list; not another root's,
        // not over a changed byte, never on garbage.
        let provider = crate::config::provider();
        let crl = ca.crl(now).unwrap();
        assert!(signed_by(&provider, &der, &root));
        assert!(signed_by(&provider, &crl, &root));
        assert_eq!(crl_issuer(&crl), names(&root).map(|n| n.1));
        assert_eq!(names(&der).map(|n| n.0), names(&root).map(|n| n.1));
        let other = Authority::init(&tmp.join("other"), now).unwrap();
        let other_root = crate::config::certs_from_pem(other.cert_pem()).unwrap()[0].to_vec();
        assert!(!signed_by(&provider, &der, &other_root));
        let mut changed = der.clone();
        let i = changed.len() / 2;
        changed[i] ^= 1;
        assert!(!signed_by(&provider, &changed, &root));
        for bad in [
            &[][..],
            &[0x30, 0x85, 1, 2][..],
            &crl[..crl.len() / 2],
            b"garbage",
        ] {
            assert!(!signed_by(&provider, bad, &root), "{bad:?}");
            assert!(!signed_by(&provider, &der, bad));
            assert_eq!(crl_issuer(bad), None);
            assert_eq!(names(bad), None);
            assert_eq!(public_key(bad), None);
        }
        assert_eq!(time(0x18, b"20991231235959Z"), Some(4_102_444_799));
        assert_eq!(time(0x17, b"991231235959Z"), Some(946_684_799));
        assert_eq!(time(0x17, b"9912312359Z"), None);
    }
}
