//! The readable literal syntax of the CLI: `yard pub` parses it, `yard sub` prints it.
//!
//! | form | type |
//! |---|---|
//! | `none` | none |
//! | `true`, `false` | boolean |
//! | `42` | count |
//! | `-7`, `+7` | integer (a sign makes an integer; integers always print with one) |
//! | `3.5`, `-1e3`, `nan`, `inf`, `-inf` | real |
//! | `"text"` (escapes `\" \\ \n \r \t \uXXXX`) | string |
//! | `10.0.0.1`, `2001:db8::1` | address |
//! | `10.0.0.0/8` | subnet |
//! | `80/tcp`, `53/udp`, `8/icmp`, `0/?` | port |
//! | `2024-01-01T00:00:00Z` (fraction and offset optional) | timestamp |
//! | `15ms`, `-2s`, `1.5h`, `3d` (units `ns us ms s min h d`) | timespan |
//! | `Conn::LOG` (a bare identifier), `enum("any name")` | enum-value |
//! | `[1, 2]` | vector |
//! | `{1, 2}`, `{}` | set |
//! | `{"a": 1, "b": 2}`, `{:}` | table |
//! | `ping(1, "x")` | a Zeek event `[1, 1, ["ping", [1, "x"]]]` |
//!
//! Several literals separated by whitespace form a sequence ([`parse_sequence`]). Where a token
//! reads as both an address and an identifier (`A::a`), it is an address; such enum names print as
//! `enum("A::a")`. So an event named `enum` cannot be written in this syntax (use JSON).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};

use crate::json::{write_json_string, write_real};
use crate::time::{self, TimestampPrecision};
use crate::value::{Address, Port, Subnet, Value};
use crate::zeek::Event;

/// A literal that could not be parsed, with the (0-based, in characters) column it went wrong at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralError {
    pub column: usize,
    pub message: String,
}

impl LiteralError {
    /// The message, the input, and a caret under the offending character.
    pub fn render(&self, input: &str) -> String {
        format!(
            "{} (at column {})\n  {input}\n  {}^",
            self.message,
            self.column + 1,
            " ".repeat(self.column)
        )
    }
}

impl fmt::Display for LiteralError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at column {})", self.message, self.column + 1)
    }
}

impl std::error::Error for LiteralError {}

/// Parses exactly one literal.
pub fn parse(input: &str) -> Result<Value, LiteralError> {
    let mut values = parse_sequence(input)?;
    match values.len() {
        1 => Ok(values.pop().expect("one")),
        0 => Err(LiteralError {
            column: 0,
            message: "expected a value, found nothing".into(),
        }),
        _ => Err(LiteralError {
            column: 0,
            message: format!("expected one value, found {}", values.len()),
        }),
    }
}

/// Parses whitespace-separated literals.
pub fn parse_sequence(input: &str) -> Result<Vec<Value>, LiteralError> {
    let mut p = Parser {
        chars: input.char_indices().collect(),
        pos: 0,
        src: input,
    };
    let mut out = Vec::new();
    p.skip_ws();
    while !p.at_end() {
        out.push(p.value(0)?);
        p.skip_ws();
    }
    Ok(out)
}

const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    chars: Vec<(usize, char)>,
    pos: usize,
    src: &'a str,
}

fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}' | '(' | ')' | '"')
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split("::").all(|part| {
            let mut cs = part.chars();
            matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|(_, c)| *c)
    }

    fn err<T>(&self, column: usize, message: impl Into<String>) -> Result<T, LiteralError> {
        Err(LiteralError {
            column,
            message: message.into(),
        })
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, want: char, context: &str) -> Result<(), LiteralError> {
        self.skip_ws();
        match self.peek() {
            Some(c) if c == want => {
                self.pos += 1;
                Ok(())
            }
            Some(c) => self.err(
                self.pos,
                format!("expected '{want}' {context}, found '{c}'"),
            ),
            None => self.err(
                self.pos,
                format!("expected '{want}' {context}, found the end"),
            ),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, LiteralError> {
        if depth > MAX_DEPTH {
            return self.err(self.pos, format!("nested deeper than {MAX_DEPTH}"));
        }
        self.skip_ws();
        match self.peek() {
            None => self.err(self.pos, "expected a value, found the end"),
            Some('"') => self.string().map(Value::String),
            Some('[') => {
                self.pos += 1;
                Ok(Value::Vector(self.list(']', depth)?))
            }
            Some('{') => self.braces(depth),
            Some(c @ (',' | ']' | '}' | ')' | '(')) => {
                self.err(self.pos, format!("expected a value, found '{c}'"))
            }
            Some(_) => self.atom(depth, false),
        }
    }

    /// Comma-separated values up to `close` (already past the opening bracket).
    fn list(&mut self, close: char, depth: usize) -> Result<Vec<Value>, LiteralError> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                Some(c) => {
                    return self.err(self.pos, format!("expected ',' or '{close}', found '{c}'"))
                }
                None => {
                    return self.err(
                        self.pos,
                        format!("expected ',' or '{close}', found the end"),
                    )
                }
            }
        }
    }

    fn braces(&mut self, depth: usize) -> Result<Value, LiteralError> {
        self.pos += 1;
        self.skip_ws();
        match self.peek() {
            Some('}') => {
                self.pos += 1;
                return Ok(Value::Set(BTreeSet::new()));
            }
            Some(':') if self.empty_table_ahead() => {
                self.pos += 1;
                self.expect('}', "to close the empty table {:}")?;
                return Ok(Value::Table(BTreeMap::new()));
            }
            _ => {}
        }
        let first = self.key(depth)?;
        self.skip_ws();
        if self.peek() == Some(':') {
            self.pos += 1;
            let mut table = BTreeMap::new();
            let v = self.value(depth + 1)?;
            table.insert(first, v);
            loop {
                self.skip_ws();
                match self.peek() {
                    Some('}') => {
                        self.pos += 1;
                        return Ok(Value::Table(table));
                    }
                    Some(',') => self.pos += 1,
                    Some(c) => {
                        return self.err(
                            self.pos,
                            format!("expected ',' or '}}' in a table, found '{c}'"),
                        )
                    }
                    None => {
                        return self.err(self.pos, "expected ',' or '}' in a table, found the end")
                    }
                }
                self.skip_ws();
                if self.peek() == Some('}') {
                    continue;
                }
                let k = self.key(depth)?;
                self.expect(':', "between a table key and its value")?;
                let v = self.value(depth + 1)?;
                table.insert(k, v);
            }
        }
        let mut set: BTreeSet<Value> = [first].into();
        match self.peek() {
            Some('}') => {
                self.pos += 1;
                return Ok(Value::Set(set));
            }
            Some(',') => self.pos += 1,
            Some(c) => {
                return self.err(self.pos, format!("expected ',', ':' or '}}', found '{c}'"))
            }
            None => return self.err(self.pos, "expected ',', ':' or '}', found the end"),
        }
        set.extend(self.list('}', depth)?);
        Ok(Value::Set(set))
    }

    /// Whether the input at `pos` is `:` then `}` (whitespace allowed), not a key such as `::/0`.
    fn empty_table_ahead(&self) -> bool {
        let mut rest = self.chars[self.pos + 1..].iter().map(|(_, c)| *c);
        rest.find(|c| !c.is_whitespace()) == Some('}')
    }

    /// A value inside braces, where an atom may be followed directly by the table's ':'.
    fn key(&mut self, depth: usize) -> Result<Value, LiteralError> {
        self.skip_ws();
        match self.peek() {
            Some('"' | '[' | '{') | None => self.value(depth + 1),
            Some(_) => self.atom(depth + 1, true),
        }
    }

    /// `enum("name")`, for enum names that are not plain identifiers (or read as addresses).
    fn explicit_enum(&mut self) -> Result<Value, LiteralError> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() != Some('"') {
            return self.err(
                self.pos,
                "enum(...) takes one string, e.g. enum(\"Conn::LOG\")",
            );
        }
        let name = self.string()?;
        self.expect(')', "to close enum(\"...\")")?;
        Ok(Value::Enum(name))
    }

    fn string(&mut self) -> Result<String, LiteralError> {
        let start = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err(start, "string is not closed: add a '\"'");
            };
            self.pos += 1;
            match c {
                '"' => return Ok(s),
                '\\' => {
                    let esc_at = self.pos - 1;
                    let Some(e) = self.peek() else {
                        return self.err(esc_at, "string is not closed: add a '\"'");
                    };
                    self.pos += 1;
                    match e {
                        '"' => s.push('"'),
                        '\\' => s.push('\\'),
                        '/' => s.push('/'),
                        'n' => s.push('\n'),
                        'r' => s.push('\r'),
                        't' => s.push('\t'),
                        'b' => s.push('\u{8}'),
                        'f' => s.push('\u{c}'),
                        'u' => {
                            let hex: String = self.chars[self.pos..]
                                .iter()
                                .take(4)
                                .map(|(_, c)| *c)
                                .collect();
                            let code = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == 4);
                            match code.and_then(char::from_u32) {
                                Some(ch) => {
                                    s.push(ch);
                                    self.pos += 4;
                                }
                                None => {
                                    return self.err(
                                        esc_at,
                                        "\\u needs 4 hex digits of a Unicode scalar value",
                                    )
                                }
                            }
                        }
                        other => return self.err(esc_at, format!("unknown escape '\\{other}'")),
                    }
                }
                c => s.push(c),
            }
        }
    }

    fn atom(&mut self, depth: usize, in_braces: bool) -> Result<Value, LiteralError> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if !is_delim(c)) {
            self.pos += 1;
        }
        let from = self.chars[start].0;
        let to = self.chars.get(self.pos).map_or(self.src.len(), |(i, _)| *i);
        let mut text = &self.src[from..to];
        // Inside braces a trailing ':' separates a table key from its value, unless it belongs
        // to the atom (an IPv6 address ending in "::" written without a separator).
        if in_braces && text.ends_with(':') && classify(text).is_err() {
            text = &text[..text.len() - 1];
            self.pos -= 1;
        }
        if text == "enum" && self.peek() == Some('(') {
            return self.explicit_enum();
        }
        if self.peek() == Some('(') && is_identifier(text) {
            self.pos += 1;
            let args = self.list(')', depth)?;
            return Ok(Event::new(text, args).to_value());
        }
        classify(text).or_else(|message| self.err(start, message))
    }
}

