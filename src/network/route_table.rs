//! Route tables: one public table (0.0.0.0/0 → internet gateway) for the public subnets,
//! and one private table per AZ (0.0.0.0/0 → a NAT gateway, the AZ's own where there is
//! one per AZ) for that AZ's private subnet.

use super::{
    DEPENDENCY_WAIT, filter, found, is_dependency_violation, is_not_found, name_of, owned_filters,
    pairs, subnet_id, tag_spec, vpc_id, zones,
};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::retry_while;
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, RouteTable};
use futures::future::join_all;

pub const KIND: &str = "ec2_route_table";
const DEFAULT_ROUTE: &str = "0.0.0.0/0";

pub struct RouteTables;

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Gateway(String),
    Nat(String),
}

struct Want {
    key: String,
    name: String,
    target: Target,
    subnets: Vec<String>,
}

fn wanted(ctx: &Ctx) -> Result<Vec<Want>> {
    let zones = zones(ctx);
    let igw = ctx.state.id("ec2_internet_gateway.main").ok_or_else(|| {
        Error::Invalid(
            "the internet gateway is not in the state file; run `payctl up` again".into(),
        )
    })?;
    let mut wants = vec![Want {
        key: "public".into(),
        name: ctx.name("public-rt"),
        target: Target::Gateway(igw),
        subnets: zones
            .iter()
            .map(|az| subnet_id(ctx, "public", az))
            .collect::<Result<_>>()?,
    }];
    let nats = ctx.settings.nat_gateways.max(1);
    for (i, az) in zones.iter().enumerate() {
        let nat_addr = super::nat::address(i % nats + 1);
        let nat = ctx.state.id(&nat_addr).ok_or_else(|| {
            Error::Invalid(format!(
                "{nat_addr} is not in the state file; run `payctl up` again"
            ))
        })?;
        wants.push(Want {
            key: format!("private-{az}"),
            name: ctx.name(&format!("private-rt-{az}")),
            target: Target::Nat(nat),
            subnets: vec![subnet_id(ctx, "private", az)?],
        });
    }
    Ok(wants)
}

fn default_target(t: &RouteTable) -> Option<Target> {
    let r = t
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some(DEFAULT_ROUTE))?;
    r.nat_gateway_id()
        .map(|n| Target::Nat(n.to_string()))
        .or_else(|| r.gateway_id().map(|g| Target::Gateway(g.to_string())))
}

async fn ensure_one(ctx: &Ctx, vpc: &str, tables: &[RouteTable], want: &Want) -> Result<()> {
    let ec2 = &ctx.aws.ec2;
    let addr = format!("{KIND}.{}", want.key);
    let known = ctx.state.id(&addr);
    let found = tables
        .iter()
        .find(|t| known.is_some() && t.route_table_id() == known.as_deref())
        .or_else(|| {
            tables
                .iter()
                .find(|t| name_of(t.tags()) == Some(want.name.as_str()))
        });
    let (id, mut change) = match found {
        Some(t) => {
            let id = required(t.route_table_id(), "route table id")?;
            ctx.check_owned(&format!("route table {id}"), pairs(t.tags()))?;
            (
                id.clone(),
                if known.as_deref() == Some(id.as_str()) {
                    Change::Unchanged
                } else {
                    Change::Adopted
                },
            )
        }
        None => {
            if !ctx.would_create(format!("{addr} ({})", want.name)) {
                return Ok(());
            }
            let call = ec2
                .create_route_table()
                .vpc_id(vpc)
                .tag_specifications(tag_spec(ctx, ResourceType::RouteTable, &want.name));
            let out = call
                .send()
                .await
                .map_err(aws("CreateRouteTable", &want.name))?;
            (
                required(
                    out.route_table().and_then(|t| t.route_table_id()),
                    "route table id",
                )?,
                Change::Created,
            )
        }
    };
    ctx.record(&addr, Record::new(KIND, &id)).await?;
    let mut updated = false;

    let current = found.and_then(default_target);
    if current.as_ref() != Some(&want.target)
        && ctx.apply(
            &addr,
            "default route",
            show(current.as_ref()),
            show(Some(&want.target)),
        )
    {
        let (gw, nat) = match &want.target {
            Target::Gateway(g) => (Some(g.clone()), None),
            Target::Nat(n) => (None, Some(n.clone())),
        };
        if current.is_none() {
            let call = ec2
                .create_route()
                .route_table_id(&id)
                .destination_cidr_block(DEFAULT_ROUTE);
            call.set_gateway_id(gw)
                .set_nat_gateway_id(nat)
                .send()
                .await
                .map_err(aws("CreateRoute", &id))?;
        } else {
            let call = ec2
                .replace_route()
                .route_table_id(&id)
                .destination_cidr_block(DEFAULT_ROUTE);
            call.set_gateway_id(gw)
                .set_nat_gateway_id(nat)
                .send()
                .await
                .map_err(aws("ReplaceRoute", &id))?;
        }
        updated = true;
    }

    for subnet in &want.subnets {
        let assoc = tables.iter().find_map(|t| {
            t.associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet.as_str()))
                .map(|a| {
                    (
                        t.route_table_id().unwrap_or_default(),
                        a.route_table_association_id().unwrap_or_default(),
                    )
                })
        });
        match assoc {
            Some((table, _)) if table == id => {}
            Some((table, _))
                if !ctx.apply(&addr, &format!("subnet {subnet}"), table, "associated") => {}
            Some((_, assoc_id)) => {
                let call = ec2
                    .replace_route_table_association()
                    .association_id(assoc_id)
                    .route_table_id(&id);
                call.send()
                    .await
                    .map_err(aws("ReplaceRouteTableAssociation", subnet))?;
                updated = true;
            }
            None if !ctx.apply(
                &addr,
                &format!("subnet {subnet}"),
                "main table",
                "associated",
            ) => {}
            None => {
                let call = ec2
                    .associate_route_table()
                    .route_table_id(&id)
                    .subnet_id(subnet);
                call.send()
                    .await
                    .map_err(aws("AssociateRouteTable", subnet))?;
                updated = true;
            }
        }
    }
    if updated && change == Change::Unchanged {
        change = Change::Updated;
    }
    ctx.report
        .note(change, format!("{addr} {id} ({})", want.name));
    Ok(())
}

