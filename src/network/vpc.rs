//! The VPC, with DNS support and hostnames on.

use super::{
    DEPENDENCY_WAIT, found, is_dependency_violation, is_not_found, owned_filters, pairs, tag_spec,
};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use crate::waiter::retry_while;
use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};

pub const KIND: &str = "ec2_vpc";
pub const ADDR: &str = "ec2_vpc.main";

pub struct Vpc;

/// Looks the VPC up by the id in state, else by its name and ownership tags.
async fn find(ctx: &Ctx) -> Result<Option<(aws_sdk_ec2::types::Vpc, bool)>> {
    let ec2 = &ctx.aws.ec2;
    if let Some(id) = ctx.state.id(ADDR) {
        match ec2
            .describe_vpcs()
            .vpc_ids(&id)
            .send()
            .await
            .map_err(aws("DescribeVpcs", &id))
        {
            Ok(out) => {
                if let Some(v) = out.vpcs().first() {
                    return Ok(Some((v.clone(), true)));
                }
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let name = ctx.name("vpc");
    let out = ec2
        .describe_vpcs()
        .set_filters(Some(owned_filters(ctx, Some(&name))))
        .send()
        .await
        .map_err(aws("DescribeVpcs", &name))?;
    match out.vpcs() {
        [] => Ok(None),
        [v] => Ok(Some((v.clone(), false))),
        many => Err(Error::Invalid(format!(
            "{} VPCs are tagged as {name}; delete the extras or record the right one in the state file",
            many.len()
        ))),
    }
}

async fn dns_attribute(ctx: &Ctx, id: &str, attr: VpcAttributeName) -> Result<bool> {
    let out = ctx
        .aws
        .ec2
        .describe_vpc_attribute()
        .vpc_id(id)
        .attribute(attr.clone())
        .send()
        .await
        .map_err(aws("DescribeVpcAttribute", id))?;
    let value = match attr {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
        _ => out.enable_dns_support(),
    };
    Ok(value.and_then(|v| v.value()).unwrap_or(false))
}

/// Turns DNS support and hostnames on; returns whether anything changed.
async fn ensure_dns(ctx: &Ctx, id: &str) -> Result<bool> {
    let on = || AttributeBooleanValue::builder().value(true).build();
    let mut changed = false;
    if !dns_attribute(ctx, id, VpcAttributeName::EnableDnsSupport).await?
        && ctx.apply(ADDR, "DNS support", "off", "on")
    {
        let call = ctx
            .aws
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_support(on());
        call.send().await.map_err(aws("ModifyVpcAttribute", id))?;
        changed = true;
    }
    if !dns_attribute(ctx, id, VpcAttributeName::EnableDnsHostnames).await?
        && ctx.apply(ADDR, "DNS hostnames", "off", "on")
    {
        let call = ctx
            .aws
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_hostnames(on());
        call.send().await.map_err(aws("ModifyVpcAttribute", id))?;
        changed = true;
    }
    Ok(changed)
}

#[async_trait]
impl Resource for Vpc {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("vpc");
        let cidr = ctx.settings.vpc_cidr.to_string();
        let (id, mut change) = match find(ctx).await? {
            Some((vpc, from_state)) => {
                let id = vpc.vpc_id().unwrap_or_default().to_string();
                ctx.check_owned(&format!("VPC {id}"), pairs(vpc.tags()))?;
                if vpc.cidr_block() != Some(cidr.as_str()) {
                    return Err(Error::Invalid(format!(
                        "VPC {id} has CIDR {}, but the configuration asks for {cidr}; a VPC's CIDR cannot change",
                        vpc.cidr_block().unwrap_or("?")
                    )));
                }
                (
                    id,
                    if from_state {
                        Change::Unchanged
                    } else {
                        Change::Adopted
                    },
                )
            }
            None => {
                if ctx.plan_create(format!("{ADDR} ({name}, {cidr})")) {
                    return Ok(());
                }
                let out = ctx
                    .aws
                    .ec2
                    .create_vpc()
                    .cidr_block(&cidr)
                    .tag_specifications(tag_spec(ctx, ResourceType::Vpc, &name))
                    .send()
                    .await
                    .map_err(aws("CreateVpc", &name))?;
                let id = required(out.vpc().and_then(|v| v.vpc_id()), "VPC id")?;
                (id, Change::Created)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &id).attr("cidr", &cidr))
            .await?;
        if ensure_dns(ctx, &id).await? && change == Change::Unchanged {
            change = Change::Updated;
        }
        ctx.report.note(change, format!("{ADDR} {id} ({name})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some((vpc, _)) = find(ctx).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        let id = vpc.vpc_id().unwrap_or_default().to_string();
        ctx.check_owned(&format!("VPC {id}"), pairs(vpc.tags()))?;
        let deleted = retry_while(
            &format!("deleting VPC {id}"),
            DEPENDENCY_WAIT,
            is_dependency_violation,
            || async {
                ctx.aws
                    .ec2
                    .delete_vpc()
                    .vpc_id(&id)
                    .send()
                    .await
                    .map_err(aws("DeleteVpc", &id))
            },
        )
        .await;
        found(deleted)?;
        ctx.forget(ADDR).await?;
        ctx.report.note(Change::Deleted, format!("{ADDR} {id}"));
        Ok(())
    }
}
