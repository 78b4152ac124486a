//! The internet gateway, attached to the VPC.

use super::{DEPENDENCY_WAIT, owned_filters, tag_pairs, tag_spec, vpc_id};
use crate::engine::found::only_one;
use crate::engine::gone::is_dependency_violation;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use crate::waiter::retry_while;
use async_trait::async_trait;
use aws_sdk_ec2::types::{InternetGateway as Igw, ResourceType};

pub const KIND: &str = "ec2_internet_gateway";
const ADDR: &str = "ec2_internet_gateway.main";
const SERVICE: Service = Service::Ec2(Ec2::InternetGateway);

pub struct InternetGateway;

/// The gateway, by the id in state, else by its name and ownership tags.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<Igw>>> {
    let ec2 = &ctx.aws.ec2;
    let by_id = |id: String| async move {
        let out = ec2
            .describe_internet_gateways()
            .internet_gateway_ids(&id)
            .send()
            .await;
        let out = out.map_err(aws("DescribeInternetGateways", &id))?;
        Ok(out.internet_gateways().first().cloned())
    };
    find(ctx, ADDR, SERVICE, by_id, || by_tags(ctx)).await
}

/// The internet gateway by its name and ownership tags.
async fn by_tags(ctx: &Ctx) -> Result<Option<Igw>> {
    let name = ctx.name("igw");
    let call = ctx.aws.ec2.describe_internet_gateways();
    let call = call.set_filters(Some(owned_filters(ctx, Some(&name))));
    let out = call.send().await;
    let out = out.map_err(aws("DescribeInternetGateways", &name))?;
    only_one(out.internet_gateways().to_vec(), "internet gateways")
}

fn attached_vpcs(g: &Igw) -> Vec<String> {
    g.attachments()
        .iter()
        .filter_map(|a| a.vpc_id().map(str::to_string))
        .collect()
}

#[async_trait]
impl Resource for InternetGateway {
    kind!(KIND, depends_on = [super::vpc::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let name = ctx.name("igw");
        let (id, attached, change) = match lookup(ctx).await? {
            Some(found) => {
                let g = &found.value;
                let id = required(g.internet_gateway_id(), "internet gateway id")?;
                let known = Some(tag_pairs(g.tags()));
                let retagged = converge_tags(ctx, ADDR, &tags::Ec2(&id), known).await?;
                (id, attached_vpcs(g), found.change().updated_if(retagged))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} ({name})")) {
                    return Ok(());
                }
                // No idempotency token: see `Ctx::create_once`.
                let create = || async {
                    let call = ctx.aws.ec2.create_internet_gateway();
                    let spec = tag_spec(ctx, ResourceType::InternetGateway, &name);
                    let out = call.tag_specifications(spec).send().await;
                    let out = out.map_err(aws("CreateInternetGateway", &name))?;
                    let g = out.internet_gateway().cloned();
                    g.ok_or_else(|| Error::Invalid("CreateInternetGateway: no gateway".into()))
                };
                let made = ctx.create_once(ADDR, || by_tags(ctx), create).await?;
                let (g, change) = made.into_parts();
                let id = required(g.internet_gateway_id(), "internet gateway id")?;
                (id, attached_vpcs(&g), change)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &id).attr("vpc_id", &vpc))
            .await?;
        if let Some(other) = attached.iter().find(|v| **v != vpc) {
            return Err(Error::Invalid(format!(
                "internet gateway {id} is attached to {other}, not to {vpc}"
            )));
        }
        let have = if attached.is_empty() {
            "nothing"
        } else {
            vpc.as_str()
        };
        let attach = || async {
            let call = ctx.aws.ec2.attach_internet_gateway();
            let call = call.internet_gateway_id(&id).vpc_id(&vpc);
            call.send()
                .await
                .map_err(aws("AttachInternetGateway", &id))?;
            Ok(())
        };
        let change = change.updated_if(
            ctx.converge(ADDR, "attached to", have, &vpc, attach)
                .await?,
        );
        ctx.report.note(change, format!("{ADDR} {id} ({name})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let g = &found.value;
        let id = required(g.internet_gateway_id(), "internet gateway id")?;
        tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(g.tags()))?;
        for vpc in attached_vpcs(g) {
            // Right after a NAT gateway of the VPC is deleted, EC2 refuses the detach
            // with DependencyViolation ("has some mapped public address(es)") until it
            // has released the NAT's Elastic IP mapping.
            let what = format!("detaching internet gateway {id} from {vpc}");
            let detach = || async {
                let call = ctx.aws.ec2.detach_internet_gateway();
                let call = call.internet_gateway_id(&id).vpc_id(&vpc);
                match call.send().await.map_err(aws("DetachInternetGateway", &id)) {
                    Err(e)
                        if SERVICE.is_not_found(&e)
                            || e.aws_code() == Some("Gateway.NotAttached") =>
                    {
                        Ok(())
                    }
                    other => other.map(drop),
                }
            };
            retry_while(&what, DEPENDENCY_WAIT, is_dependency_violation, detach).await?;
        }
        let delete = || async {
            let call = ctx
                .aws
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(&id);
            call.send().await.map_err(aws("DeleteInternetGateway", &id))
        };
        ctx.delete_and_forget(ADDR, &id, SERVICE, delete).await
    }
}
