//! A small fault-injecting HTTP proxy between payctl and the emulator (test support only).
//!
//! payctl reaches it through `AWS_ENDPOINT_URL` like any endpoint. Each request is read
//! whole, checked against the injection rules, then either answered with a canned AWS
//! error or forwarded to moto on a fresh connection (`Connection: close` both ways).
//! It counts requests per operation (the `X-Amz-Target` header, else `Action=`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

#[derive(Default)]
struct Shared {
    faults: Vec<Fault>,
    rewrites: Vec<Rewrite>,
    rewritten: BTreeMap<String, usize>,
    counts: BTreeMap<String, usize>,
    injected: BTreeMap<String, usize>,
}

pub struct Proxy {
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (s, upstream) = (s.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &s).await;
                });
            }
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

    /// Requests seen, by operation.
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

fn operation(head: &str, body: &[u8]) -> String {
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("x-amz-target")
        {
            return v.trim().rsplit('.').next().unwrap_or_default().to_string();
        }
    }
    let body = String::from_utf8_lossy(body);
    let first = head.lines().next().unwrap_or_default();
    for part in body.split('&').chain(first.split(['?', '&', ' '])) {
        if let Some(action) = part.strip_prefix("Action=") {
            return action.to_string();
        }
    }
    first.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

async fn serve(mut conn: TcpStream, upstream: &str, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    let op = operation(&head, &body);
    let fault = {
        let mut s = shared.lock().unwrap();
        *s.counts.entry(op.clone()).or_default() += 1;
        let injected = s.injected.get(&op).copied().unwrap_or(0);
        let fault = s
            .faults
            .iter()
            .find(|f| f.operation == op && injected < f.times)
            .cloned();
        if fault.is_some() {
            *s.injected.entry(op.clone()).or_default() += 1;
        }
        fault
    };
    if let Some(f) = fault {
        let mut resp = format!(
            "HTTP/1.1 {} Injected\r\nContent-Length: {}\r\nConnection: close\r\n",
            f.status,
            f.body.len()
        );
        for (k, v) in &f.headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&f.body);
        conn.write_all(resp.as_bytes()).await?;
        return conn.shutdown().await;
    }
    let mut head_out = String::new();
    for line in head.trim_end().lines() {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head_out.push_str(line);
            head_out.push_str("\r\n");
        }
    }
    head_out.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(head_out.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    // Apply a rewrite, fix the length, and tell the client this connection ends here.
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        let headers = String::from_utf8_lossy(&response[..end]).to_string();
        let mut payload = response[end + 4..].to_vec();
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
        }
        let mut out = Vec::new();
        for line in headers.lines().filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("content-length:")
        }) {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let tail = format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            payload.len()
        );
        out.extend_from_slice(tail.as_bytes());
        out.extend_from_slice(&payload);
        response = out;
    }
    conn.write_all(&response).await?;
    conn.shutdown().await
}
