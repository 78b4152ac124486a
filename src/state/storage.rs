//! Where the state's bytes live: a [`Storage`], the local file ([`LocalFile`]) or the S3
//! object ([`super::remote::S3Storage`]).
//!
//! As in Terraform's statemgr, a storage only reads and writes whole states. Locking is
//! the [`super::Locker`]'s; the order of writes, the serial and the recovery file when a
//! write fails are the [`super::StateStore`]'s, which calls one storage method at a time.

use super::file::{backup, write_atomic};
use super::{State, StateError};
use async_trait::async_trait;
use std::path::{Path, PathBuf};

/// Reads and writes the whole state of one environment.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Where the state is, for messages: the file's path or the object's `s3://` URL.
    fn location(&self) -> String;

    /// Reads the stored state, parsed but not yet checked against the run; `None` when
    /// there is none. A conditional storage (S3) remembers the version it read: its
    /// next write only replaces that one.
    async fn read(&mut self) -> Result<Option<State>, StateError>;

    /// Replaces the stored state with `bytes` (a whole state). When it returns `Ok`, the
    /// write is durable.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError>;
}

/// Why a [`Storage::write`] did not happen. The store turns it into the
/// [`StateError`] that names the recovery file it saved the state to.
#[derive(Debug)]
pub enum WriteError {
    /// The local file could not be written.
    Io(std::io::Error),
    /// The stored state is no longer the one this run last read or wrote: someone else
    /// wrote it, and the conditional write was refused.
    Conflict,
    /// The remote write failed (unreachable, refused): why.
    Remote(String),
}

/// `<dir>/<env>.json`, written atomically (temp file in the same directory, fsync,
/// rename, fsync of the directory) with mode 0600, so that a crash leaves the old or
/// the new file; before the first write of a run the previous file is copied to
/// `<env>.json.backup`.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    backed_up: bool,
}

impl LocalFile {
    pub fn new(path: PathBuf) -> Self {
        LocalFile {
            path,
            backed_up: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Storage for LocalFile {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn read(&mut self) -> Result<Option<State>, StateError> {
        State::load(&self.path)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let (path, bytes, backed_up) = (self.path.clone(), bytes.to_vec(), self.backed_up);
        // On the blocking pool: the fsyncs may take a while on a busy disk.
        let (backed_up, written) = tokio::task::spawn_blocking(move || {
            if !backed_up && let Err(e) = backup(&path) {
                return (false, Err(e));
            }
            (true, write_atomic(&path, &bytes))
        })
        .await
        .map_err(|e| WriteError::Io(std::io::Error::other(e)))?;
        self.backed_up = backed_up;
        written.map_err(WriteError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Record;

    #[tokio::test]
    async fn a_local_file_reads_back_what_it_wrote_and_backs_up_the_previous_one_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.json");
        let mut file = LocalFile::new(path.clone());
        assert_eq!(file.read().await.unwrap(), None);
        assert_eq!(file.location(), path.display().to_string());

        let mut state = State::new("dev", "us-east-1", "123456789012");
        state
            .resources
            .insert("ec2_vpc.main".into(), Record::new("ec2_vpc", "vpc-1"));
        let first = serde_json::to_vec_pretty(&state).unwrap();
        file.write(&first).await.unwrap();
        assert_eq!(file.read().await.unwrap(), Some(state.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let backup = dir.path().join("dev.json.backup");
        assert!(
            !backup.exists(),
            "nothing to back up before the first write"
        );

        // A new run (a new storage) backs up what the last one left, once.
        let mut file = LocalFile::new(path.clone());
        state.serial = 1;
        file.write(&serde_json::to_vec(&state).unwrap())
            .await
            .unwrap();
        state.serial = 2;
        file.write(&serde_json::to_vec(&state).unwrap())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&backup).unwrap(), first);
        assert_eq!(file.read().await.unwrap().map(|s| s.serial), Some(2));
    }

    #[tokio::test]
    async fn a_write_that_fails_is_an_io_error_and_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.json");
        let mut file = LocalFile::new(path.clone());
        file.write(b"{}").await.unwrap();
        // The temp file's name is taken by a directory: the write cannot begin.
        let tmp = dir
            .path()
            .join(format!(".dev.json.tmp.{}", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("x"), b"").unwrap();
        let err = file.write(b"{\"a\":1}").await.unwrap_err();
        assert!(matches!(err, WriteError::Io(_)), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    }
}
