//! The three functions `payment-<function>-<env>`: `provided.al2023`, the package's
//! architecture, in the private subnets with the Lambda security group, X-Ray active,
//! the functions' environment contract, and reserved concurrency where configured.
//!
//! Code is uploaded only when the package's SHA-256 differs from the deployed
//! `CodeSha256`; configuration only when it differs. Each step waits for the function
//! to be `Active` with `LastUpdateStatus=Successful`. A freshly created role can take a
//! few seconds to become assumable by Lambda; that error is retried for a bounded time.
//! `down` first detaches a function from the VPC (an update with no subnets) and waits,
//! so Lambda releases its network interfaces before the subnets and security groups go.

use super::package::{self, Package};
use super::{FUNCTIONS, FunctionSpec, function_name, log_group, role};
use crate::data::{dynamodb_table, rds_instance, s3_bucket, sqs_queue};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::network::{security_group, subnet_id, zones};
use crate::state::Record;
use crate::waiter::{Status, Wait, retry_while, wait_for};
use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Environment, FunctionCode, FunctionConfiguration, LastUpdateStatus, Runtime, State,
    TracingConfig, TracingMode, VpcConfig,
};
use futures::future::join_all;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

pub const KIND: &str = "lambda_function";
const HANDLER: &str = "bootstrap";
const SETTLE: Wait = Wait::minutes(10);
/// IAM changes reach Lambda within seconds, rarely a minute or two.
const ROLE_PROPAGATION: Wait = Wait {
    timeout: Duration::from_secs(120),
    first: Duration::from_secs(2),
    max_interval: Duration::from_secs(10),
};

pub struct Functions;

pub fn address(key: &str) -> String {
    format!("{KIND}.{key}")
}

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
}

