//! Health checks of supervised processes: a command that must exit 0, a TCP port that must
//! accept, or an HTTP URL that must answer 2xx/3xx, each within a timeout.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Unhealthy;
use crate::nodes::HealthSpec;

/// Runs the check once: `Ok` when healthy, otherwise what failed. A command runs as `account`
/// (the node's; `None`: the agent's).
pub async fn check(
    spec: &HealthSpec,
    cwd: Option<&std::path::Path>,
    account: Option<&yard_auth::account::Account>,
) -> Result<(), Unhealthy> {
    let timeout = spec.timeout();
    let run = async {
        if let Some(argv) = &spec.command {
            command(argv, cwd, account).await
        } else if let Some(addr) = &spec.tcp {
            TcpStream::connect(addr)
                .await
                .map(|_| ())
                .map_err(|e| Unhealthy::Tcp {
                    addr: addr.clone(),
                    why: e.to_string(),
                })
        } else if let Some(url) = &spec.http {
            http_get(url).await
        } else {
            Ok(())
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(Unhealthy::Timeout(timeout)),
    }
}

async fn command(
    argv: &[String],
    cwd: Option<&std::path::Path>,
    account: Option<&yard_auth::account::Account>,
) -> Result<(), Unhealthy> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    if let Some(a) = account {
        cmd.uid(a.uid).gid(a.gid);
    }
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let status = cmd.status().await.map_err(|e| Unhealthy::Spawn {
        program: argv[0].clone(),
        why: e.to_string(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Unhealthy::Exit {
            program: argv[0].clone(),
            status: status.to_string(),
        })
    }
}

/// A minimal HTTP/1.0 GET: enough to read a status line.
async fn http_get(url: &str) -> Result<(), Unhealthy> {
    let failed = |why: String| Unhealthy::Http {
        url: url.to_string(),
        why,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| failed("not an http:// URL".into()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let mut s = TcpStream::connect(&addr)
        .await
        .map_err(|e| failed(e.to_string()))?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| failed(format!("not an HTTP answer: {line:?}")))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(failed(format!("status {code}")))
    }
}
