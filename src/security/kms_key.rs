//! Customer-managed KMS keys with rotation on, and their aliases
//! `alias/payment-rds-<env>`, `alias/payment-s3-<env>` and `alias/payment-sns-<env>`.
//!
//! The RDS and S3 keys keep KMS's default key policy (the account root may do
//! everything). The SNS key encrypts the alert topic: CloudWatch alarms cannot publish to
//! a topic encrypted with the AWS-managed `alias/aws/sns` key, whose policy payctl cannot
//! change, so this key's policy also lets `cloudwatch.amazonaws.com` (for this account
//! only, `aws:SourceAccount`) use it to publish. That policy is put back on every `up` if
//! it drifted (compared as parsed JSON).
//!
//! `down` deletes the alias and schedules the key for deletion after the minimum 7 days;
//! the record stays in state, marked, so the next `up` cancels the deletion and reuses
//! the key (data encrypted under it stays readable). Without state the key is found by
//! its alias, else by its description and ownership tags.
//!
//! A key that still encrypts something kept is never scheduled for deletion, in any
//! environment: the RDS key while any DB snapshot is encrypted with it (the final
//! snapshot `down` keeps; only `--skip-final-snapshot` outside production leaves none),
//! the S3 key while the audit bucket exists (a production `down` keeps it). Such a key
//! stays enabled with its alias and its record, is listed among the kept things, and a
//! key found pending deletion in that case is brought back. This is read from AWS, not
//! from the state file, so it holds after a lost state too.

use crate::engine::report::{Change, Kept};
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::operation::create_alias::CreateAliasError;
use aws_sdk_kms::operation::delete_alias::DeleteAliasError;
use aws_sdk_kms::operation::describe_key::DescribeKeyError;
use aws_sdk_kms::types::{
    AliasListEntry, KeyManagerType, KeyMetadata, KeySpec, KeyState, KeyUsageType, Tag,
};
use futures::future::join_all;
use futures::{StreamExt, TryStreamExt};

pub const KIND: &str = "kms_key";
pub const KEYS: [(&str, &str); 3] = [
    ("rds", "RDS storage and the database master secret"),
    ("s3", "the S3 audit bucket"),
    ("sns", "the SNS alert topic"),
];
/// The key that encrypts the alert topic (`kms_key.sns`).
pub const SNS: &str = "sns";
pub const DELETION_WINDOW_DAYS: i32 = 7;

pub struct KmsKeys;

pub fn address(purpose: &str) -> String {
    format!("{KIND}.{purpose}")
}

fn alias(ctx: &Ctx, purpose: &str) -> String {
    format!("alias/{}", ctx.name(purpose))
}

fn description(ctx: &Ctx, purpose: &str, what: &str) -> String {
    format!("{} (payctl): encrypts {what}", ctx.name(purpose))
}

/// The key policy payctl sets, for the keys that do not keep KMS's default one.
fn policy(ctx: &Ctx, purpose: &str) -> Option<serde_json::Value> {
    (purpose == SNS).then(|| sns_key_policy(&ctx.account_id, &ctx.region, &ctx.env))
}

/// The ARNs of the environment's alarms, present and future (`payment-*-<env>`): the
/// `aws:SourceArn` CloudWatch may act for (confused-deputy protection).
pub fn alarm_arns(account_id: &str, region: &str, env: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{region}:{account_id}:alarm:{}",
        crate::naming::name("*", env)
    )
}

/// The account root may do everything (as in KMS's default policy, so IAM policies keep
/// working); CloudWatch may encrypt and decrypt with the key only when it acts for this
/// account's alarms of this environment (`aws:SourceAccount`, `aws:SourceArn`), which is
/// what publishing an alarm to the encrypted topic needs.
pub fn sns_key_policy(account_id: &str, region: &str, env: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "payctl-sns-alerts",
        "Statement": [
            {
                "Sid": "EnableIamUserPermissions",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "AllowCloudWatchAlarmsToPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": alarm_arns(account_id, region, env)}
                }
            }
        ]
    })
}

