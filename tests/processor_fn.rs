//! The processor's handler against the emulator (DynamoDB, SQS, Secrets Manager) and a
//! real PostgreSQL: validate → process writes one row and marks the item PROCESSED;
//! replays do nothing twice; a database outage goes through the retry queue; status
//! reports every dependency.

mod common;

use common::processor_world::*;
use processor::Reply;
use serde_json::{Value, json};

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
