//! The retry queue → the processor, as the deployed event source mapping does it: long
//! polls of up to the mapping's batch size, each batch delivered as an SQS event; with
//! partial batch failures only the reported messages stay on the queue, the others are
//! deleted; when the function fails, crashes or times out, the whole batch stays.
//!
//! A message that stays is not touched again: it becomes visible after the queue's
//! visibility timeout (payctl never changes it), and SQS itself moves it to the
//! dead-letter queue once it has been received `maxReceiveCount` times (the queue's
//! redrive policy) — exactly what happens to the messages Lambda's poller leaves.

use super::deployed::QueueSource;
use super::runtime::{Function, Outcome};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Map, Value, json};
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
pub fn event_record(m: &Message, queue_arn: &str, region: &str) -> Value {
    let attributes: Map<String, Value> = m
        .attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
        .collect();
    let message_attributes: Map<String, Value> = m
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({"stringValue": v.string_value(), "dataType": v.data_type(),
                       "stringListValues": [], "binaryListValues": []}),
            )
        })
        .collect();
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body().unwrap_or_default(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": m.md5_of_body().unwrap_or_default(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
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
        let event = json!({"Records": messages
            .iter()
            .map(|m| event_record(m, &self.source.queue_arn, &self.region))
            .collect::<Vec<_>>()});
        let outcome = self.function.invoke(event.to_string().into_bytes()).await;
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
