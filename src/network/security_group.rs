//! The Lambda and RDS security groups, with exactly these rules (others are revoked):
//! - Lambda egress: TCP 443 to anywhere (AWS APIs) and TCP 5432 to the RDS group;
//! - RDS ingress: TCP 5432 from the Lambda group only; RDS has no egress.
//!
//! Both groups reference each other, so `down` revokes every rule first, then deletes.

use super::{DEPENDENCY_WAIT, filter, lambda_enis, owned_filters, tag_pairs, tag_spec, vpc_id};
use crate::engine::gone::is_dependency_violation;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Resource, Service, kind};
use crate::error::{Result, all_ok, aws, required};
use crate::state::Record;
use crate::waiter::retry_while;
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, SecurityGroup, SecurityGroupRule, UserIdGroupPair,
};
use futures::future::join_all;

pub const KIND: &str = "ec2_security_group";
pub const GROUPS: [&str; 2] = ["lambda", "rds"];
pub const POSTGRES_PORT: i32 = 5432;
const SERVICE: Service = Service::Ec2(Ec2::SecurityGroup);

pub struct SecurityGroups;

pub fn address(group: &str) -> String {
    format!("{KIND}.{group}")
}

#[derive(Debug, Clone, PartialEq)]
pub enum Peer {
    Cidr(String),
    Group(String),
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub egress: bool,
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    pub peer: Peer,
}

impl Rule {
    fn tcp(egress: bool, port: i32, peer: Peer) -> Self {
        Rule {
            egress,
            protocol: "tcp".into(),
            from: port,
            to: port,
            peer,
        }
    }

    pub fn of(r: &SecurityGroupRule) -> Self {
        let peer = if let Some(c) = r.cidr_ipv4() {
            Peer::Cidr(c.to_string())
        } else if let Some(g) = r.referenced_group_info().and_then(|g| g.group_id()) {
            Peer::Group(g.to_string())
        } else {
            Peer::Other(
                r.cidr_ipv6()
                    .or(r.prefix_list_id())
                    .unwrap_or("?")
                    .to_string(),
            )
        };
        Rule {
            egress: r.is_egress() == Some(true),
            protocol: r.ip_protocol().unwrap_or("-1").to_string(),
            from: r.from_port().unwrap_or(-1),
            to: r.to_port().unwrap_or(-1),
            peer,
        }
    }

    /// `ingress tcp 22 from 0.0.0.0/0`, for `plan`.
    pub fn describe(&self) -> String {
        let (dir, way) = if self.egress {
            ("egress", "to")
        } else {
            ("ingress", "from")
        };
        let ports = match (self.from, self.to) {
            (-1, _) => "all ports".to_string(),
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        };
        let peer = match &self.peer {
            Peer::Cidr(p) | Peer::Group(p) | Peer::Other(p) => p,
        };
        let protocol = if self.protocol == "-1" {
            "all"
        } else {
            &self.protocol
        };
        format!("{dir} {protocol} {ports} {way} {peer}")
    }

    fn permission(&self, description: &str) -> IpPermission {
        let p = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .from_port(self.from)
            .to_port(self.to);
        match &self.peer {
            Peer::Cidr(c) => p.ip_ranges(
                IpRange::builder()
                    .cidr_ip(c)
                    .description(description)
                    .build(),
            ),
            Peer::Group(g) | Peer::Other(g) => p.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(g)
                    .description(description)
                    .build(),
            ),
        }
        .build()
    }
}

/// The rules each group must have, given both group ids.
pub fn desired(group: &str, lambda: &str, rds: &str) -> Vec<(Rule, &'static str)> {
    match group {
        "lambda" => vec![
            (
                Rule::tcp(true, 443, Peer::Cidr("0.0.0.0/0".into())),
                "HTTPS to AWS APIs",
            ),
            (
                Rule::tcp(true, POSTGRES_PORT, Peer::Group(rds.into())),
                "PostgreSQL to RDS",
            ),
        ],
        _ => vec![(
            Rule::tcp(false, POSTGRES_PORT, Peer::Group(lambda.into())),
            "PostgreSQL from Lambda",
        )],
    }
}

/// The rules of these groups, in one call.
async fn rules_of(ctx: &Ctx, group_ids: &[&str]) -> Result<Vec<SecurityGroupRule>> {
    let ids: Vec<String> = group_ids.iter().map(|s| s.to_string()).collect();
    let by_group = Filter::builder()
        .name("group-id")
        .set_values(Some(ids))
        .build();
    let out = ctx
        .aws
        .ec2
        .describe_security_group_rules()
        .filters(by_group)
        .send()
        .await;
    Ok(out
        .map_err(aws("DescribeSecurityGroupRules", group_ids.join(", ")))?
        .security_group_rules()
        .to_vec())
}

