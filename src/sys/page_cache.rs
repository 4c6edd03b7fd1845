//! Whether a stretch of a file is in the page cache right now, so that it can be sent with
//! `sendfile` without the worker waiting for the disk.
//!
//! `sendfile` has no non-blocking mode for the file side: on a page that is not cached it
//! sleeps in the kernel until the disk delivers, and every other connection of that worker
//! waits with it. `mincore` on a mapping of the stretch answers from the page tables of the
//! page cache without touching a page (the mapping is never faulted in, so unmapping it
//! costs no TLB flush). A stretch that is not wholly cached takes the copying path, whose
//! reads leave the worker when they would wait (`stream`).

use std::fs::File;
use std::os::fd::AsRawFd;

/// The largest stretch asked about at once.
pub const MAX_STRETCH: usize = 1024 * 1024;

const PAGE: u64 = 4096;

/// Whether every page of `len` bytes of `file` from `offset` is cached. `false` when it
/// cannot tell (the answer only chooses between two correct ways to send).
pub fn is_cached(file: &File, offset: u64, len: usize) -> bool {
    if len == 0 || len > MAX_STRETCH {
        return false;
    }
    let start = offset - offset % PAGE;
    let span = (offset - start) as usize + len;
    let Ok(map_offset) = libc::off_t::try_from(start) else {
        return false;
    };
    // SAFETY: a fresh private read-only mapping of the file, never dereferenced; the
    // descriptor is open for the duration of the call.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            map_offset,
        )
    };
    if addr == libc::MAP_FAILED {
        return false;
    }
    let mut pages = [0u8; MAX_STRETCH / PAGE as usize + 1];
    let count = span.div_ceil(PAGE as usize);
    // SAFETY: `addr` is a mapping of `span` bytes; `pages` has room for one byte per page
    // of it (`count` <= its length because span <= MAX_STRETCH + PAGE - 1).
    let rc = unsafe { libc::mincore(addr, span, pages.as_mut_ptr()) };
    // SAFETY: unmapping exactly the mapping made above, which nothing else refers to.
    unsafe { libc::munmap(addr, span) };
    rc == 0 && pages[..count].iter().all(|p| p & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_evicted_stretch_is_not_cached_and_a_read_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![7u8; 3 * MAX_STRETCH]).unwrap();
        f.sync_all().unwrap();
        let file = File::open(&path).unwrap();
        // SAFETY: advisory call on a descriptor we own.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        assert!(!is_cached(&file, 100, MAX_STRETCH));
        let mut buf = vec![0u8; MAX_STRETCH];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, 0).unwrap();
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, MAX_STRETCH as u64).unwrap();
        assert!(
            is_cached(&file, 100, MAX_STRETCH),
            "unaligned, both pages read"
        );
        assert!(is_cached(&file, 0, 1));
        assert!(!is_cached(&file, 0, 0));
        assert!(!is_cached(&file, 0, MAX_STRETCH + 1));
    }
}
