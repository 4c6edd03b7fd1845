//! Request handling order: endpoints, `[[routes]]` by host and path prefix, the web root,
//! then `fallback`.

mod common;

use common::*;

struct Apps {
    app: Upstream,
    grafana: Upstream,
    other: Upstream,
}

async fn apps() -> Apps {
    Apps {
        app: Upstream::start("app").await,
        grafana: Upstream::start("grafana").await,
        other: Upstream::start("other").await,
    }
}

fn routed(a: &Apps, routes: &str) -> Daemon {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/grafana"), "a file named like a route").unwrap();
    std::fs::write(dir.path().join("www/page.html"), "static page").unwrap();
    let conf = Conf::new("app")
        .upstream("app", a.app.addr)
        .upstream("grafana", a.grafana.addr)
        .upstream("other", a.other.addr)
        .extra("[static]\nroot = \"www\"\n")
        .extra(routes)
        .build();
    Daemon::start_in(dir, &conf)
}

async fn upstream_of(d: &Daemon, host: &str, path: &str) -> String {
    let mut req = get(path);
    req.headers_mut().insert("host", host.parse().unwrap());
    let r = send(d.addr, req).await;
    r.header("x-upstream").unwrap_or("-").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_exact_wildcard_case_and_port() {
    let a = apps().await;
    let d = routed(
        &a,
        "[[routes]]\nhost = \"grafana.example.com\"\nupstream = \"grafana\"\n\n[[routes]]\nhost = \"*.tools.example.com\"\nupstream = \"other\"\n",
    );
    assert_eq!(
        upstream_of(&d, "grafana.example.com", "/api/x").await,
        "grafana"
    );
    assert_eq!(
        upstream_of(&d, "GRAFANA.Example.com:80", "/").await,
        "grafana"
    );
    assert_eq!(upstream_of(&d, "a.tools.example.com", "/x").await, "other");
    assert_eq!(
        upstream_of(&d, "a.b.tools.example.com", "/x").await,
        "other"
    );
    assert_eq!(upstream_of(&d, "tools.example.com", "/x").await, "app");
    assert_eq!(upstream_of(&d, "example.com", "/x").await, "app");
    // A host route claims even paths the web root has.
    assert_eq!(
        upstream_of(&d, "grafana.example.com", "/page.html").await,
        "grafana"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_routes_match_whole_segments_and_redirect_the_bare_prefix() {
    let a = apps().await;
    let d = routed(
        &a,
        "[[routes]]\npath_prefix = \"/grafana/\"\nupstream = \"grafana\"\n",
    );
    let r = fetch(d.addr, "/grafana/api/health?x=1").await;
    assert_eq!(r.header("x-upstream"), Some("grafana"));
    assert_eq!(
        r.json()["uri"],
        "/grafana/api/health?x=1",
        "prefix kept without strip_prefix"
    );
    let r = fetch(d.addr, "/grafana?orgId=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/grafana/?orgId=1"));
    assert_eq!(upstream_of(&d, "x", "/grafanax/y").await, "app");
    assert_eq!(a.grafana.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_removes_the_prefix() {
    let a = apps().await;
    let d = routed(
        &a,
        "[[routes]]\npath_prefix = \"/grafana/\"\nstrip_prefix = true\nupstream = \"grafana\"\n\n[[routes]]\npath_prefix = \"/other\"\nstrip_prefix = true\nupstream = \"other\"\n",
    );
    assert_eq!(
        fetch(d.addr, "/grafana/api/x?y=1").await.json()["uri"],
        "/api/x?y=1"
    );
    assert_eq!(fetch(d.addr, "/grafana/").await.json()["uri"], "/");
    // Without a trailing slash in the config, the bare prefix is proxied, not redirected.
    assert_eq!(fetch(d.addr, "/other").await.json()["uri"], "/");
    assert_eq!(fetch(d.addr, "/other?q").await.json()["uri"], "/?q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_route_wins_and_both_matchers_must_match() {
    let a = apps().await;
    let d = routed(
        &a,
        "[[routes]]\nhost = \"grafana.example.com\"\npath_prefix = \"/api/\"\nupstream = \"other\"\n\n[[routes]]\nhost = \"grafana.example.com\"\nupstream = \"grafana\"\n\n[[routes]]\npath_prefix = \"/api/\"\nupstream = \"grafana\"\n",
    );
    assert_eq!(
        upstream_of(&d, "grafana.example.com", "/api/a").await,
        "other"
    );
    assert_eq!(
        upstream_of(&d, "grafana.example.com", "/ui").await,
        "grafana"
    );
    assert_eq!(
        upstream_of(&d, "shop.example.com", "/api/a").await,
        "grafana"
    );
    assert_eq!(upstream_of(&d, "shop.example.com", "/ui").await, "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_come_before_routes_and_files() {
    let a = apps().await;
    let d = routed(
        &a,
        "[[routes]]\npath_prefix = \"/\"\nupstream = \"grafana\"\n",
    );
    let r = fetch(d.addr, "/healthz").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        (
            j["status"].as_str(),
            j["active"].as_str(),
            j["generation"].as_u64()
        ),
        (Some("ok"), Some("app"), Some(1))
    );
    assert_eq!(j["config"].as_str().map(str::len), Some(12));
    let r = fetch(d.addr, "/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["upstream"], "up");
    assert_eq!(upstream_of(&d, "x", "/page.html").await, "grafana");
    assert_eq!(a.grafana.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_when_the_active_upstream_is_down() {
    let conf = Conf::new("blue").upstream("blue", dead_addr()).build();
    let d = Daemon::start(&conf);
    let r = fetch(d.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["upstream"], "down");
    assert_eq!(fetch(d.addr, "/healthz").await.status, 200);
}

async fn with_fallback(fallback: &str) -> (Daemon, Upstream) {
    let app = Upstream::start("app").await;
    let dir = scratch();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "spa shell").unwrap();
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .extra(&format!(
            "[static]\nroot = \"www\"\nfallback = \"{fallback}\"\n"
        ))
        .build();
    (Daemon::start_in(dir, &conf), app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_modes() {
    let (d, app) = with_fallback("upstream").await;
    assert_eq!(
        fetch(d.addr, "/users/42").await.header("x-upstream"),
        Some("app")
    );
    assert_eq!(app.hits(), 1);

    let (d, app) = with_fallback("index").await;
    let r = fetch(d.addr, "/users/42").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "spa shell"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        send(d.addr, request("POST", "/users/42", "x")).await.status,
        404
    );
    assert_eq!(app.hits(), 0);

    let (d, app) = with_fallback("404").await;
    let r = fetch(d.addr, "/users/42").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (404, "404 not found\n")
    );
    assert_eq!(fetch(d.addr, "/").await.text(), "spa shell");
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_web_root_everything_is_proxied() {
    let app = Upstream::start("app").await;
    let d = Daemon::start(&Conf::new("app").upstream("app", app.addr).build());
    assert_eq!(
        fetch(d.addr, "/index.html").await.header("x-upstream"),
        Some("app")
    );
    assert_eq!(
        fetch(d.addr, "/.env").await.header("x-upstream"),
        Some("app")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_cannot_walk_out_of_a_route() {
    let a = apps().await;
    let d = routed(
        &a,
        "[[routes]]\npath_prefix = \"/grafana/\"\nupstream = \"grafana\"\n",
    );
    for path in [
        "/grafana/../admin",
        "/grafana/%2e%2e/admin",
        "/grafana/./x",
        "/x/..",
    ] {
        let (status, _) = raw_get(d.addr, path).await;
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(a.grafana.hits() + a.app.hits(), 0);
    // A directory redirect never becomes protocol-relative.
    std::fs::create_dir(d.path().join("www/docs")).unwrap();
    let (status, text) = raw_get(d.addr, "//docs").await;
    assert_eq!(status, 301);
    assert!(text.contains("location: /docs/\r\n"), "{text}");
}
