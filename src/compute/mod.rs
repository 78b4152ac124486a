//! The compute layer: the three payment functions and what they need to run.
//!
//! Per function: a CloudWatch log group with 90-day retention, created by payctl before
//! the function exists (the functions may not create log groups, so none is re-created
//! behind payctl's back after `down`); an IAM execution role whose inline policy names
//! the exact ARNs the function uses; the function itself (`provided.al2023`, the
//! package's architecture, in the private subnets); and the event source mappings
//! (table stream → audit logger, retry queue → processor). The API's access log group is
//! created here too, with the others. What the kinds share and is no kind (packages,
//! the concurrency pre-flight check, emulator differences) is in [`support`].

pub mod alias;
pub mod canary;
pub mod event_source;
pub mod function;
pub mod log_group;
pub mod role;
pub mod support;

use crate::engine::{Ctx, Layer};
use crate::error::Result;
use std::sync::Arc;

/// One payment function: its key (the package and binary name) and its sizing.
#[derive(Debug, Clone, Copy)]
pub struct FunctionSpec {
    pub key: &'static str,
    pub timeout_secs: i32,
    pub memory_mb: i32,
}

pub const VALIDATOR: &str = "validator";
pub const PROCESSOR: &str = "processor";
pub const AUDIT_LOGGER: &str = "audit-logger";

pub const FUNCTIONS: [FunctionSpec; 3] = [
    FunctionSpec {
        key: VALIDATOR,
        timeout_secs: 10,
        memory_mb: 256,
    },
    FunctionSpec {
        key: PROCESSOR,
        timeout_secs: crate::data::PROCESSOR_TIMEOUT_SECS,
        memory_mb: 512,
    },
    FunctionSpec {
        key: AUDIT_LOGGER,
        timeout_secs: 60,
        memory_mb: 256,
    },
];

/// `payment-<key>-<env>`, e.g. `payment-audit-logger-prod`.
pub fn function_name(ctx: &Ctx, key: &str) -> String {
    ctx.name(key)
}

/// What the stack invokes of a function: its alias `live`'s ARN, from state (the alias
/// kind ran before every kind that invokes a function).
pub fn live_arn(ctx: &Ctx, key: &str) -> Result<String> {
    alias::live_arn(ctx, key)
}

pub fn layer() -> Layer {
    Layer {
        name: "compute",
        resources: vec![
            Arc::new(log_group::LogGroups),
            Arc::new(role::Roles),
            Arc::new(function::Functions::default()),
            Arc::new(alias::Aliases),
            Arc::new(event_source::EventSources),
        ],
    }
}
