//! Every place where the emulator the tests run against (moto 5.2.5, see
//! `scripts/setup-emulator.sh` and docs/emulator.md) answers differently from AWS, each
//! behind a named function that says what AWS does instead, with a test. Product files
//! call these by name; no other file works around the emulator. Each path is also the
//! product's correct behaviour on AWS; only the reason for choosing it is the emulator.
//!
//! Elsewhere: the CloudWatch SDK crate is pinned to the last release that speaks the
//! query protocol (Cargo.toml), because moto 5.2.5 does not speak Smithy RPC v2 CBOR;
//! the S3 state store checks versioning on its lock's `PutObject` answer (a version id)
//! rather than with `GetBucketVersioning` (see [`crate::state`]).

use crate::error::{Error, Result, aws};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::get_account_settings::GetAccountSettingsError;
use aws_sdk_lambda::types::EventSourceMappingConfiguration;
use aws_sdk_s3::types::BucketVersioningStatus;

/// GetAccountSettings gave no readable answer: no response that decodes, or an error
/// without a code. moto 5.2.5 does not implement `GET /2016-08-19/account-settings` and
/// answers `404 Not Found` with an HTML page. AWS always answers it, with the limits or a
/// coded error (`AccessDeniedException`, which still stops the run). The pre-flight
/// check then goes on without the numbers: AWS enforces its minimum when the
/// reservation is set anyway.
pub fn account_settings_unanswered(e: &SdkError<GetAccountSettingsError>) -> bool {
    matches!(e, SdkError::ResponseError(_))
        || (matches!(e, SdkError::ServiceError(_)) && e.code().is_none())
}

/// "Every principal" in the deny statement of a bucket that receives S3 server access
/// logs: `{"AWS": "*"}` rather than the bare `"*"`. IAM reads both as every principal in a
/// resource-based policy ("All principals",
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-anonymous>;
/// the CDK's `enforceSSL` writes this form). moto 5.2.5's `PutBucketLogging` looks for the
/// logging service's grant in the target's policy with `Principal.get("Service")`, which
/// fails on a bare string: it answers 500 for every target whose policy has one.
pub fn any_principal_beside_log_delivery() -> serde_json::Value {
    serde_json::json!({"AWS": "*"})
}

/// Before `down` empties a bucket it is about to delete (outside production), the
/// bucket's policy goes first. moto 5.2.5 evaluates a bucket policy statement whose
/// condition it cannot check (`aws:SecureTransport`) as matching, so the TLS-only Deny
/// refuses every `DeleteObjects`, over TLS or not; S3 evaluates the condition, and the
/// Deny never matches payctl's requests, which are all HTTPS. On AWS this deletes a
/// policy that was about to go with its bucket; should the emptying fail, the next `up`
/// puts the policy back.
pub async fn drop_policy_before_emptying(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    let out = s3.delete_bucket_policy().bucket(bucket).send().await;
    out.map(drop).map_err(aws("DeleteBucketPolicy", bucket))
}

/// The event source mappings of `source` (every mapping of the account when `None`),
/// listed without a `FunctionName` filter: callers compare the function ARN themselves.
/// moto 5.2.5 compares `FunctionName` with the function's name literally, so a function
/// ARN there matches nothing; AWS accepts a name, an ARN or a partial ARN. Comparing the
/// ARNs here gives the same answer on both.
pub async fn mappings(
    lambda: &aws_sdk_lambda::Client,
    source: Option<&str>,
) -> Result<Vec<EventSourceMappingConfiguration>> {
    let call = lambda.list_event_source_mappings();
    let call = call.set_event_source_arn(source.map(str::to_string));
    let pages = call.into_paginator().items().send();
    let all = pages.try_collect().await;
    all.map_err(aws(
        "ListEventSourceMappings",
        source.unwrap_or("the account"),
    ))
}

/// A bucket's versioning status (`None`: never enabled), from `GetBucketVersioning`.
///
/// moto (5.2.5) answers with a `GetBucketVersioningResponse` root element where S3 sends
/// `VersioningConfiguration`; the Rust SDK checks the root's name and refuses to decode
/// it, though the `<Status>` element inside is the same. For a successful answer that
/// does not decode, the `Status` element is read from the raw XML the SDK keeps with the
/// error. On AWS the answer decodes and the workaround never runs. An answer without a
/// readable body is an error ([`Error::Invalid`]: the setting is unknown).
pub async fn versioning_of(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Option<BucketVersioningStatus>> {
    match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(out) => Ok(out.status().cloned()),
        Err(e) if undecodable(&e) => {
            let body = e.raw_response().and_then(|r| r.body().bytes());
            match body.and_then(|b| std::str::from_utf8(b).ok()) {
                Some(xml) => Ok(status_in(xml).map(BucketVersioningStatus::from)),
                None => Err(Error::Invalid(format!(
                    "GetBucketVersioning for {bucket}: a successful answer without a readable body"
                ))),
            }
        }
        Err(e) => Err(aws("GetBucketVersioning", bucket)(e)),
    }
}

