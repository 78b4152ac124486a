//! The database instance: storage encrypted with the stack's RDS key (RDS.3), not
//! publicly accessible (RDS.2), Multi-AZ (RDS.5) and deletion protection (RDS.8) in
//! production, backups kept at least 30 days (RDS.11; Security Hub's own default
//! minimum is 7, the stack keeps 30), automatic minor version upgrades on (RDS.13).
//!
//! Multi-AZ and deletion protection are required only when the environment is
//! production (`Settings::production`); elsewhere they are reported `N/A`, with the
//! current value in the why.

use super::{Check, Control, Read, Target, fail_all, is_key, read};
use crate::data::rds_instance::{self, BACKUP_RETENTION_DAYS, CA};
use crate::data::rds_parameter_group;
use crate::engine::Service;
use crate::security::kms_key;
use aws_sdk_rds::types::DbInstance;

pub const ENCRYPTED: Control = Control::new(
    "RDS storage is encrypted with the stack's KMS key",
    Some("RDS.3"),
);
pub const PRIVATE: Control = Control::new("RDS instance is not publicly accessible", Some("RDS.2"));
pub const MULTI_AZ: Control = Control::new("RDS instance is Multi-AZ (production)", Some("RDS.5"));
pub const DELETION_PROTECTION: Control =
    Control::new("RDS deletion protection is on (production)", Some("RDS.8"));
pub const BACKUPS: Control = Control::new("RDS backups are kept at least 30 days", Some("RDS.11"));
pub const MINOR_UPGRADES: Control = Control::new(
    "RDS automatic minor version upgrades are on",
    Some("RDS.13"),
);

pub const IAM_AUTH: Control = Control::new("RDS IAM database authentication is on", Some("RDS.10"));
pub const TLS_ENFORCED: Control = Control::new(
    "RDS server refuses connections without TLS (rds.force_ssl = 1, PCI DSS 4.2.1)",
    None,
);
pub const CA_PINNED: Control = Control::new(
    "RDS certificate authority is the pinned rds-ca-rsa2048-g1, in effect",
    None,
);

const ALL: [Control; 9] = [
    ENCRYPTED,
    PRIVATE,
    MULTI_AZ,
    DELETION_PROTECTION,
    BACKUPS,
    MINOR_UPGRADES,
    IAM_AUTH,
    TLS_ENFORCED,
    CA_PINNED,
];

pub async fn checks(t: &Target) -> Vec<Check> {
    let Some(rec) = t.record(rds_instance::ADDR) else {
        return fail_all(&ALL, rds_instance::ADDR, "not in the state file");
    };
    let id = rec.id.as_str();
    let found = t
        .aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await;
    let db = match read(found, Service::Rds, "DescribeDBInstances", id) {
        Read::Got(out) => out.db_instances().first().cloned(),
        Read::Gone => None,
        Read::Unreadable(why) => return fail_all(&ALL, id, &why),
    };
    let Some(db) = db else {
        return fail_all(&ALL, id, "not found");
    };
    let mut checks = judge(t, id, &db);
    checks.push(tls(t, id, &db).await);
    checks
}

/// `rds.force_ssl = 1` in the parameter group the instance runs with, and that group
/// in effect (not `pending-reboot`).
async fn tls(t: &Target, id: &str, db: &DbInstance) -> Check {
    let Some(group) = db.db_parameter_groups().first() else {
        return TLS_ENFORCED.fail(id, "no parameter group reported");
    };
    let name = group.db_parameter_group_name().unwrap_or_default();
    let values = match rds_parameter_group::values(&t.aws.rds, name).await {
        Ok(values) => values,
        Err(e) => return TLS_ENFORCED.fail(id, format!("could not check: {e}")),
    };
    let at = rds_parameter_group::PARAMETERS
        .iter()
        .position(|(p, _)| *p == "rds.force_ssl");
    let force_ssl = at.and_then(|i| values[i].clone());
    let status = group.parameter_apply_status().unwrap_or("unknown");
    match (force_ssl.as_deref(), status) {
        (Some("1"), "in-sync") => TLS_ENFORCED.pass(id, format!("rds.force_ssl = 1 in {name}")),
        (Some("1"), status) => TLS_ENFORCED.fail(
            id,
            format!("rds.force_ssl = 1 in {name}, but the group is {status}: reboot the instance"),
        ),
        (other, _) => TLS_ENFORCED.fail(
            id,
            format!(
                "rds.force_ssl is {} in {name}",
                other.unwrap_or("the engine default")
            ),
        ),
    }
}

fn on_off(v: Option<bool>) -> &'static str {
    if v == Some(true) { "on" } else { "off" }
}

/// The checks of one instance that its description answers.
pub fn judge(t: &Target, id: &str, db: &DbInstance) -> Vec<Check> {
    let key = t.record(&kms_key::address("rds"));
    let encrypted = match (db.storage_encrypted(), db.kms_key_id(), key) {
        (Some(true), Some(k), Some(ours)) if is_key(k, ours) => {
            ENCRYPTED.pass(id, format!("encrypted with {k}"))
        }
        (Some(true), _, None) => {
            ENCRYPTED.fail(id, "the RDS key (kms_key.rds) is not in the state file")
        }
        (Some(true), Some(k), _) => {
            ENCRYPTED.fail(id, format!("encrypted with {k}, not the stack's RDS key"))
        }
        (Some(true), None, _) => ENCRYPTED.fail(id, "encrypted, but with no key reported"),
        _ => ENCRYPTED.fail(id, "storage is not encrypted"),
    };
    let public = db.publicly_accessible() == Some(true);
    let private = PRIVATE.judge(
        id,
        !public,
        "not publicly accessible",
        "publicly accessible",
    );
    let production = t.settings.production;
    let required = |control: Control, value: Option<bool>, what: &str| {
        let why = format!("{what} {}", on_off(value));
        if !production {
            control.not_applicable(id, format!("not required outside production ({why})"))
        } else {
            control.judge(id, value == Some(true), why.clone(), why)
        }
    };
    let multi_az = required(MULTI_AZ, db.multi_az(), "Multi-AZ");
    let protection = required(
        DELETION_PROTECTION,
        db.deletion_protection(),
        "deletion protection",
    );
    let days = db.backup_retention_period().unwrap_or(0);
    let backups = BACKUPS.judge(
        id,
        days >= BACKUP_RETENTION_DAYS,
        format!("backups kept {days} days"),
        format!("backups kept {days} days, fewer than {BACKUP_RETENTION_DAYS}"),
    );
    let on = |control: Control, value: Option<bool>, what: &str| {
        let why = format!("{what} {}", on_off(value));
        control.judge(id, value == Some(true), why.clone(), why)
    };
    let minor = on(
        MINOR_UPGRADES,
        db.auto_minor_version_upgrade(),
        "automatic minor version upgrades",
    );
    let iam = on(
        IAM_AUTH,
        db.iam_database_authentication_enabled(),
        "IAM database authentication",
    );
    let ca = db.ca_certificate_identifier().unwrap_or("unset");
    let pending = db
        .pending_modified_values()
        .and_then(|p| p.ca_certificate_identifier());
    let ca = match pending {
        Some(next) => CA_PINNED.fail(
            id,
            format!("{ca} until the pending {next} is applied (next maintenance window, or `modify-db-instance --apply-immediately`)"),
        ),
        None => CA_PINNED.judge(
            id,
            ca == CA,
            format!("CA {ca}"),
            format!("CA {ca}, not {CA}"),
        ),
    };
    vec![
        encrypted, private, multi_az, protection, backups, minor, iam, ca,
    ]
}
