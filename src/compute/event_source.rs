//! The event source mappings: the transactions table's stream → the audit logger, and
//! the retry queue → the processor, both reporting partial batch failures.
//!
//! Stream batches that still fail after 10 retries (each failure bisected) go to the
//! dead-letter queue as an on-failure record, so no change is dropped silently. Mappings
//! carry no tags here; payctl owns a mapping when it joins its own source to its own
//! function (both ARNs come from the state file). Mappings are found by listing them and
//! comparing the source and function ARNs (see [`emulator::mappings`]).

use super::support::{ROLE_PROPAGATION, drifted, role_not_ready};
use super::{AUDIT_LOGGER, PROCESSOR, alias, live_arn};
use crate::aws::emulator;
use crate::data::{dynamodb_table, sqs_queue};
use crate::engine::report::Change;
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::{Status, Wait, retry_while, wait_for};
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
const SERVICE: Service = Service::Lambda;

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
            function: live_arn(ctx, AUDIT_LOGGER)?,
            batch_size: STREAM_BATCH,
            on_failure: Some(ctx.needed_arn(&sqs_queue::address("dlq"))?),
        },
        Mapping {
            which: RETRY,
            source: ctx.needed_arn(&sqs_queue::address("retry"))?,
            function: live_arn(ctx, PROCESSOR)?,
            batch_size: RETRY_BATCH,
            on_failure: None,
        },
    ])
}

/// The settings in which `have` differs from `want`.
pub fn drift(have: &EventSourceMappingConfiguration, want: &Mapping) -> Vec<&'static str> {
    let mut d = Vec::new();
    if !emulator::invokes_alias(have.function_arn(), &want.function) {
        d.push("function (the alias live)");
    }
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

/// A Lambda ARN without its qualifier (`…:function:<name>`).
pub fn unqualified(arn: &str) -> &str {
    match arn.match_indices(':').nth(6) {
        Some((at, _)) => &arn[..at],
        None => arn,
    }
}

/// Whether `m` joins `want`'s source to `want`'s function (its alias, a version, or the
/// unqualified function a stack used before it had aliases: `up` re-points it).
fn joins(m: &EventSourceMappingConfiguration, want: &Mapping) -> bool {
    m.event_source_arn() == Some(want.source.as_str())
        && m.function_arn()
            .is_some_and(|f| unqualified(f) == unqualified(&want.function))
}

/// The mapping, by the UUID in state (while it still joins the same source and
/// function), else by the source's mappings (mappings carry no tags).
async fn lookup(
    ctx: &Ctx,
    want: &Mapping,
) -> Result<Option<Found<EventSourceMappingConfiguration>>> {
    let all = emulator::mappings(&ctx.aws.lambda, Some(&want.source)).await?;
    let with = |uuid: Option<&str>| {
        let mut found = all.iter().filter(|m| joins(m, want));
        Ok(found.find(|m| uuid.is_none() || m.uuid() == uuid).cloned())
    };
    let by_id = |uuid: String| async move { with(Some(&uuid)) };
    let by_source = || async { with(None) };
    find(ctx, &address(want.which), SERVICE, by_id, by_source).await
}

