//! `payctl local start-api` end to end: the stack is stood up on a moto server with the
//! real `payctl up`, then the real `payctl local start-api` serves it with the functions'
//! host binaries (built once per run, `common::runtime`) and a real PostgreSQL
//! (`common::postgres`), reached through a small TCP proxy the tests can cut or hold.
//! Every check reads back what the emulator and PostgreSQL hold, or what the operating
//! system says about processes.

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::postgres::TestDb;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// A PostgreSQL proxy the tests can cut (refuse connections) or hold (accept and never
// answer), to make the database fail transiently or hang.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Pass,
    Refuse,
    Hold,
}

struct PgProxy {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    async fn start(target: (String, u16), mode: Mode) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(mode));
        let shared = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mode = *shared.lock().unwrap();
                let target = target.clone();
                match mode {
                    Mode::Refuse => drop(conn),
                    Mode::Hold => {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(120)).await;
                            drop(conn);
                        });
                    }
                    Mode::Pass => {
                        tokio::spawn(async move {
                            if let Ok(mut upstream) = TcpStream::connect(target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                            }
                        });
                    }
                }
            }
        });
        PgProxy { port, mode, task }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn url(&self, db: &TestDb) -> String {
        let auth = if db.password.is_empty() {
            db.user.clone()
        } else {
            format!("{}:{}", db.user, db.password)
        };
        format!("postgres://{auth}@127.0.0.1:{}/{}", self.port, db.name)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// The running `payctl local start-api`.

struct LocalApi {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    log: Arc<Mutex<String>>,
}

impl LocalApi {
    /// Started with `--poll-event-sources`: the stream and queue paths run too.
    fn start(stack: &Stack, database_url: &str) -> LocalApi {
        Self::start_with(stack, database_url, true)
    }

    fn start_with(stack: &Stack, database_url: &str, poll: bool) -> LocalApi {
        let bin_dir = common::runtime::function_binary("validator")
            .parent()
            .unwrap()
            .to_path_buf();
        let bin_dir = bin_dir.to_str().unwrap();
        let mut args = vec![
            "local",
            "start-api",
            "--port",
            "0",
            "--bin-dir",
            bin_dir,
            "--database-url",
            database_url,
        ];
        if poll {
            args.push("--poll-event-sources");
        }
        let mut child = stack.spawn_via(&stack.moto.endpoint, &args, &[]);
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let started = Instant::now();
        let addr = loop {
            let text = log.lock().unwrap().clone();
            if let Some(rest) = text.split("listens on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("payctl local start-api exited ({status}):\n{text}");
            }
            assert!(
                started.elapsed() < WAIT,
                "payctl local start-api did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        LocalApi { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has `n` lines "<function>: started (pid N": the pids, in order.
    fn pids(&self, function: &str, n: usize) -> Vec<u32> {
        let started = Instant::now();
        loop {
            let needle = format!("{function}: started (pid ");
            let pids: Vec<u32> = self
                .log()
                .split(&needle)
                .skip(1)
                .filter_map(|rest| rest.split(',').next()?.parse().ok())
                .collect();
            if pids.len() >= n {
                return pids;
            }
            assert!(
                started.elapsed() < WAIT,
                "no {n} starts of {function}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP request (a new connection each time); the status and the body as text.
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(key) = key {
            req.push_str(&format!("x-api-key: {key}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let mut conn = TcpStream::connect(&self.addr).await.unwrap();
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(WAIT, conn.read_to_end(&mut raw))
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} {path}:\n{}", self.log()))
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_string())
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, text) = self.call(method, path, Some(key), body).await;
        let v = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{method} {path} answered {status} with non-JSON ({e}): {text}\n{}",
                self.log()
            )
        });
        (status, v)
    }

    fn interrupt(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; its parent has not reaped it yet.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found.sort();
    found
}

async fn eventually<F, Fut>(what: &str, log: impl Fn() -> String, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < WAIT,
            "{what} did not happen within {WAIT:?}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Setup

/// A stack that is up, with `config` as its payctl.toml, and its API key.
fn stack_up(env: &str, config: &str) -> (Stack, String) {
    let stack = Stack::new(env);
    std::fs::write(stack.home.path().join("payctl.toml"), config).unwrap();
    stack.must(&["up"]);
    let out = stack.must(&["outputs", "--json", "--show-api-key"]);
    let outputs: Value = serde_json::from_str(&out.stdout).unwrap();
    let key = outputs["APIKey"].as_str().unwrap().to_string();
    (stack, key)
}

/// The queue's (visible, in flight) message counts.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(Q::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    let n = |k: Q| attrs.get(&k).map_or(u64::MAX, |v| v.parse().unwrap());
    (
        n(Q::ApproximateNumberOfMessages),
        n(Q::ApproximateNumberOfMessagesNotVisible),
    )
}

fn state_id(stack: &Stack, addr: &str) -> String {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
    state["resources"][addr]["id"].as_str().unwrap().to_string()
}

async fn payment_rows(db: &TestDb, id: &str) -> Vec<(i64, String)> {
    let client = db.client().await;
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('payments')::text", &[])
        .await
        .unwrap()
        .get(0);
    if exists.is_none() {
        return Vec::new();
    }
    client
        .query(
            "SELECT amount_minor, currency::text FROM payments WHERE transaction_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn item_status(db: &aws_sdk_dynamodb::Client, table: &str, id: &str) -> Option<String> {
    let out = db
        .get_item()
        .table_name(table)
        .key("transaction_id", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item()?.get("status")?.as_s().ok().cloned()
}

fn payment(id: &str) -> Value {
    json!({"transaction_id": id, "amount": "100.00", "currency": "USD", "customer_id": "cust_456"})
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_required_the_usage_plan_throttles_and_bad_setups_are_refused() {
    let (stack, key) = stack_up(
        "lkey",
        "[env.lkey]\napi_rate_limit = 1\napi_burst_limit = 2\nevent_source_mappings = false\n",
    );
    let db = TestDb::create().await;

    // Missing host binaries: one clear line naming the build command.
    let empty = tempfile::tempdir().unwrap();
    let run = stack.payctl(&[
        "local",
        "start-api",
        "--port",
        "0",
        "--bin-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!run.ok);
    assert!(
        run.error_line()
            .contains("cargo build --release -p validator -p processor -p audit-logger"),
        "{}",
        run.stderr
    );
    // No state file: refused before anything starts.
    let run = stack.payctl_via(
        &stack.moto.endpoint,
        &["local", "start-api", "--port", "0"],
        &[("PAYCTL_STATE_DIR", empty.path().to_str().unwrap())],
    );
    assert!(
        run.error_line().contains("no state for environment lkey"),
        "{}",
        run.stderr
    );

    // A message waiting on the retry queue: without --poll-event-sources the local run
    // must leave it (and the stream) alone.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk().await);
    let queue = state_id(&stack, "sqs_queue.retry");
    sqs.send_message()
        .queue_url(&queue)
        .message_body(json!({"transaction_id": "txn_live"}).to_string())
        .send()
        .await
        .unwrap();

    let proxy = PgProxy::start((db.host.clone(), db.port), Mode::Pass).await;
    let api = LocalApi::start_with(&stack, &proxy.url(&db), false);
    eventually(
        "the event source line",
        || api.log(),
        || async {
            api.log()
                .contains("payctl local: event sources: none polled")
        },
    )
    .await;

    // No key, a wrong key, an unknown route: 403 like API Gateway, no function runs.
    let (status, body) = api.call("GET", "/status", None, None).await;
    assert_eq!((status, body.as_str()), (403, r#"{"message":"Forbidden"}"#));
    let (status, _) = api
        .call(
            "POST",
            "/validate",
            Some("not-the-key"),
            Some(&payment("txn_k")),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = api.call("GET", "/nowhere", Some(&key), None).await;
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"message":"Missing Authentication Token"}"#)
    );
    assert!(
        !api.log().contains("from payment-"),
        "a function ran:\n{}",
        api.log()
    );

    // The plan allows a burst of 2 at 1 request/s. Warm the processor up, let the
    // bucket fill again, then three requests at once: one is refused.
    assert_eq!(
        api.call("GET", "/status", Some(&key), None).await.0,
        200,
        "{}",
        api.log()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (a, b, c) = tokio::join!(
        api.call("GET", "/status", Some(&key), None),
        api.call("GET", "/status", Some(&key), None),
        api.call("GET", "/status", Some(&key), None),
    );
    let mut statuses = [a.0, b.0, c.0];
    statuses.sort();
    assert_eq!(statuses, [200, 200, 429], "{}", api.log());
    let refused = [a, b, c].into_iter().find(|r| r.0 == 429).unwrap();
    assert_eq!(refused.1, r#"{"message":"Too Many Requests"}"#);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The stage prefix of the deployed URL works too.
    let (status, body) = api.json("GET", "/lkey/status", &key, None).await;
    assert_eq!(status, 200, "{body}\n{}", api.log());
    assert_eq!(body["status"], "healthy");
    let logs = api.log();
    assert!(!logs.contains(&key), "the API key was logged:\n{logs}");
    // Without --poll-event-sources the waiting message was never received: still visible,
    // nothing in flight, and the processor saw no queue event.
    assert_eq!(queue_depth(&sqs, &queue).await, (1, 0), "{logs}");
    assert!(!logs.contains("txn_live"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_validated_processed_recorded_and_audited_through_http() {
    let env = "lflow";
    let (stack, key) = stack_up(
        env,
        "[env.lflow]\naudit_bucket_tls_only = false\nevent_source_mappings = false\n",
    );
    let db = TestDb::create().await;
    let proxy = PgProxy::start((db.host.clone(), db.port), Mode::Pass).await;
    let api = LocalApi::start(&stack, &proxy.url(&db));
    let sdk = stack.sdk().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = state_id(&stack, "dynamodb_table.transactions");
    let bucket = state_id(&stack, "s3_bucket.audit");

    let (status, body) = api
        .json("POST", "/validate", &key, Some(&payment("txn_123")))
        .await;
    assert_eq!(status, 200, "{body}\n{}", api.log());
    assert_eq!(
        body,
        json!({"transaction_id": "txn_123", "status": "VALIDATED", "amount": "100.00", "currency": "USD"})
    );
    let (status, body) = api
        .json(
            "POST",
            "/process",
            &key,
            Some(&json!({"transaction_id": "txn_123"})),
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", api.log());
    assert_eq!(
        body,
        json!({"transaction_id": "txn_123", "status": "PROCESSED"})
    );
    let (status, body) = api.json("GET", "/status", &key, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["dependencies"]["postgresql"]["healthy"], true,
        "{body}"
    );

    assert_eq!(
        payment_rows(&db, "txn_123").await,
        vec![(10000, "USD".to_string())]
    );
    assert_eq!(
        item_status(&dynamo, &table, "txn_123").await.as_deref(),
        Some("PROCESSED")
    );

    // The stream path: the audit logger wrote both changes (INSERT, then MODIFY).
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let keys = || async {
        let listed = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("audit/")
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    };
    eventually(
        "two audit records",
        || api.log(),
        || async { keys().await.len() >= 2 },
    )
    .await;
    let keys = keys().await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.contains("/txn_123/")), "{keys:?}");
    let mut statuses = Vec::new();
    for k in &keys {
        let object = s3.get_object().bucket(&bucket).key(k).send().await.unwrap();
        let record: Value =
            serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
        assert_eq!(record["transaction_id"], "txn_123");
        assert_eq!(record["amount_minor"], 10000);
        statuses.push((
            record["event_name"].as_str().unwrap().to_string(),
            record["new_status"].to_string(),
        ));
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("INSERT".to_string(), r#""VALIDATED""#.to_string()),
            ("MODIFY".to_string(), r#""PROCESSED""#.to_string())
        ]
    );
    // Named on screen, and the functions' own lines carry their names.
    eventually(
        "the audit records named",
        || api.log(),
        || async {
            keys.iter().all(|k| {
                api.log()
                    .contains(&format!("audit record s3://{bucket}/{k}"))
            })
        },
    )
    .await;
    let logs = api.log();
    assert!(
        logs.contains(&format!("payment-audit-logger-{env} | ")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("payment-processor-{env} | ")),
        "{logs}"
    );
    assert!(!logs.contains(&key), "the API key was logged:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_database_failure_goes_through_the_retry_queue_and_completes() {
    let (stack, key) = stack_up(
        "lretry",
        "[env.lretry]\naudit_bucket_tls_only = false\nevent_source_mappings = false\n",
    );
    let sdk = stack.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = state_id(&stack, "sqs_queue.retry");
    // Out of band, to keep the test short: a 2-second visibility timeout on the queue
    // (payctl honours whatever the queue says; the stack's is 180 s).
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .unwrap();
    let db = TestDb::create().await;
    let proxy = PgProxy::start((db.host.clone(), db.port), Mode::Refuse).await;
    let api = LocalApi::start(&stack, &proxy.url(&db));

    let (status, _) = api
        .json("POST", "/validate", &key, Some(&payment("txn_retry")))
        .await;
    assert_eq!(status, 200, "{}", api.log());
    let (status, body) = api
        .json(
            "POST",
            "/process",
            &key,
            Some(&json!({"transaction_id": "txn_retry"})),
        )
        .await;
    assert_eq!(status, 202, "{body}\n{}", api.log());
    assert_eq!(body["status"], "RETRY_QUEUED");
    // The queue's consumer runs while the database is still down: the message fails and
    // stays on the queue.
    eventually(
        "a failed retry",
        || api.log(),
        || async { api.log().contains("reported as failed (receive 1)") },
    )
    .await;
    assert!(payment_rows(&db, "txn_retry").await.is_empty());

    proxy.set(Mode::Pass);
    eventually(
        "the payment recorded",
        || api.log(),
        || async { !payment_rows(&db, "txn_retry").await.is_empty() },
    )
    .await;
    assert_eq!(
        payment_rows(&db, "txn_retry").await,
        vec![(10000, "USD".to_string())]
    );
    let table = state_id(&stack, "dynamodb_table.transactions");
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    // The processor marks the item after it records the payment: a moment later.
    eventually(
        "the item marked PROCESSED",
        || api.log(),
        || async {
            item_status(&dynamo, &table, "txn_retry").await.as_deref() == Some("PROCESSED")
        },
    )
    .await;
    // The completed message was deleted: nothing visible, nothing in flight.
    eventually(
        "an empty retry queue",
        || api.log(),
        || async { queue_depth(&sqs, &queue).await == (0, 0) },
    )
    .await;
    assert!(
        api.log().contains("completed by payment-processor-lretry"),
        "{}",
        api.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_times_out_or_crashes_gives_502_and_is_restarted() {
    let env = "lcrash";
    let (stack, key) = stack_up(env, "");
    let function = format!("payment-processor-{env}");
    // A 3-second timeout, set out of band: payctl applies the deployed function's timeout.
    aws_sdk_lambda::Client::new(&stack.sdk().await)
        .update_function_configuration()
        .function_name(&function)
        .timeout(3)
        .send()
        .await
        .unwrap();
    let db = TestDb::create().await;
    let proxy = PgProxy::start((db.host.clone(), db.port), Mode::Pass).await;
    let api = LocalApi::start(&stack, &proxy.url(&db));
    let first = api.pids(&function, 1)[0];
    // From now on the database accepts connections and never answers.
    proxy.set(Mode::Hold);

    // (a) The database hangs: /status runs past the timeout, 502, the process is replaced.
    let started = Instant::now();
    let (status, body) = api.call("GET", "/status", Some(&key), None).await;
    let took = started.elapsed();
    assert_eq!(
        (status, body.as_str()),
        (502, r#"{"message":"Internal server error"}"#),
        "{}",
        api.log()
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert!(api.log().contains("timed out after 3s"), "{}", api.log());
    let second = api.pids(&function, 2)[1];
    assert_ne!(first, second);
    assert!(!alive(first), "the timed-out process {first} still runs");

    // (b) The process dies mid-request (killed while it waits on the database): 502 at
    // once, and it is started again.
    let kill = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        unsafe { libc::kill(second as i32, libc::SIGKILL) };
    });
    let started = Instant::now();
    let (status, _) = api.call("GET", "/status", Some(&key), None).await;
    kill.await.unwrap();
    assert_eq!(status, 502, "{}", api.log());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(api.log().contains("process crashed"), "{}", api.log());
    let third = api.pids(&function, 3)[2];
    assert!(third != second && third != first);

    // (c) The database answers again: the restarted process serves.
    proxy.set(Mode::Pass);
    let (status, body) = api.json("GET", "/status", &key, None).await;
    assert_eq!(status, 200, "{body}\n{}", api.log());
    assert_eq!(
        api.pids(&function, 3).len(),
        3,
        "restarted again:\n{}",
        api.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_every_process() {
    let env = "lstop";
    let (stack, key) = stack_up(env, "");
    let db = TestDb::create().await;
    let proxy = PgProxy::start((db.host.clone(), db.port), Mode::Pass).await;
    let mut api = LocalApi::start(&stack, &proxy.url(&db));
    let mut pids: Vec<u32> = ["validator", "processor", "audit-logger"]
        .iter()
        .map(|f| api.pids(&format!("payment-{f}-{env}"), 1)[0])
        .collect();
    pids.sort();
    // The processes payctl logged are exactly its children.
    assert_eq!(children_of(api.child.id()), pids, "{}", api.log());
    let (status, _) = api
        .json("POST", "/validate", &key, Some(&payment("txn_stop")))
        .await;
    assert_eq!(status, 200);

    api.interrupt();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = api.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "payctl did not stop:\n{}",
            api.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}\n{}", api.log());
    for pid in &pids {
        assert!(
            !alive(*pid),
            "function process {pid} still runs after Ctrl-C"
        );
    }
    assert!(
        TcpStream::connect(&api.addr).await.is_err(),
        "the port still answers"
    );
    assert!(
        api.log().contains("no function process is left running"),
        "{}",
        api.log()
    );
}
