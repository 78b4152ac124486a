//! The backup plan `payment-backup-plan-<env>`, in production environments: one rule,
//! `daily-35-days`, that backs up every day at 03:00 UTC (starting within an hour,
//! finishing within six) into the stack's vault and keeps each recovery point 35 days.
//! A rule that differs is put back with `UpdateBackupPlan` (a new plan version).
//!
//! AWS keeps a deleted plan readable, with its `DeletionDate`: such a plan is gone.

use super::{made, vault, wanted};
use crate::engine::report::Change;
use crate::engine::tags::{ArnMap, converge_tags, ensure_owned};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_backup::types::{BackupPlanInput, BackupRule, BackupRuleInput, Lifecycle};

pub const KIND: &str = "backup_plan";
pub const ADDR: &str = "backup_plan.main";
const SERVICE: Service = Service::Backup;

pub const RULE: &str = "daily-35-days";
pub const SCHEDULE: &str = "cron(0 3 ? * * *)";
pub const START_WINDOW_MINUTES: i64 = 60;
pub const COMPLETION_WINDOW_MINUTES: i64 = 360;
pub const RETENTION_DAYS: i64 = 35;

pub struct Plan;

pub fn plan_name(ctx: &Ctx) -> String {
    ctx.name("backup-plan")
}

/// A plan as payctl knows it: id, ARN and its rules as text.
#[derive(Debug, Clone)]
struct Described {
    id: String,
    arn: String,
    rules: String,
}

/// A rule as `plan` shows it.
fn rule_text(
    name: &str,
    vault: &str,
    schedule: &str,
    windows: (Option<i64>, Option<i64>),
    keep_days: Option<i64>,
) -> String {
    let minutes = |m: Option<i64>| m.map_or("?".to_string(), |m| m.to_string());
    let days = keep_days.map_or("forever".to_string(), |d| format!("{d} days"));
    format!(
        "{name}: {schedule} (start within {} min, finish within {} min) into {vault}, kept {days}",
        minutes(windows.0),
        minutes(windows.1),
    )
}

fn rules_text(rules: &[BackupRule]) -> String {
    let text: Vec<String> = rules
        .iter()
        .map(|r| {
            let windows = (r.start_window_minutes(), r.completion_window_minutes());
            let keep = r.lifecycle().and_then(|l| l.delete_after_days());
            let schedule = r.schedule_expression().unwrap_or("no schedule");
            rule_text(
                r.rule_name(),
                r.target_backup_vault_name(),
                schedule,
                windows,
                keep,
            )
        })
        .collect();
    if text.is_empty() {
        "no rules".into()
    } else {
        text.join("; ")
    }
}

fn wanted_text(vault: &str) -> String {
    let windows = (Some(START_WINDOW_MINUTES), Some(COMPLETION_WINDOW_MINUTES));
    rule_text(RULE, vault, SCHEDULE, windows, Some(RETENTION_DAYS))
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("building the backup plan: {e}"))
}

fn input(ctx: &Ctx, vault: &str) -> Result<BackupPlanInput> {
    let rule = BackupRuleInput::builder()
        .rule_name(RULE)
        .target_backup_vault_name(vault)
        .schedule_expression(SCHEDULE)
        .start_window_minutes(START_WINDOW_MINUTES)
        .completion_window_minutes(COMPLETION_WINDOW_MINUTES)
        .lifecycle(
            Lifecycle::builder()
                .delete_after_days(RETENTION_DAYS)
                .build(),
        )
        .build()
        .map_err(build_error)?;
    BackupPlanInput::builder()
        .backup_plan_name(plan_name(ctx))
        .rules(rule)
        .build()
        .map_err(build_error)
}

/// The plan `id`; `None` when it is unknown or deleted.
async fn get(ctx: &Ctx, id: &str) -> Result<Option<Described>> {
    let out = ctx
        .aws
        .backup
        .get_backup_plan()
        .backup_plan_id(id)
        .send()
        .await;
    let Some(out) = SERVICE.found(out.map_err(aws("GetBackupPlan", id)))? else {
        return Ok(None);
    };
    if out.deletion_date().is_some() {
        return Ok(None);
    }
    Ok(Some(Described {
        id: id.to_string(),
        arn: required(out.backup_plan_arn(), "backup plan ARN")?,
        rules: rules_text(out.backup_plan().map(|p| p.rules()).unwrap_or_default()),
    }))
}

