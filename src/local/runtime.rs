//! One warm process per function behind a Lambda Runtime API that payctl serves itself.
//!
//! Each function's real `bootstrap` binary (built for this machine) runs as a child
//! process with the deployed function's environment, `AWS_LAMBDA_RUNTIME_API` pointing
//! at a Runtime API server of its own, and its output shown line by line with the
//! function's name in front. The supervisor keeps the process warm and starts it again
//! when it exits (a crash, an `init/error`) or when an invocation runs past the deployed
//! timeout (it is killed then, as Lambda does). One invocation at a time per function,
//! like one Lambda execution environment; callers queue for their turn.
//!
//! A Runtime API server belongs to one process: when the process goes, its server (and
//! with it any long poll it left open) goes too, so an event is never handed to a dead
//! process. Children run in their own process group, so a Ctrl-C on the terminal reaches
//! payctl only, and payctl stops them; on Linux they are also killed if payctl dies.

use super::http::{self, Request, Response};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

/// How long a process may take to start and ask for its first event (Lambda's init
/// phase limit).
pub const INIT_ALLOWANCE: Duration = Duration::from_secs(10);
const RESTART_MIN: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(5);
const PREFIX: &str = "/2018-06-01/runtime/";

/// What to run for one function.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The deployed function's name (`payment-validator-dev`), shown before its lines.
    pub name: String,
    pub arn: String,
    pub binary: PathBuf,
    /// The process's whole environment, except `AWS_LAMBDA_RUNTIME_API`.
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The function's response payload.
    Response(Vec<u8>),
    /// The function reported an error (`/invocation/{id}/error`).
    Error { error_type: String, body: String },
    /// The process exited while handling the event.
    Crashed(String),
    /// The event ran past the function's timeout; the process was killed.
    TimedOut(Duration),
    /// No process asked for the event in time (it keeps failing to start).
    NotStarted(String),
}

impl Outcome {
    /// A one-line description for the log.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Response(_) => "response".into(),
            Outcome::Error { error_type, .. } => format!("function error ({error_type})"),
            Outcome::Crashed(why) => format!("process crashed ({why})"),
            Outcome::TimedOut(t) => format!("timed out after {}s", t.as_secs_f64()),
            Outcome::NotStarted(why) => format!("not started ({why})"),
        }
    }
}

struct Pending {
    id: String,
    payload: Vec<u8>,
    reply: oneshot::Sender<Outcome>,
}

struct InFlight {
    id: String,
    reply: oneshot::Sender<Outcome>,
}

struct Inner {
    spec: Spec,
    /// One invocation at a time.
    turn: Mutex<()>,
    queue: mpsc::Sender<Pending>,
    next: Mutex<mpsc::Receiver<Pending>>,
    in_flight: std::sync::Mutex<Option<InFlight>>,
    /// Asks the supervisor to kill the current process (a timeout).
    kill: Notify,
    pid: AtomicU32,
}

/// A supervised function; [`Function::invoke`] runs one event in it.
#[derive(Clone)]
pub struct Function {
    inner: Arc<Inner>,
}

impl Function {
    /// Starts the supervisor (which starts the process at once) and returns the handle
    /// and the supervisor's task, which ends once `stop` turns true and the process is
    /// gone.
    pub fn start(
        spec: Spec,
        stop: watch::Receiver<bool>,
    ) -> (Function, tokio::task::JoinHandle<()>) {
        let (queue, next) = mpsc::channel(1);
        let inner = Arc::new(Inner {
            spec,
            turn: Mutex::new(()),
            queue,
            next: Mutex::new(next),
            in_flight: std::sync::Mutex::new(None),
            kill: Notify::new(),
            pid: AtomicU32::new(0),
        });
        let task = tokio::spawn(supervise(inner.clone(), stop));
        (Function { inner }, task)
    }

    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The running process's id (0 while none runs).
    pub fn pid(&self) -> u32 {
        self.inner.pid.load(Ordering::SeqCst)
    }

    /// Runs `payload` in the function and waits for its outcome (bounded by the start-up
    /// allowance plus the deployed timeout).
    pub async fn invoke(&self, payload: Vec<u8>) -> Outcome {
        let _turn = self.inner.turn.lock().await;
        let (reply, outcome) = oneshot::channel();
        let id = uuid::Uuid::new_v4().to_string();
        let pending = Pending { id, payload, reply };
        let bound = INIT_ALLOWANCE + self.inner.spec.timeout + Duration::from_secs(1);
        let run = async {
            if self.inner.queue.send(pending).await.is_err() {
                return Outcome::NotStarted("the function is stopping".into());
            }
            match outcome.await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Crashed("the event was lost with its process".into()),
            }
        };
        match tokio::time::timeout(bound, run).await {
            Ok(outcome) => outcome,
            // A queued event is skipped later: its receiver is gone.
            Err(_) => Outcome::NotStarted(format!(
                "no process took the event within {}s",
                bound.as_secs()
            )),
        }
    }
}

