//! The client side of the wire, through the real binary, in raw bytes: plain requests
//! (served by switchyard's own HTTP/1.1 path), requests it hands to hyper in the middle of
//! a keep-alive connection, pipelining, heads in pieces, and `Connection: close`.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Wire {
    async fn open(d: &Daemon) -> Wire {
        Wire {
            stream: TcpStream::connect(d.addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
            .await
            .expect("response within 5 s")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response; got {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(at + 2).await;
                return String::from_utf8_lossy(&line[..at]).into_owned();
            }
            self.fill().await;
        }
    }

    /// One response; `head_request` says the request was HEAD (no body whatever the
    /// headers say). 1xx responses are returned like any other.
    async fn answer(&mut self, head_request: bool) -> Answer {
        let mut head = String::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            head.push_str(&line);
            head.push('\n');
        }
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return answer;
        }
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).expect("chunk size");
                let data = self.take(size + 2).await;
                answer.body.extend_from_slice(&data[..size]);
                if size == 0 {
                    break;
                }
            }
            return answer;
        }
        let len = answer
            .header("content-length")
            .map(|v| v.parse().expect("content-length"))
            .expect("a response to an HTTP/1.1 client is framed");
        answer.body = self.take(len).await;
        answer
    }

    /// Whether the server closes the connection (within 2 s) with nothing more to say.
    async fn closes(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(2), self.stream.read(&mut chunk));
        matches!(read.await, Ok(Ok(0)) | Ok(Err(_))) && self.buf.is_empty()
    }
}

async fn daemon() -> (Daemon, Upstream) {
    let app = Upstream::start("app").await;
    let d = Daemon::start(&Conf::new("app").upstream("app", app.addr).build());
    (d, app)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (d, _app) = daemon().await;
    let mut w = Wire::open(&d).await;
    let head = "HEAD /c HTTP/1.1\r\nHost: example.com\r\n\r\n";
    w.send(format!("{}{}{head}", get("/a"), get("/b?q=1")).as_bytes())
        .await;
    assert_eq!(w.answer(false).await.json()["uri"], "/a");
    let b = w.answer(false).await;
    assert_eq!(b.json()["uri"], "/b?q=1");
    assert!(b.header("date").is_some(), "{b:?}");
    let c = w.answer(true).await;
    assert_eq!(c.status, 200);
    assert!(c.header("content-length").is_some(), "{c:?}");
    // Still usable afterwards, and nothing stray was sent after the HEAD response.
    w.send(get("/d").as_bytes()).await;
    assert_eq!(w.answer(false).await.json()["uri"], "/d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_bodies_mid_connection_are_served_and_so_is_the_next() {
    let (d, _app) = daemon().await;
    let mut w = Wire::open(&d).await;
    w.send(get("/first").as_bytes()).await;
    let first = w.answer(false).await;
    assert_eq!(first.json()["uri"], "/first");
    assert_eq!(first.header("x-upstream"), Some("app"));
    // A body (the switch to hyper happens here), with the next request in the same write.
    let post = "POST /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello";
    w.send(format!("{post}{}", get("/after")).as_bytes()).await;
    let echoed = w.answer(false).await;
    assert_eq!(echoed.text(), "hello");
    assert_eq!(echoed.header("x-upstream"), Some("app"), "{echoed:?}");
    assert_eq!(w.answer(false).await.json()["uri"], "/after");
    let chunked = "POST /echo HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    w.send(chunked.as_bytes()).await;
    assert_eq!(w.answer(false).await.text(), "abcde");
    let expect = "PUT /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
    w.send(expect.as_bytes()).await;
    assert_eq!(w.answer(false).await.status, 100);
    w.send(b"ok").await;
    assert_eq!(w.answer(false).await.text(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_declared_body_stays_on_the_plain_path() {
    let (d, _app) = daemon().await;
    let mut w = Wire::open(&d).await;
    let post = "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n";
    w.send(format!("{post}{}", get("/q")).as_bytes()).await;
    let p = w.answer(false).await.json();
    assert_eq!(
        (p["method"].as_str(), p["body_len"].as_u64()),
        (Some("POST"), Some(0))
    );
    assert_eq!(w.answer(false).await.json()["uri"], "/q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_arriving_byte_by_byte_is_answered() {
    let (d, _app) = daemon().await;
    let mut w = Wire::open(&d).await;
    for b in get("/slowly").bytes() {
        w.send(&[b]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(w.answer(false).await.json()["uri"], "/slowly");
    // Bare LF line ends, as httparse (and hyper) accept.
    w.send(b"GET /lf HTTP/1.1\nHost: example.com\n\n").await;
    assert_eq!(w.answer(false).await.json()["uri"], "/lf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_answered_and_honoured() {
    let (d, _app) = daemon().await;
    let mut w = Wire::open(&d).await;
    w.send(b"GET /bye HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, close\r\n\r\n")
        .await;
    let a = w.answer(false).await;
    assert_eq!(a.json()["uri"], "/bye");
    assert_eq!(a.header("connection"), Some("close"));
    assert!(
        w.closes().await,
        "the connection stays open after Connection: close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_and_absolute_targets_are_still_served() {
    let (d, _app) = daemon().await;
    let mut w = Wire::open(&d).await;
    w.send(b"GET http://example.com/abs HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await;
    assert_eq!(w.answer(false).await.json()["uri"], "/abs");
    let mut w = Wire::open(&d).await;
    w.send(b"GET /old HTTP/1.0\r\n\r\n").await;
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), w.stream.read_to_end(&mut all)).await;
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(text.contains("\"/old\""), "{text}");
}
