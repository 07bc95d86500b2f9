//! Wildcard patterns for event names and label values.

/// A wildcard pattern (`*` matches any run of characters), possibly negated with a leading `!`.
#[derive(Debug, Clone)]
pub struct Pattern {
    negate: bool,
    parts: Vec<String>,
}

impl Pattern {
    /// Parses `text`.
    pub fn new(text: &str) -> Self {
        let (negate, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        Self {
            negate,
            parts: body.split('*').map(str::to_string).collect(),
        }
    }

    pub(super) fn glob(&self, value: &str) -> bool {
        let parts = &self.parts;
        if parts.len() == 1 {
            return value == parts[0];
        }
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if !value.starts_with(first.as_str())
            || !value.ends_with(last.as_str())
            || value.len() < first.len() + last.len()
        {
            return false;
        }
        let mut rest = &value[first.len()..value.len() - last.len()];
        for middle in &parts[1..parts.len() - 1] {
            match rest.find(middle.as_str()) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        true
    }
}

impl Pattern {
    /// The exact text, when the pattern has no wildcard and no negation.
    pub(super) fn exact(&self) -> Option<&str> {
        (!self.negate && self.parts.len() == 1).then(|| self.parts[0].as_str())
    }
}

/// Any of `patterns` matches, none of the negated ones does (Prefect's rule for one label).
pub(super) fn matches_patterns(patterns: &[Pattern], value: Option<&str>) -> bool {
    let (neg, pos): (Vec<&Pattern>, Vec<&Pattern>) = patterns.iter().partition(|p| p.negate);
    let Some(value) = value else {
        // A missing label satisfies only a purely negative rule.
        return pos.is_empty();
    };
    (pos.is_empty() || pos.iter().any(|p| p.glob(value))) && !neg.iter().any(|p| p.glob(value))
}

pub(super) fn name_in(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|p| p.glob(name) != p.negate)
}
