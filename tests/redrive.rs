//! `payctl redrive`: the payments waiting in the dead-letter queue go back to the retry
//! queue, bodies and attributes intact, each exactly once, and the dead-letter queue ends
//! empty; the alarm that says they are waiting exists and notifies the alert topic.

mod common;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName as Q};
use common::*;
use std::collections::BTreeSet;

fn queue_url(stack: &Stack, purpose: &str) -> String {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
    state["resources"][format!("sqs_queue.{purpose}")]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn depth(sqs: &aws_sdk_sqs::Client, queue: &str) -> (String, String) {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(Q::All)
        .send()
        .await
        .unwrap();
    let a = out.attributes().unwrap();
    (
        a[&Q::ApproximateNumberOfMessages].clone(),
        a[&Q::ApproximateNumberOfMessagesNotVisible].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_moves_every_dead_letter_back_once_and_the_dlq_alarm_notifies() {
    let stack = Stack::new("rdv");
    // No deployed mappings: nothing but this test touches the queues.
    std::fs::write(
        stack.home.path().join("payctl.toml"),
        "[env.rdv]\nevent_source_mappings = false\n",
    )
    .unwrap();

    // Before `up`: no queues in the state, one clear line.
    let run = stack.payctl(&["redrive"]);
    assert!(!run.ok);
    assert!(
        run.error_line().contains("has no dlq queue in its state"),
        "{}",
        run.stderr
    );

    stack.must(&["up"]);
    let sdk = stack.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (dlq, retry) = (queue_url(&stack, "dlq"), queue_url(&stack, "retry"));
    let bodies: BTreeSet<String> = (1..=3)
        .map(|i| format!(r#"{{"transaction_id":"txn_dead_{i}"}}"#))
        .collect();
    for body in &bodies {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(body)
            .message_attributes(
                "origin",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("processor")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    let run = stack.must(&["redrive"]);
    assert!(
        run.stdout.contains("redrive rdv: moved 3 message(s)"),
        "{}",
        run.stdout
    );
    assert_eq!(depth(&sqs, &dlq).await, ("0".into(), "0".into()));
    let mut moved = BTreeSet::new();
    for _ in 0..10 {
        let out = sqs
            .receive_message()
            .queue_url(&retry)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            assert_eq!(
                m.message_attributes().unwrap()["origin"].string_value(),
                Some("processor")
            );
            assert!(moved.insert(m.body().unwrap().to_string()), "moved twice");
        }
        if moved.len() == bodies.len() {
            break;
        }
    }
    assert_eq!(moved, bodies);

    // Nothing left: a second run moves nothing.
    let run = stack.must(&["redrive"]);
    assert!(run.stdout.contains("moved 0 message(s)"), "{}", run.stdout);

    // The alarm that says payments wait in the dead-letter queue notifies the topic.
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let out = cw
        .describe_alarms()
        .alarm_names("payment-retry-dlq-rdv")
        .send()
        .await
        .unwrap();
    let alarm = &out.metric_alarms()[0];
    assert_eq!(
        alarm.metric_name(),
        Some("ApproximateNumberOfMessagesVisible")
    );
    let topic =
        serde_json::from_str::<serde_json::Value>(&stack.must(&["outputs", "--json"]).stdout)
            .unwrap()["SNSAlertTopic"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(alarm.alarm_actions(), [topic]);
}
