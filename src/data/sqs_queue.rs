//! The retry queue `payment-retry-<env>` and its dead-letter queue
//! `payment-retry-dlq-<env>`: 14-day retention, SQS-managed encryption, a redrive to the
//! DLQ after 15 receives, and a visibility timeout of six times the processor's timeout.
//!
//! 15 receives: the processor backs a failed retry off (30 s doubling to 15 minutes per
//! receive, `lambdas/processor/src/backoff.rs`), so the 13th receive comes about 2 hours
//! after the first; 15 outlasts a 2-hour database outage with about 30 minutes to spare,
//! and what still fails reaches the DLQ, whose alarm says so.
//!
//! SQS refuses a queue name for 60 s after it was deleted (`QueueDeletedRecently`), so an
//! `up` right after `down` waits and retries (for up to 75 s, scaled by
//! `PAYCTL_WAIT_SCALE`) instead of failing.

use super::PROCESSOR_TIMEOUT_SECS;
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws};
use crate::state::Record;
use crate::waiter::{Wait, retry_while};
use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName as Attr;
use std::collections::HashMap;
use std::time::Duration;

pub const KIND: &str = "sqs_queue";
pub const RETENTION_SECS: i32 = 14 * 24 * 3600;
pub const MAX_RECEIVES: i32 = 15;
const NAME_COOLDOWN: Wait = Wait {
    timeout: Duration::from_secs(75),
    first: Duration::from_secs(5),
    max_interval: Duration::from_secs(15),
};

pub struct RetryQueues;

pub fn address(which: &str) -> String {
    format!("{KIND}.{which}")
}

fn desired(dlq_arn: Option<&str>) -> HashMap<Attr, String> {
    let mut a = HashMap::from([
        (Attr::MessageRetentionPeriod, RETENTION_SECS.to_string()),
        (Attr::SqsManagedSseEnabled, "true".to_string()),
    ]);
    if let Some(arn) = dlq_arn {
        a.insert(
            Attr::VisibilityTimeout,
            (6 * PROCESSOR_TIMEOUT_SECS).to_string(),
        );
        let redrive =
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES});
        a.insert(Attr::RedrivePolicy, redrive.to_string());
    }
    a
}

/// Whether a current attribute value already says what `want` says (JSON compared parsed).
fn same(attr: &Attr, have: Option<&String>, want: &str) -> bool {
    match (attr, have) {
        (Attr::RedrivePolicy, Some(h)) => {
            let (h, w) = (
                serde_json::from_str::<serde_json::Value>(h).ok(),
                serde_json::from_str::<serde_json::Value>(want).ok(),
            );
            // maxReceiveCount may come back as a string or a number.
            let norm = |v: Option<serde_json::Value>| {
                v.map(|v| {
                    (
                        v["deadLetterTargetArn"].as_str().map(str::to_string),
                        v["maxReceiveCount"]
                            .to_string()
                            .trim_matches('"')
                            .to_string(),
                    )
                })
            };
            norm(h) == norm(w)
        }
        (_, Some(h)) => h == want,
        (_, None) => false,
    }
}

async fn url_of(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    match ctx.aws.sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url().map(str::to_string)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetQueueUrl", name)(e)),
    }
}

async fn attributes(ctx: &Ctx, url: &str) -> Result<HashMap<Attr, String>> {
    attributes_if_exists(ctx, url)
        .await?
        .ok_or_else(|| Error::Invalid(format!("SQS queue {url} does not exist (any more)")))
}

/// The attributes, or `None` when the queue does not exist (any more).
async fn attributes_if_exists(ctx: &Ctx, url: &str) -> Result<Option<HashMap<Attr, String>>> {
    let out = ctx
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Attr::All)
        .send()
        .await;
    match out {
        Ok(out) => Ok(Some(out.attributes().cloned().unwrap_or_default())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetQueueAttributes", url)(e)),
    }
}

async fn check_owned(ctx: &Ctx, url: &str) -> Result<()> {
    let out = ctx
        .aws
        .sqs
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .map_err(aws("ListQueueTags", url))?;
    let tags = out.tags().cloned().unwrap_or_default();
    if ctx.owns(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return Ok(());
    }
    Err(Error::not_owned(format!("SQS queue {url}"), &ctx.env))
}

fn deleted_recently(e: &Error) -> bool {
    matches!(
        e.aws_code(),
        Some("AWS.SimpleQueueService.QueueDeletedRecently" | "QueueDeletedRecently")
    )
}