async fn settle(ctx: &Ctx, uuid: &str) -> Result<()> {
    wait_for(&format!("event source mapping {uuid}"), SETTLE, || async {
        let call = ctx.aws.lambda.get_event_source_mapping().uuid(uuid);
        let out = call
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

/// Streams only: the on-failure destination (the dead-letter queue).
fn on_failure(dlq: &str) -> DestinationConfig {
    let dest = OnFailure::builder().destination(dlq).build();
    DestinationConfig::builder().on_failure(dest).build()
}

async fn update(ctx: &Ctx, uuid: &str, want: &Mapping, what: &str) -> Result<()> {
    tracing::info!("event source mapping {}: updating {what}", want.which);
    let call = ctx.aws.lambda.update_event_source_mapping().uuid(uuid);
    let mut call = call
        .function_name(&want.function)
        .batch_size(want.batch_size)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures);
    if let Some(dlq) = &want.on_failure {
        call = call
            .maximum_retry_attempts(STREAM_RETRIES)
            .bisect_batch_on_function_error(true)
            .destination_config(on_failure(dlq));
    }
    call.send()
        .await
        .map_err(aws("UpdateEventSourceMapping", uuid))?;
    Ok(())
}

async fn create(ctx: &Ctx, want: &Mapping) -> Result<String> {
    let call = ctx.aws.lambda.create_event_source_mapping();
    let mut call = call
        .event_source_arn(&want.source)
        .function_name(&want.function)
        .batch_size(want.batch_size)
        .enabled(true)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures);
    if let Some(dlq) = &want.on_failure {
        call = call
            .starting_position(EventSourcePosition::TrimHorizon)
            .maximum_retry_attempts(STREAM_RETRIES)
            .bisect_batch_on_function_error(true)
            .destination_config(on_failure(dlq));
    }
    let what = format!(
        "creating the mapping {} → {} (waiting for its role's policy)",
        want.source, want.function
    );
    let send = || async {
        let out = call.clone().send().await;
        out.map_err(aws("CreateEventSourceMapping", &want.source))
    };
    let out = retry_while(&what, ROLE_PROPAGATION, role_not_ready, send).await?;
    required(out.uuid(), "mapping UUID")
}

async fn ensure_one(ctx: &Ctx, want: &Mapping) -> Result<()> {
    let addr = address(want.which);
    let (uuid, change, settled) = match lookup(ctx, want).await? {
        Some(found) => {
            let have = &found.value;
            let uuid = required(have.uuid(), "mapping UUID")?;
            let (d, none) = (drifted(drift(have, want)), drifted(Vec::new()));
            let what = d.to_string();
            let write = || update(ctx, &uuid, want, &what);
            let wrote = ctx.converge(&addr, "settings", d, none, write).await?;
            let settled = !wrote && matches!(have.state(), Some("Enabled" | "Disabled") | None);
            (uuid, found.change().updated_if(wrote), settled)
        }
        None => {
            if !ctx.would_create(format!("{addr} ({} → {})", want.source, want.function)) {
                return Ok(());
            }
            (create(ctx, want).await?, Change::Created, false)
        }
    };
    let record = Record::new(KIND, &uuid).attr("source", &want.source);
    ctx.record(&addr, record.attr("function", &want.function))
        .await?;
    if !settled && !ctx.planning() {
        settle(ctx, &uuid).await?;
    }
    ctx.report.note(change, format!("{addr} {uuid}"));
    Ok(())
}

/// The mapping's UUID from state, else from the mappings of this environment's
/// function (its ARN follows from its name), so `down` without state finds it too.
async fn located(ctx: &Ctx, which: &str) -> Result<Option<String>> {
    if let Some(uuid) = ctx.state.id(&address(which)) {
        return Ok(Some(uuid));
    }
    let (key, source) = if which == STREAM {
        (AUDIT_LOGGER, ":dynamodb:")
    } else {
        (PROCESSOR, ":sqs:")
    };
    let function = format!(
        "arn:aws:lambda:{}:{}:function:{}",
        ctx.region,
        ctx.account_id,
        super::function_name(ctx, key)
    );
    let all = emulator::mappings(&ctx.aws.lambda, None).await?;
    let mut mine = all.iter().filter(|m| {
        m.function_arn().map(unqualified) == Some(function.as_str())
            && m.event_source_arn().is_some_and(|s| s.contains(source))
    });
    Ok(mine.next().and_then(|m| m.uuid().map(str::to_string)))
}

async fn delete_one(ctx: &Ctx, which: &str) -> Result<()> {
    let addr = address(which);
    let Some(uuid) = located(ctx, which).await? else {
        return ctx.forget_gone(&addr).await;
    };
    let delete = || async {
        let call = ctx.aws.lambda.delete_event_source_mapping().uuid(&uuid);
        call.send()
            .await
            .map_err(aws("DeleteEventSourceMapping", &uuid))
    };
    ctx.delete_and_forget(&addr, &uuid, SERVICE, delete).await
}

#[async_trait]
impl Resource for EventSources {
    kind!(
        KIND,
        depends_on = [alias::KIND, dynamodb_table::KIND, sqs_queue::KIND]
    );

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_without_its_qualifier_is_the_function() {
        let f = "arn:aws:lambda:us-east-1:123456789012:function:payment-processor-dev";
        assert_eq!(unqualified(&format!("{f}:live")), f);
        assert_eq!(unqualified(&format!("{f}:7")), f);
        assert_eq!(unqualified(f), f);
    }
}
