//! A key that still encrypts something kept is never scheduled for deletion: the RDS key
//! while any DB snapshot is encrypted with it or the stack's backup vault exists, the S3 key while the audit bucket exists,
//! the logs key while any of the stack's log groups exists.
//! This is read from AWS, not from the state file, so it holds after a lost state too.

use super::{KIND, create_alias};
use crate::engine::Ctx;
use crate::engine::report::Kept;
use crate::error::{Result, aws};
use crate::state::Record;

/// Why the key must stay (what kept data it encrypts), or `None` when nothing needs it.
pub(super) async fn still_needed(ctx: &Ctx, purpose: &str, id: &str) -> Result<Option<String>> {
    match purpose {
        "rds" => {
            let snapshots = snapshots_encrypted_with(ctx, id).await?;
            if !snapshots.is_empty() {
                return Ok(Some(format!(
                    "it encrypts the DB snapshot(s) {}, which cannot be restored without it",
                    snapshots.join(", ")
                )));
            }
            let vault = crate::backup::vault::kept(ctx).await?;
            Ok(vault.map(|v| format!("it encrypts the kept backup vault {v}")))
        }
        "s3" => {
            let bucket = crate::data::s3_bucket::bucket_name(ctx);
            let kept = crate::data::s3_bucket::exists(ctx, &bucket).await?;
            Ok(kept.then(|| format!("it encrypts the kept audit bucket {bucket}")))
        }
        super::LOGS => {
            let group = crate::compute::log_group::any_exists(ctx).await?;
            Ok(group.map(|g| format!("it encrypts the kept log groups ({g} and the others)")))
        }
        _ => Ok(None),
    }
}

/// The DB snapshots of the account encrypted with key `id` (RDS names the key by ARN).
async fn snapshots_encrypted_with(ctx: &Ctx, id: &str) -> Result<Vec<String>> {
    let snapshots = ctx.aws.rds.describe_db_snapshots().into_paginator().items();
    let snapshots: Vec<_> = snapshots
        .send()
        .try_collect()
        .await
        .map_err(aws("DescribeDBSnapshots", id))?;
    Ok(snapshots
        .iter()
        .filter(|s| s.kms_key_id().is_some_and(|k| names_key(k, id)))
        .filter_map(|s| s.db_snapshot_identifier().map(str::to_string))
        .collect())
}

/// Whether `reference` (a key ARN or a bare key id) names the key `id`.
fn names_key(reference: &str, id: &str) -> bool {
    reference == id || reference.ends_with(&format!(":key/{id}"))
}

/// Keeps the key `id` at `addr` (enabled, with its alias and its record) because of
/// `why`; one found pending deletion is brought back first.
pub(super) async fn keep(
    ctx: &Ctx,
    addr: &str,
    (id, arn, alias): (&str, &str, &str),
    pending: bool,
    why: String,
) -> Result<()> {
    if pending {
        revive(ctx, id, alias).await?;
    }
    let record = Record::new(KIND, id).arn(arn).attr("alias", alias);
    ctx.record(addr, record).await?;
    ctx.report.keep(
        addr,
        Kept {
            what: format!("KMS key {alias}, enabled"),
            id: arn.to_string(),
            why,
            restore: "nothing to restore: it stays enabled with its alias (restoring what it encrypts needs it)".into(),
            remove: format!(
                "only after deleting everything it encrypts: `aws kms delete-alias --alias-name {alias}`, then `aws kms schedule-key-deletion --key-id {id} --pending-window-in-days 30`"
            ),
        },
    );
    Ok(())
}

/// Brings back a key found pending deletion that must stay: cancel, enable, alias.
async fn revive(ctx: &Ctx, id: &str, alias: &str) -> Result<()> {
    let kms = &ctx.aws.kms;
    let call = kms.cancel_key_deletion().key_id(id);
    call.send().await.map_err(aws("CancelKeyDeletion", id))?;
    let call = kms.enable_key().key_id(id);
    call.send().await.map_err(aws("EnableKey", id))?;
    // An alias of that name that exists already is left as it is.
    create_alias(ctx, alias, id).await?;
    tracing::info!("KMS key {id} was pending deletion but encrypts kept data: brought back");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::names_key;

    #[test]
    fn a_snapshot_names_its_key_by_arn_or_id() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab";
        assert!(names_key(arn, "1234abcd-12ab"));
        assert!(names_key("1234abcd-12ab", "1234abcd-12ab"));
        assert!(!names_key(arn, "1234abcd"));
        assert!(!names_key(
            "arn:aws:kms:us-east-1:1:key/other",
            "1234abcd-12ab"
        ));
    }
}
