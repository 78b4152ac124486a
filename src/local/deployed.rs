//! What is deployed, read back through the SDK: the state file says which resources
//! are the environment's, and AWS (or whatever `AWS_ENDPOINT_URL` points at) says how
//! they are configured now — routes and integrations from API Gateway, each function's
//! environment and timeout from Lambda, the usage plan's throttle, the API key's value,
//! the event source mappings and the retry queue's visibility timeout and redrive policy.
//! A hand edit made since `up` (a longer timeout, a changed variable) is served as is.

use crate::api::{api_key, rest_api, stage, usage_plan};
use crate::aws::Clients;
use crate::compute::event_source::unqualified;
use crate::compute::{AUDIT_LOGGER, PROCESSOR, event_source, function};
use crate::data::{dynamodb_table, sqs_queue};
use crate::error::{Error, Result, aws};
use crate::state::State;
use aws_sdk_lambda::types::{EventSourceMappingConfiguration, FunctionResponseType};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::BTreeMap;
use std::time::Duration;

/// A value that is never printed (the API key).
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One method of the REST API and the function its Lambda proxy integration names.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub method: String,
    /// The resource path (`/validate`).
    pub path: String,
    pub resource_id: String,
    pub function_arn: String,
    pub api_key_required: bool,
}

#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The function's key in payctl (`validator`, `processor`, `audit-logger`): also the
    /// name of its host binary.
    pub key: String,
    pub name: String,
    pub arn: String,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    pub memory_mb: i32,
}

/// The usage plan's throttle: a steady rate (requests per second) and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate: f64,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct StreamSource {
    pub stream_arn: String,
    pub function_arn: String,
    pub batch_size: usize,
    pub report_failures: bool,
    /// `TRIM_HORIZON` or `LATEST`.
    pub starting_position: String,
    /// Retries of a failing batch before it is recorded on `on_failure` (None: until
    /// the records expire).
    pub max_retries: Option<u32>,
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone)]
pub struct QueueSource {
    pub queue_arn: String,
    pub queue_url: String,
    pub function_arn: String,
    pub batch_size: usize,
    pub report_failures: bool,
    pub visibility_timeout: Duration,
    /// From the queue's redrive policy: SQS moves a message to the dead-letter queue
    /// after this many receives.
    pub max_receive_count: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Deployed {
    pub env: String,
    pub region: String,
    pub account_id: String,
    pub api_id: String,
    pub stage: String,
    pub routes: Vec<Route>,
    /// By function ARN.
    pub functions: BTreeMap<String, FunctionConfig>,
    pub api_key_id: String,
    pub api_key: Secret,
    pub throttle: Option<Throttle>,
    pub stream: Option<StreamSource>,
    pub queue: Option<QueueSource>,
}

fn missing(state: &State, what: &str, addr: &str) -> Error {
    Error::Invalid(format!(
        "the state file of environment {} has no {what} ({addr}); run `payctl up --env {}` first",
        state.env, state.env
    ))
}

/// The function a Lambda proxy integration URI names
/// (`arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations`),
/// without the qualifier (the alias `live`): the local run runs the local build.
pub fn function_of_uri(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once("/functions/")?;
    let arn = rest.strip_suffix("/invocations")?;
    arn.starts_with("arn:")
        .then(|| unqualified(arn).to_string())
}

pub async fn read(clients: &Clients, state: &State) -> Result<Deployed> {
    let api_id = state
        .resources
        .get(rest_api::ADDR)
        .map(|r| r.id.clone())
        .ok_or_else(|| missing(state, "REST API", rest_api::ADDR))?;
    let stage = state
        .resources
        .get(stage::ADDR)
        .map(|r| r.id.clone())
        .ok_or_else(|| missing(state, "API stage", stage::ADDR))?;
    let api_key_id = state
        .resources
        .get(api_key::ADDR)
        .map(|r| r.id.clone())
        .ok_or_else(|| missing(state, "API key", api_key::ADDR))?;
    let routes = routes(clients, &api_id).await?;
    let mut functions = BTreeMap::new();
    for (addr, rec) in state.resources.iter() {
        if rec.kind != function::KIND {
            continue;
        }
        let Some(arn) = &rec.arn else { continue };
        let key = addr.trim_start_matches(&format!("{}.", function::KIND));
        functions.insert(arn.clone(), function_config(clients, key, arn).await?);
    }
    for route in &routes {
        if !functions.contains_key(&route.function_arn) {
            return Err(Error::Invalid(format!(
                "{} {} is integrated with {}, which is not a function of environment {}; run `payctl up --env {}`",
                route.method, route.path, route.function_arn, state.env, state.env
            )));
        }
    }
    let api_key = Secret(crate::api::api_key_value(clients, state).await?);
    let throttle = match state.resources.get(usage_plan::ADDR) {
        Some(plan) => throttle(clients, &plan.id).await?,
        None => return Err(missing(state, "usage plan", usage_plan::ADDR)),
    };
    let (stream, queue) = event_sources(clients, state, &functions).await?;
    Ok(Deployed {
        env: state.env.clone(),
        region: state.region.clone(),
        account_id: state.account_id.clone(),
        api_id,
        stage,
        routes,
        functions,
        api_key_id,
        api_key,
        throttle,
        stream,
        queue,
    })
}

async fn routes(clients: &Clients, api_id: &str) -> Result<Vec<Route>> {
    let api = &clients.apigateway;
    let resources: Vec<aws_sdk_apigateway::types::Resource> = api
        .get_resources()
        .rest_api_id(api_id)
        .limit(500)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("GetResources", api_id))?;
    let mut routes = Vec::new();
    for resource in &resources {
        let (Some(path), Some(id)) = (resource.path(), resource.id()) else {
            continue;
        };
        let mut methods: Vec<&String> = resource
            .resource_methods()
            .into_iter()
            .flatten()
            .map(|(m, _)| m)
            .collect();
        methods.sort();
        for method in methods {
            let what = format!("{method} {path}");
            let out = api
                .get_method()
                .rest_api_id(api_id)
                .resource_id(id)
                .http_method(method)
                .send()
                .await
                .map_err(aws("GetMethod", &what))?;
            let uri = match out.method_integration().and_then(|i| i.uri()) {
                Some(uri) => uri.to_string(),
                None => {
                    let integration = api
                        .get_integration()
                        .rest_api_id(api_id)
                        .resource_id(id)
                        .http_method(method)
                        .send()
                        .await
                        .map_err(aws("GetIntegration", &what))?;
                    integration.uri().unwrap_or_default().to_string()
                }
            };
            let Some(function_arn) = function_of_uri(&uri) else {
                return Err(Error::Invalid(format!(
                    "{what} is not a Lambda proxy integration (uri {uri:?}); payctl local serves only those"
                )));
            };
            routes.push(Route {
                method: method.clone(),
                path: path.to_string(),
                resource_id: id.to_string(),
                function_arn,
                api_key_required: out.api_key_required().unwrap_or(false),
            });
        }
    }
    if routes.is_empty() {
        return Err(Error::Invalid(format!(
            "REST API {api_id} has no methods; run `payctl up` first"
        )));
    }
    Ok(routes)
}

