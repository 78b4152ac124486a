//! The retry queue → the processor, as the deployed event source mapping does it: long
//! polls of up to the mapping's batch size, each batch delivered as an SQS event (an
//! `aws_lambda_events` `SqsEvent`, the type the processor deserializes); with
//! partial batch failures only the reported messages stay on the queue, the others are
//! deleted; when the function fails, crashes or times out, the whole batch stays.
//!
//! A message that stays is not touched again: it becomes visible after the queue's
//! visibility timeout (payctl never changes it), and SQS itself moves it to the
//! dead-letter queue once it has been received `maxReceiveCount` times (the queue's
//! redrive policy) — exactly what happens to the messages Lambda's poller leaves.

use super::deployed::QueueSource;
use super::runtime::{Function, Outcome};
use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const LONG_POLL_SECS: i32 = 10;

pub struct QueuePoller {
    pub source: QueueSource,
    pub function: Function,
    pub sqs: aws_sdk_sqs::Client,
    pub region: String,
}

/// One message as a Lambda SQS event record.
pub fn event_record(m: &Message, queue_arn: &str, region: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = m.message_id().map(str::to_string);
    record.receipt_handle = m.receipt_handle().map(str::to_string);
    record.body = Some(m.body().unwrap_or_default().to_string());
    record.md5_of_body = Some(m.md5_of_body().unwrap_or_default().to_string());
    record.md5_of_message_attributes = m.md5_of_message_attributes().map(str::to_string);
    record.attributes = m
        .attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
        .collect();
    record.message_attributes = m
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let mut attribute = SqsMessageAttribute::default();
            attribute.string_value = v.string_value().map(str::to_string);
            attribute.binary_value = v.binary_value().map(|b| {
                let mut data = Base64Data::default();
                data.extend_from_slice(b.as_ref());
                data
            });
            attribute.data_type = Some(v.data_type().to_string());
            (k.clone(), attribute)
        })
        .collect();
    record.event_source = Some("aws:sqs".to_string());
    record.event_source_arn = Some(queue_arn.to_string());
    record.aws_region = Some(region.to_string());
    record
}

/// The SQS event for a batch, as the function receives it.
pub fn event(messages: &[Message], queue_arn: &str, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| event_record(m, queue_arn, region))
        .collect();
    event
}

/// The ids of the messages that failed, by the function's outcome.
pub fn failed_ids(
    messages: &[Message],
    outcome: &Outcome,
    report_failures: bool,
) -> BTreeSet<String> {
    let all = || {
        messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect()
    };
    let Outcome::Response(body) = outcome else {
        return all();
    };
    if !report_failures {
        return BTreeSet::new();
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return all();
    };
    let reported: BTreeSet<String> = v["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_string())
        .collect();
    // An identifier that names no message of the batch fails the whole batch.
    if reported
        .iter()
        .any(|id| !messages.iter().any(|m| m.message_id() == Some(id.as_str())))
    {
        return all();
    }
    reported
}

impl QueuePoller {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let url = self.source.queue_url.clone();
        while !*stop.borrow() {
            let started = Instant::now();
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(self.source.batch_size as i32)
                .wait_time_seconds(LONG_POLL_SECS)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send();
            let out = tokio::select! {
                out = receive => out,
                _ = stop.changed() => break,
            };
            let messages = match out {
                Ok(o) => o.messages().to_vec(),
                Err(e) => {
                    tracing::warn!(
                        "ReceiveMessage {url}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    );
                    Vec::new()
                }
            };
            if messages.is_empty() {
                // An endpoint that answers at once instead of long polling.
                if started.elapsed() < Duration::from_secs(1) {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => break,
                    }
                }
                continue;
            }
            self.deliver(&messages).await;
        }
    }

    async fn deliver(&self, messages: &[Message]) {
        let name = self.function.name().to_string();
        let event = event(messages, &self.source.queue_arn, &self.region);
        let outcome = match serde_json::to_vec(&event) {
            Ok(payload) => self.function.invoke(payload).await,
            // Not reached: the event holds strings and byte vectors only.
            Err(e) => Outcome::NotStarted(format!("the SQS event cannot be written: {e}")),
        };
        let failed = failed_ids(messages, &outcome, self.source.report_failures);
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.message_id().is_some_and(|id| failed.contains(id)))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle().map(str::to_string))
                    .build()
                    .ok()
            })
            .collect();
        let done = entries.len();
        if !entries.is_empty() {
            let deleted = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.source.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            if let Err(e) = deleted {
                tracing::warn!(
                    "DeleteMessageBatch: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                );
            }
        }
        if failed.is_empty() {
            tracing::info!("retry queue: {done} message(s) completed by {name}");
            return;
        }
        let receives = messages
            .iter()
            .filter_map(|m| {
                m.attributes()?
                    .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            })
            .filter_map(|c| c.parse::<u32>().ok())
            .max()
            .unwrap_or(1);
        let why = match &outcome {
            Outcome::Response(_) => "reported as failed".to_string(),
            o => o.describe(),
        };
        let redrive = match self.source.max_receive_count {
            Some(max) => {
                format!("; after {max} receives SQS moves a message to the dead-letter queue")
            }
            None => String::new(),
        };
        tracing::warn!(
            "retry queue: {done} message(s) completed by {name}, {} {why} (receive {receives}); they come back after the {}s visibility timeout{redrive}",
            failed.len(),
            self.source.visibility_timeout.as_secs(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageAttributeValue;

    #[test]
    fn messages_become_the_sqs_event_the_processor_reads() {
        let m = Message::builder()
            .message_id("m-1")
            .receipt_handle("rh-1")
            .body(r#"{"transaction_id":"t1"}"#)
            .md5_of_body("md5")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("retry")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![0xff, 0x01]))
                    .build()
                    .unwrap(),
            )
            .build();
        let arn = "arn:aws:sqs:us-east-1:123456789012:payment-retry-dev";
        let v = serde_json::to_value(event(&[m], arn, "us-east-1")).unwrap();
        let r = &v["Records"][0];
        assert_eq!(r["messageId"], "m-1");
        assert_eq!(r["receiptHandle"], "rh-1");
        assert_eq!(r["body"], r#"{"transaction_id":"t1"}"#);
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "3");
        assert_eq!(r["messageAttributes"]["kind"]["stringValue"], "retry");
        assert_eq!(r["messageAttributes"]["kind"]["dataType"], "String");
        assert_eq!(r["messageAttributes"]["raw"]["binaryValue"], "/wE=");
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(r["eventSourceARN"], arn);
        assert_eq!(r["awsRegion"], "us-east-1");
        let back: SqsEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back.records[0].message_id.as_deref(), Some("m-1"));
    }
}
