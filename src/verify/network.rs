//! The network: the VPC's default security group has no rules, inbound or outbound
//! (EC2.2); no subnet of the stack assigns public addresses on launch (EC2.15; IPv6
//! auto-assignment counts too); no Elastic IP of the environment is left unattached
//! (EC2.12): every one the state names, and every one tagged `ManagedBy=payctl`,
//! `Environment=<env>`, must be associated.
//!
//! Lookups use id filters (`group-id`, `subnet-id`, `allocation-id`), which answer
//! with what exists instead of failing the whole call on one missing id, so each
//! missing resource is its own "not found".

use super::{Check, Control, Read, Target, fail_all, read, unreadable};
use crate::engine::{Ec2, Service};
use crate::naming::{TAG_ENVIRONMENT, TAG_MANAGED_BY};
use crate::network::{default_security_group, eip, subnet, vpc, vpc_endpoint};
use aws_sdk_ec2::types::{Address, Filter};
use std::collections::BTreeMap;

pub const DEFAULT_SG_CLOSED: Control =
    Control::new("VPC default security group has no rules", Some("EC2.2"));
pub const NO_PUBLIC_IPS: Control = Control::new(
    "Subnet does not assign public IPs on launch",
    Some("EC2.15"),
);
pub const EIP_ATTACHED: Control =
    Control::new("Elastic IP of the environment is attached", Some("EC2.12"));

pub const ENDPOINT_POLICY: Control = Control::new(
    "VPC gateway endpoint admits only this account and the stack's resources",
    None,
);

pub const FLOW_LOGS: Control = Control::new("VPC flow logging is enabled", Some("EC2.6"));

pub async fn checks(t: &Target) -> Vec<Check> {
    let (mut sg, subnets, eips, endpoints, flow) = tokio::join!(
        default_sg(t),
        subnets(t),
        eips(t),
        endpoints(t),
        flow_logs(t)
    );
    sg.extend(subnets);
    sg.extend(eips);
    sg.extend(endpoints);
    sg.push(flow);
    sg
}

/// A flow log on the VPC that records at least rejected traffic (EC2.6 asks for
/// `REJECT`; the stack logs `ALL`).
async fn flow_logs(t: &Target) -> Check {
    let Some(rec) = t.record(vpc::ADDR) else {
        return FLOW_LOGS.fail(vpc::ADDR, "not in the state file");
    };
    let id = rec.id.as_str();
    let call = t.aws.ec2.describe_flow_logs();
    let out = call
        .filter(filter("resource-id", [id.to_string()]))
        .send()
        .await;
    let logs = match out {
        Ok(out) => out.flow_logs().to_vec(),
        Err(e) => return FLOW_LOGS.fail(id, unreadable("DescribeFlowLogs", id, e)),
    };
    let traffic: Vec<&str> = logs
        .iter()
        .filter_map(|f| f.traffic_type().map(|t| t.as_str()))
        .collect();
    match traffic.iter().find(|t| matches!(**t, "ALL" | "REJECT")) {
        Some(t) => FLOW_LOGS.pass(id, format!("flow log of {t} traffic")),
        None if traffic.is_empty() => FLOW_LOGS.fail(id, "no flow log"),
        None => FLOW_LOGS.fail(
            id,
            format!("flow logs of {} traffic only", traffic.join(", ")),
        ),
    }
}

/// Each gateway endpoint's policy: every statement that allows is limited to this
/// account's principals (`aws:PrincipalAccount`) and names its resources (no `*`).
async fn endpoints(t: &Target) -> Vec<Check> {
    let mut checks = Vec::new();
    for service in vpc_endpoint::SERVICES {
        let addr = format!("{}.{service}", vpc_endpoint::KIND);
        let Some(rec) = t.record(&addr) else {
            checks.push(ENDPOINT_POLICY.fail(addr, "not in the state file"));
            continue;
        };
        let id = rec.id.as_str();
        let call = t.aws.ec2.describe_vpc_endpoints().vpc_endpoint_ids(id);
        let out = call.send().await;
        let policy = match read(
            out,
            Service::Ec2(Ec2::VpcEndpoint),
            "DescribeVpcEndpoints",
            id,
        ) {
            Read::Got(out) => match out.vpc_endpoints().first() {
                Some(e) => e.policy_document().map(str::to_string),
                None => {
                    checks.push(ENDPOINT_POLICY.fail(id, "not found"));
                    continue;
                }
            },
            Read::Gone => {
                checks.push(ENDPOINT_POLICY.fail(id, "not found"));
                continue;
            }
            Read::Unreadable(why) => {
                checks.push(ENDPOINT_POLICY.fail(id, why));
                continue;
            }
        };
        checks.push(judge_endpoint_policy(
            id,
            policy.as_deref(),
            &t.state.account_id,
        ));
    }
    checks
}