/// Whether the policy KMS returned says what `want` says (parsed, so whitespace and key
/// order do not matter; an unparsable policy is different).
pub fn same_policy(have: Option<&str>, want: &serde_json::Value) -> bool {
    have.and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
        .is_some_and(|h| &h == want)
}

/// Puts `want` back on the key when its current policy differs; true when it did.
async fn converge_policy(
    ctx: &Ctx,
    addr: &str,
    id: &str,
    want: &serde_json::Value,
) -> Result<bool> {
    let kms = &ctx.aws.kms;
    let have = kms
        .get_key_policy()
        .key_id(id)
        .policy_name("default")
        .send()
        .await
        .map_err(aws("GetKeyPolicy", id))?;
    if same_policy(have.policy(), want) {
        return Ok(false);
    }
    if !ctx.apply(addr, "key policy", "edited out of band", "payctl's policy") {
        return Ok(true);
    }
    tracing::info!("KMS key {id}: putting its key policy back");
    kms.put_key_policy()
        .key_id(id)
        .policy_name("default")
        .policy(want.to_string())
        .send()
        .await
        .map_err(aws("PutKeyPolicy", id))?;
    Ok(true)
}

fn not_found(e: &SdkError<DescribeKeyError>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_not_found_exception())
}

fn alias_exists(e: &SdkError<CreateAliasError>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_already_exists_exception())
}

fn alias_not_found(e: &SdkError<DeleteAliasError>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_not_found_exception())
}

async fn describe(ctx: &Ctx, key: &str) -> Result<Option<KeyMetadata>> {
    match ctx.aws.kms.describe_key().key_id(key).send().await {
        Ok(out) => Ok(out.key_metadata().cloned()),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(aws("DescribeKey", key)(e)),
    }
}

async fn owned(ctx: &Ctx, key_id: &str) -> Result<bool> {
    let out = ctx
        .aws
        .kms
        .list_resource_tags()
        .key_id(key_id)
        .send()
        .await
        .map_err(aws("ListResourceTags", key_id))?;
    Ok(ctx.owns(out.tags().iter().map(|t| (t.tag_key(), t.tag_value()))))
}

/// By state id, else by alias, else by description and tags among the account's keys.
async fn find(ctx: &Ctx, purpose: &str, what: &str) -> Result<Option<(KeyMetadata, bool)>> {
    if let Some(id) = ctx.state.id(&address(purpose))
        && let Some(m) = describe(ctx, &id).await?
    {
        return Ok(Some((m, true)));
    }
    if let Some(m) = describe(ctx, &alias(ctx, purpose)).await? {
        return Ok(Some((m, false)));
    }
    let want = description(ctx, purpose, what);
    let entries = ctx.aws.kms.list_keys().into_paginator().items().send();
    let entries: Vec<_> = entries
        .collect::<std::result::Result<_, _>>()
        .await
        .map_err(aws("ListKeys", &want))?;
    let keys: Vec<String> = entries
        .iter()
        .filter_map(|k| k.key_id().map(str::to_string))
        .collect();
    let metas = futures::stream::iter(keys)
        .map(|k: String| async move { describe(ctx, &k).await })
        .buffer_unordered(8);
    let metas: Vec<Option<KeyMetadata>> = metas.try_collect().await?;
    for m in metas.into_iter().flatten() {
        let candidate = m.key_manager() == Some(&KeyManagerType::Customer)
            && m.description() == Some(want.as_str())
            && matches!(
                m.key_state(),
                Some(KeyState::Enabled | KeyState::Disabled | KeyState::PendingDeletion)
            );
        if candidate && owned(ctx, m.key_id()).await? {
            return Ok(Some((m, false)));
        }
    }
    Ok(None)
}

