//! The audit bucket `payment-audit-<env>-<account>-<region>`: versioned, SSE-KMS with the
//! S3 key and bucket keys, all public access blocked, TLS-only policy, objects (current
//! and noncurrent) to Glacier after 90 days, bucket-owner-enforced ownership.
//!
//! Audit data is kept. In a production environment `down` never deletes the bucket: it
//! stays, with every object version (and its KMS key, see `kms_key`), its record stays in
//! the state file, and the next `up` adopts it; `--purge` is refused there. Elsewhere
//! `down` refuses a non-empty bucket before anything is deleted (`preflight_delete`),
//! unless `--purge` is given, which deletes every object version and delete marker in
//! parallel batches of 1000, then the bucket.

use crate::engine::report::{Change, Kept};
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionTransition, ObjectIdentifier, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, Transition, TransitionStorageClass, VersioningConfiguration,
};
use futures::StreamExt;

pub const KIND: &str = "s3_bucket";
pub const ADDR: &str = "s3_bucket.audit";
pub const ARCHIVE_AFTER_DAYS: i32 = 90;
const LIFECYCLE_RULE: &str = "archive-to-glacier";

pub struct AuditBucket;

pub fn bucket_name(ctx: &Ctx) -> String {
    format!("{}-{}-{}", ctx.name("audit"), ctx.account_id, ctx.region)
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("building an S3 request: {e}"))
}

/// The TLS-only policy: deny every request made without TLS.
pub fn tls_only_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
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

/// The bucket's versioning status (`None`: never enabled).
///
/// Some S3-compatible servers (the local emulator among them) answer with a body whose
/// root element the SDK does not accept; the `Status` element is then read from the
/// raw XML of that successful answer. An answer without a readable body is an error.
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

/// The text of the first `<Status>` element of an XML document.
fn status_in(xml: &str) -> Option<&str> {
    let start = xml.find("<Status>")? + "<Status>".len();
    let len = xml[start..].find("</Status>")?;
    Some(xml[start..start + len].trim())
}

/// S3 refused a request that expected the stack's account to own `bucket` (every
/// request but `CreateBucket` carries `ExpectedBucketOwner`, see [`crate::aws::s3_config`]):
/// the name is taken by another account, and nothing of it is read, adopted, written
/// or deleted.
fn foreign(ctx: &Ctx, bucket: &str) -> Error {
    Error::NotOwned {
        resource: format!("S3 bucket {bucket}"),
        why: format!(
            "it is owned by another account: S3 answered 403 Access Denied to a request expecting owner {}",
            ctx.account_id
        ),
    }
}

/// Whether the bucket exists (and is reachable with these credentials).
pub async fn exists(ctx: &Ctx, bucket: &str) -> Result<bool> {
    match ctx.aws.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
        Err(e) if crate::aws::s3_forbidden(&e) => Err(foreign(ctx, bucket)),
        Err(e) => Err(aws("HeadBucket", bucket)(e)),
    }
}

async fn tags(ctx: &Ctx, bucket: &str) -> Result<Vec<(String, String)>> {
    match ctx.aws.s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()),
        Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchTagSet") => {
            Ok(Vec::new())
        }
        Err(e) if crate::aws::s3_forbidden(&e) => Err(foreign(ctx, bucket)),
        Err(e) => Err(aws("GetBucketTagging", bucket)(e)),
    }
}

async fn check_owned(ctx: &Ctx, bucket: &str) -> Result<()> {
    let tags = tags(ctx, bucket).await?;
    if ctx.owns(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return Ok(());
    }
    Err(Error::not_owned(format!("S3 bucket {bucket}"), &ctx.env))
}

async fn create(ctx: &Ctx, bucket: &str) -> Result<()> {
    let mut call = ctx
        .aws
        .s3
        .create_bucket()
        .bucket(bucket)
        .object_ownership(ObjectOwnership::BucketOwnerEnforced);
    if ctx.region != "us-east-1" {
        let conf = CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(ctx.region.as_str()))
            .build();
        call = call.create_bucket_configuration(conf);
    }
    match call.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
        {
            Ok(())
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_bucket_already_exists()) =>
        {
            Err(Error::NotOwned {
                resource: format!("S3 bucket {bucket}"),
                why: "another account owns that name".into(),
            })
        }
        Err(e) => Err(aws("CreateBucket", bucket)(e)),
    }
}

