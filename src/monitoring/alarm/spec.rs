//! The alarms as payctl wants them ([`desired`]), and the table of settings in which a
//! described alarm differs from one ([`differences`], shown for `plan` by [`shown`]).

use crate::monitoring::Targets;
use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricAlarm, Statistic};
use std::collections::BTreeSet;

pub const TREAT_MISSING_DATA: &str = "notBreaching";

pub const API_4XX_THRESHOLD: f64 = 50.0;
pub const LAMBDA_ERRORS_THRESHOLD: f64 = 10.0;
pub const RDS_CPU_THRESHOLD: f64 = 80.0;
/// The processor's embedded-metric-format namespace and metric for ledger conflicts.
pub const LEDGER_NAMESPACE: &str = "Payments";
pub const LEDGER_METRIC: &str = "LedgerConflicts";
const TEN_MINUTES: i32 = 600;
const FIVE_MINUTES: i32 = 300;

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

/// A differing setting's current and wanted value, for `plan`; settings without a short
/// form show as `differs → as defined`.
pub fn shown(have: &MetricAlarm, want: &AlarmSpec, what: &str) -> (String, String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::tests::targets;
    use aws_sdk_cloudwatch::types::Dimension;

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
