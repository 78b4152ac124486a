//! The REST API `payment-api-<env>` (REGIONAL) converged to its definition
//! ([`super::definition`]): the resources `/validate`, `/process` and `/status`, two
//! JSON-schema models for the POST bodies, a request validator (body and parameters), the
//! methods (`apiKeyRequired`, no authorizer) and their Lambda proxy integrations.
//!
//! The models mirror the functions' own rules (ids of 1–64 characters from
//! `[A-Za-z0-9_-]`, a 3-letter currency, an amount that is a JSON number or a decimal
//! string, no other fields), so malformed requests are refused by the gateway before a
//! function is invoked; the functions still validate everything themselves (currency
//! case, exponents, exact amounts), and their answers stay the authoritative ones.
//!
//! Bodies: the API has no `binaryMediaTypes`, so binary payloads are never passed
//! through as such, and the models require a JSON object. REST APIs have no body-size
//! setting below their fixed 10 MB limit, so the functions' own 16 KiB limit is what
//! refuses large bodies (with a 400 that echoes nothing).
//!
//! When `up` repairs drift on an existing API (someone edited it by hand), the record is
//! marked `redeploy`, so the stage is redeployed from the repaired definition even though
//! the desired hash did not change.

use super::definition::*;
use super::{owned, replace, tag_map};
use crate::compute;
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_apigateway::types::{
    ApiKeySourceType, EndpointConfiguration, EndpointType, IntegrationType, Method, Op,
    PatchOperation,
};
use serde_json::Value;
use std::collections::HashMap;

pub const KIND: &str = "apigw_rest_api";
pub const ADDR: &str = "apigw_rest_api.main";
/// Record attribute: the definition was repaired and must be deployed again.
pub const REDEPLOY: &str = "redeploy";
/// Record attribute: the hash of the definition `up` converged the API to.
pub const DEFINITION: &str = "definition";

pub struct RestApi;

/// What payctl needs to know about an existing API.
struct Found {
    id: String,
    root: Option<String>,
    tags: Option<HashMap<String, String>>,
    types: Vec<EndpointType>,
    binary: Vec<String>,
    key_source: Option<ApiKeySourceType>,
}

impl From<&aws_sdk_apigateway::types::RestApi> for Found {
    fn from(a: &aws_sdk_apigateway::types::RestApi) -> Self {
        Found {
            id: a.id().unwrap_or_default().to_string(),
            root: a.root_resource_id().map(str::to_string),
            tags: a.tags().cloned(),
            types: a
                .endpoint_configuration()
                .map(|c| c.types().to_vec())
                .unwrap_or_default(),
            binary: a.binary_media_types().to_vec(),
            key_source: a.api_key_source().cloned(),
        }
    }
}

/// Finds the API by the id in state, then by name; refuses what payctl does not own.
async fn find(ctx: &Ctx, name: &str) -> Result<Option<Found>> {
    let apigw = &ctx.aws.apigateway;
    if let Some(id) = ctx.state.id(ADDR) {
        match apigw.get_rest_api().rest_api_id(&id).send().await {
            Ok(out) => {
                let found = Found {
                    id: out.id().unwrap_or(&id).to_string(),
                    root: out.root_resource_id().map(str::to_string),
                    tags: out.tags().cloned(),
                    types: out
                        .endpoint_configuration()
                        .map(|c| c.types().to_vec())
                        .unwrap_or_default(),
                    binary: out.binary_media_types().to_vec(),
                    key_source: out.api_key_source().cloned(),
                };
                if !owned(ctx, found.tags.as_ref()) {
                    return Err(Error::not_owned(
                        format!("REST API {id} ({name})"),
                        &ctx.env,
                    ));
                }
                return Ok(Some(found));
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("GetRestApi", &id)(e)),
        }
    }
    let all: Vec<aws_sdk_apigateway::types::RestApi> = apigw
        .get_rest_apis()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("GetRestApis", name))?;
    let named: Vec<Found> = all
        .iter()
        .filter(|a| a.name() == Some(name))
        .map(Found::from)
        .collect();
    let (mine, others): (Vec<Found>, Vec<Found>) =
        named.into_iter().partition(|f| owned(ctx, f.tags.as_ref()));
    match (mine.len(), others.first()) {
        (1, _) => Ok(mine.into_iter().next()),
        (0, Some(other)) => Err(Error::not_owned(
            format!("REST API {} ({name})", other.id),
            &ctx.env,
        )),
        (0, None) => Ok(None),
        (n, _) => Err(Error::Invalid(format!(
            "{n} REST APIs named {name} carry payctl's tags for environment {}: delete the extra ones, then run `payctl up` again",
            ctx.env
        ))),
    }
}

