//! One public and one private subnet in each of the first three available AZs.
//!
//! The VPC block is cut into /(n+4) blocks: public subnets take blocks 0–2, private ones
//! blocks 8–10 (a /16 gives /20s: 10.0.0.0/20 … and 10.0.128.0/20 …). Public subnets do
//! not assign public IPs on launch; nothing in this stack needs one.

use super::{DEPENDENCY_WAIT, filter, name_of, owned_filters, tag_pairs, tag_spec, vpc_id};
use crate::config::AZ_COUNT;
use crate::engine::found::only_one;
use crate::engine::found::read_by_id;
use crate::engine::gone::is_dependency_violation;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Resource, Service, kind};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::retry_while;
use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet};
use futures::future::join_all;
use ipnet::Ipv4Net;

pub const KIND: &str = "ec2_subnet";
pub const TIERS: [&str; 2] = ["public", "private"];
const SERVICE: Service = Service::Ec2(Ec2::Subnet);

pub struct Subnets;

pub fn address(tier: &str, az: &str) -> String {
    format!("{KIND}.{tier}-{az}")
}

/// The block of the `index`-th AZ's subnet of `tier`.
pub fn cidr_for(vpc: Ipv4Net, tier: &str, index: usize) -> Result<Ipv4Net> {
    let offset = if tier == "public" { 0 } else { 8 };
    vpc.subnets(vpc.prefix_len() + 4)
        .ok()
        .and_then(|mut s| s.nth(offset + index))
        .ok_or_else(|| Error::Config(format!("vpc_cidr {vpc} is too small to hold the subnets")))
}

/// The first three available AZs of the region, by name.
async fn pick_zones(ctx: &Ctx) -> Result<Vec<String>> {
    let out = ctx
        .aws
        .ec2
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .send()
        .await
        .map_err(aws("DescribeAvailabilityZones", &ctx.region))?;
    let mut zones: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    zones.sort();
    if zones.len() < AZ_COUNT {
        return Err(Error::Invalid(format!(
            "region {} has {} available zones; the stack needs {AZ_COUNT}",
            ctx.region,
            zones.len()
        )));
    }
    zones.truncate(AZ_COUNT);
    Ok(zones)
}

async fn ensure_one(
    ctx: &Ctx,
    vpc: &str,
    existing: &[Subnet],
    tier: &str,
    index: usize,
    az: &str,
) -> Result<()> {
    let name = ctx.name(&format!("{tier}-{az}"));
    let cidr = cidr_for(ctx.settings.vpc_cidr, tier, index)?.to_string();
    let addr = address(tier, az);
    let found = existing
        .iter()
        .find(|s| name_of(s.tags()) == Some(name.as_str()));
    let (id, change) = match found {
        Some(s) => {
            let id = required(s.subnet_id(), "subnet id")?;
            let tagged = Some(tag_pairs(s.tags()));
            let retagged = converge_tags(ctx, &addr, &tags::Ec2(&id), tagged).await?;
            if s.cidr_block() != Some(cidr.as_str()) || s.availability_zone() != Some(az) {
                return Err(Error::Invalid(format!(
                    "subnet {id} ({name}) is {} in {}, expected {cidr} in {az}; delete it or fix the configuration",
                    s.cidr_block().unwrap_or("?"),
                    s.availability_zone().unwrap_or("?")
                )));
            }
            let change = if ctx.state.id(&addr).as_deref() == Some(id.as_str()) {
                Change::Unchanged
            } else {
                Change::Adopted
            };
            (id, change.updated_if(retagged))
        }
        None => {
            if !ctx.would_create(format!("{addr} ({name}, {cidr})")) {
                return Ok(());
            }
            // CreateSubnet takes no idempotency token: see `Ctx::create_once`.
            let by_tags = || async {
                let mut filters = owned_filters(ctx, Some(&name));
                filters.push(filter("vpc-id", vpc));
                let call = ctx.aws.ec2.describe_subnets().set_filters(Some(filters));
                let out = call.send().await.map_err(aws("DescribeSubnets", &name))?;
                only_one(out.subnets().to_vec(), "subnets")
            };
            let create = || async {
                let call = ctx.aws.ec2.create_subnet().vpc_id(vpc).cidr_block(&cidr);
                let spec = tag_spec(ctx, ResourceType::Subnet, &name);
                let call = call.availability_zone(az).tag_specifications(spec);
                let out = call.send().await.map_err(aws("CreateSubnet", &name))?;
                let subnet = out.subnet().cloned();
                subnet.ok_or_else(|| Error::Invalid("CreateSubnet: no subnet".into()))
            };
            let (subnet, change) = ctx.create_once(&addr, by_tags, create).await?.into_parts();
            (required(subnet.subnet_id(), "subnet id")?, change)
        }
    };
    ctx.record(
        &addr,
        Record::new(KIND, &id)
            .attr("tier", tier)
            .attr("az", az)
            .attr("cidr", &cidr),
    )
    .await?;
    let public_ips = found.is_some_and(|s| s.map_public_ip_on_launch() == Some(true));
    let turn_off = || async {
        let off = AttributeBooleanValue::builder().value(false).build();
        let call = ctx.aws.ec2.modify_subnet_attribute().subnet_id(&id);
        let call = call.map_public_ip_on_launch(off);
        call.send()
            .await
            .map_err(aws("ModifySubnetAttribute", &id))?;
        Ok(())
    };
    let have = if public_ips { "on" } else { "off" };
    let wrote = ctx
        .converge(&addr, "auto-assign public IPs", have, "off", turn_off)
        .await?;
    let change = change.updated_if(wrote);
    ctx.report
        .note(change, format!("{addr} {id} ({name}, {cidr})"));
    Ok(())
}

