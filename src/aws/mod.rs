//! AWS client setup: one `SdkConfig` per run, built from the SDK's standard chains.
//!
//! Region: `--region`, else the SDK's chain (`AWS_REGION`, profile), else `us-east-1`.
//! Credentials and endpoints come from the standard chain, so `AWS_PROFILE` and
//! `AWS_ENDPOINT_URL` work as everywhere else; `--profile` picks the profile instead of
//! `AWS_PROFILE`. The first retry layer lives here: the
//! standard retry mode with a generous attempt count absorbs throttling and 5xx for every
//! call; payctl's own bounded waiters (`waiter.rs`) handle eventual consistency.

pub mod emulator;
pub mod tally;

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
    pub wafv2: aws_sdk_wafv2::Client,
    pub backup: aws_sdk_backup::Client,
}

/// A client of service `$krate`, with the [`ReadOnly`] guard when `$guard` holds.
macro_rules! client {
    ($krate:ident, $config:expr, $guard:expr) => {{
        let mut builder = $krate::config::Builder::from($config).interceptor(tally::Count);
        if $guard {
            builder = builder.interceptor(ReadOnly);
        }
        $krate::Client::from_conf(builder.build())
    }};
}

impl Clients {
    /// The stack's clients; every S3 request (but `CreateBucket` and `ListBuckets`)
    /// expects its bucket to be owned by `account_id`, the stack's account.
    pub fn new(config: &SdkConfig, account_id: &str) -> Self {
        Self::build(config, account_id, false)
    }

    /// Clients that refuse, before sending, every call that is not a read (`plan`).
    pub fn read_only(config: &SdkConfig, account_id: &str) -> Self {
        Self::build(config, account_id, true)
    }

    fn build(config: &SdkConfig, account_id: &str, read_only: bool) -> Self {
        let mut s3 = s3_config(config, account_id).interceptor(tally::Count);
        if read_only {
            s3 = s3.interceptor(ReadOnly);
        }
        Clients {
            ec2: client!(aws_sdk_ec2, config, read_only),
            kms: client!(aws_sdk_kms, config, read_only),
            rds: client!(aws_sdk_rds, config, read_only),
            dynamodb: client!(aws_sdk_dynamodb, config, read_only),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sqs: client!(aws_sdk_sqs, config, read_only),
            iam: client!(aws_sdk_iam, config, read_only),
            lambda: client!(aws_sdk_lambda, config, read_only),
            logs: client!(aws_sdk_cloudwatchlogs, config, read_only),
            apigateway: client!(aws_sdk_apigateway, config, read_only),
            cloudwatch: client!(aws_sdk_cloudwatch, config, read_only),
            sns: client!(aws_sdk_sns, config, read_only),
            wafv2: client!(aws_sdk_wafv2, config, read_only),
            backup: client!(aws_sdk_backup, config, read_only),
        }
    }
}

/// True for an operation that only reads: `Describe*`, `Get*`, `List*`, `Head*`.
pub fn is_read(operation: &str) -> bool {
    ["Describe", "Get", "List", "Head"]
        .iter()
        .any(|p| operation.starts_with(p))
}

/// The guard behind [`Clients::read_only`]: a call that would change anything fails
/// before it is sent. `plan` notes changes instead of making them, so this only fires
/// on a path that forgot to ask [`crate::engine::Ctx::apply`] — a bug, never a change.
#[derive(Debug)]
struct ReadOnly;

impl aws_smithy_runtime_api::client::interceptors::Intercept for ReadOnly {
    fn name(&self) -> &'static str {
        "payctl-read-only"
    }

    // Not `read_before_execution`: a client's interceptors see that hook before the
    // operation's own configuration (which names it) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(meta) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
        else {
            return Err("read-only run: a call without an operation name was refused".into());
        };
        if is_read(meta.name()) {
            return Ok(());
        }
        Err(format!(
            "read-only run: {} {} was refused before it was sent (this is a payctl bug: plan must only read)",
            meta.service(),
            meta.name()
        )
        .into())
    }
}

/// An S3 client configuration whose every request that names a bucket carries
/// `ExpectedBucketOwner: owner` ([`ExpectedOwner`]).
pub fn s3_config(config: &SdkConfig, owner: &str) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(config).interceptor(ExpectedOwner(owner.to_string()))
}

/// The S3 operations that take no `ExpectedBucketOwner`: a bucket that does not exist
/// yet has no owner to expect, and `ListBuckets` names none.
pub const NO_EXPECTED_OWNER: [&str; 2] = ["CreateBucket", "ListBuckets"];

pub const EXPECTED_OWNER_HEADER: &str = "x-amz-expected-bucket-owner";

/// Sets the `x-amz-expected-bucket-owner` header on every S3 request but
/// [`NO_EXPECTED_OWNER`]: S3 then answers 403 Access Denied when another account owns
/// the bucket, so a bucket of a predictable name that someone else created (e.g. after a
/// `down`) is never read, adopted, written or deleted. One mechanism on the client, so
/// no call can forget it; a request that sets the parameter itself keeps its value.
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html>
#[derive(Debug)]
struct ExpectedOwner(String);

