//! The buckets' settings, as declarations (see [`converge`]): object ownership, public
//! access block, versioning, default encryption, lifecycle, bucket policy and (for the
//! audit bucket) server access logging. [`Target`] says what differs between the two.
//!
//! Each is read (a bucket created in this run has CreateBucket's settings, known without
//! reading), shown as text, compared with what payctl wants, noted as `old → new` on
//! `plan` and put on `up` by `Ctx::converge`.

use super::{ARCHIVE_AFTER_DAYS, LOG_PREFIX, log_bucket_policy, tls_only_policy};
use crate::aws::emulator;
use crate::data::build_error;
use crate::engine::Ctx;
use crate::error::{Error, Result, aws};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLoggingStatus, BucketVersioningStatus, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, LoggingEnabled,
    NoncurrentVersionExpiration, NoncurrentVersionTransition, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Transition, TransitionStorageClass, VersioningConfiguration,
};
use std::fmt;

const ALL_FOUR: &str = "all four";
const ARCHIVE_RULE: &str = "archive-to-glacier";
const EXPIRE_RULE: &str = "expire-access-logs";

/// What one bucket's settings should be.
pub(super) struct Target {
    encryption: Encryption,
    lifecycle: Lifecycle,
    /// The policy payctl writes with TLS-only on, and with it off (`None`: no policy).
    tls_policy: (&'static str, serde_json::Value),
    plain_policy: Option<(&'static str, serde_json::Value)>,
    /// The audit bucket's server access logging: the log bucket.
    log_to: Option<String>,
}

enum Encryption {
    Kms(String),
    /// SSE-S3 (AES256).
    S3Managed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Current and noncurrent versions to Glacier after [`ARCHIVE_AFTER_DAYS`].
    Archive,
    /// Current and noncurrent versions expire after this many days.
    Expire(i32),
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lifecycle::Archive => write!(f, "{ARCHIVE_RULE} after {ARCHIVE_AFTER_DAYS} days"),
            Lifecycle::Expire(days) => write!(f, "{EXPIRE_RULE} after {days} days"),
        }
    }
}

impl Target {
    /// The audit bucket: SSE-KMS with `key_arn`, archived, TLS-only, logging to `logs`.
    pub(super) fn audit(ctx: &Ctx, key_arn: String, logs: String) -> Target {
        Target {
            encryption: Encryption::Kms(key_arn),
            lifecycle: Lifecycle::Archive,
            tls_policy: ("TLS only", tls_only_policy(&super::bucket_name(ctx))),
            plain_policy: None,
            log_to: Some(logs),
        }
    }

    /// The log bucket: SSE-S3, expired after the log retention, log delivery admitted.
    pub(super) fn access_logs(ctx: &Ctx) -> Target {
        Target {
            encryption: Encryption::S3Managed,
            lifecycle: Lifecycle::Expire(ctx.settings.log_retention_days),
            tls_policy: ("TLS only, log delivery", log_bucket_policy(ctx, true)),
            plain_policy: Some(("log delivery", log_bucket_policy(ctx, false))),
            log_to: None,
        }
    }

    fn encryption_text(&self) -> String {
        match &self.encryption {
            Encryption::Kms(key) => format!(
                "{} {key} (bucket key)",
                ServerSideEncryption::AwsKms.as_str()
            ),
            Encryption::S3Managed => ServerSideEncryption::Aes256.as_str().to_string(),
        }
    }
}

