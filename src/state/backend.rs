//! Where a [`StateStore`] keeps its state: the local directory (`state/<env>.json`, the
//! default, unchanged) or S3 (`--state s3://BUCKET/PREFIX`, see [`super::s3`]).
//!
//! A store opened on S3 holds the remote lock for the run and knows the ETag of the
//! state object it last read or wrote; `put`/`remove` stay synchronous. A write changes
//! the in-memory state under the state mutex (briefly), then leaves the async worker
//! ([`s3::blocking`]) and, one writer at a time, puts the latest state. No mutex is ever
//! held across S3 I/O on a worker thread: a worker stuck on it could leave nobody to
//! drive the I/O the writer waits for. The lock is removed by [`StateStore::release`], which the commands
//! call at the end of every run whatever its outcome; dropping the store tries the same
//! as a fallback (it cannot always: a process that exits at once leaves the lock, and
//! the next run reports it as stale with the `payctl force-unlock` command).

use super::lock::{self, LockInfo};
use super::s3::{self, Put, Remote, S3Url, Sse};
use super::{Inner, Recovery, State, StateError, StateStore};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the state of a run lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `<dir>/<env>.json`.
    Local(PathBuf),
    S3(S3Url),
}

impl Location {
    /// `--state` (or `PAYCTL_STATE`) first, then `state` in payctl.toml, else the local
    /// directory (`--state-dir`).
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

#[derive(Debug)]
pub(crate) enum Backend {
    /// The local file; `None` for a detached store, which never writes.
    Local(Option<lock::LockGuard>),
    S3(Box<RemoteBackend>),
}

#[derive(Debug)]
pub(crate) struct RemoteBackend {
    remote: Remote,
    /// `None` for a detached store: no lock, no encryption check, no writes.
    sse: Option<Sse>,
    lock: Option<RemoteLock>,
    released: AtomicBool,
    /// Held while a write is in flight: writes go one at a time, in order.
    write: Mutex<Written>,
}

#[derive(Debug, Default)]
struct Written {
    /// The ETag of the state object this run last read or wrote (`None`: no object).
    etag: Option<String>,
    /// Set by a refused write (who held the lock then): nothing more is written.
    conflict: Option<String>,
}

#[derive(Debug)]
struct RemoteLock {
    info: LockInfo,
    etag: String,
}

impl Backend {
    pub(crate) fn is_detached(&self) -> bool {
        match self {
            Backend::Local(guard) => guard.is_none(),
            Backend::S3(r) => r.lock.is_none(),
        }
    }
}

impl StateStore {
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
            Location::Local(dir) => return Self::open(dir, env, region, account_id, command),
            Location::S3(url) => url,
        };
        let remote = Remote::connect(sdk, url, env, url.owner_or(account_id)).await?;
        let sse = remote.encryption().await?;
        let lock = acquire(&remote, &sse, env, command).await?;
        let mut backend = RemoteBackend {
            remote,
            sse: Some(sse),
            lock: Some(lock),
            released: AtomicBool::new(false),
            write: Mutex::default(),
        };
        match load_checked(&backend.remote, env, region, account_id).await {
            Ok((state, etag)) => {
                backend
                    .write
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .etag = etag;
                Ok(Self::remote(backend, state, Recovery::new(state_dir)))
            }
            Err(e) => {
                backend.release().await;
                Err(e)
            }
        }
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
            Location::Local(dir) => return Self::open_detached(dir, env, region, account_id),
            Location::S3(url) => url,
        };
        let remote = Remote::connect(sdk, url, env, url.owner_or(account_id)).await?;
        let (state, etag) = load_checked(&remote, env, region, account_id).await?;
        let backend = RemoteBackend {
            remote,
            sse: None,
            lock: None,
            released: AtomicBool::new(false),
            write: Mutex::new(Written {
                etag,
                conflict: None,
            }),
        };
        // Detached: nothing is ever written, so no recovery file either.
        Ok(Self::remote(backend, state, Recovery::new(Path::new("."))))
    }

    fn remote(backend: RemoteBackend, state: State, recovery: Recovery) -> Self {
        StateStore {
            recovery,
            path: PathBuf::from(backend.remote.state_url()),
            inner: Mutex::new(Inner {
                state,
                // The bucket's versioning keeps every earlier state: no backup copy.
                backed_up: true,
            }),
            backend: Backend::S3(Box::new(backend)),
        }
    }

    /// Removes the remote lock (if it is still this run's). A local lock goes when the
    /// store is dropped (or its process dies); calling this for it changes nothing.
    pub async fn release(&self) {
        if let Backend::S3(r) = &self.backend {
            r.release().await;
        }
    }

    /// Writes the current state to S3, only if the object is still the one this run
    /// last saw (its ETag). Called without the state mutex held.
    pub(super) fn write_remote(&self, r: &RemoteBackend) -> Result<(), StateError> {
        let Some(sse) = &r.sse else {
            return Ok(()); // detached: memory only
        };
        s3::blocking(|rt| {
            let mut written = r.write.lock().unwrap_or_else(|p| p.into_inner());
            // The latest state, whatever write brought us here: a later write never
            // lands before an earlier one with older contents.
            let (bytes, env) = {
                let mut inner = self.inner();
                inner.state.serial += 1;
                let bytes = serde_json::to_vec_pretty(&inner.state)
                    .map_err(|e| StateError::io(&self.path, e.into()))?;
                (bytes, inner.state.env.clone())
            };
            let url = r.remote.state_url();
            if let Some(holder) = &written.conflict {
                // An earlier write met a conflict: keep the recovery file current only.
                return Err(StateError::RemoteConflict {
                    url,
                    recovery: self.recovery.dump(&env, &bytes),
                    holder: holder.clone(),
                });
            }
            let put = rt.block_on(r.remote.put(
                &r.remote.key,
                bytes.clone(),
                written.etag.as_deref(),
                sse,
            ));
            match put {
                Ok(Put::Done { etag, .. }) => {
                    written.etag = Some(etag);
                    Ok(())
                }
                Ok(Put::Conflict) => {
                    let holder = rt.block_on(r.holder_now());
                    written.conflict = Some(holder.clone());
                    Err(StateError::RemoteConflict {
                        url,
                        recovery: self.recovery.dump(&env, &bytes),
                        holder,
                    })
                }
                Err(e) => Err(StateError::RemoteWriteFailed {
                    url,
                    recovery: self.recovery.dump(&env, &bytes),
                    reason: e.to_string(),
                }),
            }
        })?
    }

    /// Writes the current state now (`state push`).
    pub(super) fn flush(&self) -> Result<(), StateError> {
        match &self.backend {
            Backend::S3(r) => self.write_remote(r),
            Backend::Local(_) => {
                let mut inner = self.inner();
                self.persist(&mut inner)
            }
        }
    }

    /// Whether the remote state object existed (or was written), for `state push`.
    pub(super) fn remote_exists(&self) -> bool {
        match &self.backend {
            Backend::S3(r) => r
                .write
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .etag
                .is_some(),
            Backend::Local(_) => false,
        }
    }
}

