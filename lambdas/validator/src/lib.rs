//! The validator: `POST /validate`.
//!
//! [`Validator::handle`] takes the raw request body and answers with a status and a JSON
//! body; `main.rs` only adapts it to the API Gateway REST proxy event. A valid payment is
//! stored in the transactions table with status `VALIDATED` by a conditional write
//! (`attribute_not_exists`), so concurrent or repeated requests cannot overwrite each
//! other: repeating the same request answers 200 again with the stored status, and the
//! same `transaction_id` with a different payload answers 409. Only the transaction id is
//! logged, never the request.

use aws_sdk_dynamodb::types::AttributeValue;
use payments_core::model::TransactionStatus;
use payments_core::validate::{Limits, Payment, parse_payment};
use serde_json::{Value, json};

pub struct Validator {
    pub db: aws_sdk_dynamodb::Client,
    pub table: String,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn new(status: u16, body: Value) -> Self {
        Reply { status, body }
    }
}

fn ok_body(p: &Payment, status: &str) -> Value {
    json!({
        "transaction_id": p.transaction_id,
        "status": status,
        "amount": p.amount_display(),
        "currency": p.currency,
    })
}

impl Validator {
    pub async fn handle(&self, body: &[u8]) -> Reply {
        let payment = match parse_payment(body, &self.limits) {
            Ok(p) => p,
            Err(errors) => {
                tracing::info!(
                    problems = errors.details.len(),
                    "rejected an invalid payment request"
                );
                return Reply::new(400, errors.to_body());
            }
        };
        let id = payment.transaction_id.clone();
        let now = chrono::Utc::now().to_rfc3339();
        let validated = TransactionStatus::Validated.as_str();
        let put = self
            .db
            .put_item()
            .table_name(&self.table)
            .item("transaction_id", AttributeValue::S(id.clone()))
            .item("status", AttributeValue::S(validated.to_string()))
            .item(
                "amount_minor",
                AttributeValue::N(payment.amount_minor.to_string()),
            )
            .item("currency", AttributeValue::S(payment.currency.clone()))
            .item(
                "customer_id",
                AttributeValue::S(payment.customer_id.clone()),
            )
            .item("fingerprint", AttributeValue::S(payment.fingerprint()))
            .item("created_at", AttributeValue::S(now.clone()))
            .item("updated_at", AttributeValue::S(now))
            .condition_expression("attribute_not_exists(transaction_id)")
            .send()
            .await;
        match put {
            Ok(_) => {
                tracing::info!(transaction_id = %id, "validated");
                Reply::new(200, ok_body(&payment, validated))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                self.existing(&payment).await
            }
            Err(e) => unavailable(
                &id,
                "PutItem",
                &aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            ),
        }
    }

    /// The id exists: the same payload is an idempotent repeat, another one a conflict.
    async fn existing(&self, payment: &Payment) -> Reply {
        let id = &payment.transaction_id;
        let got = self
            .db
            .get_item()
            .table_name(&self.table)
            .key("transaction_id", AttributeValue::S(id.clone()))
            .consistent_read(true)
            .send()
            .await;
        let item = match got {
            Ok(out) => out.item().cloned().unwrap_or_default(),
            Err(e) => {
                return unavailable(
                    id,
                    "GetItem",
                    &aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
                );
            }
        };
        let text = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        if text("fingerprint") != payment.fingerprint() {
            tracing::info!(transaction_id = %id, "conflicting payload for an existing transaction");
            return Reply::new(
                409,
                json!({"error": "conflict", "message": "this transaction_id was already used with a different payload"}),
            );
        }
        tracing::info!(transaction_id = %id, "repeated request");
        Reply::new(200, ok_body(payment, &text("status")))
    }
}

fn unavailable(id: &str, op: &str, error: &str) -> Reply {
    let error: String = error.chars().take(300).collect();
    tracing::error!(transaction_id = %id, "{op} failed: {error}");
    Reply::new(
        503,
        json!({"error": "unavailable", "message": "the payment store is unavailable; retry later"}),
    )
}
