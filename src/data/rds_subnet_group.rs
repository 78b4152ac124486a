//! The DB subnet group over the three private subnets.

use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_rds::types::{DbSubnetGroup as Group, Tag};

pub const KIND: &str = "rds_subnet_group";
pub const ADDR: &str = "rds_subnet_group.main";
const SERVICE: Service = Service::Rds;

pub struct DbSubnetGroup;

/// The standard tags, for RDS create calls.
pub fn rds_tags(ctx: &Ctx) -> Vec<Tag> {
    ctx.tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

async fn describe(ctx: &Ctx, name: &str) -> Result<Option<Group>> {
    let call = ctx
        .aws
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name);
    let out = SERVICE.found(
        call.send()
            .await
            .map_err(aws("DescribeDBSubnetGroups", name)),
    )?;
    Ok(out.and_then(|o| o.db_subnet_groups().first().cloned()))
}

/// The group, by the name in state, else by its name.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<Group>>> {
    let by_id = |id: String| async move { describe(ctx, &id).await };
    let name = ctx.name("db-subnets");
    find(ctx, ADDR, SERVICE, by_id, || describe(ctx, &name)).await
}

fn private_subnets(ctx: &Ctx) -> Result<Vec<String>> {
    let mut ids: Vec<String> = crate::network::zones(ctx)
        .iter()
        .map(|az| crate::network::subnet_id(ctx, "private", az))
        .collect::<Result<_>>()?;
    ids.sort();
    Ok(ids)
}

fn subnets_of(g: &Group) -> Vec<String> {
    let mut have: Vec<String> = g
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_string))
        .collect();
    have.sort();
    have
}

#[async_trait]
impl Resource for DbSubnetGroup {
    kind!(KIND, depends_on = [crate::network::subnet::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("db-subnets");
        let subnets = private_subnets(ctx)?;
        let (arn, change) = match lookup(ctx).await? {
            Some(found) => {
                let g = &found.value;
                let arn = required(g.db_subnet_group_arn(), "DB subnet group ARN")?;
                let retagged = converge_tags(ctx, ADDR, &tags::Rds(&arn), None).await?;
                let (have, want) = (subnets_of(g).join(", "), subnets.join(", "));
                let write = || async {
                    let call = ctx
                        .aws
                        .rds
                        .modify_db_subnet_group()
                        .db_subnet_group_name(&name);
                    let call = call.set_subnet_ids(Some(subnets.clone()));
                    call.send()
                        .await
                        .map_err(aws("ModifyDBSubnetGroup", &name))?;
                    Ok(())
                };
                let wrote = ctx.converge(ADDR, "subnets", have, want, write).await?;
                (arn, found.change().updated_if(retagged || wrote))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} {name}")) {
                    return Ok(());
                }
                let call = ctx
                    .aws
                    .rds
                    .create_db_subnet_group()
                    .db_subnet_group_name(&name);
                let call = call
                    .db_subnet_group_description(format!("payctl: private subnets of {}", ctx.env))
                    .set_subnet_ids(Some(subnets))
                    .set_tags(Some(rds_tags(ctx)));
                let out = call
                    .send()
                    .await
                    .map_err(aws("CreateDBSubnetGroup", &name))?;
                let arn = out.db_subnet_group().and_then(|g| g.db_subnet_group_arn());
                (required(arn, "DB subnet group ARN")?, Change::Created)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &name).arn(arn)).await?;
        ctx.report.note(change, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let g = &found.value;
        let name = required(g.db_subnet_group_name(), "DB subnet group name")?;
        let arn = required(g.db_subnet_group_arn(), "DB subnet group ARN")?;
        let delete = || async {
            let call = ctx.aws.rds.delete_db_subnet_group();
            let call = call.db_subnet_group_name(&name);
            call.send().await.map_err(aws("DeleteDBSubnetGroup", &name))
        };
        let in_use = "InvalidDBSubnetGroupStateFault";
        super::delete_rds_group(ctx, ADDR, (&name, &arn), in_use, delete).await
    }
}