/// `aliases` is the account's alias list, read once for all keys.
async fn ensure_one(
    ctx: &Ctx,
    purpose: &str,
    what: &str,
    aliases: &[AliasListEntry],
) -> Result<()> {
    let kms = &ctx.aws.kms;
    let addr = address(purpose);
    let alias = alias(ctx, purpose);
    let (meta, mut change) = match find(ctx, purpose, what).await? {
        Some((m, from_state)) => {
            if !owned(ctx, m.key_id()).await? {
                return Err(Error::not_owned(
                    format!("KMS key {}", m.key_id()),
                    &ctx.env,
                ));
            }
            (
                m,
                if from_state {
                    Change::Unchanged
                } else {
                    Change::Adopted
                },
            )
        }
        None => {
            if !ctx.would_create(format!("{addr} ({alias})")) {
                return Ok(());
            }
            let tags: Vec<Tag> = ctx
                .tags()
                .into_iter()
                .map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Invalid(format!("building KMS tags: {e}")))?;
            let out = kms
                .create_key()
                .description(description(ctx, purpose, what))
                .key_usage(KeyUsageType::EncryptDecrypt)
                .key_spec(KeySpec::SymmetricDefault)
                .set_tags(Some(tags))
                .set_policy(policy(ctx, purpose).map(|p| p.to_string()))
                .send()
                .await
                .map_err(aws("CreateKey", &alias))?;
            (
                out.key_metadata()
                    .cloned()
                    .ok_or_else(|| Error::Invalid("CreateKey returned no key metadata".into()))?,
                Change::Created,
            )
        }
    };
    let id = meta.key_id().to_string();
    let arn = required(meta.arn(), "key ARN")?;
    ctx.record(
        &addr,
        Record::new(KIND, &id).arn(&arn).attr("alias", &alias),
    )
    .await?;
    let mut updated = false;
    if meta.key_state() == Some(&KeyState::PendingDeletion)
        && ctx.apply(&addr, "key state", "pending deletion", "enabled")
    {
        kms.cancel_key_deletion()
            .key_id(&id)
            .send()
            .await
            .map_err(aws("CancelKeyDeletion", &id))?;
        tracing::info!("cancelled the scheduled deletion of KMS key {id}");
        updated = true;
    }
    if updated
        || (meta.key_state() == Some(&KeyState::Disabled)
            && ctx.apply(&addr, "key state", "disabled", "enabled"))
    {
        kms.enable_key()
            .key_id(&id)
            .send()
            .await
            .map_err(aws("EnableKey", &id))?;
        updated = true;
    }
    if change != Change::Created
        && let Some(want) = policy(ctx, purpose)
    {
        updated |= converge_policy(ctx, &addr, &id, &want).await?;
    }
    let rotation = kms
        .get_key_rotation_status()
        .key_id(&id)
        .send()
        .await
        .map_err(aws("GetKeyRotationStatus", &id))?;
    if !rotation.key_rotation_enabled() && ctx.apply(&addr, "key rotation", "disabled", "enabled") {
        kms.enable_key_rotation()
            .key_id(&id)
            .send()
            .await
            .map_err(aws("EnableKeyRotation", &id))?;
        updated = true;
    }
    let has_alias = aliases
        .iter()
        .any(|a| a.alias_name() == Some(&alias) && a.target_key_id() == Some(&id));
    let created = if has_alias || !ctx.apply(&addr, "alias", "none", &alias) {
        Ok(())
    } else {
        kms.create_alias()
            .alias_name(&alias)
            .target_key_id(&id)
            .send()
            .await
            .map(|_| updated = true)
    };
    match created {
        Ok(()) => {}
        Err(e) if alias_exists(&e) => {
            let target = describe(ctx, &alias).await?.map(|m| m.key_id().to_string());
            if target.as_deref() != Some(id.as_str()) {
                if let Some(other) = &target
                    && !owned(ctx, other).await?
                {
                    return Err(Error::NotOwned {
                        resource: format!("alias {alias} (points to key {other})"),
                        why: "the key it names is not payctl's".into(),
                    });
                }
                kms.update_alias()
                    .alias_name(&alias)
                    .target_key_id(&id)
                    .send()
                    .await
                    .map_err(aws("UpdateAlias", &alias))?;
                updated = true;
            }
        }
        Err(e) => return Err(aws("CreateAlias", &alias)(e)),
    }
    if updated && change == Change::Unchanged {
        change = Change::Updated;
    }
    ctx.report.note(change, format!("{addr} {id} ({alias})"));
    Ok(())
}

