//! Proxying through the real binary to real upstreams: bodies, headers, forwarded headers
//! for trusted and untrusted peers, hop-by-hop stripping, 502, 504 and 413.

mod common;

use std::time::Duration;

use common::*;

async fn proxy_with(server_lines: &[&str], extra: &str) -> (Daemon, Upstream) {
    let app = Upstream::start("app").await;
    let mut conf = Conf::new("app").upstream("app", app.addr).extra(extra);
    for line in server_lines {
        conf = conf.server(line);
    }
    (Daemon::start(&conf.build()), app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_with_bodies_stream_through() {
    let (d, _app) = proxy_with(&[], "").await;
    let body = vec![b'x'; 300_000];
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let r = send(d.addr, request(method, "/echo", body.clone())).await;
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.body.len(), body.len(), "{method}");
        assert_eq!(r.header("x-upstream"), Some("app"));
    }
    let r = send(d.addr, request("OPTIONS", "/api/x?q=1&r=%20", "")).await;
    let seen = r.json();
    assert_eq!(seen["method"], "OPTIONS");
    assert_eq!(seen["uri"], "/api/x?q=1&r=%20");
    assert_eq!(seen["version"], "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_pass_both_ways_and_host_is_preserved() {
    let (d, _app) = proxy_with(&[], "").await;
    let mut req = request("GET", "/api/h", "");
    let h = req.headers_mut();
    h.insert("host", "shop.example.com".parse().unwrap());
    h.insert("x-custom", "kept".parse().unwrap());
    h.insert("authorization", "Bearer t".parse().unwrap());
    h.insert("cookie", "a=1".parse().unwrap());
    let r = send(d.addr, req).await;
    let seen = &r.json()["headers"];
    assert_eq!(seen["host"], "shop.example.com");
    assert_eq!(seen["x-custom"], "kept");
    assert_eq!(seen["authorization"], "Bearer t");
    assert_eq!(seen["cookie"], "a=1");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let (d, _app) = proxy_with(&[], "").await;
    let req = b"GET /hop HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-client-private\r\nX-Client-Private: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: foo\r\nX-End: 1\r\n\r\n";
    let text = raw(d.addr, req).await;
    let (head, body) = text.split_once("\r\n\r\n").expect("response");
    let seen: serde_json::Value = serde_json::from_str(body.trim()).expect("json body");
    let headers = seen["headers"].as_object().unwrap();
    for gone in [
        "x-client-private",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the upstream: {headers:?}"
        );
    }
    assert_eq!(headers["x-end"], "1");
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("x-upstream-private"), "{head}");
    assert!(!head.contains("keep-alive: timeout=5"), "{head}");
    assert!(head.contains("x-kept: yes"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let (d, _app) = proxy_with(&["trusted_proxies = [\"10.0.0.0/8\"]"], "").await;
    let mut req = request("GET", "/api/f", "");
    let h = req.headers_mut();
    h.insert("host", "app.example.com".parse().unwrap());
    h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    h.insert("x-forwarded-host", "evil.example".parse().unwrap());
    h.insert("x-real-ip", "6.6.6.6".parse().unwrap());
    h.insert("forwarded", "for=6.6.6.6".parse().unwrap());
    let seen = send(d.addr, req).await.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "app.example.com");
    assert!(seen.get("forwarded").is_none(), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_a_trusted_peer_are_kept_and_appended() {
    let (d, _app) = proxy_with(&["trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]"], "").await;
    let mut req = request("GET", "/api/f", "");
    let h = req.headers_mut();
    h.insert("host", "app.example.com".parse().unwrap());
    h.insert("x-forwarded-for", "203.0.113.7, 10.1.2.3".parse().unwrap());
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    h.insert("x-forwarded-host", "www.example.com".parse().unwrap());
    let seen = send(d.addr, req).await.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 10.1.2.3, 127.0.0.1");
    assert_eq!(seen["x-real-ip"], "203.0.113.7");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "www.example.com");

    // Without forwarded headers a trusted peer still gets them set from this hop.
    let seen = fetch(d.addr, "/api/f").await.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_and_logged_by_name() {
    let dead = dead_addr();
    let conf = Conf::new("blue").upstream("blue", dead).build();
    let mut d = Daemon::start(&conf);
    let r = fetch(d.addr, "/api/x").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "502 bad gateway\n");
    assert!(!r.text().contains("127.0.0.1"));
    let line = d.wait_for_log("unreachable", Duration::from_secs(5));
    assert!(
        line.contains("ERROR")
            && line.contains("upstream blue")
            && line.contains(&dead.to_string()),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_after_response_timeout() {
    let (mut d, _app) = proxy_with(&[], "[proxy]\nresponse_timeout = \"300ms\"\n").await;
    let started = std::time::Instant::now();
    let r = fetch(d.addr, "/slow/3000").await;
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "504 gateway timeout\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let line = d.wait_for_log("sent no response headers", Duration::from_secs(5));
    assert!(line.contains("upstream app"), "{line}");
    // The same connection setup still works for a fast request afterwards.
    assert_eq!(fetch(d.addr, "/slow/10").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_body_over_the_limit_is_413_and_not_forwarded() {
    let (d, app) = proxy_with(&["max_request_body = \"1KiB\""], "").await;
    let r = send(d.addr, request("POST", "/echo", vec![b'x'; 2048])).await;
    assert_eq!(r.status, 413);
    assert_eq!(app.hits(), 0);
    let r = send(d.addr, request("POST", "/echo", vec![b'x'; 1024])).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let (d, app) = proxy_with(&[], "").await;
    let mut conn = Conn::open(d.addr).await;
    for _ in 0..20 {
        assert_eq!(conn.get("/api/x").await.status, 200);
    }
    for _ in 0..5 {
        assert_eq!(fetch(d.addr, "/api/y").await.status, 200);
    }
    assert_eq!(app.hits(), 25);
    // Each worker thread (one per core) keeps its own pool.
    let workers = std::thread::available_parallelism().unwrap().get();
    assert!(
        app.conns() <= workers,
        "{} upstream connections for 25 sequential requests and {workers} workers",
        app.conns()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_request_without_host_gets_the_upstream_authority() {
    let (d, app) = proxy_with(&[], "").await;
    let text = raw(d.addr, b"GET /api/old HTTP/1.0\r\n\r\n").await;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let seen: serde_json::Value = serde_json::from_str(body).expect("json body");
    assert_eq!(seen["headers"]["host"], app.addr.to_string());
}

/// One daemon worker so that consecutive requests share one upstream pool.
async fn through_closing_upstream() -> (Daemon, ClosingUpstream) {
    let up = ClosingUpstream::start().await;
    let conf = Conf::new("app").upstream("app", up.addr).build();
    (Daemon::start(&conf), up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_request_on_a_closed_pooled_connection_is_retried_once() {
    let (mut d, up) = through_closing_upstream().await;
    let mut conn = Conn::open(d.addr).await;
    // Every second request on a pooled connection meets a close; each must still succeed.
    for i in 0..6 {
        let r = conn.get(&format!("/api/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), "fresh");
    }
    let received = up.received();
    assert!(
        received.len() > 6,
        "no stale connection was ever met: {received:?}"
    );
    d.wait_for_log("retrying GET /api/", Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_never_replayed() {
    let (d, up) = through_closing_upstream().await;
    let mut conn = Conn::open(d.addr).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = conn
            .send(request("POST", &format!("/api/order/{i}"), "x=1"))
            .await;
        statuses.push(r.status.as_u16());
    }
    assert!(
        statuses.contains(&502),
        "a POST met no closed connection: {statuses:?}"
    );
    // Each POST reached the upstream exactly once.
    let received = up.received();
    for i in 0..6 {
        let line = format!("POST /api/order/{i} HTTP/1.1");
        assert_eq!(
            received.iter().filter(|l| **l == line).count(),
            1,
            "{line}: {received:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_limit_is_cut_off_with_413() {
    let (d, app) = proxy_with(&["max_request_body = \"1KiB\""], "").await;
    let mut body = String::new();
    for _ in 0..4 {
        body.push_str(&format!("{:x}\r\n{}\r\n", 512, "y".repeat(512)));
    }
    body.push_str("0\r\n\r\n");
    let req = format!("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    let text = raw(d.addr, req.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // Under the limit, chunked bodies stream through.
    let mut small = String::new();
    small.push_str(&format!("{:x}\r\n{}\r\n0\r\n\r\n", 600, "z".repeat(600)));
    let req = format!("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{small}");
    let text = raw(d.addr, req.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(&"z".repeat(600)));
    let _ = app;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_peers_and_cidrs() {
    let app = Upstream::start("app").await;
    let conf = Conf::new("app")
        .listen("[::1]:0")
        .upstream("app", app.addr)
        .server("trusted_proxies = [\"::1/128\"]")
        .build();
    let d = Daemon::start(&conf);
    assert!(d.addr.is_ipv6());
    let mut req = get("/api/v6");
    req.headers_mut()
        .insert("x-forwarded-for", "2001:db8::5, ::1".parse().unwrap());
    let seen = send(d.addr, req).await.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], "2001:db8::5, ::1, ::1");
    assert_eq!(seen["x-real-ip"], "2001:db8::5");

    let untrusted = Conf::new("app")
        .listen("[::1]:0")
        .upstream("app", app.addr)
        .build();
    let d = Daemon::start(&untrusted);
    let mut req = get("/api/v6");
    req.headers_mut()
        .insert("x-forwarded-for", "2001:db8::5".parse().unwrap());
    req.headers_mut()
        .insert("x-real-ip", "2001:db8::5".parse().unwrap());
    let seen = send(d.addr, req).await.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], "::1");
    assert_eq!(seen["x-real-ip"], "::1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_and_proxied_over_http1() {
    let (d, _app) = proxy_with(&[], "").await;
    let stream = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    for i in 0..3 {
        let req = http::Request::builder()
            .uri(format!("http://shop.example.com/api/h2/{i}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let res = sender.send_request(req).await.expect("h2 response");
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), http::Version::HTTP_2);
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["version"], "HTTP/1.1");
        assert_eq!(seen["headers"]["host"], "shop.example.com");
        assert_eq!(seen["uri"], format!("/api/h2/{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_delete_forwarded_headers_or_host() {
    let (d, _app) = proxy_with(&["trusted_proxies = [\"127.0.0.0/8\"]"], "").await;
    let mut req = request("GET", "/api/f", "");
    let h = req.headers_mut();
    h.insert("host", "app.example.com".parse().unwrap());
    h.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    h.insert(
        "connection",
        "X-Forwarded-For, host, x-real-ip".parse().unwrap(),
    );
    let seen = send(d.addr, req).await.json()["headers"].clone();
    assert_eq!(seen["host"], "app.example.com");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-real-ip"], "203.0.113.7");
}

/// Bodies that arrive with their heads, pipelined on one keep-alive connection: each
/// reaches the app whole and the connection goes on with the request after it. One over
/// `max_request_body` is answered 413 without reaching the app, and (as nginx does) the
/// connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_read_with_their_heads_are_exact_and_the_connection_goes_on() {
    let (d, app) = proxy_with(&["max_request_body = \"1KiB\""], "").await;
    let one = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let two = "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\nGET /x ";
    let last = "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let text = all_answers(d.addr, &format!("{one}{two}{last}")).await;
    let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{text}");
    assert!(
        answers[0].starts_with("200") && answers[0].ends_with("\r\n\r\nhello"),
        "{text}"
    );
    assert!(
        answers[1].starts_with("200") && answers[1].ends_with("\r\n\r\nGET /x "),
        "{text}"
    );
    assert!(answers[2].starts_with("200"), "{text}");
    assert_eq!(app.hits(), 3);
    let big = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n{}",
        "y".repeat(2000)
    );
    let text = all_answers(d.addr, &format!("{big}{one}")).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    assert_eq!(app.hits(), 3, "the 413 never reached the app");
}

/// Writes `raw` on a new connection and reads until the server closes it.
async fn all_answers(addr: std::net::SocketAddr, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .expect("the server closes within 5 s")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}
