//! Whatever the configuration text, parsing and validation return a value or an error
//! with a position; they never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match switchyard::config::parse(std::path::Path::new("/nonexistent/fuzz.toml"), text) {
        Ok(config) => {
            let _ = switchyard::config::summary(&config);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