/// Decides what a bare token is.
fn classify(t: &str) -> Result<Value, String> {
    match t {
        "none" | "nil" => return Ok(Value::None),
        "true" => return Ok(Value::Boolean(true)),
        "false" => return Ok(Value::Boolean(false)),
        "nan" | "NaN" => return Ok(Value::Real(f64::NAN)),
        "inf" | "+inf" => return Ok(Value::Real(f64::INFINITY)),
        "-inf" => return Ok(Value::Real(f64::NEG_INFINITY)),
        _ => {}
    }
    let b = t.as_bytes();
    if b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && t.contains(['T', 't'])
    {
        return time::parse_timestamp(t)
            .map(Value::Timestamp)
            .map_err(String::from);
    }
    if let Some((_, proto)) = t.split_once('/') {
        if matches!(proto, "tcp" | "udp" | "icmp" | "?") {
            return t.parse::<Port>().map(Value::Port).map_err(String::from);
        }
        return t.parse::<Subnet>().map(Value::Subnet).map_err(String::from);
    }
    if let Ok(a) = t.parse::<Address>() {
        return Ok(Value::Address(a));
    }
    let digits = t.trim_start_matches(['+', '-']);
    let signed = digits.len() != t.len();
    if t.len() - digits.len() > 1 {
        return Err(format!("{t:?} has more than one sign"));
    }
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        return if signed {
            t.parse::<i64>()
                .map(Value::Integer)
                .map_err(|_| format!("integer {t} is out of range (64-bit signed)"))
        } else {
            t.parse::<u64>()
                .map(Value::Count)
                .map_err(|_| format!("count {t} is out of range (max 18446744073709551615)"))
        };
    }
    if digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        let unit_at = digits
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(digits.len());
        let unit = &digits[unit_at..];
        if matches!(unit, "ns" | "us" | "ms" | "s" | "min" | "h" | "d") {
            return time::parse_timespan(t)
                .map(Value::Timespan)
                .map_err(String::from);
        }
        if let Ok(r) = t.parse::<f64>() {
            return Ok(Value::Real(r));
        }
        return Err(format!(
            "{t:?} is not a number, timespan (units ns us ms s min h d), address, subnet or port"
        ));
    }
    if is_identifier(t) {
        return Ok(Value::Enum(t.to_string()));
    }
    Err(format!(
        "{t:?} is not a literal; strings need double quotes, e.g. '\"{t}\"' (quote them for the shell too)"
    ))
}

