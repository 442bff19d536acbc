//! One HTTP/1.1 exchange with a yard listener: small, with no pool and no keep-alive, since
//! each verb makes a handful of requests. Over TLS or plain, as [`crate::trust`] reads the
//! address.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ClientError;

/// A request. `authorization` is the whole header value (`Bearer …`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            path,
            body: &[],
            content_type: None,
            authorization: None,
        }
    }

    /// A request with a JSON body (none when `body` is empty).
    pub fn json(method: &'a str, path: &'a str, body: &'a [u8]) -> Request<'a> {
        Request {
            method,
            path,
            body,
            content_type: (!body.is_empty()).then_some("application/json"),
            authorization: None,
        }
    }

    pub fn authorized(self, authorization: Option<&'a str>) -> Request<'a> {
        Request {
            authorization,
            ..self
        }
    }
}

/// An answer: its status and its body (de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Its `Content-Type`, if it gave one.
    pub content_type: Option<String>,
    /// Every header, names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header of this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy: a listener's bodies are UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The answer of a 2xx status, else [`ClientError::Refused`] with the server's `code` and
    /// `context` (from its JSON error body, or the whole body).
    pub fn ok(self, method: &str, path: &str) -> Result<Answer, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let text = self.text();
        let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        Err(ClientError::Refused {
            method: method.to_string(),
            path: path.to_string(),
            status: self.status,
            code: field("code").unwrap_or_else(|| "error".into()),
            context: field("context").unwrap_or(text),
        })
    }
}

/// Sends `r` to `addr` and reads the whole answer.
pub async fn request(addr: &str, r: Request<'_>) -> Result<Answer, ClientError> {
    let connected = crate::trust::connect(addr).await?;
    exchange(connected, r).await
}

/// Sends `r` to `addr` over TLS checked with `config` (not the roots found), and reads the
/// whole answer.
pub async fn request_using(
    addr: &str,
    config: std::sync::Arc<yard_tls::rustls::ClientConfig>,
    r: Request<'_>,
) -> Result<Answer, ClientError> {
    let target = crate::trust::Target {
        addr: crate::trust::target(addr, true).addr,
        tls: true,
    };
    let connected = crate::trust::connect_to(target, Some(config)).await?;
    exchange(connected, r).await
}

async fn exchange(
    (mut stream, target): (crate::trust::Stream, crate::trust::Target),
    r: Request<'_>,
) -> Result<Answer, ClientError> {
    let addr = target.addr.as_str();
    let broken = |e: std::io::Error| ClientError::Protocol {
        addr: addr.to_string(),
        why: e.to_string(),
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        r.method, r.path
    );
    if let Some(a) = r.authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some(ct) = r.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", r.body.len()));
    stream.write_all(head.as_bytes()).await.map_err(broken)?;
    stream.write_all(r.body).await.map_err(broken)?;
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf).await {
        Ok(_) => {}
        // A TLS peer that closed without its close_notify, after a whole answer: the answer
        // stands (a cut answer fails to parse below).
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(broken(e)),
    }
    parse_answer(&buf).map_err(|e| ClientError::Protocol {
        addr: addr.to_string(),
        why: e.to_string(),
    })
}

/// Why bytes are not an HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("truncated HTTP answer (no end of headers)")]
    NoEndOfHeaders,
    #[error("bad HTTP status line: {0:?}")]
    StatusLine(String),
    #[error("bad chunked HTTP body")]
    Chunked,
}

/// Reads a whole `Connection: close` answer.
pub fn parse_answer(buf: &[u8]) -> Result<Answer, Malformed> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(Malformed::NoEndOfHeaders)?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Malformed::StatusLine(head.lines().next().unwrap_or("").to_string()))?;
    let body = &buf[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone());
    Ok(Answer {
        status,
        content_type,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, Malformed> {
    let bad = || Malformed::Chunked;
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or_else(bad)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or_else(bad)?);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
}

/// Percent-encodes `v` for a URL: letters, digits and `-_.` stay, and `/` too when
/// `keep_slash` (a path); everything else becomes `%XX`.
pub fn escape(v: &str, keep_slash: bool) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b'/' if keep_slash => "/".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_fixed_length_or_chunked() {
        let plain =
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Yard-Log-Next: 5:9\r\n\r\nhi")
                .unwrap();
        assert_eq!(
            plain,
            Answer {
                status: 200,
                content_type: None,
                headers: vec![
                    ("content-length".into(), "2".into()),
                    ("x-yard-log-next".into(), "5:9".into())
                ],
                body: b"hi".to_vec()
            }
        );
        assert_eq!(plain.header("X-Yard-Log-Next"), Some("5:9"));
        let chunked = parse_answer(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.status, 404);
        assert_eq!(chunked.body, b"abcde");
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\n"),
            Err(Malformed::NoEndOfHeaders)
        );
        assert_eq!(
            parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Malformed::StatusLine("SSH-2.0-OpenSSH".into()))
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(Malformed::Chunked)
        );
    }

    #[test]
    fn a_refusal_carries_the_server_s_code_and_context() {
        let a = Answer {
            status: 404,
            content_type: None,
            headers: vec![],
            body: br#"{"code":"unknown_cluster","context":"no cluster \"x\""}"#.to_vec(),
        };
        let e = a.ok("GET", "/v1/clusters/x").unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert_eq!(
            e.to_string(),
            "GET /v1/clusters/x: HTTP 404: unknown_cluster: no cluster \"x\""
        );
        let text = Answer {
            status: 503,
            content_type: None,
            headers: vec![],
            body: b"busy".to_vec(),
        };
        assert!(text
            .ok("GET", "/")
            .unwrap_err()
            .to_string()
            .ends_with("HTTP 503: error: busy"));
    }

    #[test]
    fn escaping_keeps_only_what_is_safe() {
        assert_eq!(escape("a b/c%", false), "a%20b%2Fc%25");
        assert_eq!(escape("a b/c", true), "a%20b/c");
    }

    #[tokio::test]
    async fn nothing_listening_is_not_running() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = request(&addr, Request::get("/")).await.unwrap_err();
        assert!(matches!(e, ClientError::NotRunning { .. }), "{e:?}");
    }
}
