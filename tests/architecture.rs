//! The layering `src/lib.rs` draws, checked from the source: every `crate::` and `super::`
//! path a file names is resolved to the file that defines it, and the resulting graph must
//! have no cycle, no import from a later layer into an earlier one, and no file over
//! `MAX_LINES`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer may import only the layers before it (and itself).
const LAYERS: [&str; 7] = [
    "sys", "config", "http", "state", "policy", "serve", "control",
];
const MAX_LINES: usize = 500;

struct Module {
    file: PathBuf,
    text: String,
}

fn modules() -> BTreeMap<String, Module> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .expect("under src")
                .with_extension("");
            let mut segments: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let is_dir = matches!(segments.last().map(String::as_str), Some("mod" | "lib"));
            if is_dir {
                segments.pop();
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            out.insert(segments.join("::"), Module { file: path, text });
        }
    }
    out
}

/// The source without its unit tests (`#[cfg(test)] mod tests` ends every file that has
/// them), which may import anything.
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Every path a `use` names, braces expanded: `crate::a::{b, c::{d}}` -> `crate::a::b`,
/// `crate::a::c::d`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let prefix = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&prefix, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&prefix, &inner[start..], out);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or(tree).trim();
    if !path.is_empty() {
        out.push(join(prefix, path));
    }
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}::{rest}"),
    }
}

/// The paths a file names: its `use` declarations and any `crate::` path in its code.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with("self::")
        {
            expand("", &tree, &mut paths);
        }
    }
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        paths.push(tail[..len].trim_end_matches(':').to_owned());
        rest = &tail[len..];
    }
    paths
}

/// The module a path lands in: the longest prefix of it that is a file.
fn resolve(from: &str, path: &str, all: &BTreeMap<String, Module>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = match segments.first() {
        Some(&"crate") => {
            segments.remove(0);
            Vec::new()
        }
        Some(&"super") | Some(&"self") => {
            // `self` is the module itself, each `super` its parent.
            let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
            if segments.first() == Some(&"self") {
                segments.remove(0);
            }
            base
        }
        _ => return None,
    };
    base.extend(segments);
    (1..=base.len())
        .rev()
        .map(|n| base[..n].join("::"))
        .find(|m| all.contains_key(m))
}

fn graph() -> (BTreeMap<String, Module>, BTreeMap<String, BTreeSet<String>>) {
    let all = modules();
    let mut edges = BTreeMap::new();
    for (name, module) in &all {
        let targets: BTreeSet<String> = named_paths(without_tests(&module.text))
            .iter()
            .filter_map(|p| resolve(name, p, &all))
            .filter(|t| t != name && !t.is_empty())
            .collect();
        edges.insert(name.clone(), targets);
    }
    (all, edges)
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(start: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS.iter().position(|l| *l == top)
}

#[test]
fn the_parser_finds_the_imports_it_must() {
    let (_, edges) = graph();
    // Known edges, one per kind of path: a braced `use crate::`, a `use super::` inside a
    // folder, and a `crate::` path in code.
    let has = |from: &str, to: &str| edges.get(from).is_some_and(|t| t.contains(to));
    assert!(has("serve::respond", "policy::dispatch"));
    assert!(has(
        "policy::static_files::lookup",
        "policy::static_files::security"
    ));
    assert!(has("http::connection", "http::h1"));
    assert!(has("control::daemon", "serve::workers"));
}

#[test]
fn no_file_imports_in_a_cycle() {
    let (_, edges) = graph();
    for start in edges.keys() {
        if let Some(cycle) = cycle_from(start, &edges) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn layers_import_only_the_layers_before_them() {
    let (_, edges) = graph();
    let mut upward = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            if let (Some(a), Some(b)) = (layer(from), layer(to)) {
                if b > a {
                    upward.push(format!("{from} -> {to}"));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layers: {upward:#?}");
    let (all, _) = graph();
    let outside: Vec<&String> = all
        .keys()
        .filter(|m| !m.is_empty() && m.as_str() != "main" && layer(m).is_none())
        .collect();
    assert!(
        outside.is_empty(),
        "modules outside every layer: {outside:?}"
    );
}

#[test]
fn no_file_is_over_the_line_limit() {
    let (all, _) = graph();
    let long: Vec<String> = all
        .values()
        .map(|m| (m.file.display().to_string(), m.text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{f}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
