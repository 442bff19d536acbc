//! The client verbs `yard pub`, `yard sub`, `yard status`, and the CLI's way to a listener:
//! the credential it sends, and thin wrappers over the client library ([`yard_client`]).

use std::io::Write;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use yard_data::json::{self, JsonOptions};
use yard_data::time::TimestampPrecision;
use yard_data::{literal, topic, Value};

use crate::{EndpointArg, PubArgs, StatusArgs, SubArgs};

const LOSSLESS: JsonOptions = JsonOptions {
    timestamp_precision: TimestampPrecision::Nanos,
};

pub(crate) use yard_client::ws::Socket;

fn not_running(addr: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("no endpoint at {addr} ({e}); start one with `yard node` or point at one with --endpoint HOST:PORT")
}

/// A client error from a node's gateway, with the way out when nothing answers.
pub(crate) fn node_error(addr: &str, e: yard_client::ClientError) -> anyhow::Error {
    match e {
        yard_client::ClientError::NotRunning { .. } => not_running(addr, e),
        other => other.into(),
    }
}

pub(crate) use yard_client::http::escape as url_escape;

pub(crate) use yard_client::credential::{bearer, use_file as use_credentials_file};

/// Connects to the WebSocket API with the credential found, subscribes, and waits for the
/// ack. Returns the socket and the client id the endpoint gave us.
pub(crate) async fn connect(addr: &str, prefixes: &[String]) -> anyhow::Result<(Socket, String)> {
    let auth = bearer(None);
    yard_client::ws::connect(addr, prefixes, auth.as_deref())
        .await
        .map_err(|e| match e {
            yard_client::ClientError::NotRunning { .. } => not_running(addr, e),
            other => anyhow!("{other}"),
        })
}

fn parse_values(args: &PubArgs) -> anyhow::Result<Vec<Value>> {
    parse_value_args(&args.values, args.json)
}

/// Values from the command line: JSON value objects with `json`, literal syntax otherwise.
pub(crate) fn parse_value_args(values: &[String], json: bool) -> anyhow::Result<Vec<Value>> {
    if json {
        return values
            .iter()
            .map(|s| json::decode_value_bytes(s.as_bytes()).map_err(|e| anyhow!("{s}: {e}")))
            .collect();
    }
    let input = values.join(" ");
    literal::parse_sequence(&input).map_err(|e| anyhow!("bad value: {}", e.render(&input)))
}

pub(crate) async fn publish(args: PubArgs) -> anyhow::Result<()> {
    topic::check_publish(&args.topic)?;
    let values = parse_values(&args)?;
    publish_values(&args.endpoint.endpoint, &args.topic, &values).await
}

