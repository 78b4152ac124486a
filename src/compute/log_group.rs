//! The stack's CloudWatch log groups, 90-day retention, created before their writers:
//! `/aws/lambda/payment-<function>-<env>` for each function, and
//! `/aws/apigateway/payment-api-<env>/access` for the API stage's access log.

use super::{FUNCTIONS, LOG_RETENTION_DAYS, function_name};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, all_ok, aws};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types::LogGroup;
use futures::future::join_all;
use std::collections::HashMap;

pub const KIND: &str = "log_group";
pub const API_ACCESS: &str = "api-access";

pub struct LogGroups;

pub fn address(which: &str) -> String {
    format!("{KIND}.{which}")
}

/// Every log group: (state key, name).
pub fn all(ctx: &Ctx) -> Vec<(String, String)> {
    let mut groups: Vec<(String, String)> = FUNCTIONS
        .iter()
        .map(|f| {
            (
                f.key.to_string(),
                format!("/aws/lambda/{}", function_name(ctx, f.key)),
            )
        })
        .collect();
    groups.push((
        API_ACCESS.to_string(),
        format!("/aws/apigateway/{}/access", ctx.name("api")),
    ));
    groups
}

/// The log group's ARN without the trailing `:*` (what Lambda and API Gateway take).
pub fn arn(ctx: &Ctx, which: &str) -> Result<String> {
    ctx.needed_arn(&address(which))
}

async fn find(ctx: &Ctx, name: &str) -> Result<Option<LogGroup>> {
    let out = ctx
        .aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(aws("DescribeLogGroups", name))?;
    Ok(out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .cloned())
}

fn bare_arn(group: &LogGroup, ctx: &Ctx, name: &str) -> String {
    group
        .arn()
        .map(|a| a.trim_end_matches(":*").to_string())
        .unwrap_or_else(|| {
            format!(
                "arn:aws:logs:{}:{}:log-group:{name}",
                ctx.region, ctx.account_id
            )
        })
}

async fn check_owned(ctx: &Ctx, arn: &str, name: &str) -> Result<()> {
    let out = ctx
        .aws
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws("ListTagsForResource", name))?;
    let tags = out.tags().cloned().unwrap_or_default();
    ctx.check_owned(
        &format!("log group {name}"),
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

async fn ensure_one(ctx: &Ctx, which: &str, name: &str) -> Result<()> {
    let logs = &ctx.aws.logs;
    let addr = address(which);
    let (group, mut change) = match find(ctx, name).await? {
        Some(g) => {
            let known = ctx.state.get(&addr).is_some();
            // Tags are read before an adoption or a change; a group the state file names
            // and that needs nothing is left alone unread.
            if !known || g.retention_in_days() != Some(LOG_RETENTION_DAYS) {
                check_owned(ctx, &bare_arn(&g, ctx, name), name).await?;
            }
            (
                g,
                if known {
                    Change::Unchanged
                } else {
                    Change::Adopted
                },
            )
        }
        None => {
            if !ctx.would_create(format!("{addr} {name}")) {
                return Ok(());
            }
            let tags: HashMap<String, String> = ctx.tags().into_iter().collect();
            match logs
                .create_log_group()
                .log_group_name(name)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
                Err(e) => return Err(aws("CreateLogGroup", name)(e)),
            }
            let group = find(ctx, name).await?.ok_or_else(|| {
                Error::Invalid(format!("log group {name} was created but is not listed"))
            })?;
            (group, Change::Created)
        }
    };
    let arn = bare_arn(&group, ctx, name);
    ctx.record(&addr, Record::new(KIND, name).arn(&arn)).await?;
    if group.retention_in_days() != Some(LOG_RETENTION_DAYS)
        && ctx.apply(
            &addr,
            "retention (days)",
            group
                .retention_in_days()
                .map_or("never expire".to_string(), |d| d.to_string()),
            LOG_RETENTION_DAYS,
        )
    {
        logs.put_retention_policy()
            .log_group_name(name)
            .retention_in_days(LOG_RETENTION_DAYS)
            .send()
            .await
            .map_err(aws("PutRetentionPolicy", name))?;
        if change == Change::Unchanged {
            change = Change::Updated;
        }
    }
    ctx.report.note(change, format!("{addr} {name}"));
    Ok(())
}

async fn delete_one(ctx: &Ctx, which: &str, name: &str) -> Result<()> {
    let addr = address(which);
    if let Some(group) = find(ctx, name).await? {
        check_owned(ctx, &bare_arn(&group, ctx, name), name).await?;
        match ctx
            .aws
            .logs
            .delete_log_group()
            .log_group_name(name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(aws("DeleteLogGroup", name)(e)),
        }
        ctx.report.note(Change::Deleted, format!("{addr} {name}"));
    } else {
        ctx.report.note(Change::Absent, &addr);
    }
    ctx.forget(&addr).await?;
    Ok(())
}

#[async_trait]
impl Resource for LogGroups {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let groups = all(ctx);
        let results = join_all(groups.iter().map(|(w, n)| ensure_one(ctx, w, n))).await;
        all_ok(results)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let groups = all(ctx);
        let results = join_all(groups.iter().map(|(w, n)| delete_one(ctx, w, n))).await;
        all_ok(results)
    }
}
