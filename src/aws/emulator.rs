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

use crate::error::{Result, aws};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::get_account_settings::GetAccountSettingsError;
use aws_sdk_lambda::types::EventSourceMappingConfiguration;

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
}
