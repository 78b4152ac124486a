//! The HTTP front, doing what API Gateway does for the deployed REST API: route by method
//! and resource path (also under the `/<stage>` prefix, as in the deployed URL), refuse
//! a request without the stack's API key in `x-api-key` (403 `Forbidden`), apply the
//! usage plan's throttle (a token bucket of `burst` tokens refilled at `rate` per second;
//! 429 `Too Many Requests`), turn the request into a REST API proxy event (stage,
//! resource, path, headers, query string, request id, API key identity; built as
//! `aws_lambda_events`' `ApiGatewayProxyRequest`, the type the functions deserialize),
//! run it in the function the integration names, and turn the function's proxy response back into
//! HTTP. A function that fails, crashes or times out gives 502 `Internal server error`,
//! as API Gateway answers for a failed Lambda invocation; an unknown route gives 403
//! `Missing Authentication Token`, as a REST API does.
//!
//! Not done here: the request validator (the functions validate every body themselves,
//! with the same rules) and the daily quota.

use super::deployed::{Deployed, Route, Throttle};
use super::http::{Request, Response};
use super::runtime::{Function, Outcome};
use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyRequestContext, ApiGatewayRequestIdentity,
};
use aws_lambda_events::query_map::QueryMap;
use base64::Engine;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
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
        let name = Some(function.name().to_string());
        let event = proxy_event(&self.deployed, route, req, key, request_id);
        let payload = match serde_json::to_vec(&event) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(
                    "{}: the proxy event cannot be written: {e}",
                    function.name()
                );
                return (message(502, "Internal server error"), name);
            }
        };
        let outcome = function.invoke(payload).await;
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

/// `a=1&b=x%20y` → the single-value map (the last value of each name, as API Gateway
/// gives) and the multi-value map (every value, in order).
fn query_maps(query: &str) -> (QueryMap, QueryMap) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let (mut single, mut multi) = (HashMap::new(), HashMap::<String, Vec<String>>::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        single.insert(k.clone(), v.clone());
        multi.entry(k).or_default().push(v);
    }
    (QueryMap::from(single), QueryMap::from(multi))
}

