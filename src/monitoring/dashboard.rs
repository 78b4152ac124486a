//! The CloudWatch dashboard `payment-dashboard-<env>`: API Gateway latency (p50, p99),
//! Lambda errors, invocations and duration per function, and the database's CPU, all in
//! the stack's region. `up` puts the body only when the current one, parsed, differs.
//!
//! Ownership: dashboards cannot be tagged, so payctl decides by the exact name plus
//! either of two marks: the state record `cloudwatch_dashboard.main` naming it (payctl
//! created or adopted it), or the text widget payctl puts at the top of the body saying
//! payctl manages the dashboard for this environment (how it is found again when the
//! state file is lost). `up` converges a dashboard with either mark and refuses one with
//! neither (someone else's, not overwritten). `down` is more careful, since a deleted
//! body is gone for good: it deletes only a dashboard that still carries the marker
//! widget for this environment. One that the state names but whose marker is gone is
//! refused with an error (someone may have replaced it); one with neither mark is not
//! payctl's and is left alone.

use super::Targets;
use crate::engine::Shown;
use crate::engine::report::Change;
use crate::engine::{Ctx, Found, Resource, Service, Via, kind};
use crate::error::{Error, Result, aws};
use crate::state::Record;
use async_trait::async_trait;
use serde_json::{Value, json};

pub const KIND: &str = "cloudwatch_dashboard";
pub const ADDR: &str = "cloudwatch_dashboard.main";
const PERIOD: i32 = 300;
const SERVICE: Service = Service::CloudWatch;

pub struct Dashboard;

fn dashboard_name(env: &str) -> String {
    crate::naming::name("dashboard", env)
}

/// The marker widget's text: says who manages the dashboard, for which environment.
pub fn marker(env: &str) -> String {
    format!(
        "**payment-processing ({env})**: managed by payctl. Changes made here are overwritten by `payctl up --env {env}`; `payctl down --env {env}` deletes this dashboard."
    )
}

/// Whether `body` carries payctl's marker widget for `env`.
pub fn has_marker(body: &Value, env: &str) -> bool {
    let want = marker(env);
    body["widgets"].as_array().is_some_and(|widgets| {
        widgets.iter().any(|w| {
            w["type"] == "text" && w["properties"]["markdown"].as_str() == Some(want.as_str())
        })
    })
}

fn metric_widget(t: &Targets, x: i32, y: i32, title: &str, metrics: Vec<Value>) -> Value {
    json!({
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "stacked": false,
            "region": t.region,
            "period": PERIOD,
            "metrics": metrics,
        }
    })
}

/// One line per function: `[namespace, metric, "FunctionName", name, {stat, label}]`.
fn per_function(t: &Targets, metric: &str, stat: &str) -> Vec<Value> {
    t.functions
        .iter()
        .map(|(key, name)| {
            json!(["AWS/Lambda", metric, "FunctionName", name, {"stat": stat, "label": key}])
        })
        .collect()
}

/// The dashboard body.
pub fn body(t: &Targets) -> Value {
    let latency = |stat: &str| {
        json!(["AWS/ApiGateway", "Latency", "ApiName", t.api, "Stage", t.stage,
               {"stat": stat, "label": stat}])
    };
    let mut errors = metric_widget(t, 12, 2, "Lambda errors", per_function(t, "Errors", "Sum"));
    errors["properties"]["annotations"] = json!({"horizontal": [{
        "label": "alarm threshold (per 10 minutes)",
        "value": super::alarm::LAMBDA_ERRORS_THRESHOLD as i64,
    }]});
    let mut cpu = metric_widget(
        t,
        12,
        8,
        "RDS CPU utilization (%)",
        vec![
            json!(["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", t.db,
                    {"stat": "Average", "label": t.db}]),
        ],
    );
    cpu["properties"]["annotations"] = json!({"horizontal": [{
        "label": "alarm threshold",
        "value": super::alarm::RDS_CPU_THRESHOLD as i64,
    }]});
    let mut dlq = metric_widget(
        t,
        12,
        14,
        "Payments waiting in the dead-letter queue",
        vec![
            json!(["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", t.dlq,
                    {"stat": "Maximum", "label": t.dlq}]),
        ],
    );
    dlq["properties"]["annotations"] = json!({"horizontal": [{
        "label": "alarm: any message (payctl redrive)",
        "value": 0,
    }]});
    json!({
        "widgets": [
            {
                "type": "text",
                "x": 0,
                "y": 0,
                "width": 24,
                "height": 2,
                "properties": {"markdown": marker(&t.env)}
            },
            metric_widget(t, 0, 2, "API Gateway latency (ms)", vec![latency("p50"), latency("p99")]),
            errors,
            metric_widget(t, 0, 8, "Lambda invocations", per_function(t, "Invocations", "Sum")),
            cpu,
            metric_widget(t, 0, 14, "Lambda duration (ms)", per_function(t, "Duration", "Average")),
            dlq,
        ]
    })
}

