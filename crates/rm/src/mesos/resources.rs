//! Resources as Mesos names them: scalars (`cpus`, `mem` and `disk` in MB, whole `gpus`, any other
//! name), ranges (`ports`) and sets. Scalars are kept in fixed-point thousandths, as Mesos does
//! (three decimal digits), so that sums and differences are exact.
//!
//! Text syntax (agent flags): `cpus:4;mem:8192;disk:10240;ports:[31000-32000];bugs:{a,b}`. The
//! JSON form is Mesos's `Resource` array. Only unreserved resources exist here: a role other than
//! `*` in the text syntax is refused, and roles in JSON (a task's resources carry its role) are
//! not reservations and are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{json, Value};

/// Thousandths per unit of a scalar.
pub const MILLI: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource {0:?}: expected NAME:VALUE, such as cpus:4 or ports:[31000-32000]")]
    Syntax(String),
    #[error("resource name {0:?} is not valid (letters, digits, '_', '-', '.' and '/')")]
    Name(String),
    #[error("resource {name}: {value:?} is not a non-negative number")]
    Scalar { name: String, value: String },
    #[error("resource {name}: {value:?} is not a range list such as [31000-32000,33000-33100]")]
    Range { name: String, value: String },
    #[error("resource {name}: reserved for role {role:?}; only unreserved resources (role *) are supported")]
    Reserved { name: String, role: String },
    #[error("resource gpus: {0} is not a whole number")]
    Gpus(String),
    #[error("resource {name} is given as both {first} and {second}")]
    Kind {
        name: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("resource JSON: {0}")]
    Json(String),
    #[error("{need} is more than the {available} available")]
    Exceeds { need: String, available: String },
}

/// A set of inclusive ranges, sorted, disjoint and merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn new(mut v: Vec<(u64, u64)>) -> Ranges {
        v.retain(|(a, b)| a <= b);
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ranges(out)
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many values the ranges hold.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn union(&self, other: &Ranges) -> Ranges {
        Ranges::new(self.0.iter().chain(&other.0).copied().collect())
    }

    pub fn contains(&self, other: &Ranges) -> bool {
        other
            .0
            .iter()
            .all(|(a, b)| self.0.iter().any(|(x, y)| x <= a && b <= y))
    }

    /// The values of `self` not in `other`.
    pub fn minus(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(mut a, b) in &self.0 {
            for &(x, y) in &other.0 {
                if y < a || x > b {
                    continue;
                }
                if x > a {
                    out.push((a, x - 1));
                }
                if y >= b {
                    a = b.saturating_add(1);
                    break;
                }
                a = y + 1;
            }
            if a <= b {
                out.push((a, b));
            }
        }
        Ranges::new(out)
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}-{b}")?;
        }
        f.write_str("]")
    }
}

/// Unreserved resources of an agent, an offer or a task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// Thousandths; zero entries are not kept.
    scalars: BTreeMap<String, i64>,
    ranges: BTreeMap<String, Ranges>,
    sets: BTreeMap<String, BTreeSet<String>>,
}

fn check_name(name: &str) -> Result<(), ResourceError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ResourceError::Name(name.to_string()))
    }
}

fn to_milli(name: &str, v: f64, text: &str) -> Result<i64, ResourceError> {
    if !v.is_finite() || !(0.0..=1e15).contains(&v) {
        return Err(ResourceError::Scalar {
            name: name.to_string(),
            value: text.to_string(),
        });
    }
    if name == "gpus" && v.fract() != 0.0 {
        return Err(ResourceError::Gpus(text.to_string()));
    }
    Ok((v * MILLI as f64).round() as i64)
}

