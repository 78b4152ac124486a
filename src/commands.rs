//! What each subcommand does: validate input before any AWS call, set up the run
//! context (config, SDK, account, locked state), walk the layers, report.

use crate::cli::Common;
use crate::config::ConfigFile;
use crate::engine::{Ctx, Direction, Options, Outcome, walk};
use crate::error::{Error, Result};
use crate::state::{Location, State, StateStore, lock, state_path};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const DEFAULT_CONFIG: &str = "payctl.toml";

/// Checks everything that needs no AWS call: env name, config file, the registry.
pub fn check_input(c: &Common) -> Result<crate::config::Settings> {
    crate::naming::validate_env(&c.env)?;
    let config = match &c.config {
        Some(path) => ConfigFile::load(path, true)?,
        None => ConfigFile::load(Path::new(DEFAULT_CONFIG), false)?,
    };
    let settings = config.settings_for(&c.env)?;
    crate::engine::validate(&crate::layers())?;
    Ok(settings)
}

async fn prepare(c: &Common, command: &str, options: Options) -> Result<Arc<Ctx>> {
    let mut settings = check_input(c)?;
    let location = location(c, &settings)?;
    let sdk = crate::aws::load_config(c.region.clone()).await;
    let region = crate::aws::region_of(&sdk);
    let account_id = crate::aws::account_id(&sdk).await?;
    let state = if options.plan {
        StateStore::open_detached_at(&location, &sdk, &c.env, &region, &account_id).await?
    } else {
        StateStore::open_at(
            &location,
            &c.state_dir,
            &sdk,
            &c.env,
            &region,
            &account_id,
            command,
        )
        .await?
    };
    if let Err(e) = reconcile_production(&mut settings, &state, command, &c.env) {
        state.release().await;
        return Err(e);
    }
    tracing::info!(
        "{command} {} in {region} (account {account_id}), state {}{}",
        c.env,
        state.path().display(),
        if settings.production {
            " (a production environment)"
        } else {
            ""
        }
    );
    let aws = if options.plan {
        crate::aws::Clients::read_only(&sdk, &account_id)
    } else {
        crate::aws::Clients::new(&sdk, &account_id)
    };
    Ok(Arc::new(Ctx {
        env: c.env.clone(),
        region,
        account_id,
        settings,
        aws,
        state,
        report: if options.plan {
            crate::engine::Report::for_plan()
        } else {
            Default::default()
        },
        options,
    }))
}

/// Whether the environment is production comes from the config file *or* the state file.
/// A state that says production makes every command treat it so; `up` and `plan` refuse
/// to apply the non-production profile to it (a missing `production = true` must not
/// silently turn off Multi-AZ or deletion protection). `up` records it in the state once
/// its pre-flight checks pass.
fn reconcile_production(
    settings: &mut crate::config::Settings,
    state: &StateStore,
    command: &str,
    env: &str,
) -> Result<()> {
    if state.production() && !settings.production {
        if matches!(command, "up" | "plan") {
            return Err(Error::Refused(format!(
                "environment {env} is a production environment (its state file {} says so), but the configuration does not make it one: add `production = true` under [env.{env}] in payctl.toml (or pass --config with it); {command} never applies the non-production profile to a production environment; nothing was changed",
                state.path().display()
            )));
        }
        settings.production = true;
    }
    Ok(())
}

/// Where the state lives: `--state`, else `state` in payctl.toml, else `--state-dir`;
/// an S3 bucket's owner is `--state-bucket-owner`, else `state_bucket_owner`.
fn location(c: &Common, settings: &crate::config::Settings) -> Result<Location> {
    let location = Location::resolve(c.state.as_deref(), settings.state.as_deref(), &c.state_dir)?;
    owned_by(location, c, settings.state_bucket_owner.clone())
}

/// The state location without reading the config file when the flags name all of it.
fn location_of(c: &Common) -> Result<Location> {
    match (&c.state, &c.state_bucket_owner) {
        (Some(url), Some(_)) => {
            let location = Location::resolve(Some(url.as_str()), None, &c.state_dir)?;
            owned_by(location, c, None)
        }
        _ => location(c, &check_input(c)?),
    }
}

