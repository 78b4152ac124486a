//! Where a [`StateStore`] keeps its state, and opening it there: the local directory
//! (`state/<env>.json`, the default: a [`LocalFile`] under a [`LocalLocker`]) or S3
//! (`--state s3://BUCKET/PREFIX`: an [`S3Storage`] under an [`S3Locker`], see
//! [`super::s3`]).
//!
//! A store opened to write takes the lock first, then reads the state and checks that
//! it belongs to the run (env, region, account); a detached store (`plan`, `verify`,
//! `redrive`) only reads, without the lock.

use super::locker::{LocalLocker, Locker};
use super::recovery::Recovery;
use super::remote::{S3Locker, S3Storage};
use super::s3::{Remote, S3Url};
use super::storage::{LocalFile, Storage};
use super::{State, StateError, StateStore, state_path};
use std::path::{Path, PathBuf};

/// Where the state of a run lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `<dir>/<env>.json`.
    Local(PathBuf),
    S3(S3Url),
}

impl Location {
    /// `--state` (or `PAYCTL_STATE`) first, then `state` in payctl.toml, else the local
    /// directory (`--state-dir`, or `PAYCTL_STATE_DIR`). With an S3 location the local
    /// directory is where a recovery file goes when a write fails.
    pub fn resolve(
        flag: Option<&str>,
        configured: Option<&str>,
        dir: &Path,
    ) -> Result<Location, StateError> {
        match flag.or(configured) {
            Some(url) => Ok(Location::S3(S3Url::parse(url)?)),
            None => Ok(Location::Local(dir.to_path_buf())),
        }
    }
}

impl StateStore {
    /// Takes the local lock, then loads (or starts) the state for `env` in `dir`.
    pub async fn open(
        dir: &Path,
        env: &str,
        region: &str,
        account_id: &str,
        command: &str,
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::io(dir, e))?;
        let path = state_path(dir, env);
        let locker = LocalLocker::new(&path);
        let storage = LocalFile::new(path);
        let run = Run {
            env,
            region,
            account_id,
        };
        run.open(
            Box::new(storage),
            Box::new(locker),
            Recovery::new(dir),
            command,
        )
        .await
    }

    /// The state as a run that changes nothing sees it (`plan`): loaded without taking
    /// the lock, and `put`/`remove` change only this in-memory copy, never the file.
    pub async fn open_detached(
        dir: &Path,
        env: &str,
        region: &str,
        account_id: &str,
    ) -> Result<Self, StateError> {
        let storage = LocalFile::new(state_path(dir, env));
        let run = Run {
            env,
            region,
            account_id,
        };
        run.open_detached(Box::new(storage)).await
    }

    /// Opens the state at `location`: locally as [`StateStore::open`]; on S3 after
    /// checking the bucket (exists, default encryption), taking the remote lock (which
    /// also shows the bucket is versioned) and reading the state object. `state_dir` is
    /// the local state directory (`--state-dir`): an S3 state's recovery file goes there
    /// first when a write fails (see [`Recovery`]).
    pub async fn open_at(
        location: &Location,
        state_dir: &Path,
        sdk: &aws_config::SdkConfig,
        env: &str,
        region: &str,
        account_id: &str,
        command: &str,
    ) -> Result<Self, StateError> {
        let url = match location {
            Location::Local(dir) => return Self::open(dir, env, region, account_id, command).await,
            Location::S3(url) => url,
        };
        let remote = Remote::connect(sdk, url, env, url.owner_or(account_id)).await?;
        let sse = remote.encryption().await?;
        let locker = S3Locker::new(remote.clone(), sse.clone(), env);
        let storage = S3Storage::writer(remote, sse);
        let run = Run {
            env,
            region,
            account_id,
        };
        let recovery = Recovery::new(state_dir);
        run.open(Box::new(storage), Box::new(locker), recovery, command)
            .await
    }

    /// The state as a run that changes nothing sees it, wherever it lives: no lock, and
    /// `put`/`remove` change only the in-memory copy.
    pub async fn open_detached_at(
        location: &Location,
        sdk: &aws_config::SdkConfig,
        env: &str,
        region: &str,
        account_id: &str,
    ) -> Result<Self, StateError> {
        let url = match location {
            Location::Local(dir) => {
                return Self::open_detached(dir, env, region, account_id).await;
            }
            Location::S3(url) => url,
        };
        let remote = Remote::connect(sdk, url, env, url.owner_or(account_id)).await?;
        let run = Run {
            env,
            region,
            account_id,
        };
        run.open_detached(Box::new(S3Storage::reader(remote))).await
    }
}

/// Whose state a store opens: it must belong to this env, region and account.
struct Run<'a> {
    env: &'a str,
    region: &'a str,
    account_id: &'a str,
}

impl Run<'_> {
    /// Takes the lock, then reads the state; the lock is given up again when that fails.
    async fn open(
        &self,
        mut storage: Box<dyn Storage>,
        mut locker: Box<dyn Locker>,
        recovery: Recovery,
        command: &str,
    ) -> Result<StateStore, StateError> {
        locker.lock(command).await?;
        match self.read(storage.as_mut()).await {
            Ok((state, found)) => Ok(StateStore::writing(storage, locker, recovery, state, found)),
            Err(e) => {
                locker.unlock().await;
                Err(e)
            }
        }
    }

    async fn open_detached(&self, mut storage: Box<dyn Storage>) -> Result<StateStore, StateError> {
        let (state, found) = self.read(storage.as_mut()).await?;
        Ok(StateStore::detached(storage.location(), state, found))
    }

    /// The stored state, checked to belong to this run; a new one when there is none.
    async fn read(&self, storage: &mut dyn Storage) -> Result<(State, bool), StateError> {
        match storage.read().await? {
            Some(s) => {
                let at = storage.location();
                s.check_belongs(Path::new(&at), self.env, self.region, self.account_id)?;
                Ok((s, true))
            }
            None => Ok((State::new(self.env, self.region, self.account_id), false)),
        }
    }
}
