//! The key policies payctl sets: the SNS key's, which lets CloudWatch alarms of this
//! account and environment publish to the encrypted alert topic, and the logs key's,
//! which lets CloudWatch Logs encrypt this account's log groups. The other keys keep
//! KMS's default policy.

use super::{LOGS, SNS};
use crate::engine::Ctx;

/// The key policy payctl sets, for the keys that do not keep KMS's default one.
pub(super) fn policy(ctx: &Ctx, purpose: &str) -> Option<serde_json::Value> {
    match purpose {
        SNS => Some(sns_key_policy(&ctx.account_id, &ctx.region, &ctx.env)),
        LOGS => Some(logs_key_policy(&ctx.account_id, &ctx.region)),
        _ => None,
    }
}

/// The account root may do everything, as in KMS's default policy, so IAM policies keep
/// working.
fn root(account_id: &str) -> serde_json::Value {
    serde_json::json!({
        "Sid": "EnableIamUserPermissions",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
        "Action": "kms:*",
        "Resource": "*"
    })
}

/// The account root may do everything; CloudWatch Logs of this region may use the key
/// only for log groups of this account: the encryption context it sends names the log
/// group (`kms:EncryptionContext:aws:logs:arn`) ("Encrypt log data in CloudWatch Logs
/// using AWS Key Management Service", step 2,
/// <https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html>).
pub fn logs_key_policy(account_id: &str, region: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "payctl-logs",
        "Statement": [
            root(account_id),
            {
                "Sid": "AllowCloudWatchLogsForThisAccountsLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": format!("logs.{region}.amazonaws.com")},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*"
                ],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn":
                            format!("arn:aws:logs:{region}:{account_id}:log-group:*")
                    }
                }
            }
        ]
    })
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
            root(account_id),
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
