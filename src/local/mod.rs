//! `payctl local start-api`: the deployed payment API, run on this machine without
//! Docker, with the very function binaries that get deployed (built for this machine).
//!
//! - [`deployed`]: reads the environment's configuration back through the SDK;
//! - [`runtime`]: one warm process per function behind a Lambda Runtime API payctl
//!   serves, restarted after a crash or a timeout;
//! - [`gateway`]: the HTTP front (routes, API key, usage-plan throttle, proxy events);
//! - [`stream`] and [`queue`]: the event sources (table stream → audit logger, retry
//!   queue → processor);
//! - [`database`]: the processor's local PostgreSQL and its credentials;
//! - [`http`]: the HTTP/1.1 server under all of them (hyper, with limits and timeouts).
//!
//! The functions talk to whatever payctl's SDK configuration points at (the emulator or
//! AWS): they get payctl's resolved credentials, the state's region and payctl's
//! `AWS_ENDPOINT_URL*`. Ctrl-C (or SIGTERM) stops the pollers and the front, then every
//! function process, and waits for them to exit.

pub mod database;
pub mod deployed;
pub mod gateway;
pub mod http;
pub mod queue;
pub mod runtime;
pub mod stream;

use crate::cli::Common;
use crate::compute::{AUDIT_LOGGER, PROCESSOR};
use crate::error::{Error, Result};
use crate::state::{State, state_path};
use aws_credential_types::provider::ProvideCredentials;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The command that builds the host binaries `--bin-dir` defaults to.
pub const BUILD_COMMAND: &str = "cargo build --release -p validator -p processor -p audit-logger";
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Options {
    /// 0 picks a free port (printed).
    pub port: u16,
    pub database_url: Option<String>,
    pub bin_dir: PathBuf,
    /// `--poll-event-sources`: feed the deployed table stream and retry queue to the local
    /// functions. Off by default: the local run then takes nothing from the environment.
    pub poll_event_sources: bool,
}

/// Each function's host binary, `<bin-dir>/<key>`; a missing one names the build command.
pub fn binaries(bin_dir: &Path, keys: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    for key in keys {
        let path = bin_dir.join(format!("{key}{}", std::env::consts::EXE_SUFFIX));
        if !path.is_file() {
            return Err(Error::Invalid(format!(
                "no host binary for the {key} function at {}: build them with `{BUILD_COMMAND}`, or pass --bin-dir",
                path.display()
            )));
        }
        found.insert(key.to_string(), path);
    }
    Ok(found)
}

