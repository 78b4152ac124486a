//! The alias `live` of each function, and the versions behind it: what the API's
//! integrations, the Lambda permissions and the event source mappings invoke (never
//! `$LATEST`).
//!
//! The function kind converges `$LATEST`; this kind then publishes a version when
//! `$LATEST`'s code or configuration differs from the live version's, and moves `live`
//! to it: at once outside production, through a canary in production (see [`rollout`]).
//! The state records the live version, the previous one (for `payctl rollback`) and a
//! bake in progress (`canary`, `canary_started`), written before the alias is weighted,
//! so a run killed during a bake is resumed by the next `up`, and a weighted alias the
//! state does not explain is put back on its primary version. After a promotion the
//! versions beyond the newest `versions_kept` are deleted, never one an alias points at
//! nor the previous one.

mod rollout;

use super::{FUNCTIONS, FunctionSpec, function, function_name};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource, Service, kind};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_lambda::types::{AliasConfiguration, AliasRoutingConfiguration, FunctionConfiguration};
use futures::future::join_all;
pub use rollout::rollback;
use rollout::{bake, prune, unfinished};
use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

pub const KIND: &str = "lambda_alias";
pub const ALIAS: &str = "live";
const SERVICE: Service = Service::Lambda;

pub struct Aliases;

pub fn address(key: &str) -> String {
    format!("{KIND}.{key}")
}

/// The ARN of the function's alias `live`, from state (this kind ran before every kind
/// that invokes a function).
pub fn live_arn(ctx: &Ctx, key: &str) -> Result<String> {
    ctx.needed_arn(&address(key))
}

/// What the state says of one function's alias.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub live: Option<String>,
    pub previous: Option<String>,
    /// The version baking and when its bake started (seconds since the epoch).
    pub canary: Option<(String, u64)>,
    /// A version rolled back (a failed canary, or `payctl rollback`): `up` does not
    /// release it again while `$LATEST` is still that build.
    pub rejected: Option<String>,
}

impl Recorded {
    pub fn of(ctx: &Ctx, key: &str) -> Recorded {
        let Some(r) = ctx.state.get(&address(key)) else {
            return Recorded::default();
        };
        let get = |k: &str| r.get(k).map(str::to_string);
        let started = r.get("canary_started").and_then(|s| s.parse().ok());
        Recorded {
            live: get("version"),
            previous: get("previous"),
            canary: get("canary").zip(started),
            rejected: get("rejected"),
        }
    }

    fn record(&self, arn: &str) -> Record {
        let mut r = Record::new(KIND, arn).arn(arn);
        let fields = [
            ("version", &self.live),
            ("previous", &self.previous),
            ("rejected", &self.rejected),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                r = r.attr(k, v);
            }
        }
        if let Some((v, at)) = &self.canary {
            r = r.attr("canary", v).attr("canary_started", at.to_string());
        }
        r
    }
}

/// `GetAlias`; None when the function has no alias `live`.
async fn get(ctx: &Ctx, name: &str) -> Result<Option<AliasConfiguration>> {
    let call = ctx.aws.lambda.get_alias().function_name(name).name(ALIAS);
    let out = call.send().await.map_err(aws("GetAlias", name));
    Ok(SERVICE.found(out)?.map(|o| {
        AliasConfiguration::builder()
            .set_alias_arn(o.alias_arn)
            .set_function_version(o.function_version)
            .set_routing_config(o.routing_config)
            .build()
    }))
}

/// Every version of the function, `$LATEST` included.
pub async fn versions(ctx: &Ctx, name: &str) -> Result<Vec<FunctionConfiguration>> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let call = ctx.aws.lambda.list_versions_by_function();
        let call = call.function_name(name).set_marker(marker.take());
        let out = call
            .send()
            .await
            .map_err(aws("ListVersionsByFunction", name))?;
        all.extend(out.versions().iter().cloned());
        match out.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(all),
        }
    }
}

/// The versions besides the primary that take traffic through `alias`.
fn weighted(alias: &AliasConfiguration) -> Vec<(String, f64)> {
    let weights = alias
        .routing_config()
        .and_then(|r| r.additional_version_weights());
    weights
        .map(|w| w.iter().map(|(v, p)| (v.clone(), *p)).collect())
        .unwrap_or_default()
}

/// Whether version `v` runs what `$LATEST` runs: the same code and configuration.
pub fn same_build(v: &FunctionConfiguration, latest: &FunctionConfiguration) -> bool {
    let vpc = |c: &FunctionConfiguration| {
        let v = c.vpc_config();
        let sorted = |ids: &[String]| ids.iter().cloned().collect::<BTreeSet<_>>();
        v.map(|v| (sorted(v.subnet_ids()), sorted(v.security_group_ids())))
            .filter(|(s, _)| !s.is_empty())
    };
    let env = |c: &FunctionConfiguration| {
        c.environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default()
    };
    v.code_sha256() == latest.code_sha256()
        && v.role() == latest.role()
        && v.timeout() == latest.timeout()
        && v.memory_size() == latest.memory_size()
        && v.handler() == latest.handler()
        && v.runtime() == latest.runtime()
        && v.kms_key_arn() == latest.kms_key_arn()
        && v.architectures() == latest.architectures()
        && v.tracing_config().and_then(|t| t.mode())
            == latest.tracing_config().and_then(|t| t.mode())
        && env(v) == env(latest)
        && vpc(v) == vpc(latest)
}

