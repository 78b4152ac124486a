//! The stack's CloudWatch log groups, created before their writers:
//! `/aws/lambda/payment-<function>-<env>` for each function,
//! `/aws/apigateway/payment-api-<env>/access` for the API stage's access log, and
//! `/aws/vpc-flow-logs/payment-vpc-<env>` for the VPC's flow logs.
//!
//! Each is encrypted with the stack's logs key (`kms_key.logs`; an existing group gets
//! it with `AssociateKmsKey`) and keeps its events `log_retention_days` (365 in
//! production, 90 elsewhere). A production `down` keeps the groups, their records and
//! so their key: a year of logs is the point of keeping them.

use super::support::number;
use super::{FUNCTIONS, function_name};
use crate::engine::report::{Change, Kept};
use crate::engine::tags::{self, ArnMap, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, all_ok, aws};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::error::SdkError;
use aws_sdk_cloudwatchlogs::operation::create_log_group::CreateLogGroupError;
use aws_sdk_cloudwatchlogs::types::LogGroup;
use futures::future::join_all;
use std::collections::HashMap;

pub const KIND: &str = "log_group";
pub const API_ACCESS: &str = "api-access";
const SERVICE: Service = Service::Logs;

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
    groups.push((
        super::role::FLOW_LOGS.to_string(),
        format!("/aws/vpc-flow-logs/{}", ctx.name("vpc")),
    ));
    groups
}

/// The log group's ARN without the trailing `:*` (what Lambda and API Gateway take).
pub fn arn(ctx: &Ctx, which: &str) -> Result<String> {
    ctx.needed_arn(&address(which))
}

/// The group called exactly `name`, if any (DescribeLogGroups matches a prefix).
async fn describe(ctx: &Ctx, name: &str) -> Result<Option<LogGroup>> {
    let call = ctx
        .aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name);
    let out = call.send().await.map_err(aws("DescribeLogGroups", name))?;
    let mut groups = out.log_groups().iter();
    Ok(groups.find(|g| g.log_group_name() == Some(name)).cloned())
}

/// The group, by the name in state, else by its name (its tags are checked on use).
async fn lookup(ctx: &Ctx, addr: &str, name: &str) -> Result<Option<Found<LogGroup>>> {
    let by_id = |id: String| async move { describe(ctx, &id).await };
    find(ctx, addr, SERVICE, by_id, || describe(ctx, name)).await
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

/// Another run created the group between the lookup and the create: it is there.
fn already_exists(e: &SdkError<CreateLogGroupError>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_resource_already_exists_exception())
}

async fn create(ctx: &Ctx, name: &str, key: &str) -> Result<LogGroup> {
    let tags: HashMap<String, String> = ctx.tags().into_iter().collect();
    let call = ctx.aws.logs.create_log_group().log_group_name(name);
    match call.kms_key_id(key).set_tags(Some(tags)).send().await {
        Err(e) if already_exists(&e) => {}
        out => {
            out.map_err(aws("CreateLogGroup", name))?;
        }
    }
    describe(ctx, name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("log group {name} was created but is not listed")))
}

/// Whether any of the stack's log groups exists (a production `down` keeps them, and so
/// their key).
pub async fn any_exists(ctx: &Ctx) -> Result<Option<String>> {
    for (_, name) in all(ctx) {
        if describe(ctx, &name).await?.is_some() {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

async fn ensure_one(ctx: &Ctx, which: &str, name: &str) -> Result<()> {
    let addr = address(which);
    let key = kms_key::arn_or_alias(ctx, kms_key::LOGS);
    let (group, change) = match lookup(ctx, &addr, name).await? {
        Some(found) => {
            let target = ArnMap::Logs(&bare_arn(&found.value, ctx, name));
            let retagged = converge_tags(ctx, &addr, &target, None).await?;
            let change = found.change().updated_if(retagged);
            (found.value, change)
        }
        None => {
            if !ctx.would_create(format!("{addr} {name}")) {
                return Ok(());
            }
            let key = ctx.needed_arn(&kms_key::address(kms_key::LOGS))?;
            (create(ctx, name, &key).await?, Change::Created)
        }
    };
    let arn = bare_arn(&group, ctx, name);
    ctx.record(&addr, Record::new(KIND, name).arn(&arn)).await?;
    let days = ctx.settings.log_retention_days;
    let have = number(group.retention_in_days(), "never expire");
    let want = number(Some(days), "never expire");
    let retention = || async {
        let call = ctx.aws.logs.put_retention_policy().log_group_name(name);
        let call = call.retention_in_days(days);
        call.send().await.map_err(aws("PutRetentionPolicy", name))?;
        Ok(())
    };
    let mut wrote = ctx
        .converge(&addr, "retention (days)", have, want, retention)
        .await?;
    let have = group
        .kms_key_id()
        .unwrap_or("none (AWS-owned key)")
        .to_string();
    let associate = || async {
        let call = ctx.aws.logs.associate_kms_key().log_group_name(name);
        call.kms_key_id(&key)
            .send()
            .await
            .map_err(aws("AssociateKmsKey", name))?;
        Ok(())
    };
    wrote |= ctx
        .converge(&addr, "KMS key", have, key.clone(), associate)
        .await?;
    ctx.report
        .note(change.updated_if(wrote), format!("{addr} {name}"));
    Ok(())
}

/// A production `down` keeps the group, its record and its events.
async fn keep(ctx: &Ctx, addr: &str, name: &str, arn: &str) -> Result<()> {
    ctx.record(addr, Record::new(KIND, name).arn(arn)).await?;
    ctx.report.keep(
        addr,
        Kept {
            what: format!("log group {name}, with its events"),
            id: arn.to_string(),
            why: format!(
                "the logs of a production environment are kept {} days (PCI DSS 10.5.1: at least 12 months)",
                ctx.settings.log_retention_days
            ),
            restore: format!(
                "nothing to restore: it stays as it is, and `payctl up --env {}` adopts it again",
                ctx.env
            ),
            remove: format!(
                "once its retention is over: `aws logs delete-log-group --log-group-name {name}`"
            ),
        },
    );
    Ok(())
}

async fn delete_one(ctx: &Ctx, which: &str, name: &str) -> Result<()> {
    let addr = address(which);
    let Some(found) = lookup(ctx, &addr, name).await? else {
        return ctx.forget_gone(&addr).await;
    };
    let arn = bare_arn(&found.value, ctx, name);
    tags::ensure_owned(ctx, &ArnMap::Logs(&arn)).await?;
    if ctx.settings.production {
        return keep(ctx, &addr, name, &arn).await;
    }
    let delete = || async {
        let call = ctx.aws.logs.delete_log_group().log_group_name(name);
        call.send().await.map_err(aws("DeleteLogGroup", name))
    };
    ctx.delete_and_forget(&addr, name, SERVICE, delete).await
}

#[async_trait]
impl Resource for LogGroups {
    kind!(KIND, depends_on = [kms_key::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let groups = all(ctx);
        all_ok(join_all(groups.iter().map(|(w, n)| ensure_one(ctx, w, n))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let groups = all(ctx);
        all_ok(join_all(groups.iter().map(|(w, n)| delete_one(ctx, w, n))).await)
    }
}
