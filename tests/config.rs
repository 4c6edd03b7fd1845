//! Configuration files good and bad: errors that name their key, line and column checked
//! in process (`switchyard::config::parse`, what `check`, startup and reload all run);
//! `switchyard check`'s output and exit codes, and startup refusing a bad file, with the
//! binary.

mod common;

use common::*;

fn check(text: &str) -> (i32, String, String) {
    let dir = scratch();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    run_cli(&["check", "--config", path.to_str().unwrap()])
}

/// Asserts the text is refused with `switchyard.toml:LINE:COL: ...` naming `needle`.
fn assert_error_at(text: &str, line: usize, col: usize, needle: &str) {
    let dir = scratch();
    let path = dir.path().join("switchyard.toml");
    let error = match switchyard::config::parse(&path, text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.lines().count() > 1,
        "no source line under the error: {error}"
    );
    let first = error.lines().next().unwrap_or("");
    assert!(
        first.contains(&format!("switchyard.toml:{line}:{col}: ")),
        "wrong position in {first:?}"
    );
    assert!(first.contains(needle), "{needle:?} not in {first:?}");
}

const FULL: &str = r#"
# every key of the SPEC
active = "blue"

[server]
listen = ["127.0.0.1:8000", "[::1]:8000"]
health_path = "/healthz"
ready_path = "/readyz"
admin_listen = "127.0.0.1:9901"
pid_file = "/tmp/switchyard-check.pid"
trusted_proxies = ["10.0.0.0/8", "fd00::/8", "192.168.1.1"]
access_log = "off"
access_log_format = "json"
header_read_timeout = "10s"
idle_timeout = "75s"
drain_delay = "0s"
shutdown_timeout = "30s"
max_connections = 10000
max_request_body = "100MiB"

[static]
root = "."
index = ["index.html", "index.htm"]
fallback = "upstream"
precompressed = true
[[static.cache]]
path_prefix = "/assets/"
cache_control = "public, max-age=31536000, immutable"

[proxy]
connect_timeout = "3s"
response_timeout = "60s"
pool_idle_timeout = "4s"
health_interval = "5s"
switch_requires_healthy = true

[upstreams]
blue = "127.0.0.1:8080"
green = { url = "http://127.0.0.1:8081", health = "/actuator/health" }
grafana = "http://localhost:3000"

[[routes]]
host = "grafana.example.com"
upstream = "grafana"

[[routes]]
host = "*.example.org"
path_prefix = "/grafana/"
strip_prefix = true
upstream = "grafana"
"#;

#[test]
fn full_file_is_valid_and_summarized() {
    let (code, stdout, stderr) = check(FULL);
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "is valid",
        "127.0.0.1:8000, [::1]:8000",
        "* blue",
        "http://127.0.0.1:8081 health /actuator/health",
        "grafana      http://localhost:3000",
        "active:    blue",
        "host grafana.example.com -> grafana",
        "host *.example.org path /grafana/ (stripped) -> grafana",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    assert!(!stdout.contains("warning"), "{stdout}");
}

