//! The exclusive run lock: an OS advisory lock (`flock(2)`, through `fs4`) on
//! `state/<env>.json.lock`, held through an open file for the whole run.
//!
//! - A run opens the file (created 0600 when missing, never truncated on open) and takes
//!   an exclusive lock without waiting. Once it holds it, it writes who it is into the
//!   file (a lock id, pid, host, start time, command; truncate, write, fsync). A second
//!   run that cannot take the lock reads that JSON and fails at once naming the holder.
//! - The OS releases the lock when the holder's file is closed: at the end of the run,
//!   or when the process dies in any way (SIGKILL, a second Ctrl-C, a crash). A killed
//!   run therefore never leaves a stale lock: the next run takes the file over (noting
//!   the holder info the killed run left), and no run can release another run's lock.
//! - The file is never removed, by the guard or by `force-unlock`; they only clear the
//!   holder info (truncate the file) while they hold the lock. Removing it would race: a
//!   run B that opened the file just before A unlinked it would then lock the unlinked
//!   file while a run C creates and locks a new one at the same path, and both would go
//!   on. (For the same reason, do not delete a lock file by hand.)
//! - `flock` locks belong to the open file, not the process: a second open in the same
//!   process is refused like one from another process (the tests rely on it). Files are
//!   opened close-on-exec, so a child process never inherits the lock.
//!
//! The S3 lock ([`super::remote::S3Locker`]) keeps the same [`LockInfo`] and its own
//! stale-lock handling: an object cannot be released by the OS. Both are behind the
//! [`super::Locker`] trait.

use super::StateError;
use super::file::rewrite_file;
use fs4::{FileExt, TryLockError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub id: String,
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub command: String,
}

impl LockInfo {
    /// A new lock for this process: a fresh id, this pid and host, the time now.
    pub fn new(command: &str) -> Self {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            pid: std::process::id(),
            host: this_host(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "pid {} on {} since {} ({}), lock id {}",
            self.pid, self.host, self.started_at, self.command, self.id
        )
    }

    /// True when the holder ran on this host and its process no longer exists (for the
    /// S3 lock, which nothing releases when its holder dies).
    pub fn is_stale(&self) -> bool {
        self.host == this_host() && !pid_alive(self.pid)
    }
}

/// The held lock: the open, locked file. Dropping it clears the holder info and closes
/// the file, which releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    info: LockInfo,
}

