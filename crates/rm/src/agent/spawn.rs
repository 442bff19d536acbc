//! Starting task processes without copying the agent: `clone(CLONE_VM | CLONE_VFORK)`, the way
//! `posix_spawn` works, with what it cannot do (a new session, joining the container's cgroups,
//! a parent-death signal) done in the child before `execve`. A `fork` copies the agent's page
//! tables and then takes a copy-on-write fault for every page either side touches; at hundreds
//! of launches a second that was the largest cost of a launch (see docs/BENCHMARKS.md).
//!
//! The child shares the agent's memory while the calling thread is suspended (until the exec
//! or the exit), so it touches nothing but its own stack and data prepared beforehand, and
//! makes only raw system calls: no allocation, no lock. Signals are blocked around the clone,
//! and the child sets every handled signal back to its default before unblocking them, so no
//! handler of the agent ever runs in it. The process is awaited through a pidfd.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;

const CHILD_STACK: usize = 64 * 1024;
const P_PIDFD: libc::idtype_t = 3;

/// What to start.
pub struct Command {
    pub program: PathBuf,
    /// argv, `argv[0]` included.
    pub args: Vec<OsString>,
    /// The whole environment.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub stdout: std::fs::File,
    pub stderr: std::fs::File,
    /// `cgroup.procs` files the child writes `0` to.
    pub cgroup_fds: Vec<RawFd>,
    /// The account to run as (after joining the cgroups); `None` keeps the agent's.
    pub user: Option<Account>,
}

pub use yard_auth::account::{lookup as lookup_user, Account};

/// A started process, in its own session.
pub struct Process {
    pub pid: u32,
    pidfd: AsyncFd<OwnedFd>,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command"))
}

/// Finds `program` in the `PATH` of `env` unless it names a path.
pub fn resolve(program: &OsStr, env: &[(OsString, OsString)]) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
}

/// Everything the child reads, prepared by the parent.
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    cgroups: *const RawFd,
    ncgroups: usize,
    error_pipe: RawFd,
    mask: *const libc::sigset_t,
    /// Switch to this uid and gid (supplementary groups dropped) when `switch` is set.
    switch: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: runs between clone and execve on its own stack; `arg` points at a ChildArgs the
    // suspended parent keeps alive; only async-signal-safe system calls follow.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |step: i32| -> ! {
            let err = [step, *libc::__errno_location()];
            libc::write(a.error_pipe, err.as_ptr().cast(), 8);
            libc::_exit(127)
        };
        // Handlers back to their defaults (ignored signals stay ignored, SIGPIPE excepted).
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && old.sa_sigaction != libc::SIG_DFL
            {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if libc::setsid() < 0 {
            fail(1);
        }
        for i in 0..a.ncgroups {
            if libc::write(*a.cgroups.add(i), b"0".as_ptr().cast(), 1) < 0 {
                fail(2);
            }
        }
        // The task's own account, after the cgroups (joining them needs the agent's rights)
        // and before the parent-death signal (a change of credentials clears it).
        if a.switch
            && (libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) < 0
                || libc::syscall(libc::SYS_setgid, a.gid) < 0
                || libc::syscall(libc::SYS_setuid, a.uid) < 0)
        {
            fail(6);
        }
        // The task dies with the agent (its container is swept at the next start).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::dup2(a.stdin, 0) < 0 || libc::dup2(a.stdout, 1) < 0 || libc::dup2(a.stderr, 2) < 0
        {
            fail(3);
        }
        if libc::chdir(a.cwd) < 0 {
            fail(4);
        }
        libc::sigprocmask(libc::SIG_SETMASK, a.mask, std::ptr::null_mut());
        libc::execve(a.program, a.argv, a.envp);
        fail(5)
    }
}

