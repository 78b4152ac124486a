//! The VPC's default security group, stripped of every ingress and egress rule.
//!
//! payctl does not own the group (it comes and goes with the VPC), so it only removes
//! its rules and records its id; `down` forgets it without deleting anything.

use super::{filter, vpc_id};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource, kind};
use crate::error::{Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;

pub const KIND: &str = "ec2_default_security_group";
const ADDR: &str = "ec2_default_security_group.main";

pub struct DefaultSecurityGroup;

#[async_trait]
impl Resource for DefaultSecurityGroup {
    kind!(KIND, depends_on = [super::vpc::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let ec2 = &ctx.aws.ec2;
        let vpc = vpc_id(ctx)?;
        let groups = ec2
            .describe_security_groups()
            .filters(filter("vpc-id", &vpc))
            .filters(filter("group-name", "default"))
            .send()
            .await
            .map_err(aws(
                "DescribeSecurityGroups",
                format!("default group of {vpc}"),
            ))?;
        let sg = required(
            groups.security_groups().first().and_then(|g| g.group_id()),
            "default security group",
        )?;
        let rules = ec2
            .describe_security_group_rules()
            .filters(filter("group-id", &sg))
            .send()
            .await
            .map_err(aws("DescribeSecurityGroupRules", &sg))?;
        let (mut ingress, mut egress) = (Vec::new(), Vec::new());
        for rule in rules.security_group_rules() {
            if let Some(id) = rule.security_group_rule_id() {
                if rule.is_egress() == Some(true) {
                    &mut egress
                } else {
                    &mut ingress
                }
                .push(id.to_string());
            }
        }
        let revoke_ingress = || async {
            let call = ec2.revoke_security_group_ingress().group_id(&sg);
            let call = call.set_security_group_rule_ids(Some(ingress.clone()));
            call.send()
                .await
                .map_err(aws("RevokeSecurityGroupIngress", &sg))?;
            Ok(())
        };
        ctx.converge(ADDR, "ingress rules", ingress.len(), 0, revoke_ingress)
            .await?;
        let revoke_egress = || async {
            let call = ec2.revoke_security_group_egress().group_id(&sg);
            let call = call.set_security_group_rule_ids(Some(egress.clone()));
            call.send()
                .await
                .map_err(aws("RevokeSecurityGroupEgress", &sg))?;
            Ok(())
        };
        ctx.converge(ADDR, "egress rules", egress.len(), 0, revoke_egress)
            .await?;
        let change = match (ctx.state.get(ADDR), ingress.len() + egress.len()) {
            (Some(_), 0) => Change::Unchanged,
            (None, 0) => Change::Adopted,
            _ => Change::Updated,
        };
        ctx.record(ADDR, Record::new(KIND, &sg).attr("vpc_id", &vpc))
            .await?;
        ctx.report.note(
            change,
            format!(
                "{ADDR} {sg} (rules removed: {})",
                ingress.len() + egress.len()
            ),
        );
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        // The default group is deleted with its VPC; there is nothing to undo.
        if ctx.state.get(ADDR).is_some() {
            ctx.forget(ADDR).await?;
        }
        Ok(())
    }
}
