//! The command line (clap derive). `main.rs` parses it ([`Cli::parse_args`]) and
//! dispatches to [`crate::commands`].
//!
//! Precedence follows the ecosystem: a flag beats an environment variable, which beats
//! `payctl.toml`, which beats the default; an environment variable never conflicts with
//! a flag. The environment name is `--env`, else `PAYCTL_ENV`, else
//! `ENVIRONMENT_SUFFIX`, else `dev`. The AWS profile is `--profile`, else the SDK's own
//! choice (`AWS_PROFILE`, else `default`). The state lives in S3 when a location is
//! named (`--state`, else `PAYCTL_STATE`, else `state` in payctl.toml), else in the
//! local directory (`--state-dir`, else `PAYCTL_STATE_DIR`, else `state`), which with an
//! S3 state is where a recovery file goes; only `--state` and `--state-dir` *both on
//! the command line* are a usage error.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "payctl",
    version,
    about = "Provision, describe and tear down the payment-processing stack on AWS",
    long_about = "Provision, describe and tear down the payment-processing stack on AWS, calling the AWS SDK directly.\n\nEvery resource payctl owns is recorded in a state file (state/<env>.json) and tagged ManagedBy=payctl, Environment=<env>. `up` creates or adopts and converges; `down` deletes in reverse dependency order.\n\nProduction environments: `prod`, and any environment with `production = true` under its own [env.NAME] table in payctl.toml (recorded in its state file from the first `up` on). They get the production profile (Multi-AZ, deletion protection, one NAT gateway per AZ, reserved concurrency, production throttles) and its guards: `down` needs --yes or a typed confirmation, refuses --purge and --skip-final-snapshot, and keeps a final database snapshot, a backup of the transactions table, the audit bucket and the KMS keys that encrypt them; `local start-api` refuses them. Credentials, region and endpoint come from the SDK's standard chains (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).",
    after_help = "Examples:\n  payctl up --env dev\n  payctl plan --env prod\n  payctl outputs --env dev --json\n  payctl down --env prod --yes\n  payctl completions bash > ~/.local/share/bash-completion/completions/payctl\n\nExit status: 0 success, 1 error, 2 usage error (for `plan`: changes pending), 130 interrupted (Ctrl-C or SIGTERM)."
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

impl Cli {
    /// Parses the command line, exiting on a usage error (status 2) as clap does. Beyond
    /// clap's checks: `--state` and `--state-dir` may not both be given on the command
    /// line (`state pull`/`push` take both), whereas `PAYCTL_STATE` or
    /// `PAYCTL_STATE_DIR` from the environment never conflicts with either flag.
    pub fn parse_args() -> Cli {
        let mut command = Cli::command();
        let matches = command.get_matches_mut();
        if both_state_flags(&matches) {
            command
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "the argument '--state <s3://BUCKET/PREFIX>' cannot be used with '--state-dir <STATE_DIR>': they name two places for the state",
                )
                .exit();
        }
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
    }
}

/// Whether a subcommand other than `state pull`/`push` got both `--state` and
/// `--state-dir` on the command line.
fn both_state_flags(matches: &ArgMatches) -> bool {
    let Some((name, sub)) = matches.subcommand() else {
        return false;
    };
    let on_command_line = |id: &str| {
        sub.ids().any(|i| i.as_str() == id)
            && sub.value_source(id) == Some(ValueSource::CommandLine)
    };
    name != "state"
        && (both_state_flags(sub) || (on_command_line("state") && on_command_line("state_dir")))
}

/// The environment when `--env` and `PAYCTL_ENV` are not given: `ENVIRONMENT_SUFFIX`,
/// else `dev`.
fn default_env() -> String {
    std::env::var("ENVIRONMENT_SUFFIX").unwrap_or_else(|_| "dev".to_string())
}

