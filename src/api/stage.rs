//! The API's deployment and its stage, named after the environment.
//!
//! A new deployment is made only when the API's definition changed: the deployment's
//! description carries the SHA-256 of the canonical definition
//! ([`super::support::definition::definition`]), and `up` compares it with the description of the
//! deployment the stage serves. (It also redeploys when the REST API kind had to repair
//! drift in the draft, or when the stage serves a deployment payctl did not make.)
//!
//! Stage settings, put back on every `up`: method settings `*/*` with execution logging
//! at ERROR, no data trace (request and response bodies would land in the logs), metrics
//! on, throttling rate and burst from the settings; access logs to
//! `/aws/apigateway/payment-api-<env>/access` (the compute layer creates it with 90-day
//! retention) as one JSON object per request; X-Ray tracing on. Execution and access
//! logging need the account's CloudWatch role ([`super::account`]).

use super::support::definition::{definition, definition_hash};
use super::support::{self, SERVICE, Target, apply_patches, rate_text, replace, same_rate, text};
use super::{api_id, partition, rest_api, stage_name, tag_map};
use crate::compute::log_group::{self, API_ACCESS};
use crate::engine::report::Change;
use crate::engine::{Ctx, Found, Resource, find, kind};
use crate::error::{Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{PatchOperation, Stage as AwsStage};
use serde_json::json;

pub const KIND: &str = "apigw_stage";
pub const ADDR: &str = "apigw_stage.main";
/// Method settings for every resource and method.
pub const ALL_METHODS: &str = "*/*";
pub const LOGGING_LEVEL: &str = "ERROR";

pub struct Stage;

/// `payctl definition sha256:<hash>`: what a payctl deployment's description says.
pub fn deployment_description(hash: &str) -> String {
    format!("payctl definition sha256:{hash}")
}

/// `https://<api-id>.execute-api.<region>.amazonaws.com/<stage>`.
pub fn endpoint(api_id: &str, region: &str, stage: &str) -> String {
    let domain = if partition(region) == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{api_id}.execute-api.{region}.{domain}/{stage}")
}

/// One JSON object per request. Never `$context.identity.apiKey` (the key's value):
/// the key id is enough to tell clients apart.
pub fn access_log_format() -> String {
    json!({
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "requestTime": "$context.requestTime",
        "ip": "$context.identity.sourceIp",
        "userAgent": "$context.identity.userAgent",
        "apiKeyId": "$context.identity.apiKeyId",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "protocol": "$context.protocol",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "responseLatency": "$context.responseLatency",
        "integrationStatus": "$context.integration.status",
        "integrationLatency": "$context.integration.latency",
        "errorType": "$context.error.responseType",
        "xrayTraceId": "$context.xrayTraceId"
    })
    .to_string()
}

/// The stage settings payctl wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub rate: f64,
    pub burst: i32,
    pub access_log_arn: String,
    pub access_log_format: String,
}

/// One stage setting as a declaration: its patch path, what the stage has, what
/// payctl wants (both as API Gateway's patch values write them).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub path: String,
    pub have: String,
    pub want: String,
}

fn setting(path: impl Into<String>, have: String, want: impl ToString) -> Setting {
    Setting {
        path: path.into(),
        have,
        want: want.to_string(),
    }
}

/// The stage's settings: tracing, the method settings of `*/*` (logging, metrics,
/// throttling) and the access logs.
pub fn settings(stage: &AwsStage, want: &Want) -> Vec<Setting> {
    let m = stage.method_settings().and_then(|s| s.get(ALL_METHODS));
    let p = |setting: &str| format!("/{ALL_METHODS}/{setting}");
    let logs = stage.access_log_settings();
    // A rate within the tolerance is the wanted one (API Gateway stores doubles).
    let rate = m.map(|m| m.throttling_rate_limit());
    let rate = match rate {
        Some(r) if same_rate(r, want.rate) => rate_text(want.rate),
        other => text(other.map(rate_text)),
    };
    vec![
        setting("/tracingEnabled", text(Some(stage.tracing_enabled())), true),
        setting(
            p("logging/loglevel"),
            text(m.and_then(|m| m.logging_level())),
            LOGGING_LEVEL,
        ),
        setting(
            p("logging/dataTrace"),
            text(m.map(|m| m.data_trace_enabled())),
            false,
        ),
        setting(
            p("metrics/enabled"),
            text(m.map(|m| m.metrics_enabled())),
            true,
        ),
        setting(p("throttling/rateLimit"), rate, rate_text(want.rate)),
        setting(
            p("throttling/burstLimit"),
            text(m.map(|m| m.throttling_burst_limit())),
            want.burst,
        ),
        setting(
            "/accessLogSettings/destinationArn",
            text(logs.and_then(|l| l.destination_arn())),
            &want.access_log_arn,
        ),
        setting(
            "/accessLogSettings/format",
            text(logs.and_then(|l| l.format())),
            &want.access_log_format,
        ),
    ]
}

