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

use super::missing_tags;
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws, required};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_sns::types::Tag;
use std::collections::HashMap;

pub const KIND: &str = "sns_topic";
/// The topic's record: id = topic ARN (`outputs` reads `SNSAlertTopic` from it).
pub const ADDR: &str = "sns_topic.alerts";
pub const PROTOCOL: &str = "email";
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

/// One subscription of the topic as SNS lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// The subscription ARN, or `PendingConfirmation` (or `Deleted`) in its place.
    pub arn: String,
    pub protocol: String,
    pub endpoint: String,
}

impl Subscription {
    fn confirmed(&self) -> bool {
        self.arn.starts_with("arn:")
    }

    fn pending(&self) -> bool {
        self.arn == "PendingConfirmation"
    }
}

/// What to do to the e-mail subscriptions so that `want` is the one address.
#[derive(Debug, Default, PartialEq)]
pub struct SubscriptionPlan {
    /// `want` has no subscription yet, pending or confirmed.
    pub subscribe: bool,
    /// Confirmed e-mail subscriptions of other addresses: (ARN, address).
    pub unsubscribe: Vec<(String, String)>,
    /// Pending e-mail subscriptions of other addresses: they cannot be removed yet.
    pub pending_elsewhere: Vec<String>,
}

/// E-mail addresses compare without regard to case: the same mailbox in practice, and a
/// second subscription would mean a second copy of every alert.
fn same_address(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub fn plan_subscriptions(subs: &[Subscription], want: &str) -> SubscriptionPlan {
    let mut plan = SubscriptionPlan {
        subscribe: true,
        ..Default::default()
    };
    for s in subs.iter().filter(|s| s.protocol == PROTOCOL) {
        if same_address(&s.endpoint, want) {
            if s.confirmed() || s.pending() {
                plan.subscribe = false;
            }
        } else if s.confirmed() {
            plan.unsubscribe.push((s.arn.clone(), s.endpoint.clone()));
        } else if s.pending() {
            plan.pending_elsewhere.push(s.endpoint.clone());
        }
    }
    plan
}

fn topic_name(ctx: &Ctx) -> String {
    ctx.name("alerts")
}

/// The topic's attributes, or `None` when there is no such topic.
async fn attributes(ctx: &Ctx, arn: &str) -> Result<Option<HashMap<String, String>>> {
    match ctx
        .aws
        .sns
        .get_topic_attributes()
        .topic_arn(arn)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.attributes().cloned().unwrap_or_default())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetTopicAttributes", arn)(e)),
    }
}

/// The ARN of the account's topic called `name` in this region, if any.
async fn arn_by_name(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    let mut pages = ctx.aws.sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListTopics", name))?;
        if let Some(arn) = page
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|arn| arn.rsplit(':').next() == Some(name))
        {
            return Ok(Some(arn.to_string()));
        }
    }
    Ok(None)
}

/// By the ARN in state, else by name: (ARN, attributes, found through state).
async fn find(ctx: &Ctx) -> Result<Option<(String, HashMap<String, String>, bool)>> {
    if let Some(arn) = ctx.state.id(ADDR)
        && let Some(attrs) = attributes(ctx, &arn).await?
    {
        return Ok(Some((arn, attrs, true)));
    }
    let name = topic_name(ctx);
    let Some(arn) = arn_by_name(ctx, &name).await? else {
        return Ok(None);
    };
    Ok(attributes(ctx, &arn)
        .await?
        .map(|attrs| (arn, attrs, false)))
}

async fn tags(ctx: &Ctx, arn: &str) -> Result<Vec<(String, String)>> {
    let out = ctx
        .aws
        .sns
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws("ListTagsForResource", arn))?;
    Ok(out
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect())
}

fn sns_tags(pairs: Vec<(String, String)>) -> Result<Vec<Tag>> {
    pairs
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(format!("building SNS tags: {e}")))
}

