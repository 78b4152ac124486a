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

use super::{Targets, missing_tags};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    AlarmType, ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag,
};
use futures::future::join_all;
use std::collections::{BTreeSet, HashMap};

pub const KIND: &str = "cloudwatch_alarm";
pub const TREAT_MISSING_DATA: &str = "notBreaching";

pub const API_4XX_THRESHOLD: f64 = 50.0;
pub const LAMBDA_ERRORS_THRESHOLD: f64 = 10.0;
pub const RDS_CPU_THRESHOLD: f64 = 80.0;
/// The processor's embedded-metric-format namespace and metric for ledger conflicts.
pub const LEDGER_NAMESPACE: &str = "Payments";
pub const LEDGER_METRIC: &str = "LedgerConflicts";
const TEN_MINUTES: i32 = 600;
const FIVE_MINUTES: i32 = 300;

pub struct Alarms;

pub fn address(purpose: &str) -> String {
    format!("{KIND}.{purpose}")
}

/// One alarm as payctl wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSpec {
    /// The state address suffix (`api-4xx`, `validator-errors`, `rds-cpu`).
    pub purpose: String,
    pub name: String,
    pub description: String,
    pub namespace: &'static str,
    pub metric: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub statistic: Statistic,
    pub period: i32,
    pub evaluation_periods: i32,
    pub datapoints_to_alarm: i32,
    pub threshold: f64,
    pub comparison: ComparisonOperator,
}

/// The stack's alarms.
pub fn desired(t: &Targets) -> Vec<AlarmSpec> {
    let name = |purpose: &str| crate::naming::name(purpose, &t.env);
    let mut alarms = vec![AlarmSpec {
        purpose: "api-4xx".into(),
        name: name("api-4xx"),
        description: format!(
            "{} ({}): more than {API_4XX_THRESHOLD} 4XX responses in 10 minutes (payctl)",
            t.api, t.stage
        ),
        namespace: "AWS/ApiGateway",
        metric: "4XXError",
        dimensions: vec![("ApiName", t.api.clone()), ("Stage", t.stage.clone())],
        statistic: Statistic::Sum,
        period: TEN_MINUTES,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        threshold: API_4XX_THRESHOLD,
        comparison: ComparisonOperator::GreaterThanThreshold,
    }];
    for (key, function) in &t.functions {
        let purpose = format!("{key}-errors");
        alarms.push(AlarmSpec {
            name: name(&purpose),
            purpose,
            description: format!(
                "{function}: more than {LAMBDA_ERRORS_THRESHOLD} errors in 10 minutes (payctl)"
            ),
            namespace: "AWS/Lambda",
            metric: "Errors",
            dimensions: vec![("FunctionName", function.clone())],
            statistic: Statistic::Sum,
            period: TEN_MINUTES,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            threshold: LAMBDA_ERRORS_THRESHOLD,
            comparison: ComparisonOperator::GreaterThanThreshold,
        });
    }
    alarms.push(AlarmSpec {
        purpose: "rds-cpu".into(),
        name: name("rds-cpu"),
        description: format!(
            "{}: average CPU above {RDS_CPU_THRESHOLD} % for 15 minutes (payctl)",
            t.db
        ),
        namespace: "AWS/RDS",
        metric: "CPUUtilization",
        dimensions: vec![("DBInstanceIdentifier", t.db.clone())],
        statistic: Statistic::Average,
        period: FIVE_MINUTES,
        evaluation_periods: 3,
        datapoints_to_alarm: 3,
        threshold: RDS_CPU_THRESHOLD,
        comparison: ComparisonOperator::GreaterThanThreshold,
    });
    alarms.push(AlarmSpec {
        purpose: "retry-dlq".into(),
        name: name("retry-dlq"),
        description: format!(
            "{}: payments that exhausted their retries are waiting; `payctl redrive --env {}` after the cause is fixed (payctl)",
            t.dlq, t.env
        ),
        namespace: "AWS/SQS",
        metric: "ApproximateNumberOfMessagesVisible",
        dimensions: vec![("QueueName", t.dlq.clone())],
        statistic: Statistic::Maximum,
        period: FIVE_MINUTES,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        threshold: 0.0,
        comparison: ComparisonOperator::GreaterThanThreshold,
    });
    if let Some((_, processor)) = t.functions.iter().find(|(k, _)| *k == "processor") {
        alarms.push(AlarmSpec {
            purpose: "ledger-conflict".into(),
            name: name("ledger-conflict"),
            description: format!(
                "{processor}: a payment's ledger row differs from its transaction (409 ledger_conflict); nothing was changed, a person must look (payctl)"
            ),
            namespace: LEDGER_NAMESPACE,
            metric: LEDGER_METRIC,
            dimensions: vec![("FunctionName", processor.clone())],
            statistic: Statistic::Sum,
            period: FIVE_MINUTES,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            threshold: 0.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
        });
    }
    alarms
}

