//! The monitoring layer: the alert topic, the alarms that publish to it and the dashboard.
//!
//! - [`sns_topic`]: `payment-alerts-<env>`, encrypted with the SNS key (`kms_key.sns`),
//!   with an e-mail subscription to `alert_email`;
//! - [`alarm`]: API Gateway 4XX, Lambda errors (one alarm per function) and RDS CPU;
//! - [`dashboard`]: `payment-dashboard-<env>` (API latency, Lambda errors, invocations and
//!   duration, RDS CPU);
//! - [`flow_log`]: the VPC's flow log (all traffic) to its own log group.
//!
//! Alarms and the dashboard name the API, the functions and the database by the names
//! the other layers give them ([`Targets`]); CloudWatch metrics are addressed by those
//! names, not by ARNs.

pub mod alarm;
pub mod dashboard;
pub mod flow_log;
pub mod sns_topic;

use crate::engine::{Ctx, Layer};
use std::sync::Arc;

pub fn layer() -> Layer {
    Layer {
        name: "monitoring",
        resources: vec![
            Arc::new(sns_topic::AlertTopic),
            Arc::new(alarm::Alarms),
            Arc::new(dashboard::Dashboard),
            Arc::new(flow_log::FlowLogs),
        ],
    }
}

/// What the alarms and the dashboard watch, by the names CloudWatch's dimensions use.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub env: String,
    pub region: String,
    /// The REST API's name (`ApiName` dimension).
    pub api: String,
    /// The API stage (`Stage` dimension), named after the environment.
    pub stage: String,
    /// The RDS instance identifier (`DBInstanceIdentifier` dimension).
    pub db: String,
    /// (function key, function name), in [`crate::compute::FUNCTIONS`] order.
    pub functions: Vec<(&'static str, String)>,
    /// The retry queue's dead-letter queue (`QueueName` dimension).
    pub dlq: String,
}

impl Targets {
    pub fn of(ctx: &Ctx) -> Targets {
        Targets {
            env: ctx.env.clone(),
            region: ctx.region.clone(),
            api: ctx.name("api"),
            stage: ctx.env.clone(),
            db: ctx.name("db"),
            functions: crate::compute::FUNCTIONS
                .iter()
                .map(|f| (f.key, crate::compute::function_name(ctx, f.key)))
                .collect(),
            dlq: ctx.name("retry-dlq"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The names the other layers give an environment's resources (checked against the
    /// real names by the integration test).
    pub fn targets(env: &str) -> Targets {
        Targets {
            env: env.into(),
            region: "eu-west-1".into(),
            api: format!("payment-api-{env}"),
            stage: env.into(),
            db: format!("payment-db-{env}"),
            functions: vec![
                ("validator", format!("payment-validator-{env}")),
                ("processor", format!("payment-processor-{env}")),
                ("audit-logger", format!("payment-audit-logger-{env}")),
            ],
            dlq: format!("payment-retry-dlq-{env}"),
        }
    }

    #[test]
    fn the_layer_registers_its_four_kinds() {
        let kinds: Vec<&str> = layer().resources.iter().map(|r| r.kind()).collect();
        assert_eq!(
            kinds,
            [
                "sns_topic",
                "cloudwatch_alarm",
                "cloudwatch_dashboard",
                "ec2_flow_log"
            ]
        );
    }
}
