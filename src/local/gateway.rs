//! The HTTP front, doing what API Gateway does for the deployed REST API: route by method
//! and resource path (also under the `/<stage>` prefix, as in the deployed URL), refuse
//! a request without the stack's API key in `x-api-key` (403 `Forbidden`), apply the
//! usage plan's throttle (a token bucket of `burst` tokens refilled at `rate` per second;
//! 429 `Too Many Requests`), turn the request into a REST API proxy event (stage,
//! resource, path, headers, query string, request id, API key identity), run it in the
//! function the integration names, and turn the function's proxy response back into
//! HTTP. A function that fails, crashes or times out gives 502 `Internal server error`,
//! as API Gateway answers for a failed Lambda invocation; an unknown route gives 403
//! `Missing Authentication Token`, as a REST API does.
//!
//! Not done here: the request validator (the functions validate every body themselves,
//! with the same rules) and the daily quota.

use super::deployed::{Deployed, Route, Throttle};
use super::http::{Request, Response};
use super::runtime::{Function, Outcome};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second, refilled continuously, at most `burst` in the bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(t: Throttle, now: Instant) -> Self {
        TokenBucket {
            rate: t.rate.max(0.0),
            capacity: f64::from(t.burst),
            tokens: f64::from(t.burst),
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct Gateway {
    pub deployed: Deployed,
    /// By function ARN.
    pub functions: BTreeMap<String, Function>,
    bucket: Mutex<Option<TokenBucket>>,
}

fn message(status: u16, text: &str) -> Response {
    Response::json(status, &json!({"message": text}))
}

/// Compares without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Gateway {
    pub fn new(deployed: Deployed, functions: BTreeMap<String, Function>) -> Self {
        let bucket = deployed
            .throttle
            .map(|t| TokenBucket::new(t, Instant::now()));
        Gateway {
            deployed,
            functions,
            bucket: Mutex::new(bucket),
        }
    }

    /// The route for `method` and `path`, with or without the `/<stage>` prefix.
    fn route(&self, method: &str, path: &str) -> Option<&Route> {
        let stage_prefix = format!("/{}", self.deployed.stage);
        let path = match path.strip_prefix(&stage_prefix) {
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        };
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        self.deployed
            .routes
            .iter()
            .find(|r| r.method == method && r.path == path)
    }

    pub async fn handle(&self, req: Request) -> Response {
        let started = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let (resp, function) = self.answer(&req, &request_id).await;
        tracing::info!(
            "{} {} -> {}{} ({} ms)",
            req.method,
            req.path(),
            resp.status,
            function.map(|f| format!(" from {f}")).unwrap_or_default(),
            started.elapsed().as_millis()
        );
        resp.header("x-amzn-requestid", request_id)
    }

    async fn answer(&self, req: &Request, request_id: &str) -> (Response, Option<String>) {
        let Some(route) = self.route(&req.method, req.path()) else {
            return (message(403, "Missing Authentication Token"), None);
        };
        let key = req.header("x-api-key");
        if route.api_key_required && !key.is_some_and(|k| same_secret(k, &self.deployed.api_key.0))
        {
            return (message(403, "Forbidden"), None);
        }
        let allowed = {
            let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            bucket.as_mut().is_none_or(|b| b.take(Instant::now()))
        };
        if !allowed {
            return (message(429, "Too Many Requests"), None);
        }
        let Some(function) = self.functions.get(&route.function_arn) else {
            return (message(502, "Internal server error"), None);
        };
        let event = proxy_event(&self.deployed, route, req, key, request_id);
        let outcome = function.invoke(event.to_string().into_bytes()).await;
        let name = Some(function.name().to_string());
        match outcome {
            Outcome::Response(body) => match proxy_response(&body) {
                Ok(resp) => (resp, name),
                Err(why) => {
                    tracing::error!(
                        "{}: malformed Lambda proxy response: {why}",
                        function.name()
                    );
                    (message(502, "Internal server error"), name)
                }
            },
            other => {
                tracing::error!("{}: {}", function.name(), other.describe());
                (message(502, "Internal server error"), name)
            }
        }
    }
}

/// `a=1&b=x%20y` → single- and multi-value maps (None when there is no query string).
fn query_maps(query: &str) -> (Value, Value) {
    if query.is_empty() {
        return (Value::Null, Value::Null);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let (mut single, mut multi) = (Map::new(), Map::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        single.insert(k.clone(), Value::String(v.clone()));
        let entry = multi.entry(k).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(v));
        }
    }
    (Value::Object(single), Value::Object(multi))
}

