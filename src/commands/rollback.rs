//! `payctl rollback`: the alias `live` of each function (or of one) back to the
//! version it was on before, from the state file; nothing is built or uploaded.

use super::setup::prepare;
use crate::cli::Common;
use crate::compute::{FUNCTIONS, alias};
use crate::engine::Options;
use crate::error::{Error, Result, all_ok};

/// Rolls `function` (a key: `validator`, `processor`, `audit-logger`), or every
/// function with a previous version, back; prints one line per function.
pub async fn rollback(c: &Common, function: Option<&str>) -> Result<()> {
    if let Some(f) = function
        && !FUNCTIONS.iter().any(|s| s.key == f)
    {
        return Err(Error::Invalid(format!(
            "--function {f:?} is not one of validator, processor, audit-logger; nothing was changed"
        )));
    }
    let ctx = prepare(c, "rollback", Options::default()).await?;
    let keys: Vec<&str> = FUNCTIONS
        .iter()
        .map(|s| s.key)
        .filter(|k| function.is_none_or(|f| f == *k))
        .collect();
    let mut results = Vec::new();
    for key in keys {
        let one = alias::rollback(&ctx, key, function.is_some()).await;
        if let Ok(Some(line)) = &one {
            println!("{line}");
        }
        results.push(one.map(drop));
    }
    ctx.state.release().await;
    all_ok(results)
}
