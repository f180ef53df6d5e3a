//! Durations as written in scenarios: `250ms`, `2s`, `1m30s`, `1h`.

use std::time::Duration;

/// Parses a human duration; a bare number is refused so that units are always explicit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration: write e.g. `500ms`, `2s` or `1m`".to_owned());
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "`{trimmed}` has no unit: write e.g. `{trimmed}s` or `{trimmed}ms`"
        ));
    }
    humantime::parse_duration(trimmed)
        .map_err(|error| format!("`{trimmed}` is not a duration ({error}): write e.g. `500ms`, `2s` or `1m30s`"))
}

/// Formats a duration the way scenarios write them.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_bare_numbers() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3 parsecs").is_err());
    }
}