/// The settings in which `have` differs from `want` (with actions to `topic`), by name.
pub fn differences(have: &MetricAlarm, want: &AlarmSpec, topic: &str) -> Vec<&'static str> {
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let dims: BTreeSet<(String, String)> = have
        .dimensions()
        .iter()
        .map(|d| {
            (
                d.name().unwrap_or_default().to_string(),
                d.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want_dims: BTreeSet<(String, String)> = want
        .dimensions
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let checks = [
        (
            "description",
            have.alarm_description() == Some(&want.description),
        ),
        ("namespace", have.namespace() == Some(want.namespace)),
        ("metric", have.metric_name() == Some(want.metric)),
        ("dimensions", dims == want_dims),
        ("statistic", have.statistic() == Some(&want.statistic)),
        ("extended statistic", have.extended_statistic().is_none()),
        ("metric math", have.metrics().is_empty()),
        ("period", have.period() == Some(want.period)),
        (
            "evaluation periods",
            have.evaluation_periods() == Some(want.evaluation_periods),
        ),
        (
            "datapoints to alarm",
            have.datapoints_to_alarm() == Some(want.datapoints_to_alarm),
        ),
        ("threshold", have.threshold() == Some(want.threshold)),
        (
            "comparison",
            have.comparison_operator() == Some(&want.comparison),
        ),
        (
            "missing data",
            have.treat_missing_data() == Some(TREAT_MISSING_DATA),
        ),
        ("actions enabled", have.actions_enabled() != Some(false)),
        (
            "alarm actions",
            set(have.alarm_actions()) == BTreeSet::from([topic.to_string()]),
        ),
        ("OK actions", have.ok_actions().is_empty()),
        (
            "insufficient data actions",
            have.insufficient_data_actions().is_empty(),
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(what, _)| what)
        .collect()
}

fn not_owned_error(ctx: &Ctx, name: &str) -> Error {
    Error::not_owned(format!("CloudWatch alarm {name}"), &ctx.env)
}

/// The metric alarms of those names that exist, by name.
async fn describe(ctx: &Ctx, names: &[String]) -> Result<HashMap<String, MetricAlarm>> {
    let mut found = HashMap::new();
    // DescribeAlarms takes at most 100 names.
    for chunk in names.chunks(100) {
        let mut pages = ctx
            .aws
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
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

/// A differing setting's current and wanted value, for `plan`; settings without a short
/// form show as `differs → as defined`.
fn shown(have: &MetricAlarm, want: &AlarmSpec, what: &str) -> (String, String) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "unset".into());
    match what {
        "threshold" => (
            opt(have.threshold().map(|t| t.to_string())),
            want.threshold.to_string(),
        ),
        "period" => (
            opt(have.period().map(|p| p.to_string())),
            want.period.to_string(),
        ),
        "evaluation periods" => (
            opt(have.evaluation_periods().map(|p| p.to_string())),
            want.evaluation_periods.to_string(),
        ),
        "datapoints to alarm" => (
            opt(have.datapoints_to_alarm().map(|p| p.to_string())),
            want.datapoints_to_alarm.to_string(),
        ),
        _ => ("differs".into(), "as defined".into()),
    }
}

/// Checks ownership by the alarm's tags and puts back missing standard tags; true when
/// it tagged.
async fn check_tags(ctx: &Ctx, addr: &str, name: &str, arn: &str) -> Result<bool> {
    let cw = &ctx.aws.cloudwatch;
    let out = cw
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws("ListTagsForResource", name))?;
    let have = || {
        out.tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
    };
    if !ctx.owns(have()) {
        return Err(not_owned_error(ctx, name));
    }
    let missing = missing_tags(&ctx.env, have());
    if missing.is_empty() {
        return Ok(false);
    }
    let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
    if !ctx.apply(addr, "tags", format!("missing {}", keys.join(", ")), "set") {
        return Ok(true);
    }
    cw.tag_resource()
        .resource_arn(arn)
        .set_tags(Some(cw_tags(missing)))
        .send()
        .await
        .map_err(aws("TagResource", name))?;
    Ok(true)
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
            let diff = differences(alarm, spec, topic);
            // Tags are read (and put back) before an adoption or a change; an alarm the
            // state file names and that needs nothing is left alone unread.
            let known = ctx.state.get(&addr).is_some();
            let retagged = if known && diff.is_empty() {
                false
            } else {
                check_tags(ctx, &addr, &spec.name, &arn).await?
            };
            if ctx.planning() {
                for what in &diff {
                    let (old, new) = shown(alarm, spec, what);
                    ctx.apply(&addr, what, old, new);
                }
            } else if !diff.is_empty() {
                tracing::info!("alarm {}: setting {}", spec.name, diff.join(", "));
                put(ctx, spec, topic, false).await?;
            }
            let change = if ctx.state.get(&addr).is_none() {
                Change::Adopted
            } else if retagged || !diff.is_empty() {
                Change::Updated
            } else {
                Change::Unchanged
            };
            (arn, change)
        }
        None if !ctx.would_create(format!("{addr} {}", spec.name)) => return Ok(()),
        None => {
            put(ctx, spec, topic, true).await?;
            let created = describe(ctx, std::slice::from_ref(&spec.name)).await?;
            let arn = required(
                created.get(&spec.name).and_then(|a| a.alarm_arn()),
                "alarm ARN",
            )?;
            (arn, Change::Created)
        }
    };
    ctx.record(
        &addr,
        Record::new(KIND, &spec.name)
            .arn(&arn)
            .attr("metric", format!("{}/{}", spec.namespace, spec.metric)),
    )
    .await?;
    ctx.report.note(change, format!("{addr} {}", spec.name));
    Ok(())
}

