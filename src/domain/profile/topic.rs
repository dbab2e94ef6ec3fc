//! MQTT topic filters of a device profile (`deviceTelemetryTopic` and the others): checked at save
//! and matched against PUBLISH topics and SUBSCRIBE filters.

/// A checked MQTT topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicFilter {
    /// Exactly `#`: every topic.
    All,
    /// No wildcard: the topic itself.
    Exact(String),
    /// Levels with `+` (one non-empty level) and a final `#` (the parent level or any suffix).
    Pattern(Vec<Level>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    Literal(String),
    One,
    Rest,
}

impl TopicFilter {
    /// Checks the filter as MQTT defines them: non-empty, no NUL, `+` and `#` only as whole
    /// levels, `#` only last.
    pub fn parse(filter: &str) -> Result<Self, String> {
        if filter.is_empty() {
            return Err("the filter is empty".to_owned());
        }
        if filter.contains('\0') {
            return Err("the filter contains a NUL character".to_owned());
        }
        if filter.len() > 1024 {
            return Err("the filter is longer than 1024 bytes".to_owned());
        }
        if filter == "#" {
            return Ok(Self::All);
        }
        if !filter.contains(['+', '#']) {
            return Ok(Self::Exact(filter.to_owned()));
        }
        let parts: Vec<&str> = filter.split('/').collect();
        let last = parts.len() - 1;
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            levels.push(match part {
                "+" => Level::One,
                "#" if i == last => Level::Rest,
                "#" => return Err("'#' may only be the last level".to_owned()),
                p if p.contains(['+', '#']) => {
                    return Err(format!("'{p}': '+' and '#' must fill a whole level"));
                }
                p => Level::Literal(p.to_owned()),
            });
        }
        Ok(Self::Pattern(levels))
    }

    /// Whether a PUBLISH topic falls under the filter.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Exact(f) => f == topic,
            Self::Pattern(levels) => {
                let mut parts = topic.split('/');
                for level in levels {
                    match level {
                        Level::Rest => return true,
                        Level::One => match parts.next() {
                            Some(p) if !p.is_empty() => {}
                            _ => return false,
                        },
                        Level::Literal(l) => {
                            if parts.next() != Some(l.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        assert_eq!(TopicFilter::parse("#").unwrap(), TopicFilter::All);
        assert!(TopicFilter::parse("").is_err());
        assert!(TopicFilter::parse("a/#/b").is_err());
        assert!(TopicFilter::parse("a/b+").is_err());
        assert!(TopicFilter::parse("a/b#").is_err());
    }

    #[test]
    fn wildcards_match_as_mqtt_defines() {
        let f = TopicFilter::parse("sensors/+/telemetry").unwrap();
        assert!(f.matches("sensors/a/telemetry"));
        assert!(!f.matches("sensors//telemetry"));
        assert!(!f.matches("sensors/a/b/telemetry"));
        assert!(!f.matches("sensors/a/telemetry/x"));
        let f = TopicFilter::parse("sensors/#").unwrap();
        assert!(f.matches("sensors"));
        assert!(f.matches("sensors/a/b"));
        assert!(!f.matches("sensorsx"));
        let f = TopicFilter::parse("a.b/c").unwrap();
        assert!(f.matches("a.b/c"));
        assert!(!f.matches("axb/c"), "no regex semantics");
    }
}
