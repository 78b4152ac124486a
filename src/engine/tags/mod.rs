//! Tags, per service: read them, refuse what payctl does not own, put back the missing
//! standard ones. Every taggable kind calls [`converge_tags`] on what it found.
//!
//! Ownership is `ManagedBy=payctl` and `Environment=<env>`; without both a resource is
//! never adopted, changed or deleted. The other standard tags (`Project`, `Team`,
//! `CostCenter`) are put back when missing or different, with `plan` showing
//! `tags: missing … → set`. Each service has its own tag calls, so each has a small
//! [`Tagged`] implementation below; the rule is written once.

mod services;

pub use services::{
    ArnMap, CloudWatch, DynamoDb, Ec2, IamRole, KmsKey, Rds, S3Bucket, SnsTopic, SqsQueue, Wafv2,
};

use super::Ctx;
use crate::error::Result;
use async_trait::async_trait;
use std::collections::HashMap;

pub type Tags = Vec<(String, String)>;

/// A resource whose tags payctl reads and repairs.
#[async_trait]
pub trait Tagged: Send + Sync {
    /// What it is, for messages (`SQS queue https://…/payment-retry-dev`).
    fn what(&self) -> String;
    async fn read(&self, ctx: &Ctx) -> Result<Tags>;
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()>;
}

/// The standard tags that `have` lacks or has with another value.
pub fn missing(env: &str, have: &[(String, String)]) -> Tags {
    let have: HashMap<&str, &str> = have.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::naming::standard_tags(env)
        .into_iter()
        .filter(|(k, v)| have.get(k.as_str()) != Some(&v.as_str()))
        .collect()
}

/// Refuses `have` unless it says payctl owns the resource for this environment.
pub fn check_owned(ctx: &Ctx, target: &dyn Tagged, have: &[(String, String)]) -> Result<()> {
    ctx.check_owned(
        &target.what(),
        have.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// Reads `target`'s tags (or takes `known`, when the describe call already returned
/// them), refuses it unless payctl owns it, and puts back missing standard tags (on
/// `plan`: notes them under `address`). Answers whether it wrote tags.
pub async fn converge_tags(
    ctx: &Ctx,
    address: &str,
    target: &dyn Tagged,
    known: Option<Tags>,
) -> Result<bool> {
    let have = match known {
        Some(tags) => tags,
        None => target.read(ctx).await?,
    };
    check_owned(ctx, target, &have)?;
    let missing = missing(&ctx.env, &have);
    if missing.is_empty() {
        return Ok(false);
    }
    let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
    if !ctx.apply(
        address,
        "tags",
        format!("missing {}", keys.join(", ")),
        "set",
    ) {
        return Ok(false);
    }
    target.add(ctx, missing).await?;
    Ok(true)
}

/// Reads `target`'s tags and refuses it unless payctl owns it (before a delete).
pub async fn ensure_owned(ctx: &Ctx, target: &dyn Tagged) -> Result<()> {
    let have = target.read(ctx).await?;
    check_owned(ctx, target, &have)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tags_are_the_absent_or_different_standard_ones() {
        let all = crate::naming::standard_tags("dev");
        assert!(missing("dev", &all).is_empty());
        let some: Tags = [
            ("ManagedBy", "payctl"),
            ("Environment", "dev"),
            ("Team", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let keys: Vec<String> = missing("dev", &some).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["Project", "Team", "CostCenter"]);
    }
}
