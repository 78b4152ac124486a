//! The key policies payctl sets: the SNS key's, which lets CloudWatch alarms of this
//! account and environment publish to the encrypted alert topic. The RDS and S3 keys keep
//! KMS's default policy.

use super::SNS;
use crate::engine::Ctx;

/// The key policy payctl sets, for the keys that do not keep KMS's default one.
pub(super) fn policy(ctx: &Ctx, purpose: &str) -> Option<serde_json::Value> {
    (purpose == SNS).then(|| sns_key_policy(&ctx.account_id, &ctx.region, &ctx.env))
}

/// The ARNs of the environment's alarms, present and future (`payment-*-<env>`): the
/// `aws:SourceArn` CloudWatch may act for (confused-deputy protection).
pub fn alarm_arns(account_id: &str, region: &str, env: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{region}:{account_id}:alarm:{}",
        crate::naming::name("*", env)
    )
}

/// The account root may do everything (as in KMS's default policy, so IAM policies keep
/// working); CloudWatch may encrypt and decrypt with the key only when it acts for this
/// account's alarms of this environment (`aws:SourceAccount`, `aws:SourceArn`), which is
/// what publishing an alarm to the encrypted topic needs.
pub fn sns_key_policy(account_id: &str, region: &str, env: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "payctl-sns-alerts",
        "Statement": [
            {
                "Sid": "EnableIamUserPermissions",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "AllowCloudWatchAlarmsToPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": alarm_arns(account_id, region, env)}
                }
            }
        ]
    })
}

/// Whether the policy KMS returned says what `want` says (parsed, so whitespace and key
/// order do not matter; an unparsable policy is different).
pub fn same_policy(have: Option<&str>, want: &serde_json::Value) -> bool {
    have.and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
        .is_some_and(|h| &h == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sns_key_lets_cloudwatch_publish_for_this_account_only() {
        let p = sns_key_policy("123456789012", "eu-west-1", "qa");
        let statements = p["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 2);
        let root = &statements[0];
        assert_eq!(root["Effect"], "Allow");
        assert_eq!(root["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
        assert_eq!(root["Action"], "kms:*");
        let cw = &statements[1];
        assert_eq!(cw["Effect"], "Allow");
        assert_eq!(cw["Principal"]["Service"], "cloudwatch.amazonaws.com");
        assert_eq!(
            cw["Action"],
            serde_json::json!(["kms:Decrypt", "kms:GenerateDataKey*"])
        );
        assert_eq!(
            cw["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
        assert_eq!(
            cw["Condition"]["ArnLike"]["aws:SourceArn"],
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:payment-*-qa"
        );
    }

    #[test]
    fn policies_compare_parsed() {
        let want = sns_key_policy("1", "us-east-1", "dev");
        let reformatted = serde_json::to_string_pretty(&want).unwrap();
        assert!(same_policy(Some(&reformatted), &want));
        let other = |a, r, e| Some(sns_key_policy(a, r, e).to_string());
        assert!(!same_policy(
            other("2", "us-east-1", "dev").as_deref(),
            &want
        ));
        assert!(!same_policy(
            other("1", "us-east-1", "qa").as_deref(),
            &want
        ));
        assert!(!same_policy(Some("not json"), &want));
        assert!(!same_policy(None, &want));
    }
}