fn routing(weights: HashMap<String, f64>) -> AliasRoutingConfiguration {
    AliasRoutingConfiguration::builder()
        .set_additional_version_weights(Some(weights))
        .build()
}

/// Points `live` at `primary`, with `canary` taking its share if given.
async fn point(ctx: &Ctx, name: &str, primary: &str, canary: Option<(&str, f64)>) -> Result<()> {
    let weights: HashMap<String, f64> = canary
        .map(|(v, percent)| (v.to_string(), percent / 100.0))
        .into_iter()
        .collect();
    let call = ctx
        .aws
        .lambda
        .update_alias()
        .function_name(name)
        .name(ALIAS);
    let call = call
        .function_version(primary)
        .routing_config(routing(weights));
    call.send().await.map_err(aws("UpdateAlias", name))?;
    Ok(())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn save(ctx: &Ctx, key: &str, arn: &str, rec: &Recorded) -> Result<()> {
    ctx.record(&address(key), rec.record(arn)).await
}

/// One function's alias (see the module's comment).
async fn ensure_one(ctx: &Ctx, spec: &FunctionSpec) -> Result<()> {
    let key = spec.key;
    let (name, addr) = (function_name(ctx, key), address(key));
    let Some(alias) = get(ctx, &name).await? else {
        return create(ctx, key, &name).await;
    };
    let arn = required(alias.alias_arn(), "alias ARN")?;
    let primary = required(alias.function_version(), "alias version")?;
    let mut rec = Recorded::of(ctx, key);
    if let Some((v, _)) = weighted(&alias).into_iter().next() {
        return unfinished(ctx, key, &name, &arn, &primary, &v, rec).await;
    }
    if rec.canary.is_some() || rec.live.as_deref() != Some(&primary) {
        // A run stopped between the alias and the state file: the alias tells (the
        // version the state had live, if the alias moved off it, is the previous one).
        if !ctx.planning() {
            let moved_off = rec.live.clone().filter(|l| *l != primary);
            rec.previous = moved_off.or(rec.previous).filter(|p| *p != primary);
            rec.live = Some(primary.clone());
            rec.canary = None;
            save(ctx, key, &arn, &rec).await?;
        }
    }
    let all = versions(ctx, &name).await?;
    let latest = latest(&all, &name)?;
    let live = all.iter().find(|v| v.version() == Some(primary.as_str()));
    if live.is_some_and(|v| same_build(v, latest)) {
        if ctx.state.get(&addr).is_none() && !ctx.planning() {
            save(ctx, key, &arn, &rec).await?;
        }
        ctx.report.note(
            Change::Unchanged,
            format!("{addr} {name}:{ALIAS} → version {primary}"),
        );
        return Ok(());
    }
    let rejected = rec.rejected.as_deref();
    let rejected = all
        .iter()
        .find(|v| rejected.is_some() && v.version() == rejected);
    if let Some(v) = rejected.filter(|v| same_build(v, latest)) {
        let v = v.version().unwrap_or("?");
        tracing::warn!(
            "function {name}: $LATEST is version {v}, which was rolled back; {ALIAS} stays on version {primary} (change the package to release a new build, or `payctl rollback` to go back to {v})"
        );
        ctx.report.note(
            Change::Unchanged,
            format!("{addr} {name}:{ALIAS} → version {primary} (version {v} rolled back)"),
        );
        return Ok(());
    }
    if !ctx.apply(&addr, "version", &primary, "a new version of $LATEST") {
        return Ok(());
    }
    let new = publish(ctx, &name, latest).await?;
    if new == primary {
        return Ok(());
    }
    let r = &ctx.settings.rollout;
    if !ctx.settings.production || r.canary_percent == 0.0 {
        point(ctx, &name, &new, None).await?;
        let rec = Recorded {
            live: Some(new.clone()),
            previous: Some(primary.clone()),
            canary: None,
            rejected: None,
        };
        save(ctx, key, &arn, &rec).await?;
        ctx.report.note(
            Change::Updated,
            format!("{addr} {name}:{ALIAS} → version {new} (was {primary})"),
        );
        return prune(ctx, &name, &rec).await;
    }
    let started = now_secs();
    let rec = Recorded {
        live: Some(primary.clone()),
        previous: rec.previous,
        canary: Some((new.clone(), started)),
        rejected: None,
    };
    // The bake is recorded before the alias is weighted: a run killed in between
    // finds it and resumes it.
    save(ctx, key, &arn, &rec).await?;
    point(ctx, &name, &primary, Some((&new, r.canary_percent))).await?;
    bake(ctx, key, &name, &arn, &primary, &new, started, rec).await
}

/// `$LATEST`, from `all`.
fn latest<'a>(all: &'a [FunctionConfiguration], name: &str) -> Result<&'a FunctionConfiguration> {
    all.iter()
        .find(|v| v.version() == Some("$LATEST"))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "function {name} has no $LATEST version; run `payctl up` again"
            ))
        })
}

