//! The mesh verbs: `yard peers`, `yard peer`, `yard unpeer`, `yard request`, `yard log`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use yard_data::json::{self, JsonOptions};
use yard_data::time::{parse_duration, TimestampPrecision};
use yard_data::{literal, topic, Value};

use crate::client::{connect, http, parse_value_args, publish_values};
use crate::{LogArgs, PeerArgs, PeersArgs, RequestArgs};

fn describe(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match (v["code"].as_str(), v["context"].as_str()) {
        (Some(code), Some(context)) => format!("{code}: {context}"),
        _ => body.trim().to_string(),
    }
}

pub(crate) async fn peers(args: PeersArgs) -> anyhow::Result<()> {
    let addr = &args.endpoint.endpoint;
    let node = yard_client::node::Node::new(addr.clone(), crate::client::bearer(None));
    let rows = node
        .peers()
        .await
        .map_err(|e| crate::client::node_error(addr, e))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", crate::render::mesh::peers(&rows));
    }
    Ok(())
}

pub(crate) async fn peer(args: PeerArgs) -> anyhow::Result<()> {
    let body = serde_json::json!({ "address": args.address }).to_string();
    let (code, reply) = http(
        "POST",
        &args.endpoint.endpoint,
        "/v1/peers",
        Some(&body),
        args.token.as_deref(),
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
    match code {
        200 => {
            println!(
                "peered with {} ({})",
                args.address,
                v["id"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        202 => {
            println!(
                "not connected yet: {}; {} keeps re-dialing {} with backoff (see `yard peers`)",
                v["error"].as_str().unwrap_or("?"),
                args.endpoint.endpoint,
                args.address
            );
            Ok(())
        }
        _ => bail!("cannot peer with {}: {}", args.address, describe(&reply)),
    }
}

pub(crate) async fn unpeer(args: PeerArgs) -> anyhow::Result<()> {
    let path = format!("/v1/peers?address={}", encode_query(&args.address));
    let (code, reply) = http(
        "DELETE",
        &args.endpoint.endpoint,
        &path,
        None,
        args.token.as_deref(),
    )
    .await?;
    if code != 200 {
        bail!("cannot unpeer {}: {}", args.address, describe(&reply));
    }
    println!("unpeered {}", args.address);
    Ok(())
}

/// Percent-encodes what a query value cannot carry as is.
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
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
                let v: serde_json::Value = serde_json::from_str(&t)?;
                if v["id"] == 1 {
                    return Ok::<_, anyhow::Error>((v, t.to_string()));
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
    let (v, raw) = answer;
    if v["type"] == "error" {
        bail!(
            "{}: {}",
            v["code"].as_str().unwrap_or("?"),
            v["context"].as_str().unwrap_or("?")
        );
    }
    if args.json {
        println!("{raw}");
    } else {
        let value = json::decode_value(&v).context("the answer is not a valid value")?;
        println!("{}", literal::format(&value));
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
