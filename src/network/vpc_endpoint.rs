//! S3 and DynamoDB gateway endpoints on the private route tables, so the functions reach
//! both services without crossing the NAT gateways. Each has a policy that admits only
//! this account's principals, and only the stack's audit bucket or transactions table
//! (with its stream), put back on every `up` if it drifted.

use super::{filter, name_of, owned_filters, tag_pairs, tag_spec, vpc_id};
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Ec2, Resource, Service, Shown, kind};
use crate::error::{Error, Result, all_ok, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};
use futures::future::join_all;

pub const KIND: &str = "ec2_vpc_endpoint";
pub const SERVICES: [&str; 2] = ["s3", "dynamodb"];
/// Only the endpoint's own NotFound means it is gone: another (say, a route it manages)
/// means the deletion did not happen.
const SERVICE: Service = Service::Ec2(Ec2::VpcEndpoint);

pub struct GatewayEndpoints;

/// Not on its way out. EC2 spells the states both `Deleted` and `deleted`.
fn live(e: &VpcEndpoint) -> bool {
    let state = e.state().map(|s| s.as_str().to_ascii_lowercase());
    !matches!(
        state.as_deref(),
        Some("deleted" | "deleting" | "failed" | "rejected" | "expired")
    )
}

fn private_route_tables(ctx: &Ctx) -> Vec<String> {
    let mut ids: Vec<String> = ctx
        .state
        .of_kind(super::route_table::KIND)
        .into_iter()
        .filter(|(addr, _)| addr.contains(".private-"))
        .map(|(_, r)| r.id)
        .collect();
    ids.sort();
    ids
}

/// `in_vpc` is every endpoint of the VPC, read once for both services.
async fn ensure_one(ctx: &Ctx, vpc: &str, service: &str, in_vpc: &[VpcEndpoint]) -> Result<()> {
    let ec2 = &ctx.aws.ec2;
    let addr = format!("{KIND}.{service}");
    let name = ctx.name(&format!("{service}-endpoint"));
    let service_name = format!("com.amazonaws.{}.{service}", ctx.region);
    let tables = private_route_tables(ctx);
    let zones = super::zones(ctx).len();
    if tables.len() < zones {
        // Only on a run that started before the route tables were all recorded (see the
        // walker): the endpoint is made with every private route table or not at all.
        return Err(Error::Invalid(format!(
            "{} of {zones} private route tables are recorded; the endpoint {name} waits for all of them",
            tables.len()
        )));
    }
    let mut found = in_vpc.iter().filter(|e| {
        live(e)
            && e.service_name() == Some(service_name.as_str())
            && name_of(e.tags()) == Some(name.as_str())
    });
    let want_policy = policy(ctx, service);
    let (id, change, current, have_policy) = match (found.next(), found.next()) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid(format!(
                "more than one endpoint is named {name}; delete the extras"
            )));
        }
        (Some(e), None) => {
            let id = required(e.vpc_endpoint_id(), "VPC endpoint id")?;
            let known = Some(tag_pairs(e.tags()));
            let retagged = converge_tags(ctx, &addr, &tags::Ec2(&id), known).await?;
            let change = if ctx.state.id(&addr).as_deref() == Some(id.as_str()) {
                Change::Unchanged
            } else {
                Change::Adopted
            };
            (
                id,
                change.updated_if(retagged),
                e.route_table_ids().to_vec(),
                e.policy_document().map(str::to_string),
            )
        }
        (None, _) => {
            if !ctx.would_create(format!("{addr} ({name})")) {
                return Ok(());
            }
            let out = ec2
                .create_vpc_endpoint()
                .vpc_id(vpc)
                .service_name(&service_name)
                .vpc_endpoint_type(VpcEndpointType::Gateway)
                .set_route_table_ids(Some(tables.clone()))
                .policy_document(want_policy.to_string())
                .tag_specifications(tag_spec(ctx, ResourceType::VpcEndpoint, &name))
                .send()
                .await
                .map_err(aws("CreateVpcEndpoint", &name))?;
            (
                required(
                    out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()),
                    "VPC endpoint id",
                )?,
                Change::Created,
                tables.clone(),
                Some(want_policy.to_string()),
            )
        }
    };
    ctx.record(&addr, Record::new(KIND, &id).attr("service", &service_name))
        .await?;
    let mut have = current.clone();
    have.sort();
    let write = || async {
        let add: Vec<String> = tables
            .iter()
            .filter(|t| !current.contains(t))
            .cloned()
            .collect();
        let remove: Vec<String> = current
            .iter()
            .filter(|t| !tables.contains(t))
            .cloned()
            .collect();
        let call = ec2.modify_vpc_endpoint().vpc_endpoint_id(&id);
        let call = call
            .set_add_route_table_ids((!add.is_empty()).then_some(add))
            .set_remove_route_table_ids((!remove.is_empty()).then_some(remove));
        call.send().await.map_err(aws("ModifyVpcEndpoint", &id))?;
        Ok(())
    };
    let wrote = ctx
        .converge(
            &addr,
            "route tables",
            have.join(", "),
            tables.join(", "),
            write,
        )
        .await?;
    let repolicied = converge_policy(ctx, &addr, &id, have_policy, want_policy).await?;
    let change = change.updated_if(wrote || repolicied);
    ctx.report.note(change, format!("{addr} {id} ({name})"));
    Ok(())
}

