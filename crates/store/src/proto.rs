//! The messages between a store's master, its clones and remote users, carried as fabric values
//! on reserved topics:
//!
//! - `<$>/store/NAME/m`: the master subscribes. Requests (answered with a reply): `Write`,
//!   `Read`, `Fetch`, `Page`, `Who`. One plain publication: `Ack`.
//! - `<$>/store/NAME/c`: the clones subscribe. The master publishes `Update` (a run of effects
//!   with the sequence number of the first) and, every heartbeat interval, `Heartbeat`.
//!
//! Each message is a vector whose first element is a count tag. [`decode_to_master`], [`decode_from_master`] and the other
//! `decode_*` functions check everything: a message from the network is untrusted.

use yard_data::Value;

use crate::ops::{Effect, Entry, Mutation, Query};
use crate::StoreError;

pub fn master_topic(store: &str) -> String {
    format!("<$>/store/{store}/m")
}

pub fn clones_topic(store: &str) -> String {
    format!("<$>/store/{store}/c")
}

/// One operation's answer.
pub type OpResult = Result<Value, StoreError>;

#[derive(Debug, Clone, PartialEq)]
pub enum ToMaster {
    /// Mutations from `writer` numbered `first`, `first + 1`, …; a writer's numbers only grow,
    /// so the master applies each number once even when a request is retried. An empty writer
    /// means "no retries, no dedup" (one-off remote writes).
    Write {
        writer: String,
        first: u64,
        muts: Vec<Mutation>,
    },
    Read {
        query: Query,
    },
    /// A clone asks for everything after `from - 1` in `epoch` (0: it has nothing).
    Fetch {
        clone: String,
        epoch: u64,
        from: u64,
    },
    /// The next snapshot page after key `after` in `epoch`.
    Page {
        clone: String,
        epoch: u64,
        after: Value,
    },
    /// Who is the master? (best-effort detection of a second master)
    Who,
    /// A clone has applied everything up to `seq` of `epoch`.
    Ack {
        clone: String,
        epoch: u64,
        seq: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum FromMaster {
    Written {
        epoch: u64,
        seq: u64,
        results: Vec<OpResult>,
    },
    Answer(OpResult),
    /// Effects `first..` of `epoch`; the master is at `seq`.
    Log {
        epoch: u64,
        first: u64,
        effects: Vec<Effect>,
        seq: u64,
    },
    /// A snapshot page of `epoch` read when the master was at `seq`; `more` says another follows.
    Snapshot {
        epoch: u64,
        seq: u64,
        entries: Vec<(Value, Entry)>,
        more: bool,
    },
    /// The epoch changed under a paged snapshot: start again with `Fetch`.
    Restart,
    Master {
        endpoint: String,
    },
    /// Published on the clones topic.
    Update {
        epoch: u64,
        first: u64,
        effects: Vec<Effect>,
    },
    Heartbeat {
        epoch: u64,
        seq: u64,
    },
}

/// Why a protocol message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed store message: {0}")]
pub struct ProtoError(pub String);

fn bad(what: impl Into<String>) -> ProtoError {
    ProtoError(what.into())
}

fn c(n: u64) -> Value {
    Value::Count(n)
}

fn s(x: &str) -> Value {
    Value::String(x.to_string())
}

fn opt_span(x: Option<i64>) -> Value {
    x.map_or(Value::None, Value::Timespan)
}

fn opt_time(x: Option<i64>) -> Value {
    x.map_or(Value::None, Value::Timestamp)
}

// ---- encoding ---------------------------------------------------------------------------------

pub fn encode_mutation(m: &Mutation) -> Value {
    let mut v = vec![s(m.name())];
    match m {
        Mutation::Put { key, value, expiry }
        | Mutation::PutUnique { key, value, expiry }
        | Mutation::Increment {
            key,
            amount: value,
            expiry,
        }
        | Mutation::Decrement {
            key,
            amount: value,
            expiry,
        }
        | Mutation::Append { key, value, expiry }
        | Mutation::Push { key, value, expiry } => {
            v.extend([key.clone(), value.clone(), opt_span(*expiry)])
        }
        Mutation::Erase { key } => v.push(key.clone()),
        Mutation::Clear => {}
        Mutation::InsertInto {
            key,
            index,
            value,
            expiry,
        } => v.extend([
            key.clone(),
            index.clone(),
            value
                .clone()
                .map_or(Value::Vector(vec![]), |x| Value::Vector(vec![x])),
            opt_span(*expiry),
        ]),
        Mutation::RemoveFrom { key, index, expiry } => {
            v.extend([key.clone(), index.clone(), opt_span(*expiry)])
        }
        Mutation::Pop { key, expiry } => v.extend([key.clone(), opt_span(*expiry)]),
    }
    Value::Vector(v)
}

pub fn encode_query(q: &Query) -> Value {
    let mut v = vec![s(q.name())];
    match q {
        Query::Get { key } | Query::Exists { key } => v.push(key.clone()),
        Query::Keys => {}
        Query::GetIndexFromValue { key, index } => v.extend([key.clone(), index.clone()]),
    }
    Value::Vector(v)
}

pub fn encode_effect(e: &Effect) -> Value {
    Value::Vector(match e {
        Effect::Put { key, value, expiry } => {
            vec![c(0), key.clone(), value.clone(), opt_time(*expiry)]
        }
        Effect::Erase { key } => vec![c(1), key.clone()],
        Effect::Clear => vec![c(2)],
        Effect::Expire { key } => vec![c(3), key.clone()],
    })
}

pub fn encode_result(r: &OpResult) -> Value {
    Value::Vector(match r {
        Ok(v) => vec![Value::Boolean(true), v.clone()],
        Err(e) => vec![Value::Boolean(false), s(e.code()), s(&e.detail())],
    })
}

fn encode_entry(k: &Value, e: &Entry) -> Value {
    Value::Vector(vec![k.clone(), e.value.clone(), opt_time(e.expiry)])
}

impl ToMaster {
    pub fn encode(&self) -> Value {
        Value::Vector(match self {
            ToMaster::Write {
                writer,
                first,
                muts,
            } => vec![
                c(1),
                s(writer),
                c(*first),
                Value::Vector(muts.iter().map(encode_mutation).collect()),
            ],
            ToMaster::Read { query } => vec![c(2), encode_query(query)],
            ToMaster::Fetch { clone, epoch, from } => vec![c(3), s(clone), c(*epoch), c(*from)],
            ToMaster::Page {
                clone,
                epoch,
                after,
            } => {
                vec![c(4), s(clone), c(*epoch), after.clone()]
            }
            ToMaster::Who => vec![c(5)],
            ToMaster::Ack { clone, epoch, seq } => vec![c(6), s(clone), c(*epoch), c(*seq)],
        })
    }
}

impl FromMaster {
    pub fn encode(&self) -> Value {
        Value::Vector(match self {
            FromMaster::Written {
                epoch,
                seq,
                results,
            } => vec![
                c(11),
                c(*epoch),
                c(*seq),
                Value::Vector(results.iter().map(encode_result).collect()),
            ],
            FromMaster::Answer(r) => vec![c(12), encode_result(r)],
            FromMaster::Log {
                epoch,
                first,
                effects,
                seq,
            } => vec![
                c(13),
                c(*epoch),
                c(*first),
                Value::Vector(effects.iter().map(encode_effect).collect()),
                c(*seq),
            ],
            FromMaster::Snapshot {
                epoch,
                seq,
                entries,
                more,
            } => vec![
                c(14),
                c(*epoch),
                c(*seq),
                Value::Vector(entries.iter().map(|(k, e)| encode_entry(k, e)).collect()),
                Value::Boolean(*more),
            ],
            FromMaster::Restart => vec![c(15)],
            FromMaster::Master { endpoint } => vec![c(16), s(endpoint)],
            FromMaster::Update {
                epoch,
                first,
                effects,
            } => vec![
                c(17),
                c(*epoch),
                c(*first),
                Value::Vector(effects.iter().map(encode_effect).collect()),
            ],
            FromMaster::Heartbeat { epoch, seq } => vec![c(18), c(*epoch), c(*seq)],
        })
    }
}

// ---- decoding ---------------------------------------------------------------------------------

/// Reads the fields of a vector message in order.
struct Fields<'a> {
    what: &'static str,
    items: std::slice::Iter<'a, Value>,
}

impl<'a> Fields<'a> {
    fn of(v: &'a Value, what: &'static str) -> Result<Fields<'a>, ProtoError> {
        match v {
            Value::Vector(items) => Ok(Fields {
                what,
                items: items.iter(),
            }),
            other => Err(bad(format!(
                "{what}: expected a vector, got a {}",
                other.value_type()
            ))),
        }
    }
    fn any(&mut self) -> Result<&'a Value, ProtoError> {
        self.items
            .next()
            .ok_or_else(|| bad(format!("{}: too few fields", self.what)))
    }
    fn count(&mut self) -> Result<u64, ProtoError> {
        match self.any()? {
            Value::Count(n) => Ok(*n),
            other => Err(bad(format!(
                "{}: expected a count, got a {}",
                self.what,
                other.value_type()
            ))),
        }
    }
    fn string(&mut self) -> Result<&'a str, ProtoError> {
        match self.any()? {
            Value::String(x) => Ok(x),
            other => Err(bad(format!(
                "{}: expected a string, got a {}",
                self.what,
                other.value_type()
            ))),
        }
    }
    fn boolean(&mut self) -> Result<bool, ProtoError> {
        match self.any()? {
            Value::Boolean(b) => Ok(*b),
            other => Err(bad(format!(
                "{}: expected a boolean, got a {}",
                self.what,
                other.value_type()
            ))),
        }
    }
    fn vector(&mut self) -> Result<&'a [Value], ProtoError> {
        match self.any()? {
            Value::Vector(v) => Ok(v),
            other => Err(bad(format!(
                "{}: expected a vector, got a {}",
                self.what,
                other.value_type()
            ))),
        }
    }
    fn span(&mut self) -> Result<Option<i64>, ProtoError> {
        match self.any()? {
            Value::None => Ok(None),
            Value::Timespan(t) => Ok(Some(*t)),
            other => Err(bad(format!(
                "{}: expected a timespan or none, got a {}",
                self.what,
                other.value_type()
            ))),
        }
    }
    fn time(&mut self) -> Result<Option<i64>, ProtoError> {
        match self.any()? {
            Value::None => Ok(None),
            Value::Timestamp(t) => Ok(Some(*t)),
            other => Err(bad(format!(
                "{}: expected a timestamp or none, got a {}",
                self.what,
                other.value_type()
            ))),
        }
    }
    fn end(mut self) -> Result<(), ProtoError> {
        match self.items.next() {
            None => Ok(()),
            Some(_) => Err(bad(format!("{}: too many fields", self.what))),
        }
    }
}

