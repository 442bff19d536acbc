//! Local accounts: whom a task or a node runs as.

use std::ffi::CString;

/// A local account, as `getpwnam` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Why a process cannot run as the account it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("user {0:?}: a NUL byte")]
    Nul(String),
    #[error("no user {0:?} on this host")]
    Unknown(String),
    #[error("the {what} names no user ({hint})")]
    Unnamed { what: String, hint: String },
    #[error(
        "the {what} would run as {name} (uid 0): this agent runs {what}s as root only with {ask}"
    )]
    RootNotAllowed {
        what: String,
        name: String,
        ask: String,
    },
    #[error("the agent runs as uid {supervisor} and cannot switch to {name} (uid {uid})")]
    CannotSwitch {
        supervisor: u32,
        name: String,
        uid: u32,
    },
}

impl From<AccountError> for String {
    fn from(e: AccountError) -> String {
        e.to_string()
    }
}

/// Looks a user up by name.
pub fn lookup(name: &str) -> Result<Account, AccountError> {
    let c = CString::new(name).map_err(|_| AccountError::Nul(name.to_string()))?;
    // SAFETY: getpwnam_r fills `pw` and points its strings into `buf`, which outlives it.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let r =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if r != 0 || found.is_null() {
        return Err(AccountError::Unknown(name.to_string()));
    }
    Ok(Account {
        name: name.to_string(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// The euid of this process.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Whom a `what` ("task", "node") that names the account `name` runs as, as Mesos's
/// `--switch_user` decides. A supervisor running as root switches to that account, and to root
/// itself only when allowed (`ask` names the flag that allows it); a supervisor running as
/// anyone else runs everything as itself and refuses a spec naming another account.
/// `Ok(None)`: as the supervisor itself.
pub fn run_as(
    what: &str,
    name: &str,
    supervisor_uid: u32,
    allow_root: bool,
    ask: &str,
    lookup: impl Fn(&str) -> Result<Account, AccountError>,
) -> Result<Option<Account>, AccountError> {
    let account = lookup(name)?;
    if account.uid == 0 && !allow_root {
        return Err(AccountError::RootNotAllowed {
            what: what.to_string(),
            name: name.to_string(),
            ask: ask.to_string(),
        });
    }
    if supervisor_uid != 0 {
        return if account.uid == supervisor_uid {
            Ok(None)
        } else {
            Err(AccountError::CannotSwitch {
                supervisor: supervisor_uid,
                name: name.to_string(),
                uid: account.uid,
            })
        };
    }
    Ok(Some(account))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(name: &str) -> Result<Account, AccountError> {
        let uid = match name {
            "root" => 0,
            "nobody" => 65534,
            "me" => 1000,
            _ => return Err(AccountError::Unknown(name.to_string())),
        };
        Ok(Account {
            name: name.into(),
            uid,
            gid: uid,
        })
    }

    #[test]
    fn root_switches_to_the_account_named_and_to_root_only_when_allowed() {
        let nobody = run_as("node", "nobody", 0, false, "--x", fake).unwrap();
        assert_eq!(nobody.map(|a| a.uid), Some(65534));
        let e = run_as("node", "root", 0, false, "--allow-root-nodes", fake).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the node would run as root (uid 0): this agent runs nodes as root only with --allow-root-nodes"
        );
        assert_eq!(
            run_as("node", "root", 0, true, "--x", fake)
                .unwrap()
                .map(|a| a.uid),
            Some(0)
        );
        // Another supervisor runs its own account's processes as itself, and nobody else's.
        assert_eq!(run_as("task", "me", 1000, false, "--x", fake), Ok(None));
        let e = run_as("task", "nobody", 1000, false, "--x", fake).unwrap_err();
        assert_eq!(
            e,
            AccountError::CannotSwitch {
                supervisor: 1000,
                name: "nobody".into(),
                uid: 65534
            }
        );
        assert!(run_as("task", "ghost", 0, true, "--x", fake).is_err());
    }

    #[test]
    fn root_and_nobody_are_found_and_strangers_are_not() {
        assert_eq!(super::lookup("root").unwrap().uid, 0);
        assert_ne!(super::lookup("nobody").unwrap().uid, 0);
        let e = super::lookup("no-such-user-here").unwrap_err();
        assert_eq!(e, AccountError::Unknown("no-such-user-here".into()));
    }
}
