//! What a store operation means, with no I/O: a mutation read against the current entry gives an
//! [`Effect`] (the absolute change the master applies and replicates) and the caller's result; a
//! query reads an entry. Effects are absolute (a put of the resulting value, never "add 1"), so
//! applying one twice is harmless: that is what lets clones rebuild from paged snapshots and
//! replayed logs without double counting.

use std::collections::{BTreeMap, BTreeSet};

use yard_data::Value;

use crate::StoreError;

/// A stored value and its expiry (absolute, nanoseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    pub expiry: Option<i64>,
}

/// A change a writer asks for. `expiry` is a timespan in nanoseconds from the time the master
/// applies the mutation. `put` and `put_unique` set the expiry (none clears it); the others keep
/// the key's expiry unless they give one.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    Put {
        key: Value,
        value: Value,
        expiry: Option<i64>,
    },
    PutUnique {
        key: Value,
        value: Value,
        expiry: Option<i64>,
    },
    Erase {
        key: Value,
    },
    Clear,
    Increment {
        key: Value,
        amount: Value,
        expiry: Option<i64>,
    },
    Decrement {
        key: Value,
        amount: Value,
        expiry: Option<i64>,
    },
    Append {
        key: Value,
        value: Value,
        expiry: Option<i64>,
    },
    InsertInto {
        key: Value,
        index: Value,
        value: Option<Value>,
        expiry: Option<i64>,
    },
    RemoveFrom {
        key: Value,
        index: Value,
        expiry: Option<i64>,
    },
    Push {
        key: Value,
        value: Value,
        expiry: Option<i64>,
    },
    Pop {
        key: Value,
        expiry: Option<i64>,
    },
}

/// A read.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Get { key: Value },
    Exists { key: Value },
    Keys,
    GetIndexFromValue { key: Value, index: Value },
}

/// An absolute change to the map, in the master's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Put {
        key: Value,
        value: Value,
        expiry: Option<i64>,
    },
    Erase {
        key: Value,
    },
    Clear,
    /// An erase caused by the key's expiry.
    Expire {
        key: Value,
    },
}

impl Mutation {
    /// The operation's name, as in the APIs.
    pub fn name(&self) -> &'static str {
        match self {
            Mutation::Put { .. } => "put",
            Mutation::PutUnique { .. } => "put_unique",
            Mutation::Erase { .. } => "erase",
            Mutation::Clear => "clear",
            Mutation::Increment { .. } => "increment",
            Mutation::Decrement { .. } => "decrement",
            Mutation::Append { .. } => "append",
            Mutation::InsertInto { .. } => "insert_into",
            Mutation::RemoveFrom { .. } => "remove_from",
            Mutation::Push { .. } => "push",
            Mutation::Pop { .. } => "pop",
        }
    }

    /// The key touched, if one.
    pub fn key(&self) -> Option<&Value> {
        match self {
            Mutation::Clear => None,
            Mutation::Put { key, .. }
            | Mutation::PutUnique { key, .. }
            | Mutation::Erase { key }
            | Mutation::Increment { key, .. }
            | Mutation::Decrement { key, .. }
            | Mutation::Append { key, .. }
            | Mutation::InsertInto { key, .. }
            | Mutation::RemoveFrom { key, .. }
            | Mutation::Push { key, .. }
            | Mutation::Pop { key, .. } => Some(key),
        }
    }

    fn expiry(&self) -> Option<i64> {
        match self {
            Mutation::Erase { .. } | Mutation::Clear => None,
            Mutation::Put { expiry, .. }
            | Mutation::PutUnique { expiry, .. }
            | Mutation::Increment { expiry, .. }
            | Mutation::Decrement { expiry, .. }
            | Mutation::Append { expiry, .. }
            | Mutation::InsertInto { expiry, .. }
            | Mutation::RemoveFrom { expiry, .. }
            | Mutation::Push { expiry, .. }
            | Mutation::Pop { expiry, .. } => *expiry,
        }
    }
}

/// What applying a mutation amounts to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The change to make, if any.
    pub effect: Option<Effect>,
    /// The answer to the writer: `put_unique` says whether it inserted, increment and decrement
    /// give the new value, pop the removed element; others answer none.
    pub result: Value,
}

fn clash(op: &str, found: &Value, wanted: &str) -> StoreError {
    StoreError::TypeClash(format!(
        "{op} needs {wanted}, but the key holds a {}",
        found.value_type()
    ))
}

