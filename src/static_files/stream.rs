//! A file body streamed from disk in large chunks, one blocking positioned read at a time,
//! so memory stays bounded (one chunk in flight plus hyper's write buffer) whatever the
//! file size. The file was opened by the lookup and is shared (`pread` needs no seek, so
//! any number of responses can read it at once). When the client goes away hyper drops the
//! body, which drops its handle.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

const CHUNK: u64 = 256 * 1024;

pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    reading: Option<JoinHandle<io::Result<Vec<u8>>>>,
}

impl FileBody {
    /// Streams `len` bytes of `file`, starting at `offset`.
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        FileBody {
            file,
            offset,
            remaining: len,
            reading: None,
        }
    }
}

fn read_chunk(file: &File, offset: u64, want: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; want as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
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
        let (file, offset, want) = (
            Arc::clone(&this.file),
            this.offset,
            this.remaining.min(CHUNK),
        );
        let reading = this.reading.get_or_insert_with(|| {
            tokio::task::spawn_blocking(move || read_chunk(&file, offset, want))
        });
        let joined = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let buf = joined.map_err(io::Error::other)??;
        if buf.is_empty() {
            // The file shrank under us: end the response short rather than pad it.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ))));
        }
        this.offset += buf.len() as u64;
        this.remaining -= buf.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
