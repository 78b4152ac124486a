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
//!   and the plan tying it to the stage with a throttle and a daily quota;
//! - [`web_acl`] (`wafv2_web_acl`): the WAF web ACL on the stage (managed rule groups and
//!   a per-IP rate rule), in production and wherever `waf = true`.
//!
//! The API key's value is never written to the state file, a log line or an error: only
//! `payctl outputs --show-api-key` reads it, from API Gateway ([`api_key_value`]).
//!
//! Not kinds: [`support`] holds the API's definition and the API Gateway helpers the
//! kinds share (patches, the lookup by name, tags).

pub mod account;
pub mod api_key;
pub mod permission;
pub mod rest_api;
pub mod stage;
pub mod support;
pub mod usage_plan;
pub mod web_acl;

use crate::aws::Clients;
use crate::engine::{Ctx, Layer, Service};
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
            Arc::new(web_acl::WebAclOfStage),
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
    let call = clients.apigateway.get_api_key().api_key(&rec.id);
    let out = call.include_value(true).send().await;
    let Some(out) = Service::ApiGateway.found(out.map_err(aws("GetApiKey", &rec.id)))? else {
        return Err(Error::Invalid(format!(
            "API key {} named in the state file of environment {} no longer exists; run `payctl up --env {}` to create it again",
            rec.id, state.env, state.env
        )));
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

/// The API's id from the state file (the REST API kind ran before every dependent kind).
pub fn api_id(ctx: &Ctx) -> Result<String> {
    ctx.needed_id(rest_api::ADDR)
}

#[cfg(test)]
mod tests {
    use super::support::{rate_text, replace, same_rate};
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
