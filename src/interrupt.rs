//! Ctrl-C (SIGINT) and SIGTERM during `up` and `down`: both are handled alike.
//!
//! The first signal asks the run to stop at the next safe point: calls already in flight
//! finish and are recorded in the state file (it is written after every change), no new
//! resource kind is started, and every waiter and retry loop returns
//! [`Error::Interrupted`] at its next poll instead of sleeping on. The command then
//! releases the lock (the state store's guard) and exits with status 130 and a
//! "re-run to continue" message, whichever of the two signals it was. A second signal
//! exits at once, with the same status; the OS releases the local lock with the process
//! (an S3 lock stays, and the next run reports it as stale).

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The exit status of an interrupted run (128 + SIGINT, as shells report it), after
/// SIGTERM too.
pub const EXIT_STATUS: u8 = 130;

/// Starts listening for SIGINT and SIGTERM on the current tokio runtime. Both handlers
/// are in place when this returns.
pub fn install() {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("could not listen for Ctrl-C and SIGTERM; they end the run at once");
        return;
    };
    tokio::spawn(async move {
        if !next(&mut int, &mut term).await {
            return;
        }
        REQUESTED.store(true, Ordering::SeqCst);
        eprintln!(
            "interrupt: letting the calls in flight finish and writing the state file; press Ctrl-C again (or send SIGTERM again) to exit at once"
        );
        if next(&mut int, &mut term).await {
            eprintln!(
                "interrupt: exiting at once; the state file holds every change recorded so far, and a local lock is released with this process"
            );
            std::process::exit(i32::from(EXIT_STATUS));
        }
    });
}

/// Waits for the next SIGINT or SIGTERM; false when neither can arrive any more.
async fn next(int: &mut Signal, term: &mut Signal) -> bool {
    tokio::select! {
        got = int.recv() => got.is_some(),
        got = term.recv() => got.is_some(),
    }
}

/// True once the first SIGINT or SIGTERM arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once the first SIGINT or SIGTERM arrived.
pub fn check(what: &str) -> Result<()> {
    if requested() {
        return Err(Error::Interrupted(what.to_string()));
    }
    Ok(())
}

/// Sleeps for `d`, returning early with `Err(Interrupted)` when SIGINT or SIGTERM arrives.
pub async fn sleep(what: &str, d: Duration) -> Result<()> {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        check(what)?;
        let now = left.min(step);
        tokio::time::sleep(now).await;
        left -= now;
    }
    check(what)
}
