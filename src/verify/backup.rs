//! AWS Backup, in production: the database and the table are protected by the stack's
//! backup plan (Security Hub's NIST 800-53 controls RDS.26 and DynamoDB.4, "protected by
//! a backup plan"), whose rule keeps recovery points at least 35 days, in a vault
//! encrypted with the stack's RDS key. `N/A` outside production.

use super::{Check, Control, Read, Target, fail_all, is_key, read};
use crate::backup::{plan, selection, vault};
use crate::data::{dynamodb_table, rds_instance};
use crate::engine::Service;
use crate::security::kms_key;

pub const DB_PROTECTED: Control = Control::new(
    "RDS instance is protected by the stack's backup plan",
    Some("RDS.26"),
);
pub const TABLE_PROTECTED: Control = Control::new(
    "DynamoDB table is protected by the stack's backup plan",
    Some("DynamoDB.4"),
);
pub const RETENTION: Control = Control::new(
    "Backup plan runs daily and keeps recovery points 35 days",
    None,
);
pub const VAULT_KEY: Control =
    Control::new("Backup vault is encrypted with the stack's RDS key", None);

const ALL: [Control; 4] = [DB_PROTECTED, TABLE_PROTECTED, RETENTION, VAULT_KEY];

pub async fn checks(t: &Target) -> Vec<Check> {
    if !t.settings.production {
        return ALL
            .iter()
            .map(|c| c.not_applicable(plan::ADDR, "AWS Backup protects production environments"))
            .collect();
    }
    let (selected, retention, key) = tokio::join!(selected(t), retention(t), vault_key(t));
    let mut checks = selected;
    checks.extend([retention, key]);
    checks
}

/// The resources the stack's selection names, checked against the database and table.
async fn selected(t: &Target) -> Vec<Check> {
    let both = [DB_PROTECTED, TABLE_PROTECTED];
    let (Some(sel), Some(plan)) = (t.record(selection::ADDR), t.record(plan::ADDR)) else {
        return fail_all(
            &both,
            selection::ADDR,
            "no backup plan or selection in the state file",
        );
    };
    let call = t.aws.backup.get_backup_selection().backup_plan_id(&plan.id);
    let out = call.selection_id(&sel.id).send().await;
    let resources = match read(out, Service::Backup, "GetBackupSelection", &sel.id) {
        Read::Got(out) => out
            .backup_selection()
            .map(|s| s.resources().to_vec())
            .unwrap_or_default(),
        Read::Gone => return fail_all(&both, &sel.id, "the selection is not found"),
        Read::Unreadable(why) => return fail_all(&both, &sel.id, &why),
    };
    [
        (DB_PROTECTED, rds_instance::ADDR),
        (TABLE_PROTECTED, dynamodb_table::ADDR),
    ]
    .into_iter()
    .map(
        |(control, addr)| match t.record(addr).and_then(|r| r.arn.clone()) {
            None => control.fail(addr, "not in the state file"),
            Some(arn) => control.judge(
                &arn,
                resources.contains(&arn),
                format!("selected by {} of plan {}", sel.id, plan.id),
                "not in the stack's backup selection",
            ),
        },
    )
    .collect()
}

async fn retention(t: &Target) -> Check {
    let Some(rec) = t.record(plan::ADDR) else {
        return RETENTION.fail(plan::ADDR, "not in the state file");
    };
    let out = t
        .aws
        .backup
        .get_backup_plan()
        .backup_plan_id(&rec.id)
        .send()
        .await;
    let out = match read(out, Service::Backup, "GetBackupPlan", &rec.id) {
        Read::Got(out) if out.deletion_date().is_none() => out,
        Read::Got(_) | Read::Gone => return RETENTION.fail(&rec.id, "not found"),
        Read::Unreadable(why) => return RETENTION.fail(&rec.id, why),
    };
    let rules = out.backup_plan().map(|p| p.rules()).unwrap_or_default();
    let daily = rules.iter().any(|r| {
        r.schedule_expression() == Some(plan::SCHEDULE)
            && r.lifecycle()
                .and_then(|l| l.delete_after_days())
                .is_some_and(|d| d >= plan::RETENTION_DAYS)
    });
    RETENTION.judge(
        &rec.id,
        daily,
        format!(
            "{} daily at 03:00 UTC, kept {} days",
            plan::RULE,
            plan::RETENTION_DAYS
        ),
        "no rule runs daily and keeps recovery points 35 days",
    )
}

async fn vault_key(t: &Target) -> Check {
    let Some(rec) = t.record(vault::ADDR) else {
        return VAULT_KEY.fail(vault::ADDR, "not in the state file");
    };
    let Some(key) = t.record(&kms_key::address("rds")) else {
        return VAULT_KEY.fail(
            &rec.id,
            "the RDS key (kms_key.rds) is not in the state file",
        );
    };
    let out = t
        .aws
        .backup
        .describe_backup_vault()
        .backup_vault_name(&rec.id)
        .send()
        .await;
    match read(out, Service::Backup, "DescribeBackupVault", &rec.id) {
        Read::Got(out) => match out.encryption_key_arn() {
            Some(id) if is_key(id, key) => VAULT_KEY.pass(&rec.id, format!("encrypted with {id}")),
            Some(id) => VAULT_KEY.fail(
                &rec.id,
                format!("encrypted with {id}, not the stack's RDS key"),
            ),
            None => VAULT_KEY.fail(&rec.id, "no encryption key reported"),
        },
        Read::Gone => VAULT_KEY.fail(&rec.id, "not found"),
        Read::Unreadable(why) => VAULT_KEY.fail(&rec.id, why),
    }
}
