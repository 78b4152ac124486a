//! The validator function's handler against the emulator's DynamoDB: stores valid
//! payments once, answers repeats idempotently, refuses conflicting payloads and bad
//! input, and never writes on a 400.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use payments_core::validate::Limits;
use serde_json::json;
use validator::{Reply, Validator};

const TABLE: &str = "payment-transactions-fn";

async fn setup(stack: &Stack) -> Validator {
    let db = aws_sdk_dynamodb::Client::new(&stack.sdk().await);
    create_transactions_table(&db, TABLE).await;
    Validator {
        db,
        table: TABLE.into(),
        limits: Limits::default(),
    }
}

async fn items(v: &Validator) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    v.db.scan()
        .table_name(&v.table)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

fn body(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[tokio::test]
async fn validates_stores_once_and_refuses_conflicts() {
    let stack = Stack::new("fn");
    let v = setup(&stack).await;
    let request = br#"{"transaction_id": "txn_123", "amount": 100.00, "currency": "USD", "customer_id": "cust_456"}"#;

    let first = v.handle(request).await;
    let expected = json!({"transaction_id": "txn_123", "status": "VALIDATED", "amount": "100.00", "currency": "USD"});
    assert_eq!(
        first,
        Reply {
            status: 200,
            body: expected.clone()
        }
    );
    let stored = items(&v).await;
    assert_eq!(stored.len(), 1);
    let item = &stored[0];
    assert_eq!(item["status"].as_s().unwrap(), "VALIDATED");
    assert_eq!(item["amount_minor"].as_n().unwrap(), "10000");
    assert_eq!(item["currency"].as_s().unwrap(), "USD");
    assert_eq!(item["customer_id"].as_s().unwrap(), "cust_456");

    // The same request again: same answer, still one item, unchanged.
    assert_eq!(
        v.handle(request).await,
        Reply {
            status: 200,
            body: expected
        }
    );
    assert_eq!(items(&v).await, stored);

    // Same id, different amount: a conflict, and the stored payment stays as it was.
    let conflict = v.handle(&body(json!({"transaction_id": "txn_123", "amount": "100.01", "currency": "USD", "customer_id": "cust_456"}))).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.body["error"], "conflict");
    assert_eq!(items(&v).await, stored);
}

#[tokio::test]
async fn bad_input_is_a_400_listing_every_problem_and_writes_nothing() {
    let stack = Stack::new("fn");
    let v = setup(&stack).await;
    let reply = v
        .handle(&body(
            json!({"transaction_id": "bad id!", "amount": 100.005, "currency": "USD", "extra": 1}),
        ))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"], "validation_failed");
    let fields: Vec<&str> = reply.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for f in ["transaction_id", "amount", "customer_id"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    assert!(
        !reply.body.to_string().contains("bad id!"),
        "input echoed: {}",
        reply.body
    );
    assert!(items(&v).await.is_empty());
    let lowercase = v.handle(&body(json!({"transaction_id": "t1", "amount": "1.00", "currency": "usd", "customer_id": "c"}))).await;
    assert_eq!(lowercase.status, 400);
    assert_eq!(lowercase.body["details"][0]["field"], "currency");
    assert!(items(&v).await.is_empty());

    let jpy = v.handle(&body(json!({"transaction_id": "t-jpy", "amount": 100, "currency": "JPY", "customer_id": "c"}))).await;
    assert_eq!(jpy.status, 200);
    assert_eq!(jpy.body["amount"], "100");
    let jpy_fraction = v.handle(&body(json!({"transaction_id": "t-jpy2", "amount": "1.5", "currency": "JPY", "customer_id": "c"}))).await;
    assert_eq!(jpy_fraction.status, 400);
    assert_eq!(items(&v).await.len(), 1);
}

#[tokio::test]
async fn an_unavailable_store_is_a_503_without_echoing_input() {
    let stack = Stack::new("fn");
    let mut v = setup(&stack).await;
    v.table = "no-such-table".into();
    let reply = v.handle(br#"{"transaction_id": "txn_9", "amount": "1.00", "currency": "EUR", "customer_id": "c"}"#).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body["error"], "unavailable");
}

#[tokio::test]
async fn withdrawn_currencies_are_refused_naming_the_code_and_store_nothing() {
    let stack = Stack::new("fn");
    let v = setup(&stack).await;
    for code in ["HRK", "SLL", "ZWL", "CUC"] {
        let reply = v
            .handle(&body(json!({"transaction_id": format!("txn_{code}"), "amount": "10.00", "currency": code, "customer_id": "cust_1"})))
            .await;
        assert_eq!(reply.status, 400, "{code}: {}", reply.body);
        let text = reply.body.to_string();
        assert!(
            text.contains(&format!("{code} has been withdrawn from ISO 4217")),
            "{text}"
        );
    }
    assert!(items(&v).await.is_empty());
    // Their successors are accepted.
    for code in ["EUR", "SLE", "ZWG"] {
        let reply = v
            .handle(&body(json!({"transaction_id": format!("txn_{code}"), "amount": "10.00", "currency": code, "customer_id": "cust_1"})))
            .await;
        assert_eq!(reply.status, 200, "{code}: {}", reply.body);
    }
}
