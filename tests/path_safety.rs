//! Property: no request path, however encoded, resolves to anything outside the web root.
//! Paths are built from the pieces attackers combine (dot segments, encoded dots and
//! slashes, backslashes, NUL, hidden names, symlinks) and run through the same sanitize +
//! lookup the server uses, against a real directory with a secret beside it.

use std::os::unix::fs::symlink;
use std::path::Path;

use proptest::prelude::*;
use switchyard::parts::{lookup, sanitize, Found, Options};

const PIECES: &[&str] = &[
    "..",
    ".",
    "%2e%2e",
    "%2E%2e",
    "%2e",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "%",
    "%zz",
    "a",
    "b",
    "dir",
    "secret.txt",
    "escape",
    ".well-known",
    ".env",
    "%2e%2e%2f",
    "..%2f",
    "//",
    "%c0%ae",
    "index.html",
    "inner-link",
];

fn tree() -> tempfile::TempDir {
    let top = tempfile::Builder::new()
        .prefix("path-safety-")
        .tempdir()
        .unwrap();
    let root = top.path().join("www");
    std::fs::create_dir_all(root.join("dir/a")).unwrap();
    std::fs::create_dir_all(root.join(".well-known")).unwrap();
    std::fs::write(root.join("index.html"), "i").unwrap();
    std::fs::write(root.join("dir/a/b"), "b").unwrap();
    std::fs::write(root.join(".env"), "hidden").unwrap();
    std::fs::write(top.path().join("secret.txt"), "secret").unwrap();
    symlink(top.path(), root.join("escape")).unwrap();
    symlink("dir/a", root.join("inner-link")).unwrap();
    top
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..8).prop_map(|parts| {
        let mut p = String::from("/");
        p.push_str(&parts.join("/"));
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn nothing_resolves_outside_the_root(raw in path_strategy()) {
        let top = tree();
        let root = top.path().join("www").canonicalize().unwrap();
        let Ok(safe) = sanitize(&raw) else { return Ok(()) };
        prop_assert!(!safe.relative.split('/').any(|s| s == ".." || s == "."), "{raw}");
        let index = vec!["index.html".to_owned()];
        let opts = Options { index: &index, precompressed: false };
        if let Ok(Found::File(file)) = lookup(&root, &safe, &opts) {
            prop_assert!(file.path.starts_with(&root), "{raw} -> {}", file.path.display());
            prop_assert!(file.path.file_name() != Some(Path::new("secret.txt").as_os_str()));
            let inside = file.path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            let hidden = inside.split('/').any(|seg| seg.starts_with('.') && seg != ".well-known");
            prop_assert!(!hidden, "hidden file {inside} served for {raw}");
        }
    }
}
