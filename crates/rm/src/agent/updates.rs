//! One task's status updates on their way to the master, as a pure core: in order, at least
//! once. Only the oldest unacknowledged update is in flight; it is sent again every `retry`
//! until the master acknowledges it by its uuid, and only then does the next one go. An
//! acknowledgement for any other uuid (a duplicate, or a stale one) changes nothing. No I/O,
//! no clock: time comes in with each call, in Unix milliseconds.

use std::collections::VecDeque;

use serde_json::Value;

#[derive(Debug, Default)]
pub(crate) struct Updates {
    /// Oldest first; the first is in flight.
    pending: VecDeque<Value>,
    /// When the first was last sent.
    sent_at_ms: Option<u64>,
}

impl Updates {
    /// Queues a status (it carries its `uuid`).
    pub(crate) fn push(&mut self, status: Value) {
        self.pending.push_back(status);
    }

    /// The update to send now, if one is due: the oldest, when it was never sent or was sent
    /// `retry_ms` ago or more.
    pub(crate) fn due(&mut self, now_ms: u64, retry_ms: u64) -> Option<&Value> {
        let head = self.pending.front()?;
        if self
            .sent_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < retry_ms)
        {
            return None;
        }
        self.sent_at_ms = Some(now_ms);
        Some(head)
    }

    /// The master acknowledged `uuid`: the update in flight, if it is that one, is done and
    /// returned; the next becomes due at once.
    pub(crate) fn ack(&mut self, uuid: &str) -> Option<Value> {
        let head = self.pending.front()?;
        if head.get("uuid").and_then(Value::as_str) != Some(uuid) {
            return None;
        }
        self.sent_at_ms = None;
        self.pending.pop_front()
    }

    /// The update in flight is due again at once (a new master, or this agent registered
    /// anew).
    pub(crate) fn resend_now(&mut self) {
        self.sent_at_ms = None;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(uuid: &str, state: &str) -> Value {
        json!({"uuid": uuid, "state": state})
    }

    #[test]
    fn updates_go_one_at_a_time_in_order_and_again_until_acknowledged() {
        let mut u = Updates::default();
        assert_eq!(u.due(0, 500), None);
        u.push(status("a", "TASK_RUNNING"));
        u.push(status("b", "TASK_FINISHED"));
        assert_eq!(u.due(1_000, 500), Some(&status("a", "TASK_RUNNING")));
        // In flight: not again before the retry interval, then again.
        assert_eq!(u.due(1_499, 500), None);
        assert_eq!(u.due(1_500, 500), Some(&status("a", "TASK_RUNNING")));
        // Acknowledgements of anything but the update in flight change nothing.
        assert_eq!(u.ack("b"), None);
        assert_eq!(u.ack("zzz"), None);
        assert_eq!(u.len(), 2);
        assert_eq!(u.ack("a"), Some(status("a", "TASK_RUNNING")));
        // The next goes at once, not after the retry interval.
        assert_eq!(u.due(1_501, 500), Some(&status("b", "TASK_FINISHED")));
        assert_eq!(u.ack("a"), None, "a duplicate acknowledgement");
        assert_eq!(u.ack("b"), Some(status("b", "TASK_FINISHED")));
        assert!(u.is_empty());
        assert_eq!(u.due(9_999, 500), None);
    }

    #[test]
    fn a_new_registration_sends_the_update_in_flight_again_at_once() {
        let mut u = Updates::default();
        u.push(status("a", "TASK_RUNNING"));
        assert!(u.due(1_000, 60_000).is_some());
        assert_eq!(u.due(1_001, 60_000), None);
        u.resend_now();
        assert_eq!(u.due(1_002, 60_000), Some(&status("a", "TASK_RUNNING")));
    }
}
