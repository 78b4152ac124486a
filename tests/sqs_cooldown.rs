//! SQS holds a deleted queue's name for 60 s. The emulator does not, so a fault proxy
//! answers CreateQueue with SQS's own `QueueDeletedRecently` error (JSON protocol, with
//! the query-compatible error header) and payctl must wait and retry, within a bound.

mod common;

use common::proxy::{Fault, Proxy};
use common::*;

fn deleted_recently(times: usize) -> Fault {
    Fault {
        operation: "CreateQueue".into(),
        times,
        status: 400,
        headers: vec![
            ("Content-Type".into(), "application/x-amz-json-1.0".into()),
            ("x-amzn-query-error".into(), "AWS.SimpleQueueService.QueueDeletedRecently;Sender".into()),
        ],
        body: r#"{"__type":"com.amazonaws.sqs#QueueDeletedRecently","message":"You must wait 60 seconds after deleting a queue before you can create another with the same name."}"#.into(),
    }
}

async fn queue_exists(stack: &Stack, name: &str) -> bool {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk().await);
    sqs.get_queue_url().queue_name(name).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_right_after_down_waits_out_the_queue_name_cooldown() {
    let stack = Stack::new("dev");
    stack.must(&["up"]);
    stack.must(&["down", "--yes"]);

    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.inject(deleted_recently(2));
    // Scale payctl's waits down 100× so the test takes well under a second of waiting.
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[("PAYCTL_WAIT_SCALE", "0.01")]);
    assert!(run.ok, "{}", run.stderr);
    let (requests, injected) = proxy.count("CreateQueue");
    assert_eq!(injected, 2);
    assert!(
        requests >= 4,
        "both queues created after the retries ({requests} requests)"
    );
    assert!(queue_exists(&stack, "payment-retry-dev").await);
    assert!(queue_exists(&stack, "payment-retry-dlq-dev").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooldown_wait_is_bounded_and_names_the_error() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.inject(deleted_recently(usize::MAX));
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[("PAYCTL_WAIT_SCALE", "0.01")]);
    assert!(!run.ok, "up succeeded though CreateQueue never did");
    let err = run.error_line();
    assert!(
        err.contains("CreateQueue") && err.contains("QueueDeletedRecently"),
        "{err}"
    );
    assert!(err.contains("re-run"), "{err}");
    let (_, injected) = proxy.count("CreateQueue");
    assert!(
        (2..50).contains(&injected),
        "bounded retries, got {injected}"
    );
    // Everything else was created and recorded; a re-run without the fault completes.
    stack.must(&["up"]);
    assert!(queue_exists(&stack, "payment-retry-dev").await);
}