/// An S3 location with the owner its bucket must have: `--state-bucket-owner` (or
/// `PAYCTL_STATE_BUCKET_OWNER`) first, then `configured`; `None`: the caller's account.
fn owned_by(location: Location, c: &Common, configured: Option<String>) -> Result<Location> {
    let owner = match &c.state_bucket_owner {
        Some(flag) => Some(crate::config::account_id(
            flag,
            "--state-bucket-owner (PAYCTL_STATE_BUCKET_OWNER)",
        )?),
        None => configured,
    };
    Ok(match location {
        Location::S3(url) => Location::S3(url.owned_by(owner)),
        local => local,
    })
}

/// The account the S3 state bucket must belong to: the configured one, else the
/// caller's (one `GetCallerIdentity`).
async fn bucket_owner(
    sdk: &aws_config::SdkConfig,
    url: &crate::state::s3::S3Url,
) -> Result<String> {
    match &url.owner {
        Some(owner) => Ok(owner.clone()),
        None => crate::aws::account_id(sdk).await,
    }
}

/// Writes `--timings`: the setup before the walk, then each kind's start and end.
fn write_timings(c: &Common, outcome: &Outcome, setup: std::time::Duration, started: Instant) {
    let Some(path) = &c.timings else {
        return;
    };
    let body = serde_json::json!({
        "setup_ms": setup.as_millis(),
        "total_ms": started.elapsed().as_millis(),
        "kinds": outcome.timings,
    });
    if let Err(e) = std::fs::write(path, body.to_string()) {
        tracing::warn!("could not write the timings to {}: {e}", path.display());
    }
}

fn finish(ctx: &Ctx, command: &str, mut outcome: Outcome, started: Instant) -> Result<()> {
    crate::progress::end();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{command} {}: {} in {elapsed:.1}s",
        ctx.env,
        ctx.report.summary()
    );
    if outcome.ok() {
        return Ok(());
    }
    if outcome.interrupted || crate::interrupt::requested() {
        return Err(Error::RunInterrupted {
            command: command.to_string(),
            env: ctx.env.clone(),
        });
    }
    for (kind, blocker) in &outcome.skipped {
        eprintln!("  not attempted: {kind} (waits for {blocker}, which failed)");
    }
    let kinds: Vec<&str> = outcome.failures.iter().map(|(k, _)| *k).collect();
    let kinds = kinds.join(", ");
    let Some((_, first)) = outcome.failures.drain(..).next() else {
        return Ok(());
    };
    if matches!(&first, Error::State(s) if s.halts_run()) {
        // Not "the state file is up to date": its message says where the state went.
        return Err(first);
    }
    Err(Error::Invalid(format!(
        "{} resource kind(s) failed ({kinds}): {first}; the state file is up to date, re-run `payctl {command} --env {}` to continue",
        kinds.split(", ").count(),
        ctx.env
    )))
}

/// Runs every kind's pre-flight check concurrently (they only read); the first refusal
/// in registry order wins.
async fn preflight(
    ctx: &Arc<Ctx>,
    layers: &[crate::engine::Layer],
    direction: Direction,
) -> Result<()> {
    let checks = layers.iter().flat_map(|l| l.resources.iter()).map(|r| {
        let (r, ctx) = (r.clone(), ctx.clone());
        tokio::spawn(async move {
            match direction {
                Direction::Up => r.preflight_ensure(&ctx).await,
                Direction::Down => r.preflight_delete(&ctx).await,
            }
        })
    });
    let handles: Vec<_> = checks.collect();
    for handle in handles {
        handle
            .await
            .map_err(|e| Error::Invalid(format!("internal error in a pre-flight check: {e}")))??;
    }
    Ok(())
}

pub async fn up(c: &Common, options: Options) -> Result<()> {
    let started = Instant::now();
    crate::interrupt::install();
    let ctx = prepare(c, "up", options).await?;
    let result = up_walk(c, &ctx, started).await;
    // Whatever the outcome: a remote lock needs an async call to go.
    ctx.state.release().await;
    result
}

