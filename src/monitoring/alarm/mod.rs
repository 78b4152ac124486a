//! CloudWatch metric alarms, each publishing to the alert topic:
//! - `payment-api-4xx-<env>`: the API's 4XX responses, Sum > 50 over 10 minutes;
//! - `payment-<function>-errors-<env>`, one per function (validator, processor, audit
//!   logger): Lambda `Errors`, Sum > 10 over 10 minutes;
//! - `payment-rds-cpu-<env>`: the database's CPU, Average > 80 % for 15 minutes (three
//!   5-minute periods, all three breaching);
//! - `payment-retry-dlq-<env>`: any message in the retry queue's dead-letter queue (SQS
//!   `ApproximateNumberOfMessagesVisible`, Maximum > 0 over 5 minutes): a payment that
//!   exhausted its retries waits for a person (`payctl redrive`);
//! - `payment-ledger-conflict-<env>`: any ledger conflict the processor counted (its
//!   embedded-metric-format log line, `Payments`/`LedgerConflicts` by `FunctionName`,
//!   Sum > 0 over 5 minutes). A 409 answer is not a Lambda error, so `Errors` misses it.
//!
//! One alarm per function rather than one metric-math alarm over the three: the alarm
//! that fires (its name is the mail's subject) already says which function fails, and
//! each function's state shows in the console on its own; a busy function cannot hide a
//! quiet one that fails (with a sum over all three, 11 errors in a rarely used function
//! and 11 spread over three functions look the same); a plain metric alarm needs no
//! expression, so it has no missing-data subtleties (`m1+m2+m3` is empty when any one
//! function has no data), and the thresholds can later differ per function. The cost is
//! two more alarms.
//!
//! Actions: `AlarmActions` only. No `OKActions`: CloudWatch runs them on every move to OK,
//! including INSUFFICIENT_DATA → OK, which every new alarm makes after its first
//! evaluation and a `notBreaching` alarm makes whenever data resumes, so the mails would
//! mostly carry no news; recovery shows in the console and alarm history.
//! `TreatMissingData = notBreaching`: no traffic is not an incident.
//!
//! `PutMetricAlarm` creates or replaces: `up` compares `DescribeAlarms` with the desired
//! definition and puts only when they differ, so a second `up` leaves the alarms (and
//! their configuration timestamps) alone. Tags are set on creation (CloudWatch ignores
//! them on an update) and put back with `TagResource`. Only alarms whose tags say payctl
//! owns them are adopted, updated or deleted.
//!
//! What each alarm says, and the table of settings in which one differs, are in [`spec`].

mod spec;

pub use spec::{
    API_4XX_THRESHOLD, AlarmSpec, LAMBDA_ERRORS_THRESHOLD, LEDGER_METRIC, LEDGER_NAMESPACE,
    RDS_CPU_THRESHOLD, TREAT_MISSING_DATA, desired, differences,
};

use super::Targets;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, Via, kind};
use crate::error::{Result, all_ok, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{AlarmType, Dimension, MetricAlarm, Tag};
use futures::future::join_all;
use std::collections::{BTreeSet, HashMap};

pub const KIND: &str = "cloudwatch_alarm";
const SERVICE: Service = Service::CloudWatch;

pub struct Alarms;

pub fn address(purpose: &str) -> String {
    format!("{KIND}.{purpose}")
}

/// The metric alarms of those names that exist, by name (one lookup for all of them).
async fn describe(ctx: &Ctx, names: &[String]) -> Result<HashMap<String, MetricAlarm>> {
    let mut found = HashMap::new();
    // DescribeAlarms takes at most 100 names.
    for chunk in names.chunks(100) {
        let call = ctx.aws.cloudwatch.describe_alarms();
        let call = call.set_alarm_names(Some(chunk.to_vec()));
        let mut pages = call
            .alarm_types(AlarmType::MetricAlarm)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("DescribeAlarms", chunk.join(", ")))?;
            for a in page.metric_alarms() {
                if let Some(n) = a.alarm_name() {
                    found.insert(n.to_string(), a.clone());
                }
            }
        }
    }
    Ok(found)
}

/// An alarm [`describe`] found for `addr`: through the state when the state names it,
/// else by its name (its tags are checked on use).
fn found(ctx: &Ctx, addr: &str, alarm: &MetricAlarm) -> Found<MetricAlarm> {
    let via = match ctx.state.id(addr) {
        Some(id) if alarm.alarm_name() == Some(id.as_str()) => Via::State,
        _ => Via::Tags,
    };
    Found::new(alarm.clone(), via)
}

fn cw_tags(pairs: Vec<(String, String)>) -> Vec<Tag> {
    pairs
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

async fn put(ctx: &Ctx, spec: &AlarmSpec, topic: &str, tags: bool) -> Result<()> {
    let dimensions = spec
        .dimensions
        .iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
        .collect();
    ctx.aws
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&spec.name)
        .alarm_description(&spec.description)
        .namespace(spec.namespace)
        .metric_name(spec.metric)
        .set_dimensions(Some(dimensions))
        .statistic(spec.statistic.clone())
        .period(spec.period)
        .evaluation_periods(spec.evaluation_periods)
        .datapoints_to_alarm(spec.datapoints_to_alarm)
        .threshold(spec.threshold)
        .comparison_operator(spec.comparison.clone())
        .treat_missing_data(TREAT_MISSING_DATA)
        .actions_enabled(true)
        .alarm_actions(topic)
        .set_ok_actions(Some(vec![]))
        .set_insufficient_data_actions(Some(vec![]))
        .set_tags(tags.then(|| cw_tags(ctx.tags())))
        .send()
        .await
        .map_err(aws("PutMetricAlarm", &spec.name))?;
    Ok(())
}

