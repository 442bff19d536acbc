//! Broker's WebSocket JSON v1 format: values, data messages, acks and errors.
//!
//! Output is byte-exact with Broker (key order, no whitespace) except where Broker is wrong:
//! - reals are written with the shortest digits that read back to the same `f64`, always with a
//!   decimal point (`-7.5`, `1.0`, `1.0e21`); Broker prints `%f` (`-7.500000`, and `0.000000`
//!   for 1e-9);
//! - NaN and ±infinity, which JSON cannot express as numbers, are written as the strings `"NaN"`,
//!   `"Infinity"` and `"-Infinity"` (Broker writes invalid JSON); the decoder reads them back;
//! - strings are escaped as JSON requires (`\u000b`, never Broker's invalid `\v`); invalid UTF-8
//!   cannot occur because [`Value::String`] is always UTF-8 and every decoder rejects it;
//! - timestamps default to Broker's millisecond form; [`JsonOptions::timestamp_precision`] can ask
//!   for 6 or 9 digits.
//!
//! Input is lenient: the top-level `type` may be missing, a real may be an integer literal,
//! timespans may carry a sign, a fraction and the units `min`/`h`/`d`, timestamps an offset and up
//! to 9 fraction digits. Every rejection says where (a `$.data[2]`-style path) and why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde_json::Value as Json;

use crate::time::{self, TimestampPrecision};
use crate::value::{Address, Port, Subnet, Value, ValueType};

/// Settings of the JSON encoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonOptions {
    pub timestamp_precision: TimestampPrecision,
}

/// Why a JSON input was rejected. `Display` is the message sent to clients as error `context`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("{0}")]
    Structure(String),
    #[error("invalid data at {path}: {reason}")]
    InvalidData { path: String, reason: String },
}

impl JsonError {
    /// The Broker error-code name to report this as.
    pub fn code(&self) -> &'static str {
        "deserialization_failed"
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends `s` as a JSON string literal (with quotes).
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f | 0x7f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a finite or non-finite real per the policy in the module docs.
pub fn write_real(out: &mut String, r: f64) {
    if r.is_nan() {
        out.push_str("\"NaN\"");
    } else if r.is_infinite() {
        out.push_str(if r > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        // Debug prints the shortest round-trip digits, switching to exponent form for very large
        // and very small magnitudes; make sure a decimal point is always there.
        let start = out.len();
        let _ = write!(out, "{r:?}");
        if !out[start..].contains('.') {
            match out[start..].find('e') {
                Some(e) => out.insert_str(start + e, ".0"),
                None => out.push_str(".0"),
            }
        }
    }
}

/// Appends `"@data-type":"…","data":…` for `v` (the fields of a value object, no braces).
pub fn write_value_fields(out: &mut String, v: &Value, opts: JsonOptions) {
    out.push_str("\"@data-type\":\"");
    out.push_str(v.value_type().name());
    out.push_str("\",\"data\":");
    match v {
        Value::None => out.push_str("{}"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Count(c) => {
            let _ = write!(out, "{c}");
        }
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Real(r) => write_real(out, *r),
        Value::String(s) | Value::Enum(s) => write_json_string(out, s),
        Value::Address(a) => {
            let _ = write!(out, "\"{a}\"");
        }
        Value::Subnet(s) => {
            let _ = write!(out, "\"{s}\"");
        }
        Value::Port(p) => {
            let _ = write!(out, "\"{p}\"");
        }
        Value::Timestamp(ns) => {
            out.push('"');
            time::write_timestamp(out, *ns, opts.timestamp_precision);
            out.push('"');
        }
        Value::Timespan(ns) => {
            out.push('"');
            time::write_timespan(out, *ns);
            out.push('"');
        }
        Value::Set(items) => write_array(out, items.iter(), opts),
        Value::Vector(items) => write_array(out, items.iter(), opts),
        Value::Table(entries) => {
            out.push('[');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"key\":");
                write_value(out, k, opts);
                out.push_str(",\"value\":");
                write_value(out, val, opts);
                out.push('}');
            }
            out.push(']');
        }
    }
}

fn write_array<'a>(out: &mut String, items: impl Iterator<Item = &'a Value>, opts: JsonOptions) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, item, opts);
    }
    out.push(']');
}

/// Appends `{"@data-type":…,"data":…}`.
pub fn write_value(out: &mut String, v: &Value, opts: JsonOptions) {
    out.push('{');
    write_value_fields(out, v, opts);
    out.push('}');
}

