//! The run's exclusive lock: a [`Locker`], the OS lock on the local lock file
//! ([`LocalLocker`], see [`super::lock`]) or the S3 lock object
//! ([`super::remote::S3Locker`]).
//!
//! As in Terraform's statemgr, the lock is apart from the storage: a store takes it
//! before it reads the state for writing and gives it up when the run ends
//! ([`super::StateStore::release`]). `payctl force-unlock` works on the lock without a
//! locker ([`super::lock::force_unlock`], [`super::remote::force_unlock_remote`]): it
//! never takes the lock, it clears one that a dead run left.

use super::StateError;
use super::lock::{self, LockGuard};
use async_trait::async_trait;
use std::path::{Path, PathBuf};

/// Takes and gives up the exclusive lock of one environment's state.
#[async_trait]
pub trait Locker: Send + Sync + std::fmt::Debug {
    /// Takes the lock for this run (`command` names it to others) without waiting; the
    /// error names who holds it.
    async fn lock(&mut self, command: &str) -> Result<(), StateError>;

    /// Gives the lock up while it is still this run's (never another run's); nothing
    /// when it is not held. It never fails: a lock it could not remove is reported (a
    /// warning) and left for the next run to name.
    async fn unlock(&mut self);

    /// Who holds the lock now, for the message of a write that someone else's refused.
    async fn holder(&self) -> String;
}

/// The OS lock (`flock`) on `<state file>.lock`, held through an open file: the OS
/// releases it when the file is closed, on [`Locker::unlock`], when the locker is
/// dropped, or when the process dies.
#[derive(Debug)]
pub struct LocalLocker {
    state_path: PathBuf,
    guard: Option<LockGuard>,
}

impl LocalLocker {
    /// The locker of the state file at `state_path`.
    pub fn new(state_path: &Path) -> Self {
        LocalLocker {
            state_path: state_path.to_path_buf(),
            guard: None,
        }
    }
}

#[async_trait]
impl Locker for LocalLocker {
    async fn lock(&mut self, command: &str) -> Result<(), StateError> {
        // Never waits: a lock already held (by this locker too) is refused at once.
        self.guard = Some(lock::acquire(&self.state_path, command)?);
        Ok(())
    }

    async fn unlock(&mut self) {
        self.guard = None;
    }

    async fn holder(&self) -> String {
        let path = lock::lock_path(&self.state_path);
        match &self.guard {
            Some(guard) => format!(
                "this run holds the lock {} ({})",
                path.display(),
                guard.info().describe()
            ),
            None => format!("this run does not hold the lock {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_is_refused_until_the_first_unlocks() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dev.json");
        let mut first = LocalLocker::new(&state);
        first.lock("up").await.unwrap();
        let id = first.guard.as_ref().unwrap().info().id.clone();
        assert!(first.holder().await.contains(&id));

        let mut second = LocalLocker::new(&state);
        let err = second.lock("down").await.unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&id), "names the holder: {err}");
        // Taking it again through the same locker is refused the same way.
        assert!(matches!(
            first.lock("up").await,
            Err(StateError::Locked { .. })
        ));

        first.unlock().await;
        first.unlock().await; // nothing held: nothing happens
        second.lock("down").await.unwrap();
        assert!(second.holder().await.contains("(down)"));
        drop(second);
        LocalLocker::new(&state).lock("up").await.unwrap();
    }
}
