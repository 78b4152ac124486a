//! The audit bucket's settings, as declarations (see [`converge`]): object ownership,
//! public access block, versioning, default encryption, lifecycle and bucket policy.
//!
//! Each is read (a bucket created in this run has CreateBucket's settings, known without
//! reading), shown as text, compared with what payctl wants, noted as `old → new` on
//! `plan` and put on `up` by `Ctx::converge`.

use super::{ADDR, ARCHIVE_AFTER_DAYS, LIFECYCLE_RULE, tls_only_policy};
use crate::aws::emulator;
use crate::data::build_error;
use crate::engine::Ctx;
use crate::error::{Error, Result, aws};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionTransition, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Transition, TransitionStorageClass, VersioningConfiguration,
};
use std::fmt;

const ALL_FOUR: &str = "all four";

/// Puts back every setting that differs; true when it wrote one. `new`: the bucket was
/// created in this run.
pub(super) async fn converge(ctx: &Ctx, bucket: &str, key_arn: &str, new: bool) -> Result<bool> {
    let b = Bucket {
        ctx,
        name: bucket,
        new,
    };
    let enforced = ObjectOwnership::BucketOwnerEnforced.as_str();
    let have = b.ownership().await?;
    let mut wrote = ctx
        .converge(ADDR, "object ownership", have.as_str(), enforced, || {
            b.enforce_ownership()
        })
        .await?;

    let have = b.public_access().await?;
    wrote |= ctx
        .converge(ADDR, "block public access", have, ALL_FOUR, || {
            b.block_public_access()
        })
        .await?;

    let have = b.versioning().await?;
    let enabled = BucketVersioningStatus::Enabled.as_str();
    wrote |= ctx
        .converge(ADDR, "versioning", have.as_str(), enabled, || {
            b.enable_versioning()
        })
        .await?;

    let have = b.encryption().await?;
    let want = format!(
        "{} {key_arn} (bucket key)",
        ServerSideEncryption::AwsKms.as_str()
    );
    wrote |= ctx
        .converge(ADDR, "default encryption", have, want, || {
            b.encrypt_with(key_arn)
        })
        .await?;

    let have = b.lifecycle().await?;
    wrote |= ctx
        .converge(ADDR, "lifecycle", have, LIFECYCLE_RULE, || b.archive())
        .await?;

    let have = b.policy().await?;
    let want = match (ctx.settings.audit_bucket_tls_only, have) {
        (true, _) => Policy::TlsOnly,
        // Turned off for this environment (payctl.toml): remove payctl's own policy only.
        (false, Policy::TlsOnly) => Policy::None,
        (false, other) => other,
    };
    wrote |= ctx
        .converge(ADDR, "bucket policy", have, want, || b.set_policy(want))
        .await?;
    Ok(wrote)
}

/// The bucket's policy as far as payctl is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    None,
    /// payctl's TLS-only policy.
    TlsOnly,
    /// Any other policy.
    Edited,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::None => "none",
            Policy::TlsOnly => "TLS only",
            Policy::Edited => "edited",
        })
    }
}

/// The audit bucket, with each setting's read and write.
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

    async fn encrypt_with(&self, key_arn: &str) -> Result<()> {
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(key_arn)
            .build()
            .map_err(build_error)?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default)
            .bucket_key_enabled(true)
            .build();
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build();
        let call = self.s3().put_bucket_encryption().bucket(self.name);
        let call = call.server_side_encryption_configuration(conf.map_err(build_error)?);
        self.put("PutBucketEncryption", call.send().await)
    }

    /// The archive rule's name when the bucket has it as payctl sets it.
    async fn lifecycle(&self) -> Result<&'static str> {
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
        let archived = rules.iter().any(|r| {
            r.id() == Some(LIFECYCLE_RULE)
                && r.status() == &ExpirationStatus::Enabled
                && r.transitions()
                    .iter()
                    .any(|t| to_glacier(t.days(), t.storage_class()))
                && r.noncurrent_version_transitions()
                    .iter()
                    .any(|t| to_glacier(t.noncurrent_days(), t.storage_class()))
        });
        Ok(if archived {
            LIFECYCLE_RULE
        } else {
            "no archive rule"
        })
    }

    async fn archive(&self) -> Result<()> {
        let current = Transition::builder()
            .days(ARCHIVE_AFTER_DAYS)
            .storage_class(TransitionStorageClass::Glacier)
            .build();
        let noncurrent = NoncurrentVersionTransition::builder()
            .noncurrent_days(ARCHIVE_AFTER_DAYS)
            .storage_class(TransitionStorageClass::Glacier)
            .build();
        let rule = LifecycleRule::builder()
            .id(LIFECYCLE_RULE)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .transitions(current)
            .noncurrent_version_transitions(noncurrent)
            .build()
            .map_err(build_error)?;
        let conf = BucketLifecycleConfiguration::builder().rules(rule).build();
        let call = self
            .s3()
            .put_bucket_lifecycle_configuration()
            .bucket(self.name);
        let call = call.lifecycle_configuration(conf.map_err(build_error)?);
        self.put("PutBucketLifecycleConfiguration", call.send().await)
    }

    async fn policy(&self) -> Result<Policy> {
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
        Ok(if have == Some(tls_only_policy(self.name)) {
            Policy::TlsOnly
        } else {
            Policy::Edited
        })
    }

    async fn set_policy(&self, want: Policy) -> Result<()> {
        let s3 = self.s3();
        match want {
            Policy::TlsOnly => {
                let call = s3.put_bucket_policy().bucket(self.name);
                let call = call.policy(tls_only_policy(self.name).to_string());
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
}