pub fn encode_value(v: &Value, opts: JsonOptions) -> String {
    let mut s = String::new();
    write_value(&mut s, v, opts);
    s
}

/// `{"type":"data-message","topic":…,"@data-type":…,"data":…}`.
pub fn encode_data_message(topic: &str, v: &Value, opts: JsonOptions) -> String {
    let mut s = String::with_capacity(64 + topic.len());
    s.push_str("{\"type\":\"data-message\",\"topic\":");
    write_json_string(&mut s, topic);
    s.push(',');
    write_value_fields(&mut s, v, opts);
    s.push('}');
    s
}

/// `{"type":"ack","endpoint":…,"version":…}`.
pub fn encode_ack(endpoint: &str, version: &str) -> String {
    let mut s = String::from("{\"type\":\"ack\",\"endpoint\":");
    write_json_string(&mut s, endpoint);
    s.push_str(",\"version\":");
    write_json_string(&mut s, version);
    s.push('}');
    s
}

/// `{"type":"error","code":…,"context":…}`.
pub fn encode_error(code: &str, context: &str) -> String {
    let mut s = String::from("{\"type\":\"error\",\"code\":");
    write_json_string(&mut s, code);
    s.push_str(",\"context\":");
    write_json_string(&mut s, context);
    s.push('}');
    s
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A data message as received from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct DataMessage {
    pub topic: String,
    pub value: Value,
}

fn parse_json(bytes: &[u8]) -> Result<Json, JsonError> {
    serde_json::from_slice(bytes).map_err(|e| JsonError::Malformed(e.to_string()))
}

fn json_kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Decodes the handshake frame: a JSON array of topic-prefix strings.
pub fn decode_handshake(bytes: &[u8]) -> Result<Vec<String>, JsonError> {
    let j = parse_json(bytes)?;
    let Json::Array(items) = j else {
        return Err(JsonError::Structure(format!(
            "subscriptions not an array: the first message must be a JSON array of topic prefixes, e.g. [\"/topic/\"], got {}",
            json_kind(&j)
        )));
    };
    prefixes_of(items)
}

/// Topic prefixes from a JSON array's items: strings only.
fn prefixes_of(items: Vec<Json>) -> Result<Vec<String>, JsonError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Json::String(s) => Ok(s),
            other => Err(JsonError::Structure(format!(
                "individual subscription not a string: element {i} is {}",
                json_kind(&other)
            ))),
        })
        .collect()
}

/// Decodes a data message sent by a client (text or binary frame).
pub fn decode_data_message(bytes: &[u8]) -> Result<DataMessage, JsonError> {
    // The streaming decoder takes almost everything; what it refuses, the reference decoder below
    // decodes again, to say precisely what is wrong.
    crate::json_fast::data_message(bytes).or_else(|_| reference_decode_data_message(bytes))
}

/// The reference decoder of data messages: slower, and precise about errors.
pub fn reference_decode_data_message(bytes: &[u8]) -> Result<DataMessage, JsonError> {
    match reference_decode_client_message(bytes)? {
        ClientMessage::Data(m) => Ok(m),
        _ => Err(JsonError::Structure(
            "expected a data-message, got a request or reply".into(),
        )),
    }
}

pub use crate::json_fast::StoreFields;

/// Anything a WebSocket client may send after its handshake.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `{"type":"data-message","topic":…,"@data-type":…,"data":…}` (`type` optional).
    Data(DataMessage),
    /// `{"type":"request","id":…,"topic":…,"timeout":…,"@data-type":…,"data":…}`: `id` is any
    /// JSON value echoed in the answer; `timeout` is seconds or a timespan such as `"250ms"`.
    Request {
        id: Json,
        topic: String,
        /// Nanoseconds.
        timeout: Option<u64>,
        value: Value,
    },
    /// `{"type":"reply","reply-to":…,"@data-type":…,"data":…}`: answers a request received with
    /// that `reply-to`.
    Reply { reply_to: String, value: Value },
    /// `{"type":"reply-error","reply-to":…,"code":…,"context":…}`: answers a request with a
    /// failure (`context` optional).
    ReplyError {
        reply_to: String,
        code: String,
        context: String,
    },
    /// `{"type":"store","id":…,"store":…,"op":…,…}`: a store operation; the gateway reads the
    /// rest of the object (see docs/STORES.md).
    Store(serde_json::Map<String, Json>),
    /// A well-formed store envelope read by the fast decoder (the same operation as
    /// [`ClientMessage::Store`] would carry).
    StoreFields(StoreFields),
    /// `{"type":"subscribe","id":…,"topics":[…]}`: more prefixes on a live connection (`id`,
    /// optional, is echoed in the confirmation).
    Subscribe {
        id: Option<Json>,
        topics: Vec<String>,
    },
    /// `{"type":"unsubscribe","id":…,"topics":[…]}`: fewer.
    Unsubscribe {
        id: Option<Json>,
        topics: Vec<String>,
    },
}

