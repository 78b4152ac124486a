//! What `up` and `down` share around the walk: the pre-flight checks, the timings file,
//! and the summary and error at the end.

use crate::cli::Common;
use crate::engine::{Ctx, Direction, Outcome};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Instant;

/// Writes `--timings`: the setup before the walk, then each kind's start and end.
pub(super) fn write_timings(
    c: &Common,
    outcome: &Outcome,
    setup: std::time::Duration,
    started: Instant,
) {
    let Some(path) = &c.timings else {
        return;
    };
    let body = serde_json::json!({
        "setup_ms": setup.as_millis(),
        "total_ms": started.elapsed().as_millis(),
        "kinds": outcome.timings,
        "requests_outside_kinds": crate::aws::tally::outside(),
    });
    if let Err(e) = std::fs::write(path, body.to_string()) {
        tracing::warn!("could not write the timings to {}: {e}", path.display());
    }
}

pub(super) fn finish(
    ctx: &Ctx,
    command: &str,
    mut outcome: Outcome,
    started: Instant,
) -> Result<()> {
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
pub(super) async fn preflight(
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
