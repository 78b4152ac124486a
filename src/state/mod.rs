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
//! - changes are written one at a time, each before the call that made it returns
//!   ([`StateStore`]);
//! - a file that does not parse, or that a newer payctl wrote, is an error and is never
//!   overwritten; so is a file that belongs to another env, region or account;
//! - when a write fails, the state is dumped to a recovery file and the run stops
//!   ([`Recovery`]: in the state directory when it takes the file, else in a per-user
//!   directory; made exclusively, under a name of its own);
//! - the state file, its backup and recovery files are created with mode 0600;
//! - no secrets: records hold ids, ARNs and plain attributes only.
//!
//! The parts, as in Terraform's statemgr: a [`Storage`] reads and writes whole states
//! (a [`LocalFile`], or an S3 object with conditional writes: [`remote`]); a [`Locker`]
//! holds the run's exclusive lock (the OS lock of [`lock`], or the S3 lock object); the
//! [`StateStore`] (in [`store`]) keeps the state in memory and writes it through them.
//! [`backend`] chooses where the state lives and opens it there; [`transfer`] moves it
//! between the local directory and S3 (`payctl state pull` / `push`).

pub mod backend;
mod error;
mod file;
pub mod lock;
pub mod locker;
mod record;
mod recovery;
pub mod remote;
pub mod s3;
pub mod storage;
mod store;
pub mod transfer;

pub use backend::Location;
pub use error::StateError;
pub use locker::{LocalLocker, Locker};
pub use record::{Record, State, state_path};
pub use recovery::user_state_dir;
pub use storage::{LocalFile, Storage, WriteError};
pub use store::StateStore;

pub const SCHEMA_VERSION: u32 = 1;
