//! The mesh verbs' output: the peer table, a node's status.

use std::fmt::Write;

use yard_gateway::peers::{PeerRow, Peered};
use yard_gateway::status::StatusView;

/// `yard peer`: linked, or still dialing (`from`: the node that dials).
pub(crate) fn peered(p: &Peered, from: &str) -> String {
    match (&p.id, &p.error) {
        (Some(id), _) => format!("peered with {} ({id})", p.address),
        (None, why) => format!(
            "not connected yet: {}; {from} keeps re-dialing {} with backoff (see `yard peers`)",
            why.as_deref().unwrap_or("no answer"),
            p.address
        ),
    }
}

/// `yard status`: the endpoint, its counters and its clients (`addr`: where it was reached).
pub(crate) fn status(v: &StatusView, addr: &str) -> String {
    let m = &v.messages;
    let mut out = String::new();
    let _ = writeln!(out, "endpoint       {}", v.endpoint);
    let _ = writeln!(out, "version        {}", v.version);
    let _ = writeln!(out, "address        {addr}");
    let _ = writeln!(out, "uptime         {:.0}s", v.uptime_seconds);
    let _ = writeln!(out, "subscriptions  {}", v.subscriptions);
    let _ = writeln!(
        out,
        "messages       published {}  delivered {}  dropped {}",
        m.published, m.delivered, m.dropped
    );
    let _ = writeln!(out, "clients        {}", v.clients.len());
    if !v.clients.is_empty() {
        let _ = writeln!(
            out,
            "  {:<6} {:<10} {:>13} {:>8}  subscriptions",
            "id", "kind", "queue", "drops"
        );
        for c in &v.clients {
            let subs: Vec<String> = c.subscriptions.iter().map(|s| format!("{s:?}")).collect();
            let _ = writeln!(
                out,
                "  {:<6} {:<10} {:>13} {:>8}  {}",
                c.id,
                c.kind,
                format!("{}/{}", c.queue_depth, c.queue_capacity),
                c.drops,
                subs.join(" ")
            );
        }
    }
    out
}

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
    use yard_gateway::status::{ClientRow, MeshCounts, MessageCounts, WebSocketCounts};

    #[test]
    fn a_peering_says_whether_the_link_is_up() {
        let up = Peered {
            address: "10.0.0.2:9999".into(),
            state: "connected".into(),
            id: Some("ep-2".into()),
            error: None,
            context: None,
        };
        assert_eq!(
            peered(&up, "127.0.0.1:9997"),
            "peered with 10.0.0.2:9999 (ep-2)"
        );
        let later = Peered {
            id: None,
            state: "connecting".into(),
            error: Some("connection refused".into()),
            ..up
        };
        assert_eq!(
            peered(&later, "127.0.0.1:9997"),
            "not connected yet: connection refused; 127.0.0.1:9997 keeps re-dialing 10.0.0.2:9999 with backoff (see `yard peers`)"
        );
    }

    #[test]
    fn the_status_lists_counters_and_one_line_per_client() {
        let zero_mesh: MeshCounts = serde_json::from_str(
            r#"{"forwarded":0,"peer_dropped":0,"from_peers":0,"duplicates":0,"refused_peers":0,
                "forged_replies":0,"withheld":0,"ttl_expired":0,"requests":0,"request_timeouts":0}"#,
        )
        .unwrap();
        let v = StatusView {
            endpoint: "ep-1".into(),
            version: "0.1.0".into(),
            uptime_seconds: 61.6,
            clients: vec![ClientRow {
                id: 3,
                kind: "websocket".into(),
                endpoint: "ep-1-websocket-3".into(),
                subscriptions: vec!["/a".into(), "/b c".into()],
                queue_depth: 1,
                queue_capacity: 256,
                overflow_policy: "drop_oldest".into(),
                drops: 2,
            }],
            subscriptions: 2,
            messages: MessageCounts {
                published: 10,
                delivered: 9,
                dropped: 1,
            },
            overflow_disconnects: 0,
            peers: Vec::new(),
            reachable: Vec::new(),
            mesh: zero_mesh,
            websocket: WebSocketCounts {
                open: 1,
                connections: 1,
                handshake_failures: 0,
                refused_connections: 0,
                received_messages: 10,
                rejected_messages: 0,
            },
        };
        assert_eq!(
            status(&v, "127.0.0.1:9997"),
            "endpoint       ep-1\n\
             version        0.1.0\n\
             address        127.0.0.1:9997\n\
             uptime         62s\n\
             subscriptions  2\n\
             messages       published 10  delivered 9  dropped 1\n\
             clients        1\n\
             \x20 id     kind               queue    drops  subscriptions\n\
             \x20 3      websocket          1/256        2  \"/a\" \"/b c\"\n"
        );
    }

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