/// Plans `m` against the key's current entry (`current`), at wall-clock time `now` (ns).
/// An error changes nothing.
pub fn plan(m: &Mutation, current: Option<&Entry>, now: i64) -> Result<Outcome, StoreError> {
    let new_expiry = m.expiry().map(|span| now.saturating_add(span));
    // Non-put mutations keep the key's expiry unless they set one.
    let kept = new_expiry.or(current.and_then(|e| e.expiry));
    let put = |key: &Value, value: Value, expiry: Option<i64>| Effect::Put {
        key: key.clone(),
        value,
        expiry,
    };
    let none = |effect| {
        Ok(Outcome {
            effect,
            result: Value::None,
        })
    };
    match m {
        Mutation::Put { key, value, .. } => none(Some(put(key, value.clone(), new_expiry))),
        Mutation::PutUnique { key, value, .. } => Ok(match current {
            Some(_) => Outcome {
                effect: None,
                result: Value::Boolean(false),
            },
            None => Outcome {
                effect: Some(put(key, value.clone(), new_expiry)),
                result: Value::Boolean(true),
            },
        }),
        Mutation::Erase { key } => none(current.map(|_| Effect::Erase { key: key.clone() })),
        Mutation::Clear => none(Some(Effect::Clear)),
        Mutation::Increment { key, amount, .. } | Mutation::Decrement { key, amount, .. } => {
            let negate = matches!(m, Mutation::Decrement { .. });
            let base = match current {
                Some(e) => e.value.clone(),
                None => zero_for(amount, m.name())?,
            };
            let value = add(&base, amount, negate, m.name())?;
            Ok(Outcome {
                effect: Some(put(key, value.clone(), kept)),
                result: value,
            })
        }
        Mutation::Append { key, value, .. } => {
            let Value::String(tail) = value else {
                return Err(StoreError::TypeClash(format!(
                    "append takes a string, not a {}",
                    value.value_type()
                )));
            };
            let s = match current.map(|e| &e.value) {
                None => tail.clone(),
                Some(Value::String(s)) => format!("{s}{tail}"),
                Some(other) => return Err(clash("append", other, "a string")),
            };
            none(Some(put(key, Value::String(s), kept)))
        }
        Mutation::InsertInto {
            key, index, value, ..
        } => {
            let container = match (current.map(|e| &e.value), value) {
                (None, None) => Value::Set(BTreeSet::from([index.clone()])),
                (None, Some(v)) => Value::Table(BTreeMap::from([(index.clone(), v.clone())])),
                (Some(Value::Set(s)), None) => {
                    let mut s = s.clone();
                    s.insert(index.clone());
                    Value::Set(s)
                }
                (Some(Value::Table(t)), Some(v)) => {
                    let mut t = t.clone();
                    t.insert(index.clone(), v.clone());
                    Value::Table(t)
                }
                (Some(Value::Vector(vec)), Some(v)) => {
                    let i = vector_index(index, vec.len() + 1, "insert_into")?;
                    let mut vec = vec.clone();
                    vec.insert(i, v.clone());
                    Value::Vector(vec)
                }
                (Some(other), None) => {
                    return Err(clash("insert_into without a value", other, "a set"))
                }
                (Some(other), Some(_)) => {
                    return Err(clash(
                        "insert_into with a value",
                        other,
                        "a table or a vector",
                    ))
                }
            };
            none(Some(put(key, container, kept)))
        }
        Mutation::RemoveFrom { key, index, .. } => {
            let container = match current.map(|e| &e.value) {
                None => return none(None),
                Some(Value::Set(s)) => {
                    let mut s = s.clone();
                    if !s.remove(index) {
                        return none(None);
                    }
                    Value::Set(s)
                }
                Some(Value::Table(t)) => {
                    let mut t = t.clone();
                    if t.remove(index).is_none() {
                        return none(None);
                    }
                    Value::Table(t)
                }
                Some(Value::Vector(vec)) => {
                    let i = vector_index(index, usize::MAX, "remove_from")?;
                    if i >= vec.len() {
                        return none(None);
                    }
                    let mut vec = vec.clone();
                    vec.remove(i);
                    Value::Vector(vec)
                }
                Some(other) => return Err(clash("remove_from", other, "a set, table or vector")),
            };
            none(Some(put(key, container, kept)))
        }
        Mutation::Push { key, value, .. } => {
            let vec = match current.map(|e| &e.value) {
                None => vec![value.clone()],
                Some(Value::Vector(v)) => {
                    let mut v = v.clone();
                    v.push(value.clone());
                    v
                }
                Some(other) => return Err(clash("push", other, "a vector")),
            };
            none(Some(put(key, Value::Vector(vec), kept)))
        }
        Mutation::Pop { key, .. } => match current.map(|e| &e.value) {
            None => none(None),
            Some(Value::Vector(v)) if v.is_empty() => none(None),
            Some(Value::Vector(v)) => {
                let mut v = v.clone();
                let last = v.pop().unwrap_or(Value::None);
                Ok(Outcome {
                    effect: Some(put(key, Value::Vector(v), kept)),
                    result: last,
                })
            }
            Some(other) => Err(clash("pop", other, "a vector")),
        },
    }
}

