//! The API's deployment and its stage, named after the environment.
//!
//! A new deployment is made only when the API's definition changed: the deployment's
//! description carries the SHA-256 of the canonical definition
//! ([`super::definition::definition`]), and `up` compares it with the description of the
//! deployment the stage serves. (It also redeploys when the REST API kind had to repair
//! drift in the draft, or when the stage serves a deployment payctl did not make.)
//!
//! Stage settings, put back on every `up`: method settings `*/*` with execution logging
//! at ERROR, no data trace (request and response bodies would land in the logs), metrics
//! on, throttling rate and burst from the settings; access logs to
//! `/aws/apigateway/payment-api-<env>/access` (the compute layer creates it with 90-day
//! retention) as one JSON object per request; X-Ray tracing on. Execution and access
//! logging need the account's CloudWatch role ([`super::account`]).

use super::{api_id, owned, partition, rate_text, replace, same_rate, stage_name, tag_map};
use super::{definition, rest_api};
use crate::compute::log_group::{self, API_ACCESS};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_apigateway::types::PatchOperation;
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

/// The patches that bring a stage's settings to `want` (none when it already matches).
pub fn settings_patches(
    stage: &aws_sdk_apigateway::types::Stage,
    want: &Want,
) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    if !stage.tracing_enabled() {
        ops.push(replace("/tracingEnabled", "true"));
    }
    let m = stage.method_settings().and_then(|s| s.get(ALL_METHODS));
    let p = |setting: &str| format!("/{ALL_METHODS}/{setting}");
    if m.and_then(|m| m.logging_level()) != Some(LOGGING_LEVEL) {
        ops.push(replace(&p("logging/loglevel"), LOGGING_LEVEL));
    }
    if m.is_none_or(|m| m.data_trace_enabled()) {
        ops.push(replace(&p("logging/dataTrace"), "false"));
    }
    if !m.is_some_and(|m| m.metrics_enabled()) {
        ops.push(replace(&p("metrics/enabled"), "true"));
    }
    if !m.is_some_and(|m| same_rate(m.throttling_rate_limit(), want.rate)) {
        ops.push(replace(&p("throttling/rateLimit"), rate_text(want.rate)));
    }
    if m.map(|m| m.throttling_burst_limit()) != Some(want.burst) {
        ops.push(replace(&p("throttling/burstLimit"), want.burst.to_string()));
    }
    let logs = stage.access_log_settings();
    if logs.and_then(|l| l.destination_arn()) != Some(want.access_log_arn.as_str()) {
        ops.push(replace(
            "/accessLogSettings/destinationArn",
            &want.access_log_arn,
        ));
    }
    if logs.and_then(|l| l.format()) != Some(want.access_log_format.as_str()) {
        ops.push(replace(
            "/accessLogSettings/format",
            &want.access_log_format,
        ));
    }
    ops
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
        aws_sdk_apigateway::types::Stage::builder()
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

