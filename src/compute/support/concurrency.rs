//! The reserved-concurrency pre-flight check, run before `up` creates anything.
//!
//! AWS keeps at least 100 of an account's concurrent executions unreserved and refuses
//! a `PutFunctionConcurrency` that would go below that. payctl reads the account's limits
//! first (`GetAccountSettings`) and refuses the whole run, with the numbers, instead of
//! failing halfway. Reservations the functions already hold count as available to them.
//! If the account settings cannot be read at all (an endpoint that does not implement the
//! call answers with an undecodable body), payctl says so and continues: AWS still
//! enforces the minimum when the reservation is set (see
//! [`emulator::account_settings_unanswered`]). An AWS error with a code (e.g.
//! `AccessDeniedException`) stops the run.

use crate::aws::emulator;
use crate::compute::{FUNCTIONS, function::reserved, function_name};
use crate::engine::{Ctx, Service};
use crate::error::{Error, Result, aws};

/// AWS's minimum of unreserved concurrent executions per account and region.
pub const MIN_UNRESERVED: i32 = 100;

/// `Err` with the numbers when the wanted reservations would leave too little unreserved.
pub fn verdict(
    limit: i32,
    unreserved: i32,
    held: i32,
    wants: &[(&str, i32)],
) -> std::result::Result<(), String> {
    let need: i32 = wants.iter().map(|(_, n)| n).sum();
    let left = unreserved + held - need;
    if left >= MIN_UNRESERVED {
        return Ok(());
    }
    let each: Vec<String> = wants.iter().map(|(k, n)| format!("{k} {n}")).collect();
    Err(format!(
        "reserved concurrency {need} ({}) would leave {left} of the account's {limit} concurrent executions unreserved ({unreserved} unreserved now, {held} already held by these functions); AWS keeps at least {MIN_UNRESERVED} unreserved: lower the *_reserved_concurrency settings in payctl.toml or raise the account's Lambda concurrency limit; nothing was created",
        each.join(", ")
    ))
}

pub async fn check(ctx: &Ctx) -> Result<()> {
    let wants: Vec<(&str, i32)> = FUNCTIONS
        .iter()
        .filter_map(|f| reserved(ctx, f.key).map(|n| (f.key, n)))
        .collect();
    if wants.is_empty() {
        return Ok(());
    }
    let lambda = &ctx.aws.lambda;
    let settings = match lambda.get_account_settings().send().await {
        Ok(out) => out,
        Err(e) if emulator::account_settings_unanswered(&e) => {
            tracing::warn!(
                "cannot read the account's Lambda concurrency limits (GetAccountSettings gave no readable answer); AWS will check the reserved concurrency when it is set"
            );
            return Ok(());
        }
        Err(e) => return Err(aws("GetAccountSettings", "the account")(e)),
    };
    let Some(limits) = settings.account_limit() else {
        return Err(Error::Invalid(
            "GetAccountSettings returned no account limits".into(),
        ));
    };
    let limit = limits.concurrent_executions();
    let unreserved = limits.unreserved_concurrent_executions().unwrap_or(limit);
    let mut held = 0;
    for f in &FUNCTIONS {
        let name = function_name(ctx, f.key);
        let call = lambda.get_function_concurrency().function_name(&name);
        let out = call
            .send()
            .await
            .map_err(aws("GetFunctionConcurrency", &name));
        if let Some(out) = Service::Lambda.found(out)? {
            held += out.reserved_concurrent_executions().unwrap_or(0);
        }
    }
    verdict(limit, unreserved, held, &wants).map_err(Error::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_a_hundred_stay_unreserved() {
        let wants = [("validator", 100), ("processor", 50), ("audit-logger", 10)];
        assert_eq!(verdict(1000, 1000, 0, &wants), Ok(()));
        assert_eq!(verdict(1000, 260, 0, &wants), Ok(()));
        let err = verdict(1000, 259, 0, &wants).unwrap_err();
        assert!(err.contains("reserved concurrency 160"), "{err}");
        assert!(err.contains("leave 99 of the account's 1000"), "{err}");
        assert!(
            err.contains("validator 100, processor 50, audit-logger 10"),
            "{err}"
        );
        // A new account with a limit of 10 can reserve nothing.
        assert!(verdict(10, 10, 0, &[("processor", 1)]).is_err());
        // What the functions already hold is theirs to keep.
        assert_eq!(verdict(1000, 100, 160, &wants), Ok(()));
    }
}
