//! Any bytes, cut into up to four pieces at the points the first bytes choose, go into
//! switchyard's connection loop and into hyper's server alone: switchyard hands the
//! application hyper's requests or a prefix of them, never more or different ones, and
//! never hangs (`fuzz/differential/requests.rs`).
#![no_main]

#[path = "../differential/requests.rs"]
mod requests;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cuts, input)) = data.split_first_chunk::<3>() else { return };
    let mut pieces = Vec::new();
    let mut rest = input;
    for &cut in cuts {
        let (a, b) = rest.split_at((cut as usize).min(rest.len()));
        if !a.is_empty() {
            pieces.push(a);
        }
        rest = b;
    }
    pieces.push(rest);
    if let Err(why) = requests::run(&pieces).verdict() {
        panic!("{why}\ninput: {:?}", String::from_utf8_lossy(input));
    }
});
