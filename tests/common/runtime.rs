//! The payment functions' real binaries under a minimal AWS Lambda Runtime API: the
//! binaries are built once per test process, each runs as a child process with a clean
//! environment, and a local server speaks `/2018-06-01/runtime/invocation/next` (a long
//! poll), `…/{id}/response`, `…/{id}/error` and `/runtime/init/error`, recording what the
//! function reports.

use super::REGION;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

const WAIT: Duration = Duration::from_secs(30);

/// The three payment functions' binaries, built once per test process with one `cargo
/// build` (so a test binary that runs several functions pays for one build).
static BINARIES: OnceLock<Result<BTreeMap<String, PathBuf>, String>> = OnceLock::new();

pub const FUNCTIONS: [&str; 3] = ["validator", "processor", "audit-logger"];

/// The path of function `name`'s host binary (built on first use; blocking).
pub fn function_binary(name: &str) -> PathBuf {
    match BINARIES.get_or_init(build_functions) {
        Ok(bins) => bins
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not one of {FUNCTIONS:?}")),
        Err(e) => panic!("{e}"),
    }
}

fn build_functions() -> Result<BTreeMap<String, PathBuf>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["build", "--message-format=json-render-diagnostics"];
    for f in FUNCTIONS {
        args.extend(["-p", f, "--bin", f]);
    }
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let reported: BTreeMap<String, PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_string();
            let exe = m["executable"].as_str()?;
            Some((name, PathBuf::from(exe)))
        })
        .collect();
    let mut bins = BTreeMap::new();
    for f in FUNCTIONS {
        let bin = reported.get(f).cloned().unwrap_or_else(|| {
            let target = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(dir) => root.join(dir),
                None => root.join("target"),
            };
            target
                .join("debug")
                .join(format!("{f}{}", std::env::consts::EXE_SUFFIX))
        });
        if !bin.is_file() {
            return Err(format!("{f} binary not found at {}", bin.display()));
        }
        bins.insert(f.to_string(), bin);
    }
    Ok(bins)
}

/// The running function; killed and reaped when dropped, also when the test panics.
pub struct Lambda {
    pub child: Child,
    name: String,
    logs: tempfile::TempDir,
}

impl Lambda {
    /// Starts function `name` against the Runtime API at `runtime_api` and the emulator
    /// at `moto`, with a clean environment plus `env` (the deployment's variables).
    pub fn spawn(name: &str, runtime_api: &str, moto: &str, env: &[(&str, &str)]) -> Lambda {
        let bin = function_binary(name);
        let logs = tempfile::tempdir().unwrap();
        let file = |name: &str| std::fs::File::create(logs.path().join(name)).unwrap();
        let child = Command::new(&bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", logs.path())
            .env("AWS_CONFIG_FILE", logs.path().join("no-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                logs.path().join("no-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .envs(env.iter().copied())
            .env("AWS_ENDPOINT_URL", moto)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("payment-{name}-rt"))
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
            .stdin(Stdio::null())
            .stdout(file("stdout.log"))
            .stderr(file("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Lambda {
            child,
            name: name.to_string(),
            logs,
        }
    }

    /// What the function printed so far (tracing goes to stdout), for failure messages.
    pub fn output(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default();
        format!(
            "--- {name} stdout ---\n{}--- {name} stderr ---\n{}",
            read("stdout.log"),
            read("stderr.log"),
            name = self.name,
        )
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// A minimal Lambda Runtime API

pub enum Recorded {
    Response {
        id: String,
        body: String,
    },
    Error {
        path: String,
        error_type: String,
        body: String,
    },
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recorded::Response { id, body } => write!(f, "a response to {id}: {body}"),
            Recorded::Error {
                path,
                error_type,
                body,
            } => write!(f, "an error on {path} (type {error_type:?}): {body}"),
        }
    }
}

struct Shared {
    events: Mutex<mpsc::UnboundedReceiver<(String, String)>>,
    recorded: mpsc::UnboundedSender<Recorded>,
}

pub struct RuntimeApi {
    /// `host:port`, the form `AWS_LAMBDA_RUNTIME_API` takes.
    pub addr: String,
    events: mpsc::UnboundedSender<(String, String)>,
    pub recorded: mpsc::UnboundedReceiver<Recorded>,
    invocations: usize,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (events, events_rx) = mpsc::unbounded_channel();
        let (recorded_tx, recorded) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: Mutex::new(events_rx),
            recorded: recorded_tx,
        });
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((conn, _)) = listener.accept().await {
                let shared = shared.clone();
                conns.spawn(async move {
                    let _ = serve(conn, &shared).await;
                });
            }
        });
        RuntimeApi {
            addr,
            events,
            recorded,
            invocations: 0,
            task,
        }
    }

    /// Queues an event for `/next` and returns its request id.
    pub fn invoke(&mut self, event: &Value) -> String {
        self.invocations += 1;
        let id = format!("rt-req-{:04}", self.invocations);
        self.events.send((id.clone(), event.to_string())).unwrap();
        id
    }

    /// Waits (bounded) for the function's response to `id`, failing with its output when
    /// it reports an error instead, exits, or stays silent.
    pub async fn response(&mut self, id: &str, lambda: &mut Lambda) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), self.recorded.recv()).await {
                Ok(Some(Recorded::Response { id: got, body })) => {
                    assert_eq!(got, id, "response for another invocation: {body}");
                    return serde_json::from_str(&body).unwrap_or_else(|e| {
                        panic!(
                            "response to {id} is not JSON ({e}): {body}\n{}",
                            lambda.output()
                        )
                    });
                }
                Ok(Some(error @ Recorded::Error { .. })) => {
                    panic!(
                        "the function reported {error} while {id} was expected\n{}",
                        lambda.output()
                    )
                }
                Ok(None) => panic!("the runtime API server stopped\n{}", lambda.output()),
                Err(_) => {
                    if let Ok(Some(status)) = lambda.child.try_wait() {
                        panic!(
                            "the function exited ({status}) before answering {id}\n{}",
                            lambda.output()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "no response to {id} within {WAIT:?}\n{}",
                        lambda.output()
                    );
                }
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        // Ends the accept loop and every connection, including a held long poll.
        self.task.abort();
    }
}

