//! `payctl down`, with the guards of a production environment.

use super::check_input;
use super::run::{finish, preflight, write_timings};
use super::setup::prepare;
use crate::cli::Common;
use crate::engine::{Ctx, Direction, Options, walk};
use crate::error::{Error, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

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
