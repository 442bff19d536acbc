//! A streaming JSON v1 decoder: straight from bytes to [`Value`], without building a
//! `serde_json::Value` tree first. It is the hot path of every WebSocket client.
//!
//! It only has to be right on what it accepts: on any failure the caller decodes the same bytes
//! with the reference decoder in [`crate::json`], which produces the precise error message (or,
//! for the odd valid input this one does not take, such as duplicate keys, the value). A property
//! test checks that whatever this decoder accepts, the reference decoder decodes identically.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::json::DataMessage;
use crate::time;
use crate::value::{Address, Port, Subnet, Value, ValueType};

type Error = serde_json::Error;

pub(crate) fn data_message(bytes: &[u8]) -> Result<DataMessage, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let msg = MessageSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(msg)
}

/// The fields of a store envelope `{"type":"store","id":…,"store":…,"op":…,…}`, read straight
/// from bytes. Only envelopes with every field well-formed and no key twice are taken; the
/// caller falls back to the reference decoder (and its precise messages) for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreFields {
    pub id: serde_json::Value,
    pub store: String,
    pub op: String,
    pub key: Option<Value>,
    pub value: Option<Value>,
    pub amount: Option<Value>,
    pub index: Option<Value>,
    pub expiry: Option<serde_json::Value>,
    pub timeout: Option<serde_json::Value>,
}

pub(crate) fn store_envelope(bytes: &[u8]) -> Result<StoreFields, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let msg = StoreSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(msg)
}

pub(crate) fn value(bytes: &[u8]) -> Result<Value, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = ValueSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The object keys this format uses; anything else is skipped.
#[allow(clippy::enum_variant_names)] // they are the JSON key names
enum Key {
    Type,
    Topic,
    DataType,
    Data,
    Key,
    Value,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "type" => Key::Type,
                    "topic" => Key::Topic,
                    "@data-type" => Key::DataType,
                    "data" => Key::Data,
                    "key" => Key::Key,
                    "value" => Key::Value,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A string compared in place (borrowed from the input when it has no escapes), never allocated.
struct Name<F>(F);

impl<'de, T, F: FnOnce(&str) -> Option<T>> DeserializeSeed<'de> for Name<F> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> Option<T>> Visitor<'de> for Name<F> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<T>, E> {
        Ok((self.0)(s))
    }
}

fn dup<E: de::Error>() -> E {
    E::custom("duplicate key")
}

struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = DataMessage;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<DataMessage, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed {
    type Value = DataMessage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a data message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DataMessage, A::Error> {
        let mut topic: Option<String> = None;
        let mut seen_type = false;
        let mut body = ValueBody::default();
        while let Some(k) = map.next_key::<Key>()? {
            match k {
                Key::Type => {
                    if seen_type {
                        return Err(dup());
                    }
                    seen_type = true;
                    map.next_value_seed(Name(|t: &str| (t == "data-message").then_some(())))?
                        .ok_or_else(|| de::Error::custom("unsupported message type"))?;
                }
                Key::Topic => {
                    if topic.is_some() {
                        return Err(dup());
                    }
                    topic = Some(map.next_value()?);
                }
                other => body.field(other, &mut map)?,
            }
        }
        let topic = topic.ok_or_else(|| de::Error::custom("no topic"))?;
        Ok(DataMessage {
            topic,
            value: body.finish()?,
        })
    }
}

/// The `@data-type` and `data` fields of a value object, whichever order they come in.
#[derive(Default)]
struct ValueBody {
    ty: Option<ValueType>,
    value: Option<Value>,
    /// `data` that came before `@data-type`: kept as JSON until the type is known.
    early: Option<serde_json::Value>,
}