fn settle(inner: &Inner, id: Option<&str>, outcome: Outcome) -> bool {
    let mut slot = inner.in_flight.lock().unwrap_or_else(|e| e.into_inner());
    let matches = match (slot.as_ref(), id) {
        (Some(f), Some(id)) => f.id == id,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !matches {
        return false;
    }
    if let Some(f) = slot.take() {
        let _ = f.reply.send(outcome);
    }
    true
}

/// Starts the process, waits for it to exit (or for a kill or the stop signal), settles
/// any invocation it held, and starts it again, backing off while it keeps failing.
async fn supervise(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let name = inner.spec.name.clone();
    let mut delay = RESTART_MIN;
    while !*stop.borrow() {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{name}: cannot open a Runtime API port: {e}");
                tokio::time::sleep(RESTART_MAX).await;
                continue;
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a.to_string(),
            Err(e) => {
                tracing::error!("{name}: cannot read the Runtime API address: {e}");
                continue;
            }
        };
        let handler_inner = inner.clone();
        // A connection idles while the function handles an event: never close it then.
        let limits = http::Limits {
            idle_timeout: http::IDLE_TIMEOUT.max(inner.spec.timeout + INIT_ALLOWANCE),
            ..http::Limits::default()
        };
        let server = http::serve_with(listener, limits, move |req| {
            let inner = handler_inner.clone();
            async move { runtime_api(inner, req).await }
        });
        let mut child = match spawn(&inner.spec, &addr) {
            Ok(c) => c,
            Err(e) => {
                server.abort();
                tracing::error!("{name}: cannot start {}: {e}", inner.spec.binary.display());
                tokio::select! {
                    _ = tokio::time::sleep(RESTART_MAX) => continue,
                    _ = stop.changed() => break,
                }
            }
        };
        let pid = child.id().unwrap_or(0);
        inner.pid.store(pid, Ordering::SeqCst);
        tracing::info!("{name}: started (pid {pid}, Runtime API {addr})");
        let started = std::time::Instant::now();
        let why = tokio::select! {
            status = child.wait() => match status {
                Ok(s) => format!("exited with {s}"),
                Err(e) => format!("could not be waited for: {e}"),
            },
            _ = inner.kill.notified() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                "killed after a timeout".to_string()
            }
            _ = stop.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                server.abort();
                inner.pid.store(0, Ordering::SeqCst);
                settle(&inner, None, Outcome::Crashed("payctl is stopping".into()));
                tracing::info!("{name}: stopped (pid {pid})");
                break;
            }
        };
        server.abort();
        inner.pid.store(0, Ordering::SeqCst);
        settle(&inner, None, Outcome::Crashed(why.clone()));
        if *stop.borrow() {
            break;
        }
        // A process that lived a while gets a quick restart; a crash loop backs off.
        if started.elapsed() > Duration::from_secs(30) {
            delay = RESTART_MIN;
        }
        tracing::warn!(
            "{name}: process {pid} {why}; restarting in {}ms",
            delay.as_millis()
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
        }
        delay = (delay * 2).min(RESTART_MAX);
    }
}

fn spawn(spec: &Spec, runtime_api: &str) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&spec.binary);
    cmd.env_clear()
        .envs(&spec.env)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C reaches payctl, which stops it.
        .process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        // Killed if payctl dies without stopping it (e.g. SIGKILL).
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(show_lines(spec.name.clone(), out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(show_lines(spec.name.clone(), err));
    }
    Ok(child)
}

/// Prints each line the process writes with the function's name in front.
async fn show_lines(name: String, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{name} | {line}");
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The Runtime API: `invocation/next` (a long poll), `invocation/{id}/response`,
/// `invocation/{id}/error` and `init/error`.
async fn runtime_api(inner: Arc<Inner>, req: Request) -> Response {
    let accepted = || Response::json(202, &serde_json::json!({"status": "OK"}));
    let name = &inner.spec.name;
    let rest = req
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_string();
    match (req.method.as_str(), rest.as_str()) {
        ("GET", "invocation/next") => {
            let pending = {
                let mut next = inner.next.lock().await;
                loop {
                    match next.recv().await {
                        // The caller gave up on it (it waited too long): skip it.
                        Some(p) if p.reply.is_closed() => continue,
                        Some(p) => break p,
                        None => return Response::new(500, "stopping"),
                    }
                }
            };
            let deadline = now_ms() + inner.spec.timeout.as_millis();
            let id = pending.id.clone();
            *inner.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = Some(InFlight {
                id: id.clone(),
                reply: pending.reply,
            });
            let timer = inner.clone();
            let timer_id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timer.spec.timeout).await;
                if settle(
                    &timer,
                    Some(&timer_id),
                    Outcome::TimedOut(timer.spec.timeout),
                ) {
                    timer.kill.notify_one();
                }
            });
            let trace = format!(
                "Root=1-{:08x}-{};Sampled=0",
                now_ms() / 1000,
                &uuid::Uuid::new_v4().simple().to_string()[..24]
            );
            Response::new(200, pending.payload)
                .header("content-type", "application/json")
                .header("lambda-runtime-aws-request-id", id)
                .header("lambda-runtime-deadline-ms", deadline.to_string())
                .header("lambda-runtime-invoked-function-arn", &inner.spec.arn)
                .header("lambda-runtime-trace-id", trace)
        }
        ("POST", "init/error") => {
            let body = String::from_utf8_lossy(&req.body);
            tracing::error!(
                "{name}: initialisation failed: {}",
                crate::error::one_line(&body)
            );
            accepted()
        }
        ("POST", rest) if rest.starts_with("invocation/") => {
            let tail = &rest["invocation/".len()..];
            if let Some(id) = tail.strip_suffix("/response") {
                settle(&inner, Some(id), Outcome::Response(req.body));
                accepted()
            } else if let Some(id) = tail.strip_suffix("/error") {
                let error_type = req
                    .header("lambda-runtime-function-error-type")
                    .unwrap_or("Unhandled")
                    .to_string();
                let body = String::from_utf8_lossy(&req.body).into_owned();
                settle(&inner, Some(id), Outcome::Error { error_type, body });
                accepted()
            } else {
                Response::json(404, &serde_json::json!({"errorType": "NotFound"}))
            }
        }
        _ => Response::json(404, &serde_json::json!({"errorType": "NotFound"})),
    }
}