/// The endpoint's policy: this account's principals only, and only the stack's resources
/// behind it (the audit bucket for S3; the transactions table and its stream for
/// DynamoDB), with the actions the functions' roles grant. The default policy of a
/// gateway endpoint allows every principal every action on every resource of the
/// service ("Control access to VPC endpoints using endpoint policies",
/// <https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html>).
pub fn policy(ctx: &Ctx, service: &str) -> serde_json::Value {
    let (sid, actions, resources) = match service {
        "s3" => {
            let bucket = crate::data::s3_bucket::bucket_name(ctx);
            (
                "StackAuditBucketOnly",
                vec![
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                ],
                vec![
                    format!("arn:aws:s3:::{bucket}"),
                    format!("arn:aws:s3:::{bucket}/*"),
                ],
            )
        }
        _ => {
            let table = format!(
                "arn:aws:dynamodb:{}:{}:table/{}",
                ctx.region,
                ctx.account_id,
                ctx.name("transactions")
            );
            (
                "StackTransactionsTableOnly",
                vec![
                    "dynamodb:PutItem",
                    "dynamodb:GetItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DescribeTable",
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                ],
                vec![table.clone(), format!("{table}/stream/*")],
            )
        }
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": sid,
            "Effect": "Allow",
            "Principal": "*",
            "Action": actions,
            "Resource": resources,
            "Condition": {"StringEquals": {"aws:PrincipalAccount": ctx.account_id}}
        }]
    })
}

/// Puts the endpoint's policy back to [`policy`]; true when it wrote it.
async fn converge_policy(
    ctx: &Ctx,
    addr: &str,
    id: &str,
    have: Option<String>,
    want: serde_json::Value,
) -> Result<bool> {
    let have = have.and_then(|h| serde_json::from_str::<serde_json::Value>(&h).ok());
    let shown = match &have {
        Some(h) if h == &want => "stack only",
        Some(h) if h.to_string().contains("\"Resource\":\"*\"") => "full access",
        Some(_) => "edited",
        None => "none",
    };
    let write = || async {
        let call = ctx.aws.ec2.modify_vpc_endpoint().vpc_endpoint_id(id);
        let call = call.policy_document(want.to_string());
        call.send().await.map_err(aws("ModifyVpcEndpoint", id))?;
        Ok(())
    };
    let have = Shown::new(have, shown);
    let want = Shown::new(Some(want.clone()), "stack only");
    ctx.converge(addr, "policy", have, want, write).await
}

/// The address of a live endpoint: `ec2_vpc_endpoint.<service>` from its service name
/// (`com.amazonaws.<region>.s3` → `s3`).
fn address(e: &VpcEndpoint) -> String {
    let service = e.service_name().unwrap_or_default();
    format!("{KIND}.{}", service.rsplit('.').next().unwrap_or(service))
}

