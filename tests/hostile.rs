//! Hostile and broken clients on raw sockets: slowloris, idle keep-alive, oversized and
//! malformed requests, request smuggling attempts, connection floods.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn daemon(server_lines: &[&str]) -> (Daemon, Upstream) {
    let app = Upstream::start("app").await;
    let mut conf = Conf::new("app").upstream("app", app.addr);
    for l in server_lines {
        conf = conf.server(l);
    }
    (Daemon::start(&conf.build()), app)
}

/// Reads until the peer closes (Ok(bytes)) or `limit` passes (Err).
async fn until_closed(s: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .map_err(|_| ())?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_after_header_read_timeout() {
    let (d, _app) = daemon(&["header_read_timeout = \"1s\""]).await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // One header byte every 100 ms: never finishing, always "active".
    let mut cut = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"X").await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
        {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("slowloris connection was never cut");
    println!(
        "slowloris cut after {:.0} ms (header_read_timeout 1s)",
        cut.as_secs_f64() * 1000.0
    );
    assert!(
        cut >= Duration::from_millis(950) && cut < Duration::from_millis(2000),
        "{cut:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_new_connection_is_closed_after_header_read_timeout() {
    let (d, _app) = daemon(&["header_read_timeout = \"500ms\""]).await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    let started = Instant::now();
    assert!(until_closed(&mut s, Duration::from_secs(3)).await.is_ok());
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_header_timeout_and_ends_at_idle_timeout() {
    let (d, _app) = daemon(&["header_read_timeout = \"300ms\"", "idle_timeout = \"2s\""]).await;
    let mut conn = Conn::open(d.addr).await;
    assert_eq!(conn.get("/api/1").await.status, 200);
    // Idle for three header timeouts: a keep-alive connection must survive (the ALB's case).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        conn.try_get("/api/2").await.map(|r| r.status.as_u16()),
        Ok(200)
    );
    // And past idle_timeout it is closed.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(
        conn.try_get("/api/3").await.is_err(),
        "idle connection still open after idle_timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_pipelined_head_left_hanging_ends_at_header_read_timeout() {
    let (d, _app) = daemon(&["header_read_timeout = \"500ms\"", "idle_timeout = \"20s\""]).await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    // A whole request and the first byte of the next, then silence.
    s.write_all(b"GET /api/1 HTTP/1.1\r\nHost: x\r\n\r\nG")
        .await
        .unwrap();
    let started = Instant::now();
    let got = until_closed(&mut s, Duration::from_secs(5)).await;
    let got = got.expect("the connection is still open 5 s later");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    // The header clock runs from the pipelined byte, as from any first byte of a request.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_response_is_not_idle() {
    let (d, _app) = daemon(&[
        "header_read_timeout = \"200ms\"",
        "idle_timeout = \"500ms\"",
    ])
    .await;
    let r = fetch(d.addr, "/slow/1500").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let (d, app) = daemon(&[]).await;
    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let text = raw(d.addr, req.as_bytes()).await;
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "{}",
        &text[..text.len().min(100)]
    );
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_are_400_and_never_forwarded() {
    let (d, app) = daemon(&[]).await;
    let cl_te = "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let text = raw(d.addr, cl_te.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(!text.contains("smuggled"), "{text}");
    let dup =
        "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    let text = raw(d.addr, dup.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.hits(), 0, "a smuggling attempt reached the upstream");
    // The same after a plain request on the connection, in the same write and after a
    // pause (hyper takes the connection over at the attempt).
    let plain = "GET /api/plain HTTP/1.1\r\nHost: x\r\n\r\n";
    let text = raw(d.addr, format!("{plain}{cl_te}").as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(plain.as_bytes()).await.unwrap();
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    s.write_all(cl_te.as_bytes()).await.unwrap();
    let rest = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 400"), "{rest}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.hits(),
        2,
        "only the two plain requests reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_malformed_requests_then_a_good_one() {
    let (d, _app) = daemon(&[]).await;
    let bad: [&[u8]; 8] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nHo(st: x\r\n\r\n",
    ];
    for i in 0..200 {
        let text = raw(d.addr, bad[i % bad.len()]).await;
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 4"),
            "case {}: {text}",
            i % bad.len()
        );
    }
    assert_eq!(fetch(d.addr, "/healthz").await.status, 200);
    assert_eq!(fetch(d.addr, "/api/ok").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_makes_excess_wait_and_the_daemon_stays_responsive() {
    let (d, _app) = daemon(&["max_connections = 2"]).await;
    let mut a = Conn::open(d.addr).await;
    let mut b = Conn::open(d.addr).await;
    assert_eq!(a.get("/api/a").await.status, 200);
    assert_eq!(b.get("/api/b").await.status, 200);
    let addr = d.addr;
    let third = tokio::spawn(async move { fetch(addr, "/api/c").await.status.as_u16() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beyond max_connections"
    );
    drop(a);
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("third served once a slot freed");
    assert_eq!(status.unwrap(), 200);
    assert_eq!(b.get("/api/b2").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_and_a_normal_request_is_still_served() {
    let (d, _app) = daemon(&[]).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(d.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert_eq!(fetch(d.addr, "/api/normal").await.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_owned();
    println!("with 1000 idle connections: {rss}");
}
