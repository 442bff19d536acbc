//! Host and process metrics from `/proc` (Linux). A [`Sampler`] keeps the previous counters so
//! that CPU and network figures are rates over the sampling interval.
//!
//! Series, under `CLUSTER/AGENT/`: `cpu` (percent of all cores), `mem_used` (bytes),
//! `mem_used_pct`, `disk_used_pct` (the agent's data filesystem), `net_rx`, `net_tx`
//! (bytes/s), `load1`; per node, under `CLUSTER/AGENT/NODE/`: `cpu` (percent of one core),
//! `rss` (bytes), `restarts`, `healthy` (1 or 0).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::proto::{NodeStatus, Sample};

pub struct Sampler {
    prefix: String,
    disk: PathBuf,
    last_cpu: Option<(u64, u64)>,
    last_net: Option<(Instant, u64, u64)>,
    last_proc: HashMap<u32, (Instant, u64)>,
    ticks: f64,
    page: f64,
}

impl Sampler {
    pub fn new(cluster: &str, agent: &str, disk: PathBuf) -> Sampler {
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK) as f64,
                libc::sysconf(libc::_SC_PAGESIZE) as f64,
            )
        };
        Sampler {
            prefix: format!("{cluster}/{agent}/"),
            disk,
            last_cpu: None,
            last_net: None,
            last_proc: HashMap::new(),
            ticks: if ticks > 0.0 { ticks } else { 100.0 },
            page: if page > 0.0 { page } else { 4096.0 },
        }
    }

    /// One round of samples at `ts` (Unix ms). The first round has no rates yet.
    pub fn sample(&mut self, ts: u64, nodes: &[NodeStatus]) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut put = |name: &str, value: f64| {
            out.push(Sample {
                series: format!("{}{name}", self.prefix),
                ts,
                value,
            })
        };
        if let Some((busy, total)) = cpu_times() {
            if let Some((b0, t0)) = self.last_cpu {
                if total > t0 {
                    put(
                        "cpu",
                        100.0 * (busy - b0.min(busy)) as f64 / (total - t0) as f64,
                    );
                }
            }
            self.last_cpu = Some((busy, total));
        }
        if let Some((total, available)) = meminfo() {
            put("mem_used", (total - available.min(total)) as f64);
            if total > 0 {
                put(
                    "mem_used_pct",
                    100.0 * (total - available.min(total)) as f64 / total as f64,
                );
            }
        }
        if let Some(pct) = disk_used_pct(&self.disk) {
            put("disk_used_pct", pct);
        }
        if let Some(l) = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        {
            put("load1", l);
        }
        if let Some((rx, tx)) = net_bytes() {
            let now = Instant::now();
            if let Some((t0, rx0, tx0)) = self.last_net {
                let dt = now.duration_since(t0).as_secs_f64();
                if dt > 0.0 {
                    put("net_rx", rx.saturating_sub(rx0) as f64 / dt);
                    put("net_tx", tx.saturating_sub(tx0) as f64 / dt);
                }
            }
            self.last_net = Some((now, rx, tx));
        }
        let mut seen = Vec::new();
        for n in nodes {
            let node = |m: &str| format!("{}{}/{m}", self.prefix, n.name);
            out.push(Sample {
                series: node("restarts"),
                ts,
                value: n.restarts as f64,
            });
            out.push(Sample {
                series: node("healthy"),
                ts,
                value: if n.health == "healthy" { 1.0 } else { 0.0 },
            });
            let Some(pid) = n.pid else { continue };
            seen.push(pid);
            if let Some((cpu_ticks, rss_pages)) = proc_stat(pid) {
                out.push(Sample {
                    series: node("rss"),
                    ts,
                    value: rss_pages as f64 * self.page,
                });
                let now = Instant::now();
                if let Some((t0, c0)) = self.last_proc.get(&pid) {
                    let dt = now.duration_since(*t0).as_secs_f64();
                    if dt > 0.0 {
                        out.push(Sample {
                            series: node("cpu"),
                            ts,
                            value: 100.0 * cpu_ticks.saturating_sub(*c0) as f64 / self.ticks / dt,
                        });
                    }
                }
                self.last_proc.insert(pid, (now, cpu_ticks));
            }
        }
        self.last_proc.retain(|pid, _| seen.contains(pid));
        out
    }
}

/// (busy, total) jiffies of all cores.
fn cpu_times() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle.min(total), total))
}

/// Memory (total, available) in bytes, from /proc/meminfo.
pub fn meminfo() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let l = s.lines().find(|l| l.starts_with(name))?;
        Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// The (total, free) bytes of the filesystem holding `path`.
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    let unit = st.f_frsize as u64;
    Some((st.f_blocks as u64 * unit, st.f_bfree as u64 * unit))
}

fn disk_used_pct(path: &std::path::Path) -> Option<f64> {
    let (total, free) = disk_space(path)?;
    (total > 0).then(|| 100.0 * (total - free.min(total)) as f64 / total as f64)
}

/// Bytes received and sent on every interface but loopback.
fn net_bytes() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/net/dev").ok()?;
    let mut rx = 0;
    let mut tx = 0;
    for l in s.lines().skip(2) {
        let (name, rest) = l.split_once(':')?;
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += v.first().copied().unwrap_or(0);
        tx += v.get(8).copied().unwrap_or(0);
    }
    Some((rx, tx))
}

/// (utime + stime ticks, rss pages) of a process.
fn proc_stat(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 14 (utime) is the 12th after the state field (3rd overall).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let rss: u64 = f.get(21)?.parse().ok()?;
    Some((utime + stime, rss))
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_cover_host_and_nodes_with_rates_from_the_second_round() {
        let me = std::process::id();
        let node = NodeStatus {
            name: "self".into(),
            state: "running".into(),
            health: "healthy".into(),
            pid: Some(me),
            restarts: 2,
            generation: 3,
        };
        let mut s = Sampler::new("c", "a", std::env::temp_dir());
        let first = s.sample(1, std::slice::from_ref(&node));
        let names = |v: &[Sample]| v.iter().map(|x| x.series.clone()).collect::<Vec<_>>();
        let first_names = names(&first);
        for want in [
            "c/a/mem_used",
            "c/a/disk_used_pct",
            "c/a/load1",
            "c/a/self/rss",
        ] {
            assert!(
                first_names.iter().any(|n| n == want),
                "{want} in {first_names:?}"
            );
        }
        assert!(!first_names.iter().any(|n| n == "c/a/cpu"), "no rate yet");
        // Burn CPU for 50 ms so that the jiffy counters (10 ms apart) move.
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let second = s.sample(2, &[node]);
        let get = |n: &str| second.iter().find(|x| x.series == n).map(|x| x.value);
        assert!(get("c/a/cpu").is_some());
        assert!(get("c/a/self/cpu").unwrap() >= 0.0);
        assert_eq!(get("c/a/self/restarts"), Some(2.0));
        assert_eq!(get("c/a/self/healthy"), Some(1.0));
        assert!(get("c/a/self/rss").unwrap() > 1e6);
    }
}