async fn get_stage(
    ctx: &Ctx,
    api: &str,
    stage: &str,
) -> Result<Option<aws_sdk_apigateway::types::Stage>> {
    match ctx
        .aws
        .apigateway
        .get_stage()
        .rest_api_id(api)
        .stage_name(stage)
        .send()
        .await
    {
        Ok(out) => Ok(Some(to_stage!(&out))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetStage", format!("{api}/{stage}"))(e)),
    }
}

/// The description of the deployment a stage serves (None when it cannot be read).
async fn deployment_description_of(
    ctx: &Ctx,
    api: &str,
    deployment: &str,
) -> Result<Option<String>> {
    match ctx
        .aws
        .apigateway
        .get_deployment()
        .rest_api_id(api)
        .deployment_id(deployment)
        .send()
        .await
    {
        Ok(out) => Ok(out.description().map(str::to_string)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetDeployment", format!("{api} {deployment}"))(e)),
    }
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

#[async_trait]
impl Resource for Stage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        // Permissions first: the stage goes live only once the functions accept its calls.
        &[
            rest_api::KIND,
            super::permission::KIND,
            super::account::KIND,
            log_group::KIND,
        ]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let api = api_id(ctx)?;
        let name = stage_name(ctx);
        let want = want(ctx)?;
        let hash = definition::definition_hash(&definition::definition(ctx)?);
        let apigw = &ctx.aws.apigateway;
        let existing = get_stage(ctx, &api, &name).await?;
        if let Some(s) = &existing
            && !owned(ctx, s.tags())
        {
            return Err(Error::not_owned(
                format!("API stage {api}/{name}"),
                &ctx.env,
            ));
        }
        let served = match existing.as_ref().and_then(|s| s.deployment_id()) {
            Some(d) => deployment_description_of(ctx, &api, d).await?,
            None => None,
        };
        let redeploy = rest_api::redeploy_pending(ctx);
        let current =
            served.as_deref() == Some(deployment_description(&hash).as_str()) && !redeploy;
        let (stage, mut change) = match existing {
            Some(s) if current => {
                let c = if ctx.state.get(ADDR).is_some() {
                    Change::Unchanged
                } else {
                    Change::Adopted
                };
                (s, c)
            }
            Some(s) if ctx.planning() => {
                let served = served.as_deref().unwrap_or("none");
                ctx.apply(ADDR, "deployment", served, deployment_description(&hash));
                (s, Change::Unchanged)
            }
            Some(_) => {
                let deployment = deploy(ctx, &api, &hash).await?;
                tracing::info!(
                    "API {api}: deployed {deployment} to stage {name} (definition {hash})"
                );
                let out = apigw
                    .update_stage()
                    .rest_api_id(&api)
                    .stage_name(&name)
                    .patch_operations(replace("/deploymentId", &deployment))
                    .send()
                    .await
                    .map_err(aws("UpdateStage", format!("{api}/{name}")))?;
                (to_stage!(&out), Change::Updated)
            }
            None if !ctx.would_create(format!("{ADDR} {api}/{name}")) => return Ok(()),
            None => {
                let deployment = deploy(ctx, &api, &hash).await?;
                let out = apigw
                    .create_stage()
                    .rest_api_id(&api)
                    .stage_name(&name)
                    .deployment_id(&deployment)
                    .description(format!("Payment API, environment {}", ctx.env))
                    .tracing_enabled(true)
                    .set_tags(Some(tag_map(ctx)))
                    .send()
                    .await
                    .map_err(aws("CreateStage", format!("{api}/{name}")))?;
                (to_stage!(&out), Change::Created)
            }
        };
        let rec = |deployment: &str| {
            Record::new(KIND, &name)
                .arn(format!(
                    "arn:{}:apigateway:{}::/restapis/{api}/stages/{name}",
                    partition(&ctx.region),
                    ctx.region
                ))
                .attr("api_id", &api)
                .attr("deployment_id", deployment)
                .attr("endpoint", endpoint(&api, &ctx.region, &name))
        };
        let deployment = required(stage.deployment_id(), "stage deployment id")?;
        ctx.record(ADDR, rec(&deployment)).await?;
        rest_api::clear_redeploy(ctx).await?;

        let ops = settings_patches(&stage, &want);
        if ctx.planning() {
            for op in &ops {
                let path = op.path().unwrap_or("?");
                ctx.apply(ADDR, path, "differs", op.value().unwrap_or("(removed)"));
            }
        } else if !ops.is_empty() {
            let paths: Vec<&str> = ops.iter().filter_map(|o| o.path()).collect();
            tracing::info!("API stage {api}/{name}: setting {}", paths.join(", "));
            apigw
                .update_stage()
                .rest_api_id(&api)
                .stage_name(&name)
                .set_patch_operations(Some(ops))
                .send()
                .await
                .map_err(aws("UpdateStage", format!("{api}/{name}")))?;
            if change == Change::Unchanged {
                change = Change::Updated;
            }
        }
        ctx.report
            .note(change, format!("{ADDR} {api}/{name} {deployment}"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = stage_name(ctx);
        // The API's id: from state, else the REST API found by name (it may be gone).
        let Some(api) = rest_api::find_id(ctx).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        // NotFound also when the API itself is gone.
        let Some(stage) = get_stage(ctx, &api, &name).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        if !owned(ctx, stage.tags()) {
            return Err(Error::not_owned(
                format!("API stage {api}/{name}"),
                &ctx.env,
            ));
        }
        match ctx
            .aws
            .apigateway
            .delete_stage()
            .rest_api_id(&api)
            .stage_name(&name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("DeleteStage", format!("{api}/{name}"))(e)),
        }
        ctx.forget(ADDR).await?;
        ctx.report
            .note(Change::Deleted, format!("{ADDR} {api}/{name}"));
        Ok(())
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
