//! The [`Tagged`] implementations: each service's calls to read and add tags.

use super::{Tagged, Tags};
use crate::engine::Ctx;
use crate::error::{Error, Result, aws};
use async_trait::async_trait;
use std::collections::HashMap;

fn build_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("building tags: {e}"))
}

/// A service whose tags are a list of key/value shapes, read with one call and added
/// with another, both taking the resource's id in one field.
macro_rules! tag_list_service {
    (
        $(#[$doc:meta])* $name:ident, $what:literal, $client:ident,
        read: $list:ident . $id:ident -> $field:ident, $list_op:literal,
        pair: |$t:ident| $pair:expr,
        add: $tag:ident . $tag_id:ident, $tag_op:literal,
        build: |$k:ident, $v:ident| $build:expr $(,)?
    ) => {
        $(#[$doc])*
        pub struct $name<'a>(pub &'a str);

        #[async_trait]
        impl Tagged for $name<'_> {
            fn what(&self) -> String {
                format!(concat!($what, " {}"), self.0)
            }
            async fn read(&self, ctx: &Ctx) -> Result<Tags> {
                let call = ctx.aws.$client.$list().$id(self.0);
                let out = call.send().await.map_err(aws($list_op, self.0))?;
                Ok(out.$field().iter().map(|$t| $pair).collect())
            }
            async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
                let tags = tags.into_iter().map(|($k, $v)| $build);
                let tags = tags.collect::<Result<Vec<_>>>()?;
                let call = ctx.aws.$client.$tag().$tag_id(self.0).set_tags(Some(tags));
                call.send().await.map_err(aws($tag_op, self.0))?;
                Ok(())
            }
        }
    };
}

fn owned(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

tag_list_service! {
    /// An IAM role, by name.
    IamRole, "IAM role", iam,
    read: list_role_tags.role_name -> tags, "ListRoleTags",
    pair: |t| owned(t.key(), t.value()),
    add: tag_role.role_name, "TagRole",
    build: |k, v| aws_sdk_iam::types::Tag::builder().key(k).value(v).build().map_err(build_err),
}

tag_list_service! {
    /// A KMS key, by id or ARN.
    KmsKey, "KMS key", kms,
    read: list_resource_tags.key_id -> tags, "ListResourceTags",
    pair: |t| owned(t.tag_key(), t.tag_value()),
    add: tag_resource.key_id, "TagResource",
    build: |k, v| aws_sdk_kms::types::Tag::builder().tag_key(k).tag_value(v).build().map_err(build_err),
}

tag_list_service! {
    /// An RDS resource (instance, subnet group, snapshot), by ARN.
    Rds, "RDS resource", rds,
    read: list_tags_for_resource.resource_name -> tag_list, "ListTagsForResource",
    pair: |t| owned(t.key().unwrap_or_default(), t.value().unwrap_or_default()),
    add: add_tags_to_resource.resource_name, "AddTagsToResource",
    build: |k, v| Ok(aws_sdk_rds::types::Tag::builder().key(k).value(v).build()),
}

tag_list_service! {
    /// A DynamoDB table, by ARN.
    DynamoDb, "DynamoDB table", dynamodb,
    read: list_tags_of_resource.resource_arn -> tags, "ListTagsOfResource",
    pair: |t| owned(t.key(), t.value()),
    add: tag_resource.resource_arn, "TagResource",
    build: |k, v| aws_sdk_dynamodb::types::Tag::builder().key(k).value(v).build().map_err(build_err),
}

tag_list_service! {
    /// An SNS topic, by ARN.
    SnsTopic, "SNS topic", sns,
    read: list_tags_for_resource.resource_arn -> tags, "ListTagsForResource",
    pair: |t| owned(t.key(), t.value()),
    add: tag_resource.resource_arn, "TagResource",
    build: |k, v| aws_sdk_sns::types::Tag::builder().key(k).value(v).build().map_err(build_err),
}

tag_list_service! {
    /// A CloudWatch alarm, by ARN.
    CloudWatch, "CloudWatch alarm", cloudwatch,
    read: list_tags_for_resource.resource_arn -> tags, "ListTagsForResource",
    pair: |t| owned(t.key().unwrap_or_default(), t.value().unwrap_or_default()),
    add: tag_resource.resource_arn, "TagResource",
    build: |k, v| Ok(aws_sdk_cloudwatch::types::Tag::builder().key(k).value(v).build()),
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

/// Services that take tags as a string map and an ARN: Lambda functions, log groups,
/// API Gateway and AWS Backup resources.
pub enum ArnMap<'a> {
    Lambda(&'a str),
    Logs(&'a str),
    ApiGateway(&'a str),
    Backup(&'a str),
}

#[async_trait]
impl Tagged for ArnMap<'_> {
    fn what(&self) -> String {
        match self {
            ArnMap::Lambda(a) => format!("Lambda function {a}"),
            ArnMap::Logs(a) => format!("log group {a}"),
            ArnMap::ApiGateway(a) => format!("API Gateway resource {a}"),
            ArnMap::Backup(a) => format!("AWS Backup resource {a}"),
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
            ArnMap::Backup(arn) => {
                let out = ctx.aws.backup.list_tags().resource_arn(arn).send().await;
                out.map_err(aws("ListTags", arn))?.tags().cloned()
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
            ArnMap::Backup(arn) => {
                let call = ctx.aws.backup.tag_resource().resource_arn(arn);
                let call = call.set_tags(Some(map));
                call.send().await.map_err(aws("TagResource", arn))?;
            }
        }
        Ok(())
    }
}

/// A WAFv2 web ACL, by ARN.
pub struct Wafv2<'a>(pub &'a str);

#[async_trait]
impl Tagged for Wafv2<'_> {
    fn what(&self) -> String {
        format!("WAF web ACL {}", self.0)
    }
    async fn read(&self, ctx: &Ctx) -> Result<Tags> {
        let call = ctx.aws.wafv2.list_tags_for_resource().resource_arn(self.0);
        let out = call
            .send()
            .await
            .map_err(aws("ListTagsForResource", self.0))?;
        let tags = out.tag_info_for_resource().map(|i| i.tag_list());
        Ok(tags
            .unwrap_or_default()
            .iter()
            .map(|t| owned(t.key(), t.value()))
            .collect())
    }
    async fn add(&self, ctx: &Ctx, tags: Tags) -> Result<()> {
        let tags = tags.into_iter().map(|(k, v)| {
            let tag = aws_sdk_wafv2::types::Tag::builder().key(k).value(v);
            tag.build().map_err(build_err)
        });
        let tags = tags.collect::<Result<Vec<_>>>()?;
        let call = ctx.aws.wafv2.tag_resource().resource_arn(self.0);
        let call = call.set_tags(Some(tags));
        call.send().await.map_err(aws("TagResource", self.0))?;
        Ok(())
    }
}