/// A value in literal syntax, events shown as `name(args)`. Parsing the output gives the value back
/// (event metadata is shown only by the JSON form).
pub fn format(v: &Value) -> String {
    let mut s = String::new();
    write(&mut s, v);
    s
}

pub fn write(out: &mut String, v: &Value) {
    if let Some(ev) =
        Event::from_value(v).filter(|e| e.metadata.is_none() && is_identifier(&e.name))
    {
        out.push_str(&ev.name);
        write_list(out, '(', ev.args.iter(), ')');
        return;
    }
    match v {
        Value::None => out.push_str("none"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Count(c) => {
            let _ = write!(out, "{c}");
        }
        Value::Integer(i) => {
            let _ = write!(out, "{i:+}");
        }
        Value::Real(r) if r.is_nan() => out.push_str("nan"),
        Value::Real(r) if r.is_infinite() => out.push_str(if *r > 0.0 { "inf" } else { "-inf" }),
        Value::Real(r) => write_real(out, *r),
        Value::String(s) => write_json_string(out, s),
        Value::Enum(s) if is_identifier(s) && matches!(classify(s), Ok(Value::Enum(_))) => {
            out.push_str(s)
        }
        Value::Enum(s) => {
            out.push_str("enum(");
            write_json_string(out, s);
            out.push(')');
        }
        Value::Address(a) => {
            let _ = write!(out, "{a}");
        }
        Value::Subnet(s) => {
            let _ = write!(out, "{s}");
        }
        Value::Port(p) => {
            let _ = write!(out, "{p}");
        }
        Value::Timestamp(ns) => {
            let mut ts = time::format_timestamp(*ns, TimestampPrecision::Nanos);
            while ts.ends_with("000") && !ts.ends_with(".000") {
                ts.truncate(ts.len() - 3);
            }
            out.push_str(&ts);
            out.push('Z');
        }
        Value::Timespan(ns) => time::write_timespan(out, *ns),
        Value::Vector(items) => write_list(out, '[', items.iter(), ']'),
        Value::Set(items) => write_list(out, '{', items.iter(), '}'),
        Value::Table(entries) if entries.is_empty() => out.push_str("{:}"),
        Value::Table(entries) => {
            out.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, k);
                out.push_str(": ");
                write(out, val);
            }
            out.push('}');
        }
    }
}