/// Checks ownership and puts back missing standard tags; true when it tagged.
async fn check_tags(ctx: &Ctx, arn: &str) -> Result<bool> {
    let have = tags(ctx, arn).await?;
    let pairs = || have.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    ctx.check_owned(&format!("SNS topic {arn}"), pairs())?;
    let missing = missing_tags(&ctx.env, pairs());
    let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
    if missing.is_empty() || !ctx.apply(ADDR, "tags", format!("missing {}", keys.join(", ")), "set")
    {
        return Ok(false);
    }
    ctx.aws
        .sns
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(sns_tags(missing)?))
        .send()
        .await
        .map_err(aws("TagResource", arn))?;
    Ok(true)
}

async fn subscriptions(ctx: &Ctx, topic: &str) -> Result<Vec<Subscription>> {
    let mut subs = Vec::new();
    let mut pages = ctx
        .aws
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListSubscriptionsByTopic", topic))?;
        subs.extend(page.subscriptions().iter().map(|s| Subscription {
            arn: s.subscription_arn().unwrap_or_default().to_string(),
            protocol: s.protocol().unwrap_or_default().to_string(),
            endpoint: s.endpoint().unwrap_or_default().to_string(),
        }));
    }
    Ok(subs)
}

/// Makes `alert_email` the topic's one e-mail subscription; true when it changed any.
async fn converge_subscriptions(ctx: &Ctx, topic: &str) -> Result<bool> {
    let sns = &ctx.aws.sns;
    let want = &ctx.settings.alert_email;
    let plan = plan_subscriptions(&subscriptions(ctx, topic).await?, want);
    if plan.subscribe && ctx.apply(ADDR, "e-mail subscription", "none", want) {
        sns.subscribe()
            .topic_arn(topic)
            .protocol(PROTOCOL)
            .endpoint(want)
            .send()
            .await
            .map_err(aws("Subscribe", format!("{want} to {topic}")))?;
        tracing::info!(
            "subscribed {want} to {topic}: alerts reach it once the recipient confirms the mail SNS sends"
        );
    }
    for (arn, address) in &plan.unsubscribe {
        if !ctx.apply(
            ADDR,
            &format!("subscription {address}"),
            "subscribed",
            "unsubscribed",
        ) {
            continue;
        }
        match sns.unsubscribe().subscription_arn(arn).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("Unsubscribe", format!("{address} ({arn})"))(e)),
        }
        tracing::info!("unsubscribed {address} from {topic} (alert_email is now {want})");
    }
    for address in &plan.pending_elsewhere {
        tracing::warn!(
            "{address} still has a subscription to {topic} pending confirmation: SNS gives it no ARN to unsubscribe with and deletes it after 48 hours unconfirmed; if it is confirmed before, the next `payctl up` unsubscribes it"
        );
    }
    Ok(plan.subscribe || !plan.unsubscribe.is_empty())
}

