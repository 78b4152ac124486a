//! The event source mappings: the transactions table's stream → the audit logger, and
//! the retry queue → the processor, both reporting partial batch failures.
//!
//! Stream batches that still fail after 10 retries (each failure bisected) go to the
//! dead-letter queue as an on-failure record, so no change is dropped silently. Mappings
//! carry no tags here; payctl owns a mapping when it joins its own source to its own
//! function (both ARNs come from the state file). Mappings are found by listing them and
//! comparing the source and function ARNs.

use super::{AUDIT_LOGGER, PROCESSOR, function, function_arn};
use crate::data::{dynamodb_table, sqs_queue};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::{Status, Wait, wait_for};
use async_trait::async_trait;
use aws_sdk_lambda::types::{
    DestinationConfig, EventSourceMappingConfiguration, EventSourcePosition, FunctionResponseType,
    OnFailure,
};
use futures::future::join_all;

pub const KIND: &str = "event_source_mapping";
pub const STREAM: &str = "stream";
pub const RETRY: &str = "retry";
pub const STREAM_RETRIES: i32 = 10;
pub const STREAM_BATCH: i32 = 100;
pub const RETRY_BATCH: i32 = 10;
const SETTLE: Wait = Wait::minutes(5);

pub struct EventSources;

pub fn address(which: &str) -> String {
    format!("{KIND}.{which}")
}

/// What one mapping should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub which: &'static str,
    pub source: String,
    pub function: String,
    pub batch_size: i32,
    /// Streams only: retries, bisecting, and the on-failure destination.
    pub on_failure: Option<String>,
}

pub fn desired(ctx: &Ctx) -> Result<Vec<Mapping>> {
    Ok(vec![
        Mapping {
            which: STREAM,
            source: ctx.needed_attr(dynamodb_table::ADDR, "stream_arn")?,
            function: function_arn(ctx, AUDIT_LOGGER)?,
            batch_size: STREAM_BATCH,
            on_failure: Some(ctx.needed_arn(&sqs_queue::address("dlq"))?),
        },
        Mapping {
            which: RETRY,
            source: ctx.needed_arn(&sqs_queue::address("retry"))?,
            function: function_arn(ctx, PROCESSOR)?,
            batch_size: RETRY_BATCH,
            on_failure: None,
        },
    ])
}

/// The settings in which `have` differs from `want`.
pub fn drift(have: &EventSourceMappingConfiguration, want: &Mapping) -> Vec<&'static str> {
    let mut d = Vec::new();
    if have.batch_size() != Some(want.batch_size) {
        d.push("batch size");
    }
    if have.function_response_types() != [FunctionResponseType::ReportBatchItemFailures] {
        d.push("partial batch failures");
    }
    if let Some(dlq) = &want.on_failure {
        let dest = have
            .destination_config()
            .and_then(|c| c.on_failure())
            .and_then(|f| f.destination());
        if dest != Some(dlq.as_str()) {
            d.push("on-failure destination");
        }
        if have.maximum_retry_attempts() != Some(STREAM_RETRIES) {
            d.push("retry attempts");
        }
        if have.bisect_batch_on_function_error() != Some(true) {
            d.push("bisect on error");
        }
    }
    d
}

async fn find(ctx: &Ctx, want: &Mapping) -> Result<Option<EventSourceMappingConfiguration>> {
    // Filtered by source only: some endpoints match FunctionName literally (name vs ARN).
    let all: Vec<EventSourceMappingConfiguration> = ctx
        .aws
        .lambda
        .list_event_source_mappings()
        .event_source_arn(&want.source)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("ListEventSourceMappings", &want.source))?;
    Ok(all.into_iter().find(|m| {
        m.event_source_arn() == Some(want.source.as_str())
            && m.function_arn() == Some(want.function.as_str())
    }))
}

async fn settle(ctx: &Ctx, uuid: &str) -> Result<()> {
    wait_for(&format!("event source mapping {uuid}"), SETTLE, || async {
        let out = ctx
            .aws
            .lambda
            .get_event_source_mapping()
            .uuid(uuid)
            .send()
            .await
            .map_err(aws("GetEventSourceMapping", uuid))?;
        match out.state() {
            Some("Enabled") | Some("Disabled") | None => Ok(Status::Ready(())),
            Some(other) => Ok(Status::Pending(other.to_string())),
        }
    })
    .await
}

