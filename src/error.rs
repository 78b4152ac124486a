//! Typed errors for the library code.
//!
//! Every AWS failure becomes [`Error::Aws`], which keeps the operation, the resource it
//! concerned and the AWS error code, so a one-line message is enough to act on. The
//! command layer (`main.rs`) adds no further wrapping: it prints the `Display` form.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} for {resource} failed: {code}: {message}")]
    Aws {
        op: &'static str,
        resource: String,
        code: String,
        message: String,
    },

    #[error("timed out after {}s waiting for {what}; the state file is up to date, re-run to continue", waited.as_secs())]
    Timeout { what: String, waited: Duration },

    #[error(transparent)]
    State(#[from] crate::state::StateError),

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("{0}")]
    Invalid(String),

    #[error(
        "{resource} is not managed by payctl for this environment ({why}); refusing to touch it"
    )]
    NotOwned { resource: String, why: String },

    #[error("{0}")]
    Refused(String),

    #[error(
        "{table} was not deleted: its final backup {backup} {reason}; the table and its data are untouched: fix the cause and run `payctl down` again"
    )]
    FinalBackupFailed {
        table: String,
        backup: String,
        reason: String,
    },

    #[error("{0}")]
    Credentials(String),

    #[error("interrupted while waiting for {0}")]
    Interrupted(String),

    #[error(
        "interrupted: the calls in flight finished, the state file is up to date and the lock is released; re-run `payctl {command} --env {env}` to continue"
    )]
    RunInterrupted { command: String, env: String },
}

impl Error {
    /// The refusal for a resource whose tags do not say payctl owns it for `env`.
    pub fn not_owned(resource: impl Into<String>, env: &str) -> Self {
        Error::NotOwned {
            resource: resource.into(),
            why: format!("it lacks the tags ManagedBy=payctl and Environment={env}"),
        }
    }

    /// The AWS error code, when this error came from AWS.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Builds a closure that turns an SDK error into [`Error::Aws`], keeping the AWS code.
///
/// `ctx` is a short operation name such as `"CreateVpc"`; `resource` names what the
/// call was about (a name or an id).
pub fn aws<E>(op: &'static str, resource: impl Into<String>) -> impl FnOnce(E) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let resource = resource.into();
    move |err: E| {
        let code = err.code().unwrap_or("NoErrorCode").to_string();
        let message = match err.message() {
            Some(m) => m.to_string(),
            None => DisplayErrorContext(&err).to_string(),
        };
        Error::Aws {
            op,
            resource,
            code,
            message: shorten(&one_line(&message), 400),
        }
    }
}

/// Cuts a message to at most `max` characters (undecodable responses can be huge).
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Collapses a multi-line message to one line so every error prints as one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An id or field that AWS must return; its absence is an error, not an empty string.
pub fn required(value: Option<&str>, what: &str) -> Result<String> {
    value
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::Invalid(format!("AWS returned no {what}")))
}

/// Settles a batch of concurrent results: the first error, with a count of the rest
/// (each of which is logged), or `Ok` when all succeeded.
pub fn all_ok(results: Vec<Result<()>>) -> Result<()> {
    let mut errors = results.into_iter().filter_map(|r| r.err());
    let Some(first) = errors.next() else {
        return Ok(());
    };
    let rest: Vec<Error> = errors.collect();
    if rest.is_empty() {
        return Err(first);
    }
    for e in &rest {
        tracing::error!("{e}");
    }
    Err(Error::Invalid(format!(
        "{first} (and {} more errors, logged above)",
        rest.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_newlines() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }

    #[test]
    fn aws_code_only_for_aws_errors() {
        let e = Error::Aws {
            op: "CreateVpc",
            resource: "payment-vpc-dev".into(),
            code: "VpcLimitExceeded".into(),
            message: "too many".into(),
        };
        assert_eq!(e.aws_code(), Some("VpcLimitExceeded"));
        assert_eq!(
            e.to_string(),
            "CreateVpc for payment-vpc-dev failed: VpcLimitExceeded: too many"
        );
        assert_eq!(Error::Invalid("x".into()).aws_code(), None);
    }
}
