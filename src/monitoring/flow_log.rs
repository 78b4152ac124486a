//! The VPC's flow log (FSBP EC2.6): all traffic (accepted and rejected) of the VPC to
//! the stack's log group `/aws/vpc-flow-logs/payment-vpc-<env>` (`log_group.flow-logs`,
//! encrypted with the logs key, the environment's retention), delivered by the role
//! `iam_role.flow-logs` (trusted by `vpc-flow-logs.amazonaws.com` for this account only).
//!
//! A flow log cannot be changed in place: one whose traffic type, log group or role
//! drifted is replaced (the new one first, so no traffic goes unlogged).

use crate::compute::{log_group, role};
use crate::engine::found::only_one;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::network::{filter, owned_filters, tag_pairs, tag_spec, vpc, vpc_id};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    FlowLog, FlowLogsResourceType, LogDestinationType, ResourceType, TrafficType,
};

pub const KIND: &str = "ec2_flow_log";
pub const ADDR: &str = "ec2_flow_log.vpc";
const SERVICE: Service = Service::Ec2(Ec2::FlowLogs);

pub struct FlowLogs;

/// What the flow log is, as `plan` compares it: traffic, log group, role.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    traffic: String,
    group: String,
    role: String,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} to {} as {}", self.traffic, self.group, self.role)
    }
}

fn shape(f: &FlowLog) -> Shape {
    Shape {
        traffic: f.traffic_type().map_or("?", |t| t.as_str()).to_string(),
        group: f.log_group_name().unwrap_or("?").to_string(),
        role: f.deliver_logs_permission_arn().unwrap_or("?").to_string(),
    }
}

fn wanted(ctx: &Ctx) -> Result<Shape> {
    Ok(Shape {
        traffic: TrafficType::All.as_str().to_string(),
        group: ctx.needed_id(&log_group::address(role::FLOW_LOGS))?,
        role: ctx.needed_arn(&role::address(role::FLOW_LOGS))?,
    })
}

async fn describe(ctx: &Ctx, filters: Vec<aws_sdk_ec2::types::Filter>) -> Result<Vec<FlowLog>> {
    let call = ctx.aws.ec2.describe_flow_logs().set_filter(Some(filters));
    let out = call.send().await.map_err(aws("DescribeFlowLogs", ADDR))?;
    Ok(out.flow_logs().to_vec())
}

/// The flow log, by the id in state, else by the VPC and ownership tags.
async fn lookup(ctx: &Ctx, vpc: &str) -> Result<Option<Found<FlowLog>>> {
    let by_id = |id: String| async move {
        Ok(describe(ctx, vec![filter("flow-log-id", id)])
            .await?
            .first()
            .cloned())
    };
    let by_tags = || async {
        let mut filters = owned_filters(ctx, None);
        filters.push(filter("resource-id", vpc));
        only_one(describe(ctx, filters).await?, "flow logs of the VPC")
    };
    find(ctx, ADDR, SERVICE, by_id, by_tags).await
}

async fn create(ctx: &Ctx, vpc: &str, want: &Shape) -> Result<String> {
    let call = ctx.aws.ec2.create_flow_logs();
    let call = call
        .resource_ids(vpc)
        .resource_type(FlowLogsResourceType::Vpc)
        .traffic_type(TrafficType::All)
        .log_destination_type(LogDestinationType::CloudWatchLogs)
        .log_group_name(&want.group)
        .deliver_logs_permission_arn(&want.role)
        .tag_specifications(tag_spec(
            ctx,
            ResourceType::VpcFlowLog,
            &ctx.name("flow-log"),
        ));
    let out = call.send().await.map_err(aws("CreateFlowLogs", vpc))?;
    if let Some(item) = out.unsuccessful().first() {
        let why = item
            .error()
            .and_then(|e| e.message())
            .unwrap_or("no reason given");
        return Err(Error::Invalid(format!(
            "flow log of {vpc} was not created: {why}"
        )));
    }
    let id = out.flow_log_ids().first().map(String::as_str);
    required(id, "flow log id")
}

async fn delete(ctx: &Ctx, id: &str) -> Result<()> {
    let call = ctx.aws.ec2.delete_flow_logs().flow_log_ids(id);
    let out = call.send().await.map_err(aws("DeleteFlowLogs", id))?;
    match out.unsuccessful().first().and_then(|i| i.error()) {
        Some(e) => Err(Error::Aws {
            op: "DeleteFlowLogs",
            resource: id.to_string(),
            code: e.code().unwrap_or("Unknown").to_string(),
            message: e.message().unwrap_or_default().to_string(),
        }),
        None => Ok(()),
    }
}

#[async_trait]
impl Resource for FlowLogs {
    kind!(KIND, depends_on = [vpc::KIND, log_group::KIND, role::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let want = wanted(ctx)?;
        let (id, change) = match lookup(ctx, &vpc).await? {
            Some(found) => {
                let id = required(found.value.flow_log_id(), "flow log id")?;
                let known = Some(tag_pairs(found.value.tags()));
                let retagged = converge_tags(ctx, ADDR, &tags::Ec2(&id), known).await?;
                let have = shape(&found.value);
                let replace = || async {
                    let new = create(ctx, &vpc, &want).await?;
                    ctx.record(ADDR, Record::new(KIND, &new)).await?;
                    delete(ctx, &id).await
                };
                let replaced = ctx
                    .converge(ADDR, "flow log", have, want.clone(), replace)
                    .await?;
                let id = match replaced {
                    true => ctx.needed_id(ADDR)?,
                    false => id,
                };
                (id, found.change().updated_if(retagged || replaced))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} ({want})")) {
                    return Ok(());
                }
                (create(ctx, &vpc, &want).await?, Change::Created)
            }
        };
        ctx.record(ADDR, Record::new(KIND, &id).attr("vpc", &vpc))
            .await?;
        ctx.report.note(change, format!("{ADDR} {id} ({want})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(vpc) = ctx.state.id(vpc::ADDR) else {
            return ctx.forget_gone(ADDR).await;
        };
        let Some(found) = lookup(ctx, &vpc).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        let id = required(found.value.flow_log_id(), "flow log id")?;
        tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(found.value.tags()))?;
        ctx.delete_and_forget(ADDR, &id, SERVICE, || delete(ctx, &id))
            .await
    }
}
