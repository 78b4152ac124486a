//! The data layer: the RDS PostgreSQL instance with its subnet group and parameter group, the DynamoDB
//! transactions table, the S3 audit bucket and the SQS retry queue with its dead-letter
//! queue. One file (or folder) per resource kind; `support` holds what is not a kind.

pub mod dynamodb_table;
pub mod rds_instance;
pub mod rds_parameter_group;
pub mod rds_subnet_group;
pub mod s3_bucket;
pub mod sqs_queue;
pub mod support;

use crate::engine::{Ctx, Layer, Service};
use crate::error::{Error, Result};
use crate::waiter::{Status, Wait, retry_while, wait_for};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

/// The processor's timeout; the retry queue's visibility timeout is six times it, as AWS
/// recommends for a queue that feeds a Lambda function.
pub const PROCESSOR_TIMEOUT_SECS: i32 = 30;

pub fn layer() -> Layer {
    Layer {
        name: "data",
        resources: vec![
            Arc::new(rds_subnet_group::DbSubnetGroup),
            Arc::new(rds_parameter_group::DbParameterGroup),
            Arc::new(rds_instance::DbInstance::default()),
            Arc::new(dynamodb_table::TransactionsTable),
            Arc::new(s3_bucket::AuditBucket),
            Arc::new(sqs_queue::RetryQueues),
        ],
    }
}

/// One setting of a resource whose settings one AWS call writes together (RDS
/// `ModifyDBInstance`, SQS `SetQueueAttributes`): what it is, as AWS has it and as payctl
/// wants it, and `fix`, what the call needs to put it back.
pub struct Setting<F> {
    pub label: String,
    pub have: String,
    pub want: String,
    pub fix: F,
}

impl<F> Setting<F> {
    pub fn new(label: impl Into<String>, have: impl Display, want: impl Display, fix: F) -> Self {
        Setting {
            label: label.into(),
            have: have.to_string(),
            want: want.to_string(),
            fix,
        }
    }
}

/// Converges each of `settings` of `address` on its own (so `plan` notes every one that
/// differs, `attribute: old → new`) and answers the fixes `up` must send, in one call.
pub async fn differing<F>(ctx: &Ctx, address: &str, settings: Vec<Setting<F>>) -> Result<Vec<F>> {
    let mut fixes = Vec::new();
    for s in settings {
        // The write is the caller's one call, made once every fix is known.
        if ctx
            .converge(address, &s.label, s.have, s.want, || async { Ok(()) })
            .await?
        {
            fixes.push(s.fix);
        }
    }
    Ok(fixes)
}

/// Deletes the RDS group `(name, arn)` recorded at `address` (a subnet or parameter
/// group) with `delete`, once its tags say payctl owns it, retrying while RDS still
/// reports it in use (error code `in_use`), as it does for a while after its instance is
/// gone; NotFound is success, then the record goes.
pub async fn delete_rds_group<T, F, Fut>(
    ctx: &Ctx,
    address: &str,
    (name, arn): (&str, &str),
    in_use: &'static str,
    delete: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    crate::engine::tags::ensure_owned(ctx, &crate::engine::tags::Rds(arn)).await?;
    let busy = |e: &Error| e.aws_code() == Some(in_use);
    let what = format!("deleting {name}");
    let retry = || retry_while(&what, Wait::minutes(10), busy, delete);
    ctx.delete_and_forget(address, name, Service::Rds, retry)
        .await
}

/// The error for an SDK request builder that refused its input.
pub fn build_error(e: impl Display) -> Error {
    Error::Invalid(format!("building an AWS request: {e}"))
}

/// After a delete that AWS finishes in the background (a DB instance, a table): waits
/// until `status` finds nothing any more (it answers the current status while the
/// resource exists), then forgets the record at `address`.
pub async fn wait_gone_and_forget<F>(
    ctx: &Ctx,
    address: &str,
    what: &str,
    wait: Wait,
    status: impl Fn() -> F,
) -> Result<()>
where
    F: Future<Output = Result<Option<String>>>,
{
    wait_for(&format!("{what} to be deleted"), wait, || async {
        Ok(match status().await? {
            None => Status::Ready(()),
            Some(s) => Status::Pending(s),
        })
    })
    .await?;
    ctx.forget(address).await
}
