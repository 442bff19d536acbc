//! The bounded outbound queue of one subscriber, with a named overflow policy.
//!
//! The router pushes; the subscriber's writer drains in batches. When the queue holds `capacity`
//! items and one more arrives:
//! - [`OverflowPolicy::Disconnect`]: the queue is discarded and closed with
//!   [`CloseReason::Overflow`]; the writer learns why and tells its client before closing;
//! - [`OverflowPolicy::DropOldest`]: the oldest queued item is dropped to make room;
//! - [`OverflowPolicy::DropNewest`]: the arriving item is dropped.
//!
//! Every dropped item is counted in [`Outbox::drops`]. The router never waits on an outbox, so a
//! slow subscriber never slows anyone else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// What to do when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Close the subscriber, after telling it why.
    #[default]
    Disconnect,
    /// Drop the oldest queued message.
    DropOldest,
    /// Drop the message that did not fit.
    DropNewest,
}

impl OverflowPolicy {
    pub fn name(self) -> &'static str {
        match self {
            OverflowPolicy::Disconnect => "disconnect",
            OverflowPolicy::DropOldest => "drop_oldest",
            OverflowPolicy::DropNewest => "drop_newest",
        }
    }
}

/// A policy name that is not one of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown overflow policy {0:?} (expected disconnect, drop_oldest or drop_newest)")]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for OverflowPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, UnknownPolicy> {
        match s {
            "disconnect" => Ok(OverflowPolicy::Disconnect),
            "drop_oldest" | "drop-oldest" => Ok(OverflowPolicy::DropOldest),
            "drop_newest" | "drop-newest" => Ok(OverflowPolicy::DropNewest),
            _ => Err(UnknownPolicy(s.to_string())),
        }
    }
}

impl std::fmt::Display for OverflowPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an outbox was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The queue overflowed under [`OverflowPolicy::Disconnect`].
    Overflow { capacity: usize },
    /// The endpoint is shutting down.
    Shutdown,
    /// The subscriber itself went away (or, for a peer link, the link was closed locally).
    Detached,
    /// A peer link was closed by `unpeer`: the peer is told not to re-dial.
    Unpeered,
}

/// What happened to one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping the oldest item.
    DroppedOldest,
    /// Not queued.
    DroppedNewest,
    /// Not queued; the outbox is now closed for overflow.
    Disconnected,
    /// Not queued; the outbox was already closed.
    Closed,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    closed: Option<CloseReason>,
}

/// A bounded single-consumer queue with an overflow policy.
#[derive(Debug)]
pub struct Outbox<T> {
    /// Held only for push/drain, never across an await.
    state: Mutex<State<T>>,
    notify: Notify,
    capacity: usize,
    policy: OverflowPolicy,
    drops: AtomicU64,
}

impl<T> Outbox<T> {
    pub fn new(capacity: usize, policy: OverflowPolicy) -> Outbox<T> {
        assert!(capacity > 0, "outbox capacity must be at least 1");
        Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: None,
            }),
            notify: Notify::new(),
            capacity,
            policy,
            drops: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// Messages dropped so far (by either drop policy, or discarded on an overflow disconnect).
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    pub fn depth(&self) -> usize {
        self.state.lock().expect("outbox lock").queue.len()
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().expect("outbox lock").closed.is_some()
    }

    /// Queues `item` per the policy; never waits.
    pub fn push(&self, item: T) -> Pushed {
        let mut st = self.state.lock().expect("outbox lock");
        if st.closed.is_some() {
            return Pushed::Closed;
        }
        let result = if st.queue.len() < self.capacity {
            st.queue.push_back(item);
            Pushed::Queued
        } else {
            match self.policy {
                OverflowPolicy::DropOldest => {
                    st.queue.pop_front();
                    st.queue.push_back(item);
                    self.drops.fetch_add(1, Ordering::Relaxed);
                    Pushed::DroppedOldest
                }
                OverflowPolicy::DropNewest => {
                    self.drops.fetch_add(1, Ordering::Relaxed);
                    return Pushed::DroppedNewest;
                }
                OverflowPolicy::Disconnect => {
                    let lost = st.queue.len() as u64 + 1;
                    st.queue.clear();
                    st.closed = Some(CloseReason::Overflow {
                        capacity: self.capacity,
                    });
                    self.drops.fetch_add(lost, Ordering::Relaxed);
                    Pushed::Disconnected
                }
            }
        };
        drop(st);
        self.notify.notify_one();
        result
    }

    /// Closes the outbox; queued items stay readable, the reason comes after them. The first
    /// reason given wins.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.state.lock().expect("outbox lock");
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Moves up to `max` queued items into `out` without waiting; returns how many.
    pub fn drain_now(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut st = self.state.lock().expect("outbox lock");
        let n = st.queue.len().min(max);
        out.extend(st.queue.drain(..n));
        n
    }

    /// Moves up to `max` queued items into `out`, waiting while the queue is empty. Returns the
    /// close reason once the outbox is closed and drained.
    pub async fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<(), CloseReason> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.state.lock().expect("outbox lock");
                if !st.queue.is_empty() {
                    let n = st.queue.len().min(max);
                    out.extend(st.queue.drain(..n));
                    return Ok(());
                }
                if let Some(reason) = &st.closed {
                    return Err(reason.clone());
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &Outbox<u32>) -> Vec<u32> {
        let mut st = o.state.lock().unwrap();
        st.queue.drain(..).collect()
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let o = Outbox::new(3, OverflowPolicy::DropOldest);
        for i in 0..5 {
            o.push(i);
        }
        assert_eq!(drain(&o), [2, 3, 4]);
        assert_eq!(o.drops(), 2);
    }

    #[test]
    fn drop_newest_keeps_the_oldest() {
        let o = Outbox::new(3, OverflowPolicy::DropNewest);
        let results: Vec<_> = (0..5).map(|i| o.push(i)).collect();
        assert_eq!(results[3], Pushed::DroppedNewest);
        assert_eq!(drain(&o), [0, 1, 2]);
        assert_eq!(o.drops(), 2);
    }

    #[tokio::test]
    async fn disconnect_closes_with_the_reason() {
        let o = Outbox::new(2, OverflowPolicy::Disconnect);
        assert_eq!(o.push(1), Pushed::Queued);
        assert_eq!(o.push(2), Pushed::Queued);
        assert_eq!(o.push(3), Pushed::Disconnected);
        assert_eq!(o.push(4), Pushed::Closed);
        assert_eq!(o.drops(), 3);
        let mut out = Vec::new();
        assert_eq!(
            o.recv_batch(&mut out, 10).await,
            Err(CloseReason::Overflow { capacity: 2 })
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn close_delivers_queued_items_first() {
        let o = Outbox::new(4, OverflowPolicy::Disconnect);
        o.push(1);
        o.push(2);
        o.close(CloseReason::Shutdown);
        let mut out = Vec::new();
        assert_eq!(o.recv_batch(&mut out, 1).await, Ok(()));
        assert_eq!(o.recv_batch(&mut out, 10).await, Ok(()));
        assert_eq!(out, [1, 2]);
        assert_eq!(o.recv_batch(&mut out, 10).await, Err(CloseReason::Shutdown));
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_push() {
        let o = std::sync::Arc::new(Outbox::new(4, OverflowPolicy::Disconnect));
        let reader = {
            let o = o.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                o.recv_batch(&mut out, 10).await.map(|_| out)
            })
        };
        tokio::task::yield_now().await;
        o.push(7);
        assert_eq!(reader.await.unwrap(), Ok(vec![7]));
    }
}
