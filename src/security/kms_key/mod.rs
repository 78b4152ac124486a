//! Customer-managed KMS keys with rotation on, and their aliases
//! `alias/payment-<purpose>-<env>`: `rds`, `s3`, `sns`, `logs` (the log groups) and
//! `lambda` (the functions' environment variables).
//!
//! The RDS, S3 and Lambda keys keep KMS's default key policy (the account root may do
//! everything; the function roles may decrypt with the Lambda key through Lambda only).
//! The logs key's policy lets CloudWatch Logs of the region use it for this account's log
//! groups only (`kms:EncryptionContext:aws:logs:arn`). The SNS key encrypts the alert topic: CloudWatch alarms cannot publish to
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

mod kept;
mod policy;

use crate::engine::report::Change;
use crate::engine::tags::{self, Tagged, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_kms::types::{
    AliasListEntry, KeyManagerType, KeyMetadata, KeySpec, KeyState, KeyUsageType, Tag,
};
use futures::StreamExt;
use futures::future::join_all;

pub use policy::{alarm_arns, same_policy, sns_key_policy};

pub const KIND: &str = "kms_key";
pub const KEYS: [(&str, &str); 5] = [
    ("rds", "RDS storage and the database master secret"),
    ("s3", "the S3 audit bucket"),
    ("sns", "the SNS alert topic"),
    ("logs", "the stack's CloudWatch log groups"),
    ("lambda", "the functions' environment variables"),
];
/// The key that encrypts the alert topic (`kms_key.sns`).
pub const SNS: &str = "sns";
/// The key that encrypts the stack's log groups (`kms_key.logs`).
pub const LOGS: &str = "logs";
/// The key that encrypts the functions' environment variables (`kms_key.lambda`).
pub const LAMBDA: &str = "lambda";
pub const DELETION_WINDOW_DAYS: i32 = 7;
const SERVICE: Service = Service::Kms;

pub struct KmsKeys;

pub fn address(purpose: &str) -> String {
    format!("{KIND}.{purpose}")
}

/// The key's ARN from its record, else its alias (on `plan`, before the key is made).
pub fn arn_or_alias(ctx: &Ctx, purpose: &str) -> String {
    let record = ctx.state.get(&address(purpose));
    record
        .and_then(|r| r.arn)
        .unwrap_or_else(|| alias(ctx, purpose))
}

fn alias(ctx: &Ctx, purpose: &str) -> String {
    format!("alias/{}", ctx.name(purpose))
}

fn description(ctx: &Ctx, purpose: &str, what: &str) -> String {
    format!("{} (payctl): encrypts {what}", ctx.name(purpose))
}

/// Creates `alias` on key `id`; false when an alias of that name exists already.
async fn create_alias(ctx: &Ctx, alias: &str, id: &str) -> Result<bool> {
    let call = ctx
        .aws
        .kms
        .create_alias()
        .alias_name(alias)
        .target_key_id(id);
    match call.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_already_exists_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(aws("CreateAlias", alias)(e)),
    }
}

/// The key `key` (an id, ARN or alias) names, `None` when KMS says there is none.
async fn describe(ctx: &Ctx, key: &str) -> Result<Option<KeyMetadata>> {
    let out = ctx.aws.kms.describe_key().key_id(key).send().await;
    let out = SERVICE.found(out.map_err(aws("DescribeKey", key)))?;
    Ok(out.and_then(|o| o.key_metadata().cloned()))
}