/// The patches that bring a stage's settings to `want` (none when it already matches).
pub fn settings_patches(stage: &AwsStage, want: &Want) -> Vec<PatchOperation> {
    drifted(stage, want).into_iter().map(|(op, _)| op).collect()
}

/// Each setting that differs, as its patch and its current value.
fn drifted(stage: &AwsStage, want: &Want) -> Vec<(PatchOperation, String)> {
    let settings = settings(stage, want).into_iter();
    let differ = settings.filter(|s| s.have != s.want);
    differ.map(|s| (replace(&s.path, s.want), s.have)).collect()
}

fn want(ctx: &Ctx) -> Result<Want> {
    Ok(Want {
        rate: ctx.settings.api.rate_limit,
        burst: ctx.settings.api.burst_limit,
        access_log_arn: log_group::arn(ctx, API_ACCESS)?,
        access_log_format: access_log_format(),
    })
}

/// Converts GetStage/CreateStage/UpdateStage outputs into the shared `Stage` type.
macro_rules! to_stage {
    ($out:expr) => {{
        let o = $out;
        AwsStage::builder()
            .set_deployment_id(o.deployment_id().map(str::to_string))
            .set_stage_name(o.stage_name().map(str::to_string))
            .set_description(o.description().map(str::to_string))
            .set_method_settings(o.method_settings().cloned())
            .set_access_log_settings(o.access_log_settings().cloned())
            .tracing_enabled(o.tracing_enabled())
            .set_tags(o.tags().cloned())
            .build()
    }};
}

fn target(ctx: &Ctx, api: &str, name: &str) -> Target {
    Target {
        arn: stage_arn(ctx, api, name),
        what: format!("API stage {api}/{name}"),
    }
}

fn stage_arn(ctx: &Ctx, api: &str, name: &str) -> String {
    support::arn(ctx, &format!("/restapis/{api}/stages/{name}"))
}

/// The stage `name` of API `api` (`None` also when the API itself is gone).
async fn get_stage(apigw: &Client, api: &str, name: &str) -> Result<Option<AwsStage>> {
    let call = apigw.get_stage().rest_api_id(api);
    let out = call.stage_name(name).send().await;
    let out = SERVICE.found(out.map_err(aws("GetStage", format!("{api}/{name}"))))?;
    Ok(out.map(|o| to_stage!(&o)))
}

/// The stage, by the name in state, else by the environment's name (a stage has no
/// other name to be found by).
async fn lookup(ctx: &Ctx, api: &str) -> Result<Option<Found<AwsStage>>> {
    let client = &ctx.aws.apigateway;
    let by_id = move |name: String| async move { get_stage(client, api, &name).await };
    let by_name = || async { get_stage(&ctx.aws.apigateway, api, &stage_name(ctx)).await };
    find(ctx, ADDR, SERVICE, by_id, by_name).await
}

/// The description of the deployment a stage serves (None when it cannot be read).
async fn served_description(ctx: &Ctx, api: &str, stage: &AwsStage) -> Result<Option<String>> {
    let Some(deployment) = stage.deployment_id() else {
        return Ok(None);
    };
    let call = ctx.aws.apigateway.get_deployment().rest_api_id(api);
    let out = call.deployment_id(deployment).send().await;
    let out = out.map_err(aws("GetDeployment", format!("{api} {deployment}")));
    Ok(SERVICE
        .found(out)?
        .and_then(|o| o.description().map(str::to_string)))
}

async fn deploy(ctx: &Ctx, api: &str, hash: &str) -> Result<String> {
    let out = ctx
        .aws
        .apigateway
        .create_deployment()
        .rest_api_id(api)
        .description(deployment_description(hash))
        .send()
        .await
        .map_err(aws("CreateDeployment", api))?;
    required(out.id(), "deployment id")
}