/// Deletes the named alarms that exist and are payctl's, and forgets their records.
async fn delete_named(ctx: &Ctx, wanted: Vec<(String, String)>) -> Result<()> {
    let names: Vec<String> = wanted.iter().map(|(_, n)| n.clone()).collect();
    let found = describe(ctx, &names).await?;
    let mut results = Vec::new();
    let mut doomed = Vec::new();
    for (addr, name) in &wanted {
        match found.get(name) {
            None => {
                ctx.forget(addr).await?;
                ctx.report.note(Change::Absent, addr.clone());
            }
            Some(alarm) => {
                let owned = match required(alarm.alarm_arn(), "alarm ARN") {
                    Ok(arn) => check_tags_read_only(ctx, name, &arn).await,
                    Err(e) => Err(e),
                };
                match owned {
                    Ok(()) => doomed.push((addr.clone(), name.clone())),
                    Err(e) => results.push(Err(e)),
                }
            }
        }
    }
    if !doomed.is_empty() {
        let names: Vec<String> = doomed.iter().map(|(_, n)| n.clone()).collect();
        match ctx
            .aws
            .cloudwatch
            .delete_alarms()
            .set_alarm_names(Some(names.clone()))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found()) => {}
            Err(e) => return Err(aws("DeleteAlarms", names.join(", "))(e)),
        }
        for (addr, name) in doomed {
            ctx.forget(&addr).await?;
            ctx.report.note(Change::Deleted, format!("{addr} {name}"));
        }
    }
    all_ok(results)
}