/// Publishes `$LATEST` (Lambda answers the latest version when nothing changed).
async fn publish(ctx: &Ctx, name: &str, latest: &FunctionConfiguration) -> Result<String> {
    let call = ctx.aws.lambda.publish_version().function_name(name);
    let call = call.set_code_sha256(latest.code_sha256().map(str::to_string));
    let call = call.description(format!(
        "payctl: code {}",
        latest.code_sha256().unwrap_or("?")
    ));
    let out = call.send().await.map_err(aws("PublishVersion", name))?;
    let v = required(out.version(), "published version")?;
    tracing::info!("function {name}: published version {v}");
    Ok(v)
}

/// The first alias: the function's first version, live at once.
async fn create(ctx: &Ctx, key: &str, name: &str) -> Result<()> {
    let addr = address(key);
    if !ctx.would_create(format!("{addr} {name}:{ALIAS}")) {
        return Ok(());
    }
    let all = versions(ctx, name).await?;
    let new = publish(ctx, name, latest(&all, name)?).await?;
    let call = ctx
        .aws
        .lambda
        .create_alias()
        .function_name(name)
        .name(ALIAS);
    let call = call
        .function_version(&new)
        .description("payctl: what the stack invokes");
    let out = call.send().await.map_err(aws("CreateAlias", name))?;
    let arn = required(out.alias_arn(), "alias ARN")?;
    let rec = Recorded {
        live: Some(new.clone()),
        ..Recorded::default()
    };
    save(ctx, key, &arn, &rec).await?;
    ctx.report.note(
        Change::Created,
        format!("{addr} {name}:{ALIAS} → version {new}"),
    );
    Ok(())
}

async fn delete_one(ctx: &Ctx, key: &str) -> Result<()> {
    let (name, addr) = (function_name(ctx, key), address(key));
    if ctx.state.get(&addr).is_none() && get(ctx, &name).await?.is_none() {
        return ctx.forget_gone(&addr).await;
    }
    let delete = || async {
        let call = ctx
            .aws
            .lambda
            .delete_alias()
            .function_name(&name)
            .name(ALIAS);
        call.send().await.map_err(aws("DeleteAlias", &name))
    };
    ctx.delete_and_forget(&addr, &format!("{name}:{ALIAS}"), SERVICE, delete)
        .await
}

#[async_trait]
impl Resource for Aliases {
    kind!(KIND, depends_on = [function::KIND]);

    /// A release is judged against `$LATEST` as the function kind leaves it: a bake
    /// started early would bake a build about to be replaced.
    fn may_start_early(&self) -> bool {
        false
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all(FUNCTIONS.iter().map(|f| ensure_one(ctx, f))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all(FUNCTIONS.iter().map(|f| delete_one(ctx, f.key))).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_lambda::types::{EnvironmentResponse, VpcConfigResponse};

    fn config(sha: &str, var: &str, subnets: &[&str]) -> FunctionConfiguration {
        FunctionConfiguration::builder()
            .code_sha256(sha)
            .role("arn:aws:iam::1:role/r")
            .timeout(10)
            .environment(
                EnvironmentResponse::builder()
                    .variables("MODE", var)
                    .build(),
            )
            .vpc_config(
                VpcConfigResponse::builder()
                    .set_subnet_ids(Some(subnets.iter().map(|s| s.to_string()).collect()))
                    .security_group_ids("sg-1")
                    .build(),
            )
            .build()
    }

    #[test]
    fn a_version_is_the_same_build_only_with_the_same_code_and_configuration() {
        let latest = config("abc", "a", &["s1", "s2"]);
        assert!(same_build(&config("abc", "a", &["s2", "s1"]), &latest));
        assert!(!same_build(&config("abd", "a", &["s1", "s2"]), &latest));
        assert!(!same_build(&config("abc", "b", &["s1", "s2"]), &latest));
        assert!(!same_build(&config("abc", "a", &["s1"]), &latest));
    }

    #[test]
    fn the_record_keeps_the_live_and_previous_versions_and_a_bake() {
        let rec = Recorded {
            live: Some("3".into()),
            previous: Some("2".into()),
            canary: Some(("4".into(), 1_700_000_000)),
            rejected: Some("5".into()),
        };
        let r = rec.record("arn:aws:lambda:us-east-1:1:function:f:live");
        assert_eq!(r.get("version"), Some("3"));
        assert_eq!(r.get("previous"), Some("2"));
        assert_eq!(r.get("canary"), Some("4"));
        assert_eq!(r.get("canary_started"), Some("1700000000"));
        assert_eq!(r.get("rejected"), Some("5"));
        let plain = Recorded {
            live: Some("1".into()),
            ..Recorded::default()
        }
        .record("a");
        assert_eq!(plain.get("previous"), None);
        assert_eq!(plain.get("canary"), None);
    }
}
