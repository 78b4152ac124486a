//! The network layer: VPC, subnets, internet gateway, Elastic IPs and NAT gateways,
//! route tables, gateway endpoints and security groups. One file per resource kind.
//!
//! EC2 models no error shapes, so the SDK has no `is_*` methods for its errors: the
//! predicates below compare the documented error code strings, which are EC2's contract.
//! EC2 resources carry the standard tags plus `Name` (EC2's only name field), and are
//! found again by those tags when the state file does not know them.

pub mod default_sg;
pub mod eip;
pub mod endpoint;
pub mod igw;
pub mod nat;
pub mod nat_surplus;
pub mod route_table;
pub mod security_group;
pub mod subnet;
pub mod vpc;

use crate::engine::{Ctx, Layer};
use crate::error::Result;
use crate::waiter::Wait;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use std::sync::Arc;

pub fn layer() -> Layer {
    Layer {
        name: "network",
        resources: vec![
            Arc::new(vpc::Vpc),
            Arc::new(default_sg::DefaultSecurityGroup),
            Arc::new(subnet::Subnets),
            Arc::new(igw::InternetGateway),
            Arc::new(eip::ElasticIps),
            Arc::new(nat::NatGateways::default()),
            Arc::new(route_table::RouteTables),
            Arc::new(nat_surplus::NatSurplus),
            Arc::new(endpoint::GatewayEndpoints),
            Arc::new(security_group::SecurityGroups),
        ],
    }
}

/// How long deletes retry `DependencyViolation` (ENIs and NAT mappings drain slowly).
pub const DEPENDENCY_WAIT: Wait = Wait::minutes(15);

/// The standard tags plus `Name`, for a `TagSpecifications` argument.
pub fn tag_spec(ctx: &Ctx, resource_type: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(tags(ctx, name)))
        .build()
}

pub fn tags(ctx: &Ctx, name: &str) -> Vec<Tag> {
    let mut tags: Vec<Tag> = ctx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    tags.push(
        Tag::builder()
            .key(crate::naming::TAG_NAME)
            .value(name)
            .build(),
    );
    tags
}

pub fn pairs(tags: &[Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
}

pub fn name_of(tags: &[Tag]) -> Option<&str> {
    pairs(tags)
        .find(|(k, _)| *k == crate::naming::TAG_NAME)
        .map(|(_, v)| v)
}

pub fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Filters for resources payctl owns in this environment (optionally by `Name`).
pub fn owned_filters(ctx: &Ctx, name: Option<&str>) -> Vec<Filter> {
    let mut f = vec![
        filter("tag:ManagedBy", crate::naming::TAG_MANAGED_BY.1),
        filter("tag:Environment", ctx.env.clone()),
    ];
    if let Some(name) = name {
        f.push(filter("tag:Name", name));
    }
    f
}

/// `InvalidVpcID.NotFound`, `InvalidSubnetID.NotFound`, `InvalidAllocationID.NotFound`, …
/// Transitional: kept (as before the engine toolkit) for the network kinds not yet
/// converted to `engine::Service::Ec2`; remove with the last of them.
pub fn is_not_found(e: &crate::error::Error) -> bool {
    e.aws_code()
        .is_some_and(|c| c.ends_with(".NotFound") || c.ends_with("NotFound"))
}

/// `Some(value)` on success, `None` when AWS says the resource is not there.
/// Transitional, see [`is_not_found`].
pub fn found<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Transitional re-export for the network kinds not yet converted.
pub use crate::engine::gone::is_dependency_violation;

/// The VPC's id, from state (the VPC kind runs before every dependent kind).
pub fn vpc_id(ctx: &Ctx) -> Result<String> {
    ctx.needed_id(vpc::ADDR)
}

/// The availability zones the stack uses, from the subnets in state, in order.
pub fn zones(ctx: &Ctx) -> Vec<String> {
    let mut azs: Vec<String> = ctx
        .state
        .of_kind(subnet::KIND)
        .into_iter()
        .filter(|(_, r)| r.get("tier") == Some("public"))
        .filter_map(|(_, r)| r.get("az").map(str::to_string))
        .collect();
    azs.sort();
    azs
}

/// The id of the subnet of `tier` in `az`, from state.
pub fn subnet_id(ctx: &Ctx, tier: &str, az: &str) -> Result<String> {
    ctx.needed_id(&subnet::address(tier, az))
}

/// EC2 tags as the engine's tag pairs.
pub fn tag_pairs(tags: &[Tag]) -> crate::engine::tags::Tags {
    pairs(tags)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