/// Decodes a client message: the streaming decoder for plain data messages, the reference
/// decoder for the rest and for precise errors.
pub fn decode_client_message(bytes: &[u8]) -> Result<ClientMessage, JsonError> {
    // Pipelining store clients put the type first; anything else tries a data message first.
    if bytes.starts_with(b"{\"type\":\"store\"") {
        if let Ok(f) = crate::json_fast::store_envelope(bytes) {
            return Ok(ClientMessage::StoreFields(f));
        }
    } else if let Ok(m) = crate::json_fast::data_message(bytes) {
        return Ok(ClientMessage::Data(m));
    }
    reference_decode_client_message(bytes)
}

fn string_field(obj: &mut serde_json::Map<String, Json>, key: &str) -> Result<String, JsonError> {
    match obj.remove(key) {
        Some(Json::String(t)) => Ok(t),
        Some(other) => Err(JsonError::Structure(format!(
            "{key} must be a string, got {}",
            json_kind(&other)
        ))),
        None => Err(JsonError::Structure(format!(
            "no {key} in top-level JSON object"
        ))),
    }
}

fn reference_decode_client_message(bytes: &[u8]) -> Result<ClientMessage, JsonError> {
    let j = parse_json(bytes)?;
    let Json::Object(mut obj) = j else {
        return Err(JsonError::Structure(format!(
            "expected a JSON object with topic, @data-type and data, got {}",
            json_kind(&j)
        )));
    };
    let kind = match obj.get("type") {
        None => "data-message".to_string(),
        Some(Json::String(t))
            if [
                "data-message",
                "request",
                "reply",
                "store",
                "subscribe",
                "unsubscribe",
                "reply-error",
            ]
            .contains(&t.as_str()) =>
        {
            t.clone()
        }
        Some(other) => {
            return Err(JsonError::Structure(format!(
                "unsupported message type {other}: clients may send \"data-message\", \"request\", \"reply\", \"reply-error\", \"store\", \"subscribe\" or \"unsubscribe\""
            )))
        }
    };
    if kind == "store" {
        return Ok(ClientMessage::Store(obj));
    }
    match kind.as_str() {
        "subscribe" | "unsubscribe" => {
            let id = obj.remove("id");
            let topics = match obj.remove("topics") {
                Some(Json::Array(items)) => prefixes_of(items)?,
                Some(other) => {
                    return Err(JsonError::Structure(format!(
                        "topics must be an array of topic prefixes, got {}",
                        json_kind(&other)
                    )))
                }
                None => {
                    return Err(JsonError::Structure(format!(
                        "{kind} needs topics, an array of topic prefixes such as [\"/topic/\"]"
                    )))
                }
            };
            Ok(if kind == "subscribe" {
                ClientMessage::Subscribe { id, topics }
            } else {
                ClientMessage::Unsubscribe { id, topics }
            })
        }
        "request" => {
            let id = obj.remove("id").ok_or_else(|| {
                JsonError::Structure(
                    "a request needs an id (any JSON value, echoed in the answer)".into(),
                )
            })?;
            let topic = string_field(&mut obj, "topic")?;
            let timeout = match obj.remove("timeout") {
                None | Some(Json::Null) => None,
                Some(Json::Number(n)) => match n.as_f64() {
                    Some(secs) if secs > 0.0 && secs < 1e9 => Some((secs * 1e9) as u64),
                    _ => {
                        return Err(JsonError::Structure(format!(
                            "timeout must be a positive number of seconds, got {n}"
                        )))
                    }
                },
                Some(Json::String(s)) => match time::parse_timespan(&s) {
                    Ok(ns) if ns > 0 => Some(ns as u64),
                    _ => {
                        return Err(JsonError::Structure(format!(
                            "timeout {s:?} is not a positive timespan such as \"2s\" or \"250ms\""
                        )))
                    }
                },
                Some(other) => {
                    return Err(JsonError::Structure(format!(
                        "timeout must be seconds or a timespan string, got {}",
                        json_kind(&other)
                    )))
                }
            };
            let value = decode_value_object(&obj, &mut String::from("$"))?;
            Ok(ClientMessage::Request {
                id,
                topic,
                timeout,
                value,
            })
        }
        "reply-error" => {
            let reply_to = string_field(&mut obj, "reply-to")?;
            let code = string_field(&mut obj, "code")?;
            let context = match obj.remove("context") {
                None | Some(Json::Null) => String::new(),
                Some(Json::String(t)) => t,
                Some(other) => {
                    return Err(JsonError::Structure(format!(
                        "context must be a string, got {}",
                        json_kind(&other)
                    )))
                }
            };
            Ok(ClientMessage::ReplyError {
                reply_to,
                code,
                context,
            })
        }
        "reply" => {
            let reply_to = string_field(&mut obj, "reply-to")?;
            let value = decode_value_object(&obj, &mut String::from("$"))?;
            Ok(ClientMessage::Reply { reply_to, value })
        }
        _ => {
            let topic = string_field(&mut obj, "topic")?;
            let value = decode_value_object(&obj, &mut String::from("$"))?;
            Ok(ClientMessage::Data(DataMessage { topic, value }))
        }
    }
}

