//! The upstream side of the wire, through the real binary: response framings an app may
//! send (chunked with extensions and trailers, close-delimited, interim 1xx, HEAD with a
//! length), arriving in pieces, and broken responses, which must become a 502 or a cut
//! response, never a complete-looking one.

mod common;

use std::time::Duration;

use common::*;

fn script(path: &str) -> (Vec<&'static [u8]>, bool) {
    match path {
        "/chunked" => (
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e",
                b"xt=1\r\nhel",
                b"lo\r\n6\r\n world\r",
                b"\n0\r\nX-Trailer: t\r\n",
                b"\r\n",
            ],
            false,
        ),
        "/both" => (
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
            false,
        ),
        "/close" => (vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"close"], true),
        "/continue" => (
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ],
            false,
        ),
        "/head" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"],
            false,
        ),
        "/garbage" => (vec![b"NOT HTTP AT ALL\r\n\r\n"], true),
        "/two-lengths" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"],
            true,
        ),
        "/truncated" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"],
            true,
        ),
        _ => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall"],
            false,
        ),
    }
}

async fn through_scripted() -> (Daemon, ScriptedUpstream) {
    through_scripted_with("").await
}

async fn through_scripted_with(extra: &str) -> (Daemon, ScriptedUpstream) {
    let up = ScriptedUpstream::start(script).await;
    (proxy_to(up.addr, extra), up)
}