/// Ownership only: `down` does not tag what it is about to delete.
async fn check_tags_read_only(ctx: &Ctx, name: &str, arn: &str) -> Result<()> {
    let out = ctx
        .aws
        .cloudwatch
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(aws("ListTagsForResource", name))?;
    let tags = out
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
    if ctx.owns(tags) {
        Ok(())
    } else {
        Err(not_owned_error(ctx, name))
    }
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
    fn kind(&self) -> &'static str {
        KIND
    }

    /// The topic they publish to, and what they watch, so that `down` deletes the alarms
    /// before the API stage, the functions and the database.
    fn depends_on(&self) -> &'static [&'static str] {
        &[
            super::sns_topic::KIND,
            crate::api::stage::KIND,
            crate::compute::function::KIND,
            crate::data::rds_instance::KIND,
        ]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let topic = ctx.state.id(super::sns_topic::ADDR).ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not in the state file; run `payctl up` again",
                super::sns_topic::ADDR
            ))
        })?;
        let specs = desired(&Targets::of(ctx));
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let found = describe(ctx, &names).await?;
        let results = join_all(
            specs
                .iter()
                .map(|s| ensure_one(ctx, s, found.get(&s.name), &topic)),
        )
        .await;
        all_ok(results)?;
        let stale = recorded_elsewhere(ctx, &specs);
        if !stale.is_empty() {
            delete_named(ctx, stale).await?;
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
        delete_named(ctx, wanted).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::tests::targets;

    fn by_name<'a>(alarms: &'a [AlarmSpec], name: &str) -> &'a AlarmSpec {
        alarms
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no alarm {name}"))
    }

    #[test]
    fn the_dead_letter_queue_and_ledger_conflicts_alarm_on_any_message_or_conflict() {
        let alarms = desired(&targets("dev"));
        let dlq = by_name(&alarms, "payment-retry-dlq-dev");
        assert_eq!(
            (dlq.namespace, dlq.metric),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        );
        assert_eq!(
            dlq.dimensions,
            [("QueueName", "payment-retry-dlq-dev".to_string())]
        );
        assert_eq!(dlq.statistic, Statistic::Maximum);
        assert_eq!((dlq.period, dlq.evaluation_periods), (300, 1));
        assert_eq!(dlq.threshold, 0.0);
        assert_eq!(dlq.comparison, ComparisonOperator::GreaterThanThreshold);
        assert!(dlq.description.contains("payctl redrive --env dev"));
        let ledger = by_name(&alarms, "payment-ledger-conflict-dev");
        assert_eq!(
            (ledger.namespace, ledger.metric),
            ("Payments", "LedgerConflicts")
        );
        assert_eq!(
            ledger.dimensions,
            [("FunctionName", "payment-processor-dev".to_string())]
        );
        assert_eq!(ledger.statistic, Statistic::Sum);
        assert_eq!(ledger.threshold, 0.0);
    }

    #[test]
    fn seven_alarms_with_their_metrics_and_thresholds() {
        let alarms = desired(&targets("dev"));
        let names: Vec<&str> = alarms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "payment-api-4xx-dev",
                "payment-validator-errors-dev",
                "payment-processor-errors-dev",
                "payment-audit-logger-errors-dev",
                "payment-rds-cpu-dev",
                "payment-retry-dlq-dev",
                "payment-ledger-conflict-dev",
            ]
        );

        let api = by_name(&alarms, "payment-api-4xx-dev");
        assert_eq!((api.namespace, api.metric), ("AWS/ApiGateway", "4XXError"));
        assert_eq!(
            api.dimensions,
            [
                ("ApiName", "payment-api-dev".to_string()),
                ("Stage", "dev".to_string())
            ]
        );
        assert_eq!(api.statistic, Statistic::Sum);
        assert_eq!((api.period, api.evaluation_periods), (600, 1));
        assert_eq!(api.threshold, 50.0);
        assert_eq!(api.comparison, ComparisonOperator::GreaterThanThreshold);

        for f in ["validator", "processor", "audit-logger"] {
            let a = by_name(&alarms, &format!("payment-{f}-errors-dev"));
            assert_eq!((a.namespace, a.metric), ("AWS/Lambda", "Errors"));
            assert_eq!(a.dimensions, [("FunctionName", format!("payment-{f}-dev"))]);
            assert_eq!(a.statistic, Statistic::Sum);
            assert_eq!(
                (a.period, a.evaluation_periods, a.datapoints_to_alarm),
                (600, 1, 1)
            );
            assert_eq!(a.threshold, 10.0);
            assert_eq!(a.comparison, ComparisonOperator::GreaterThanThreshold);
            assert_eq!(a.purpose, format!("{f}-errors"));
        }

        let rds = by_name(&alarms, "payment-rds-cpu-dev");
        assert_eq!((rds.namespace, rds.metric), ("AWS/RDS", "CPUUtilization"));
        assert_eq!(
            rds.dimensions,
            [("DBInstanceIdentifier", "payment-db-dev".to_string())]
        );
        assert_eq!(rds.statistic, Statistic::Average);
        // 15 minutes: three 5-minute periods, all three breaching.
        assert_eq!(
            (rds.period, rds.evaluation_periods, rds.datapoints_to_alarm),
            (300, 3, 3)
        );
        assert_eq!(rds.threshold, 80.0);
        assert_eq!(rds.comparison, ComparisonOperator::GreaterThanThreshold);
    }

    /// What CloudWatch would describe after `put` of `spec`.
    fn described(
        spec: &AlarmSpec,
        topic: &str,
    ) -> aws_sdk_cloudwatch::types::builders::MetricAlarmBuilder {
        let mut b = MetricAlarm::builder()
            .alarm_name(&spec.name)
            .alarm_arn(format!("arn:aws:cloudwatch:r:1:alarm:{}", spec.name))
            .alarm_description(&spec.description)
            .namespace(spec.namespace)
            .metric_name(spec.metric)
            .statistic(spec.statistic.clone())
            .period(spec.period)
            .evaluation_periods(spec.evaluation_periods)
            .datapoints_to_alarm(spec.datapoints_to_alarm)
            .threshold(spec.threshold)
            .comparison_operator(spec.comparison.clone())
            .treat_missing_data(TREAT_MISSING_DATA)
            .actions_enabled(true)
            .alarm_actions(topic);
        // CloudWatch may list dimensions in another order.
        for (k, v) in spec.dimensions.iter().rev() {
            b = b.dimensions(Dimension::builder().name(*k).value(v).build());
        }
        b
    }

    #[test]
    fn an_alarm_as_put_has_no_differences_and_drift_is_named() {
        let topic = "arn:aws:sns:r:1:payment-alerts-dev";
        for spec in desired(&targets("dev")) {
            let have = described(&spec, topic).build();
            assert!(differences(&have, &spec, topic).is_empty(), "{}", spec.name);
        }
        let spec = &desired(&targets("dev"))[0];
        let drifted = described(spec, topic)
            .threshold(500.0)
            .treat_missing_data("breaching")
            .ok_actions(topic)
            .build();
        assert_eq!(
            differences(&drifted, spec, topic),
            ["threshold", "missing data", "OK actions"]
        );
        let other_topic = described(spec, topic)
            .set_alarm_actions(Some(vec!["arn:x".into()]))
            .build();
        assert_eq!(differences(&other_topic, spec, topic), ["alarm actions"]);
        let other_stage = described(spec, topic)
            .set_dimensions(Some(vec![
                Dimension::builder()
                    .name("ApiName")
                    .value("payment-api-dev")
                    .build(),
                Dimension::builder().name("Stage").value("prod").build(),
            ]))
            .build();
        assert_eq!(differences(&other_stage, spec, topic), ["dimensions"]);
        assert!(!differences(&MetricAlarm::builder().build(), spec, topic).is_empty());
    }
}
