//! What can go wrong with the state: one error type for the store, its storages and
//! lockers, and the commands that move the state around.

use super::SCHEMA_VERSION;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file {path} is not valid payctl state ({reason}); it was left untouched: fix or move it"
    )]
    Corrupt { path: String, reason: String },
    #[error(
        "state file {path} has schema version {found}, newer than this payctl understands ({SCHEMA_VERSION}); upgrade payctl"
    )]
    NewerVersion { path: String, found: u64 },
    #[error("state file {path} belongs to {field} {found:?}, not {expected:?}; {hint}")]
    Mismatch {
        path: String,
        field: &'static str,
        found: String,
        expected: String,
        hint: String,
    },
    #[error("environment is locked by {holder} ({path}); wait for that run to finish")]
    Locked { path: String, holder: String },
    #[error(
        "stale lock {path}: held by {holder}, which is no longer running; clear it with `{unlock}`"
    )]
    StaleLock {
        path: String,
        holder: String,
        unlock: String,
    },
    #[error("no lock at {path}; nothing was changed")]
    NoLock { path: String },
    #[error(
        "lock {path} is held by {holder}, a run that is still going; nothing was changed: that run releases it when it ends, and the OS does if it dies"
    )]
    LockHeld { path: String, holder: String },
    #[error("lock {path} has id {actual}, not {given}; nothing was removed")]
    LockIdMismatch {
        path: String,
        given: String,
        actual: String,
    },
    #[error(
        "could not write state file {path} ({source}); the current state was saved to {recovery}: copy it back once the directory is writable"
    )]
    WriteFailed {
        path: String,
        recovery: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid state location {url:?}: {reason}; expected s3://BUCKET[/PREFIX]")]
    BadUrl { url: String, reason: String },
    #[error("{op} on {url} failed: {code}: {message}")]
    Remote {
        op: &'static str,
        url: String,
        code: String,
        message: String,
    },
    #[error(
        "state bucket {bucket} does not exist (or these credentials cannot see it); create it with versioning and default encryption on; nothing was changed"
    )]
    BucketMissing { bucket: String },
    #[error(
        "state bucket {bucket} is owned by another account than {owner} (S3 answered 403 Access Denied to a request expecting that owner); if the state bucket lives in another account, name it with --state-bucket-owner or `state_bucket_owner` in payctl.toml; nothing was changed"
    )]
    ForeignBucket { bucket: String, owner: String },
    #[error(
        "state bucket {bucket} is not versioned; turn versioning on (`aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled`) so every earlier state is kept; nothing was changed"
    )]
    NotVersioned { bucket: String },
    #[error(
        "state bucket {bucket} has no default encryption; set it (SSE-KMS or SSE-S3: `aws s3api put-bucket-encryption --bucket {bucket} ...`); nothing was changed"
    )]
    NotEncrypted { bucket: String },
    #[error(
        "remote state {url} changed under this run (a conditional write was refused: someone else wrote it) and was not overwritten; this run stopped and its state was saved to {recovery}; {holder}; compare the two (`payctl state pull --force` into another --state-dir), then re-run: `up` adopts what this run made by name and tags"
    )]
    RemoteConflict {
        url: String,
        recovery: String,
        holder: String,
    },
    #[error(
        "could not write remote state {url} ({reason}); this run stopped and its state was saved to {recovery}: once S3 is reachable, copy it to state/<env>.json and `payctl state push` it"
    )]
    RemoteWriteFailed {
        url: String,
        recovery: String,
        reason: String,
    },
    #[error("there is no state at {url}; nothing was changed")]
    NoRemote { url: String },
    #[error("there is no local state at {path}; nothing was changed")]
    NoLocal { path: String },
    #[error("refusing to {action}: {reason}; nothing was changed (--force overrides)")]
    Diverged { action: String, reason: String },
    #[error(
        "internal error: the state {path} was changed after its lock was released; the change was not written"
    )]
    Released { path: String },
}

impl StateError {
    /// A failure to save the state: the run must stop at once, and the error (which says
    /// where the state went) comes first.
    pub fn halts_run(&self) -> bool {
        matches!(
            self,
            StateError::WriteFailed { .. }
                | StateError::RemoteConflict { .. }
                | StateError::RemoteWriteFailed { .. }
        )
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StateError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
