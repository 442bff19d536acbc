//! One-time login codes: what the link `yard up` prints carries. A code is good once, for a
//! short time, for one role; the dashboard trades it (`POST /v1/login`) for a token of its own
//! that the registry keeps, names and can revoke. Codes are held as SHA-256 digests in memory
//! only (a restart forgets them) and compared in constant time; at most [`MAX_CODES`] wait at
//! once (minting one more forgets the oldest).

use crate::policy::Role;
use crate::secret;

/// Codes waiting at most.
pub const MAX_CODES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Waiting {
    digest: String,
    role: Role,
    expires_ms: u64,
}

/// Why a code was not taken (the page shows it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("this login code is unknown or was used already: run `yard login-link` for a new one")]
    Unknown,
    #[error("this login code expired: run `yard login-link` for a new one")]
    Expired,
}

/// The codes not yet used.
#[derive(Debug, Default)]
pub struct Logins {
    waiting: Vec<Waiting>,
}

impl Logins {
    /// A new code for `role`, good until `expires_ms`.
    pub fn mint(&mut self, role: Role, expires_ms: u64) -> String {
        let code = secret::random_hex(20);
        self.insert(&code, role, expires_ms);
        code
    }

    fn insert(&mut self, code: &str, role: Role, expires_ms: u64) {
        if self.waiting.len() >= MAX_CODES {
            self.waiting.remove(0);
        }
        self.waiting.push(Waiting {
            digest: secret::sha256_hex(code.as_bytes()),
            role,
            expires_ms,
        });
    }

    /// Takes `code` at `now_ms`: its role, once. An expired code is forgotten too.
    pub fn redeem(&mut self, code: &str, now_ms: u64) -> Result<Role, LoginError> {
        let digest = secret::sha256_hex(code.as_bytes());
        // Every entry is compared, so the time taken does not say which one matched.
        let mut found = None;
        for (i, w) in self.waiting.iter().enumerate() {
            if secret::ct_eq(w.digest.as_bytes(), digest.as_bytes()) {
                found = Some(i);
            }
        }
        let w = self.waiting.remove(found.ok_or(LoginError::Unknown)?);
        self.waiting.retain(|w| w.expires_ms > now_ms);
        if w.expires_ms <= now_ms {
            return Err(LoginError::Expired);
        }
        Ok(w.role)
    }

    /// Codes waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_good_once_for_its_role() {
        let mut l = Logins::default();
        let code = l.mint(Role::Operator, 1_000);
        assert_eq!(code.len(), 40);
        assert_eq!(l.redeem(&code, 999), Ok(Role::Operator));
        assert_eq!(l.redeem(&code, 999), Err(LoginError::Unknown));
        assert!(l.is_empty());
    }

    #[test]
    fn an_expired_code_is_refused_and_forgotten() {
        let mut l = Logins::default();
        l.insert("old", Role::Admin, 1_000);
        l.insert("new", Role::Viewer, 5_000);
        assert_eq!(l.redeem("old", 1_000), Err(LoginError::Expired));
        assert_eq!(l.redeem("old", 1_000), Err(LoginError::Unknown));
        assert_eq!(l.redeem("wrong", 1_000), Err(LoginError::Unknown));
        assert_eq!(l.redeem("new", 1_000), Ok(Role::Viewer));
    }

    #[test]
    fn at_most_max_codes_wait_and_the_oldest_goes_first() {
        let mut l = Logins::default();
        l.insert("first", Role::Admin, u64::MAX);
        for i in 0..MAX_CODES {
            l.insert(&format!("c{i}"), Role::Viewer, u64::MAX);
        }
        assert_eq!(l.len(), MAX_CODES);
        assert_eq!(l.redeem("first", 0), Err(LoginError::Unknown));
        assert_eq!(l.redeem("c0", 0), Ok(Role::Viewer));
    }
}
