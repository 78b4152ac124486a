//! Where a run's state goes when it cannot be written: a recovery file (see [`Recovery`]).

use super::file::{create_private, rewrite_file};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a run's state goes when it cannot be saved: a recovery file, made on the first
/// failure and rewritten (through the open file) on later ones.
///
/// The file goes into the state directory (`--state-dir`, for an S3 state too) when that
/// takes a new file, else into the per-user [`user_state_dir`], made 0700 if missing;
/// never into a shared directory such as `/tmp`. It is created exclusively (`O_EXCL`)
/// with mode 0600, named `<env>-recovery-<UTC time>-<pid>.json`, with a random suffix
/// when that name is taken.
#[derive(Debug)]
pub(crate) struct Recovery {
    dir: PathBuf,
    /// The per-user directory (`None`: no home directory known).
    pub(super) fallback: Option<PathBuf>,
    made: Mutex<Option<(PathBuf, File)>>,
}

/// The per-user directory for recovery files: `$XDG_STATE_HOME/payctl`, else
/// `$HOME/.local/state/payctl` (relative values are ignored, as the XDG spec says).
pub fn user_state_dir(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg_state_home)
        .map(|d| d.join("payctl"))
        .or_else(|| absolute(home).map(|h| h.join(".local/state/payctl")))
}

impl Recovery {
    pub(crate) fn new(dir: &Path) -> Self {
        Recovery {
            dir: dir.to_path_buf(),
            fallback: user_state_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")),
            made: Mutex::new(None),
        }
    }

    /// Saves `bytes`; returns the file's path for the error, or `nowhere (why)`.
    pub(crate) fn dump(&self, env: &str, bytes: &[u8]) -> String {
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((path, file)) = made.as_mut()
            && rewrite_file(file, bytes).is_ok()
        {
            return path.display().to_string();
        }
        let mut why = Vec::new();
        let dirs =
            std::iter::once((&self.dir, false)).chain(self.fallback.iter().map(|d| (d, true)));
        for (dir, per_user) in dirs {
            match Self::save_in(dir, per_user, env, bytes) {
                Ok((path, file)) => {
                    let shown = path.display().to_string();
                    *made = Some((path, file));
                    return shown;
                }
                Err(e) => why.push(format!("{}: {e}", dir.display())),
            }
        }
        if self.fallback.is_none() {
            why.push("no per-user directory (neither XDG_STATE_HOME nor HOME is set)".into());
        }
        format!("nowhere ({})", why.join("; "))
    }

    fn save_in(
        dir: &Path,
        per_user: bool,
        env: &str,
        bytes: &[u8],
    ) -> std::io::Result<(PathBuf, File)> {
        if per_user {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let base = format!("{env}-recovery-{stamp}-{}", std::process::id());
        let mut taken = None;
        for attempt in 0..8 {
            let name = if attempt == 0 {
                format!("{base}.json")
            } else {
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                format!("{base}-{}.json", &suffix[..8])
            };
            let path = dir.join(name);
            let mut file = match create_private(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    taken = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            return match file.write_all(bytes).and_then(|_| file.sync_all()) {
                Ok(()) => Ok((path, file)),
                Err(e) => {
                    // Half written (a full disk): not a recovery file.
                    let _ = std::fs::remove_file(&path);
                    Err(e)
                }
            };
        }
        Err(taken.unwrap_or_else(|| std::io::ErrorKind::AlreadyExists.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_files_are_made_exclusively_under_names_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        // Two stores of this process failing in the same second: two files, not one.
        let first = Recovery::new(dir.path());
        let second = Recovery::new(dir.path());
        let a = first.dump("dev", b"{\"a\":1}");
        let b = second.dump("dev", b"{\"b\":2}");
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"{\"a\":1}");
        assert_eq!(std::fs::read(&b).unwrap(), b"{\"b\":2}");
        let name = Path::new(&a)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("dev-recovery-")
                && name.ends_with(&format!("-{}.json", std::process::id())),
            "{name}"
        );
        // A name someone else made (a planted symbolic link, say) is never written through.
        let target = dir.path().join("target");
        let planted = dir.path().join("planted");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        assert!(create_private(&planted).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn the_per_user_directory_follows_xdg_then_home() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            user_state_dir(os("/x/state"), os("/home/u")),
            Some(PathBuf::from("/x/state/payctl"))
        );
        assert_eq!(
            user_state_dir(None, os("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/payctl"))
        );
        assert_eq!(
            user_state_dir(os("relative"), os("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/payctl")),
            "a relative XDG_STATE_HOME is ignored"
        );
        assert_eq!(user_state_dir(os(""), None), None);
    }
}
