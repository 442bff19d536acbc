//! The one size-rotated file of every log the system writes (supervised nodes' output, remote
//! log streams, the audit log): `NAME.log`, then `NAME.log.1` … `NAME.log.K` (oldest dropped).
//! Writes are appended as they come; a write that would take a non-empty file past the limit
//! rotates it first.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// The most bytes one file holds.
    pub max_bytes: u64,
    /// How many rotated files are kept besides the current one.
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    mode: u32,
}

fn append(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
}

impl RotatingFile {
    /// Opens (or creates, 0644 before the umask) the current file at `path`.
    pub fn open(path: PathBuf, rotation: Rotation) -> std::io::Result<RotatingFile> {
        RotatingFile::open_with_mode(path, rotation, 0o644)
    }

    /// [`RotatingFile::open`], its files created with `mode` (0600 for the audit log).
    pub fn open_with_mode(
        path: PathBuf,
        rotation: Rotation,
        mode: u32,
    ) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = append(&path, mode)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file,
            size,
            rotation,
            mode,
        })
    }

    /// Bytes in the current file.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.rotation.keep;
        if keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(numbered(&self.path, keep));
        for i in (1..keep).rev() {
            let from = numbered(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = append(&self.path, self.mode)?;
        self.size = 0;
        Ok(())
    }
}

/// The path of rotated file `i` (`PATH.i`; 0 is `path` itself).
pub fn numbered(path: &Path, i: usize) -> PathBuf {
    if i == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The last `max_bytes` of a log, reaching into the newest rotated file when the current one is
/// shorter.
pub fn tail(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    Ok(follow(path, None, max_bytes)?.bytes)
}

/// A place in a log: the file (its inode) and the byte offset after what was read. Rotation
/// renames a file, so an offset stays true of the file it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPos {
    pub file: u64,
    pub offset: u64,
}

