//! The monitoring that ships in `config/`: the Prometheus alert rules (checked and unit
//! tested by promtool), the Grafana dashboard (every query parsed by promtool, the
//! variables an import needs), and the metric names both use, which must be ones the
//! daemon really exports.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

fn shipped(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const RULES: &str = "prometheus/switchyard-rules.yml";
const DASHBOARD: &str = "grafana/switchyard.json";

fn dashboard() -> serde_json::Value {
    let path = shipped(DASHBOARD);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL query in the dashboard: panel targets and annotations, wherever nested.
fn dashboard_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("expr", Some(expr)) => out.push(expr.to_owned()),
                    _ => dashboard_queries(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| dashboard_queries(i, out)),
        _ => {}
    }
}

/// A dashboard query as Prometheus would get it from Grafana: the interval macros as
/// durations and `$instance` as the regex of "All". Any other `$` is a variable the
/// dashboard does not define.
fn as_prometheus_gets_it(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "6h")
        .replace("$instance", ".+");
    assert!(!expr.contains('$'), "unknown variable in {expr}");
    expr
}

fn rule_tests() -> Vec<PathBuf> {
    let dir = shipped("prometheus/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule tests in {}", dir.display());
    files
}

/// Every `switchyard_*` metric name in `text` (PromQL, or a whole rules file).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchyard_") {
        let word_start = at == 0 || !is_name_byte(rest.as_bytes()[at - 1]);
        let len = rest[at..].bytes().take_while(|b| is_name_byte(*b)).count();
        if word_start {
            names.insert(rest[at..at + len].to_owned());
        }
        rest = &rest[at + len..];
    }
    names
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The sample names in a Prometheus text exposition.
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = shipped(RULES);
    let (ok, report) = promtool(&["check", "rules", &rules.to_string_lossy()], None);
    assert!(ok, "promtool check rules:\n{report}");
    let tests = rule_tests();
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(tests.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, report) = promtool(&args, None);
    assert!(ok, "promtool test rules:\n{report}");
    assert!(report.contains("SUCCESS"), "{report}");
}

/// Alert names, and for each whether some test expects it to fire and some that it does not.
#[derive(Default, Debug)]
struct Coverage {
    fires: bool,
    quiet: bool,
}

#[test]
fn every_alert_has_a_test_where_it_fires_and_one_where_it_stays_quiet() {
    let alerts: Vec<String> = read(&shipped(RULES))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    let mut seen: std::collections::BTreeMap<String, Coverage> = Default::default();
    for file in rule_tests() {
        let text = read(&file);
        let mut lines = text.lines().map(str::trim).peekable();
        let mut current = None;
        while let Some(line) = lines.next() {
            if let Some(name) = line.strip_prefix("alertname:") {
                current = Some(name.trim().to_owned());
            }
            let Some(expected) = line.strip_prefix("exp_alerts:") else {
                continue;
            };
            let name = current.take().expect("exp_alerts after an alertname");
            let entry = seen.entry(name).or_default();
            match expected.trim() {
                "[]" => entry.quiet = true,
                "" if lines.peek().is_some_and(|l| l.starts_with("- exp_labels:")) => {
                    entry.fires = true
                }
                other => panic!("unexpected exp_alerts: {other:?} in {}", file.display()),
            }
        }
    }
    for alert in &alerts {
        let coverage = seen.get(alert);
        assert!(
            coverage.is_some_and(|c| c.fires && c.quiet),
            "{alert} needs a test where it fires and one where it does not: {coverage:?}"
        );
    }
    let unknown: Vec<&String> = seen.keys().filter(|k| !alerts.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "tests for alerts that do not exist: {unknown:?}"
    );
}

#[test]
fn every_dashboard_query_parses_as_promql() {
    let mut queries = Vec::new();
    dashboard_queries(&dashboard(), &mut queries);
    assert!(queries.len() >= 15, "{queries:?}");
    // promtool only parses PromQL with a server, or in a rules file: each query becomes a
    // recording rule (JSON strings are YAML strings).
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let expr = serde_json::Value::from(as_prometheus_gets_it(query));
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {expr}\n"
        ));
    }
    let dir = scratch();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &rules).unwrap();
    let (ok, report) = promtool(&["check", "rules", &file.to_string_lossy()], None);
    assert!(ok, "promtool check rules:\n{report}\n{rules}");
    let found = format!("SUCCESS: {} rules found", queries.len());
    assert!(report.contains(&found), "{report}");
}

#[test]
fn the_dashboard_imports_with_any_prometheus_and_filters_by_host() {
    let d = dashboard();
    let variables = d["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let datasource = variable("datasource");
    assert_eq!(
        (&datasource["type"], &datasource["query"]),
        (&"datasource".into(), &"prometheus".into())
    );
    let instance = variable("instance");
    assert_eq!(instance["type"], "query");
    assert_eq!(instance["multi"], true);
    assert_eq!(instance["includeAll"], true);
    assert_eq!(instance["datasource"]["uid"], "${datasource}");
    // Imported into any Grafana: no fixed data source, no id of the exporting instance.
    assert!(d["id"].is_null());
    assert!(d.get("__inputs").is_none());
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64()),
            "repeated panel id: {title}"
        );
        assert!(panel["gridPos"]["w"].is_u64(), "{title} has no gridPos");
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        for t in targets.iter().chain([panel]) {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert_eq!(t["datasource"]["type"], "prometheus", "{title}");
        }
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            let selectors = expr.matches('{').count();
            let filtered = expr.matches("instance=~\"$instance\"").count();
            assert_eq!(
                selectors, filtered,
                "{title}: every selector takes $instance: {expr}"
            );
        }
    }
    let annotations = d["annotations"]["list"].as_array().expect("annotations");
    for result in ["ok", "failed", "refused"] {
        let marks = |a: &&serde_json::Value| {
            a["expr"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("result=\"{result}\"")))
        };
        assert!(
            annotations.iter().any(|a| marks(&a)),
            "no annotation for {result} reloads"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_one_the_daemon_exports() {
    let ex = exercised_daemon().await;
    let exported = exported(&scrape(ex.admin).await);
    let mut used = metric_names(&read(&shipped(RULES)));
    let mut queries = Vec::new();
    dashboard_queries(&dashboard(), &mut queries);
    let d = dashboard();
    for variable in d["templating"]["list"].as_array().into_iter().flatten() {
        queries.extend(variable["definition"].as_str().map(str::to_owned));
    }
    for query in &queries {
        used.extend(metric_names(query));
    }
    assert!(used.len() >= 7, "{used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}; exported: {exported:?}"
    );
}