/// The dashboard's body, parsed, and ARN; `None` when there is none of that name.
async fn get(ctx: &Ctx, name: &str) -> Result<Option<(Value, Option<String>)>> {
    let out = ctx
        .aws
        .cloudwatch
        .get_dashboard()
        .dashboard_name(name)
        .send()
        .await;
    let Some(out) = SERVICE.found(out.map_err(aws("GetDashboard", name)))? else {
        return Ok(None);
    };
    // A body that does not parse is not payctl's and differs from the desired one.
    let body = out
        .dashboard_body()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok(Some((body, out.dashboard_arn().map(str::to_string))))
}

async fn put(ctx: &Ctx, name: &str, body: &Value) -> Result<()> {
    let call = ctx.aws.cloudwatch.put_dashboard().dashboard_name(name);
    let call = call.dashboard_body(body.to_string());
    let out = call.send().await.map_err(aws("PutDashboard", name))?;
    for m in out.dashboard_validation_messages() {
        tracing::warn!(
            "dashboard {name}: {} {}",
            m.data_path().unwrap_or_default(),
            m.message().unwrap_or_default()
        );
    }
    Ok(())
}

fn recorded(ctx: &Ctx, name: &str) -> bool {
    ctx.state.id(ADDR).as_deref() == Some(name)
}

/// The dashboard of this environment, if there is one: through the state when the state
/// names it, else by the marker widget; `NotOwned` when it has neither mark.
async fn lookup(ctx: &Ctx, name: &str) -> Result<Option<Found<(Value, Option<String>)>>> {
    let Some((body, arn)) = get(ctx, name).await? else {
        return Ok(None);
    };
    if recorded(ctx, name) {
        return Ok(Some(Found::new((body, arn), Via::State)));
    }
    if !has_marker(&body, &ctx.env) {
        return Err(Error::NotOwned {
            resource: format!("CloudWatch dashboard {name}"),
            why: "it is neither in the state file nor marked as payctl's (dashboards cannot be tagged)".into(),
        });
    }
    Ok(Some(Found::new((body, arn), Via::Tags)))
}

