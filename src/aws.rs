//! AWS client setup: one `SdkConfig` per run, built from the SDK's standard chains.
//!
//! Region: `--region`, else the SDK's chain (`AWS_REGION`, profile), else `us-east-1`.
//! Credentials and endpoints come from the standard chain, so `AWS_PROFILE` and
//! `AWS_ENDPOINT_URL` work as everywhere else. The first retry layer lives here: the
//! standard retry mode with a generous attempt count absorbs throttling and 5xx for every
//! call; payctl's own bounded waiters (`waiter.rs`) handle eventual consistency.

use crate::error::{Error, Result, aws};
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use std::time::Duration;

pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub kms: aws_sdk_kms::Client,
    pub rds: aws_sdk_rds::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub apigateway: aws_sdk_apigateway::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Clients {
            ec2: aws_sdk_ec2::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            rds: aws_sdk_rds::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            s3: aws_sdk_s3::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            lambda: aws_sdk_lambda::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            apigateway: aws_sdk_apigateway::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
        }
    }
}

/// Loads the shared SDK configuration with payctl's retry and timeout settings.
pub async fn load_config(region: Option<String>) -> SdkConfig {
    let region = RegionProviderChain::first_try(region.map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static(DEFAULT_REGION));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

/// Checks that credentials exist and returns the account id they belong to.
pub async fn account_id(config: &SdkConfig) -> Result<String> {
    let Some(provider) = config.credentials_provider() else {
        return Err(no_credentials());
    };
    if provider.provide_credentials().await.is_err() {
        return Err(no_credentials());
    }
    let out = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(aws("GetCallerIdentity", "the current credentials"))?;
    out.account
        .ok_or_else(|| Error::Credentials("GetCallerIdentity returned no account id".into()))
}

fn no_credentials() -> Error {
    Error::Credentials(
        "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`".into(),
    )
}

pub fn region_of(config: &SdkConfig) -> String {
    config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}
