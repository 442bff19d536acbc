//! Zeek's event layout inside a value: `[count 1, count 1, [name, [args…], [metadata…]?]]`.
//!
//! Metadata entries are `[count key, value]`; key 1 is the network timestamp, user keys are ≥200.

use crate::value::Value;

/// The protocol version Zeek puts first.
pub const PROTOCOL_VERSION: u64 = 1;
/// The message type of an event.
pub const TYPE_EVENT: u64 = 1;
/// The metadata key of the network timestamp.
pub const META_NETWORK_TIMESTAMP: u64 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub args: Vec<Value>,
    /// `None` leaves the metadata vector out; `Some(vec![])` writes an empty one (Zeek 8).
    pub metadata: Option<Vec<(u64, Value)>>,
}

impl Event {
    pub fn new(name: impl Into<String>, args: Vec<Value>) -> Event {
        Event {
            name: name.into(),
            args,
            metadata: None,
        }
    }

    pub fn to_value(&self) -> Value {
        let mut inner = vec![
            Value::String(self.name.clone()),
            Value::Vector(self.args.clone()),
        ];
        if let Some(meta) = &self.metadata {
            inner.push(Value::Vector(
                meta.iter()
                    .map(|(k, v)| Value::Vector(vec![Value::Count(*k), v.clone()]))
                    .collect(),
            ));
        }
        Value::Vector(vec![
            Value::Count(PROTOCOL_VERSION),
            Value::Count(TYPE_EVENT),
            Value::Vector(inner),
        ])
    }

    /// Reads a value as an event; `None` when it does not have the event layout.
    pub fn from_value(v: &Value) -> Option<Event> {
        let [Value::Count(PROTOCOL_VERSION), Value::Count(TYPE_EVENT), Value::Vector(inner)] =
            v.as_vector()?
        else {
            return None;
        };
        let (name, args, meta) = match inner.as_slice() {
            [Value::String(n), Value::Vector(a)] => (n, a, None),
            [Value::String(n), Value::Vector(a), Value::Vector(m)] => (n, a, Some(m)),
            _ => return None,
        };
        let metadata = match meta {
            None => None,
            Some(entries) => Some(
                entries
                    .iter()
                    .map(|e| match e.as_vector()? {
                        [Value::Count(k), v] => Some((*k, v.clone())),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
        };
        Some(Event {
            name: name.clone(),
            args: args.clone(),
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trip() {
        let mut e = Event::new("ping", vec![Value::Count(3)]);
        assert_eq!(Event::from_value(&e.to_value()), Some(e.clone()));
        e.metadata = Some(vec![(META_NETWORK_TIMESTAMP, Value::Timestamp(0))]);
        assert_eq!(Event::from_value(&e.to_value()), Some(e));
        assert_eq!(Event::from_value(&Value::Count(1)), None);
    }
}
