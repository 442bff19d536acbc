//! The native peering wire protocol between endpoints (no I/O): preamble, frames, decoder.
//!
//! A connection starts with each side sending its 6-byte [`Preamble`] at once, without waiting:
//! the magic `YARD` and the range of protocol versions it speaks. Each side reads the other's and
//! picks the highest common version ([`Preamble::negotiate`]); a wrong magic or no common version
//! is known after 6 bytes, so a stray HTTP client or an incompatible build fails fast with a
//! clear error instead of hanging. Then both sides exchange [`Frame`]s, each a 4-byte big-endian
//! length and that many bytes: one kind byte and a body. Values inside frames use the binary
//! encoding of [`yard_data::binary`] (without its version byte: the preamble fixed it).
//!
//! [`FrameDecoder`] takes bytes as they arrive and yields whole frames; it refuses any frame longer
//! than its limit before buffering it.

use yard_data::binary::{self, put_varint, read_varint, BinaryError, VarintError};
use yard_data::Value;

/// The four bytes every connection starts with.
pub const MAGIC: [u8; 4] = *b"YARD";
/// The protocol versions this build speaks.
pub const MIN_VERSION: u8 = 2;
pub const MAX_VERSION: u8 = 2;
/// The default limit on one frame's length.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the peer is not a yard endpoint: it sent {got:02x?} ({text:?}) where \"YARD\" was expected")]
    WrongMagic { got: [u8; 4], text: String },
    #[error("no common protocol version: the peer speaks {peer_min}..={peer_max}, this build {MIN_VERSION}..={MAX_VERSION}")]
    Incompatible { peer_min: u8, peer_max: u8 },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("bad {kind} frame: {reason}")]
    Malformed { kind: &'static str, reason: String },
}

impl WireError {
    /// The Broker error-code name to report this as.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::WrongMagic { .. } => "wrong_magic_number",
            WireError::Incompatible { .. } => "peer_incompatible",
            _ => "invalid_message",
        }
    }
}

/// The first six bytes each side sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub min_version: u8,
    pub max_version: u8,
}

impl Preamble {
    pub const LEN: usize = 6;

    /// This build's preamble.
    pub fn ours() -> Preamble {
        Preamble {
            min_version: MIN_VERSION,
            max_version: MAX_VERSION,
        }
    }

    pub fn encode(&self) -> [u8; 6] {
        let [a, b, c, d] = MAGIC;
        [a, b, c, d, self.min_version, self.max_version]
    }

    pub fn decode(bytes: &[u8; 6]) -> Result<Preamble, WireError> {
        let got: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if got != MAGIC {
            let text = got
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            return Err(WireError::WrongMagic { got, text });
        }
        Ok(Preamble {
            min_version: bytes[4],
            max_version: bytes[5],
        })
    }

    /// The highest version both sides speak.
    pub fn negotiate(&self, peer: &Preamble) -> Result<u8, WireError> {
        let high = self.max_version.min(peer.max_version);
        let low = self.min_version.max(peer.min_version);
        if high >= low && peer.min_version <= peer.max_version {
            Ok(high)
        } else {
            Err(WireError::Incompatible {
                peer_min: peer.min_version,
                peer_max: peer.max_version,
            })
        }
    }
}

/// Lower-case hex, as handshake nonces and proofs travel.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads [`hex`] back; `None` for anything else (odd length, other characters, over 128 bytes).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One frame of the peering protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Introduces the sender: its endpoint id, the address it listens on for peers (empty when
    /// it does not listen) and a fresh random nonce (hex) that the other side's proof covers.
    /// No secret travels in it.
    Hello {
        endpoint: String,
        listen: String,
        nonce: String,
    },
    /// Proves the sender holds the mesh key: an HMAC over both ids, both nonces and its role
    /// (see the private `peer` module), hex.
    Proof {
        mac: String,
    },
    /// Ends the connection on purpose, with a Broker error-code name and a reason.
    Bye {
        code: String,
        reason: String,
    },
    /// A publication: its origin endpoint, the origin's sequence number, the hops it may still
    /// take, the topic, the reply address of a request (empty for a plain publication) and the
    /// value.
    Data {
        origin: String,
        seq: u64,
        ttl: u8,
        topic: String,
        reply_to: String,
        value: Value,
    },
    /// What one endpoint wants and whom it peers with, flooded through the mesh; a higher
    /// `version` from the same origin replaces a lower one.
    Advert {
        origin: String,
        version: u64,
        prefixes: Vec<String>,
        peers: Vec<String>,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
}