impl LogPos {
    /// `FILE:OFFSET`, the cursor an HTTP caller carries between reads.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.file, self.offset)
    }

    pub fn decode(s: &str) -> Option<LogPos> {
        let (file, offset) = s.split_once(':')?;
        Some(LogPos {
            file: file.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

/// What [`follow`] read.
#[derive(Debug, PartialEq, Eq)]
pub struct LogChunk {
    pub bytes: Vec<u8>,
    /// Where the next read carries on.
    pub next: LogPos,
    /// The bytes continue the read that ended at the given position. False when there was no
    /// position, or it could not be continued (the file rotated twice, was truncated, or more than
    /// `max_bytes` were written since): the bytes are then the log's tail, to show afresh.
    pub continued: bool,
}

/// The bytes written after `from` (at most `max_bytes`, reaching across one rotation), or the
/// last `max_bytes` when `from` is `None` or cannot be continued.
pub fn follow(path: &Path, from: Option<LogPos>, max_bytes: u64) -> std::io::Result<LogChunk> {
    use std::os::unix::fs::MetadataExt;
    let (cur, len) = match std::fs::metadata(path) {
        Ok(m) => (m.ino(), m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0),
        Err(e) => return Err(e),
    };
    let next = LogPos {
        file: cur,
        offset: len,
    };
    let Some(from) = from else {
        return Ok(LogChunk {
            bytes: tail_to(path, len, max_bytes)?,
            next,
            continued: false,
        });
    };
    // Before the current file, the rest of the one rotated away, when it is the one named.
    let mut bytes = Vec::new();
    let start = if from.file == cur && from.offset <= len {
        from.offset
    } else {
        let older = numbered(path, 1);
        match std::fs::metadata(&older) {
            Ok(m) if m.ino() == from.file && from.offset <= m.len() => {
                bytes = range(&older, from.offset, m.len())?;
                0
            }
            _ => u64::MAX,
        }
    };
    if start == u64::MAX || bytes.len() as u64 + (len - start) > max_bytes {
        return Ok(LogChunk {
            bytes: tail_to(path, len, max_bytes)?,
            next,
            continued: false,
        });
    }
    bytes.extend(range(path, start, len)?);
    Ok(LogChunk {
        bytes,
        next,
        continued: true,
    })
}

/// The last `max_bytes` before `len` of the current file, with the rotated one before it.
fn tail_to(path: &Path, len: u64, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut out = range(path, len.saturating_sub(max_bytes), len)?;
    if (out.len() as u64) < max_bytes {
        let older = numbered(path, 1);
        if older.exists() {
            let mut before = last_bytes(&older, max_bytes - out.len() as u64)?;
            before.extend_from_slice(&out);
            out = before;
        }
    }
    Ok(out)
}

/// Bytes `start..end` of a file (fewer when it is shorter; none when it is missing).
fn range(path: &Path, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(start))?;
    let mut out = Vec::new();
    f.take(end.saturating_sub(start)).read_to_end(&mut out)?;
    Ok(out)
}

fn last_bytes(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

impl std::fmt::Debug for RotatingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingFile").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_at_the_limit_and_keep_k() {
        let tmp = yard_testkit::TempDir::new("rot");
        let dir = tmp.join("d");
        let path = dir.join("n.log");
        let mut f = RotatingFile::open(
            path.clone(),
            Rotation {
                max_bytes: 10,
                keep: 2,
            },
        )
        .unwrap();
        for chunk in ["aaaaaa", "bbbbbb", "cccccc", "dddddd"] {
            f.write(chunk.as_bytes()).unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), "dddddd");
        assert_eq!(read(numbered(&path, 1)), "cccccc");
        assert_eq!(read(numbered(&path, 2)), "bbbbbb");
        assert!(
            !numbered(&path, 3).exists(),
            "only two rotated files are kept"
        );
        assert_eq!(tail(&path, 8).unwrap(), b"ccdddddd");
        assert_eq!(tail(&path, 3).unwrap(), b"ddd");
    }

    #[test]
    fn a_follower_reads_what_was_written_since_across_one_rotation() {
        let tmp = yard_testkit::TempDir::new("follow");
        let path = tmp.join("n.log");
        let rotation = Rotation {
            max_bytes: 10,
            keep: 2,
        };
        let mut f = RotatingFile::open(path.clone(), rotation).unwrap();
        f.write(b"aaaa").unwrap();
        let first = follow(&path, None, 100).unwrap();
        assert_eq!(
            (first.bytes.as_slice(), first.continued),
            (&b"aaaa"[..], false)
        );
        assert_eq!(first.next.offset, 4);

        let none = follow(&path, Some(first.next), 100).unwrap();
        assert_eq!(
            (none.bytes.len(), none.continued, none.next),
            (0, true, first.next)
        );

        f.write(b"bbbb").unwrap();
        // More than max_bytes since the position: the last max_bytes, marked as not continuing.
        let big = follow(&path, Some(first.next), 3).unwrap();
        assert_eq!((big.bytes.as_slice(), big.continued), (&b"bbb"[..], false));

        f.write(b"cccc").unwrap(); // rotates: aaaabbbb is NAME.log.1
        let across = follow(&path, Some(first.next), 100).unwrap();
        assert_eq!(
            across.bytes, b"bbbbcccc",
            "the rest of the rotated file, then the new one"
        );
        assert!(across.continued);
        assert_ne!(across.next.file, first.next.file);
        assert_eq!(across.next.offset, 4);

        // Two rotations later the position names a file two steps back: the tail, afresh.
        f.write(b"dddddddd").unwrap();
        f.write(b"eeeeeeee").unwrap();
        let lost = follow(&path, Some(across.next), 100).unwrap();
        assert!(!lost.continued);
        assert_eq!(lost.bytes, b"ddddddddeeeeeeee");
    }

    #[test]
    fn a_truncated_log_is_read_afresh_and_positions_round_trip() {
        let tmp = yard_testkit::TempDir::new("trunc");
        let path = tmp.join("n.log");
        let mut f = RotatingFile::open(
            path.clone(),
            Rotation {
                max_bytes: 6,
                keep: 0,
            },
        )
        .unwrap();
        f.write(b"abcdef").unwrap();
        let at = follow(&path, None, 100).unwrap().next;
        f.write(b"xy").unwrap(); // keep 0: truncates in place, the same inode
        let again = follow(&path, Some(at), 100).unwrap();
        assert_eq!(
            (again.bytes.as_slice(), again.continued),
            (&b"xy"[..], false)
        );
        assert_eq!(LogPos::decode(&at.encode()), Some(at));
        for bad in ["", "1", "x:1", "1:-2", "1:2:3"] {
            assert_eq!(LogPos::decode(bad), None, "{bad:?}");
        }
        let missing = follow(&tmp.join("none.log"), Some(at), 10).unwrap();
        assert_eq!((missing.bytes.len(), missing.continued), (0, false));
    }
}
