//! The WebSocket API's handshake: connect to `ws://ADDR/v1/messages/json` (or `wss://`, as
//! [`crate::trust`] reads the address), send the subscriptions, read the ack.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::trust::Stream;
use crate::ClientError;

/// A connected WebSocket client.
pub type Socket = WebSocketStream<Stream>;

/// Connects, subscribes to `prefixes`, and waits for the ack. Returns the socket and the id
/// the endpoint answered with. `authorization` is the whole header value (`Bearer …`).
pub async fn connect(
    addr: &str,
    prefixes: &[String],
    authorization: Option<&str>,
) -> Result<(Socket, String), ClientError> {
    let protocol = |why: String| ClientError::Protocol {
        addr: addr.to_string(),
        why,
    };
    let (stream, target) = crate::trust::connect(addr).await?;
    let addr = target.addr.as_str();
    let scheme = if target.tls { "wss" } else { "ws" };
    let mut request = format!("{scheme}://{addr}/v1/messages/json")
        .into_client_request()
        .map_err(|e| ClientError::NotRunning {
            addr: addr.to_string(),
            why: format!("not an address such as 127.0.0.1:9997: {e}"),
        })?;
    if let Some(auth) = authorization {
        let value = auth
            .parse()
            .map_err(|_| protocol("the credential is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, None)
        .await
        .map_err(|e| ClientError::NotRunning {
            addr: addr.to_string(),
            why: e.to_string(),
        })?;
    let subscriptions = serde_json::to_string(prefixes).expect("strings serialize");
    ws.send(Message::text(subscriptions))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let reply = ws
        .next()
        .await
        .ok_or_else(|| protocol("the endpoint closed the connection during the handshake".into()))?
        .map_err(|e| protocol(e.to_string()))?;
    let text = reply
        .into_text()
        .map_err(|_| protocol("the handshake reply is not text".into()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| protocol(format!("the handshake reply is not JSON ({e}): {text}")))?;
    match v.get("type").and_then(|t| t.as_str()) {
        Some("ack") => Ok((ws, v["endpoint"].as_str().unwrap_or_default().to_string())),
        Some("error") => Err(ClientError::Refused {
            method: "WebSocket".into(),
            path: "/v1/messages/json".into(),
            status: 101,
            code: v["code"].as_str().unwrap_or("error").to_string(),
            context: v["context"].as_str().unwrap_or("").to_string(),
        }),
        _ => Err(protocol(format!("unexpected handshake reply: {text}"))),
    }
}