/// The API's id, found by the id in state, then by name (`None` when there is none).
pub async fn find_id(ctx: &Ctx) -> Result<Option<String>> {
    Ok(find(ctx, &ctx.name("api")).await?.map(|f| f.id))
}

async fn create(ctx: &Ctx, name: &str) -> Result<Found> {
    let out = ctx
        .aws
        .apigateway
        .create_rest_api()
        .name(name)
        .description(format!(
            "Payment processing API ({}), managed by payctl",
            ctx.env
        ))
        .endpoint_configuration(
            EndpointConfiguration::builder()
                .types(EndpointType::Regional)
                .build(),
        )
        .api_key_source(ApiKeySourceType::Header)
        // No binaryMediaTypes: every body is text to the gateway and must match a JSON
        // model; see the module docs on body sizes.
        .set_tags(Some(tag_map(ctx)))
        .send()
        .await
        .map_err(aws("CreateRestApi", name))?;
    Ok(Found {
        id: required(out.id(), "REST API id")?,
        root: out.root_resource_id().map(str::to_string),
        tags: out.tags().cloned(),
        types: out
            .endpoint_configuration()
            .map(|c| c.types().to_vec())
            .unwrap_or_default(),
        binary: out.binary_media_types().to_vec(),
        key_source: out.api_key_source().cloned(),
    })
}

/// JSON-pointer escaping for patch paths (`image/png` → `image~1png`).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Patches that put the API-level settings back (endpoint type, binary media types, key
/// source).
fn api_patches(found: &Found) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    if let Some(t) = found.types.iter().find(|t| **t != EndpointType::Regional) {
        ops.push(replace(
            &format!("/endpointConfiguration/types/{}", t.as_str()),
            EndpointType::Regional.as_str(),
        ));
    }
    for b in &found.binary {
        ops.push(super::patch(
            Op::Remove,
            &format!("/binaryMediaTypes/{}", escape(b)),
            None,
        ));
    }
    if found.key_source.as_ref() != Some(&ApiKeySourceType::Header) {
        ops.push(replace("/apiKeySource", ApiKeySourceType::Header.as_str()));
    }
    ops
}

/// Whether an existing method is exactly the desired one (its integration aside).
pub fn method_matches(m: &Method, route: &Route, validator_id: &str) -> bool {
    let want_models: HashMap<String, String> = route
        .model
        .map(|name| HashMap::from([(JSON.to_string(), name.to_string())]))
        .unwrap_or_default();
    let have_models = m.request_models().cloned().unwrap_or_default();
    m.api_key_required() == Some(true)
        && m.authorization_type().unwrap_or("NONE") == "NONE"
        && m.authorizer_id().is_none()
        && m.request_validator_id() == Some(validator_id)
        && have_models == want_models
        && m.request_parameters().is_none_or(|p| p.is_empty())
}

/// Whether a method's integration is the desired Lambda proxy integration.
pub fn integration_matches(i: Option<&aws_sdk_apigateway::types::Integration>, uri: &str) -> bool {
    i.is_some_and(|i| {
        i.r#type() == Some(&IntegrationType::AwsProxy)
            && i.http_method() == Some("POST")
            && i.uri() == Some(uri)
    })
}