/// Where a command works: the environment, the AWS account and the state. Every
/// command takes these, `state pull`/`push` included.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Environment name: lowercase letters, digits and single hyphens, at most 16
    /// characters. Else PAYCTL_ENV, else ENVIRONMENT_SUFFIX (the default shown), else dev.
    #[arg(long, env = "PAYCTL_ENV", default_value_t = default_env())]
    pub env: String,

    /// AWS region; defaults to the SDK's region chain (AWS_REGION, profile), then us-east-1.
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile (of ~/.aws/config and ~/.aws/credentials) for credentials and region;
    /// beats AWS_PROFILE.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Directory of the state files (`<env>.json`); with an S3 state, where a recovery
    /// file goes when a write fails.
    #[arg(long, env = "PAYCTL_STATE_DIR", default_value = "state")]
    pub state_dir: PathBuf,

    /// Keep the state in S3 instead: `s3://BUCKET[/PREFIX]` holds `<PREFIX>/<env>.json`
    /// and its lock (the bucket must be versioned and encrypted). Also `state = "s3://…"`
    /// in payctl.toml. Not together with --state-dir on the command line.
    #[arg(long, env = "PAYCTL_STATE", value_name = "s3://BUCKET/PREFIX")]
    pub state: Option<String>,

    /// The account that owns the S3 state bucket (12 digits), when it is not the
    /// caller's: every request to the bucket expects it, and a bucket of any other
    /// account is refused. Also `state_bucket_owner` in payctl.toml.
    #[arg(long, env = "PAYCTL_STATE_BUCKET_OWNER", value_name = "ACCOUNT_ID")]
    pub state_bucket_owner: Option<String>,

    /// Settings file; `payctl.toml` in the current directory is read when it exists.
    #[arg(long, env = "PAYCTL_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    #[command(flatten)]
    pub target: Target,

    /// Write when each resource kind started and finished (ms), and what it waited for,
    /// to this JSON file: where an `up` or `down` spends its time.
    #[arg(long, value_name = "FILE")]
    pub timings: Option<PathBuf>,
}

impl std::ops::Deref for Common {
    type Target = Target;
    fn deref(&self) -> &Target {
        &self.target
    }
}

