//! The internet gateway, attached to the VPC.

use super::{is_not_found, owned_filters, pairs, tag_spec, vpc_id};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_ec2::types::{InternetGateway as Igw, ResourceType};

pub const KIND: &str = "ec2_internet_gateway";
const ADDR: &str = "ec2_internet_gateway.main";

pub struct InternetGateway;

async fn find(ctx: &Ctx) -> Result<Option<(Igw, bool)>> {
    let ec2 = &ctx.aws.ec2;
    if let Some(id) = ctx.state.id(ADDR) {
        match ec2
            .describe_internet_gateways()
            .internet_gateway_ids(&id)
            .send()
            .await
        {
            Ok(out) => {
                if let Some(g) = out.internet_gateways().first() {
                    return Ok(Some((g.clone(), true)));
                }
            }
            Err(e) => {
                let e = aws("DescribeInternetGateways", &id)(e);
                if !is_not_found(&e) {
                    return Err(e);
                }
            }
        }
    }
    let name = ctx.name("igw");
    let out = ec2
        .describe_internet_gateways()
        .set_filters(Some(owned_filters(ctx, Some(&name))))
        .send()
        .await
        .map_err(aws("DescribeInternetGateways", &name))?;
    match out.internet_gateways() {
        [] => Ok(None),
        [g] => Ok(Some((g.clone(), false))),
        many => Err(Error::Invalid(format!(
            "{} internet gateways are tagged as {name}; delete the extras",
            many.len()
        ))),
    }
}

fn attached_vpcs(g: &Igw) -> Vec<String> {
    g.attachments()
        .iter()
        .filter_map(|a| a.vpc_id().map(str::to_string))
        .collect()
}

#[async_trait]
impl Resource for InternetGateway {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[super::vpc::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let name = ctx.name("igw");
        let (id, attached, mut change) = match find(ctx).await? {
            Some((g, from_state)) => {
                let id = required(g.internet_gateway_id(), "internet gateway id")?;
                ctx.check_owned(&format!("internet gateway {id}"), pairs(g.tags()))?;
                (
                    id,
                    attached_vpcs(&g),
                    if from_state {
                        Change::Unchanged
                    } else {
                        Change::Adopted
                    },
                )
            }
            None => {
                if !ctx.would_create(format!("{ADDR} ({name})")) {
                    return Ok(());
                }
                let out = ctx
                    .aws
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(tag_spec(ctx, ResourceType::InternetGateway, &name))
                    .send()
                    .await
                    .map_err(aws("CreateInternetGateway", &name))?;
                let id = required(
                    out.internet_gateway().and_then(|g| g.internet_gateway_id()),
                    "internet gateway id",
                )?;
                (id, Vec::new(), Change::Created)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &id).attr("vpc_id", &vpc))
            .await?;
        if let Some(other) = attached.iter().find(|v| **v != vpc) {
            return Err(Error::Invalid(format!(
                "internet gateway {id} is attached to {other}, not to {vpc}"
            )));
        }
        if attached.is_empty() && ctx.apply(ADDR, "attached to", "nothing", &vpc) {
            let call = ctx
                .aws
                .ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(&vpc);
            call.send()
                .await
                .map_err(aws("AttachInternetGateway", &id))?;
            if change == Change::Unchanged {
                change = Change::Updated;
            }
        }
        ctx.report.note(change, format!("{ADDR} {id} ({name})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some((g, _)) = find(ctx).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        let id = required(g.internet_gateway_id(), "internet gateway id")?;
        ctx.check_owned(&format!("internet gateway {id}"), pairs(g.tags()))?;
        for vpc in attached_vpcs(&g) {
            let call = ctx
                .aws
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(&vpc);
            match call.send().await.map_err(aws("DetachInternetGateway", &id)) {
                Ok(_) => {}
                Err(e) if is_not_found(&e) || e.aws_code() == Some("Gateway.NotAttached") => {}
                Err(e) => return Err(e),
            }
        }
        match ctx
            .aws
            .ec2
            .delete_internet_gateway()
            .internet_gateway_id(&id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = aws("DeleteInternetGateway", &id)(e);
                if !is_not_found(&e) {
                    return Err(e);
                }
            }
        }
        ctx.forget(ADDR).await?;
        ctx.report.note(Change::Deleted, format!("{ADDR} {id}"));
        Ok(())
    }
}
