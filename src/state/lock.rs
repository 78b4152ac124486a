//! The exclusive run lock: `state/<env>.json.lock`, created with `O_EXCL`.
//!
//! The file holds who took it (a lock id, pid, host, start time, command). A second run
//! fails fast naming the holder; a lock whose pid is gone on this host is reported as
//! stale with the exact `payctl force-unlock` command that clears it. The guard removes
//! the file on drop, but only while it still carries its own id.

use super::StateError;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
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

    /// True when the holder ran on this host and its process no longer exists.
    pub fn is_stale(&self) -> bool {
        self.host == this_host() && !pid_alive(self.pid)
    }
}

#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
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

/// Takes the lock or explains who holds it.
pub fn acquire(state_path: &Path, env: &str, command: &str) -> Result<LockGuard, StateError> {
    let path = lock_path(state_path);
    let info = LockInfo::new(command);
    let body = serde_json::to_vec_pretty(&info).map_err(|e| StateError::io(&path, e.into()))?;
    match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut f) => {
            f.write_all(&body)
                .and_then(|_| f.sync_all())
                .map_err(|e| StateError::io(&path, e))?;
            Ok(LockGuard { path, info })
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(match read_lock(&path) {
            Some(holder) if holder.is_stale() => StateError::StaleLock {
                path: path.display().to_string(),
                holder: holder.describe(),
                unlock: format!("payctl force-unlock --env {env} {}", holder.id),
            },
            Some(holder) => StateError::Locked {
                path: path.display().to_string(),
                holder: holder.describe(),
            },
            None => StateError::Locked {
                path: path.display().to_string(),
                holder: "an unreadable lock file".into(),
            },
        }),
        Err(e) => Err(StateError::io(&path, e)),
    }
}

pub fn read_lock(path: &Path) -> Option<LockInfo> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes a lock left behind, but only when `id` matches the lock's own id.
pub fn force_unlock(state_path: &Path, id: &str) -> Result<LockInfo, StateError> {
    let path = lock_path(state_path);
    let Some(holder) = read_lock(&path) else {
        return Err(StateError::NoLock {
            path: path.display().to_string(),
        });
    };
    if holder.id != id {
        return Err(StateError::LockIdMismatch {
            path: path.display().to_string(),
            given: id.to_string(),
            actual: holder.id,
        });
    }
    if !holder.is_stale() {
        tracing::warn!(
            "removing a lock whose holder may still be running: {}",
            holder.describe()
        );
    }
    std::fs::remove_file(&path).map_err(|e| StateError::io(&path, e))?;
    Ok(holder)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if read_lock(&self.path).is_some_and(|h| h.id == self.info.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_naming_holder_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        let guard = acquire(&state, "dev", "up").unwrap();
        let err = acquire(&state, "dev", "up").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&this_host()), "{msg}");
        drop(guard);
        assert!(!lock_path(&state).exists());
        acquire(&state, "dev", "up").unwrap();
    }

    #[test]
    fn stale_lock_is_reported_with_unlock_command_and_can_be_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        // A pid that cannot exist on Linux (above pid_max's hard limit).
        let dead = LockInfo {
            id: "abc-123".into(),
            pid: 4_194_305,
            host: this_host(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "up".into(),
        };
        std::fs::write(lock_path(&state), serde_json::to_vec(&dead).unwrap()).unwrap();
        let err = acquire(&state, "dev", "up").unwrap_err();
        assert!(matches!(err, StateError::StaleLock { .. }));
        assert!(
            err.to_string()
                .contains("payctl force-unlock --env dev abc-123")
        );
        assert!(matches!(
            force_unlock(&state, "wrong"),
            Err(StateError::LockIdMismatch { .. })
        ));
        assert!(lock_path(&state).exists());
        force_unlock(&state, "abc-123").unwrap();
        acquire(&state, "dev", "up").unwrap();
    }

    #[test]
    fn guard_does_not_remove_someone_elses_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        let guard = acquire(&state, "dev", "up").unwrap();
        let mut other = guard.info().clone();
        other.id = "other".into();
        std::fs::write(lock_path(&state), serde_json::to_vec(&other).unwrap()).unwrap();
        drop(guard);
        assert!(lock_path(&state).exists());
    }
}