/// Creates missing resources, deletes ones the definition does not have; returns the
/// path → id map and what changed.
async fn converge_resources(
    ctx: &Ctx,
    api: &Found,
    changed: &mut Vec<String>,
) -> Result<HashMap<String, String>> {
    let apigw = &ctx.aws.apigateway;
    let all: Vec<aws_sdk_apigateway::types::Resource> = apigw
        .get_resources()
        .rest_api_id(&api.id)
        .embed("methods")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("GetResources", &api.id))?;
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut root = api.root.clone();
    for r in &all {
        if let (Some(path), Some(id)) = (r.path(), r.id()) {
            if path == "/" {
                root = Some(id.to_string());
            }
            ids.insert(path.to_string(), id.to_string());
        }
    }
    let root =
        root.ok_or_else(|| Error::Invalid(format!("REST API {} has no root resource", api.id)))?;
    let wanted: Vec<String> = ROUTES.iter().map(|r| format!("/{}", r.path)).collect();
    // What the definition does not have goes: resources (children first) and methods.
    let mut extra: Vec<&aws_sdk_apigateway::types::Resource> = all
        .iter()
        .filter(|r| {
            r.path()
                .is_some_and(|p| p != "/" && !wanted.iter().any(|w| w == p))
        })
        .collect();
    extra.sort_by_key(|r| std::cmp::Reverse(r.path().map(|p| p.matches('/').count())));
    for r in extra {
        let (path, id) = (r.path().unwrap_or_default(), r.id().unwrap_or_default());
        if !ctx.apply(ADDR, &format!("resource {path}"), "present", "removed") {
            continue;
        }
        match apigw
            .delete_resource()
            .rest_api_id(&api.id)
            .resource_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("DeleteResource", format!("{} {path}", api.id))(e)),
        }
        ids.remove(path);
        changed.push(format!("removed resource {path}"));
    }
    for r in &all {
        let Some(path) = r.path() else { continue };
        if path != "/" && !wanted.iter().any(|w| w == path) {
            continue;
        }
        for method in r
            .resource_methods()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let wanted_here = ROUTES
                .iter()
                .any(|x| format!("/{}", x.path) == path && x.method == method);
            if wanted_here
                || !ctx.apply(
                    ADDR,
                    &format!("method {method} {path}"),
                    "present",
                    "removed",
                )
            {
                continue;
            }
            match apigw
                .delete_method()
                .rest_api_id(&api.id)
                .resource_id(r.id().unwrap_or_default())
                .http_method(&method)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_not_found_exception()) => {}
                Err(e) => {
                    return Err(aws("DeleteMethod", format!("{} {method} {path}", api.id))(
                        e,
                    ));
                }
            }
            changed.push(format!("removed method {method} {path}"));
        }
    }
    for path in &wanted {
        if ids.contains_key(path)
            || !ctx.apply(ADDR, &format!("resource {path}"), "missing", "created")
        {
            continue;
        }
        let part = path.trim_start_matches('/');
        let out = apigw
            .create_resource()
            .rest_api_id(&api.id)
            .parent_id(&root)
            .path_part(part)
            .send()
            .await
            .map_err(aws("CreateResource", format!("{} {path}", api.id)))?;
        ids.insert(path.clone(), required(out.id(), "resource id")?);
        changed.push(format!("resource {path}"));
    }
    Ok(ids)
}

async fn converge_models(ctx: &Ctx, api_id: &str, changed: &mut Vec<String>) -> Result<()> {
    let apigw = &ctx.aws.apigateway;
    let have: Vec<aws_sdk_apigateway::types::Model> = apigw
        .get_models()
        .rest_api_id(api_id)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("GetModels", api_id))?;
    for name in model_names() {
        let want = model_schema(name).unwrap_or(Value::Null);
        match have.iter().find(|m| m.name() == Some(name)) {
            None if !ctx.apply(ADDR, &format!("model {name}"), "missing", "created") => {}
            None => {
                apigw
                    .create_model()
                    .rest_api_id(api_id)
                    .name(name)
                    .content_type(JSON)
                    .description(format!("Request body of the payment API ({name})"))
                    .schema(want.to_string())
                    .send()
                    .await
                    .map_err(aws("CreateModel", format!("{api_id} {name}")))?;
                changed.push(format!("model {name}"));
            }
            Some(m) => {
                let schema: Option<Value> = m.schema().and_then(|s| serde_json::from_str(s).ok());
                let mut ops = Vec::new();
                if schema.as_ref() != Some(&want) {
                    ops.push(replace("/schema", want.to_string()));
                }
                if m.content_type() != Some(JSON) {
                    // The content type is fixed at creation: such a model is replaced.
                    return Err(Error::Invalid(format!(
                        "model {name} of REST API {api_id} has content type {:?}, not {JSON}; delete it (or the API) and run `payctl up` again",
                        m.content_type().unwrap_or_default()
                    )));
                }
                if !ops.is_empty()
                    && ctx.apply(
                        ADDR,
                        &format!("model {name} schema"),
                        "differs",
                        "as defined",
                    )
                {
                    apigw
                        .update_model()
                        .rest_api_id(api_id)
                        .model_name(name)
                        .set_patch_operations(Some(ops))
                        .send()
                        .await
                        .map_err(aws("UpdateModel", format!("{api_id} {name}")))?;
                    changed.push(format!("model {name} schema"));
                }
            }
        }
    }
    Ok(())
}

