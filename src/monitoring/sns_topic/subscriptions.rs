//! The topic's e-mail subscriptions: `alert_email` is the one address (see the topic's
//! documentation in [`super`] for pending and confirmed subscriptions). What to do is a
//! pure [`plan_subscriptions`]; [`converge_subscriptions`] reads and applies it.

use super::ADDR;
use crate::engine::{Ctx, Service};
use crate::error::{Result, aws};

pub const PROTOCOL: &str = "email";

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
pub async fn converge_subscriptions(ctx: &Ctx, topic: &str) -> Result<bool> {
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
        let out = sns.unsubscribe().subscription_arn(arn).send().await;
        let gone = aws("Unsubscribe", format!("{address} ({arn})"));
        Service::Sns.found(out.map_err(gone))?;
        tracing::info!("unsubscribed {address} from {topic} (alert_email is now {want})");
    }
    for address in &plan.pending_elsewhere {
        tracing::warn!(
            "{address} still has a subscription to {topic} pending confirmation: SNS gives it no ARN to unsubscribe with and deletes it after 48 hours unconfirmed; if it is confirmed before, the next `payctl up` unsubscribes it"
        );
    }
    Ok(plan.subscribe || !plan.unsubscribe.is_empty())
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
