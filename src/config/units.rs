//! Durations and byte sizes as operators write them (`"500ms"`, `"10s"`, `"100MiB"`).
//!
//! Durations go through `humantime`. Sizes are parsed here because the crates that parse
//! sizes accept decimal fractions, spaces and case-insensitive units ("1.5 mb"), and a
//! silently misread limit is exactly what this config must never allow: only an integer
//! followed directly by one of the listed units is a size.

use std::time::Duration;

/// Parses `"500ms"`, `"10s"`, `"2m"`, `"1h 30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"500ms\", \"10s\" or \"2m\" ({e})"))
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("B", 1),
];

/// Parses `"64KiB"`, `"100MiB"`, `"1GB"` or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size like \"64KiB\" or \"100MiB\"");
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(bad)?
    };
    number.checked_mul(multiplier).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "10 MiB",
            "10mib",
            "-1",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10").is_err());
    }
}
