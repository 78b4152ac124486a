//! The processor under the faults a real account sees: a database that accepts and never
//! answers, a role over its connection limit (53300), a password rotation, four cold
//! processors racing the migrations, a ledger row that disagrees with the item, `/status`
//! bodies that must not leak, and the retry queue's backoff.

mod common;

use common::pg_cluster::PasswordCluster;
use common::processor_world::*;
use processor::Processor;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A TCP server that accepts connections and never sends a byte.
async fn silent_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

fn status_event() -> Value {
    json!({"resource": "/status", "path": "/status", "httpMethod": "GET", "headers": {}, "multiValueHeaders": {},
           "requestContext": {"resourcePath": "/status", "httpMethod": "GET", "path": "/status", "stage": "fn",
                              "requestId": "r1", "accountId": "123456789012", "apiId": "api", "identity": {}},
           "body": null, "isBase64Encoded": false})
}

/// `/status` through the API event: (status code, body, elapsed).
async fn status(p: &Processor) -> (i64, Value, Duration) {
    let started = Instant::now();
    let out = p.handle(status_event()).await.unwrap();
    let body = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    (out["statusCode"].as_i64().unwrap(), body, started.elapsed())
}

/// The body names no host, port, user, ARN, account or driver text.
fn assert_leaks_nothing(body: &Value, port: u16, user: &str) {
    let text = body.to_string();
    for needle in [
        "127.0.0.1",
        "localhost",
        &port.to_string(),
        &format!("\"{user}\""),
        "arn:aws:",
        "123456789012",
        "error",
        "password",
        "pg_hba",
        "db error",
        "connection",
    ] {
        assert!(!text.contains(needle), "{needle:?} in {text}");
    }
    for dep in ["dynamodb", "postgresql", "retry_queue"] {
        let d = &body["dependencies"][dep];
        let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
        for k in keys {
            assert!(
                ["healthy", "reason", "depth"].contains(&k.as_str()),
                "{dep}: {k}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_never_answers_queues_the_payment_and_status_answers_fast() {
    let w = world().await;
    validate(&w, "txn_stall").await;
    let port = silent_server().await;
    let stalled = make_processor(&w.sdk, &w.db, port, &w.queue_url, &w.secret_arn);
    let started = Instant::now();
    let reply = process(&stalled, "txn_stall").await;
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["status"], "RETRY_QUEUED");
    assert_eq!(queued_ids(&w).await, ["txn_stall"]);

    let (code, body, elapsed) = status(&stalled).await;
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(code, 503);
    assert_eq!(
        body["dependencies"]["postgresql"],
        json!({"healthy": false, "reason": "timeout"})
    );
    assert_eq!(body["dependencies"]["dynamodb"]["healthy"], true);
    assert_leaks_nothing(&body, port, &w.db.user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_is_transient() {
    let w = world().await;
    let role = format!("limited_{}", uuid::Uuid::new_v4().simple());
    let admin = w.db.client().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'x' CONNECTION LIMIT 0"
        ))
        .await
        .unwrap();
    let secret = create_db_secret(&w.sdk, "limited", &role, "x").await;
    let limited = make_processor(&w.sdk, &w.db, w.db.port, &w.queue_url, &secret);
    validate(&w, "txn_limit").await;
    let reply = process(&limited, "txn_limit").await;
    assert_eq!(
        reply.body,
        json!({"transaction_id": "txn_limit", "status": "RETRY_QUEUED"})
    );
    assert_eq!(reply.status, 202);
    let messages = queued(&w).await;
    assert_eq!(messages.len(), 1);
    let failed = limited
        .handle(json!({"Records": [messages[0].1.clone()]}))
        .await
        .unwrap();
    assert_eq!(
        failed["batchItemFailures"],
        json!([{"itemIdentifier": messages[0].0}])
    );
    let (code, body, _) = status(&limited).await;
    assert_eq!(code, 503);
    assert_eq!(
        body["dependencies"]["postgresql"],
        json!({"healthy": false, "reason": "unavailable"})
    );
    assert_leaks_nothing(&body, w.db.port, &role);
    drop(admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_is_fetched_again_by_the_warm_processor() {
    let w = world().await;
    let cluster = PasswordCluster::start();
    let admin = cluster.admin("postgres").await;
    for sql in [
        "CREATE ROLE app LOGIN PASSWORD 'first-password'",
        // Not in one batch: CREATE DATABASE cannot run inside the batch's transaction.
        "CREATE DATABASE pay OWNER app",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    let secrets = aws_sdk_secretsmanager::Client::new(&w.sdk);
    let arn = create_db_secret(&w.sdk, "rotating", "app", "first-password").await;
    let p = processor_at(&w.sdk, "127.0.0.1", cluster.port, "pay", &w.queue_url, &arn);
    validate(&w, "txn_before").await;
    assert_eq!(process(&p, "txn_before").await.status, 200);

    // The rotation: the new password on the role and in the secret, old sessions ended.
    admin
        .batch_execute("ALTER ROLE app PASSWORD 'second-password'")
        .await
        .unwrap();
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(json!({"username": "app", "password": "second-password"}).to_string())
        .send()
        .await
        .unwrap();
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'",
        )
        .await
        .unwrap();

    validate(&w, "txn_after").await;
    let reply = process(&p, "txn_after").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(status_of(&w, "txn_after").await, "PROCESSED");
    let pay = cluster.admin("pay").await;
    let n: i64 = pay
        .query_one("SELECT count(*) FROM payments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    assert!(queued(&w).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_cold_processors_on_a_fresh_database_record_one_payment_once() {
    let w = world().await;
    validate(&w, "txn_race").await;
    let ps: Vec<Processor> = (0..4)
        .map(|_| make_processor(&w.sdk, &w.db, w.db.port, &w.queue_url, &w.secret_arn))
        .collect();
    let (a, b, c, d) = tokio::join!(
        process(&ps[0], "txn_race"),
        process(&ps[1], "txn_race"),
        process(&ps[2], "txn_race"),
        process(&ps[3], "txn_race"),
    );
    for reply in [a, b, c, d] {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(rows(&w, "txn_race").await.len(), 1);
    let versions: i64 =
        w.db.client()
            .await
            .query_one("SELECT count(*) FROM schema_migrations", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(versions, processor::db::MIGRATIONS.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_row_with_another_amount_is_a_conflict_and_changes_nothing() {
    let w = world().await;
    validate(&w, "txn_ok").await;
    assert_eq!(process(&w.processor, "txn_ok").await.status, 200);
    validate(&w, "txn_conflict").await;
    w.db.client()
        .await
        .execute("INSERT INTO payments (transaction_id, amount_minor, currency, customer_id) VALUES ('txn_conflict', 999, 'USD', 'cust_456')", &[])
        .await
        .unwrap();
    let reply = process(&w.processor, "txn_conflict").await;
    assert_eq!(reply.status, 409);
    assert_eq!(
        reply.body,
        json!({"error": "ledger_conflict", "transaction_id": "txn_conflict"})
    );
    assert_eq!(
        rows(&w, "txn_conflict").await,
        vec![(999, "USD".to_string(), "cust_456".to_string())]
    );
    assert_eq!(status_of(&w, "txn_conflict").await, "VALIDATED");
    assert!(queued(&w).await.is_empty());

    // On the queue path the message fails, without backoff, towards the DLQ.
    let record = json!({
        "messageId": "m-1", "receiptHandle": "rh-1", "body": json!({"transaction_id": "txn_conflict"}).to_string(),
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:payment-retry-fn", "awsRegion": "us-east-1"
    });
    let out = w
        .processor
        .handle(json!({"Records": [record]}))
        .await
        .unwrap();
    assert_eq!(out["batchItemFailures"], json!([{"itemIdentifier": "m-1"}]));
    assert_eq!(rows(&w, "txn_conflict").await.len(), 1);

    // A different customer or currency is a conflict too; the same payment is not.
    for (amount, currency, customer) in [(10000, "USD", "cust_other"), (10000, "EUR", "cust_456")] {
        let id = format!("txn_c_{customer}_{currency}");
        validate(&w, &id).await;
        w.db.client()
            .await
            .execute("INSERT INTO payments (transaction_id, amount_minor, currency, customer_id) VALUES ($1, $2, $3, $4)", &[&id, &(amount as i64), &currency, &customer])
            .await
            .unwrap();
        assert_eq!(process(&w.processor, &id).await.status, 409, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_on_the_queue_path_hides_the_message_for_its_backoff() {
    let w = world().await;
    // With a zero visibility timeout a failed message would be visible again at once.
    let queue_url = w
        .sqs
        .create_queue()
        .queue_name("payment-retry-backoff")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "0",
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    validate(&w, "txn_wait").await;
    let down = make_processor(&w.sdk, &w.db, closed_port(), &queue_url, &w.secret_arn);
    assert_eq!(process(&down, "txn_wait").await.status, 202);
    let messages = receive(&w.sqs, &queue_url).await;
    assert_eq!(messages.len(), 1);
    // Visible again at once: the queue itself holds nothing back.
    let again = receive(&w.sqs, &queue_url).await;
    assert_eq!(again.len(), 1);
    let (id, record) = again[0].clone();
    let out = down.handle(json!({"Records": [record]})).await.unwrap();
    assert_eq!(out["batchItemFailures"], json!([{"itemIdentifier": id}]));
    // Now hidden for the backoff delay.
    assert!(receive(&w.sqs, &queue_url).await.is_empty());
}
