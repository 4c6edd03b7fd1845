//! Micro-benchmarks of the per-request work that is switchyard's own: routing, path
//! sanitizing, and finding + opening a small static file. End-to-end throughput against
//! nginx is measured by `../shared/bench/compare.py`, not here.

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::Request;
use switchyard::config;
use switchyard::parts::routing;
use switchyard::parts::{lookup, sanitize};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("assets")).expect("mkdir");
    std::fs::write(www.join("assets/small.js"), vec![b'x'; 1024]).expect("write");
    let text = r#"
active = "blue"
[static]
root = "www"
[upstreams]
blue = "127.0.0.1:8080"
grafana = "127.0.0.1:3000"
[[routes]]
host = "grafana.example.com"
upstream = "grafana"
[[routes]]
path_prefix = "/grafana/"
upstream = "grafana"
"#;
    let cfg = config::parse(&dir.path().join("switchyard.toml"), text).expect("config");
    let req = Request::builder()
        .uri("/assets/small.js")
        .header("host", "www.example.com")
        .body(())
        .expect("request");

    c.bench_function("route decision (2 routes, no match)", |b| {
        b.iter(|| black_box(routing::decide(&cfg, black_box(&req))).is_local())
    });
    c.bench_function("sanitize path", |b| {
        b.iter(|| sanitize(black_box("/assets/small.js")).map(|p| p.relative.len()))
    });
    let root: &Path = &cfg.static_files.as_ref().expect("static").root;
    let index = vec!["index.html".to_owned()];
    c.bench_function("lookup + read 1 KiB file", |b| {
        b.iter(|| {
            let safe = sanitize("/assets/small.js").expect("safe");
            let opts = switchyard::parts::Options {
                index: &index,
                precompressed: true,
            };
            lookup(root, &safe, &opts).map(|f| matches!(f, switchyard::parts::Found::File(_)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
