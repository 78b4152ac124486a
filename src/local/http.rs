//! The HTTP/1.1 server under the local API, the Runtime API and the credentials endpoint,
//! on hyper 1 (with hyper-util's Tokio glue): the HTTP stack the AWS SDK already brings,
//! so request parsing, chunked decoding and keep-alive are hyper's, not ours.
//!
//! A handler is any `Fn(Request) -> Future<Output = Response>` and gets the request whole
//! (head and body); long polls simply take their time. Every connection task is aborted
//! when the server's task is dropped or aborted.
//!
//! Limits ([`Limits`], defaults in brackets):
//! - the request head: at most [`MAX_HEADER_BYTES`] bytes (64 KiB) and [`MAX_HEADERS`]
//!   header lines (100); hyper answers a larger head with 431 and closes the connection;
//! - the body: at most [`MAX_BODY`] (10 MB, API Gateway's payload limit). A
//!   `Content-Length` above it is answered 413 before any of the body is read; a chunked
//!   body is capped while it streams (413 once it passes the cap). Chunk-size lines and
//!   chunk extensions are bounded by hyper's decoder (a malformed or overflowing one is a
//!   400), and the whole body must arrive within [`BODY_TIMEOUT`] (60 s, else 408);
//! - `Expect: 100-continue`: hyper sends `100 Continue` when the body is first read, and
//!   the body is read only once the request passed the checks above, so a client told
//!   413 never sends its body. Any other expectation is answered 417;
//! - idle connections: a connection that has not sent a complete request head within
//!   [`IDLE_TIMEOUT`] (60 s) of opening, or of its previous response, is closed (hyper's
//!   header read timeout, which also ends a client that sends its head too slowly).
//!
//! Every refusal by the server itself closes the connection (`connection: close`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use hyper::{HeaderMap, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// API Gateway's payload limit (10 MB), also ample for the Runtime API.
pub const MAX_BODY: usize = 10 * 1024 * 1024;
/// The request line and headers, in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Header lines per request (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// How long a connection may stay without a complete request head.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the whole body of a request may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// hyper's smallest read buffer.
const MIN_BUF: usize = 8192;

/// What one server accepts; [`Limits::default`] is what every payctl server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: MAX_BODY,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
            idle_timeout: IDLE_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query string.
    pub target: String,
    /// Names are lower case (HTTP/1.1 names are case-insensitive; hyper folds them).
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: SocketAddr,
}

impl Request {
    /// The first value of header `name` (any case), if it is visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query string, without `?` (empty when there is none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON body with its content type.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Response::new(status, body.to_string()).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Accepts connections on `listener` and answers each request with `handler`, within
/// the default [`Limits`], until the returned task is aborted (which also ends every
/// open connection).
pub fn serve<H, F>(listener: TcpListener, handler: H) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    serve_with(listener, Limits::default(), handler)
}

/// [`serve`] within `limits`.
pub fn serve_with<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors, say: wait rather than spin.
                            tracing::debug!("accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let handler = handler.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move {
                            Ok::<_, Infallible>(answer(req, peer, limits, handler.as_ref()).await)
                        }
                    });
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    conns.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::trace!("connection from {peer}: {e}");
                        }
                    });
                }
                // Reap finished connections so the set does not grow.
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

/// The server's own refusal: a JSON message, and the connection ends after it.
fn refusal(status: u16, message: &str) -> hyper::Response<Full<Bytes>> {
    into_hyper(
        Response::json(status, &serde_json::json!({ "message": message }))
            .header("connection", "close"),
    )
}

/// A refusal decided from the head alone, before the body is read (and so before hyper
/// sends `100 Continue`).
fn refuse_early(req: &hyper::Request<Incoming>, limits: &Limits) -> Option<(u16, &'static str)> {
    if let Some(expect) = req.headers().get(EXPECT)
        && !expect.as_bytes().eq_ignore_ascii_case(b"100-continue")
    {
        return Some((417, "Expectation Failed"));
    }
    // hyper has checked Content-Length; the body's size hint is its value.
    let declared = req.body().size_hint().lower();
    if declared > limits.max_body as u64 {
        return Some((413, "Request Too Long"));
    }
    None
}

async fn answer<H, F>(
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    limits: Limits,
    handler: &H,
) -> hyper::Response<Full<Bytes>>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    if let Some((status, message)) = refuse_early(&req, &limits) {
        return refusal(status, message);
    }
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limits.max_body).collect();
    let body = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refusal(413, "Request Too Long");
        }
        Ok(Err(e)) => {
            tracing::debug!("request body from {peer}: {e}");
            return refusal(400, "Malformed request body");
        }
        Err(_) => return refusal(408, "Request Timeout"),
    };
    let target = match parts.uri.path_and_query() {
        Some(p) => p.as_str().to_string(),
        None => parts.uri.to_string(),
    };
    let request = Request {
        method: parts.method.as_str().to_string(),
        target,
        headers: parts.headers,
        body: Vec::from(body),
        peer,
    };
    into_hyper(handler(request).await)
}

/// The handler's response for hyper. Header names or values that HTTP does not allow
/// (line breaks, say, from a function's response) are left out; the framing headers are
/// hyper's to write.
fn into_hyper(resp: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() = StatusCode::from_u16(resp.status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in resp.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONNECTION && !value.as_bytes().eq_ignore_ascii_case(b"close") {
            continue;
        }
        out.headers_mut().append(name, value);
    }
    out
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
