//! The network layer: VPC, subnets, internet gateway, Elastic IPs and NAT gateways,
//! route tables, gateway endpoints and security groups. One file per resource kind, and
//! [`lambda_enis`], `down`'s clean-up of the interfaces Lambda leaves in the groups.
//!
//! EC2 models no error shapes, so the SDK has no `is_*` methods for its errors: the
//! predicates below compare the documented error code strings, which are EC2's contract.
//! EC2 resources carry the standard tags plus `Name` (EC2's only name field), and are
//! found again by those tags when the state file does not know them.

pub mod default_security_group;
pub mod eip;
pub mod internet_gateway;
pub mod lambda_enis;
pub mod nat_gateway;
pub mod nat_surplus;
pub mod route_table;
pub mod security_group;
pub mod subnet;
pub mod vpc;
pub mod vpc_endpoint;

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
            Arc::new(default_security_group::DefaultSecurityGroup),
            Arc::new(subnet::Subnets),
            Arc::new(internet_gateway::InternetGateway),
            Arc::new(eip::ElasticIps),
            Arc::new(nat_gateway::NatGateways::default()),
            Arc::new(route_table::RouteTables),
            Arc::new(nat_surplus::NatSurplus),
            Arc::new(vpc_endpoint::GatewayEndpoints),
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
