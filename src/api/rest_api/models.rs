//! The JSON-schema models of the POST bodies and the request validator (body and
//! parameters).

use super::Draft;
use crate::api::support::definition::{JSON, VALIDATOR_NAME, model_names, model_schema};
use crate::api::support::{all_items, replace};
use crate::error::{Error, Result, aws, required};
use aws_sdk_apigateway::types::Model;
use serde_json::Value;

impl Draft<'_> {
    /// Creates missing models and puts back edited schemas.
    pub(super) async fn converge_models(&mut self) -> Result<()> {
        let (ctx, api) = (self.ctx, self.api);
        let apigw = &ctx.aws.apigateway;
        let call = apigw.get_models().rest_api_id(api);
        let have: Vec<Model> = all_items!(call, "GetModels", api)?;
        for name in model_names() {
            let want = model_schema(name).unwrap_or(Value::Null);
            let Some(m) = have.iter().find(|m| m.name() == Some(name)) else {
                let create = async || {
                    let call = apigw.create_model().rest_api_id(api).name(name);
                    let call = call
                        .content_type(JSON)
                        .description(format!("Request body of the payment API ({name})"))
                        .schema(want.to_string());
                    let out = call.send().await;
                    out.map_err(aws("CreateModel", format!("{api} {name}")))
                };
                let attribute = format!("model {name}");
                self.repair(&attribute, "missing", "created", create)
                    .await?;
                continue;
            };
            if m.content_type() != Some(JSON) {
                // The content type is fixed at creation: such a model is replaced.
                return Err(Error::Invalid(format!(
                    "model {name} of REST API {api} has content type {:?}, not {JSON}; delete it (or the API) and run `payctl up` again",
                    m.content_type().unwrap_or_default()
                )));
            }
            let schema: Option<Value> = m.schema().and_then(|s| serde_json::from_str(s).ok());
            if schema.as_ref() == Some(&want) {
                continue;
            }
            let update = async || {
                let call = apigw.update_model().rest_api_id(api).model_name(name);
                let out = call.patch_operations(replace("/schema", want.to_string()));
                let out = out.send().await;
                out.map_err(aws("UpdateModel", format!("{api} {name}")))
            };
            let attribute = format!("model {name} schema");
            self.repair(&attribute, "differs", "as defined", update)
                .await?;
        }
        Ok(())
    }

    /// The request validator (body and parameters); returns its id (empty on `plan`
    /// when it would be created).
    pub(super) async fn converge_validator(&mut self) -> Result<String> {
        let (ctx, api) = (self.ctx, self.api);
        let apigw = &ctx.aws.apigateway;
        let what = format!("{api} {VALIDATOR_NAME}");
        let call = apigw.get_request_validators().rest_api_id(api).limit(500);
        let out = call
            .send()
            .await
            .map_err(aws("GetRequestValidators", api))?;
        let existing = out
            .items()
            .iter()
            .find(|v| v.name() == Some(VALIDATOR_NAME));
        let Some(v) = existing else {
            let create = async || {
                let call = apigw.create_request_validator().rest_api_id(api);
                let call = call
                    .name(VALIDATOR_NAME)
                    .validate_request_body(true)
                    .validate_request_parameters(true);
                let out = call.send().await;
                let out = out.map_err(aws("CreateRequestValidator", &what))?;
                required(out.id(), "request validator id")
            };
            let id = self
                .repair("request validator", "missing", "created", create)
                .await?;
            return Ok(id.unwrap_or_default());
        };
        let id = required(v.id(), "request validator id")?;
        let mut ops = Vec::new();
        if !v.validate_request_body() {
            ops.push(replace("/validateRequestBody", "true"));
        }
        if !v.validate_request_parameters() {
            ops.push(replace("/validateRequestParameters", "true"));
        }
        if !ops.is_empty() {
            let update = async || {
                let call = apigw.update_request_validator().rest_api_id(api);
                let call = call
                    .request_validator_id(&id)
                    .set_patch_operations(Some(ops));
                call.send()
                    .await
                    .map_err(aws("UpdateRequestValidator", &what))
            };
            let (old, new) = ("not validating everything", "body and parameters");
            self.repair("request validator", old, new, update).await?;
        }
        Ok(id)
    }
}
