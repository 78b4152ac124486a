//! The context of a run: the configuration, the SDK (region and profile), the account,
//! and the state, opened where it lives.

use super::check_input;
use crate::cli::Common;
use crate::engine::{Ctx, Options};
use crate::error::{Error, Result};
use crate::state::{Location, StateStore};
use std::sync::Arc;

/// Sets up a run: checks the input, loads the SDK configuration, finds the account,
/// opens the state (locked, or detached for `plan`) and checks production.
pub(super) async fn prepare(c: &Common, command: &str, options: Options) -> Result<Arc<Ctx>> {
    let mut settings = check_input(c)?;
    let location = location(c, &settings)?;
    let sdk = sdk(c, c.region.clone()).await;
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

/// The SDK configuration for `region` (`None`: the SDK's region chain), with the
/// profile of `--profile` when one was given (else the SDK's own choice, `AWS_PROFILE`).
pub(super) async fn sdk(c: &Common, region: Option<String>) -> aws_config::SdkConfig {
    crate::aws::load_config_with_profile(region, c.profile.as_deref()).await
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

/// Where the state lives: `--state` (or `PAYCTL_STATE`), else `state` in payctl.toml,
/// else `--state-dir` (or `PAYCTL_STATE_DIR`);
/// an S3 bucket's owner is `--state-bucket-owner`, else `state_bucket_owner`.
pub(super) fn location(c: &Common, settings: &crate::config::Settings) -> Result<Location> {
    let location = Location::resolve(c.state.as_deref(), settings.state.as_deref(), &c.state_dir)?;
    owned_by(location, c, settings.state_bucket_owner.clone())
}

/// The state location without reading the config file when the flags name all of it.
pub(super) fn location_of(c: &Common) -> Result<Location> {
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
pub(super) async fn bucket_owner(
    sdk: &aws_config::SdkConfig,
    url: &crate::state::s3::S3Url,
) -> Result<String> {
    match &url.owner {
        Some(owner) => Ok(owner.clone()),
        None => crate::aws::account_id(sdk).await,
    }
}
