//! The backup vault `payment-backup-<env>`, encrypted with the stack's RDS key
//! (`kms_key.rds`), in production environments.
//!
//! The vault holds the recovery points: a production `down` keeps it, with them and its
//! record, and the next `up` adopts it. Anywhere else `down` deletes it only when it is
//! empty; one that still holds recovery points is kept all the same (AWS refuses to
//! delete it, and payctl never deletes a backup). A vault's key cannot be changed: one
//! found with another key is reported, not replaced (`verify` fails it).

use super::wanted;
use crate::engine::report::{Change, Kept};
use crate::engine::tags::{ArnMap, converge_tags, ensure_owned};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Result, aws, required};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;

pub const KIND: &str = "backup_vault";
pub const ADDR: &str = "backup_vault.main";
const SERVICE: Service = Service::Backup;

pub struct Vault;

pub fn vault_name(ctx: &Ctx) -> String {
    ctx.name("backup")
}

/// What payctl needs of a vault: its name, ARN and key.
#[derive(Debug, Clone)]
pub struct Described {
    pub name: String,
    pub arn: String,
    pub key: Option<String>,
}

async fn describe(ctx: &Ctx, name: &str) -> Result<Option<Described>> {
    let out = ctx
        .aws
        .backup
        .describe_backup_vault()
        .backup_vault_name(name)
        .send()
        .await;
    let Some(out) = SERVICE.found(out.map_err(aws("DescribeBackupVault", name)))? else {
        return Ok(None);
    };
    Ok(Some(Described {
        name: name.to_string(),
        arn: required(out.backup_vault_arn(), "backup vault ARN")?,
        key: out.encryption_key_arn().map(str::to_string),
    }))
}

async fn lookup(ctx: &Ctx) -> Result<Option<Found<Described>>> {
    let by_id = |id: String| async move { describe(ctx, &id).await };
    let name = vault_name(ctx);
    find(ctx, ADDR, SERVICE, by_id, || describe(ctx, &name)).await
}

/// The stack's vault's name when it exists (the RDS key is kept while it does).
pub async fn kept(ctx: &Ctx) -> Result<Option<String>> {
    let name = vault_name(ctx);
    Ok(describe(ctx, &name).await?.map(|v| v.name))
}

/// The recovery points the vault holds (their ARNs).
pub async fn recovery_points(ctx: &Ctx, vault: &str) -> Result<Vec<String>> {
    let call = ctx.aws.backup.list_recovery_points_by_backup_vault();
    let pages = call
        .backup_vault_name(vault)
        .into_paginator()
        .items()
        .send();
    let points: Vec<_> = pages
        .try_collect()
        .await
        .map_err(aws("ListRecoveryPointsByBackupVault", vault))?;
    Ok(points
        .iter()
        .filter_map(|p| p.recovery_point_arn().map(str::to_string))
        .collect())
}

async fn create(ctx: &Ctx, name: &str, key: &str) -> Result<Described> {
    let call = ctx.aws.backup.create_backup_vault().backup_vault_name(name);
    let call = call
        .encryption_key_arn(key)
        .set_backup_vault_tags(Some(ctx.tags().into_iter().collect()));
    let out = call.send().await.map_err(aws("CreateBackupVault", name))?;
    Ok(Described {
        name: name.to_string(),
        arn: required(out.backup_vault_arn(), "backup vault ARN")?,
        key: Some(key.to_string()),
    })
}

/// Keeps the vault: its record stays and the summary says what it holds and how to
/// restore from it.
async fn keep(ctx: &Ctx, vault: &Described, points: usize, why: &str) -> Result<()> {
    let record = Record::new(KIND, &vault.name).arn(&vault.arn);
    ctx.record(ADDR, record).await?;
    let name = &vault.name;
    ctx.report.keep(
        ADDR,
        Kept {
            what: format!("AWS Backup vault {name}, with its {points} recovery point(s)"),
            id: vault.arn.clone(),
            why: why.to_string(),
            restore: format!(
                "`aws backup list-recovery-points-by-backup-vault --backup-vault-name {name}`, then `aws backup start-restore-job --recovery-point-arn ARN --iam-role-arn ROLE --metadata file://meta.json` (docs/teardown.md); `payctl up --env {}` adopts the vault again",
                ctx.env
            ),
            remove: format!(
                "once the recovery points have expired (35 days) or been deleted with `aws backup delete-recovery-point`: `aws backup delete-backup-vault --backup-vault-name {name}`"
            ),
        },
    );
    Ok(())
}

#[async_trait]
impl Resource for Vault {
    kind!(KIND, depends_on = [kms_key::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        if !wanted(ctx) {
            return Ok(());
        }
        let key = ctx.needed_arn(&kms_key::address("rds"))?;
        let name = vault_name(ctx);
        let (vault, change) = match lookup(ctx).await? {
            Some(found) => {
                let target = ArnMap::Backup(&found.value.arn);
                let retagged = converge_tags(ctx, ADDR, &target, None).await?;
                if found.value.key.as_deref() != Some(key.as_str()) {
                    tracing::warn!(
                        "backup vault {name} is encrypted with {}, not the stack's RDS key {key}; a vault's key cannot be changed (verify reports it)",
                        found.value.key.as_deref().unwrap_or("an unknown key")
                    );
                }
                (found.value.clone(), found.change().updated_if(retagged))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} {name}")) {
                    return Ok(());
                }
                (create(ctx, &name, &key).await?, Change::Created)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &vault.name).arn(&vault.arn))
            .await?;
        ctx.report.note(change, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        if !super::made(ctx, ADDR) {
            return Ok(());
        }
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let vault = found.value;
        ensure_owned(ctx, &ArnMap::Backup(&vault.arn)).await?;
        let points = recovery_points(ctx, &vault.name).await?;
        if ctx.settings.production {
            let why = "the backups of a production environment's data outlive the stack";
            return keep(ctx, &vault, points.len(), why).await;
        }
        if !points.is_empty() {
            let why = "it still holds recovery points, and payctl never deletes a backup";
            return keep(ctx, &vault, points.len(), why).await;
        }
        let delete = || async {
            let call = ctx
                .aws
                .backup
                .delete_backup_vault()
                .backup_vault_name(&vault.name);
            call.send()
                .await
                .map_err(aws("DeleteBackupVault", &vault.name))
        };
        ctx.delete_and_forget(ADDR, &vault.name, SERVICE, delete)
            .await
    }
}