/// An item of `DeleteVpcEndpoints`' `Unsuccessful` list, as the error it is.
fn unsuccessful(id: &str, item: &aws_sdk_ec2::types::UnsuccessfulItem) -> Error {
    let error = item.error();
    Error::Aws {
        op: "DeleteVpcEndpoints",
        resource: id.to_string(),
        code: error
            .and_then(|e| e.code())
            .unwrap_or("Unknown")
            .to_string(),
        message: error
            .and_then(|e| e.message())
            .unwrap_or_default()
            .to_string(),
    }
}

async fn delete_one(ctx: &Ctx, e: &VpcEndpoint) -> Result<()> {
    let id = required(e.vpc_endpoint_id(), "VPC endpoint id")?;
    tags::check_owned(ctx, &tags::Ec2(&id), &tag_pairs(e.tags()))?;
    // The call answers 200 with the endpoint under `Unsuccessful` when it was not deleted.
    let delete = || async {
        let call = ctx.aws.ec2.delete_vpc_endpoints().vpc_endpoint_ids(&id);
        let out = call.send().await.map_err(aws("DeleteVpcEndpoints", &id))?;
        match out.unsuccessful().first() {
            Some(item) => Err(unsuccessful(&id, item)),
            None => Ok(()),
        }
    };
    ctx.delete_and_forget(&address(e), &id, SERVICE, delete)
        .await
}

#[async_trait]
impl Resource for GatewayEndpoints {
    kind!(KIND, depends_on = [super::route_table::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let vpc = vpc_id(ctx)?;
        let call = ctx.aws.ec2.describe_vpc_endpoints();
        let out = call.filters(filter("vpc-id", &vpc)).send().await;
        let out = out.map_err(aws("DescribeVpcEndpoints", format!("endpoints in {vpc}")))?;
        let in_vpc = out.vpc_endpoints();
        all_ok(join_all(SERVICES.iter().map(|s| ensure_one(ctx, &vpc, s, in_vpc))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let known = ctx.state.of_kind(KIND);
        let mut ids: Vec<String> = known.iter().map(|(_, r)| r.id.clone()).collect();
        let mut endpoints = Vec::new();
        let call = ctx.aws.ec2.describe_vpc_endpoints();
        let by_tag = call
            .set_filters(Some(owned_filters(ctx, None)))
            .send()
            .await;
        for e in by_tag
            .map_err(aws(
                "DescribeVpcEndpoints",
                format!("endpoints of {}", ctx.env),
            ))?
            .vpc_endpoints()
        {
            ids.retain(|i| Some(i.as_str()) != e.vpc_endpoint_id());
            endpoints.push(e.clone());
        }
        for id in ids {
            if let Some(out) = SERVICE.found(
                ctx.aws
                    .ec2
                    .describe_vpc_endpoints()
                    .vpc_endpoint_ids(&id)
                    .send()
                    .await
                    .map_err(aws("DescribeVpcEndpoints", &id)),
            )? {
                endpoints.extend(out.vpc_endpoints().iter().cloned());
            }
        }
        endpoints.retain(live);
        all_ok(join_all(endpoints.iter().map(|e| delete_one(ctx, e))).await)?;
        // Records whose endpoint was gone already (or is on its way out).
        for (addr, _) in ctx.state.of_kind(KIND) {
            ctx.forget_gone(&addr).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::walk::test_ctx;

    #[tokio::test]
    async fn each_policy_admits_this_account_and_the_stack_s_resource_only() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_ctx(dir.path()).await;
        let s3 = policy(&ctx, "s3");
        let statement = &s3["Statement"][0];
        let account = &statement["Condition"]["StringEquals"]["aws:PrincipalAccount"];
        assert_eq!(account, ctx.account_id.as_str());
        let bucket = crate::data::s3_bucket::bucket_name(&ctx);
        assert_eq!(
            statement["Resource"],
            serde_json::json!([
                format!("arn:aws:s3:::{bucket}"),
                format!("arn:aws:s3:::{bucket}/*")
            ])
        );
        let ddb = policy(&ctx, "dynamodb");
        let resources = ddb["Statement"][0]["Resource"].as_array().unwrap();
        assert!(
            resources[0]
                .as_str()
                .unwrap()
                .ends_with(":table/payment-transactions-dev")
        );
        assert!(resources[1].as_str().unwrap().ends_with("/stream/*"));
        assert!(
            !ddb["Statement"][0]["Action"]
                .to_string()
                .contains("dynamodb:*")
        );
    }
}
