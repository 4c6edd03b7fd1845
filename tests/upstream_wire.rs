//! The upstream side of the wire, through the real binary: response framings an app may
//! send (chunked with extensions and trailers, close-delimited, interim 1xx, HEAD with a
//! length), arriving in pieces, and broken responses, which must become a 502 or a cut
//! response, never a complete-looking one.

mod common;

use common::*;

fn script(path: &str) -> (Vec<&'static [u8]>, bool) {
    match path {
        "/chunked" => (
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\n\r\n5;e",
                b"xt=1\r\nhel",
                b"lo\r\n6\r\n world\r",
                b"\n0\r\nX-Trailer: t\r\n",
                b"\r\n",
            ],
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
    let conf = Conf::new("app")
        .upstream("app", up.addr)
        .extra(extra)
        .build();
    (Daemon::start(&conf), up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_close_delimited_bodies_arrive_whole() {
    let (d, up) = through_scripted().await;
    let mut conn = Conn::open(d.addr).await;
    for _ in 0..3 {
        let r = conn.get("/chunked").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello world");
        assert_eq!(
            r.header("content-length"),
            None,
            "a stale length must not be relayed"
        );
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
