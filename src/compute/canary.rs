//! The bake of a canary: while a new version takes a share of a function's traffic
//! through the alias `live`, watch its errors and throttles and the function's error
//! alarm until the bake time is over (healthy) or a threshold is crossed (unhealthy).
//!
//! Lambda publishes, for calls through an alias, metrics with the dimensions
//! `FunctionName`, `Resource=<function>:<alias>` and `ExecutedVersion=<version>`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html>), so
//! the new version's errors are told apart from the old one's. The metrics arrive a
//! minute or more late: a bake shorter than [`SHORTEST_USEFUL_BAKE`] is warned about in
//! production.

use crate::engine::Ctx;
use crate::error::{Result, aws};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StateValue};
use std::time::{Duration, SystemTime};

/// Below this, a production bake ends before Lambda's metrics for it have arrived.
pub const SHORTEST_USEFUL_BAKE: Duration = Duration::from_secs(180);

/// One bake: `new` takes `percent` of `function`'s traffic through `live`, from `started`.
#[derive(Debug, Clone)]
pub struct Bake {
    pub function: String,
    pub old: String,
    pub new: String,
    pub percent: f64,
    pub started: SystemTime,
    pub bake: Duration,
    pub max_errors: f64,
    pub max_throttles: f64,
    /// The function's error alarm (`payment-<function>-errors-<env>`).
    pub alarm: String,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Healthy,
    /// Why the new version is rolled back: the metric and its values.
    Unhealthy(String),
}

/// What the new version did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Seen {
    pub errors: f64,
    pub throttles: f64,
}

impl Bake {
    /// The first threshold crossed, if any (`alarm`: the error alarm's state reason when
    /// it is in ALARM).
    pub fn judge(&self, seen: Seen, alarm: Option<String>) -> Option<String> {
        let v = &self.new;
        if seen.errors > self.max_errors {
            return Some(format!(
                "Errors = {} for version {v} during the bake (more than {})",
                seen.errors, self.max_errors
            ));
        }
        if seen.throttles > self.max_throttles {
            return Some(format!(
                "Throttles = {} for version {v} during the bake (more than {})",
                seen.throttles, self.max_throttles
            ));
        }
        alarm.map(|reason| format!("alarm {} is in ALARM ({reason})", self.alarm))
    }

    fn poll_every(&self) -> Duration {
        (self.bake / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    fn elapsed(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.started)
            .unwrap_or_default()
    }
}

/// Watches `bake` until it is over or unhealthy. Ctrl-C ends it with
/// [`crate::error::Error::Interrupted`] (the caller puts the alias back).
pub async fn watch(ctx: &Ctx, bake: &Bake) -> Result<Verdict> {
    let what = format!("the bake of {} version {}", bake.function, bake.new);
    loop {
        crate::interrupt::check(&what)?;
        let seen = metrics(ctx, bake).await?;
        if let Some(reason) = bake.judge(seen, alarm(ctx, &bake.alarm).await?) {
            return Ok(Verdict::Unhealthy(reason));
        }
        let left = bake.bake.saturating_sub(bake.elapsed());
        if left.is_zero() {
            return Ok(Verdict::Healthy);
        }
        let status = format!(
            "canary version {} at {}% of traffic, {}s left, errors {}, throttles {}",
            bake.new,
            bake.percent,
            left.as_secs(),
            seen.errors,
            seen.throttles
        );
        tracing::info!("function {}: {status}", bake.function);
        crate::progress::status(super::alias::KIND, &format!("{}: {status}", bake.function));
        crate::interrupt::sleep(&what, left.min(bake.poll_every())).await?;
    }
}

/// The new version's errors and throttles since the bake started.
async fn metrics(ctx: &Ctx, bake: &Bake) -> Result<Seen> {
    let dims = [
        ("FunctionName", bake.function.clone()),
        (
            "Resource",
            format!("{}:{}", bake.function, super::alias::ALIAS),
        ),
        ("ExecutedVersion", bake.new.clone()),
    ];
    let query = |id: &str, metric: &str| {
        let metric = Metric::builder()
            .namespace("AWS/Lambda")
            .metric_name(metric)
            .set_dimensions(Some(
                dims.iter()
                    .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
                    .collect(),
            ))
            .build();
        let stat = MetricStat::builder()
            .metric(metric)
            .period(60)
            .stat("Sum")
            .build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(stat)
            .return_data(true)
            .build()
    };
    // Whole minutes around the bake, so no datapoint of it falls outside.
    let minute = Duration::from_secs(60);
    let start = bake.started.checked_sub(minute).unwrap_or(bake.started);
    let end = SystemTime::now() + minute;
    let call = ctx.aws.cloudwatch.get_metric_data();
    let out = call
        .metric_data_queries(query("errors", "Errors"))
        .metric_data_queries(query("throttles", "Throttles"))
        .start_time(DateTime::from(start))
        .end_time(DateTime::from(end))
        .send()
        .await
        .map_err(aws("GetMetricData", &bake.function))?;
    let mut seen = Seen::default();
    for r in out.metric_data_results() {
        let sum: f64 = r.values().iter().sum();
        match r.id() {
            Some("errors") => seen.errors = sum,
            Some("throttles") => seen.throttles = sum,
            _ => {}
        }
    }
    Ok(seen)
}

/// The alarm's state reason when it is in ALARM.
async fn alarm(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    let out = ctx
        .aws
        .cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .send();
    let out = out.await.map_err(aws("DescribeAlarms", name))?;
    Ok(out
        .metric_alarms()
        .iter()
        .find(|a| a.state_value() == Some(&StateValue::Alarm))
        .map(|a| a.state_reason().unwrap_or("no reason given").to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bake() -> Bake {
        Bake {
            function: "payment-processor-prod".into(),
            old: "3".into(),
            new: "4".into(),
            percent: 10.0,
            started: SystemTime::now(),
            bake: Duration::from_secs(600),
            max_errors: 0.0,
            max_throttles: 2.0,
            alarm: "payment-processor-errors-prod".into(),
        }
    }

    #[test]
    fn a_bake_fails_on_the_first_threshold_crossed_and_names_the_metric() {
        let b = bake();
        assert_eq!(b.judge(Seen::default(), None), None);
        let quiet = Seen {
            errors: 0.0,
            throttles: 2.0,
        };
        assert_eq!(b.judge(quiet, None), None);
        let errors = Seen {
            errors: 3.0,
            throttles: 5.0,
        };
        let why = b.judge(errors, None).unwrap();
        assert_eq!(
            why,
            "Errors = 3 for version 4 during the bake (more than 0)"
        );
        let throttled = Seen {
            errors: 0.0,
            throttles: 3.0,
        };
        assert!(
            b.judge(throttled, None)
                .unwrap()
                .starts_with("Throttles = 3")
        );
        let alarm = b.judge(quiet, Some("threshold crossed".into())).unwrap();
        assert_eq!(
            alarm,
            "alarm payment-processor-errors-prod is in ALARM (threshold crossed)"
        );
    }

    #[test]
    fn polls_are_a_tenth_of_the_bake_between_one_and_thirty_seconds() {
        let mut b = bake();
        assert_eq!(b.poll_every(), Duration::from_secs(30));
        b.bake = Duration::from_secs(5);
        assert_eq!(b.poll_every(), Duration::from_secs(1));
        b.bake = Duration::from_secs(100);
        assert_eq!(b.poll_every(), Duration::from_secs(10));
    }
}