async fn revoke(ctx: &Ctx, group_id: &str, rules: &[SecurityGroupRule]) -> Result<usize> {
    let ids = |egress: bool| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.is_egress() == Some(egress))
            .filter_map(|r| r.security_group_rule_id().map(str::to_string))
            .collect()
    };
    let (ingress, egress) = (ids(false), ids(true));
    let ec2 = &ctx.aws.ec2;
    if !ingress.is_empty() {
        let call = ec2
            .revoke_security_group_ingress()
            .group_id(group_id)
            .set_security_group_rule_ids(Some(ingress.clone()));
        call.send()
            .await
            .map_err(aws("RevokeSecurityGroupIngress", group_id))?;
    }
    if !egress.is_empty() {
        let call = ec2
            .revoke_security_group_egress()
            .group_id(group_id)
            .set_security_group_rule_ids(Some(egress.clone()));
        call.send()
            .await
            .map_err(aws("RevokeSecurityGroupEgress", group_id))?;
    }
    Ok(ingress.len() + egress.len())
}

/// Both groups by name in the VPC, in one call.
async fn find_all(ctx: &Ctx, vpc: &str) -> Result<Vec<SecurityGroup>> {
    let names: Vec<String> = ["lambda", "rds"]
        .iter()
        .map(|g| ctx.name(&format!("{g}-sg")))
        .collect();
    let by_name = Filter::builder()
        .name("group-name")
        .set_values(Some(names))
        .build();
    let call = ctx
        .aws
        .ec2
        .describe_security_groups()
        .filters(filter("vpc-id", vpc))
        .filters(by_name);
    Ok(call
        .send()
        .await
        .map_err(aws(
            "DescribeSecurityGroups",
            format!("security groups in {vpc}"),
        ))?
        .security_groups()
        .to_vec())
}

async fn ensure_group(
    ctx: &Ctx,
    vpc: &str,
    group: &str,
    found: &[SecurityGroup],
) -> Result<(String, Change)> {
    let name = ctx.name(&format!("{group}-sg"));
    let existing = found.iter().find(|g| g.group_name() == Some(name.as_str()));
    let (id, change) = match existing.cloned() {
        Some(sg) => {
            let id = required(sg.group_id(), "security group id")?;
            let tagged = Some(tag_pairs(sg.tags()));
            let retagged = converge_tags(ctx, &address(group), &tags::Ec2(&id), tagged).await?;
            let change = if ctx.state.id(&address(group)).as_deref() == Some(id.as_str()) {
                Change::Unchanged
            } else {
                Change::Adopted
            };
            (id, change.updated_if(retagged))
        }
        None => {
            if !ctx.would_create(format!("{} ({name})", address(group))) {
                return Ok((String::new(), Change::Created));
            }
            let out = ctx
                .aws
                .ec2
                .create_security_group()
                .group_name(&name)
                .description(format!(
                    "payctl: {group} tier of the payment stack ({})",
                    ctx.env
                ))
                .vpc_id(vpc)
                .tag_specifications(tag_spec(ctx, ResourceType::SecurityGroup, &name))
                .send()
                .await
                .map_err(aws("CreateSecurityGroup", &name))?;
            (
                required(out.group_id(), "security group id")?,
                Change::Created,
            )
        }
    };
    ctx.record(&address(group), Record::new(KIND, &id).attr("name", &name))
        .await?;
    Ok((id, change))
}

/// Revokes unwanted rules and authorizes missing ones; returns whether anything changed.
async fn converge_rules(
    ctx: &Ctx,
    group: &str,
    id: &str,
    have: Vec<SecurityGroupRule>,
    want: &[(Rule, &str)],
) -> Result<bool> {
    let ec2 = &ctx.aws.ec2;
    let addr = address(group);
    let unwanted: Vec<SecurityGroupRule> = have
        .iter()
        .filter(|r| !want.iter().any(|(w, _)| *w == Rule::of(r)))
        .filter(|r| ctx.apply(&addr, &Rule::of(r).describe(), "present", "revoked"))
        .cloned()
        .collect();
    revoke(ctx, id, &unwanted).await?;
    let name = ctx.name(&format!("{group}-rule"));
    let mut changed = !unwanted.is_empty();
    for (rule, description) in want
        .iter()
        .filter(|(w, _)| !have.iter().any(|r| Rule::of(r) == *w))
        .filter(|(w, _)| ctx.apply(&addr, &w.describe(), "missing", "authorized"))
    {
        let tags = tag_spec(ctx, ResourceType::SecurityGroupRule, &name);
        if rule.egress {
            let call = ec2
                .authorize_security_group_egress()
                .group_id(id)
                .ip_permissions(rule.permission(description));
            call.tag_specifications(tags)
                .send()
                .await
                .map_err(aws("AuthorizeSecurityGroupEgress", id))?;
        } else {
            let call = ec2
                .authorize_security_group_ingress()
                .group_id(id)
                .ip_permissions(rule.permission(description));
            call.tag_specifications(tags)
                .send()
                .await
                .map_err(aws("AuthorizeSecurityGroupIngress", id))?;
        }
        changed = true;
    }
    Ok(changed)
}