struct HttpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One kept-alive connection: requests are answered in turn until the client closes it
/// (or asks to with `Connection: close`).
async fn serve(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf).await? {
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let Some((status, headers, body)) = route(req, shared).await else {
            return Ok(());
        };
        let reason = match status {
            200 => "OK",
            202 => "Accepted",
            _ => "Not Found",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(body.as_bytes()).await?;
        conn.flush().await?;
        if close {
            return conn.shutdown().await;
        }
    }
    Ok(())
}

async fn route(req: HttpRequest, shared: &Shared) -> Option<(u16, Vec<(String, String)>, String)> {
    const PREFIX: &str = "/2018-06-01/runtime/";
    let accepted = Some((202, Vec::new(), r#"{"status":"OK"}"#.to_string()));
    let rest = req.path.strip_prefix(PREFIX).unwrap_or_default();
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let error_type = req
        .header("lambda-runtime-function-error-type")
        .unwrap_or_default()
        .to_string();
    match (req.method.as_str(), rest) {
        ("GET", "invocation/next") => {
            // Long poll: hold the request until an event is queued (or the test ends).
            let (id, event) = shared.events.lock().await.recv().await?;
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            let headers =
                vec![
                ("Lambda-Runtime-Aws-Request-Id".to_string(), id),
                ("Lambda-Runtime-Deadline-Ms".to_string(), deadline.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn".to_string(),
                    format!("arn:aws:lambda:{REGION}:123456789012:function:payment-rt"),
                ),
                (
                    "Lambda-Runtime-Trace-Id".to_string(),
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                        .to_string(),
                ),
            ];
            Some((200, headers, event))
        }
        ("POST", "init/error") => {
            let _ = shared.recorded.send(Recorded::Error {
                path: req.path.clone(),
                error_type,
                body,
            });
            accepted
        }
        ("POST", rest) if rest.starts_with("invocation/") => {
            let tail = &rest["invocation/".len()..];
            if let Some(id) = tail.strip_suffix("/response") {
                let _ = shared.recorded.send(Recorded::Response {
                    id: id.to_string(),
                    body,
                });
                accepted
            } else if tail.ends_with("/error") {
                let _ = shared.recorded.send(Recorded::Error {
                    path: req.path.clone(),
                    error_type,
                    body,
                });
                accepted
            } else {
                Some((404, Vec::new(), r#"{"error":"not_found"}"#.to_string()))
            }
        }
        _ => Some((404, Vec::new(), r#"{"error":"not_found"}"#.to_string())),
    }
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = conn.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(buf: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    buf.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Reads one request from `buf` + the connection (Content-Length or chunked body) and
/// leaves any bytes after it in `buf`. `None` when the client closed between requests.
async fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<HttpRequest>> {
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-request");
    let head_end = loop {
        if let Some(p) = find(buf, 0, b"\r\n\r\n") {
            break p + 4;
        }
        if read_more(conn, buf).await? == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(eof()) };
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let mut pos = head_end;
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(e) = find(buf, pos, b"\r\n") {
                    break e;
                }
                if read_more(conn, buf).await? == 0 {
                    return Err(eof());
                }
            };
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers (ignored), up to the empty line.
                loop {
                    let e = loop {
                        if let Some(e) = find(buf, pos, b"\r\n") {
                            break e;
                        }
                        if read_more(conn, buf).await? == 0 {
                            return Err(eof());
                        }
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
                if read_more(conn, buf).await? == 0 {
                    return Err(eof());
                }
            }
            req.body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else {
        let length: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < pos + length {
            if read_more(conn, buf).await? == 0 {
                return Err(eof());
            }
        }
        req.body = buf[pos..pos + length].to_vec();
        pos += length;
    }
    buf.drain(..pos);
    Ok(Some(req))
}