#[test]
fn minimal_file_uses_defaults_and_warns_about_load_balancer_traps() {
    let (code, stdout, _) = check("active = \"a\"\n[upstreams]\na = \"127.0.0.1:1\"\n[server]\nidle_timeout = \"60s\"\n[proxy]\npool_idle_timeout = \"10s\"\n");
    assert_eq!(code, 0);
    assert!(stdout.contains("listen:    0.0.0.0:80"), "{stdout}");
    assert!(stdout.contains("warning: server.idle_timeout"), "{stdout}");
    assert!(
        stdout.contains("warning: server.trusted_proxies is empty"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: proxy.pool_idle_timeout"),
        "{stdout}"
    );
}

#[test]
fn unknown_key_is_reported_at_its_position() {
    assert_error_at(
        "active = \"a\"\n[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n[upstreams]\na = \"127.0.0.1:1\"\n",
        4,
        1,
        "unknown field `lisen`",
    );
    assert_error_at(
        "active = \"a\"\n[upstreams]\na = { url = \"127.0.0.1:1\", helth = \"/h\" }\n",
        3,
        28,
        "unknown field `helth`",
    );
}

/// `[upstreams.NAME]` tables are the same TOML as inline tables, and are read as such;
/// a wrong key in one is reported on its own line.
#[test]
fn upstream_tables_are_read_like_inline_tables() {
    let (code, stdout, stderr) = check(
        "active = \"blue\"\n[upstreams.blue]\nurl = \"127.0.0.1:1\"\nhealth = \"/h\"\n[upstreams.green]\nurl = \"127.0.0.1:2\"\n",
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("blue") && stdout.contains("green"),
        "{stdout}"
    );
    assert_error_at(
        "active = \"blue\"\n[upstreams.blue]\naddr = \"127.0.0.1:1\"\n",
        3,
        1,
        "unknown field `addr`",
    );
}

#[test]
fn active_naming_no_upstream() {
    assert_error_at(
        "active = \"purple\"\n[upstreams]\nblue = \"127.0.0.1:1\"\n",
        1,
        10,
        "active = \"purple\" names no upstream (defined: blue)",
    );
}

#[test]
fn route_naming_no_upstream() {
    assert_error_at(
        "active = \"a\"\n[upstreams]\na = \"127.0.0.1:1\"\n[[routes]]\npath_prefix = \"/x/\"\nupstream = \"grafana\"\n",
        6,
        12,
        "routes[0].upstream = \"grafana\" names no upstream",
    );
}

#[test]
fn bad_cidr() {
    assert_error_at(
        "active = \"a\"\n[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n[upstreams]\na = \"127.0.0.1:1\"\n",
        3,
        34,
        "\"10.0.0.0/33\" is not a CIDR",
    );
}

#[test]
fn route_without_matchers() {
    assert_error_at(
        "active = \"a\"\n[upstreams]\na = \"127.0.0.1:1\"\n[[routes]]\nupstream = \"a\"\n",
        4,
        1,
        "routes[0]: a route needs host, path_prefix or both",
    );
}

#[test]
fn bad_values_name_their_key() {
    let base = "active = \"a\"\n[upstreams]\na = \"127.0.0.1:1\"\n";
    assert_error_at(
        &format!("{base}[server]\nlisten = \"localhost\"\n"),
        5,
        10,
        "server.listen",
    );
    assert_error_at(
        &format!("{base}[server]\nidle_timeout = \"forever\"\n"),
        5,
        16,
        "server.idle_timeout",
    );
    assert_error_at(
        &format!("{base}[server]\nmax_request_body = \"1.5MiB\"\n"),
        5,
        20,
        "server.max_request_body",
    );
    assert_error_at(
        &format!("{base}[static]\nroot = \"/no/such/dir\"\n"),
        5,
        8,
        "web root",
    );
    assert_error_at(
        &format!("{base}[static]\nroot = \".\"\nfallback = \"spa\"\n"),
        6,
        12,
        "unknown variant `spa`",
    );
    assert_error_at(
        &format!("{base}[proxy]\nconnect_timeout = \"0s\"\n"),
        5,
        19,
        "greater than zero",
    );
    assert_error_at(
        "active = \"a\"\n[upstreams]\na = \"https://x:1\"\n",
        3,
        5,
        "upstreams.a",
    );
    assert_error_at("active = \"a\"\n[upstreams]\na = \"127.0.0.1:1\"\n[[routes]]\nhost = \"x.com:80\"\nupstream = \"a\"\n", 5, 8, "routes[0].host");
    assert_error_at(
        "[upstreams]\na = \"127.0.0.1:1\"\n",
        1,
        1,
        "missing field `active`",
    );
    assert_error_at("active = \"a\"\n[upstreams\n", 2, 11, "");
}

#[test]
fn missing_file_and_usage_errors() {
    let (code, _, stderr) = run_cli(&["check", "--config", "/no/such/switchyard.toml"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("/no/such/switchyard.toml: cannot read configuration"),
        "{stderr}"
    );

    let (code, _, stderr) = run_cli(&["--bogus-flag"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = run_cli(&["frobnicate"]);
    assert_eq!(code, 2);

    let (code, stdout, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("switchyard "), "{stdout}");
    let (code, stdout, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("check"), "{stdout}");
}

#[test]
fn daemon_refuses_to_start_on_a_bad_file() {
    let dir = scratch();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, "active = \"x\"\n[upstreams]\na = \"127.0.0.1:1\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}:1:10: active = \"x\" names no upstream",
            path.display()
        )),
        "the first line is the error: {stderr}"
    );
    assert_eq!(
        stderr.matches("names no upstream").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!stderr.contains("panicked"));
    // A missing file too: one line first, once.
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.matches("cannot read configuration").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("missing.toml: cannot read configuration"),
        "{stderr}"
    );
}

