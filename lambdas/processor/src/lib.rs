//! The processor: `POST /process`, `GET /status`, and the retry queue's consumer.
//!
//! Processing reads the transaction (consistent read), writes the payment to PostgreSQL
//! (idempotent insert in a transaction), then moves the item `VALIDATED → PROCESSED` with
//! a conditional update. A crash between the two steps is completed by a retry without a
//! duplicate row. A transient failure (database unreachable, throttling) puts the id on
//! the retry queue and answers 202; the same function consumes that queue and reports
//! partial batch failures, so only failed messages return. A message that failed for a
//! transient reason is hidden with a growing delay ([`backoff`]) so an outage of hours is
//! waited out; one whose ledger row disagrees with the item goes on to the DLQ.
//! Every step is bounded: [`PROCESS_DEADLINE`] for the processing, [`ENQUEUE_TIMEOUT`] for
//! queueing the retry, so `/process` answers inside API Gateway's 29 s; `/status` checks
//! its dependencies concurrently within [`STATUS_CHECK_TIMEOUT`] each.
//! [`Processor::handle`] takes either event shape as JSON, so tests call it directly.

pub mod backoff;
pub mod db;
pub mod db_error;
pub mod metrics;

use aws_lambda_events::event::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use db::{DbError, Postgres};
use payments_core::model::{ProcessRequest, RetryMessage, TransactionStatus};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::timeout;

/// Processing one transaction (DynamoDB read, database, DynamoDB update) gives up after
/// this and queues a retry instead.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(18);
/// `SendMessage` for the retry (and `ChangeMessageVisibility` for the backoff).
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(4);
/// Each `/status` check; they run concurrently.
pub const STATUS_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Processor {
    pub db: aws_sdk_dynamodb::Client,
    pub table: String,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub pg: Postgres,
}

/// What processing one transaction came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Processed,
    AlreadyProcessed,
    NotFound,
    NotValidated(String),
    /// The ledger holds a different payment under this id: nothing was changed.
    LedgerConflict,
    /// Worth retrying later; the reason is for the log.
    Transient(String),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

fn dynamo_transient<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    use aws_sdk_dynamodb::error::SdkError;
    match e {
        SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
            )
        ),
        _ => true,
    }
}

impl Processor {
    pub async fn process(&self, id: &str) -> Outcome {
        let got = self
            .db
            .get_item()
            .table_name(&self.table)
            .key("transaction_id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await;
        let item = match got {
            Ok(out) => match out.item() {
                Some(item) => item.clone(),
                None => return Outcome::NotFound,
            },
            Err(e) if dynamo_transient(&e) => {
                return Outcome::Transient(format!("GetItem: {}", short(&e)));
            }
            Err(e) => return Outcome::Failed(format!("GetItem: {}", short(&e))),
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        match text("status").as_deref() {
            Some(s) if s == TransactionStatus::Processed.as_str() => {
                return Outcome::AlreadyProcessed;
            }
            Some(s) if s == TransactionStatus::Validated.as_str() => {}
            other => return Outcome::NotValidated(other.unwrap_or("missing").to_string()),
        }
        let amount = item
            .get("amount_minor")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok());
        let (Some(amount), Some(currency), Some(customer)) =
            (amount, text("currency"), text("customer_id"))
        else {
            return Outcome::Failed("the stored transaction is incomplete".into());
        };
        match self.pg.record(id, amount, &currency, &customer).await {
            Ok(inserted) => tracing::info!(transaction_id = %id, inserted, "payment recorded"),
            Err(DbError::LedgerConflict) => return Outcome::LedgerConflict,
            Err(e) if e.is_transient() => return Outcome::Transient(e.to_string()),
            Err(e) => return Outcome::Failed(e.to_string()),
        }
        let update = self
            .db
            .update_item()
            .table_name(&self.table)
            .key("transaction_id", AttributeValue::S(id.to_string()))
            .update_expression("SET #s = :processed, updated_at = :now")
            .condition_expression("#s = :validated")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(
                ":processed",
                AttributeValue::S(TransactionStatus::Processed.as_str().into()),
            )
            .expression_attribute_values(
                ":validated",
                AttributeValue::S(TransactionStatus::Validated.as_str().into()),
            )
            .expression_attribute_values(":now", AttributeValue::S(now()))
            .send()
            .await;
        match update {
            Ok(_) => Outcome::Processed,
            // Someone else finished it in between: processed once all the same.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Outcome::AlreadyProcessed
            }
            Err(e) if dynamo_transient(&e) => {
                Outcome::Transient(format!("UpdateItem: {}", short(&e)))
            }
            Err(e) => Outcome::Failed(format!("UpdateItem: {}", short(&e))),
        }
    }