/// A default route's target, for `plan`.
fn show(target: Option<&Target>) -> String {
    match target {
        Some(Target::Gateway(g)) => g.clone(),
        Some(Target::Nat(n)) => n.clone(),
        None => "none".into(),
    }
}

async fn delete_one(ctx: &Ctx, t: &RouteTable, addr: Option<&str>) -> Result<()> {
    let ec2 = &ctx.aws.ec2;
    let id = required(t.route_table_id(), "route table id")?;
    ctx.check_owned(&format!("route table {id}"), pairs(t.tags()))?;
    for a in t.associations().iter().filter(|a| a.main() != Some(true)) {
        if let Some(assoc) = a.route_table_association_id() {
            match ec2
                .disassociate_route_table()
                .association_id(assoc)
                .send()
                .await
                .map_err(aws("DisassociateRouteTable", assoc))
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let result = retry_while(
        &format!("deleting route table {id}"),
        DEPENDENCY_WAIT,
        is_dependency_violation,
        || async {
            ec2.delete_route_table()
                .route_table_id(&id)
                .send()
                .await
                .map_err(aws("DeleteRouteTable", &id))
        },
    )
    .await;
    found(result)?;
    if let Some(addr) = addr {
        ctx.forget(addr).await?;
    }
    ctx.report
        .note(Change::Deleted, format!("{} {id}", addr.unwrap_or(KIND)));
    Ok(())
}

#[async_trait]
impl Resource for RouteTables {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[super::subnet::KIND, super::igw::KIND, super::nat::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let wants = wanted(ctx)?;
        let out = ctx
            .aws
            .ec2
            .describe_route_tables()
            .filters(filter("vpc-id", &vpc))
            .send()
            .await
            .map_err(aws("DescribeRouteTables", &vpc))?;
        let tables = out.route_tables();
        all_ok(join_all(wants.iter().map(|w| ensure_one(ctx, &vpc, tables, w))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let known = ctx.state.of_kind(KIND);
        let ids: Vec<String> = known.iter().map(|(_, r)| r.id.clone()).collect();
        let mut tables: Vec<RouteTable> = Vec::new();
        for id in &ids {
            if let Some(out) = found(
                ctx.aws
                    .ec2
                    .describe_route_tables()
                    .route_table_ids(id)
                    .send()
                    .await
                    .map_err(aws("DescribeRouteTables", id)),
            )? {
                tables.extend(out.route_tables().iter().cloned());
            }
        }
        let out = ctx
            .aws
            .ec2
            .describe_route_tables()
            .set_filters(Some(owned_filters(ctx, None)))
            .send()
            .await
            .map_err(aws(
                "DescribeRouteTables",
                format!("route tables of {}", ctx.env),
            ))?;
        for t in out.route_tables() {
            if !tables
                .iter()
                .any(|x| x.route_table_id() == t.route_table_id())
            {
                tables.push(t.clone());
            }
        }
        // Records whose table no longer exists are simply forgotten.
        for (addr, rec) in &known {
            if !tables
                .iter()
                .any(|t| t.route_table_id() == Some(rec.id.as_str()))
            {
                ctx.forget(addr).await?;
                ctx.report.note(Change::Absent, addr.clone());
            }
        }
        let work = tables.iter().map(|t| {
            let addr = known
                .iter()
                .find(|(_, r)| t.route_table_id() == Some(r.id.as_str()))
                .map(|(a, _)| a.as_str());
            delete_one(ctx, t, addr)
        });
        all_ok(join_all(work).await)
    }
}