/// A JSON number, or a string holding one (Mesos accepts both, and `"Infinity"`).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Resources {
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Parses the text syntax, or a JSON `Resource` array when the text starts with `[`.
    pub fn parse(text: &str) -> Result<Resources, ResourceError> {
        let text = text.trim();
        if text.starts_with('[') {
            let v: Value =
                serde_json::from_str(text).map_err(|e| ResourceError::Json(e.to_string()))?;
            return Resources::from_json(&v);
        }
        let mut out = Resources::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (head, value) = part
                .split_once(':')
                .ok_or_else(|| ResourceError::Syntax(part.to_string()))?;
            let (name, value) = (head.trim(), value.trim());
            let name = match name.split_once('(') {
                Some((n, role)) => {
                    let role = role
                        .strip_suffix(')')
                        .ok_or_else(|| ResourceError::Syntax(part.to_string()))?;
                    if role != "*" {
                        return Err(ResourceError::Reserved {
                            name: n.to_string(),
                            role: role.to_string(),
                        });
                    }
                    n.trim()
                }
                None => name,
            };
            check_name(name)?;
            let mut one = Resources::new();
            if let Some(inner) = value.strip_prefix('[') {
                let inner = inner
                    .strip_suffix(']')
                    .ok_or_else(|| ResourceError::Range {
                        name: name.to_string(),
                        value: value.to_string(),
                    })?;
                one.ranges
                    .insert(name.to_string(), parse_ranges(name, inner)?);
            } else if let Some(inner) = value.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| ResourceError::Syntax(part.to_string()))?;
                let items = inner
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                one.sets.insert(name.to_string(), items);
            } else {
                let v: f64 = value.parse().map_err(|_| ResourceError::Scalar {
                    name: name.to_string(),
                    value: value.to_string(),
                })?;
                one.set_scalar(name, to_milli(name, v, value)?);
            }
            out.check_kind(&one)?;
            out.add(&one);
        }
        Ok(out)
    }

    /// Reads a Mesos `Resource` array (lenient, as Mesos is: numbers may be strings, unknown keys
    /// are ignored).
    pub fn from_json(v: &Value) -> Result<Resources, ResourceError> {
        let items = v
            .as_array()
            .ok_or_else(|| ResourceError::Json("expected an array of Resource objects".into()))?;
        let mut out = Resources::new();
        for (i, r) in items.iter().enumerate() {
            let name = r
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ResourceError::Json(format!("resource {i} has no \"name\"")))?;
            check_name(name)?;
            let kind = r.get("type").and_then(Value::as_str).unwrap_or("");
            let mut one = Resources::new();
            if kind == "RANGES" || (kind.is_empty() && r.get("ranges").is_some()) {
                let list = r
                    .pointer("/ranges/range")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        ResourceError::Json(format!("{name}: RANGES without ranges.range"))
                    })?;
                let mut v = Vec::new();
                for x in list {
                    let b = x.get("begin").and_then(number);
                    let e = x.get("end").and_then(number);
                    match (b, e) {
                        (Some(b), Some(e)) if b >= 0.0 && e >= b => v.push((b as u64, e as u64)),
                        _ => {
                            return Err(ResourceError::Range {
                                name: name.to_string(),
                                value: x.to_string(),
                            })
                        }
                    }
                }
                one.ranges.insert(name.to_string(), Ranges::new(v));
            } else if kind == "SET" || (kind.is_empty() && r.get("set").is_some()) {
                let items = r
                    .pointer("/set/item")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                one.sets.insert(name.to_string(), items);
            } else {
                let raw = r.pointer("/scalar/value").ok_or_else(|| {
                    ResourceError::Json(format!("{name}: SCALAR without scalar.value"))
                })?;
                let v = number(raw).ok_or_else(|| ResourceError::Scalar {
                    name: name.to_string(),
                    value: raw.to_string(),
                })?;
                one.set_scalar(name, to_milli(name, v, &raw.to_string())?);
            }
            out.check_kind(&one)?;
            out.add(&one);
        }
        Ok(out)
    }

    fn kind_of(&self, name: &str) -> Option<&'static str> {
        if self.scalars.contains_key(name) {
            Some("a scalar")
        } else if self.ranges.contains_key(name) {
            Some("ranges")
        } else if self.sets.contains_key(name) {
            Some("a set")
        } else {
            None
        }
    }

    fn check_kind(&self, one: &Resources) -> Result<(), ResourceError> {
        for name in one.names() {
            if let (Some(a), Some(b)) = (self.kind_of(name), one.kind_of(name)) {
                if a != b {
                    return Err(ResourceError::Kind {
                        name: name.to_string(),
                        first: a,
                        second: b,
                    });
                }
            }
        }
        Ok(())
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.scalars
            .keys()
            .chain(self.ranges.keys())
            .chain(self.sets.keys())
            .map(String::as_str)
    }

    /// Sets a scalar, in thousandths.
    pub fn set_scalar(&mut self, name: &str, milli: i64) {
        if milli > 0 {
            self.scalars.insert(name.to_string(), milli);
        } else {
            self.scalars.remove(name);
        }
    }

    pub fn set_ranges(&mut self, name: &str, r: Ranges) {
        if r.is_empty() {
            self.ranges.remove(name);
        } else {
            self.ranges.insert(name.to_string(), r);
        }
    }

    /// A scalar in thousandths (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalars.get(name).copied().unwrap_or(0)
    }

    pub fn ranges(&self, name: &str) -> Option<&Ranges> {
        self.ranges.get(name)
    }

    pub fn cpus(&self) -> f64 {
        self.scalar("cpus") as f64 / MILLI as f64
    }

    /// Megabytes.
    pub fn mem(&self) -> f64 {
        self.scalar("mem") as f64 / MILLI as f64
    }

    pub fn is_empty(&self) -> bool {
        self.scalars.is_empty()
            && self.ranges.values().all(Ranges::is_empty)
            && self.sets.values().all(BTreeSet::is_empty)
    }

    pub fn add(&mut self, other: &Resources) {
        for (k, v) in &other.scalars {
            *self.scalars.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &other.ranges {
            let merged = self
                .ranges
                .get(k)
                .map(|r| r.union(v))
                .unwrap_or_else(|| v.clone());
            self.set_ranges(k, merged);
        }
        for (k, v) in &other.sets {
            self.sets
                .entry(k.clone())
                .or_default()
                .extend(v.iter().cloned());
        }
    }

    /// True when every part of `other` is in `self`.
    pub fn contains(&self, other: &Resources) -> bool {
        other.scalars.iter().all(|(k, v)| self.scalar(k) >= *v)
            && other
                .ranges
                .iter()
                .all(|(k, v)| v.is_empty() || self.ranges.get(k).is_some_and(|r| r.contains(v)))
            && other
                .sets
                .iter()
                .all(|(k, v)| v.is_empty() || self.sets.get(k).is_some_and(|s| v.is_subset(s)))
    }

    /// Removes `other`; refused (and `self` unchanged) unless `self` contains it.
    pub fn subtract(&mut self, other: &Resources) -> Result<(), ResourceError> {
        if !self.contains(other) {
            return Err(ResourceError::Exceeds {
                need: other.to_string(),
                available: self.to_string(),
            });
        }
        for (k, v) in &other.scalars {
            let left = self.scalar(k) - v;
            self.set_scalar(k, left);
        }
        for (k, v) in &other.ranges {
            if let Some(r) = self.ranges.get(k) {
                let left = r.minus(v);
                self.set_ranges(k, left);
            }
        }
        for (k, v) in &other.sets {
            if let Some(s) = self.sets.get_mut(k) {
                s.retain(|x| !v.contains(x));
                if s.is_empty() {
                    self.sets.remove(k);
                }
            }
        }
        Ok(())
    }

    /// The Mesos `Resource` array, unreserved; `allocation_role` adds `allocation_info` (offers).
    pub fn to_json(&self, allocation_role: Option<&str>) -> Value {
        let mut out = Vec::new();
        let finish = |mut r: Value| {
            r["role"] = json!("*");
            if let Some(role) = allocation_role {
                r["allocation_info"] = json!({ "role": role });
            }
            r
        };
        for (k, v) in &self.scalars {
            out.push(finish(
                json!({"name": k, "type": "SCALAR", "scalar": {"value": *v as f64 / MILLI as f64}}),
            ));
        }
        for (k, v) in &self.ranges {
            let range: Vec<Value> =
                v.0.iter()
                    .map(|(a, b)| json!({"begin": a, "end": b}))
                    .collect();
            out.push(finish(
                json!({"name": k, "type": "RANGES", "ranges": {"range": range}}),
            ));
        }
        for (k, v) in &self.sets {
            out.push(finish(
                json!({"name": k, "type": "SET", "set": {"item": v}}),
            ));
        }
        Value::Array(out)
    }

    /// The summary object of Mesos's legacy endpoints: `cpus`, `gpus`, `mem` and `disk` always,
    /// ranges and sets as strings.
    pub fn summary(&self) -> crate::mesos::legacy::Summary {
        let scalar = |k: &str| self.scalar(k) as f64 / MILLI as f64;
        let mut other = std::collections::BTreeMap::new();
        for (k, v) in &self.scalars {
            if !["cpus", "gpus", "mem", "disk"].contains(&k.as_str()) {
                other.insert(k.clone(), json!(*v as f64 / MILLI as f64));
            }
        }
        for (k, v) in &self.ranges {
            other.insert(k.clone(), json!(v.to_string()));
        }
        for (k, v) in &self.sets {
            let items: Vec<&str> = v.iter().map(String::as_str).collect();
            other.insert(k.clone(), json!(format!("{{{}}}", items.join(","))));
        }
        crate::mesos::legacy::Summary {
            cpus: scalar("cpus"),
            gpus: scalar("gpus"),
            mem: scalar("mem"),
            disk: scalar("disk"),
            other,
        }
    }
}