/// Reads the state object and checks it belongs to this run; a new state when none.
async fn load_checked(
    remote: &Remote,
    env: &str,
    region: &str,
    account_id: &str,
) -> Result<(State, Option<String>), StateError> {
    match remote.load().await? {
        Some((s, etag)) => {
            s.check_belongs(Path::new(&remote.state_url()), env, region, account_id)?;
            Ok((s, Some(etag)))
        }
        None => Ok((State::new(env, region, account_id), None)),
    }
}

/// Creates the lock object with `If-None-Match: *`, or explains who holds it.
async fn acquire(
    remote: &Remote,
    sse: &Sse,
    env: &str,
    command: &str,
) -> Result<RemoteLock, StateError> {
    let info = LockInfo::new(command);
    let body = serde_json::to_vec_pretty(&info)
        .map_err(|e| StateError::io(Path::new(&remote.lock_url()), e.into()))?;
    match remote.put(&remote.lock_key, body, None, sse).await? {
        Put::Done { etag, version } => {
            if version.is_none() {
                // An unversioned bucket gives no version id: refuse, and take nothing.
                let _ = remote.delete_if(&remote.lock_key, &etag).await;
                return Err(StateError::NotVersioned {
                    bucket: remote.url.bucket.clone(),
                });
            }
            Ok(RemoteLock { info, etag })
        }
        Put::Conflict => Err(match remote.read_lock().await? {
            Some((Some(holder), _)) if holder.is_stale() => StateError::StaleLock {
                path: remote.lock_url(),
                holder: holder.describe(),
                unlock: format!(
                    "payctl force-unlock --env {env} --state {} {}",
                    remote.url, holder.id
                ),
            },
            Some((Some(holder), _)) => StateError::Locked {
                path: remote.lock_url(),
                holder: holder.describe(),
            },
            Some((None, _)) => StateError::Locked {
                path: remote.lock_url(),
                holder: "an unreadable lock object".into(),
            },
            None => StateError::Locked {
                path: remote.lock_url(),
                holder: "a run that released it just now (try again)".into(),
            },
        }),
    }
}