/// The request validator (body and parameters); returns its id.
async fn converge_validator(ctx: &Ctx, api_id: &str, changed: &mut Vec<String>) -> Result<String> {
    let apigw = &ctx.aws.apigateway;
    let out = apigw
        .get_request_validators()
        .rest_api_id(api_id)
        .limit(500)
        .send()
        .await
        .map_err(aws("GetRequestValidators", api_id))?;
    if let Some(v) = out
        .items()
        .iter()
        .find(|v| v.name() == Some(VALIDATOR_NAME))
    {
        let id = required(v.id(), "request validator id")?;
        let mut ops = Vec::new();
        if !v.validate_request_body() {
            ops.push(replace("/validateRequestBody", "true"));
        }
        if !v.validate_request_parameters() {
            ops.push(replace("/validateRequestParameters", "true"));
        }
        if !ops.is_empty()
            && ctx.apply(
                ADDR,
                "request validator",
                "not validating everything",
                "body and parameters",
            )
        {
            apigw
                .update_request_validator()
                .rest_api_id(api_id)
                .request_validator_id(&id)
                .set_patch_operations(Some(ops))
                .send()
                .await
                .map_err(aws(
                    "UpdateRequestValidator",
                    format!("{api_id} {VALIDATOR_NAME}"),
                ))?;
            changed.push("request validator".into());
        }
        return Ok(id);
    }
    if !ctx.apply(ADDR, "request validator", "missing", "created") {
        return Ok(String::new());
    }
    let out = apigw
        .create_request_validator()
        .rest_api_id(api_id)
        .name(VALIDATOR_NAME)
        .validate_request_body(true)
        .validate_request_parameters(true)
        .send()
        .await
        .map_err(aws(
            "CreateRequestValidator",
            format!("{api_id} {VALIDATOR_NAME}"),
        ))?;
    changed.push("request validator".into());
    required(out.id(), "request validator id")
}

/// One method and its integration, re-created when it differs from the definition (the
/// draft changes; the live stage keeps serving its deployment until the next one).
async fn converge_method(
    ctx: &Ctx,
    api_id: &str,
    resource_id: &str,
    route: &Route,
    validator_id: &str,
    uri: &str,
    changed: &mut Vec<String>,
) -> Result<()> {
    let apigw = &ctx.aws.apigateway;
    let what = format!("{api_id} {} /{}", route.method, route.path);
    let have = match apigw
        .get_method()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(route.method)
        .send()
        .await
    {
        Ok(out) => Some(
            Method::builder()
                .set_api_key_required(out.api_key_required())
                .set_authorization_type(out.authorization_type().map(str::to_string))
                .set_authorizer_id(out.authorizer_id().map(str::to_string))
                .set_request_validator_id(out.request_validator_id().map(str::to_string))
                .set_request_models(out.request_models().cloned())
                .set_request_parameters(out.request_parameters().cloned())
                .set_method_integration(out.method_integration().cloned())
                .build(),
        ),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            None
        }
        Err(e) => return Err(aws("GetMethod", &what)(e)),
    };
    let mut integration = have.as_ref().and_then(|m| m.method_integration().cloned());
    let method_ok = have
        .as_ref()
        .is_some_and(|m| method_matches(m, route, validator_id));
    if !method_ok
        && ctx.apply(
            ADDR,
            &format!("method {} /{}", route.method, route.path),
            if have.is_some() { "differs" } else { "missing" },
            "API key required, request validated",
        )
    {
        if have.is_some() {
            apigw
                .delete_method()
                .rest_api_id(api_id)
                .resource_id(resource_id)
                .http_method(route.method)
                .send()
                .await
                .map_err(aws("DeleteMethod", &what))?;
            integration = None;
        }
        let mut put = apigw
            .put_method()
            .rest_api_id(api_id)
            .resource_id(resource_id)
            .http_method(route.method)
            .authorization_type("NONE")
            .api_key_required(true)
            .request_validator_id(validator_id);
        if let Some(model) = route.model {
            put = put.request_models(JSON, model);
        }
        put.send().await.map_err(aws("PutMethod", &what))?;
        changed.push(format!("method {} /{}", route.method, route.path));
    }
    if !integration_matches(integration.as_ref(), uri)
        && ctx.apply(
            ADDR,
            &format!("integration {} /{}", route.method, route.path),
            integration.as_ref().and_then(|i| i.uri()).unwrap_or("none"),
            uri,
        )
    {
        apigw
            .put_integration()
            .rest_api_id(api_id)
            .resource_id(resource_id)
            .http_method(route.method)
            .r#type(IntegrationType::AwsProxy)
            // Lambda is always invoked with POST, whatever the client's method.
            .integration_http_method("POST")
            .uri(uri)
            .send()
            .await
            .map_err(aws("PutIntegration", &what))?;
        changed.push(format!("integration {} /{}", route.method, route.path));
    }
    Ok(())
}

