//! Wire types shared by the payment functions, other than the payment
//! request itself (see [`crate::validate`]).
//!
//! * [`TransactionStatus`]: the lifecycle state stored with a transaction,
//!   serialized as `"VALIDATED"` / `"PROCESSED"`.
//! * [`ValidatedResponse`]: the validator's HTTP 200 body.
//! * [`ProcessRequest`]: the processor's input, `{"transaction_id": "..."}`;
//!   unknown fields are refused and the id must follow
//!   [`check_id`](crate::validate::check_id).
//! * [`RetryMessage`]: the body of a message on the retry queue.
//!
//! Every `transaction_id` deserialized here is checked with the same id rule
//! as the payment request, so a bad id is refused at the edge instead of
//! reaching a database key or an S3 key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::validate::{self, Payment, ValidationErrors};

/// Lifecycle state of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionStatus {
    /// Accepted by the validator, not yet processed.
    Validated,
    /// Processed by the processor.
    Processed,
}

impl TransactionStatus {
    /// The stored / serialized form: `"VALIDATED"` or `"PROCESSED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Validated => "VALIDATED",
            TransactionStatus::Processed => "PROCESSED",
        }
    }
}

impl fmt::Display for TransactionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a [`TransactionStatus`] (matching is exact and
/// case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown transaction status (expected VALIDATED or PROCESSED)")]
pub struct UnknownStatus;

impl FromStr for TransactionStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "VALIDATED" => Ok(TransactionStatus::Validated),
            "PROCESSED" => Ok(TransactionStatus::Processed),
            _ => Err(UnknownStatus),
        }
    }
}

/// The validator's HTTP 200 response body:
/// `{"transaction_id": "txn_123", "status": "VALIDATED", "amount": "100.00", "currency": "USD"}`.
///
/// `amount` is a string holding the canonical decimal
/// ([`Payment::amount_display`]), so clients never see a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatedResponse {
    /// The payment's transaction id.
    pub transaction_id: String,
    /// Always [`TransactionStatus::Validated`] when built with `From<&Payment>`.
    pub status: TransactionStatus,
    /// Canonical decimal amount with exactly the currency's decimal places.
    pub amount: String,
    /// Uppercase ISO 4217 code.
    pub currency: String,
}

impl From<&Payment> for ValidatedResponse {
    fn from(payment: &Payment) -> Self {
        ValidatedResponse {
            transaction_id: payment.transaction_id.clone(),
            status: TransactionStatus::Validated,
            amount: payment.amount_display(),
            currency: payment.currency.clone(),
        }
    }
}

/// The processor's request: `{"transaction_id": "txn_123"}`.
///
/// Deserializing refuses unknown fields and ids that break the id rule. For
/// an HTTP body prefer [`ProcessRequest::from_body`], whose errors have the
/// same shape and no-echo guarantee as the validator's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    /// The transaction to process.
    #[serde(deserialize_with = "validate::deserialize_id")]
    pub transaction_id: String,
}

impl ProcessRequest {
    /// Validates a raw request body (same body-level rules as
    /// [`validate::parse_payment`]: at most 16 KiB, a JSON object, every
    /// problem reported).
    pub fn from_body(body: &[u8]) -> Result<Self, ValidationErrors> {
        let entries = validate::read_object(body)?;
        let (slots, unknown) = validate::split_fields(&entries, &["transaction_id"]);
        let mut errors = Vec::new();
        let transaction_id = validate::id_field("transaction_id", slots[0], &mut errors);
        errors.extend(unknown);
        match transaction_id {
            Some(transaction_id) if errors.is_empty() => Ok(ProcessRequest { transaction_id }),
            _ => Err(ValidationErrors { details: errors }),
        }
    }
}