pub fn decode_mutation(v: &Value) -> Result<Mutation, ProtoError> {
    let mut f = Fields::of(v, "mutation")?;
    let name = f.string()?;
    let m = match name {
        "put" | "put_unique" | "increment" | "decrement" | "append" | "push" => {
            let key = f.any()?.clone();
            let value = f.any()?.clone();
            let expiry = f.span()?;
            match name {
                "put" => Mutation::Put { key, value, expiry },
                "put_unique" => Mutation::PutUnique { key, value, expiry },
                "increment" => Mutation::Increment {
                    key,
                    amount: value,
                    expiry,
                },
                "decrement" => Mutation::Decrement {
                    key,
                    amount: value,
                    expiry,
                },
                "append" => Mutation::Append { key, value, expiry },
                _ => Mutation::Push { key, value, expiry },
            }
        }
        "erase" => Mutation::Erase {
            key: f.any()?.clone(),
        },
        "clear" => Mutation::Clear,
        "insert_into" => {
            let key = f.any()?.clone();
            let index = f.any()?.clone();
            let value = match f.vector()? {
                [] => None,
                [x] => Some(x.clone()),
                _ => return Err(bad("insert_into: the value slot holds more than one value")),
            };
            Mutation::InsertInto {
                key,
                index,
                value,
                expiry: f.span()?,
            }
        }
        "remove_from" => Mutation::RemoveFrom {
            key: f.any()?.clone(),
            index: f.any()?.clone(),
            expiry: f.span()?,
        },
        "pop" => Mutation::Pop {
            key: f.any()?.clone(),
            expiry: f.span()?,
        },
        other => return Err(bad(format!("unknown mutation {other:?}"))),
    };
    f.end()?;
    Ok(m)
}

