//! Requests and answers of the operations protocol over the fabric, and the inbox each daemon
//! reads: thin helpers around [`Endpoint::request_system`] and [`Client::reply`].

use std::sync::Arc;
use std::time::Duration;

use yard_fabric::{Client, Endpoint, Message, OverflowPolicy};

use crate::proto::Msg;

/// Sends `msg` to `topic` and decodes the answer; a [`Msg::Refused`] answer becomes an error.
pub async fn call(
    ep: &Endpoint,
    topic: String,
    msg: &Msg,
    timeout: Duration,
) -> Result<Msg, String> {
    let answer = ep
        .request_system(topic.clone(), msg.to_value(), timeout)
        .await
        .map_err(|e| format!("{}: {e}", e.code()))?;
    match Msg::from_value(&answer.value) {
        Ok(Msg::Refused { code, message }) => Err(format!("{code}: {message}")),
        Ok(m) => Ok(m),
        Err(e) => Err(e.to_string()),
    }
}

/// A daemon's inbox: a client subscribed to its prefixes.
pub struct Inbox {
    pub client: Arc<Client>,
    buf: Vec<Arc<Message>>,
}

impl Inbox {
    /// `queue` messages wait at most; when full, `policy` applies (control inboxes wait, metric
    /// inboxes drop the oldest).
    pub async fn open(
        ep: &Endpoint,
        name: &str,
        prefixes: Vec<String>,
        queue: usize,
        policy: OverflowPolicy,
    ) -> Result<Inbox, String> {
        let client = ep
            .attach(name, prefixes, queue, policy)
            .await
            .map_err(|e| format!("cannot open the {name} inbox: {e}"))?;
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