#[async_trait]
impl Resource for Dashboard {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = dashboard_name(&ctx.env);
        let want = body(&Targets::of(ctx));
        let (change, arn) = match lookup(ctx, &name).await? {
            Some(found) => {
                let change = found.change();
                let (have, arn) = found.value;
                let write = || async {
                    tracing::info!("dashboard {name}: putting its widgets back");
                    put(ctx, &name, &want).await
                };
                let (have, new) = (
                    Shown::new(have, "edited"),
                    Shown::new(want.clone(), "as defined"),
                );
                let wrote = ctx.converge(ADDR, "widgets", have, new, write).await?;
                (change.updated_if(wrote), arn)
            }
            None if !ctx.would_create(format!("{ADDR} {name}")) => return Ok(()),
            None => {
                put(ctx, &name, &want).await?;
                let arn = get(ctx, &name).await?.and_then(|(_, arn)| arn);
                (Change::Created, arn)
            }
        };
        let mut record = Record::new(KIND, &name);
        record.arn = arn;
        ctx.record(ADDR, record).await?;
        ctx.report.note(change, format!("{ADDR} {name}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = dashboard_name(&ctx.env);
        let Some((have, _)) = get(ctx, &name).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        if !has_marker(&have, &ctx.env) {
            if recorded(ctx, &name) {
                return Err(Error::NotOwned {
                    resource: format!("CloudWatch dashboard {name}"),
                    why: "its payctl marker widget is gone, so it may have been replaced; delete it by hand if it is payctl's, or run `payctl up` to put payctl's back".into(),
                });
            }
            tracing::warn!(
                "leaving CloudWatch dashboard {name}: it carries no payctl marker and the state file does not name it"
            );
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        }
        let delete = || async {
            let call = ctx
                .aws
                .cloudwatch
                .delete_dashboards()
                .dashboard_names(&name);
            call.send().await.map_err(aws("DeleteDashboards", &name))
        };
        ctx.delete_and_forget(ADDR, &name, SERVICE, delete).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::tests::targets;

    fn widget<'a>(body: &'a Value, title: &str) -> &'a Value {
        body["widgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["properties"]["title"] == title)
            .unwrap_or_else(|| panic!("no widget {title}"))
    }

    #[test]
    fn the_body_has_every_widget_in_the_region() {
        let t = targets("dev");
        let b = body(&t);
        let widgets = b["widgets"].as_array().unwrap();
        assert_eq!(widgets.len(), 7);
        for w in widgets.iter().filter(|w| w["type"] == "metric") {
            assert_eq!(w["properties"]["region"], "eu-west-1", "{w}");
        }

        let latency = widget(&b, "API Gateway latency (ms)")["properties"]["metrics"].clone();
        assert_eq!(
            latency,
            json!([
                ["AWS/ApiGateway", "Latency", "ApiName", "payment-api-dev", "Stage", "dev", {"stat": "p50", "label": "p50"}],
                ["AWS/ApiGateway", "Latency", "ApiName", "payment-api-dev", "Stage", "dev", {"stat": "p99", "label": "p99"}],
            ])
        );
        for (title, metric, stat) in [
            ("Lambda errors", "Errors", "Sum"),
            ("Lambda invocations", "Invocations", "Sum"),
            ("Lambda duration (ms)", "Duration", "Average"),
        ] {
            let lines = widget(&b, title)["properties"]["metrics"]
                .as_array()
                .unwrap()
                .clone();
            let functions: Vec<&str> = lines.iter().map(|l| l[3].as_str().unwrap()).collect();
            assert_eq!(
                functions,
                [
                    "payment-validator-dev",
                    "payment-processor-dev",
                    "payment-audit-logger-dev"
                ]
            );
            for l in &lines {
                assert_eq!(
                    (l[0].as_str(), l[1].as_str(), l[2].as_str()),
                    (Some("AWS/Lambda"), Some(metric), Some("FunctionName"))
                );
                assert_eq!(l[4]["stat"], stat);
            }
        }
        let cpu = widget(&b, "RDS CPU utilization (%)")["properties"]["metrics"].clone();
        assert_eq!(
            cpu[0].as_array().unwrap()[..4],
            [
                json!("AWS/RDS"),
                json!("CPUUtilization"),
                json!("DBInstanceIdentifier"),
                json!("payment-db-dev")
            ]
        );
        assert_eq!(cpu[0][4]["stat"], "Average");
    }

    #[test]
    fn the_marker_names_the_environment() {
        let b = body(&targets("dev"));
        assert!(has_marker(&b, "dev"));
        assert!(!has_marker(&b, "prod"));
        assert!(!has_marker(&body(&targets("prod")), "dev"));
        assert!(!has_marker(&json!({"widgets": []}), "dev"));
        assert!(!has_marker(&Value::Null, "dev"));
        // The body round-trips through its text form (what GetDashboard returns).
        let text = b.to_string();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), b);
    }
}
