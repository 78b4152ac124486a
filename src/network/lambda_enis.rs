//! The network interfaces Lambda leaves in a security group (not a kind: `down`'s
//! clean-up before the security groups go).
//!
//! A function in a VPC reaches it through interfaces Lambda makes and owns (description
//! `AWS Lambda VPC ENI-<function>-…`, requester `…:awslambda_…`). After the function is
//! detached or deleted, Lambda marks them `available` and leaves them for its own garbage
//! collection, which may take tens of minutes; until they are gone, deleting their
//! security group, subnets or VPC answers `DependencyViolation` (the failure behind
//! terraform-provider-aws #32130, pulumi-aws #2642). So before a security group of the
//! stack is deleted, payctl waits (bounded, named) for each such interface to be released
//! and deletes it itself. It touches only interfaces whose description and requester both
//! say Lambda, in a security group payctl owns (the caller checked the group's tags).

use super::filter;
use crate::engine::report::Change;
use crate::engine::{Ctx, Ec2, Service};
use crate::error::{Result, all_ok, aws};
use crate::waiter::{Status, Wait, wait_for};
use aws_sdk_ec2::types::{NetworkInterface, NetworkInterfaceStatus};
use futures::future::join_all;
use std::time::Duration;

/// How long Lambda may take to release an interface after its function let go of it
/// (terraform-provider-aws waits up to 45 minutes for the same).
const RELEASE: Wait = Wait {
    timeout: Duration::from_secs(45 * 60),
    first: Duration::from_secs(5),
    max_interval: Duration::from_secs(30),
};

const DESCRIPTION: &str = "AWS Lambda VPC ENI";
const REQUESTER: &str = ":awslambda_";
const SERVICE: Service = Service::Ec2(Ec2::NetworkInterface);

/// Whether an interface is one Lambda made for a function: both its description and its
/// requester say so.
pub fn is_lambdas(eni: &NetworkInterface) -> bool {
    eni.description()
        .is_some_and(|d| d.starts_with(DESCRIPTION))
        && eni.requester_id().is_some_and(|r| r.contains(REQUESTER))
}

async fn in_group(ctx: &Ctx, group: &str) -> Result<Vec<NetworkInterface>> {
    let call = ctx.aws.ec2.describe_network_interfaces();
    let call = call.filters(filter("group-id", group));
    let out = call
        .send()
        .await
        .map_err(aws("DescribeNetworkInterfaces", group))?;
    Ok(out
        .network_interfaces()
        .iter()
        .filter(|e| is_lambdas(e))
        .cloned()
        .collect())
}

/// The interface's status now; `None` once it is gone.
async fn status(ctx: &Ctx, id: &str) -> Result<Option<NetworkInterfaceStatus>> {
    let call = ctx
        .aws
        .ec2
        .describe_network_interfaces()
        .network_interface_ids(id);
    let out = call
        .send()
        .await
        .map_err(aws("DescribeNetworkInterfaces", id));
    let Some(out) = SERVICE.found(out)? else {
        return Ok(None);
    };
    let eni = out.network_interfaces().first();
    Ok(eni.and_then(|e| e.status().cloned()))
}

/// Waits for Lambda to release the interface `id`, then deletes it (gone already is fine).
async fn release_one(ctx: &Ctx, group: &str, id: &str) -> Result<()> {
    let what = format!("Lambda to release network interface {id} (security group {group})");
    let released = wait_for(&what, RELEASE, || async {
        Ok(match status(ctx, id).await? {
            None => Status::Ready(false),
            Some(NetworkInterfaceStatus::Available) => Status::Ready(true),
            Some(other) => Status::Pending(other.as_str().to_string()),
        })
    })
    .await?;
    if !released {
        return Ok(());
    }
    let call = ctx
        .aws
        .ec2
        .delete_network_interface()
        .network_interface_id(id);
    let out = call.send().await.map_err(aws("DeleteNetworkInterface", id));
    let change = match SERVICE.found(out)? {
        Some(_) => Change::Deleted,
        None => Change::Absent,
    };
    ctx.report.note(
        change,
        format!("network interface {id} (left by Lambda in {group})"),
    );
    Ok(())
}

/// Releases every Lambda interface in security group `group`: waits for each to be let
/// go, then deletes it. Answers how many there were.
pub async fn release(ctx: &Ctx, group: &str) -> Result<usize> {
    let enis = in_group(ctx, group).await?;
    let ids: Vec<&str> = enis
        .iter()
        .filter_map(|e| e.network_interface_id())
        .collect();
    if !ids.is_empty() {
        tracing::info!(
            "security group {group}: {} network interface(s) left by Lambda; waiting for their release to delete them",
            ids.len()
        );
    }
    all_ok(join_all(ids.iter().map(|id| release_one(ctx, group, id))).await)?;
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eni(description: &str, requester: &str) -> NetworkInterface {
        NetworkInterface::builder()
            .description(description)
            .requester_id(requester)
            .build()
    }

    #[test]
    fn only_interfaces_both_described_and_requested_by_lambda_are_lambdas() {
        let lambda = "AWS Lambda VPC ENI-payment-validator-prod-5f2c";
        assert!(is_lambdas(&eni(lambda, "AROAEXAMPLE:awslambda_123")));
        assert!(!is_lambdas(&eni(lambda, "AIDAEXAMPLE")));
        assert!(!is_lambdas(&eni(
            "Interface for NAT Gateway nat-1",
            "AROAEXAMPLE:awslambda_123"
        )));
        assert!(!is_lambdas(&NetworkInterface::builder().build()));
    }
}
