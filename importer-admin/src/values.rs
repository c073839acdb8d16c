//! Parsers of command-line values: intervals people write (`30m`, `1h30m`, `7d`) and RFC 3339
//! instants. `output::interval` prints intervals back the same way.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Parses `90s`, `30m`, `1h`, `1d`, `1h30m`, `2w` (units s, m, h, d, w; no sign).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{text:?} is not an interval: use a number and a unit (s, m, h, d, w), e.g. 30m, 1h, 1d, 1h30m")
    };
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
        parts += 1;
    }
    if parts == 0 || !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Parses an RFC 3339 instant (`2026-11-01T00:00:00Z`, `2026-11-01T01:00:00+01:00`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z: {e}"))
}

/// A list schedule: an interval from 1 minute to 31 days (`importer_core::lists::check_schedule`).
pub fn parse_schedule(text: &str) -> Result<Duration, String> {
    let schedule = parse_interval(text)?;
    importer_core::lists::check_schedule(schedule).map_err(|e| e.to_string())?;
    Ok(schedule)
}

/// `on` or `off` (also true/false, yes/no).
pub fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("{other:?} is not on or off")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn intervals_are_sums_of_numbers_with_units() {
        assert_eq!(parse_interval("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_interval("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_interval("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_interval("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "1", "h", "1x", "-1h", "1h30", "1.5h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_in_any_offset() {
        let t = parse_time("2026-11-01T01:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert!(parse_time("2026-11-01").is_err());
    }
}
