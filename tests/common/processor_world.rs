//! The processor's test world: an emulator with the transactions table, the retry queue
//! and the database secret, a fresh PostgreSQL database, a validator and a processor.

use super::postgres::TestDb;
use super::*;
use payments_core::validate::Limits;
use processor::db::{DbSettings, Postgres, SslMode};
use processor::{Processor, Reply};
use serde_json::{Value, json};

pub const TABLE: &str = "payment-transactions-fn";

pub struct World {
    pub _stack: Stack,
    pub db: TestDb,
    pub validator: validator::Validator,
    pub processor: Processor,
    pub queue_url: String,
    pub sqs: aws_sdk_sqs::Client,
    pub secret_arn: String,
    pub sdk: aws_config::SdkConfig,
}

pub async fn world() -> World {
    let stack = Stack::new("fn");
    let sdk = stack.sdk().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    create_transactions_table(&dynamo, TABLE).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name("payment-retry-fn")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let db = TestDb::create().await;
    let secret_arn = create_db_secret(&sdk, "rds-db-credentials", &db.user, &db.password).await;
    let processor = make_processor(&sdk, &db, db.port, &queue_url, &secret_arn);
    let validator = validator::Validator {
        db: dynamo,
        table: TABLE.into(),
        limits: Limits::default(),
    };
    World {
        _stack: stack,
        db,
        validator,
        processor,
        queue_url,
        sqs,
        secret_arn,
        sdk,
    }
}

pub fn make_processor(
    sdk: &aws_config::SdkConfig,
    db: &TestDb,
    port: u16,
    queue_url: &str,
    secret_arn: &str,
) -> Processor {
    processor_at(sdk, &db.host, port, &db.name, queue_url, secret_arn)
}

/// A processor on database `name` at `host:port`, with credentials from `secret_arn`.
pub fn processor_at(
    sdk: &aws_config::SdkConfig,
    host: &str,
    port: u16,
    name: &str,
    queue_url: &str,
    secret_arn: &str,
) -> Processor {
    let settings = DbSettings {
        host: host.into(),
        port,
        name: name.into(),
        sslmode: SslMode::Disable,
        secret_arn: secret_arn.into(),
    };
    Processor {
        db: aws_sdk_dynamodb::Client::new(sdk),
        table: TABLE.into(),
        sqs: aws_sdk_sqs::Client::new(sdk),
        queue_url: queue_url.into(),
        pg: Postgres::new(settings, aws_sdk_secretsmanager::Client::new(sdk)),
    }
}

/// A secret holding database credentials, as RDS writes it.
pub async fn create_db_secret(
    sdk: &aws_config::SdkConfig,
    name: &str,
    user: &str,
    password: &str,
) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(json!({"username": user, "password": password}).to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn validate(w: &World, id: &str) {
    let body = json!({"transaction_id": id, "amount": "100.00", "currency": "USD", "customer_id": "cust_456"});
    let reply = w.validator.handle(body.to_string().as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

pub async fn process(p: &Processor, id: &str) -> Reply {
    p.http_process(json!({"transaction_id": id}).to_string().as_bytes())
        .await
}

pub async fn rows(w: &World, id: &str) -> Vec<(i64, String, String)> {
    let client = w.db.client().await;
    // Before the processor's first connection the migrations have not created the table.
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('payments')::text", &[])
        .await
        .unwrap()
        .get(0);
    if exists.is_none() {
        return Vec::new();
    }
    let rows = client.query("SELECT amount_minor, currency::text, customer_id FROM payments WHERE transaction_id = $1", &[&id]).await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

pub async fn status_of(w: &World, id: &str) -> String {
    let item = w
        .validator
        .db
        .get_item()
        .table_name(TABLE)
        .key(
            "transaction_id",
            aws_sdk_dynamodb::types::AttributeValue::S(id.into()),
        )
        .send()
        .await
        .unwrap();
    item.item().unwrap()["status"].as_s().unwrap().clone()
}

pub async fn queued(w: &World) -> Vec<(String, Value)> {
    receive(&w.sqs, &w.queue_url).await
}

/// Receives up to 10 messages, each as the record an SQS event would carry (with its
/// `ApproximateReceiveCount`).
pub async fn receive(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<(String, Value)> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| {
            let count = m
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
                .cloned()
                .unwrap_or_default();
            let record = json!({
                "messageId": m.message_id().unwrap(), "receiptHandle": m.receipt_handle().unwrap(),
                "body": m.body().unwrap(), "attributes": {"ApproximateReceiveCount": count}, "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(), "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:payment-retry-fn", "awsRegion": "us-east-1"
            });
            (m.message_id().unwrap().to_string(), record)
        })
        .collect()
}

/// The transaction ids of the messages waiting on the queue.
pub async fn queued_ids(w: &World) -> Vec<String> {
    queued(w)
        .await
        .iter()
        .map(|(_, r)| {
            serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["transaction_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}
