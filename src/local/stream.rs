//! The table's stream → the audit logger, as the deployed event source mapping does it:
//! every shard is read with DynamoDB Streams (`GetShardIterator` at the mapping's
//! starting position, then `GetRecords` up to the mapping's batch size), each batch is
//! delivered as a DynamoDB event (an `aws_lambda_events` `dynamodb::Event`, the type the
//! audit logger deserializes), and with partial batch failures only the records from
//! the first reported one onward are delivered again. A batch that keeps failing is
//! retried the mapping's number of times (with backoff) and then recorded on its
//! on-failure destination (the dead-letter queue), so nothing is dropped silently.
//!
//! Positions are kept in memory: a new `payctl local start-api` starts again at the
//! mapping's starting position (the audit logger's writes are idempotent, so a replay
//! writes nothing twice). Failed batches are retried whole rather than bisected.
//!
//! After a batch is delivered, the audit record each change should have produced is
//! read back (`HeadObject`) and named on screen.

use super::deployed::StreamSource;
use super::runtime::{Function, Outcome};
use aws_lambda_events::dynamodb::{Event, EventRecord, StreamRecord, StreamViewType, UserIdentity};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_dynamo::{AttributeValue as EventValue, Item};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::watch;

const IDLE: Duration = Duration::from_millis(500);
const REDESCRIBE: Duration = Duration::from_secs(10);

pub struct StreamPoller {
    pub source: StreamSource,
    pub function: Function,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    /// The audit logger's bucket, to name the records it wrote.
    pub audit_bucket: Option<String>,
    pub region: String,
}

/// A DynamoDB attribute value as Lambda events carry it (`None` for a kind the SDK
/// added after this was written).
pub fn attribute(v: &AttributeValue) -> Option<EventValue> {
    Some(match v {
        AttributeValue::S(s) => EventValue::S(s.clone()),
        AttributeValue::N(n) => EventValue::N(n.clone()),
        AttributeValue::B(b) => EventValue::B(b.as_ref().to_vec()),
        AttributeValue::Ss(v) => EventValue::Ss(v.clone()),
        AttributeValue::Ns(v) => EventValue::Ns(v.clone()),
        AttributeValue::Bs(v) => EventValue::Bs(v.iter().map(|b| b.as_ref().to_vec()).collect()),
        AttributeValue::M(m) => EventValue::M(values(m)),
        AttributeValue::L(l) => EventValue::L(l.iter().filter_map(attribute).collect()),
        AttributeValue::Null(b) => EventValue::Null(*b),
        AttributeValue::Bool(b) => EventValue::Bool(*b),
        _ => return None,
    })
}

fn values(m: &HashMap<String, AttributeValue>) -> HashMap<String, EventValue> {
    m.iter()
        .filter_map(|(k, v)| Some((k.clone(), attribute(v)?)))
        .collect()
}

fn view_type(v: &aws_sdk_dynamodbstreams::types::StreamViewType) -> Option<StreamViewType> {
    use aws_sdk_dynamodbstreams::types::StreamViewType as Sdk;
    Some(match v {
        Sdk::KeysOnly => StreamViewType::KeysOnly,
        Sdk::NewImage => StreamViewType::NewImage,
        Sdk::OldImage => StreamViewType::OldImage,
        Sdk::NewAndOldImages => StreamViewType::NewAndOldImages,
        _ => return None,
    })
}

