//! The three functions `payment-<function>-<env>`: `provided.al2023`, the package's
//! architecture, in the private subnets with the Lambda security group, X-Ray active,
//! the functions' environment contract, and reserved concurrency where configured.
//!
//! Code is uploaded only when the package's SHA-256 differs from the deployed
//! `CodeSha256`; configuration only when it differs. Each step waits for the function
//! to be `Active` with `LastUpdateStatus=Successful`. A freshly created role can take a
//! few seconds to become assumable by Lambda; that error is retried for a bounded time.
//! What the stack invokes is a published version, through the alias `live` (see
//! [`super::alias`]). `down` deletes each function with its versions and aliases
//! (`DeleteFunction` without a qualifier). A published version keeps the VPC
//! configuration it was published with, so detaching `$LATEST` would free no network
//! interface: `down` waits for Lambda to release them before the security groups go,
//! and deletes them itself (see `network::lambda_enis`).

mod desired;

pub use desired::{Desired, config_drift, desired, reserved};

use super::support::package::{self, Package};
use super::support::{ROLE_PROPAGATION, Shown, drifted, number, role_not_ready};
use super::{FUNCTIONS, FunctionSpec, function_name, log_group, role};
use crate::engine::report::Change;
use crate::engine::tags::{self, ArnMap, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::network::security_group;
use crate::state::Record;
use crate::waiter::{Status, Wait, retry_while, wait_for};
use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionConfiguration, LastUpdateStatus, Runtime,
    State, TracingConfig, TracingMode,
};
use desired::{HANDLER, vpc_config};
use futures::future::join_all;
use std::collections::HashMap;
use std::sync::Arc;

pub const KIND: &str = "lambda_function";
const SERVICE: Service = Service::Lambda;
const SETTLE: Wait = Wait::minutes(10);

/// The kind; it keeps the packages the pre-flight check read, so each is read and
/// hashed once per run, and what is uploaded is what was checked.
#[derive(Default)]
pub struct Functions {
    packages: std::sync::Mutex<HashMap<&'static str, Arc<Package>>>,
}

impl Functions {
    fn package(&self, ctx: &Ctx, key: &'static str) -> Result<Arc<Package>> {
        if let Some(p) = self.packages.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(p);
        }
        let p = Arc::new(package::load(&ctx.options.packages, key)?);
        if let Ok(mut m) = self.packages.lock() {
            m.insert(key, p.clone());
        }
        Ok(p)
    }
}

pub fn address(key: &str) -> String {
    format!("{KIND}.{key}")
}

/// What one `GetFunction` tells: the configuration, the tags and the reserved concurrency.
struct Deployed {
    config: FunctionConfiguration,
    tags: Vec<(String, String)>,
    reserved: Option<i32>,
}

/// `GetFunction`; NotFound is an error of [`SERVICE`].
async fn get(ctx: &Ctx, name: &str) -> Result<Option<Deployed>> {
    let lambda = &ctx.aws.lambda;
    let out = lambda.get_function().function_name(name).send().await;
    let out = out.map_err(aws("GetFunction", name))?;
    let reserved = out
        .concurrency()
        .and_then(|c| c.reserved_concurrent_executions());
    let tags = out
        .tags()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(out.configuration.map(|config| Deployed {
        config,
        tags,
        reserved,
    }))
}

/// The function, by the name in state, else by its name (its tags are checked on use).
async fn lookup(ctx: &Ctx, addr: &str, name: &str) -> Result<Option<Found<Deployed>>> {
    let by_id = |id: String| async move { get(ctx, &id).await };
    let by_name = || async { Ok(SERVICE.found(get(ctx, name).await)?.flatten()) };
    find(ctx, addr, SERVICE, by_id, by_name).await
}

