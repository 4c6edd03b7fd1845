//! Canary releases with real upstreams: the split, rollback on a breach, a plan that
//! completes and is promoted by `switchyard canary`, colour affinity for a cookie jar, and
//! a socket.io-style session that survives a switch.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use common::*;

/// One colour of the app: answers `/` with its name, fails every fifth request with 500
/// when `failing`, and keeps socket.io-style sessions: `/socket.io/?transport=polling`
/// opens one (`sid=NAME-N` in the body), `...&sid=X` answers 200 only for its own.
struct App {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
}

impl App {
    async fn start(name: &'static str) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let failing = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let sessions = Arc::new(Mutex::new(HashSet::new()));
        let (f, s) = (Arc::clone(&failing), Arc::clone(&served));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (f, s, sessions) = (Arc::clone(&f), Arc::clone(&s), Arc::clone(&sessions));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let answer = answer(name, &f, &s, &sessions, &req);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        App {
            addr,
            failing,
            served,
        }
    }
}

fn answer(
    name: &str,
    failing: &AtomicBool,
    served: &AtomicU64,
    sessions: &Mutex<HashSet<String>>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("x-colour", name)
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    if path == "/health" {
        return reply(200, "ok".into());
    }
    let n = served.fetch_add(1, Ordering::SeqCst);
    if path.starts_with("/socket.io/") {
        let mut sessions = sessions.lock().expect("sessions");
        return match query.split('&').find_map(|kv| kv.strip_prefix("sid=")) {
            None => {
                let sid = format!("{name}-{n}");
                sessions.insert(sid.clone());
                reply(200, format!("sid={sid}"))
            }
            Some(sid) if sessions.contains(sid) => reply(200, format!("ok {sid}")),
            Some(sid) => reply(400, format!("unknown session {sid}")),
        };
    }
    if failing.load(Ordering::SeqCst) && n % 5 == 4 {
        return reply(500, format!("{name} failed"));
    }
    reply(200, name.into())
}

/// A daemon in front of a blue and a green `App` (blue active), with `canary` (`config`),
/// and the config text it started with.
struct Colours {
    green: App,
    admin: SocketAddr,
    d: Daemon,
    text: String,
}

async fn colours(canary: &str) -> Colours {
    colours_edited(canary, |text| text).await
}

/// `colours`, with the config text edited before the daemon starts.
async fn colours_edited(canary: &str, edit: impl FnOnce(String) -> String) -> Colours {
    let (blue, green) = (App::start("blue").await, App::start("green").await);
    let admin = dead_addr();
    let dir = scratch();
    let text = edit(config(&blue, &green, admin, dir.path(), canary));
    let d = Daemon::start_in(dir, &text);
    Colours {
        green,
        admin,
        d,
        text,
    }
}

/// Blue active, green checked, an admin listener and a pid file, plus `canary`.
fn config(
    blue: &App,
    green: &App,
    admin: SocketAddr,
    dir: &std::path::Path,
    canary: &str,
) -> String {
    Conf::new("blue")
        .server(&format!("admin_listen = \"{admin}\""))
        .server(&format!("pid_file = \"{}\"", dir.join("pid").display()))
        .server("access_log = \"off\"")
        .extra("[proxy]\nhealth_interval = \"100ms\"\n")
        .extra(&format!(
            "[upstreams.blue]\nurl = \"http://{}\"\nhealth = \"/health\"\n[upstreams.green]\nurl = \"http://{}\"\nhealth = \"/health\"\n",
            blue.addr, green.addr
        ))
        .extra(canary)
        .build()
}

async fn canary_status(admin: SocketAddr) -> serde_json::Value {
    fetch(admin, "/status").await.json()["canary"].clone()
}

/// What a stream of requests saw: answers by colour and status, transport failures.
#[derive(Default, Debug)]
struct Tally {
    by: BTreeMap<(String, u16), u64>,
    failed: Vec<String>,
}

