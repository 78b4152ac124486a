//! The alert topic `payment-alerts-<env>`, encrypted with the SNS key (`kms_key.sns`,
//! whose policy lets CloudWatch publish), and its e-mail subscription to `alert_email`.
//!
//! The topic's e-mail subscriptions belong to payctl: `alert_email` is the one address
//! (use a distribution list for several people). Subscriptions with other protocols
//! (HTTPS, SQS, Lambda, SMS) are left alone. SNS answers Subscribe for an e-mail address
//! with a subscription "pending confirmation" until the recipient clicks the link SNS
//! sends, and lists it with the ARN `PendingConfirmation`, so:
//! - an address that already has a subscription, pending or confirmed, is not subscribed
//!   again (that would only send another confirmation mail);
//! - when `alert_email` changes, the new address is subscribed and every confirmed
//!   e-mail subscription of another address is unsubscribed. A pending one has no ARN to
//!   unsubscribe with: it is logged and left; SNS deletes unconfirmed subscriptions after
//!   48 hours, and if it is confirmed before that, the next `up` unsubscribes it.
//!
//! The topic's policy lets only this account's principals use it, and CloudWatch publish
//! to it only for this environment's alarms in this account (`aws:SourceAccount`,
//! `aws:SourceArn`: no other account's alarm can use CloudWatch as a confused deputy);
//! an edited policy is put back.
//!
//! `down` deletes the topic, which deletes its subscriptions with it.

mod subscriptions;

pub use subscriptions::{PROTOCOL, Subscription, SubscriptionPlan, plan_subscriptions};

use crate::compute::support::Shown;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_sns::types::Tag;
use serde_json::Value;
use std::collections::HashMap;

pub const KIND: &str = "sns_topic";
/// The topic's record: id = topic ARN (`outputs` reads `SNSAlertTopic` from it).
pub const ADDR: &str = "sns_topic.alerts";
const SERVICE: Service = Service::Sns;
const KMS_ATTR: &str = "KmsMasterKeyId";
const POLICY_ATTR: &str = "Policy";

/// The topic's policy: this account's principals may manage, subscribe to and publish
/// to the topic (the actions of SNS's default policy); CloudWatch may publish only for
/// the environment's alarms in this account.
pub fn topic_policy(
    topic_arn: &str,
    account_id: &str,
    region: &str,
    env: &str,
) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "payctl-alerts",
        "Statement": [
            {
                "Sid": "AccountPrincipals",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
                "Action": [
                    "sns:GetTopicAttributes",
                    "sns:SetTopicAttributes",
                    "sns:AddPermission",
                    "sns:RemovePermission",
                    "sns:DeleteTopic",
                    "sns:Subscribe",
                    "sns:ListSubscriptionsByTopic",
                    "sns:Publish"
                ],
                "Resource": topic_arn
            },
            {
                "Sid": "CloudWatchAlarmsOfThisEnvironment",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": kms_key::alarm_arns(account_id, region, env)}
                }
            }
        ]
    })
}

pub struct AlertTopic;

fn topic_name(ctx: &Ctx) -> String {
    ctx.name("alerts")
}

type Attributes = HashMap<String, String>;

/// The topic's attributes; NotFound is an error of [`SERVICE`].
async fn attributes(ctx: &Ctx, arn: &str) -> Result<Attributes> {
    let sns = &ctx.aws.sns;
    let out = sns.get_topic_attributes().topic_arn(arn).send().await;
    let out = out.map_err(aws("GetTopicAttributes", arn))?;
    Ok(out.attributes().cloned().unwrap_or_default())
}

/// The ARN of the account's topic called `name` in this region, if any.
async fn arn_by_name(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    let mut pages = ctx.aws.sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListTopics", name))?;
        let mut arns = page.topics().iter().filter_map(|t| t.topic_arn());
        if let Some(arn) = arns.find(|arn| arn.rsplit(':').next() == Some(name)) {
            return Ok(Some(arn.to_string()));
        }
    }
    Ok(None)
}

/// The topic (ARN, attributes), by the ARN in state, else by its name (its tags are
/// checked on use).
async fn lookup(ctx: &Ctx) -> Result<Option<Found<(String, Attributes)>>> {
    let by_id = |arn: String| async move {
        let attrs = attributes(ctx, &arn).await?;
        Ok(Some((arn, attrs)))
    };
    let by_name = || async {
        let Some(arn) = arn_by_name(ctx, &topic_name(ctx)).await? else {
            return Ok(None);
        };
        Ok(SERVICE
            .found(attributes(ctx, &arn).await)?
            .map(|a| (arn, a)))
    };
    find(ctx, ADDR, SERVICE, by_id, by_name).await
}

fn sns_tags(pairs: Vec<(String, String)>) -> Result<Vec<Tag>> {
    pairs
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(format!("building SNS tags: {e}")))
}

