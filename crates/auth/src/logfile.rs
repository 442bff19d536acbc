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
    let mut out = last_bytes(path, max_bytes)?;
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
}
