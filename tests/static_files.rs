//! The web root through the real binary: types, HEAD, index, 301, 405, and every
//! path-safety rule (traversal, encoded separators, NUL, dotfiles, symlinks).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;

const SECRET: &str = "TOP-SECRET-CONTENT";

/// A web root `www/` beside a secret file outside it, and the daemon serving it with
/// fallback to an upstream.
async fn site() -> (Daemon, Upstream) {
    site_with("").await
}

/// `site`, with more keys in `[static]`.
async fn site_with(static_extra: &str) -> (Daemon, Upstream) {
    let app = Upstream::start("app").await;
    let dir = scratch();
    let www = dir.path().join("www");
    build_root(&www, dir.path());
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .extra(&format!("[static]\nroot = \"www\"\n{static_extra}\n[[static.cache]]\npath_prefix = \"/assets/\"\ncache_control = \"public, max-age=60\"\n"))
        .build();
    (Daemon::start_in(dir, &conf), app)
}

fn build_root(www: &Path, outside: &Path) {
    let w = |p: &str, c: &[u8]| {
        let path = www.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    };
    w("index.html", b"<h1>home</h1>");
    w("assets/app.js", b"console.log(1)");
    w("assets/style.css", b"body{}");
    w("data.json", b"{}");
    w("logo.png", b"\x89PNG");
    w("docs/index.html", b"docs index");
    w("empty/.keep", b"");
    w(".env", SECRET.as_bytes());
    w(".git/config", SECRET.as_bytes());
    w(".well-known/security.txt", b"contact: ops");
    w("a b.txt", b"space");
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    symlink(outside.join("secret.txt"), www.join("escape.txt")).unwrap();
    symlink(outside, www.join("escape-dir")).unwrap();
    symlink("assets/app.js", www.join("inside-link.js")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_lengths_and_validators() {
    let (d, _app) = site().await;
    for (path, ty, body) in [
        ("/index.html", "text/html; charset=utf-8", "<h1>home</h1>"),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "console.log(1)",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", "body{}"),
        ("/data.json", "application/json; charset=utf-8", "{}"),
        ("/logo.png", "image/png", "\u{fffd}PNG"),
        ("/a%20b.txt", "text/plain; charset=utf-8", "space"),
    ] {
        let r = fetch(d.addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
        assert_eq!(r.text(), body, "{path}");
    }
    let r = fetch(d.addr, "/assets/app.js").await;
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(
        fetch(d.addr, "/index.html").await.header("cache-control"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_headers_and_no_body() {
    let (d, _app) = site().await;
    let text = raw(
        d.addr,
        b"HEAD /assets/app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-length: 14\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "HEAD carried a body: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_files_and_directory_redirects() {
    let (d, app) = site().await;
    assert_eq!(fetch(d.addr, "/").await.text(), "<h1>home</h1>");
    assert_eq!(fetch(d.addr, "/docs/").await.text(), "docs index");
    let r = fetch(d.addr, "/docs?x=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    // A directory without an index falls through to the upstream, like try_files $uri $uri/ @app.
    let r = fetch(d.addr, "/empty/").await;
    assert_eq!(r.header("x-upstream"), Some("app"));
    assert_eq!(app.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_on_files_are_405_and_elsewhere_proxied() {
    let (d, app) = site().await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = send(d.addr, request(method, "/index.html", "x")).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    let r = send(d.addr, request("POST", "/api/orders", "x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["method"], "POST");
    assert_eq!(app.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_dotfiles_and_encoded_separators_never_leak() {
    let (d, app) = site().await;
    let cases = [
        ("/../secret.txt", 404),
        ("/assets/../../secret.txt", 404),
        ("/%2e%2e/secret.txt", 404),
        ("/%2E%2E/%2e%2e/secret.txt", 404),
        ("/assets/%2e%2e/%2e%2e/secret.txt", 404),
        ("/..%2fsecret.txt", 404),
        ("/assets%2fapp.js", 404),
        ("/assets%2Fapp.js", 404),
        ("/..%5csecret.txt", 404),
        ("/.env", 404),
        ("/%2eenv", 404),
        ("/.git/config", 404),
        ("/assets/.hidden", 404),
        ("/escape.txt", 404),
        ("/escape-dir/secret.txt", 404),
        ("/index.html%00.png", 400),
        ("/bad%zzescape", 400),
        ("/%ff", 400),
    ];
    for (path, status) in cases {
        let (got, text) = raw_get(d.addr, path).await;
        assert_eq!(got, status, "{path}: {text}");
        assert!(!text.contains(SECRET), "{path} leaked the secret");
    }
    assert_eq!(app.hits(), 0, "a refused path was passed to the upstream");
    let (status, text) = raw_get(d.addr, "/.well-known/security.txt").await;
    assert_eq!(status, 200);
    assert!(text.ends_with("contact: ops"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_inside_the_root_are_followed() {
    let (d, _app) = site().await;
    let r = fetch(d.addr, "/inside-link.js").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "console.log(1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_streams_whole() {
    let (d, _app) = site().await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.path().join("www/big.bin"), &big).unwrap();
    let r = fetch(d.addr, "/big.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-length"), Some("3000000"));
    assert!(r.body == big, "streamed body differs");
}

/// Pages already in the page cache are copied by the worker itself; a file the kernel has to
/// read from disk takes the blocking path. Evicting the file first makes the first chunks
/// cold, so both paths must agree byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_evicted_from_the_page_cache_streams_whole() {
    use std::os::fd::AsRawFd;
    let (d, _app) = site().await;
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let path = d.path().join("www/cold.bin");
    std::fs::write(&path, &big).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: plain advisory call on a descriptor we own.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let r = fetch(d.addr, "/cold.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "streamed body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_changes_are_visible_within_a_second() {
    let (d, app) = site().await;
    let www = d.path().join("www");
    // A miss first (proxied), then the file appears.
    assert_eq!(
        fetch(d.addr, "/new.html").await.header("x-upstream"),
        Some("app")
    );
    std::fs::write(www.join("new.html"), "v1").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(fetch(d.addr, "/new.html").await.text(), "v1");
    // Replaced atomically, as a deploy does.
    std::fs::write(www.join("new.html.tmp"), "version two").unwrap();
    std::fs::rename(www.join("new.html.tmp"), www.join("new.html")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = fetch(d.addr, "/new.html").await;
    assert_eq!(r.text(), "version two");
    assert_eq!(r.header("content-length"), Some("11"));
    // Removed: back to the upstream.
    std::fs::remove_file(www.join("new.html")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        fetch(d.addr, "/new.html").await.header("x-upstream"),
        Some("app")
    );
    assert_eq!(app.hits(), 2);
}

/// Large bodies read and written (the default), or, with `sendfile = true`, sent from the
/// page cache where it holds them and read where it does not: ranges with unaligned
/// starts, across the stretches the two paths take turns on, pipelined on one keep-alive
/// connection, byte for byte as on disk, and the connection still framed right for the
/// request after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_ranges_are_exact_from_cache_and_from_disk_on_one_connection() {
    for sendfile in [false, true] {
        let (d, _app) = site_with(&format!("sendfile = {sendfile}")).await;
        large_ranges_on_one_connection(&d).await;
    }
}

async fn large_ranges_on_one_connection(d: &Daemon) {
    use std::os::fd::AsRawFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let big: Vec<u8> = (0..3_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = d.path().join("www/ranges.bin");
    std::fs::write(&path, &big).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    file.sync_all().unwrap();
    let ranges: [(usize, usize); 4] = [
        (1_000, 2_500_000),
        (big.len() - 1_048_577, big.len() - 1),
        (4_095, 4_096 + 1_048_576),
        (0, big.len() - 1),
    ];
    for evict in [true, false] {
        if evict {
            // SAFETY: plain advisory call on a descriptor we own.
            let rc =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(rc, 0);
        }
        let mut stream = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        let mut reqs = String::new();
        for (first, last) in ranges {
            reqs += &format!(
                "GET /ranges.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={first}-{last}\r\n\r\n"
            );
        }
        reqs += "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        stream.write_all(reqs.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            stream.read_to_end(&mut got),
        )
        .await
        .expect("all responses within 20 s")
        .unwrap();
        let mut rest = &got[..];
        for (first, last) in ranges {
            let (head, body) = split_response(&mut rest);
            assert!(head.starts_with("http/1.1 206"), "{head}");
            assert!(
                head.contains(&format!(
                    "content-range: bytes {first}-{last}/{}",
                    big.len()
                )),
                "{head}"
            );
            assert!(
                body == &big[first..=last],
                "bytes {first}-{last}, evicted: {evict}"
            );
        }
        let (head, body) = split_response(&mut rest);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"<h1>home</h1>");
        assert!(rest.is_empty(), "nothing after the last response");
    }
}

/// The next response off `rest` (which must have a Content-Length): its head as text and
/// its body.
fn split_response<'a>(rest: &mut &'a [u8]) -> (String, &'a [u8]) {
    let end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head")
        + 4;
    let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    assert!(rest.len() >= end + len, "body cut short: {head}");
    let body = &rest[end..end + len];
    *rest = &rest[end + len..];
    (head, body)
}
