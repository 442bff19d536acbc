//! Task health checks (Mesos `HealthCheck`): the definition, validated, and the pure tracker that
//! turns check results into what the agent does (report `healthy`, or kill the task). The agent's
//! runner performs the checks ([`probe`]) on its schedule.
//!
//! As in Mesos: the first check runs `delay_seconds` after the task started, then every
//! `interval_seconds`; a check taking longer than `timeout_seconds` failed. A status update
//! (TASK_RUNNING with `healthy` and REASON_TASK_HEALTH_CHECK_STATUS_UPDATED) goes out on the first
//! result and whenever health changes. Failures within `grace_period_seconds` of the start do not
//! count until the task was healthy once; `consecutive_failures` counted failures kill the task.

use crate::error::{Invalid, ProbeError};
use std::time::Duration;

use serde_json::Value;

use crate::mesos::resources::number;

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A shell command, run in the task's sandbox: exit 0 is healthy.
    Command(String),
    /// `GET path` on 127.0.0.1:port: a status in 200..400 is healthy.
    Http { port: u16, path: String },
    /// A TCP connection to 127.0.0.1:port succeeds.
    Tcp { port: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub delay: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub consecutive_failures: u32,
    pub grace: Duration,
}

fn secs(v: &Value, key: &str, default: f64) -> Result<Duration, String> {
    match v.get(key) {
        None => Ok(Duration::from_secs_f64(default)),
        Some(x) => match number(x) {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(Duration::from_secs_f64(n)),
            _ => Err(format!(
                "health_check.{key} must be a number of seconds ≥ 0, got {x}"
            )),
        },
    }
}

fn port(v: &Value, what: &str) -> Result<u16, String> {
    match v.get("port").and_then(number) {
        Some(p) if (1.0..=65535.0).contains(&p) && p.fract() == 0.0 => Ok(p as u16),
        _ => Err(format!(
            "health_check.{what}.port must be a port number (1-65535)"
        )),
    }
}

impl HealthCheck {
    /// Parses a TaskInfo's `health_check` with Mesos's defaults.
    pub fn parse(v: &Value) -> Result<HealthCheck, Invalid> {
        Self::parse_inner(v).map_err(Invalid)
    }

    fn parse_inner(v: &Value) -> Result<HealthCheck, String> {
        let kind = v.get("type").and_then(Value::as_str);
        let probe = match kind {
            Some("COMMAND") | None if v.get("command").is_some() => {
                let cmd = v
                    .pointer("/command/value")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                    .ok_or("health_check.command.value (the command to run) is missing")?;
                Probe::Command(cmd.to_string())
            }
            Some("HTTP") => {
                let h = v.get("http").ok_or("health_check.http is missing")?;
                if let Some(s) = h.get("scheme").and_then(Value::as_str) {
                    if s != "http" {
                        return Err(format!(
                            "health_check.http.scheme {s:?} is not supported (only http)"
                        ));
                    }
                }
                let path = h.get("path").and_then(Value::as_str).unwrap_or("/");
                if !path.starts_with('/') || path.contains(['\r', '\n', ' ']) {
                    return Err(format!(
                        "health_check.http.path {path:?} must be an absolute path"
                    ));
                }
                Probe::Http {
                    port: port(h, "http")?,
                    path: path.to_string(),
                }
            }
            Some("TCP") => Probe::Tcp {
                port: port(v.get("tcp").ok_or("health_check.tcp is missing")?, "tcp")?,
            },
            Some("COMMAND") => return Err("health_check.command is missing".into()),
            Some(other) => {
                return Err(format!(
                    "health_check.type {other:?} is not one of COMMAND, HTTP, TCP"
                ))
            }
            None => return Err("health_check.type is missing".into()),
        };
        let consecutive_failures = match v.get("consecutive_failures") {
            None => 3,
            Some(x) => match number(x) {
                Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => n as u32,
                _ => {
                    return Err(format!(
                        "health_check.consecutive_failures must be a whole number ≥ 1, got {x}"
                    ))
                }
            },
        };
        let interval = secs(v, "interval_seconds", 10.0)?;
        if interval.is_zero() {
            return Err("health_check.interval_seconds must be above 0".into());
        }
        Ok(HealthCheck {
            probe,
            delay: secs(v, "delay_seconds", 15.0)?,
            interval,
            timeout: secs(v, "timeout_seconds", 20.0)?,
            consecutive_failures,
            grace: secs(v, "grace_period_seconds", 10.0)?,
        })
    }
}