/// A new deployment when the stage serves another definition than `hash`, or the REST
/// API kind repaired the draft. Answers the stage as it is then, and whether it deployed.
async fn converge_deployment(
    ctx: &Ctx,
    api: &str,
    hash: &str,
    stage: AwsStage,
) -> Result<(AwsStage, bool)> {
    let name = stage_name(ctx);
    let served = served_description(ctx, api, &stage).await?;
    let want = deployment_description(hash);
    let current = served.as_deref() == Some(want.as_str()) && !rest_api::redeploy_pending(ctx);
    let served = served.as_deref().unwrap_or("none");
    if current || !ctx.apply(ADDR, "deployment", served, &want) {
        return Ok((stage, false));
    }
    let deployment = deploy(ctx, api, hash).await?;
    tracing::info!("API {api}: deployed {deployment} to stage {name} (definition {hash})");
    let call = ctx.aws.apigateway.update_stage().rest_api_id(api);
    let call = call.stage_name(&name);
    let out = call
        .patch_operations(replace("/deploymentId", &deployment))
        .send()
        .await
        .map_err(aws("UpdateStage", format!("{api}/{name}")))?;
    Ok((to_stage!(&out), true))
}

/// A first deployment and the stage serving it.
async fn create(ctx: &Ctx, api: &str, hash: &str) -> Result<AwsStage> {
    let name = stage_name(ctx);
    let deployment = deploy(ctx, api, hash).await?;
    let out = ctx
        .aws
        .apigateway
        .create_stage()
        .rest_api_id(api)
        .stage_name(&name)
        .deployment_id(&deployment)
        .description(format!("Payment API, environment {}", ctx.env))
        .tracing_enabled(true)
        .set_tags(Some(tag_map(ctx)))
        .send()
        .await
        .map_err(aws("CreateStage", format!("{api}/{name}")))?;
    Ok(to_stage!(&out))
}

/// The stage's settings, put back in one UpdateStage. True when it wrote.
async fn converge_settings(ctx: &Ctx, api: &str, stage: &AwsStage, want: &Want) -> Result<bool> {
    let name = stage_name(ctx);
    let send = async |ops: Vec<PatchOperation>| {
        let call = ctx.aws.apigateway.update_stage().rest_api_id(api);
        let call = call.stage_name(&name).set_patch_operations(Some(ops));
        call.send()
            .await
            .map_err(aws("UpdateStage", format!("{api}/{name}")))?;
        Ok(())
    };
    let changes = drifted(stage, want);
    let what = format!("API stage {api}/{name}");
    apply_patches(ctx, ADDR, &what, changes, send).await
}

fn record(ctx: &Ctx, api: &str, deployment: &str) -> Record {
    let name = stage_name(ctx);
    Record::new(KIND, &name)
        .arn(stage_arn(ctx, api, &name))
        .attr("api_id", api)
        .attr("deployment_id", deployment)
        .attr("endpoint", endpoint(api, &ctx.region, &name))
}