fn parse_ranges(name: &str, inner: &str) -> Result<Ranges, ResourceError> {
    let bad = || ResourceError::Range {
        name: name.to_string(),
        value: format!("[{inner}]"),
    };
    let mut v = Vec::new();
    for piece in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = piece.split_once('-').unwrap_or((piece, piece));
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        v.push((a, b));
    }
    Ok(Ranges::new(v))
}

fn fmt_scalar(milli: i64) -> String {
    if milli % MILLI == 0 {
        (milli / MILLI).to_string()
    } else {
        format!("{}", milli as f64 / MILLI as f64)
    }
}

/// The text syntax, parseable by [`Resources::parse`].
impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (k, v) in &self.scalars {
            parts.push(format!("{k}:{}", fmt_scalar(*v)));
        }
        for (k, v) in &self.ranges {
            let r: Vec<String> = v.0.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            parts.push(format!("{k}:[{}]", r.join(",")));
        }
        for (k, v) in &self.sets {
            let items: Vec<&str> = v.iter().map(String::as_str).collect();
            parts.push(format!("{k}:{{{}}}", items.join(",")));
        }
        if parts.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&parts.join(";"))
        }
    }
}

/// Agent attributes (`rack:a;zone:1`): text, or scalar when the value is a number.
pub fn parse_attributes(text: &str) -> Result<BTreeMap<String, String>, ResourceError> {
    let mut out = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| ResourceError::Syntax(part.to_string()))?;
        check_name(k.trim())?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Attributes as Mesos's `Attribute` array.