impl Command {
    /// Starts the process; the calling thread waits until it has exec'd.
    pub fn spawn(&self) -> io::Result<Process> {
        let program = cstring(self.program.as_os_str())?;
        let args: Vec<CString> = self
            .args
            .iter()
            .map(|a| cstring(a))
            .collect::<io::Result<_>>()?;
        let env: Vec<CString> = self
            .env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                cstring(&kv)
            })
            .collect::<io::Result<_>>()?;
        let cwd = cstring(self.cwd.as_os_str())?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let stdin = std::fs::File::open("/dev/null")?;
        let mut pipe = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let mut stack = vec![0u8; CHILD_STACK];
        // SAFETY: the sigset_t values are initialized by sigfillset/pthread_sigmask before use.
        let (mut all, mut old): (libc::sigset_t, libc::sigset_t) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let args_block = ChildArgs {
            program: program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            cwd: cwd.as_ptr(),
            stdin: stdin.as_raw_fd(),
            stdout: self.stdout.as_raw_fd(),
            stderr: self.stderr.as_raw_fd(),
            cgroups: self.cgroup_fds.as_ptr(),
            ncgroups: self.cgroup_fds.len(),
            error_pipe: wr.as_raw_fd(),
            mask: &old,
            switch: self.user.is_some(),
            uid: self.user.as_ref().map_or(0, |u| u.uid),
            gid: self.user.as_ref().map_or(0, |u| u.gid),
        };
        // SAFETY: the stack outlives the child's use of it (CLONE_VFORK suspends this thread
        // until the child has exec'd or exited); the signal mask is restored right after.
        let pid = unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let top = stack.as_mut_ptr().add(CHILD_STACK);
            let top = top.sub(top as usize % 16);
            let pid = libc::clone(
                child,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &args_block as *const ChildArgs as *mut libc::c_void,
            );
            let e = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(e);
            }
            pid
        };
        drop(wr);
        let mut err = [0i32; 2];
        // SAFETY: reads at most 8 bytes into `err`.
        let n = unsafe { libc::read(rd.as_raw_fd(), err.as_mut_ptr().cast(), 8) };
        if n == 8 {
            // SAFETY: reaps the child that failed before its exec.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            let what = [
                "",
                "setsid",
                "joining the cgroups",
                "redirecting stdio",
                "chdir to the sandbox",
                "exec",
                "switching to the task's user",
            ][err[0].clamp(0, 6) as usize];
            let e = io::Error::from_raw_os_error(err[1]);
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        // SAFETY: pidfd_open has no memory-safety preconditions.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(e);
        }
        // SAFETY: a fresh descriptor from pidfd_open, owned here, then by the AsyncFd, which
        // never has it replaced or closed while registered.
        let pidfd = unsafe { AsyncFd::register(OwnedFd::from_raw_fd(fd as RawFd))? };
        Ok(Process {
            pid: pid as u32,
            pidfd,
        })
    }
}

impl Process {
    /// Waits for the process to end, and reaps it.
    pub async fn wait(&self) -> io::Result<ExitStatus> {
        loop {
            let mut guard = self.pidfd.readable().await?;
            // SAFETY: waitid fills `info`; WNOHANG makes it return at once if not ended.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::waitid(
                    P_PIDFD,
                    self.pidfd.get_ref().as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: si_pid and si_status are valid for SIGCHLD information.
            let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
            if pid == 0 {
                guard.clear_ready();
                continue;
            }
            let raw = match info.si_code {
                libc::CLD_EXITED => (status & 0xff) << 8,
                libc::CLD_DUMPED => status | 0x80,
                _ => status,
            };
            return Ok(ExitStatus::from_raw(raw));
        }
    }
}

/// The environment of a task: the agent's own, then `overrides` in order.
pub fn environment(overrides: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (k, v) in overrides {
        let k = OsString::from(k);
        match env.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = OsString::from(v),
            None => env.push((k, OsString::from(v))),
        }
    }
    env
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cmd(program: &str, args: &[&str], dir: &Path) -> Command {
        let env = environment(&[("YARD_SPAWN_TEST".into(), "yes".into())]);
        Command {
            program: resolve(OsStr::new(program), &env).expect("found"),
            args: args.iter().map(OsString::from).collect(),
            env,
            cwd: dir.to_path_buf(),
            stdout: std::fs::File::create(dir.join("stdout")).unwrap(),
            stderr: std::fs::File::create(dir.join("stderr")).unwrap(),
            cgroup_fds: vec![],
            user: None,
        }
    }

    /// The task's account is switched to before the exec (supplementary groups dropped).
    #[tokio::test]
    async fn runs_as_the_account_it_is_given() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: switching users cannot be tested here");
            return;
        }
        let nobody = lookup_user("nobody").unwrap();
        assert_ne!(nobody.uid, 0);
        assert!(lookup_user("no-such-user-here").is_err());
        let dir = std::env::temp_dir().join(format!("yard-spawn-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = cmd("sh", &["sh", "-c", "id -u; id -g; id -G"], &dir);
        c.user = Some(nobody.clone());
        let p = c.spawn().unwrap();
        assert_eq!(p.wait().await.unwrap().code(), Some(0));
        let out = std::fs::read_to_string(dir.join("stdout")).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], nobody.uid.to_string());
        assert_eq!(lines[1], nobody.gid.to_string());
        assert_eq!(
            lines[2],
            nobody.gid.to_string(),
            "no supplementary group of the agent"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn runs_in_its_own_session_with_its_environment_and_exit_status() {
        let dir = std::env::temp_dir().join(format!("yard-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = cmd(
            "sh",
            &[
                "sh",
                "-c",
                "echo $YARD_SPAWN_TEST $(pwd); ps -o sid= -p $$; exit 3",
            ],
            &dir,
        )
        .spawn()
        .unwrap();
        let st = p.wait().await.unwrap();
        assert_eq!(st.code(), Some(3));
        let out = std::fs::read_to_string(dir.join("stdout")).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next().unwrap(), format!("yes {}", dir.display()));
        assert_eq!(
            lines.next().unwrap().trim(),
            p.pid.to_string(),
            "session leader"
        );
        let p = cmd("sleep", &["sleep", "30"], &dir).spawn().unwrap();
        // SAFETY: signals our own child.
        unsafe { libc::kill(p.pid as i32, libc::SIGTERM) };
        assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGTERM));
        let e = cmd("sh", &["sh"], &dir);
        let e = Command {
            program: dir.join("missing"),
            ..e
        }
        .spawn()
        .err()
        .unwrap();
        assert!(e.to_string().starts_with("exec: "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
