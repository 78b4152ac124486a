//! Ctrl-C during `up` and `down`.
//!
//! The first SIGINT asks the run to stop at the next safe point: calls already in flight
//! finish and are recorded in the state file (it is written after every change), no new
//! resource kind is started, and every waiter and retry loop returns
//! [`Error::Interrupted`] at its next poll instead of sleeping on. The command then
//! releases the lock (the state store's guard) and exits with status 130 and a
//! "re-run to continue" message. A second SIGINT exits at once, with the same status;
//! the lock it leaves is reported as stale by the next run.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The exit status of an interrupted run (128 + SIGINT, as shells report it).
pub const EXIT_STATUS: u8 = 130;

/// Starts listening for SIGINT on the current tokio runtime.
pub fn install() {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        REQUESTED.store(true, Ordering::SeqCst);
        eprintln!(
            "interrupt: letting the calls in flight finish and writing the state file; press Ctrl-C again to exit at once"
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupt: exiting at once; the state file holds every change recorded so far, and the next run reports this run's lock as stale"
            );
            std::process::exit(i32::from(EXIT_STATUS));
        }
    });
}

/// True once the first SIGINT arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once the first SIGINT arrived.
pub fn check(what: &str) -> Result<()> {
    if requested() {
        return Err(Error::Interrupted(what.to_string()));
    }
    Ok(())
}

/// Sleeps for `d`, returning early with `Err(Interrupted)` when SIGINT arrives.
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
