//! The REST API: its stage has execution logging on at ERROR or INFO for every method
//! (APIGateway.1) and data trace off (no Security Hub id: request and response bodies
//! would land in the logs); every method requires an API key (no id).
//!
//! The method check reads the API's methods as they are now (`GetResources` with
//! `embed=methods`); a change there reaches the stage only with the next deployment, so
//! a FAIL here may not be served yet, and it will be by the next deployment. `OPTIONS`
//! methods (CORS preflights, which cannot carry a key) are not checked; the stack has
//! none.

use super::{Check, Control, Read, Target, fail_all, read};
use crate::api::{rest_api, stage};
use crate::engine::Service;
use aws_sdk_apigateway::types::Resource;

pub const EXECUTION_LOGGING: Control =
    Control::new("API stage has execution logging on", Some("APIGateway.1"));
pub const NO_DATA_TRACE: Control = Control::new("API stage has data trace off", None);
pub const API_KEY_REQUIRED: Control = Control::new("API method requires an API key", None);

pub async fn checks(t: &Target) -> Vec<Check> {
    let (mut stage, methods) = tokio::join!(stage_checks(t), method_checks(t));
    stage.extend(methods);
    stage
}

async fn stage_checks(t: &Target) -> Vec<Check> {
    let both = [EXECUTION_LOGGING, NO_DATA_TRACE];
    let Some(rec) = t.record(stage::ADDR) else {
        return fail_all(&both, stage::ADDR, "not in the state file");
    };
    let Some(api) = rec.get("api_id") else {
        return fail_all(&both, stage::ADDR, "the state record has no api_id");
    };
    let resource = format!("{api}/{}", rec.id);
    let out = t
        .aws
        .apigateway
        .get_stage()
        .rest_api_id(api)
        .stage_name(&rec.id)
        .send()
        .await;
    let out = match read(out, Service::ApiGateway, "GetStage", &resource) {
        Read::Got(out) => out,
        Read::Gone => return fail_all(&both, &resource, "not found"),
        Read::Unreadable(why) => return fail_all(&both, &resource, &why),
    };
    let settings = out.method_settings().cloned().unwrap_or_default();
    let mut keys: Vec<&String> = settings.keys().collect();
    keys.sort();
    let level = |k: &str| {
        settings
            .get(k)
            .and_then(|s| s.logging_level())
            .unwrap_or("OFF")
            .to_string()
    };
    // Every method inherits `*/*`; a method-level entry may turn logging off again.
    let unlogged: Vec<String> = keys
        .iter()
        .filter(|k| !matches!(level(k).as_str(), "ERROR" | "INFO"))
        .map(|k| format!("{k} {}", level(k)))
        .collect();
    let base = level(stage::ALL_METHODS);
    let logging = if !settings.contains_key(stage::ALL_METHODS) {
        EXECUTION_LOGGING.fail(
            &resource,
            "no stage-wide (*/*) method settings: logging OFF",
        )
    } else {
        EXECUTION_LOGGING.judge(
            &resource,
            unlogged.is_empty(),
            format!("logging level {base} for every method"),
            format!("logging off for {}", unlogged.join(", ")),
        )
    };
    let traced: Vec<&str> = keys
        .iter()
        .filter(|k| {
            settings
                .get(k.as_str())
                .is_some_and(|s| s.data_trace_enabled())
        })
        .map(|k| k.as_str())
        .collect();
    let trace = NO_DATA_TRACE.judge(
        &resource,
        traced.is_empty(),
        "data trace off",
        format!("data trace on for {}", traced.join(", ")),
    );
    vec![logging, trace]
}

async fn method_checks(t: &Target) -> Vec<Check> {
    let Some(rec) = t.record(rest_api::ADDR) else {
        return vec![API_KEY_REQUIRED.fail(rest_api::ADDR, "not in the state file")];
    };
    let api = rec.id.as_str();
    let all: Result<Vec<Resource>, _> = t
        .aws
        .apigateway
        .get_resources()
        .rest_api_id(api)
        .embed("methods")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await;
    let all: Vec<aws_sdk_apigateway::types::Resource> =
        match read(all, Service::ApiGateway, "GetResources", api) {
            Read::Got(all) => all,
            Read::Gone => return vec![API_KEY_REQUIRED.fail(api, "not found")],
            Read::Unreadable(why) => return vec![API_KEY_REQUIRED.fail(api, why)],
        };
    let mut methods: Vec<(String, Option<bool>)> = all
        .iter()
        .flat_map(|r| {
            let path = r.path().unwrap_or("?");
            r.resource_methods()
                .into_iter()
                .flatten()
                .filter(|(verb, _)| verb.as_str() != "OPTIONS")
                .map(move |(verb, m)| (format!("{api} {verb} {path}"), m.api_key_required()))
        })
        .collect();
    methods.sort();
    if methods.is_empty() {
        return vec![API_KEY_REQUIRED.fail(api, "the API has no methods")];
    }
    methods
        .into_iter()
        .map(|(method, required)| {
            API_KEY_REQUIRED.judge(
                method,
                required == Some(true),
                "apiKeyRequired true",
                "apiKeyRequired false: callable without a key",
            )
        })
        .collect()
}
