//! For the monitoring tests: promtool, and a daemon that has seen every kind of answer
//! (proxied, static, switchyard's own, and each way an upstream can fail), so that every
//! metric family and label its dashboard and alerts use is in its `/metrics`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use super::{dead_addr, fetch, raw_get, scratch, Conf, Daemon, ScriptedUpstream, Upstream};

/// Runs `promtool ARGS` (with `stdin` fed to it) and returns (success, stdout + stderr).
/// promtool missing is a failure, not a skip: CI installs it (`.ci/run`).
pub fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let spawned = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run promtool ({e}): install it with \
             `apt-get install -y --no-install-recommends prometheus` (.ci/run does)"
        ),
    };
    let mut input = child.stdin.take().expect("promtool stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write to promtool");
    }
    drop(input);
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// An upstream that fails on purpose, by path: `/reset` closes without answering, `/cut`
/// stops 7 bytes short of its Content-Length, `/garbage` sends a head that is not HTTP.
pub async fn failing_upstream() -> ScriptedUpstream {
    ScriptedUpstream::start(|path| match path.rsplit('/').next().unwrap_or("") {
        "cut" => (
            vec![&b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"[..]],
            true,
        ),
        "garbage" => (vec![&b"HTTP/1.1 two hundred\r\n\r\n"[..]], true),
        _ => (vec![], true),
    })
    .await
}

/// The daemon and what it talks to, after one request of every kind.
pub struct Exercised {
    pub daemon: Daemon,
    pub admin: SocketAddr,
    pub app: Upstream,
    pub failing: ScriptedUpstream,
}

/// Active `app` (with `response_timeout = 300ms`), routes `/dead/` to `dead` (nothing
/// listens) and `/failing/` to `failing_upstream`, and a web root. Sends: 2 requests
/// answered by `app` and one it is too slow for (504), one static file, one health
/// check, one refused (502), and `/failing/{reset,cut,garbage}`.
pub async fn exercised_daemon() -> Exercised {
    let app = Upstream::start("app").await;
    let failing = failing_upstream().await;
    let admin = dead_addr();
    let dir = scratch();
    std::fs::create_dir(dir.path().join("www")).expect("web root");
    std::fs::write(dir.path().join("www/a.txt"), "a").expect("static file");
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .upstream("dead", dead_addr())
        .upstream("failing", failing.addr)
        .server(&format!("admin_listen = \"{admin}\""))
        .server("access_log = \"off\"")
        .extra("[static]\nroot = \"www\"\n")
        .extra("[proxy]\nresponse_timeout = \"300ms\"\n")
        .extra("[[routes]]\npath_prefix = \"/dead/\"\nupstream = \"dead\"\n")
        .extra("[[routes]]\npath_prefix = \"/failing/\"\nupstream = \"failing\"\n")
        // A canary that gets no clients: its weight and state are exported all the same.
        .extra(&format!(
            "[upstreams.next]\nurl = \"http://{}\"\nhealth = \"/health\"\n[canary]\nupstream = \"next\"\nweight = 0\n",
            app.addr
        ))
        .build();
    let daemon = Daemon::start_in(dir, &conf);
    let addr = daemon.addr;
    for (path, status) in [
        ("/api/one", 200),
        ("/api/two", 200),
        ("/slow/2000", 504),
        ("/a.txt", 200),
        ("/healthz", 200),
        ("/dead/x", 502),
        ("/failing/reset", 502),
        ("/failing/garbage", 502),
    ] {
        assert_eq!(fetch(addr, path).await.status, status, "GET {path}");
    }
    // The head went out before the cut: the client sees 200 and a short body.
    let (status, text) = raw_get(addr, "/failing/cut").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("\r\n\r\nabc"), "{text:?}");
    Exercised {
        daemon,
        admin,
        app,
        failing,
    }
}

/// The `/metrics` text, as Prometheus would scrape it.
pub async fn scrape(admin: SocketAddr) -> String {
    let reply = fetch(admin, "/metrics").await;
    assert_eq!(reply.status, 200);
    reply.text()
}