async fn function_config(clients: &Clients, key: &str, arn: &str) -> Result<FunctionConfig> {
    let out = clients
        .lambda
        .get_function_configuration()
        .function_name(arn)
        .send()
        .await
        .map_err(aws("GetFunctionConfiguration", arn))?;
    let env = out
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(FunctionConfig {
        key: key.to_string(),
        name: out.function_name().unwrap_or(key).to_string(),
        arn: arn.to_string(),
        env,
        timeout: Duration::from_secs(out.timeout().unwrap_or(3).max(1) as u64),
        memory_mb: out.memory_size().unwrap_or(128),
    })
}

async fn throttle(clients: &Clients, plan_id: &str) -> Result<Option<Throttle>> {
    let out = clients
        .apigateway
        .get_usage_plan()
        .usage_plan_id(plan_id)
        .send()
        .await
        .map_err(aws("GetUsagePlan", plan_id))?;
    Ok(out.throttle().map(|t| Throttle {
        rate: t.rate_limit(),
        burst: t.burst_limit().max(0) as u32,
    }))
}

fn reports_failures(m: &EventSourceMappingConfiguration) -> bool {
    m.function_response_types()
        .contains(&FunctionResponseType::ReportBatchItemFailures)
}

/// The enabled mappings into this environment's functions: the table's stream and the
/// retry queue. A source without a deployed mapping (`event_source_mappings = false`)
/// is consumed with payctl's own mapping settings, the ones `up` would deploy.
async fn event_sources(
    clients: &Clients,
    state: &State,
    functions: &BTreeMap<String, FunctionConfig>,
) -> Result<(Option<StreamSource>, Option<QueueSource>)> {
    // Listed whole and matched by function ARN (see the emulator note there).
    let all: Vec<EventSourceMappingConfiguration> =
        crate::aws::emulator::mappings(&clients.lambda, None).await?;
    let (mut stream, mut queue) = (None, None);
    let (mut stream_seen, mut queue_seen) = (false, false);
    for m in all {
        let (Some(source), Some(function_arn)) = (m.event_source_arn(), m.function_arn()) else {
            continue;
        };
        // The alias (or, on moto, the version it resolved to): the local build runs.
        let function_arn = unqualified(function_arn);
        if !functions.contains_key(function_arn) {
            continue;
        }
        let is_stream = source.contains(":dynamodb:");
        stream_seen |= is_stream;
        queue_seen |= !is_stream;
        if matches!(m.state(), Some("Disabled" | "Disabling")) {
            tracing::info!("event source mapping {source} is disabled; not polled");
            continue;
        }
        let batch_size = m.batch_size().unwrap_or(10).max(1) as usize;
        let report_failures = reports_failures(&m);
        if is_stream {
            stream = Some(StreamSource {
                stream_arn: source.to_string(),
                function_arn: function_arn.to_string(),
                batch_size,
                report_failures,
                starting_position: m
                    .starting_position()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "TRIM_HORIZON".into()),
                max_retries: m
                    .maximum_retry_attempts()
                    .filter(|n| *n >= 0)
                    .map(|n| n as u32),
                on_failure: m
                    .destination_config()
                    .and_then(|d| d.on_failure())
                    .and_then(|f| f.destination())
                    .map(str::to_string),
            });
        } else if source.contains(":sqs:") {
            let q = (source, function_arn, batch_size, report_failures);
            queue = Some(queue_source(clients, state, q).await?);
        }
    }
    let arn_of = |addr: &str| state.resources.get(addr).and_then(|r| r.arn.clone());
    let function_arn = |key: &str| arn_of(&function::address(key));
    if !stream_seen {
        let stream_arn = state
            .resources
            .get(dynamodb_table::ADDR)
            .and_then(|r| r.get("stream_arn"))
            .map(str::to_string);
        if let (Some(stream_arn), Some(function_arn)) = (stream_arn, function_arn(AUDIT_LOGGER)) {
            tracing::info!(
                "no event source mapping on the table's stream: payctl's own settings apply"
            );
            stream = Some(StreamSource {
                stream_arn,
                function_arn,
                batch_size: event_source::STREAM_BATCH as usize,
                report_failures: true,
                starting_position: "TRIM_HORIZON".into(),
                max_retries: Some(event_source::STREAM_RETRIES as u32),
                on_failure: arn_of(&sqs_queue::address("dlq")),
            });
        }
    }
    if !queue_seen {
        let retry = (
            arn_of(&sqs_queue::address("retry")),
            function_arn(PROCESSOR),
        );
        if let (Some(queue_arn), Some(function_arn)) = retry {
            tracing::info!(
                "no event source mapping on the retry queue: payctl's own settings apply"
            );
            let q = (
                queue_arn.as_str(),
                function_arn.as_str(),
                event_source::RETRY_BATCH as usize,
                true,
            );
            queue = Some(queue_source(clients, state, q).await?);
        }
    }
    Ok((stream, queue))
}

