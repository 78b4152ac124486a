//! `payctl state pull` and `payctl state push`: copy the state between the local
//! directory and S3, explicitly.
//!
//! Neither overwrites a newer or unrelated state by accident: the copy is refused when
//! the destination has another lineage (another history of the environment), a higher
//! serial (newer), or the same serial with other contents, unless `--force` is given.
//! `pull` holds the local lock while it writes `state/<env>.json` (the previous file is
//! kept as `<env>.json.backup`); `push` holds the remote lock and the local lock, writes
//! with the conditional put of every remote write, and then writes the same state back
//! to the local file, so both sides are identical afterwards.

use super::file::{backup, write_atomic};
use super::s3::{Remote, S3Url};
use super::{Location, State, StateError, StateStore, lock, state_path};
use std::path::Path;

/// Why copying `source` over `dest` would lose something, if it would.
pub fn refusal(dest: &State, dest_name: &str, source: &State, source_name: &str) -> Option<String> {
    if dest.lineage != source.lineage {
        return Some(format!(
            "the {dest_name} has lineage {}, the {source_name} {} (two different histories of environment {})",
            dest.lineage, source.lineage, source.env
        ));
    }
    if dest.serial > source.serial {
        return Some(format!(
            "the {dest_name} is newer (serial {} > {})",
            dest.serial, source.serial
        ));
    }
    if dest.serial == source.serial && dest.resources != source.resources {
        return Some(format!(
            "the {dest_name} and the {source_name} have the same serial {} but different records",
            dest.serial
        ));
    }
    None
}

fn check_env(state: &State, origin: &str, env: &str) -> Result<(), StateError> {
    if state.env != env {
        return Err(StateError::Mismatch {
            path: origin.to_string(),
            field: "environment",
            found: state.env.clone(),
            expected: env.to_string(),
            hint: "use the matching --env".into(),
        });
    }
    Ok(())
}

/// Copies the remote state to `<dir>/<env>.json` from a bucket owned by `owner`.
/// Returns what was written.
pub async fn pull(
    sdk: &aws_config::SdkConfig,
    url: &S3Url,
    owner: &str,
    dir: &Path,
    env: &str,
    force: bool,
) -> Result<State, StateError> {
    let remote = Remote::connect(sdk, url, env, owner).await?;
    let Some(object) = remote.get(&remote.key).await? else {
        return Err(StateError::NoRemote {
            url: remote.state_url(),
        });
    };
    let theirs = State::parse(&object.bytes, &remote.state_url())?;
    check_env(&theirs, &remote.state_url(), env)?;
    std::fs::create_dir_all(dir).map_err(|e| StateError::io(dir, e))?;
    let path = state_path(dir, env);
    // No local run may be writing the file meanwhile.
    let _guard = lock::acquire(&path, "state pull")?;
    match State::load(&path) {
        Ok(Some(ours)) if !force => {
            if let Some(reason) = refusal(&ours, "local state", &theirs, "remote state") {
                return Err(StateError::Diverged {
                    action: format!("pull {} over {}", remote.state_url(), path.display()),
                    reason,
                });
            }
        }
        Err(e) if !force => return Err(e),
        _ => {}
    }
    let write = || {
        backup(&path)?;
        write_atomic(&path, &object.bytes)
    };
    write().map_err(|e| StateError::io(&path, e))?;
    Ok(theirs)
}

/// Uploads `<dir>/<env>.json` to S3 under the remote lock. Returns what was written.
pub async fn push(
    sdk: &aws_config::SdkConfig,
    url: &S3Url,
    dir: &Path,
    env: &str,
    account_id: &str,
    force: bool,
) -> Result<State, StateError> {
    let path = state_path(dir, env);
    let Some(ours) = State::load(&path)? else {
        return Err(StateError::NoLocal {
            path: path.display().to_string(),
        });
    };
    let region = ours.region.clone();
    ours.check_belongs(&path, env, &region, account_id)?;
    let _guard = lock::acquire(&path, "state push")?;
    let location = Location::S3(url.clone());
    let store =
        StateStore::open_at(&location, dir, sdk, env, &region, account_id, "state push").await?;
    let result = push_into(&store, ours, &path, force).await;
    store.release().await;
    result
}

async fn push_into(
    store: &StateStore,
    ours: State,
    path: &Path,
    force: bool,
) -> Result<State, StateError> {
    let theirs = store.snapshot();
    if store.found()
        && !force
        && let Some(reason) = refusal(&theirs, "remote state", &ours, "local state")
    {
        return Err(StateError::Diverged {
            action: format!("push {} over {}", path.display(), store.path().display()),
            reason,
        });
    }
    store
        .update(|state| {
            let mut next = ours;
            // The write adds one: above both sides' serials, so nobody takes it for older.
            next.serial = next.serial.max(state.serial);
            *state = next;
            true
        })
        .await?;
    let written = store.snapshot();
    let bytes = serde_json::to_vec_pretty(&written).map_err(|e| StateError::io(path, e.into()))?;
    write_atomic(path, &bytes).map_err(|e| StateError::io(path, e))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Record;

    fn state(serial: u64, lineage: &str, vpc: &str) -> State {
        let mut s = State::new("dev", "us-east-1", "1");
        s.serial = serial;
        s.lineage = lineage.into();
        s.resources
            .insert("ec2_vpc.main".into(), Record::new("ec2_vpc", vpc));
        s
    }

    #[test]
    fn a_copy_is_refused_when_it_would_lose_something() {
        let (dest, src) = ("local state", "remote state");
        let ok = |d: &State, s: &State| refusal(d, dest, s, src);
        assert_eq!(ok(&state(3, "l", "vpc-1"), &state(5, "l", "vpc-2")), None);
        assert_eq!(ok(&state(5, "l", "vpc-1"), &state(5, "l", "vpc-1")), None);
        let why = ok(&state(1, "a", "vpc-1"), &state(5, "b", "vpc-1")).unwrap();
        assert!(why.contains("two different histories"), "{why}");
        let why = ok(&state(6, "l", "vpc-1"), &state(5, "l", "vpc-1")).unwrap();
        assert!(why.contains("local state is newer (serial 6 > 5)"), "{why}");
        let why = ok(&state(5, "l", "vpc-1"), &state(5, "l", "vpc-2")).unwrap();
        assert!(why.contains("same serial 5 but different records"), "{why}");
    }

    #[test]
    fn the_location_is_the_flag_then_the_config_then_the_directory() {
        let dir = Path::new("state");
        let s3 = |u: &str| Location::S3(S3Url::parse(u).unwrap());
        assert_eq!(
            Location::resolve(Some("s3://flag-bkt"), Some("s3://conf-bkt"), dir).unwrap(),
            s3("s3://flag-bkt")
        );
        assert_eq!(
            Location::resolve(None, Some("s3://conf-bkt/p"), dir).unwrap(),
            s3("s3://conf-bkt/p")
        );
        assert_eq!(
            Location::resolve(None, None, dir).unwrap(),
            Location::Local(dir.to_path_buf())
        );
        assert!(Location::resolve(Some("state/"), None, dir).is_err());
    }
}
