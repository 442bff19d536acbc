//! Local accounts: whom a task or a node runs as.

use std::ffi::CString;

/// A local account, as `getpwnam` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up by name.
pub fn lookup(name: &str) -> Result<Account, String> {
    let c = CString::new(name).map_err(|_| format!("user {name:?}: a NUL byte"))?;
    // SAFETY: getpwnam_r fills `pw` and points its strings into `buf`, which outlives it.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let r =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if r != 0 || found.is_null() {
        return Err(format!("no user {name:?} on this host"));
    }
    Ok(Account {
        name: name.to_string(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_and_nobody_are_found_and_strangers_are_not() {
        assert_eq!(super::lookup("root").unwrap().uid, 0);
        assert_ne!(super::lookup("nobody").unwrap().uid, 0);
        let e = super::lookup("no-such-user-here").unwrap_err();
        assert!(e.contains("no user"), "{e}");
    }
}
