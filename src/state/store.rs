//! The state of one run ([`StateStore`]): read once under the lock, changed in memory,
//! written through its [`Storage`] after every change.
//!
//! Many resource kinds record in parallel. Reads (`get`, `id`, `of_kind`, …) take a
//! short synchronous lock on the in-memory state and never wait for I/O. Changes
//! (`put`, `remove`, `mark_production`) are `async` and go one at a time through the
//! *writer*, a `tokio` mutex that owns the storage, the locker and the recovery file:
//! a change takes the writer, changes the state in memory, serializes it with the next
//! serial, and writes it before `put` returns. So writes land in the order of their
//! serials, every write carries every earlier change, and no synchronous lock is ever
//! held across I/O. The write itself runs as a task of its own, holding the writer:
//! once begun it finishes even if the caller is cancelled (a run interrupted mid-walk),
//! so the stored state and what this run knows of it (the S3 ETag) never part.

use super::locker::Locker;
use super::recovery::Recovery;
use super::storage::{Storage, WriteError};
use super::{Record, State, StateError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The state of one run: loaded under the lock, written after every change.
#[derive(Debug)]
pub struct StateStore {
    /// The local file, or for S3 the object's `s3://` URL (for messages).
    path: PathBuf,
    state: Mutex<State>,
    /// Where changes are written, one at a time; `None` for a detached store
    /// ([`StateStore::open_detached`]), which has no lock and never writes.
    writer: Option<Arc<tokio::sync::Mutex<Writer>>>,
    /// Whether a stored state existed when the store was opened.
    found: bool,
}

/// Everything a write touches, behind the writer mutex.
#[derive(Debug)]
pub(super) struct Writer {
    storage: Box<dyn Storage>,
    locker: Box<dyn Locker>,
    /// Where the state goes when it cannot be written.
    pub(super) recovery: Recovery,
    /// Set by a refused write (who held the lock then): nothing more is written.
    refused: Option<String>,
    /// Set by [`StateStore::release`]: the lock is gone, nothing more is written.
    released: bool,
}

impl StateStore {
    /// A store that writes through `storage` under the lock `locker` holds.
    pub(super) fn writing(
        storage: Box<dyn Storage>,
        locker: Box<dyn Locker>,
        recovery: Recovery,
        state: State,
        found: bool,
    ) -> Self {
        StateStore {
            path: PathBuf::from(storage.location()),
            state: Mutex::new(state),
            writer: Some(Arc::new(tokio::sync::Mutex::new(Writer {
                storage,
                locker,
                recovery,
                refused: None,
                released: false,
            }))),
            found,
        }
    }

    /// A store that never writes: what a run that changes nothing sees.
    pub(super) fn detached(location: String, state: State, found: bool) -> Self {
        StateStore {
            path: PathBuf::from(location),
            state: Mutex::new(state),
            writer: None,
            found,
        }
    }

    /// False for a detached store: nothing it holds reaches the stored state.
    pub fn is_detached(&self) -> bool {
        self.writer.is_none()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a stored state existed when the store was opened (`state push`).
    pub(super) fn found(&self) -> bool {
        self.found
    }

    fn memory(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every
        // mutation is a single map operation, so the poisoned value is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> State {
        self.memory().clone()
    }

    pub fn get(&self, addr: &str) -> Option<Record> {
        self.memory().resources.get(addr).cloned()
    }

    pub fn id(&self, addr: &str) -> Option<String> {
        self.get(addr).map(|r| r.id)
    }

    /// All records of one kind, by address.
    pub fn of_kind(&self, kind: &str) -> Vec<(String, Record)> {
        let prefix = format!("{kind}.");
        self.memory()
            .resources
            .iter()
            .filter(|(a, _)| a.starts_with(&prefix))
            .map(|(a, r)| (a.clone(), r.clone()))
            .collect()
    }

    /// Whether the state says this is a production environment.
    pub fn production(&self) -> bool {
        self.memory().production
    }

    /// Records that this is a production environment (written at once; never undone).
    pub async fn mark_production(&self) -> Result<(), StateError> {
        if self.production() {
            return Ok(());
        }
        self.update(|s| {
            let changed = !s.production;
            s.production = true;
            changed
        })
        .await
    }

    /// Records (or replaces) a resource, which ends an intent to create it, and writes
    /// the state when anything changed.
    pub async fn put(&self, addr: &str, record: Record) -> Result<(), StateError> {
        {
            let s = self.memory();
            if s.resources.get(addr) == Some(&record) && !s.intents.contains_key(addr) {
                return Ok(());
            }
        }
        self.update(|s| {
            let intent = s.intents.remove(addr).is_some();
            if s.resources.get(addr) == Some(&record) {
                return intent;
            }
            s.resources.insert(addr.to_string(), record);
            true
        })
        .await
    }

    /// Forgets a resource (it is gone), and any intent to create it, and writes the state.
    pub async fn remove(&self, addr: &str) -> Result<(), StateError> {
        {
            let s = self.memory();
            if !s.resources.contains_key(addr) && !s.intents.contains_key(addr) {
                return Ok(());
            }
        }
        self.update(|s| s.resources.remove(addr).is_some() | s.intents.remove(addr).is_some())
            .await
    }

    /// When an intent to create what `addr` records was written, if one is pending.
    pub fn intent(&self, addr: &str) -> Option<String> {
        self.memory().intents.get(addr).cloned()
    }

    /// Writes an intent to create what `addr` records, before the create call.
    pub async fn put_intent(&self, addr: &str) -> Result<(), StateError> {
        let at = chrono::Utc::now().to_rfc3339();
        self.update(|s| {
            s.intents.insert(addr.to_string(), at);
            true
        })
        .await
    }

    /// Drops the intent for `addr` (its create was refused: nothing was made).
    pub async fn clear_intent(&self, addr: &str) -> Result<(), StateError> {
        if self.intent(addr).is_none() {
            return Ok(());
        }
        self.update(|s| s.intents.remove(addr).is_some()).await
    }

    /// Applies `change` (which answers whether it changed anything) and, if it did,
    /// writes the state with the next serial before returning. A detached store only
    /// changes its memory.
    pub(super) async fn update(
        &self,
        change: impl FnOnce(&mut State) -> bool,
    ) -> Result<(), StateError> {
        let Some(writer) = &self.writer else {
            change(&mut self.memory());
            return Ok(());
        };
        let writer = writer.clone().lock_owned().await;
        if writer.released {
            return Err(StateError::Released {
                path: self.path.display().to_string(),
            });
        }
        let (bytes, env) = {
            let mut state = self.memory();
            if !change(&mut state) {
                return Ok(());
            }
            state.serial += 1;
            let bytes = serde_json::to_vec_pretty(&*state)
                .map_err(|e| StateError::io(&self.path, e.into()))?;
            (bytes, state.env.clone())
        };
        tokio::spawn(Writer::persist(writer, bytes, env))
            .await
            .unwrap_or_else(|e| Err(StateError::io(&self.path, std::io::Error::other(e))))
    }

    /// Gives the lock up (after any write in flight) at the end of a run, whatever its
    /// outcome; nothing is written afterwards. Dropping the store releases a local lock
    /// too, and starts releasing an S3 lock in the background (see [`super::remote`]).
    pub async fn release(&self) {
        let Some(writer) = &self.writer else {
            return;
        };
        let mut writer = writer.lock().await;
        if !std::mem::replace(&mut writer.released, true) {
            writer.locker.unlock().await;
        }
    }

    #[cfg(test)]
    pub(super) fn writer(&self) -> tokio::sync::MutexGuard<'_, Writer> {
        self.writer
            .as_ref()
            .and_then(|w| w.try_lock().ok())
            .expect("a writing store with no write in flight")
    }
}

impl Writer {
    /// Writes `bytes`; when that fails, saves them to the recovery file and says where.
    async fn persist(
        mut writer: tokio::sync::OwnedMutexGuard<Writer>,
        bytes: Vec<u8>,
        env: String,
    ) -> Result<(), StateError> {
        let at = writer.storage.location();
        if let Some(holder) = &writer.refused {
            // An earlier write met a conflict: keep the recovery file current only.
            return Err(StateError::RemoteConflict {
                url: at,
                recovery: writer.recovery.dump(&env, &bytes),
                holder: holder.clone(),
            });
        }
        let error = match writer.storage.write(&bytes).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let recovery = writer.recovery.dump(&env, &bytes);
        Err(match error {
            WriteError::Io(source) => StateError::WriteFailed {
                path: at,
                recovery,
                source,
            },
            WriteError::Conflict => {
                let holder = writer.locker.holder().await;
                writer.refused = Some(holder.clone());
                StateError::RemoteConflict {
                    url: at,
                    recovery,
                    holder,
                }
            }
            WriteError::Remote(reason) => StateError::RemoteWriteFailed {
                url: at,
                recovery,
                reason,
            },
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::file::write_atomic;
    use crate::state::{SCHEMA_VERSION, lock, state_path};

    /// Records `id` at `addr` (whose kind is the part before the dot).
    async fn put(store: &StateStore, addr: &str, id: &str) {
        let kind = addr.split_once('.').map_or(addr, |(k, _)| k);
        store.put(addr, Record::new(kind, id)).await.unwrap();
    }

    async fn open(dir: &Path) -> StateStore {
        StateStore::open(dir, "dev", "us-east-1", "123456789012", "up")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_detached_store_neither_locks_nor_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-1").await;
        let before = std::fs::read(store.path()).unwrap();
        // Opened while a run holds the lock: a plan reads beside it.
        let plan = StateStore::open_detached(dir.path(), "dev", "us-east-1", "123456789012")
            .await
            .unwrap();
        assert!(plan.is_detached() && !store.is_detached());
        assert_eq!(plan.id("ec2_vpc.main").as_deref(), Some("vpc-1"));
        plan.put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
            .await
            .unwrap();
        plan.remove("ec2_vpc.main").await.unwrap();
        assert_eq!(plan.id("ec2_subnet.a").as_deref(), Some("subnet-1"));
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
        let other = StateStore::open_detached(dir.path(), "qa", "us-east-1", "123456789012")
            .await
            .unwrap();
        assert!(other.snapshot().resources.is_empty());
        assert!(
            !state_path(dir.path(), "qa").exists(),
            "nothing written for a new env"
        );
    }

    #[tokio::test]
    async fn every_change_is_written_with_a_growing_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-1").await;
        let on_disk = State::load(store.path()).unwrap().unwrap();
        assert_eq!(on_disk.serial, 1);
        assert_eq!(on_disk.resources["ec2_vpc.main"].id, "vpc-1");
        put(&store, "ec2_vpc.main", "vpc-1").await;
        assert_eq!(
            State::load(store.path()).unwrap().unwrap().serial,
            1,
            "unchanged put writes nothing"
        );
        store.remove("ec2_vpc.main").await.unwrap();
        let on_disk = State::load(store.path()).unwrap().unwrap();
        assert_eq!(on_disk.serial, 2);
        assert!(on_disk.resources.is_empty());
        let lineage = on_disk.lineage.clone();
        drop(store);
        let store = open(dir.path()).await;
        assert_eq!(
            store.snapshot().lineage,
            lineage,
            "lineage survives reopening"
        );
    }

    #[tokio::test]
    async fn previous_file_is_backed_up_before_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-1").await;
        drop(store);
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-2").await;
        let backup = State::load(&dir.path().join("dev.json.backup"))
            .unwrap()
            .unwrap();
        assert_eq!(backup.resources["ec2_vpc.main"].id, "vpc-1");
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        for body in [
            "{\"version\": 1, \"serial\":",
            "not json",
            "{\"serial\": 1}",
            "[]",
        ] {
            let path = state_path(dir.path(), "dev");
            std::fs::write(&path, body).unwrap();
            let err = StateStore::open(dir.path(), "dev", "us-east-1", "1", "up")
                .await
                .unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{body}: {err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), body);
            let again = lock::acquire(&path, "up");
            assert!(again.is_ok(), "lock released after the error: {again:?}");
        }
    }

    #[tokio::test]
    async fn malformed_record_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::new("dev", "us-east-1", "1");
        s.resources
            .insert("ec2_vpc.main".into(), Record::new("kms_key", "k"));
        std::fs::write(
            state_path(dir.path(), "dev"),
            serde_json::to_vec(&s).unwrap(),
        )
        .unwrap();
        let err = StateStore::open(dir.path(), "dev", "us-east-1", "1", "up")
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    }

    #[tokio::test]
    async fn newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = serde_json::to_value(State::new("dev", "us-east-1", "1")).unwrap();
        s["version"] = serde_json::json!(SCHEMA_VERSION + 1);
        let path = state_path(dir.path(), "dev");
        std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
        let err = StateStore::open(dir.path(), "dev", "us-east-1", "1", "up")
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::NewerVersion { .. }), "{err}");
    }

    #[tokio::test]
    async fn file_of_another_region_or_account_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).await);
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-1").await;
        drop(store);
        let err = StateStore::open(dir.path(), "dev", "eu-west-1", "123456789012", "up")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pass --region us-east-1"), "{err}");
        let err = StateStore::open(dir.path(), "dev", "us-east-1", "999999999999", "up")
            .await
            .unwrap_err();
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

    #[tokio::test]
    async fn lock_is_held_while_the_store_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let err = StateStore::open(dir.path(), "dev", "us-east-1", "123456789012", "up")
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }));
        drop(store);
        open(dir.path()).await;
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn unwritable_directory_dumps_a_recovery_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-1").await;
        // Make the state file's directory refuse new files (the temp file). Root ignores
        // permission bits, so replace the directory's temp target with a directory instead.
        let tmp = dir
            .path()
            .join(format!(".dev.json.tmp.{}", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o500)).unwrap();
        let err = store
            .put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
            .await
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
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&recovery.display().to_string()));
        let saved = State::load(recovery).unwrap().unwrap();
        assert_eq!(saved.resources["ec2_subnet.b"].id, "subnet-2");
        std::fs::remove_file(recovery).unwrap();
        let on_disk = State::load(store.path()).unwrap().unwrap();
        assert!(!on_disk.resources.contains_key("ec2_subnet.a"));
    }

    #[tokio::test]
    async fn without_a_state_directory_the_recovery_file_goes_to_the_per_user_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let store = open(&dir).await;
        let user = root.path().join("xdg-state/payctl");
        store.writer().recovery.fallback = Some(user.clone());
        put(&store, "ec2_vpc.main", "vpc-1").await;
        // The state directory goes away and a plain file takes its place: neither the
        // state file nor a recovery file can be made there (root or not).
        std::fs::rename(&dir, root.path().join("moved")).unwrap();
        std::fs::write(&dir, b"").unwrap();
        let err = store
            .put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
            .await
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
        {
            let mut writer = store.writer();
            writer.recovery = Recovery::new(&dir);
            writer.recovery.fallback = None;
        }
        let err = store.remove("ec2_vpc.main").await.unwrap_err();
        assert!(err.to_string().contains("saved to nowhere ("), "{err}");
    }

    #[tokio::test]
    async fn state_and_backup_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A state file an older payctl left world-readable.
        let path = state_path(dir.path(), "dev");
        let old = State::new("dev", "us-east-1", "123456789012");
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-1").await;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_changes_are_written_one_at_a_time_each_with_its_own_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()).await);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let record = Record::new("ec2_subnet", format!("subnet-{i}"));
                    store.put(&format!("ec2_subnet.s{i}"), record).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let on_disk = State::load(store.path()).unwrap().unwrap();
        assert_eq!(on_disk.serial, 32, "one write per change");
        assert_eq!(on_disk.resources.len(), 32);
        assert_eq!(
            on_disk,
            store.snapshot(),
            "the last write holds every change"
        );
    }

    #[tokio::test]
    async fn production_is_recorded_once_in_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        assert!(!store.production());
        store.mark_production().await.unwrap();
        store.mark_production().await.unwrap();
        assert!(store.production());
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(on_disk["production"], serde_json::json!(true));
        assert_eq!(on_disk["serial"], serde_json::json!(1));
    }

    #[tokio::test]
    async fn after_release_the_lock_is_free_and_nothing_more_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        put(&store, "ec2_vpc.main", "vpc-1").await;
        store.release().await;
        store.release().await;
        let next = open(dir.path()).await;
        let err = store
            .put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Released { .. }), "{err}");
        let on_disk = State::load(next.path()).unwrap().unwrap();
        assert_eq!(on_disk.serial, 1);
        assert!(!on_disk.resources.contains_key("ec2_subnet.a"));
    }
}
