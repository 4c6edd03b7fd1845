//! Writing a response: the head with the framing hyper would choose (RFC 9112 section 6),
//! the body as Content-Length or chunked, small bodies in the same write as the head, and
//! with `static.sendfile` a file's cached stretches straight from the page cache.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::http::chunked;
use crate::http::clocked_io::ClockedIo;
use crate::http::head::has_close;
use crate::http::raw_headers::RawHeaders;
use crate::http::tracked_body::{Report, TrackedBody};
use crate::sys::socket::Socket;

/// Data frames up to this size are copied behind the head (one write); larger ones are
/// written from their own buffer.
const COPY_LIMIT: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteFraming {
    None,
    Length(u64),
    Chunked,
}

/// The request a response answers, as far as writing it is concerned.
#[derive(Clone, Copy)]
pub struct Answering {
    /// A HEAD request: the head says what a GET would get, and no body follows.
    pub head_request: bool,
    /// The connection ends after this response (`Connection: close` goes in the head).
    pub close: bool,
}

/// Writes `res`. Returns whether the connection can carry another request.
pub async fn write<S: Socket, R: Report>(
    io: &mut ClockedIo<S>,
    out: &mut Vec<u8>,
    res: Response<TrackedBody<R>>,
    answering: Answering,
) -> io::Result<bool> {
    let Answering {
        head_request,
        close,
    } = answering;
    let (parts, mut body) = res.into_parts();
    out.clear();
    let raw = body.take_raw_headers();
    let head = Head {
        status: parts.status,
        headers: &parts.headers,
        raw: raw.as_ref(),
        length: body.size_hint().exact(),
        head_request,
    };
    let (framing, close) = encode_head(out, &head, close);
    if framing == WriteFraming::None {
        drop(body);
        io.write_all(out).await?;
        return Ok(!close);
    }
    let mut sent = 0u64;
    let mut zero_copy = matches!(framing, WriteFraming::Length(_))
        && body.file_mut().is_some_and(|f| f.uses_sendfile());
    let mut corked = false;
    loop {
        if zero_copy {
            match send_cached_stretch(io, out, &mut body, &mut corked).await {
                Ok(0) => {}
                Ok(n) => {
                    sent += n as u64;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => zero_copy = false,
                Err(e) => return Err(e),
            }
        }
        // Whatever is ready goes out in one write; when the body has to wait, what is
        // buffered is written first, so the client is never kept waiting for the head.
        let frame = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Some(frame)),
            Poll::Pending if !out.is_empty() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        let data = match frame {
            None => {
                io.write_all(out).await?;
                out.clear();
                continue;
            }
            Some(None) => break,
            Some(Some(Err(e))) => {
                // The body broke off (an upstream that closed early): what came is sent,
                // then the connection ends, so the client sees the response cut short.
                io.write_all(out).await?;
                return Err(io::Error::other(e));
            }
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers are dropped, as hyper does for clients that did not ask for
                // them.
                _ => continue,
            },
        };
        sent += data.len() as u64;
        if let WriteFraming::Length(len) = framing {
            if sent > len {
                return Err(io::Error::other("response body longer than its length"));
            }
        }
        put_data(io, out, data, framing == WriteFraming::Chunked).await?;
        if out.len() >= 4 * COPY_LIMIT {
            io.write_all(out).await?;
            out.clear();
        }
    }
    drop(body);
    match framing {
        WriteFraming::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        WriteFraming::Length(len) if sent < len => {
            // Ending short is the only way to tell the client the body was cut.
            io.write_all(out).await?;
            return Ok(false);
        }
        _ => {}
    }
    io.write_all(out).await?;
    if corked {
        io.set_cork(false);
    }
    Ok(!close)
}

/// Sends the next stretch of a file body with `sendfile` if it is all in the page cache
/// (after what is buffered in `out`); returns how many bytes went, 0 when the body is not
/// a file or the stretch is not cached (then `poll_frame` reads it without making the
/// worker wait for the disk).
async fn send_cached_stretch<S: Socket, R: Report>(
    io: &mut ClockedIo<S>,
    out: &mut Vec<u8>,
    body: &mut TrackedBody<R>,
    corked: &mut bool,
) -> io::Result<usize> {
    let Some((file, offset, len)) = body.file_mut().and_then(|f| f.cached_stretch()) else {
        return Ok(0);
    };
    if !*corked {
        // Full segments only until the response is out (nginx's `tcp_nopush`): without
        // it, a receiver on the other end of a fast link pays for every partial segment
        // `sendfile` pushes, several times what the copying path costs it.
        io.set_cork(true);
        *corked = true;
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    let mut done = 0;
    while done < len {
        let n = poll_fn(|cx| io.poll_sendfile(cx, file, offset + done as u64, len - done)).await;
        match n {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ))
            }
            Ok(n) => done += n,
            Err(e) => return Err(e),
        }
    }
    body.sent_from_file(done);
    Ok(done)
}

async fn put_data<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
    data: Bytes,
    chunked: bool,
) -> io::Result<()> {
    if chunked {
        chunked::put_size(out, data.len());
        out.extend_from_slice(b"\r\n");
    }
    if data.len() <= COPY_LIMIT {
        out.extend_from_slice(&data);
    } else {
        write_both(io, out, &data).await?;
        out.clear();
    }
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Writes `a` then `b` with as few system calls as the socket allows.
async fn write_both<S: AsyncWrite + Unpin>(io: &mut S, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        let n = io
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    io.write_all(b).await
}

/// What the head of a response is written from.
struct Head<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
    raw: Option<&'a RawHeaders>,
    /// The body's length, when known.
    length: Option<u64>,
    head_request: bool,
}

