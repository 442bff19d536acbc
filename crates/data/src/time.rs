//! Text forms of timestamps (ISO 8601, UTC) and timespans (`15ms`, `-2h`).
//!
//! Output follows Broker: timestamps as `YYYY-MM-DDThh:mm:ss.fff` in UTC with no offset (3, 6 or 9
//! fraction digits, see [`TimestampPrecision`]; extra digits are truncated toward the past),
//! timespans as an integer in the coarsest of `ns`/`us`/`ms`/`s` that loses nothing, `0s` for zero.
//! Input is lenient: 0 to 9 fraction digits, `Z` or a `±hh[:]mm` offset (none means UTC); timespans
//! with a sign, the units `ns us ms s min h d`, and a decimal fraction (rounded to the nearest ns).

use std::fmt::Write;
use std::time::Duration;

const NS_PER_SEC: i64 = 1_000_000_000;

/// Wall-clock time, one type per unit across the workspace: nanoseconds as Broker's timestamps
/// are (`i64`, what store expiries and values carry), milliseconds as `u64` (what every daemon's
/// records, heartbeats, deadlines and samples carry), seconds as `u64` (token expiries). The
/// shells read these; the cores take the time as an input.
pub fn now_ns() -> i64 {
    since_epoch().as_nanos() as i64
}

/// Unix milliseconds now (see [`now_ns`]).
pub fn now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// Unix seconds now (see [`now_ns`]).
pub fn now_secs() -> u64 {
    since_epoch().as_secs()
}

/// Unix milliseconds as a Broker timestamp (nanoseconds), saturating far in the future.
pub fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// How many fraction digits a timestamp is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampPrecision {
    /// 3 digits, Broker's own output and what every client parses.
    #[default]
    Millis,
    /// 6 digits (Python's `fromisoformat` accepts these before 3.11 too).
    Micros,
    /// 9 digits: lossless.
    Nanos,
}

/// Why a time, a span, a duration or a precision was not read (the caller is told, in these
/// words, with the input quoted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("timestamp {input:?}: {why} (expected YYYY-MM-DDThh:mm:ss[.fff][Z|+hh:mm])")]
    Timestamp { input: String, why: String },
    #[error("timespan {input:?}: {why} (expected e.g. 15ms, -2s, 1.5h; units ns us ms s min h d)")]
    Timespan { input: String, why: String },
    #[error("{input:?} is not a duration such as 500ms, 2s, 1.5m, 3h, 2d, 1w or plain seconds")]
    Duration { input: String },
    #[error("unknown timestamp precision {input:?} (expected ms, us or ns)")]
    Precision { input: String },
}

impl From<TimeError> for String {
    fn from(e: TimeError) -> String {
        e.to_string()
    }
}

