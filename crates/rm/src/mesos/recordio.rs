//! RecordIO as Mesos streams it: `<decimal byte length>\n<record>`, no separator. Records are
//! compact JSON with every non-ASCII character escaped (`\uXXXX`), because clients split the
//! stream on lines and slice decoded text by the byte count.

use serde_json::Value;

/// JSON text with only ASCII characters.
pub fn ascii_json(v: &Value) -> String {
    let text = serde_json::to_string(v).expect("JSON values serialize");
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut buf = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            // Non-ASCII only occurs inside strings, where \u escapes mean the same.
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// One record, framed.
pub fn record(v: &Value) -> Vec<u8> {
    let body = ascii_json(v);
    let mut out = format!("{}\n", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_ascii_records() {
        let v = json!({"type":"ERROR","error":{"message":"café 🚀\nline"}});
        let r = String::from_utf8(record(&v)).unwrap();
        let (len, body) = r.split_once('\n').unwrap();
        assert!(body.is_ascii());
        assert_eq!(len.parse::<usize>().unwrap(), body.len());
        assert!(!body.contains('\n'), "no raw newline inside a record");
        assert_eq!(serde_json::from_str::<Value>(body).unwrap(), v);
        assert_eq!(
            String::from_utf8(record(&json!({"type":"HEARTBEAT"}))).unwrap(),
            "20\n{\"type\":\"HEARTBEAT\"}"
        );
    }
}