    /// [`Self::process`] within [`PROCESS_DEADLINE`]; past it the outcome is transient.
    pub async fn process_bounded(&self, id: &str) -> Outcome {
        timeout(PROCESS_DEADLINE, self.process(id))
            .await
            .unwrap_or_else(|_| Outcome::Transient("processing deadline passed".into()))
    }

    async fn enqueue_retry(&self, id: &str) -> Result<(), String> {
        let body = serde_json::to_string(&RetryMessage {
            transaction_id: id.to_string(),
        })
        .map_err(|e| e.to_string())?;
        let send = self
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send();
        match timeout(ENQUEUE_TIMEOUT, send).await {
            Ok(sent) => sent
                .map(|_| ())
                .map_err(|e| format!("SendMessage: {}", short(&e))),
            Err(_) => Err("SendMessage timed out".into()),
        }
    }

    /// `POST /process`.
    pub async fn http_process(&self, body: &[u8]) -> Reply {
        let request = match ProcessRequest::from_body(body) {
            Ok(r) => r,
            Err(errors) => return reply(400, errors.to_body()),
        };
        let id = request.transaction_id;
        let done = json!({"transaction_id": id, "status": TransactionStatus::Processed.as_str()});
        match self.process_bounded(&id).await {
            Outcome::Processed | Outcome::AlreadyProcessed => reply(200, done),
            Outcome::LedgerConflict => {
                ledger_conflict(&id);
                reply(
                    409,
                    json!({"error": "ledger_conflict", "transaction_id": id}),
                )
            }
            Outcome::NotFound => reply(404, json!({"error": "not_found", "transaction_id": id})),
            Outcome::NotValidated(status) => reply(
                409,
                json!({"error": "not_validated", "transaction_id": id, "status": status}),
            ),
            Outcome::Transient(why) => {
                tracing::warn!(transaction_id = %id, "transient failure, queueing a retry: {why}");
                match self.enqueue_retry(&id).await {
                    Ok(()) => reply(202, json!({"transaction_id": id, "status": "RETRY_QUEUED"})),
                    Err(e) => {
                        tracing::error!(transaction_id = %id, "could not queue the retry: {e}");
                        reply(503, json!({"error": "unavailable", "transaction_id": id}))
                    }
                }
            }
            Outcome::Failed(why) => {
                tracing::error!(transaction_id = %id, "processing failed: {why}");
                reply(
                    500,
                    json!({"error": "processing_failed", "transaction_id": id}),
                )
            }
        }
    }

    /// `GET /status`: every dependency and the build version; 503 unless all are healthy.
    /// The checks run concurrently, each within [`STATUS_CHECK_TIMEOUT`]. A failed check
    /// shows a fixed `reason`; what went wrong goes to the log only.
    pub async fn status(&self) -> Reply {
        let table = async {
            self.db
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map(|_| json!({"healthy": true}))
                .map_err(|e| format!("DescribeTable: {}", short(&e)))
        };
        let database = async {
            self.pg
                .ping()
                .await
                .map(|()| json!({"healthy": true}))
                .map_err(|e| match e {
                    DbError::Timeout(_) => Unhealthy::Timeout,
                    other => Unhealthy::Unavailable(other.to_string()),
                })
        };
        let queue = async {
            let depth_attr = aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages;
            let out = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(depth_attr.clone())
                .send()
                .await
                .map_err(|e| format!("GetQueueAttributes: {}", short(&e)))?;
            let depth = out
                .attributes()
                .and_then(|a| a.get(&depth_attr))
                .and_then(|d| d.parse::<u64>().ok());
            Ok::<Value, String>(json!({"healthy": true, "depth": depth}))
        };
        let (table, database, queue) = tokio::join!(
            check("dynamodb", async {
                table.await.map_err(Unhealthy::Unavailable)
            }),
            check("postgresql", database),
            check("retry_queue", async {
                queue.await.map_err(Unhealthy::Unavailable)
            }),
        );
        let healthy = [&table, &database, &queue]
            .iter()
            .all(|d| d["healthy"] == true);
        let body = json!({
            "status": if healthy { "healthy" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "dependencies": {"dynamodb": table, "postgresql": database, "retry_queue": queue},
        });
        reply(if healthy { 200 } else { 503 }, body)
    }

    /// Hides a retry message for its backoff delay (see [`backoff`]).
    async fn back_off(&self, message: &aws_lambda_events::event::sqs::SqsMessage) {
        let receives = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1);
        let Some(handle) = message.receipt_handle.as_deref() else {
            return;
        };
        let delay = backoff::delay_after(receives);
        let seconds = i32::try_from(delay.as_secs()).unwrap_or(i32::MAX);
        let change = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(seconds)
            .send();
        match timeout(ENQUEUE_TIMEOUT, change).await {
            Ok(Ok(_)) => tracing::info!(receives, seconds, "retry deferred"),
            // The queue's own visibility timeout applies instead: the retry is only sooner.
            Ok(Err(e)) => tracing::warn!("ChangeMessageVisibility: {}", short(&e)),
            Err(_) => tracing::warn!("ChangeMessageVisibility timed out"),
        }
    }

