//! MQTT topic names and filters (MQTT 3.1.1 section 4.7, 5.0 section 4.7): which strings are
//! valid, and whether a filter matches a topic. Used to check scenarios, to match deliveries
//! (`match: { topic: 'sensors/+/temp' }`) and to pick a delivery's metric set.

/// The longest topic or filter MQTT can encode (a two-byte length prefix).
pub const MAX_TOPIC: usize = 65_535;

/// Why a topic name cannot be published to, or `None` when it can.
pub fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        return Some("a topic name is not empty");
    }
    if topic.len() > MAX_TOPIC {
        return Some("a topic name is at most 65,535 bytes");
    }
    if topic.contains(['+', '#']) {
        return Some("a topic name holds no wildcard (`+`, `#`): those are for subscriptions");
    }
    if topic.contains('\0') {
        return Some("a topic name holds no NUL");
    }
    None
}

/// Why a topic filter cannot be subscribed to, or `None` when it can.
pub fn filter_problem(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("a topic filter is not empty");
    }
    if filter.len() > MAX_TOPIC {
        return Some("a topic filter is at most 65,535 bytes");
    }
    if filter.contains('\0') {
        return Some("a topic filter holds no NUL");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (index, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || index + 1 != levels.len()) {
            return Some("`#` is a whole level, and the last one (e.g. `sensors/#`)");
        }
        if level.contains('+') && *level != "+" {
            return Some("`+` is a whole level (e.g. `sensors/+/temp`)");
        }
    }
    None
}

/// Whether `filter` matches `topic`. `+` matches one level, `#` the rest (and the parent:
/// `a/#` matches `a`); a filter that starts with a wildcard does not match topics starting
/// with `$` (`#` does not match `$SYS/...`, `$SYS/#` does). Both are taken as valid.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(name) if level == "+" || level == name => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Whether a string has wildcards, so is a filter rather than a topic name.
pub fn has_wildcards(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_levels() {
        assert!(matches("sensors/+/temp", "sensors/a/temp"));
        assert!(!matches("sensors/+/temp", "sensors/a/b/temp"));
        assert!(!matches("sensors/+/temp", "sensors/a"));
        assert!(matches("sensors/#", "sensors/a/b"));
        assert!(matches("sensors/#", "sensors"));
        assert!(!matches("sensors/#", "sensorsx"));
        assert!(matches("#", "a/b"));
        assert!(matches("+", "a"));
        assert!(!matches("+", "a/b"));
        assert!(matches("+/+", "/a"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a//b", "a//b"));
        assert!(matches("a/+/b", "a//b"));
    }

    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/+/uptime", "$SYS/broker/uptime"));
    }

    #[test]
    fn valid_topics_and_filters() {
        assert_eq!(topic_problem("a/b"), None);
        assert!(topic_problem("").is_some());
        assert!(topic_problem("a/+").is_some());
        assert!(topic_problem("a/#").is_some());
        assert_eq!(filter_problem("a/+/b/#"), None);
        assert_eq!(filter_problem("#"), None);
        assert_eq!(filter_problem("$SYS/#"), None);
        assert!(filter_problem("a/#/b").is_some());
        assert!(filter_problem("a/b#").is_some());
        assert!(filter_problem("a/b+").is_some());
        assert!(filter_problem("").is_some());
    }
}