#[async_trait]
impl Resource for Stage {
    // Permissions first: the stage goes live only once the functions accept its calls.
    kind!(
        KIND,
        depends_on = [
            rest_api::KIND,
            super::permission::KIND,
            super::account::KIND,
            log_group::KIND
        ]
    );

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let api = api_id(ctx)?;
        let name = stage_name(ctx);
        let want = want(ctx)?;
        let hash = definition_hash(&definition(ctx)?);
        let (stage, change) = match lookup(ctx, &api).await? {
            Some(found) => {
                let target = target(ctx, &api, &name);
                let tags = found.value.tags();
                let retagged = support::converge_tags(ctx, ADDR, &target, tags).await?;
                let change = found.change();
                let (stage, deployed) = converge_deployment(ctx, &api, &hash, found.value).await?;
                let change = if deployed {
                    Change::Updated
                } else {
                    change.updated_if(retagged)
                };
                (stage, change)
            }
            None if !ctx.would_create(format!("{ADDR} {api}/{name}")) => return Ok(()),
            None => (create(ctx, &api, &hash).await?, Change::Created),
        };
        let deployment = required(stage.deployment_id(), "stage deployment id")?;
        ctx.record(ADDR, record(ctx, &api, &deployment)).await?;
        rest_api::clear_redeploy(ctx).await?;
        let change = change.updated_if(converge_settings(ctx, &api, &stage, &want).await?);
        ctx.report
            .note(change, format!("{ADDR} {api}/{name} {deployment}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = stage_name(ctx);
        // The API's id: from state, else the REST API found by name (it may be gone).
        let Some(api) = rest_api::find_id(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let Some(stage) = get_stage(&ctx.aws.apigateway, &api, &name).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        support::check_owned(ctx, &target(ctx, &api, &name), stage.tags())?;
        let delete = async || {
            let call = ctx.aws.apigateway.delete_stage().rest_api_id(&api);
            let out = call.stage_name(&name).send().await;
            out.map_err(aws("DeleteStage", format!("{api}/{name}")))
        };
        let what = format!("{api}/{name}");
        ctx.delete_and_forget(ADDR, &what, SERVICE, delete).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_apigateway::types::{AccessLogSettings, MethodSetting};

    fn want() -> Want {
        Want {
            rate: 50.0,
            burst: 100,
            access_log_arn:
                "arn:aws:logs:us-east-1:1:log-group:/aws/apigateway/payment-api-dev/access".into(),
            access_log_format: access_log_format(),
        }
    }

    fn good() -> aws_sdk_apigateway::types::Stage {
        let w = want();
        aws_sdk_apigateway::types::Stage::builder()
            .tracing_enabled(true)
            .method_settings(
                ALL_METHODS,
                MethodSetting::builder()
                    .logging_level("ERROR")
                    .data_trace_enabled(false)
                    .metrics_enabled(true)
                    .throttling_rate_limit(50.0)
                    .throttling_burst_limit(100)
                    .build(),
            )
            .access_log_settings(
                AccessLogSettings::builder()
                    .destination_arn(w.access_log_arn)
                    .format(w.access_log_format)
                    .build(),
            )
            .build()
    }

    fn paths(ops: &[PatchOperation]) -> Vec<(&str, &str)> {
        ops.iter()
            .map(|o| (o.path().unwrap_or_default(), o.value().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_matching_stage_needs_no_patch() {
        assert!(settings_patches(&good(), &want()).is_empty());
    }

    #[test]
    fn a_bare_stage_gets_every_setting() {
        let bare = aws_sdk_apigateway::types::Stage::builder().build();
        let w = want();
        let fmt = access_log_format();
        assert_eq!(
            paths(&settings_patches(&bare, &w)),
            [
                ("/tracingEnabled", "true"),
                ("/*/*/logging/loglevel", "ERROR"),
                ("/*/*/logging/dataTrace", "false"),
                ("/*/*/metrics/enabled", "true"),
                ("/*/*/throttling/rateLimit", "50"),
                ("/*/*/throttling/burstLimit", "100"),
                (
                    "/accessLogSettings/destinationArn",
                    w.access_log_arn.as_str()
                ),
                ("/accessLogSettings/format", fmt.as_str()),
            ]
        );
    }

    #[test]
    fn changed_settings_are_patched_alone() {
        let w = Want {
            rate: 12.5,
            burst: 20,
            ..want()
        };
        assert_eq!(
            paths(&settings_patches(&good(), &w)),
            [
                ("/*/*/throttling/rateLimit", "12.5"),
                ("/*/*/throttling/burstLimit", "20")
            ]
        );
        let mut s = good();
        if let Some(m) = s.method_settings.as_mut() {
            m.insert(
                ALL_METHODS.into(),
                MethodSetting::builder()
                    .logging_level("INFO")
                    .data_trace_enabled(true)
                    .metrics_enabled(true)
                    .throttling_rate_limit(50.0)
                    .throttling_burst_limit(100)
                    .build(),
            );
        }
        assert_eq!(
            paths(&settings_patches(&s, &want())),
            [
                ("/*/*/logging/loglevel", "ERROR"),
                ("/*/*/logging/dataTrace", "false")
            ]
        );
    }

    #[test]
    fn access_log_format_is_json_without_the_key_value() {
        let f = access_log_format();
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["requestId"], "$context.requestId");
        assert!(!f.contains("$context.identity.apiKey\""));
        assert!(!f.contains('\n'));
        assert!(f.contains("$context.identity.apiKeyId"));
    }

    #[test]
    fn endpoints_and_descriptions() {
        assert_eq!(
            endpoint("abc123", "us-east-1", "dev"),
            "https://abc123.execute-api.us-east-1.amazonaws.com/dev"
        );
        assert_eq!(
            endpoint("abc123", "cn-north-1", "prod"),
            "https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod"
        );
        assert_eq!(
            deployment_description("ab12"),
            "payctl definition sha256:ab12"
        );
    }
}
