//! The methods (`apiKeyRequired`, no authorizer, the request validator and body model)
//! and their Lambda proxy integrations, one per route of the definition.

use super::{Draft, no};
use crate::api::support::SERVICE;
use crate::api::support::definition::{JSON, ROUTES, Route, integration_uri};
use crate::compute;
use crate::error::{Result, aws};
use aws_sdk_apigateway::types::{Integration, IntegrationType, Method};
use std::collections::HashMap;

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
pub fn integration_matches(i: Option<&Integration>, uri: &str) -> bool {
    i.is_some_and(|i| {
        i.r#type() == Some(&IntegrationType::AwsProxy)
            && i.http_method() == Some("POST")
            && i.uri() == Some(uri)
    })
}

impl Draft<'_> {
    /// Every route's method and integration; `ids` maps paths to resource ids.
    pub(super) async fn converge_routes(
        &mut self,
        ids: &HashMap<String, String>,
        validator_id: &str,
    ) -> Result<()> {
        for route in ROUTES {
            let path = format!("/{}", route.path);
            let Some(resource_id) = ids.get(&path) else {
                if self.ctx.planning() {
                    continue; // noted already: the resource would be created first
                }
                return Err(no(self.api, format_args!("resource {path}")));
            };
            let function_arn = compute::live_arn(self.ctx, route.function)?;
            let uri = integration_uri(&self.ctx.region, &function_arn);
            self.converge_method(resource_id, &route, validator_id, &uri)
                .await?;
        }
        Ok(())
    }

    /// The method as it is now, with its integration (`None` when there is none).
    async fn read_method(&self, resource_id: &str, route: &Route) -> Result<Option<Method>> {
        let (ctx, api) = (self.ctx, self.api);
        let call = ctx.aws.apigateway.get_method().rest_api_id(api);
        let out = call
            .resource_id(resource_id)
            .http_method(route.method)
            .send()
            .await;
        let what = format!("{api} {} /{}", route.method, route.path);
        let Some(out) = SERVICE.found(out.map_err(aws("GetMethod", what)))? else {
            return Ok(None);
        };
        let method = Method::builder()
            .set_api_key_required(out.api_key_required())
            .set_authorization_type(out.authorization_type().map(str::to_string))
            .set_authorizer_id(out.authorizer_id().map(str::to_string))
            .set_request_validator_id(out.request_validator_id().map(str::to_string))
            .set_request_models(out.request_models().cloned())
            .set_request_parameters(out.request_parameters().cloned())
            .set_method_integration(out.method_integration().cloned());
        Ok(Some(method.build()))
    }

    /// One method and its integration, re-created when it differs from the definition
    /// (the draft changes; the live stage keeps serving its deployment until the next).
    async fn converge_method(
        &mut self,
        resource_id: &str,
        route: &Route,
        validator_id: &str,
        uri: &str,
    ) -> Result<()> {
        let (ctx, api) = (self.ctx, self.api);
        let apigw = &ctx.aws.apigateway;
        let what = format!("{api} {} /{}", route.method, route.path);
        let have = self.read_method(resource_id, route).await?;
        let mut integration = have.as_ref().and_then(|m| m.method_integration().cloned());
        if !have
            .as_ref()
            .is_some_and(|m| method_matches(m, route, validator_id))
        {
            let put = async || {
                if have.is_some() {
                    let call = apigw.delete_method().rest_api_id(api);
                    let call = call.resource_id(resource_id).http_method(route.method);
                    call.send().await.map_err(aws("DeleteMethod", &what))?;
                }
                let call = apigw.put_method().rest_api_id(api).resource_id(resource_id);
                let mut put = call
                    .http_method(route.method)
                    .authorization_type("NONE")
                    .api_key_required(true)
                    .request_validator_id(validator_id);
                if let Some(model) = route.model {
                    put = put.request_models(JSON, model);
                }
                put.send().await.map_err(aws("PutMethod", &what))
            };
            let attribute = format!("method {} /{}", route.method, route.path);
            let old = if have.is_some() { "differs" } else { "missing" };
            let new = "API key required, request validated";
            if self.repair(&attribute, old, new, put).await?.is_some() {
                integration = None;
            }
        }
        if integration_matches(integration.as_ref(), uri) {
            return Ok(());
        }
        let put = async || {
            let call = apigw
                .put_integration()
                .rest_api_id(api)
                .resource_id(resource_id);
            let call = call
                .http_method(route.method)
                .r#type(IntegrationType::AwsProxy)
                // Lambda is always invoked with POST, whatever the client's method.
                .integration_http_method("POST")
                .uri(uri);
            call.send().await.map_err(aws("PutIntegration", &what))
        };
        let attribute = format!("integration {} /{}", route.method, route.path);
        let old = integration.as_ref().and_then(|i| i.uri()).unwrap_or("none");
        self.repair(&attribute, old, uri, put).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::support::definition::PAYMENT_MODEL;

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