impl Tally {
    fn count(&self, colour: &str, status: u16) -> u64 {
        self.by
            .get(&(colour.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

/// Keep-alive requests to `/` from `clients` connections (no cookies) until `stop`.
async fn load(addr: SocketAddr, clients: usize, stop: Arc<AtomicBool>) -> Tally {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = Conn::open(addr).await;
            while !stop.load(Ordering::SeqCst) {
                match conn.try_get("/").await {
                    Ok(r) => {
                        let colour = r.header("x-colour").unwrap_or("none").to_owned();
                        *tally.by.entry((colour, r.status.as_u16())).or_default() += 1;
                    }
                    Err(e) => {
                        tally.failed.push(e);
                        conn = Conn::open(addr).await;
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("load task");
        for (k, v) in t.by {
            *all.by.entry(k).or_default() += v;
        }
        all.failed.extend(t.failed);
    }
    all
}

async fn wait_for_state(admin: SocketAddr, state: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let canary = canary_status(admin).await;
        if canary["state"] == state {
            return canary;
        }
        assert!(
            Instant::now() < deadline,
            "no {state:?} within {within:?}: {canary}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_within_an_interval_and_only_its_own_500s_fail() {
    let Colours { green, admin, mut d, .. } = colours("[canary]\nupstream = \"green\"\nsteps = [50, 100]\ninterval = \"2s\"\nmax_error_ratio = 0.05\naffinity = \"none\"\n").await;
    green.failing.store(true, Ordering::SeqCst);
    d.wait_for_log("canary green: started at 50 %", Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let running = tokio::spawn(load(d.addr, 4, Arc::clone(&stop)));
    let canary = wait_for_state(admin, "rolled back", Duration::from_secs(2)).await;
    let took = started.elapsed();
    let served_at_rollback = green.served.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let tally = running.await.expect("load");

    assert!(took < Duration::from_secs(2), "rolled back after {took:?}");
    assert_eq!(canary["weight"], 0, "{canary}");
    let reason = canary["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("error ratio") && reason.contains("over the limit of 5.00 %"),
        "{reason}"
    );
    let log = d.wait_for_log("rolled back to 0 %", Duration::from_secs(1));
    assert!(log.contains("error ratio"), "{log}");
    // Nothing failed but green's own 500s: no transport error, no 502, no blue error.
    assert!(tally.failed.is_empty(), "{:?}", tally.failed);
    let statuses: Vec<&(String, u16)> = tally.by.keys().collect();
    for (colour, status) in &statuses {
        assert!(
            *status == 200 || (colour == "green" && *status == 500),
            "{tally:?}"
        );
    }
    assert!(tally.count("green", 500) > 0, "{tally:?}");
    // After the rollback green got nothing more (bar requests already on their way).
    assert!(
        green.served.load(Ordering::SeqCst) <= served_at_rollback + 8,
        "{tally:?}"
    );
    assert!(tally.count("blue", 200) > 0);
    // It stays rolled back across a reload of the same file.
    d.reload();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(canary_status(admin).await["state"], "rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_completes_and_the_command_promotes_it() {
    let Colours { admin, mut d, .. } =
        colours_edited("", |text| format!("# the app's two colours\n{text}")).await;
    d.wait_for_log("upstream green", Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(d.addr, 2, Arc::clone(&stop)));
    let path = d.config.to_str().expect("path").to_owned();
    let command = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["30", BIN, "canary", "green", "--config", &path])
            .args([
                "--steps",
                "20,100",
                "--interval",
                "1s",
                "--max-error-ratio",
                "5%",
            ])
            .output()
            .expect("run switchyard canary")
    });
    let out = command.await.expect("command");
    let (code, stdout, stderr) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    stop.store(true, Ordering::SeqCst);
    let tally = running.await.expect("load");

    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("canary green: running, step 1 of 2, 20 % of clients"),
        "{stdout}"
    );
    assert!(stdout.contains("step 2 of 2, 100 % of clients"), "{stdout}");
    assert!(
        stdout.contains("canary green complete: green is active"),
        "{stdout}"
    );
    let file = std::fs::read_to_string(&d.config).expect("config");
    assert!(
        file.starts_with("# the app's two colours\nactive = \"green\"\n"),
        "{file}"
    );
    assert!(!file.contains("[canary]"), "{file}");
    assert!(tally.failed.is_empty(), "{:?}", tally.failed);
    assert!(
        tally.by.keys().all(|(_, status)| *status == 200),
        "{tally:?}"
    );
    assert!(
        tally.count("green", 200) > 0 && tally.count("blue", 200) > 0,
        "{tally:?}"
    );
    let status = fetch(admin, "/status").await.json();
    assert_eq!(
        (status["active"].as_str(), &status["canary"]),
        (Some("green"), &serde_json::Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_jar_keeps_its_colour_throughout_the_plan() {
    let Colours { admin, mut d, .. } = colours("[canary]\nupstream = \"green\"\nsteps = [30, 60]\ninterval = \"1s\"\nmax_error_ratio = 0.5\n").await;
    d.wait_for_log("canary green: started at 30 %", Duration::from_secs(5));
    // Twenty clients get their colour before anything else asks for one.
    let mut jars = Vec::new();
    for _ in 0..20 {
        let mut conn = Conn::open(d.addr).await;
        let first = conn.get("/").await;
        let cookie = first
            .header("set-cookie")
            .expect("a colour cookie")
            .to_owned();
        let colour = first.header("x-colour").expect("colour").to_owned();
        assert_eq!(
            cookie,
            format!("switchyard_colour={colour}; Path=/; HttpOnly; SameSite=Lax")
        );
        jars.push((conn, colour));
    }
    let greens = jars.iter().filter(|(_, c)| c == "green").count();
    assert!(
        (3..=10).contains(&greens),
        "{greens} of 20 on green at 30 %"
    );
    // Cookie-less traffic moves the plan on (30 % -> 60 % -> complete) meanwhile.
    let mut weights = HashSet::new();
    weights.insert(canary_status(admin).await["weight"].as_u64().unwrap_or(0));
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(d.addr, 2, Arc::clone(&stop)));
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        for (conn, colour) in jars.iter_mut() {
            let req = http::Request::builder()
                .uri("/")
                .header("host", "localhost")
                .header("cookie", format!("theme=dark; switchyard_colour={colour}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let r = conn.send(req).await;
            assert_eq!(
                r.header("x-colour"),
                Some(colour.as_str()),
                "a client changed colour"
            );
            assert_eq!(
                r.header("set-cookie"),
                None,
                "a kept colour is not set again"
            );
        }
        let canary = canary_status(admin).await;
        weights.insert(canary["weight"].as_u64().unwrap_or(0));
        if canary["state"] == "complete" && weights.len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let tally = running.await.expect("load");
    assert!(
        weights.contains(&30) && weights.contains(&60),
        "{weights:?}"
    );
    assert_eq!(canary_status(admin).await["state"], "complete");
    assert!(tally.failed.is_empty(), "{:?}", tally.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_begun_before_a_switch_finishes_on_its_colour() {
    // A canary at 0 %: every client gets a blue cookie.
    let Colours { admin, mut d, .. } =
        colours("[canary]\nupstream = \"green\"\nweight = 0\ninterval = \"5s\"\n").await;
    d.wait_for_log("upstream green", Duration::from_secs(5));
    let mut client = Conn::open(d.addr).await;
    let handshake = client.get("/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(handshake.header("x-colour"), Some("blue"));
    let cookie = handshake.header("set-cookie").expect("cookie");
    let cookie = cookie.split(';').next().expect("pair").to_owned();
    let sid = handshake.text().trim_start_matches("sid=").to_owned();
    let poll = |conn_cookie: Option<&str>| {
        let mut req = http::Request::builder()
            .uri(format!("/socket.io/?EIO=4&transport=polling&sid={sid}"))
            .header("host", "localhost");
        if let Some(c) = conn_cookie {
            req = req.header("cookie", c);
        }
        req.body(Full::new(Bytes::new())).expect("request")
    };

    // The switch, as an operator runs it: the 0 % canary moves to the colour now idle.
    let path = d.config.to_str().expect("path").to_owned();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli_bounded(&["switch", "green", "--config", &path])
    })
    .await
    .expect("switch");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("[canary] at 0 % now names blue"),
        "{stdout}"
    );
    let file = std::fs::read_to_string(&d.config).expect("config");
    assert!(
        file.contains("active = \"green\"") && file.contains("[canary]\nupstream = \"blue\""),
        "{file}"
    );
    let status = fetch(admin, "/status").await.json();
    assert_eq!(status["active"], "green");
    assert_eq!(status["previous"]["upstream"], "blue", "{status}");

    // The session goes on where it began; a new client starts on green.
    for _ in 0..5 {
        let r = client.send(poll(Some(&cookie))).await;
        assert_eq!(
            (r.status.as_u16(), r.header("x-colour")),
            (200, Some("blue")),
            "{}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fetch(d.addr, "/").await.header("x-colour"), Some("green"));
    // Without the cookie the same session would have been lost.
    let lost = client.send(poll(None)).await;
    assert_eq!(
        (lost.status.as_u16(), lost.header("x-colour")),
        (400, Some("green"))
    );
    // One interval later the previous colour is let go.
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let after = client.send(poll(Some(&cookie))).await;
    assert_eq!(after.header("x-colour"), Some("green"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_an_address_on_one_colour_and_status_shows_the_canary() {
    let Colours { admin, mut d, .. } = colours_edited(
        "[canary]\nupstream = \"green\"\nweight = 50\naffinity = \"client-ip\"\n",
        |text| {
            text.replace(
                "[server]\n",
                "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
            )
        },
    )
    .await;
    d.wait_for_log("canary green: started at 50 %", Duration::from_secs(5));
    let mut conn = Conn::open(d.addr).await;
    let mut colours = BTreeMap::new();
    for i in 0..40u8 {
        let client = format!("203.0.113.{i}");
        for _ in 0..3 {
            let req = http::Request::builder()
                .uri("/")
                .header("host", "localhost")
                .header("x-forwarded-for", &client)
                .body(Full::new(Bytes::new()))
                .expect("request");
            let r = conn.send(req).await;
            let colour = r.header("x-colour").expect("colour").to_owned();
            assert_eq!(r.header("set-cookie"), None);
            let first = colours.entry(client.clone()).or_insert(colour.clone());
            assert_eq!(*first, colour, "{client} changed colour");
        }
    }
    let greens = colours.values().filter(|c| *c == "green").count();
    assert!(
        (8..=32).contains(&greens),
        "{greens} of 40 addresses on green at 50 %"
    );

    let (code, stdout, stderr) = run_cli(&["status", "--config", d.config.to_str().expect("path")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("canary: green, 50 % of clients, holding"),
        "{stdout}"
    );
    let metrics = fetch(admin, "/metrics").await.text();
    assert!(
        metrics.contains("switchyard_canary_weight{upstream=\"green\"} 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_canary_state{upstream=\"green\",state=\"holding\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_removes_a_rolled_back_canary_and_abort_removes_a_running_one() {
    let Colours {
        green,
        admin,
        mut d,
        ..
    } = colours("").await;
    green.failing.store(true, Ordering::SeqCst);
    d.wait_for_log("upstream green", Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(d.addr, 2, Arc::clone(&stop)));
    let path = d.config.to_str().expect("path").to_owned();
    let p = path.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli_bounded(&[
            "canary",
            "green",
            "--config",
            &p,
            "--steps",
            "50,100",
            "--interval",
            "5s",
            "--max-error-ratio",
            "5%",
        ])
    })
    .await
    .expect("command");
    stop.store(true, Ordering::SeqCst);
    let tally = running.await.expect("load");
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("canary green rolled back: error ratio"),
        "{stderr}"
    );
    assert!(stderr.contains("[canary] removed from"), "{stderr}");
    let file = std::fs::read_to_string(&d.config).expect("config");
    assert!(
        file.contains("active = \"blue\"") && !file.contains("[canary]"),
        "{file}"
    );
    assert!(tally.failed.is_empty(), "{:?}", tally.failed);
    // The command returned once the daemon had taken the file without [canary].
    assert_eq!(canary_status(admin).await, serde_json::Value::Null);

    // Bad plans are refused by their flag, before anything is written.
    let before = std::fs::read_to_string(&d.config).expect("config");
    for (args, needle) in [
        (vec!["--steps", "50,10"], "--steps: [50, 10] must rise"),
        (
            vec!["--interval", "0s"],
            "--interval: \"0s\" must be above zero",
        ),
        (vec!["--max-p99", "soon"], "--max-p99"),
    ] {
        let mut all = vec!["canary", "green", "--config", &path];
        all.extend(args);
        let (code, _, stderr) = run_cli_bounded(&all);
        assert_eq!(code, 2, "a usage error: {stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    let (code, _, stderr) = run_cli_bounded(&[
        "canary",
        "green",
        "--config",
        &path,
        "--max-error-ratio",
        "1",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("a fraction below 1"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&d.config).expect("config"), before);

    // --no-wait starts one and returns; --abort takes it out again.
    let (code, stdout, stderr) = run_cli_bounded(&[
        "canary",
        "green",
        "--config",
        &path,
        "--steps",
        "10,100",
        "--no-wait",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let started = Instant::now();
    while canary_status(admin).await["weight"] != 10 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no canary at 10 %"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, stdout, stderr) = run_cli_bounded(&["canary", "--abort", "--config", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("canary green aborted"), "{stdout}");
    assert!(!std::fs::read_to_string(&d.config)
        .expect("config")
        .contains("[canary]"));
    let started = Instant::now();
    while !canary_status(admin).await.is_null() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the canary is still in force"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_the_canary_promotes_it() {
    let Colours { admin, mut d, .. } =
        colours("[canary] # trying green\nupstream = \"green\"\nweight = 10\n").await;
    d.wait_for_log("canary green: started at 10 %", Duration::from_secs(5));
    let path = d.config.to_str().expect("path").to_owned();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli_bounded(&["switch", "green", "--config", &path])
    })
    .await
    .expect("switch");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let file = std::fs::read_to_string(&d.config).expect("config");
    assert!(
        file.contains("active = \"green\"") && !file.contains("[canary]"),
        "{file}"
    );
    assert_eq!(canary_status(admin).await, serde_json::Value::Null);
    assert_eq!(fetch(d.addr, "/").await.header("x-colour"), Some("green"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_other_edits_keeps_the_plan_where_it_is() {
    let Colours { admin, mut d, text, .. } = colours("[canary]\nupstream = \"green\"\nsteps = [20, 60, 90]\ninterval = \"1s\"\nmax_error_ratio = 0.5\n").await;
    d.wait_for_log("canary green: started at 20 %", Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(d.addr, 2, Arc::clone(&stop)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while canary_status(admin).await["step"] != 2 {
        assert!(Instant::now() < deadline, "no second step");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another edit: the idle timeout. [canary] is the same table.
    let edited = text.replace("[server]\n", "[server]\nidle_timeout = \"90s\"\n");
    std::fs::write(&d.config, edited).expect("write");
    d.reload();
    let canary = canary_status(admin).await;
    assert!(canary["step"] == 2 || canary["step"] == 3, "{canary}");
    assert_ne!(canary["weight"], 20, "{canary}");
    // A changed [canary] starts its plan afresh.
    let changed = text.replace("steps = [20, 60, 90]", "steps = [10, 60, 90]");
    std::fs::write(&d.config, changed).expect("write");
    d.reload();
    let canary = canary_status(admin).await;
    assert_eq!(
        (canary["step"].as_u64(), canary["weight"].as_u64()),
        (Some(1), Some(10)),
        "{canary}"
    );
    stop.store(true, Ordering::SeqCst);
    let tally = running.await.expect("load");
    assert!(tally.failed.is_empty(), "{:?}", tally.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_outlives_a_restart_while_the_table_stays() {
    let (blue, green) = (App::start("blue").await, App::start("green").await);
    green.failing.store(true, Ordering::SeqCst);
    let admin = dead_addr();
    // The pid file (and the rollback remembered beside it) outlive both daemons.
    let run_dir = scratch();
    let text = config(&blue, &green, admin, run_dir.path(), "[canary]\nupstream = \"green\"\nsteps = [50, 100]\ninterval = \"2s\"\nmax_error_ratio = 0.05\naffinity = \"none\"\n");
    let mut d = Daemon::start(&text);
    d.wait_for_log("canary green: started at 50 %", Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(d.addr, 2, Arc::clone(&stop)));
    wait_for_state(admin, "rolled back", Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    running.await.expect("load");
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(10)).success());

    let mut d = Daemon::start(&text);
    let line = d.wait_for_log("still rolled back", Duration::from_secs(5));
    assert!(line.contains("error ratio"), "{line}");
    let canary = canary_status(admin).await;
    assert_eq!(
        (canary["state"].as_str(), canary["weight"].as_u64()),
        (Some("rolled back"), Some(0))
    );
    let reason = canary["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("rolled back before a restart: error ratio"),
        "{reason}"
    );
    let served = green.served.load(Ordering::SeqCst);
    let mut conn = Conn::open(d.addr).await;
    for _ in 0..50 {
        assert_eq!(conn.get("/").await.header("x-colour"), Some("blue"));
    }
    assert_eq!(green.served.load(Ordering::SeqCst), served);
    // A changed table starts afresh, and forgets the rollback.
    let changed = text.replace("steps = [50, 100]", "steps = [20, 100]");
    std::fs::write(&d.config, changed).expect("write");
    d.reload();
    assert_eq!(canary_status(admin).await["weight"], 20);
    assert!(!run_dir
        .path()
        .join("switchyard.canary-rolled-back")
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_canary_leaves_the_one_in_the_file_and_a_good_one_keeps_its_affinity() {
    let Colours { mut d, .. } = colours(
        "[canary] # sessions only\nupstream = \"green\"\nweight = 0\naffinity = \"none\"\n",
    )
    .await;
    d.wait_for_log("canary green: started at 0 %", Duration::from_secs(5));
    let path = d.config.to_str().expect("path").to_owned();
    let before = std::fs::read_to_string(&d.config).expect("config");
    let (code, stdout, stderr) =
        run_cli_bounded(&["canary", "gren", "--config", &path, "--no-wait"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("canary.upstream = \"gren\" names no upstream"),
        "{stderr}"
    );
    assert!(!stdout.contains("removing"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&d.config).expect("config"), before);
    let (code, stdout, stderr) = run_cli_bounded(&[
        "canary",
        "green",
        "--config",
        &path,
        "--steps",
        "10,100",
        "--no-wait",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("removing the canary already in"),
        "{stdout}"
    );
    let file = std::fs::read_to_string(&d.config).expect("config");
    assert!(
        file.contains("steps = [10, 100]") && file.contains("affinity = \"none\""),
        "{file}"
    );
}
