//! Tags, per service: read them, refuse what payctl does not own, put back the missing
//! standard ones. Every taggable kind calls [`converge_tags`] on what it found.
//!
//! Ownership is `ManagedBy=payctl` and `Environment=<env>`; without both a resource is
//! never adopted, changed or deleted. The other standard tags (`Project`, `Team`,
//! `CostCenter`) are put back when missing or different, with `plan` showing
//! `tags: missing … → set`. Each service has its own tag calls, so each has a small
//! [`Tagged`] implementation below; the rule is written once.

use super::Ctx;
use crate::error::{Error, Result, aws};
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

fn build_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("building tags: {e}"))
}

/// An EC2 resource, by id.
pub struct Ec2<'a>(pub &'a str);

#[async_trait]
impl Tagged for Ec2<'_> {
    fn what(&self) -> String {
        format!("EC2 resource {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .ec2
            .describe_tags()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("resource-id")
                    .values(self.0)
                    .build(),
            )
            .send()
            .await
            .map_err(aws("DescribeTags", self.0))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().into(),
                    t.value().unwrap_or_default().into(),
                )
            })
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build());
        ctx.aws
            .ec2
            .create_tags()
            .resources(self.0)
            .set_tags(Some(tags.collect()))
            .send()
            .await
            .map_err(aws("CreateTags", self.0))?;
        Ok(())
    }
}

/// An IAM role, by name.
pub struct IamRole<'a>(pub &'a str);

#[async_trait]
impl Tagged for IamRole<'_> {
    fn what(&self) -> String {
        format!("IAM role {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .iam
            .list_role_tags()
            .role_name(self.0)
            .send()
            .await
            .map_err(aws("ListRoleTags", self.0))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().into(), t.value().into()))
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(build_err)?;
        ctx.aws
            .iam
            .tag_role()
            .role_name(self.0)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws("TagRole", self.0))?;
        Ok(())
    }
}

/// A KMS key, by id or ARN.
pub struct KmsKey<'a>(pub &'a str);

#[async_trait]
impl Tagged for KmsKey<'_> {
    fn what(&self) -> String {
        format!("KMS key {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .kms
            .list_resource_tags()
            .key_id(self.0)
            .send()
            .await
            .map_err(aws("ListResourceTags", self.0))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.tag_key().into(), t.tag_value().into()))
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_kms::types::Tag::builder()
                    .tag_key(k)
                    .tag_value(v)
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(build_err)?;
        ctx.aws
            .kms
            .tag_resource()
            .key_id(self.0)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws("TagResource", self.0))?;
        Ok(())
    }
}

/// An RDS resource (instance, subnet group, snapshot), by ARN.
pub struct Rds<'a>(pub &'a str);

#[async_trait]
impl Tagged for Rds<'_> {
    fn what(&self) -> String {
        format!("RDS resource {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .rds
            .list_tags_for_resource()
            .resource_name(self.0)
            .send()
            .await
            .map_err(aws("ListTagsForResource", self.0))?;
        Ok(out
            .tag_list()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().into(),
                    t.value().unwrap_or_default().into(),
                )
            })
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build());
        ctx.aws
            .rds
            .add_tags_to_resource()
            .resource_name(self.0)
            .set_tags(Some(tags.collect()))
            .send()
            .await
            .map_err(aws("AddTagsToResource", self.0))?;
        Ok(())
    }
}

/// An S3 bucket, by name. S3 replaces the whole tag set, so `add` merges.
pub struct S3Bucket<'a>(pub &'a str);

#[async_trait]
impl Tagged for S3Bucket<'_> {
    fn what(&self) -> String {
        format!("S3 bucket {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx.aws.s3.get_bucket_tagging().bucket(self.0).send().await;
        match out.map_err(aws("GetBucketTagging", self.0)) {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().into(), t.value().into()))
                .collect()),
            Err(e) if e.aws_code() == Some("NoSuchTagSet") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let mut all: Vec<(String, String)> = self.read(ctx).await?;
        all.retain(|(k, _)| !tags.iter().any(|(t, _)| t == k));
        all.extend(tags);
        let set = all
            .into_iter()
            .map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(build_err)?;
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(build_err)?;
        ctx.aws
            .s3
            .put_bucket_tagging()
            .bucket(self.0)
            .tagging(tagging)
            .send()
            .await
            .map_err(aws("PutBucketTagging", self.0))?;
        Ok(())
    }
}

/// A DynamoDB table, by ARN.
pub struct DynamoDb<'a>(pub &'a str);

