//! The VPC, with DNS support and hostnames on.
//!
//! The worked example of a kind (docs/architecture.md): a lookup by state then tags,
//! tag repair, settings as declarations, create, and a delete that treats NotFound as
//! success and forgets the record.

use super::{DEPENDENCY_WAIT, owned_filters, tag_pairs, tag_spec};
use crate::engine::found::only_one;
use crate::engine::gone::is_dependency_violation;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use crate::waiter::retry_while;
use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Vpc as AwsVpc, VpcAttributeName};

pub const KIND: &str = "ec2_vpc";
pub const ADDR: &str = "ec2_vpc.main";
const SERVICE: Service = Service::Ec2(Ec2::Vpc);

pub struct Vpc;

/// The VPC, by the id in state, else by its name and ownership tags.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<AwsVpc>>> {
    let ec2 = &ctx.aws.ec2;
    let by_id = |id: String| async move {
        let out = ec2.describe_vpcs().vpc_ids(&id).send().await;
        Ok(out
            .map_err(aws("DescribeVpcs", &id))?
            .vpcs()
            .first()
            .cloned())
    };
    find(ctx, ADDR, SERVICE, by_id, || by_tags(ctx)).await
}

/// The VPC by its name and ownership tags.
async fn by_tags(ctx: &Ctx) -> Result<Option<AwsVpc>> {
    let name = ctx.name("vpc");
    let call = ctx.aws.ec2.describe_vpcs();
    let call = call.set_filters(Some(owned_filters(ctx, Some(&name))));
    let out = call.send().await.map_err(aws("DescribeVpcs", &name))?;
    only_one(out.vpcs().to_vec(), "VPCs")
}

async fn dns_attribute(ctx: &Ctx, id: &str, attr: &VpcAttributeName) -> Result<bool> {
    let call = ctx.aws.ec2.describe_vpc_attribute().vpc_id(id);
    let out = call
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

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The settings, as declarations: DNS support and DNS hostnames on. True when it wrote.
async fn converge_settings(ctx: &Ctx, id: &str) -> Result<bool> {
    let mut wrote = false;
    for (attr, label) in [
        (VpcAttributeName::EnableDnsSupport, "DNS support"),
        (VpcAttributeName::EnableDnsHostnames, "DNS hostnames"),
    ] {
        let have = on_off(dns_attribute(ctx, id, &attr).await?);
        let write = || async {
            let on = AttributeBooleanValue::builder().value(true).build();
            let call = ctx.aws.ec2.modify_vpc_attribute().vpc_id(id);
            let call = match attr {
                VpcAttributeName::EnableDnsHostnames => call.enable_dns_hostnames(on),
                _ => call.enable_dns_support(on),
            };
            call.send().await.map_err(aws("ModifyVpcAttribute", id))?;
            Ok(())
        };
        wrote |= ctx.converge(ADDR, label, have, "on", write).await?;
    }
    Ok(wrote)
}

#[async_trait]
impl Resource for Vpc {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("vpc");
        let cidr = ctx.settings.vpc_cidr.to_string();
        let (id, change) = match lookup(ctx).await? {
            Some(found) => {
                let vpc = &found.value;
                let id = required(vpc.vpc_id(), "VPC id")?;
                let known = Some(tag_pairs(vpc.tags()));
                let retagged = converge_tags(ctx, ADDR, &tags::Ec2(&id), known).await?;
                if vpc.cidr_block() != Some(cidr.as_str()) {
                    return Err(Error::Invalid(format!(
                        "VPC {id} has CIDR {}, but the configuration asks for {cidr}; a VPC's CIDR cannot change",
                        vpc.cidr_block().unwrap_or("?")
                    )));
                }
                (id, found.change().updated_if(retagged))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} ({name}, {cidr})")) {
                    return Ok(());
                }
                // CreateVpc takes no idempotency token: see `Ctx::create_once`.
                let create = || async {
                    let call = ctx.aws.ec2.create_vpc().cidr_block(&cidr);
                    let call = call.tag_specifications(tag_spec(ctx, ResourceType::Vpc, &name));
                    let out = call.send().await.map_err(aws("CreateVpc", &name))?;
                    out.vpc()
                        .cloned()
                        .ok_or_else(|| Error::Invalid("CreateVpc: no VPC".into()))
                };
                let (vpc, change) = ctx
                    .create_once(ADDR, || by_tags(ctx), create)
                    .await?
                    .into_parts();
                (required(vpc.vpc_id(), "VPC id")?, change)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &id).attr("cidr", &cidr))
            .await?;
        let change = change.updated_if(converge_settings(ctx, &id).await?);
        ctx.report.note(change, format!("{ADDR} {id} ({name})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let id = required(found.value.vpc_id(), "VPC id")?;
        tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(found.value.tags()))?;
        let what = format!("deleting VPC {id}");
        let delete = || async {
            retry_while(&what, DEPENDENCY_WAIT, is_dependency_violation, || async {
                let call = ctx.aws.ec2.delete_vpc().vpc_id(&id);
                call.send().await.map_err(aws("DeleteVpc", &id))
            })
            .await
        };
        ctx.delete_and_forget(ADDR, &id, SERVICE, delete).await
    }
}