pub fn attributes_json(attrs: &BTreeMap<String, String>) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| match v.parse::<f64>() {
                Ok(n) if n.is_finite() => {
                    json!({"name": k, "type": "SCALAR", "scalar": {"value": n}})
                }
                _ => json!({"name": k, "type": "TEXT", "text": {"value": v}}),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_mesos_syntax() {
        let r = Resources::parse("cpus:4;mem:8192.5;ports:[31000-32000,33000-33001];bugs:{a,b}")
            .unwrap();
        assert_eq!(r.scalar("cpus"), 4000);
        assert_eq!(r.scalar("mem"), 8_192_500);
        assert_eq!(r.ranges("ports").unwrap().count(), 1003);
        assert_eq!(
            r.to_string(),
            "cpus:4;mem:8192.5;ports:[31000-32000,33000-33001];bugs:{a,b}"
        );
        assert_eq!(Resources::parse(&r.to_string()).unwrap(), r);
        assert_eq!(Resources::parse("cpus(*):2").unwrap().scalar("cpus"), 2000);
    }

    #[test]
    fn refuses_garbage_precisely() {
        let cases = [
            ("cpus", "expected NAME:VALUE"),
            ("cpus:-1", "not a non-negative number"),
            ("cpus:four", "not a non-negative number"),
            ("ports:[9-3]", "not a range list"),
            ("ports:[1-2", "not a range list"),
            ("cpus(web):2", "reserved for role \"web\""),
            ("gpus:1.5", "not a whole number"),
            ("cpus:1;cpus:[1-2]", "both a scalar and ranges"),
            ("c pus:1", "not valid"),
        ];
        for (text, want) in cases {
            let e = Resources::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn json_round_trip_and_lenient_numbers() {
        let r = Resources::parse("cpus:0.5;mem:32;ports:[31000-31009]").unwrap();
        assert_eq!(Resources::from_json(&r.to_json(Some("*"))).unwrap(), r);
        let v = json!([{"name":"cpus","type":"SCALAR","scalar":{"value":"0.25"},"role":"web","slave_id":1},
                       {"name":"mem","scalar":{"value":64}}]);
        let r = Resources::from_json(&v).unwrap();
        assert_eq!((r.scalar("cpus"), r.scalar("mem")), (250, 64_000));
        let e = Resources::from_json(&json!([{"type":"SCALAR"}])).unwrap_err();
        assert!(e.to_string().contains("no \"name\""));
    }

    #[test]
    fn arithmetic_is_exact_and_checked() {
        let mut a = Resources::parse("cpus:1;mem:100;ports:[10-20]").unwrap();
        let b = Resources::parse("cpus:0.1;mem:30;ports:[12-13,20-20]").unwrap();
        for _ in 0..10 {
            assert!(a.contains(&Resources::parse("cpus:0.1").unwrap()));
        }
        a.subtract(&b).unwrap();
        assert_eq!(a.to_string(), "cpus:0.9;mem:70;ports:[10-11,14-19]");
        let before = a.clone();
        assert!(a.subtract(&Resources::parse("mem:71").unwrap()).is_err());
        assert_eq!(a, before, "a refused subtraction changes nothing");
        a.add(&b);
        assert_eq!(a, Resources::parse("cpus:1;mem:100;ports:[10-20]").unwrap());
        assert_eq!(
            serde_json::to_value(a.summary()).unwrap(),
            json!({"cpus":1.0,"gpus":0.0,"mem":100.0,"disk":0.0,"ports":"[10-20]"})
        );
    }

    #[test]
    fn ranges_minus() {
        let r = Ranges::new(vec![(1, 10), (20, 30)]);
        assert_eq!(
            r.minus(&Ranges::new(vec![(5, 25)])).ranges(),
            &[(1, 4), (26, 30)]
        );
        assert_eq!(r.minus(&r).ranges(), &[] as &[(u64, u64)]);
        assert_eq!(
            r.minus(&Ranges::new(vec![(1, 1), (30, 30)])).ranges(),
            &[(2, 10), (20, 29)]
        );
    }
}
