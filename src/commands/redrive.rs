//! `payctl redrive`: the dead-letter queue back to the retry queue.

use super::check_input;
use super::setup::{location, sdk};
use crate::cli::Common;
use crate::error::{Error, Result};
use crate::state::StateStore;

/// `payctl redrive`: moves the dead-letter queue's messages back to the retry queue, one
/// at a time (see [`crate::redrive`]); the state is read without its lock.
pub async fn redrive(c: &Common) -> Result<()> {
    let settings = check_input(c)?;
    let location = location(c, &settings)?;
    let sdk = sdk(c, c.region.clone()).await;
    let region = crate::aws::region_of(&sdk);
    let account_id = crate::aws::account_id(&sdk).await?;
    let store = StateStore::open_detached_at(&location, &sdk, &c.env, &region, &account_id).await?;
    let queue_of = |purpose: &str| {
        store
            .id(&crate::data::sqs_queue::address(purpose))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "environment {} has no {purpose} queue in its state ({}); run `payctl up --env {}` first",
                    c.env,
                    store.path().display(),
                    c.env
                ))
            })
    };
    let (dlq, retry) = (queue_of("dlq")?, queue_of("retry")?);
    crate::interrupt::install();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let moved = crate::redrive::move_all(&sqs, &dlq, &retry).await?;
    println!(
        "redrive {}: moved {moved} message(s) from {dlq} to {retry}",
        c.env
    );
    Ok(())
}
