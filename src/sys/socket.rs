//! The connection's socket as the server uses it (`Socket`): reads, `sendfile` and
//! `TCP_CORK` for files (`static.sendfile`).
//!
//! Reads are done the way nginx does them: a read that returns less than it asked for has
//! drained the socket's receive buffer, so readiness is cleared there and then, and the
//! next read waits for epoll instead of first failing with EAGAIN.
//!
//! Why hand-written: tokio clears a socket's readiness only when a read fails with
//! EAGAIN, so every request cost one extra failing `recv` (strace on proxy-small: three
//! `recvfrom` per request, one of them EAGAIN, against nginx's two). Data that arrives
//! after the short read is not lost: it raises a new edge-triggered epoll event, which
//! sets readiness again (tokio only clears readiness that is not newer than the read).

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::task::{ready, Context, Poll};

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A connection's byte stream as the server reads it: a TCP socket with nginx's short
/// reads, or (for the differential fuzzer) an in-memory pipe.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Reads into `dst`; `Ok(0)` at end of stream (or for an empty `dst`).
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>>;

    /// Sends up to `len` bytes of `file` from `offset` without copying them through user
    /// space; `Unsupported` where the stream is not a socket.
    fn poll_sendfile(
        &mut self,
        _cx: &mut Context<'_>,
        _file: &File,
        _offset: u64,
        _len: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }

    /// Holds back partial segments until uncorked (`TCP_CORK`), where that means anything.
    fn set_cork(&self, _on: bool) {}
}

impl Socket for TcpStream {
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        poll_recv(self, cx, dst)
    }

    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            match self.try_io(Interest::WRITABLE, || sendfile(self, file, offset, len)) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn set_cork(&self, on: bool) {
        let on = libc::c_int::from(on);
        // SAFETY: a plain setsockopt on a descriptor `self` keeps open, with a pointer to
        // an int that outlives the call. A failure only costs speed, so it is ignored.
        unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl Socket for tokio::io::DuplexStream {
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::uninit(dst);
        ready!(Pin::new(self).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

/// Reads into `dst`; `Ok(0)` at end of stream (or for an empty `dst`).
pub fn poll_recv(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    dst: &mut [MaybeUninit<u8>],
) -> Poll<io::Result<usize>> {
    if dst.is_empty() {
        return Poll::Ready(Ok(0));
    }
    loop {
        ready!(stream.poll_read_ready(cx))?;
        let mut got = 0;
        let result = stream.try_io(Interest::READABLE, || {
            got = recv(stream, dst)?;
            match got > 0 && got < dst.len() {
                // Drained: report "would block" so that tokio clears the readiness; the
                // bytes read are returned below all the same.
                true => Err(io::ErrorKind::WouldBlock.into()),
                false => Ok(()),
            }
        });
        match result {
            Ok(()) => return Poll::Ready(Ok(got)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {
                return Poll::Ready(Ok(got))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

fn sendfile(stream: &TcpStream, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the duration of the call (borrowed), and
    // `offset` is a valid place for the kernel to write the new position.
    let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, len) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n as usize),
    }
}

fn recv(stream: &TcpStream, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `dst` is valid for writes of `dst.len()` bytes for the duration of the call,
    // and recv writes at most that many (uninitialised memory may be written to).
    let n = unsafe { libc::recv(stream.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len(), 0) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n as usize),
    }
}
