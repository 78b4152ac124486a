//! Audit records written by the audit-logger function.
//!
//! The audit-logger turns every change of a transaction (a stream event)
//! into one [`AuditRecord`], stored as a JSON object under the key returned
//! by [`audit_key`]:
//!
//! ```text
//! audit/<yyyy>/<mm>/<dd>/<transaction_id>/<sequence_number>.json
//! ```
//!
//! The date is the UTC date of the event, month and day zero-padded, so keys
//! sort and can be listed by day. The sequence number (the stream record's
//! sequence number, digits only) makes the key unique per event and makes a
//! re-delivered event overwrite its own record instead of adding a second
//! one. Both path components are validated, so nothing from the input can
//! add `/`, `..` or other characters to the key.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::validate::{IdError, check_id};

/// Longest accepted sequence number, in digits. DynamoDB stream sequence
/// numbers are 21 to 40 digits long.
pub const MAX_SEQUENCE_NUMBER_LEN: usize = 128;

/// Identifiers of the invocation and event an audit record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestIds {
    /// The Lambda invocation's AWS request id.
    pub aws_request_id: String,
    /// The id of the stream event that was audited.
    pub event_id: String,
}

/// One audited change of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The kind of change, e.g. `INSERT` or `MODIFY`.
    pub event_name: String,
    /// The transaction that changed.
    pub transaction_id: String,
    /// Status before the change ([`TransactionStatus`](crate::TransactionStatus)
    /// string), `None` for a new transaction.
    pub old_status: Option<String>,
    /// Status after the change, `None` for a removal.
    pub new_status: Option<String>,
    /// Amount in minor units of `currency`, when known.
    pub amount_minor: Option<i64>,
    /// Uppercase ISO 4217 code, when known.
    pub currency: Option<String>,
    /// When the change happened, RFC 3339 in UTC (see [`format_time`]).
    pub time: String,
    /// Where the record came from.
    pub request_ids: RequestIds,
    /// The stream record's sequence number (digits only).
    pub sequence_number: String,
}

impl AuditRecord {
    /// The S3 key of this record: [`audit_key`] applied to its
    /// `transaction_id`, `sequence_number` and `time`.
    pub fn key(&self) -> Result<String, AuditKeyError> {
        let at = DateTime::parse_from_rfc3339(&self.time)
            .map_err(|_| AuditKeyError::Time)?
            .with_timezone(&Utc);
        audit_key(&self.transaction_id, &self.sequence_number, at)
    }
}

/// The canonical `time` of an [`AuditRecord`]: RFC 3339, UTC, millisecond
/// precision, `Z` suffix (e.g. `2024-03-05T07:08:09.123Z`).
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Why [`audit_key`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    /// The transaction id breaks the id rule.
    #[error("transaction_id {0}")]
    TransactionId(IdError),
    /// The sequence number is empty, too long or not all ASCII digits.
    #[error("sequence_number must be 1 to 128 ASCII digits")]
    SequenceNumber,
    /// The record's `time` is not an RFC 3339 timestamp.
    #[error("time must be an RFC 3339 timestamp")]
    Time,
}

