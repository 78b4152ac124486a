//! The state file: `<state-dir>/<env>.json`, or `<prefix>/<env>.json` in S3 ([`s3`]).
//!
//! It records every resource payctl owns in one environment, keyed by an *address*
//! (`<kind>.<name>`, e.g. `ec2_subnet.private-us-east-1a`), with its id, ARN and the few
//! attributes later resources need. Besides the resources it carries a schema version,
//! a serial that grows on every write, a lineage id fixed when the file is first made,
//! and the env, region and account it belongs to.
//!
//! Rules the store enforces:
//! - every change is written at once, atomically (temp file in the same directory,
//!   fsync, rename, fsync of the directory), so a crash leaves the old or the new file;
//!   before the first write of a run the previous file is copied to `<env>.json.backup`;
//! - the file is only opened for writing under the exclusive [`lock`] (an OS lock);
//! - a file that does not parse, or that a newer payctl wrote, is an error and is never
//!   overwritten; so is a file that belongs to another env, region or account;
//! - when a write fails, the state is dumped to a recovery file and the run stops
//!   ([`Recovery`]: in the state directory when it takes the file, else in a per-user
//!   directory; made exclusively, under a name of its own);
//! - the state file, its backup and recovery files are created with mode 0600;
//! - no secrets: records hold ids, ARNs and plain attributes only.
//!
//! [`backend`] chooses where the state lives (the local directory, or S3 with a remote
//! lock and conditional writes); [`transfer`] moves it between the two
//! (`payctl state pull` / `push`).

pub mod backend;
pub mod lock;
mod recovery;
pub mod s3;
pub mod transfer;

pub use backend::Location;
use recovery::Recovery;
pub use recovery::user_state_dir;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const SCHEMA_VERSION: u32 = 1;

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
    #[error("internal error: the S3 state needs the multi-thread async runtime")]
    NoRuntime,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

impl Record {
    pub fn new(kind: &str, id: impl Into<String>) -> Self {
        Record {
            kind: kind.to_string(),
            id: id.into(),
            arn: None,
            attrs: BTreeMap::new(),
        }
    }

    pub fn arn(mut self, arn: impl Into<String>) -> Self {
        self.arn = Some(arn.into());
        self
    }

    pub fn attr(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attrs.insert(key.to_string(), value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    pub serial: u64,
    pub lineage: String,
    pub env: String,
    pub region: String,
    pub account_id: String,
    /// A production environment (see [`crate::config::Settings::production`]): once an
    /// `up` recorded it, every command treats the environment as production, with or
    /// without the config file that said so.
    #[serde(default)]
    pub production: bool,
    #[serde(default)]
    pub resources: BTreeMap<String, Record>,
}

impl State {
    pub fn new(env: &str, region: &str, account_id: &str) -> Self {
        State {
            version: SCHEMA_VERSION,
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            env: env.to_string(),
            region: region.to_string(),
            account_id: account_id.to_string(),
            production: false,
            resources: BTreeMap::new(),
        }
    }

    /// Reads a state file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io(path, e)),
        };
        Self::parse(&bytes, &path.display().to_string()).map(Some)
    }

    /// Parses and checks a state file's contents; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<State, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            path: origin.to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v > u64::from(SCHEMA_VERSION) => {
                return Err(StateError::NewerVersion {
                    path: origin.to_string(),
                    found: v,
                });
            }
            Some(_) => {}
            None => return Err(corrupt("no schema version".into())),
        }
        let state: State = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        for (addr, rec) in &state.resources {
            if !addr.starts_with(&format!("{}.", rec.kind)) || rec.id.is_empty() {
                return Err(corrupt(format!("resource {addr:?} is malformed")));
            }
        }
        Ok(state)
    }

    /// The state at `path`, checked to belong to this run; a new one when there is none.
    pub fn load_for(
        path: &Path,
        env: &str,
        region: &str,
        account_id: &str,
    ) -> Result<State, StateError> {
        match State::load(path)? {
            Some(s) => {
                s.check_belongs(path, env, region, account_id)?;
                Ok(s)
            }
            None => Ok(State::new(env, region, account_id)),
        }
    }

    /// Checks that this file belongs to the environment, region and account of the run.
    pub fn check_belongs(
        &self,
        path: &Path,
        env: &str,
        region: &str,
        account_id: &str,
    ) -> Result<(), StateError> {
        let mismatch = |field, found: &str, expected: &str, hint: String| StateError::Mismatch {
            path: path.display().to_string(),
            field,
            found: found.to_string(),
            expected: expected.to_string(),
            hint,
        };
        if self.env != env {
            return Err(mismatch(
                "environment",
                &self.env,
                env,
                "use the matching --env or --state-dir".into(),
            ));
        }
        if self.region != region {
            return Err(mismatch(
                "region",
                &self.region,
                region,
                format!("pass --region {}", self.region),
            ));
        }
        if !self.account_id.is_empty() && self.account_id != account_id {
            return Err(mismatch(
                "account",
                &self.account_id,
                account_id,
                "use credentials for that account".into(),
            ));
        }
        Ok(())
    }
}

