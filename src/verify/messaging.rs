//! The queues and the alert topic: each SQS queue encrypted at rest, with SQS-managed
//! keys or a KMS key (SQS.1); the SNS topic encrypted with a KMS key (SNS.1, which
//! Security Hub retired from FSBP in 2024 and keeps in its NIST SP 800-53 standard).
//! The why says whether the topic's key is the stack's SNS key: CloudWatch alarms can
//! publish only to a topic under a key whose policy lets them.

use super::{Check, Control, Read, Target, is_key, read};
use crate::data::sqs_queue;
use crate::engine::Service;
use crate::security::kms_key;
use aws_sdk_sqs::types::QueueAttributeName as Attr;
use futures::future::join_all;

pub const QUEUE_ENCRYPTED: Control = Control::new("SQS queue is encrypted at rest", Some("SQS.1"));
pub const TOPIC_ENCRYPTED: Control =
    Control::new("SNS topic is encrypted with a KMS key", Some("SNS.1"));

/// The queues the stack makes (`sqs_queue.<which>`).
const QUEUES: [&str; 2] = ["dlq", "retry"];

pub async fn checks(t: &Target) -> Vec<Check> {
    let (mut queues, topic) = tokio::join!(queues(t), topic(t));
    queues.push(topic);
    queues
}

async fn queues(t: &Target) -> Vec<Check> {
    let mut checks: Vec<Check> = QUEUES
        .iter()
        .map(|q| sqs_queue::address(q))
        .filter(|addr| t.record(addr).is_none())
        .map(|addr| QUEUE_ENCRYPTED.fail(addr, "not in the state file"))
        .collect();
    let reads = t
        .of_kind(sqs_queue::KIND)
        .into_iter()
        .map(|(addr, rec)| async move {
            let name = rec.get("name").unwrap_or(addr).to_string();
            let out = t
                .aws
                .sqs
                .get_queue_attributes()
                .queue_url(&rec.id)
                .attribute_names(Attr::KmsMasterKeyId)
                .attribute_names(Attr::SqsManagedSseEnabled)
                .send()
                .await;
            let attrs = match read(out, Service::Sqs, "GetQueueAttributes", &name) {
                Read::Got(out) => out.attributes().cloned().unwrap_or_default(),
                Read::Gone => return QUEUE_ENCRYPTED.fail(name, "not found"),
                Read::Unreadable(why) => return QUEUE_ENCRYPTED.fail(name, why),
            };
            let kms = attrs.get(&Attr::KmsMasterKeyId).filter(|k| !k.is_empty());
            let managed =
                attrs.get(&Attr::SqsManagedSseEnabled).map(String::as_str) == Some("true");
            match (kms, managed) {
                (Some(key), _) => QUEUE_ENCRYPTED.pass(name, format!("SSE-KMS with {key}")),
                (None, true) => QUEUE_ENCRYPTED.pass(name, "SQS-managed encryption (SSE-SQS)"),
                (None, false) => QUEUE_ENCRYPTED.fail(name, "no server-side encryption"),
            }
        });
    checks.extend(join_all(reads).await);
    checks
}

async fn topic(t: &Target) -> Check {
    let (name, attrs) = match t.topic_attributes(TOPIC_ENCRYPTED).await {
        Ok(read) => read,
        Err(check) => return check,
    };
    match attrs.get("KmsMasterKeyId").filter(|k| !k.is_empty()) {
        None => TOPIC_ENCRYPTED.fail(name, "no KMS key (KmsMasterKeyId is empty)"),
        Some(key) => {
            let ours = t
                .record(&kms_key::address(kms_key::SNS))
                .is_some_and(|r| is_key(key, r));
            let whose = if ours {
                "the stack's SNS key"
            } else {
                "not the stack's SNS key, so alarms may not be able to publish"
            };
            TOPIC_ENCRYPTED.pass(name, format!("encrypted with {key} ({whose})"))
        }
    }
}
