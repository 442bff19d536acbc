//! The value model: Broker's 15 types and their total order.
//!
//! Order follows Broker: values of different types compare by type tag (the order of
//! [`ValueType`]), values of one type by content. Sets and tables are kept sorted by that order,
//! so two equal sets always encode to the same bytes. Reals compare with `f64::total_cmp`, which
//! makes the order total (and `Eq` lawful) even with NaN.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A typed value, as carried in every message.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Boolean(bool),
    Count(u64),
    Integer(i64),
    Real(f64),
    /// Always valid UTF-8: every decoder rejects invalid UTF-8 rather than passing it on.
    String(String),
    Address(Address),
    Subnet(Subnet),
    Port(Port),
    /// Nanoseconds since the Unix epoch (UTC).
    Timestamp(i64),
    /// Nanoseconds.
    Timespan(i64),
    /// The name of an enum value, e.g. `Conn::LOG`.
    Enum(String),
    Set(BTreeSet<Value>),
    Table(BTreeMap<Value, Value>),
    Vector(Vec<Value>),
}

/// The type of a [`Value`]; the declaration order is Broker's tag order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueType {
    None = 0,
    Boolean = 1,
    Count = 2,
    Integer = 3,
    Real = 4,
    String = 5,
    Address = 6,
    Subnet = 7,
    Port = 8,
    Timestamp = 9,
    Timespan = 10,
    Enum = 11,
    Set = 12,
    Table = 13,
    Vector = 14,
}

impl ValueType {
    pub const ALL: [ValueType; 15] = [
        ValueType::None,
        ValueType::Boolean,
        ValueType::Count,
        ValueType::Integer,
        ValueType::Real,
        ValueType::String,
        ValueType::Address,
        ValueType::Subnet,
        ValueType::Port,
        ValueType::Timestamp,
        ValueType::Timespan,
        ValueType::Enum,
        ValueType::Set,
        ValueType::Table,
        ValueType::Vector,
    ];

    /// The `@data-type` name used by JSON v1.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::None => "none",
            ValueType::Boolean => "boolean",
            ValueType::Count => "count",
            ValueType::Integer => "integer",
            ValueType::Real => "real",
            ValueType::String => "string",
            ValueType::Address => "address",
            ValueType::Subnet => "subnet",
            ValueType::Port => "port",
            ValueType::Timestamp => "timestamp",
            ValueType::Timespan => "timespan",
            ValueType::Enum => "enum-value",
            ValueType::Set => "set",
            ValueType::Table => "table",
            ValueType::Vector => "vector",
        }
    }

    pub fn from_name(name: &str) -> Option<ValueType> {
        ValueType::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn from_tag(tag: u8) -> Option<ValueType> {
        ValueType::ALL.get(tag as usize).copied()
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::None => ValueType::None,
            Value::Boolean(_) => ValueType::Boolean,
            Value::Count(_) => ValueType::Count,
            Value::Integer(_) => ValueType::Integer,
            Value::Real(_) => ValueType::Real,
            Value::String(_) => ValueType::String,
            Value::Address(_) => ValueType::Address,
            Value::Subnet(_) => ValueType::Subnet,
            Value::Port(_) => ValueType::Port,
            Value::Timestamp(_) => ValueType::Timestamp,
            Value::Timespan(_) => ValueType::Timespan,
            Value::Enum(_) => ValueType::Enum,
            Value::Set(_) => ValueType::Set,
            Value::Table(_) => ValueType::Table,
            Value::Vector(_) => ValueType::Vector,
        }
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn as_vector(&self) -> Option<&[Value]> {
        match self {
            Value::Vector(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_count(&self) -> Option<u64> {
        match self {
            Value::Count(c) => Some(*c),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (None, None) => Ordering::Equal,
            (Boolean(a), Boolean(b)) => a.cmp(b),
            (Count(a), Count(b)) => a.cmp(b),
            (Integer(a), Integer(b)) => a.cmp(b),
            (Real(a), Real(b)) => a.total_cmp(b),
            (String(a), String(b)) => a.cmp(b),
            (Address(a), Address(b)) => a.cmp(b),
            (Subnet(a), Subnet(b)) => a.cmp(b),
            (Port(a), Port(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (Timespan(a), Timespan(b)) => a.cmp(b),
            (Enum(a), Enum(b)) => a.cmp(b),
            (Set(a), Set(b)) => a.cmp(b),
            (Table(a), Table(b)) => a.cmp(b),
            (Vector(a), Vector(b)) => a.cmp(b),
            _ => self.value_type().cmp(&other.value_type()),
        }
    }
}

/// An IPv4 or IPv6 address, stored as 16 bytes (IPv4 mapped into IPv6, as Broker does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 16]);

impl Address {
    pub fn is_v4(&self) -> bool {
        self.0[..10].iter().all(|b| *b == 0) && self.0[10] == 0xff && self.0[11] == 0xff
    }

    pub fn to_ip(self) -> IpAddr {
        if self.is_v4() {
            IpAddr::V4(Ipv4Addr::new(
                self.0[12], self.0[13], self.0[14], self.0[15],
            ))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.0))
        }
    }
}

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Address {
        match ip {
            IpAddr::V4(v4) => Address(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => Address(v6.octets()),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Address, Self::Err> {
        s.parse::<IpAddr>().map(Address::from)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ip())
    }
}

/// A network prefix. `len` counts bits of the 16-byte form (an IPv4 /8 is stored as 104), and the
/// host bits of `addr` are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    addr: Address,
    len: u8,
}

impl Subnet {
    /// Builds a subnet from an address and a prefix length *in that address's family* (0..=32
    /// for IPv4, 0..=128 for IPv6); host bits are masked off. `None` when the length is too long.
    pub fn new(addr: Address, family_len: u8) -> Option<Subnet> {
        let len = if addr.is_v4() {
            if family_len > 32 {
                return None;
            }
            family_len + 96
        } else {
            if family_len > 128 {
                return None;
            }
            family_len
        };
        Some(Subnet::from_raw(addr, len))
    }

    /// Builds a subnet from the 16-byte form; `len` is clamped to 128 and host bits are masked.
    pub fn from_raw(addr: Address, len: u8) -> Subnet {
        let len = len.min(128);
        let mut bytes = addr.0;
        for (i, b) in bytes.iter_mut().enumerate() {
            let bit = (i * 8) as u32;
            let keep = (len as u32).saturating_sub(bit).min(8);
            *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        }
        Subnet {
            addr: Address(bytes),
            len,
        }
    }

    pub fn address(&self) -> Address {
        self.addr
    }

    /// The prefix length in the 16-byte form.
    pub fn raw_len(&self) -> u8 {
        self.len
    }

    /// The prefix length in the address's own family.
    pub fn family_len(&self) -> u8 {
        if self.addr.is_v4() && self.len >= 96 {
            self.len - 96
        } else {
            self.len
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.family_len())
    }
}

/// Why a subnet or a port was not read: the input, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {input:?}{why}")]
pub struct SyntaxError {
    /// `subnet` or `port`.
    pub kind: &'static str,
    pub input: String,
    /// Starts with a separator (`: ` or ` `), so that the message reads as one sentence.
    pub why: String,
}

impl From<SyntaxError> for String {
    fn from(e: SyntaxError) -> String {
        e.to_string()
    }
}

impl std::str::FromStr for Subnet {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Subnet, SyntaxError> {
        let err = |why: String| SyntaxError {
            kind: "subnet",
            input: s.to_string(),
            why,
        };
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| err(" has no '/<length>'".into()))?;
        let addr: Address = a
            .parse()
            .map_err(|_| err(format!(": {a:?} is not an IP address")))?;
        let len: u8 = l
            .parse()
            .map_err(|_| err(format!(": prefix length {l:?} is not a number")))?;
        Subnet::new(addr, len).ok_or_else(|| {
            err(format!(
                ": prefix length {len} is too long (max {})",
                if addr.is_v4() { 32 } else { 128 }
            ))
        })
    }
}

/// The transport protocol of a [`Port`]; the discriminants are Broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Unknown = 0,
    Tcp = 1,
    Udp = 2,
    Icmp = 3,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Unknown => "?",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }

    pub fn from_code(code: u8) -> Option<Protocol> {
        [
            Protocol::Unknown,
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Icmp,
        ]
        .get(code as usize)
        .copied()
    }
}