/// `{"type":"data-message","topic":…,"reply-to":…,"@data-type":…,"data":…}`: a request as its
/// subscribers see it.
pub fn encode_request_message(topic: &str, reply_to: &str, v: &Value, opts: JsonOptions) -> String {
    let mut s = String::with_capacity(96 + topic.len() + reply_to.len());
    s.push_str("{\"type\":\"data-message\",\"topic\":");
    write_json_string(&mut s, topic);
    s.push_str(",\"reply-to\":");
    write_json_string(&mut s, reply_to);
    s.push(',');
    write_value_fields(&mut s, v, opts);
    s.push('}');
    s
}

/// `{"type":"reply","id":…,"topic":…,"@data-type":…,"data":…}`: the answer to a client's
/// request.
pub fn encode_reply(id: &Json, topic: &str, v: &Value, opts: JsonOptions) -> String {
    let mut s = String::from("{\"type\":\"reply\",\"id\":");
    s.push_str(&id.to_string());
    s.push_str(",\"topic\":");
    write_json_string(&mut s, topic);
    s.push(',');
    write_value_fields(&mut s, v, opts);
    s.push('}');
    s
}

/// `{"type":"subscribed","id":…,"topics":[…]}` (or `unsubscribed`): a subscription change
/// in force (`id` only when the client gave one).
pub fn encode_subscription_change(kind: &str, id: Option<&Json>, topics: &[String]) -> String {
    let mut s = String::from("{\"type\":");
    write_json_string(&mut s, kind);
    if let Some(id) = id {
        s.push_str(",\"id\":");
        s.push_str(&id.to_string());
    }
    s.push_str(",\"topics\":[");
    for (i, t) in topics.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_json_string(&mut s, t);
    }
    s.push_str("]}");
    s
}

/// `{"type":"error","code":"request_failed","context":…,"id":…,"failure":…}`: a request whose
/// responder answered with a failure (`failure`: its code).
pub fn encode_request_failure(id: &Json, failure: &str, context: &str) -> String {
    let mut s = encode_request_error(id, "request_failed", context);
    s.pop();
    s.push_str(",\"failure\":");
    write_json_string(&mut s, failure);
    s.push('}');
    s
}

/// `{"type":"error","code":…,"context":…,"id":…}`: a request that failed.
pub fn encode_request_error(id: &Json, code: &str, context: &str) -> String {
    let mut s = encode_error(code, context);
    s.pop();
    s.push_str(",\"id\":");
    s.push_str(&id.to_string());
    s.push('}');
    s
}

/// A message from an endpoint to a WebSocket client, after the handshake's ack.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// A publication on a subscribed topic; `reply_to` when it is a request to answer.
    Data {
        topic: String,
        reply_to: Option<String>,
        value: Value,
    },
    /// The answer to the client's request `id`.
    Reply {
        id: Json,
        topic: String,
        value: Value,
    },
    /// A refusal: of the request (or store operation) `id`, or of the connection's input.
    Error {
        id: Option<Json>,
        code: String,
        context: String,
    },
    /// Any other kind (`ack`, `store-result`, store events…), left as JSON.
    Other(Json),
}

