//! The API's definition: the routes, the JSON-schema models of the POST bodies, the
//! request validator and the Lambda proxy integrations, described as one JSON value.
//!
//! | method | path | function | body model |
//! |---|---|---|---|
//! | POST | /validate | validator | `PaymentRequest` |
//! | POST | /process | processor | `ProcessRequest` |
//! | GET | /status | processor | — |
//!
//! The canonical text of that value ([`canonical`]) is hashed ([`definition_hash`]); the
//! stage kind deploys only when the hash differs from the one its current deployment
//! carries.

use crate::api::partition;
use crate::compute::{self, PROCESSOR, VALIDATOR};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const VALIDATOR_NAME: &str = "payment-body-and-parameters";
pub const PAYMENT_MODEL: &str = "PaymentRequest";
pub const PROCESS_MODEL: &str = "ProcessRequest";
pub const JSON: &str = "application/json";

/// One method of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// The resource's path part, under the root (`validate` for `/validate`).
    pub path: &'static str,
    /// The function key (`crate::compute::VALIDATOR`, …).
    pub function: &'static str,
    /// The request body model, for methods that take a body.
    pub model: Option<&'static str>,
}

pub const ROUTES: [Route; 3] = [
    Route {
        method: "POST",
        path: "validate",
        function: VALIDATOR,
        model: Some(PAYMENT_MODEL),
    },
    Route {
        method: "POST",
        path: "process",
        function: PROCESSOR,
        model: Some(PROCESS_MODEL),
    },
    Route {
        method: "GET",
        path: "status",
        function: PROCESSOR,
        model: None,
    },
];

/// `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations`.
pub fn integration_uri(region: &str, function_arn: &str) -> String {
    format!(
        "arn:{}:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
        partition(region)
    )
}

/// A transaction or customer id, as the functions define it.
fn id_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"})
}

/// The JSON schema (draft 4, what API Gateway speaks) of a body model.
pub fn model_schema(name: &str) -> Option<Value> {
    let schema = match name {
        PAYMENT_MODEL => json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "title": PAYMENT_MODEL,
            "type": "object",
            "required": ["transaction_id", "amount", "currency", "customer_id"],
            "additionalProperties": false,
            "properties": {
                "transaction_id": id_schema(),
                "customer_id": id_schema(),
                // Case and the ISO 4217 list are the validator's to check: its answer
                // suggests the uppercase code, which a schema error could not.
                "currency": {"type": "string", "minLength": 3, "maxLength": 3},
                // Parsed exactly by the function, never as a float.
                "amount": {"type": ["number", "string"]}
            }
        }),
        PROCESS_MODEL => json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "title": PROCESS_MODEL,
            "type": "object",
            "required": ["transaction_id"],
            "additionalProperties": false,
            "properties": {"transaction_id": id_schema()}
        }),
        _ => return None,
    };
    Some(schema)
}

pub fn model_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ROUTES.iter().filter_map(|r| r.model).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The canonical description of the API's definition: everything a deployment snapshots
/// (resources, methods, integrations, models, validator), given the functions' ARNs.
pub fn describe(region: &str, function_arns: &BTreeMap<&str, String>) -> Result<Value> {
    let mut routes = Vec::new();
    for r in ROUTES {
        let arn = function_arns.get(r.function).ok_or_else(|| {
            Error::Invalid(format!(
                "no ARN for function {} of {} /{}",
                r.function, r.method, r.path
            ))
        })?;
        routes.push(json!({
            "method": r.method,
            "path": format!("/{}", r.path),
            "apiKeyRequired": true,
            "authorizationType": "NONE",
            "requestValidator": VALIDATOR_NAME,
            "requestModels": r.model.map(|m| json!({JSON: m})).unwrap_or(json!({})),
            "integration": {
                "type": "AWS_PROXY",
                "httpMethod": "POST",
                "uri": integration_uri(region, arn),
            },
        }));
    }
    let models: serde_json::Map<String, Value> = model_names()
        .into_iter()
        .map(|m| {
            let schema = model_schema(m).unwrap_or(Value::Null);
            (
                m.to_string(),
                json!({"contentType": JSON, "schema": schema}),
            )
        })
        .collect();
    Ok(json!({
        "endpointType": "REGIONAL",
        "apiKeySource": "HEADER",
        "binaryMediaTypes": [],
        "validator": {"name": VALIDATOR_NAME, "body": true, "parameters": true},
        "models": models,
        "routes": routes,
    }))
}

