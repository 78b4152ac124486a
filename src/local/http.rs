//! A small HTTP/1.1 server for the local API, the Runtime API and the credentials
//! endpoint: keep-alive connections, `Content-Length` and chunked request bodies, one
//! request at a time per connection (what curl, browsers and the Lambda runtime client
//! send). Requests are parsed with `httparse`; bodies above [`MAX_BODY`] are refused.
//!
//! A handler is any `Fn(Request) -> Future<Output = Response>`; long polls simply take
//! their time. Every connection task is aborted when the server's task is dropped.

use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// API Gateway's payload limit (10 MB), also ample for the Runtime API.
pub const MAX_BODY: usize = 10 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query string.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: std::net::SocketAddr,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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

/// The reason phrase for the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Accepts connections on `listener` and answers each request with `handler`, until the
/// returned task is aborted (which also ends every open connection).
pub fn serve<H, F>(listener: TcpListener, handler: H) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((conn, peer)) = accepted else { continue };
                    let handler = handler.clone();
                    conns.spawn(async move {
                        if let Err(e) = connection(conn, peer, handler.as_ref()).await {
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

async fn connection<H, F>(
    mut conn: TcpStream,
    peer: std::net::SocketAddr,
    handler: &H,
) -> std::io::Result<()>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&mut conn, &mut buf, peer).await {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(ReadError::TooLarge) => {
                let resp = Response::json(413, &serde_json::json!({"message": "Request Too Long"}));
                return write_response(&mut conn, &resp, true).await;
            }
            Err(ReadError::Malformed(why)) => {
                let resp = Response::json(400, &serde_json::json!({"message": why}));
                return write_response(&mut conn, &resp, true).await;
            }
            Err(ReadError::Io(e)) => return Err(e),
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let resp = handler(req).await;
        write_response(&mut conn, &resp, close).await?;
        if close {
            return Ok(());
        }
    }
}

pub async fn write_response(
    conn: &mut TcpStream,
    resp: &Response,
    close: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        // Header values come from functions' responses: no line breaks may pass.
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n", resp.body.len()));
    head.push_str(if close {
        "connection: close\r\n\r\n"
    } else {
        "connection: keep-alive\r\n\r\n"
    });
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(&resp.body).await?;
    conn.flush().await?;
    if close {
        conn.shutdown().await?;
    }
    Ok(())
}

#[derive(Debug)]
enum ReadError {
    Io(std::io::Error),
    TooLarge,
    Malformed(&'static str),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), ReadError> {
    let mut chunk = [0u8; 16 * 1024];
    let n = conn.read(&mut chunk).await?;
    if n == 0 {
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(buf: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    buf.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Reads one request (head and body) and leaves any bytes after it in `buf`. `None`
/// when the client closed the connection between requests.
async fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: std::net::SocketAddr,
) -> Result<Option<Request>, ReadError> {
    let (head_len, method, target, headers) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (
                    len,
                    parsed.method.unwrap_or_default().to_string(),
                    parsed.path.unwrap_or_default().to_string(),
                    headers,
                );
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(ReadError::Malformed("malformed request")),
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::TooLarge);
        }
        match read_more(conn, buf).await {
            Ok(()) => {}
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return if buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Io(e))
                };
            }
            Err(e) => return Err(e),
        }
    };
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
        peer,
    };
    let mut pos = head_len;
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line_end = loop {
                if let Some(e) = find(buf, pos, b"\r\n") {
                    break e;
                }
                read_more(conn, buf).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| ReadError::Malformed("malformed chunk size"))?;
            pos = line_end + 2;
            if req.body.len() + size > MAX_BODY {
                return Err(ReadError::TooLarge);
            }
            if size == 0 {
                // Trailers (ignored), up to the empty line.
                loop {
                    let e = loop {
                        if let Some(e) = find(buf, pos, b"\r\n") {
                            break e;
                        }
                        read_more(conn, buf).await?;
                    };
                    let empty = e == pos;
                    pos = e + 2;
                    if empty {
                        break;
                    }
                }
                break;
            }
            while buf.len() < pos + size + 2 {
                read_more(conn, buf).await?;
            }
            req.body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else {
        let length: usize = match req.header("content-length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ReadError::Malformed("malformed content-length"))?,
        };
        if length > MAX_BODY {
            return Err(ReadError::TooLarge);
        }
        while buf.len() < pos + length {
            read_more(conn, buf).await?;
        }
        req.body = buf[pos..pos + length].to_vec();
        pos += length;
    }
    buf.drain(..pos);
    Ok(Some(req))
}