const HELLO: u8 = 1;
const BYE: u8 = 2;
const DATA: u8 = 3;
const ADVERT: u8 = 4;
const PING: u8 = 5;
const PONG: u8 = 6;
const PROOF: u8 = 7;

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_strs(out: &mut Vec<u8>, items: &[String]) {
    put_varint(out, items.len() as u64);
    items.iter().for_each(|s| put_str(out, s));
}

impl Frame {
    fn kind_name(kind: u8) -> &'static str {
        match kind {
            HELLO => "hello",
            BYE => "bye",
            DATA => "data",
            ADVERT => "advert",
            PING => "ping",
            PONG => "pong",
            PROOF => "proof",
            _ => "unknown",
        }
    }

    /// Appends the frame, length prefix included, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Frame::Hello {
                endpoint,
                listen,
                nonce,
            } => {
                out.push(HELLO);
                put_str(out, endpoint);
                put_str(out, listen);
                put_str(out, nonce);
            }
            Frame::Proof { mac } => {
                out.push(PROOF);
                put_str(out, mac);
            }
            Frame::Bye { code, reason } => {
                out.push(BYE);
                put_str(out, code);
                put_str(out, reason);
            }
            Frame::Data {
                origin,
                seq,
                ttl,
                topic,
                reply_to,
                value,
            } => {
                out.truncate(start);
                encode_data(out, origin, *seq, *ttl, topic, reply_to, value);
                return;
            }
            Frame::Advert {
                origin,
                version,
                prefixes,
                peers,
            } => {
                out.push(ADVERT);
                put_str(out, origin);
                put_varint(out, *version);
                put_strs(out, prefixes);
                put_strs(out, peers);
            }
            Frame::Ping { nonce } => {
                out.push(PING);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Frame::Pong { nonce } => {
                out.push(PONG);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes one frame body (kind byte and body, no length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, WireError> {
        let (&kind, rest) = body.split_first().ok_or(WireError::Empty)?;
        let name = Frame::kind_name(kind);
        let mut r = Reader {
            buf: rest,
            pos: 0,
            kind: name,
        };
        let frame = match kind {
            HELLO => Frame::Hello {
                endpoint: r.str()?,
                listen: r.str()?,
                nonce: r.str()?,
            },
            PROOF => Frame::Proof { mac: r.str()? },
            BYE => Frame::Bye {
                code: r.str()?,
                reason: r.str()?,
            },
            DATA => return decode_data_ref(body).map(DataRef::into_frame),
            ADVERT => Frame::Advert {
                origin: r.str()?,
                version: r.varint()?,
                prefixes: r.strs()?,
                peers: r.strs()?,
            },
            PING => Frame::Ping { nonce: r.u64()? },
            PONG => Frame::Pong { nonce: r.u64()? },
            other => return Err(WireError::UnknownKind(other)),
        };
        if r.pos != r.buf.len() {
            return Err(r.bad(format!("{} trailing bytes", r.buf.len() - r.pos)));
        }
        Ok(frame)
    }
}

/// Appends a data frame, length prefix included, without building a [`Frame`] first.
pub fn encode_data(
    out: &mut Vec<u8>,
    origin: &str,
    seq: u64,
    ttl: u8,
    topic: &str,
    reply_to: &str,
    value: &Value,
) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(DATA);
    put_str(out, origin);
    put_varint(out, seq);
    out.push(ttl);
    put_str(out, topic);
    put_str(out, reply_to);
    binary::encode_into(out, value);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn bad(&self, reason: String) -> WireError {
        WireError::Malformed {
            kind: self.kind,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(self.bad(format!("truncated at byte {}", self.pos)));
        }
        self.pos += n;
        Ok(&self.buf[self.pos - n..self.pos])
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        match read_varint(&self.buf[self.pos..]) {
            Ok((n, used)) => {
                self.pos += used;
                Ok(n)
            }
            Err(VarintError::Truncated) => {
                Err(self.bad(format!("truncated at byte {}", self.buf.len())))
            }
            Err(VarintError::TooLong) => Err(self.bad("varint longer than 64 bits".into())),
        }
    }

    fn str(&mut self) -> Result<String, WireError> {
        self.str_ref().map(str::to_string)
    }

    fn str_ref(&mut self) -> Result<&'a str, WireError> {
        let n = self.varint()?;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.buf.len() - self.pos);
        let n = n.ok_or_else(|| self.bad("string longer than the frame".into()))?;
        let at = self.pos;
        let buf: &'a [u8] = self.buf;
        self.pos += n;
        std::str::from_utf8(&buf[at..at + n])
            .map_err(|_| self.bad(format!("string at byte {at} is not UTF-8")))
    }

    fn strs(&mut self) -> Result<Vec<String>, WireError> {
        let n = self.varint()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(self.bad(format!("list of {n} strings is longer than the frame")));
        }
        (0..n).map(|_| self.str()).collect()
    }
}

