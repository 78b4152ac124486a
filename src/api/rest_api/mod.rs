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

mod methods;
mod models;
mod resources;

pub use methods::{integration_matches, method_matches};

use super::support::definition::{definition, definition_hash};
use super::support::{self, Item, SERVICE, Target, all_items, ours_by_name, replace};
use super::tag_map;
use crate::compute;
use crate::engine::report::Change;
use crate::engine::{Ctx, Found, Resource, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_apigateway::types::{
    ApiKeySourceType, EndpointConfiguration, EndpointType, Op, PatchOperation,
};
use std::collections::HashMap;
use std::fmt::Display;

pub const KIND: &str = "apigw_rest_api";
pub const ADDR: &str = "apigw_rest_api.main";
/// Record attribute: the definition was repaired and must be deployed again.
pub const REDEPLOY: &str = "redeploy";
/// Record attribute: the hash of the definition `up` converged the API to.
pub const DEFINITION: &str = "definition";

pub struct RestApi;

/// What payctl needs to know about an existing API.
struct Api {
    id: String,
    root: Option<String>,
    tags: Option<HashMap<String, String>>,
    types: Vec<EndpointType>,
    binary: Vec<String>,
    key_source: Option<ApiKeySourceType>,
}

/// An [`Api`] from any answer that describes one (GetRestApis' items, GetRestApi,
/// CreateRestApi: the same fields on three SDK types).
macro_rules! api {
    ($a:expr) => {{
        let a = $a;
        Api {
            id: required(a.id(), "REST API id")?,
            root: a.root_resource_id().map(str::to_string),
            tags: a.tags().cloned(),
            types: a
                .endpoint_configuration()
                .map(|c| c.types().to_vec())
                .unwrap_or_default(),
            binary: a.binary_media_types().to_vec(),
            key_source: a.api_key_source().cloned(),
        }
    }};
}

impl Item for Api {
    fn item_id(&self) -> &str {
        &self.id
    }
    fn item_tags(&self) -> Option<&HashMap<String, String>> {
        self.tags.as_ref()
    }
}

fn target(ctx: &Ctx, api: &Api) -> Target {
    Target {
        arn: support::arn(ctx, &format!("/restapis/{}", api.id)),
        what: format!("REST API {} ({})", api.id, ctx.name("api")),
    }
}

/// The API, by the id in state, else by its name among the APIs payctl owns.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<Api>>> {
    let apigw = &ctx.aws.apigateway;
    let name = ctx.name("api");
    // Owned captures in `by_id`: see `support` on AsyncFn and Send.
    let client = apigw;
    let by_id = move |id: String| async move {
        let id = id.as_str();
        let out = client.get_rest_api().rest_api_id(id).send().await;
        Ok(Some(api!(out.map_err(aws("GetRestApi", id))?)))
    };
    let by_name = || async {
        let call = apigw.get_rest_apis();
        let all: Vec<aws_sdk_apigateway::types::RestApi> = all_items!(call, "GetRestApis", &name)?;
        let mut named = Vec::new();
        for a in all.iter().filter(|a| a.name() == Some(name.as_str())) {
            named.push(api!(a));
        }
        ours_by_name(ctx, "REST API", &name, named)
    };
    find(ctx, ADDR, SERVICE, by_id, by_name).await
}

/// The API's id, found by the id in state, then by name (`None` when there is none);
/// refuses an API payctl does not own.
pub async fn find_id(ctx: &Ctx) -> Result<Option<String>> {
    let Some(Found { value: api, .. }) = lookup(ctx).await? else {
        return Ok(None);
    };
    support::check_owned(ctx, &target(ctx, &api), api.tags.as_ref())?;
    Ok(Some(api.id))
}

async fn create(ctx: &Ctx, name: &str) -> Result<Api> {
    let regional = EndpointConfiguration::builder().types(EndpointType::Regional);
    let out = ctx
        .aws
        .apigateway
        .create_rest_api()
        .name(name)
        .description(format!(
            "Payment processing API ({}), managed by payctl",
            ctx.env
        ))
        .endpoint_configuration(regional.build())
        .api_key_source(ApiKeySourceType::Header)
        // No binaryMediaTypes: every body is text to the gateway and must match a JSON
        // model; see the module docs on body sizes.
        .set_tags(Some(tag_map(ctx)))
        .send()
        .await
        .map_err(aws("CreateRestApi", name))?;
    Ok(api!(out))
}