/// The daemon proxying everything to `addr`, with `extra` config appended.
fn proxy_to(addr: std::net::SocketAddr, extra: &str) -> Daemon {
    Daemon::start(&Conf::new("app").upstream("app", addr).extra(extra).build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_close_delimited_bodies_arrive_whole() {
    let (d, up) = through_scripted().await;
    let mut conn = Conn::open(d.addr).await;
    for _ in 0..3 {
        let r = conn.get("/chunked").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello world");
        assert_eq!(r.header("content-length"), None);
    }
    // One client connection is served by one worker, whose pool reused the connection.
    assert_eq!(
        up.conns(),
        1,
        "chunked responses must leave the connection reusable"
    );
    let r = conn.get("/close").await;
    assert_eq!(r.text(), "until close");
    let r = conn.get("/small").await;
    assert_eq!(r.text(), "small");
    assert_eq!(
        up.conns(),
        2,
        "a close-delimited response's connection is not reused"
    ); // Both framings at once: decoded as chunked, the length not relayed, and the
       // connection not trusted again (the sender may have meant the length).
    let r = conn.get("/both").await;
    assert_eq!(r.text(), "hello");
    assert_eq!(r.header("content-length"), None);
    assert_eq!(conn.get("/small").await.text(), "small");
    assert_eq!(
        up.conns(),
        3,
        "a response with both framings left its connection pooled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_skipped_and_head_responses_have_no_body() {
    let (d, up) = through_scripted().await;
    let mut conn = Conn::open(d.addr).await;
    let r = conn.get("/continue").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    let r = conn.send(request("HEAD", "/head", "")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.body.is_empty());
    let r = conn.get("/small").await;
    assert_eq!(r.text(), "small");
    assert_eq!(
        up.conns(),
        1,
        "the connection survives a HEAD response without a body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_responses_are_502_or_visibly_cut_short() {
    let (mut d, _up) = through_scripted().await;
    for path in ["/garbage", "/two-lengths"] {
        let r = fetch(d.addr, path).await;
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(r.text(), "502 bad gateway\n");
    }
    d.wait_for_log("invalid response", std::time::Duration::from_secs(2));
    // The head was already relayed when the body broke off: the client must see a
    // response shorter than its Content-Length and a closed connection, not a whole one.
    let text = raw(
        d.addr,
        b"GET /truncated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 100"),
        "{head}"
    );
    assert_eq!(body, "0123456789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_connections_close_after_pool_idle_timeout() {
    let (d, up) = through_scripted_with("[proxy]\npool_idle_timeout = \"1s\"\n").await;
    let mut conn = Conn::open(d.addr).await;
    assert_eq!(conn.get("/small").await.text(), "small");
    assert_eq!(up.conns(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while up.open() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} upstream connection(s) still open 4 s after a 1 s pool_idle_timeout",
            up.open()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The client's own keep-alive connection is untouched and gets a new upstream one.
    assert_eq!(conn.get("/small").await.text(), "small");
    assert_eq!(up.conns(), 2);
}

/// A one-off upstream: `answer(stream, head, already_read_body_bytes)` handles the first
/// request on each connection.
async fn raw_upstream<F, Fut>(answer: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream, String, Vec<u8>) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65536];
                let end = loop {
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return, // a health probe
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&got[..end]).into_owned();
                let rest = got[end + 4..].to_vec();
                answer(stream, head, rest).await;
            });
        }
    });
    addr
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An app that streams its answer while it is still reading the request (an echo, a
/// transform) must not deadlock against the proxy once the body outgrows the socket
/// buffers: the proxy has to read the response while it sends the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_streams_to_an_app_that_answers_while_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = raw_upstream(|mut stream, head, mut first| async move {
        let mut left = content_length(&head);
        let ok = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(ok).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 65536];
        while left > 0 {
            let data = match first.is_empty() {
                false => std::mem::take(&mut first),
                true => match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf[..n].to_vec(),
                },
            };
            left = left.saturating_sub(data.len());
            let chunk = [
                format!("{:x}\r\n", data.len()).into_bytes(),
                data,
                b"\r\n".to_vec(),
            ]
            .concat();
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
    })
    .await;
    let d = proxy_to(addr, "[proxy]\nresponse_timeout = \"10s\"\n");
    let body: Vec<u8> = (0..24_000_000u32).map(|i| (i % 251) as u8).collect();
    let started = std::time::Instant::now();
    let r = send(d.addr, request("POST", "/echo-stream", body.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

/// An app that refuses a large upload at once (413, 401) without reading it must be heard:
/// its answer reaches the client instead of a 502 or a 504 after response_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_is_relayed_while_the_body_is_still_coming() {
    use tokio::io::AsyncWriteExt;
    let addr = raw_upstream(|mut stream, _head, _first| async move {
        let no = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large";
        let _ = stream.write_all(no).await;
        // Neither reads the rest nor closes, as a busy app may.
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    })
    .await;
    let d = proxy_to(addr, "[proxy]\nresponse_timeout = \"4s\"\n");
    // A raw client that keeps sending while it reads: hyper's client may report its own
    // failed write (the proxy closes after answering) instead of the answer.
    let started = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 24000000\r\n\r\n";
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(24_000_000 / chunk.len()) {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).ends_with("too large") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert!(text.ends_with("too large"), "{text:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Shutdown that begins while a response is on its way whose head already promised
/// keep-alive: the client may send its next request as soon as the body ends, so that
/// request is still answered (with `Connection: close`), not met with a closed
/// connection (a load balancer's 502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_keep_alive_answer_finished_in_shutdown_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = raw_upstream(|mut stream, _head, _first| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = stream.write_all(b" half").await;
    })
    .await;
    let mut d = proxy_to(addr, "");
    let mut stream = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    stream
        .write_all(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&got).contains("close"),
        "keep-alive promised"
    );
    d.signal(libc::SIGTERM);
    while !String::from_utf8_lossy(&got).ends_with("first half") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "cut: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut next = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut next))
        .await
        .expect("closed within 5 s")
        .unwrap();
    let next = String::from_utf8_lossy(&next).to_ascii_lowercase();
    assert!(
        next.starts_with("http/1.1 "),
        "the next request was not answered: {next:?}"
    );
    assert!(next.contains("connection: close"), "{next}");
    d.wait_exit(Duration::from_secs(10));
}
