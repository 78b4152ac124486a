//! The payment functions' real binaries, end to end through the AWS Lambda Runtime API
//! (see `common::runtime`): each test runs one binary against the emulator (and, for the
//! processor, a real PostgreSQL), feeds it the events its triggers send, and checks the
//! recorded responses and what the emulator and database hold, read back independently.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::postgres::TestDb;
use common::runtime::{Lambda, RuntimeApi};
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const TABLE: &str = "payment-transactions-rt";

// ---------------------------------------------------------------------------------------
// Events and the emulator

/// An API Gateway REST (v1) proxy event for `path`.
fn apigw_event(method: &str, path: &str, body: Option<&str>, request_id: &str) -> Value {
    json!({
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {
            "Content-Type": "application/json",
            "Host": "rt.execute-api.us-east-1.amazonaws.com",
            "X-Api-Key": "rt-api-key",
        },
        "multiValueHeaders": {
            "Content-Type": ["application/json"],
            "Host": ["rt.execute-api.us-east-1.amazonaws.com"],
            "X-Api-Key": ["rt-api-key"],
        },
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": format!("/rt{path}"),
            "stage": "rt",
            "requestId": request_id,
            "accountId": "123456789012",
            "apiId": "rtapi12345",
            "identity": {"sourceIp": "127.0.0.1", "apiKey": "rt-api-key"},
        },
        "body": body,
        "isBase64Encoded": false,
    })
}

async fn create_table(db: &aws_sdk_dynamodb::Client) {
    create_transactions_table(db, TABLE).await;
}

async fn items(
    db: &aws_sdk_dynamodb::Client,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    db.scan()
        .table_name(TABLE)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

/// The proxy response's status and its `body` string parsed as JSON.
fn status_and_body(resp: &Value) -> (i64, Value) {
    let status = resp["statusCode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no statusCode in {resp}"));
    let body = resp["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no string body in {resp}"));
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {resp}")),
    )
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_binary_serves_api_gateway_events_through_the_runtime_api() {
    let stack = Stack::new("rt");
    let db = aws_sdk_dynamodb::Client::new(&stack.sdk().await);
    create_table(&db).await;

    let mut api = RuntimeApi::start().await;
    let mut lambda = Lambda::spawn(
        "validator",
        &api.addr,
        &stack.moto.endpoint,
        &[("TABLE_NAME", TABLE)],
    );

    // (a) A valid payment: 200, the summary, and a VALIDATED item in the table.
    let payment = r#"{"transaction_id": "txn_rt_1", "amount": "100.00", "currency": "USD", "customer_id": "cust_rt"}"#;
    let expected = json!({"transaction_id": "txn_rt_1", "status": "VALIDATED", "amount": "100.00", "currency": "USD"});
    let id = api.invoke(&apigw_event("POST", "/validate", Some(payment), "apigw-1"));
    let resp = api.response(&id, &mut lambda).await;
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 200, "{resp}\n{}", lambda.output());
    assert_eq!(body, expected, "{resp}");
    // lambda_http puts the response headers in `multiValueHeaders` only.
    let content_type = resp["headers"]
        .get("content-type")
        .or_else(|| resp["multiValueHeaders"]["content-type"].get(0));
    assert_eq!(content_type, Some(&json!("application/json")), "{resp}");
    assert_eq!(resp["isBase64Encoded"], false, "{resp}");
    let item = db
        .get_item()
        .table_name(TABLE)
        .key("transaction_id", AttributeValue::S("txn_rt_1".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("txn_rt_1 stored");
    assert_eq!(item["status"].as_s().unwrap(), "VALIDATED");
    assert_eq!(item["amount_minor"].as_n().unwrap(), "10000");
    assert_eq!(item["currency"].as_s().unwrap(), "USD");
    assert_eq!(item["customer_id"].as_s().unwrap(), "cust_rt");
    let stored = items(&db).await;
    assert_eq!(stored.len(), 1);

    // (b) The same event again: the same answer, and still exactly that one item.
    let id = api.invoke(&apigw_event("POST", "/validate", Some(payment), "apigw-2"));
    let resp = api.response(&id, &mut lambda).await;
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 200, "{resp}\n{}", lambda.output());
    assert_eq!(body, expected, "{resp}");
    assert_eq!(items(&db).await, stored);

    // (c) An invalid body: 400 validation_failed, nothing written.
    let invalid = r#"{"transaction_id": "bad id!", "amount": -5, "currency": "usd"}"#;
    let id = api.invoke(&apigw_event("POST", "/validate", Some(invalid), "apigw-3"));
    let resp = api.response(&id, &mut lambda).await;
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(body["error"], "validation_failed", "{resp}");
    assert!(
        !resp.to_string().contains("bad id!"),
        "input echoed: {resp}"
    );
    assert_eq!(items(&db).await, stored);

    // (d) A GET: 405.
    let id = api.invoke(&apigw_event("GET", "/validate", None, "apigw-4"));
    let resp = api.response(&id, &mut lambda).await;
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 405, "{resp}");
    assert_eq!(body["error"], "method_not_allowed", "{resp}");

    // The function is still alive, waiting on the next long poll, and reported nothing else.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        lambda.child.try_wait().unwrap().is_none(),
        "the function exited\n{}",
        lambda.output()
    );
    if let Ok(extra) = api.recorded.try_recv() {
        panic!("unexpected extra report: {extra}\n{}", lambda.output());
    }
    let logs = lambda.output();
    assert!(
        !logs.contains("cust_rt") && !logs.contains("bad id!"),
        "request content logged:\n{logs}"
    );
}