/// Publishes each value as one message and reports what the endpoint rejected.
pub(crate) async fn publish_values(
    endpoint: &str,
    topic: &str,
    values: &[Value],
) -> anyhow::Result<()> {
    let (mut ws, _) = connect(endpoint, &[]).await?;
    for v in values {
        // Nanosecond timestamps: the endpoint reads all 9 digits, so nothing is lost on the way in.
        let text = json::encode_data_message(topic, v, LOSSLESS);
        ws.feed(Message::text(text)).await?;
    }
    ws.flush().await?;
    // Close and read to the end: any error frame for our messages comes before the close reply.
    ws.close(None).await?;
    let mut errors = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            if v["type"] == "error" {
                errors.push(format!(
                    "{}: {}",
                    v["code"].as_str().unwrap_or("?"),
                    v["context"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    if !errors.is_empty() {
        bail!("the endpoint rejected messages:\n  {}", errors.join("\n  "));
    }
    Ok(())
}

pub(crate) async fn subscribe(args: SubArgs) -> anyhow::Result<()> {
    let (mut ws, id) = connect(&args.endpoint.endpoint, &args.prefixes).await?;
    eprintln!(
        "yard sub: subscribed to {:?} on {} as {id}",
        args.prefixes, args.endpoint.endpoint
    );
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    loop {
        if args.count.is_some_and(|n| seen >= n) {
            let _ = ws.close(None).await;
            return Ok(());
        }
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let text = match msg {
            None => bail!("the endpoint closed the connection"),
            Some(Err(e)) => bail!("connection lost: {e}"),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                bail!("the endpoint closed the connection: {why}");
            }
            Some(Ok(_)) => continue,
        };
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("endpoint sent invalid JSON: {text}"))?;
        if v["type"] == "error" {
            eprintln!(
                "yard sub: error from endpoint: {}: {}",
                v["code"].as_str().unwrap_or("?"),
                v["context"].as_str().unwrap_or("?")
            );
            continue;
        }
        let line = if args.json {
            text.to_string()
        } else {
            let m = json::decode_data_message(text.as_bytes())
                .map_err(|e| anyhow!("endpoint sent a bad message: {e}"))?;
            format!("{} {}", m.topic, literal::format(&m.value))
        };
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        seen += 1;
    }
}

/// A minimal HTTP/1.1 exchange with the endpoint's own gateway; returns the status code and the
/// body.
pub(crate) async fn http(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let body = body.unwrap_or("").as_bytes();
    let ct = (!body.is_empty()).then_some("application/json");
    let auth = bearer(token);
    let (code, body) = http_request(method, addr, path, body, ct, auth.as_deref()).await?;
    let text = String::from_utf8(body).context("HTTP reply is not UTF-8")?;
    Ok((code, text))
}

/// One HTTP/1.1 request with a binary body; the status and the body of the answer.
pub(crate) async fn http_bytes(
    method: &str,
    addr: &str,
    path: &str,
    body: &[u8],
    token: Option<&str>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let auth = bearer(token);
    let ct = (!body.is_empty()).then_some("application/octet-stream");
    http_request(method, addr, path, body, ct, auth.as_deref()).await
}

/// One HTTP/1.1 request with the given content type and `Authorization` header value.
pub(crate) async fn http_request(
    method: &str,
    addr: &str,
    path: &str,
    body: &[u8],
    content_type: Option<&str>,
    authorization: Option<&str>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let r = yard_client::http::Request {
        method,
        path,
        body,
        content_type,
        authorization,
    };
    match yard_client::http::request(addr, r).await {
        Ok(a) => Ok((a.status, a.body)),
        Err(e @ yard_client::ClientError::NotRunning { .. }) => Err(not_running(addr, e)),
        Err(e) => Err(e.into()),
    }
}

/// `GET path`; any status but 200 is an error.
pub(crate) async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let (code, body) = http("GET", addr, path, None, None).await?;
    if code != 200 {
        bail!("GET {path} from {addr}: HTTP {code}: {body}");
    }
    Ok(body)
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let EndpointArg { endpoint } = &args.endpoint;
    let body = http_get(endpoint, "/v1/status/json").await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let m = &v["messages"];
    println!("endpoint       {}", v["endpoint"].as_str().unwrap_or("?"));
    println!("version        {}", v["version"].as_str().unwrap_or("?"));
    println!("address        {endpoint}");
    println!(
        "uptime         {:.0}s",
        v["uptime_seconds"].as_f64().unwrap_or(0.0)
    );
    println!("subscriptions  {}", v["subscriptions"]);
    println!(
        "messages       published {}  delivered {}  dropped {}",
        m["published"], m["delivered"], m["dropped"]
    );
    let clients = v["clients"].as_array().cloned().unwrap_or_default();
    println!("clients        {}", clients.len());
    if !clients.is_empty() {
        println!(
            "  {:<6} {:<10} {:>13} {:>8}  subscriptions",
            "id", "kind", "queue", "drops"
        );
        for c in clients {
            let subs: Vec<String> = c["subscriptions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| format!("{:?}", s.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "  {:<6} {:<10} {:>13} {:>8}  {}",
                c["id"],
                c["kind"].as_str().unwrap_or("?"),
                format!("{}/{}", c["queue_depth"], c["queue_capacity"]),
                c["drops"],
                subs.join(" ")
            );
        }
    }
    Ok(())
}
