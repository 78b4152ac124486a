//! NAT gateways and Elastic IPs the stack no longer wants: those numbered above
//! `nat_gateways` after the setting was lowered (3 → 1, say). They go only after the
//! route tables point every private subnet at a gateway that stays, so no subnet loses
//! its way out; each gateway is deleted and waited for before its address is released.
//! This kind records nothing itself; `down` deletes gateways and addresses through
//! their own kinds.

use super::{eip, nat_gateway, route_table};
use crate::engine::{Ctx, Resource, kind};
use crate::error::Result;
use async_trait::async_trait;

pub const KIND: &str = "ec2_nat_surplus";

pub struct NatSurplus;

/// The number in a `<kind>.nat-<n>` address.
fn index_of(addr: &str) -> Option<usize> {
    addr.rsplit_once(".nat-")?.1.parse().ok()
}

/// Records of `kind` numbered above `keep`.
fn surplus(ctx: &Ctx, kind: &str, keep: usize) -> Vec<(String, String)> {
    ctx.state
        .of_kind(kind)
        .into_iter()
        .filter(|(addr, _)| index_of(addr).is_some_and(|i| i > keep))
        .map(|(addr, r)| (addr, r.id))
        .collect()
}

#[async_trait]
impl Resource for NatSurplus {
    kind!(KIND, depends_on = [route_table::KIND]);

    fn may_start_early(&self) -> bool {
        false
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let keep = ctx.settings.nat_gateways;
        let why = format!("(nat_gateways is {keep})");
        let gateways = surplus(ctx, nat_gateway::KIND, keep)
            .into_iter()
            .filter(|(addr, id)| ctx.apply_delete(format!("{addr} {id} {why}")));
        let retired =
            gateways.map(|(addr, id)| async move { nat_gateway::retire(ctx, &addr, &id).await });
        crate::error::all_ok(futures::future::join_all(retired).await)?;
        for (addr, id) in surplus(ctx, eip::KIND, keep) {
            if ctx.apply_delete(format!("{addr} {id} {why}")) {
                eip::release(ctx, &id, Some(&addr)).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, _ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::index_of;

    #[test]
    fn addresses_are_numbered() {
        assert_eq!(index_of("ec2_nat_gateway.nat-3"), Some(3));
        assert_eq!(index_of("ec2_eip.nat-12"), Some(12));
        assert_eq!(index_of("ec2_eip.main"), None);
    }
}