/// The REST API (v1) Lambda proxy event for `req` on `route`.
pub fn proxy_event(
    d: &Deployed,
    route: &Route,
    req: &Request,
    api_key: Option<&str>,
    request_id: &str,
) -> Value {
    let (mut headers, mut multi) = (Map::new(), Map::new());
    for (k, v) in &req.headers {
        headers.insert(k.clone(), Value::String(v.clone()));
        let entry = multi
            .entry(k.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(v.clone()));
        }
    }
    let (query, multi_query) = query_maps(req.query());
    let (body, base64) = match (req.body.is_empty(), std::str::from_utf8(&req.body)) {
        (true, _) => (Value::Null, false),
        (false, Ok(text)) => (Value::String(text.to_string()), false),
        (false, Err(_)) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(&req.body)),
            true,
        ),
    };
    let now = chrono::Utc::now();
    let domain = req
        .header("host")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}.execute-api.{}.amazonaws.com", d.api_id, d.region));
    json!({
        "resource": route.path,
        "path": route.path,
        "httpMethod": route.method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourceId": route.resource_id,
            "resourcePath": route.path,
            "httpMethod": route.method,
            "extendedRequestId": request_id,
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "path": format!("/{}{}", d.stage, route.path),
            "accountId": d.account_id,
            "protocol": "HTTP/1.1",
            "stage": d.stage,
            "domainPrefix": d.api_id,
            "requestTimeEpoch": now.timestamp_millis(),
            "requestId": request_id,
            "identity": {
                "sourceIp": req.peer.ip().to_string(),
                "userAgent": req.header("user-agent"),
                "apiKey": api_key,
                "apiKeyId": api_key.map(|_| d.api_key_id.clone()),
                "accessKey": null, "accountId": null, "caller": null, "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null, "cognitoIdentityId": null, "cognitoIdentityPoolId": null,
                "principalOrgId": null, "user": null, "userArn": null,
            },
            "domainName": domain,
            "apiId": d.api_id,
        },
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// A Lambda proxy response (`statusCode`, `headers`, `multiValueHeaders`, `body`,
/// `isBase64Encoded`) as HTTP.
pub fn proxy_response(payload: &[u8]) -> Result<Response, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let status = v["statusCode"]
        .as_u64()
        .or_else(|| v["statusCode"].as_str().and_then(|s| s.parse().ok()))
        .filter(|s| (100..600).contains(s))
        .ok_or("no valid statusCode")? as u16;
    let body = match &v["body"] {
        Value::Null => Vec::new(),
        Value::String(s) if v["isBase64Encoded"] == true => {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("body is not base64: {e}"))?
        }
        Value::String(s) => s.clone().into_bytes(),
        _ => return Err("body is not a string".into()),
    };
    let mut resp = Response::new(status, body);
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    let mut seen = std::collections::BTreeSet::new();
    if let Some(map) = v["multiValueHeaders"].as_object() {
        for (k, values) in map {
            for value in values.as_array().into_iter().flatten().filter_map(text) {
                seen.insert(k.to_ascii_lowercase());
                resp = resp.header(k, value);
            }
        }
    }
    if let Some(map) = v["headers"].as_object() {
        for (k, value) in map {
            if seen.contains(&k.to_ascii_lowercase()) {
                continue;
            }
            if let Some(value) = text(value) {
                resp = resp.header(k, value);
            }
        }
    }
    resp.headers.retain(|(k, _)| {
        !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("connection")
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Throttle {
                rate: 2.0,
                burst: 3,
            },
            t0,
        );
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(500)));
        assert!(!b.take(t0 + Duration::from_millis(500)));
        // Never more than the burst, however long it waited.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }

    #[test]
    fn proxy_responses_become_http() {
        let resp = proxy_response(
            br#"{"statusCode":201,"headers":{"content-type":"application/json"},"body":"{\"a\":1}","isBase64Encoded":false}"#,
        )
        .unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.body, br#"{"a":1}"#);
        assert_eq!(
            resp.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        let resp =
            proxy_response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(resp.body, b"hi");
        assert!(proxy_response(br#"{"body":"x"}"#).is_err());
        assert!(proxy_response(b"not json").is_err());
    }

    #[test]
    fn query_strings_are_decoded() {
        let (single, multi) = query_maps("a=1&b=x%20y&a=2");
        assert_eq!(single, json!({"a": "2", "b": "x y"}));
        assert_eq!(multi, json!({"a": ["1", "2"], "b": ["x y"]}));
        assert_eq!(query_maps(""), (Value::Null, Value::Null));
    }
}