/// A successful HTTP response whose body the SDK could not decode.
fn undecodable<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => {
            s.err().code().is_none() && s.raw().status().is_success()
        }
        _ => false,
    }
}

/// The text of the first `<Status>` element of an XML document.
fn status_in(xml: &str) -> Option<&str> {
    let start = xml.find("<Status>")? + "<Status>".len();
    let len = xml[start..].find("</Status>")?;
    Some(xml[start..start + len].trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
    }

    #[test]
    fn only_an_answer_without_a_code_counts_as_unanswered() {
        let html_404 = SdkError::<GetAccountSettingsError, _>::service_error(
            GetAccountSettingsError::generic(
                aws_smithy_types::error::ErrorMetadata::builder().build(),
            ),
            response(404),
        );
        assert!(account_settings_unanswered(&html_404));
        let denied = SdkError::<GetAccountSettingsError, _>::service_error(
            GetAccountSettingsError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .build(),
            ),
            response(403),
        );
        assert!(!account_settings_unanswered(&denied));
    }

    #[test]
    fn the_status_is_read_from_any_root_element() {
        let aws = r#"<VersioningConfiguration xmlns="x"><Status>Enabled</Status></VersioningConfiguration>"#;
        assert_eq!(status_in(aws), Some("Enabled"));
        let other = r#"<?xml version="1.0"?><GetBucketVersioningResponse><Status>Suspended</Status></GetBucketVersioningResponse>"#;
        assert_eq!(status_in(other), Some("Suspended"));
        assert_eq!(status_in("<GetBucketVersioningResponse/>"), None);
        assert_eq!(status_in("<Status>Enabled"), None);
    }
}

/// Whether a policy statement's `Resource` is the alias `alias_arn`: payctl's statements
/// on the unqualified function are the others. On AWS an alias has its own policy
/// (`Qualifier`), and the function's unqualified policy never holds the alias's
/// statements. moto 5.2.5 shares one policy object between a function and all its
/// versions and aliases (a shallow copy at `PublishVersion`), so the unqualified policy
/// lists the alias's statements too, with the alias ARN as their `Resource`.
pub fn on_alias(resource: Option<&serde_json::Value>, alias_arn: &str) -> bool {
    match resource {
        Some(serde_json::Value::String(r)) => r == alias_arn,
        Some(serde_json::Value::Array(a)) => a.iter().all(|r| r.as_str() == Some(alias_arn)),
        _ => false,
    }
}

/// Whether an event source mapping's `FunctionArn` is the alias `alias_arn`. AWS keeps
/// the alias ARN a mapping was created with
/// (<https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html>:
/// the mapping invokes the alias, so it follows the alias to each new version). moto
/// 5.2.5 resolves the alias when the mapping is created and stores the ARN of the
/// version it pointed at then (`…:function:<name>:<n>`); that ARN is accepted here as
/// the alias's, so the mapping is not re-pointed on every run.
pub fn invokes_alias(function_arn: Option<&str>, alias_arn: &str) -> bool {
    let Some(have) = function_arn else {
        return false;
    };
    if have == alias_arn {
        return true;
    }
    let base = alias_arn.rsplit_once(':').map_or(alias_arn, |(b, _)| b);
    have.strip_prefix(base)
        .and_then(|q| q.strip_prefix(':'))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    #[test]
    fn a_mapping_on_the_alias_or_on_the_version_moto_resolved_it_to_invokes_the_alias() {
        let alias = "arn:aws:lambda:us-east-1:123456789012:function:payment-processor-dev:live";
        let base = "arn:aws:lambda:us-east-1:123456789012:function:payment-processor-dev";
        assert!(invokes_alias(Some(alias), alias));
        assert!(invokes_alias(Some(&format!("{base}:12")), alias));
        assert!(!invokes_alias(Some(base), alias));
        assert!(!invokes_alias(Some(&format!("{base}:$LATEST")), alias));
        assert!(!invokes_alias(Some(&format!("{base}-x:1")), alias));
        assert!(!invokes_alias(None, alias));
    }

    #[test]
    fn a_statement_is_on_the_alias_only_when_its_resource_is_the_alias() {
        let alias = "arn:aws:lambda:us-east-1:1:function:f:live";
        assert!(on_alias(Some(&serde_json::json!(alias)), alias));
        assert!(on_alias(Some(&serde_json::json!([alias])), alias));
        let base = serde_json::json!("arn:aws:lambda:us-east-1:1:function:f");
        assert!(!on_alias(Some(&base), alias));
        assert!(!on_alias(None, alias));
    }
}
