//! `payctl verify`: the deployed environment against the security controls, read only.

use super::check_input;
use super::setup::{location, sdk};
use crate::cli::Common;
use crate::error::{Error, Result};
use crate::state::{Location, State, StateStore, state_path};

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
    let sdk = sdk(c, c.region.clone().or(region_hint)).await;
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