impl ValueBody {
    fn field<'de, A: MapAccess<'de>>(&mut self, k: Key, map: &mut A) -> Result<(), A::Error> {
        match k {
            Key::DataType => {
                if self.ty.is_some() {
                    return Err(dup());
                }
                let name: std::borrow::Cow<'de, str> = map.next_value()?;
                self.ty = Some(
                    ValueType::from_name(&name).ok_or_else(|| de::Error::custom("unknown type"))?,
                );
            }
            Key::Data => {
                if self.value.is_some() || self.early.is_some() {
                    return Err(dup());
                }
                match self.ty {
                    Some(ty) => self.value = Some(map.next_value_seed(DataSeed(ty))?),
                    None => self.early = Some(map.next_value()?),
                }
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn finish<E: de::Error>(self) -> Result<Value, E> {
        let ty = self.ty.ok_or_else(|| E::custom("missing @data-type"))?;
        match (self.value, self.early) {
            (Some(v), _) => Ok(v),
            (None, Some(_)) => Err(E::custom("data before @data-type")),
            (None, None) if ty == ValueType::None => Ok(Value::None),
            (None, None) => Err(E::custom("missing data")),
        }
    }
}

/// The keys of a store envelope.
enum StoreKey {
    Type,
    Id,
    Store,
    Op,
    Key,
    Value,
    Amount,
    Index,
    Expiry,
    Timeout,
}

impl<'de> de::Deserialize<'de> for StoreKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StoreKey, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StoreKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a store envelope key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StoreKey, E> {
                Ok(match s {
                    "type" => StoreKey::Type,
                    "id" => StoreKey::Id,
                    "store" => StoreKey::Store,
                    "op" => StoreKey::Op,
                    "key" => StoreKey::Key,
                    "value" => StoreKey::Value,
                    "amount" => StoreKey::Amount,
                    "index" => StoreKey::Index,
                    "expiry" => StoreKey::Expiry,
                    "timeout" => StoreKey::Timeout,
                    _ => return Err(E::custom("unexpected key")),
                })
            }
        }
        d.deserialize_str(V)
    }
}

struct StoreSeed;

impl<'de> DeserializeSeed<'de> for StoreSeed {
    type Value = StoreFields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<StoreFields, D::Error> {
        d.deserialize_map(self)
    }
}

/// Sets a field once; a second occurrence is an error.
fn once<T, E: de::Error>(slot: &mut Option<T>, v: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(dup());
    }
    *slot = Some(v);
    Ok(())
}

impl<'de> Visitor<'de> for StoreSeed {
    type Value = StoreFields;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a store envelope")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StoreFields, A::Error> {
        let mut is_store = None;
        let (mut id, mut store, mut op) = (None, None, None);
        let (mut key, mut value, mut amount, mut index) = (None, None, None, None);
        let (mut expiry, mut timeout) = (None, None);
        while let Some(k) = map.next_key::<StoreKey>()? {
            match k {
                StoreKey::Type => {
                    let t = map.next_value_seed(Name(|t: &str| (t == "store").then_some(())))?;
                    once(
                        &mut is_store,
                        t.ok_or_else(|| de::Error::custom("not a store envelope"))?,
                    )?
                }
                StoreKey::Id => once(&mut id, map.next_value()?)?,
                StoreKey::Store => once(&mut store, map.next_value()?)?,
                StoreKey::Op => once(&mut op, map.next_value()?)?,
                StoreKey::Key => once(&mut key, map.next_value_seed(ValueSeed)?)?,
                StoreKey::Value => once(&mut value, map.next_value_seed(ValueSeed)?)?,
                StoreKey::Amount => once(&mut amount, map.next_value_seed(ValueSeed)?)?,
                StoreKey::Index => once(&mut index, map.next_value_seed(ValueSeed)?)?,
                StoreKey::Expiry => once(&mut expiry, map.next_value()?)?,
                StoreKey::Timeout => once(&mut timeout, map.next_value()?)?,
            }
        }
        let missing = |what| de::Error::custom(format_args!("no {what}"));
        is_store.ok_or_else(|| missing("type"))?;
        Ok(StoreFields {
            id: id.ok_or_else(|| missing("id"))?,
            store: store.ok_or_else(|| missing("store"))?,
            op: op.ok_or_else(|| missing("op"))?,
            key,
            value,
            amount,
            index,
            expiry,
            timeout,
        })
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut body = ValueBody::default();
        while let Some(k) = map.next_key::<Key>()? {
            body.field(k, &mut map)?;
        }
        body.finish()
    }
}

