//! Not a resource kind: the final on-demand backup that a production `down` makes of the
//! transactions table before deleting it (point-in-time recovery goes with the table).
//!
//! The backup `payment-transactions-<env>-final-<YYYYmmdd-HHMMSS>` (UTC; DynamoDB backup
//! names allow letters, digits, `_`, `.` and `-`) is recorded in the state as soon as
//! DynamoDB accepts it (`dynamodb_backup.<name>`), then waited for until it is
//! `AVAILABLE`. Only then may the table go: a backup that cannot be made, or that ends in
//! any other state, stops the deletion of the table with
//! [`Error::FinalBackupFailed`], and the table and its data are left as they were.

use crate::engine::Ctx;
use crate::engine::report::Kept;
use crate::error::{Error, Result};
use crate::state::Record;
use crate::waiter::{Status, Wait, wait_for};
use aws_sdk_dynamodb::types::BackupStatus;

/// The kind of the state records of kept backups (`dynamodb_backup.<name>`).
pub const KIND: &str = "dynamodb_backup";
/// On-demand backups finish in seconds to minutes whatever the table's size (AWS: "the
/// backup and restore process completes in seconds regardless of table size").
const WAIT: Wait = Wait::minutes(30);

/// `<table>-final-<YYYYmmdd-HHMMSS>` for the time `at` (UTC).
pub fn name(table: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{table}-final-{}", at.format("%Y%m%d-%H%M%S"))
}

/// Makes the final backup of `table`, waits until it is available, and lists it among
/// the kept things; an error means the table must not be deleted.
pub async fn make(ctx: &Ctx, table: &str) -> Result<()> {
    let backup = name(table, chrono::Utc::now());
    let failed = |reason: String| Error::FinalBackupFailed {
        table: format!("DynamoDB table {table}"),
        backup: backup.clone(),
        reason,
    };
    let out = ctx
        .aws
        .dynamodb
        .create_backup()
        .table_name(table)
        .backup_name(&backup)
        .send()
        .await
        .map_err(|e| {
            failed(format!(
                "could not be made ({})",
                crate::error::aws("CreateBackup", table)(e)
            ))
        })?;
    let arn = out
        .backup_details()
        .map(|d| d.backup_arn().to_string())
        .ok_or_else(|| failed("was not described by CreateBackup".into()))?;
    let addr = format!("{KIND}.{backup}");
    ctx.record(
        &addr,
        Record::new(KIND, &backup).arn(&arn).attr("table", table),
    )
    .await?;
    wait_for(
        &format!("DynamoDB backup {backup} to be available"),
        WAIT,
        || async {
            let out = ctx
                .aws
                .dynamodb
                .describe_backup()
                .backup_arn(&arn)
                .send()
                .await
                .map_err(crate::error::aws("DescribeBackup", &backup))?;
            let status = out
                .backup_description()
                .and_then(|d| d.backup_details())
                .map(|d| d.backup_status().clone());
            match status {
                Some(BackupStatus::Available) => Ok(Status::Ready(())),
                Some(BackupStatus::Creating) => Ok(Status::Pending("CREATING".into())),
                other => Err(failed(format!(
                    "ended {}",
                    other.map_or("without a status".to_string(), |s| s.as_str().to_string())
                ))),
            }
        },
    )
    .await
    .map_err(|e| match e {
        e @ (Error::FinalBackupFailed { .. } | Error::Interrupted(_)) => e,
        other => failed(format!("did not become available ({other})")),
    })?;
    ctx.report.keep(
        &addr,
        Kept {
            what: format!("DynamoDB backup {backup} of table {table}"),
            id: arn.clone(),
            why: "the last copy of the transactions table (its point-in-time recovery goes with it)"
                .into(),
            restore: format!(
                "before the next `payctl up --env {env}`: `aws dynamodb restore-table-from-backup --target-table-name {table} --backup-arn {arn}`, tag the table ManagedBy=payctl and Environment={env}, and `payctl up` adopts it",
                env = ctx.env
            ),
            remove: format!("`aws dynamodb delete-backup --backup-arn {arn}`"),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_name_carries_the_utc_time_in_characters_dynamodb_allows() {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 12, 6, 9, 5, 7)
            .single()
            .unwrap();
        let n = name("payment-transactions-prod", at);
        assert_eq!(n, "payment-transactions-prod-final-20261206-090507");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        );
        assert!((3..=255).contains(&n.len()));
    }
}
