//! The command line (clap derive). `main.rs` parses it and dispatches to [`crate::commands`].

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "payctl",
    version,
    about = "Provision, describe and tear down the payment-processing stack on AWS",
    long_about = "Provision, describe and tear down the payment-processing stack on AWS, calling the AWS SDK directly.\n\nEvery resource payctl owns is recorded in a state file (state/<env>.json) and tagged ManagedBy=payctl, Environment=<env>. `up` creates or adopts and converges; `down` deletes in reverse dependency order. Credentials, region and endpoint come from the SDK's standard chains (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).",
    after_help = "Examples:\n  payctl up --env dev\n  payctl outputs --env dev --json\n  payctl down --env prod --yes\n  payctl completions bash > ~/.local/share/bash-completion/completions/payctl\n\nExit status: 0 success, 1 error, 2 usage error, 130 interrupted (Ctrl-C)."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// No live progress lines, only plain log lines (the default when stderr is not a
    /// terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Environment name: lowercase letters, digits and single hyphens, at most 16 characters.
    #[arg(long, env = "ENVIRONMENT_SUFFIX", default_value = "dev")]
    pub env: String,

    /// AWS region; defaults to the SDK's region chain (AWS_REGION, profile), then us-east-1.
    #[arg(long)]
    pub region: Option<String>,

    /// Directory of the state files (`<env>.json`).
    #[arg(long, env = "PAYCTL_STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,

    /// Settings file; `payctl.toml` in the current directory is read when it exists.
    #[arg(long, env = "PAYCTL_CONFIG")]
    pub config: Option<PathBuf>,

    /// Write when each resource kind started and finished (ms), and what it waited for,
    /// to this JSON file: where an `up` or `down` spends its time.
    #[arg(long, value_name = "FILE")]
    pub timings: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or converge every resource of the environment.
    #[command(
        long_about = "Create or converge every resource of the environment, then print its outputs.\n\nRunning it again changes nothing; after a crash or Ctrl-C, run it again to continue. Before anything is created, the function packages and the account's Lambda concurrency are checked.",
        after_help = "Examples:\n  payctl up --env dev\n  payctl up --env prod --region eu-west-1 --packages target/lambda\n  payctl up --env staging --timings /tmp/up-timings.json"
    )]
    Up {
        #[command(flatten)]
        common: Common,
        /// Directory of the function packages (`<function>/bootstrap.zip`, as
        /// scripts/package-functions.sh builds them).
        #[arg(long, env = "PAYCTL_PACKAGES", default_value = "target/lambda")]
        packages: PathBuf,
    },
    /// Delete every resource of the environment, in reverse dependency order.
    #[command(
        long_about = "Delete every resource of the environment, in reverse dependency order.\n\nIt keeps going past a failure and lists every failure at the end. On --env prod it needs --yes, or the environment name typed on a terminal; the database always keeps a final snapshot there. KMS keys are scheduled for deletion (7 days), and the audit bucket is kept while it holds records unless --purge is given.",
        after_help = "Examples:\n  payctl down --env dev\n  payctl down --env prod --yes\n  payctl down --env qa --purge --skip-final-snapshot"
    )]
    Down {
        #[command(flatten)]
        common: Common,
        /// Do not ask for confirmation (required for `prod` when there is no terminal).
        #[arg(long)]
        yes: bool,
        /// Delete every object version in the audit bucket, then the bucket (kept otherwise).
        #[arg(long)]
        purge: bool,
        /// Delete the database without a final snapshot (refused for production).
        #[arg(long)]
        skip_final_snapshot: bool,
    },
    /// Print the stack's outputs from the state file.
    #[command(
        after_help = "Examples:\n  payctl outputs --env dev\n  payctl outputs --env dev --json | jq -r .APIEndpoint\n  payctl outputs --env dev --json --show-api-key | jq -r .APIKey"
    )]
    Outputs {
        #[command(flatten)]
        common: Common,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Also print the API key's value (read from API Gateway; never stored).
        #[arg(long)]
        show_api_key: bool,
    },
    /// Remove a lock left by a run that died; takes the lock id the error message names.
    #[command(
        after_help = "Example (the id comes from the `stale lock` error of the next run):\n  payctl force-unlock --env dev 6f1c2a9e-1d7b-4c1e-9a53-0c2d3e4f5a6b"
    )]
    ForceUnlock {
        #[command(flatten)]
        common: Common,
        /// The id of the lock to remove.
        lock_id: String,
    },
    /// Run the deployed stack's API and event sources on this machine (no Docker).
    #[command(subcommand)]
    Local(LocalCommand),
    /// Print a shell completion script to standard output.
    #[command(
        after_help = "Examples:\n  payctl completions bash > ~/.local/share/bash-completion/completions/payctl\n  payctl completions zsh > ~/.zfunc/_payctl\n  payctl completions fish > ~/.config/fish/completions/payctl.fish"
    )]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Serve the environment's API on 127.0.0.1 with the functions' host binaries.
    #[command(
        long_about = "Serve the environment's API on 127.0.0.1: POST /validate, POST /process, GET /status, with the stack's API key and the usage plan's throttle, each request run in the deployed function's real binary (built for this machine) behind a Lambda Runtime API that payctl serves. The table's stream feeds the audit logger and the retry queue feeds the processor. The stack must be up; the functions reach what the SDK points at (AWS_ENDPOINT_URL), except the processor's database, which is a local PostgreSQL. Ctrl-C stops every process.",
        after_help = "Examples:\n  cargo build --release -p validator -p processor -p audit-logger\n  payctl local start-api --env dev\n  payctl local start-api --env dev --port 8080 --database-url postgres://postgres@127.0.0.1:5432/payments"
    )]
    StartApi {
        #[command(flatten)]
        common: Common,
        /// Port on 127.0.0.1 (0 picks a free one, printed at start).
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// The processor's PostgreSQL (default postgres://postgres@127.0.0.1:5432/<DB_NAME>;
        /// sslmode disable or verify-full). Created when it does not exist.
        #[arg(long, env = "PAYCTL_LOCAL_DATABASE_URL", value_name = "URL")]
        database_url: Option<String>,
        /// Directory of the functions' host binaries (validator, processor, audit-logger).
        #[arg(long, env = "PAYCTL_LOCAL_BIN_DIR", default_value = "target/release")]
        bin_dir: PathBuf,
    },
}