/// What to do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to report.
    Quiet,
    /// Report `healthy` (first result, or a change).
    Report(bool),
    /// Too many consecutive failures: kill the task (reported unhealthy).
    Kill,
}

/// A task's health, fed check results.
#[derive(Debug, Clone)]
pub struct Tracker {
    consecutive_failures: u32,
    grace: Duration,
    failures: u32,
    reported: Option<bool>,
    ever_healthy: bool,
}

impl Tracker {
    pub fn new(hc: &HealthCheck) -> Tracker {
        Tracker {
            consecutive_failures: hc.consecutive_failures,
            grace: hc.grace,
            failures: 0,
            reported: None,
            ever_healthy: false,
        }
    }

    /// One check's result, `since_start` after the task started.
    pub fn observe(&mut self, ok: bool, since_start: Duration) -> Verdict {
        if ok {
            self.failures = 0;
            self.ever_healthy = true;
            if self.reported != Some(true) {
                self.reported = Some(true);
                return Verdict::Report(true);
            }
            return Verdict::Quiet;
        }
        if !self.ever_healthy && since_start < self.grace {
            // Still starting up: not counted.
            return Verdict::Quiet;
        }
        self.failures += 1;
        if self.failures >= self.consecutive_failures {
            return Verdict::Kill;
        }
        if self.reported != Some(false) {
            self.reported = Some(false);
            return Verdict::Report(false);
        }
        Verdict::Quiet
    }
}

