//! Durations and sizes in php-fpm's spellings.

use std::time::Duration;

/// Parses a duration as php-fpm writes them: `"30"` (seconds), `"30s"`, `"5m"`, `"1h"`, `"1d"`,
/// and, beyond php-fpm, `"500ms"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(duration_error(s)),
    };
    let number: u64 = number.parse().map_err(|_| duration_error(s))?;
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("the duration \"{s}\" is too long"))
}

fn duration_error(s: &str) -> String {
    format!(
        "\"{s}\" is not a duration; write a whole number with an optional unit: \
         \"30\" or \"30s\" (seconds), \"500ms\", \"5m\", \"1h\", \"1d\""
    )
}

/// Parses a size as PHP writes them: `"1024"` (bytes), `"512K"`, `"128M"`, `"1G"` (units of
/// 1024, either case).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let (number, shift) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{s}\" is not a size; write a whole number of bytes with an optional \
             K, M or G: \"1024\", \"512K\", \"128M\", \"1G\""
        ));
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("the size \"{s}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for bad in ["", "s", "-1", "1.5s", "5 m", "1w", "10sec", " 5", "5ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_duration("99999999999999999d").unwrap_err().contains("too long"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes() {
        for bad in ["", "M", "-1M", "1.5M", "128MB", "1T", " 1K", "１K"] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("99999999999999G").unwrap_err().contains("too large"));
    }
}
