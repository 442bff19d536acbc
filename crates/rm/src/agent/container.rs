//! Containers on cgroups v1: a task's processes run in their own session and in their own
//! `cpu`, `cpuacct`, `memory` and `pids` cgroups under `/sys/fs/cgroup/<controller>/<parent>/`.
//!
//! - cpu: `cpu.shares` = 1024 × cpus, and a CFS quota of cpus × period when enabled;
//! - memory: `memory.limit_in_bytes` from `mem` (swap included when memsw is available), and
//!   the kernel's `oom_kill` counter tells a memory kill apart from other SIGKILLs;
//! - pids: `pids.max`.
//!
//! The child joins its cgroups between fork and exec (it writes `0` to `cgroup.procs` files
//! opened by the parent: no allocation after fork), so not one instruction of the task runs
//! outside them.

use crate::error::ContainerError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::mesos::resources::MILLI;

const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];
const CFS_PERIOD_US: i64 = 100_000;

#[derive(Debug, Clone)]
pub struct Isolation {
    /// `/sys/fs/cgroup/<controller>/<parent>`.
    parent: String,
    pub cfs_quota: bool,
    pub pids_max: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Thousandths of a CPU.
    pub cpus_milli: i64,
    /// Megabytes (thousandths); 0 means no limit.
    pub mem_milli: i64,
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> ContainerError {
    ContainerError::Io {
        action: action.to_string(),
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

impl Isolation {
    /// Checks that the cgroup v1 controllers are mounted and writable, creates the parent
    /// cgroups and removes what a previous run of this agent left there.
    pub fn detect(
        parent: &str,
        cfs_quota: bool,
        pids_max: u64,
    ) -> Result<Isolation, ContainerError> {
        for c in CONTROLLERS {
            let dir = Path::new(ROOT).join(c);
            let marker = match c {
                "cpu" => "cpu.shares",
                "cpuacct" => "cpuacct.usage",
                "memory" => "memory.limit_in_bytes",
                _ => "pids.max",
            };
            // pids.max does not exist at the root of the hierarchy; cgroup.procs does.
            if !dir.join("cgroup.procs").exists() || (c != "pids" && !dir.join(marker).exists()) {
                return Err(ContainerError::NotMounted {
                    controller: c.to_string(),
                    dir,
                });
            }
            let p = dir.join(parent);
            fs::create_dir_all(&p).map_err(|e| io_error("create", &p, e))?;
        }
        let iso = Isolation {
            parent: parent.to_string(),
            cfs_quota,
            pids_max,
        };
        iso.sweep();
        Ok(iso)
    }

    /// The cgroup path, under each controller, that holds this agent's containers.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// Kills everything in the containers under `parent` and removes them and the parent (the
    /// reaper does this when its agent dies, however it died).
    pub fn reap(parent: &str) {
        let iso = Isolation {
            parent: parent.to_string(),
            cfs_quota: false,
            pids_max: 0,
        };
        iso.sweep();
        for c in CONTROLLERS {
            let _ = fs::remove_dir(Path::new(ROOT).join(c).join(parent));
        }
    }

    fn dir(&self, controller: &str, id: &str) -> PathBuf {
        Path::new(ROOT).join(controller).join(&self.parent).join(id)
    }

    /// Kills and removes every container left under the parent (after an agent crash).
    fn sweep(&self) {
        let Ok(entries) = fs::read_dir(Path::new(ROOT).join("memory").join(&self.parent)) else {
            return;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                let name = e.file_name().to_string_lossy().into_owned();
                tracing::info!(container = %name, "removing a container left behind");
                Container {
                    iso: self.clone(),
                    id: name,
                    procs: Vec::new(),
                }
                .destroy();
            }
        }
    }

    /// Writes a container's limits (at creation, and when an executor's tasks grow them).
    fn apply(&self, id: &str, limits: Limits) -> Result<(), ContainerError> {
        let set = |ctl: &str, file: &str, v: String| -> Result<(), ContainerError> {
            let p = self.dir(ctl, id).join(file);
            fs::write(&p, &v).map_err(|e| io_error(&format!("write {v} to"), &p, e))
        };
        let shares = (limits.cpus_milli * 1024 / MILLI).max(2);
        set("cpu", "cpu.shares", shares.to_string())?;
        if self.cfs_quota && limits.cpus_milli > 0 {
            set("cpu", "cpu.cfs_period_us", CFS_PERIOD_US.to_string())?;
            let quota = (limits.cpus_milli * CFS_PERIOD_US / MILLI).max(1000);
            set("cpu", "cpu.cfs_quota_us", quota.to_string())?;
        }
        if limits.mem_milli > 0 {
            let bytes = (limits.mem_milli as i128 * 1024 * 1024 / MILLI as i128) as i64;
            // With swap accounting, memory+swap must stay at or above memory: raising writes
            // it first, lowering after (one of the two early writes fails harmlessly).
            let memsw = self.dir("memory", id).join("memory.memsw.limit_in_bytes");
            let swap = memsw.exists();
            if swap {
                let _ = fs::write(&memsw, bytes.to_string());
            }
            set("memory", "memory.limit_in_bytes", bytes.to_string())?;
            if swap {
                let _ = fs::write(&memsw, bytes.to_string());
            }
        }
        if self.pids_max > 0 {
            set("pids", "pids.max", self.pids_max.to_string())?;
        }
        Ok(())
    }

    /// Creates the cgroups of a container with its limits.
    pub fn create(&self, id: &str, limits: Limits) -> Result<Container, ContainerError> {
        let mut c = Container {
            iso: self.clone(),
            id: id.to_string(),
            procs: Vec::new(),
        };
        for ctl in CONTROLLERS {
            let d = self.dir(ctl, id);
            fs::create_dir_all(&d).map_err(|e| io_error("create", &d, e))?;
        }
        self.apply(id, limits)?;
        for ctl in CONTROLLERS {
            let p = self.dir(ctl, id).join("cgroup.procs");
            let f = OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| io_error("open", &p, e))?;
            c.procs.push(f);
        }
        Ok(c)
    }
}

#[derive(Debug)]
pub struct Container {
    iso: Isolation,
    pub id: String,
    procs: Vec<File>,
}

/// Resource usage, as the agent's `/monitor/statistics` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Usage {
    pub cpus_time_secs: f64,
    pub mem_usage_bytes: u64,
    pub mem_limit_bytes: u64,
    pub cpus_quota_us: i64,
    pub cpus_period_us: i64,
    pub processes: u64,
    pub oom_kills: u64,
}

