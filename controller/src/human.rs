//! Figures for people: byte sizes, counts and durations in short units, as the summary, the
//! thresholds and the live lines write them.

/// 1234567 -> "1.23 MB" (decimal units, as network rates are usually given).
pub fn human_bytes(value: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", units[unit])
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

/// 12345.6 -> "12.3k".
pub fn human_count(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.2}M", value / 1_000_000.0)
    } else if value >= 10_000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Microseconds to a short human duration.
pub fn human_micros(micros: u64) -> String {
    if micros >= 1_000_000 {
        format!("{:.2}s", micros as f64 / 1_000_000.0)
    } else if micros >= 1000 {
        format!("{:.2}ms", micros as f64 / 1000.0)
    } else {
        format!("{micros}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(999.0), "999 B");
        assert_eq!(human_bytes(4_100_000.0), "4.10 MB");
        assert_eq!(human_count(12_345.0), "12.3k");
        assert_eq!(human_micros(1500), "1.50ms");
    }
}
