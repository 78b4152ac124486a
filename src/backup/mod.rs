//! The backup layer, production environments only: AWS Backup protects the database and
//! the transactions table with a plan of the stack's ("protected by a backup plan",
//! NIST 800-53 CP-9).
//!
//! - [`vault`] (`backup_vault`): `payment-backup-<env>`, encrypted with the RDS key; a
//!   production `down` keeps it with its recovery points, like the other kept data;
//! - [`plan`] (`backup_plan`): `payment-backup-plan-<env>`, one rule: daily, each
//!   recovery point kept 35 days, into the vault;
//! - [`selection`] (`backup_selection`): the database and the table, by ARN, backed up
//!   with the role `iam_role.backup`.
//!
//! Outside production the kinds make nothing; what an environment made while it was a
//! production one is still deleted (or kept) by `down`.

pub mod plan;
pub mod selection;
pub mod vault;

use crate::engine::{Ctx, Layer};
use std::sync::Arc;

pub fn layer() -> Layer {
    Layer {
        name: "backup",
        resources: vec![
            Arc::new(vault::Vault),
            Arc::new(plan::Plan),
            Arc::new(selection::Selection),
        ],
    }
}

/// Whether this environment is protected by AWS Backup.
pub fn wanted(ctx: &Ctx) -> bool {
    ctx.settings.production
}

/// Whether `down` has anything of `addr` to look for: always in production, elsewhere
/// only what the state records (an environment that was once a production one).
pub fn made(ctx: &Ctx, addr: &str) -> bool {
    wanted(ctx) || ctx.state.get(addr).is_some()
}

/// A change AWS Backup refused because of the resource's state (a plan that still has
/// selections, a vault that still holds recovery points).
pub fn is_invalid_request(e: &crate::error::Error) -> bool {
    e.aws_code() == Some("InvalidRequestException")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_registers_its_three_kinds() {
        let kinds: Vec<&str> = layer().resources.iter().map(|r| r.kind()).collect();
        assert_eq!(kinds, ["backup_vault", "backup_plan", "backup_selection"]);
    }
}