impl RemoteBackend {
    /// Deletes the lock object while it still carries this run's id (and ETag).
    async fn release(&self) {
        let Some(lock) = &self.lock else { return };
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        let url = self.remote.lock_url();
        let result = match self.remote.read_lock().await {
            Ok(Some((Some(now), etag))) if now.id == lock.info.id && etag == lock.etag => {
                self.remote
                    .delete_if(&self.remote.lock_key, &lock.etag)
                    .await
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!("lock {url} is no longer this run's; left in place"),
            Err(e) => tracing::warn!(
                "could not remove the lock {url} ({e}); the next run will name it, clear it with `payctl force-unlock --env ENV --state {} {}`",
                self.remote.url,
                lock.info.id
            ),
        }
    }

    /// Who holds the lock now, for the conflict error.
    async fn holder_now(&self) -> String {
        let url = self.remote.lock_url();
        let ours = self.lock.as_ref().map(|l| l.info.id.as_str());
        match self.remote.read_lock().await {
            Ok(Some((Some(h), _))) if Some(h.id.as_str()) == ours => format!(
                "this run still holds the lock {url} (id {}), so the other writer ignored it",
                h.id
            ),
            Ok(Some((Some(h), _))) => format!("the lock {url} is now held by {}", h.describe()),
            Ok(Some((None, _))) => format!("the lock {url} is unreadable"),
            Ok(None) => format!("the lock {url} is gone"),
            Err(e) => format!("the lock {url} could not be read ({e})"),
        }
    }
}

impl Drop for RemoteBackend {
    fn drop(&mut self) {
        if self.lock.is_none() || self.released.load(Ordering::SeqCst) {
            return;
        }
        // A fallback for paths that did not call `release`: only on the multi-thread
        // runtime, and never while unwinding from a panic.
        let released = !std::thread::panicking()
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                s3::block_on(self.release()).is_ok()
            }))
            .unwrap_or(false);
        if !released {
            tracing::warn!(
                "the lock {} was not released; the next run will report it",
                self.remote.lock_url()
            );
        }
    }
}

/// Removes a remote lock left behind, only when `id` matches the lock's own id; the
/// bucket must be owned by `owner`.
pub async fn force_unlock_remote(
    sdk: &aws_config::SdkConfig,
    url: &S3Url,
    owner: &str,
    env: &str,
    id: &str,
) -> Result<LockInfo, StateError> {
    let remote = Remote::connect(sdk, url, env, owner).await?;
    let path = remote.lock_url();
    let Some((holder, etag)) = remote.read_lock().await? else {
        return Err(StateError::NoLock { path });
    };
    let mismatch = |actual: String| StateError::LockIdMismatch {
        path: path.clone(),
        given: id.to_string(),
        actual,
    };
    let Some(holder) = holder else {
        return Err(mismatch(
            "none (the lock object is not payctl's JSON)".into(),
        ));
    };
    if holder.id != id {
        return Err(mismatch(holder.id));
    }
    if !holder.is_stale() {
        tracing::warn!(
            "removing a lock whose holder may still be running: {}",
            holder.describe()
        );
    }
    if !remote.delete_if(&remote.lock_key, &etag).await? {
        return Err(mismatch("another one (it was replaced meanwhile)".into()));
    }
    Ok(holder)
}