async fn up_walk(c: &Common, ctx: &Arc<Ctx>, started: Instant) -> Result<()> {
    // Every kind gets its say before anything is created, so a refusal changes nothing.
    let layers = crate::layers();
    preflight(ctx, &layers, Direction::Up).await?;
    if ctx.settings.production {
        ctx.state.mark_production()?;
    }
    let setup = started.elapsed();
    let outcome = walk(ctx.clone(), &layers, Direction::Up).await;
    write_timings(c, &outcome, setup, started);
    finish(ctx, "up", outcome, started)?;
    print!(
        "{}",
        crate::outputs::table(&crate::outputs::collect(&ctx.state.snapshot()))
    );
    Ok(())
}

/// Prints what `up` would do; answers whether it would change anything.
pub async fn plan(c: &Common, mut options: Options, json: bool) -> Result<bool> {
    let started = Instant::now();
    options.plan = true;
    let ctx = prepare(c, "plan", options).await?;
    let layers = crate::layers();
    preflight(&ctx, &layers, Direction::Up).await?;
    let mut outcome = walk(ctx.clone(), &layers, Direction::Up).await;
    if let Some((kind, first)) = outcome.failures.drain(..).next() {
        return Err(Error::Invalid(format!(
            "plan could not read {kind}: {first}; nothing was changed"
        )));
    }
    let plan = crate::plan::Plan::from_report(&ctx.env, &ctx.region, &ctx.report);
    if json {
        let text =
            serde_json::to_string_pretty(&plan).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{text}");
        eprintln!(
            "{} in {:.1}s",
            plan.summary(),
            started.elapsed().as_secs_f64()
        );
    } else {
        print!("{}", plan.render());
    }
    Ok(plan.changes)
}

pub async fn down(c: &Common, yes: bool, options: Options) -> Result<()> {
    let started = Instant::now();
    let settings = check_input(c)?;
    // What the config file already says is refused before any AWS call; what only the
    // state file says, once it is read (below).
    if settings.production {
        guard_production_down(&c.env, yes, &options, None)?;
    }
    let ctx = prepare(c, "down", options).await?;
    let bucket = crate::data::s3_bucket::bucket_name(&ctx);
    let result = if ctx.settings.production {
        guard_production_down(&ctx.env, yes, &ctx.options, Some(&bucket))
    } else {
        Ok(())
    };
    let result = match result {
        Ok(()) => down_walk(c, &ctx, yes, started).await,
        Err(e) => Err(e),
    };
    ctx.state.release().await;
    result
}

/// The refusals of `down` for a production environment, before anything is changed:
/// no final snapshot, no purge of the audit trail, no deletion without a confirmation.
/// `bucket` names the audit bucket once the account is known; the purge is refused then,
/// so that the message can name it (reading the account changes nothing).
fn guard_production_down(
    env: &str,
    yes: bool,
    options: &Options,
    bucket: Option<&str>,
) -> Result<()> {
    if options.skip_final_snapshot {
        return Err(Error::Refused(format!(
            "--skip-final-snapshot is refused for the production environment {env}: its database always keeps a final snapshot; nothing was changed"
        )));
    }
    if options.purge
        && let Some(bucket) = bucket
    {
        return Err(Error::Refused(format!(
            "--purge is refused for the production environment {env}: the audit bucket {bucket} holds the audit trail, which is kept with every object version (PCI DSS 10.5.1 keeps audit history for at least 12 months); nothing was changed"
        )));
    }
    if !yes && !std::io::stdin().is_terminal() {
        return Err(refusal(env));
    }
    Ok(())
}

async fn down_walk(c: &Common, ctx: &Arc<Ctx>, yes: bool, started: Instant) -> Result<()> {
    if ctx.settings.production && !yes {
        confirm(ctx)?;
    }
    crate::interrupt::install();
    // Every kind gets its say before anything is deleted, so a refusal leaves all in place.
    let layers = crate::layers();
    preflight(ctx, &layers, Direction::Down).await?;
    let setup = started.elapsed();
    let outcome = walk(ctx.clone(), &layers, Direction::Down).await;
    write_timings(c, &outcome, setup, started);
    // What was kept is said whatever else happened: it is where the data is.
    print!("{}", ctx.report.kept_text());
    finish(ctx, "down", outcome, started)
}

fn refusal(env: &str) -> Error {
    Error::Refused(format!(
        "refusing to delete environment {env} without --yes (no terminal to confirm on); nothing was changed"
    ))
}

