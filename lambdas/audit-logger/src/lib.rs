//! The audit logger: consumes the transactions table's stream (new and old images) and
//! writes one JSON audit record per change to the audit bucket under
//! `audit/<yyyy>/<mm>/<dd>/<transaction_id>/<sequence-number>.json`.
//!
//! Writes are idempotent per stream record: the key is derived from the record's sequence
//! number and the object is written with `If-None-Match: *`, so a replayed record finds
//! its object already there (412) and counts as done. Records are handled in order; at
//! the first failure the handler stops and reports that record's sequence number as the
//! batch item failure, so Lambda retries from there and no record is dropped silently.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_s3::primitives::ByteStream;
use payments_core::audit::{AuditRecord, RequestIds, audit_key, format_time};
use serde::Deserialize;

pub struct AuditLogger {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// The account that must own the bucket (`AUDIT_BUCKET_OWNER`, the stack's): every
    /// write carries it as `ExpectedBucketOwner`, so a bucket of that name in another
    /// account is never written to (S3 answers 403).
    pub owner: String,
}

/// The bucket owner from `AUDIT_BUCKET_OWNER`: an AWS account id (12 digits).
pub fn bucket_owner(value: Option<&str>) -> Result<String, String> {
    match value {
        Some(v) if v.len() == 12 && v.chars().all(|c| c.is_ascii_digit()) => Ok(v.to_string()),
        Some(v) => Err(format!(
            "AUDIT_BUCKET_OWNER {v:?} is not an AWS account id (12 digits)"
        )),
        None => Err("AUDIT_BUCKET_OWNER is not set".to_string()),
    }
}

/// The item attributes an audit record needs (the rest of the image is ignored).
#[derive(Debug, Default, Deserialize)]
struct Image {
    transaction_id: Option<String>,
    status: Option<String>,
    amount_minor: Option<i64>,
    currency: Option<String>,
}

fn image(item: &serde_dynamo::Item) -> Result<Image, String> {
    if item.is_empty() {
        return Ok(Image::default());
    }
    serde_dynamo::from_item(item.clone()).map_err(|e| format!("unreadable image: {e}"))
}

/// Builds the audit record and its object key for one stream record.
pub fn audit_record(
    record: &EventRecord,
    request_id: &str,
) -> Result<(String, AuditRecord), String> {
    let change = &record.change;
    let (new, old) = (image(&change.new_image)?, image(&change.old_image)?);
    let sequence = change
        .sequence_number
        .clone()
        .ok_or("the stream record has no sequence number")?;
    let transaction_id = new
        .transaction_id
        .clone()
        .or(old.transaction_id.clone())
        .ok_or("the stream record names no transaction_id")?;
    let at = change.approximate_creation_date_time;
    let key = audit_key(&transaction_id, &sequence, at).map_err(|e| e.to_string())?;
    let current = if new.transaction_id.is_some() {
        &new
    } else {
        &old
    };
    let audit = AuditRecord {
        event_name: record.event_name.clone(),
        transaction_id,
        old_status: old.status.clone(),
        new_status: new.status.clone(),
        amount_minor: current.amount_minor,
        currency: current.currency.clone(),
        time: format_time(at),
        request_ids: RequestIds {
            aws_request_id: request_id.to_string(),
            event_id: record.event_id.clone(),
        },
        sequence_number: sequence,
    };
    Ok((key, audit))
}

impl AuditLogger {
    pub async fn handle(&self, event: Event, request_id: &str) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        for record in &event.records {
            if let Err(why) = self.write(record, request_id).await {
                let sequence = record
                    .change
                    .sequence_number
                    .clone()
                    .unwrap_or_else(|| record.event_id.clone());
                tracing::error!(event_id = %record.event_id, sequence = %sequence, "audit record not written: {why}");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence);
                response.batch_item_failures.push(failure);
                break;
            }
        }
        response
    }

    async fn write(&self, record: &EventRecord, request_id: &str) -> Result<(), String> {
        let (key, audit) = audit_record(record, request_id)?;
        let body = serde_json::to_vec(&audit).map_err(|e| e.to_string())?;
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .expected_bucket_owner(&self.owner)
            .key(&key)
            .content_type("application/json")
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match put {
            Ok(_) => {
                tracing::info!(transaction_id = %audit.transaction_id, "audit record written");
                Ok(())
            }
            // Written before (a replayed record): the record is already audited.
            Err(e)
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
                    == Some("PreconditionFailed") =>
            {
                Ok(())
            }
            Err(e) => {
                let text = aws_sdk_s3::error::DisplayErrorContext(e).to_string();
                Err(format!(
                    "PutObject {key}: {}",
                    text.chars().take(300).collect::<String>()
                ))
            }
        }
    }
}