fn vector_index(index: &Value, limit: usize, op: &str) -> Result<usize, StoreError> {
    let i = match index {
        Value::Count(c) => *c,
        Value::Integer(i) if *i >= 0 => *i as u64,
        other => {
            return Err(StoreError::TypeClash(format!(
                "{op} on a vector needs a count index, not a {}",
                other.value_type()
            )))
        }
    };
    if i as u128 >= limit as u128 {
        return Err(StoreError::InvalidData(format!(
            "{op}: index {i} is past the end of the vector"
        )));
    }
    Ok(i as usize)
}

/// The value a missing key starts from when incremented by `amount`.
fn zero_for(amount: &Value, op: &str) -> Result<Value, StoreError> {
    Ok(match amount {
        Value::Count(_) => Value::Count(0),
        Value::Integer(_) => Value::Integer(0),
        Value::Real(_) => Value::Real(0.0),
        Value::Timespan(_) => Value::Timestamp(0),
        other => {
            return Err(StoreError::TypeClash(format!(
                "{op} takes a count, integer, real or timespan, not a {}",
                other.value_type()
            )))
        }
    })
}

fn add(base: &Value, amount: &Value, negate: bool, op: &str) -> Result<Value, StoreError> {
    let overflow = || StoreError::InvalidData(format!("{op} overflows the {}", base.value_type()));
    let int = |a: i64, b: i64| {
        if negate {
            a.checked_sub(b)
        } else {
            a.checked_add(b)
        }
        .ok_or_else(overflow)
    };
    Ok(match (base, amount) {
        (Value::Count(a), Value::Count(b)) => Value::Count(
            if negate {
                a.checked_sub(*b)
            } else {
                a.checked_add(*b)
            }
            .ok_or_else(overflow)?,
        ),
        (Value::Integer(a), Value::Integer(b)) => Value::Integer(int(*a, *b)?),
        (Value::Real(a), Value::Real(b)) => Value::Real(if negate { a - b } else { a + b }),
        (Value::Timestamp(a), Value::Timespan(b)) => Value::Timestamp(int(*a, *b)?),
        (Value::Timespan(a), Value::Timespan(b)) => Value::Timespan(int(*a, *b)?),
        (base, amount) => {
            return Err(StoreError::TypeClash(format!(
                "{op} of a {} by a {}",
                base.value_type(),
                amount.value_type()
            )))
        }
    })
}

/// Answers a query about one key from its entry (`Keys` is answered by the backend).
pub fn query_entry(q: &Query, current: Option<&Entry>) -> Result<Value, StoreError> {
    match q {
        Query::Get { key } => current
            .map(|e| e.value.clone())
            .ok_or_else(|| StoreError::NoSuchKey(key.clone())),
        Query::Exists { .. } => Ok(Value::Boolean(current.is_some())),
        Query::GetIndexFromValue { key, index } => {
            let e = current.ok_or_else(|| StoreError::NoSuchKey(key.clone()))?;
            match &e.value {
                Value::Set(s) => Ok(Value::Boolean(s.contains(index))),
                Value::Table(t) => t
                    .get(index)
                    .cloned()
                    .ok_or_else(|| StoreError::NoSuchKey(index.clone())),
                Value::Vector(v) => {
                    let i = vector_index(index, v.len(), "get_index_from_value")
                        .map_err(|_| StoreError::NoSuchKey(index.clone()))?;
                    Ok(v[i].clone())
                }
                other => Err(clash(
                    "get_index_from_value",
                    other,
                    "a set, table or vector",
                )),
            }
        }
        Query::Keys => Err(StoreError::InvalidData(
            "keys is not a per-key query".into(),
        )),
    }
}

impl Query {
    pub fn name(&self) -> &'static str {
        match self {
            Query::Get { .. } => "get",
            Query::Exists { .. } => "exists",
            Query::Keys => "keys",
            Query::GetIndexFromValue { .. } => "get_index_from_value",
        }
    }

    pub fn key(&self) -> Option<&Value> {
        match self {
            Query::Get { key } | Query::Exists { key } | Query::GetIndexFromValue { key, .. } => {
                Some(key)
            }
            Query::Keys => None,
        }
    }
}