/// Lists what `down` deletes and asks for the environment name on a terminal.
fn confirm(ctx: &Ctx) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(refusal(&ctx.env));
    }
    let state = ctx.state.snapshot();
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "payctl down will delete every resource of environment {} in {}:",
        ctx.env, ctx.region
    );
    for (addr, rec) in &state.resources {
        let _ = writeln!(err, "  {addr}  {}", rec.id);
    }
    let _ = writeln!(
        err,
        "plus any resource tagged ManagedBy=payctl, Environment={} that the state file does not list.",
        ctx.env
    );
    let _ = writeln!(
        err,
        "Kept, as in every production down: a final snapshot of the database, a backup of the transactions table, the audit bucket with every object version, and the KMS keys that encrypt them."
    );
    let _ = write!(err, "Type the environment name to confirm: ");
    let _ = err.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::Refused(format!("could not read the confirmation: {e}")))?;
    if answer.trim() != ctx.env {
        return Err(Error::Refused(format!(
            "confirmation did not match {:?}; nothing was changed",
            ctx.env
        )));
    }
    Ok(())
}

pub async fn outputs(c: &Common, json: bool, show_api_key: bool) -> Result<()> {
    crate::naming::validate_env(&c.env)?;
    let (state, path) = match location_of(c)? {
        Location::Local(dir) => {
            let path = state_path(&dir, &c.env);
            (State::load(&path)?, path.display().to_string())
        }
        Location::S3(url) => {
            let sdk = crate::aws::load_config(c.region.clone()).await;
            let owner = bucket_owner(&sdk, &url).await?;
            let remote = crate::state::s3::Remote::connect(&sdk, &url, &c.env, &owner).await?;
            (remote.load().await?.map(|(s, _)| s), remote.state_url())
        }
    };
    let state = state.ok_or_else(|| {
        Error::Invalid(format!(
            "no state for environment {} at {path}; run `payctl up --env {}` first",
            c.env, c.env
        ))
    })?;
    let mut outputs = crate::outputs::collect(&state);
    if show_api_key {
        // Read from API Gateway on request only: the value is never in the state file.
        let sdk = crate::aws::load_config(Some(state.region.clone())).await;
        let clients = crate::aws::Clients::new(&sdk, &state.account_id);
        let value = crate::api::api_key_value(&clients, &state).await?;
        outputs.insert("APIKey", value);
    }
    if json {
        let text =
            serde_json::to_string_pretty(&outputs).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", crate::outputs::table(&outputs));
    }
    Ok(())
}

/// Clears a lock a dead run left: the S3 lock object; for a local state, whose OS lock
/// went with its holder, only the holder info (a live run's lock is refused).
pub async fn force_unlock(c: &Common, lock_id: &str) -> Result<()> {
    crate::naming::validate_env(&c.env)?;
    match location_of(c)? {
        Location::Local(dir) => {
            let path = state_path(&dir, &c.env);
            let holder = lock::force_unlock(&path, lock_id)?;
            eprintln!(
                "nobody holds the lock {}: the OS releases a local lock when its holder exits or dies, so there was nothing to unlock; cleared the holder info of lock {} (pid {} on {}, since {})",
                lock::lock_path(&path).display(),
                holder.id,
                holder.pid,
                holder.host,
                holder.started_at
            );
        }
        Location::S3(url) => {
            let sdk = crate::aws::load_config(c.region.clone()).await;
            let owner = bucket_owner(&sdk, &url).await?;
            let holder =
                crate::state::backend::force_unlock_remote(&sdk, &url, &owner, &c.env, lock_id)
                    .await?;
            eprintln!(
                "removed lock {} (pid {} on {}, since {})",
                holder.id, holder.pid, holder.host, holder.started_at
            );
        }
    }
    Ok(())
}

