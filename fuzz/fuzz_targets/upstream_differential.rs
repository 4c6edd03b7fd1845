//! Any bytes, as an upstream's answer to a GET or HEAD, cut into pieces at the points the
//! first bytes choose, with or without a close after them: switchyard's upstream client
//! reads what hyper's client reads, or refuses or cuts it, never more, and never keeps a
//! connection hyper would not (`fuzz/differential/responses.rs`).
#![no_main]

#[path = "../differential/responses.rs"]
mod responses;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(([mode, a, b], input)) = data.split_first_chunk::<3>() else { return };
    let (head_request, closes) = (mode & 1 == 1, mode & 2 == 2);
    let (first, rest) = input.split_at((*a as usize).min(input.len()));
    let (second, third) = rest.split_at((*b as usize).min(rest.len()));
    let pieces: Vec<&[u8]> = [first, second, third].into_iter().filter(|p| !p.is_empty()).collect();
    if let Err(why) = responses::run(&pieces, head_request, closes).verdict() {
        panic!("{why}\ninput: {:?}", String::from_utf8_lossy(input));
    }
});
