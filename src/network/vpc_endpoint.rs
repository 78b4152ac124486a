//! S3 and DynamoDB gateway endpoints on the private route tables, so the functions reach
//! both services without crossing the NAT gateways.

use super::{filter, name_of, owned_filters, tag_pairs, tag_spec, vpc_id};
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Resource, Service};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};
use futures::future::join_all;

pub const KIND: &str = "ec2_vpc_endpoint";
pub const SERVICES: [&str; 2] = ["s3", "dynamodb"];
/// Only the endpoint's own NotFound means it is gone: another (say, a route it manages)
/// means the deletion did not happen.
const SERVICE: Service = Service::Ec2(Ec2::VpcEndpoint);

pub struct GatewayEndpoints;

/// Not on its way out. EC2 spells the states both `Deleted` and `deleted`.
fn live(e: &VpcEndpoint) -> bool {
    let state = e.state().map(|s| s.as_str().to_ascii_lowercase());
    !matches!(
        state.as_deref(),
        Some("deleted" | "deleting" | "failed" | "rejected" | "expired")
    )
}

fn private_route_tables(ctx: &Ctx) -> Vec<String> {
    let mut ids: Vec<String> = ctx
        .state
        .of_kind(super::route_table::KIND)
        .into_iter()
        .filter(|(addr, _)| addr.contains(".private-"))
        .map(|(_, r)| r.id)
        .collect();
    ids.sort();
    ids
}

/// `in_vpc` is every endpoint of the VPC, read once for both services.
async fn ensure_one(ctx: &Ctx, vpc: &str, service: &str, in_vpc: &[VpcEndpoint]) -> Result<()> {
    let ec2 = &ctx.aws.ec2;
    let addr = format!("{KIND}.{service}");
    let name = ctx.name(&format!("{service}-endpoint"));
    let service_name = format!("com.amazonaws.{}.{service}", ctx.region);
    let tables = private_route_tables(ctx);
    let zones = super::zones(ctx).len();
    if tables.len() < zones {
        // Only on a run that started before the route tables were all recorded (see the
        // walker): the endpoint is made with every private route table or not at all.
        return Err(Error::Invalid(format!(
            "{} of {zones} private route tables are recorded; the endpoint {name} waits for all of them",
            tables.len()
        )));
    }
    let mut found = in_vpc.iter().filter(|e| {
        live(e)
            && e.service_name() == Some(service_name.as_str())
            && name_of(e.tags()) == Some(name.as_str())
    });
    let (id, change, current) = match (found.next(), found.next()) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid(format!(
                "more than one endpoint is named {name}; delete the extras"
            )));
        }
        (Some(e), None) => {
            let id = required(e.vpc_endpoint_id(), "VPC endpoint id")?;
            let known = Some(tag_pairs(e.tags()));
            let retagged = converge_tags(ctx, &addr, &tags::Ec2(&id), known).await?;
            let change = if ctx.state.id(&addr).as_deref() == Some(id.as_str()) {
                Change::Unchanged
            } else {
                Change::Adopted
            };
            (id, change.updated_if(retagged), e.route_table_ids().to_vec())
        }
        (None, _) => {
            if !ctx.would_create(format!("{addr} ({name})")) {
                return Ok(());
            }
            let out = ec2
                .create_vpc_endpoint()
                .vpc_id(vpc)
                .service_name(&service_name)
                .vpc_endpoint_type(VpcEndpointType::Gateway)
                .set_route_table_ids(Some(tables.clone()))
                .tag_specifications(tag_spec(ctx, ResourceType::VpcEndpoint, &name))
                .send()
                .await
                .map_err(aws("CreateVpcEndpoint", &name))?;
            (
                required(
                    out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()),
                    "VPC endpoint id",
                )?,
                Change::Created,
                tables.clone(),
            )
        }
    };
    ctx.record(&addr, Record::new(KIND, &id).attr("service", &service_name))
        .await?;
    let mut have = current.clone();
    have.sort();
    let write = || async {
        let add: Vec<String> = tables.iter().filter(|t| !current.contains(t)).cloned().collect();
        let remove: Vec<String> = current.iter().filter(|t| !tables.contains(t)).cloned().collect();
        let call = ec2.modify_vpc_endpoint().vpc_endpoint_id(&id);
        let call = call
            .set_add_route_table_ids((!add.is_empty()).then_some(add))
            .set_remove_route_table_ids((!remove.is_empty()).then_some(remove));
        call.send().await.map_err(aws("ModifyVpcEndpoint", &id))?;
        Ok(())
    };
    let wrote = ctx
        .converge(&addr, "route tables", have.join(", "), tables.join(", "), write)
        .await?;
    let change = change.updated_if(wrote);
    ctx.report.note(change, format!("{addr} {id} ({name})"));
    Ok(())
}