impl LockGuard {
    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

pub fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn lock_path(state_path: &Path) -> PathBuf {
    let mut p = state_path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Opens the lock file for reading and writing (created 0600 when `create`), never
/// through a symbolic link.
fn open(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Takes the lock without waiting: `Ok(false)` when another open file holds it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    // Called through the trait: std's own `File::try_lock` (Rust 1.89) would shadow it.
    match FileExt::try_lock(file) {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

fn contents(file: &mut File) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The holder that a locked file names, for the messages.
fn holder_of(file: &mut File) -> String {
    match contents(file) {
        Ok(bytes) if bytes.is_empty() => {
            "a run that is just starting (its holder info is not written yet)".into()
        }
        Ok(bytes) => match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(holder) => holder.describe(),
            Err(_) => "a run whose holder info cannot be read".into(),
        },
        Err(e) => format!("a run whose holder info cannot be read ({e})"),
    }
}

/// Takes the lock or explains who holds it.
pub fn acquire(state_path: &Path, command: &str) -> Result<LockGuard, StateError> {
    let path = lock_path(state_path);
    let io = |e| StateError::io(&path, e);
    let mut file = open(&path, true).map_err(io)?;
    if !try_lock(&file).map_err(io)? {
        return Err(StateError::Locked {
            path: path.display().to_string(),
            holder: holder_of(&mut file),
        });
    }
    // Holder info still in the file: its run died (or exited at once) while holding it.
    if let Some(previous) = contents(&mut file)
        .ok()
        .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok())
    {
        tracing::warn!(
            "taking over the lock {}: its last holder, {}, ended without clearing it (killed, or exited at once), and the OS released it",
            path.display(),
            previous.describe()
        );
    }
    let info = LockInfo::new(command);
    let body = serde_json::to_vec_pretty(&info).map_err(|e| io(e.into()))?;
    rewrite_file(&mut file, &body).map_err(io)?;
    Ok(LockGuard { file, info })
}

/// `payctl force-unlock` for a local state. A live run's lock is refused
/// ([`StateError::LockHeld`]): its holder releases it, and the OS does when the holder
/// dies. When nobody holds the lock there is nothing to unlock; the holder info a dead
/// run left is cleared when `id` matches its lock id. Returns that holder.
pub fn force_unlock(state_path: &Path, id: &str) -> Result<LockInfo, StateError> {
    let path = lock_path(state_path);
    let shown = path.display().to_string();
    let io = |e| StateError::io(&path, e);
    let mut file = match open(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::NoLock { path: shown });
        }
        Err(e) => return Err(io(e)),
    };
    if !try_lock(&file).map_err(io)? {
        return Err(StateError::LockHeld {
            path: shown,
            holder: holder_of(&mut file),
        });
    }
    let bytes = contents(&mut file).map_err(io)?;
    if bytes.is_empty() {
        return Err(StateError::NoLock { path: shown });
    }
    let mismatch = |actual: String| StateError::LockIdMismatch {
        path: shown.clone(),
        given: id.to_string(),
        actual,
    };
    let Ok(holder) = serde_json::from_slice::<LockInfo>(&bytes) else {
        return Err(mismatch("none (the lock file is not payctl's JSON)".into()));
    };
    if holder.id != id {
        return Err(mismatch(holder.id));
    }
    rewrite_file(&mut file, b"").map_err(io)?;
    Ok(holder)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Still held: the file names nobody from here on. Closing it releases the lock.
        let _ = rewrite_file(&mut self.file, b"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dead_holder(id: &str) -> LockInfo {
        LockInfo {
            id: id.into(),
            // A pid that cannot exist on Linux (above pid_max's hard limit).
            pid: 4_194_305,
            host: this_host(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "up".into(),
        }
    }

    fn holder_in(state: &Path) -> Option<LockInfo> {
        serde_json::from_slice(&std::fs::read(lock_path(state)).unwrap()).ok()
    }

    #[test]
    fn second_acquire_fails_naming_holder_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        let guard = acquire(&state, "up").unwrap();
        let mode = std::fs::metadata(lock_path(&state)).unwrap().permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert_eq!(holder_in(&state).as_ref(), Some(guard.info()));
        let err = acquire(&state, "up").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&this_host()), "{msg}");
        assert!(msg.contains(&guard.info().id), "{msg}");
        drop(guard);
        // The file stays (it is never removed), naming nobody.
        assert_eq!(std::fs::read(lock_path(&state)).unwrap(), b"");
        let again = acquire(&state, "up").unwrap();
        assert_eq!(holder_in(&state).as_ref(), Some(again.info()));
    }

    #[test]
    fn a_lock_left_by_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        // What a killed run leaves: its holder info, and no OS lock (gone with it).
        std::fs::write(
            lock_path(&state),
            serde_json::to_vec(&dead_holder("abc-123")).unwrap(),
        )
        .unwrap();
        let guard = acquire(&state, "up").unwrap();
        assert_eq!(holder_in(&state).as_ref(), Some(guard.info()));
        // Unreadable leftovers do not stop a run either.
        drop(guard);
        std::fs::write(lock_path(&state), b"{not json").unwrap();
        drop(acquire(&state, "up").unwrap());
    }

    #[test]
    fn force_unlock_clears_only_a_dead_holders_info_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        assert!(matches!(
            force_unlock(&state, "abc-123"),
            Err(StateError::NoLock { .. })
        ));
        let dead = dead_holder("abc-123");
        std::fs::write(lock_path(&state), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(matches!(
            force_unlock(&state, "wrong"),
            Err(StateError::LockIdMismatch { .. })
        ));
        assert_eq!(holder_in(&state), Some(dead.clone()));
        assert_eq!(force_unlock(&state, "abc-123").unwrap(), dead);
        assert!(lock_path(&state).exists(), "the file is never removed");
        assert_eq!(holder_in(&state), None);
        assert!(matches!(
            force_unlock(&state, "abc-123"),
            Err(StateError::NoLock { .. })
        ));
    }

    #[test]
    fn force_unlock_refuses_a_lock_that_a_run_holds() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        let guard = acquire(&state, "up").unwrap();
        let err = force_unlock(&state, &guard.info().id).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::LockHeld { .. }), "{msg}");
        assert!(msg.contains(&guard.info().id), "{msg}");
        assert_eq!(holder_in(&state).as_ref(), Some(guard.info()));
        assert!(matches!(
            acquire(&state, "up"),
            Err(StateError::Locked { .. })
        ));
    }

    #[test]
    fn the_guard_never_touches_another_runs_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        let first = acquire(&state, "up").unwrap();
        // Someone deletes the lock file by hand while the first run holds it: a second
        // run then makes and locks a new file (which is why payctl never deletes it).
        std::fs::remove_file(lock_path(&state)).unwrap();
        let second = acquire(&state, "up").unwrap();
        drop(first);
        assert_eq!(holder_in(&state).as_ref(), Some(second.info()));
        let err = acquire(&state, "up").unwrap_err();
        assert!(err.to_string().contains(&second.info().id), "{err}");
    }

    #[test]
    fn a_symbolic_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, lock_path(&state)).unwrap();
        assert!(matches!(acquire(&state, "up"), Err(StateError::Io { .. })));
        assert!(!target.exists());
    }
}