fn write_list<'a>(
    out: &mut String,
    open: char,
    items: impl Iterator<Item = &'a Value>,
    close: char,
) {
    out.push(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(out, item);
    }
    out.push(close);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ValueType;

    fn ty(s: &str) -> ValueType {
        parse(s)
            .unwrap_or_else(|e| panic!("{}", e.render(s)))
            .value_type()
    }

    #[test]
    fn every_form_in_the_table() {
        assert_eq!(ty("none"), ValueType::None);
        assert_eq!(ty("true"), ValueType::Boolean);
        assert_eq!(ty("42"), ValueType::Count);
        assert_eq!(ty("-7"), ValueType::Integer);
        assert_eq!(ty("+7"), ValueType::Integer);
        assert_eq!(ty("3.5"), ValueType::Real);
        assert_eq!(ty("-1e3"), ValueType::Real);
        assert_eq!(ty("\"text\""), ValueType::String);
        assert_eq!(ty("10.0.0.1"), ValueType::Address);
        assert_eq!(ty("2001:db8::1"), ValueType::Address);
        assert_eq!(ty("10.0.0.0/8"), ValueType::Subnet);
        assert_eq!(ty("80/tcp"), ValueType::Port);
        assert_eq!(ty("0/?"), ValueType::Port);
        assert_eq!(ty("2024-01-01T00:00:00Z"), ValueType::Timestamp);
        assert_eq!(ty("15ms"), ValueType::Timespan);
        assert_eq!(ty("-1.5h"), ValueType::Timespan);
        assert_eq!(ty("Conn::LOG"), ValueType::Enum);
        assert_eq!(ty("[1, 2]"), ValueType::Vector);
        assert_eq!(ty("{1, 2}"), ValueType::Set);
        assert_eq!(ty("{}"), ValueType::Set);
        assert_eq!(ty("{\"a\": 1}"), ValueType::Table);
        assert_eq!(ty("{:}"), ValueType::Table);
        assert_eq!(ty("{1: 2, 2001:db8::: 3}"), ValueType::Table);
        assert_eq!(ty("{::/0: none}"), ValueType::Table);
        assert_eq!(ty("{ : }"), ValueType::Table);
        assert_eq!(ty("A::a"), ValueType::Address);
        assert_eq!(parse("enum(\"A::a\")").unwrap(), Value::Enum("A::a".into()));
        assert_eq!(format(&Value::Enum("A::a".into())), "enum(\"A::a\")");
        assert_eq!(
            format(&Value::Enum("two words".into())),
            "enum(\"two words\")"
        );
        let ev = parse("ping(1, \"x\")").unwrap();
        assert_eq!(Event::from_value(&ev).unwrap().name, "ping");
    }

    #[test]
    fn sequences_and_round_trips() {
        let vals = parse_sequence(" 1  [2, 3] \"a b\" ").unwrap();
        assert_eq!(vals.len(), 3);
        for s in [
            "[none, true, 42, -7, 3.5, \"q\\\"\", 10.0.0.1, 10.0.0.0/8, 80/tcp, 15ms, Conn::LOG]",
            "{\"a\": [1, {2, 3}], \"b\": {:}}",
            "2024-01-01T00:00:00.5Z",
            "ping(+1, [pong(2)])",
        ] {
            let v = parse(s).unwrap();
            assert_eq!(parse(&format(&v)).unwrap(), v, "{s} -> {}", format(&v));
        }
        assert_eq!(format(&parse("+7").unwrap()), "+7");
        assert_eq!(format(&parse("ping(1)").unwrap()), "ping(1)");
    }

    #[test]
    fn errors_point_at_the_character() {
        let e = parse("[1, 2").unwrap_err();
        assert_eq!(e.column, 5);
        let e = parse("[1, hello world]").unwrap_err();
        assert_eq!(e.column, 10, "{e}");
        let e = parse("{1: 2, 3}").unwrap_err();
        assert_eq!(e.column, 8, "{e}");
        let e = parse("\"open").unwrap_err();
        assert!(e.message.contains("not closed"));
        let e = parse("[1, 2 3]").unwrap_err();
        assert_eq!(e.column, 6);
        let e = parse("hello-world").unwrap_err();
        assert!(e.message.contains("double quotes"), "{e}");
        assert!(e.render("hello-world").ends_with("\n  ^"));
        let e = parse("99999999999999999999").unwrap_err();
        assert!(e.message.contains("out of range"));
    }
}
