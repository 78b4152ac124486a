//! The stack's two buckets, one kind:
//!
//! - the audit bucket `payment-audit-<env>-<account>-<region>` (`s3_bucket.audit`):
//!   versioned, SSE-KMS with the S3 key and bucket keys, all public access blocked,
//!   TLS-only policy, objects (current and noncurrent) to Glacier after 90 days,
//!   bucket-owner-enforced ownership, and server access logging (FSBP S3.9) into
//! - the access log bucket `payment-audit-logs-<env>-<account>-<region>`
//!   (`s3_bucket.access-logs`), under `audit/`: versioned, SSE-S3 (S3 server access
//!   logging delivers only to a target bucket with SSE-S3, not SSE-KMS), all public access
//!   blocked, a policy that is TLS-only and lets the S3 logging service put objects for
//!   the audit bucket of this account only, and objects expired after the environment's
//!   log retention (365 days in production).
//!
//! The log bucket is made first (its policy must admit the logging service before the
//! audit bucket names it as its target) and deleted last.
//!
//! Audit data and its access logs are kept. In a production environment `down` never
//! deletes either bucket: they stay, with every object version (and the audit bucket's KMS
//! key, see `kms_key`), their records stay in the state file, and the next `up` adopts
//! them; `--purge` is refused there. Elsewhere `down` refuses a non-empty audit bucket
//! before anything is deleted (`preflight_delete`), unless `--purge` is given, which
//! deletes every object version and delete marker in parallel batches of 1000, then the
//! bucket; the log bucket then goes with the access logs it holds (they describe a
//! bucket that is gone; S3 writes them for every request, `down`'s own reads included, so
//! an emptiness rule on them would stop every `down`).

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
pub const LOGS_ADDR: &str = "s3_bucket.access-logs";
/// Where the audit bucket's access logs go in the log bucket.
pub const LOG_PREFIX: &str = "audit/";
pub const ARCHIVE_AFTER_DAYS: i32 = 90;
const SERVICE: Service = Service::S3;

pub struct AuditBucket;

/// One of the two buckets this kind manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Audit,
    AccessLogs,
}

impl Which {
    pub fn addr(self) -> &'static str {
        match self {
            Which::Audit => ADDR,
            Which::AccessLogs => LOGS_ADDR,
        }
    }

    /// The bucket's name (at most 63 characters: see the test).
    pub fn name(self, ctx: &Ctx) -> String {
        let purpose = match self {
            Which::Audit => "audit",
            Which::AccessLogs => "audit-logs",
        };
        format!("{}-{}-{}", ctx.name(purpose), ctx.account_id, ctx.region)
    }

    fn what(self) -> &'static str {
        match self {
            Which::Audit => "audit bucket",
            Which::AccessLogs => "access log bucket",
        }
    }
}

pub fn bucket_name(ctx: &Ctx) -> String {
    Which::Audit.name(ctx)
}

pub fn log_bucket_name(ctx: &Ctx) -> String {
    Which::AccessLogs.name(ctx)
}

/// The TLS-only policy: deny every request made without TLS.
pub fn tls_only_policy(bucket: &str) -> serde_json::Value {
    policy(vec![deny_insecure_transport(
        bucket,
        serde_json::json!("*"),
    )])
}

fn policy(statements: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": statements})
}

/// Denies `principal` every request to `bucket` and its objects made without TLS.
fn deny_insecure_transport(bucket: &str, principal: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": principal,
        "Action": "s3:*",
        "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })
}

