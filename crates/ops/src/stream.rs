//! The pure parts of the center's live stream (`GET /v1/stream`, server-sent events): how a
//! frame is written, and whether a client that reconnects with `Last-Event-ID` gets the events
//! it missed replayed or a new snapshot.
//!
//! The stream sends, in this order: `snapshot` (the topology, recent commands and changes, and
//! the newest event id) or, on a resume the center can serve, the missed `topology` events and
//! then `resumed`; after that `topology` events (with `id:` = the event's sequence number and
//! the whole record of the cluster it touched), `command` events (a command's summary, when it
//! changes), `metrics` (at most once a second, the newest samples of the series the client
//! named), and a keep-alive comment every 15 s. Each client reads from a bounded ring; one that
//! falls behind it gets a new snapshot instead of a silent gap.

use std::fmt::Write;

/// Where a (re)connecting client starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Send the whole state.
    Snapshot,
    /// Replay the events after this one (the center still holds them all).
    Replay { after: u64 },
}

/// Decides how to start a client that last saw `last_id`, when the center holds the events
/// `oldest..=newest` (`oldest` is `None` when it holds none).
pub fn resume(last_id: Option<u64>, oldest: Option<u64>, newest: u64) -> Resume {
    let Some(last) = last_id else {
        return Resume::Snapshot;
    };
    if last > newest {
        // Ids from before a restart of the center: they mean nothing now.
        return Resume::Snapshot;
    }
    if last == newest {
        return Resume::Replay { after: last };
    }
    match oldest {
        Some(o) if last + 1 >= o => Resume::Replay { after: last },
        _ => Resume::Snapshot,
    }
}

/// One server-sent event: `event`, an optional `id`, and `data` (one line of JSON).
pub fn frame(event: &str, id: Option<u64>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    let _ = writeln!(out, "event: {event}");
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    // JSON as serde_json writes it has no raw newline; split anyway, so a frame never breaks.
    for line in data.split('\n') {
        let _ = writeln!(out, "data: {line}");
    }
    out.push('\n');
    out
}

/// The keep-alive comment.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// The series prefixes a client asked for (`?series=a/,b/`): at most [`MAX_PREFIXES`], none
/// empty (an empty prefix would ask for every series of the system).
pub fn prefixes(query: Option<&str>) -> Result<Vec<String>, BadSeries> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Ok(vec![]);
    };
    let list: Vec<String> = q.split(',').map(str::to_string).collect();
    if list.len() > MAX_PREFIXES {
        return Err(BadSeries::TooMany(list.len()));
    }
    if list.iter().any(|p| p.is_empty()) {
        return Err(BadSeries::Empty);
    }
    Ok(list)
}

/// A `series` parameter the stream does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSeries {
    #[error("at most {MAX_PREFIXES} series prefixes per stream, not {0}")]
    TooMany(usize),
    #[error("an empty series prefix would send every series: name one")]
    Empty,
}

/// Series prefixes one stream may follow.
pub const MAX_PREFIXES: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_client_gets_a_snapshot() {
        assert_eq!(resume(None, Some(1), 10), Resume::Snapshot);
        assert_eq!(resume(None, None, 0), Resume::Snapshot);
    }

    #[test]
    fn a_client_that_missed_held_events_gets_them_replayed() {
        assert_eq!(resume(Some(7), Some(1), 10), Resume::Replay { after: 7 });
        assert_eq!(resume(Some(0), Some(1), 10), Resume::Replay { after: 0 });
        assert_eq!(resume(Some(10), Some(1), 10), Resume::Replay { after: 10 });
        assert_eq!(resume(Some(4), Some(5), 10), Resume::Replay { after: 4 });
        assert_eq!(resume(Some(3), None, 3), Resume::Replay { after: 3 });
    }

    #[test]
    fn a_gap_or_an_id_from_before_a_restart_gets_a_snapshot() {
        assert_eq!(resume(Some(3), Some(5), 10), Resume::Snapshot);
        assert_eq!(resume(Some(57), Some(1), 3), Resume::Snapshot);
        assert_eq!(resume(Some(2), None, 3), Resume::Snapshot);
    }

    #[test]
    fn frames_are_server_sent_events() {
        assert_eq!(
            frame("topology", Some(4), r#"{"a":1}"#),
            "event: topology\nid: 4\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            frame("command", None, "x\ny"),
            "event: command\ndata: x\ndata: y\n\n"
        );
    }

    #[test]
    fn series_prefixes_are_bounded_and_named() {
        assert_eq!(prefixes(None), Ok(vec![]));
        assert_eq!(prefixes(Some("")), Ok(vec![]));
        assert_eq!(
            prefixes(Some("local/agent-1/,b/")),
            Ok(vec!["local/agent-1/".to_string(), "b/".to_string()])
        );
        assert_eq!(prefixes(Some("a/,,b/")), Err(BadSeries::Empty));
        let many = vec!["p/"; MAX_PREFIXES + 1].join(",");
        assert_eq!(prefixes(Some(&many)), Err(BadSeries::TooMany(17)));
    }
}