struct DataSeed(ValueType);

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            ValueType::None => {
                <IgnoredAny as de::Deserialize>::deserialize(d)?;
                Ok(Value::None)
            }
            ValueType::Set | ValueType::Vector | ValueType::Table => d.deserialize_seq(self),
            _ => d.deserialize_any(self),
        }
    }
}

fn text<E: de::Error, T, W: std::fmt::Display>(r: Result<T, W>) -> Result<T, E> {
    r.map_err(E::custom)
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "data of type {}", self.0)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        match self.0 {
            ValueType::Boolean => Ok(Value::Boolean(b)),
            _ => Err(E::custom("wrong type")),
        }
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        match self.0 {
            ValueType::Count => Ok(Value::Count(n)),
            ValueType::Integer => i64::try_from(n)
                .map(Value::Integer)
                .map_err(|_| E::custom("range")),
            ValueType::Real => Ok(Value::Real(n as f64)),
            _ => Err(E::custom("wrong type")),
        }
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        match self.0 {
            ValueType::Count => u64::try_from(n)
                .map(Value::Count)
                .map_err(|_| E::custom("range")),
            ValueType::Integer => Ok(Value::Integer(n)),
            ValueType::Real => Ok(Value::Real(n as f64)),
            _ => Err(E::custom("wrong type")),
        }
    }
    fn visit_f64<E: de::Error>(self, r: f64) -> Result<Value, E> {
        match self.0 {
            ValueType::Real => Ok(Value::Real(r)),
            _ => Err(E::custom("wrong type")),
        }
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(match self.0 {
            ValueType::String => Value::String(s.to_string()),
            ValueType::Enum => Value::Enum(s.to_string()),
            ValueType::Real => match s {
                "NaN" => Value::Real(f64::NAN),
                "Infinity" => Value::Real(f64::INFINITY),
                "-Infinity" => Value::Real(f64::NEG_INFINITY),
                _ => return Err(E::custom("wrong type")),
            },
            ValueType::Address => {
                Value::Address(s.parse::<Address>().map_err(|_| E::custom("bad address"))?)
            }
            ValueType::Subnet => Value::Subnet(text(s.parse::<Subnet>())?),
            ValueType::Port => Value::Port(text(s.parse::<Port>())?),
            ValueType::Timestamp => Value::Timestamp(text(time::parse_timestamp(s))?),
            ValueType::Timespan => Value::Timespan(text(time::parse_timespan(s))?),
            _ => return Err(E::custom("wrong type")),
        })
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        match self.0 {
            ValueType::String => Ok(Value::String(s)),
            ValueType::Enum => Ok(Value::Enum(s)),
            _ => self.visit_str(&s),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match self.0 {
            ValueType::Vector => {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element_seed(ValueSeed)? {
                    v.push(item);
                }
                Ok(Value::Vector(v))
            }
            ValueType::Set => {
                let mut s = BTreeSet::new();
                while let Some(item) = seq.next_element_seed(ValueSeed)? {
                    s.insert(item);
                }
                Ok(Value::Set(s))
            }
            ValueType::Table => {
                let mut t = BTreeMap::new();
                while let Some((k, v)) = seq.next_element_seed(EntrySeed)? {
                    t.insert(k, v);
                }
                Ok(Value::Table(t))
            }
            _ => Err(de::Error::custom("wrong type")),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Value, A::Error> {
        Err(de::Error::custom("wrong type"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Err(E::custom("wrong type"))
    }
}

/// One `{"key":…,"value":…}` table entry.
struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = (Value, Value);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(Value, Value), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = (Value, Value);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table entry")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(Value, Value), A::Error> {
        let (mut key, mut value) = (None, None);
        while let Some(k) = map.next_key::<Key>()? {
            match k {
                Key::Key if key.is_none() => key = Some(map.next_value_seed(ValueSeed)?),
                Key::Value if value.is_none() => value = Some(map.next_value_seed(ValueSeed)?),
                Key::Key | Key::Value => return Err(dup()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (key, value) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(de::Error::custom("table entry needs key and value")),
        }
    }
}