/// The request's headers as the event carries them: `headers` with the last value of
/// each name (as API Gateway gives), `multiValueHeaders` with every value. A value that
/// is not UTF-8 is passed on with replacement characters.
fn header_maps(req: &Request) -> (HeaderMap, HeaderMap) {
    let (mut single, mut multi) = (HeaderMap::new(), HeaderMap::new());
    for (name, value) in &req.headers {
        let value = match std::str::from_utf8(value.as_bytes()) {
            Ok(_) => value.clone(),
            Err(_) => {
                let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                match HeaderValue::from_bytes(text.as_bytes()) {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            }
        };
        single.insert(name.clone(), value.clone());
        multi.append(name.clone(), value);
    }
    (single, multi)
}

/// The REST API (v1) Lambda proxy event for `req` on `route`.
pub fn proxy_event(
    d: &Deployed,
    route: &Route,
    req: &Request,
    api_key: Option<&str>,
    request_id: &str,
) -> ApiGatewayProxyRequest {
    let method = Method::from_bytes(route.method.as_bytes()).unwrap_or(Method::GET);
    let now = chrono::Utc::now();
    let mut identity = ApiGatewayRequestIdentity::default();
    identity.source_ip = Some(req.peer.ip().to_string());
    identity.user_agent = req.header("user-agent").map(str::to_string);
    identity.api_key = api_key.map(str::to_string);
    identity.api_key_id = api_key.map(|_| d.api_key_id.clone());

    let mut context = ApiGatewayProxyRequestContext::default();
    context.resource_id = Some(route.resource_id.clone());
    context.resource_path = Some(route.path.clone());
    context.http_method = method.clone();
    context.request_time = Some(now.format("%d/%b/%Y:%H:%M:%S +0000").to_string());
    context.request_time_epoch = now.timestamp_millis();
    context.path = Some(format!("/{}{}", d.stage, route.path));
    context.account_id = Some(d.account_id.clone());
    context.protocol = Some("HTTP/1.1".to_string());
    context.stage = Some(d.stage.clone());
    context.domain_prefix = Some(d.api_id.clone());
    context.request_id = Some(request_id.to_string());
    context.identity = identity;
    context.domain_name = Some(
        req.header("host")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}.execute-api.{}.amazonaws.com", d.api_id, d.region)),
    );
    context.apiid = Some(d.api_id.clone());

    let (headers, multi_value_headers) = header_maps(req);
    let (query, multi_query) = query_maps(req.query());
    let (body, base64) = match (req.body.is_empty(), std::str::from_utf8(&req.body)) {
        (true, _) => (None, false),
        (false, Ok(text)) => (Some(text.to_string()), false),
        (false, Err(_)) => (
            Some(base64::engine::general_purpose::STANDARD.encode(&req.body)),
            true,
        ),
    };
    let mut event = ApiGatewayProxyRequest::default();
    event.resource = Some(route.path.clone());
    event.path = Some(route.path.clone());
    event.http_method = method;
    event.headers = headers;
    event.multi_value_headers = multi_value_headers;
    event.query_string_parameters = query;
    event.multi_value_query_string_parameters = multi_query;
    event.request_context = context;
    event.body = body;
    event.is_base64_encoded = base64;
    event
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
        assert_eq!(
            (single.all("a"), single.first("b")),
            (Some(vec!["2"]), Some("x y"))
        );
        assert_eq!(
            (multi.all("a"), multi.all("b")),
            (Some(vec!["1", "2"]), Some(vec!["x y"]))
        );
        let (single, multi) = query_maps("");
        assert!(single.is_empty() && multi.is_empty());
    }

    fn deployed() -> Deployed {
        Deployed {
            env: "dev".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            api_id: "abc123".into(),
            stage: "dev".into(),
            routes: Vec::new(),
            functions: BTreeMap::new(),
            api_key_id: "key-id".into(),
            api_key: super::super::deployed::Secret("k".into()),
            throttle: None,
            stream: None,
            queue: None,
        }
    }

    #[test]
    fn the_proxy_event_is_what_api_gateway_sends_and_the_functions_read() {
        let route = Route {
            method: "POST".into(),
            path: "/validate".into(),
            resource_id: "r1".into(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:v".into(),
            api_key_required: true,
        };
        let mut headers = HeaderMap::new();
        headers.append("x-api-key", HeaderValue::from_static("k"));
        headers.append("x-twice", HeaderValue::from_static("one"));
        headers.append("x-twice", HeaderValue::from_static("two"));
        headers.append("host", HeaderValue::from_static("127.0.0.1:8080"));
        let req = Request {
            method: "POST".into(),
            target: "/dev/validate?a=1&a=2".into(),
            headers,
            body: br#"{"amount":"1.00"}"#.to_vec(),
            peer: "127.0.0.1:5555".parse().unwrap(),
        };
        let event = proxy_event(&deployed(), &route, &req, Some("k"), "req-1");
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["resource"], "/validate");
        assert_eq!(v["httpMethod"], "POST");
        assert_eq!(v["headers"]["x-twice"], "two");
        assert_eq!(v["multiValueHeaders"]["x-twice"], json!(["one", "two"]));
        assert_eq!(v["queryStringParameters"], json!({"a": "2"}));
        assert_eq!(
            v["multiValueQueryStringParameters"],
            json!({"a": ["1", "2"]})
        );
        assert_eq!(v["body"], r#"{"amount":"1.00"}"#);
        assert_eq!(v["isBase64Encoded"], false);
        let ctx = &v["requestContext"];
        assert_eq!(ctx["path"], "/dev/validate");
        assert_eq!(ctx["requestId"], "req-1");
        assert_eq!(ctx["domainName"], "127.0.0.1:8080");
        assert_eq!(ctx["identity"]["apiKey"], "k");
        assert_eq!(ctx["identity"]["apiKeyId"], "key-id");
        assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
        // What the functions deserialize it into.
        let back: ApiGatewayProxyRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, event);

        // A body that is not UTF-8 travels as base64.
        let req = Request {
            body: vec![0xff, 0x00],
            ..req
        };
        let v = serde_json::to_value(proxy_event(&deployed(), &route, &req, None, "r")).unwrap();
        assert_eq!(
            (&v["body"], &v["isBase64Encoded"]),
            (&json!("/wA="), &json!(true))
        );
        assert_eq!(v["requestContext"]["identity"]["apiKey"], Value::Null);
    }
}
