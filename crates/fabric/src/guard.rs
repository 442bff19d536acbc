//! What the router enforces for clients that act for an outside principal (WebSocket clients),
//! and the unguessable reply addresses of requests.
//!
//! - **Reserved topics.** A guarded client receives a reserved (`<$>…`) message only when its
//!   topic starts with one of the client's granted prefixes; every other copy is withheld and
//!   counted. So a broad subscription (`""`, `"<"`) by an anonymous client never sees control
//!   traffic (`<$>/ops/`, `<$>/store/`, `<$>/reply/`), whatever prefix it chose.
//! - **Answers.** A guarded client may answer only requests that were delivered to it (NATS's
//!   `allow_responses`): the router notes the reply address of each request it queues to the
//!   client, and [`ClientGuard::take_reply`] consumes it once. The book holds at most
//!   [`REPLY_BOOK_MAX`] addresses (the oldest forgotten first) for at most [`REPLY_WINDOW`].
//! - **Reply ids.** [`ReplyIds`] makes request ids no one can guess: SHA-256 of a per-process
//!   random key and a counter, so a reply address leaks nothing about the next one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The most open reply addresses one guarded client holds.
pub const REPLY_BOOK_MAX: usize = 4096;
/// How long a delivered request may be answered.
pub const REPLY_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct ReplyBook {
    open: HashMap<String, Instant>,
    order: VecDeque<String>,
}

/// The router's rules for one guarded client.
#[derive(Debug)]
pub struct ClientGuard {
    reserved: Vec<String>,
    /// Written by the router when it queues a request, taken by the client's reply; a std mutex
    /// held for one map operation, never across `.await`.
    replies: Mutex<ReplyBook>,
}

impl ClientGuard {
    /// A guard granting the reserved prefixes `reserved` (none: user topics only).
    pub fn new(reserved: Vec<String>) -> ClientGuard {
        ClientGuard {
            reserved,
            replies: Mutex::new(ReplyBook::default()),
        }
    }

    /// Whether a message on `topic` may reach this client.
    pub fn receives(&self, topic: &str) -> bool {
        !topic.starts_with(yard_data::topic::RESERVED)
            || self.reserved.iter().any(|p| topic.starts_with(p.as_str()))
    }

    /// Notes that a request with `reply_to` was queued to this client.
    pub fn note_reply(&self, reply_to: &str) {
        let mut book = self.replies.lock().expect("reply book");
        if book.open.contains_key(reply_to) {
            return;
        }
        while book.order.len() >= REPLY_BOOK_MAX {
            if let Some(old) = book.order.pop_front() {
                book.open.remove(&old);
            }
        }
        book.open.insert(reply_to.to_string(), Instant::now());
        book.order.push_back(reply_to.to_string());
    }

    /// Whether this client was given `reply_to` (recently, and has not answered it yet); the
    /// address is used up.
    pub fn take_reply(&self, reply_to: &str) -> bool {
        let mut book = self.replies.lock().expect("reply book");
        match book.open.remove(reply_to) {
            Some(at) => {
                book.order.retain(|r| r != reply_to);
                at.elapsed() < REPLY_WINDOW
            }
            None => false,
        }
    }
}

/// Request ids nobody can predict.
#[derive(Debug)]
pub struct ReplyIds {
    key: [u8; 32],
    counter: u64,
}

impl Default for ReplyIds {
    fn default() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random generator failed");
        ReplyIds { key, counter: 0 }
    }
}

impl ReplyIds {
    /// The next id: 64 bits of SHA-256(key ‖ counter).
    pub fn next_id(&mut self) -> u64 {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(self.counter.to_be_bytes());
        let d = h.finalize();
        u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_topics_need_a_grant() {
        let anon = ClientGuard::new(vec![]);
        assert!(anon.receives("/demo/x"));
        for t in [
            "<$>/ops/ep/x/heartbeat",
            "<$>/store/ops-center/c",
            "<$>/reply/x/1",
            "<$>/local/data/statuses",
        ] {
            assert!(!anon.receives(t), "{t}");
        }
        let viewer = ClientGuard::new(vec!["<$>/local/data/".into()]);
        assert!(viewer.receives("<$>/local/data/statuses"));
        assert!(!viewer.receives("<$>/ops/x"));
    }

    #[test]
    fn a_reply_address_is_good_once_and_only_when_given() {
        let g = ClientGuard::new(vec![]);
        assert!(!g.take_reply("<$>/reply/e/1"));
        g.note_reply("<$>/reply/e/1");
        assert!(g.take_reply("<$>/reply/e/1"));
        assert!(!g.take_reply("<$>/reply/e/1"), "used up");
        for i in 0..REPLY_BOOK_MAX + 10 {
            g.note_reply(&format!("<$>/reply/e/{i}"));
        }
        assert!(!g.take_reply("<$>/reply/e/0"), "the oldest were forgotten");
        assert!(g.take_reply(&format!("<$>/reply/e/{}", REPLY_BOOK_MAX + 9)));
    }

    #[test]
    fn reply_ids_differ_between_processes_and_calls() {
        let mut a = ReplyIds::default();
        let mut b = ReplyIds::default();
        let x = a.next_id();
        assert_ne!(x, a.next_id());
        assert_ne!(x, b.next_id(), "a fresh key per router");
    }
}
