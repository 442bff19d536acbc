//! Switchyard's compact binary value encoding, used between native peers.
//!
//! A document is one version byte ([`VERSION`]) followed by one value. A value is its type tag
//! (the [`ValueType`] number, Broker's) followed by:
//!
//! | type | payload |
//! |---|---|
//! | none | nothing |
//! | boolean | one byte, 0 or 1 |
//! | count | unsigned LEB128 varint |
//! | integer, timestamp, timespan | zigzag LEB128 varint |
//! | real | 8 bytes, IEEE 754 little-endian |
//! | string, enum-value | varint byte length, UTF-8 bytes |
//! | address | family byte (4 or 6), then 4 or 16 bytes |
//! | subnet | an address payload, then the prefix length of the 16-byte form (0–128) |
//! | port | u16 little-endian, then protocol byte (0 ?, 1 tcp, 2 udp, 3 icmp) |
//! | set, vector | varint element count, then the elements |
//! | table | varint entry count, then key, value, key, value… |
//!
//! The decoder never trusts a length: counts are checked against the bytes left, nesting is
//! limited to [`MAX_DEPTH`], strings must be UTF-8, and errors name the byte offset.

use std::collections::{BTreeMap, BTreeSet};

use crate::value::{Address, Port, Protocol, Subnet, Value, ValueType};

/// The version byte that starts every document.
pub const VERSION: u8 = 1;
/// The deepest nesting of containers the decoder accepts.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    #[error("unsupported binary encoding version {0} (this build speaks version {VERSION})")]
    Version(u8),
    #[error("truncated input: needed more bytes at offset {0}")]
    Truncated(usize),
    #[error("invalid data at offset {offset}: {reason}")]
    Invalid { offset: usize, reason: String },
}

/// Encodes `v` as a versioned document.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.push(VERSION);
    encode_into(&mut out, v);
    out
}

/// Decodes a versioned document; the whole input must be consumed.
pub fn decode(bytes: &[u8]) -> Result<Value, BinaryError> {
    match bytes.first() {
        None => Err(BinaryError::Truncated(0)),
        Some(&VERSION) => {
            let mut r = Reader { buf: bytes, pos: 1 };
            let v = r.value(0)?;
            if r.pos != bytes.len() {
                return Err(r.invalid(format!("{} trailing bytes", bytes.len() - r.pos)));
            }
            Ok(v)
        }
        Some(&v) => Err(BinaryError::Version(v)),
    }
}

/// Appends `n` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn put_address(out: &mut Vec<u8>, a: &Address) {
    if a.is_v4() {
        out.push(4);
        out.extend_from_slice(&a.0[12..]);
    } else {
        out.push(6);
        out.extend_from_slice(&a.0);
    }
}

/// Appends one value (tag and payload, no version byte).
pub fn encode_into(out: &mut Vec<u8>, v: &Value) {
    out.push(v.value_type() as u8);
    match v {
        Value::None => {}
        Value::Boolean(b) => out.push(*b as u8),
        Value::Count(c) => put_varint(out, *c),
        Value::Integer(i) | Value::Timestamp(i) | Value::Timespan(i) => put_varint(out, zigzag(*i)),
        Value::Real(r) => out.extend_from_slice(&r.to_le_bytes()),
        Value::String(s) | Value::Enum(s) => {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Address(a) => put_address(out, a),
        Value::Subnet(s) => {
            put_address(out, &s.address());
            out.push(s.raw_len());
        }
        Value::Port(p) => {
            out.extend_from_slice(&p.number.to_le_bytes());
            out.push(p.protocol as u8);
        }
        Value::Set(items) => {
            put_varint(out, items.len() as u64);
            items.iter().for_each(|i| encode_into(out, i));
        }
        Value::Vector(items) => {
            put_varint(out, items.len() as u64);
            items.iter().for_each(|i| encode_into(out, i));
        }
        Value::Table(entries) => {
            put_varint(out, entries.len() as u64);
            for (k, val) in entries {
                encode_into(out, k);
                encode_into(out, val);
            }
        }
    }
}

/// Why [`read_varint`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More than 64 bits.
    TooLong,
}

/// Reads an unsigned LEB128 varint from the front of `buf`: the value and the bytes it took.
pub fn read_varint(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut n: u64 = 0;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let b = *buf.get(i).ok_or(VarintError::Truncated)?;
        if shift == 63 && b > 1 {
            break;
        }
        n |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok((n, i + 1));
        }
    }
    Err(VarintError::TooLong)
}

