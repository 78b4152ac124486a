//! The audit logger's handler against the emulator's S3: one object per stream record at
//! the documented key, idempotent on replay, and failures reported (never dropped) as the
//! batch item failure of the first record that could not be written.

mod common;

use audit_logger::{AuditLogger, bucket_owner};
use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use common::*;
use serde_json::{Value, json};

const BUCKET: &str = "payment-audit-fn";
const ACCOUNT: &str = "123456789012";
// 2025-11-27T06:40:00Z
const CREATED: i64 = 1_764_225_600;

fn record(event_id: &str, name: &str, seq: &str, old: Option<Value>, new: Option<Value>) -> Value {
    let mut change = json!({
        "ApproximateCreationDateTime": CREATED,
        "Keys": {"transaction_id": {"S": "txn_1"}},
        "SequenceNumber": seq,
        "SizeBytes": 64,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    if let Some(old) = old {
        change["OldImage"] = old;
    }
    if let Some(new) = new {
        change["NewImage"] = new;
    }
    json!({
        "eventID": event_id, "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1", "dynamodb": change,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/payment-transactions-fn/stream/2025-11-27T00:00:00.000"
    })
}

fn item(status: &str) -> Value {
    json!({"transaction_id": {"S": "txn_1"}, "status": {"S": status}, "amount_minor": {"N": "10000"}, "currency": {"S": "USD"}})
}

fn event(records: Vec<Value>) -> Event {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

async fn setup(stack: &Stack) -> AuditLogger {
    let s3 = aws_sdk_s3::Client::new(&stack.sdk().await);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let versioning = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning()
        .bucket(BUCKET)
        .versioning_configuration(versioning)
        .send()
        .await
        .unwrap();
    AuditLogger {
        s3,
        bucket: BUCKET.into(),
        owner: ACCOUNT.into(),
    }
}

/// (key, number of versions) of every object in the bucket.
async fn objects(logger: &AuditLogger) -> Vec<(String, usize)> {
    let out = logger
        .s3
        .list_object_versions()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = out
        .versions()
        .iter()
        .map(|v| v.key().unwrap().to_string())
        .collect();
    keys.sort();
    let mut counted: Vec<(String, usize)> = Vec::new();
    for k in keys {
        match counted.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => counted.push((k, 1)),
        }
    }
    counted
}

async fn read(logger: &AuditLogger, key: &str) -> Value {
    let out = logger
        .s3
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
    serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
}

#[tokio::test]
async fn writes_one_record_per_change_and_replays_idempotently() {
    let stack = Stack::new("fn");
    let logger = setup(&stack).await;
    let batch = || {
        event(vec![
            record("e1", "INSERT", "111", None, Some(item("VALIDATED"))),
            record(
                "e2",
                "MODIFY",
                "222",
                Some(item("VALIDATED")),
                Some(item("PROCESSED")),
            ),
        ])
    };
    let response = logger.handle(batch(), "req-1").await;
    assert!(response.batch_item_failures.is_empty());
    let keys = vec![
        ("audit/2025/11/27/txn_1/111.json".to_string(), 1),
        ("audit/2025/11/27/txn_1/222.json".to_string(), 1),
    ];
    assert_eq!(objects(&logger).await, keys);
    let modify = read(&logger, "audit/2025/11/27/txn_1/222.json").await;
    assert_eq!(modify["event_name"], "MODIFY");
    assert_eq!(modify["old_status"], "VALIDATED");
    assert_eq!(modify["new_status"], "PROCESSED");
    assert_eq!(modify["amount_minor"], 10000);
    assert_eq!(modify["currency"], "USD");
    assert_eq!(modify["sequence_number"], "222");
    assert_eq!(modify["request_ids"]["aws_request_id"], "req-1");
    assert_eq!(modify["request_ids"]["event_id"], "e2");
    let insert = read(&logger, "audit/2025/11/27/txn_1/111.json").await;
    assert_eq!(insert["old_status"], Value::Null);
    assert_eq!(insert["new_status"], "VALIDATED");

    // A replayed batch writes nothing new: same keys, still one version each.
    let response = logger.handle(batch(), "req-2").await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(objects(&logger).await, keys);
    assert_eq!(
        read(&logger, "audit/2025/11/27/txn_1/222.json").await["request_ids"]["aws_request_id"],
        "req-1"
    );
}

#[tokio::test]
async fn the_first_record_that_fails_is_reported_and_nothing_after_it_is_skipped_silently() {
    let stack = Stack::new("fn");
    let logger = setup(&stack).await;
    let no_id = json!({"status": {"S": "VALIDATED"}});
    let response = logger
        .handle(
            event(vec![
                record("e1", "INSERT", "111", None, Some(item("VALIDATED"))),
                record("e2", "INSERT", "222", None, Some(no_id)),
                record(
                    "e3",
                    "MODIFY",
                    "333",
                    Some(item("VALIDATED")),
                    Some(item("PROCESSED")),
                ),
            ]),
            "req-1",
        )
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(
        failed,
        vec!["222".to_string()],
        "Lambda retries from the failed record"
    );
    assert_eq!(
        objects(&logger).await,
        vec![("audit/2025/11/27/txn_1/111.json".to_string(), 1)]
    );

    // An unreachable bucket fails the first record.
    let gone = AuditLogger {
        s3: logger.s3.clone(),
        bucket: "no-such-bucket".into(),
        owner: ACCOUNT.into(),
    };
    let response = gone
        .handle(
            event(vec![record(
                "e1",
                "INSERT",
                "111",
                None,
                Some(item("VALIDATED")),
            )]),
            "req-2",
        )
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some("111")
    );
}

#[tokio::test]
async fn every_write_expects_the_stack_s_account_and_a_foreign_bucket_gets_nothing() {
    let stack = Stack::new("fn");
    let logger = setup(&stack).await;
    // moto ignores ExpectedBucketOwner: the proxy plays S3's owner check.
    let proxy = common::proxy::Proxy::start(&stack.moto.endpoint).await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&proxy.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    let via_proxy = |owner: &str| AuditLogger {
        s3: aws_sdk_s3::Client::new(&sdk),
        bucket: BUCKET.into(),
        owner: owner.into(),
    };
    let one = |seq: &str| event(vec![record("e1", "INSERT", seq, None, Some(item("NEW")))]);

    proxy.set_bucket_owner(BUCKET, "111122223333");
    let response = via_proxy(ACCOUNT).handle(one("111"), "req-1").await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "written to a foreign bucket"
    );
    assert!(objects(&logger).await.is_empty());

    proxy.set_bucket_owner(BUCKET, ACCOUNT);
    let response = via_proxy(ACCOUNT).handle(one("222"), "req-2").await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(objects(&logger).await.len(), 1);
    let seen = proxy.s3_requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|r| r.operation == "PutObject"
            && r.bucket == BUCKET
            && r.expected_owner.as_deref() == Some(ACCOUNT)),
        "{seen:?}"
    );
}

#[test]
fn the_bucket_owner_is_required_and_must_be_an_account_id() {
    assert_eq!(bucket_owner(Some(ACCOUNT)).unwrap(), ACCOUNT);
    assert_eq!(
        bucket_owner(None).unwrap_err(),
        "AUDIT_BUCKET_OWNER is not set"
    );
    for bad in ["", "12345678901", "12345678901x", "1234567890123"] {
        let err = bucket_owner(Some(bad)).unwrap_err();
        assert!(err.contains("12 digits"), "{bad:?}: {err}");
    }
}
