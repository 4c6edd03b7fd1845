//! Finding the file a safe request path names, on a blocking thread (every call here is a
//! filesystem syscall, so it runs under `spawn_blocking`, never on the runtime; `cache`
//! makes it rare).
//!
//! The path is canonicalized and must still lie under the (canonical) root: that is what
//! stops a symlink inside the root from leading outside it, whatever the link says. The
//! file is then opened once and `fstat`ed, so its type and size come from the file actually
//! opened and a FIFO or device node is never read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderValue;

use super::conditional::{etag, Encoding};
use super::content_type::content_type;
use super::security::SafePath;

/// Files up to this size are read whole in the same blocking call that opens them and
/// kept in the cache; larger ones are streamed.
pub const SMALL_FILE: u64 = 64 * 1024;

#[derive(Clone)]
pub enum Found {
    File(Arc<FileMeta>),
    /// `/docs` names a directory: answered 301 to `/docs/`.
    DirectoryWithoutSlash,
    /// Exists, but resolves outside the root or is not a regular file: 404, never fallback.
    Forbidden,
    /// Nothing here: `fallback` decides.
    Nothing,
}

/// A regular file under the root, with its response headers rendered once.
pub struct FileMeta {
    /// Canonical path, beside which precompressed variants (`.br`, `.gz`) are looked for.
    pub path: PathBuf,
    pub len: u64,
    /// `len`, rendered once for every full response.
    pub content_length: HeaderValue,
    /// Of the file the client asked for, also on its precompressed variants.
    pub content_type: HeaderValue,
    pub modified: Option<SystemTime>,
    pub last_modified: Option<HeaderValue>,
    pub etag: HeaderValue,
    /// The whole content of a small file.
    pub content: Option<Bytes>,
    /// The open file, for a large one: streamed with positioned reads, so the bytes sent
    /// always come from the same file as the length and ETag above, even if a deploy
    /// renames a new version into place meanwhile.
    pub file: Option<Arc<File>>,
    /// Set on a precompressed variant.
    pub encoding: Option<Encoding>,
    /// `app.js.br`, `app.js.gz` beside `app.js`, when `precompressed` is on.
    pub variants: Vec<FileMeta>,
}

impl FileMeta {
    pub fn encodings(&self) -> impl Iterator<Item = Encoding> + '_ {
        self.variants.iter().filter_map(|v| v.encoding)
    }
}

/// What to look for besides the file itself.
pub struct Options<'a> {
    pub index: &'a [String],
    pub precompressed: bool,
}

/// Resolves `safe` under `root`, trying `index` names for a directory.
pub fn lookup(root: &Path, safe: &SafePath, opts: &Options) -> io::Result<Found> {
    let requested = root.join(&*safe.relative);
    match open_under(root, &requested, None)? {
        Opened::Dir if !safe.trailing_slash && !safe.relative.is_empty() => {
            Ok(Found::DirectoryWithoutSlash)
        }
        Opened::Dir => find_index(root, &requested, opts),
        Opened::File(f) => with_variants(root, *f, opts).map(|f| Found::File(Arc::new(f))),
        Opened::Outside => Ok(Found::Forbidden),
        Opened::Missing => Ok(Found::Nothing),
    }
}

fn find_index(root: &Path, dir: &Path, opts: &Options) -> io::Result<Found> {
    for name in opts.index {
        match open_under(root, &dir.join(name), None)? {
            Opened::File(f) => {
                return with_variants(root, *f, opts).map(|f| Found::File(Arc::new(f)))
            }
            Opened::Outside => return Ok(Found::Forbidden),
            Opened::Dir | Opened::Missing => {}
        }
    }
    Ok(Found::Nothing)
}

/// Finds the precompressed siblings of `file`; they answer with the original's type.
fn with_variants(root: &Path, mut file: FileMeta, opts: &Options) -> io::Result<FileMeta> {
    if !opts.precompressed {
        return Ok(file);
    }
    for enc in Encoding::ALL {
        let mut sibling = file.path.clone().into_os_string();
        sibling.push(enc.suffix());
        if let Opened::File(mut variant) = open_under(root, Path::new(&sibling), Some(enc))? {
            variant.content_type = file.content_type.clone();
            file.variants.push(*variant);
        }
    }
    Ok(file)
}

enum Opened {
    File(Box<FileMeta>),
    Dir,
    Outside,
    Missing,
}

fn open_under(root: &Path, path: &Path, encoding: Option<Encoding>) -> io::Result<Opened> {
    let canonical = match fs::canonicalize(path) {
        Ok(c) => c,
        Err(e) if is_missing(&e) => return Ok(Opened::Missing),
        Err(e) => return Err(e),
    };
    if !canonical.starts_with(root) {
        return Ok(Opened::Outside);
    }
    let file = match open_nonblocking(&canonical) {
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
    let (content, file) = match meta.len() <= SMALL_FILE {
        true => (Some(read_small(file, meta.len())?), None),
        false => (None, Some(Arc::new(file))),
    };
    let modified = meta.modified().ok();
    let last_modified =
        modified.and_then(|m| HeaderValue::from_str(&httpdate::fmt_http_date(m)).ok());
    let len = content.as_ref().map_or(meta.len(), |c| c.len() as u64);
    Ok(Opened::File(Box::new(FileMeta {
        content_type: content_type(path),
        len,
        content_length: HeaderValue::from(len),
        path: canonical,
        modified,
        last_modified,
        etag: etag(modified, len, encoding),
        content,
        file,
        encoding,
        variants: Vec::new(),
    })))
}

/// O_NONBLOCK: opening a FIFO someone left in the web root must not hang a thread.
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
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