/// A transport-layer port: number and protocol, written `80/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub number: u16,
    pub protocol: Protocol,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.protocol.name())
    }
}

impl std::str::FromStr for Port {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Port, SyntaxError> {
        let err = |why: String| SyntaxError {
            kind: "port",
            input: s.to_string(),
            why,
        };
        let (n, p) = s
            .split_once('/')
            .ok_or_else(|| err(" has no '/<protocol>'".into()))?;
        let number: u16 = n
            .parse()
            .map_err(|_| err(format!(": {n:?} is not a number from 0 to 65535")))?;
        let protocol = match p {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "?" | "" | "unknown" => Protocol::Unknown,
            other => {
                return Err(err(format!(
                    ": unknown protocol {other:?} (expected tcp, udp, icmp or ?)"
                )))
            }
        };
        Ok(Port { number, protocol })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_by_type_tag_first() {
        let mut v = [
            Value::string("a"),
            Value::Count(5),
            Value::None,
            Value::Integer(-1),
            Value::Boolean(true),
        ];
        v.sort();
        let types: Vec<_> = v.iter().map(Value::value_type).collect();
        assert_eq!(
            types,
            [
                ValueType::None,
                ValueType::Boolean,
                ValueType::Count,
                ValueType::Integer,
                ValueType::String
            ]
        );
    }

    #[test]
    fn nan_is_equal_to_itself_so_sets_stay_sets() {
        let s: BTreeSet<Value> = [Value::Real(f64::NAN), Value::Real(f64::NAN)].into();
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn subnet_masks_host_bits_and_keeps_family() {
        let s: Subnet = "10.1.2.3/8".parse().unwrap();
        assert_eq!(s.to_string(), "10.0.0.0/8");
        assert_eq!(s.raw_len(), 104);
        let s6: Subnet = "2001:db8::ff/32".parse().unwrap();
        assert_eq!(s6.to_string(), "2001:db8::/32");
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
    }

    #[test]
    fn addresses_are_v4_mapped() {
        let a: Address = "192.168.1.1".parse().unwrap();
        assert!(a.is_v4());
        assert_eq!(a.to_string(), "192.168.1.1");
        let b: Address = "2001:db8::".parse().unwrap();
        assert!(!b.is_v4());
        assert_eq!(b.to_string(), "2001:db8::");
    }

    #[test]
    fn ports_parse_and_print() {
        let p: Port = "8080/tcp".parse().unwrap();
        assert_eq!(p.to_string(), "8080/tcp");
        assert_eq!("0/?".parse::<Port>().unwrap().to_string(), "0/?");
        assert!("70000/tcp".parse::<Port>().is_err());
        assert_eq!(
            "80/sctp".parse::<Port>().unwrap_err().to_string(),
            r#"port "80/sctp": unknown protocol "sctp" (expected tcp, udp, icmp or ?)"#
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Subnet>().unwrap_err().to_string(),
            r#"subnet "10.0.0.0/33": prefix length 33 is too long (max 32)"#
        );
    }
}