fn judge_endpoint_policy(id: &str, policy: Option<&str>, account: &str) -> Check {
    let Some(policy) = policy.and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
    else {
        return ENDPOINT_POLICY.fail(id, "no readable policy (the default allows everything)");
    };
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    let open = statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .find(|s| {
            let account_only = s["Condition"]["StringEquals"]["aws:PrincipalAccount"] == account;
            let resources = match &s["Resource"] {
                serde_json::Value::Array(a) => a.clone(),
                one => vec![one.clone()],
            };
            !account_only || resources.iter().any(|r| r == "*" || r.is_null())
        });
    match open {
        Some(s) => ENDPOINT_POLICY.fail(
            id,
            format!(
                "statement {} allows {} (not limited to account {account} and named resources)",
                s["Sid"].as_str().unwrap_or("without Sid"),
                s["Resource"]
            ),
        ),
        None => ENDPOINT_POLICY.pass(id, format!("account {account}, named resources only")),
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().collect()))
        .build()
}

async fn default_sg(t: &Target) -> Vec<Check> {
    let addr = format!("{}.main", default_security_group::KIND);
    let Some(rec) = t.record(&addr) else {
        return vec![DEFAULT_SG_CLOSED.fail(addr, "not in the state file")];
    };
    let id = rec.id.as_str();
    let out = t
        .aws
        .ec2
        .describe_security_groups()
        .filters(filter("group-id", [id.to_string()]))
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            return vec![DEFAULT_SG_CLOSED.fail(id, unreadable("DescribeSecurityGroups", id, e))];
        }
    };
    let Some(sg) = out
        .security_groups()
        .iter()
        .find(|g| g.group_id() == Some(id))
    else {
        return vec![DEFAULT_SG_CLOSED.fail(id, "not found")];
    };
    let (inbound, outbound) = (sg.ip_permissions().len(), sg.ip_permissions_egress().len());
    vec![DEFAULT_SG_CLOSED.judge(
        id,
        inbound == 0 && outbound == 0,
        "no inbound or outbound rules",
        format!("{inbound} inbound and {outbound} outbound rule(s)"),
    )]
}

async fn subnets(t: &Target) -> Vec<Check> {
    let ours = t.of_kind(subnet::KIND);
    if ours.is_empty() {
        return vec![NO_PUBLIC_IPS.fail("ec2_subnet.*", "no subnet in the state file")];
    }
    let ids = ours.iter().map(|(_, r)| r.id.clone());
    let out = t
        .aws
        .ec2
        .describe_subnets()
        .filters(filter("subnet-id", ids))
        .send()
        .await;
    let found = match out {
        Ok(out) => out.subnets().to_vec(),
        Err(e) => {
            let why = unreadable("DescribeSubnets", "the stack's subnets", e);
            return ours
                .iter()
                .map(|(_, r)| NO_PUBLIC_IPS.fail(&r.id, why.clone()))
                .collect();
        }
    };
    ours.iter()
        .map(|(addr, r)| {
            let resource = format!("{} ({})", r.id, Target::key(addr));
            let Some(s) = found.iter().find(|s| s.subnet_id() == Some(r.id.as_str())) else {
                return NO_PUBLIC_IPS.fail(resource, "not found");
            };
            let v4 = s.map_public_ip_on_launch() == Some(true);
            let v6 = s.assign_ipv6_address_on_creation() == Some(true);
            let why = match (v4, v6) {
                (false, false) => "MapPublicIpOnLaunch off",
                (true, false) => "MapPublicIpOnLaunch on",
                (false, true) => "AssignIpv6AddressOnCreation on",
                (true, true) => "MapPublicIpOnLaunch and AssignIpv6AddressOnCreation on",
            };
            NO_PUBLIC_IPS.judge(resource, !v4 && !v6, why, why)
        })
        .collect()
}