/// The log bucket's policy: TLS-only when `tls`, and the S3 logging service may put
/// objects under [`LOG_PREFIX`] for the audit bucket of this account only (the
/// confused-deputy conditions of "Permissions for log delivery",
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html#grant-log-delivery-permissions-general>).
pub fn log_bucket_policy(ctx: &Ctx, tls: bool) -> serde_json::Value {
    let logs = log_bucket_name(ctx);
    let deliver = serde_json::json!({
        "Sid": "S3ServerAccessLogDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": format!("arn:aws:s3:::{logs}/{LOG_PREFIX}*"),
        "Condition": {
            "ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{}", bucket_name(ctx))},
            "StringEquals": {"aws:SourceAccount": ctx.account_id}
        }
    });
    let mut statements = Vec::new();
    if tls {
        let everyone = crate::aws::emulator::any_principal_beside_log_delivery();
        statements.push(deny_insecure_transport(&logs, everyone));
    }
    statements.push(deliver);
    policy(statements)
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
async fn lookup(ctx: &Ctx, which: Which) -> Result<Option<Found<String>>> {
    let by_id = |id: String| async move { head(ctx, &id).await };
    let name = which.name(ctx);
    find(ctx, which.addr(), SERVICE, by_id, || head(ctx, &name)).await
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
async fn converge_bucket_tags(
    ctx: &Ctx,
    addr: &str,
    bucket: &str,
    via: Option<Via>,
) -> Result<bool> {
    let target = tags::S3Bucket(bucket);
    let have = target.read(ctx).await?;
    if have.is_empty() && via != Some(Via::Tags) {
        let write = || target.add(ctx, ctx.tags());
        return ctx.converge(addr, "tags", "none", "set", write).await;
    }
    converge_tags(ctx, addr, &target, Some(have)).await
}

fn record(bucket: &str) -> Record {
    Record::new(KIND, bucket).arn(format!("arn:aws:s3:::{bucket}"))
}

/// Creates or adopts one bucket and puts back every setting of `target`.
async fn ensure_one(ctx: &Ctx, which: Which, target: settings::Target) -> Result<()> {
    let addr = which.addr();
    let (bucket, change, via) = match lookup(ctx, which).await? {
        Some(found) => (found.value.clone(), found.change(), Some(found.via)),
        None => {
            let bucket = which.name(ctx);
            if !ctx.would_create(format!("{addr} {bucket}")) {
                return Ok(());
            }
            // Recorded first: S3 takes the tags that make it payctl's only after it.
            ctx.record(addr, record(&bucket)).await?;
            if let Err(e) = create(ctx, &bucket).await {
                if matches!(e, Error::NotOwned { .. }) {
                    ctx.forget(addr).await?;
                }
                return Err(e);
            }
            (bucket, Change::Created, None)
        }
    };
    let retagged = converge_bucket_tags(ctx, addr, &bucket, via).await?;
    ctx.record(addr, record(&bucket)).await?;
    let wrote = settings::converge(ctx, addr, &bucket, &target, via.is_none()).await?;
    let change = change.updated_if(retagged || wrote);
    ctx.report.note(change, format!("{addr} {bucket}"));
    Ok(())
}

/// A production `down` keeps the audit trail and its access logs: the bucket stays, and
/// so does its record.
async fn keep(ctx: &Ctx, which: Which, bucket: &str) -> Result<()> {
    let arn = format!("arn:aws:s3:::{bucket}");
    ctx.record(which.addr(), record(bucket)).await?;
    let what = match which {
        Which::Audit => "audit trail",
        Which::AccessLogs => "record of every request to the audit trail",
    };
    ctx.report.keep(
        which.addr(),
        Kept {
            what: format!("S3 {} {bucket}, with every object version", which.what()),
            id: arn,
            why: format!("the {what} of a production environment is kept (PCI DSS 10.5.1: at least 12 months)"),
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
fn not_empty(ctx: &Ctx, which: Which, bucket: &str, e: Error) -> Error {
    if e.aws_code() != Some("BucketNotEmpty") {
        return e;
    }
    Error::Refused(format!(
        "{} {bucket} is not empty (objects arrived during down); run `payctl down --env {} --purge`",
        which.what(),
        ctx.env
    ))
}

/// `down` outside production refuses a non-empty bucket unless `--purge` is given.
/// (The log bucket is not checked: its logs go with it, see [`delete_one`].)
async fn check_deletable(ctx: &Ctx, which: Which) -> Result<()> {
    let Some(found) = lookup(ctx, which).await? else {
        return Ok(());
    };
    let bucket = found.value;
    tags::ensure_owned(ctx, &tags::S3Bucket(&bucket)).await?;
    if ctx.settings.production {
        return Ok(()); // kept whatever it holds
    }
    if !ctx.options.purge && !purge::all_versions(ctx, &bucket, Some(1)).await?.is_empty() {
        return Err(Error::Refused(format!(
            "{} {bucket} is not empty and audit data is kept; nothing was deleted. Run `payctl down --env {} --purge` to delete every object version and the bucket",
            which.what(),
            ctx.env
        )));
    }
    Ok(())
}

async fn delete_one(ctx: &Ctx, which: Which) -> Result<()> {
    let addr = which.addr();
    let Some(found) = lookup(ctx, which).await? else {
        return ctx.forget_gone(addr).await;
    };
    let bucket = found.value;
    tags::ensure_owned(ctx, &tags::S3Bucket(&bucket)).await?;
    if ctx.settings.production {
        return keep(ctx, which, &bucket).await;
    }
    // Outside production the access logs go with their bucket, once the audit bucket
    // they describe is gone (which the audit bucket's own rule allowed).
    if ctx.options.purge || which == Which::AccessLogs {
        crate::aws::emulator::drop_policy_before_emptying(&ctx.aws.s3, &bucket).await?;
        let n = purge::purge(ctx, &bucket).await?;
        tracing::info!("purged {n} object versions and delete markers from {bucket}");
    }
    let delete = || async {
        let out = ctx.aws.s3.delete_bucket().bucket(&bucket).send().await;
        out.map_err(aws("DeleteBucket", &bucket))
            .map_err(|e| not_empty(ctx, which, &bucket, e))
    };
    ctx.delete_and_forget(addr, &bucket, SERVICE, delete).await
}

#[async_trait]
impl Resource for AuditBucket {
    kind!(KIND, depends_on = [kms_key::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let key_arn = ctx.needed_arn(&kms_key::address("s3"))?;
        ensure_one(ctx, Which::AccessLogs, settings::Target::access_logs(ctx)).await?;
        if ctx.planning() && ctx.state.id(LOGS_ADDR).is_none() {
            // `plan` of a new environment: the log bucket it would create has no record.
            let target = settings::Target::audit(ctx, key_arn, log_bucket_name(ctx));
            return ensure_one(ctx, Which::Audit, target).await;
        }
        let logs = ctx.needed_id(LOGS_ADDR)?;
        ensure_one(
            ctx,
            Which::Audit,
            settings::Target::audit(ctx, key_arn, logs),
        )
        .await
    }

    async fn preflight_delete(&self, ctx: &Ctx) -> Result<()> {
        check_deletable(ctx, Which::Audit).await?;
        if let Some(found) = lookup(ctx, Which::AccessLogs).await? {
            tags::ensure_owned(ctx, &tags::S3Bucket(&found.value)).await?;
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        delete_one(ctx, Which::Audit).await?;
        delete_one(ctx, Which::AccessLogs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::walk::test_ctx;

    #[tokio::test]
    async fn the_longest_names_fit_s3s_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = std::sync::Arc::into_inner(test_ctx(dir.path()).await).unwrap();
        ctx.env = "a".repeat(crate::naming::MAX_ENV_LEN);
        ctx.account_id = "123456789012".into();
        ctx.region = "ap-southeast-2".into();
        for which in [Which::Audit, Which::AccessLogs] {
            let name = which.name(&ctx);
            assert!(name.len() <= 63, "{name} has {} characters", name.len());
        }
        assert_eq!(
            log_bucket_name(&ctx),
            format!("payment-audit-logs-{}-123456789012-ap-southeast-2", ctx.env)
        );
    }

    #[tokio::test]
    async fn the_log_bucket_admits_only_the_audit_buckets_logs_and_only_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = std::sync::Arc::into_inner(test_ctx(dir.path()).await).unwrap();
        ctx.account_id = "123456789012".into();
        let logs = log_bucket_name(&ctx);
        let p = log_bucket_policy(&ctx, true);
        assert!(crate::verify::s3::denies_insecure_transport(&p, &logs));
        let grant = &p["Statement"][1];
        assert_eq!(grant["Principal"]["Service"], "logging.s3.amazonaws.com");
        assert_eq!(grant["Action"], "s3:PutObject");
        assert_eq!(grant["Resource"], format!("arn:aws:s3:::{logs}/audit/*"));
        let cond = &grant["Condition"];
        assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "123456789012");
        assert_eq!(
            cond["ArnLike"]["aws:SourceArn"],
            format!(
                "arn:aws:s3:::payment-audit-{}-123456789012-{}",
                ctx.env, ctx.region
            )
        );
        let plain = log_bucket_policy(&ctx, false);
        assert!(!crate::verify::s3::denies_insecure_transport(&plain, &logs));
        assert_eq!(plain["Statement"].as_array().map(Vec::len), Some(1));
    }
}