/// One stream record as a Lambda DynamoDB event record.
pub fn event_record(r: &Record, stream_arn: &str, region: &str) -> EventRecord {
    let mut change = StreamRecord::default();
    if let Some(d) = r.dynamodb() {
        if let Some(at) = d
            .approximate_creation_date_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        {
            change.approximate_creation_date_time = at;
        }
        let item = |m: Option<&HashMap<String, AttributeValue>>| {
            Item::from(values(m.unwrap_or(&HashMap::new())))
        };
        change.keys = item(d.keys());
        change.new_image = item(d.new_image());
        change.old_image = item(d.old_image());
        change.sequence_number = d.sequence_number().map(str::to_string);
        change.size_bytes = d.size_bytes().unwrap_or(0);
        change.stream_view_type = d.stream_view_type().and_then(view_type);
    }
    let mut record = EventRecord::default();
    record.event_id = r.event_id().unwrap_or_default().to_string();
    record.event_name = r
        .event_name()
        .map(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    record.event_version = Some(r.event_version().unwrap_or("1.1").to_string());
    record.event_source = Some(r.event_source().unwrap_or("aws:dynamodb").to_string());
    record.aws_region = r.aws_region().unwrap_or(region).to_string();
    record.change = change;
    record.event_source_arn = Some(stream_arn.to_string());
    record.user_identity = r.user_identity().map(|u| {
        let mut who = UserIdentity::default();
        who.type_ = u.r#type().unwrap_or_default().to_string();
        who.principal_id = u.principal_id().unwrap_or_default().to_string();
        who
    });
    record
}

/// The DynamoDB event for a batch, as the function receives it.
pub fn event(records: &[Record], stream_arn: &str, region: &str) -> Event {
    let mut event = Event::default();
    event.records = records
        .iter()
        .map(|r| event_record(r, stream_arn, region))
        .collect();
    event
}

fn sequence(r: &Record) -> &str {
    r.dynamodb()
        .and_then(|d| d.sequence_number())
        .unwrap_or_default()
}

/// Where delivery should start again after `outcome`: `None` when the batch is done,
/// else the index of the first record to deliver again.
pub fn retry_from(records: &[Record], outcome: &Outcome, report_failures: bool) -> Option<usize> {
    let Outcome::Response(body) = outcome else {
        return Some(0);
    };
    if !report_failures {
        return None;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Some(0);
    };
    let failures: Vec<&str> = v["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default())
        .collect();
    if failures.is_empty() {
        return None;
    }
    // Lambda starts again at the lowest failed sequence number; an identifier that
    // names no record of the batch fails the whole batch.
    failures
        .iter()
        .map(|id| records.iter().position(|r| sequence(r) == *id))
        .try_fold(usize::MAX, |low, p| p.map(|p| low.min(p)))
        .or(Some(0))
}

impl StreamPoller {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let arn = self.source.stream_arn.clone();
        // shard id → next iterator (None: not started yet); closed shards are dropped.
        let mut shards: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut done: std::collections::BTreeSet<String> = Default::default();
        let mut first = true;
        let mut described = tokio::time::Instant::now() - REDESCRIBE;
        while !*stop.borrow() {
            if described.elapsed() >= REDESCRIBE {
                described = tokio::time::Instant::now();
                match self.streams.describe_stream().stream_arn(&arn).send().await {
                    Ok(out) => {
                        for shard in out
                            .stream_description()
                            .map(|d| d.shards())
                            .unwrap_or_default()
                        {
                            if let Some(id) = shard.shard_id()
                                && !done.contains(id)
                            {
                                shards.entry(id.to_string()).or_insert(None);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(
                        "DescribeStream {arn}: {}",
                        aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
                    ),
                }
            }
            let mut delivered_any = false;
            for (shard, iterator) in shards.iter_mut() {
                if iterator.is_none() {
                    let position = if first {
                        self.source.starting_position.as_str()
                    } else {
                        "TRIM_HORIZON"
                    };
                    let out = self
                        .streams
                        .get_shard_iterator()
                        .stream_arn(&arn)
                        .shard_id(shard)
                        .shard_iterator_type(ShardIteratorType::from(position))
                        .send()
                        .await;
                    match out {
                        Ok(o) => *iterator = o.shard_iterator().map(str::to_string),
                        Err(e) => {
                            tracing::warn!(
                                "GetShardIterator {shard}: {}",
                                aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
                            );
                            continue;
                        }
                    }
                }
                let Some(it) = iterator.clone() else { continue };
                let out = self
                    .streams
                    .get_records()
                    .shard_iterator(&it)
                    .limit(self.source.batch_size as i32)
                    .send()
                    .await;
                let out = match out {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(
                            "GetRecords {shard}: {}",
                            aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
                        );
                        *iterator = None;
                        continue;
                    }
                };
                if !out.records().is_empty() {
                    delivered_any = true;
                    if !self.deliver(shard, out.records(), &mut stop).await {
                        return;
                    }
                }
                *iterator = out.next_shard_iterator().map(str::to_string);
                if iterator.is_none() {
                    done.insert(shard.clone());
                }
            }
            shards.retain(|id, _| !done.contains(id));
            first = false;
            if !delivered_any {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Delivers one batch until it is done, or recorded on the on-failure destination.
    /// `false` when payctl is stopping.
    async fn deliver(
        &self,
        shard: &str,
        batch: &[Record],
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let name = self.function.name().to_string();
        let mut records = batch.to_vec();
        let mut attempts: u32 = 0;
        loop {
            let event = event(&records, &self.source.stream_arn, &self.region);
            let outcome = match serde_json::to_vec(&event) {
                Ok(payload) => self.function.invoke(payload).await,
                // Not reached: the event holds strings, numbers and byte vectors only.
                Err(e) => Outcome::NotStarted(format!("the stream event cannot be written: {e}")),
            };
            let again = retry_from(&records, &outcome, self.source.report_failures);
            let delivered = &records[..again.unwrap_or(records.len())];
            self.name_audit_records(delivered).await;
            let Some(from) = again else {
                tracing::info!("stream: {} record(s) delivered to {name}", records.len());
                return true;
            };
            records.drain(..from);
            attempts += 1;
            tracing::warn!(
                "stream: {name} did not complete the batch ({}); {} record(s) from sequence {} go again (attempt {attempts})",
                match &outcome {
                    Outcome::Response(_) => "partial batch failure".to_string(),
                    o => o.describe(),
                },
                records.len(),
                records.first().map(sequence).unwrap_or_default(),
            );
            if self.source.max_retries.is_some_and(|max| attempts > max) {
                self.record_failure(shard, &records).await;
                return true;
            }
            let backoff = Duration::from_secs(u64::from(attempts.min(10)));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return false,
            }
        }
    }

    /// What Lambda records on a stream mapping's on-failure destination.
    async fn record_failure(&self, shard: &str, records: &[Record]) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let Some(dest) = &self.source.on_failure else {
            tracing::error!(
                "stream: {} record(s) dropped after the last retry (no on-failure destination)",
                records.len()
            );
            return;
        };
        let body = json!({
            "requestContext": {"functionArn": self.source.function_arn, "condition": "RetryAttemptsExhausted",
                               "approximateInvokeCount": self.source.max_retries.unwrap_or(0) + 1},
            "version": "1.0",
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "DDBStreamBatchInfo": {"shardId": shard, "startSequenceNumber": sequence(first),
                                   "endSequenceNumber": sequence(last), "batchSize": records.len(),
                                   "streamArn": self.source.stream_arn},
        });
        let url = match dest.rsplit(':').next() {
            Some(name) => self
                .sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .ok()
                .and_then(|o| o.queue_url().map(str::to_string)),
            None => None,
        };
        let sent = match url {
            Some(url) => self
                .sqs
                .send_message()
                .queue_url(url)
                .message_body(body.to_string())
                .send()
                .await
                .is_ok(),
            None => false,
        };
        if sent {
            tracing::error!(
                "stream: {} record(s) recorded on {dest} after the last retry",
                records.len()
            );
        } else {
            tracing::error!(
                "stream: {} record(s) could not be recorded on {dest}",
                records.len()
            );
        }
    }

    /// Names, on screen, the audit record each delivered change has in the bucket.
    async fn name_audit_records(&self, records: &[Record]) {
        let Some(bucket) = &self.audit_bucket else {
            return;
        };
        for r in records {
            let Some(d) = r.dynamodb() else { continue };
            let id = [d.new_image(), d.old_image(), d.keys()]
                .into_iter()
                .flatten()
                .find_map(|m| match m.get("transaction_id") {
                    Some(AttributeValue::S(s)) => Some(s.clone()),
                    _ => None,
                });
            let at = d
                .approximate_creation_date_time()
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0));
            let (Some(id), Some(at)) = (id, at) else {
                continue;
            };
            let Ok(key) = payments_core::audit::audit_key(&id, sequence(r), at) else {
                continue;
            };
            match self.s3.head_object().bucket(bucket).key(&key).send().await {
                Ok(_) => tracing::info!("audit record s3://{bucket}/{key}"),
                Err(e) => tracing::warn!(
                    "audit record s3://{bucket}/{key} could not be read back: {}",
                    aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("no error code")
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
    use aws_sdk_dynamodbstreams::types::{OperationType, StreamRecord as SdkRecord};

    #[test]
    fn stream_records_become_the_dynamodb_event_the_audit_logger_reads() {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let change = SdkRecord::builder()
            .approximate_creation_date_time(DateTime::from_secs(1_700_000_000))
            .keys("transaction_id", s("t1"))
            .new_image("transaction_id", s("t1"))
            .new_image("amount", AttributeValue::N("100".into()))
            .new_image("raw", AttributeValue::B(Blob::new(vec![0xff, 0x01])))
            .new_image(
                "tags",
                AttributeValue::L(vec![s("a"), AttributeValue::Bool(true)]),
            )
            .sequence_number("000100")
            .size_bytes(42)
            .stream_view_type(aws_sdk_dynamodbstreams::types::StreamViewType::NewAndOldImages)
            .build();
        let r = Record::builder()
            .event_id("e-1")
            .event_name(OperationType::Insert)
            .dynamodb(change)
            .build();
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x";
        let v = serde_json::to_value(event(&[r], arn, "us-east-1")).unwrap();
        let rec = &v["Records"][0];
        assert_eq!(rec["eventID"], "e-1");
        assert_eq!(rec["eventName"], "INSERT");
        assert_eq!(rec["eventSource"], "aws:dynamodb");
        assert_eq!(rec["eventSourceARN"], arn);
        assert_eq!(rec["awsRegion"], "us-east-1");
        let d = &rec["dynamodb"];
        assert_eq!(
            d["ApproximateCreationDateTime"].as_f64(),
            Some(1_700_000_000.0)
        );
        assert_eq!(d["Keys"], json!({"transaction_id": {"S": "t1"}}));
        assert_eq!(d["NewImage"]["amount"], json!({"N": "100"}));
        assert_eq!(d["NewImage"]["raw"], json!({"B": "/wE="}));
        assert_eq!(
            d["NewImage"]["tags"],
            json!({"L": [{"S": "a"}, {"BOOL": true}]})
        );
        assert_eq!(d["SequenceNumber"], "000100");
        assert_eq!(d["SizeBytes"], 42);
        assert_eq!(d["StreamViewType"], "NEW_AND_OLD_IMAGES");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(
            back.records[0].change.sequence_number.as_deref(),
            Some("000100")
        );
        assert!(back.records[0].change.old_image.is_empty());
    }
}