impl std::str::FromStr for TimestampPrecision {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, TimeError> {
        match s {
            "ms" | "millis" => Ok(TimestampPrecision::Millis),
            "us" | "micros" => Ok(TimestampPrecision::Micros),
            "ns" | "nanos" => Ok(TimestampPrecision::Nanos),
            _ => Err(TimeError::Precision {
                input: s.to_string(),
            }),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes a timestamp (ns since the epoch) in Broker's form.
pub fn write_timestamp(out: &mut String, ns: i64, precision: TimestampPrecision) {
    let secs = ns.div_euclid(NS_PER_SEC);
    let frac = ns.rem_euclid(NS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    let _ = match precision {
        TimestampPrecision::Millis => write!(out, ".{:03}", frac / 1_000_000),
        TimestampPrecision::Micros => write!(out, ".{:06}", frac / 1_000),
        TimestampPrecision::Nanos => write!(out, ".{frac:09}"),
    };
}

pub fn format_timestamp(ns: i64, precision: TimestampPrecision) -> String {
    let mut s = String::with_capacity(29);
    write_timestamp(&mut s, ns, precision);
    s
}

/// Parses `YYYY-MM-DDThh:mm:ss[.f{1,9}][Z|±hh[:]mm]` into ns since the epoch.
pub fn parse_timestamp(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    let err = |what: &str| TimeError::Timestamp {
        input: s.to_string(),
        why: what.to_string(),
    };
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4).ok_or_else(|| err("bad year"))?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(err("bad date separator"));
    }
    let month = num(5, 2).ok_or_else(|| err("bad month"))?;
    let day = num(8, 2).ok_or_else(|| err("bad day"))?;
    if !matches!(b.get(10), Some(b'T') | Some(b't') | Some(b' ')) {
        return Err(err("missing 'T' between date and time"));
    }
    let hour = num(11, 2).ok_or_else(|| err("bad hour"))?;
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return Err(err("bad time separator"));
    }
    let minute = num(14, 2).ok_or_else(|| err("bad minute"))?;
    let second = num(17, 2).ok_or_else(|| err("bad second"))?;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(err("month out of range")),
    };
    if day < 1 || day > days_in_month {
        return Err(err("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(err("time of day out of range"));
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return Err(err("the fraction must have 1 to 9 digits"));
        }
        let f: i64 = s[start..i].parse().map_err(|_| err("bad fraction"))?;
        frac_ns = f * 10i64.pow(9 - digits as u32);
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            let oh = num(i + 1, 2).ok_or_else(|| err("bad offset hours"))?;
            let rest = &b[i + 3..];
            let om = match rest {
                [] => 0,
                [b':', ..] if rest.len() == 3 => {
                    num(i + 4, 2).ok_or_else(|| err("bad offset minutes"))?
                }
                _ if rest.len() == 2 => num(i + 3, 2).ok_or_else(|| err("bad offset minutes"))?,
                _ => return Err(err("bad offset")),
            };
            if oh > 23 || om > 59 {
                return Err(err("offset out of range"));
            }
            sign * (oh * 3600 + om * 60)
        }
        Some(_) => return Err(err("unexpected characters after the time")),
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    secs.checked_mul(NS_PER_SEC)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(|| err("out of range"))
}

const UNITS: [(&str, i64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", NS_PER_SEC),
    ("min", 60 * NS_PER_SEC),
    ("h", 3600 * NS_PER_SEC),
    ("d", 86_400 * NS_PER_SEC),
];

/// Writes a timespan in the coarsest of `ns`/`us`/`ms`/`s` that loses no precision.
pub fn write_timespan(out: &mut String, ns: i64) {
    if ns == 0 {
        out.push_str("0s");
        return;
    }
    let (value, unit) = UNITS[..4]
        .iter()
        .rev()
        .find(|(_, per)| ns % per == 0)
        .map(|(u, per)| (ns / per, *u))
        .unwrap_or((ns, "ns"));
    let _ = write!(out, "{value}{unit}");
}

pub fn format_timespan(ns: i64) -> String {
    let mut s = String::new();
    write_timespan(&mut s, ns);
    s
}

/// Parses `[+-]<digits>[.<digits>]<unit>` with unit one of `ns us ms s min h d`.
pub fn parse_timespan(s: &str) -> Result<i64, TimeError> {
    let err = |what: &str| TimeError::Timespan {
        input: s.to_string(),
        why: what.to_string(),
    };
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit"))?;
    let (number, unit) = body.split_at(num_end);
    let per = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, per)| *per as i128)
        .ok_or_else(|| err(&format!("unknown unit {unit:?}")))?;
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() || frac_part.contains('.') {
        return Err(err("bad number"));
    }
    let int: i128 = int_part.parse().map_err(|_| err("number out of range"))?;
    let mut total = int.checked_mul(per).ok_or_else(|| err("out of range"))?;
    if !frac_part.is_empty() {
        // Exact decimal arithmetic: frac * per / 10^digits, rounded half up. Digits past 30
        // cannot change a nanosecond count, so they are ignored.
        let digits = &frac_part[..frac_part.len().min(30)];
        let frac: i128 = digits.parse().map_err(|_| err("bad fraction"))?;
        let scale = 10i128.pow(digits.len() as u32);
        total += (frac * per + scale / 2) / scale;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).map_err(|_| err("out of range"))
}

