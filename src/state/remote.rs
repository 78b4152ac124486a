//! The state in S3 as a [`Storage`] ([`S3Storage`]: conditional writes) and a
//! [`Locker`] ([`S3Locker`]: the lock object), on top of the S3 calls of [`super::s3`].
//!
//! Every call is awaited on the run's async runtime; nothing blocks a worker thread.
//! The lock object is removed by [`Locker::unlock`], which the store's
//! [`super::StateStore::release`] calls at the end of every run whatever its outcome.
//! Dropping a locker that still holds the lock starts the same removal in the
//! background as a fallback; it cannot always finish (a process that exits at once
//! leaves the lock, and the next run reports it as stale with the `payctl force-unlock`
//! command).

use super::lock::LockInfo;
use super::locker::Locker;
use super::s3::{Put, Remote, S3Url, Sse};
use super::storage::{Storage, WriteError};
use super::{State, StateError};
use async_trait::async_trait;
use std::path::Path;

/// `<PREFIX>/<env>.json`: every write is a `PutObject` with `If-Match: <the ETag this
/// run last read or wrote>` (`If-None-Match: *` when there was no object), so a state
/// replaced behind the run's back is never overwritten. The bucket's versioning keeps
/// every earlier state: there is no backup copy.
#[derive(Debug)]
pub struct S3Storage {
    remote: Remote,
    /// The encryption every put asks for; `None`: opened to read only.
    sse: Option<Sse>,
    /// The ETag of the state object this run last read or wrote (`None`: no object).
    etag: Option<String>,
}

impl S3Storage {
    /// A storage that only reads (a detached store).
    pub fn reader(remote: Remote) -> Self {
        S3Storage {
            remote,
            sse: None,
            etag: None,
        }
    }

    /// A storage that writes with the bucket's default encryption `sse`.
    pub fn writer(remote: Remote, sse: Sse) -> Self {
        S3Storage {
            remote,
            sse: Some(sse),
            etag: None,
        }
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn location(&self) -> String {
        self.remote.state_url()
    }

    async fn read(&mut self) -> Result<Option<State>, StateError> {
        Ok(self.remote.load().await?.map(|(state, etag)| {
            self.etag = Some(etag);
            state
        }))
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let Some(sse) = &self.sse else {
            return Err(WriteError::Remote(
                "internal error: a state opened to read only was written".into(),
            ));
        };
        let put = self
            .remote
            .put(&self.remote.key, bytes.to_vec(), self.etag.as_deref(), sse)
            .await;
        match put {
            Ok(Put::Done { etag, .. }) => {
                self.etag = Some(etag);
                Ok(())
            }
            Ok(Put::Conflict) => Err(WriteError::Conflict),
            Err(e) => Err(WriteError::Remote(e.to_string())),
        }
    }
}

/// `<PREFIX>/<env>.json.lock`, created with `If-None-Match: *` (so of two runs only one
/// gets it) and removed with `If-Match: <its ETag>` (so only while it is still ours).
#[derive(Debug)]
pub struct S3Locker {
    remote: Remote,
    sse: Sse,
    env: String,
    held: Option<RemoteLock>,
}

#[derive(Debug)]
struct RemoteLock {
    info: LockInfo,
    etag: String,
}

impl S3Locker {
    pub fn new(remote: Remote, sse: Sse, env: &str) -> Self {
        S3Locker {
            remote,
            sse,
            env: env.to_string(),
            held: None,
        }
    }
}

#[async_trait]
impl Locker for S3Locker {
    /// Also shows the bucket is versioned: the lock's `PutObject` answer carries a
    /// version id only in a versioned bucket (the local emulator's answer to
    /// `GetBucketVersioning` cannot be decoded by the SDK).
    async fn lock(&mut self, command: &str) -> Result<(), StateError> {
        self.held = Some(acquire(&self.remote, &self.sse, &self.env, command).await?);
        Ok(())
    }

    async fn unlock(&mut self) {
        if let Some(lock) = self.held.take() {
            release(&self.remote, &lock).await;
        }
    }

    async fn holder(&self) -> String {
        let url = self.remote.lock_url();
        let ours = self.held.as_ref().map(|l| l.info.id.as_str());
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

impl Drop for S3Locker {
    fn drop(&mut self) {
        let Some(lock) = self.held.take() else {
            return;
        };
        // A fallback for paths that did not unlock: in the background, on the runtime
        // still running, and never while unwinding from a panic.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !std::thread::panicking() => {
                let remote = self.remote.clone();
                runtime.spawn(async move { release(&remote, &lock).await });
            }
            _ => tracing::warn!(
                "the lock {} was not released; the next run will report it",
                self.remote.lock_url()
            ),
        }
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

/// Deletes the lock object while it still carries this run's id (and ETag).
async fn release(remote: &Remote, lock: &RemoteLock) {
    let url = remote.lock_url();
    let result = match remote.read_lock().await {
        Ok(Some((Some(now), etag))) if now.id == lock.info.id && etag == lock.etag => {
            remote.delete_if(&remote.lock_key, &lock.etag).await
        }
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => {}
        Ok(false) => tracing::warn!("lock {url} is no longer this run's; left in place"),
        Err(e) => tracing::warn!(
            "could not remove the lock {url} ({e}); the next run will name it, clear it with `payctl force-unlock --env ENV --state {} {}`",
            remote.url,
            lock.info.id
        ),
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
