//! The commands on the state itself: `outputs`, `force-unlock`, `state pull` and
//! `state push`.

use super::setup::{bucket_owner, location_of, sdk};
use crate::cli::Common;
use crate::error::{Error, Result};
use crate::state::{Location, State, lock, state_path};

pub async fn outputs(c: &Common, json: bool, show_api_key: bool) -> Result<()> {
    crate::naming::validate_env(&c.env)?;
    let (state, path) = match location_of(c)? {
        Location::Local(dir) => {
            let path = state_path(&dir, &c.env);
            (State::load(&path)?, path.display().to_string())
        }
        Location::S3(url) => {
            let sdk = sdk(c, c.region.clone()).await;
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
        let sdk = sdk(c, Some(state.region.clone())).await;
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
            let sdk = sdk(c, c.region.clone()).await;
            let owner = bucket_owner(&sdk, &url).await?;
            let holder =
                crate::state::remote::force_unlock_remote(&sdk, &url, &owner, &c.env, lock_id)
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
    let sdk = sdk(&c, c.region.clone()).await;
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