/// The retry queue as a source: (queue ARN, function ARN, batch size, partial batch
/// failures), with the queue's own visibility timeout and redrive policy.
async fn queue_source(
    clients: &Clients,
    state: &State,
    (queue_arn, function_arn, batch_size, report_failures): (&str, &str, usize, bool),
) -> Result<QueueSource> {
    let known = state
        .resources
        .values()
        .find(|r| r.arn.as_deref() == Some(queue_arn))
        .map(|r| r.id.clone());
    let queue_url = match known {
        Some(url) => url,
        None => {
            let name = queue_arn.rsplit(':').next().unwrap_or_default();
            let out = clients
                .sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(aws("GetQueueUrl", name))?;
            crate::error::required(out.queue_url(), "queue URL")?
        }
    };
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(aws("GetQueueAttributes", &queue_url))?;
    let attrs = out.attributes();
    let attr = |k: QueueAttributeName| attrs.and_then(|a| a.get(&k)).cloned();
    let visibility = attr(QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30);
    let max_receive_count = attr(QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|p| match &p["maxReceiveCount"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .map(|n| n as u32);
    Ok(QueueSource {
        queue_arn: queue_arn.to_string(),
        queue_url,
        function_arn: function_arn.to_string(),
        batch_size: batch_size.min(10),
        report_failures,
        visibility_timeout: Duration::from_secs(visibility),
        max_receive_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_uris_name_their_function() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:payment-validator-dev";
        let uri = format!(
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"
        );
        assert_eq!(function_of_uri(&uri).as_deref(), Some(arn));
        let live = uri.replace("-dev/", "-dev:live/");
        assert_eq!(function_of_uri(&live).as_deref(), Some(arn));
        assert_eq!(function_of_uri("http://example.com/x"), None);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("k3y".into())), "<redacted>");
    }
}
