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

use super::{PROCESSOR_TIMEOUT_SECS, Setting, differing};
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
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
const SERVICE: Service = Service::Sqs;

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

/// A queue: its URL and attributes.
struct Queue {
    url: String,
    attrs: HashMap<Attr, String>,
}

/// The queue at `url` with its attributes, `None` when SQS says there is none.
async fn read(ctx: &Ctx, url: String) -> Result<Option<Queue>> {
    let call = ctx.aws.sqs.get_queue_attributes().queue_url(&url);
    let out = call.attribute_names(Attr::All).send().await;
    let out = SERVICE.found(out.map_err(aws("GetQueueAttributes", &url)))?;
    Ok(out.map(|o| Queue {
        attrs: o.attributes().cloned().unwrap_or_default(),
        url,
    }))
}

/// The queue, by the URL in state (when it still names `name`), else by its name.
async fn lookup(ctx: &Ctx, addr: &str, name: &str) -> Result<Option<Found<Queue>>> {
    let suffix = &format!("/{name}");
    let by_id = |url: String| async move {
        if url.ends_with(suffix.as_str()) {
            read(ctx, url).await
        } else {
            Ok(None)
        }
    };
    let by_name = || async {
        let out = ctx.aws.sqs.get_queue_url().queue_name(name).send().await;
        let url = SERVICE.found(out.map_err(aws("GetQueueUrl", name)))?;
        match url.and_then(|o| o.queue_url().map(str::to_string)) {
            Some(url) => read(ctx, url).await,
            None => Ok(None),
        }
    };
    find(ctx, addr, SERVICE, by_id, by_name).await
}

/// `CreateQueue` within 60 s of deleting a queue of that name.
fn deleted_recently(e: &Error) -> bool {
    matches!(
        e.aws_code(),
        Some("AWS.SimpleQueueService.QueueDeletedRecently" | "QueueDeletedRecently")
    )
}

/// Creates the queue (waiting out SQS's name cooldown); answers its URL.
async fn create(ctx: &Ctx, name: &str, want: &HashMap<Attr, String>) -> Result<String> {
    let tags: HashMap<String, String> = ctx.tags().into_iter().collect();
    let what = format!("creating SQS queue {name} (SQS holds a deleted name for 60 s)");
    let out = retry_while(&what, NAME_COOLDOWN, deleted_recently, || async {
        let call = ctx.aws.sqs.create_queue().queue_name(name);
        let call = call
            .set_attributes(Some(want.clone()))
            .set_tags(Some(tags.clone()));
        call.send().await.map_err(aws("CreateQueue", name))
    })
    .await?;
    required(out.queue_url(), "queue URL")
}

/// The attributes, as declarations: each differing one is noted (on `plan`) and those
/// `up` puts back go in one `SetQueueAttributes` call. True when it wrote.
async fn converge_attributes(
    ctx: &Ctx,
    addr: &str,
    q: &Queue,
    want: HashMap<Attr, String>,
) -> Result<bool> {
    let settings = want.into_iter().map(|(k, v)| {
        let have = q.attrs.get(&k);
        // A value that says what payctl wants (parsed where it is JSON) is that value.
        let have = if same(&k, have, &v) {
            v.clone()
        } else {
            have.map_or("unset".into(), String::clone)
        };
        Setting::new(k.as_str().to_string(), have, v.clone(), (k, v))
    });
    let drift: HashMap<Attr, String> = differing(ctx, addr, settings.collect())
        .await?
        .into_iter()
        .collect();
    if drift.is_empty() {
        return Ok(false);
    }
    let call = ctx
        .aws
        .sqs
        .set_queue_attributes()
        .queue_url(&q.url)
        .set_attributes(Some(drift));
    call.send()
        .await
        .map_err(aws("SetQueueAttributes", &q.url))?;
    Ok(true)
}

/// Creates or adopts one queue and converges its tags and attributes; answers its ARN
/// (on `plan`, for a queue that does not exist yet, a placeholder naming it).
async fn ensure_queue(
    ctx: &Ctx,
    which: &str,
    name: &str,
    want: HashMap<Attr, String>,
) -> Result<String> {
    let addr = address(which);
    let (q, change) = match lookup(ctx, &addr, name).await? {
        Some(found) => {
            let tagged = converge_tags(ctx, &addr, &tags::SqsQueue(&found.value.url), None).await?;
            let change = found.change().updated_if(tagged);
            (found.value, change)
        }
        None => {
            if !ctx.would_create(format!("{addr} ({name})")) {
                // What the other queue would name, once this one exists.
                return Ok(format!("(the ARN of {name})"));
            }
            let url = create(ctx, name, &want).await?;
            let q = read(ctx, url.clone()).await?;
            let q = q.ok_or_else(|| {
                Error::Invalid(format!("SQS queue {url} does not exist (any more)"))
            })?;
            (q, Change::Created)
        }
    };
    let arn = required(
        q.attrs.get(&Attr::QueueArn).map(String::as_str),
        "queue ARN",
    )?;
    let record = Record::new(KIND, &q.url).arn(&arn).attr("name", name);
    ctx.record(&addr, record).await?;
    let change = change.updated_if(converge_attributes(ctx, &addr, &q, want).await?);
    ctx.report.note(change, format!("{addr} {}", q.url));
    Ok(arn)
}

async fn delete_queue(ctx: &Ctx, which: &str, name: &str) -> Result<()> {
    let addr = address(which);
    let Some(found) = lookup(ctx, &addr, name).await? else {
        return ctx.forget_gone(&addr).await;
    };
    let url = found.value.url;
    tags::ensure_owned(ctx, &tags::SqsQueue(&url)).await?;
    let delete = || async {
        let call = ctx.aws.sqs.delete_queue().queue_url(&url);
        call.send().await.map_err(aws("DeleteQueue", name))
    };
    ctx.delete_and_forget(&addr, &url, SERVICE, delete).await
}

#[async_trait]
impl Resource for RetryQueues {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let dlq_arn = ensure_queue(ctx, "dlq", &ctx.name("retry-dlq"), desired(None)).await?;
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