impl aws_smithy_runtime_api::client::interceptors::Intercept for ExpectedOwner {
    fn name(&self) -> &'static str {
        "payctl-expected-bucket-owner"
    }

    // Before signing: S3 wants every `x-amz-*` header signed.
    fn modify_before_signing(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name().to_string());
        if operation.is_some_and(|op| NO_EXPECTED_OWNER.contains(&op.as_str())) {
            return Ok(());
        }
        let headers = context.request_mut().headers_mut();
        if !headers.contains_key(EXPECTED_OWNER_HEADER) {
            headers.insert(EXPECTED_OWNER_HEADER, self.0.clone());
        }
        Ok(())
    }
}

/// Whether an S3 error is S3's 403 Access Denied: the answer to a request whose
/// `ExpectedBucketOwner` is not the bucket's owner (or to credentials without access).
pub fn s3_forbidden<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    matches!(e, aws_sdk_s3::error::SdkError::ServiceError(s) if s.raw().status().as_u16() == 403)
}

/// Loads the shared SDK configuration with payctl's retry and timeout settings, with
/// the SDK's own choice of profile (`AWS_PROFILE`, else `default`).
pub async fn load_config(region: Option<String>) -> SdkConfig {
    load_config_with_profile(region, None).await
}

/// Loads the shared SDK configuration with payctl's retry and timeout settings.
///
/// `profile` (`--profile`) names the profile of the shared config and credentials files
/// for every setting the SDK reads from a profile (credentials, region, endpoint, ...),
/// beating `AWS_PROFILE`; environment variables such as `AWS_REGION` or
/// `AWS_ACCESS_KEY_ID` still come first, as in the AWS CLI. `region` (`--region`)
/// beats them all.
pub async fn load_config_with_profile(region: Option<String>, profile: Option<&str>) -> SdkConfig {
    let mut from_chain = aws_config::default_provider::region::Builder::default();
    if let Some(profile) = profile {
        from_chain = from_chain.profile_name(profile);
    }
    let region = RegionProviderChain::first_try(region.map(Region::new))
        .or_else(from_chain.build())
        .or_else(Region::from_static(DEFAULT_REGION));
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    loader
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("a", "b", None, None, "test"),
            ))
            .retry_config(RetryConfig::disabled())
            .build()
    }

    /// An operation and the owner its request expected.
    type Sent = (String, Option<String>);

    /// Records each request's operation and expected owner, then stops it unsent.
    #[derive(Debug, Clone, Default)]
    struct Seen(std::sync::Arc<std::sync::Mutex<Vec<Sent>>>);

    impl aws_smithy_runtime_api::client::interceptors::Intercept for Seen {
        fn name(&self) -> &'static str {
            "seen"
        }

        fn read_before_transmit(
            &self,
            context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
            _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
            cfg: &mut aws_smithy_types::config_bag::ConfigBag,
        ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
            let op = cfg
                .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
                .map(|m| m.name().to_string())
                .unwrap_or_default();
            let owner = context
                .request()
                .headers()
                .get(EXPECTED_OWNER_HEADER)
                .map(str::to_string);
            self.0.lock().unwrap().push((op, owner));
            Err("stopped by the test".into())
        }
    }

    #[tokio::test]
    async fn every_s3_request_but_create_and_list_buckets_expects_the_owner() {
        let seen = Seen::default();
        let conf = s3_config(&unreachable(), "123456789012")
            .interceptor(seen.clone())
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(conf);
        let _ = s3.head_bucket().bucket("b-1").send().await;
        let _ = s3.create_bucket().bucket("b-1").send().await;
        let _ = s3.list_buckets().send().await;
        let _ = s3.put_object().bucket("b-1").key("k").send().await;
        let _ = s3.delete_bucket().bucket("b-1").send().await;
        // A request that names its own owner keeps it.
        let _ = s3
            .get_object()
            .bucket("b-1")
            .key("k")
            .expected_bucket_owner("111122223333")
            .send()
            .await;
        let owner = Some("123456789012".to_string());
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                ("HeadBucket".to_string(), owner.clone()),
                ("CreateBucket".to_string(), None),
                ("ListBuckets".to_string(), None),
                ("PutObject".to_string(), owner.clone()),
                ("DeleteBucket".to_string(), owner),
                ("GetObject".to_string(), Some("111122223333".to_string())),
            ]
        );
    }

    #[test]
    fn reads_are_told_apart_by_name() {
        for op in ["DescribeVpcs", "GetFunction", "ListAliases", "HeadBucket"] {
            assert!(is_read(op), "{op}");
        }
        for op in ["CreateVpc", "PutBucketPolicy", "UpdateStage", "TagResource"] {
            assert!(!is_read(op), "{op}");
        }
    }

    #[tokio::test]
    async fn the_read_only_guard_refuses_a_change_before_sending_it() {
        let clients = Clients::read_only(&unreachable(), "123456789012");
        let err = clients
            .ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await;
        let msg = format!("{:?}", err.expect_err("refused"));
        assert!(
            msg.contains("read-only run: EC2 CreateVpc was refused"),
            "{msg}"
        );
        // A read passes the guard and only then fails to connect.
        let err = clients.ec2.describe_vpcs().send().await;
        let msg = format!("{:?}", err.expect_err("nothing listens on port 9"));
        assert!(!msg.contains("read-only run"), "{msg}");
        // The ordinary clients send changes.
        let err = Clients::new(&unreachable(), "123456789012")
            .ec2
            .create_vpc()
            .send()
            .await;
        assert!(!format!("{:?}", err.expect_err("no server")).contains("read-only run"));
    }
}