impl Container {
    /// New limits for a running container (an executor given another task).
    pub fn resize(&self, limits: Limits) -> Result<(), ContainerError> {
        self.iso.apply(&self.id, limits)
    }

    /// The raw `cgroup.procs` descriptors the child writes to before exec.
    pub fn join_fds(&self) -> Vec<i32> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    fn read(&self, ctl: &str, file: &str) -> Option<String> {
        fs::read_to_string(self.iso.dir(ctl, &self.id).join(file)).ok()
    }

    /// How many times the kernel killed a process of this container for memory.
    pub fn oom_kills(&self) -> u64 {
        self.read("memory", "memory.oom_control")
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    pub fn usage(&self) -> Usage {
        let num = |ctl: &str, f: &str| -> i64 {
            self.read(ctl, f)
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        Usage {
            cpus_time_secs: num("cpuacct", "cpuacct.usage") as f64 / 1e9,
            mem_usage_bytes: num("memory", "memory.usage_in_bytes").max(0) as u64,
            mem_limit_bytes: num("memory", "memory.limit_in_bytes").max(0) as u64,
            cpus_quota_us: num("cpu", "cpu.cfs_quota_us"),
            cpus_period_us: num("cpu", "cpu.cfs_period_us"),
            processes: self.pids().len() as u64,
            oom_kills: self.oom_kills(),
        }
    }

    fn pids(&self) -> Vec<i32> {
        self.read("memory", "cgroup.procs")
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process left in the container and removes its cgroups.
    pub fn destroy(self) {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for ctl in CONTROLLERS {
            let d = self.iso.dir(ctl, &self.id);
            if d.exists() {
                if let Err(e) = fs::remove_dir(&d) {
                    tracing::warn!("cannot remove {}: {e}", d.display());
                }
            }
        }
    }
}

/// Runs in the child between fork and exec: a new session, then into the cgroups. Only
/// async-signal-safe calls.
pub fn child_setup(fds: &[i32]) -> std::io::Result<()> {
    // SAFETY: setsid, write and prctl are async-signal-safe and touch no Rust state.
    unsafe {
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for &fd in fds {
            if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // The task dies with the agent (its container is swept at the next start).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    Ok(())
}

/// Sends `sig` to the task's process group.
pub fn signal_group(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(-(pid as i32), sig) };
}

/// Writes a line to a sandbox file (best effort; used for the agent's own notes on a task).
pub fn note(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}
