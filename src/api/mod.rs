//! The API layer: the regional REST API `payment-api-<env>` in front of the functions.
//!
//! Kinds, in creation order (`down` runs the edges reversed):
//! - [`account`] (`apigw_account`): the region's API Gateway account setting
//!   `cloudwatchRoleArn`, which execution and access logging need (see its docs for why
//!   payctl sets it only when it is unset, and never unsets it);
//! - [`rest_api`] (`apigw_rest_api`): the API, its resources, JSON-schema models, request
//!   validator, methods (all `apiKeyRequired`) and Lambda proxy integrations;
//! - [`permission`] (`lambda_permission`): one `lambda:InvokeFunction` statement per
//!   method, scoped to that method's exact `execute-api` ARN;
//! - [`stage`] (`apigw_stage`): a deployment (only when the API's definition changed) and
//!   the stage named after the environment, with logging, metrics, throttling, access
//!   logs and X-Ray tracing;
//! - [`api_key`] (`apigw_api_key`) and [`usage_plan`] (`apigw_usage_plan`): the client key
//!   and the plan tying it to the stage with a throttle and a daily quota.
//!
//! The API key's value is never written to the state file, a log line or an error: only
//! `payctl outputs --show-api-key` reads it, from API Gateway ([`api_key_value`]).

pub mod account;
pub mod api_key;
pub mod definition;
pub mod permission;
pub mod rest_api;
pub mod stage;
pub mod usage_plan;

use crate::aws::Clients;
use crate::engine::{Ctx, Layer};
use crate::error::{Error, Result, aws};
use crate::state::State;
use std::collections::HashMap;
use std::sync::Arc;

pub fn layer() -> Layer {
    Layer {
        name: "api",
        resources: vec![
            Arc::new(account::AccountLogging),
            Arc::new(rest_api::RestApi),
            Arc::new(permission::Permissions),
            Arc::new(stage::Stage),
            Arc::new(api_key::ApiKey),
            Arc::new(usage_plan::UsagePlan),
        ],
    }
}

/// The API key's value, read from API Gateway (never stored).
pub async fn api_key_value(clients: &Clients, state: &State) -> Result<String> {
    let Some(rec) = state.resources.get(api_key::ADDR) else {
        return Err(Error::Invalid(format!(
            "the state file of environment {} has no API key ({}); run `payctl up --env {}` first",
            state.env,
            api_key::ADDR,
            state.env
        )));
    };
    let out = match clients
        .apigateway
        .get_api_key()
        .api_key(&rec.id)
        .include_value(true)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            return Err(Error::Invalid(format!(
                "API key {} named in the state file of environment {} no longer exists; run `payctl up --env {}` to create it again",
                rec.id, state.env, state.env
            )));
        }
        Err(e) => return Err(aws("GetApiKey", &rec.id)(e)),
    };
    out.value()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "GetApiKey returned no value for API key {}",
                rec.id
            ))
        })
}

/// The stage's name: the environment's.
pub fn stage_name(ctx: &Ctx) -> String {
    ctx.env.clone()
}

/// The ARN partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The standard tags as API Gateway takes them.
pub fn tag_map(ctx: &Ctx) -> HashMap<String, String> {
    ctx.tags().into_iter().collect()
}

/// Whether tags returned by API Gateway say payctl owns the resource for `ctx.env`.
pub fn owned(ctx: &Ctx, tags: Option<&HashMap<String, String>>) -> bool {
    ctx.owns(
        tags.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// The API's id from the state file (the REST API kind ran before every dependent kind).
pub fn api_id(ctx: &Ctx) -> Result<String> {
    ctx.state.id(rest_api::ADDR).ok_or_else(|| {
        Error::Invalid(format!(
            "the REST API is not in the state file ({}); run `payctl up` again",
            rest_api::ADDR
        ))
    })
}

/// A patch operation (API Gateway's only way to change most settings).
pub fn patch(
    op: aws_sdk_apigateway::types::Op,
    path: &str,
    value: Option<String>,
) -> aws_sdk_apigateway::types::PatchOperation {
    aws_sdk_apigateway::types::PatchOperation::builder()
        .op(op)
        .path(path)
        .set_value(value)
        .build()
}

/// `replace <path> <value>`.
pub fn replace(path: &str, value: impl Into<String>) -> aws_sdk_apigateway::types::PatchOperation {
    patch(
        aws_sdk_apigateway::types::Op::Replace,
        path,
        Some(value.into()),
    )
}

/// A rate (requests per second) as API Gateway's patch values take it: `50`, `12.5`.
pub fn rate_text(rate: f64) -> String {
    format!("{rate}")
}

/// Rates compared with a tolerance (API Gateway stores doubles).
pub fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_rates() {
        assert_eq!(partition("us-east-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(rate_text(50.0), "50");
        assert_eq!(rate_text(12.5), "12.5");
        assert!(same_rate(50.0, 50.0000000001));
        assert!(!same_rate(50.0, 51.0));
    }

    #[test]
    fn a_replace_patch_carries_path_and_value() {
        let p = replace("/tracingEnabled", "true");
        assert_eq!(p.op(), Some(&aws_sdk_apigateway::types::Op::Replace));
        assert_eq!(p.path(), Some("/tracingEnabled"));
        assert_eq!(p.value(), Some("true"));
    }
}