#[async_trait]
impl Resource for SecurityGroups {
    kind!(KIND, depends_on = [super::vpc::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let found = find_all(ctx, &vpc).await?;
        let (lambda, rds) = futures::try_join!(
            ensure_group(ctx, &vpc, "lambda", &found),
            ensure_group(ctx, &vpc, "rds", &found)
        )?;
        if lambda.0.is_empty() || rds.0.is_empty() {
            // `plan`: a group would be created, and each group's rules name the other.
            for (group, (id, _)) in [("lambda", &lambda), ("rds", &rds)] {
                if !id.is_empty() {
                    let what = format!(
                        "{} {id} (rules: once the other group exists)",
                        address(group)
                    );
                    ctx.report.note(Change::Updated, what);
                }
            }
            return Ok(());
        }
        let rules = rules_of(ctx, &[&lambda.0, &rds.0]).await?;
        for (group, (id, change)) in [("lambda", &lambda), ("rds", &rds)] {
            let want = desired(group, &lambda.0, &rds.0);
            let have: Vec<SecurityGroupRule> = rules
                .iter()
                .filter(|r| r.group_id() == Some(id.as_str()))
                .cloned()
                .collect();
            let changed = converge_rules(ctx, group, id, have, &want).await?;
            let change = if changed && *change == Change::Unchanged {
                Change::Updated
            } else {
                *change
            };
            ctx.report.note(
                change,
                format!(
                    "{} {id} ({})",
                    address(group),
                    ctx.name(&format!("{group}-sg"))
                ),
            );
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let mut groups: Vec<SecurityGroup> = Vec::new();
        let out = ctx
            .aws
            .ec2
            .describe_security_groups()
            .set_filters(Some(owned_filters(ctx, None)))
            .send()
            .await;
        groups.extend(
            out.map_err(aws(
                "DescribeSecurityGroups",
                format!("groups of {}", ctx.env),
            ))?
            .security_groups()
            .iter()
            .cloned(),
        );
        for (_, rec) in ctx.state.of_kind(KIND) {
            if groups.iter().any(|g| g.group_id() == Some(rec.id.as_str())) {
                continue;
            }
            if let Some(out) = SERVICE.found(
                ctx.aws
                    .ec2
                    .describe_security_groups()
                    .group_ids(&rec.id)
                    .send()
                    .await
                    .map_err(aws("DescribeSecurityGroups", &rec.id)),
            )? {
                groups.extend(out.security_groups().iter().cloned());
            }
        }
        for g in &groups {
            let id = required(g.group_id(), "security group id")?;
            tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(g.tags()))?;
        }
        // Drop the cross-references first, or neither group can be deleted.
        let revoked = join_all(groups.iter().map(|g| async {
            let id = g.group_id().unwrap_or_default();
            revoke(ctx, id, &rules_of(ctx, &[id]).await?)
                .await
                .map(|_| ())
        }));
        all_ok(revoked.await)?;
        let known = ctx.state.of_kind(KIND);
        let deleted = join_all(groups.iter().map(|g| async {
            let id = g.group_id().unwrap_or_default();
            lambda_enis::release(ctx, id).await?;
            let addr = known
                .iter()
                .find(|(_, r)| r.id == id)
                .map_or(KIND, |(a, _)| a.as_str());
            let what = format!("deleting security group {id}");
            let delete = || async {
                retry_while(&what, DEPENDENCY_WAIT, is_dependency_violation, || async {
                    let call = ctx.aws.ec2.delete_security_group().group_id(id);
                    call.send().await.map_err(aws("DeleteSecurityGroup", id))
                })
                .await
            };
            ctx.delete_and_forget(addr, id, SERVICE, delete).await
        }));
        all_ok(deleted.await)?;
        for (addr, rec) in known {
            if !groups.iter().any(|g| g.group_id() == Some(rec.id.as_str())) {
                ctx.forget_gone(&addr).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_admits_postgres_from_lambda_only() {
        let rds = desired("rds", "sg-l", "sg-r");
        assert_eq!(rds.len(), 1);
        assert_eq!(
            rds[0].0,
            Rule {
                egress: false,
                protocol: "tcp".into(),
                from: 5432,
                to: 5432,
                peer: Peer::Group("sg-l".into())
            }
        );
        let lambda = desired("lambda", "sg-l", "sg-r");
        assert!(lambda.iter().all(|(r, _)| r.egress));
        assert!(
            lambda
                .iter()
                .any(|(r, _)| r.peer == Peer::Group("sg-r".into()) && r.from == 5432)
        );
    }
}
