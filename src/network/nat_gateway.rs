//! NAT gateways: `nat_gateways` of them (one per AZ in prod), each in a public subnet
//! with its own Elastic IP. `wait` holds dependents (the private routes) until every
//! gateway is available, and on `down` holds the Elastic IPs until every gateway is gone.
//!
//! `DescribeNatGateways` is filtered by tags and the tags are checked again here, since
//! not every endpoint honours tag filters for this call.

use super::{eip, filter, name_of, owned_filters, pairs, subnet_id, tag_pairs, tag_spec, zones};
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Direction, Ec2, Found, Resource, Service, Via, kind};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::{Status, Wait, wait_for};
use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, NatGateway, NatGatewayState, ResourceType};
use futures::future::join_all;

pub const KIND: &str = "ec2_nat_gateway";
const READY_WAIT: Wait = Wait::minutes(15);
const GONE_WAIT: Wait = Wait::minutes(15);
const SERVICE: Service = Service::Ec2(Ec2::NatGateway);

#[derive(Default)]
pub struct NatGateways {
    /// Gateways this run already saw `available`: no need to wait for them.
    ready: std::sync::Mutex<std::collections::HashSet<String>>,
}

pub fn address(index: usize) -> String {
    format!("{KIND}.nat-{index}")
}

fn live(g: &NatGateway) -> bool {
    matches!(
        g.state(),
        Some(NatGatewayState::Pending | NatGatewayState::Available)
    )
}

async fn describe(ctx: &Ctx, id: Option<&str>, filters: Vec<Filter>) -> Result<Vec<NatGateway>> {
    let call = ctx
        .aws
        .ec2
        .describe_nat_gateways()
        .set_nat_gateway_ids(id.map(|i| vec![i.to_string()]));
    let out = call.set_filter(Some(filters)).send().await;
    let out =
        SERVICE.found(out.map_err(aws("DescribeNatGateways", id.unwrap_or("NAT gateways"))))?;
    Ok(out.map(|o| o.nat_gateways().to_vec()).unwrap_or_default())
}

/// `in_vpc` is every NAT gateway of the VPC, read once for all of them.
async fn ensure_one(
    ctx: &Ctx,
    in_vpc: &[NatGateway],
    index: usize,
    az: &str,
) -> Result<Option<String>> {
    let name = ctx.name(&format!("nat-{index}"));
    let addr = address(index);
    let subnet = subnet_id(ctx, "public", az)?;
    let alloc = ctx.needed_id(&eip::address(index))?;
    let mut found = None;
    if let Some(id) = ctx.state.id(&addr) {
        let in_vpc = in_vpc
            .iter()
            .find(|g| g.nat_gateway_id() == Some(id.as_str()));
        let by_id = match in_vpc {
            Some(g) => vec![g.clone()],
            None => describe(ctx, Some(&id), vec![]).await?,
        };
        found = by_id
            .into_iter()
            .find(live)
            .map(|g| Found::new(g, Via::State));
    }
    if found.is_none() {
        let mut mine = in_vpc
            .iter()
            .filter(|&g| live(g) && name_of(g.tags()) == Some(name.as_str()))
            .cloned();
        found = mine.next().map(|g| Found::new(g, Via::Tags));
        if let Some(extra) = mine.next() {
            return Err(Error::Invalid(format!(
                "more than one NAT gateway is named {name} ({}); delete the extras",
                extra.nat_gateway_id().unwrap_or("?")
            )));
        }
    }
    let mut ready = None;
    let (id, change) = match found {
        Some(found) => {
            let g = &found.value;
            let id = required(g.nat_gateway_id(), "NAT gateway id")?;
            let tagged = Some(tag_pairs(g.tags()));
            let retagged = converge_tags(ctx, &addr, &tags::Ec2(&id), tagged).await?;
            if g.state() == Some(&NatGatewayState::Available) {
                ready = Some(id.clone());
            }
            (id, found.change().updated_if(retagged))
        }
        None => {
            if !ctx.would_create(format!("{addr} ({name}, {az})")) {
                return Ok(None);
            }
            let out = ctx
                .aws
                .ec2
                .create_nat_gateway()
                .subnet_id(&subnet)
                .allocation_id(&alloc)
                // Same subnet and address → same token, so an SDK retry cannot make a second one.
                .client_token(format!("{subnet}-{alloc}"))
                .tag_specifications(tag_spec(ctx, ResourceType::Natgateway, &name))
                .send()
                .await
                .map_err(aws("CreateNatGateway", &name))?;
            (
                required(
                    out.nat_gateway().and_then(|g| g.nat_gateway_id()),
                    "NAT gateway id",
                )?,
                Change::Created,
            )
        }
    };
    ctx.record(
        &addr,
        Record::new(KIND, &id)
            .attr("az", az)
            .attr("subnet_id", &subnet),
    )
    .await?;
    ctx.report
        .note(change, format!("{addr} {id} ({name}, {az})"));
    Ok(ready)
}