async fn create(ctx: &Ctx, name: &str, key_arn: &str) -> Result<String> {
    let call = ctx.aws.sns.create_topic().name(name);
    let call = call.attributes(KMS_ATTR, key_arn);
    let out = call
        .set_tags(Some(sns_tags(ctx.tags())?))
        .send()
        .await
        .map_err(aws("CreateTopic", name))?;
    required(out.topic_arn(), "topic ARN")
}

async fn set_attribute(ctx: &Ctx, arn: &str, attribute: &str, value: &str) -> Result<()> {
    let call = ctx.aws.sns.set_topic_attributes().topic_arn(arn);
    let call = call.attribute_name(attribute).attribute_value(value);
    call.send().await.map_err(aws("SetTopicAttributes", arn))?;
    Ok(())
}

/// The settings, as declarations: the KMS key, the topic policy, the one e-mail
/// subscription. True when it wrote.
async fn converge_settings(
    ctx: &Ctx,
    arn: &str,
    attrs: &Attributes,
    key_arn: &str,
) -> Result<bool> {
    let kms_now = attrs.get(KMS_ATTR).map_or("none", String::as_str);
    let write = || async {
        tracing::info!("SNS topic {arn}: encrypting with {key_arn}");
        set_attribute(ctx, arn, KMS_ATTR, key_arn).await
    };
    let mut wrote = ctx
        .converge(ADDR, "KMS key", kms_now, key_arn, write)
        .await?;

    let want = topic_policy(arn, &ctx.account_id, &ctx.region, &ctx.env);
    let policy_now = attrs.get(POLICY_ATTR);
    let have = policy_now.and_then(|p| serde_json::from_str::<Value>(p).ok());
    let shown = if policy_now.is_some() {
        "other"
    } else {
        "none"
    };
    let (have, new) = (
        Shown::new(have, shown),
        Shown::new(Some(want.clone()), "this account and its alarms only"),
    );
    let policy = want.to_string();
    let write = || set_attribute(ctx, arn, POLICY_ATTR, &policy);
    wrote |= ctx.converge(ADDR, "topic policy", have, new, write).await?;

    wrote |= subscriptions::converge_subscriptions(ctx, arn).await?;
    Ok(wrote)
}

#[async_trait]
impl Resource for AlertTopic {
    kind!(KIND, depends_on = [kms_key::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = topic_name(ctx);
        let key_arn = ctx.needed_arn(&kms_key::address(kms_key::SNS))?;
        let (arn, attrs, change) = match lookup(ctx).await? {
            Some(found) => {
                let change = found.change();
                let (arn, attrs) = found.value;
                let retagged = converge_tags(ctx, ADDR, &tags::SnsTopic(&arn), None).await?;
                (arn, attrs, change.updated_if(retagged))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} ({name})")) {
                    return Ok(());
                }
                let arn = create(ctx, &name, &key_arn).await?;
                let attrs = HashMap::from([(KMS_ATTR.to_string(), key_arn.clone())]);
                (arn, attrs, Change::Created)
            }
        };
        let record = Record::new(KIND, &arn).arn(&arn).attr("name", &name);
        ctx.record(ADDR, record.attr("kms_key", &key_arn)).await?;
        let wrote = converge_settings(ctx, &arn, &attrs, &key_arn).await?;
        ctx.report
            .note(change.updated_if(wrote), format!("{ADDR} {arn}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let (arn, _) = found.value;
        tags::ensure_owned(ctx, &tags::SnsTopic(&arn)).await?;
        let delete = || async {
            let call = ctx.aws.sns.delete_topic().topic_arn(&arn);
            call.send().await.map_err(aws("DeleteTopic", &arn))
        };
        ctx.delete_and_forget(ADDR, &arn, SERVICE, delete).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_account_and_its_alarms_may_publish() {
        let topic = "arn:aws:sns:eu-west-1:123456789012:payment-alerts-qa";
        let p = topic_policy(topic, "123456789012", "eu-west-1", "qa");
        let statements = p["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        let account = &statements[0];
        assert_eq!(
            account["Principal"],
            serde_json::json!({"AWS": "arn:aws:iam::123456789012:root"})
        );
        assert_eq!(account["Resource"], topic);
        let cw = &statements[1];
        assert_eq!(
            cw["Principal"],
            serde_json::json!({"Service": "cloudwatch.amazonaws.com"})
        );
        assert_eq!(cw["Action"], "sns:Publish");
        assert_eq!(cw["Resource"], topic);
        assert_eq!(
            cw["Condition"],
            serde_json::json!({
                "StringEquals": {"aws:SourceAccount": "123456789012"},
                "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:payment-*-qa"}
            })
        );
        assert!(statements.iter().all(|s| s["Effect"] == "Allow"));
    }
}