/// `payctl state pull` (`push: false`) or `payctl state push`.
pub async fn state_transfer(t: &crate::cli::Transfer, push: bool) -> Result<()> {
    let c = t.common();
    crate::naming::validate_env(&c.env)?;
    let Location::S3(url) = location_of(&c)? else {
        return Err(Error::Invalid(format!(
            "payctl state {} needs an S3 location: --state s3://BUCKET[/PREFIX] or `state = \"s3://…\"` in payctl.toml",
            if push { "push" } else { "pull" }
        )));
    };
    let sdk = crate::aws::load_config(c.region.clone()).await;
    let (state, verb) = if push {
        let account_id = crate::aws::account_id(&sdk).await?;
        let s =
            crate::state::transfer::push(&sdk, &url, &c.state_dir, &c.env, &account_id, t.force)
                .await?;
        (s, "pushed to")
    } else {
        let owner = bucket_owner(&sdk, &url).await?;
        let s =
            crate::state::transfer::pull(&sdk, &url, &owner, &c.state_dir, &c.env, t.force).await?;
        (s, "pulled from")
    };
    eprintln!(
        "{verb} {}: {} resources, serial {}, lineage {}",
        url.url_of(&url.key(&c.env)),
        state.resources.len(),
        state.serial,
        state.lineage
    );
    Ok(())
}

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "payctl", &mut std::io::stdout());
}

/// Checks the deployed environment against the controls of [`crate::verify`], with
/// read-only calls; the state file is read without the lock. Fails (exit 1) when any
/// check fails, after printing them all.
pub async fn verify(c: &Common, json: bool) -> Result<()> {
    let settings = check_input(c)?;
    let location = location(c, &settings)?;
    let no_state = |at: &str| {
        Error::Invalid(format!(
            "no state for environment {} at {at}: nothing to verify; run `payctl up --env {}` first",
            c.env, c.env
        ))
    };
    // A local state file is read first (no AWS call without one); it names the region.
    let region_hint = match &location {
        Location::Local(dir) => {
            let path = state_path(dir, &c.env);
            let state = State::load(&path)?;
            Some(
                state
                    .ok_or_else(|| no_state(&path.display().to_string()))?
                    .region,
            )
        }
        Location::S3(_) => None,
    };
    let sdk = crate::aws::load_config(c.region.clone().or(region_hint)).await;
    let region = crate::aws::region_of(&sdk);
    let account_id = crate::aws::account_id(&sdk).await?;
    let store = StateStore::open_detached_at(&location, &sdk, &c.env, &region, &account_id).await?;
    let state = store.snapshot();
    if state.resources.is_empty() {
        return Err(no_state(&store.path().display().to_string()));
    }
    let mut settings = settings;
    // A production environment is checked as one even without its config file.
    settings.production |= state.production;
    let target = crate::verify::Target {
        env: c.env.clone(),
        state,
        settings,
        // Refuses any call that is not a read before it is sent.
        aws: crate::aws::Clients::read_only(&sdk, &account_id),
    };
    let report = crate::verify::Report::new(&c.env, crate::verify::run(&target).await);
    if json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", report.table());
    }
    eprintln!("{}", report.summary());
    if report.failed > 0 {
        return Err(Error::Invalid(format!(
            "{} of {} checks failed",
            report.failed,
            report.checks.len()
        )));
    }
    Ok(())
}

/// `payctl redrive`: moves the dead-letter queue's messages back to the retry queue, one
/// at a time (see [`crate::redrive`]); the state is read without its lock.
pub async fn redrive(c: &Common) -> Result<()> {
    let settings = check_input(c)?;
    let location = location(c, &settings)?;
    let sdk = crate::aws::load_config(c.region.clone()).await;
    let region = crate::aws::region_of(&sdk);
    let account_id = crate::aws::account_id(&sdk).await?;
    let store = StateStore::open_detached_at(&location, &sdk, &c.env, &region, &account_id).await?;
    let queue_of = |purpose: &str| {
        store
            .id(&crate::data::sqs_queue::address(purpose))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "environment {} has no {purpose} queue in its state ({}); run `payctl up --env {}` first",
                    c.env,
                    store.path().display(),
                    c.env
                ))
            })
    };
    let (dlq, retry) = (queue_of("dlq")?, queue_of("retry")?);
    crate::interrupt::install();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let moved = crate::redrive::move_all(&sqs, &dlq, &retry).await?;
    println!(
        "redrive {}: moved {moved} message(s) from {dlq} to {retry}",
        c.env
    );
    Ok(())
}