/// Creates or adopts one queue and converges its attributes; returns (url, arn).
async fn ensure_queue(
    ctx: &Ctx,
    which: &str,
    name: &str,
    want: HashMap<Attr, String>,
) -> Result<(String, String)> {
    let sqs = &ctx.aws.sqs;
    let addr = address(which);
    // The URL in the state file is checked by reading the queue's attributes.
    let mut have = None;
    let mut known = None;
    if let Some(url) = ctx
        .state
        .id(&addr)
        .filter(|u| u.ends_with(&format!("/{name}")))
    {
        have = attributes_if_exists(ctx, &url).await?;
        known = have.is_some().then_some(url);
    }
    if known.is_none() {
        known = url_of(ctx, name).await?;
    }
    let (url, mut change) = match known {
        Some(url) => {
            if ctx.state.get(&addr).is_some() {
                // Its tags are read below, before any change.
                (url, Change::Unchanged)
            } else {
                check_owned(ctx, &url).await?;
                (url, Change::Adopted)
            }
        }
        None => {
            if !ctx.would_create(format!("{addr} ({name})")) {
                // What the other queue would name, once this one exists.
                return Ok((String::new(), format!("(the ARN of {name})")));
            }
            let tags: HashMap<String, String> = ctx.tags().into_iter().collect();
            let out = retry_while(
                &format!("creating SQS queue {name} (SQS holds a deleted name for 60 s)"),
                NAME_COOLDOWN,
                deleted_recently,
                || async {
                    let call = sqs
                        .create_queue()
                        .queue_name(name)
                        .set_attributes(Some(want.clone()))
                        .set_tags(Some(tags.clone()));
                    call.send().await.map_err(aws("CreateQueue", name))
                },
            )
            .await?;
            (
                crate::error::required(out.queue_url(), "queue URL")?,
                Change::Created,
            )
        }
    };
    let have = match have {
        Some(have) => have,
        None => attributes(ctx, &url).await?,
    };
    let arn = crate::error::required(have.get(&Attr::QueueArn).map(String::as_str), "queue ARN")?;
    ctx.record(&addr, Record::new(KIND, &url).arn(&arn).attr("name", name))
        .await?;
    let drift: HashMap<Attr, String> = want
        .into_iter()
        .filter(|(k, v)| !same(k, have.get(k), v))
        .collect();
    if !drift.is_empty() {
        if change == Change::Unchanged {
            check_owned(ctx, &url).await?;
        }
        if ctx.planning() {
            for (k, v) in &drift {
                let old = have.get(k).map_or("unset", String::as_str);
                ctx.apply(&addr, k.as_str(), old, v);
            }
            ctx.report.note(change, format!("{addr} {url}"));
            return Ok((url, arn));
        }
        let names: Vec<&str> = drift.keys().map(|k| k.as_str()).collect();
        tracing::info!("SQS queue {name}: setting {}", names.join(", "));
        sqs.set_queue_attributes()
            .queue_url(&url)
            .set_attributes(Some(drift))
            .send()
            .await
            .map_err(aws("SetQueueAttributes", name))?;
        if change == Change::Unchanged {
            change = Change::Updated;
        }
    }
    ctx.report.note(change, format!("{addr} {url}"));
    Ok((url, arn))
}

async fn delete_queue(ctx: &Ctx, which: &str, name: &str) -> Result<()> {
    let addr = address(which);
    let url = match url_of(ctx, name).await? {
        Some(url) => url,
        None => {
            ctx.forget(&addr).await?;
            ctx.report.note(Change::Absent, addr);
            return Ok(());
        }
    };
    check_owned(ctx, &url).await?;
    match ctx.aws.sqs.delete_queue().queue_url(&url).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) => {}
        Err(e) => return Err(aws("DeleteQueue", name)(e)),
    }
    ctx.forget(&addr).await?;
    ctx.report.note(Change::Deleted, format!("{addr} {url}"));
    Ok(())
}

#[async_trait]
impl Resource for RetryQueues {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let (_, dlq_arn) = ensure_queue(ctx, "dlq", &ctx.name("retry-dlq"), desired(None)).await?;
        ensure_queue(ctx, "retry", &ctx.name("retry"), desired(Some(&dlq_arn))).await?;
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        delete_queue(ctx, "retry", &ctx.name("retry")).await?;
        delete_queue(ctx, "dlq", &ctx.name("retry-dlq")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policy_compares_parsed() {
        let want = desired(Some("arn:dlq"));
        let w = &want[&Attr::RedrivePolicy];
        assert!(same(
            &Attr::RedrivePolicy,
            Some(&r#"{"maxReceiveCount":"15","deadLetterTargetArn":"arn:dlq"}"#.to_string()),
            w
        ));
        assert!(same(
            &Attr::RedrivePolicy,
            Some(&r#"{"deadLetterTargetArn":"arn:dlq","maxReceiveCount":15}"#.to_string()),
            w
        ));
        assert!(!same(
            &Attr::RedrivePolicy,
            Some(&r#"{"deadLetterTargetArn":"arn:dlq","maxReceiveCount":5}"#.to_string()),
            w
        ));
        assert!(!same(&Attr::RedrivePolicy, None, w));
        assert_eq!(want[&Attr::VisibilityTimeout], "180");
        assert_eq!(want[&Attr::MessageRetentionPeriod], "1209600");
    }

    #[test]
    fn the_name_cooldown_error_is_transient() {
        let e = |code: &str| Error::Aws {
            op: "CreateQueue",
            resource: "q".into(),
            code: code.into(),
            message: String::new(),
        };
        assert!(deleted_recently(&e(
            "AWS.SimpleQueueService.QueueDeletedRecently"
        )));
        assert!(deleted_recently(&e("QueueDeletedRecently")));
        assert!(!deleted_recently(&e("QueueAlreadyExists")));
    }
}
