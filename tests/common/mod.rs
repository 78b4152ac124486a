//! Shared harness for the integration tests: a moto server on a free port behind a
//! front (a [`proxy::Proxy`] that plays the AWS Backup parts moto lacks, see
//! [`backup`]), the real `payctl` binary pointed at the front through
//! `AWS_ENDPOINT_URL`, and SDK clients that read the emulator back independently of
//! payctl's state file.

#![allow(dead_code)]

pub mod backup;
pub mod census;
pub mod lambda_enis;
pub mod pg_cluster;
pub mod postgres;
pub mod processor_world;
pub mod proxy;
pub mod runtime;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

fn moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("PAYCTL_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
}

/// moto, and its front: every client (payctl, the SDK clients, the tests' own proxies)
/// talks to the front (`endpoint`), which answers the AWS Backup plans, selections and
/// recovery points from its model ([`Moto::backup`]) and forwards everything else to
/// moto (`server`) as it came.
pub struct Moto {
    child: Child,
    /// The front: the endpoint for every client.
    pub endpoint: String,
    /// moto itself, behind the front.
    pub server: String,
    backup: Arc<Mutex<backup::Backup>>,
    front: Option<Front>,
}

/// The front's proxy, on its own Tokio runtime in its own thread: `Moto::start` is called
/// both from plain tests and from inside the tests' runtimes.
struct Front {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Front {
    fn start(server: &str, model: Arc<Mutex<backup::Backup>>) -> (Front, String) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tell, endpoint) = std::sync::mpsc::channel();
        let server = server.to_string();
        let thread = std::thread::Builder::new()
            .name("moto-front".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the front's runtime");
                rt.block_on(async move {
                    let proxy = proxy::Proxy::start_with(&server, Some(model)).await;
                    let _ = tell.send(proxy.endpoint.clone());
                    // Until Moto is dropped (or dropped without a word).
                    let _ = stopped.await;
                    drop(proxy);
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("start the front's thread");
        let endpoint = endpoint.recv().expect("the front's endpoint");
        let front = Front {
            stop: Some(stop),
            thread: Some(thread),
        };
        (front, endpoint)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Moto {
    pub fn start() -> Moto {
        let bin = moto_server();
        assert!(
            bin.exists(),
            "moto_server not found at {}: run scripts/setup-emulator.sh (the README's test command does)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // AWS's managed IAM policies exist in every account; moto loads them only when
        // asked (the backup role attaches two).
        let child = Command::new(&bin)
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let server = format!("http://127.0.0.1:{port}");
        let model = Arc::new(Mutex::new(backup::Backup::default()));
        let (front, endpoint) = Front::start(&server, model.clone());
        let mut moto = Moto {
            child,
            endpoint,
            server,
            backup: model,
            front: Some(front),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The AWS Backup model the front plays.
    pub fn backup(&self) -> Arc<Mutex<backup::Backup>> {
        self.backup.clone()
    }

    /// Puts a completed recovery point of `resource_arn` into vault `vault` (see
    /// [`backup::Backup::add_recovery_point`]); its ARN.
    pub fn add_recovery_point(
        &self,
        vault: &str,
        resource_arn: &str,
        resource_type: &str,
    ) -> String {
        self.backup
            .lock()
            .unwrap()
            .add_recovery_point(vault, resource_arn, resource_type)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The front first: nothing reaches moto once it is gone.
        drop(self.front.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One environment under test: its own emulator and state directory.
pub struct Stack {
    pub moto: Moto,
    pub state_dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub env: String,
}

pub struct Run {
    pub ok: bool,
    /// The exit status (`None` when a signal ended the process).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The `error: …` line payctl printed last.
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .rfind(|l| l.starts_with("error: "))
            .unwrap_or("")
            .to_string()
    }
}

/// Where scripts/package-functions.sh (run by the README's test command) leaves the
/// function packages: `<target>/lambda/<function>/bootstrap.zip`.
pub fn packages_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    target.join("lambda")
}

/// A `payctl` command with a clean environment: no profile, no real AWS reachable.
pub fn payctl_command(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_payctl"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn,payctl=info")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

/// Takes the OS lock on `path` (`flock`, as payctl's run lock) without waiting: the open
/// file, which holds the lock until it is dropped, or `None` when a run holds it.
pub fn try_flock(path: &std::path::Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open the lock file");
    // SAFETY: flock on the descriptor of a file this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (rc == 0).then_some(file)
}

impl Stack {
    pub fn new(env: &str) -> Stack {
        Stack {
            moto: Moto::start(),
            state_dir: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            env: env.to_string(),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = payctl_command(self.home.path());
        cmd.env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("PAYCTL_STATE_DIR", self.state_dir.path())
            .env("PAYCTL_PACKAGES", packages_dir());
        cmd
    }

    /// Runs `payctl <args> --env <env>`.
    pub fn payctl(&self, args: &[&str]) -> Run {
        let out = self
            .command()
            .args(args)
            .args(["--env", &self.env])
            .output()
            .expect("run payctl");
        Run::from(out)
    }

    /// Runs `payctl <args> --env <env>` against another endpoint (e.g. a fault proxy),
    /// with extra environment variables.
    pub fn payctl_via(&self, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command();
        cmd.env("AWS_ENDPOINT_URL", endpoint);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(
            cmd.args(args)
                .args(["--env", &self.env])
                .output()
                .expect("run payctl"),
        )
    }

    /// Starts `payctl <args> --env <env>` against `endpoint` without waiting for it, with
    /// its output captured: for the tests that signal or kill it midway.
    pub fn spawn_via(&self, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut cmd = self.command();
        cmd.env("AWS_ENDPOINT_URL", endpoint);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args)
            .args(["--env", &self.env])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start payctl")
    }

    /// Runs payctl and fails the test, with its output, when it does not succeed.
    pub fn must(&self, args: &[&str]) -> Run {
        let run = self.payctl(args);
        assert!(
            run.ok,
            "payctl {args:?} failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        run
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.path().join(format!("{}.json", self.env))
    }

    /// The state file, read.
    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_file()).expect("a state file");
        serde_json::from_str(&text).expect("a JSON state file")
    }

    /// The run lock, `<env>.json.lock` beside the state file.
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir
            .path()
            .join(format!("{}.json.lock", self.env))
    }

    /// Asserts that no run holds the lock (the OS released it), whatever holder info the
    /// file still carries; returns that info.
    pub fn assert_lock_free(&self) -> String {
        let lock = self.lock_file();
        assert!(
            try_flock(&lock).is_some(),
            "the lock {} is still held",
            lock.display()
        );
        std::fs::read_to_string(&lock).unwrap_or_default()
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.moto.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load()
            .await
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk().await)
    }

    pub async fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk().await)
    }
}

pub fn tag_filter(key: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

pub fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

pub fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The five standard tags payctl must put on every taggable resource.
pub fn assert_standard_tags(tags: &BTreeMap<String, String>, env: &str, what: &str) {
    let want = [
        ("Project", "payment-processing"),
        ("Environment", env),
        ("ManagedBy", "payctl"),
        ("Team", "platform-engineering"),
        ("CostCenter", "fintech-payments"),
    ];
    for (k, v) in want {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "{what} tag {k}: {tags:?}"
        );
    }
}

/// Creates a transactions table as the stack defines it (key `transaction_id`, on demand),
/// for the function tests that do not need the whole stack.
pub async fn create_transactions_table(db: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let key = AttributeDefinition::builder()
        .attribute_name("transaction_id")
        .attribute_type(ScalarAttributeType::S)
        .build();
    let schema = KeySchemaElement::builder()
        .attribute_name("transaction_id")
        .key_type(KeyType::Hash)
        .build();
    db.create_table()
        .table_name(name)
        .attribute_definitions(key.unwrap())
        .key_schema(schema.unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// A bucket's versioning status, read with a plain GET: moto 5.2.5 answers
/// GetBucketVersioning with a `GetBucketVersioningResponse` root element, which the Rust
/// SDK's parser rejects (it expects `VersioningConfiguration`), so the test reads the XML
/// itself. moto does not check signatures, so an unsigned request is enough.
pub async fn bucket_versioning(
    endpoint: &str,
    bucket: &str,
) -> Option<aws_sdk_s3::types::BucketVersioningStatus> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request =
        format!("GET /{bucket}?versioning HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let status = response
        .split("<Status>")
        .nth(1)?
        .split("</Status>")
        .next()?;
    Some(aws_sdk_s3::types::BucketVersioningStatus::from(status))
}

/// Fails unless `wanted` is one of the indented lines right under line `at` of the plan
/// `stdout` (the line of `address`).
pub fn assert_under_line(stdout: &str, at: usize, wanted: &str, address: &str) {
    let under: Vec<&str> = stdout
        .lines()
        .skip(at + 1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert!(
        under.contains(&wanted),
        "expected {wanted:?} under {address}:\n{stdout}"
    );
}

/// A copy of the packages in which one function's zip differs (an extra file beside the
/// unchanged `bootstrap`): a new build of that function.
pub fn packages_with_new(function: &str) -> tempfile::TempDir {
    packages_with(function, "a new build")
}

/// A copy of the packages in which one function's zip carries `build` in an extra file:
/// each distinct `build` is a distinct build of that function.
pub fn packages_with(function: &str, build: &str) -> tempfile::TempDir {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    for f in ["validator", "processor", "audit-logger"] {
        let from = packages_dir().join(f).join("bootstrap.zip");
        std::fs::create_dir_all(dir.path().join(f)).unwrap();
        let to = dir.path().join(f).join("bootstrap.zip");
        if f != function {
            std::fs::copy(&from, &to).unwrap();
            continue;
        }
        let mut src = zip::ZipArchive::new(std::fs::File::open(&from).unwrap()).unwrap();
        let mut out = zip::ZipWriter::new(std::fs::File::create(&to).unwrap());
        out.raw_copy_file(src.by_name("bootstrap").unwrap())
            .unwrap();
        out.start_file("CHANGED", zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(build.as_bytes()).unwrap();
        out.finish().unwrap();
    }
    dir
}
