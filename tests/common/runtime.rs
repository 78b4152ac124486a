//! The payment functions' real binaries under a minimal AWS Lambda Runtime API: the
//! binaries are built once per test process, each runs as a child process with a clean
//! environment, and a local server speaks `/2018-06-01/runtime/invocation/next` (a long
//! poll), `…/{id}/response`, `…/{id}/error` and `/runtime/init/error`, recording what the
//! function reports. The server is payctl's own (`payctl::local::http`): the functions
//! are under test here, not the HTTP stack (which has its own tests).

use super::REGION;
use payctl::local::http::{self, Request, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
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
        let task = http::serve(listener, move |req| {
            let shared = shared.clone();
            async move { route(req, &shared).await }
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

async fn route(req: Request, shared: &Shared) -> Response {
    const PREFIX: &str = "/2018-06-01/runtime/";
    let json = |status: u16, body: &str| {
        Response::new(status, body).header("content-type", "application/json")
    };
    let accepted = || json(202, r#"{"status":"OK"}"#);
    let not_found = || json(404, r#"{"error":"not_found"}"#);
    let path = req.path().to_string();
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let error_type = req
        .header("lambda-runtime-function-error-type")
        .unwrap_or_default()
        .to_string();
    match (req.method.as_str(), rest) {
        ("GET", "invocation/next") => {
            // Long poll: hold the request until an event is queued (or the test ends).
            let Some((id, event)) = shared.events.lock().await.recv().await else {
                return json(500, r#"{"error":"stopping"}"#);
            };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            json(200, &event)
                .header("Lambda-Runtime-Aws-Request-Id", id)
                .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                .header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    format!("arn:aws:lambda:{REGION}:123456789012:function:payment-rt"),
                )
                .header(
                    "Lambda-Runtime-Trace-Id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                )
        }
        ("POST", "init/error") => {
            let _ = shared.recorded.send(Recorded::Error {
                path: path.clone(),
                error_type,
                body,
            });
            accepted()
        }
        ("POST", rest) if rest.starts_with("invocation/") => {
            let tail = &rest["invocation/".len()..];
            if let Some(id) = tail.strip_suffix("/response") {
                let _ = shared.recorded.send(Recorded::Response {
                    id: id.to_string(),
                    body,
                });
                accepted()
            } else if tail.ends_with("/error") {
                let _ = shared.recorded.send(Recorded::Error {
                    path: path.clone(),
                    error_type,
                    body,
                });
                accepted()
            } else {
                not_found()
            }
        }
        _ => not_found(),
    }
}
