//! The backup file: a consistent copy of one store, self-checking.
//!
//! ```text
//! "YARDBKUP"  u32 LE format version (1)
//! header:     varint length + binary value [store name, created (timestamp), entries (count)]
//! entries:    0x01, varint length + binary value [key, value, expiry (timestamp or none)]
//! end:        0x00, u64 LE entry count, u32 LE CRC-32 of every byte before it
//! ```
//!
//! [`read`] refuses anything that is not exactly such a file: another file type, a newer format,
//! a file cut short, or one whose bytes changed, each with its own message.

use yard_data::{binary, Value};

use crate::ops::Entry;

const MAGIC: &[u8; 8] = b"YARDBKUP";
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("not a yard store backup (it starts with {0})")]
    Foreign(String),
    #[error("backup format version {0} is newer than this yard understands ({VERSION})")]
    Version(u32),
    #[error("truncated backup: {0}")]
    Truncated(String),
    #[error("corrupt backup: {0}")]
    Corrupt(String),
}

/// A backup read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub store: String,
    /// When it was taken (ns since the epoch).
    pub created: i64,
    pub entries: Vec<(Value, Entry)>,
}

/// Builds a backup file in memory.
pub struct Writer {
    out: Vec<u8>,
    count: u64,
}

impl Writer {
    pub fn new(store: &str, created: i64, entries: u64) -> Writer {
        let mut out = Vec::with_capacity(1 << 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let header = Value::Vector(vec![
            Value::String(store.to_string()),
            Value::Timestamp(created),
            Value::Count(entries),
        ]);
        put_value(&mut out, &header);
        Writer { out, count: 0 }
    }

    pub fn push(&mut self, key: &Value, e: &Entry) {
        self.out.push(1);
        let v = Value::Vector(vec![
            key.clone(),
            e.value.clone(),
            e.expiry.map_or(Value::None, Value::Timestamp),
        ]);
        put_value(&mut self.out, &v);
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(0);
        self.out.extend_from_slice(&self.count.to_le_bytes());
        let crc = crc32(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    let bytes = binary::encode(v);
    binary::put_varint(out, bytes.len() as u64);
    out.extend_from_slice(&bytes);
}

fn shown(bytes: &[u8]) -> String {
    let head: String = bytes
        .iter()
        .take(8)
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    if bytes.is_empty() {
        "nothing: the file is empty".into()
    } else {
        format!("\"{head}\"")
    }
}

/// Reads and checks a whole backup file.
pub fn read(bytes: &[u8]) -> Result<Backup, BackupError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        if bytes.len() < 12 && MAGIC.starts_with(&bytes[..bytes.len().min(8)]) && !bytes.is_empty()
        {
            return Err(BackupError::Truncated(format!(
                "only {} bytes",
                bytes.len()
            )));
        }
        return Err(BackupError::Foreign(shown(bytes)));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version > VERSION || version == 0 {
        return Err(BackupError::Version(version));
    }
    let mut pos = 12;
    let header = take_value(bytes, &mut pos, "the header")?;
    let (store, created, expected) = match &header {
        Value::Vector(v) => match v.as_slice() {
            [Value::String(s), Value::Timestamp(t), Value::Count(n)] => (s.clone(), *t, *n),
            _ => {
                return Err(BackupError::Corrupt(
                    "the header has the wrong shape".into(),
                ))
            }
        },
        _ => return Err(BackupError::Corrupt("the header is not a vector".into())),
    };
    let mut entries = Vec::with_capacity(expected.min(1 << 20) as usize);
    loop {
        let Some(&tag) = bytes.get(pos) else {
            return Err(BackupError::Truncated(format!(
                "it ends after {} of {expected} entries, before the end marker",
                entries.len()
            )));
        };
        pos += 1;
        match tag {
            1 => {
                let what = format!("entry {}", entries.len() + 1);
                let v = take_value(bytes, &mut pos, &what)?;
                let Value::Vector(parts) = v else {
                    return Err(BackupError::Corrupt(format!("{what} is not a vector")));
                };
                let mut parts = parts.into_iter();
                let (Some(key), Some(value), Some(expiry), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(BackupError::Corrupt(format!("{what} has the wrong shape")));
                };
                let expiry = match expiry {
                    Value::None => None,
                    Value::Timestamp(t) => Some(t),
                    _ => {
                        return Err(BackupError::Corrupt(format!(
                            "{what}: the expiry is not a timestamp"
                        )))
                    }
                };
                entries.push((key, Entry { value, expiry }));
            }
            0 => break,
            other => {
                return Err(BackupError::Corrupt(format!(
                    "unexpected byte 0x{other:02x} at offset {}",
                    pos - 1
                )))
            }
        }
    }
    let trailer = bytes.get(pos..pos + 12).ok_or_else(|| {
        BackupError::Truncated(format!(
            "the end marker is cut short after {} entries",
            entries.len()
        ))
    })?;
    let count = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(trailer[8..].try_into().expect("4 bytes"));
    if bytes.len() > pos + 12 {
        return Err(BackupError::Corrupt(format!(
            "{} unexpected bytes after the end marker",
            bytes.len() - pos - 12
        )));
    }
    if crc32(&bytes[..pos + 8]) != crc {
        return Err(BackupError::Corrupt(
            "checksum mismatch: the file was altered or damaged".into(),
        ));
    }
    if count != entries.len() as u64 || count != expected {
        return Err(BackupError::Corrupt(format!(
            "it holds {} entries but says {count} (header: {expected})",
            entries.len()
        )));
    }
    Ok(Backup {
        store,
        created,
        entries,
    })
}

fn take_value(bytes: &[u8], pos: &mut usize, what: &str) -> Result<Value, BackupError> {
    let rest = &bytes[*pos..];
    let (len, n) = binary::read_varint(rest)
        .map_err(|_| BackupError::Truncated(format!("{what} is cut short")))?;
    let start = *pos + n;
    let end = start
        .checked_add(usize::try_from(len).unwrap_or(usize::MAX))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| BackupError::Truncated(format!("{what} is cut short")))?;
    let v = binary::decode(&bytes[start..end])
        .map_err(|e| BackupError::Corrupt(format!("{what}: {e}")))?;
    *pos = end;
    Ok(v)
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new("users", 5, 2);
        w.push(
            &Value::String("a".into()),
            &Entry {
                value: Value::Count(1),
                expiry: None,
            },
        );
        w.push(
            &Value::Count(7),
            &Entry {
                value: Value::Vector(vec![]),
                expiry: Some(99),
            },
        );
        w.finish()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_backup_reads_back_and_every_damage_is_named() {
        let bytes = sample();
        let b = read(&bytes).unwrap();
        assert_eq!(b.store, "users");
        assert_eq!(b.entries.len(), 2);
        assert_eq!(b.entries[1].1.expiry, Some(99));
        // Every truncation is refused, as truncated or (header cut) corrupt, never accepted.
        for cut in 0..bytes.len() {
            let err = read(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, BackupError::Truncated(_) | BackupError::Foreign(_)),
                "cut at {cut}: {err}"
            );
        }
        // Every flipped byte is refused.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(read(&b).is_err(), "flip at {i} accepted");
        }
        let err = read(b"SQLite format 3\0 and more bytes").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a yard store backup (it starts with \"SQLite\\x20f\")"
        );
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert_eq!(read(&newer).unwrap_err(), BackupError::Version(9));
    }
}