/// The definition for this run (function ARNs from the state file).
pub fn definition(ctx: &Ctx) -> Result<Value> {
    let mut arns = BTreeMap::new();
    for r in ROUTES {
        arns.insert(r.function, compute::live_arn(ctx, r.function)?);
    }
    describe(&ctx.region, &arns)
}

/// JSON text with object keys sorted at every level, whatever the map type.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 (hex) of the canonical definition.
pub fn definition_hash(def: &Value) -> String {
    let digest = Sha256::digest(canonical(def).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arns(validator: &str, processor: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            (VALIDATOR, validator.to_string()),
            (PROCESSOR, processor.to_string()),
        ])
    }

    const V: &str = "arn:aws:lambda:us-east-1:123456789012:function:payment-validator-dev";
    const P: &str = "arn:aws:lambda:us-east-1:123456789012:function:payment-processor-dev";

    #[test]
    fn integration_uri_names_the_function() {
        assert_eq!(
            integration_uri("us-east-1", V),
            format!(
                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{V}/invocations"
            )
        );
        assert!(integration_uri("cn-north-1", V).starts_with("arn:aws-cn:apigateway:cn-north-1:"));
    }

    #[test]
    fn the_definition_hash_is_stable() {
        let a = describe("us-east-1", &arns(V, P)).unwrap();
        let b = describe("us-east-1", &arns(V, P)).unwrap();
        assert_eq!(definition_hash(&a), definition_hash(&b));
        assert_eq!(definition_hash(&a).len(), 64);
        // Key order does not matter, only content.
        let x: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,2],"c":null}}"#).unwrap();
        let y: Value = serde_json::from_str(r#"{"a":{"c":null,"d":[1,2]},"b":1}"#).unwrap();
        assert_eq!(canonical(&x), r#"{"a":{"c":null,"d":[1,2]},"b":1}"#);
        assert_eq!(definition_hash(&x), definition_hash(&y));
    }

    #[test]
    fn the_definition_hash_changes_with_the_definition() {
        let base = describe("us-east-1", &arns(V, P)).unwrap();
        let h = definition_hash(&base);
        // Another function behind a route.
        let other = describe("us-east-1", &arns(P, P)).unwrap();
        assert_ne!(definition_hash(&other), h);
        // Another region (integration URIs).
        let region = describe("eu-west-1", &arns(V, P)).unwrap();
        assert_ne!(definition_hash(&region), h);
        // A model, a method flag, a route: each one changes the hash.
        let mut m = base.clone();
        m["models"][PAYMENT_MODEL]["schema"]["properties"]["currency"]["maxLength"] = json!(4);
        assert_ne!(definition_hash(&m), h);
        let mut k = base.clone();
        k["routes"][0]["apiKeyRequired"] = json!(false);
        assert_ne!(definition_hash(&k), h);
        let mut r = base.clone();
        r["routes"].as_array_mut().unwrap().pop();
        assert_ne!(definition_hash(&r), h);
        // Swapping arrays' order is a change too (routes are listed in a fixed order).
        assert!(describe("us-east-1", &BTreeMap::from([(VALIDATOR, V.to_string())])).is_err());
    }

    #[test]
    fn routes_and_models() {
        let paths: Vec<(&str, &str, &str)> = ROUTES
            .iter()
            .map(|r| (r.method, r.path, r.function))
            .collect();
        assert_eq!(
            paths,
            [
                ("POST", "validate", VALIDATOR),
                ("POST", "process", PROCESSOR),
                ("GET", "status", PROCESSOR)
            ]
        );
        let pay = model_schema(PAYMENT_MODEL).unwrap();
        assert_eq!(pay["additionalProperties"], json!(false));
        assert_eq!(
            pay["required"],
            json!(["transaction_id", "amount", "currency", "customer_id"])
        );
        for id in ["transaction_id", "customer_id"] {
            assert_eq!(pay["properties"][id]["maxLength"], json!(64));
            assert_eq!(pay["properties"][id]["pattern"], json!("^[A-Za-z0-9_-]+$"));
        }
        assert_eq!(pay["properties"]["currency"]["minLength"], json!(3));
        assert_eq!(pay["properties"]["currency"]["maxLength"], json!(3));
        assert_eq!(
            pay["properties"]["amount"]["type"],
            json!(["number", "string"])
        );
        let process = model_schema(PROCESS_MODEL).unwrap();
        assert_eq!(process["additionalProperties"], json!(false));
        assert_eq!(process["required"], json!(["transaction_id"]));
        assert!(model_schema("Empty").is_none());
        // Model names must be alphanumeric in API Gateway.
        assert!(
            model_names()
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_alphanumeric()))
        );
    }
}
