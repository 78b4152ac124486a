//! `payctl up` and `payctl plan`.

use super::run::{finish, preflight, write_timings};
use super::setup::prepare;
use crate::cli::Common;
use crate::engine::{Ctx, Direction, Options, walk};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Instant;

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
        ctx.state.mark_production().await?;
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
    let mut plan = crate::plan::Plan::from_report(&ctx.env, &ctx.region, &ctx.report);
    plan.function_versions = crate::outputs::live_versions(&ctx.state.snapshot());
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