#[async_trait]
impl Resource for AlertTopic {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[kms_key::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let sns = &ctx.aws.sns;
        let name = topic_name(ctx);
        let key_addr = kms_key::address(kms_key::SNS);
        let key_arn = ctx
            .state
            .get(&key_addr)
            .and_then(|r| r.arn)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{key_addr} is not in the state file; run `payctl up` again"
                ))
            })?;
        let (arn, kms_now, policy_now, mut change) = match find(ctx).await? {
            Some((arn, attrs, from_state)) => {
                let retagged = check_tags(ctx, &arn).await?;
                let change = match (from_state, retagged) {
                    (false, _) => Change::Adopted,
                    (true, true) => Change::Updated,
                    (true, false) => Change::Unchanged,
                };
                let policy = attrs.get(POLICY_ATTR).cloned();
                (arn, attrs.get(KMS_ATTR).cloned(), policy, change)
            }
            None => {
                if !ctx.would_create(format!("{ADDR} ({name})")) {
                    return Ok(());
                }
                let out = sns
                    .create_topic()
                    .name(&name)
                    .attributes(KMS_ATTR, &key_arn)
                    .set_tags(Some(sns_tags(ctx.tags())?))
                    .send()
                    .await
                    .map_err(aws("CreateTopic", &name))?;
                let arn = required(out.topic_arn(), "topic ARN")?;
                (arn, Some(key_arn.clone()), None, Change::Created)
            }
        };
        ctx.record(
            ADDR,
            Record::new(KIND, &arn)
                .arn(&arn)
                .attr("name", &name)
                .attr("kms_key", &key_arn),
        )
        .await?;
        let mut updated = false;
        if kms_now.as_deref() != Some(key_arn.as_str())
            && ctx.apply(
                ADDR,
                "KMS key",
                kms_now.as_deref().unwrap_or("none"),
                &key_arn,
            )
        {
            tracing::info!("SNS topic {name}: encrypting with {key_arn}");
            sns.set_topic_attributes()
                .topic_arn(&arn)
                .attribute_name(KMS_ATTR)
                .attribute_value(&key_arn)
                .send()
                .await
                .map_err(aws("SetTopicAttributes", &name))?;
            updated = true;
        }
        let want = topic_policy(&arn, &ctx.account_id, &ctx.region, &ctx.env);
        if !kms_key::same_policy(policy_now.as_deref(), &want)
            && ctx.apply(
                ADDR,
                "topic policy",
                if policy_now.is_some() {
                    "other"
                } else {
                    "none"
                },
                "this account and its alarms only",
            )
        {
            sns.set_topic_attributes()
                .topic_arn(&arn)
                .attribute_name(POLICY_ATTR)
                .attribute_value(want.to_string())
                .send()
                .await
                .map_err(aws("SetTopicAttributes", &name))?;
            updated = true;
        }
        updated |= converge_subscriptions(ctx, &arn).await?;
        if updated && change == Change::Unchanged {
            change = Change::Updated;
        }
        ctx.report.note(change, format!("{ADDR} {arn}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some((arn, _, _)) = find(ctx).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        let have = tags(ctx, &arn).await?;
        ctx.check_owned(
            &format!("SNS topic {arn}"),
            have.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        match ctx.aws.sns.delete_topic().topic_arn(&arn).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("DeleteTopic", &arn)(e)),
        }
        ctx.forget(ADDR).await?;
        ctx.report.note(Change::Deleted, format!("{ADDR} {arn}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(arn: &str, protocol: &str, endpoint: &str) -> Subscription {
        Subscription {
            arn: arn.into(),
            protocol: protocol.into(),
            endpoint: endpoint.into(),
        }
    }

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

    #[test]
    fn a_new_topic_gets_one_subscription() {
        let plan = plan_subscriptions(&[], "ops@company.com");
        assert_eq!(
            plan,
            SubscriptionPlan {
                subscribe: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn an_address_pending_or_confirmed_is_not_subscribed_twice() {
        for arn in [
            "PendingConfirmation",
            "arn:aws:sns:us-east-1:1:payment-alerts-dev:abc",
        ] {
            let plan =
                plan_subscriptions(&[sub(arn, "email", "Ops@Company.com")], "ops@company.com");
            assert_eq!(plan, SubscriptionPlan::default(), "{arn}");
        }
        // A subscription being deleted does not count.
        let plan = plan_subscriptions(
            &[sub("Deleted", "email", "ops@company.com")],
            "ops@company.com",
        );
        assert!(plan.subscribe);
    }

    #[test]
    fn a_changed_address_moves_the_subscription() {
        let subs = [
            sub("arn:aws:sns:r:1:t:old", "email", "old@company.com"),
            sub("PendingConfirmation", "email", "typo@company.com"),
            sub(
                "arn:aws:sns:r:1:t:hook",
                "https",
                "https://hooks.example.com/x",
            ),
            sub("arn:aws:sns:r:1:t:json", "email-json", "json@company.com"),
        ];
        let plan = plan_subscriptions(&subs, "new@company.com");
        assert!(plan.subscribe);
        assert_eq!(
            plan.unsubscribe,
            [(
                "arn:aws:sns:r:1:t:old".to_string(),
                "old@company.com".to_string()
            )]
        );
        assert_eq!(plan.pending_elsewhere, ["typo@company.com"]);

        // Once the new address is there, only the old confirmed one still goes.
        let mut subs = subs.to_vec();
        subs.push(sub("PendingConfirmation", "email", "new@company.com"));
        let plan = plan_subscriptions(&subs, "new@company.com");
        assert!(!plan.subscribe);
        assert_eq!(plan.unsubscribe.len(), 1);
    }
}