pub fn decode_query(v: &Value) -> Result<Query, ProtoError> {
    let mut f = Fields::of(v, "query")?;
    let q = match f.string()? {
        "get" => Query::Get {
            key: f.any()?.clone(),
        },
        "exists" => Query::Exists {
            key: f.any()?.clone(),
        },
        "keys" => Query::Keys,
        "get_index_from_value" => Query::GetIndexFromValue {
            key: f.any()?.clone(),
            index: f.any()?.clone(),
        },
        other => return Err(bad(format!("unknown query {other:?}"))),
    };
    f.end()?;
    Ok(q)
}

pub fn decode_effect(v: &Value) -> Result<Effect, ProtoError> {
    let mut f = Fields::of(v, "effect")?;
    let e = match f.count()? {
        0 => Effect::Put {
            key: f.any()?.clone(),
            value: f.any()?.clone(),
            expiry: f.time()?,
        },
        1 => Effect::Erase {
            key: f.any()?.clone(),
        },
        2 => Effect::Clear,
        3 => Effect::Expire {
            key: f.any()?.clone(),
        },
        n => return Err(bad(format!("unknown effect kind {n}"))),
    };
    f.end()?;
    Ok(e)
}

pub fn decode_result(v: &Value) -> Result<OpResult, ProtoError> {
    let mut f = Fields::of(v, "result")?;
    let r = if f.boolean()? {
        Ok(f.any()?.clone())
    } else {
        let code = f.string()?;
        let message = f.string()?.to_string();
        Err(StoreError::from_code(code, message))
    };
    f.end()?;
    Ok(r)
}