pub fn state_path(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("{env}.json"))
}

/// Creates `path` for writing, mode 0600, failing when it exists.
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to `path` atomically: temp file beside it (mode 0600), fsync, rename,
/// fsync dir. The file therefore has mode 0600 afterwards, whatever it had before.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = match create_private(&tmp) {
            // Left by a killed run with the same pid: ours to replace.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                create_private(&tmp)?
            }
            made => made?,
        };
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Copies the state file at `path` to `<env>.json.backup` (atomically, mode 0600: not
/// `fs::copy`, which would copy the source's permissions); nothing when there is none.
pub(crate) fn backup(path: &Path) -> std::io::Result<()> {
    match std::fs::read(path) {
        Ok(bytes) => write_atomic(&path.with_extension("json.backup"), &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces the whole contents of an open file and syncs it.
pub(crate) fn rewrite_file(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The state of one run: loaded under the lock, written after every change.
#[derive(Debug)]
pub struct StateStore {
    /// The local file, or for S3 the object's `s3://` URL (for messages).
    path: PathBuf,
    inner: Mutex<Inner>,
    /// The lock and where writes go; a detached store ([`StateStore::open_detached`])
    /// has no lock and never writes.
    backend: backend::Backend,
    /// Where the state goes when it cannot be written.
    recovery: Recovery,
}

#[derive(Debug)]
struct Inner {
    state: State,
    backed_up: bool,
}

impl StateStore {
    /// Takes the lock, then loads (or starts) the state for `env`.
    pub fn open(
        dir: &Path,
        env: &str,
        region: &str,
        account_id: &str,
        command: &str,
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::io(dir, e))?;
        let path = state_path(dir, env);
        let guard = lock::acquire(&path, command)?;
        let state = State::load_for(&path, env, region, account_id)?;
        Ok(Self::local(path, state, Some(guard)))
    }

    fn local(path: PathBuf, state: State, guard: Option<lock::LockGuard>) -> Self {
        StateStore {
            recovery: Recovery::new(path.parent().unwrap_or(Path::new("."))),
            path,
            inner: Mutex::new(Inner {
                state,
                backed_up: false,
            }),
            backend: backend::Backend::Local(guard),
        }
    }

    /// The state as a run that changes nothing sees it (`plan`): loaded without taking
    /// the lock, and `put`/`remove` change only this in-memory copy, never the file.
    pub fn open_detached(
        dir: &Path,
        env: &str,
        region: &str,
        account_id: &str,
    ) -> Result<Self, StateError> {
        let path = state_path(dir, env);
        let state = State::load_for(&path, env, region, account_id)?;
        Ok(Self::local(path, state, None))
    }

    /// False for a detached store: nothing it holds reaches the file.
    pub fn is_detached(&self) -> bool {
        self.backend.is_detached()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change: every
        // mutation is a single map operation, so the poisoned value is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> State {
        self.inner().state.clone()
    }

    pub fn get(&self, addr: &str) -> Option<Record> {
        self.inner().state.resources.get(addr).cloned()
    }

    pub fn id(&self, addr: &str) -> Option<String> {
        self.get(addr).map(|r| r.id)
    }

    /// All records of one kind, by address.
    pub fn of_kind(&self, kind: &str) -> Vec<(String, Record)> {
        let prefix = format!("{kind}.");
        self.inner()
            .state
            .resources
            .iter()
            .filter(|(a, _)| a.starts_with(&prefix))
            .map(|(a, r)| (a.clone(), r.clone()))
            .collect()
    }

    /// Whether the state says this is a production environment.
    pub fn production(&self) -> bool {
        self.inner().state.production
    }

    /// Records that this is a production environment (written at once; never undone).
    pub fn mark_production(&self) -> Result<(), StateError> {
        let mut inner = self.inner();
        if inner.state.production {
            return Ok(());
        }
        inner.state.production = true;
        self.commit(inner)
    }

    /// Records (or replaces) a resource and writes the file when anything changed.
    pub fn put(&self, addr: &str, record: Record) -> Result<(), StateError> {
        let mut inner = self.inner();
        if inner.state.resources.get(addr) == Some(&record) {
            return Ok(());
        }
        inner.state.resources.insert(addr.to_string(), record);
        self.commit(inner)
    }

    /// Forgets a resource (it is gone) and writes the file.
    pub fn remove(&self, addr: &str) -> Result<(), StateError> {
        let mut inner = self.inner();
        if inner.state.resources.remove(addr).is_none() {
            return Ok(());
        }
        self.commit(inner)
    }

    /// Writes what `inner` holds where the state lives (S3 writes leave the mutex first).
    fn commit(&self, mut inner: std::sync::MutexGuard<'_, Inner>) -> Result<(), StateError> {
        if let backend::Backend::S3(remote) = &self.backend {
            drop(inner);
            return self.write_remote(remote);
        }
        self.persist(&mut inner)
    }

    fn persist(&self, inner: &mut Inner) -> Result<(), StateError> {
        if self.is_detached() {
            return Ok(());
        }
        inner.state.serial += 1;
        let bytes = serde_json::to_vec_pretty(&inner.state)
            .map_err(|e| StateError::io(&self.path, e.into()))?;
        let written = (|| {
            if !inner.backed_up {
                backup(&self.path)?;
                inner.backed_up = true;
            }
            write_atomic(&self.path, &bytes)
        })();
        written.map_err(|source| StateError::WriteFailed {
            path: self.path.display().to_string(),
            recovery: self.recovery.dump(&inner.state.env, &bytes),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> StateStore {
        StateStore::open(dir, "dev", "us-east-1", "123456789012", "up").unwrap()
    }

    #[test]
    fn a_detached_store_neither_locks_nor_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        let before = std::fs::read(store.path()).unwrap();
        // Opened while a run holds the lock: a plan reads beside it.
        let plan =
            StateStore::open_detached(dir.path(), "dev", "us-east-1", "123456789012").unwrap();
        assert!(plan.is_detached() && !store.is_detached());
        assert_eq!(plan.id("ec2_vpc.main").as_deref(), Some("vpc-1"));
        plan.put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
            .unwrap();
        plan.remove("ec2_vpc.main").unwrap();
        assert_eq!(plan.id("ec2_subnet.a").as_deref(), Some("subnet-1"));
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
        let other =
            StateStore::open_detached(dir.path(), "qa", "us-east-1", "123456789012").unwrap();
        assert!(other.snapshot().resources.is_empty());
        assert!(
            !state_path(dir.path(), "qa").exists(),
            "nothing written for a new env"
        );
    }

    #[test]
    fn every_change_is_written_with_a_growing_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        let on_disk = State::load(store.path()).unwrap().unwrap();
        assert_eq!(on_disk.serial, 1);
        assert_eq!(on_disk.resources["ec2_vpc.main"].id, "vpc-1");
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        assert_eq!(
            State::load(store.path()).unwrap().unwrap().serial,
            1,
            "unchanged put writes nothing"
        );
        store.remove("ec2_vpc.main").unwrap();
        let on_disk = State::load(store.path()).unwrap().unwrap();
        assert_eq!(on_disk.serial, 2);
        assert!(on_disk.resources.is_empty());
        let lineage = on_disk.lineage.clone();
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.snapshot().lineage,
            lineage,
            "lineage survives reopening"
        );
    }

    #[test]
    fn atomic_write_leaves_no_temp_files_and_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"{\"a\":1}").unwrap();
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["x.json".to_string()]);
    }

    #[test]
    fn previous_file_is_backed_up_before_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        drop(store);
        let store = open(dir.path());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-2"))
            .unwrap();
        let backup = State::load(&dir.path().join("dev.json.backup"))
            .unwrap()
            .unwrap();
        assert_eq!(backup.resources["ec2_vpc.main"].id, "vpc-1");
    }

    #[test]
    fn corrupt_file_is_an_error_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        for body in [
            "{\"version\": 1, \"serial\":",
            "not json",
            "{\"serial\": 1}",
            "[]",
        ] {
            let path = state_path(dir.path(), "dev");
            std::fs::write(&path, body).unwrap();
            let err = StateStore::open(dir.path(), "dev", "us-east-1", "1", "up").unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{body}: {err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), body);
            let again = lock::acquire(&path, "up");
            assert!(again.is_ok(), "lock released after the error: {again:?}");
        }
    }

    #[test]
    fn malformed_record_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::new("dev", "us-east-1", "1");
        s.resources
            .insert("ec2_vpc.main".into(), Record::new("kms_key", "k"));
        std::fs::write(
            state_path(dir.path(), "dev"),
            serde_json::to_vec(&s).unwrap(),
        )
        .unwrap();
        let err = StateStore::open(dir.path(), "dev", "us-east-1", "1", "up").unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = serde_json::to_value(State::new("dev", "us-east-1", "1")).unwrap();
        s["version"] = serde_json::json!(SCHEMA_VERSION + 1);
        let path = state_path(dir.path(), "dev");
        std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
        let err = StateStore::open(dir.path(), "dev", "us-east-1", "1", "up").unwrap_err();
        assert!(matches!(err, StateError::NewerVersion { .. }), "{err}");
    }

    #[test]
    fn file_of_another_region_or_account_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let store = open(dir.path());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        drop(store);
        let err =
            StateStore::open(dir.path(), "dev", "eu-west-1", "123456789012", "up").unwrap_err();
        assert!(err.to_string().contains("pass --region us-east-1"), "{err}");
        let err =
            StateStore::open(dir.path(), "dev", "us-east-1", "999999999999", "up").unwrap_err();
        assert!(
            matches!(
                err,
                StateError::Mismatch {
                    field: "account",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn lock_is_held_while_the_store_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let err =
            StateStore::open(dir.path(), "dev", "us-east-1", "123456789012", "up").unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }));
        drop(store);
        open(dir.path());
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn unwritable_directory_dumps_a_recovery_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        // Make the state file's directory refuse new files (the temp file). Root ignores
        // permission bits, so replace the directory's temp target with a directory instead.
        let tmp = dir
            .path()
            .join(format!(".dev.json.tmp.{}", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o500)).unwrap();
        let err = store
            .put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
            .unwrap_err();
        let StateError::WriteFailed { recovery, .. } = &err else {
            panic!("expected WriteFailed, got {err}");
        };
        // The directory itself still takes new files: the recovery file goes there.
        let recovery = Path::new(recovery);
        assert_eq!(recovery.parent(), Some(dir.path()), "{err}");
        assert_eq!(mode(recovery), 0o600);
        let saved = State::load(recovery).unwrap().unwrap();
        assert_eq!(saved.resources["ec2_subnet.a"].id, "subnet-1");
        // A later failure of the same run rewrites the same file.
        let err = store
            .put("ec2_subnet.b", Record::new("ec2_subnet", "subnet-2"))
            .unwrap_err();
        assert!(err.to_string().contains(&recovery.display().to_string()));
        let saved = State::load(recovery).unwrap().unwrap();
        assert_eq!(saved.resources["ec2_subnet.b"].id, "subnet-2");
        std::fs::remove_file(recovery).unwrap();
        let on_disk = State::load(store.path()).unwrap().unwrap();
        assert!(!on_disk.resources.contains_key("ec2_subnet.a"));
    }

    #[test]
    fn without_a_state_directory_the_recovery_file_goes_to_the_per_user_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let mut store = open(&dir);
        let user = root.path().join("xdg-state/payctl");
        store.recovery.fallback = Some(user.clone());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        // The state directory goes away and a plain file takes its place: neither the
        // state file nor a recovery file can be made there (root or not).
        std::fs::rename(&dir, root.path().join("moved")).unwrap();
        std::fs::write(&dir, b"").unwrap();
        let err = store
            .put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
            .unwrap_err();
        let StateError::WriteFailed { recovery, .. } = &err else {
            panic!("expected WriteFailed, got {err}");
        };
        let recovery = Path::new(recovery);
        assert_eq!(recovery.parent(), Some(user.as_path()), "{err}");
        assert_eq!(mode(&user), 0o700, "the per-user directory is private");
        assert_eq!(mode(recovery), 0o600);
        let saved = State::load(recovery).unwrap().unwrap();
        assert_eq!(saved.resources["ec2_subnet.a"].id, "subnet-1");

        // With no per-user directory either, the error says so.
        store.recovery = Recovery::new(&dir);
        store.recovery.fallback = None;
        let err = store.remove("ec2_vpc.main").unwrap_err();
        assert!(err.to_string().contains("saved to nowhere ("), "{err}");
    }

    #[test]
    fn state_and_backup_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A state file an older payctl left world-readable.
        let path = state_path(dir.path(), "dev");
        let old = State::new("dev", "us-east-1", "123456789012");
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = open(dir.path());
        store
            .put("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .unwrap();
        assert_eq!(mode(&path), 0o600);
        let backup = dir.path().join("dev.json.backup");
        assert_eq!(mode(&backup), 0o600);
        assert_eq!(State::load(&backup).unwrap().unwrap(), old);
        assert_eq!(mode(&lock::lock_path(&path)), 0o600);
        // A new file is 0600 too, even over a temp file a killed run with this pid left.
        let fresh = dir.path().join("new.json");
        let left = dir
            .path()
            .join(format!(".new.json.tmp.{}", std::process::id()));
        std::fs::write(&left, b"half").unwrap();
        std::fs::set_permissions(&left, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&fresh, b"{}").unwrap();
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(std::fs::read(&fresh).unwrap(), b"{}");
        assert!(!left.exists());
    }
}