async fn ensure_one(ctx: &Ctx, want: &Mapping) -> Result<()> {
    let lambda = &ctx.aws.lambda;
    let addr = address(want.which);
    let failure_dest = want.on_failure.as_ref().map(|dlq| {
        DestinationConfig::builder()
            .on_failure(OnFailure::builder().destination(dlq).build())
            .build()
    });
    let stream = want.on_failure.is_some();
    let mut settled = false;
    let (uuid, change) = match find(ctx, want).await? {
        Some(have) => {
            let uuid = required(have.uuid(), "mapping UUID")?;
            let d = drift(&have, want);
            settled = d.is_empty() && matches!(have.state(), Some("Enabled" | "Disabled") | None);
            let known = ctx.state.get(&addr).is_some();
            if !d.is_empty() && !ctx.apply(&addr, "settings", d.join(", "), "as configured") {
                settled = true;
                (uuid, Change::Updated)
            } else if d.is_empty() {
                (
                    uuid,
                    if known {
                        Change::Unchanged
                    } else {
                        Change::Adopted
                    },
                )
            } else {
                tracing::info!(
                    "event source mapping {}: updating {}",
                    want.which,
                    d.join(", ")
                );
                let mut call = lambda
                    .update_event_source_mapping()
                    .uuid(&uuid)
                    .batch_size(want.batch_size)
                    .function_response_types(FunctionResponseType::ReportBatchItemFailures);
                if stream {
                    call = call
                        .maximum_retry_attempts(STREAM_RETRIES)
                        .bisect_batch_on_function_error(true)
                        .set_destination_config(failure_dest.clone());
                }
                call.send()
                    .await
                    .map_err(aws("UpdateEventSourceMapping", &uuid))?;
                (
                    uuid,
                    if known {
                        Change::Updated
                    } else {
                        Change::Adopted
                    },
                )
            }
        }
        None => {
            if !ctx.would_create(format!("{addr} ({} → {})", want.source, want.function)) {
                return Ok(());
            }
            let mut call = lambda
                .create_event_source_mapping()
                .event_source_arn(&want.source)
                .function_name(&want.function)
                .batch_size(want.batch_size)
                .enabled(true)
                .function_response_types(FunctionResponseType::ReportBatchItemFailures);
            if stream {
                call = call
                    .starting_position(EventSourcePosition::TrimHorizon)
                    .maximum_retry_attempts(STREAM_RETRIES)
                    .bisect_batch_on_function_error(true)
                    .set_destination_config(failure_dest);
            }
            let out = call
                .send()
                .await
                .map_err(aws("CreateEventSourceMapping", &want.source))?;
            (required(out.uuid(), "mapping UUID")?, Change::Created)
        }
    };
    ctx.record(
        &addr,
        Record::new(KIND, &uuid)
            .attr("source", &want.source)
            .attr("function", &want.function),
    )
    .await?;
    if !settled && !ctx.planning() {
        settle(ctx, &uuid).await?;
    }
    ctx.report.note(change, format!("{addr} {uuid}"));
    Ok(())
}

/// The mapping's UUID from state, else by listing the mappings of this environment's
/// function (its ARN follows from its name), so `down` without state finds it too.
async fn located(ctx: &Ctx, which: &str) -> Result<Option<String>> {
    if let Some(uuid) = ctx.state.id(&address(which)) {
        return Ok(Some(uuid));
    }
    let key = if which == STREAM {
        AUDIT_LOGGER
    } else {
        PROCESSOR
    };
    let function = format!(
        "arn:aws:lambda:{}:{}:function:{}",
        ctx.region,
        ctx.account_id,
        super::function_name(ctx, key)
    );
    let all: Vec<EventSourceMappingConfiguration> = ctx
        .aws
        .lambda
        .list_event_source_mappings()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("ListEventSourceMappings", &function))?;
    let wanted_source = if which == STREAM {
        ":dynamodb:"
    } else {
        ":sqs:"
    };
    Ok(all
        .into_iter()
        .find(|m| {
            m.function_arn() == Some(function.as_str())
                && m.event_source_arn()
                    .is_some_and(|s| s.contains(wanted_source))
        })
        .and_then(|m| m.uuid().map(str::to_string)))
}

async fn delete_one(ctx: &Ctx, which: &str) -> Result<()> {
    let addr = address(which);
    let Some(uuid) = located(ctx, which).await? else {
        ctx.forget(&addr).await?;
        ctx.report.note(Change::Absent, addr);
        return Ok(());
    };
    match ctx
        .aws
        .lambda
        .delete_event_source_mapping()
        .uuid(&uuid)
        .send()
        .await
    {
        Ok(_) => ctx.report.note(Change::Deleted, format!("{addr} {uuid}")),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            ctx.report.note(Change::Absent, format!("{addr} {uuid}"))
        }
        Err(e) => return Err(aws("DeleteEventSourceMapping", &uuid)(e)),
    }
    ctx.forget(&addr).await?;
    Ok(())
}

#[async_trait]
impl Resource for EventSources {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[function::KIND, dynamodb_table::KIND, sqs_queue::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        if !ctx.settings.event_source_mappings {
            // Turned off for this environment (payctl.toml): its stream and retry queue
            // are consumed by `payctl local start-api` only; payctl's mappings go.
            if ctx.planning() {
                for (addr, r) in ctx.state.of_kind(KIND) {
                    ctx.apply_delete(format!("{addr} {} (event_source_mappings = false)", r.id));
                }
                return Ok(());
            }
            return self.delete(ctx).await;
        }
        let mappings = desired(ctx)?;
        all_ok(join_all(mappings.iter().map(|m| ensure_one(ctx, m))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all([STREAM, RETRY].map(|w| delete_one(ctx, w))).await)
    }
}