/// Each bucket setting: read it (unless the bucket is new and has none), put it when it
/// differs. Returns what changed.
async fn converge(ctx: &Ctx, bucket: &str, key_arn: &str, new: bool) -> Result<Vec<&'static str>> {
    let s3 = &ctx.aws.s3;
    let code = |e: &dyn aws_sdk_s3::error::ProvideErrorMetadata| e.code().map(str::to_string);
    let mut changed = Vec::new();

    let tag_set = if new {
        Vec::new()
    } else {
        tags(ctx, bucket).await?
    };
    let want_tags = ctx.tags();
    if want_tags.iter().any(|t| !tag_set.contains(t))
        && ctx.apply(ADDR, "tags", "incomplete", "payctl's standard tags")
    {
        let tags: Vec<Tag> = want_tags
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<_, _>>()
            .map_err(invalid)?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(invalid)?;
        s3.put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(aws("PutBucketTagging", bucket))?;
        changed.push("tags");
    }

    let ownership = if new {
        Some(ObjectOwnership::BucketOwnerEnforced) // set by CreateBucket
    } else {
        match s3
            .get_bucket_ownership_controls()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out
                .ownership_controls()
                .and_then(|c| c.rules().first())
                .map(|r| r.object_ownership().clone()),
            Err(e) if code(&e).as_deref() == Some("OwnershipControlsNotFoundError") => None,
            Err(e) => return Err(aws("GetBucketOwnershipControls", bucket)(e)),
        }
    };
    if ownership != Some(ObjectOwnership::BucketOwnerEnforced)
        && ctx.apply(
            ADDR,
            "object ownership",
            ownership.as_ref().map_or("unset", |o| o.as_str()),
            ObjectOwnership::BucketOwnerEnforced.as_str(),
        )
    {
        let rule = OwnershipControlsRule::builder()
            .object_ownership(ObjectOwnership::BucketOwnerEnforced)
            .build()
            .map_err(invalid)?;
        let controls = OwnershipControls::builder()
            .rules(rule)
            .build()
            .map_err(invalid)?;
        s3.put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(controls)
            .send()
            .await
            .map_err(aws("PutBucketOwnershipControls", bucket))?;
        changed.push("object ownership");
    }

    let block = if new {
        None
    } else {
        match s3.get_public_access_block().bucket(bucket).send().await {
            Ok(out) => out.public_access_block_configuration().cloned(),
            Err(e) if code(&e).as_deref() == Some("NoSuchPublicAccessBlockConfiguration") => None,
            Err(e) => return Err(aws("GetPublicAccessBlock", bucket)(e)),
        }
    };
    let all_blocked = block.is_some_and(|b| {
        b.block_public_acls() == Some(true)
            && b.ignore_public_acls() == Some(true)
            && b.block_public_policy() == Some(true)
            && b.restrict_public_buckets() == Some(true)
    });
    if !all_blocked && ctx.apply(ADDR, "block public access", "not all four", "all four") {
        let conf = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(conf)
            .send()
            .await
            .map_err(aws("PutPublicAccessBlock", bucket))?;
        changed.push("public access block");
    }

    let versioning = if new {
        None
    } else {
        match versioning_of(s3, bucket).await {
            Ok(v) => v,
            // The setting is unknown: enforce it (one idempotent call).
            Err(e @ Error::Invalid(_)) => {
                tracing::warn!("{e}; setting versioning again");
                None
            }
            Err(e) => return Err(e),
        }
    };
    if versioning != Some(BucketVersioningStatus::Enabled)
        && ctx.apply(
            ADDR,
            "versioning",
            versioning.as_ref().map_or("never enabled", |v| v.as_str()),
            BucketVersioningStatus::Enabled.as_str(),
        )
    {
        let conf = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(conf)
            .send()
            .await
            .map_err(aws("PutBucketVersioning", bucket))?;
        changed.push("versioning");
    }

    let encryption = if new {
        None
    } else {
        match s3.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => out
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .cloned(),
            Err(e)
                if code(&e).as_deref()
                    == Some("ServerSideEncryptionConfigurationNotFoundError") =>
            {
                None
            }
            Err(e) => return Err(aws("GetBucketEncryption", bucket)(e)),
        }
    };
    let encrypted = encryption.as_ref().is_some_and(|r| {
        let by_default = r.apply_server_side_encryption_by_default();
        by_default.map(|d| d.sse_algorithm()) == Some(&ServerSideEncryption::AwsKms)
            && by_default.and_then(|d| d.kms_master_key_id()) == Some(key_arn)
            && r.bucket_key_enabled() == Some(true)
    });
    let current = |r: &ServerSideEncryptionRule| {
        let d = r.apply_server_side_encryption_by_default();
        format!(
            "{} {}",
            d.map_or("none", |d| d.sse_algorithm().as_str()),
            d.and_then(|d| d.kms_master_key_id()).unwrap_or("")
        )
    };
    if !encrypted
        && ctx.apply(
            ADDR,
            "default encryption",
            encryption
                .as_ref()
                .map_or("none".to_string(), current)
                .trim_end(),
            format!("aws:kms {key_arn} (bucket key)"),
        )
    {
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(key_arn)
            .build()
            .map_err(invalid)?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default)
            .bucket_key_enabled(true)
            .build();
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(invalid)?;
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(conf)
            .send()
            .await
            .map_err(aws("PutBucketEncryption", bucket))?;
        changed.push("encryption");
    }

    let rules = if new {
        Vec::new()
    } else {
        match s3
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.rules().to_vec(),
            Err(e) if code(&e).as_deref() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(e) => return Err(aws("GetBucketLifecycleConfiguration", bucket)(e)),
        }
    };
    let archived = rules.iter().any(|r| {
        r.id() == Some(LIFECYCLE_RULE)
            && r.status() == &ExpirationStatus::Enabled
            && r.transitions().iter().any(|t| {
                t.days() == Some(ARCHIVE_AFTER_DAYS)
                    && t.storage_class() == Some(&TransitionStorageClass::Glacier)
            })
            && r.noncurrent_version_transitions().iter().any(|t| {
                t.noncurrent_days() == Some(ARCHIVE_AFTER_DAYS)
                    && t.storage_class() == Some(&TransitionStorageClass::Glacier)
            })
    });
    if !archived && ctx.apply(ADDR, "lifecycle", "no archive rule", LIFECYCLE_RULE) {
        let rule = LifecycleRule::builder()
            .id(LIFECYCLE_RULE)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .transitions(
                Transition::builder()
                    .days(ARCHIVE_AFTER_DAYS)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build(),
            )
            .noncurrent_version_transitions(
                NoncurrentVersionTransition::builder()
                    .noncurrent_days(ARCHIVE_AFTER_DAYS)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build(),
            )
            .build()
            .map_err(invalid)?;
        let conf = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(invalid)?;
        let call = s3
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(conf);
        call.send()
            .await
            .map_err(aws("PutBucketLifecycleConfiguration", bucket))?;
        changed.push("lifecycle");
    }

    let want_policy = tls_only_policy(bucket);
    let policy = if new {
        None
    } else {
        match s3.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => out
                .policy()
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()),
            Err(e) if code(&e).as_deref() == Some("NoSuchBucketPolicy") => None,
            Err(e) => return Err(aws("GetBucketPolicy", bucket)(e)),
        }
    };
    if !ctx.settings.audit_bucket_tls_only {
        // Turned off for this environment (payctl.toml): remove payctl's own policy only.
        if policy.as_ref() == Some(&want_policy)
            && ctx.apply(
                ADDR,
                "bucket policy",
                "TLS only",
                "none (audit_bucket_tls_only)",
            )
        {
            s3.delete_bucket_policy()
                .bucket(bucket)
                .send()
                .await
                .map_err(aws("DeleteBucketPolicy", bucket))?;
            changed.push("TLS-only policy removed");
        }
    } else if policy.as_ref() != Some(&want_policy)
        && ctx.apply(
            ADDR,
            "bucket policy",
            if policy.is_some() { "edited" } else { "none" },
            "TLS only",
        )
    {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(want_policy.to_string())
            .send()
            .await
            .map_err(aws("PutBucketPolicy", bucket))?;
        changed.push("TLS-only policy");
    }
    Ok(changed)
}

