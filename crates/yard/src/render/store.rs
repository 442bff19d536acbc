//! The store verbs' output: the store table and values.

use std::fmt::Write;

use yard_data::json::{self, JsonOptions};
use yard_data::time::TimestampPrecision;
use yard_data::{literal, Value};
use yard_store::StoreInfo;

/// `yard store list`: one line per store.
pub(crate) fn list(stores: &[StoreInfo]) -> String {
    if stores.is_empty() {
        return "no stores attached (yard node --master NAME, --clone NAME, or yard store attach)\n"
            .into();
    }
    let mut out = String::new();
    for s in stores {
        let _ = writeln!(
            out,
            "{:<20} {:<6} {:<28} {:>8} entries  seq {}",
            s.name, s.role, s.backend, s.entries, s.seq
        );
    }
    out
}

/// A value the store answered (or a key), on its own line: the literal syntax, or a JSON value
/// object with `json`. A plain `none` (most writes' answer) prints nothing.
pub(crate) fn answer(v: &Value, json: bool) -> String {
    if json {
        let opts = JsonOptions {
            timestamp_precision: TimestampPrecision::Nanos,
        };
        return format!("{}\n", json::encode_value(v, opts));
    }
    if *v == Value::None {
        return String::new();
    }
    format!("{}\n", literal::format(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yard_store::Role;

    fn info(name: &str, role: Role, entries: u64, seq: u64) -> StoreInfo {
        StoreInfo {
            name: name.into(),
            role,
            backend: "memory".into(),
            entries,
            epoch: 1,
            seq,
            clones: Vec::new(),
            connected: None,
            synced: None,
            buffered: None,
            dropped_writes: None,
        }
    }

    #[test]
    fn the_store_table_has_a_line_per_store() {
        let text = list(&[
            info("a", Role::Master, 3, 9),
            info("users", Role::Clone, 0, 0),
        ]);
        assert_eq!(
            text,
            "a                    master memory                              3 entries  seq 9\n\
             users                clone  memory                              0 entries  seq 0\n"
        );
    }

    #[test]
    fn no_store_says_how_to_attach_one() {
        assert!(list(&[]).starts_with("no stores attached"));
    }

    #[test]
    fn answers_print_as_literals_or_value_objects_and_none_prints_nothing() {
        let v = Value::Vector(vec![Value::Count(1), Value::String("x".into())]);
        assert_eq!(answer(&v, false), "[1, \"x\"]\n");
        assert_eq!(
            answer(&Value::Count(7), true),
            "{\"@data-type\":\"count\",\"data\":7}\n"
        );
        assert_eq!(answer(&Value::None, false), "");
        assert_eq!(
            answer(&Value::None, true),
            "{\"@data-type\":\"none\",\"data\":{}}\n"
        );
    }
}
