//! A file body streamed from disk in large chunks, so memory stays bounded (one chunk in
//! flight plus hyper's write buffer) whatever the file size.
//!
//! The bytes come from the descriptor the (cached) lookup opened, so they always belong to the
//! file whose length and ETag are in the headers, even if a deploy renames another file into
//! place meanwhile. When the client goes away hyper drops the body, which drops the handle.
//!
//! Reads are hand-written `preadv2` calls rather than `std`'s `read_at` for two reasons
//! (measured in `benches/README.md`): `read_at` needs an initialised (zeroed) buffer, which
//! costs a pass over every chunk; and `RWF_NOWAIT` lets the worker copy pages that
//! are already in the page cache (the common case for a web root) without a trip to the
//! blocking pool, which cost a thread hand-off per chunk. Only a read that would wait for the
//! disk goes to `spawn_blocking`, so a cold file never stalls the worker's other connections.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::sys::page_cache;

const CHUNK: u64 = 256 * 1024;

pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    reading: Option<JoinHandle<io::Result<Vec<u8>>>>,
    /// Cleared when the filesystem does not support `RWF_NOWAIT`.
    try_nowait: bool,
    sendfile: bool,
}

impl FileBody {
    /// Streams `len` bytes, from `offset`, of the file the lookup opened.
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        FileBody {
            file,
            offset,
            remaining: len,
            reading: None,
            try_nowait: true,
            sendfile: false,
        }
    }

    /// Lets the server send cached stretches with `sendfile` (`cached_stretch`).
    pub fn with_sendfile(mut self) -> Self {
        self.sendfile = true;
        self
    }

    /// The next stretch of the file, when all of it is in the page cache and can go to
    /// the socket with `sendfile` (no read of it is in progress): the file, where the
    /// stretch starts and how long it is.
    pub fn cached_stretch(&self) -> Option<(&File, u64, usize)> {
        if !self.sendfile || self.reading.is_some() || self.remaining == 0 {
            return None;
        }
        let len = self.remaining.min(page_cache::MAX_STRETCH as u64) as usize;
        page_cache::is_cached(&self.file, self.offset, len).then_some((
            &self.file,
            self.offset,
            len,
        ))
    }

    /// Whether `cached_stretch` may offer stretches (`static.sendfile`).
    pub fn uses_sendfile(&self) -> bool {
        self.sendfile
    }

    /// `n` more bytes of the file are sent (by `poll_frame`, or by `sendfile`).
    pub fn advance(&mut self, n: usize) {
        let n = (n as u64).min(self.remaining);
        self.offset += n;
        self.remaining -= n;
    }

    /// The next chunk: straight from the page cache if it is there, else `None` after
    /// starting a blocking read (polled on the next call).
    fn start_read(&mut self, want: u64) -> Option<io::Result<Vec<u8>>> {
        if self.try_nowait {
            match pread(&self.file, self.offset, want, libc::RWF_NOWAIT) {
                Ok(buf) => return Some(Ok(buf)),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(e) if unsupported(&e) => self.try_nowait = false,
                Err(e) => return Some(Err(e)),
            }
        }
        let (file, offset) = (Arc::clone(&self.file), self.offset);
        self.reading = Some(tokio::task::spawn_blocking(move || {
            pread_full(&file, offset, want)
        }));
        None
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOSYS)
    )
}

/// One positioned read of up to `want` bytes into a fresh, uninitialised buffer.
fn pread(file: &File, offset: u64, want: u64, flags: libc::c_int) -> io::Result<Vec<u8>> {
    let mut buf = Vec::<u8>::with_capacity(want as usize);
    let n = read_into_spare(file, offset, &mut buf, want, flags)?;
    // SAFETY: the kernel wrote exactly `n` (<= capacity) bytes at the start of `buf`.
    unsafe { buf.set_len(n) };
    Ok(buf)
}

/// Blocking reads until `want` bytes or end of file.
fn pread_full(file: &File, offset: u64, want: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::<u8>::with_capacity(want as usize);
    while buf.len() < want as usize {
        let filled = buf.len();
        let n = read_into_spare(file, offset + filled as u64, &mut buf, want, 0)?;
        if n == 0 {
            break;
        }
        // SAFETY: the kernel wrote `n` bytes right after the `filled` initialised ones.
        unsafe { buf.set_len(filled + n) };
    }
    Ok(buf)
}

/// `preadv2` into the spare capacity of `buf`, never past `want` bytes in all; returns the
/// byte count, retrying EINTR.
fn read_into_spare(
    file: &File,
    offset: u64,
    buf: &mut Vec<u8>,
    want: u64,
    flags: libc::c_int,
) -> io::Result<usize> {
    let room = (want as usize).saturating_sub(buf.len());
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len().min(room),
    };
    let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    loop {
        // SAFETY: `iov` points into `buf`'s spare capacity, valid for `iov_len` bytes for the
        // duration of the call; the descriptor is open for as long as `file` is borrowed.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(CHUNK);
        let result = match this.reading.as_mut() {
            Some(reading) => {
                let joined = ready!(Pin::new(reading).poll(cx));
                this.reading = None;
                joined.map_err(io::Error::other).and_then(|r| r)
            }
            None => match this.start_read(want) {
                Some(result) => result,
                None => return Pin::new(this).poll_frame(cx),
            },
        };
        let buf = result?;
        if buf.is_empty() {
            // The file shrank under us: end the response short rather than pad it.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ))));
        }
        this.advance(buf.len());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
