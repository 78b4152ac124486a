//! Elastic IPs for the NAT gateways: one per NAT gateway (`nat_gateways` in settings).
//!
//! Release waits for the NAT gateway to be gone (the NAT kind depends on this one, so
//! `down` deletes and waits for NAT gateways first) and retries while AWS still reports
//! the address in use.

use super::{name_of, owned_filters, tag_pairs, tag_spec};
use crate::engine::found::only_one;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Resource, Service, kind};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::{Wait, retry_while};
use async_trait::async_trait;
use aws_sdk_ec2::types::{Address, DomainType, ResourceType};
use futures::future::join_all;

pub const KIND: &str = "ec2_eip";
const SERVICE: Service = Service::Ec2(Ec2::Address);

pub struct ElasticIps;

pub fn address(index: usize) -> String {
    format!("{KIND}.nat-{index}")
}

fn eip_name(ctx: &Ctx, index: usize) -> String {
    ctx.name(&format!("nat-eip-{index}"))
}

async fn describe(ctx: &Ctx, by_id: Option<&str>, name: Option<&str>) -> Result<Vec<Address>> {
    let mut call = ctx.aws.ec2.describe_addresses();
    call = match by_id {
        Some(id) => call.allocation_ids(id),
        None => call.set_filters(Some(owned_filters(ctx, name))),
    };
    let what = by_id.or(name).unwrap_or("owned addresses");
    let out = SERVICE.found(call.send().await.map_err(aws("DescribeAddresses", what)))?;
    Ok(out.map(|o| o.addresses().to_vec()).unwrap_or_default())
}

/// `owned` is every address tagged for this environment, read once for all of them.
async fn ensure_one(ctx: &Ctx, index: usize, owned: &[Address]) -> Result<()> {
    let name = eip_name(ctx, index);
    let addr = address(index);
    let known = ctx.state.id(&addr);
    let mut matches: Vec<Address> = match &known {
        Some(id) => match owned
            .iter()
            .find(|a| a.allocation_id() == Some(id.as_str()))
        {
            Some(a) => vec![a.clone()],
            // Not tagged as ours (or gone): look it up by id, and refuse it below.
            None => describe(ctx, Some(id), None).await?,
        },
        None => Vec::new(),
    };
    let from_state = !matches.is_empty();
    if matches.is_empty() {
        matches = owned
            .iter()
            .filter(|a| name_of(a.tags()) == Some(name.as_str()))
            .cloned()
            .collect();
    }
    let (alloc, ip, change) = match only_one(matches, "Elastic IPs")? {
        Some(a) => {
            let alloc = required(a.allocation_id(), "allocation id")?;
            let tagged = Some(tag_pairs(a.tags()));
            let retagged = converge_tags(ctx, &addr, &tags::Ec2(&alloc), tagged).await?;
            let change = if from_state {
                Change::Unchanged
            } else {
                Change::Adopted
            };
            let ip = a.public_ip().unwrap_or_default().to_string();
            (alloc, ip, change.updated_if(retagged))
        }
        None => {
            if !ctx.would_create(format!("{addr} ({name})")) {
                return Ok(());
            }
            // AllocateAddress takes no idempotency token: see `Ctx::create_once`.
            let by_tags =
                || async { only_one(describe(ctx, None, Some(&name)).await?, "Elastic IPs") };
            let create = || async {
                let call = ctx.aws.ec2.allocate_address().domain(DomainType::Vpc);
                let spec = tag_spec(ctx, ResourceType::ElasticIp, &name);
                let out = call.tag_specifications(spec).send().await;
                let out = out.map_err(aws("AllocateAddress", &name))?;
                Ok(Address::builder()
                    .set_allocation_id(out.allocation_id().map(str::to_string))
                    .set_public_ip(out.public_ip().map(str::to_string))
                    .build())
            };
            let (a, change) = ctx.create_once(&addr, by_tags, create).await?.into_parts();
            let alloc = required(a.allocation_id(), "allocation id")?;
            (alloc, a.public_ip().unwrap_or_default().to_string(), change)
        }
    };
    ctx.record(&addr, Record::new(KIND, &alloc).attr("public_ip", &ip))
        .await?;
    ctx.report
        .note(change, format!("{addr} {alloc} ({name}, {ip})"));
    Ok(())
}

pub(crate) async fn release(ctx: &Ctx, alloc: &str, addr: Option<&str>) -> Result<()> {
    let addr = addr.unwrap_or(KIND);
    let Some(current) = describe(ctx, Some(alloc), None).await?.into_iter().next() else {
        return ctx.forget_gone(addr).await;
    };
    tags::check_owned(ctx, &tags::Ec2(alloc), &tag_pairs(current.tags()))?;
    // A NAT gateway that was just deleted may keep the address associated briefly.
    let in_use = |e: &Error| matches!(e.aws_code(), Some("InvalidIPAddress.InUse" | "AuthFailure"));
    let what = format!("releasing Elastic IP {alloc}");
    let release = || async {
        retry_while(&what, Wait::minutes(5), in_use, || async {
            let call = ctx.aws.ec2.release_address().allocation_id(alloc);
            call.send().await.map_err(aws("ReleaseAddress", alloc))
        })
        .await
    };
    ctx.delete_and_forget(addr, alloc, SERVICE, release).await
}

#[async_trait]
impl Resource for ElasticIps {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let owned = describe(ctx, None, None).await?;
        let work = (1..=ctx.settings.nat_gateways).map(|i| ensure_one(ctx, i, &owned));
        all_ok(join_all(work).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let mut ids: Vec<(String, Option<String>)> = ctx
            .state
            .of_kind(KIND)
            .into_iter()
            .map(|(a, r)| (r.id, Some(a)))
            .collect();
        for a in describe(ctx, None, None).await? {
            if let Some(id) = a.allocation_id()
                && !ids.iter().any(|(i, _)| i == id)
            {
                ids.push((id.to_string(), None));
            }
        }
        let work = ids
            .iter()
            .map(|(id, addr)| release(ctx, id, addr.as_deref()));
        all_ok(join_all(work).await)
    }
}