impl std::ops::DerefMut for Common {
    fn deref_mut(&mut self) -> &mut Target {
        &mut self.target
    }
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
    /// Show what `up` would do, resource by resource, without changing anything.
    #[command(
        long_about = "Show what `up` would do, resource by resource, without changing anything.\n\nIt reads the live resources and the state file (without locking or writing it) and prints one line per resource: `+` create, `~` update (each setting as `old → new`, e.g. drift put back) or adopt, `=` unchanged, `-` delete (in the state file, but no longer wanted). Every AWS call it makes is a read; any other call is refused before it is sent.\n\nExit status: 0 nothing would change, 2 something would change, 1 error.",
        after_help = "Examples:\n  payctl plan --env prod\n  payctl plan --env prod --json | jq '.resources[] | select(.action != \"unchanged\")'\n  payctl plan --env prod >/dev/null; [ $? -eq 2 ] && echo \"prod has drifted\""
    )]
    Plan {
        #[command(flatten)]
        common: Common,
        /// Directory of the function packages (`<function>/bootstrap.zip`): a package
        /// that differs from the deployed code is a change.
        #[arg(long, env = "PAYCTL_PACKAGES", default_value = "target/lambda")]
        packages: PathBuf,
        /// Print the plan as one JSON object (the summary still goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Delete every resource of the environment, in reverse dependency order.
    #[command(
        long_about = "Delete every resource of the environment, in reverse dependency order.\n\nIt keeps going past a failure and lists every failure at the end, then lists what it kept, each with the command that restores or removes it. The database keeps a final snapshot (unless --skip-final-snapshot outside production), and the KMS key that encrypts a kept snapshot or bucket is never scheduled for deletion; other KMS keys are (7 days). Outside production the audit bucket is kept while it holds records unless --purge is given.\n\nA production environment (prod, or production = true) needs --yes, or the environment name typed on a terminal; it refuses --purge and --skip-final-snapshot, and keeps a final database snapshot, an on-demand backup of the transactions table (made and waited for before the table goes), the audit bucket with every object version, and their KMS keys. The state file keeps their records, so a later `up` adopts them.",
        after_help = "Examples:\n  payctl down --env dev\n  payctl down --env prod --yes\n  payctl down --env qa --purge --skip-final-snapshot"
    )]
    Down {
        #[command(flatten)]
        common: Common,
        /// Do not ask for confirmation (required for a production environment when there
        /// is no terminal).
        #[arg(long)]
        yes: bool,
        /// Delete every object version in the audit bucket, then the bucket (kept otherwise;
        /// refused for a production environment).
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
    /// Clear a lock left by a run that died; takes the lock id the error message names.
    #[command(
        long_about = "Clear a lock left by a run that died; takes the lock id the error message names, and changes nothing if the id does not match.\n\nWith an S3 state (--state s3://...) it deletes the lock object, which nothing else releases. A local lock (<state-dir>/<env>.json.lock) is an OS lock: the OS releases it when its holder exits or dies, so the next run simply proceeds and there is nothing to unlock. For a local state this command therefore refuses while a run holds the lock (that run releases it), and otherwise only clears the holder info a dead run left in the file.",
        after_help = "Examples (the id comes from the S3 `stale lock` error, or from the local lock file):\n  payctl force-unlock --env dev --state s3://team-state/payctl 6f1c2a9e-1d7b-4c1e-9a53-0c2d3e4f5a6b\n  payctl force-unlock --env dev 6f1c2a9e-1d7b-4c1e-9a53-0c2d3e4f5a6b   (local: clears a dead run's holder info)"
    )]
    ForceUnlock {
        #[command(flatten)]
        common: Common,
        /// The id of the lock to clear (the error message or the lock file names it).
        lock_id: String,
    },
    /// Check the deployed environment against security and compliance controls (read only).
    #[command(
        long_about = "Check the deployed environment against security and compliance controls, with read-only calls (Describe/Get/List) only: nothing is changed.\n\nThe resources come from the environment's state file and are read live by their ids. Each check names the control, its AWS Security Hub control id where one exists (S3.8, RDS.3, Lambda.1, ...), the resource, PASS, FAIL or N/A (not required in this environment, e.g. Multi-AZ outside production) and why. A resource the state names but AWS does not know fails its checks. The table goes to standard output, a summary line to standard error; the exit status is 1 when any check fails.",
        after_help = "Examples:\n  payctl verify --env dev\n  payctl verify --env prod --region eu-west-1\n  payctl verify --env prod --json | jq '.checks[] | select(.status == \"FAIL\")'\n\nExit status: 0 when no check failed, 1 when any failed (error: N of M checks failed) or the environment could not be read."
    )]
    Verify {
        #[command(flatten)]
        common: Common,
        /// Print one JSON object (the counts and every check) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move the payments waiting in the dead-letter queue back to the retry queue.
    #[command(
        long_about = "Move every message of the retry queue's dead-letter queue (payment-retry-dlq-<env>) back to the retry queue, once the cause of the failures is fixed; the alarm payment-retry-dlq-<env> fires while the dead-letter queue holds any.\n\nOne message at a time: receive, send to the retry queue, then delete from the dead-letter queue. A kill between the two leaves a message in both queues (processed twice, which the processor's idempotent processing absorbs), never in neither. Prints how many messages were moved.",
        after_help = "Examples:\n  payctl redrive --env prod\n  payctl redrive --env staging --region eu-west-1"
    )]
    Redrive {
        #[command(flatten)]
        common: Common,
    },
    /// Point each function's alias `live` back at its previous version.
    #[command(
        long_about = "Point the alias `live` of every function (or of --function) back at the version it was on before the last release, as the state file records it: nothing is built, uploaded or published, and the change takes effect for the next invocation. A function whose canary is still weighted (a run was killed during its bake) goes back wholly to its primary version. The version rolled back from is remembered: `up` does not release it again until its package changes, and a second `rollback` rolls forward to it.",
        after_help = "Examples:\n  payctl rollback --env prod\n  payctl rollback --env prod --function processor"
    )]
    Rollback {
        #[command(flatten)]
        common: Common,
        /// Only this function: validator, processor or audit-logger.
        #[arg(long, value_name = "NAME")]
        function: Option<String>,
    },
    /// Copy the state between the local directory and S3 (`pull`, `push`).
    #[command(
        subcommand,
        after_help = "Examples:\n  payctl state pull --env dev --state s3://team-state/payctl\n  payctl state push --env dev --state s3://team-state/payctl"
    )]
    State(StateCommand),
    /// Run the deployed stack's API and event sources on this machine (no Docker).
    #[command(
        subcommand,
        after_help = "Examples:\n  cargo build --release -p validator -p processor -p audit-logger\n  payctl local start-api --env dev\n  payctl local start-api --env dev --port 8080 --database-url postgres://postgres@127.0.0.1:5432/payments"
    )]
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
pub enum StateCommand {
    /// Copy the S3 state to the local `<state-dir>/<env>.json`.
    #[command(
        long_about = "Copy the S3 state to the local <state-dir>/<env>.json (the previous file is kept as <env>.json.backup).\n\nRefused, changing nothing, when the local file has another lineage, a higher serial, or the same serial with other records, unless --force is given. The local lock is held while the file is written.",
        after_help = "Examples:\n  payctl state pull --env dev --state s3://team-state/payctl\n  payctl state pull --env dev --state-dir /tmp/inspect --force   # with state = \"s3://…\" in payctl.toml"
    )]
    Pull(Transfer),
    /// Upload the local `<state-dir>/<env>.json` to S3.
    #[command(
        long_about = "Upload the local <state-dir>/<env>.json to S3, under the remote lock, with a conditional write (the bucket's versioning keeps the previous state). The local file is then rewritten with the serial it got, so both sides are identical.\n\nRefused, changing nothing, when the remote state has another lineage, a higher serial, or the same serial with other records, unless --force is given.",
        after_help = "Examples:\n  payctl state push --env dev --state s3://team-state/payctl\n  payctl state push --env staging --state s3://team-state/payctl --force"
    )]
    Push(Transfer),
}