/// Reads one frame an endpoint sent a WebSocket client.
pub fn decode_server_message(bytes: &[u8]) -> Result<ServerMessage, JsonError> {
    let Json::Object(mut obj) = parse_json(bytes)? else {
        return Err(JsonError::Structure(
            "a message must be a JSON object".into(),
        ));
    };
    let kind = match obj.get("type") {
        Some(Json::String(t)) => t.clone(),
        _ => {
            return Err(JsonError::Structure(
                "a message needs a string \"type\"".into(),
            ))
        }
    };
    match kind.as_str() {
        "data-message" => {
            let topic = string_field(&mut obj, "topic")?;
            let reply_to = match obj.contains_key("reply-to") {
                true => Some(string_field(&mut obj, "reply-to")?),
                false => None,
            };
            let value = decode_value_object(&obj, &mut String::from("$"))?;
            Ok(ServerMessage::Data {
                topic,
                reply_to,
                value,
            })
        }
        "reply" => {
            let id = obj.remove("id").unwrap_or(Json::Null);
            let topic = string_field(&mut obj, "topic")?;
            let value = decode_value_object(&obj, &mut String::from("$"))?;
            Ok(ServerMessage::Reply { id, topic, value })
        }
        "error" => Ok(ServerMessage::Error {
            id: obj.remove("id"),
            code: string_field(&mut obj, "code")?,
            context: string_field(&mut obj, "context")?,
        }),
        _ => Ok(ServerMessage::Other(Json::Object(obj))),
    }
}

/// Decodes one `{"@data-type":…,"data":…}` value.
pub fn decode_value(j: &Json) -> Result<Value, JsonError> {
    let mut path = String::from("$");
    match j {
        Json::Object(obj) => decode_value_object(obj, &mut path),
        other => Err(invalid(
            &path,
            format!("expected a value object, got {}", json_kind(other)),
        )),
    }
}

pub fn decode_value_bytes(bytes: &[u8]) -> Result<Value, JsonError> {
    crate::json_fast::value(bytes).or_else(|_| reference_decode_value_bytes(bytes))
}

/// The reference decoder of one value object.
pub fn reference_decode_value_bytes(bytes: &[u8]) -> Result<Value, JsonError> {
    decode_value(&parse_json(bytes)?)
}

/// The streaming decoder alone (for tests that compare it with the reference decoder).
#[doc(hidden)]
pub fn fast_decode_value_bytes(bytes: &[u8]) -> Option<Value> {
    crate::json_fast::value(bytes).ok()
}

#[doc(hidden)]
pub fn fast_decode_data_message(bytes: &[u8]) -> Option<DataMessage> {
    crate::json_fast::data_message(bytes).ok()
}