/// Every object version and delete marker, as delete identifiers.
async fn all_versions(
    ctx: &Ctx,
    bucket: &str,
    limit: Option<usize>,
) -> Result<Vec<ObjectIdentifier>> {
    let mut ids = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let call = ctx
            .aws
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone());
        let out = call
            .send()
            .await
            .map_err(aws("ListObjectVersions", bucket))?;
        let versions = out.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = out
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        for (key, version) in versions.chain(markers) {
            if let Some(key) = key {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_string))
                        .build()
                        .map_err(invalid)?,
                );
            }
        }
        if limit.is_some_and(|l| ids.len() >= l) || out.is_truncated() != Some(true) {
            return Ok(ids);
        }
        key_marker = out.next_key_marker().map(str::to_string);
        version_marker = out.next_version_id_marker().map(str::to_string);
    }
}

async fn purge(ctx: &Ctx, bucket: &str) -> Result<usize> {
    let ids = all_versions(ctx, bucket, None).await?;
    let total = ids.len();
    let chunks: Vec<Vec<ObjectIdentifier>> =
        ids.chunks(1000).map(<[ObjectIdentifier]>::to_vec).collect();
    let batches = chunks.into_iter().map(|chunk| async move {
        let delete = Delete::builder()
            .set_objects(Some(chunk))
            .quiet(true)
            .build()
            .map_err(invalid)?;
        let out = ctx
            .aws
            .s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(aws("DeleteObjects", bucket))?;
        match out.errors().first() {
            Some(e) => Err(Error::Aws {
                op: "DeleteObjects",
                resource: format!("{bucket}/{}", e.key().unwrap_or_default()),
                code: e.code().unwrap_or("Unknown").to_string(),
                message: e.message().unwrap_or_default().to_string(),
            }),
            None => Ok(()),
        }
    });
    let results: Vec<Result<()>> = futures::stream::iter(batches)
        .buffer_unordered(4)
        .collect()
        .await;
    crate::error::all_ok(results)?;
    Ok(total)
}

