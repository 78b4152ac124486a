//! The processor's handler against the emulator (DynamoDB, SQS, Secrets Manager) and a
//! real PostgreSQL: validate → process writes one row and marks the item PROCESSED;
//! replays do nothing twice; a database outage goes through the retry queue; status
//! reports every dependency.

mod common;

use common::postgres::TestDb;
use common::*;
use payments_core::validate::Limits;
use processor::db::{DbSettings, Postgres, SslMode};
use processor::{Processor, Reply};
use serde_json::{Value, json};

const TABLE: &str = "payment-transactions-fn";

struct World {
    _stack: Stack,
    db: TestDb,
    validator: validator::Validator,
    processor: Processor,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
    secret_arn: String,
    sdk: aws_config::SdkConfig,
}

async fn world() -> World {
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
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = json!({"username": db.user, "password": db.password}).to_string();
    let secret_arn = secrets
        .create_secret()
        .name("rds-db-credentials")
        .secret_string(secret)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
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

fn make_processor(
    sdk: &aws_config::SdkConfig,
    db: &TestDb,
    port: u16,
    queue_url: &str,
    secret_arn: &str,
) -> Processor {
    let settings = DbSettings {
        host: db.host.clone(),
        port,
        name: db.name.clone(),
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

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn validate(w: &World, id: &str) {
    let body = json!({"transaction_id": id, "amount": "100.00", "currency": "USD", "customer_id": "cust_456"});
    let reply = w.validator.handle(body.to_string().as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

async fn process(p: &Processor, id: &str) -> Reply {
    p.http_process(json!({"transaction_id": id}).to_string().as_bytes())
        .await
}

async fn rows(w: &World, id: &str) -> Vec<(i64, String, String)> {
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

async fn status_of(w: &World, id: &str) -> String {
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

async fn queued(w: &World) -> Vec<(String, Value)> {
    let out = w
        .sqs
        .receive_message()
        .queue_url(&w.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| {
            let record = json!({
                "messageId": m.message_id().unwrap(), "receiptHandle": m.receipt_handle().unwrap(),
                "body": m.body().unwrap(), "attributes": {}, "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(), "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:payment-retry-fn", "awsRegion": "us-east-1"
            });
            (m.message_id().unwrap().to_string(), record)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_then_process_writes_one_row_and_replays_do_nothing_twice() {
    let w = world().await;
    validate(&w, "txn_1").await;
    let reply = process(&w.processor, "txn_1").await;
    assert_eq!(
        reply,
        Reply {
            status: 200,
            body: json!({"transaction_id": "txn_1", "status": "PROCESSED"})
        }
    );
    assert_eq!(
        rows(&w, "txn_1").await,
        vec![(10000, "USD".to_string(), "cust_456".to_string())]
    );
    assert_eq!(status_of(&w, "txn_1").await, "PROCESSED");

    assert_eq!(process(&w.processor, "txn_1").await.status, 200);
    assert_eq!(rows(&w, "txn_1").await.len(), 1);

    // A crash after the insert but before the status update: the retry completes it.
    validate(&w, "txn_2").await;
    w.db.client()
        .await
        .execute("INSERT INTO payments (transaction_id, amount_minor, currency, customer_id) VALUES ('txn_2', 10000, 'USD', 'cust_456')", &[])
        .await
        .unwrap();
    assert_eq!(process(&w.processor, "txn_2").await.status, 200);
    assert_eq!(rows(&w, "txn_2").await.len(), 1);
    assert_eq!(status_of(&w, "txn_2").await, "PROCESSED");

    assert_eq!(process(&w.processor, "txn_unknown").await.status, 404);
    assert_eq!(process(&w.processor, "bad id!").await.status, 400);
    w.validator
        .db
        .put_item()
        .table_name(TABLE)
        .item(
            "transaction_id",
            aws_sdk_dynamodb::types::AttributeValue::S("txn_3".into()),
        )
        .item(
            "status",
            aws_sdk_dynamodb::types::AttributeValue::S("REJECTED".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(process(&w.processor, "txn_3").await.status, 409);
    assert!(rows(&w, "txn_3").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_goes_through_the_retry_queue_and_completes() {
    let w = world().await;
    validate(&w, "txn_r").await;
    let down = make_processor(&w.sdk, &w.db, closed_port(), &w.queue_url, &w.secret_arn);
    let reply = process(&down, "txn_r").await;
    assert_eq!(
        reply,
        Reply {
            status: 202,
            body: json!({"transaction_id": "txn_r", "status": "RETRY_QUEUED"})
        }
    );
    assert_eq!(status_of(&w, "txn_r").await, "VALIDATED");

    let messages = queued(&w).await;
    assert_eq!(messages.len(), 1);
    let (message_id, record) = messages[0].clone();
    assert_eq!(
        serde_json::from_str::<Value>(record["body"].as_str().unwrap()).unwrap()["transaction_id"],
        "txn_r"
    );

    // While the database is still down, the batch reports the message as failed.
    let event = json!({"Records": [record.clone()]});
    let failed = down.handle(event.clone()).await.unwrap();
    assert_eq!(
        failed["batchItemFailures"],
        json!([{"itemIdentifier": message_id}])
    );
    assert!(rows(&w, "txn_r").await.is_empty());

    // Once it is back, the same message completes the payment exactly once.
    let done = w.processor.handle(event).await.unwrap();
    assert_eq!(done["batchItemFailures"], json!([]));
    assert_eq!(rows(&w, "txn_r").await.len(), 1);
    assert_eq!(status_of(&w, "txn_r").await, "PROCESSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_every_dependency_through_the_api_event() {
    let w = world().await;
    let event = |method: &str, path: &str| {
        json!({"resource": path, "path": path, "httpMethod": method, "headers": {}, "multiValueHeaders": {},
               "requestContext": {"resourcePath": path, "httpMethod": method, "path": path, "stage": "fn",
                                  "requestId": "r1", "accountId": "123456789012", "apiId": "api", "identity": {}},
               "body": null, "isBase64Encoded": false})
    };
    let healthy = w.processor.handle(event("GET", "/status")).await.unwrap();
    assert_eq!(healthy["statusCode"], 200, "{healthy}");
    let body: Value = serde_json::from_str(healthy["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["dependencies"]["retry_queue"]["depth"], 0);
    assert_eq!(body["version"], "0.1.0");

    let down = make_processor(&w.sdk, &w.db, closed_port(), &w.queue_url, &w.secret_arn);
    let degraded = down.handle(event("GET", "/status")).await.unwrap();
    assert_eq!(degraded["statusCode"], 503);
    let body: Value = serde_json::from_str(degraded["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["dependencies"]["postgresql"]["healthy"], false);
    assert_eq!(body["dependencies"]["dynamodb"]["healthy"], true);
}