fn invalid(path: &str, reason: impl std::fmt::Display) -> JsonError {
    JsonError::InvalidData {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

fn decode_value_object(
    obj: &serde_json::Map<String, Json>,
    path: &mut String,
) -> Result<Value, JsonError> {
    let ty = match obj.get("@data-type") {
        Some(Json::String(t)) => t,
        Some(other) => {
            return Err(invalid(
                path,
                format!("@data-type must be a string, got {}", json_kind(other)),
            ))
        }
        None => return Err(invalid(path, "missing @data-type")),
    };
    let Some(ty) = ValueType::from_name(ty) else {
        let known: Vec<_> = ValueType::ALL.iter().map(|t| t.name()).collect();
        return Err(invalid(
            path,
            format!(
                "unknown @data-type {ty:?} (expected one of {})",
                known.join(", ")
            ),
        ));
    };
    let data = match obj.get("data") {
        Some(d) => d,
        None if ty == ValueType::None => &Json::Null,
        None => return Err(invalid(path, "missing data")),
    };
    let base = path.len();
    path.push_str(".data");
    let result = decode_data(ty, data, path);
    path.truncate(base);
    result
}

fn decode_data(ty: ValueType, data: &Json, path: &mut String) -> Result<Value, JsonError> {
    let wrong = |path: &str, expected: &str| {
        invalid(
            path,
            format!("{} needs {expected}, got {}", ty.name(), describe(data)),
        )
    };
    let text = |path: &str, expected: &str| -> Result<String, JsonError> {
        match data {
            Json::String(s) => Ok(s.clone()),
            _ => Err(wrong(path, expected)),
        }
    };
    Ok(match ty {
        ValueType::None => Value::None,
        ValueType::Boolean => {
            Value::Boolean(data.as_bool().ok_or_else(|| wrong(path, "true or false"))?)
        }
        ValueType::Count => match data {
            Json::Number(n) => Value::Count(
                n.as_u64()
                    .ok_or_else(|| wrong(path, "an integer from 0 to 18446744073709551615"))?,
            ),
            _ => return Err(wrong(path, "a non-negative integer")),
        },
        ValueType::Integer => match data {
            Json::Number(n) => Value::Integer(n.as_i64().ok_or_else(|| {
                wrong(
                    path,
                    "an integer from -9223372036854775808 to 9223372036854775807",
                )
            })?),
            _ => return Err(wrong(path, "an integer")),
        },
        ValueType::Real => match data {
            Json::Number(n) => Value::Real(n.as_f64().ok_or_else(|| wrong(path, "a number"))?),
            Json::String(s) if s == "NaN" => Value::Real(f64::NAN),
            Json::String(s) if s == "Infinity" => Value::Real(f64::INFINITY),
            Json::String(s) if s == "-Infinity" => Value::Real(f64::NEG_INFINITY),
            _ => {
                return Err(wrong(
                    path,
                    "a number (or \"NaN\", \"Infinity\", \"-Infinity\")",
                ))
            }
        },
        ValueType::String => Value::String(text(path, "a string")?),
        ValueType::Enum => Value::Enum(text(path, "a string (the enum name)")?),
        ValueType::Address => {
            let s = text(path, "a string such as \"10.0.0.1\" or \"2001:db8::1\"")?;
            Value::Address(
                s.parse::<Address>()
                    .map_err(|_| invalid(path, format!("{s:?} is not an IPv4 or IPv6 address")))?,
            )
        }
        ValueType::Subnet => {
            let s = text(path, "a string such as \"10.0.0.0/8\"")?;
            Value::Subnet(s.parse::<Subnet>().map_err(|e| invalid(path, e))?)
        }
        ValueType::Port => {
            let s = text(path, "a string such as \"80/tcp\"")?;
            Value::Port(s.parse::<Port>().map_err(|e| invalid(path, e))?)
        }
        ValueType::Timestamp => {
            let s = text(
                path,
                "an ISO 8601 string such as \"2024-01-01T00:00:00.000\"",
            )?;
            Value::Timestamp(time::parse_timestamp(&s).map_err(|e| invalid(path, e))?)
        }
        ValueType::Timespan => {
            let s = text(path, "a string such as \"15ms\"")?;
            Value::Timespan(time::parse_timespan(&s).map_err(|e| invalid(path, e))?)
        }
        ValueType::Set | ValueType::Vector => {
            let Json::Array(items) = data else {
                return Err(wrong(path, "an array of value objects"));
            };
            let values = decode_items(items, path)?;
            if ty == ValueType::Set {
                Value::Set(values.into_iter().collect::<BTreeSet<_>>())
            } else {
                Value::Vector(values)
            }
        }
        ValueType::Table => {
            let Json::Array(items) = data else {
                return Err(wrong(path, "an array of {\"key\":…,\"value\":…} objects"));
            };
            let mut table = BTreeMap::new();
            for (i, item) in items.iter().enumerate() {
                let base = path.len();
                let _ = write!(path, "[{i}]");
                let Json::Object(entry) = item else {
                    return Err(invalid(
                        path,
                        format!(
                            "table entry must be an object with key and value, got {}",
                            json_kind(item)
                        ),
                    ));
                };
                let mut field = |name: &str| -> Result<Value, JsonError> {
                    let b = path.len();
                    let _ = write!(path, ".{name}");
                    let r = match entry.get(name) {
                        Some(Json::Object(o)) => decode_value_object(o, path),
                        Some(other) => Err(invalid(
                            path,
                            format!("expected a value object, got {}", json_kind(other)),
                        )),
                        None => Err(invalid(path, format!("table entry has no {name}"))),
                    };
                    path.truncate(b);
                    r
                };
                let k = field("key")?;
                let v = field("value")?;
                table.insert(k, v);
                path.truncate(base);
            }
            Value::Table(table)
        }
    })
}

fn decode_items(items: &[Json], path: &mut String) -> Result<Vec<Value>, JsonError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let base = path.len();
        let _ = write!(path, "[{i}]");
        match item {
            Json::Object(o) => out.push(decode_value_object(o, path)?),
            other => {
                return Err(invalid(
                    path,
                    format!("expected a value object, got {}", json_kind(other)),
                ))
            }
        }
        path.truncate(base);
    }
    Ok(out)
}

