//! Access log (combined and JSON, file reopen on SIGUSR1) and Prometheus metrics.

mod common;

use std::time::Duration;

use common::*;

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let lines = read_lines(path);
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "expected {n} lines in {}: {:?}",
        path.display(),
        read_lines(path)
    );
}

/// nginx's default `combined` format, as the regex goaccess and log shippers use.
fn parse_combined(line: &str) -> Option<Vec<String>> {
    // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
    let re = regex_lite(line)?;
    Some(re)
}

/// A hand-rolled equivalent of
/// `^(\S+) - (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$`.
fn regex_lite(line: &str) -> Option<Vec<String>> {
    let (addr, rest) = line.split_once(" - ")?;
    let (user, rest) = rest.split_once(" [")?;
    let (time, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let (status, rest) = rest.split_once(' ')?;
    let (bytes, rest) = rest.split_once(" \"")?;
    let (referer, rest) = rest.split_once("\" \"")?;
    let agent = rest.strip_suffix('"')?;
    let ok = !addr.contains(' ')
        && !user.contains(' ')
        && status.len() == 3
        && status.bytes().all(|b| b.is_ascii_digit())
        && bytes.bytes().all(|b| b.is_ascii_digit())
        && !request.contains('"')
        && !referer.contains('"')
        && !agent.contains('"')
        && time.len() == 26
        && time.ends_with(" +0000");
    ok.then(|| {
        [addr, user, time, request, status, bytes, referer, agent]
            .iter()
            .map(|s| s.to_string())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_access_log_matches_nginx_format_and_reopens_on_sigusr1() {
    let app = Upstream::start("app").await;
    let dir = scratch();
    let log = dir.path().join("access.log");
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server(&format!("access_log = \"{}\"", log.display()))
        .build();
    let d = Daemon::start_in(dir, &conf);
    let mut req = get("/api/items?page=2");
    req.headers_mut()
        .insert("user-agent", "test-agent/1.0".parse().unwrap());
    req.headers_mut()
        .insert("referer", "https://example.com/".parse().unwrap());
    let r = send(d.addr, req).await;
    let body_len = r.body.len();
    fetch(d.addr, "/healthz").await;
    let lines = wait_lines(&log, 2).await;
    let f =
        parse_combined(&lines[0]).unwrap_or_else(|| panic!("not combined format: {}", lines[0]));
    assert_eq!(f[0], "127.0.0.1");
    assert_eq!(f[3], "GET /api/items?page=2 HTTP/1.1");
    assert_eq!(f[4], "200");
    assert_eq!(f[5], body_len.to_string());
    assert_eq!(f[6], "https://example.com/");
    assert_eq!(f[7], "test-agent/1.0");
    let f = parse_combined(&lines[1]).unwrap();
    assert_eq!(
        (f[3].as_str(), f[6].as_str(), f[7].as_str()),
        ("GET /healthz HTTP/1.1", "-", "-")
    );

    // logrotate: rename, SIGUSR1, and new lines go to a fresh file.
    let rotated = d.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    d.signal(libc::SIGUSR1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    fetch(d.addr, "/api/after-rotate").await;
    let fresh = wait_lines(&log, 1).await;
    assert!(fresh[0].contains("GET /api/after-rotate"), "{fresh:?}");
    assert_eq!(read_lines(&rotated).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_has_upstream_route_and_duration() {
    let app = Upstream::start("app").await;
    let dir = scratch();
    let log = dir.path().join("access.json");
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server(&format!("access_log = \"{}\"", log.display()))
        .server("access_log_format = \"json\"")
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .build();
    let d = Daemon::start_in(dir, &conf);
    let mut req = request("POST", "/echo", "12345");
    req.headers_mut()
        .insert("x-forwarded-for", "198.51.100.4".parse().unwrap());
    send(d.addr, req).await;
    let lines = wait_lines(&log, 1).await;
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        v["client"], "198.51.100.4",
        "client is the real client behind a trusted proxy"
    );
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 5);
    assert_eq!(v["upstream"], "app");
    assert_eq!(v["route"], "fallback");
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["time"].as_f64().unwrap() > 1.7e9);
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// The sum over every labelled series of `name`.
fn family_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_the_requests_sent() {
    let app = Upstream::start("app").await;
    let admin = dead_addr();
    let dir = scratch();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/a.txt"), "a").unwrap();
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server(&format!("admin_listen = \"{admin}\""))
        .server("access_log = \"off\"")
        .extra("[static]\nroot = \"www\"\n")
        .build();
    let mut d = Daemon::start_in(dir, &conf);
    let before = fetch(admin, "/metrics").await.text();
    for _ in 0..7 {
        assert_eq!(fetch(d.addr, "/api/x").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(fetch(d.addr, "/a.txt").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(fetch(d.addr, "/.env").await.status, 404);
    }
    d.reload_with(&conf.replace(
        "access_log = \"off\"",
        "access_log = \"off\"\nidle_timeout = \"80s\"",
    ));
    let mut held = Conn::open(d.addr).await;
    assert_eq!(held.get("/healthz").await.status, 200);
    let after = fetch(admin, "/metrics").await.text();
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(
        delta("switchyard_requests_total{route=\"fallback\",upstream=\"app\",status=\"2xx\"}"),
        7,
        "{after}"
    );
    assert_eq!(
        delta("switchyard_requests_total{route=\"static\",upstream=\"\",status=\"2xx\"}"),
        3
    );
    assert_eq!(
        delta("switchyard_requests_total{route=\"static\",upstream=\"\",status=\"4xx\"}"),
        2
    );
    let durations = |text: &str| family_sum(text, "switchyard_request_duration_seconds_count");
    assert_eq!(durations(&after) - durations(&before), 13, "{after}");
    assert_eq!(
        delta("switchyard_requests_total{route=\"endpoint\",upstream=\"\",status=\"2xx\"}"),
        1
    );
    assert_eq!(metric(&after, "switchyard_reloads_total{result=\"ok\"}"), 1);
    assert_eq!(
        metric(&after, "switchyard_reloads_total{result=\"failed\"}"),
        0
    );
    assert_eq!(metric(&after, "switchyard_config_generation"), 2);
    assert_eq!(
        metric(
            &after,
            "switchyard_upstream_up{upstream=\"app\",active=\"true\"}"
        ),
        1
    );
    assert_eq!(metric(&after, "switchyard_open_connections"), 1);
    assert!(after.contains("# TYPE switchyard_request_duration_seconds histogram"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_counted_by_cause_and_latency_by_upstream() {
    let ex = exercised_daemon().await;
    let text = scrape(ex.admin).await;
    let failures = |upstream: &str, cause: &str| {
        let series = format!(
            "switchyard_upstream_failures_total{{upstream=\"{upstream}\",cause=\"{cause}\"}}"
        );
        assert!(
            text.contains(&format!("{series} ")),
            "no {series} in:\n{text}"
        );
        metric(&text, &series)
    };
    assert_eq!(failures("dead", "refused"), 1);
    assert_eq!(failures("app", "response_timeout"), 1);
    assert_eq!(failures("failing", "reset"), 1);
    assert_eq!(failures("failing", "bad_response"), 1);
    assert_eq!(failures("failing", "truncated"), 1);
    // Counted once, under its own cause, and nowhere else.
    assert_eq!(failures("app", "refused"), 0);
    assert_eq!(failures("failing", "refused"), 0);
    assert_eq!(family_sum(&text, "switchyard_upstream_failures_total"), 5);
    // Not an upstream's failure: no series for switchyard's own answers.
    assert!(!text.contains("switchyard_upstream_failures_total{upstream=\"\""));

    let count = |labels: &str| {
        metric(
            &text,
            &format!("switchyard_request_duration_seconds_count{{{labels}}}"),
        )
    };
    assert_eq!(count(r#"route="fallback",upstream="app""#), 3, "{text}");
    assert_eq!(count(r#"route="route",upstream="dead""#), 1);
    assert_eq!(count(r#"route="route",upstream="failing""#), 3);
    assert_eq!(count(r#"route="static",upstream="""#), 1);
    assert_eq!(count(r#"route="endpoint",upstream="""#), 1);
    // The 504 took response_timeout (300 ms): above the 0.25 s bound, within 0.5 s.
    let bucket = |le: &str| {
        metric(
            &text,
            &format!(
                "switchyard_request_duration_seconds_bucket{{route=\"fallback\",upstream=\"app\",le=\"{le}\"}}"
            ),
        )
    };
    assert_eq!((bucket("0.25"), bucket("0.5"), bucket("+Inf")), (2, 3, 3));
    assert_eq!(
        metric(
            &text,
            "switchyard_requests_total{route=\"fallback\",upstream=\"app\",status=\"5xx\"}"
        ),
        1
    );
    // The cut response went out as a 200 and counts as one: its failure is counted apart.
    assert_eq!(
        metric(
            &text,
            "switchyard_requests_total{route=\"route\",upstream=\"failing\",status=\"2xx\"}"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_no_problem_in_the_metrics_of_a_busy_daemon() {
    let ex = exercised_daemon().await;
    let text = scrape(ex.admin).await;
    for family in [
        "switchyard_requests_total",
        "switchyard_request_duration_seconds",
        "switchyard_upstream_failures_total",
        "switchyard_upstream_up",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    let (ok, report) = promtool(&["check", "metrics"], Some(&text));
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}\non:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_up_reports_only_the_upstreams_checked_now() {
    let colors = BlueGreen::start().await;
    let admin = dead_addr();
    let conf = |active: &str| {
        colors
            .conf(active)
            .server(&format!("admin_listen = \"{admin}\""))
            .extra("[proxy]\nhealth_interval = \"200ms\"\n")
            .build()
    };
    let mut d = Daemon::start(&conf("blue"));
    let blue = "switchyard_upstream_up{upstream=\"blue\",active=\"true\"} 1";
    wait_for_series(admin, blue).await;
    assert!(d.reload_with(&conf("green")).contains("reload ok"));
    let green = "switchyard_upstream_up{upstream=\"green\",active=\"true\"} 1";
    let text = wait_for_series(admin, green).await;
    // Blue has no health path: it was checked only while active, and is not any more.
    assert!(!text.contains("upstream=\"blue\",active"), "{text}");
    let status: serde_json::Value =
        serde_json::from_str(&fetch(admin, "/status").await.text()).expect("/status is JSON");
    let health = |name: &str| {
        status["upstreams"]
            .as_array()
            .and_then(|all| all.iter().find(|u| u["name"] == name))
            .map(|u| u["health"].clone())
    };
    assert_eq!(health("green"), Some("up".into()), "{status}");
    assert_eq!(health("blue"), Some("unchecked".into()), "{status}");
}

async fn wait_for_series(admin: std::net::SocketAddr, series: &str) -> String {
    for _ in 0..100 {
        let text = scrape(admin).await;
        if text.contains(series) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {series} in:\n{}", scrape(admin).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_under_load_does_not_flood_the_log() {
    let conf = Conf::new("dead")
        .upstream("dead", dead_addr())
        .server("access_log = \"off\"")
        .build();
    let mut d = Daemon::start(&conf);
    let mut conn = Conn::open(d.addr).await;
    let started = std::time::Instant::now();
    for _ in 0..400 {
        assert_eq!(conn.get("/").await.status, 502);
    }
    let seconds = started.elapsed().as_secs() + 1;
    // The next failure after the budget's second says how many were left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(conn.get("/").await.status, 502);
    let line = d.wait_for_log("left out of the log", Duration::from_secs(3));
    assert!(
        line.contains("more request errors left out of the log since the last line"),
        "{line}"
    );
    let written = d.logs().iter().filter(|l| l.contains("status=502")).count() as u64;
    // 20 a second for each of at most 2 workers, plus the one after the pause.
    assert!(
        written <= 40 * seconds + 1,
        "{written} error lines in {seconds} s"
    );
    assert!(written >= 20, "{written}");
}
