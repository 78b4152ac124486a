//! A small fault- and latency-injecting HTTP proxy between payctl and the emulator (test
//! support only; no payctl code path knows it exists).
//!
//! payctl reaches it through `AWS_ENDPOINT_URL` like any endpoint. It is served by
//! payctl's own HTTP server (`payctl::local::http`; the proxy is not what these tests
//! test) and forwards with hyper-util's client. Each request is read whole, checked
//! against the injection rules, then either answered with a canned AWS error or
//! forwarded to moto on a fresh connection (`Connection: close` both ways).
//! It counts requests per operation (the `X-Amz-Target` header, else `Action=`, else
//! `METHOD /path` for the REST services).
//!
//! Per run it can also: add a fixed latency to every request; answer a share of requests
//! with a transient error (throttling in the service's own error format, or 500/503),
//! from a seeded generator so a failing run can be replayed; hold a resource "not ready"
//! for a set time by rewriting status fields; delay one operation's response; and send a
//! signal to a process (payctl) after its Nth mutating request or when an operation
//! arrives — the crash and Ctrl-C points of the reliability tests.
//!
//! Given a [`Backup`] model ([`Proxy::start_with`]), it answers the AWS Backup requests
//! the model plays (plans, selections, recovery points; see [`super::backup`]) instead of
//! moto: the emulator's front ([`super::Moto`]) is such a proxy.

use super::backup::{self, Backup};
use super::lambda_enis::{self, LambdaEnis};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use payctl::local::http::{self, Request, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Request bodies the proxy takes: a function package travels inline (base64 in JSON),
/// well above the local API's 10 MB.
const MAX_FORWARD: usize = 256 * 1024 * 1024;

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// Answer the first `times` requests whose operation is `operation` with this error.
#[derive(Clone, Debug)]
pub struct Fault {
    pub operation: String,
    pub times: usize,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Replace `from` with `to` in the first `times` responses to `operation` that contain
/// it: holds a resource "not ready yet" (e.g. `available` → `creating`).
#[derive(Clone, Debug)]
pub struct Rewrite {
    pub operation: String,
    pub times: usize,
    pub from: String,
    pub to: String,
}

/// Rewrite `from` to `to` in responses to the operations that start with `operation` for
/// `hold` after the first response to each that contains `from`: the resource is "not
/// ready" for that long after it appears. (REST operations carry the resource in the
/// path, e.g. `GET /2015-03-31/functions/payment-validator-dev`, so each function gets
/// its own clock.)
#[derive(Clone, Debug)]
pub struct Hold {
    pub operation: String,
    pub from: String,
    pub to: String,
    pub hold: Duration,
}

/// For `window` after moto answered an operation starting with `trigger` with success,
/// requests whose operation starts with `operation` get `fault` (its `operation` and
/// `times` are not used): AWS releasing something slowly, or a change that has not
/// propagated yet (see the AWS-realism tests and the builders [`ec2_error`],
/// [`query_error`], [`rest_json_error`]). Each success of `trigger` starts the window
/// again.
#[derive(Clone, Debug)]
pub struct After {
    pub trigger: String,
    pub operation: String,
    pub window: Duration,
    pub fault: Fault,
}

/// A control-plane request rate: requests signed for `service` above `per_second`
/// (with a bucket of `burst`) are answered `429 TooManyRequestsException` with
/// `Retry-After`, as API Gateway does above its documented limits.
#[derive(Clone, Debug)]
pub struct RateLimit {
    pub service: String,
    pub per_second: f64,
    pub burst: f64,
}

/// EC2's eventual consistency ("Eventual consistency in the Amazon EC2 API",
/// <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>): for
/// `window` after a successful `create` (e.g. `CreateVpc`), the new resource — its id is
/// read from the answer's `<id_tag>` — is unknown to `list` by id (`not_found`) and left
/// out of `list`'s other answers (the `<set_tag>` items that carry it).
#[derive(Clone, Debug)]
pub struct Lag {
    pub create: String,
    pub list: String,
    pub id_tag: String,
    pub set_tag: String,
    pub not_found: String,
    pub window: Duration,
}

/// For `window` after moto answered an operation starting with `trigger` with success,
/// answers to `operation` are its last successful answer that contained `from` (kept from
/// before the trigger), with `from` written `to`: a resource AWS takes minutes to delete
/// and moto deletes at once, e.g. an RDS instance that reads `deleting` while its final
/// snapshot is taken
/// (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_DeleteInstance.html>).
#[derive(Clone, Debug)]
pub struct Linger {
    pub trigger: String,
    pub operation: String,
    pub from: String,
    pub to: String,
    pub window: Duration,
}

/// An EC2 error (`<Response><Errors>…`), status 400.
pub fn ec2_error(code: &str, message: &str) -> Fault {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
    );
    fault_of(400, "text/xml", vec![], body)
}

/// An error of a query-protocol service (RDS, IAM, SNS, …), status 400.
pub fn query_error(code: &str, message: &str) -> Fault {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
    );
    fault_of(400, "text/xml", vec![], body)
}