/// A short description of a JSON input for error messages (kind plus a clipped rendering).
fn describe(j: &Json) -> String {
    let mut s = j.to_string();
    if s.len() > 40 {
        let mut cut = 40;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    format!("{} {s}", json_kind(j))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_reply_decodes_and_the_requester_s_error_carries_its_code() {
        assert_eq!(
            decode_client_message(br#"{"type":"reply-error","reply-to":"<$>/reply/a/1","code":"bad_input","context":"why"}"#).unwrap(),
            ClientMessage::ReplyError {
                reply_to: "<$>/reply/a/1".into(),
                code: "bad_input".into(),
                context: "why".into()
            }
        );
        for (bad, why) in [
            (&br#"{"type":"reply-error","code":"x"}"#[..], "reply-to"),
            (br#"{"type":"reply-error","reply-to":"r"}"#, "code"),
            (
                br#"{"type":"reply-error","reply-to":"r","code":"x","context":1}"#,
                "context must be a string",
            ),
        ] {
            let e = decode_client_message(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        assert_eq!(
            encode_request_failure(&serde_json::json!(7), "bad_input", "why \"not\""),
            r#"{"type":"error","code":"request_failed","context":"why \"not\"","id":7,"failure":"bad_input"}"#
        );
    }

    #[test]
    fn subscription_changes_decode_with_or_without_an_id_and_encode_their_confirmation() {
        let m = decode_client_message(br#"{"type":"subscribe","id":[1],"topics":["/a",""]}"#);
        assert_eq!(
            m.unwrap(),
            ClientMessage::Subscribe {
                id: Some(serde_json::json!([1])),
                topics: vec!["/a".into(), "".into()]
            }
        );
        let m = decode_client_message(br#"{"type":"unsubscribe","topics":[]}"#);
        assert_eq!(
            m.unwrap(),
            ClientMessage::Unsubscribe {
                id: None,
                topics: vec![]
            }
        );
        for (bad, why) in [
            (&br#"{"type":"subscribe"}"#[..], "subscribe needs topics"),
            (
                br#"{"type":"unsubscribe","topics":{}}"#,
                "topics must be an array",
            ),
            (
                br#"{"type":"subscribe","topics":[null]}"#,
                "element 0 is null",
            ),
            (br#"{"type":"resubscribe","topics":[]}"#, "\"unsubscribe\""),
        ] {
            let e = decode_client_message(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        assert_eq!(
            encode_subscription_change(
                "subscribed",
                Some(&serde_json::json!("x")),
                &["/a\"".into()]
            ),
            r#"{"type":"subscribed","id":"x","topics":["/a\""]}"#
        );
        assert_eq!(
            encode_subscription_change("unsubscribed", None, &[]),
            r#"{"type":"unsubscribed","topics":[]}"#
        );
    }

    #[test]
    fn what_an_endpoint_sends_a_client_reads_back() {
        let opts = JsonOptions {
            timestamp_precision: crate::time::TimestampPrecision::Nanos,
        };
        let v = Value::Vector(vec![Value::Count(1), Value::String("x".into())]);
        assert_eq!(
            decode_server_message(encode_data_message("/a", &v, opts).as_bytes()).unwrap(),
            ServerMessage::Data {
                topic: "/a".into(),
                reply_to: None,
                value: v.clone()
            }
        );
        assert_eq!(
            decode_server_message(encode_request_message("/q", "ep-ws-1", &v, opts).as_bytes())
                .unwrap(),
            ServerMessage::Data {
                topic: "/q".into(),
                reply_to: Some("ep-ws-1".into()),
                value: v.clone()
            }
        );
        assert_eq!(
            decode_server_message(encode_reply(&Json::from(7), "/q", &v, opts).as_bytes()).unwrap(),
            ServerMessage::Reply {
                id: Json::from(7),
                topic: "/q".into(),
                value: v
            }
        );
        assert_eq!(
            decode_server_message(
                encode_request_error(&Json::from(7), "no_path_to_peer", "none").as_bytes()
            )
            .unwrap(),
            ServerMessage::Error {
                id: Some(Json::from(7)),
                code: "no_path_to_peer".into(),
                context: "none".into()
            }
        );
        assert!(matches!(
            decode_server_message(encode_ack("ep", "1").as_bytes()).unwrap(),
            ServerMessage::Other(_)
        ));
        for bad in [
            &b"[]"[..],
            b"{}",
            b"{\"type\":\"error\",\"code\":1}",
            b"nope",
        ] {
            assert!(decode_server_message(bad).is_err());
        }
    }

    use super::*;

    fn rt(s: &str) -> String {
        encode_value(
            &decode_value_bytes(s.as_bytes()).unwrap(),
            JsonOptions::default(),
        )
    }

    #[test]
    fn reals_are_shortest_with_a_point() {
        let mut s = String::new();
        for r in [-7.5, 1.0, 1e21, 1e-9, 0.1, 123456789.0] {
            s.clear();
            write_real(&mut s, r);
            assert!(s.contains('.'), "{s}");
            assert_eq!(s.parse::<f64>().unwrap(), r);
        }
        s.clear();
        write_real(&mut s, -7.5);
        assert_eq!(s, "-7.5");
        s.clear();
        write_real(&mut s, 1e21);
        assert_eq!(s, "1.0e21");
    }

    #[test]
    fn non_finite_reals_round_trip_as_strings() {
        for r in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let text = encode_value(&Value::Real(r), JsonOptions::default());
            serde_json::from_str::<Json>(&text).expect("valid JSON");
            assert_eq!(decode_value_bytes(text.as_bytes()).unwrap(), Value::Real(r));
        }
    }

    #[test]
    fn strings_are_escaped_as_json_requires() {
        let mut s = String::new();
        write_json_string(&mut s, "a\u{b}b\"c\\\n\u{1}\u{7f}é");
        assert_eq!(s, "\"a\\u000bb\\\"c\\\\\\n\\u0001\\u007fé\"");
        assert_eq!(
            serde_json::from_str::<String>(&s).unwrap(),
            "a\u{b}b\"c\\\n\u{1}\u{7f}é"
        );
    }

    #[test]
    fn lenient_input() {
        assert_eq!(
            rt(r#"{"@data-type":"real","data":3}"#),
            r#"{"@data-type":"real","data":3.0}"#
        );
        assert_eq!(
            rt(r#"{"@data-type":"timespan","data":"-2min"}"#),
            r#"{"@data-type":"timespan","data":"-120s"}"#
        );
        assert_eq!(
            rt(r#"{"@data-type":"timestamp","data":"2022-04-10T09:00:00.123456789+02:00"}"#),
            r#"{"@data-type":"timestamp","data":"2022-04-10T07:00:00.123"}"#
        );
        assert_eq!(
            rt(r#"{"@data-type":"none","data":null}"#),
            r#"{"@data-type":"none","data":{}}"#
        );
        let m = decode_data_message(br#"{"topic":"/t","@data-type":"count","data":1}"#).unwrap();
        assert_eq!(m.value, Value::Count(1));
    }

    #[test]
    fn inputs_the_fast_path_refuses_still_decode() {
        // data before @data-type, a duplicate key, extra keys: the reference decoder takes them.
        let m = decode_data_message(br#"{"data":[],"topic":"/t","@data-type":"vector","x":1}"#)
            .unwrap();
        assert_eq!(m.value, Value::Vector(vec![]));
        assert!(
            fast_decode_data_message(br#"{"data":1,"topic":"/t","@data-type":"count"}"#).is_none()
        );
        let m =
            decode_data_message(br#"{"topic":"/a","topic":"/b","@data-type":"count","data":1}"#)
                .unwrap();
        assert_eq!(m.topic, "/b");
    }

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        assert_eq!(
            rt(
                r#"{"@data-type":"set","data":[{"@data-type":"string","data":"foo"},{"@data-type":"string","data":"bar"},{"@data-type":"string","data":"foo"}]}"#
            ),
            r#"{"@data-type":"set","data":[{"@data-type":"string","data":"bar"},{"@data-type":"string","data":"foo"}]}"#
        );
    }

    #[test]
    fn errors_say_where_and_why() {
        let e = decode_value_bytes(br#"{"@data-type":"phone","data":1}"#).unwrap_err();
        assert!(
            e.to_string().contains("unknown @data-type \"phone\""),
            "{e}"
        );
        let e = decode_value_bytes(
            br#"{"@data-type":"vector","data":[{"@data-type":"count","data":1.0}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid data at $.data[0].data: count needs an integer from 0 to 18446744073709551615, got a number 1.0"
        );
        let e = decode_value_bytes(br#"{"@data-type":"count","data":-1}"#).unwrap_err();
        assert!(e.to_string().contains("count needs"), "{e}");
        let e = decode_data_message(b"{\"topic\": ").unwrap_err();
        assert!(matches!(e, JsonError::Malformed(_)));
        assert!(e.to_string().contains("line 1 column"), "{e}");
        let e = decode_data_message(br#"[1]"#).unwrap_err();
        assert!(e.to_string().contains("expected a JSON object"));
        let e = decode_data_message(br#"{"@data-type":"count","data":1}"#).unwrap_err();
        assert_eq!(e.to_string(), "no topic in top-level JSON object");
        let e = decode_handshake(br#"{"a":1}"#).unwrap_err();
        assert!(e.to_string().starts_with("subscriptions not an array"));
        let e = decode_handshake(br#"["/a", 3]"#).unwrap_err();
        assert!(e.to_string().contains("element 1"));
    }
}