fn decode_effects(items: &[Value]) -> Result<Vec<Effect>, ProtoError> {
    items.iter().map(decode_effect).collect()
}

pub fn decode_to_master(v: &Value) -> Result<ToMaster, ProtoError> {
    let mut f = Fields::of(v, "request to a master")?;
    let m = match f.count()? {
        1 => ToMaster::Write {
            writer: f.string()?.to_string(),
            first: f.count()?,
            muts: f
                .vector()?
                .iter()
                .map(decode_mutation)
                .collect::<Result<_, _>>()?,
        },
        2 => ToMaster::Read {
            query: decode_query(f.any()?)?,
        },
        3 => ToMaster::Fetch {
            clone: f.string()?.to_string(),
            epoch: f.count()?,
            from: f.count()?,
        },
        4 => ToMaster::Page {
            clone: f.string()?.to_string(),
            epoch: f.count()?,
            after: f.any()?.clone(),
        },
        5 => ToMaster::Who,
        6 => ToMaster::Ack {
            clone: f.string()?.to_string(),
            epoch: f.count()?,
            seq: f.count()?,
        },
        n => return Err(bad(format!("unknown request kind {n}"))),
    };
    f.end()?;
    Ok(m)
}

pub fn decode_from_master(v: &Value) -> Result<FromMaster, ProtoError> {
    let mut f = Fields::of(v, "message from a master")?;
    let m = match f.count()? {
        11 => FromMaster::Written {
            epoch: f.count()?,
            seq: f.count()?,
            results: f
                .vector()?
                .iter()
                .map(decode_result)
                .collect::<Result<_, _>>()?,
        },
        12 => FromMaster::Answer(decode_result(f.any()?)?),
        13 => FromMaster::Log {
            epoch: f.count()?,
            first: f.count()?,
            effects: decode_effects(f.vector()?)?,
            seq: f.count()?,
        },
        14 => {
            let epoch = f.count()?;
            let seq = f.count()?;
            let mut entries = Vec::new();
            for item in f.vector()? {
                let mut e = Fields::of(item, "snapshot entry")?;
                let key = e.any()?.clone();
                let value = e.any()?.clone();
                let expiry = e.time()?;
                e.end()?;
                entries.push((key, Entry { value, expiry }));
            }
            FromMaster::Snapshot {
                epoch,
                seq,
                entries,
                more: f.boolean()?,
            }
        }
        15 => FromMaster::Restart,
        16 => FromMaster::Master {
            endpoint: f.string()?.to_string(),
        },
        17 => FromMaster::Update {
            epoch: f.count()?,
            first: f.count()?,
            effects: decode_effects(f.vector()?)?,
        },
        18 => FromMaster::Heartbeat {
            epoch: f.count()?,
            seq: f.count()?,
        },
        n => return Err(bad(format!("unknown message kind {n}"))),
    };
    f.end()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let muts = vec![
            Mutation::Put {
                key: s("a"),
                value: c(1),
                expiry: Some(5),
            },
            Mutation::InsertInto {
                key: s("t"),
                index: c(1),
                value: Some(s("x")),
                expiry: None,
            },
            Mutation::InsertInto {
                key: s("s"),
                index: c(1),
                value: None,
                expiry: None,
            },
            Mutation::Pop {
                key: s("v"),
                expiry: None,
            },
            Mutation::Clear,
        ];
        let m = ToMaster::Write {
            writer: "w".into(),
            first: 7,
            muts,
        };
        assert_eq!(decode_to_master(&m.encode()).unwrap(), m);
        let u = FromMaster::Update {
            epoch: 3,
            first: 9,
            effects: vec![
                Effect::Put {
                    key: s("a"),
                    value: c(2),
                    expiry: Some(1),
                },
                Effect::Clear,
            ],
        };
        assert_eq!(decode_from_master(&u.encode()).unwrap(), u);
        let w = FromMaster::Written {
            epoch: 1,
            seq: 2,
            results: vec![
                Ok(Value::Boolean(true)),
                Err(StoreError::TypeClash("x".into())),
            ],
        };
        assert_eq!(decode_from_master(&w.encode()).unwrap(), w);
        for garbage in [
            c(1),
            Value::Vector(vec![]),
            Value::Vector(vec![c(99)]),
            Value::Vector(vec![c(3), s("x"), c(1)]),
            Value::Vector(vec![c(5), c(5)]),
        ] {
            let err = decode_to_master(&garbage).unwrap_err();
            assert!(
                err.to_string().starts_with("malformed store message"),
                "{err}"
            );
        }
    }
}
