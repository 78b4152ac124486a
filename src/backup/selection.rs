//! The backup selection `payment-backup-selection-<env>` of the stack's plan, in
//! production environments: the database instance and the transactions table, by ARN,
//! backed up with the role `iam_role.backup` (trusted by `backup.amazonaws.com`).
//!
//! A selection cannot be changed: one whose resources or role differ is replaced (the
//! new one first, so the data is never without a selection). Selections have no tags;
//! one belongs to payctl when it is in payctl's plan under payctl's name.

use super::{made, plan, wanted};
use crate::compute::role;
use crate::data::{dynamodb_table, rds_instance};
use crate::engine::report::Change;
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_backup::types::BackupSelection;

pub const KIND: &str = "backup_selection";
pub const ADDR: &str = "backup_selection.main";
const SERVICE: Service = Service::Backup;

pub struct Selection;

pub fn selection_name(ctx: &Ctx) -> String {
    ctx.name("backup-selection")
}

/// What a selection protects and with which role, as `plan` compares it.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    resources: Vec<String>,
    role: String,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} as {}", self.resources.join(", "), self.role)
    }
}

fn wanted_shape(ctx: &Ctx) -> Result<Shape> {
    let mut resources = vec![
        ctx.needed_arn(rds_instance::ADDR)?,
        ctx.needed_arn(dynamodb_table::ADDR)?,
    ];
    resources.sort();
    Ok(Shape {
        resources,
        role: ctx.needed_arn(&role::address(role::BACKUP))?,
    })
}

async fn get(ctx: &Ctx, plan: &str, id: &str) -> Result<Option<(String, Shape)>> {
    let call = ctx.aws.backup.get_backup_selection().backup_plan_id(plan);
    let out = call.selection_id(id).send().await;
    let Some(out) = SERVICE.found(out.map_err(aws("GetBackupSelection", id)))? else {
        return Ok(None);
    };
    let Some(selection) = out.backup_selection() else {
        return Ok(None);
    };
    if selection.selection_name() != selection_name(ctx) {
        return Ok(None);
    }
    let mut resources = selection.resources().to_vec();
    resources.sort();
    let role = selection.iam_role_arn().to_string();
    Ok(Some((id.to_string(), Shape { resources, role })))
}

/// The selection of `plan`, by the id in state, else by its name.
async fn lookup(ctx: &Ctx, plan: &str) -> Result<Option<Found<(String, Shape)>>> {
    let by_id = |id: String| async move { get(ctx, plan, &id).await };
    let by_name = || async {
        let name = selection_name(ctx);
        let call = ctx.aws.backup.list_backup_selections().backup_plan_id(plan);
        let pages = call.into_paginator().items().send();
        let all: Vec<_> = pages
            .try_collect()
            .await
            .map_err(aws("ListBackupSelections", plan))?;
        let ids: Vec<&str> = all
            .iter()
            .filter(|s| s.selection_name() == Some(name.as_str()))
            .filter_map(|s| s.selection_id())
            .collect();
        match ids.as_slice() {
            [] => Ok(None),
            [id] => get(ctx, plan, id).await,
            _ => Err(Error::Invalid(format!(
                "backup plan {plan} has {} selections named {name} ({}); delete all but one, then run `payctl up` again",
                ids.len(),
                ids.join(", ")
            ))),
        }
    };
    find(ctx, ADDR, SERVICE, by_id, by_name).await
}

async fn create(ctx: &Ctx, plan: &str, want: &Shape) -> Result<String> {
    let selection = BackupSelection::builder()
        .selection_name(selection_name(ctx))
        .iam_role_arn(&want.role)
        .set_resources(Some(want.resources.clone()))
        .build()
        .map_err(|e| Error::Invalid(format!("building the backup selection: {e}")))?;
    let call = ctx
        .aws
        .backup
        .create_backup_selection()
        .backup_plan_id(plan);
    let out = call.backup_selection(selection).send().await;
    let out = out.map_err(aws("CreateBackupSelection", plan))?;
    required(out.selection_id(), "backup selection id")
}

async fn delete(ctx: &Ctx, plan: &str, id: &str) -> Result<()> {
    let call = ctx
        .aws
        .backup
        .delete_backup_selection()
        .backup_plan_id(plan);
    let out = call.selection_id(id).send().await;
    out.map_err(aws("DeleteBackupSelection", id)).map(drop)
}

fn record(plan: &str, id: &str) -> Record {
    Record::new(KIND, id).attr("plan", plan)
}

#[async_trait]
impl Resource for Selection {
    kind!(
        KIND,
        depends_on = [
            plan::KIND,
            rds_instance::KIND,
            dynamodb_table::KIND,
            role::KIND
        ]
    );

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        if !wanted(ctx) {
            return Ok(());
        }
        if ctx.planning() && ctx.state.id(plan::ADDR).is_none() {
            // `plan` of a new environment: the plan it would create has no id yet.
            ctx.would_create(format!("{ADDR} {}", selection_name(ctx)));
            return Ok(());
        }
        let plan = ctx.needed_id(plan::ADDR)?;
        let want = wanted_shape(ctx)?;
        let (id, change) = match lookup(ctx, &plan).await? {
            Some(found) => {
                let (id, have) = found.value.clone();
                let replace = || async {
                    let new = create(ctx, &plan, &want).await?;
                    ctx.record(ADDR, record(&plan, &new)).await?;
                    delete(ctx, &plan, &id).await
                };
                let replaced = ctx
                    .converge(ADDR, "selection", have, want.clone(), replace)
                    .await?;
                let id = if replaced { ctx.needed_id(ADDR)? } else { id };
                (id, found.change().updated_if(replaced))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} {} ({want})", selection_name(ctx))) {
                    return Ok(());
                }
                (create(ctx, &plan, &want).await?, Change::Created)
            }
        };
        ctx.record(ADDR, record(&plan, &id)).await?;
        ctx.report.note(change, format!("{ADDR} {id} ({want})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        if !made(ctx, ADDR) {
            return Ok(());
        }
        let Some(plan) = ctx.state.id(plan::ADDR) else {
            return ctx.forget_gone(ADDR).await;
        };
        let Some(found) = lookup(ctx, &plan).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let (id, _) = found.value;
        ctx.delete_and_forget(ADDR, &id, SERVICE, || delete(ctx, &plan, &id))
            .await
    }
}
