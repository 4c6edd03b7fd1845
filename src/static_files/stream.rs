//! A file body streamed from disk in large chunks, one blocking read at a time, so memory
//! stays bounded (one chunk in flight plus hyper's write buffer) whatever the file size.
//! When the client goes away hyper drops the body, which drops the file.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

const CHUNK: u64 = 256 * 1024;

pub struct FileBody {
    file: Option<File>,
    remaining: u64,
    reading: Option<JoinHandle<(File, io::Result<Vec<u8>>)>>,
}

impl FileBody {
    pub fn new(file: File, len: u64) -> Self {
        FileBody {
            file: Some(file),
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
            let Some(file) = this.file.take() else {
                return Poll::Ready(None);
            };
            let want = this.remaining.min(CHUNK);
            this.reading = Some(tokio::task::spawn_blocking(move || {
                let mut buf = Vec::with_capacity(want as usize);
                let result = (&file).take(want).read_to_end(&mut buf).map(|_| buf);
                (file, result)
            }));
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let (file, result) = joined.map_err(io::Error::other)?;
        let buf = result?;
        if buf.is_empty() {
            // The file shrank under us: end the response short rather than pad it.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ))));
        }
        this.remaining -= buf.len() as u64;
        this.file = Some(file);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