/// The options of `state pull` and `state push`: both sides of the copy (the local
/// `--state-dir` and the S3 `--state`).
#[derive(Debug, Clone, Args)]
pub struct Transfer {
    #[command(flatten)]
    pub target: Target,

    /// Overwrite even a newer or unrelated state on the other side.
    #[arg(long)]
    pub force: bool,
}

impl Transfer {
    /// The same options as the other commands take them.
    pub fn common(&self) -> Common {
        Common {
            target: self.target.clone(),
            timings: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Serve the environment's API on 127.0.0.1 with the functions' host binaries.
    #[command(
        long_about = "Serve the environment's API on 127.0.0.1: POST /validate, POST /process, GET /status, with the stack's API key and the usage plan's throttle, each request run in the deployed function's real binary (built for this machine) behind a Lambda Runtime API that payctl serves. With --poll-event-sources, the table's stream feeds the audit logger and the retry queue feeds the processor; without it, no deployed queue or stream is read. The stack must be up; the functions reach what the SDK points at (AWS_ENDPOINT_URL), except the processor's database, which is a local PostgreSQL. Ctrl-C stops every process.\n\nA production environment (prod, or production = true in payctl.toml, or recorded so in its state file) is refused before anything starts: the local run would take live payments.",
        after_help = "Examples:\n  cargo build --release -p validator -p processor -p audit-logger\n  payctl local start-api --env dev\n  payctl local start-api --env dev --poll-event-sources\n  payctl local start-api --env dev --port 8080 --database-url postgres://postgres@127.0.0.1:5432/payments"
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
        /// Also feed the deployed table stream and retry queue to the local functions
        /// (messages and records they take are consumed from the environment).
        #[arg(long)]
        poll_event_sources: bool,
    },
}