/// Puts back every setting of the bucket at `addr` that differs from `target`; true when
/// it wrote one. `new`: the bucket was created in this run.
pub(super) async fn converge(
    ctx: &Ctx,
    addr: &str,
    bucket: &str,
    target: &Target,
    new: bool,
) -> Result<bool> {
    let b = Bucket {
        ctx,
        name: bucket,
        new,
    };
    let enforced = ObjectOwnership::BucketOwnerEnforced.as_str();
    let have = b.ownership().await?;
    let mut wrote = ctx
        .converge(addr, "object ownership", have.as_str(), enforced, || {
            b.enforce_ownership()
        })
        .await?;

    let have = b.public_access().await?;
    wrote |= ctx
        .converge(addr, "block public access", have, ALL_FOUR, || {
            b.block_public_access()
        })
        .await?;

    let have = b.versioning().await?;
    let enabled = BucketVersioningStatus::Enabled.as_str();
    wrote |= ctx
        .converge(addr, "versioning", have.as_str(), enabled, || {
            b.enable_versioning()
        })
        .await?;

    let have = b.encryption().await?;
    let want = target.encryption_text();
    wrote |= ctx
        .converge(addr, "default encryption", have, want, || {
            b.encrypt_with(&target.encryption)
        })
        .await?;

    let have = b.lifecycle(target.lifecycle).await?;
    let want = target.lifecycle.to_string();
    wrote |= ctx
        .converge(addr, "lifecycle", have, want, || {
            b.set_lifecycle(target.lifecycle)
        })
        .await?;

    let have = b.policy(target).await?;
    let want = match (have, ctx.settings.audit_bucket_tls_only) {
        // Another policy is left as it is.
        (Policy::Edited, _) => Policy::Edited,
        (_, true) => Policy::Ours(target.tls_policy.0),
        // Turned off for this environment (payctl.toml): payctl's own TLS rule goes.
        (_, false) => target
            .plain_policy
            .as_ref()
            .map_or(Policy::None, |p| Policy::Ours(p.0)),
    };
    wrote |= ctx
        .converge(addr, "bucket policy", have, want, || {
            b.set_policy(target, want)
        })
        .await?;

    if let Some(logs) = &target.log_to {
        let have = b.logging().await?;
        let want = format!("to {logs}/{LOG_PREFIX}");
        wrote |= ctx
            .converge(addr, "server access logging", have, want, || b.log_to(logs))
            .await?;
    }
    Ok(wrote)
}

/// A bucket's policy as far as payctl is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    None,
    /// One of payctl's policies for the bucket, by its label.
    Ours(&'static str),
    /// Any other policy.
    Edited,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::None => "none",
            Policy::Ours(label) => label,
            Policy::Edited => "edited",
        })
    }
}

/// A bucket, with each setting's read and write.
struct Bucket<'a> {
    ctx: &'a Ctx,
    name: &'a str,
    /// Created in this run: its settings are CreateBucket's, nothing is read.
    new: bool,
}