/// JSON-pointer escaping for patch paths (`image/png` → `image~1png`).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Patches that put the API-level settings back (endpoint type, binary media types, key
/// source).
fn api_patches(found: &Api) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    if let Some(t) = found.types.iter().find(|t| **t != EndpointType::Regional) {
        ops.push(replace(
            &format!("/endpointConfiguration/types/{}", t.as_str()),
            EndpointType::Regional.as_str(),
        ));
    }
    for b in &found.binary {
        ops.push(support::patch(
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

/// The repairs `up` makes to the API's draft, each one a declaration: guarded by
/// [`Ctx::apply`] (on `plan`: noted as `attribute: old → new`), and remembered, since a
/// repaired draft must be deployed again.
struct Draft<'a> {
    ctx: &'a Ctx,
    api: &'a str,
    changed: Vec<String>,
}

impl<'a> Draft<'a> {
    fn new(ctx: &'a Ctx, api: &'a str) -> Self {
        Draft {
            ctx,
            api,
            changed: Vec::new(),
        }
    }

    /// Puts `attribute` back from `old` to `new` with `write` (on `up`); `None` on `plan`.
    async fn repair<T>(
        &mut self,
        attribute: &str,
        old: impl Display,
        new: impl Display,
        write: impl AsyncFnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        if !self.ctx.apply(ADDR, attribute, old, new) {
            return Ok(None);
        }
        let written = write().await?;
        self.changed.push(attribute.to_string());
        Ok(Some(written))
    }

    /// The API-level settings: endpoint type, binary media types, API key source.
    async fn converge_api(&mut self, api: &Api) -> Result<()> {
        let ops = api_patches(api);
        if ops.is_empty() {
            return Ok(());
        }
        let (ctx, id) = (self.ctx, self.api);
        let update = async || {
            let call = ctx.aws.apigateway.update_rest_api().rest_api_id(id);
            let out = call.set_patch_operations(Some(ops)).send().await;
            out.map_err(aws("UpdateRestApi", ctx.name("api")))
        };
        let what = "endpoint type, binary media types or API key source";
        self.repair(what, "differs", "as defined", update).await?;
        Ok(())
    }
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
    kind!(KIND, depends_on = [compute::alias::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("api");
        let hash = definition_hash(&definition(ctx)?);
        let known = ctx.state.get(ADDR);
        let (api, change) = match lookup(ctx).await? {
            Some(found) => {
                let api = &found.value;
                let retagged =
                    support::converge_tags(ctx, ADDR, &target(ctx, api), api.tags.as_ref()).await?;
                let change = found.change().updated_if(retagged);
                (found.value, change)
            }
            None if !ctx.would_create(format!("{ADDR} ({name})")) => return Ok(()),
            None => (create(ctx, &name).await?, Change::Created),
        };
        // Recorded at once, so a crash below leaves nothing payctl does not know about.
        let pending = redeploy_pending(ctx) && known.as_ref().is_some_and(|r| r.id == api.id);
        let base = Record::new(KIND, &api.id).attr("name", &name);
        let mark = |rec: Record, redeploy: bool| match redeploy {
            true => rec.attr(REDEPLOY, "true"),
            false => rec,
        };
        ctx.record(ADDR, mark(base.clone(), pending)).await?;

        let mut draft = Draft::new(ctx, &api.id);
        draft.converge_api(&api).await?;
        let ids = draft.converge_resources(api.root.clone()).await?;
        draft.converge_models().await?;
        let validator_id = draft.converge_validator().await?;
        draft.converge_routes(&ids, &validator_id).await?;

        let repaired = change != Change::Created && !draft.changed.is_empty();
        let rec = base
            .attr("validator_id", &validator_id)
            .attr(DEFINITION, &hash);
        ctx.record(ADDR, mark(rec, pending || repaired)).await?;
        if repaired {
            tracing::info!("REST API {name}: put back {}", draft.changed.join(", "));
        }
        ctx.report.note(
            change.updated_if(repaired),
            format!("{ADDR} {} ({name})", api.id),
        );
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = ctx.name("api");
        let Some(Found { value: api, .. }) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        support::check_owned(ctx, &target(ctx, &api), api.tags.as_ref())?;
        let delete = async || {
            let call = ctx.aws.apigateway.delete_rest_api().rest_api_id(&api.id);
            call.send().await.map_err(aws("DeleteRestApi", &name))
        };
        let what = format!("{} ({name})", api.id);
        ctx.delete_and_forget(ADDR, &what, SERVICE, delete).await
    }
}

/// The error for a draft that lacks what the definition needs.
fn no(api: &str, what: impl Display) -> Error {
    Error::Invalid(format!("REST API {api} has no {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_level_drift_becomes_patches() {
        let good = Api {
            id: "a".into(),
            root: None,
            tags: None,
            types: vec![EndpointType::Regional],
            binary: vec![],
            key_source: Some(ApiKeySourceType::Header),
        };
        assert!(api_patches(&good).is_empty());
        let bad = Api {
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
}
