//! The trust verbs' output: the token table and audit records.

use std::fmt::Write;

use yard_auth::{AuditRecord, TokenRecord};

/// `yard token list`: one line per token (its secret never shown: the registry holds none).
pub(crate) fn tokens(records: &[TokenRecord], now_secs: u64) -> String {
    let mut out = format!("{:<14} {:<20} {:<9} {:<8}\n", "ID", "NAME", "ROLE", "STATE");
    for r in records {
        let role = if r.policy.is_some() {
            "custom"
        } else {
            r.role.name()
        };
        let _ = writeln!(
            out,
            "{:<14} {:<20} {:<9} {:<8}",
            r.id,
            r.name,
            role,
            r.state(now_secs)
        );
    }
    out
}

/// `yard token list --json`: the records without their secret hashes, with their state now.
pub(crate) fn tokens_json(records: &[TokenRecord], now_secs: u64) -> String {
    let list: Vec<_> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "name": r.name, "role": r.role.name(),
                "custom_policy": r.policy.is_some(), "created": r.created,
                "expires": r.expires, "revoked": r.revoked,
                "state": r.state(now_secs),
            })
        })
        .collect();
    format!(
        "{}\n",
        serde_json::to_string_pretty(&list).expect("rows serialize")
    )
}

/// `yard audit`: oldest first, one line per record, times in UTC.
pub(crate) fn audit(records: &[AuditRecord]) -> String {
    let mut out = String::new();
    for r in records.iter().rev() {
        let _ = writeln!(
            out,
            "{} {:<16} {:<22} {:<15} {:<4} {} {}",
            yard_data::time::format_timestamp(
                yard_data::time::ms_to_ns(r.ts),
                yard_data::time::TimestampPrecision::Millis
            ),
            r.result,
            r.principal,
            r.remote,
            r.status.map(|s| s.to_string()).unwrap_or_default(),
            r.action,
            r.detail
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_show_their_role_and_state_never_a_secret() {
        let rec = |id: &str, expires: Option<u64>, revoked: Option<u64>| TokenRecord {
            id: id.into(),
            name: "alice".into(),
            role: yard_auth::Role::Operator,
            policy: None,
            hash: "cafe".repeat(16),
            created: 0,
            expires,
            revoked,
        };
        let text = tokens(
            &[
                rec("t1", None, None),
                rec("t2", Some(10), None),
                rec("t3", None, Some(5)),
            ],
            20,
        );
        assert_eq!(
            text,
            format!(
                "{:<14} {:<20} {:<9} {:<8}\n{:<14} {:<20} {:<9} {:<8}\n{:<14} {:<20} {:<9} {:<8}\n{:<14} {:<20} {:<9} {:<8}\n",
                "ID", "NAME", "ROLE", "STATE",
                "t1", "alice", "operator", "active",
                "t2", "alice", "operator", "expired",
                "t3", "alice", "operator", "revoked"
            )
        );
        assert!(!text.contains("cafe"));
    }

    #[test]
    fn audit_lines_run_oldest_first() {
        let rec = |ts: u64, result: &str| AuditRecord {
            ts,
            principal: "operator:alice".into(),
            remote: "127.0.0.1:5".into(),
            action: "POST /v1/commands".into(),
            result: result.into(),
            status: Some(202),
            detail: String::new(),
        };
        // The log answers newest first.
        let text = audit(&[rec(2_000, "denied"), rec(1_000, "ok")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(" ok "), "{}", lines[0]);
        assert!(lines[1].contains(" denied "), "{}", lines[1]);
        assert!(
            lines[0].ends_with("operator:alice         127.0.0.1:5     202  POST /v1/commands "),
            "{:?}",
            lines[0]
        );
    }
}