/// The settings, as declarations: each one in which `have` differs is noted on `plan`
/// (`threshold: 99 → 10`); on `up` one `PutMetricAlarm` puts the whole definition back
/// (CloudWatch has no call for a single setting). True when it wrote.
async fn converge_settings(
    ctx: &Ctx,
    addr: &str,
    have: &MetricAlarm,
    spec: &AlarmSpec,
    topic: &str,
) -> Result<bool> {
    let diff = differences(have, spec, topic);
    let mut put_back = false;
    for what in &diff {
        let (old, new) = spec::shown(have, spec, what);
        put_back |= ctx.apply(addr, what, old, new);
    }
    if put_back {
        tracing::info!("alarm {}: setting {}", spec.name, diff.join(", "));
        put(ctx, spec, topic, false).await?;
    }
    Ok(put_back)
}

async fn ensure_one(
    ctx: &Ctx,
    spec: &AlarmSpec,
    have: Option<&MetricAlarm>,
    topic: &str,
) -> Result<()> {
    let addr = address(&spec.purpose);
    let (arn, change) = match have {
        Some(alarm) => {
            let arn = required(alarm.alarm_arn(), "alarm ARN")?;
            let retagged = converge_tags(ctx, &addr, &tags::CloudWatch(&arn), None).await?;
            let wrote = converge_settings(ctx, &addr, alarm, spec, topic).await?;
            let change = found(ctx, &addr, alarm).change();
            (arn, change.updated_if(retagged || wrote))
        }
        None if !ctx.would_create(format!("{addr} {}", spec.name)) => return Ok(()),
        None => {
            put(ctx, spec, topic, true).await?;
            let created = describe(ctx, std::slice::from_ref(&spec.name)).await?;
            let arn = created.get(&spec.name).and_then(|a| a.alarm_arn());
            (required(arn, "alarm ARN")?, Change::Created)
        }
    };
    let metric = format!("{}/{}", spec.namespace, spec.metric);
    let record = Record::new(KIND, &spec.name)
        .arn(&arn)
        .attr("metric", metric);
    ctx.record(&addr, record).await?;
    ctx.report.note(change, format!("{addr} {}", spec.name));
    Ok(())
}

/// Deletes the alarm `addr` records, `have` as described, if it is payctl's.
async fn delete_one(ctx: &Ctx, addr: &str, name: &str, have: Option<&MetricAlarm>) -> Result<()> {
    let Some(alarm) = have else {
        return ctx.forget_gone(addr).await;
    };
    let arn = required(alarm.alarm_arn(), "alarm ARN")?;
    tags::ensure_owned(ctx, &tags::CloudWatch(&arn)).await?;
    let delete = || async {
        let call = ctx.aws.cloudwatch.delete_alarms().alarm_names(name);
        call.send().await.map_err(aws("DeleteAlarms", name))
    };
    ctx.delete_and_forget(addr, name, SERVICE, delete).await
}

/// Deletes the named alarms (address, name) that exist and are payctl's; refusing one
/// does not stop the others.
async fn delete_named(ctx: &Ctx, wanted: &[(String, String)]) -> Result<()> {
    let names: Vec<String> = wanted.iter().map(|(_, n)| n.clone()).collect();
    let found = describe(ctx, &names).await?;
    let each = wanted
        .iter()
        .map(|(a, n)| delete_one(ctx, a, n, found.get(n)));
    all_ok(join_all(each).await)
}

/// Recorded alarms that are no longer wanted (address, name).
fn recorded_elsewhere(ctx: &Ctx, specs: &[AlarmSpec]) -> Vec<(String, String)> {
    let wanted: BTreeSet<String> = specs.iter().map(|s| address(&s.purpose)).collect();
    ctx.state
        .of_kind(KIND)
        .into_iter()
        .filter(|(addr, _)| !wanted.contains(addr))
        .map(|(addr, r)| (addr, r.id))
        .collect()
}

#[async_trait]
impl Resource for Alarms {
    // The topic they publish to, and what they watch, so that `down` deletes the alarms
    // before the API stage, the functions and the database.
    kind!(
        KIND,
        depends_on = [
            super::sns_topic::KIND,
            crate::api::stage::KIND,
            crate::compute::function::KIND,
            crate::data::rds_instance::KIND
        ]
    );

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let topic = ctx.needed_id(super::sns_topic::ADDR)?;
        let specs = desired(&Targets::of(ctx));
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let found = describe(ctx, &names).await?;
        let each = specs
            .iter()
            .map(|s| ensure_one(ctx, s, found.get(&s.name), &topic));
        all_ok(join_all(each).await)?;
        let mut stale = recorded_elsewhere(ctx, &specs);
        stale.retain(|(addr, name)| ctx.apply_delete(format!("{addr} {name}")));
        if !stale.is_empty() {
            delete_named(ctx, &stale).await?;
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let specs = desired(&Targets::of(ctx));
        let mut wanted: Vec<(String, String)> = specs
            .iter()
            .map(|s| (address(&s.purpose), s.name.clone()))
            .collect();
        wanted.extend(recorded_elsewhere(ctx, &specs));
        delete_named(ctx, &wanted).await
    }
}
