//! The DB subnet group over the three private subnets.

use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws};
use crate::state::Record;
use crate::waiter::{Wait, retry_while};
use async_trait::async_trait;
use aws_sdk_rds::error::SdkError;
use aws_sdk_rds::operation::describe_db_subnet_groups::DescribeDBSubnetGroupsError;
use aws_sdk_rds::types::{DbSubnetGroup as Group, Tag};

pub const KIND: &str = "rds_subnet_group";
pub const ADDR: &str = "rds_subnet_group.main";

pub struct DbSubnetGroup;

fn not_found(e: &SdkError<DescribeDBSubnetGroupsError>) -> bool {
    e.as_service_error()
        .is_some_and(|s| s.is_db_subnet_group_not_found_fault())
}

pub fn rds_tags(ctx: &Ctx) -> Vec<Tag> {
    ctx.tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Whether the RDS resource `arn` carries payctl's ownership tags for this environment.
pub async fn rds_owned(ctx: &Ctx, arn: &str) -> Result<bool> {
    let out = ctx
        .aws
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await;
    let out = out.map_err(aws("ListTagsForResource", arn))?;
    Ok(ctx.owns(
        out.tag_list()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    ))
}

async fn find(ctx: &Ctx, name: &str) -> Result<Option<Group>> {
    match ctx
        .aws
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_subnet_groups().first().cloned()),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(aws("DescribeDBSubnetGroups", name)(e)),
    }
}

fn private_subnets(ctx: &Ctx) -> Result<Vec<String>> {
    let mut ids: Vec<String> = crate::network::zones(ctx)
        .iter()
        .map(|az| crate::network::subnet_id(ctx, "private", az))
        .collect::<Result<_>>()?;
    ids.sort();
    Ok(ids)
}

async fn check_owned(ctx: &Ctx, g: &Group, name: &str) -> Result<()> {
    let arn = g.db_subnet_group_arn().unwrap_or_default();
    if rds_owned(ctx, arn).await? {
        Ok(())
    } else {
        Err(Error::not_owned(
            format!("DB subnet group {name}"),
            &ctx.env,
        ))
    }
}

#[async_trait]
impl Resource for DbSubnetGroup {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[crate::network::subnet::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("db-subnets");
        let subnets = private_subnets(ctx)?;
        let (arn, change) = match find(ctx, &name).await? {
            Some(g) => {
                check_owned(ctx, &g, &name).await?;
                let mut have: Vec<String> = g
                    .subnets()
                    .iter()
                    .filter_map(|s| s.subnet_identifier().map(str::to_string))
                    .collect();
                have.sort();
                let mut change = if ctx.state.get(ADDR).is_some() {
                    Change::Unchanged
                } else {
                    Change::Adopted
                };
                if have != subnets
                    && ctx.apply(ADDR, "subnets", have.join(", "), subnets.join(", "))
                {
                    let call = ctx
                        .aws
                        .rds
                        .modify_db_subnet_group()
                        .db_subnet_group_name(&name)
                        .set_subnet_ids(Some(subnets.clone()));
                    call.send()
                        .await
                        .map_err(aws("ModifyDBSubnetGroup", &name))?;
                    change = Change::Updated;
                }
                (
                    g.db_subnet_group_arn().unwrap_or_default().to_string(),
                    change,
                )
            }
            None => {
                if !ctx.would_create(format!("{ADDR} {name}")) {
                    return Ok(());
                }
                let out = ctx
                    .aws
                    .rds
                    .create_db_subnet_group()
                    .db_subnet_group_name(&name)
                    .db_subnet_group_description(format!("payctl: private subnets of {}", ctx.env))
                    .set_subnet_ids(Some(subnets))
                    .set_tags(Some(rds_tags(ctx)))
                    .send()
                    .await
                    .map_err(aws("CreateDBSubnetGroup", &name))?;
                let arn = out
                    .db_subnet_group()
                    .and_then(|g| g.db_subnet_group_arn())
                    .unwrap_or_default();
                (arn.to_string(), Change::Created)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &name).arn(arn)).await?;
        ctx.report.note(change, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.state.id(ADDR).unwrap_or_else(|| ctx.name("db-subnets"));
        let Some(g) = find(ctx, &name).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        check_owned(ctx, &g, &name).await?;
        // A group stays "in use" for a short while after its instance is gone.
        let in_use = |e: &Error| e.aws_code() == Some("InvalidDBSubnetGroupStateFault");
        let result = retry_while(
            &format!("deleting DB subnet group {name}"),
            Wait::minutes(10),
            in_use,
            || async {
                ctx.aws
                    .rds
                    .delete_db_subnet_group()
                    .db_subnet_group_name(&name)
                    .send()
                    .await
                    .map_err(aws("DeleteDBSubnetGroup", &name))
            },
        )
        .await;
        match result {
            Ok(_) => {}
            Err(e) if e.aws_code() == Some("DBSubnetGroupNotFoundFault") => {}
            Err(e) => return Err(e),
        }
        ctx.forget(ADDR).await?;
        ctx.report.note(Change::Deleted, format!("{ADDR} {name}"));
        Ok(())
    }
}
