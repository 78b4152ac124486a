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

mod purge;
mod settings;

use crate::engine::report::{Change, Kept};
use crate::engine::tags::{self, Tagged, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, Via, find, kind};
use crate::error::{Error, Result, aws};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, ObjectOwnership};

/// Read with the emulator workaround (see [`crate::aws::emulator`]).
pub use crate::aws::emulator::versioning_of;

pub const KIND: &str = "s3_bucket";
pub const ADDR: &str = "s3_bucket.audit";
pub const ARCHIVE_AFTER_DAYS: i32 = 90;
const LIFECYCLE_RULE: &str = "archive-to-glacier";
const SERVICE: Service = Service::S3;

pub struct AuditBucket;

pub fn bucket_name(ctx: &Ctx) -> String {
    format!("{}-{}-{}", ctx.name("audit"), ctx.account_id, ctx.region)
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
        Err(e) if crate::aws::s3_forbidden(&e) => Err(foreign(ctx, bucket)),
        out => Ok(SERVICE
            .found(out.map_err(aws("HeadBucket", bucket)))?
            .is_some()),
    }
}

/// The bucket's name when it exists.
async fn head(ctx: &Ctx, bucket: &str) -> Result<Option<String>> {
    Ok(exists(ctx, bucket).await?.then(|| bucket.to_string()))
}

/// The bucket, by the name in state, else by its name.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<String>>> {
    let by_id = |id: String| async move { head(ctx, &id).await };
    let name = bucket_name(ctx);
    find(ctx, ADDR, SERVICE, by_id, || head(ctx, &name)).await
}

async fn create(ctx: &Ctx, bucket: &str) -> Result<()> {
    let call = ctx.aws.s3.create_bucket().bucket(bucket);
    let mut call = call.object_ownership(ObjectOwnership::BucketOwnerEnforced);
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

/// The bucket's tags: refused unless payctl owns it, missing standard tags put back.
/// `via` is `None` for a bucket created in this run. A bucket the state knows but with no
/// tags at all is payctl's too: a run stopped between CreateBucket and tagging it (the
/// record is written before CreateBucket, S3 takes tags only after it). Both get all.
async fn converge_bucket_tags(ctx: &Ctx, bucket: &str, via: Option<Via>) -> Result<bool> {
    let target = tags::S3Bucket(bucket);
    let have = target.read(ctx).await?;
    if have.is_empty() && via != Some(Via::Tags) {
        let write = || target.add(ctx, ctx.tags());
        return ctx.converge(ADDR, "tags", "none", "set", write).await;
    }
    converge_tags(ctx, ADDR, &target, Some(have)).await
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

/// DeleteBucket's `BucketNotEmpty`: objects arrived during `down`.
fn not_empty(ctx: &Ctx, bucket: &str, e: Error) -> Error {
    if e.aws_code() != Some("BucketNotEmpty") {
        return e;
    }
    Error::Refused(format!(
        "audit bucket {bucket} is not empty (objects arrived during down); run `payctl down --env {} --purge`",
        ctx.env
    ))
}

#[async_trait]
impl Resource for AuditBucket {
    kind!(KIND, depends_on = [kms_key::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let key_arn = ctx.needed_arn(&kms_key::address("s3"))?;
        let (bucket, change, via) = match lookup(ctx).await? {
            Some(found) => (found.value.clone(), found.change(), Some(found.via)),
            None => {
                let bucket = bucket_name(ctx);
                if !ctx.would_create(format!("{ADDR} {bucket}")) {
                    return Ok(());
                }
                // Recorded first: S3 takes the tags that make it payctl's only after it.
                let record = Record::new(KIND, &bucket).arn(format!("arn:aws:s3:::{bucket}"));
                ctx.record(ADDR, record).await?;
                if let Err(e) = create(ctx, &bucket).await {
                    if matches!(e, Error::NotOwned { .. }) {
                        ctx.forget(ADDR).await?;
                    }
                    return Err(e);
                }
                (bucket, Change::Created, None)
            }
        };
        let retagged = converge_bucket_tags(ctx, &bucket, via).await?;
        let record = Record::new(KIND, &bucket).arn(format!("arn:aws:s3:::{bucket}"));
        ctx.record(ADDR, record).await?;
        let wrote = settings::converge(ctx, &bucket, &key_arn, via.is_none()).await?;
        let change = change.updated_if(retagged || wrote);
        ctx.report.note(change, format!("{ADDR} {bucket}"));
        Ok(())
    }

    async fn preflight_delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(found) = lookup(ctx).await? else {
            return Ok(());
        };
        let bucket = found.value;
        tags::ensure_owned(ctx, &tags::S3Bucket(&bucket)).await?;
        if ctx.settings.production {
            return Ok(()); // kept whatever it holds
        }
        if !ctx.options.purge && !purge::all_versions(ctx, &bucket, Some(1)).await?.is_empty() {
            return Err(Error::Refused(format!(
                "audit bucket {bucket} is not empty and audit data is kept; nothing was deleted. Run `payctl down --env {} --purge` to delete every object version and the bucket",
                ctx.env
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let bucket = found.value;
        tags::ensure_owned(ctx, &tags::S3Bucket(&bucket)).await?;
        if ctx.settings.production {
            return keep(ctx, &bucket).await;
        }
        if ctx.options.purge {
            let n = purge::purge(ctx, &bucket).await?;
            tracing::info!("purged {n} object versions and delete markers from {bucket}");
        }
        let delete = || async {
            let out = ctx.aws.s3.delete_bucket().bucket(&bucket).send().await;
            out.map_err(aws("DeleteBucket", &bucket))
                .map_err(|e| not_empty(ctx, &bucket, e))
        };
        ctx.delete_and_forget(ADDR, &bucket, SERVICE, delete).await
    }
}