/// Subnet ids to delete: those in state and those found by ownership tags.
async fn owned_ids(ctx: &Ctx) -> Result<Vec<(String, Option<String>)>> {
    let mut ids: Vec<(String, Option<String>)> = ctx
        .state
        .of_kind(KIND)
        .into_iter()
        .map(|(addr, r)| (r.id, Some(addr)))
        .collect();
    let out = ctx
        .aws
        .ec2
        .describe_subnets()
        .set_filters(Some(owned_filters(ctx, None)))
        .send()
        .await
        .map_err(aws("DescribeSubnets", format!("subnets of {}", ctx.env)))?;
    for s in out.subnets() {
        if let Some(id) = s.subnet_id()
            && !ids.iter().any(|(i, _)| i == id)
        {
            ids.push((id.to_string(), None));
        }
    }
    Ok(ids)
}

async fn delete_one(ctx: &Ctx, id: &str, addr: Option<&str>) -> Result<()> {
    let ec2 = &ctx.aws.ec2;
    let read = |id: String| async move {
        let out = ec2.describe_subnets().subnet_ids(&id).send().await;
        Ok(out
            .map_err(aws("DescribeSubnets", &id))?
            .subnets()
            .first()
            .cloned())
    };
    let addr = addr.unwrap_or(KIND);
    let Some(subnet) = read_by_id(ctx, addr, SERVICE, id, read).await? else {
        return ctx.forget_gone(addr).await;
    };
    tags::check_owned(ctx, &tags::Ec2(id), &tag_pairs(subnet.tags()))?;
    let what = format!("deleting subnet {id}");
    let delete = || async {
        retry_while(&what, DEPENDENCY_WAIT, is_dependency_violation, || async {
            let call = ec2.delete_subnet().subnet_id(id);
            call.send().await.map_err(aws("DeleteSubnet", id))
        })
        .await
    };
    ctx.delete_and_forget(addr, id, SERVICE, delete).await
}

#[async_trait]
impl Resource for Subnets {
    kind!(KIND, depends_on = [super::vpc::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let zones = pick_zones(ctx).await?;
        let out = ctx
            .aws
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", &vpc))
            .send()
            .await
            .map_err(aws("DescribeSubnets", &vpc))?;
        let existing = out.subnets();
        let mut work = Vec::new();
        for tier in TIERS {
            for (i, az) in zones.iter().enumerate() {
                work.push(ensure_one(ctx, &vpc, existing, tier, i, az));
            }
        }
        all_ok(join_all(work).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let ids = owned_ids(ctx).await?;
        let work = ids
            .iter()
            .map(|(id, addr)| delete_one(ctx, id, addr.as_deref()));
        all_ok(join_all(work).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_blocks_do_not_overlap_and_fit_the_vpc() {
        let vpc: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let mut all = Vec::new();
        for tier in TIERS {
            for i in 0..AZ_COUNT {
                let c = cidr_for(vpc, tier, i).unwrap();
                assert!(vpc.contains(&c));
                assert_eq!(c.prefix_len(), 20);
                all.push(c);
            }
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(!a.contains(b) && !b.contains(a), "{a} overlaps {b}");
            }
        }
        assert_eq!(
            cidr_for(vpc, "public", 0).unwrap().to_string(),
            "10.0.0.0/20"
        );
        assert_eq!(
            cidr_for(vpc, "private", 2).unwrap().to_string(),
            "10.0.160.0/20"
        );
        let small: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        assert_eq!(
            cidr_for(small, "private", 2).unwrap().to_string(),
            "10.1.2.160/28"
        );
    }
}