/// The environment a function process gets: the deployed variables, the Lambda runtime's
/// own, credentials and region, and payctl's endpoint settings.
fn function_env(
    f: &deployed::FunctionConfig,
    region: &str,
    creds: &aws_credential_types::Credentials,
    task_root: &Path,
) -> BTreeMap<String, String> {
    let mut env = f.env.clone();
    let lambda = [
        ("AWS_LAMBDA_FUNCTION_NAME", f.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", f.name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "payctl-local".to_string()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_string()),
        ("_HANDLER", "bootstrap".to_string()),
        ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
        ("TZ", ":UTC".to_string()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("AWS_REGION", region.to_string()),
        ("AWS_DEFAULT_REGION", region.to_string()),
        ("AWS_ACCESS_KEY_ID", creds.access_key_id().to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            creds.secret_access_key().to_string(),
        ),
    ];
    env.extend(lambda.into_iter().map(|(k, v)| (k.to_string(), v)));
    if let Some(token) = creds.session_token() {
        env.insert("AWS_SESSION_TOKEN".into(), token.to_string());
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("AWS_ENDPOINT_URL") || k == "AWS_CA_BUNDLE" || k == "NO_COLOR" {
            env.insert(k, v);
        }
    }
    env
}

async fn credentials(sdk: &aws_config::SdkConfig) -> Result<aws_credential_types::Credentials> {
    let none = || {
        Error::Credentials(
            "no AWS credentials found for the functions: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
        )
    };
    let provider = sdk.credentials_provider().ok_or_else(none)?;
    provider.provide_credentials().await.map_err(|_| none())
}

/// The start-up line that says which event sources the local run takes work from.
fn polling_line(asked: bool, polled: &[String]) -> String {
    match (asked, polled.is_empty()) {
        (false, _) => "event sources: none polled (the deployed stream and retry queue are left alone; --poll-event-sources feeds them to the local functions)".into(),
        (true, true) => "event sources: --poll-event-sources was given, but the environment has no stream or queue mapping to poll".into(),
        (true, false) => format!("event sources polled: {}", polled.join("; ")),
    }
}

async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The refusal for a production environment: the local run would take live work.
fn production_refusal(env: &str, said_by: &str) -> Error {
    Error::Refused(format!(
        "environment {env} is a production environment ({said_by}): payctl local start-api never runs against it, since it would take live payments; use a non-production environment"
    ))
}

pub async fn start_api(c: &Common, opts: Options) -> Result<()> {
    let settings = crate::commands::check_input(c)?;
    if settings.production {
        return Err(production_refusal(&c.env, "the configuration says so"));
    }
    let path = state_path(&c.state_dir, &c.env);
    let state = State::load(&path)?.ok_or_else(|| {
        Error::Invalid(format!(
            "no state for environment {} at {}; run `payctl up --env {}` first",
            c.env,
            path.display(),
            c.env
        ))
    })?;
    if state.production {
        return Err(production_refusal(
            &c.env,
            &format!("its state file {} says so", path.display()),
        ));
    }
    let keys: Vec<String> = state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == crate::compute::function::KIND)
        .map(|(a, _)| a.trim_start_matches("lambda_function.").to_string())
        .collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let bins = binaries(&opts.bin_dir, &key_refs)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot listen on 127.0.0.1:{} ({e}); pass another --port",
                opts.port
            ))
        })?;
    let sdk =
        crate::aws::load_config_with_profile(Some(state.region.clone()), c.profile.as_deref())
            .await;
    let creds = credentials(&sdk).await?;
    let clients = crate::aws::Clients::new(&sdk, &state.account_id);
    let deployed = deployed::read(&clients, &state).await?;

    // The processor's database: local, with credentials served from memory.
    let processor = deployed.functions.values().find(|f| f.key == PROCESSOR);
    let default_name = processor
        .and_then(|f| f.env.get("DB_NAME").cloned())
        .unwrap_or_else(|| crate::data::rds_instance::DB_NAME.to_string());
    let url = opts
        .database_url
        .clone()
        .unwrap_or_else(|| format!("postgres://postgres@127.0.0.1:5432/{default_name}"));
    let db = database::LocalDb::parse(&url, &default_name)?;
    db.prepare().await?;
    let secret_id = database::LocalDb::secret_id(&state.region, &state.account_id, &state.env);
    let (secrets_endpoint, secrets_task) = database::serve_secret(&db, secret_id.clone()).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut supervisors = Vec::new();
    let mut functions = BTreeMap::new();
    for (arn, f) in &deployed.functions {
        let Some(binary) = bins.get(&f.key) else {
            continue;
        };
        let task_root = binary.parent().unwrap_or(Path::new("."));
        let mut env = function_env(f, &state.region, &creds, task_root);
        if f.key == PROCESSOR {
            env.extend(db.processor_env(&secret_id, &secrets_endpoint));
        }
        let spec = runtime::Spec {
            name: f.name.clone(),
            arn: arn.clone(),
            binary: binary.clone(),
            env,
            timeout: f.timeout,
        };
        let (function, task) = runtime::Function::start(spec, stop_rx.clone());
        functions.insert(arn.clone(), function);
        supervisors.push(task);
    }

    let mut pollers = Vec::new();
    let mut polled = Vec::new();
    if opts.poll_event_sources
        && let Some(source) = deployed.stream.clone()
        && let Some(function) = functions.get(&source.function_arn)
    {
        polled.push(format!(
            "the table stream {} → audit logger",
            source.stream_arn
        ));
        let audit_bucket = deployed
            .functions
            .values()
            .find(|f| f.key == AUDIT_LOGGER)
            .and_then(|f| f.env.get("AUDIT_BUCKET").cloned());
        let poller = stream::StreamPoller {
            source,
            function: function.clone(),
            streams: aws_sdk_dynamodbstreams::Client::new(&sdk),
            sqs: clients.sqs.clone(),
            s3: clients.s3.clone(),
            audit_bucket,
            region: state.region.clone(),
        };
        pollers.push(tokio::spawn(poller.run(stop_rx.clone())));
    }
    if opts.poll_event_sources
        && let Some(source) = deployed.queue.clone()
        && let Some(function) = functions.get(&source.function_arn)
    {
        polled.push(format!("the retry queue {} → processor", source.queue_url));
        let poller = queue::QueuePoller {
            source,
            function: function.clone(),
            sqs: clients.sqs.clone(),
            region: state.region.clone(),
        };
        pollers.push(tokio::spawn(poller.run(stop_rx.clone())));
    }

    let address = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("cannot read the local address: {e}")))?;
    let routes: Vec<String> = deployed
        .routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let env = deployed.env.clone();
    let gateway = Arc::new(gateway::Gateway::new(deployed, functions));
    let front = http::serve(listener, move |req| {
        let gateway = gateway.clone();
        async move { gateway.handle(req).await }
    });
    eprintln!(
        "payctl local: the API of environment {env} listens on http://{address} ({}); the API key is `payctl outputs --env {env} --show-api-key`; the processor's database is {}; Ctrl-C stops everything",
        routes.join(", "),
        db.display()
    );

    eprintln!(
        "payctl local: {}",
        polling_line(opts.poll_event_sources, &polled)
    );

    stopped().await;
    eprintln!("payctl local: stopping");
    front.abort();
    let _ = stop_tx.send(true);
    for mut poller in pollers {
        // A poller waiting on a function is released when the function stops.
        if tokio::time::timeout(STOP_GRACE, &mut poller).await.is_err() {
            poller.abort();
        }
    }
    for supervisor in supervisors {
        let _ = tokio::time::timeout(STOP_GRACE, supervisor).await;
    }
    secrets_task.abort();
    eprintln!("payctl local: stopped; no function process is left running");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_line_says_which_event_sources_are_polled() {
        let none = polling_line(false, &["the retry queue q → processor".into()]);
        assert!(none.starts_with("event sources: none polled"), "{none}");
        let asked = polling_line(true, &[]);
        assert!(asked.contains("no stream or queue mapping"), "{asked}");
        let both = polling_line(true, &["a → x".into(), "b → y".into()]);
        assert_eq!(both, "event sources polled: a → x; b → y");
    }
}