/// Whether the key's tags say payctl owns it for this environment.
async fn owned(ctx: &Ctx, key_id: &str) -> Result<bool> {
    let have = tags::KmsKey(key_id).read(ctx).await?;
    Ok(ctx.owns(have.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

/// Among the account's keys, the customer-managed one payctl owns with `description`.
async fn by_description(ctx: &Ctx, description: &str) -> Result<Option<KeyMetadata>> {
    let entries = ctx.aws.kms.list_keys().into_paginator().items().send();
    let entries: Vec<_> = entries
        .collect::<std::result::Result<_, _>>()
        .await
        .map_err(aws("ListKeys", description))?;
    let keys: Vec<String> = entries
        .iter()
        .filter_map(|k| k.key_id().map(str::to_string))
        .collect();
    let metas = futures::stream::iter(keys)
        .map(|k: String| async move { describe(ctx, &k).await })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for m in metas
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        let candidate = m.key_manager() == Some(&KeyManagerType::Customer)
            && m.description() == Some(description)
            && matches!(
                m.key_state(),
                Some(KeyState::Enabled | KeyState::Disabled | KeyState::PendingDeletion)
            );
        if candidate && owned(ctx, m.key_id()).await? {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// By the id in state, else by its alias, else by its description and ownership tags.
async fn lookup(ctx: &Ctx, purpose: &str, what: &str) -> Result<Option<Found<KeyMetadata>>> {
    let by_id = |id: String| async move { describe(ctx, &id).await };
    let by_tags = || async {
        match describe(ctx, &alias(ctx, purpose)).await? {
            Some(m) => Ok(Some(m)),
            None => by_description(ctx, &description(ctx, purpose, what)).await,
        }
    };
    find(ctx, &address(purpose), SERVICE, by_id, by_tags).await
}

async fn create(ctx: &Ctx, purpose: &str, what: &str) -> Result<KeyMetadata> {
    let tags: Vec<Tag> = ctx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(format!("building KMS tags: {e}")))?;
    let call = ctx
        .aws
        .kms
        .create_key()
        .description(description(ctx, purpose, what));
    let call = call
        .key_usage(KeyUsageType::EncryptDecrypt)
        .key_spec(KeySpec::SymmetricDefault)
        .set_tags(Some(tags))
        .set_policy(policy::policy(ctx, purpose).map(|p| p.to_string()));
    let out = call
        .send()
        .await
        .map_err(aws("CreateKey", alias(ctx, purpose)))?;
    let meta = out.key_metadata().cloned();
    meta.ok_or_else(|| Error::Invalid("CreateKey returned no key metadata".into()))
}

/// Points `alias` at key `id`: creates it, or moves it from another key payctl owns.
async fn point_alias(ctx: &Ctx, alias: &str, id: &str) -> Result<()> {
    if create_alias(ctx, alias, id).await? {
        return Ok(());
    }
    let target = describe(ctx, alias).await?.map(|m| m.key_id().to_string());
    if target.as_deref() == Some(id) {
        return Ok(());
    }
    if let Some(other) = &target
        && !owned(ctx, other).await?
    {
        return Err(Error::NotOwned {
            resource: format!("alias {alias} (points to key {other})"),
            why: "the key it names is not payctl's".into(),
        });
    }
    let call = ctx
        .aws
        .kms
        .update_alias()
        .alias_name(alias)
        .target_key_id(id);
    call.send().await.map_err(aws("UpdateAlias", alias))?;
    Ok(())
}

/// The key's settings, as declarations: enabled, payctl's key policy (where it sets
/// one; a key created in this run has it), rotation on, the alias on it. True when it
/// wrote one. `aliases` is the account's alias list, read once for all keys.
async fn converge_settings(
    ctx: &Ctx,
    purpose: &str,
    meta: &KeyMetadata,
    created: bool,
    aliases: &[AliasListEntry],
) -> Result<bool> {
    let kms = &ctx.aws.kms;
    let (addr, alias, id) = (address(purpose), alias(ctx, purpose), meta.key_id());
    let have = match meta.key_state() {
        Some(KeyState::PendingDeletion) => "pending deletion",
        Some(KeyState::Disabled) => "disabled",
        _ => "enabled",
    };
    let enable = || async {
        if have == "pending deletion" {
            let call = kms.cancel_key_deletion().key_id(id);
            call.send().await.map_err(aws("CancelKeyDeletion", id))?;
            tracing::info!("cancelled the scheduled deletion of KMS key {id}");
        }
        kms.enable_key()
            .key_id(id)
            .send()
            .await
            .map_err(aws("EnableKey", id))?;
        Ok(())
    };
    let mut wrote = ctx
        .converge(&addr, "key state", have, "enabled", enable)
        .await?;

    if let Some(want) = policy::policy(ctx, purpose).filter(|_| !created) {
        let call = kms.get_key_policy().key_id(id).policy_name("default");
        let out = call.send().await.map_err(aws("GetKeyPolicy", id))?;
        let ours = "payctl's policy";
        let have = if same_policy(out.policy(), &want) {
            ours
        } else {
            "edited out of band"
        };
        let put = || async {
            let call = kms.put_key_policy().key_id(id).policy_name("default");
            call.policy(want.to_string())
                .send()
                .await
                .map_err(aws("PutKeyPolicy", id))?;
            Ok(())
        };
        wrote |= ctx.converge(&addr, "key policy", have, ours, put).await?;
    }

    let out = kms.get_key_rotation_status().key_id(id).send().await;
    let on = out
        .map_err(aws("GetKeyRotationStatus", id))?
        .key_rotation_enabled();
    let have = if on { "enabled" } else { "disabled" };
    let rotate = || async {
        let call = kms.enable_key_rotation().key_id(id);
        call.send().await.map_err(aws("EnableKeyRotation", id))?;
        Ok(())
    };
    wrote |= ctx
        .converge(&addr, "key rotation", have, "enabled", rotate)
        .await?;

    let target = aliases
        .iter()
        .find(|a| a.alias_name() == Some(alias.as_str()));
    let have = match target.and_then(|a| a.target_key_id()) {
        Some(t) if t == id => alias.clone(),
        Some(t) => format!("{alias} (on key {t})"),
        None => "none".into(),
    };
    let want = alias.clone();
    wrote |= ctx
        .converge(&addr, "alias", have, want, || point_alias(ctx, &alias, id))
        .await?;
    Ok(wrote)
}

async fn ensure_one(
    ctx: &Ctx,
    purpose: &str,
    what: &str,
    aliases: &[AliasListEntry],
) -> Result<()> {
    let addr = address(purpose);
    let alias = alias(ctx, purpose);
    let (meta, change) = match lookup(ctx, purpose, what).await? {
        Some(found) => {
            let target = tags::KmsKey(found.value.key_id());
            let retagged = converge_tags(ctx, &addr, &target, None).await?;
            let change = found.change().updated_if(retagged);
            (found.value, change)
        }
        None => {
            if !ctx.would_create(format!("{addr} ({alias})")) {
                return Ok(());
            }
            (create(ctx, purpose, what).await?, Change::Created)
        }
    };
    let id = meta.key_id();
    let arn = required(meta.arn(), "key ARN")?;
    let record = Record::new(KIND, id).arn(&arn).attr("alias", &alias);
    ctx.record(&addr, record).await?;
    let created = change == Change::Created;
    let wrote = converge_settings(ctx, purpose, &meta, created, aliases).await?;
    let change = change.updated_if(wrote);
    ctx.report.note(change, format!("{addr} {id} ({alias})"));
    Ok(())
}

/// Schedules the key's deletion (after its alias goes), unless it still encrypts
/// something kept; the record stays, marked, so the next `up` brings the key back.
async fn delete_one(ctx: &Ctx, purpose: &str, what: &str) -> Result<()> {
    let kms = &ctx.aws.kms;
    let addr = address(purpose);
    let alias = alias(ctx, purpose);
    let Some(found) = lookup(ctx, purpose, what).await? else {
        return ctx.forget_gone(&addr).await;
    };
    let meta = found.value;
    let id = meta.key_id();
    tags::ensure_owned(ctx, &tags::KmsKey(id)).await?;
    let pending = meta.key_state() == Some(&KeyState::PendingDeletion);
    let arn = required(meta.arn(), "key ARN")?;
    if let Some(why) = kept::still_needed(ctx, purpose, id).await? {
        return kept::keep(ctx, &addr, (id, &arn, &alias), pending, why).await;
    }
    // A key pending deletion lost its alias first: nothing left to do but record it.
    let date = if pending {
        meta.deletion_date().map(|d| d.to_string())
    } else {
        let out = kms.delete_alias().alias_name(&alias).send().await;
        SERVICE.found(out.map_err(aws("DeleteAlias", &alias)))?;
        let call = kms.schedule_key_deletion().key_id(id);
        let call = call.pending_window_in_days(DELETION_WINDOW_DAYS);
        let out = call.send().await.map_err(aws("ScheduleKeyDeletion", id))?;
        out.deletion_date().map(|d| d.to_string())
    };
    let date = date.unwrap_or_else(|| format!("in {DELETION_WINDOW_DAYS} days"));
    let record = Record::new(KIND, id)
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

#[async_trait]
impl Resource for KmsKeys {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let aliases = ctx.aws.kms.list_aliases().into_paginator().items().send();
        let aliases: Vec<AliasListEntry> = aliases
            .collect::<std::result::Result<_, _>>()
            .await
            .map_err(aws("ListAliases", "the account's aliases"))?;
        let work = KEYS.map(|(purpose, what)| ensure_one(ctx, purpose, what, &aliases));
        all_ok(join_all(work).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let work = KEYS.map(|(purpose, what)| delete_one(ctx, purpose, what));
        all_ok(join_all(work).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_keys() {
        let purposes: Vec<&str> = KEYS.iter().map(|(p, _)| *p).collect();
        assert_eq!(purposes, ["rds", "s3", "sns", "logs", "lambda"]);
        assert_eq!(address(SNS), "kms_key.sns");
        assert_eq!(address(LOGS), "kms_key.logs");
    }
}
