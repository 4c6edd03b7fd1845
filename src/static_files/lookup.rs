//! Finding the file a safe request path names, on a blocking thread (every call here is a
//! filesystem syscall, so `serve` runs it under `spawn_blocking`, never on the runtime).
//!
//! The path is canonicalized and must still lie under the (canonical) root: that is what
//! stops a symlink inside the root from leading outside it, whatever the link says. The
//! file is then opened once and `fstat`ed, so its type and size come from the file actually
//! opened and a FIFO or device node is never read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

use super::security::SafePath;

/// Files up to this size are read whole in the same blocking call that opens them:
/// one trip to the blocking pool per request instead of two.
pub const SMALL_FILE: u64 = 64 * 1024;

pub enum Found {
    File(OpenFile),
    /// `/docs` names a directory: answered 301 to `/docs/`.
    DirectoryWithoutSlash,
    /// Exists, but resolves outside the root or is not a regular file: 404, never fallback.
    Forbidden,
    /// Nothing here: `fallback` decides.
    Nothing,
}

pub struct OpenFile {
    /// The name the client asked for (or the index file's), which decides the type.
    pub name: PathBuf,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub content: Content,
}

pub enum Content {
    /// Not read: HEAD, or a method that only needs to know the file exists.
    None,
    Small(Bytes),
    Stream(File),
}

/// Resolves `safe` under `root`, trying `index` names for a directory.
pub fn lookup(root: &Path, safe: &SafePath, index: &[String], read: bool) -> io::Result<Found> {
    let requested = root.join(&*safe.relative);
    match open_under(root, &requested, read)? {
        Opened::Dir if !safe.trailing_slash && !safe.relative.is_empty() => {
            Ok(Found::DirectoryWithoutSlash)
        }
        Opened::Dir => find_index(root, &requested, index, read),
        Opened::File(f) => Ok(Found::File(f)),
        Opened::Outside => Ok(Found::Forbidden),
        Opened::Missing => Ok(Found::Nothing),
    }
}

fn find_index(root: &Path, dir: &Path, index: &[String], read: bool) -> io::Result<Found> {
    for name in index {
        match open_under(root, &dir.join(name), read)? {
            Opened::File(f) => return Ok(Found::File(f)),
            Opened::Outside => return Ok(Found::Forbidden),
            Opened::Dir | Opened::Missing => {}
        }
    }
    Ok(Found::Nothing)
}

enum Opened {
    File(OpenFile),
    Dir,
    Outside,
    Missing,
}

fn open_under(root: &Path, path: &Path, read: bool) -> io::Result<Opened> {
    let canonical = match fs::canonicalize(path) {
        Ok(c) => c,
        Err(e) if is_missing(&e) => return Ok(Opened::Missing),
        Err(e) => return Err(e),
    };
    if !canonical.starts_with(root) {
        return Ok(Opened::Outside);
    }
    // O_NONBLOCK: opening a FIFO someone left in the web root must not hang a thread.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&canonical)
    {
        Ok(f) => f,
        Err(e) if is_missing(&e) => return Ok(Opened::Missing),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Ok(Opened::Dir);
    }
    if !meta.is_file() {
        return Ok(Opened::Outside);
    }
    let content = match read {
        false => Content::None,
        true if meta.len() <= SMALL_FILE => Content::Small(read_small(file, meta.len())?),
        true => Content::Stream(file),
    };
    Ok(Opened::File(OpenFile {
        name: path.to_owned(),
        len: match &content {
            Content::Small(bytes) => bytes.len() as u64,
            _ => meta.len(),
        },
        modified: meta.modified().ok(),
        content,
    }))
}

fn read_small(file: File, len: u64) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename
    ) || e.raw_os_error() == Some(libc::ENAMETOOLONG)
        || e.raw_os_error() == Some(libc::ELOOP)
}