/// A production `down` keeps the audit trail: the bucket stays, and so does its record.
async fn keep(ctx: &Ctx, bucket: &str) -> Result<()> {
    let arn = format!("arn:aws:s3:::{bucket}");
    ctx.record(ADDR, Record::new(KIND, bucket).arn(&arn))
        .await?;
    ctx.report.keep(
        ADDR,
        Kept {
            what: format!("S3 audit bucket {bucket}, with every object version"),
            id: arn,
            why: "the audit trail of a production environment is kept (PCI DSS 10.5.1: at least 12 months)".into(),
            restore: format!(
                "nothing to restore: it stays as it is, and `payctl up --env {}` adopts it again",
                ctx.env
            ),
            remove: format!(
                "once its retention is over, delete every object version, then `aws s3api delete-bucket --bucket {bucket} --expected-bucket-owner {}`",
                ctx.account_id
            ),
        },
    );
    Ok(())
}

#[async_trait]
impl Resource for AuditBucket {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[kms_key::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let bucket = bucket_name(ctx);
        let key_arn = ctx
            .state
            .get(&kms_key::address("s3"))
            .and_then(|r| r.arn)
            .ok_or_else(|| {
                Error::Invalid(
                    "the S3 KMS key is not in the state file; run `payctl up` again".into(),
                )
            })?;
        let record = Record::new(KIND, &bucket).arn(format!("arn:aws:s3:::{bucket}"));
        let mut change = if exists(ctx, &bucket).await? {
            // A bucket payctl created but had not tagged yet (a crash in between) is in
            // state: the record is written before CreateBucket, as tags come after it.
            if ctx.state.get(ADDR).is_none() {
                check_owned(ctx, &bucket).await?;
                Change::Adopted
            } else {
                Change::Unchanged
            }
        } else {
            if !ctx.would_create(format!("{ADDR} {bucket}")) {
                return Ok(());
            }
            ctx.record(ADDR, record.clone()).await?;
            if let Err(e) = create(ctx, &bucket).await {
                if matches!(e, Error::NotOwned { .. }) {
                    ctx.forget(ADDR).await?;
                }
                return Err(e);
            }
            Change::Created
        };
        ctx.record(ADDR, record).await?;
        let changed = converge(ctx, &bucket, &key_arn, change == Change::Created).await?;
        if change == Change::Unchanged && !changed.is_empty() {
            tracing::info!("S3 bucket {bucket}: put back {}", changed.join(", "));
            change = Change::Updated;
        }
        ctx.report.note(change, format!("{ADDR} {bucket}"));
        Ok(())
    }

    async fn preflight_delete(&self, ctx: &Ctx) -> Result<()> {
        let bucket = bucket_name(ctx);
        if !exists(ctx, &bucket).await? {
            return Ok(());
        }
        check_owned(ctx, &bucket).await?;
        if ctx.settings.production {
            return Ok(()); // kept whatever it holds
        }
        if !ctx.options.purge && !all_versions(ctx, &bucket, Some(1)).await?.is_empty() {
            return Err(Error::Refused(format!(
                "audit bucket {bucket} is not empty and audit data is kept; nothing was deleted. Run `payctl down --env {} --purge` to delete every object version and the bucket",
                ctx.env
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let bucket = bucket_name(ctx);
        if !exists(ctx, &bucket).await? {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        }
        check_owned(ctx, &bucket).await?;
        if ctx.settings.production {
            keep(ctx, &bucket).await?;
            return Ok(());
        }
        if ctx.options.purge {
            let n = purge(ctx, &bucket).await?;
            tracing::info!("purged {n} object versions and delete markers from {bucket}");
        }
        match ctx.aws.s3.delete_bucket().bucket(&bucket).send().await {
            Ok(_) => {}
            Err(e) if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchBucket") => {
            }
            Err(e)
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("BucketNotEmpty") =>
            {
                return Err(Error::Refused(format!(
                    "audit bucket {bucket} is not empty (objects arrived during down); run `payctl down --env {} --purge`",
                    ctx.env
                )));
            }
            Err(e) => return Err(aws("DeleteBucket", &bucket)(e)),
        }
        ctx.forget(ADDR).await?;
        ctx.report.note(Change::Deleted, format!("{ADDR} {bucket}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::status_in;

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