/// The rows `payments` holds for `id` (none before the first migration).
async fn payment_rows(db: &TestDb, id: &str) -> Vec<(i64, String)> {
    let client = db.client().await;
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('payments')::text", &[])
        .await
        .unwrap()
        .get(0);
    if exists.is_none() {
        return Vec::new();
    }
    client
        .query(
            "SELECT amount_minor, currency::text FROM payments WHERE transaction_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn status_of(db: &aws_sdk_dynamodb::Client, id: &str) -> String {
    let out = db
        .get_item()
        .table_name(TABLE)
        .key("transaction_id", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item().expect("item exists")["status"]
        .as_s()
        .unwrap()
        .clone()
}

fn sqs_record(message_id: &str, body: &str) -> Value {
    json!({
        "messageId": message_id, "receiptHandle": format!("rh-{message_id}"), "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:payment-retry-rt", "awsRegion": "us-east-1"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_binary_serves_process_status_and_the_retry_queue() {
    let stack = Stack::new("rt");
    let sdk = stack.sdk().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&dynamo).await;
    let queue_url = aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name("payment-retry-rt")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let pg = TestDb::create().await;
    // Under trust authentication any password works; a distinctive one makes the
    // "never logged" check below meaningful either way.
    let password = if pg.password.is_empty() {
        "rt-secret-Zq81vK"
    } else {
        pg.password.as_str()
    };
    let secret_arn = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("rds-rt")
        .secret_string(json!({"username": pg.user, "password": password}).to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let validator = validator::Validator {
        db: dynamo.clone(),
        table: TABLE.into(),
        limits: payments_core::validate::Limits::default(),
    };
    for id in ["txn_rt_p1", "txn_rt_p2"] {
        let body = json!({"transaction_id": id, "amount": "12.34", "currency": "EUR", "customer_id": "cust_rt"});
        let reply = validator.handle(body.to_string().as_bytes()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    let mut api = RuntimeApi::start().await;
    let port = pg.port.to_string();
    let mut lambda = Lambda::spawn(
        "processor",
        &api.addr,
        &stack.moto.endpoint,
        &[
            ("PAYMENTS_ENV", "rt"),
            ("TABLE_NAME", TABLE),
            ("RETRY_QUEUE_URL", &queue_url),
            ("DB_SECRET_ARN", &secret_arn),
            ("DB_HOST", &pg.host),
            ("DB_PORT", &port),
            ("DB_NAME", &pg.name),
            ("DB_SSLMODE", "disable"),
        ],
    );

    // (a) POST /process: 200 PROCESSED, one row, the item moved on.
    let process = json!({"transaction_id": "txn_rt_p1"}).to_string();
    let expected = json!({"transaction_id": "txn_rt_p1", "status": "PROCESSED"});
    for request in ["apigw-p1", "apigw-p2"] {
        let id = api.invoke(&apigw_event("POST", "/process", Some(&process), request));
        let resp = api.response(&id, &mut lambda).await;
        let (status, body) = status_and_body(&resp);
        assert_eq!(status, 200, "{resp}\n{}", lambda.output());
        assert_eq!(body, expected, "{resp}");
        assert_eq!(
            payment_rows(&pg, "txn_rt_p1").await,
            vec![(1234, "EUR".to_string())]
        );
        assert_eq!(status_of(&dynamo, "txn_rt_p1").await, "PROCESSED");
    }

    // (b) A retry-queue batch: the good message completes, only the unreadable one returns.
    let event = json!({"Records": [
        sqs_record("m-good", &json!({"transaction_id": "txn_rt_p2"}).to_string()),
        sqs_record("m-bad", "not json"),
    ]});
    let id = api.invoke(&event);
    let resp = api.response(&id, &mut lambda).await;
    assert_eq!(
        resp["batchItemFailures"],
        json!([{"itemIdentifier": "m-bad"}]),
        "{resp}\n{}",
        lambda.output()
    );
    assert_eq!(
        payment_rows(&pg, "txn_rt_p2").await,
        vec![(1234, "EUR".to_string())]
    );
    assert_eq!(status_of(&dynamo, "txn_rt_p2").await, "PROCESSED");

    // (c) GET /status: every dependency healthy, the queue empty.
    let id = api.invoke(&apigw_event("GET", "/status", None, "apigw-s"));
    let resp = api.response(&id, &mut lambda).await;
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 200, "{resp}\n{}", lambda.output());
    assert_eq!(body["status"], "healthy", "{resp}");
    assert_eq!(
        body["dependencies"]["postgresql"]["healthy"], true,
        "{resp}"
    );
    assert_eq!(body["dependencies"]["retry_queue"]["depth"], 0, "{resp}");

    let logs = lambda.output();
    assert!(!logs.contains(password), "password logged:\n{logs}");
    assert!(
        lambda.child.try_wait().unwrap().is_none(),
        "the function exited\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_logger_binary_writes_the_stream_records_through_the_runtime_api() {
    let stack = Stack::new("rt");
    let s3 = aws_sdk_s3::Client::new(&stack.sdk().await);
    let bucket = "payment-audit-rt";
    s3.create_bucket().bucket(bucket).send().await.unwrap();

    let mut api = RuntimeApi::start().await;
    let mut lambda = Lambda::spawn(
        "audit-logger",
        &api.addr,
        &stack.moto.endpoint,
        &[
            ("AUDIT_BUCKET", bucket),
            ("AUDIT_BUCKET_OWNER", "123456789012"),
            ("PAYMENTS_ENV", "rt"),
        ],
    );
    let image = |status: &str| {
        json!({"transaction_id": {"S": "txn_rt_a"}, "status": {"S": status},
               "amount_minor": {"N": "500"}, "currency": {"S": "JPY"}})
    };
    let record = |event_id: &str, name: &str, seq: &str, old: Option<Value>, new: Value| {
        let mut change = json!({
            // 2025-11-27T06:40:00Z
            "ApproximateCreationDateTime": 1_764_225_600, "Keys": {"transaction_id": {"S": "txn_rt_a"}},
            "SequenceNumber": seq, "SizeBytes": 64, "StreamViewType": "NEW_AND_OLD_IMAGES", "NewImage": new
        });
        if let Some(old) = old {
            change["OldImage"] = old;
        }
        json!({"eventID": event_id, "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
               "awsRegion": "us-east-1", "dynamodb": change,
               "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/payment-transactions-rt/stream/2025-11-27T00:00:00.000"})
    };
    let event = json!({"Records": [
        record("e1", "INSERT", "100", None, image("VALIDATED")),
        record("e2", "MODIFY", "200", Some(image("VALIDATED")), image("PROCESSED")),
    ]});
    let id = api.invoke(&event);
    let resp = api.response(&id, &mut lambda).await;
    assert_eq!(
        resp["batchItemFailures"],
        json!([]),
        "{resp}\n{}",
        lambda.output()
    );

    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "audit/2025/11/27/txn_rt_a/100.json",
            "audit/2025/11/27/txn_rt_a/200.json"
        ]
    );
    let object = s3
        .get_object()
        .bucket(bucket)
        .key("audit/2025/11/27/txn_rt_a/200.json")
        .send()
        .await
        .unwrap();
    let modify: Value =
        serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(modify["event_name"], "MODIFY");
    assert_eq!(modify["old_status"], "VALIDATED");
    assert_eq!(modify["new_status"], "PROCESSED");
    assert_eq!(modify["amount_minor"], 500);
    assert_eq!(modify["currency"], "JPY");
    // The Runtime API's request id reaches the record.
    assert_eq!(modify["request_ids"]["aws_request_id"], id.as_str());

    // A record without a transaction id is reported, not dropped.
    let broken = json!({"Records": [record("e3", "INSERT", "300", None, json!({"status": {"S": "VALIDATED"}}))]});
    let id = api.invoke(&broken);
    let resp = api.response(&id, &mut lambda).await;
    assert_eq!(
        resp["batchItemFailures"],
        json!([{"itemIdentifier": "300"}]),
        "{resp}"
    );
}