async fn delete_one(ctx: &Ctx, e: &VpcEndpoint) -> Result<()> {
    let id = required(e.vpc_endpoint_id(), "VPC endpoint id")?;
    tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(e.tags()))?;
    let out = ctx
        .aws
        .ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(&id)
        .send()
        .await
        .map_err(aws("DeleteVpcEndpoints", &id));
    match out {
        Ok(out) => {
            if let Some(item) = out.unsuccessful().first() {
                let err = Error::Aws {
                    op: "DeleteVpcEndpoints",
                    resource: id.clone(),
                    code: item
                        .error()
                        .and_then(|e| e.code())
                        .unwrap_or("Unknown")
                        .to_string(),
                    message: item
                        .error()
                        .and_then(|e| e.message())
                        .unwrap_or_default()
                        .to_string(),
                };
                if !SERVICE.is_not_found(&err) {
                    return Err(err);
                }
            }
        }
        Err(err) if SERVICE.is_not_found(&err) => {}
        Err(err) => return Err(err),
    }
    ctx.report.note(Change::Deleted, format!("{KIND} {id}"));
    Ok(())
}

#[async_trait]
impl Resource for GatewayEndpoints {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[super::route_table::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let out = ctx
            .aws
            .ec2
            .describe_vpc_endpoints()
            .filters(filter("vpc-id", &vpc))
            .send()
            .await
            .map_err(aws("DescribeVpcEndpoints", format!("endpoints in {vpc}")))?;
        let in_vpc = out.vpc_endpoints();
        all_ok(join_all(SERVICES.iter().map(|s| ensure_one(ctx, &vpc, s, in_vpc))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let known = ctx.state.of_kind(KIND);
        let mut ids: Vec<String> = known.iter().map(|(_, r)| r.id.clone()).collect();
        let mut endpoints = Vec::new();
        let by_tag = ctx
            .aws
            .ec2
            .describe_vpc_endpoints()
            .set_filters(Some(owned_filters(ctx, None)))
            .send()
            .await;
        for e in by_tag
            .map_err(aws(
                "DescribeVpcEndpoints",
                format!("endpoints of {}", ctx.env),
            ))?
            .vpc_endpoints()
        {
            ids.retain(|i| Some(i.as_str()) != e.vpc_endpoint_id());
            endpoints.push(e.clone());
        }
        for id in ids {
            if let Some(out) = SERVICE.found(
                ctx.aws
                    .ec2
                    .describe_vpc_endpoints()
                    .vpc_endpoint_ids(&id)
                    .send()
                    .await
                    .map_err(aws("DescribeVpcEndpoints", &id)),
            )? {
                endpoints.extend(out.vpc_endpoints().iter().cloned());
            }
        }
        endpoints.retain(live);
        all_ok(join_all(endpoints.iter().map(|e| delete_one(ctx, e))).await)?;
        for (addr, _) in known {
            ctx.forget(&addr).await?;
        }
        Ok(())
    }
}
