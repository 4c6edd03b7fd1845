//! A file body streamed from disk in large chunks, one blocking read at a time, so memory
//! stays bounded (one chunk in flight plus hyper's write buffer) whatever the file size.
//! The file is opened by the first read, on the blocking pool like every read. When the
//! client goes away hyper drops the body, which drops the file.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::lookup::open_nonblocking;

const CHUNK: u64 = 256 * 1024;

pub struct FileBody {
    source: Option<Source>,
    remaining: u64,
    reading: Option<JoinHandle<(Source, io::Result<Vec<u8>>)>>,
}

enum Source {
    Closed { path: PathBuf, offset: u64 },
    Open(File),
}

impl Source {
    fn read_chunk(&mut self, want: u64) -> io::Result<Vec<u8>> {
        if let Source::Closed { path, offset } = self {
            let mut file = open_nonblocking(path)?;
            file.seek(SeekFrom::Start(*offset))?;
            *self = Source::Open(file);
        }
        let mut buf = Vec::with_capacity(want as usize);
        if let Source::Open(file) = self {
            file.take(want).read_to_end(&mut buf)?;
        }
        Ok(buf)
    }
}

impl FileBody {
    /// Streams `len` bytes of the file at `path`, starting at `offset`.
    pub fn new(path: PathBuf, offset: u64, len: u64) -> Self {
        FileBody {
            source: Some(Source::Closed { path, offset }),
            remaining: len,
            reading: None,
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
        if this.reading.is_none() {
            let Some(mut source) = this.source.take() else {
                return Poll::Ready(None);
            };
            let want = this.remaining.min(CHUNK);
            this.reading = Some(tokio::task::spawn_blocking(move || {
                let result = source.read_chunk(want);
                (source, result)
            }));
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let (source, result) = joined.map_err(io::Error::other)?;
        let buf = result?;
        if buf.is_empty() {
            // The file shrank under us: end the response short rather than pad it.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ))));
        }
        this.remaining -= buf.len() as u64;
        this.source = Some(source);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
