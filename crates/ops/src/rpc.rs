//! Requests and answers of the operations protocol over the fabric, and the inbox each daemon
//! reads: thin helpers around [`Endpoint::request_system`] and [`Client::reply`].

use std::sync::Arc;
use std::time::Duration;

use yard_fabric::{Client, Endpoint, Message, OverflowPolicy, RequestError};

use crate::proto::Msg;

/// Why a call got no answer it could use. Only a transport failure may go away by itself:
/// [`CallError::retryable`] says when trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request did not get through, or no answer came back.
    #[error("{code}: {source}", code = .source.code())]
    Transport {
        #[from]
        source: RequestError,
    },
    /// The other side answered no ([`Msg::Refused`]).
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    /// The answer is not a message of the operations protocol.
    #[error("the answer cannot be read: {0}")]
    Decode(String),
}

impl CallError {
    /// Whether the same call may succeed later: nobody answered yet, or not in time. A refusal,
    /// an unreadable answer or a shut-down endpoint will not change by trying again.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            CallError::Transport {
                source: RequestError::NoResponder(_) | RequestError::Timeout { .. }
            }
        )
    }
}

impl From<CallError> for String {
    fn from(e: CallError) -> String {
        e.to_string()
    }
}

/// Sends `msg` to `topic` and decodes the answer; a [`Msg::Refused`] answer becomes an error.
pub async fn call(
    ep: &Endpoint,
    topic: String,
    msg: &Msg,
    timeout: Duration,
) -> Result<Msg, CallError> {
    let answer = ep
        .request_system(topic.clone(), msg.to_value(), timeout)
        .await?;
    match Msg::from_value(&answer.value) {
        Ok(Msg::Refused { code, message }) => Err(CallError::Refused { code, message }),
        Ok(m) => Ok(m),
        Err(e) => Err(CallError::Decode(e.to_string())),
    }
}

/// A daemon's inbox: a client subscribed to its prefixes.
pub struct Inbox {
    pub client: Arc<Client>,
    buf: Vec<Arc<Message>>,
}

impl Inbox {
    /// `queue` messages wait at most; when full, `policy` applies (each caller names its own:
    /// see the queue tables in docs/OPS.md).
    pub async fn open(
        ep: &Endpoint,
        name: &str,
        prefixes: Vec<String>,
        queue: usize,
        policy: OverflowPolicy,
    ) -> Result<Inbox, crate::OpsError> {
        let client = ep
            .attach(name, prefixes, queue, policy)
            .await
            .map_err(|e| crate::OpsError::Inbox {
                name: name.to_string(),
                why: e.to_string(),
            })?;
        Ok(Inbox {
            client: Arc::new(client),
            buf: Vec::new(),
        })
    }

    /// The next batch of messages (empty when the endpoint shut down).
    pub async fn next(&mut self) -> Option<Vec<Arc<Message>>> {
        self.buf.clear();
        match self.client.recv_batch(&mut self.buf, 256).await {
            Ok(()) => Some(std::mem::take(&mut self.buf)),
            Err(_) => None,
        }
    }
}

/// Answers a request; a message that is not a request is ignored (nobody waits for it).
pub async fn answer(client: &Client, request: &Message, msg: Msg) {
    if request.reply_to.is_some() {
        if let Err(e) = client.reply(request, msg.to_value()).await {
            tracing::debug!("cannot answer {}: {e}", request.topic);
        }
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// Answers a request for a chunk of an artifact in `store` from a task of its own (the read
/// goes to a blocking thread), so that the actor that took the request goes on at once.
pub(crate) fn answer_chunk(
    store: crate::artifacts::ArtifactStore,
    client: Arc<Client>,
    request: Arc<Message>,
    (sha256, offset, len): (String, u64, u64),
) {
    tokio::spawn(async move {
        let read = tokio::task::spawn_blocking(move || {
            store.read_chunk(&sha256, offset, len.min(crate::agent::CHUNK))
        })
        .await;
        let reply = match read {
            Ok(Ok((bytes, total))) => {
                use base64::Engine;
                Msg::Chunk {
                    data: base64::engine::general_purpose::STANDARD.encode(bytes),
                    total,
                }
            }
            Ok(Err(e)) => Msg::refused("unknown_artifact", e.to_string()),
            Err(e) => Msg::refused("io_error", e.to_string()),
        };
        answer(&client, &request, reply).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_failures_are_worth_a_retry() {
        let timeout = CallError::from(RequestError::Timeout {
            topic: "t".into(),
            timeout: Duration::from_secs(3),
        });
        assert!(timeout.retryable());
        assert!(
            timeout.to_string().starts_with("request_timeout: "),
            "{timeout}"
        );
        assert!(CallError::from(RequestError::NoResponder("t".into())).retryable());
        assert!(!CallError::from(RequestError::Shutdown).retryable());
        let refused = CallError::Refused {
            code: "unknown_node".into(),
            message: "no node web".into(),
        };
        assert!(!refused.retryable());
        assert_eq!(refused.to_string(), "unknown_node: no node web");
        assert!(!CallError::Decode("junk".into()).retryable());
    }
}
