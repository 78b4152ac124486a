//! A setting as `plan` shows it: compared by its value, shown by a label.

use std::fmt;

/// One setting for [`crate::engine::Ctx::converge`]: compared by `value`, shown in
/// `plan` as `shown` (a policy as `edited → least privilege`, a list of drifted settings
/// as `timeout, memory → as configured`).
#[derive(Debug, Clone)]
pub struct Shown<T> {
    pub value: T,
    pub shown: String,
}

impl<T> Shown<T> {
    pub fn new(value: T, shown: impl Into<String>) -> Self {
        Shown {
            value,
            shown: shown.into(),
        }
    }
}

impl<T: PartialEq> PartialEq for Shown<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// An optional number, shown as `unset` when there is none.
pub fn number(n: Option<i32>, unset: &str) -> Shown<Option<i32>> {
    Shown::new(n, n.map_or_else(|| unset.to_string(), |n| n.to_string()))
}

/// The settings that differ from the wanted ones, by name, as one setting: shown as
/// the list (`timeout, memory`), wanted as none of them (`as configured`).
pub fn drifted(names: Vec<&'static str>) -> Shown<Vec<&'static str>> {
    let shown = if names.is_empty() {
        "as configured".to_string()
    } else {
        names.join(", ")
    };
    Shown::new(names, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_compares_by_value_and_shows_its_label() {
        assert_eq!(Shown::new(1, "one"), Shown::new(1, "uno"));
        assert_ne!(Shown::new(1, "one"), Shown::new(2, "one"));
        assert_eq!(number(None, "none").to_string(), "none");
        assert_eq!(number(Some(7), "none").to_string(), "7");
        assert_eq!(
            drifted(vec!["timeout", "memory"]).to_string(),
            "timeout, memory"
        );
        assert_eq!(drifted(vec![]).to_string(), "as configured");
        assert_ne!(drifted(vec!["timeout"]), drifted(vec![]));
    }
}
