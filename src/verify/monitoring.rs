//! Logs and alarms: every log group of the stack keeps its events at least the
//! environment's `log_retention_days` (CloudWatch.16, whose default asks for 365 days; a
//! production environment keeps 365, PCI DSS 10.5.1) and is encrypted with the stack's
//! logs key; every alarm of the stack has an action for the ALARM state (CloudWatch.15)
//! and its actions enabled (CloudWatch.17).
//!
//! Only the groups payctl makes (the state's `log_group.*`) are checked: the groups
//! that AWS services make themselves (API Gateway's execution log, the RDS log export)
//! are not the stack's records.

use super::{Check, Control, Target, fail_all, is_key, unreadable};
use crate::compute::log_group;
use crate::monitoring::alarm;
use crate::security::kms_key;
use futures::future::join_all;

pub const LOG_RETENTION: Control = Control::new(
    "CloudWatch log group has a retention period",
    Some("CloudWatch.16"),
);
pub const LOG_KEY: Control = Control::new(
    "CloudWatch log group is encrypted with the stack's logs key",
    None,
);
pub const ALARM_ACTIONS: Control = Control::new(
    "CloudWatch alarm has an action for the ALARM state",
    Some("CloudWatch.15"),
);
pub const ACTIONS_ENABLED: Control = Control::new(
    "CloudWatch alarm actions are enabled",
    Some("CloudWatch.17"),
);

pub async fn checks(t: &Target) -> Vec<Check> {
    let (mut logs, alarms) = tokio::join!(log_groups(t), alarms(t));
    logs.extend(alarms);
    logs
}

async fn log_groups(t: &Target) -> Vec<Check> {
    let groups = t.of_kind(log_group::KIND);
    if groups.is_empty() {
        return fail_all(
            &[LOG_RETENTION, LOG_KEY],
            "log_group.*",
            "no log group in the state file",
        );
    }
    let key = t.record(&kms_key::address(kms_key::LOGS));
    let want = t.settings.log_retention_days;
    let reads = groups.into_iter().map(|(_, rec)| async move {
        let name = rec.id.as_str();
        let call = t.aws.logs.describe_log_groups().log_group_name_prefix(name);
        let out = call.send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let why = unreadable("DescribeLogGroups", name, e);
                return fail_all(&[LOG_RETENTION, LOG_KEY], name, &why);
            }
        };
        let Some(group) = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
        else {
            return fail_all(&[LOG_RETENTION, LOG_KEY], name, "not found");
        };
        let retention = match group.retention_in_days() {
            Some(days) => LOG_RETENTION.judge(
                name,
                days >= want,
                format!("kept {days} days"),
                format!("kept {days} days, fewer than {want}"),
            ),
            None => LOG_RETENTION.fail(name, "no retention: events are kept forever"),
        };
        let encrypted = match (group.kms_key_id(), key) {
            (Some(k), Some(ours)) if is_key(k, ours) => {
                LOG_KEY.pass(name, format!("encrypted with {k}"))
            }
            (Some(k), _) => LOG_KEY.fail(
                name,
                format!("encrypted with {k}, not the stack's logs key"),
            ),
            (None, _) => LOG_KEY.fail(
                name,
                "encrypted with an AWS-owned key, not the stack's logs key",
            ),
        };
        vec![retention, encrypted]
    });
    join_all(reads).await.into_iter().flatten().collect()
}

async fn alarms(t: &Target) -> Vec<Check> {
    let both = [ALARM_ACTIONS, ACTIONS_ENABLED];
    let ours = t.of_kind(alarm::KIND);
    if ours.is_empty() {
        return fail_all(&both, "cloudwatch_alarm.*", "no alarm in the state file");
    }
    let names: Vec<String> = ours.iter().map(|(_, r)| r.id.clone()).collect();
    // DescribeAlarms takes at most 100 names a call; the stack has a handful.
    let mut found = Vec::new();
    for chunk in names.chunks(100) {
        let out = t
            .aws
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .send()
            .await;
        match out {
            Ok(out) => found.extend(out.metric_alarms().iter().cloned()),
            Err(e) => {
                let why = unreadable("DescribeAlarms", "the stack's alarms", e);
                return names
                    .iter()
                    .flat_map(|n| fail_all(&both, n, &why))
                    .collect();
            }
        }
    }
    let mut checks = Vec::new();
    for name in &names {
        let Some(a) = found.iter().find(|a| a.alarm_name() == Some(name.as_str())) else {
            checks.extend(fail_all(&both, name, "not found"));
            continue;
        };
        let actions = a.alarm_actions();
        checks.push(ALARM_ACTIONS.judge(
            name,
            !actions.is_empty(),
            format!("notifies {}", actions.join(", ")),
            "no ALARM action",
        ));
        checks.push(ACTIONS_ENABLED.judge(
            name,
            a.actions_enabled() == Some(true),
            "actions enabled",
            "actions disabled",
        ));
    }
    checks
}