/// The S3 key of an audit record:
/// `audit/<yyyy>/<mm>/<dd>/<transaction_id>/<sequence_number>.json`, with the
/// UTC date of `at`, month and day zero-padded to two digits.
///
/// `transaction_id` must follow [`check_id`]; `sequence_number` must be 1 to
/// [`MAX_SEQUENCE_NUMBER_LEN`] ASCII digits.
pub fn audit_key(
    transaction_id: &str,
    sequence_number: &str,
    at: DateTime<Utc>,
) -> Result<String, AuditKeyError> {
    check_id(transaction_id).map_err(AuditKeyError::TransactionId)?;
    if sequence_number.is_empty()
        || sequence_number.len() > MAX_SEQUENCE_NUMBER_LEN
        || !sequence_number.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AuditKeyError::SequenceNumber);
    }
    Ok(format!(
        "audit/{:04}/{:02}/{:02}/{transaction_id}/{sequence_number}.json",
        at.year(),
        at.month(),
        at.day()
    ))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 30, 15).unwrap()
    }

    #[test]
    fn key_format_is_zero_padded() {
        assert_eq!(
            audit_key("txn_123", "4900000000000000000012", at(2024, 3, 5, 7)).unwrap(),
            "audit/2024/03/05/txn_123/4900000000000000000012.json"
        );
        assert_eq!(
            audit_key("txn_123", "1", at(2025, 12, 31, 23)).unwrap(),
            "audit/2025/12/31/txn_123/1.json"
        );
    }

    #[test]
    fn key_uses_the_utc_date() {
        let late_evening_west = DateTime::parse_from_rfc3339("2024-01-09T22:00:00-05:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            audit_key("t", "7", late_evening_west).unwrap(),
            "audit/2024/01/10/t/7.json"
        );
    }

    #[test]
    fn key_rejects_bad_components() {
        let t = at(2024, 3, 5, 7);
        assert_eq!(
            audit_key("../x", "1", t),
            Err(AuditKeyError::TransactionId(IdError::InvalidCharacter))
        );
        assert_eq!(
            audit_key("a/b", "1", t),
            Err(AuditKeyError::TransactionId(IdError::InvalidCharacter))
        );
        assert_eq!(
            audit_key("", "1", t),
            Err(AuditKeyError::TransactionId(IdError::Empty))
        );
        assert_eq!(
            audit_key(&"a".repeat(65), "1", t),
            Err(AuditKeyError::TransactionId(IdError::TooLong))
        );
        for seq in ["", "12a", "-1", "1.0", " 1", "１２"] {
            assert_eq!(
                audit_key("txn", seq, t),
                Err(AuditKeyError::SequenceNumber),
                "{seq:?}"
            );
        }
        assert_eq!(
            audit_key("txn", &"9".repeat(129), t),
            Err(AuditKeyError::SequenceNumber)
        );
        assert!(audit_key("txn", &"9".repeat(128), t).is_ok());
    }

    fn record() -> AuditRecord {
        AuditRecord {
            event_name: "MODIFY".into(),
            transaction_id: "txn_123".into(),
            old_status: Some("VALIDATED".into()),
            new_status: Some("PROCESSED".into()),
            amount_minor: Some(10_000),
            currency: Some("USD".into()),
            time: format_time(at(2024, 3, 5, 7)),
            request_ids: RequestIds {
                aws_request_id: "req-1".into(),
                event_id: "evt-1".into(),
            },
            sequence_number: "111".into(),
        }
    }

    #[test]
    fn record_serde_shape() {
        let value = serde_json::to_value(record()).unwrap();
        assert_eq!(
            value,
            json!({
                "event_name": "MODIFY",
                "transaction_id": "txn_123",
                "old_status": "VALIDATED",
                "new_status": "PROCESSED",
                "amount_minor": 10000,
                "currency": "USD",
                "time": "2024-03-05T07:30:15.000Z",
                "request_ids": {"aws_request_id": "req-1", "event_id": "evt-1"},
                "sequence_number": "111",
            })
        );
        assert_eq!(
            serde_json::from_value::<AuditRecord>(value).unwrap(),
            record()
        );
    }

    #[test]
    fn new_transaction_has_no_old_status() {
        let mut r = record();
        r.event_name = "INSERT".into();
        r.old_status = None;
        let value = serde_json::to_value(&r).unwrap();
        assert_eq!(value["old_status"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<AuditRecord>(value).unwrap(), r);
    }

    #[test]
    fn record_key() {
        assert_eq!(record().key().unwrap(), "audit/2024/03/05/txn_123/111.json");
        let mut r = record();
        r.time = "yesterday".into();
        assert_eq!(r.key(), Err(AuditKeyError::Time));
    }
}
