//! Metrics in CloudWatch's embedded metric format: one JSON log line per event, which
//! CloudWatch Logs turns into a metric (no API call, no extra permission).
//!
//! `Payments` / `LedgerConflicts` (unit Count, dimension `FunctionName`) counts the
//! payments whose ledger row disagrees with the transaction item; payctl's monitoring
//! layer alarms on it. The line carries the transaction id and a fixed reason, never the
//! customer or the amount.

use serde_json::{Value, json};

pub const NAMESPACE: &str = "Payments";
pub const LEDGER_CONFLICTS: &str = "LedgerConflicts";

/// The log line for one ledger conflict.
pub fn ledger_conflict(function_name: &str, transaction_id: &str, timestamp_ms: i64) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": [{"Name": LEDGER_CONFLICTS, "Unit": "Count"}],
            }],
        },
        "FunctionName": function_name,
        LEDGER_CONFLICTS: 1,
        "transaction_id": transaction_id,
        "reason": "ledger_conflict",
    })
}

/// Writes the ledger-conflict metric line to stdout, which Lambda sends to CloudWatch Logs.
pub fn emit_ledger_conflict(transaction_id: &str) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    let now = chrono::Utc::now().timestamp_millis();
    println!("{}", ledger_conflict(&function, transaction_id, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_line_is_one_count_in_payments_by_function_name() {
        let line = ledger_conflict("payments-processor", "txn_9", 1_700_000_000_000);
        assert_eq!(
            line,
            json!({
                "_aws": {"Timestamp": 1_700_000_000_000_i64, "CloudWatchMetrics": [{
                    "Namespace": "Payments", "Dimensions": [["FunctionName"]],
                    "Metrics": [{"Name": "LedgerConflicts", "Unit": "Count"}]}]},
                "FunctionName": "payments-processor",
                "LedgerConflicts": 1,
                "transaction_id": "txn_9",
                "reason": "ledger_conflict"
            })
        );
    }
}
