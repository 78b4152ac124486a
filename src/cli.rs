//! The command line (clap derive). `main.rs` parses it and dispatches to [`crate::commands`].

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "payctl",
    version,
    about = "Provision, describe and tear down the payment-processing stack on AWS",
    after_help = "Examples:\n  payctl up --env dev\n  payctl outputs --env dev --json\n  payctl down --env prod --yes"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

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
    Up {
        #[command(flatten)]
        common: Common,
        /// Directory of the function packages (`<function>/bootstrap.zip`, as
        /// scripts/package-functions.sh builds them).
        #[arg(long, env = "PAYCTL_PACKAGES", default_value = "target/lambda")]
        packages: PathBuf,
    },
    /// Delete every resource of the environment, in reverse dependency order.
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
    ForceUnlock {
        #[command(flatten)]
        common: Common,
        /// The id of the lock to remove.
        lock_id: String,
    },
}