/// The one grammar of durations in flags, config files and query parameters: a non-negative
/// decimal number and a unit (`ns us ms s m min h d w`), or a plain number of seconds:
/// `500ms`, `2s`, `1.5m`, `3h`, `2d`, `1w`, `30`. Exact to the nanosecond (Broker's timespan
/// arithmetic), without a sign.
pub fn parse_duration(s: &str) -> Result<Duration, TimeError> {
    let t = s.trim();
    let err = || TimeError::Duration {
        input: s.to_string(),
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let (unit, weeks) = match unit.trim() {
        "" => ("s", false),
        "m" => ("min", false),
        "w" => ("d", true),
        u => (u, false),
    };
    let ns = parse_timespan(&format!("{number}{unit}")).map_err(|_| err())?;
    let ns = if weeks {
        ns.checked_mul(7).ok_or_else(err)?
    } else {
        ns
    };
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_one_grammar() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1.5m"), Duration::from_secs(90));
        assert_eq!(ok("1min"), Duration::from_secs(60));
        assert_eq!(ok("3h"), Duration::from_secs(3 * 3600));
        assert_eq!(ok("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(ok("1w"), Duration::from_secs(7 * 86_400));
        assert_eq!(ok("7"), Duration::from_secs(7));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok(" 5s "), Duration::from_secs(5));
        for bad in [
            "",
            "x",
            "3 parsecs",
            "-2s",
            "+2s",
            "1.2.3s",
            "99999999999999d",
            "s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e, TimeError::Duration { input: bad.into() }, "{bad:?}: {e}");
        }
    }

    #[test]
    fn timestamps_round_trip_and_truncate() {
        let ns = parse_timestamp("2022-04-10T07:00:00.123456789Z").unwrap();
        assert_eq!(
            format_timestamp(ns, TimestampPrecision::Millis),
            "2022-04-10T07:00:00.123"
        );
        assert_eq!(
            format_timestamp(ns, TimestampPrecision::Micros),
            "2022-04-10T07:00:00.123456"
        );
        assert_eq!(
            format_timestamp(ns, TimestampPrecision::Nanos),
            "2022-04-10T07:00:00.123456789"
        );
        assert_eq!(
            format_timestamp(0, TimestampPrecision::Millis),
            "1970-01-01T00:00:00.000"
        );
        // Before the epoch, truncation goes toward the past.
        assert_eq!(
            format_timestamp(-1, TimestampPrecision::Millis),
            "1969-12-31T23:59:59.999"
        );
    }

    #[test]
    fn timestamp_offsets() {
        let utc = parse_timestamp("2024-01-01T00:00:00").unwrap();
        assert_eq!(parse_timestamp("2024-01-01T01:30:00+01:30").unwrap(), utc);
        assert_eq!(parse_timestamp("2023-12-31T22:00:00-0200").unwrap(), utc);
        assert_eq!(parse_timestamp("2024-01-01T00:00:00Z").unwrap(), utc);
        assert!(parse_timestamp("2024-02-30T00:00:00").is_err());
        assert!(parse_timestamp("2024-01-01T00:00:00.1234567890").is_err());
        assert!(parse_timestamp("2024-01-01").is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(format_timespan(1_500_000_000), "1500ms");
        assert_eq!(format_timespan(15_000_000), "15ms");
        assert_eq!(format_timespan(42 * NS_PER_SEC), "42s");
        assert_eq!(format_timespan(0), "0s");
        assert_eq!(format_timespan(-7), "-7ns");
        assert_eq!(parse_timespan("2d").unwrap(), 2 * 86_400 * NS_PER_SEC);
        assert_eq!(parse_timespan("-3min").unwrap(), -180 * NS_PER_SEC);
        assert_eq!(parse_timespan("1.5s").unwrap(), 1_500_000_000);
        // zeekpy sends float nanoseconds.
        assert_eq!(parse_timespan("1500000000.0ns").unwrap(), 1_500_000_000);
        assert_eq!(
            parse_timespan("15").unwrap_err(),
            TimeError::Timespan {
                input: "15".into(),
                why: "missing unit".into()
            }
        );
        assert!(parse_timespan("15y")
            .unwrap_err()
            .to_string()
            .contains("\"y\""));
        assert!(parse_timespan("99999999999d").is_err());
    }
}
