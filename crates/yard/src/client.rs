//! The client verbs `yard pub`, `yard sub`, `yard status`, and the CLI's way to a listener:
//! the credential it sends, and thin wrappers over the client library ([`yard_client`]).

use std::io::Write;

use anyhow::{anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use yard_data::json::{self, JsonOptions, ServerMessage};
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

/// A client error from a node's gateway: the way out when nothing answers, the server's
/// `code: context` when it refused.
pub(crate) fn node_error(addr: &str, e: yard_client::ClientError) -> anyhow::Error {
    match e {
        yard_client::ClientError::NotRunning { .. } => not_running(addr, e),
        yard_client::ClientError::Refused { code, context, .. } => anyhow!("{code}: {context}"),
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
            if let Ok(ServerMessage::Error { code, context, .. }) =
                json::decode_server_message(t.as_bytes())
            {
                errors.push(format!("{code}: {context}"));
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
        let line = match json::decode_server_message(text.as_bytes())
            .map_err(|e| anyhow!("endpoint sent a bad message: {e}: {text}"))?
        {
            ServerMessage::Error { code, context, .. } => {
                eprintln!("yard sub: error from endpoint: {code}: {context}");
                continue;
            }
            _ if args.json => text.to_string(),
            ServerMessage::Data { topic, value, .. } => {
                format!("{topic} {}", literal::format(&value))
            }
            _ => bail!("endpoint sent a message that is no publication: {text}"),
        };
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        seen += 1;
    }
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let EndpointArg { endpoint } = &args.endpoint;
    let node = yard_client::node::Node::new(endpoint.clone(), bearer(None));
    let view = node.status().await.map_err(|e| node_error(endpoint, e))?;
    if args.json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        print!("{}", crate::render::mesh::status(&view, endpoint));
    }
    Ok(())
}