/// Waits until the function is `Active` and its last update `Successful`.
async fn settle(ctx: &Ctx, name: &str) -> Result<FunctionConfiguration> {
    wait_for(
        &format!("function {name} to become active"),
        SETTLE,
        || async {
            let Some(Deployed { config: c, .. }) = SERVICE.found(get(ctx, name).await)?.flatten()
            else {
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

fn variables(want: &Desired) -> Environment {
    let vars = Some(want.env.clone());
    Environment::builder().set_variables(vars).build()
}

fn active_tracing() -> TracingConfig {
    TracingConfig::builder().mode(TracingMode::Active).build()
}

/// The configuration `want` on a `CreateFunction` or `UpdateFunctionConfiguration`
/// call: both take the same settings, on builders of different types.
macro_rules! configured {
    ($call:expr, $want:expr) => {
        $call
            .runtime(Runtime::Providedal2023)
            .handler(HANDLER)
            .role(&$want.role)
            .timeout($want.timeout)
            .memory_size($want.memory)
            .environment(variables($want))
            .kms_key_arn(&$want.kms_key)
            .vpc_config(vpc_config($want))
            .tracing_config(active_tracing())
    };
}

async fn create(ctx: &Ctx, name: &str, want: &Desired, pkg: &Package) -> Result<()> {
    let tags: HashMap<String, String> = ctx.tags().into_iter().collect();
    let code = || FunctionCode::builder().zip_file(Blob::new(pkg.bytes.clone()));
    retry_while(
        &format!("creating function {name} (waiting for its new role)"),
        ROLE_PROPAGATION,
        role_not_ready,
        || async {
            let call = ctx.aws.lambda.create_function().function_name(name);
            let call = configured!(call, want)
                .architectures(pkg.architecture.clone())
                .code(code().build())
                .description(format!("payctl: {name}"))
                .set_tags(Some(tags.clone()));
            call.send().await.map_err(aws("CreateFunction", name))
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
            let call = ctx.aws.lambda.update_function_configuration();
            let call = configured!(call.function_name(name), want);
            let out = call.send().await;
            out.map_err(aws("UpdateFunctionConfiguration", name))
        },
    )
    .await?;
    Ok(())
}

async fn upload(ctx: &Ctx, name: &str, pkg: &Package) -> Result<()> {
    tracing::info!("function {name}: uploading code {}", pkg.sha256);
    let call = ctx.aws.lambda.update_function_code().function_name(name);
    let call = call.zip_file(Blob::new(pkg.bytes.clone()));
    let call = call.architectures(pkg.architecture.clone());
    call.send().await.map_err(aws("UpdateFunctionCode", name))?;
    Ok(())
}

/// Reserves `want` concurrent executions for the function, or gives them back.
async fn reserve(ctx: &Ctx, name: &str, want: Option<i32>) -> Result<()> {
    let lambda = &ctx.aws.lambda;
    match want {
        Some(n) => {
            let call = lambda.put_function_concurrency().function_name(name);
            let call = call.reserved_concurrent_executions(n);
            call.send()
                .await
                .map_err(aws("PutFunctionConcurrency", name))?;
        }
        None => {
            let call = lambda.delete_function_concurrency().function_name(name);
            call.send()
                .await
                .map_err(aws("DeleteFunctionConcurrency", name))?;
        }
    }
    Ok(())
}

/// The deployed code as `plan` shows it: its hash and architecture.
fn code(sha256: Option<&str>, arch: &[Architecture]) -> Shown<(Option<String>, Vec<Architecture>)> {
    let shown = format!(
        "{} ({})",
        sha256.unwrap_or("none"),
        arch.first().map_or("?", |a| a.as_str())
    );
    Shown::new((sha256.map(str::to_string), arch.to_vec()), shown)
}

/// The settings, as declarations: the code, the configuration, the reserved
/// concurrency. Answers the names of what it wrote.
async fn converge_settings(
    ctx: &Ctx,
    addr: &str,
    name: &str,
    mut current: FunctionConfiguration,
    reserved: Option<i32>,
    want: &Desired,
    pkg: &Package,
) -> Result<Vec<&'static str>> {
    let mut changed = Vec::new();
    let have = code(current.code_sha256(), current.architectures());
    let new = code(Some(&pkg.sha256), std::slice::from_ref(&pkg.architecture));
    let write = || upload(ctx, name, pkg);
    if ctx.converge(addr, "code", have, new, write).await? {
        current = settle(ctx, name).await?;
        changed.push("code");
    }
    let drift = config_drift(&current, want);
    let (have, new) = (drifted(drift.clone()), drifted(Vec::new()));
    let what = have.to_string();
    let write = || async {
        tracing::info!("function {name}: updating {what}");
        update_configuration(ctx, name, want).await?;
        settle(ctx, name).await.map(drop)
    };
    if ctx
        .converge(addr, "configuration", have, new, write)
        .await?
    {
        changed.extend(drift);
    }
    let (have, new) = (number(reserved, "none"), number(want.concurrency, "none"));
    let write = || reserve(ctx, name, want.concurrency);
    if ctx
        .converge(addr, "reserved concurrency", have, new, write)
        .await?
    {
        changed.push("reserved concurrency");
    }
    Ok(changed)
}

async fn ensure_one(ctx: &Ctx, spec: &FunctionSpec, pkg: &Package) -> Result<()> {
    let name = function_name(ctx, spec.key);
    let addr = address(spec.key);
    let want = desired(ctx, spec)?;
    let (deployed, change) = match lookup(ctx, &addr, &name).await? {
        Some(found) => {
            let arn = required(found.value.config.function_arn(), "function ARN")?;
            let known = Some(found.value.tags.clone());
            let retagged = converge_tags(ctx, &addr, &ArnMap::Lambda(&arn), known).await?;
            let change = found.change().updated_if(retagged);
            (Some(found.value), change)
        }
        None => {
            if !ctx.would_create(format!("{addr} {name}")) {
                return Ok(());
            }
            create(ctx, &name, &want, pkg).await?;
            (None, Change::Created)
        }
    };
    let reserved = deployed.as_ref().and_then(|d| d.reserved);
    let current = match deployed {
        Some(d) if settled(&d.config) => d.config,
        _ => settle(ctx, &name).await?,
    };
    let arn = required(current.function_arn(), "function ARN")?;
    ctx.record(&addr, Record::new(KIND, &name).arn(&arn))
        .await?;
    let changed = converge_settings(ctx, &addr, &name, current, reserved, &want, pkg).await?;
    let record = Record::new(KIND, &name).arn(&arn);
    let record = record.attr("code_sha256", &pkg.sha256);
    let record = record.attr("architecture", pkg.architecture.as_str());
    ctx.record(&addr, record).await?;
    let change = change.updated_if(!changed.is_empty());
    let detail = if changed.is_empty() || change == Change::Created {
        String::new()
    } else {
        format!(" ({})", changed.join(", "))
    };
    ctx.report.note(change, format!("{addr} {name}{detail}"));
    Ok(())
}

fn settled(c: &FunctionConfiguration) -> bool {
    c.state() == Some(&State::Active)
        && matches!(
            c.last_update_status(),
            None | Some(LastUpdateStatus::Successful)
        )
}

async fn delete_one(ctx: &Ctx, spec: &FunctionSpec) -> Result<()> {
    let name = function_name(ctx, spec.key);
    let addr = address(spec.key);
    let Some(found) = lookup(ctx, &addr, &name).await? else {
        return ctx.forget_gone(&addr).await;
    };
    let Deployed { config, tags, .. } = found.value;
    let arn = required(config.function_arn(), "function ARN")?;
    tags::check_owned(ctx, &ArnMap::Lambda(&arn), &tags)?;
    let delete = || async {
        let call = ctx.aws.lambda.delete_function().function_name(&name);
        call.send().await.map_err(aws("DeleteFunction", &name))
    };
    ctx.delete_and_forget(&addr, &name, SERVICE, delete).await
}

#[async_trait]
impl Resource for Functions {
    kind!(
        KIND,
        depends_on = [
            role::KIND,
            log_group::KIND,
            security_group::KIND,
            crate::network::subnet::KIND
        ]
    );

    async fn preflight_ensure(&self, ctx: &Ctx) -> Result<()> {
        for spec in &FUNCTIONS {
            self.package(ctx, spec.key)?;
        }
        super::support::concurrency::check(ctx).await
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let mut each = Vec::new();
        for spec in &FUNCTIONS {
            each.push((spec, self.package(ctx, spec.key)?));
        }
        all_ok(join_all(each.iter().map(|(f, p)| ensure_one(ctx, f, p))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all(FUNCTIONS.iter().map(|f| delete_one(ctx, f))).await)
    }
}
