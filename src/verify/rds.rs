//! The database instance: storage encrypted with the stack's RDS key (RDS.3), not
//! publicly accessible (RDS.2), Multi-AZ (RDS.5) and deletion protection (RDS.8) in
//! production, backups kept at least 30 days (RDS.11; Security Hub's own default
//! minimum is 7, the stack keeps 30), automatic minor version upgrades on (RDS.13).
//!
//! Multi-AZ and deletion protection are required only when the environment is
//! production (`Settings::production`); elsewhere they are reported `N/A`, with the
//! current value in the why.

use super::{Check, Control, Read, Target, fail_all, is_key, read};
use crate::data::rds_instance::{self, BACKUP_RETENTION_DAYS};
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

const ALL: [Control; 6] = [
    ENCRYPTED,
    PRIVATE,
    MULTI_AZ,
    DELETION_PROTECTION,
    BACKUPS,
    MINOR_UPGRADES,
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
    judge(t, id, &db)
}

fn on_off(v: Option<bool>) -> &'static str {
    if v == Some(true) { "on" } else { "off" }
}

/// The six checks of one instance, as described.
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
    let upgrades = db.auto_minor_version_upgrade();
    let minor = MINOR_UPGRADES.judge(
        id,
        upgrades == Some(true),
        "automatic minor version upgrades on",
        "automatic minor version upgrades off",
    );
    vec![encrypted, private, multi_az, protection, backups, minor]
}