#[test]
fn config_path_from_environment() {
    let dir = scratch();
    let path = dir.path().join("env.toml");
    std::fs::write(&path, "active = \"a\"\n[upstreams]\na = \"127.0.0.1:1\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .env("SWITCHYARD_CONFIG", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("env.toml"));
}

#[test]
fn bundled_configs_are_valid() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let (code, stdout, stderr) =
        run_cli(&["check", "--config", &format!("{dir}/config/local.toml")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("listen:    127.0.0.1:8000"), "{stdout}");

    // The documented example, with its web root pointed at one that exists here.
    let example = std::fs::read_to_string(format!("{dir}/config/switchyard.toml")).unwrap();
    assert!(example.contains("root = \"/var/www/html\""));
    let (code, stdout, stderr) =
        check(&example.replace("/var/www/html", &format!("{dir}/config/www")));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1: path /grafana/ -> grafana"), "{stdout}");
}

#[test]
fn canary_tables_are_checked_key_by_key() {
    let base = "active = \"blue\"\n[upstreams]\nblue = \"127.0.0.1:1\"\ngreen = { url = \"http://127.0.0.1:2\", health = \"/health\" }\nplain = \"127.0.0.1:3\"\n[canary]\n";
    assert_error_at(
        &format!("{base}upstream = \"purple\"\n"),
        7,
        12,
        "canary.upstream = \"purple\" names no upstream",
    );
    assert_error_at(
        &format!("{base}upstream = \"blue\"\n"),
        7,
        12,
        "is the active upstream",
    );
    assert_error_at(
        &format!("{base}upstream = \"plain\"\n"),
        7,
        12,
        "has no health path",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\nweight = 120\n"),
        8,
        10,
        "canary.weight must be a percentage",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\nsteps = [10, 50, 25]\n"),
        8,
        18,
        "canary.steps must rise",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\nsteps = [0, 50]\n"),
        8,
        10,
        "canary.steps must rise",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\nweight = 5\nsteps = [10, 50]\n"),
        8,
        10,
        "the plan starts at its first step",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\ninterval = \"0s\"\n"),
        8,
        12,
        "canary.interval must be greater than zero",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\nmax_error_ratio = 1.5\n"),
        8,
        19,
        "canary.max_error_ratio is a fraction",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\naffinity = \"session\"\n"),
        8,
        12,
        "unknown variant `session`",
    );
    assert_error_at(
        &format!("{base}upstream = \"green\"\nwieght = 10\n"),
        8,
        1,
        "unknown field `wieght`",
    );
    // A good one, and what `check` says of it.
    let (code, stdout, stderr) = check(&format!("{base}upstream = \"green\"\nsteps = [10, 50, 100]\ninterval = \"30s\"\nmax_p99 = \"800ms\"\naffinity = \"client-ip\"\n"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("canary:    green (steps [10, 50, 100] %, every 30s; errors <= 1 %, p99 <= 800ms; affinity client-ip)"), "{stdout}");
}
