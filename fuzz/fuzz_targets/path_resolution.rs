//! Any request path either is rejected or yields a relative path that cannot leave the
//! web root when joined to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(safe) = switchyard::parts::sanitize(raw) else { return };
    let rel = Path::new(&*safe.relative);
    assert!(!safe.relative.starts_with('/'), "absolute: {raw:?}");
    assert!(!safe.relative.contains('\0'), "NUL: {raw:?}");
    for c in rel.components() {
        assert!(matches!(c, Component::Normal(_)), "{c:?} from {raw:?}");
    }
    let joined = Path::new("/srv/www").join(rel);
    assert!(joined.starts_with("/srv/www"), "{raw:?} escaped to {joined:?}");
});
