//! Parsing and printing of the sizes, durations and counts given on the
//! command line: `100MB`, `64KiB`, `1GB`, `5s`, `250ms`, `1000`.
//!
//! Decimal units (`KB`, `MB`, `GB`) are powers of 1000 and binary units
//! (`KiB`, `MiB`, `GiB`) powers of 1024, as in IEC 80000-13. Unit letters
//! are case-insensitive, so `30mb` is 30 MB.

use std::time::Duration;

/// Parses a byte size: a whole number with an optional unit (`B`, `K`/`KB`,
/// `KiB`, `M`/`MB`, `MiB`, `G`/`GB`, `GiB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return Err(format!("size {text:?} does not start with a number"));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("size {text:?} is too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use B, KB, KiB, MB, MiB, GB or GiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// The longest duration an option takes: a load phase is meant to end.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration: a number (fractions allowed) with an optional unit
/// `ms`, `s` (the default), `m`/`min` or `h`. It must be more than zero and
/// at most [`MAX_DURATION`] (24 h).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (use ms, s, m, min or h)"
            ))
        }
    };
    let out_of_range = || format!("duration {text:?} must be more than 0 and at most 24 h");
    let duration = Duration::try_from_secs_f64(seconds).map_err(|_| out_of_range())?;
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(out_of_range());
    }
    Ok(duration)
}

/// Parses a whole number from `min` to `max`, for the count options.
pub fn parse_count(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let range = if max == u64::MAX {
        format!("of at least {min}")
    } else {
        format!("from {min} to {max}")
    };
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number {range}")),
    }
}

/// Parses a count of at least 1.
pub fn parse_positive(text: &str) -> Result<u64, String> {
    parse_count(text, 1, u64::MAX)
}

/// Prints a byte count with a binary unit, e.g. `30.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("30mb"), Ok(30_000_000));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("20"), Ok(20));
        assert_eq!(parse_size("1_000 B"), Ok(1000));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(parse_size("").is_err());
        assert!(parse_size("MB").is_err());
        assert!(parse_size("10XB")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999GiB").is_err());
        assert!(parse_size("-5").is_err());
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn durations_out_of_range_are_refused() {
        for text in ["0", "0ms", "0.0000000001ms", "24.1h", "99999999999999h"] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.contains("must be more than 0 and at most 24 h"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn counts_in_range() {
        assert_eq!(parse_count("3", 1, 254), Ok(3));
        assert_eq!(parse_count("254", 1, 254), Ok(254));
        assert_eq!(
            parse_count("0", 1, 254),
            Err("must be a whole number from 1 to 254".to_string())
        );
        assert!(parse_count("255", 1, 254).is_err());
        assert!(parse_count("-1", 1, 254).is_err());
        assert_eq!(parse_positive("1000"), Ok(1000));
        assert_eq!(
            parse_positive("0"),
            Err("must be a whole number of at least 1".to_string())
        );
    }

    #[test]
    fn byte_counts_print_with_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(30 << 20), "30.0 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
    }
}