/// A data frame decoded without copying its strings.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRef<'a> {
    pub origin: &'a str,
    pub seq: u64,
    pub ttl: u8,
    pub topic: &'a str,
    pub reply_to: &'a str,
    pub value: Value,
}

impl DataRef<'_> {
    /// The owned frame.
    pub fn into_frame(self) -> Frame {
        Frame::Data {
            origin: self.origin.into(),
            seq: self.seq,
            ttl: self.ttl,
            topic: self.topic.into(),
            reply_to: self.reply_to.into(),
            value: self.value,
        }
    }
}

/// A frame from [`FrameDecoder::next_ref`]: data frames borrowed, the rest owned.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameRef<'a> {
    Data(DataRef<'a>),
    Other(Frame),
}

fn decode_data_ref(body: &[u8]) -> Result<DataRef<'_>, WireError> {
    let mut r = Reader {
        buf: &body[1..],
        pos: 0,
        kind: "data",
    };
    let origin = r.str_ref()?;
    let seq = r.varint()?;
    let ttl = r.byte()?;
    let topic = r.str_ref()?;
    let reply_to = r.str_ref()?;
    let (value, used) =
        binary::decode_prefix(&r.buf[r.pos..]).map_err(|e: BinaryError| r.bad(e.to_string()))?;
    r.pos += used;
    if r.pos != r.buf.len() {
        return Err(r.bad(format!("{} trailing bytes", r.buf.len() - r.pos)));
    }
    Ok(DataRef {
        origin,
        seq,
        ttl,
        topic,
        reply_to,
        value,
    })
}