pub fn reserved(ctx: &Ctx, key: &str) -> Option<i32> {
    let f = &ctx.settings.functions;
    match key {
        super::VALIDATOR => f.validator_concurrency,
        super::PROCESSOR => f.processor_concurrency,
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
        super::VALIDATOR => {
            env.insert("TABLE_NAME".into(), table()?);
        }
        super::PROCESSOR => {
            let db = ctx.state.get(rds_instance::ADDR);
            let endpoint = db.as_ref().and_then(|r| r.get("endpoint"));
            let secret = db.as_ref().and_then(|r| r.get("secret_arn"));
            let (Some(endpoint), Some(secret)) = (endpoint, secret) else {
                return Err(Error::Invalid(
                    "the database's endpoint and secret are not in the state file; run `payctl up` again".into(),
                ));
            };
            let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, "5432"));
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

fn vpc_config(want: &Desired) -> VpcConfig {
    VpcConfig::builder()
        .set_subnet_ids(Some(want.subnets.iter().cloned().collect()))
        .set_security_group_ids(Some(want.security_groups.iter().cloned().collect()))
        .build()
}

/// Lambda cannot assume a role IAM has not propagated yet; it passes within a minute.
fn role_not_ready(e: &Error) -> bool {
    matches!(e, Error::Aws { code, message, .. }
        if code == "InvalidParameterValueException" && message.contains("cannot be assumed by Lambda"))
}

/// What one `GetFunction` tells: the configuration, the tags and the reserved concurrency.
struct Found {
    config: FunctionConfiguration,
    tags: std::collections::HashMap<String, String>,
    reserved: Option<i32>,
}

async fn get(ctx: &Ctx, name: &str) -> Result<Option<Found>> {
    match ctx
        .aws
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.configuration.clone().map(|config| Found {
            config,
            tags: out.tags().cloned().unwrap_or_default(),
            reserved: out
                .concurrency()
                .and_then(|c| c.reserved_concurrent_executions()),
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetFunction", name)(e)),
    }
}

fn settled(c: &FunctionConfiguration) -> bool {
    c.state() == Some(&State::Active)
        && matches!(
            c.last_update_status(),
            None | Some(LastUpdateStatus::Successful)
        )
}

/// Waits until the function is `Active` and its last update `Successful`.
async fn settle(ctx: &Ctx, name: &str) -> Result<FunctionConfiguration> {
    wait_for(
        &format!("function {name} to become active"),
        SETTLE,
        || async {
            let Some(Found { config: c, .. }) = get(ctx, name).await? else {
                return Err(Error::Invalid(format!("function {name} disappeared")));
            };
            let failed = |what: &str, reason: Option<&str>| {
                Err(Error::Invalid(format!(
                    "function {name} {what}: {}",
                    reason.unwrap_or("no reason given")
                )))
            };
            match (c.state(), c.last_update_status()) {
                (Some(State::Failed), _) => failed("failed to start", c.state_reason()),
                (_, Some(LastUpdateStatus::Failed)) => {
                    failed("update failed", c.last_update_status_reason())
                }
                (Some(State::Active), None | Some(LastUpdateStatus::Successful)) => {
                    Ok(Status::Ready(c))
                }
                (state, update) => Ok(Status::Pending(format!(
                    "state {}, last update {}",
                    state.map(|s| s.as_str()).unwrap_or("unknown"),
                    update.map(|u| u.as_str()).unwrap_or("none")
                ))),
            }
        },
    )
    .await
}

async fn create(ctx: &Ctx, name: &str, want: &Desired, pkg: &Package) -> Result<()> {
    let tags: HashMap<String, String> = ctx.tags().into_iter().collect();
    retry_while(
        &format!("creating function {name} (waiting for its new role)"),
        ROLE_PROPAGATION,
        role_not_ready,
        || async {
            ctx.aws
                .lambda
                .create_function()
                .function_name(name)
                .runtime(Runtime::Providedal2023)
                .architectures(pkg.architecture.clone())
                .handler(HANDLER)
                .role(&want.role)
                .code(
                    FunctionCode::builder()
                        .zip_file(Blob::new(pkg.bytes.clone()))
                        .build(),
                )
                .timeout(want.timeout)
                .memory_size(want.memory)
                .environment(
                    Environment::builder()
                        .set_variables(Some(want.env.clone()))
                        .build(),
                )
                .vpc_config(vpc_config(want))
                .tracing_config(TracingConfig::builder().mode(TracingMode::Active).build())
                .description(format!("payctl: {name}"))
                .set_tags(Some(tags.clone()))
                .send()
                .await
                .map_err(aws("CreateFunction", name))
        },
    )
    .await?;
    Ok(())
}

async fn update_configuration(ctx: &Ctx, name: &str, want: &Desired) -> Result<()> {
    retry_while(
        &format!("updating function {name} (waiting for its role)"),
        ROLE_PROPAGATION,
        role_not_ready,
        || async {
            ctx.aws
                .lambda
                .update_function_configuration()
                .function_name(name)
                .runtime(Runtime::Providedal2023)
                .handler(HANDLER)
                .role(&want.role)
                .timeout(want.timeout)
                .memory_size(want.memory)
                .environment(
                    Environment::builder()
                        .set_variables(Some(want.env.clone()))
                        .build(),
                )
                .vpc_config(vpc_config(want))
                .tracing_config(TracingConfig::builder().mode(TracingMode::Active).build())
                .send()
                .await
                .map_err(aws("UpdateFunctionConfiguration", name))
        },
    )
    .await?;
    Ok(())
}

/// `have` is the reservation `GetFunction` reported (none for a new function).
async fn converge_concurrency(
    ctx: &Ctx,
    addr: &str,
    name: &str,
    have: Option<i32>,
    want: Option<i32>,
) -> Result<bool> {
    let lambda = &ctx.aws.lambda;
    let show = |n: Option<i32>| n.map_or("none".to_string(), |n| n.to_string());
    if have == want || !ctx.apply(addr, "reserved concurrency", show(have), show(want)) {
        return Ok(false);
    }
    match want {
        Some(n) => {
            lambda
                .put_function_concurrency()
                .function_name(name)
                .reserved_concurrent_executions(n)
                .send()
                .await
                .map_err(aws("PutFunctionConcurrency", name))?;
        }
        None => {
            lambda
                .delete_function_concurrency()
                .function_name(name)
                .send()
                .await
                .map_err(aws("DeleteFunctionConcurrency", name))?;
        }
    }
    Ok(true)
}

async fn ensure_one(ctx: &Ctx, spec: &FunctionSpec) -> Result<()> {
    let name = function_name(ctx, spec.key);
    let addr = address(spec.key);
    let pkg = package::load(&ctx.options.packages, spec.key)?;
    let want = desired(ctx, spec)?;
    let found = get(ctx, &name).await?;
    let mut change = match &found {
        Some(f) => {
            let tags = f.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            ctx.check_owned(&format!("Lambda function {name}"), tags)?;
            if ctx.state.get(&addr).is_some() {
                Change::Unchanged
            } else {
                Change::Adopted
            }
        }
        None => {
            if !ctx.would_create(format!("{addr} {name}")) {
                return Ok(());
            }
            create(ctx, &name, &want, &pkg).await?;
            Change::Created
        }
    };
    let reserved = found.as_ref().and_then(|f| f.reserved);
    let mut current = match found {
        Some(f) if settled(&f.config) => f.config,
        _ => settle(ctx, &name).await?,
    };
    let arn = required(current.function_arn(), "function ARN")?;
    ctx.record(&addr, Record::new(KIND, &name).arn(&arn))
        .await?;
    let mut changed = Vec::new();
    if (current.code_sha256() != Some(pkg.sha256.as_str())
        || current.architectures() != [pkg.architecture.clone()])
        && ctx.apply(
            &addr,
            "code",
            format!(
                "{} ({})",
                current.code_sha256().unwrap_or("none"),
                current.architectures().first().map_or("?", |a| a.as_str())
            ),
            format!("{} ({})", pkg.sha256, pkg.architecture.as_str()),
        )
    {
        tracing::info!("function {name}: uploading code {}", pkg.sha256);
        ctx.aws
            .lambda
            .update_function_code()
            .function_name(&name)
            .zip_file(Blob::new(pkg.bytes.clone()))
            .architectures(pkg.architecture.clone())
            .send()
            .await
            .map_err(aws("UpdateFunctionCode", &name))?;
        current = settle(ctx, &name).await?;
        changed.push("code");
    }
    let drift = config_drift(&current, &want);
    if !drift.is_empty() && ctx.apply(&addr, "configuration", drift.join(", "), "as configured") {
        tracing::info!("function {name}: updating {}", drift.join(", "));
        update_configuration(ctx, &name, &want).await?;
        settle(ctx, &name).await?;
        changed.extend(drift);
    }
    if converge_concurrency(ctx, &addr, &name, reserved, want.concurrency).await? {
        changed.push("reserved concurrency");
    }
    ctx.record(
        &addr,
        Record::new(KIND, &name)
            .arn(&arn)
            .attr("code_sha256", &pkg.sha256)
            .attr("architecture", pkg.architecture.as_str()),
    )
    .await?;
    if change == Change::Unchanged && !changed.is_empty() {
        change = Change::Updated;
    }
    let detail = if changed.is_empty() || change == Change::Created {
        String::new()
    } else {
        format!(" ({})", changed.join(", "))
    };
    ctx.report.note(change, format!("{addr} {name}{detail}"));
    Ok(())
}

async fn delete_one(ctx: &Ctx, spec: &FunctionSpec) -> Result<()> {
    let name = function_name(ctx, spec.key);
    let addr = address(spec.key);
    let Some(Found {
        config: current,
        tags,
        ..
    }) = get(ctx, &name).await?
    else {
        ctx.forget(&addr).await?;
        ctx.report.note(Change::Absent, addr);
        return Ok(());
    };
    let pairs = tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    ctx.check_owned(&format!("Lambda function {name}"), pairs)?;
    let in_vpc = current
        .vpc_config()
        .is_some_and(|v| !v.subnet_ids().is_empty());
    if in_vpc {
        // Detach first so Lambda releases the network interfaces now rather than
        // holding the subnets and security groups for tens of minutes.
        tracing::info!("function {name}: detaching from the VPC before deleting it");
        ctx.aws
            .lambda
            .update_function_configuration()
            .function_name(&name)
            .vpc_config(
                VpcConfig::builder()
                    .set_subnet_ids(Some(vec![]))
                    .set_security_group_ids(Some(vec![]))
                    .build(),
            )
            .send()
            .await
            .map_err(aws("UpdateFunctionConfiguration", &name))?;
        settle(ctx, &name).await?;
    }
    match ctx
        .aws
        .lambda
        .delete_function()
        .function_name(&name)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) => {}
        Err(e) => return Err(aws("DeleteFunction", &name)(e)),
    }
    ctx.forget(&addr).await?;
    ctx.report.note(Change::Deleted, format!("{addr} {name}"));
    Ok(())
}

#[async_trait]
impl Resource for Functions {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[
            role::KIND,
            log_group::KIND,
            security_group::KIND,
            crate::network::subnet::KIND,
        ]
    }

    async fn preflight_ensure(&self, ctx: &Ctx) -> Result<()> {
        for spec in &FUNCTIONS {
            package::load(&ctx.options.packages, spec.key)?;
        }
        super::concurrency::check(ctx).await
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all(FUNCTIONS.iter().map(|f| ensure_one(ctx, f))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all(FUNCTIONS.iter().map(|f| delete_one(ctx, f))).await)
    }
}
