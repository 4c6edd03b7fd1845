//! HTTP caching semantics of static files through the real binary: validators and 304,
//! ranges and 416, precompressed variants, the single-page-app fallback, and bounded
//! memory while streaming a 1 GiB file.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JS: &str = "console.log('the identity representation');";

async fn site(static_extra: &str) -> (Daemon, Upstream) {
    let app = Upstream::start("app").await;
    let dir = scratch();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("assets")).unwrap();
    std::fs::write(www.join("index.html"), "<html>spa</html>").unwrap();
    std::fs::write(www.join("assets/app.js"), JS).unwrap();
    std::fs::write(www.join("assets/app.js.br"), "BROTLI-BYTES").unwrap();
    std::fs::write(www.join("assets/app.js.gz"), "GZIP-BYTES-LONGER").unwrap();
    std::fs::write(www.join("plain.txt"), "0123456789abcdefghij").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(www.join("big.bin"), big).unwrap();
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .extra(&format!("[static]\nroot = \"www\"\n{static_extra}\n"))
        .build();
    (Daemon::start_in(dir, &conf), app)
}

async fn get_with(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = get(path);
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    send(d.addr, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_and_304() {
    let (d, _app) = site("").await;
    let r = fetch(d.addr, "/plain.txt").await;
    let etag = r.header("etag").unwrap().to_owned();
    let modified = r.header("last-modified").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(r.header("accept-ranges"), Some("bytes"));

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".to_owned(),
    ] {
        let r = get_with(&d, "/plain.txt", &[("if-none-match", &inm)]).await;
        assert_eq!(r.status, 304, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("last-modified"), Some(modified.as_str()));
    }
    assert_eq!(
        get_with(&d, "/plain.txt", &[("if-none-match", "\"nope\"")])
            .await
            .status,
        200
    );
    assert_eq!(
        get_with(&d, "/plain.txt", &[("if-modified-since", &modified)])
            .await
            .status,
        304
    );
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(
        get_with(&d, "/plain.txt", &[("if-modified-since", past)])
            .await
            .status,
        200
    );
    // If-None-Match wins over If-Modified-Since.
    let r = get_with(
        &d,
        "/plain.txt",
        &[
            ("if-none-match", "\"nope\""),
            ("if-modified-since", &modified),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "0123456789abcdefghij");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_ranges_416_and_if_range() {
    let (d, _app) = site("").await;
    let cases = [
        ("bytes=0-3", 206, "0123", Some("bytes 0-3/20")),
        ("bytes=15-", 206, "fghij", Some("bytes 15-19/20")),
        ("bytes=-2", 206, "ij", Some("bytes 18-19/20")),
        ("bytes=10-99", 206, "abcdefghij", Some("bytes 10-19/20")),
        ("bytes=0-0,5-6", 200, "0123456789abcdefghij", None),
        (
            "bytes=20-",
            416,
            "416 range not satisfiable\n",
            Some("bytes */20"),
        ),
    ];
    for (range, status, body, content_range) in cases {
        let r = get_with(&d, "/plain.txt", &[("range", range)]).await;
        assert_eq!(r.status, status, "{range}");
        assert_eq!(r.text(), body, "{range}");
        assert_eq!(r.header("content-range"), content_range, "{range}");
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }
    let etag = fetch(d.addr, "/plain.txt")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let r = get_with(
        &d,
        "/plain.txt",
        &[("range", "bytes=0-1"), ("if-range", &etag)],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (206, "01"));
    let r = get_with(
        &d,
        "/plain.txt",
        &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!(r.status, 200);
    // HEAD ignores Range and describes the whole file.
    let text = raw(
        d.addr,
        b"HEAD /plain.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("content-length: 20\r\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_a_streamed_file() {
    let (d, _app) = site("").await;
    let r = get_with(&d, "/big.bin", &[("range", "bytes=100000-299999")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body.len(), 200_000);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == ((i + 100_000) % 251) as u8));
    assert_eq!(
        r.header("content-range"),
        Some("bytes 100000-299999/300000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_variants_by_accept_encoding() {
    let (d, _app) = site("").await;
    let cases = [
        ("gzip, deflate, br", "BROTLI-BYTES", Some("br")),
        ("gzip", "GZIP-BYTES-LONGER", Some("gzip")),
        ("br;q=0.2, gzip;q=0.9", "GZIP-BYTES-LONGER", Some("gzip")),
        ("identity", JS, None),
    ];
    let mut etags = Vec::new();
    for (accept, body, encoding) in cases {
        let r = get_with(&d, "/assets/app.js", &[("accept-encoding", accept)]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), body, "{accept}");
        assert_eq!(r.header("content-encoding"), encoding, "{accept}");
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        etags.push(r.header("etag").unwrap().to_owned());
    }
    assert_ne!(etags[0], etags[1]);
    assert_ne!(etags[0], etags[3]);
    assert_ne!(etags[1], etags[3]);
    let r = fetch(d.addr, "/assets/app.js").await;
    assert_eq!(
        r.text(),
        JS,
        "no Accept-Encoding must get the identity file"
    );

    // HEAD, 304 and Range work on a variant too.
    let text = raw(d.addr, b"HEAD /assets/app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n").await;
    assert!(
        text.contains("content-encoding: br\r\n") && text.contains("content-length: 12\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n"));
    let r = get_with(
        &d,
        "/assets/app.js",
        &[("accept-encoding", "br"), ("if-none-match", &etags[0])],
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = get_with(
        &d,
        "/assets/app.js",
        &[("accept-encoding", "br"), ("range", "bytes=0-5")],
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (206, "BROTLI"));
    assert_eq!(r.header("content-range"), Some("bytes 0-5/12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_off_serves_only_the_file() {
    let (d, _app) = site("precompressed = false").await;
    let r = get_with(&d, "/assets/app.js", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(r.text(), JS);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spa_fallback_serves_pages_but_not_missing_assets() {
    let (d, app) = site("fallback = \"index\"").await;
    let r = fetch(d.addr, "/users/42/settings").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "<html>spa</html>")
    );
    assert_eq!(fetch(d.addr, "/assets/app.3f2a.js").await.status, 404);
    assert_eq!(fetch(d.addr, "/favicon.ico").await.status, 404);
    assert_eq!(app.hits(), 0);
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Reads the response to a GET of `path`, stopping after `limit` body bytes; returns the
/// body bytes read.
async fn stream_body(addr: std::net::SocketAddr, path: &str, limit: u64) -> u64 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let mut body = 0u64;
    while body < limit {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            body += n as u64;
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            body += (head.len() - end - 4) as u64;
        }
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1gib_file_streams_in_bounded_memory_and_a_disconnect_frees_it() {
    let (d, _app) = site("").await;
    const GIB: u64 = 1 << 30;
    let f = std::fs::File::create(d.path().join("www/huge.bin")).unwrap();
    f.set_len(GIB).unwrap(); // sparse: no disk needed
    drop(f);
    let pid = d.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = std::sync::Arc::clone(&sampling);
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    assert_eq!(stream_body(d.addr, "/huge.bin", u64::MAX).await, GIB);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap();
    assert!(
        peak_kib > 0 && peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB while streaming 1 GiB"
    );

    // Clients that leave after 16 MiB: their connections and their use of the file are
    // released. The lookup cache of each worker thread may keep one descriptor of the
    // file (like nginx's open_file_cache), so after five abandoned downloads the daemon
    // may hold at most one more descriptor per worker than after the first download;
    // a leak would add one per abandoned download.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_fds = open_fds(pid);
    let workers = std::thread::available_parallelism().unwrap().get();
    for _ in 0..5 {
        assert!(stream_body(d.addr, "/huge.bin", 16 << 20).await >= 16 << 20);
    }
    let allowed = baseline_fds + workers;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open_fds(pid) > allowed && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        open_fds(pid) <= allowed,
        "fds {} > {allowed} (baseline {baseline_fds} + {workers} workers)",
        open_fds(pid)
    );
    assert_eq!(fetch(d.addr, "/plain.txt").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_replaced_meanwhile_is_never_mixed_with_stale_headers() {
    let (d, _app) = site("").await;
    let www = d.path().join("www");
    let old: Vec<u8> = vec![b'A'; 300_000];
    std::fs::write(www.join("bundle.bin"), &old).unwrap();
    // One connection, so the same worker (and the same cached lookup) answers both.
    let mut conn = Conn::open(d.addr).await;
    let first = conn.get("/bundle.bin").await;
    assert_eq!(first.body.len(), 300_000);
    // A deploy renames a different, larger file into place within the cache's second.
    std::fs::write(www.join("bundle.bin.new"), vec![b'B'; 400_000]).unwrap();
    std::fs::rename(www.join("bundle.bin.new"), www.join("bundle.bin")).unwrap();
    let r = conn.get("/bundle.bin").await;
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(r.body.len(), len, "body length differs from Content-Length");
    let uniform = r.body.iter().all(|b| *b == r.body[0]);
    assert!(uniform, "bytes of two versions mixed in one response");
    let etag_matches = (r.body[0] == b'A') == (r.header("etag") == first.header("etag"));
    assert!(etag_matches, "content and ETag are from different versions");
}