async fn wait_available(ctx: &Ctx, id: &str) -> Result<()> {
    wait_for(
        &format!("NAT gateway {id} to be available"),
        READY_WAIT,
        || async {
            let g = describe(ctx, Some(id), vec![]).await?;
            let Some(g) = g.first() else {
                return Err(Error::Invalid(format!(
                    "NAT gateway {id} disappeared while starting; re-run `payctl up`"
                )));
            };
            match g.state() {
                Some(NatGatewayState::Available) => Ok(Status::Ready(())),
                Some(NatGatewayState::Pending) | None => Ok(Status::Pending("pending".into())),
                Some(s) => Err(Error::Invalid(format!(
                    "NAT gateway {id} is {} ({}); re-run `payctl up` to replace it",
                    s.as_str(),
                    g.failure_message().unwrap_or("no failure message")
                ))),
            }
        },
    )
    .await
}

async fn wait_gone(ctx: &Ctx, addr: &str, id: &str) -> Result<()> {
    wait_for(
        &format!("NAT gateway {id} to be deleted"),
        GONE_WAIT,
        || async {
            let g = describe(ctx, Some(id), vec![]).await?;
            match g.first().and_then(|g| g.state()) {
                None | Some(NatGatewayState::Deleted) => Ok(Status::Ready(())),
                Some(s) => Ok(Status::Pending(s.as_str().to_string())),
            }
        },
    )
    .await?;
    ctx.forget(addr).await?;
    Ok(())
}

/// Deletes the gateway recorded at `addr` and waits until it is gone (its record goes
/// with it): a gateway the stack no longer wants (see `nat_surplus`).
pub(crate) async fn retire(ctx: &Ctx, addr: &str, id: &str) -> Result<()> {
    if let Some(g) = describe(ctx, Some(id), vec![]).await?.into_iter().next() {
        delete_one(ctx, &g, addr).await?;
    }
    wait_gone(ctx, addr, id).await
}

async fn delete_one(ctx: &Ctx, g: &NatGateway, addr: &str) -> Result<()> {
    let id = required(g.nat_gateway_id(), "NAT gateway id")?;
    tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(g.tags()))?;
    if ctx.state.get(addr).is_none() {
        ctx.record(addr, Record::new(KIND, &id)).await?;
    }
    // The record is forgotten once the gateway is gone (`wait`), not here.
    if live(g) {
        let call = ctx.aws.ec2.delete_nat_gateway().nat_gateway_id(&id);
        SERVICE.found(call.send().await.map_err(aws("DeleteNatGateway", &id)))?;
    }
    ctx.report.note(Change::Deleted, format!("{addr} {id}"));
    Ok(())
}

#[async_trait]
impl Resource for NatGateways {
    kind!(
        KIND,
        depends_on = [
            super::subnet::KIND,
            eip::KIND,
            super::internet_gateway::KIND
        ]
    );

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = super::vpc_id(ctx)?;
        let in_vpc = describe(ctx, None, vec![filter("vpc-id", &vpc)]).await?;
        let zones = zones(ctx);
        let work = zones
            .iter()
            .take(ctx.settings.nat_gateways)
            .enumerate()
            .map(|(i, az)| ensure_one(ctx, &in_vpc, i + 1, az));
        let mut results = Vec::new();
        for r in join_all(work).await {
            results.push(r.map(|ready| {
                if let Some(id) = ready {
                    self.ready
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id);
                }
            }));
        }
        all_ok(results)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        // Gateways in state, then any others tagged for this environment.
        let mut targets: Vec<(NatGateway, String)> = Vec::new();
        for (addr, rec) in ctx.state.of_kind(KIND) {
            match describe(ctx, Some(&rec.id), vec![])
                .await?
                .into_iter()
                .next()
            {
                Some(g) => targets.push((g, addr)),
                None => ctx.forget(&addr).await?,
            }
        }
        for g in describe(ctx, None, owned_filters(ctx, None)).await? {
            let known = targets
                .iter()
                .any(|(t, _)| t.nat_gateway_id() == g.nat_gateway_id());
            if !known && live(&g) && ctx.owns(pairs(g.tags())) {
                let addr = format!("{KIND}.{}", g.nat_gateway_id().unwrap_or("unknown"));
                targets.push((g, addr));
            }
        }
        let work = targets.iter().map(|(g, addr)| delete_one(ctx, g, addr));
        all_ok(join_all(work).await)
    }

    async fn wait(&self, ctx: &Ctx, direction: Direction) -> Result<()> {
        let records = ctx.state.of_kind(KIND);
        let work: Vec<_> = match direction {
            Direction::Up => records
                .iter()
                // Gateways above `nat_gateways` are on their way out (`nat_surplus`).
                .filter(|(a, _)| (1..=ctx.settings.nat_gateways).any(|i| address(i) == **a))
                .filter(|(_, r)| {
                    let ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
                    !ready.contains(&r.id)
                })
                .map(|(_, r)| wait_available(ctx, &r.id))
                .map(futures::FutureExt::boxed)
                .collect(),
            Direction::Down => records
                .iter()
                .map(|(a, r)| wait_gone(ctx, a, &r.id))
                .map(futures::FutureExt::boxed)
                .collect(),
        };
        all_ok(join_all(work).await)
    }
}
