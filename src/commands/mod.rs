//! What each subcommand does: validate input before any AWS call, set up the run
//! context (config, SDK, account, locked state), walk the layers, report.
//!
//! One file per concern: [`setup`] (the run context and where the state lives),
//! [`run`] (what `up` and `down` share around the walk), [`up`] (`up`, `plan`),
//! [`down`], [`state`] (`outputs`, `force-unlock`, `state pull`/`push`), [`verify`],
//! [`redrive`] and [`rollback`].

mod down;
mod redrive;
mod rollback;
mod run;
mod setup;
mod state;
mod up;
mod verify;

use crate::cli::Common;
use crate::config::ConfigFile;
use crate::error::Result;
use std::path::Path;

pub use down::down;
pub use redrive::redrive;
pub use rollback::rollback;
pub use state::{force_unlock, outputs, state_transfer};
pub use up::{plan, up};
pub use verify::verify;

const DEFAULT_CONFIG: &str = "payctl.toml";

/// Checks everything that needs no AWS call: env name, config file, the registry.
pub fn check_input(c: &Common) -> Result<crate::config::Settings> {
    crate::naming::validate_env(&c.env)?;
    let config = match &c.config {
        Some(path) => ConfigFile::load(path, true)?,
        None => ConfigFile::load(Path::new(DEFAULT_CONFIG), false)?,
    };
    let settings = config.settings_for(&c.env)?;
    crate::engine::validate(&crate::layers())?;
    Ok(settings)
}

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "payctl", &mut std::io::stdout());
}