/// An error of a REST-JSON service (Lambda, API Gateway): `x-amzn-ErrorType`.
pub fn rest_json_error(status: u16, code: &str, message: &str) -> Fault {
    let body = format!(r#"{{"message":"{message}","Type":"User"}}"#);
    let headers = vec![("x-amzn-ErrorType".to_string(), code.to_string())];
    fault_of(status, "application/json", headers, body)
}

fn fault_of(
    status: u16,
    content_type: &str,
    mut headers: Vec<(String, String)>,
    body: String,
) -> Fault {
    headers.push(("Content-Type".to_string(), content_type.to_string()));
    Fault {
        operation: String::new(),
        times: 0,
        status,
        headers,
        body,
    }
}

/// The token bucket of a [`RateLimit`].
#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

/// When to send a signal to a process.
#[derive(Clone, Debug)]
pub enum When {
    /// After moto answered the Nth mutating request (counted from the proxy's start),
    /// before the answer reaches the client: the change is made but the client never
    /// learns of it.
    AfterMutating(usize),
    /// As soon as a request for this operation arrives.
    OnRequest(String),
}

#[derive(Clone, Debug)]
struct Trigger {
    when: When,
    pid: u32,
    signal: i32,
}

#[derive(Default)]
struct Shared {
    faults: Vec<Fault>,
    rewrites: Vec<Rewrite>,
    holds: Vec<Hold>,
    first_seen: BTreeMap<(usize, String), Instant>,
    rewritten: BTreeMap<String, usize>,
    counts: BTreeMap<String, usize>,
    injected: BTreeMap<String, usize>,
    latency: Duration,
    delays: BTreeMap<String, Duration>,
    transient: Option<(f64, u64)>,
    transient_injected: usize,
    mutating: usize,
    answered: BTreeMap<String, usize>,
    triggers: Vec<Trigger>,
    fired: Vec<String>,
    s3_owners: S3Owners,
    /// Operations whose request bodies are kept, and those bodies.
    recording: BTreeMap<String, Vec<String>>,
    /// The AWS Backup model that answers in moto's place, if any.
    backup: Option<Arc<Mutex<Backup>>>,
    afters: Vec<After>,
    /// When each [`After`] rule's trigger last succeeded, by rule.
    triggered: BTreeMap<usize, Instant>,
    /// Answers given by [`After`] rules, by operation.
    after_injected: BTreeMap<String, usize>,
    rate: Option<Bucket>,
    throttled: usize,
    /// Lambda's network interfaces, when modelled (see [`lambda_enis`]).
    enis: Option<LambdaEnis>,
    lags: Vec<Lag>,
    /// (rule, id, created at) of the resources still lagging.
    lagging: Vec<(usize, String, Instant)>,
    /// Answers a [`Lag`] changed (a NotFound, or an item left out).
    lag_hidden: usize,
    lingers: Vec<Linger>,
    /// By [`Linger`] rule: the answer kept, and when the trigger last succeeded.
    linger_kept: BTreeMap<usize, Vec<u8>>,
    linger_at: BTreeMap<usize, Instant>,
    /// Answers a [`Linger`] rule gave.
    lingered: usize,
}

/// Whether a request changes something: anything but a read. Reads are the `Describe*`,
/// `List*`, `Get*`, `Head*` operations and the REST services' GET and HEAD.
pub fn is_mutating(op: &str) -> bool {
    let reads = [
        "Describe", "List", "Get", "Head", "GET ", "HEAD ", "Batch", "Query",
    ];
    !reads.iter().any(|r| op.starts_with(r))
}

pub struct Proxy {
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        Proxy::start_with(upstream, None).await
    }

    /// A proxy whose AWS Backup requests (SigV4 service `backup`) go to `backup` first:
    /// those the model plays it answers, the others go to moto.
    pub async fn start_with(upstream: &str, backup: Option<Arc<Mutex<Backup>>>) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared {
            backup,
            ..Shared::default()
        }));
        let s = shared.clone();
        let client: Upstream = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        let limits = http::Limits {
            max_body: MAX_FORWARD,
            ..http::Limits::default()
        };
        let task = http::serve_with(listener, limits, move |req| {
            let (s, upstream, client) = (s.clone(), upstream.clone(), client.clone());
            async move { serve(req, &upstream, &client, &s).await }
        });
        Proxy {
            endpoint,
            shared,
            task,
        }
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.lock().unwrap().faults.push(fault);
    }

    pub fn rewrite(&self, rewrite: Rewrite) {
        self.shared.lock().unwrap().rewrites.push(rewrite);
    }

    /// Adds `latency` to every request (before it is forwarded or answered).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().unwrap().latency = latency;
    }

    /// Answers about `probability` of all requests with a transient error, chosen by a
    /// generator seeded with `seed`: a throttling error in the service's own format, or
    /// a 500 or 503.
    pub fn set_transient_failures(&self, probability: f64, seed: u64) {
        self.shared.lock().unwrap().transient = Some((probability, seed.max(1)));
    }

    /// How many transient errors were injected.
    pub fn transient_injected(&self) -> usize {
        self.shared.lock().unwrap().transient_injected
    }

    pub fn hold(&self, hold: Hold) {
        self.shared.lock().unwrap().holds.push(hold);
    }

    /// Delays moto's answer to `operation` by `delay`: a call that stays in flight.
    pub fn delay(&self, operation: &str, delay: Duration) {
        self.shared
            .lock()
            .unwrap()
            .delays
            .insert(operation.to_string(), delay);
    }

    /// Sends `signal` to `pid` once, at `when`.
    pub fn signal(&self, when: When, pid: u32, signal: i32) {
        self.shared
            .lock()
            .unwrap()
            .triggers
            .push(Trigger { when, pid, signal });
    }

    /// The operations after which an `AfterMutating` signal was sent, in order.
    pub fn signalled_after(&self) -> Vec<String> {
        self.shared.lock().unwrap().fired.clone()
    }

    /// Drops every signal not sent yet.
    pub fn clear_signals(&self) {
        self.shared.lock().unwrap().triggers.clear();
    }

    /// Mutating requests seen so far.
    pub fn mutating(&self) -> usize {
        self.shared.lock().unwrap().mutating
    }

    /// How many answers to `operation` were delivered to the client.
    pub fn answered(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .unwrap()
            .answered
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Adds an [`After`] rule.
    pub fn after(&self, rule: After) {
        self.shared.lock().unwrap().afters.push(rule);
    }

    /// How many requests of `operation` an [`After`] rule answered.
    pub fn after_injected(&self, operation: &str) -> usize {
        let s = self.shared.lock().unwrap();
        s.after_injected.get(operation).copied().unwrap_or(0)
    }

    /// Limits the request rate of one service (see [`RateLimit`]).
    pub fn rate_limit(&self, limit: RateLimit) {
        let tokens = limit.burst;
        self.shared.lock().unwrap().rate = Some(Bucket {
            limit,
            tokens,
            at: Instant::now(),
        });
    }

    /// Models Lambda's network interfaces (see [`super::lambda_enis`]).
    pub fn model_lambda_enis(&self, in_use_for: Duration, collected_after: Duration) {
        self.shared.lock().unwrap().enis = Some(LambdaEnis::new(in_use_for, collected_after));
    }

    /// What happened to Lambda's interfaces, in order (see [`LambdaEnis::log`]).
    pub fn eni_log(&self) -> Vec<String> {
        let s = self.shared.lock().unwrap();
        s.enis.as_ref().map(|m| m.log.clone()).unwrap_or_default()
    }

    /// How many of Lambda's interfaces exist now.
    pub fn lambda_enis(&self) -> usize {
        let s = self.shared.lock().unwrap();
        s.enis.as_ref().map_or(0, |m| m.enis.len())
    }

    /// Adds a [`Lag`] rule.
    pub fn lag(&self, rule: Lag) {
        self.shared.lock().unwrap().lags.push(rule);
    }

    /// How many answers a [`Lag`] rule changed.
    pub fn linger(&self, rule: Linger) {
        self.shared.lock().unwrap().lingers.push(rule);
    }

    /// How many answers the [`Linger`] rules gave.
    pub fn lingered(&self) -> usize {
        self.shared.lock().unwrap().lingered
    }

    pub fn lag_hidden(&self) -> usize {
        self.shared.lock().unwrap().lag_hidden
    }

    /// How many requests the rate limit refused.
    pub fn throttled(&self) -> usize {
        self.shared.lock().unwrap().throttled
    }

    /// Requests seen, by operation.
    /// Keeps the request body of every later request for `operation` (see [`Self::bodies`]).
    pub fn record(&self, operation: &str) {
        let mut s = self.shared.lock().unwrap();
        s.recording.entry(operation.to_string()).or_default();
    }

    /// The bodies of the requests for `operation` since [`Self::record`], in order.
    pub fn bodies(&self, operation: &str) -> Vec<String> {
        let s = self.shared.lock().unwrap();
        s.recording.get(operation).cloned().unwrap_or_default()
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.shared.lock().unwrap().counts.clone()
    }

    /// How many responses to `operation` were rewritten.
    pub fn rewritten(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .unwrap()
            .rewritten
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// The AWS Backup model this proxy plays, if any.
    pub fn backup(&self) -> Option<Arc<Mutex<Backup>>> {
        self.shared.lock().unwrap().backup.clone()
    }

    /// How many requests of `operation` reached the proxy, and how many got a fault.
    pub fn count(&self, operation: &str) -> (usize, usize) {
        let s = self.shared.lock().unwrap();
        (
            s.counts.get(operation).copied().unwrap_or(0),
            s.injected.get(operation).copied().unwrap_or(0),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn operation(req: &Request) -> String {
    if let Some(target) = req.header("x-amz-target") {
        return target
            .trim()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string();
    }
    let body = String::from_utf8_lossy(&req.body);
    for part in body.split('&').chain(req.target.split(['?', '&'])) {
        if let Some(action) = part.strip_prefix("Action=") {
            return action.to_string();
        }
    }
    format!("{} {}", req.method, req.target)
}

/// The proxy's answer that ends the connection, as every answer of the proxy does.
fn closing(status: u16, headers: &[(String, String)], body: impl Into<Vec<u8>>) -> Response {
    let mut resp = Response::new(status, body);
    for (k, v) in headers {
        resp = resp.header(k, v.clone());
    }
    resp.header("connection", "close")
}

/// Sends `req` to moto on a fresh connection: its status, headers and whole body.
async fn forward(
    req: &Request,
    upstream: &str,
    client: &Upstream,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String> {
    let mut out = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(format!("http://{upstream}{}", req.target));
    // The framing is the client's to write again; the rest goes as it came.
    let hop = [
        "connection",
        "content-length",
        "transfer-encoding",
        "expect",
    ];
    for (k, v) in &req.headers {
        if !hop.contains(&k.as_str()) {
            out = out.header(k, v);
        }
    }
    let out = out
        .header("connection", "close")
        .body(Full::new(Bytes::from(req.body.clone())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(out).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, body.to_vec()))
}

/// An EC2 query request to moto, made by the proxy itself (moto reads the service from
/// the credential scope and checks no signature).
fn ec2_request(base: &Request, params: &[(&str, &str)]) -> Request {
    let mut req = base.clone();
    req.method = "POST".into();
    req.target = "/".into();
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut body = String::from("Version=2016-11-15");
    for (k, v) in params {
        body.push_str(&format!("&{k}={}", enc(v)));
    }
    req.body = body.into_bytes();
    req.headers.clear();
    let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=proxy";
    for (k, v) in [
        ("authorization", auth),
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("host", "127.0.0.1"),
    ] {
        req.headers.insert(
            hyper::header::HeaderName::from_static(k),
            hyper::header::HeaderValue::from_str(v).expect("a header value"),
        );
    }
    req
}

/// Lambda's garbage collection of released interfaces, then the model's refusal of
/// `req`, if any.
async fn lambda_enis_before(
    req: &Request,
    op: &str,
    upstream: &str,
    client: &Upstream,
    shared: &Mutex<Shared>,
) -> Option<Response> {
    let due = {
        let s = shared.lock().unwrap();
        s.enis.as_ref()?.due(Instant::now())
    };
    for id in due {
        let delete = ec2_request(
            req,
            &[
                ("Action", "DeleteNetworkInterface"),
                ("NetworkInterfaceId", &id),
            ],
        );
        let _ = forward(&delete, upstream, client).await;
        if let Some(m) = shared.lock().unwrap().enis.as_mut() {
            m.collected(&id);
        }
    }
    if service(req) != "ec2" {
        return None;
    }
    let body = String::from_utf8_lossy(&req.body).to_string();
    let s = shared.lock().unwrap();
    s.enis
        .as_ref()?
        .refuse(op, &body)
        .map(lambda_enis::ec2_refusal)
}

/// After a successful `req`: a new function's interfaces made, releases and deletions
/// noted, and a `DescribeNetworkInterfaces` answer shown as AWS would.
async fn lambda_enis_after(
    req: &Request,
    op: &str,
    payload: Vec<u8>,
    upstream: &str,
    client: &Upstream,
    shared: &Mutex<Shared>,
) -> Vec<u8> {
    if shared.lock().unwrap().enis.is_none() {
        return payload;
    }
    if let Some((function, subnets, groups)) = LambdaEnis::vpc_of(req) {
        for (n, subnet) in subnets.iter().enumerate() {
            let description = format!("AWS Lambda VPC ENI-{function}-{n}");
            let mut params = vec![
                ("Action", "CreateNetworkInterface"),
                ("SubnetId", subnet.as_str()),
                ("Description", description.as_str()),
            ];
            let keys: Vec<String> = (1..=groups.len())
                .map(|i| format!("SecurityGroupId.{i}"))
                .collect();
            for (k, g) in keys.iter().zip(&groups) {
                params.push((k.as_str(), g.as_str()));
            }
            let create = ec2_request(req, &params);
            let Ok((_, _, body)) = forward(&create, upstream, client).await else {
                continue;
            };
            let body = String::from_utf8_lossy(&body).to_string();
            let id = body
                .split("<networkInterfaceId>")
                .nth(1)
                .and_then(|r| r.split('<').next())
                .map(str::to_string);
            if let (Some(id), Some(m)) = (id, shared.lock().unwrap().enis.as_mut()) {
                m.enis.insert(
                    id,
                    lambda_enis::Eni {
                        function: function.clone(),
                        subnet: subnet.clone(),
                        groups: groups.clone(),
                        released: None,
                    },
                );
            }
        }
    }
    let mut s = shared.lock().unwrap();
    let Some(m) = s.enis.as_mut() else {
        return payload;
    };
    m.observe(req, op);
    if op == "DescribeNetworkInterfaces" {
        return m.rewrite(&String::from_utf8_lossy(&payload)).into_bytes();
    }
    payload
}

/// The ids still lagging for the [`Lag`] rules of list operation `op`, with their rule.
fn lagging_for(s: &Shared, op: &str) -> Vec<(Lag, String)> {
    let now = Instant::now();
    s.lagging
        .iter()
        .filter(|(rule, _, at)| {
            let r = &s.lags[*rule];
            r.list == op && now.duration_since(*at) < r.window
        })
        .map(|(rule, id, _)| (s.lags[*rule].clone(), id.clone()))
        .collect()
}

/// NotFound for a describe by id of a resource that is still lagging.
fn lag_not_found(req: &Request, op: &str, shared: &Mutex<Shared>) -> Option<Response> {
    let mut s = shared.lock().unwrap();
    let body = String::from_utf8_lossy(&req.body).to_string();
    let (rule, id) = lagging_for(&s, op)
        .into_iter()
        .find(|(_, id)| body.split('&').any(|p| p.ends_with(&format!("={id}"))))?;
    s.lag_hidden += 1;
    let f = ec2_error(&rule.not_found, &format!("The id '{id}' does not exist"));
    Some(closing(f.status, &f.headers, f.body))
}

/// After a successful answer: a create starts its resource's lag; a list leaves out the
/// items of the resources still lagging.
fn lag_after(op: &str, payload: Vec<u8>, shared: &Mutex<Shared>) -> Vec<u8> {
    let mut s = shared.lock().unwrap();
    let text = String::from_utf8_lossy(&payload).to_string();
    let now = Instant::now();
    let created: Vec<(usize, String)> = s
        .lags
        .iter()
        .enumerate()
        .filter(|(_, r)| r.create == op)
        .filter_map(|(i, r)| {
            let open = format!("<{}>", r.id_tag);
            let id = text.split(&open).nth(1)?.split('<').next()?.to_string();
            Some((i, id))
        })
        .collect();
    for (i, id) in created {
        s.lagging.push((i, id, now));
    }
    let hide = lagging_for(&s, op);
    if hide.is_empty() {
        return payload;
    }
    let mut out = text;
    for (rule, id) in hide {
        let marker = format!("<{0}>{id}</{0}>", rule.id_tag);
        let (dropped, kept) = drop_items(&out, &rule.set_tag, &marker);
        if dropped > 0 {
            s.lag_hidden += 1;
            out = kept;
        }
    }
    out.into_bytes()
}

/// `xml` without the top-level `<item>`s of `<set_tag>` that contain `marker` (items
/// nest: depth is counted); how many were dropped.
fn drop_items(xml: &str, set_tag: &str, marker: &str) -> (usize, String) {
    let (open, close) = (format!("<{set_tag}>"), format!("</{set_tag}>"));
    let (Some(start), Some(end)) = (xml.find(&open), xml.rfind(&close)) else {
        return (0, xml.to_string());
    };
    let inner = &xml[start + open.len()..end];
    let mut kept = String::new();
    let mut dropped = 0;
    let mut rest = inner;
    while let Some(at) = rest.find("<item>") {
        kept.push_str(&rest[..at]);
        let mut depth = 0;
        let mut i = at;
        let item_end = loop {
            let next_open = rest[i..].find("<item>").map(|n| i + n);
            let next_close = rest[i..].find("</item>").map(|n| i + n);
            match (next_open, next_close) {
                (Some(o), Some(c)) if o < c => {
                    depth += 1;
                    i = o + "<item>".len();
                }
                (_, Some(c)) => {
                    depth -= 1;
                    i = c + "</item>".len();
                    if depth == 0 {
                        break i;
                    }
                }
                _ => break rest.len(),
            }
        };
        let item = &rest[at..item_end];
        if item.contains(marker) {
            dropped += 1;
        } else {
            kept.push_str(item);
        }
        rest = &rest[item_end..];
    }
    kept.push_str(rest);
    let out = format!("{}{open}{kept}{}", &xml[..start], &xml[end..]);
    (dropped, out)
}

/// The fault of an [`After`] rule whose window is open for `op`, counted.
fn after_fault(s: &mut Shared, op: &str) -> Option<Fault> {
    let now = Instant::now();
    let open = s.afters.iter().enumerate().find(|(i, rule)| {
        op.starts_with(&rule.operation)
            && s.triggered
                .get(i)
                .is_some_and(|at| now.duration_since(*at) < rule.window)
    });
    let fault = open.map(|(_, rule)| rule.fault.clone())?;
    *s.after_injected.entry(op.to_string()).or_default() += 1;
    Some(fault)
}

/// The answer to `op` after the [`Linger`] rules: a kept answer while a rule's window is
/// open; otherwise moto's, kept when it contains a rule's `from`.
fn linger(shared: &Mutex<Shared>, op: &str, status: u16, payload: Vec<u8>) -> (u16, Vec<u8>) {
    let mut s = shared.lock().unwrap();
    let now = Instant::now();
    for i in 0..s.lingers.len() {
        if status < 300 && op.starts_with(&s.lingers[i].trigger) {
            s.linger_at.insert(i, now);
        }
    }
    for i in 0..s.lingers.len() {
        let rule = s.lingers[i].clone();
        if !op.starts_with(&rule.operation) {
            continue;
        }
        let open = s
            .linger_at
            .get(&i)
            .is_some_and(|at| now.duration_since(*at) < rule.window);
        if open && let Some(kept) = s.linger_kept.get(&i) {
            let text = String::from_utf8_lossy(kept).replace(&rule.from, &rule.to);
            s.lingered += 1;
            return (200, text.into_bytes());
        }
        if !open && status < 300 && String::from_utf8_lossy(&payload).contains(&rule.from) {
            s.linger_kept.insert(i, payload.clone());
        }
    }
    (status, payload)
}

/// Opens the window of every [`After`] rule that `op`, answered with `status`, triggers.
fn trigger_afters(shared: &Mutex<Shared>, op: &str, status: u16) {
    if status >= 300 {
        return;
    }
    let mut s = shared.lock().unwrap();
    let now = Instant::now();
    let hits: Vec<usize> = (0..s.afters.len())
        .filter(|i| op.starts_with(&s.afters[*i].trigger))
        .collect();
    for i in hits {
        s.triggered.insert(i, now);
    }
}

/// API Gateway's `429 TooManyRequestsException` when the request is over the rate.
fn rate_limited(s: &mut Shared, req: &Request) -> Option<Fault> {
    let service = service(req);
    let bucket = s.rate.as_mut()?;
    if bucket.limit.service != service {
        return None;
    }
    let now = Instant::now();
    let refill = now.duration_since(bucket.at).as_secs_f64() * bucket.limit.per_second;
    bucket.tokens = (bucket.tokens + refill).min(bucket.limit.burst);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        return None;
    }
    s.throttled += 1;
    let mut fault = rest_json_error(429, "TooManyRequestsException", "Too Many Requests");
    fault
        .headers
        .push(("Retry-After".to_string(), "1".to_string()));
    Some(fault)
}

async fn serve(
    req: Request,
    upstream: &str,
    client: &Upstream,
    shared: &Mutex<Shared>,
) -> Response {
    let op = operation(&req);
    let (fault, latency, delay, ordinal) = {
        let mut s = shared.lock().unwrap();
        *s.counts.entry(op.clone()).or_default() += 1;
        if let Some(bodies) = s.recording.get_mut(&op) {
            bodies.push(String::from_utf8_lossy(&req.body).into_owned());
        }
        let injected = s.injected.get(&op).copied().unwrap_or(0);
        let mut fault = s
            .faults
            .iter()
            .find(|f| f.operation == op && injected < f.times)
            .cloned();
        if fault.is_some() {
            *s.injected.entry(op.clone()).or_default() += 1;
        } else if let Some(f) = after_fault(&mut s, &op) {
            fault = Some(f);
        } else if let Some(f) = rate_limited(&mut s, &req) {
            fault = Some(f);
        } else if let Some((p, seed)) = s.transient {
            let next = xorshift(seed);
            s.transient = Some((p, next));
            if (next % 10_000) as f64 / 10_000.0 < p {
                s.transient_injected += 1;
                fault = Some(transient_error(&req, next));
            }
        }
        let mut ordinal = None;
        if fault.is_none() && is_mutating(&op) {
            s.mutating += 1;
            ordinal = Some(s.mutating);
        }
        fire(&mut s, |w| matches!(w, When::OnRequest(o) if *o == op));
        (fault, s.latency, s.delays.get(&op).copied(), ordinal)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(f) = fault {
        return closing(f.status, &f.headers, f.body);
    }
    if let Some(denied) = s3_owner_check(&req, shared) {
        return denied;
    }
    if let Some(refused) = lambda_enis_before(&req, &op, upstream, client, shared).await {
        return refused;
    }
    if let Some(unknown) = lag_not_found(&req, &op, shared) {
        return unknown;
    }
    let model = shared.lock().unwrap().backup.clone();
    let modelled = match model {
        Some(model) if service(&req) == "backup" => {
            let moto = |probe: Request| async move {
                let (status, headers, body) = forward(&probe, upstream, client).await.ok()?;
                Some(Response {
                    status,
                    headers,
                    body,
                })
            };
            backup::answer(&model, &req, moto).await
        }
        _ => None,
    };
    let answer = match modelled {
        Some(r) => Ok((r.status, r.headers, r.body)),
        None => forward(&req, upstream, client).await,
    };
    let (status, headers, mut payload) = match answer {
        Ok(answer) => answer,
        Err(e) => return closing(502, &[], format!("test proxy: moto did not answer: {e}")),
    };
    trigger_afters(shared, &op, status);
    if status < 300 {
        payload = lambda_enis_after(&req, &op, payload, upstream, client, shared).await;
        payload = lag_after(&op, payload, shared);
    }
    let (status, mut payload) = linger(shared, &op, status, payload);
    if let Some(n) = ordinal {
        let mut s = shared.lock().unwrap();
        let before = s.triggers.len();
        fire(&mut s, |w| matches!(w, When::AfterMutating(m) if *m == n));
        if s.triggers.len() < before {
            s.fired.push(op.clone());
        }
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    // Apply a rewrite, and tell the client this connection ends here.
    {
        let mut s = shared.lock().unwrap();
        let done = s.rewritten.get(&op).copied().unwrap_or(0);
        let text = String::from_utf8_lossy(&payload).to_string();
        let rule = s
            .rewrites
            .iter()
            .find(|r| r.operation == op && done < r.times && text.contains(&r.from))
            .cloned();
        if let Some(r) = rule {
            payload = text.replace(&r.from, &r.to).into_bytes();
            *s.rewritten.entry(op.clone()).or_default() += 1;
        }
        let text = String::from_utf8_lossy(&payload).to_string();
        let now = Instant::now();
        let holding: Vec<(usize, Hold)> = s
            .holds
            .iter()
            .cloned()
            .enumerate()
            .filter(|(_, h)| op.starts_with(&h.operation) && text.contains(&h.from))
            .collect();
        for (i, h) in holding {
            let since = *s.first_seen.entry((i, op.clone())).or_insert(now);
            if now.duration_since(since) < h.hold {
                payload = String::from_utf8_lossy(&payload)
                    .replace(&h.from, &h.to)
                    .into_bytes();
                *s.rewritten.entry(op.clone()).or_default() += 1;
            }
        }
    }
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(k, _)| k != "connection" && k != "content-length")
        .collect();
    *shared.lock().unwrap().answered.entry(op).or_default() += 1;
    closing(status, &headers, payload)
}

/// Sends every pending trigger whose condition holds, once.
fn fire(s: &mut Shared, hit: impl Fn(&When) -> bool) {
    let (now, later): (Vec<Trigger>, Vec<Trigger>) =
        s.triggers.drain(..).partition(|t| hit(&t.when));
    s.triggers = later;
    for t in now {
        // SAFETY: sends a signal to a process the test started; no memory is touched.
        unsafe {
            libc::kill(t.pid as libc::pid_t, t.signal);
        }
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The SigV4 credential scope's field `n` (2: the region, 3: the service).
pub(crate) fn scope(req: &Request, n: usize) -> Option<String> {
    req.header("authorization")?
        .split("Credential=")
        .nth(1)?
        .split('/')
        .nth(n)
        .map(str::to_string)
}

/// The service a request is signed for, from the SigV4 credential scope.
fn service(req: &Request) -> String {
    scope(req, 3).unwrap_or_default()
}

/// A transient error as the service would send it: a throttling error in the service's
/// protocol (EC2 XML, query XML, JSON `__type`, REST-JSON header, S3 XML), or a 500/503.
fn transient_error(req: &Request, random: u64) -> Fault {
    let json_rpc = req.headers.contains_key("x-amz-target");
    let service = service(req);
    let server_error = random.is_multiple_of(3);
    let (status, code) = match (server_error, random.is_multiple_of(2)) {
        (true, true) => (500, "InternalError"),
        (true, false) => (503, "ServiceUnavailable"),
        (false, _) => match service.as_str() {
            "ec2" => (503, "RequestLimitExceeded"),
            "s3" => (503, "SlowDown"),
            "lambda" | "apigateway" => (429, "TooManyRequestsException"),
            _ if json_rpc => (400, "ThrottlingException"),
            _ => (400, "Throttling"),
        },
    };
    let message = "Rate exceeded (injected by the test proxy)";
    let (content_type, mut headers, body) = if json_rpc {
        (
            "application/x-amz-json-1.0",
            vec![],
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        )
    } else {
        match service.as_str() {
            "ec2" => (
                "text/xml",
                vec![],
                format!(
                    "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>injected</RequestID></Response>"
                ),
            ),
            "s3" => (
                "application/xml",
                vec![],
                format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>"),
            ),
            "lambda" | "apigateway" => (
                "application/json",
                vec![("x-amzn-ErrorType".to_string(), code.to_string())],
                format!(r#"{{"message":"{message}"}}"#),
            ),
            _ => (
                "text/xml",
                vec![],
                format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
                ),
            ),
        }
    };
    headers.push(("Content-Type".to_string(), content_type.to_string()));
    Fault {
        operation: String::new(),
        times: 1,
        status,
        headers,
        body,
    }
}

// ---- S3 bucket owners: S3's `ExpectedBucketOwner` check, which moto ignores ----------
//
// A test says "bucket X is owned by account N" ([`Proxy::set_bucket_owner`]); the proxy
// then answers an S3 request to X whose `x-amz-expected-bucket-owner` header names
// another account with S3's 403 Access Denied, as S3 does: "If the bucket owner doesn't
// match the account ID that you specified, then the request fails with an HTTP 403
// (Access Denied) error." A request without the header is not checked (S3 checks only
// the owner a request names).
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html
//
// It also records every S3 request (path-style on 127.0.0.1: `/<bucket>[/<key>]`): its
// operation and the owner it expected, if any ([`Proxy::s3_requests`]).

/// One S3 request as the proxy saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct S3Request {
    /// `CreateBucket`, `PutObject`, ... (see [`s3_operation`]).
    pub operation: String,
    /// The bucket the path names; empty for `ListBuckets`.
    pub bucket: String,
    /// The `x-amz-expected-bucket-owner` header's value, if it was sent.
    pub expected_owner: Option<String>,
}

#[derive(Default)]
struct S3Owners {
    owners: BTreeMap<String, String>,
    seen: Vec<S3Request>,
    denied: usize,
}

impl Proxy {
    /// Plays S3's bucket owner condition: `bucket` belongs to `account`.
    pub fn set_bucket_owner(&self, bucket: &str, account: &str) {
        self.shared
            .lock()
            .unwrap()
            .s3_owners
            .owners
            .insert(bucket.to_string(), account.to_string());
    }

    /// Every S3 request so far, in order.
    pub fn s3_requests(&self) -> Vec<S3Request> {
        self.shared.lock().unwrap().s3_owners.seen.clone()
    }

    /// How many S3 requests were refused for naming another owner.
    pub fn owner_denied(&self) -> usize {
        self.shared.lock().unwrap().s3_owners.denied
    }
}

/// An S3 REST request's operation from its method, path-style path and query: the
/// SDK's `x-id=` when it sends one, else the bucket- or object-level operation the
/// method and sub-resource name (`PUT /b` is `CreateBucket`, `GET /` `ListBuckets`;
/// the others as `PUT ?tagging`).
pub fn s3_operation(method: &str, target: &str) -> (String, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    if let Some(id) = query.split('&').find_map(|p| p.strip_prefix("x-id=")) {
        return (id.to_string(), bucket.to_string());
    }
    let sub = query
        .split('&')
        .map(|p| p.split('=').next().unwrap_or_default())
        .find(|p| !p.is_empty());
    let op = match (method, bucket.is_empty(), key.is_empty(), sub) {
        ("GET", true, _, _) => "ListBuckets".to_string(),
        ("PUT", false, true, None) => "CreateBucket".to_string(),
        ("DELETE", false, true, None) => "DeleteBucket".to_string(),
        ("HEAD", false, true, None) => "HeadBucket".to_string(),
        ("GET", false, true, None) => "ListObjects".to_string(),
        ("HEAD", false, false, _) => "HeadObject".to_string(),
        ("GET", false, false, _) => "GetObject".to_string(),
        ("PUT", false, false, _) => "PutObject".to_string(),
        ("DELETE", false, false, _) => "DeleteObject".to_string(),
        (m, _, _, Some(sub)) => format!("{m} ?{sub}"),
        (m, _, _, None) => format!("{m} /{path}"),
    };
    (op, bucket.to_string())
}

/// Records an S3 request; S3's 403 answer when it expects another owner than the
/// bucket's.
fn s3_owner_check(req: &Request, shared: &Mutex<Shared>) -> Option<Response> {
    if service(req) != "s3" {
        return None;
    }
    let (operation, bucket) = s3_operation(&req.method, &req.target);
    let expected_owner = req
        .header("x-amz-expected-bucket-owner")
        .map(|v| v.trim().to_string());
    let mut s = shared.lock().unwrap();
    let owner = s.s3_owners.owners.get(&bucket).cloned();
    s.s3_owners.seen.push(S3Request {
        operation,
        bucket,
        expected_owner: expected_owner.clone(),
    });
    let (Some(owner), Some(expected)) = (owner, expected_owner) else {
        return None;
    };
    if owner == expected {
        return None;
    }
    s.s3_owners.denied += 1;
    // The region from the SigV4 scope: S3's 403 to HeadBucket names the bucket's region.
    let region = scope(req, 2).unwrap_or_else(|| "us-east-1".to_string());
    // A HEAD answer has no body; the others carry S3's XML error.
    let body = if req.method == "HEAD" {
        String::new()
    } else {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>proxy</RequestId><HostId>proxy</HostId></Error>".to_string()
    };
    let headers = [
        ("Content-Type", "application/xml".to_string()),
        ("x-amz-bucket-region", region),
        ("x-amz-request-id", "proxy".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    Some(closing(403, &headers, body))
}