impl Bucket<'_> {
    fn s3(&self) -> &aws_sdk_s3::Client {
        &self.ctx.aws.s3
    }

    /// A read's answer: `None` when S3 answers `unset`, the code for "the bucket has no
    /// such configuration".
    fn got<T, E>(
        &self,
        op: &'static str,
        unset: &str,
        out: std::result::Result<T, E>,
    ) -> Result<Option<T>>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match out.map_err(aws(op, self.name)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.aws_code() == Some(unset) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A write's answer.
    fn put<T, E>(&self, op: &'static str, out: std::result::Result<T, E>) -> Result<()>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        out.map(drop).map_err(aws(op, self.name))
    }

    async fn ownership(&self) -> Result<String> {
        if self.new {
            // Set by CreateBucket.
            return Ok(ObjectOwnership::BucketOwnerEnforced.as_str().into());
        }
        let out = self
            .s3()
            .get_bucket_ownership_controls()
            .bucket(self.name)
            .send()
            .await;
        let rule = self
            .got(
                "GetBucketOwnershipControls",
                "OwnershipControlsNotFoundError",
                out,
            )?
            .and_then(|o| o.ownership_controls()?.rules().first().cloned());
        Ok(rule.map_or("unset".into(), |r| r.object_ownership().as_str().into()))
    }

    async fn enforce_ownership(&self) -> Result<()> {
        let rule = OwnershipControlsRule::builder()
            .object_ownership(ObjectOwnership::BucketOwnerEnforced)
            .build()
            .map_err(build_error)?;
        let controls = OwnershipControls::builder().rules(rule).build();
        let call = self.s3().put_bucket_ownership_controls().bucket(self.name);
        let call = call.ownership_controls(controls.map_err(build_error)?);
        self.put("PutBucketOwnershipControls", call.send().await)
    }

    async fn public_access(&self) -> Result<&'static str> {
        if self.new {
            return Ok("not all four");
        }
        let out = self
            .s3()
            .get_public_access_block()
            .bucket(self.name)
            .send()
            .await;
        let block = self.got(
            "GetPublicAccessBlock",
            "NoSuchPublicAccessBlockConfiguration",
            out,
        )?;
        let all = block
            .and_then(|o| o.public_access_block_configuration().cloned())
            .is_some_and(|b| {
                [
                    b.block_public_acls(),
                    b.ignore_public_acls(),
                    b.block_public_policy(),
                    b.restrict_public_buckets(),
                ]
                .iter()
                .all(|v| *v == Some(true))
            });
        Ok(if all { ALL_FOUR } else { "not all four" })
    }

    async fn block_public_access(&self) -> Result<()> {
        let conf = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        let call = self.s3().put_public_access_block().bucket(self.name);
        let call = call.public_access_block_configuration(conf);
        self.put("PutPublicAccessBlock", call.send().await)
    }

    async fn versioning(&self) -> Result<String> {
        let status = if self.new {
            None
        } else {
            match emulator::versioning_of(self.s3(), self.name).await {
                Ok(v) => v,
                // The setting is unknown: enforce it (one idempotent call).
                Err(e @ Error::Invalid(_)) => {
                    tracing::warn!("{e}; setting versioning again");
                    None
                }
                Err(e) => return Err(e),
            }
        };
        Ok(status.map_or("never enabled".into(), |s| s.as_str().into()))
    }

    async fn enable_versioning(&self) -> Result<()> {
        let conf = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        let call = self.s3().put_bucket_versioning().bucket(self.name);
        let call = call.versioning_configuration(conf);
        self.put("PutBucketVersioning", call.send().await)
    }

    /// `<algorithm> <key> (bucket key)`, as much of it as is set, or `none`.
    async fn encryption(&self) -> Result<String> {
        if self.new {
            return Ok("none".into());
        }
        let out = self
            .s3()
            .get_bucket_encryption()
            .bucket(self.name)
            .send()
            .await;
        let unset = "ServerSideEncryptionConfigurationNotFoundError";
        let out = self.got("GetBucketEncryption", unset, out)?;
        let rules = out.and_then(|o| o.server_side_encryption_configuration().cloned());
        let rule = rules.and_then(|c| c.rules().first().cloned());
        let Some(d) = rule
            .as_ref()
            .and_then(|r| r.apply_server_side_encryption_by_default())
        else {
            return Ok("none".into());
        };
        let mut text = d.sse_algorithm().as_str().to_string();
        if let Some(key) = d.kms_master_key_id() {
            text = format!("{text} {key}");
        }
        if rule.and_then(|r| r.bucket_key_enabled()) == Some(true) {
            text.push_str(" (bucket key)");
        }
        Ok(text)
    }

    async fn encrypt_with(&self, encryption: &Encryption) -> Result<()> {
        let by_default = match encryption {
            Encryption::Kms(key_arn) => ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(key_arn),
            Encryption::S3Managed => {
                ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256)
            }
        };
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default.build().map_err(build_error)?)
            .bucket_key_enabled(matches!(encryption, Encryption::Kms(_)))
            .build();
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build();
        let call = self.s3().put_bucket_encryption().bucket(self.name);
        let call = call.server_side_encryption_configuration(conf.map_err(build_error)?);
        self.put("PutBucketEncryption", call.send().await)
    }

    /// `want` as [`Lifecycle`] shows it when the bucket has that rule as payctl sets it,
    /// else what it lacks.
    async fn lifecycle(&self, want: Lifecycle) -> Result<String> {
        let rules = if self.new {
            Vec::new()
        } else {
            let call = self.s3().get_bucket_lifecycle_configuration();
            let out = call.bucket(self.name).send().await;
            let unset = "NoSuchLifecycleConfiguration";
            let out = self.got("GetBucketLifecycleConfiguration", unset, out)?;
            out.map_or(Vec::new(), |o| o.rules().to_vec())
        };
        let to_glacier = |days: Option<i32>, class: Option<&TransitionStorageClass>| {
            days == Some(ARCHIVE_AFTER_DAYS) && class == Some(&TransitionStorageClass::Glacier)
        };
        let enabled = |r: &&LifecycleRule| r.status() == &ExpirationStatus::Enabled;
        let found = match want {
            Lifecycle::Archive => rules.iter().filter(enabled).any(|r| {
                r.id() == Some(ARCHIVE_RULE)
                    && r.transitions()
                        .iter()
                        .any(|t| to_glacier(t.days(), t.storage_class()))
                    && r.noncurrent_version_transitions()
                        .iter()
                        .any(|t| to_glacier(t.noncurrent_days(), t.storage_class()))
            }),
            Lifecycle::Expire(days) => rules.iter().filter(enabled).any(|r| {
                r.id() == Some(EXPIRE_RULE)
                    && r.expiration().and_then(|e| e.days()) == Some(days)
                    && r.noncurrent_version_expiration()
                        .and_then(|e| e.noncurrent_days())
                        == Some(days)
            }),
        };
        Ok(if found {
            want.to_string()
        } else {
            match want {
                Lifecycle::Archive => "no archive rule".into(),
                Lifecycle::Expire(_) => "no expiry rule".into(),
            }
        })
    }

    async fn set_lifecycle(&self, want: Lifecycle) -> Result<()> {
        let rule = LifecycleRule::builder()
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build());
        let rule = match want {
            Lifecycle::Archive => {
                let current = Transition::builder()
                    .days(ARCHIVE_AFTER_DAYS)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build();
                let noncurrent = NoncurrentVersionTransition::builder()
                    .noncurrent_days(ARCHIVE_AFTER_DAYS)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build();
                rule.id(ARCHIVE_RULE)
                    .transitions(current)
                    .noncurrent_version_transitions(noncurrent)
            }
            Lifecycle::Expire(days) => rule
                .id(EXPIRE_RULE)
                .expiration(LifecycleExpiration::builder().days(days).build())
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(days)
                        .build(),
                ),
        };
        let conf = BucketLifecycleConfiguration::builder()
            .rules(rule.build().map_err(build_error)?)
            .build();
        let call = self
            .s3()
            .put_bucket_lifecycle_configuration()
            .bucket(self.name);
        let call = call.lifecycle_configuration(conf.map_err(build_error)?);
        self.put("PutBucketLifecycleConfiguration", call.send().await)
    }

    async fn policy(&self, target: &Target) -> Result<Policy> {
        if self.new {
            return Ok(Policy::None);
        }
        let out = self.s3().get_bucket_policy().bucket(self.name).send().await;
        let Some(out) = self.got("GetBucketPolicy", "NoSuchBucketPolicy", out)? else {
            return Ok(Policy::None);
        };
        let have = out
            .policy()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok());
        let ours = std::iter::once(&target.tls_policy).chain(&target.plain_policy);
        let label = ours
            .into_iter()
            .find(|(_, p)| have.as_ref() == Some(p))
            .map(|(label, _)| *label);
        Ok(label.map_or(Policy::Edited, Policy::Ours))
    }

    async fn set_policy(&self, target: &Target, want: Policy) -> Result<()> {
        let s3 = self.s3();
        match want {
            Policy::Ours(label) => {
                let ours = std::iter::once(&target.tls_policy).chain(&target.plain_policy);
                let Some((_, policy)) = ours.into_iter().find(|(l, _)| *l == label) else {
                    return Ok(());
                };
                let call = s3.put_bucket_policy().bucket(self.name);
                let call = call.policy(policy.to_string());
                self.put("PutBucketPolicy", call.send().await)
            }
            Policy::None => {
                let call = s3.delete_bucket_policy().bucket(self.name);
                self.put("DeleteBucketPolicy", call.send().await)
            }
            // Never wanted: another policy is left as it is.
            Policy::Edited => Ok(()),
        }
    }

    /// `to <bucket>/<prefix>`, or `off`.
    async fn logging(&self) -> Result<String> {
        if self.new {
            return Ok("off".into());
        }
        let out = self
            .s3()
            .get_bucket_logging()
            .bucket(self.name)
            .send()
            .await;
        let out = out.map_err(aws("GetBucketLogging", self.name))?;
        Ok(out.logging_enabled().map_or("off".into(), |l| {
            format!("to {}/{}", l.target_bucket(), l.target_prefix())
        }))
    }

    async fn log_to(&self, logs: &str) -> Result<()> {
        let enabled = LoggingEnabled::builder()
            .target_bucket(logs)
            .target_prefix(LOG_PREFIX)
            .build()
            .map_err(build_error)?;
        let status = BucketLoggingStatus::builder()
            .logging_enabled(enabled)
            .build();
        let call = self.s3().put_bucket_logging().bucket(self.name);
        let call = call.bucket_logging_status(status);
        self.put("PutBucketLogging", call.send().await)
    }
}