/// Runs one check; `Err` says why it failed.
pub async fn probe(
    p: &Probe,
    sandbox: &std::path::Path,
    timeout: Duration,
) -> Result<(), ProbeError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let run = async {
        match p {
            Probe::Command(cmd) => {
                let st = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .current_dir(sandbox)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| format!("cannot run the check: {e}"))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("the check command ended with {st}"))
                }
            }
            Probe::Tcp { port } => tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .map(drop)
                .map_err(|e| format!("cannot connect to port {port}: {e}")),
            Probe::Http { port, path } => {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .map_err(|e| format!("cannot connect to port {port}: {e}"))?;
                let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: yard-health-check\r\n\r\n");
                s.write_all(req.as_bytes())
                    .await
                    .map_err(|e| format!("cannot send the request: {e}"))?;
                // The whole answer is read (up to 64 KiB) so the server sees an orderly close.
                let mut answer = Vec::new();
                let mut chunk = [0u8; 4096];
                while answer.len() < 64 * 1024 {
                    match s.read(&mut chunk).await {
                        Ok(0) => break,
                        Ok(k) => answer.extend_from_slice(&chunk[..k]),
                        Err(e) if answer.len() >= 12 => {
                            tracing::debug!("health check answer cut short: {e}");
                            break;
                        }
                        Err(e) => return Err(format!("cannot read the answer: {e}")),
                    }
                }
                let line = String::from_utf8_lossy(&answer[..answer.len().min(32)]);
                let code = line
                    .strip_prefix("HTTP/1.")
                    .and_then(|r| r.get(2..5))
                    .and_then(|c| c.parse::<u16>().ok())
                    .ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("GET {path} answered {code}"))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r.map_err(ProbeError::Failed),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_with_mesos_defaults_and_rejects_bad_definitions() {
        let hc =
            HealthCheck::parse(&json!({"type": "HTTP", "http": {"port": 8080, "path": "/ok"}}))
                .unwrap();
        assert_eq!(
            hc.probe,
            Probe::Http {
                port: 8080,
                path: "/ok".into()
            }
        );
        assert_eq!(
            (hc.delay, hc.interval, hc.timeout),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(20)
            )
        );
        assert_eq!(
            (hc.consecutive_failures, hc.grace),
            (3, Duration::from_secs(10))
        );
        let hc = HealthCheck::parse(
            &json!({"type": "COMMAND", "command": {"value": "true"}, "interval_seconds": 0.5,
                                            "delay_seconds": "0", "consecutive_failures": 2}),
        )
        .unwrap();
        assert_eq!(hc.probe, Probe::Command("true".into()));
        assert_eq!(
            (hc.interval, hc.delay, hc.consecutive_failures),
            (Duration::from_millis(500), Duration::ZERO, 2)
        );
        for (bad, why) in [
            (json!({"type": "TCP"}), "health_check.tcp is missing"),
            (
                json!({"type": "TCP", "tcp": {"port": 70000}}),
                "port number",
            ),
            (
                json!({"type": "HTTP", "http": {"port": 80, "scheme": "https"}}),
                "only http",
            ),
            (
                json!({"type": "HTTP", "http": {"port": 80, "path": "x y"}}),
                "absolute path",
            ),
            (json!({"type": "GRPC"}), "not one of"),
            (json!({"type": "COMMAND"}), "command is missing"),
            (
                json!({"type": "TCP", "tcp": {"port": 1}, "interval_seconds": 0}),
                "above 0",
            ),
            (
                json!({"type": "TCP", "tcp": {"port": 1}, "consecutive_failures": 0}),
                "≥ 1",
            ),
            (
                json!({"type": "TCP", "tcp": {"port": 1}, "timeout_seconds": -1}),
                "≥ 0",
            ),
        ] {
            let e = HealthCheck::parse(&bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    fn tracker(failures: u32, grace_s: u64) -> Tracker {
        let mut hc = HealthCheck::parse(&json!({"type": "TCP", "tcp": {"port": 1}})).unwrap();
        hc.consecutive_failures = failures;
        hc.grace = Duration::from_secs(grace_s);
        Tracker::new(&hc)
    }

    #[test]
    fn reports_the_first_result_and_changes_only() {
        let mut t = tracker(3, 0);
        let s = Duration::from_secs(20);
        assert_eq!(t.observe(true, s), Verdict::Report(true));
        assert_eq!(t.observe(true, s), Verdict::Quiet);
        assert_eq!(t.observe(false, s), Verdict::Report(false));
        assert_eq!(t.observe(true, s), Verdict::Report(true));
        assert_eq!(t.observe(false, s), Verdict::Report(false));
        assert_eq!(t.observe(false, s), Verdict::Quiet);
        assert_eq!(t.observe(false, s), Verdict::Kill);
    }

    #[test]
    fn failures_in_the_grace_period_count_only_after_the_first_success() {
        let mut t = tracker(1, 10);
        assert_eq!(t.observe(false, Duration::from_secs(1)), Verdict::Quiet);
        assert_eq!(t.observe(false, Duration::from_secs(9)), Verdict::Quiet);
        assert_eq!(t.observe(false, Duration::from_secs(10)), Verdict::Kill);
        let mut t = tracker(1, 10);
        assert_eq!(
            t.observe(true, Duration::from_secs(1)),
            Verdict::Report(true)
        );
        assert_eq!(t.observe(false, Duration::from_secs(2)), Verdict::Kill);
    }

    #[tokio::test]
    async fn probes_tcp_http_and_commands() {
        let dir = std::env::temp_dir();
        let t = Duration::from_secs(5);
        assert!(probe(&Probe::Command("true".into()), &dir, t).await.is_ok());
        let e = probe(&Probe::Command("exit 4".into()), &dir, t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("4"), "{e}");
        let e = probe(
            &Probe::Command("sleep 5".into()),
            &dir,
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("no result within"), "{e}");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        assert!(probe(&Probe::Tcp { port }, &dir, t).await.is_ok());
        assert!(probe(
            &Probe::Http {
                port,
                path: "/ok".into()
            },
            &dir,
            t
        )
        .await
        .is_ok());
        let e = probe(
            &Probe::Http {
                port,
                path: "/bad".into(),
            },
            &dir,
            t,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(probe(&Probe::Tcp { port: closed }, &dir, t).await.is_err());
    }
}
