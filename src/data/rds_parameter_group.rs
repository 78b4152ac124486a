//! The DB parameter group `payment-db-params-<env>` of the instance's engine family
//! (`postgres<major>`): the server refuses connections without TLS (`rds.force_ssl = 1`,
//! PCI DSS 4.2.1) and logs every connection and disconnection.
//!
//! Both parameters are dynamic, so a change to the group reaches a running instance
//! without a reboot ("Working with parameters on your RDS for PostgreSQL DB instance",
//! <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Appendix.PostgreSQL.CommonDBATasks.Parameters.html>).
//! Attaching the group to an existing instance is what needs a reboot: `rds_instance`
//! leaves that pending and reports it.

use super::rds_subnet_group::rds_tags;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_rds::types::{ApplyMethod, DbParameterGroup as Group, Parameter};

pub const KIND: &str = "rds_parameter_group";
pub const ADDR: &str = "rds_parameter_group.main";
const SERVICE: Service = Service::Rds;

/// The parameters payctl sets, with their values.
pub const PARAMETERS: [(&str, &str); 3] = [
    ("rds.force_ssl", "1"),
    ("log_connections", "1"),
    ("log_disconnections", "1"),
];

pub struct DbParameterGroup;

pub fn group_name(ctx: &Ctx) -> String {
    ctx.name("db-params")
}

/// `postgres17` for engine version `17` (or `17.4`).
pub fn family(engine_version: &str) -> String {
    let major = engine_version.split('.').next().unwrap_or(engine_version);
    format!("postgres{major}")
}

async fn describe(ctx: &Ctx, name: &str) -> Result<Option<Group>> {
    let call = ctx.aws.rds.describe_db_parameter_groups();
    let call = call.db_parameter_group_name(name);
    let out = call
        .send()
        .await
        .map_err(aws("DescribeDBParameterGroups", name));
    Ok(SERVICE
        .found(out)?
        .and_then(|o| o.db_parameter_groups().first().cloned()))
}

/// The group, by the name in state, else by its name.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<Group>>> {
    let by_id = |id: String| async move { describe(ctx, &id).await };
    let name = group_name(ctx);
    find(ctx, ADDR, SERVICE, by_id, || describe(ctx, &name)).await
}

/// The current value of each of [`PARAMETERS`] in the group (`None`: the engine default).
pub async fn values(rds: &aws_sdk_rds::Client, name: &str) -> Result<Vec<Option<String>>> {
    let mut have: Vec<Option<String>> = vec![None; PARAMETERS.len()];
    let mut pages = rds
        .describe_db_parameters()
        .db_parameter_group_name(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("DescribeDBParameters", name))?;
        for p in page.parameters() {
            let i = PARAMETERS
                .iter()
                .position(|(n, _)| Some(*n) == p.parameter_name());
            if let Some(i) = i {
                have[i] = p.parameter_value().map(str::to_string);
            }
        }
    }
    Ok(have)
}

fn parameter(name: &str, value: &str) -> Parameter {
    Parameter::builder()
        .parameter_name(name)
        .parameter_value(value)
        .apply_method(ApplyMethod::Immediate)
        .build()
}

/// Puts each parameter back to its value; true when it wrote any.
async fn converge_parameters(ctx: &Ctx, name: &str) -> Result<bool> {
    let have = values(&ctx.aws.rds, name).await?;
    let mut wrote = false;
    for ((param, want), have) in PARAMETERS.iter().zip(have) {
        let have = have.unwrap_or_else(|| "engine default".to_string());
        let write = || async {
            let call = ctx.aws.rds.modify_db_parameter_group();
            let call = call.db_parameter_group_name(name);
            let call = call.parameters(parameter(param, want));
            call.send()
                .await
                .map_err(aws("ModifyDBParameterGroup", name))?;
            Ok(())
        };
        wrote |= ctx
            .converge(ADDR, param, have, want.to_string(), write)
            .await?;
    }
    Ok(wrote)
}

async fn create(ctx: &Ctx, name: &str, family: &str) -> Result<String> {
    let call = ctx.aws.rds.create_db_parameter_group();
    let call = call
        .db_parameter_group_name(name)
        .db_parameter_group_family(family)
        .description(format!("payctl: TLS-only PostgreSQL for {}", ctx.env))
        .set_tags(Some(rds_tags(ctx)));
    let out = call
        .send()
        .await
        .map_err(aws("CreateDBParameterGroup", name))?;
    let arn = out
        .db_parameter_group()
        .and_then(|g| g.db_parameter_group_arn());
    required(arn, "DB parameter group ARN")
}

#[async_trait]
impl Resource for DbParameterGroup {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = group_name(ctx);
        let family = family(&ctx.settings.db.engine_version);
        let (arn, change) = match lookup(ctx).await? {
            Some(found) => {
                let g = &found.value;
                let have = g.db_parameter_group_family().unwrap_or_default();
                if have != family {
                    return Err(Error::Invalid(format!(
                        "DB parameter group {name} is for {have}, the database is {family}: delete the group, or set db engine_version to match"
                    )));
                }
                let arn = required(g.db_parameter_group_arn(), "DB parameter group ARN")?;
                let retagged = converge_tags(ctx, ADDR, &tags::Rds(&arn), None).await?;
                (arn, found.change().updated_if(retagged))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} {name} ({family})")) {
                    return Ok(());
                }
                (create(ctx, &name, &family).await?, Change::Created)
            }
        };
        let record = Record::new(KIND, &name).arn(&arn).attr("family", &family);
        ctx.record(ADDR, record).await?;
        let change = change.updated_if(converge_parameters(ctx, &name).await?);
        ctx.report.note(change, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let found = lookup(ctx).await?.map(|f| f.value);
        let Some(arn) = found.and_then(|g| g.db_parameter_group_arn) else {
            return ctx.forget_gone(ADDR).await;
        };
        // The state's name (this environment's group), as `lookup` found it.
        let name = ctx.state.id(ADDR).unwrap_or_else(|| group_name(ctx));
        let delete = || async {
            let call = ctx.aws.rds.delete_db_parameter_group();
            let call = call.db_parameter_group_name(&name);
            let out = call.send().await;
            out.map_err(aws("DeleteDBParameterGroup", &name))
        };
        let in_use = "InvalidDBParameterGroupState";
        super::delete_rds_group(ctx, ADDR, (&name, &arn), in_use, delete).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_is_the_major_version() {
        assert_eq!(family("17"), "postgres17");
        assert_eq!(family("16.4"), "postgres16");
    }

    #[test]
    fn parameters_are_applied_at_once() {
        let p = parameter("rds.force_ssl", "1");
        assert_eq!(p.apply_method(), Some(&ApplyMethod::Immediate));
        assert_eq!(p.parameter_value(), Some("1"));
    }
}