/// Decodes one value (no version byte) from the front of `bytes`; returns it and the bytes used.
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), BinaryError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn invalid(&self, reason: String) -> BinaryError {
        BinaryError::Invalid {
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BinaryError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(BinaryError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, BinaryError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, BinaryError> {
        let start = self.pos;
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                break;
            }
            n |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(BinaryError::Invalid {
            offset: start,
            reason: "varint longer than 64 bits".into(),
        })
    }

    /// A container length, which cannot exceed the bytes left (every element takes one byte).
    fn count(&mut self, per_item: usize) -> Result<usize, BinaryError> {
        let start = self.pos;
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left / per_item as u64 {
            return Err(BinaryError::Invalid {
                offset: start,
                reason: format!("length {n} exceeds the {left} bytes left"),
            });
        }
        Ok(n as usize)
    }

    fn address(&mut self) -> Result<Address, BinaryError> {
        match self.byte()? {
            4 => {
                let b = self.take(4)?;
                Ok(Address::from(std::net::IpAddr::from([
                    b[0], b[1], b[2], b[3],
                ])))
            }
            6 => Ok(Address(self.take(16)?.try_into().expect("16 bytes"))),
            f => Err(self.invalid(format!("address family {f} (expected 4 or 6)"))),
        }
    }

    fn text(&mut self) -> Result<String, BinaryError> {
        let n = self.count(1)?;
        let start = self.pos;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| BinaryError::Invalid {
            offset: start + e.utf8_error().valid_up_to(),
            reason: "string is not valid UTF-8".into(),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, BinaryError> {
        let tag_pos = self.pos;
        let tag = self.byte()?;
        let ty = ValueType::from_tag(tag).ok_or(BinaryError::Invalid {
            offset: tag_pos,
            reason: format!("unknown type tag {tag}"),
        })?;
        let container = matches!(ty, ValueType::Set | ValueType::Table | ValueType::Vector);
        if container && depth >= MAX_DEPTH {
            return Err(self.invalid(format!("containers nested deeper than {MAX_DEPTH}")));
        }
        Ok(match ty {
            ValueType::None => Value::None,
            ValueType::Boolean => match self.byte()? {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                b => return Err(self.invalid(format!("boolean byte {b} (expected 0 or 1)"))),
            },
            ValueType::Count => Value::Count(self.varint()?),
            ValueType::Integer => Value::Integer(unzigzag(self.varint()?)),
            ValueType::Timestamp => Value::Timestamp(unzigzag(self.varint()?)),
            ValueType::Timespan => Value::Timespan(unzigzag(self.varint()?)),
            ValueType::Real => {
                Value::Real(f64::from_le_bytes(self.take(8)?.try_into().expect("8")))
            }
            ValueType::String => Value::String(self.text()?),
            ValueType::Enum => Value::Enum(self.text()?),
            ValueType::Address => Value::Address(self.address()?),
            ValueType::Subnet => {
                let a = self.address()?;
                let len = self.byte()?;
                if len > 128 || (a.is_v4() && len < 96) {
                    return Err(
                        self.invalid(format!("subnet length {len} does not fit the address"))
                    );
                }
                Value::Subnet(Subnet::from_raw(a, len))
            }
            ValueType::Port => {
                let b = self.take(2)?;
                let number = u16::from_le_bytes([b[0], b[1]]);
                let code = self.byte()?;
                let protocol = Protocol::from_code(code).ok_or_else(|| {
                    self.invalid(format!("port protocol {code} (expected 0 to 3)"))
                })?;
                Value::Port(Port { number, protocol })
            }
            ValueType::Set => {
                let n = self.count(1)?;
                let mut s = BTreeSet::new();
                for _ in 0..n {
                    s.insert(self.value(depth + 1)?);
                }
                Value::Set(s)
            }
            ValueType::Vector => {
                let n = self.count(1)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(depth + 1)?);
                }
                Value::Vector(v)
            }
            ValueType::Table => {
                let n = self.count(2)?;
                let mut t = BTreeMap::new();
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    t.insert(k, v);
                }
                Value::Table(t)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_versioned() {
        assert_eq!(encode(&Value::Count(1)), vec![1, 2, 1]);
        assert_eq!(encode(&Value::Integer(-1)), vec![1, 3, 1]);
        assert_eq!(decode(&[9, 2, 1]), Err(BinaryError::Version(9)));
    }

    #[test]
    fn garbage_is_rejected_with_an_offset() {
        assert_eq!(decode(&[1, 2]), Err(BinaryError::Truncated(2)));
        assert!(matches!(
            decode(&[1, 99]),
            Err(BinaryError::Invalid { offset: 1, .. })
        ));
        // A huge length must not allocate.
        let e = decode(&[1, 14, 0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let e = decode(&[1, 5, 2, 0xc3, 0x28]).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        assert!(decode(&[1, 2, 1, 0])
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        let mut deep = vec![1];
        for _ in 0..100 {
            deep.extend_from_slice(&[14, 1]);
        }
        deep.push(0);
        assert!(decode(&deep).unwrap_err().to_string().contains("nested"));
    }
}