    /// One retry-queue batch: only the messages that failed are reported back.
    pub async fn retry_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let parsed: Result<RetryMessage, _> =
                serde_json::from_str(message.body.as_deref().unwrap_or_default());
            let ok = match parsed {
                Ok(m) => match self.process_bounded(&m.transaction_id).await {
                    Outcome::Processed | Outcome::AlreadyProcessed => true,
                    Outcome::Transient(why) => {
                        tracing::warn!(transaction_id = %m.transaction_id, "retry did not complete, backing off: {why}");
                        self.back_off(&message).await;
                        false
                    }
                    Outcome::LedgerConflict => {
                        // Not retried with backoff: it goes on to the dead-letter queue.
                        ledger_conflict(&m.transaction_id);
                        false
                    }
                    other => {
                        tracing::warn!(transaction_id = %m.transaction_id, "retry did not complete: {other:?}");
                        false
                    }
                },
                Err(_) => {
                    tracing::error!(message_id = %id, "unreadable retry message; it will reach the dead-letter queue");
                    false
                }
            };
            if !ok {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Dispatches an API Gateway REST proxy event or an SQS event.
    pub async fn handle(&self, event: Value) -> Result<Value, String> {
        let from_sqs = event["Records"][0]["eventSource"] == "aws:sqs";
        if from_sqs {
            let event: SqsEvent =
                serde_json::from_value(event).map_err(|e| format!("SQS event: {e}"))?;
            return serde_json::to_value(self.retry_batch(event).await).map_err(|e| e.to_string());
        }
        let request: ApiGatewayProxyRequest =
            serde_json::from_value(event).map_err(|e| format!("API event: {e}"))?;
        let method = request.http_method.as_str().to_string();
        let resource = request
            .resource
            .clone()
            .or(request.path.clone())
            .unwrap_or_default();
        let body = request.body.clone().unwrap_or_default();
        let reply = match (method.as_str(), resource.as_str()) {
            ("POST", "/process") => self.http_process(body.as_bytes()).await,
            ("GET", "/status") => self.status().await,
            _ => reply(404, json!({"error": "no_route"})),
        };
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = i64::from(reply.status);
        response.headers.insert(
            "content-type",
            "application/json".parse().map_err(|_| "header")?,
        );
        response.body = Some(reply.body.to_string().into());
        serde_json::to_value(response).map_err(|e| e.to_string())
    }
}

/// Why a `/status` check failed: the body shows only the fixed reason.
enum Unhealthy {
    Timeout,
    /// The detail is for the log.
    Unavailable(String),
}

/// One `/status` check within [`STATUS_CHECK_TIMEOUT`], as its part of the body.
async fn check(
    name: &str,
    probe: impl std::future::Future<Output = Result<Value, Unhealthy>>,
) -> Value {
    match timeout(STATUS_CHECK_TIMEOUT, probe).await {
        Ok(Ok(healthy)) => healthy,
        Ok(Err(Unhealthy::Unavailable(detail))) => {
            tracing::warn!(dependency = name, "status check failed: {detail}");
            json!({"healthy": false, "reason": "unavailable"})
        }
        Ok(Err(Unhealthy::Timeout)) | Err(_) => {
            tracing::warn!(dependency = name, "status check timed out");
            json!({"healthy": false, "reason": "timeout"})
        }
    }
}

/// Logs a ledger conflict (transaction id and a fixed reason only) and counts it.
fn ledger_conflict(id: &str) {
    tracing::error!(transaction_id = %id, "ledger conflict: the recorded payment differs from the transaction; nothing changed");
    metrics::emit_ledger_conflict(id);
}

fn now() -> String {
    payments_core::audit::format_time(chrono::Utc::now())
}

/// An SDK error with its code and cause, cut to one short line.
fn short<E: std::error::Error>(e: &E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e)
        .to_string()
        .chars()
        .take(300)
        .collect()
}