/// Whether the stage must be redeployed although the definition's hash is unchanged.
pub fn redeploy_pending(ctx: &Ctx) -> bool {
    ctx.state
        .get(ADDR)
        .is_some_and(|r| r.get(REDEPLOY) == Some("true"))
}

/// Clears the redeploy mark once the stage serves a fresh deployment.
pub async fn clear_redeploy(ctx: &Ctx) -> Result<()> {
    if let Some(mut rec) = ctx.state.get(ADDR)
        && rec.attrs.remove(REDEPLOY).is_some()
    {
        ctx.record(ADDR, rec).await?;
    }
    Ok(())
}

#[async_trait]
impl Resource for RestApi {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[compute::function::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("api");
        let def = definition(ctx)?;
        let hash = definition_hash(&def);
        let known = ctx.state.get(ADDR);
        let (api, mut change) = match find(ctx, &name).await? {
            Some(api) => {
                let c = if known.as_ref().is_some_and(|r| r.id == api.id) {
                    Change::Unchanged
                } else {
                    Change::Adopted
                };
                (api, c)
            }
            None if !ctx.would_create(format!("{ADDR} ({name})")) => return Ok(()),
            None => (create(ctx, &name).await?, Change::Created),
        };
        // Recorded at once, so a crash below leaves nothing payctl does not know about.
        let pending = redeploy_pending(ctx) && known.as_ref().is_some_and(|r| r.id == api.id);
        let base = Record::new(KIND, &api.id).attr("name", &name);
        ctx.record(
            ADDR,
            if pending {
                base.clone().attr(REDEPLOY, "true")
            } else {
                base.clone()
            },
        )
        .await?;

        let mut changed: Vec<String> = Vec::new();
        let ops = api_patches(&api);
        if !ops.is_empty()
            && ctx.apply(
                ADDR,
                "endpoint type, binary media types or API key source",
                "differs",
                "as defined",
            )
        {
            ctx.aws
                .apigateway
                .update_rest_api()
                .rest_api_id(&api.id)
                .set_patch_operations(Some(ops))
                .send()
                .await
                .map_err(aws("UpdateRestApi", &name))?;
            changed.push("endpoint type, binary media types or API key source".into());
        }
        let ids = converge_resources(ctx, &api, &mut changed).await?;
        converge_models(ctx, &api.id, &mut changed).await?;
        let validator_id = converge_validator(ctx, &api.id, &mut changed).await?;
        for route in ROUTES {
            let path = format!("/{}", route.path);
            if ctx.planning() && !ids.contains_key(&path) {
                continue; // noted above: the resource would be created first
            }
            let resource_id = ids.get(&path).ok_or_else(|| {
                Error::Invalid(format!("REST API {} has no resource {path}", api.id))
            })?;
            let uri = integration_uri(&ctx.region, &compute::function_arn(ctx, route.function)?);
            converge_method(
                ctx,
                &api.id,
                resource_id,
                &route,
                &validator_id,
                &uri,
                &mut changed,
            )
            .await?;
        }

        let repaired = change != Change::Created && !changed.is_empty();
        let mut rec = base
            .attr("validator_id", &validator_id)
            .attr(DEFINITION, &hash);
        if pending || repaired {
            rec = rec.attr(REDEPLOY, "true");
        }
        ctx.record(ADDR, rec).await?;
        if repaired {
            tracing::info!("REST API {name}: put back {}", changed.join(", "));
            if change == Change::Unchanged {
                change = Change::Updated;
            }
        }
        ctx.report
            .note(change, format!("{ADDR} {} ({name})", api.id));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("api");
        let Some(api) = find(ctx, &name).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        match ctx
            .aws
            .apigateway
            .delete_rest_api()
            .rest_api_id(&api.id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("DeleteRestApi", &name)(e)),
        }
        ctx.forget(ADDR).await?;
        ctx.report
            .note(Change::Deleted, format!("{ADDR} {} ({name})", api.id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "arn:aws:lambda:us-east-1:123456789012:function:payment-validator-dev";
    const P: &str = "arn:aws:lambda:us-east-1:123456789012:function:payment-processor-dev";

    #[test]
    fn method_and_integration_matching() {
        let route = ROUTES[0];
        let good = Method::builder()
            .api_key_required(true)
            .authorization_type("NONE")
            .request_validator_id("v1")
            .request_models(JSON, PAYMENT_MODEL)
            .build();
        assert!(method_matches(&good, &route, "v1"));
        assert!(!method_matches(&good, &route, "v2"));
        let no_key = good.clone().to_builder_with(|b| b.api_key_required(false));
        assert!(!method_matches(&no_key, &route, "v1"));
        let iam = good
            .clone()
            .to_builder_with(|b| b.authorization_type("AWS_IAM"));
        assert!(!method_matches(&iam, &route, "v1"));
        let no_model = Method::builder()
            .api_key_required(true)
            .authorization_type("NONE")
            .request_validator_id("v1")
            .build();
        assert!(!method_matches(&no_model, &route, "v1"));
        assert!(method_matches(&no_model, &ROUTES[2], "v1"));

        let uri = integration_uri("us-east-1", V);
        let proxy = aws_sdk_apigateway::types::Integration::builder()
            .r#type(IntegrationType::AwsProxy)
            .http_method("POST")
            .uri(&uri)
            .build();
        assert!(integration_matches(Some(&proxy), &uri));
        assert!(!integration_matches(
            Some(&proxy),
            &integration_uri("us-east-1", P)
        ));
        assert!(!integration_matches(None, &uri));
        let aws = aws_sdk_apigateway::types::Integration::builder()
            .r#type(IntegrationType::Aws)
            .http_method("POST")
            .uri(&uri)
            .build();
        assert!(!integration_matches(Some(&aws), &uri));
    }

    #[test]
    fn api_level_drift_becomes_patches() {
        let good = Found {
            id: "a".into(),
            root: None,
            tags: None,
            types: vec![EndpointType::Regional],
            binary: vec![],
            key_source: Some(ApiKeySourceType::Header),
        };
        assert!(api_patches(&good).is_empty());
        let bad = Found {
            types: vec![EndpointType::Edge],
            binary: vec!["image/png".into()],
            key_source: Some(ApiKeySourceType::Authorizer),
            ..good
        };
        let ops: Vec<(String, Option<String>)> = api_patches(&bad)
            .iter()
            .map(|o| (o.path().unwrap().to_string(), o.value().map(str::to_string)))
            .collect();
        assert_eq!(
            ops,
            [
                (
                    "/endpointConfiguration/types/EDGE".into(),
                    Some("REGIONAL".into())
                ),
                ("/binaryMediaTypes/image~1png".into(), None),
                ("/apiKeySource".into(), Some("HEADER".into())),
            ]
        );
    }

    /// Test helper: tweak a built `Method`.
    trait Tweak {
        fn to_builder_with(
            self,
            f: impl FnOnce(
                aws_sdk_apigateway::types::builders::MethodBuilder,
            ) -> aws_sdk_apigateway::types::builders::MethodBuilder,
        ) -> Method;
    }

    impl Tweak for Method {
        fn to_builder_with(
            self,
            f: impl FnOnce(
                aws_sdk_apigateway::types::builders::MethodBuilder,
            ) -> aws_sdk_apigateway::types::builders::MethodBuilder,
        ) -> Method {
            let b = Method::builder()
                .set_api_key_required(self.api_key_required())
                .set_authorization_type(self.authorization_type().map(str::to_string))
                .set_request_validator_id(self.request_validator_id().map(str::to_string))
                .set_request_models(self.request_models().cloned());
            f(b).build()
        }
    }
}