async fn delete_one(ctx: &Ctx, purpose: &str, what: &str) -> Result<()> {
    let kms = &ctx.aws.kms;
    let addr = address(purpose);
    let alias = alias(ctx, purpose);
    let Some((meta, _)) = find(ctx, purpose, what).await? else {
        ctx.forget(&addr).await?;
        ctx.report.note(Change::Absent, addr);
        return Ok(());
    };
    let id = meta.key_id().to_string();
    if !owned(ctx, &id).await? {
        return Err(Error::not_owned(format!("KMS key {id}"), &ctx.env));
    }
    let pending = meta.key_state() == Some(&KeyState::PendingDeletion);
    let arn = required(meta.arn(), "key ARN")?;
    if let Some(why) = still_needed(ctx, purpose, &id).await? {
        if pending {
            revive(ctx, &id, &alias).await?;
        }
        ctx.record(
            &addr,
            Record::new(KIND, &id).arn(&arn).attr("alias", &alias),
        )
        .await?;
        ctx.report.keep(
            &addr,
            Kept {
                what: format!("KMS key {alias}, enabled"),
                id: arn,
                why,
                restore: "nothing to restore: it stays enabled with its alias (restoring what it encrypts needs it)".into(),
                remove: format!(
                    "only after deleting everything it encrypts: `aws kms delete-alias --alias-name {alias}`, then `aws kms schedule-key-deletion --key-id {id} --pending-window-in-days 30`"
                ),
            },
        );
        return Ok(());
    }
    // A key pending deletion lost its alias first: nothing left to do but record it.
    let date = if pending {
        meta.deletion_date().map(|d| d.to_string())
    } else {
        match kms.delete_alias().alias_name(&alias).send().await {
            Ok(_) => {}
            Err(e) if alias_not_found(&e) => {}
            Err(e) => return Err(aws("DeleteAlias", &alias)(e)),
        }
        schedule_deletion(ctx, &id).await?
    };
    let date = date.unwrap_or_else(|| format!("in {DELETION_WINDOW_DAYS} days"));
    let record = Record::new(KIND, &id)
        .arn(arn)
        .attr("alias", &alias)
        .attr("pending_deletion", &date);
    ctx.record(&addr, record).await?;
    let change = if pending {
        Change::Absent
    } else {
        Change::Deleted
    };
    ctx.report.note(
        change,
        format!("{addr} {id} (scheduled for deletion: {date})"),
    );
    Ok(())
}

/// Why the key must stay (what kept data it encrypts), or `None` when nothing needs it.
async fn still_needed(ctx: &Ctx, purpose: &str, id: &str) -> Result<Option<String>> {
    match purpose {
        "rds" => {
            let snapshots = snapshots_encrypted_with(ctx, id).await?;
            Ok((!snapshots.is_empty()).then(|| {
                format!(
                    "it encrypts the DB snapshot(s) {}, which cannot be restored without it",
                    snapshots.join(", ")
                )
            }))
        }
        "s3" => {
            let bucket = crate::data::s3_bucket::bucket_name(ctx);
            let kept = crate::data::s3_bucket::exists(ctx, &bucket).await?;
            Ok(kept.then(|| format!("it encrypts the kept audit bucket {bucket}")))
        }
        _ => Ok(None),
    }
}

