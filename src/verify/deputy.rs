//! Confused-deputy conditions wherever a service is trusted: API Gateway's CloudWatch
//! role, the SNS key's statement for CloudWatch and the alert topic's policy each let a
//! service act only for this account (`aws:SourceAccount`), and the key and the topic
//! only for this account's alarms (`aws:SourceArn`). Every other statement that allows
//! something names this account's own principals. No Security Hub control covers these.

use super::{Check, Control, Target, unreadable};
use crate::api::account;
use crate::security::kms_key;
use serde_json::Value;

pub const ROLE_TRUST: Control = Control::new(
    "API Gateway's CloudWatch role trusts API Gateway for this account only",
    None,
);
pub const KEY_FOR_ALARMS: Control = Control::new(
    "SNS key lets CloudWatch use it for this account's alarms only",
    None,
);
pub const TOPIC_PUBLISHERS: Control = Control::new(
    "SNS topic lets only this account and its alarms publish",
    None,
);

pub async fn checks(t: &Target) -> Vec<Check> {
    let (role, key, topic) = tokio::join!(role(t), key(t), topic(t));
    vec![role, key, topic]
}

/// The ARN prefix of this account's alarms in the environment's region.
fn alarms_prefix(t: &Target) -> String {
    format!(
        "arn:aws:cloudwatch:{}:{}:alarm:",
        t.state.region, t.state.account_id
    )
}

fn judge(control: Control, resource: &str, policy: Option<Value>, t: &Target, arn: bool) -> Check {
    let Some(policy) = policy else {
        return control.fail(resource, "no readable policy");
    };
    let prefix = alarms_prefix(t);
    let problem = problem(&policy, &t.state.account_id, arn.then_some(prefix.as_str()));
    control.judge(
        resource,
        problem.is_none(),
        if arn {
            "services act only for this account's alarms"
        } else {
            "the service acts only for this account"
        },
        problem.unwrap_or_default(),
    )
}

async fn role(t: &Target) -> Check {
    if t.record(account::ADDR).is_none() {
        return ROLE_TRUST.not_applicable(
            account::ROLE_NAME,
            "the account's API Gateway CloudWatch role is not this environment's (another one or someone else set it)",
        );
    }
    let out = t
        .aws
        .iam
        .get_role()
        .role_name(account::ROLE_NAME)
        .send()
        .await;
    match out {
        Ok(out) => {
            let doc = out
                .role()
                .and_then(|r| r.assume_role_policy_document())
                .and_then(crate::compute::role::decode);
            judge(ROLE_TRUST, account::ROLE_NAME, doc, t, false)
        }
        Err(e) => ROLE_TRUST.fail(
            account::ROLE_NAME,
            unreadable("GetRole", account::ROLE_NAME, e),
        ),
    }
}

async fn key(t: &Target) -> Check {
    let addr = kms_key::address(kms_key::SNS);
    let Some(rec) = t.record(&addr) else {
        return KEY_FOR_ALARMS.fail(addr, "not in the state file");
    };
    let out = t
        .aws
        .kms
        .get_key_policy()
        .key_id(&rec.id)
        .policy_name("default")
        .send()
        .await;
    match out {
        Ok(out) => {
            let policy = out.policy().and_then(|p| serde_json::from_str(p).ok());
            judge(KEY_FOR_ALARMS, &rec.id, policy, t, true)
        }
        Err(e) => KEY_FOR_ALARMS.fail(&rec.id, unreadable("GetKeyPolicy", &rec.id, e)),
    }
}

async fn topic(t: &Target) -> Check {
    match t.topic_attributes(TOPIC_PUBLISHERS).await {
        Ok((name, attrs)) => {
            let policy = attrs
                .get("Policy")
                .and_then(|p| serde_json::from_str(p).ok());
            judge(TOPIC_PUBLISHERS, &name, policy, t, true)
        }
        Err(check) => check,
    }
}

/// A policy value as a list of strings (one string or an array of them).
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The values of condition key `key` under any of `operators` (keys compare without
/// regard to case, as IAM's do).
fn condition<'a>(stmt: &'a Value, operators: &[&str], key: &str) -> Vec<&'a str> {
    let Some(conditions) = stmt.get("Condition").and_then(Value::as_object) else {
        return Vec::new();
    };
    conditions
        .iter()
        .filter(|(op, _)| operators.contains(&op.as_str()))
        .filter_map(|(_, keys)| keys.as_object())
        .flat_map(|keys| keys.iter())
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .flat_map(|(_, v)| strings(v))
        .collect()
}

