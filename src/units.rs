//! Parsing of the human units every flag accepts: sizes (`64MiB`, `1GiB`, `4096`) and durations
//! (`30s`, `5m`, `1h30m`); and the wall clock in the unit journals and checkpoints store.
//!
//! Uses the `parse-size` and `humantime` crates rather than hand-written parsers: both are small,
//! well kept, and accept exactly the spellings `docs/cli.md` promises.

use std::time::Duration;

/// Parses a byte size such as `64MiB`, `1GiB`, `512k` or a plain number of bytes.
///
/// Binary suffixes (`KiB`, `MiB`, `GiB`) are powers of 1024; decimal ones (`KB`, `MB`) powers of
/// 1000, as their names say.
pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim())
        .map_err(|e| format!("invalid size {text:?}: {e} (examples: 4096, 64MiB, 1GiB)"))
}

/// Parses a duration such as `30s`, `5m`, `1h30m` or `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (examples: 30s, 5m, 1h30m)"))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it): the time unit of capture
/// times, manifests and checkpoints.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").unwrap_err().contains("lots"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("soon").is_err());
    }
}
