//! payctl: provisions, describes and tears down the payment-processing stack on AWS by
//! calling the AWS SDK directly.
//!
//! - [`engine`]: the resource trait, the run context, the registry check and the walker;
//! - [`state`]: the locked, atomically written JSON state file;
//! - [`aws`]: SDK configuration (region, credentials, retries) and clients;
//! - one module per layer ([`network`], [`security`], [`data`], [`compute`], [`api`],
//!   [`monitoring`]), one file per resource kind;
//! - [`progress`]: live per-kind lines on a terminal, plain logs elsewhere;
//! - [`interrupt`]: Ctrl-C and SIGTERM handling (finish what is in flight, then stop);
//! - [`plan`]: what `up` would do, read-only, as text or JSON;
//! - [`verify`]: the security and compliance checks of `payctl verify` (read only);
//! - [`local`]: `payctl local start-api`, the API and event sources run on this machine;
//! - [`commands`]: what `up`, `plan`, `verify`, `down`, `outputs` and `force-unlock` do.

pub mod api;
pub mod aws;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod compute;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod interrupt;
pub mod local;
pub mod monitoring;
pub mod naming;
pub mod network;
pub mod outputs;
pub mod plan;
pub mod progress;
pub mod redrive;
pub mod security;
pub mod state;
pub mod verify;
pub mod waiter;

/// Every layer, in creation order. Adding a layer is adding its module and a line here.
pub fn layers() -> Vec<engine::Layer> {
    vec![
        network::layer(),
        security::layer(),
        data::layer(),
        compute::layer(),
        api::layer(),
        monitoring::layer(),
        backup::layer(),
    ]
}
