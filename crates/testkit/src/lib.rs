//! What the tests of every crate share, so that each is written once:
//!
//! - [`TempDir`]: a fresh directory (0700) of its own per call, removed with everything in it
//!   when dropped.
//! - [`wait_until`] and [`wait_for_file`]: wait on a condition, never a fixed sleep. They read
//!   tokio's clock, so a test under `#[tokio::test(start_paused = true)]` waits in virtual time.
//! - [`Daemon`]: a child process stopped (SIGTERM, a grace period, then SIGKILL) and reaped
//!   when dropped, so no test leaves a process behind; [`listening_addr`] reads the address a
//!   `yard` daemon prints on its first line.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A directory of its own under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `yard-TAG-PID-N-NANOS` (0700). Panics when it cannot: a test cannot go on.
    pub fn new(tag: &str) -> TempDir {
        TempDir::with_mode(tag, 0o700)
    }

    /// [`TempDir::new`] with another mode (0755 for a test whose processes run as another
    /// user and must reach inside).
    pub fn with_mode(tag: &str, mode: u32) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("yard-{tag}-{}-{n}-{nanos}", std::process::id()));
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, mode);
        b.recursive(true)
            .create(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        // The mode given, whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("cannot set the mode of {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// `name` inside the directory, as text (for command-line flags).
    pub fn arg(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` when `timeout` passes first.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        poll.tick().await;
    }
}

/// Waits until the file at `path` holds exactly `want`.
pub async fn wait_for_file(path: &Path, want: &str, timeout: Duration) {
    let what = format!("{} to hold {want:?}", path.display());
    wait_until(&what, timeout, || async {
        std::fs::read_to_string(path).unwrap_or_default() == want
    })
    .await;
}

/// The address in a daemon's first line (`… listening on ADDR …`).
pub fn listening_addr(line: &str) -> Option<&str> {
    line.split(" listening on ")
        .nth(1)?
        .split_whitespace()
        .next()
}

/// How a [`Daemon`] is stopped when dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL at once.
    Kill,
    /// SIGTERM, then SIGKILL if it has not ended within the grace period (for daemons that
    /// clean up after themselves: agents stop their nodes).
    Term(Duration),
}

/// A child process that is stopped and reaped when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    stop: Stop,
}

impl Daemon {
    /// Starts `cmd` with its stdout piped and returns it with its first line of output.
    pub fn spawn(mut cmd: Command, stop: Stop) -> (Daemon, String) {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let d = Daemon {
            child: Some(child),
            stop,
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("cannot read the first line of {cmd:?}: {e}"));
        (d, line)
    }

    /// Takes charge of a child the test started itself (to read more of its output).
    pub fn adopt(child: Child, stop: Stop) -> Daemon {
        Daemon {
            child: Some(child),
            stop,
        }
    }

    /// Its process id (0 once stopped).
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it has ended (and been reaped).
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// Waits for it to end by itself (after a signal the test sent, say) and reaps it.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.child.take() {
            Some(mut c) => c.wait(),
            None => Err(std::io::Error::other("the daemon was already stopped")),
        }
    }

    /// Sends it a signal by name (`TERM`, `INT`, `HUP`…) and returns at once.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([format!("-{sig}"), c.id().to_string()])
                .status();
        }
    }

    /// Stops it now with SIGKILL (a crash, as far as it can tell).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it now as [`Stop`] says.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let grace = match self.stop {
            Stop::Kill => {
                let _ = c.kill();
                let _ = c.wait();
                return;
            }
            Stop::Term(grace) => grace,
        };
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if c.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_dir_is_its_own_and_gone_on_drop() {
        let a = TempDir::new("kit");
        let b = TempDir::new("kit");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("f"), "x").unwrap();
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
        assert!(b.path().is_dir());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_reads_tokio_s_clock() {
        let start = tokio::time::Instant::now();
        let mut n = 0;
        wait_until("the third poll", Duration::from_secs(5), || {
            n += 1;
            let done = n == 3;
            async move { done }
        })
        .await;
        // Two 20 ms polls in virtual time (the first tick is immediate).
        assert_eq!(start.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 1s waiting for never")]
    async fn a_condition_that_never_holds_fails_naming_it() {
        wait_until("never", Duration::from_secs(1), || async { false }).await;
    }

    #[test]
    fn a_daemon_is_stopped_and_reaped_on_drop() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo ready listening on 127.0.0.1:9 now; exec sleep 60",
        ]);
        let (d, line) = Daemon::spawn(cmd, Stop::Term(Duration::from_secs(5)));
        assert_eq!(listening_addr(&line), Some("127.0.0.1:9"));
        let pid = d.id();
        drop(d);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still there"
        );
    }
}