/// The status line and headers. Content-Length and Transfer-Encoding are written from the
/// body's own length (as hyper does), not copied from the map.
fn encode_head(out: &mut Vec<u8>, head: &Head<'_>, mut close: bool) -> (WriteFraming, bool) {
    let Head {
        status,
        headers,
        length,
        head_request,
        ..
    } = *head;
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut has_date = false;
    let mut says_close = false;
    let mut declared = None;
    for (name, value) in headers {
        match *name {
            header::CONTENT_LENGTH => {
                declared = Some(value);
                continue;
            }
            header::TRANSFER_ENCODING => continue,
            header::CONNECTION => says_close |= has_close(value.as_bytes()),
            header::DATE => has_date = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut declared_raw = false;
    if let Some(raw) = head.raw {
        // Relayed lines carry no framing, hop-by-hop or Connection header (`wire`), but
        // a HEAD response's Content-Length, which is then the declared length.
        out.extend_from_slice(raw.lines());
        has_date |= raw.has_date();
        declared_raw = head_request;
    }
    close |= says_close;
    if close && !says_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let no_body = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        || status.is_informational();
    let framing = if no_body {
        WriteFraming::None
    } else if head_request {
        // The length the same GET would have, when known (relayed lines carry their own).
        if !declared_raw {
            match (declared, length) {
                (Some(value), _) => put_header(out, b"content-length: ", value.as_bytes()),
                (None, Some(len)) if len > 0 => put_length(out, len),
                _ => {}
            }
        }
        WriteFraming::None
    } else if let Some(len) = length {
        put_length(out, len);
        if len == 0 {
            WriteFraming::None
        } else {
            WriteFraming::Length(len)
        }
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        WriteFraming::Chunked
    };
    if !has_date {
        out.extend_from_slice(b"date: ");
        put_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

fn put_length(out: &mut Vec<u8>, len: u64) {
    put_header(
        out,
        b"content-length: ",
        itoa::Buffer::new().format(len).as_bytes(),
    );
}

fn put_header(out: &mut Vec<u8>, name_colon: &[u8], value: &[u8]) {
    out.extend_from_slice(name_colon);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The Date value, rendered once per second per thread (as hyper does).
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

fn put_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, rendered)| {
        if *at != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == rendered.len() {
                rendered.copy_from_slice(text.as_bytes());
                *at = secs;
            } else {
                out.extend_from_slice(text.as_bytes());
                return;
            }
        }
        out.extend_from_slice(rendered);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::Body;

    fn head_of(
        status: u16,
        headers: &[(&str, &str)],
        body: Body,
        head: bool,
        close: bool,
    ) -> (String, WriteFraming, bool) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let length = http_body::Body::size_hint(&body).exact();
        let mut out = Vec::new();
        let status = StatusCode::from_u16(status).unwrap();
        let head = Head {
            status,
            headers: &map,
            raw: None,
            length,
            head_request: head,
        };
        let (framing, close) = encode_head(&mut out, &head, close);
        (String::from_utf8(out).unwrap(), framing, close)
    }

    #[test]
    fn framing_comes_from_the_body_not_the_map() {
        let (h, f, c) = head_of(
            200,
            &[("content-length", "99"), ("x-a", "1")],
            Body::full("hello"),
            false,
            false,
        );
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\ndate: "),
            "{h}"
        );
        assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
        assert!((f == WriteFraming::Length(5)) && !c);
        let (h, f, _) = head_of(404, &[("date", "x")], Body::empty(), false, false);
        assert_eq!(
            h,
            "HTTP/1.1 404 Not Found\r\ndate: x\r\ncontent-length: 0\r\n\r\n"
        );
        assert!(f == WriteFraming::None);
    }

    #[test]
    fn head_304_and_close() {
        let (h, f, _) = head_of(
            200,
            &[("content-length", "1000"), ("date", "x")],
            Body::empty(),
            true,
            false,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 1000\r\n\r\n"
        );
        assert!(f == WriteFraming::None);
        let (h, f, _) = head_of(
            304,
            &[("etag", "\"e\""), ("date", "x")],
            Body::empty(),
            false,
            false,
        );
        assert_eq!(
            h,
            "HTTP/1.1 304 Not Modified\r\netag: \"e\"\r\ndate: x\r\n\r\n"
        );
        assert!(f == WriteFraming::None);
        let (h, _, c) = head_of(200, &[("date", "x")], Body::full("a"), false, true);
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\ndate: x\r\nconnection: close\r\ncontent-length: 1\r\n\r\n"
        );
        assert!(c);
        let (_, _, c) = head_of(
            502,
            &[("connection", "close"), ("date", "x")],
            Body::full("a"),
            false,
            false,
        );
        assert!(c, "a response saying close ends the connection");
    }

    #[test]
    fn relayed_lines_follow_the_map() {
        let mut raw = RawHeaders::default();
        raw.push(b"Server", b"up");
        raw.push(b"Date", b"d");
        let map = HeaderMap::new();
        let mut out = Vec::new();
        let get = Head {
            status: StatusCode::OK,
            headers: &map,
            raw: Some(&raw),
            length: Some(3),
            head_request: false,
        };
        assert!(encode_head(&mut out, &get, false).0 == WriteFraming::Length(3));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: up\r\nDate: d\r\ncontent-length: 3\r\n\r\n"
        );
        // HEAD: the relayed Content-Length is the only one.
        let mut with_length = RawHeaders::default();
        with_length.push(b"Content-Length", b"1000");
        let mut out = Vec::new();
        let head = Head {
            raw: Some(&with_length),
            length: Some(0),
            head_request: true,
            ..get
        };
        assert!(encode_head(&mut out, &head, false).0 == WriteFraming::None);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("ength").count(), 1, "{text}");
    }
}
