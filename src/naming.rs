//! Environment names, resource names and the tags every resource carries.
//!
//! Names follow `payment-<purpose>-<env>`. The environment name is embedded in S3, RDS and
//! Lambda names, so it is validated before anything touches AWS: lowercase letters, digits
//! and single hyphens, starting with a letter, not ending with a hyphen, at most 16
//! characters (RDS identifiers forbid `--` and a trailing `-`).

use crate::error::{Error, Result};

pub const TAG_PROJECT: (&str, &str) = ("Project", "payment-processing");
pub const TAG_MANAGED_BY: (&str, &str) = ("ManagedBy", "payctl");
pub const TAG_TEAM: (&str, &str) = ("Team", "platform-engineering");
pub const TAG_COST_CENTER: (&str, &str) = ("CostCenter", "fintech-payments");
pub const TAG_ENVIRONMENT: &str = "Environment";
/// EC2 has no name field: the console and payctl's own lookups use the `Name` tag.
pub const TAG_NAME: &str = "Name";

pub const MAX_ENV_LEN: usize = 16;

/// Checks an environment name; the error is one line that says what is allowed.
pub fn validate_env(env: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "invalid environment name {env:?}: {why} (use lowercase letters, digits and single hyphens, starting with a letter, at most {MAX_ENV_LEN} characters)"
        )))
    };
    if env.is_empty() {
        return bad("it is empty");
    }
    if env.len() > MAX_ENV_LEN {
        return bad(&format!("it has {} characters", env.len()));
    }
    if !env.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lowercase letter");
    }
    if let Some(c) = env
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return bad(&format!("{c:?} is not allowed"));
    }
    if env.ends_with('-') || env.contains("--") {
        return bad("it must not end with a hyphen or contain two in a row");
    }
    Ok(())
}

/// `payment-<purpose>-<env>`.
pub fn name(purpose: &str, env: &str) -> String {
    format!("payment-{purpose}-{env}")
}

/// The five tags every taggable resource carries.
pub fn standard_tags(env: &str) -> Vec<(String, String)> {
    [
        TAG_PROJECT,
        (TAG_ENVIRONMENT, env),
        TAG_MANAGED_BY,
        TAG_TEAM,
        TAG_COST_CENTER,
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// True when a resource's tags say payctl manages it for `env`.
pub fn is_owned<'a>(env: &str, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let (mut managed, mut in_env) = (false, false);
    for (k, v) in tags {
        managed |= k == TAG_MANAGED_BY.0 && v == TAG_MANAGED_BY.1;
        in_env |= k == TAG_ENVIRONMENT && v == env;
    }
    managed && in_env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for env in ["dev", "prod", "qa-2", "a", "abcdefghijklmnop", "pr-123-x"] {
            assert!(validate_env(env).is_ok(), "{env}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for env in [
            "",
            "Dev",
            "1dev",
            "-dev",
            "dev-",
            "de--v",
            "dev_1",
            "dév",
            "dev.x",
            "abcdefghijklmnopq",
            "dev prod",
        ] {
            let err = validate_env(env).unwrap_err().to_string();
            assert!(err.starts_with("invalid environment name"), "{env}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn names_and_tags() {
        assert_eq!(name("vpc", "dev"), "payment-vpc-dev");
        let tags = standard_tags("qa");
        assert_eq!(tags.len(), 5);
        assert!(tags.contains(&("Environment".into(), "qa".into())));
        assert!(is_owned(
            "qa",
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
        ));
        assert!(!is_owned(
            "dev",
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
        ));
        assert!(!is_owned("qa", [("Environment", "qa")]));
    }
}