/// Splits a byte stream into frame bodies; refuses a frame over `max` bytes before buffering it.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    start: usize,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's body, `Ok(None)` when more bytes are needed.
    fn next_body(&mut self) -> Result<Option<std::ops::Range<usize>>, WireError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
        if len > self.max {
            return Err(WireError::TooLong { len, max: self.max });
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let body = self.start + 4..self.start + 4 + len;
        self.start += 4 + len;
        Ok(Some(body))
    }

    /// Like [`FrameDecoder::next_frame`], with data frames' strings borrowed from the buffer.
    pub fn next_ref(&mut self) -> Result<Option<FrameRef<'_>>, WireError> {
        let Some(body) = self.next_body()? else {
            return Ok(None);
        };
        let body = &self.buf[body];
        match body.first() {
            Some(&DATA) => decode_data_ref(body).map(|d| Some(FrameRef::Data(d))),
            _ => Frame::decode(body).map(|f| Some(FrameRef::Other(f))),
        }
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed. After an error the stream is
    /// unusable: the connection should be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let Some(body) = self.next_body()? else {
            return Ok(None);
        };
        Frame::decode(&self.buf[body]).map(Some)
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Frame> {
        vec![
            Frame::Hello {
                endpoint: "a-b".into(),
                listen: "127.0.0.1:9999".into(),
                nonce: "00ff".into(),
            },
            Frame::Proof {
                mac: "ab".repeat(32),
            },
            Frame::Bye {
                code: "redundant_connection".into(),
                reason: "already peered".into(),
            },
            Frame::Data {
                origin: "e1".into(),
                seq: 1 << 40,
                ttl: 16,
                topic: "/t/é".into(),
                reply_to: "<$>/reply/e1/5".into(),
                value: Value::Vector(vec![Value::Count(1), Value::string("x")]),
            },
            Frame::Advert {
                origin: "e1".into(),
                version: 7,
                prefixes: vec!["/a".into(), "".into()],
                peers: vec!["e2".into()],
            },
            Frame::Ping { nonce: u64::MAX },
            Frame::Pong { nonce: 0 },
        ]
    }

    #[test]
    fn every_kind_round_trips_through_the_decoder_byte_by_byte() {
        let frames = all_kinds();
        let mut stream = Vec::new();
        frames.iter().for_each(|f| f.encode_into(&mut stream));
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for b in &stream {
            dec.push(std::slice::from_ref(b));
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(dec.buffered(), 0);
        // The borrowing decoder agrees.
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        dec.push(&stream);
        let mut n = 0;
        while let Some(f) = dec.next_ref().unwrap() {
            let owned = match f {
                FrameRef::Other(f) => f,
                FrameRef::Data(d) => d.into_frame(),
            };
            assert_eq!(owned, frames[n]);
            n += 1;
        }
        assert_eq!(n, frames.len());
    }

    #[test]
    fn preamble_fails_fast_on_strangers_and_old_versions() {
        let ours = Preamble::ours();
        assert_eq!(Preamble::decode(&ours.encode()).unwrap(), ours);
        let e = Preamble::decode(b"GET / ").unwrap_err();
        assert_eq!(e.code(), "wrong_magic_number");
        assert!(e.to_string().contains("\"GET \""), "{e}");
        assert_eq!(
            ours.negotiate(&Preamble {
                min_version: 1,
                max_version: 9
            }),
            Ok(2)
        );
        let e = ours
            .negotiate(&Preamble {
                min_version: 3,
                max_version: 4,
            })
            .unwrap_err();
        assert_eq!(e.code(), "peer_incompatible");
        assert!(e.to_string().contains("3..=4"));
        // Version 1 sent the shared token in its hello: no longer spoken.
        let e = ours
            .negotiate(&Preamble {
                min_version: 1,
                max_version: 1,
            })
            .unwrap_err();
        assert_eq!(e.code(), "peer_incompatible");
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&(1_000_000u32).to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(WireError::TooLong {
                len: 1_000_000,
                max: 1024
            })
        );

        assert_eq!(Frame::decode(&[]), Err(WireError::Empty));
        assert_eq!(Frame::decode(&[99]), Err(WireError::UnknownKind(99)));
        let e = Frame::decode(&[HELLO, 200, 1]).unwrap_err();
        assert!(e.to_string().starts_with("bad hello frame"), "{e}");
        let e = Frame::decode(&[PING, 1, 2]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut ping = Frame::Ping { nonce: 1 }.encode();
        ping.push(0);
        assert!(Frame::decode(&ping[4..])
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        let e = Frame::decode(&[ADVERT, 1, b'a', 0, 0xff, 0xff, 0x03]).unwrap_err();
        assert!(e.to_string().contains("longer than the frame"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2048,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(11),
            ..Default::default()
        })]
        #[test]
        fn the_decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let mut dec = FrameDecoder::new(4096);
            dec.push(&bytes);
            while let Ok(Some(_)) = dec.next_frame() {}
        }
    }
}
