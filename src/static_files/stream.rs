//! A file body streamed from disk in large chunks, one blocking read at a time, so memory
//! stays bounded (one chunk in flight plus hyper's write buffer) whatever the file size.
//!
//! The bytes must come from the very file whose length and ETag the (cached) lookup put in
//! the headers. The first read reopens the path and checks that it is still that file
//! (same device and inode), then reads sequentially into uninitialised buffers; if a deploy
//! has renamed a new file into place meanwhile, it falls back to positioned reads on the
//! descriptor the lookup kept open (just as correct, but each chunk's buffer must be zeroed
//! first, which compare.py's static-large showed to cost about a fifth of the throughput).
//! When the client goes away hyper drops the body, which drops its handles.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::lookup::open_nonblocking;

const CHUNK: u64 = 256 * 1024;

pub struct FileBody {
    source: Option<Source>,
    offset: u64,
    remaining: u64,
    reading: Option<JoinHandle<(Source, io::Result<Vec<u8>>)>>,
}

/// Where the bytes come from.
enum Source {
    /// Not read yet: the path, and the lookup's descriptor of the file it found there.
    Unopened { path: PathBuf, kept: Arc<File> },
    /// The same file, reopened and positioned: plain sequential reads.
    Sequential(File),
    /// The path now names another file: positioned reads on the lookup's descriptor.
    Kept(Arc<File>),
}

impl FileBody {
    /// Streams `len` bytes, from `offset`, of the file the lookup opened (`kept`) at `path`.
    pub fn new(path: PathBuf, kept: Arc<File>, offset: u64, len: u64) -> Self {
        FileBody {
            source: Some(Source::Unopened { path, kept }),
            offset,
            remaining: len,
            reading: None,
        }
    }
}

impl Source {
    fn read_chunk(&mut self, offset: u64, want: u64) -> io::Result<Vec<u8>> {
        if let Source::Unopened { path, kept } = self {
            *self = reopen_same(path, kept, offset)?;
        }
        match self {
            Source::Sequential(file) => {
                let mut buf = Vec::with_capacity(want as usize);
                file.take(want).read_to_end(&mut buf)?;
                Ok(buf)
            }
            Source::Kept(file) => read_at(file, offset, want),
            Source::Unopened { .. } => Ok(Vec::new()),
        }
    }
}

fn reopen_same(path: &Path, kept: &Arc<File>, offset: u64) -> io::Result<Source> {
    let same = |f: &File| -> io::Result<bool> {
        let (a, b) = (f.metadata()?, kept.metadata()?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    };
    match open_nonblocking(path) {
        Ok(mut f) if same(&f)? => {
            f.seek(SeekFrom::Start(offset))?;
            Ok(Source::Sequential(f))
        }
        _ => Ok(Source::Kept(Arc::clone(kept))),
    }
}

fn read_at(file: &File, offset: u64, want: u64) -> io::Result<Vec<u8>> {
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
        if this.reading.is_none() {
            let Some(mut source) = this.source.take() else {
                return Poll::Ready(None);
            };
            let (offset, want) = (this.offset, this.remaining.min(CHUNK));
            this.reading = Some(tokio::task::spawn_blocking(move || {
                let result = source.read_chunk(offset, want);
                (source, result)
            }));
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let (source, result) = joined.map_err(io::Error::other)?;
        this.source = Some(source);
        let buf = result?;
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
