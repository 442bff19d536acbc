//! The mesh verbs: `yard peers`, `yard peer`, `yard unpeer`, `yard request`, `yard log`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use yard_data::json::{self, JsonOptions, ServerMessage};
use yard_data::time::{parse_duration, TimestampPrecision};
use yard_data::{literal, topic, Value};

use yard_client::node::Node;

use crate::client::{bearer, connect, node_error, parse_value_args, publish_values};
use crate::{LogArgs, PeerArgs, PeersArgs, RequestArgs};

pub(crate) async fn peers(args: PeersArgs) -> anyhow::Result<()> {
    let addr = &args.endpoint.endpoint;
    let node = Node::new(addr.clone(), bearer(None));
    let rows = node.peers().await.map_err(|e| node_error(addr, e))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", crate::render::mesh::peers(&rows));
    }
    Ok(())
}

pub(crate) async fn peer(args: PeerArgs) -> anyhow::Result<()> {
    let addr = &args.endpoint.endpoint;
    let node = Node::new(addr.clone(), bearer(args.token.as_deref()));
    let done = node
        .peer(&args.address)
        .await
        .map_err(|e| node_error(addr, e))
        .with_context(|| format!("cannot peer with {}", args.address))?;
    println!("{}", crate::render::mesh::peered(&done, addr));
    Ok(())
}

pub(crate) async fn unpeer(args: PeerArgs) -> anyhow::Result<()> {
    let addr = &args.endpoint.endpoint;
    let node = Node::new(addr.clone(), bearer(args.token.as_deref()));
    node.unpeer(&args.address)
        .await
        .map_err(|e| node_error(addr, e))
        .with_context(|| format!("cannot unpeer {}", args.address))?;
    println!("unpeered {}", args.address);
    Ok(())
}

/// One value from the command line: a single value as is, several as a vector.
fn one_value(values: &[String], json: bool) -> anyhow::Result<Value> {
    let mut v = parse_value_args(values, json)?;
    Ok(if v.len() == 1 {
        v.remove(0)
    } else {
        Value::Vector(v)
    })
}

pub(crate) async fn request(args: RequestArgs) -> anyhow::Result<()> {
    topic::check_publish(&args.topic)?;
    let value = one_value(&args.values, args.json_input)?;
    let timeout = parse_duration(&args.timeout).map_err(|e| anyhow!("--timeout: {e}"))?;
    if timeout.is_zero() {
        bail!("--timeout must be positive, got {}", args.timeout);
    }
    let ns = timeout.as_nanos();
    let (mut ws, _) = connect(&args.endpoint.endpoint, &[]).await?;
    let mut text = String::from("{\"type\":\"request\",\"id\":1,\"topic\":");
    json::write_json_string(&mut text, &args.topic);
    text.push_str(&format!(",\"timeout\":\"{}ns\",", ns));
    let opts = JsonOptions {
        timestamp_precision: TimestampPrecision::Nanos,
    };
    json::write_value_fields(&mut text, &value, opts);
    text.push('}');
    ws.send(Message::text(text)).await?;
    // The endpoint answers within the timeout; a little slack covers the trip.
    let wait = Duration::from_nanos(ns as u64) + Duration::from_secs(2);
    let answer = tokio::time::timeout(wait, async {
        while let Some(m) = ws.next().await {
            if let Message::Text(t) = m? {
                let frame = json::decode_server_message(t.as_bytes())
                    .map_err(|e| anyhow!("the endpoint sent a bad message: {e}: {t}"))?;
                match &frame {
                    ServerMessage::Reply { id, .. } | ServerMessage::Error { id: Some(id), .. }
                        if *id == 1 =>
                    {
                        return Ok::<_, anyhow::Error>((frame, t.to_string()));
                    }
                    _ => {}
                }
            }
        }
        Err(anyhow!(
            "the endpoint closed the connection before answering"
        ))
    })
    .await
    .map_err(|_| anyhow!("no answer from the endpoint within {wait:?}"))??;
    let _ = ws.close(None).await;
    match answer {
        (ServerMessage::Error { code, context, .. }, raw) => {
            // A responder's failure names its own code.
            let failure = serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|j| j["failure"].as_str().map(str::to_string));
            match failure {
                Some(f) => bail!("{code} ({f}): {context}"),
                None => bail!("{code}: {context}"),
            }
        }
        (_, raw) if args.json => println!("{raw}"),
        (ServerMessage::Reply { value, .. }, _) => println!("{}", literal::format(&value)),
        (_, raw) => bail!("the endpoint answered with something else: {raw}"),
    }
    Ok(())
}

pub(crate) async fn log(args: LogArgs) -> anyhow::Result<()> {
    yard_data::topic::check_stream(&args.stream)?;
    let value = one_value(&args.values, args.json)?;
    publish_values(
        &args.endpoint.endpoint,
        &format!("{}{}", yard_data::topic::LOG_ROOT, args.stream),
        &[value],
    )
    .await
}
