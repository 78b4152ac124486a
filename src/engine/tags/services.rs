//! The [`Tagged`] implementations: each service's calls to read and add tags.

use super::{Tagged, Tags};
use crate::engine::Ctx;
use crate::error::{Error, Result, aws};
use async_trait::async_trait;
use std::collections::HashMap;

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