/// A message on the retry queue: the transaction whose processing is to be
/// retried.
///
/// Unknown fields are *ignored* when deserializing (unlike [`ProcessRequest`])
/// so that a newer producer may add fields, such as an attempt counter,
/// without breaking consumers that are deployed later. The id rule is still
/// enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryMessage {
    /// The transaction to retry.
    #[serde(deserialize_with = "validate::deserialize_id")]
    pub transaction_id: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validate::FieldError;

    #[test]
    fn status_strings() {
        assert_eq!(TransactionStatus::Validated.as_str(), "VALIDATED");
        assert_eq!(TransactionStatus::Processed.as_str(), "PROCESSED");
        assert_eq!(TransactionStatus::Processed.to_string(), "PROCESSED");
        assert_eq!("VALIDATED".parse(), Ok(TransactionStatus::Validated));
        assert_eq!("PROCESSED".parse(), Ok(TransactionStatus::Processed));
        assert_eq!("processed".parse::<TransactionStatus>(), Err(UnknownStatus));
        assert_eq!("".parse::<TransactionStatus>(), Err(UnknownStatus));
    }

    #[test]
    fn status_serde_matches_as_str() {
        for status in [TransactionStatus::Validated, TransactionStatus::Processed] {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, json!(status.as_str()));
            assert_eq!(
                serde_json::from_value::<TransactionStatus>(json).unwrap(),
                status
            );
        }
        assert!(serde_json::from_value::<TransactionStatus>(json!("Validated")).is_err());
    }

    #[test]
    fn validated_response_body() {
        let payment = Payment {
            transaction_id: "txn_123".into(),
            amount_minor: 10_000,
            currency: "USD".into(),
            customer_id: "cust_456".into(),
        };
        let response = ValidatedResponse::from(&payment);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({"transaction_id": "txn_123", "status": "VALIDATED", "amount": "100.00", "currency": "USD"})
        );
        let jpy = Payment {
            amount_minor: 100,
            currency: "JPY".into(),
            ..payment
        };
        assert_eq!(ValidatedResponse::from(&jpy).amount, "100");
    }

    #[test]
    fn process_request_deserialize() {
        let ok: ProcessRequest = serde_json::from_str(r#"{"transaction_id": "txn_1"}"#).unwrap();
        assert_eq!(ok.transaction_id, "txn_1");
        for bad in [
            r#"{"transaction_id": "txn_1", "amount": 5}"#,
            r#"{"transaction_id": "txn 1"}"#,
            r#"{"transaction_id": ""}"#,
            r#"{"transaction_id": 7}"#,
            r#"{}"#,
        ] {
            assert!(
                serde_json::from_str::<ProcessRequest>(bad).is_err(),
                "{bad}"
            );
        }
        let too_long = json!({"transaction_id": "x".repeat(65)});
        assert!(serde_json::from_value::<ProcessRequest>(too_long).is_err());
    }

    #[test]
    fn process_request_from_body_reports_every_problem() {
        assert_eq!(
            ProcessRequest::from_body(br#"{"transaction_id": "txn_1"}"#).unwrap(),
            ProcessRequest {
                transaction_id: "txn_1".into()
            }
        );
        let err = ProcessRequest::from_body(br#"{"transaction_id": "bad id", "force": true}"#)
            .unwrap_err();
        assert_eq!(
            err.details,
            vec![
                FieldError::new(
                    "transaction_id",
                    "must contain only ASCII letters, digits, '_' and '-'"
                ),
                FieldError::new("force", "is not a recognised field"),
            ]
        );
        let err = ProcessRequest::from_body(b"[1]").unwrap_err();
        assert_eq!(err.fields(), vec!["body"]);
        let err = ProcessRequest::from_body(b"{}").unwrap_err();
        assert_eq!(
            err.details,
            vec![FieldError::new("transaction_id", "is required")]
        );
    }

    #[test]
    fn retry_message_round_trip() {
        let msg = RetryMessage {
            transaction_id: "txn_9".into(),
        };
        let text = serde_json::to_string(&msg).unwrap();
        assert_eq!(text, r#"{"transaction_id":"txn_9"}"#);
        assert_eq!(serde_json::from_str::<RetryMessage>(&text).unwrap(), msg);
        // Tolerant of new fields, strict about the id.
        let newer: RetryMessage =
            serde_json::from_str(r#"{"transaction_id": "txn_9", "attempt": 2}"#).unwrap();
        assert_eq!(newer, msg);
        assert!(serde_json::from_str::<RetryMessage>(r#"{"transaction_id": "../etc"}"#).is_err());
    }
}
