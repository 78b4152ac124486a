//! Route tables: one public table (0.0.0.0/0 → internet gateway) for the public subnets,
//! and one private table per AZ (0.0.0.0/0 → a NAT gateway, the AZ's own where there is
//! one per AZ) for that AZ's private subnet.

use super::{
    DEPENDENCY_WAIT, filter, name_of, owned_filters, subnet_id, tag_pairs, tag_spec, vpc_id, zones,
};
use crate::engine::gone::is_dependency_violation;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Resource, Service, kind};
use crate::error::{Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::retry_while;
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, RouteTable};
use futures::future::join_all;

pub const KIND: &str = "ec2_route_table";
const DEFAULT_ROUTE: &str = "0.0.0.0/0";
const SERVICE: Service = Service::Ec2(Ec2::RouteTable);

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
    let igw = ctx.needed_id("ec2_internet_gateway.main")?;
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
        let nat_addr = super::nat_gateway::address(i % nats + 1);
        let nat = ctx.needed_id(&nat_addr)?;
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
    let (id, change) = match found {
        Some(t) => {
            let id = required(t.route_table_id(), "route table id")?;
            let tagged = Some(tag_pairs(t.tags()));
            let retagged = converge_tags(ctx, &addr, &tags::Ec2(&id), tagged).await?;
            let change = if known.as_deref() == Some(id.as_str()) {
                Change::Unchanged
            } else {
                Change::Adopted
            };
            (id, change.updated_if(retagged))
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

    let current = found.and_then(default_target);
    let set_route = || async {
        let (gw, nat) = match &want.target {
            Target::Gateway(g) => (Some(g.clone()), None),
            Target::Nat(n) => (None, Some(n.clone())),
        };
        if current.is_none() {
            let call = ec2.create_route().route_table_id(&id);
            let call = call.destination_cidr_block(DEFAULT_ROUTE);
            let call = call.set_gateway_id(gw).set_nat_gateway_id(nat);
            call.send().await.map_err(aws("CreateRoute", &id))?;
        } else {
            let call = ec2.replace_route().route_table_id(&id);
            let call = call.destination_cidr_block(DEFAULT_ROUTE);
            let call = call.set_gateway_id(gw).set_nat_gateway_id(nat);
            call.send().await.map_err(aws("ReplaceRoute", &id))?;
        }
        Ok(())
    };
    let (have, wanted) = (show(current.as_ref()), show(Some(&want.target)));
    let mut updated = ctx
        .converge(&addr, "default route", have, wanted, set_route)
        .await?;

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
    ctx.report.note(
        change.updated_if(updated),
        format!("{addr} {id} ({})", want.name),
    );
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
    tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(t.tags()))?;
    for a in t.associations().iter().filter(|a| a.main() != Some(true)) {
        if let Some(assoc) = a.route_table_association_id() {
            let call = ec2.disassociate_route_table().association_id(assoc);
            let result = call
                .send()
                .await
                .map_err(aws("DisassociateRouteTable", assoc));
            Service::Ec2(Ec2::Association).found(result)?;
        }
    }
    let what = format!("deleting route table {id}");
    let delete = || async {
        retry_while(&what, DEPENDENCY_WAIT, is_dependency_violation, || async {
            let call = ec2.delete_route_table().route_table_id(&id);
            call.send().await.map_err(aws("DeleteRouteTable", &id))
        })
        .await
    };
    // A table tagged as ours that the state does not know is noted under the kind.
    ctx.delete_and_forget(addr.unwrap_or(KIND), &id, SERVICE, delete)
        .await
}

#[async_trait]
impl Resource for RouteTables {
    kind!(
        KIND,
        depends_on = [
            super::subnet::KIND,
            super::internet_gateway::KIND,
            super::nat_gateway::KIND
        ]
    );

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
            if let Some(out) = SERVICE.found(
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
                ctx.forget_gone(addr).await?;
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
