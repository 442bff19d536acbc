//! The mesh verbs' output: the peer table.

use std::fmt::Write;

use yard_gateway::peers::PeerRow;

/// `yard peers`: one line per peer, its last dial error below it.
pub(crate) fn peers(rows: &[PeerRow]) -> String {
    if rows.is_empty() {
        return "no peers (add one with `yard peer HOST:PORT`)\n".into();
    }
    let mut out = format!(
        "{:<38} {:<22} {:<9} {:<11} {:>13} {:>8} {:>10} {:>10}\n",
        "peer", "address", "direction", "state", "queue", "drops", "sent", "received"
    );
    for p in rows {
        let id = if p.id.is_empty() { "-" } else { &p.id };
        let _ = writeln!(
            out,
            "{:<38} {:<22} {:<9} {:<11} {:>13} {:>8} {:>10} {:>10}",
            id,
            p.address,
            p.direction,
            p.state,
            format!("{}/{}", p.queue_depth, p.queue_capacity),
            p.drops,
            p.sent,
            p.received,
        );
        if let Some(e) = &p.last_error {
            let _ = writeln!(out, "    last error: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_their_errors() {
        assert_eq!(
            peers(&[]),
            "no peers (add one with `yard peer HOST:PORT`)\n"
        );
        let row = PeerRow {
            id: String::new(),
            address: "10.0.0.2:9999".into(),
            direction: "outbound".into(),
            state: "connecting".into(),
            listen: String::new(),
            queue_depth: 0,
            queue_capacity: 1024,
            overflow_policy: "disconnect".into(),
            drops: 0,
            sent: 0,
            received: 0,
            connected_seconds: 0,
            last_error: Some("connection refused".into()),
        };
        let text = peers(&[row]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with(&format!(
                "{:<38} {:<22} outbound  connecting ",
                "-", "10.0.0.2:9999"
            )),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("       0/1024"), "{}", lines[1]);
        assert_eq!(lines[2], "    last error: connection refused");
    }
}
