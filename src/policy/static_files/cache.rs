//! What the web root said about a path, remembered for a moment (nginx's
//! `open_file_cache`): a hit costs no syscall and no trip to the blocking pool, which are
//! most of the cost of a small file and of a file miss on the way to the upstream
//! (`benches/README.md`).
//!
//! Entries are trusted for `TTL` (1 s): a deploy that replaces files is visible within a
//! second, and a request never sees a half-written state (rename is atomic; the entry holds
//! the whole small file). Keyed by the raw request path, so a hit needs no allocation.
//! One cache per worker thread, so its lock is never contended. Bounded in entries, in
//! cached bytes and in open descriptors (a large file's entry keeps its file open, so the
//! bytes streamed always match the cached length and ETag); when full it is simply
//! cleared, which costs one lookup per path again.
//! A new configuration generation (maybe a new root) clears it too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::lookup::Found;
use crate::sys::coarse_clock;

const TTL: Duration = Duration::from_secs(1);
const MAX_ENTRIES: usize = 8192;
const MAX_BYTES: usize = 32 << 20;
/// Large files are cached with their descriptor open; keep well inside the fd limit.
const MAX_OPEN_FILES: usize = 256;

pub struct FileCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    open_files: usize,
    /// With the `coarse_clock` time each was looked up.
    entries: HashMap<Box<str>, (Found, Duration)>,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache {
            inner: Mutex::new(Inner::default()),
        }
    }
}

impl FileCache {
    /// A fresh entry for `path` under configuration `generation`, if any.
    ///
    /// When an entry has just expired, only the first caller gets `None` (and looks the
    /// path up again); the entry counts as fresh again for everyone else meanwhile. Without
    /// that, every request for a busy path missed at once each second, each with its own
    /// trip to the blocking pool (proxy-small: dozens of pool threads started, and one
    /// worker held up long enough to fall behind).
    pub fn get(&self, path: &str, generation: u64) -> Option<Found> {
        let mut inner = self.inner.lock().ok()?;
        if inner.generation != generation {
            return None;
        }
        let (found, at) = inner.entries.get_mut(path)?;
        let now = coarse_clock::now();
        if now.saturating_sub(*at) < TTL {
            return Some(found.clone());
        }
        *at = now;
        None
    }

    pub fn insert(&self, path: &str, generation: u64, found: &Found) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.generation != generation {
            inner.clear(generation);
        }
        let size = cached_bytes(found) + path.len();
        let full = inner.entries.len() >= MAX_ENTRIES
            || inner.bytes + size > MAX_BYTES
            || inner.open_files + holds_file(found) > MAX_OPEN_FILES;
        if full {
            inner.clear(generation);
        }
        if let Some((old, _)) = inner
            .entries
            .insert(path.into(), (found.clone(), coarse_clock::now()))
        {
            inner.uncount(path, &old);
        }
        inner.bytes += size;
        inner.open_files += holds_file(found);
    }
}

impl FileCache {
    /// Drops the entry for `path` (its lookup failed).
    pub fn forget(&self, path: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some((old, _)) = inner.entries.remove(path) {
            inner.uncount(path, &old);
        }
    }
}

impl Inner {
    /// Takes a replaced or removed entry out of the bounds' counts.
    fn uncount(&mut self, path: &str, old: &Found) {
        self.bytes -= cached_bytes(old) + path.len();
        self.open_files -= holds_file(old);
    }

    fn clear(&mut self, generation: u64) {
        self.entries.clear();
        self.bytes = 0;
        self.open_files = 0;
        self.generation = generation;
    }
}

fn holds_file(found: &Found) -> usize {
    match found {
        Found::File(meta) => usize::from(meta.file.is_some()),
        _ => 0,
    }
}

fn cached_bytes(found: &Found) -> usize {
    match found {
        Found::File(meta) => meta.content.as_ref().map_or(0, |c| c.len()),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_entry_is_looked_up_again_by_one_caller_only() {
        let cache = FileCache::default();
        cache.insert("/x", 1, &Found::Nothing);
        assert!(matches!(cache.get("/x", 1), Some(Found::Nothing)));
        assert!(cache.get("/x", 2).is_none(), "another generation");
        std::thread::sleep(TTL + Duration::from_millis(50));
        assert!(
            cache.get("/x", 1).is_none(),
            "the first caller after expiry looks it up"
        );
        assert!(
            matches!(cache.get("/x", 1), Some(Found::Nothing)),
            "the others keep the entry meanwhile"
        );
        cache.insert("/x", 1, &Found::Forbidden);
        assert!(matches!(cache.get("/x", 1), Some(Found::Forbidden)));
        cache.forget("/x");
        assert!(
            cache.get("/x", 1).is_none(),
            "a failed lookup leaves nothing behind"
        );
    }
}
