//! Percent-decoding of what a caller puts in a URL, one rule for every listener: `%XX`
//! becomes its byte, an escape that is not two hex digits is kept as written, and the bytes
//! are read as UTF-8 (invalid sequences become U+FFFD). Routes are classified on decoded
//! segments, so a listener that decoded differently could be reached by an alias.

/// A path segment: `+` stays `+`.
pub fn decode_segment(s: &str) -> String {
    decode(s, false)
}

/// A query value (`application/x-www-form-urlencoded`): `+` is a space.
pub fn decode_query_value(s: &str) -> String {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_broken_ones_stay() {
        assert_eq!(decode_query_value("%2Fvar%2Flib%20x+y"), "/var/lib x y");
        assert_eq!(decode_segment("a+b%2Fc"), "a+b/c");
        assert_eq!(decode_segment("%73lave(1)"), "slave(1)");
        for kept in ["100%", "%zz", "%4", "%", "a%g1"] {
            assert_eq!(decode_segment(kept), kept);
            assert_eq!(decode_query_value(kept), kept);
        }
        assert_eq!(decode_segment("%41%42"), "AB");
        assert_eq!(decode_segment("%ff"), "\u{fffd}");
    }
}