#[async_trait]
impl Tagged for DynamoDb<'_> {
    fn what(&self) -> String {
        format!("DynamoDB table {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .dynamodb
            .list_tags_of_resource()
            .resource_arn(self.0)
            .send()
            .await
            .map_err(aws("ListTagsOfResource", self.0))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().into(), t.value().into()))
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_dynamodb::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(build_err)?;
        ctx.aws
            .dynamodb
            .tag_resource()
            .resource_arn(self.0)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws("TagResource", self.0))?;
        Ok(())
    }
}

/// An SQS queue, by URL.
pub struct SqsQueue<'a>(pub &'a str);

#[async_trait]
impl Tagged for SqsQueue<'_> {
    fn what(&self) -> String {
        format!("SQS queue {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .sqs
            .list_queue_tags()
            .queue_url(self.0)
            .send()
            .await
            .map_err(aws("ListQueueTags", self.0))?;
        Ok(out
            .tags()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        ctx.aws
            .sqs
            .tag_queue()
            .queue_url(self.0)
            .set_tags(Some(tags.into_iter().collect()))
            .send()
            .await
            .map_err(aws("TagQueue", self.0))?;
        Ok(())
    }
}

/// An SNS topic, by ARN.
pub struct SnsTopic<'a>(pub &'a str);

#[async_trait]
impl Tagged for SnsTopic<'_> {
    fn what(&self) -> String {
        format!("SNS topic {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .sns
            .list_tags_for_resource()
            .resource_arn(self.0)
            .send()
            .await
            .map_err(aws("ListTagsForResource", self.0))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().into(), t.value().into()))
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| aws_sdk_sns::types::Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(build_err)?;
        ctx.aws
            .sns
            .tag_resource()
            .resource_arn(self.0)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws("TagResource", self.0))?;
        Ok(())
    }
}

/// A CloudWatch alarm, by ARN.
pub struct CloudWatch<'a>(pub &'a str);

#[async_trait]
impl Tagged for CloudWatch<'_> {
    fn what(&self) -> String {
        format!("CloudWatch alarm {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let out = ctx
            .aws
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(self.0)
            .send()
            .await
            .map_err(aws("ListTagsForResource", self.0))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default().into(), t.value().unwrap_or_default().into()))
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_cloudwatch::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
            })
            .collect::<Vec<_>>();
        ctx.aws
            .cloudwatch
            .tag_resource()
            .resource_arn(self.0)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws("TagResource", self.0))?;
        Ok(())
    }
}

/// Services that take tags as a string map and an ARN: Lambda functions, log groups
/// and API Gateway resources.
pub enum ArnMap<'a> {
    Lambda(&'a str),
    Logs(&'a str),
    ApiGateway(&'a str),
}

#[async_trait]
impl Tagged for ArnMap<'_> {
    fn what(&self) -> String {
        match self {
            ArnMap::Lambda(a) => format!("Lambda function {a}"),
            ArnMap::Logs(a) => format!("log group {a}"),
            ArnMap::ApiGateway(a) => format!("API Gateway resource {a}"),
        }
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let map = match *self {
            ArnMap::Lambda(arn) => {
                let out = ctx.aws.lambda.list_tags().resource(arn).send().await;
                out.map_err(aws("ListTags", arn))?.tags().cloned()
            }
            ArnMap::Logs(arn) => {
                let out = ctx
                    .aws
                    .logs
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await;
                out.map_err(aws("ListTagsForResource", arn))?
                    .tags()
                    .cloned()
            }
            ArnMap::ApiGateway(arn) => {
                let out = ctx.aws.apigateway.get_tags().resource_arn(arn).send().await;
                out.map_err(aws("GetTags", arn))?.tags().cloned()
            }
        };
        Ok(map.unwrap_or_default().into_iter().collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let map: HashMap<String, String> = tags.into_iter().collect();
        match *self {
            ArnMap::Lambda(arn) => {
                let call = ctx
                    .aws
                    .lambda
                    .tag_resource()
                    .resource(arn)
                    .set_tags(Some(map));
                call.send().await.map_err(aws("TagResource", arn))?;
            }
            ArnMap::Logs(arn) => {
                let call = ctx
                    .aws
                    .logs
                    .tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(map));
                call.send().await.map_err(aws("TagResource", arn))?;
            }
            ArnMap::ApiGateway(arn) => {
                let call = ctx
                    .aws
                    .apigateway
                    .tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(map));
                call.send().await.map_err(aws("TagResource", arn))?;
            }
        }
        Ok(())
    }
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
