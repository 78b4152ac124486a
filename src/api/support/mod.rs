//! What the API layer's kinds share and that is not a kind itself: the API's definition
//! ([`definition`]), and the API Gateway plumbing every kind uses: patch operations,
//! the lookup by name among look-alikes, tags, and settings put back as patches.

pub mod definition;

use crate::engine::tags::{self, ArnMap, Tagged, Tags};
use crate::engine::{Ctx, Service};
use crate::error::{Error, Result};
use async_trait::async_trait;
use aws_sdk_apigateway::types::{Op, PatchOperation};
use std::collections::HashMap;

/// Every kind of the layer but the account setting and the permissions is an API
/// Gateway resource: NotFound is API Gateway's.
pub const SERVICE: Service = Service::ApiGateway;

/// Every item of a paginated API Gateway list call (`$call`, ready to send) as one
/// `Vec`, or [`crate::error::Error::Aws`] for `$op` on `$what`. (A macro: each list
/// operation has its own paginator type, with no trait in common.)
macro_rules! all_items {
    ($call:expr, $op:literal, $what:expr) => {
        $call
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err($crate::error::aws($op, $what))
    };
}
pub(crate) use all_items;

/// A patch operation (API Gateway's only way to change most settings).
pub fn patch(op: Op, path: &str, value: Option<String>) -> PatchOperation {
    PatchOperation::builder()
        .op(op)
        .path(path)
        .set_value(value)
        .build()
}

/// `replace <path> <value>`.
pub fn replace(path: &str, value: impl Into<String>) -> PatchOperation {
    patch(Op::Replace, path, Some(value.into()))
}

/// A rate (requests per second) as API Gateway's patch values take it: `50`, `12.5`.
pub fn rate_text(rate: f64) -> String {
    format!("{rate}")
}

/// Rates compared with a tolerance (API Gateway stores doubles).
pub fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// A setting's value for `plan`'s `old → new`: `unset` when the resource has none.
pub fn text(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "unset".to_string(), |v| v.to_string())
}

/// Settings put back with patches, as declarations: each `(patch, old value)` is noted
/// `path: old → new` on `plan`; on `up` they go to `send` in one call, logged as
/// `<what>: setting <paths>`. True when it sent any.
pub async fn apply_patches(
    ctx: &Ctx,
    address: &str,
    what: &str,
    changes: Vec<(PatchOperation, String)>,
    send: impl AsyncFnOnce(Vec<PatchOperation>) -> Result<()>,
) -> Result<bool> {
    let mut ops = Vec::new();
    for (op, old) in changes {
        let new = op.value().unwrap_or("(removed)");
        if ctx.apply(address, op.path().unwrap_or("?"), old, new) {
            ops.push(op);
        }
    }
    if ops.is_empty() {
        return Ok(false);
    }
    let paths: Vec<&str> = ops.iter().filter_map(|o| o.path()).collect();
    tracing::info!("{what}: setting {}", paths.join(", "));
    send(ops).await?;
    Ok(true)
}

/// An API Gateway resource as payctl reads it: its id and the tags API Gateway returns
/// with every read (so a lookup never needs GetTags).
pub trait Item {
    fn item_id(&self) -> &str;
    fn item_tags(&self) -> Option<&HashMap<String, String>>;
}

/// Whether tags returned by API Gateway say payctl owns the resource for `ctx.env`.
pub fn owned(ctx: &Ctx, tags: Option<&HashMap<String, String>>) -> bool {
    ctx.owns(
        tags.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// Among the resources named `name` (`what`: `REST API`, `API key`, …), the one payctl
/// owns. Refuses a name only others' resources carry (payctl would otherwise make a
/// second one beside it) and several of payctl's own.
pub fn ours_by_name<T: Item>(
    ctx: &Ctx,
    what: &str,
    name: &str,
    named: Vec<T>,
) -> Result<Option<T>> {
    let (mut mine, others): (Vec<T>, Vec<T>) =
        named.into_iter().partition(|r| owned(ctx, r.item_tags()));
    match (mine.len(), others.first()) {
        (1, _) => Ok(mine.pop()),
        (0, Some(other)) => Err(Error::not_owned(
            format!("{what} {} ({name})", other.item_id()),
            &ctx.env,
        )),
        (0, None) => Ok(None),
        (n, _) => Err(Error::Invalid(format!(
            "{n} {what}s named {name} carry payctl's tags for environment {}: delete the extra ones, then run `payctl up` again",
            ctx.env
        ))),
    }
}

/// `arn:<partition>:apigateway:<region>::<path>`, e.g. `path` = `/restapis/abc123`.
pub fn arn(ctx: &Ctx, path: &str) -> String {
    format!(
        "arn:{}:apigateway:{}::{path}",
        super::partition(&ctx.region),
        ctx.region
    )
}

/// An API Gateway resource whose tags payctl reads and repairs, named for messages as
/// the layer always named it (`REST API abc123 (payment-api-dev)`).
pub struct Target {
    pub arn: String,
    pub what: String,
}

#[async_trait]
impl Tagged for Target {
    fn what(&self) -> String {
        self.what.clone()
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        ArnMap::ApiGateway(&self.arn).read(ctx).await
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        ArnMap::ApiGateway(&self.arn).add(ctx, tags).await
    }
}

fn pairs(tags: Option<&HashMap<String, String>>) -> Tags {
    tags.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Refuses `target` unless its tags (as a read returned them) say payctl owns it, and
/// puts back missing standard tags (on `plan`: notes them). True when it wrote tags.
pub async fn converge_tags(
    ctx: &Ctx,
    address: &str,
    target: &Target,
    known: Option<&HashMap<String, String>>,
) -> Result<bool> {
    tags::converge_tags(ctx, address, target, Some(pairs(known))).await
}

/// Refuses `target` unless its tags (as a read returned them) say payctl owns it.
pub fn check_owned(
    ctx: &Ctx,
    target: &Target,
    known: Option<&HashMap<String, String>>,
) -> Result<()> {
    tags::check_owned(ctx, target, &pairs(known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_for_the_plan() {
        assert_eq!(text(Some(3)), "3");
        assert_eq!(text(None::<&str>), "unset");
    }
}