async fn eips(t: &Target) -> Vec<Check> {
    let ec2 = &t.aws.ec2;
    let in_state = t.of_kind(eip::KIND);
    let state_ids: Vec<String> = in_state.iter().map(|(_, r)| r.id.clone()).collect();
    let tagged = ec2
        .describe_addresses()
        .filters(filter(
            &format!("tag:{}", TAG_MANAGED_BY.0),
            [TAG_MANAGED_BY.1.to_string()],
        ))
        .filters(filter(&format!("tag:{TAG_ENVIRONMENT}"), [t.env.clone()]))
        .send();
    let named = async {
        if state_ids.is_empty() {
            return Ok(Vec::new());
        }
        ec2.describe_addresses()
            .filters(filter("allocation-id", state_ids.clone()))
            .send()
            .await
            .map(|out| out.addresses().to_vec())
    };
    let (tagged, named) = tokio::join!(tagged, named);
    let mut found: BTreeMap<String, Address> = BTreeMap::new();
    let mut failed = Vec::new();
    match tagged {
        Ok(out) => found.extend(by_allocation(out.addresses())),
        Err(e) => failed.push(unreadable("DescribeAddresses", "tagged Elastic IPs", e)),
    }
    match named {
        Ok(addresses) => found.extend(by_allocation(&addresses)),
        Err(e) => failed.push(unreadable(
            "DescribeAddresses",
            "the state's Elastic IPs",
            e,
        )),
    }
    if !failed.is_empty() {
        return fail_all(&[EIP_ATTACHED], "Elastic IPs", &failed.join("; "));
    }
    let mut checks: Vec<Check> = state_ids
        .iter()
        .filter(|id| !found.contains_key(*id))
        .map(|id| EIP_ATTACHED.fail(id, "not found"))
        .collect();
    for (id, a) in &found {
        let resource = format!("{id} ({})", a.public_ip().unwrap_or("no address"));
        checks.push(match a.association_id() {
            Some(assoc) => EIP_ATTACHED.pass(resource, format!("associated ({assoc})")),
            None => EIP_ATTACHED.fail(resource, "not associated with anything"),
        });
    }
    if checks.is_empty() {
        checks.push(EIP_ATTACHED.pass(
            "Elastic IPs",
            format!("none in the state file or tagged for environment {}", t.env),
        ));
    }
    checks
}

fn by_allocation(addresses: &[Address]) -> Vec<(String, Address)> {
    addresses
        .iter()
        .filter_map(|a| a.allocation_id().map(|id| (id.to_string(), a.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Status;

    const ACCOUNT: &str = "123456789012";

    #[test]
    fn the_default_full_access_policy_fails() {
        let default = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#;
        let check = judge_endpoint_policy("vpce-1", Some(default), ACCOUNT);
        assert_eq!(check.status, Status::Fail, "{}", check.why);
        let none = judge_endpoint_policy("vpce-1", None, ACCOUNT);
        assert_eq!(none.status, Status::Fail);
    }

    #[test]
    fn an_account_scoped_policy_on_named_resources_passes_and_another_account_fails() {
        let policy = |account: &str| {
            serde_json::json!({"Statement": [{"Sid": "S", "Effect": "Allow", "Principal": "*",
                "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::b/*"],
                "Condition": {"StringEquals": {"aws:PrincipalAccount": account}}}]})
            .to_string()
        };
        let ok = judge_endpoint_policy("vpce-1", Some(&policy(ACCOUNT)), ACCOUNT);
        assert_eq!(ok.status, Status::Pass, "{}", ok.why);
        let other = judge_endpoint_policy("vpce-1", Some(&policy("999999999999")), ACCOUNT);
        assert_eq!(other.status, Status::Fail);
    }
}