/// Why `policy` lets someone outside `account` use it, if it does. Every `Allow`
/// statement must name either this account's principals, or service principals with
/// `aws:SourceAccount` = `account` and, when `source_arn` is given, an `aws:SourceArn`
/// under that prefix.
pub fn problem(policy: &Value, account: &str, source_arn: Option<&str>) -> Option<String> {
    let statements = match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Some("the policy has no statements".into()),
    };
    let own = |p: &str| p == account || p.starts_with(&format!("arn:aws:iam::{account}:"));
    for (i, stmt) in statements.iter().enumerate() {
        if stmt.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let sid = stmt
            .get("Sid")
            .and_then(Value::as_str)
            .map_or(format!("statement {}", i + 1), str::to_string);
        let principal = stmt.get("Principal").unwrap_or(&Value::Null);
        if principal.as_str() == Some("*") {
            return Some(format!("{sid} allows any principal"));
        }
        let aws = principal.get("AWS").map(strings).unwrap_or_default();
        if let Some(other) = aws.iter().find(|p| !own(p)) {
            return Some(format!("{sid} allows principal {other}"));
        }
        if principal.get("Service").is_none() {
            continue;
        }
        let accounts = condition(stmt, &["StringEquals"], "aws:SourceAccount");
        if accounts != [account] {
            return Some(format!(
                "{sid} trusts a service without aws:SourceAccount = {account}"
            ));
        }
        if let Some(prefix) = source_arn {
            let arns = condition(stmt, &["ArnLike", "ArnEquals"], "aws:SourceArn");
            if arns.is_empty() || arns.iter().any(|a| !a.starts_with(prefix)) {
                return Some(format!(
                    "{sid} trusts a service without an aws:SourceArn under {prefix}"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::sns_topic;
    use serde_json::json;

    const ACCOUNT: &str = "123456789012";
    const PREFIX: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:";

    #[test]
    fn payctl_s_own_policies_pass() {
        let topic = "arn:aws:sns:us-east-1:123456789012:payment-alerts-dev";
        let p = sns_topic::topic_policy(topic, ACCOUNT, "us-east-1", "dev");
        assert_eq!(problem(&p, ACCOUNT, Some(PREFIX)), None);
        let k = kms_key::sns_key_policy(ACCOUNT, "us-east-1", "dev");
        assert_eq!(problem(&k, ACCOUNT, Some(PREFIX)), None);
        assert_eq!(
            problem(&account::trust_policy(ACCOUNT), ACCOUNT, None),
            None
        );
    }

    #[test]
    fn a_service_without_the_conditions_fails() {
        let bare = json!({"Statement": [{"Sid": "Cw", "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish"}]});
        let why = problem(&bare, ACCOUNT, None).unwrap();
        assert!(
            why.contains("Cw") && why.contains("aws:SourceAccount"),
            "{why}"
        );
        let other = json!({"Statement": {"Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": "999999999999"}}}});
        assert!(
            problem(&other, ACCOUNT, None)
                .unwrap()
                .contains("statement 1")
        );
        let no_arn = json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]});
        assert_eq!(problem(&no_arn, ACCOUNT, None), None);
        assert!(
            problem(&no_arn, ACCOUNT, Some(PREFIX))
                .unwrap()
                .contains("aws:SourceArn")
        );
        let elsewhere = json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                          "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:999999999999:alarm:*"}}}]});
        assert!(problem(&elsewhere, ACCOUNT, Some(PREFIX)).is_some());
    }

    #[test]
    fn other_principals_fail_and_denies_are_ignored() {
        let public =
            json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sns:Publish"}]});
        assert!(
            problem(&public, ACCOUNT, None)
                .unwrap()
                .contains("any principal")
        );
        let aws_star = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["*"]}}]});
        assert!(
            problem(&aws_star, ACCOUNT, None)
                .unwrap()
                .contains("principal *")
        );
        let foreign = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}}]});
        assert!(problem(&foreign, ACCOUNT, None).is_some());
        let deny = json!({"Statement": [{"Effect": "Deny", "Principal": "*"}]});
        assert_eq!(problem(&deny, ACCOUNT, None), None);
        assert!(problem(&json!({}), ACCOUNT, None).is_some());
    }
}
