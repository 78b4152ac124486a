//! What a function should look like apart from its code, from the configuration and the
//! state of the kinds it uses, and the table of settings in which a deployed function
//! differs from it.

use crate::compute::{FunctionSpec, PROCESSOR, VALIDATOR, role};
use crate::data::{dynamodb_table, rds_instance, s3_bucket, sqs_queue};
use crate::engine::Ctx;
use crate::error::Result;
use crate::network::{security_group, subnet_id, zones};
use crate::security::kms_key;
use aws_sdk_lambda::types::{FunctionConfiguration, Runtime, TracingMode, VpcConfig};
use std::collections::{BTreeSet, HashMap};

pub const HANDLER: &str = "bootstrap";

/// What a function should look like, apart from its code.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub role: String,
    pub timeout: i32,
    pub memory: i32,
    pub env: HashMap<String, String>,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub concurrency: Option<i32>,
    /// The key that encrypts the environment variables (`kms_key.lambda`).
    pub kms_key: String,
}

pub fn reserved(ctx: &Ctx, key: &str) -> Option<i32> {
    let f = &ctx.settings.functions;
    match key {
        VALIDATOR => f.validator_concurrency,
        PROCESSOR => f.processor_concurrency,
        _ => f.audit_logger_concurrency,
    }
}

/// The environment contract of each function (see `lambdas/`).
fn environment(ctx: &Ctx, key: &str) -> Result<HashMap<String, String>> {
    let mut env = HashMap::from([
        ("PAYMENTS_ENV".to_string(), ctx.env.clone()),
        ("RUST_LOG".to_string(), "info".to_string()),
    ]);
    let table = || ctx.needed_id(dynamodb_table::ADDR);
    match key {
        VALIDATOR => {
            env.insert("TABLE_NAME".into(), table()?);
        }
        PROCESSOR => {
            let endpoint = ctx.needed_attr(rds_instance::ADDR, "endpoint")?;
            let secret = ctx.needed_attr(rds_instance::ADDR, "secret_arn")?;
            let (host, port) = endpoint
                .rsplit_once(':')
                .unwrap_or((endpoint.as_str(), "5432"));
            env.extend([
                ("TABLE_NAME".to_string(), table()?),
                (
                    "RETRY_QUEUE_URL".to_string(),
                    ctx.needed_id(&sqs_queue::address("retry"))?,
                ),
                ("DB_SECRET_ARN".to_string(), secret.to_string()),
                ("DB_HOST".to_string(), host.to_string()),
                ("DB_PORT".to_string(), port.to_string()),
                ("DB_NAME".to_string(), rds_instance::DB_NAME.to_string()),
                ("DB_SSLMODE".to_string(), "verify-full".to_string()),
            ]);
        }
        _ => {
            env.insert("AUDIT_BUCKET".into(), ctx.needed_id(s3_bucket::ADDR)?);
            // Every write expects the stack's account to own the bucket.
            env.insert("AUDIT_BUCKET_OWNER".into(), ctx.account_id.clone());
        }
    }
    Ok(env)
}

pub fn desired(ctx: &Ctx, spec: &FunctionSpec) -> Result<Desired> {
    let role = ctx.needed_arn(&role::address(spec.key))?;
    let subnets = zones(ctx)
        .iter()
        .map(|az| subnet_id(ctx, "private", az))
        .collect::<Result<BTreeSet<_>>>()?;
    let sg = ctx.needed_id(&security_group::address("lambda"))?;
    Ok(Desired {
        role,
        timeout: spec.timeout_secs,
        memory: spec.memory_mb,
        env: environment(ctx, spec.key)?,
        subnets,
        security_groups: BTreeSet::from([sg]),
        concurrency: reserved(ctx, spec.key),
        kms_key: kms_key::arn_or_alias(ctx, kms_key::LAMBDA),
    })
}

/// The differences between the deployed configuration and `want`, by setting name.
pub fn config_drift(have: &FunctionConfiguration, want: &Desired) -> Vec<&'static str> {
    let vpc = have.vpc_config();
    let set = |v: Option<&[String]>| {
        v.unwrap_or_default()
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let checks = [
        ("role", have.role() == Some(want.role.as_str())),
        ("handler", have.handler() == Some(HANDLER)),
        ("runtime", have.runtime() == Some(&Runtime::Providedal2023)),
        ("timeout", have.timeout() == Some(want.timeout)),
        ("memory", have.memory_size() == Some(want.memory)),
        (
            "environment",
            have.environment()
                .and_then(|e| e.variables())
                .cloned()
                .unwrap_or_default()
                == want.env,
        ),
        (
            "environment key",
            have.kms_key_arn() == Some(want.kms_key.as_str()),
        ),
        ("subnets", set(vpc.map(|v| v.subnet_ids())) == want.subnets),
        (
            "security groups",
            set(vpc.map(|v| v.security_group_ids())) == want.security_groups,
        ),
        (
            "tracing",
            have.tracing_config().and_then(|t| t.mode()) == Some(&TracingMode::Active),
        ),
    ];
    checks
        .iter()
        .filter(|(_, same)| !same)
        .map(|(n, _)| *n)
        .collect()
}

pub fn vpc_config(want: &Desired) -> VpcConfig {
    VpcConfig::builder()
        .set_subnet_ids(Some(want.subnets.iter().cloned().collect()))
        .set_security_group_ids(Some(want.security_groups.iter().cloned().collect()))
        .build()
}