/// The plan, by the id in state, else by its name among the region's (not deleted).
async fn lookup(ctx: &Ctx) -> Result<Option<Found<Described>>> {
    let by_id = |id: String| async move { get(ctx, &id).await };
    let by_name = || async {
        let name = plan_name(ctx);
        let pages = ctx
            .aws
            .backup
            .list_backup_plans()
            .into_paginator()
            .items()
            .send();
        let plans: Vec<_> = pages
            .try_collect()
            .await
            .map_err(aws("ListBackupPlans", &name))?;
        let id = plans
            .iter()
            .filter(|p| p.deletion_date().is_none())
            .find(|p| p.backup_plan_name() == Some(name.as_str()))
            .and_then(|p| p.backup_plan_id());
        match id {
            Some(id) => get(ctx, id).await,
            None => Ok(None),
        }
    };
    find(ctx, ADDR, SERVICE, by_id, by_name).await
}

async fn create(ctx: &Ctx, vault: &str) -> Result<Described> {
    let name = plan_name(ctx);
    let call = ctx
        .aws
        .backup
        .create_backup_plan()
        .backup_plan(input(ctx, vault)?);
    let call = call.set_backup_plan_tags(Some(ctx.tags().into_iter().collect()));
    let out = call.send().await.map_err(aws("CreateBackupPlan", &name))?;
    Ok(Described {
        id: required(out.backup_plan_id(), "backup plan id")?,
        arn: required(out.backup_plan_arn(), "backup plan ARN")?,
        rules: wanted_text(vault),
    })
}

async fn update(ctx: &Ctx, id: &str, vault: &str) -> Result<()> {
    let call = ctx.aws.backup.update_backup_plan().backup_plan_id(id);
    let call = call.backup_plan(input(ctx, vault)?);
    call.send()
        .await
        .map_err(aws("UpdateBackupPlan", id))
        .map(drop)
}

#[async_trait]
impl Resource for Plan {
    kind!(KIND, depends_on = [vault::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        if !wanted(ctx) {
            return Ok(());
        }
        let vault = vault::vault_name(ctx);
        let want = wanted_text(&vault);
        let (plan, change) = match lookup(ctx).await? {
            Some(found) => {
                let target = ArnMap::Backup(&found.value.arn);
                let retagged = converge_tags(ctx, ADDR, &target, None).await?;
                let plan = found.value.clone();
                let updated = ctx
                    .converge(ADDR, "rules", plan.rules.clone(), want.clone(), || {
                        update(ctx, &plan.id, &vault)
                    })
                    .await?;
                (plan, found.change().updated_if(retagged || updated))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} {} ({want})", plan_name(ctx))) {
                    return Ok(());
                }
                (create(ctx, &vault).await?, Change::Created)
            }
        };
        let record = Record::new(KIND, &plan.id).arn(&plan.arn);
        ctx.record(ADDR, record.attr("name", plan_name(ctx)))
            .await?;
        ctx.report
            .note(change, format!("{ADDR} {} ({want})", plan_name(ctx)));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        if !made(ctx, ADDR) {
            return Ok(());
        }
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let plan = found.value;
        ensure_owned(ctx, &ArnMap::Backup(&plan.arn)).await?;
        let delete = || async {
            let call = ctx.aws.backup.delete_backup_plan().backup_plan_id(&plan.id);
            call.send().await.map_err(aws("DeleteBackupPlan", &plan.id))
        };
        ctx.delete_and_forget(ADDR, &plan.id, SERVICE, delete).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_reads_back_as_it_is_written() {
        let rule = BackupRule::builder()
            .rule_name(RULE)
            .target_backup_vault_name("payment-backup-prod")
            .schedule_expression(SCHEDULE)
            .start_window_minutes(START_WINDOW_MINUTES)
            .completion_window_minutes(COMPLETION_WINDOW_MINUTES)
            .lifecycle(Lifecycle::builder().delete_after_days(35).build())
            .build()
            .unwrap();
        assert_eq!(
            rules_text(std::slice::from_ref(&rule)),
            "daily-35-days: cron(0 3 ? * * *) (start within 60 min, finish within 360 min) into payment-backup-prod, kept 35 days"
        );
        assert_eq!(rules_text(&[rule]), wanted_text("payment-backup-prod"));
        let weekly = BackupRule::builder()
            .rule_name(RULE)
            .target_backup_vault_name("payment-backup-prod")
            .schedule_expression("cron(0 3 ? * 1 *)")
            .build()
            .unwrap();
        assert_ne!(rules_text(&[weekly]), wanted_text("payment-backup-prod"));
        assert_eq!(rules_text(&[]), "no rules");
    }
}
