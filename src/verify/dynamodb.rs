//! The transactions table: point-in-time recovery on (DynamoDB.2).

use super::{Check, Control, Read, Target, read};
use crate::data::dynamodb_table;
use crate::engine::Service;
use aws_sdk_dynamodb::types::PointInTimeRecoveryStatus;

pub const PITR: Control = Control::new("DynamoDB point-in-time recovery is on", Some("DynamoDB.2"));

pub async fn checks(t: &Target) -> Vec<Check> {
    let Some(rec) = t.record(dynamodb_table::ADDR) else {
        return vec![PITR.fail(dynamodb_table::ADDR, "not in the state file")];
    };
    let table = rec.id.as_str();
    let call = t
        .aws
        .dynamodb
        .describe_continuous_backups()
        .table_name(table);
    let out = match read(
        call.send().await,
        Service::DynamoDb,
        "DescribeContinuousBackups",
        table,
    ) {
        Read::Got(out) => out,
        Read::Gone => return vec![PITR.fail(table, "not found")],
        Read::Unreadable(why) => return vec![PITR.fail(table, why)],
    };
    let status = out
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    let check = match status {
        Some(PointInTimeRecoveryStatus::Enabled) => {
            PITR.pass(table, "point-in-time recovery ENABLED")
        }
        Some(s) => PITR.fail(table, format!("point-in-time recovery {}", s.as_str())),
        None => PITR.fail(table, "point-in-time recovery status not reported"),
    };
    vec![check]
}