/// The DB snapshots of the account encrypted with key `id` (RDS names the key by ARN).
async fn snapshots_encrypted_with(ctx: &Ctx, id: &str) -> Result<Vec<String>> {
    let snapshots = ctx.aws.rds.describe_db_snapshots().into_paginator().items();
    let snapshots: Vec<_> = snapshots
        .send()
        .collect::<std::result::Result<_, _>>()
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

/// Brings back a key found pending deletion that must stay: cancel, enable, alias.
async fn revive(ctx: &Ctx, id: &str, alias: &str) -> Result<()> {
    let kms = &ctx.aws.kms;
    kms.cancel_key_deletion()
        .key_id(id)
        .send()
        .await
        .map_err(aws("CancelKeyDeletion", id))?;
    kms.enable_key()
        .key_id(id)
        .send()
        .await
        .map_err(aws("EnableKey", id))?;
    match kms
        .create_alias()
        .alias_name(alias)
        .target_key_id(id)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if alias_exists(&e) => {}
        Err(e) => return Err(aws("CreateAlias", alias)(e)),
    }
    tracing::info!("KMS key {id} was pending deletion but encrypts kept data: brought back");
    Ok(())
}

async fn schedule_deletion(ctx: &Ctx, id: &str) -> Result<Option<String>> {
    let out = ctx
        .aws
        .kms
        .schedule_key_deletion()
        .key_id(id)
        .pending_window_in_days(DELETION_WINDOW_DAYS)
        .send()
        .await
        .map_err(aws("ScheduleKeyDeletion", id))?;
    Ok(out.deletion_date().map(|d| d.to_string()))
}

#[async_trait]
impl Resource for KmsKeys {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let aliases = ctx.aws.kms.list_aliases().into_paginator().items().send();
        let aliases: Vec<AliasListEntry> = aliases
            .collect::<std::result::Result<_, _>>()
            .await
            .map_err(aws("ListAliases", "the account's aliases"))?;
        let work = KEYS.iter().map(|(p, w)| ensure_one(ctx, p, w, &aliases));
        all_ok(join_all(work).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all(KEYS.iter().map(|(p, w)| delete_one(ctx, p, w))).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sns_key_lets_cloudwatch_publish_for_this_account_only() {
        let p = sns_key_policy("123456789012", "eu-west-1", "qa");
        let statements = p["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 2);
        let root = &statements[0];
        assert_eq!(root["Effect"], "Allow");
        assert_eq!(root["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
        assert_eq!(root["Action"], "kms:*");
        let cw = &statements[1];
        assert_eq!(cw["Effect"], "Allow");
        assert_eq!(cw["Principal"]["Service"], "cloudwatch.amazonaws.com");
        assert_eq!(
            cw["Action"],
            serde_json::json!(["kms:Decrypt", "kms:GenerateDataKey*"])
        );
        assert_eq!(
            cw["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
        assert_eq!(
            cw["Condition"]["ArnLike"]["aws:SourceArn"],
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:payment-*-qa"
        );
    }

    #[test]
    fn policies_compare_parsed() {
        let want = sns_key_policy("1", "us-east-1", "dev");
        let reformatted = serde_json::to_string_pretty(&want).unwrap();
        assert!(same_policy(Some(&reformatted), &want));
        let other = |a, r, e| Some(sns_key_policy(a, r, e).to_string());
        assert!(!same_policy(
            other("2", "us-east-1", "dev").as_deref(),
            &want
        ));
        assert!(!same_policy(
            other("1", "us-east-1", "qa").as_deref(),
            &want
        ));
        assert!(!same_policy(Some("not json"), &want));
        assert!(!same_policy(None, &want));
    }

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

    #[test]
    fn three_keys_and_only_the_sns_key_has_its_own_policy() {
        let purposes: Vec<&str> = KEYS.iter().map(|(p, _)| *p).collect();
        assert_eq!(purposes, ["rds", "s3", "sns"]);
        assert_eq!(address(SNS), "kms_key.sns");
    }
}
