//! The region's API Gateway account setting `cloudwatchRoleArn`: the IAM role API Gateway
//! uses to write *every* API's execution and access logs in this account and region.
//! Without it, AWS refuses execution logging on a stage.
//!
//! Decision: the setting is account-wide and may belong to someone else, so payctl
//! - leaves it alone whenever it is set, whoever set it (it is never overwritten);
//! - only when it is unset, creates (or reuses) its own role
//!   `payctl-apigateway-cloudwatch`, trusted by `apigateway.amazonaws.com` acting for
//!   this account only (`aws:SourceAccount`, against the confused deputy), with an
//!   inline policy limited to CloudWatch Logs in this account (the actions of the
//!   AWS-managed `AmazonAPIGatewayPushToCloudWatchLogs`), and points the setting at it;
//!   a role of that name that payctl did not tag is not used (the run stops, naming it);
//! - never unsets the setting or deletes the role on `down`: other environments and
//!   other teams' APIs in the account start relying on it as soon as it is set, and
//!   removing it would silently break their logging. `down` only forgets the record.
//!
//! The role is shared by every environment of the account, so it carries payctl's tags
//! without an `Environment` tag; it is recognised by `ManagedBy=payctl` alone.

use crate::engine::report::Change;
use crate::engine::tags::{self, Tagged};
use crate::engine::{Ctx, Resource, Service, kind};
use crate::error::{Error, Result, aws, required};
use crate::naming::{TAG_ENVIRONMENT, TAG_MANAGED_BY};
use crate::state::Record;
use crate::waiter::{Wait, retry_while};
use async_trait::async_trait;
use aws_sdk_iam::types::{Role, Tag};
use serde_json::{Value, json};
use std::time::Duration;

pub const KIND: &str = "apigw_account";
pub const ADDR: &str = "apigw_account.cloudwatch_role";
pub const ROLE_NAME: &str = "payctl-apigateway-cloudwatch";
const POLICY_NAME: &str = "apigateway-push-to-cloudwatch-logs";
/// A new role takes a few seconds to be usable by API Gateway (IAM is eventually
/// consistent); UpdateAccount answers BadRequest until then.
const ROLE_PROPAGATION: Wait = Wait {
    timeout: Duration::from_secs(120),
    first: Duration::from_secs(2),
    max_interval: Duration::from_secs(15),
};

pub struct AccountLogging;

/// API Gateway may assume the role only on behalf of this account. (`aws:SourceArn` is
/// left out: AWS documents no ARN that API Gateway presents for this account-level
/// role, which serves every API of the account.)
pub fn trust_policy(account_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}
        }]
    })
}

/// payctl's role, or `None` when there is no role of that name.
async fn read_role(ctx: &Ctx) -> Result<Option<Role>> {
    let out = ctx.aws.iam.get_role().role_name(ROLE_NAME).send().await;
    let out = Service::Iam.found(out.map_err(aws("GetRole", ROLE_NAME)))?;
    Ok(out.and_then(|o| o.role))
}

/// Puts payctl's trust policy back on its role (as read by [`read_role`]) when it
/// differs; true when it did (or, in a plan, would).
async fn converge_trust(ctx: &Ctx, role: &Role) -> Result<bool> {
    let have = role
        .assume_role_policy_document()
        .and_then(crate::compute::role::decode);
    let want = trust_policy(&ctx.account_id);
    if have.as_ref() == Some(&want) {
        return Ok(false);
    }
    if ctx.apply(
        ADDR,
        "trust policy",
        "edited",
        "API Gateway for this account only",
    ) {
        tracing::info!("IAM role {ROLE_NAME}: putting its trust policy back");
        ctx.aws
            .iam
            .update_assume_role_policy()
            .role_name(ROLE_NAME)
            .policy_document(want.to_string())
            .send()
            .await
            .map_err(aws("UpdateAssumeRolePolicy", ROLE_NAME))?;
    }
    Ok(true)
}

/// What API Gateway needs to write logs: any log group of this account (the role serves
/// every API of the account, including other teams').
pub fn role_policy(account_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogGroups",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
                "logs:GetLogEvents",
                "logs:FilterLogEvents"
            ],
            "Resource": format!("arn:aws:logs:*:{account_id}:*")
        }]
    })
}

/// payctl's tags without `Environment`: the role is shared by every environment.
fn role_tags(ctx: &Ctx) -> Vec<(String, String)> {
    ctx.tags()
        .into_iter()
        .filter(|(k, _)| k != TAG_ENVIRONMENT)
        .collect()
}

/// The role's tag rule, which differs from every other resource's: it is payctl's by
/// `ManagedBy=payctl` alone (no environment owns it), and the standard tags other than
/// `Environment` are put back. True when it wrote tags (or, in a plan, would).
async fn converge_role_tags(ctx: &Ctx) -> Result<bool> {
    let target = tags::IamRole(ROLE_NAME);
    let have = target.read(ctx).await?;
    let ours = have
        .iter()
        .any(|(k, v)| k == TAG_MANAGED_BY.0 && v == TAG_MANAGED_BY.1);
    if !ours {
        return Err(Error::NotOwned {
            resource: format!("IAM role {ROLE_NAME}"),
            why: format!(
                "it lacks the tag ManagedBy=payctl; the API Gateway account setting cloudwatchRoleArn is unset in {}: set it to a role trusted by apigateway.amazonaws.com (aws apigateway update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=ROLE_ARN), then run `payctl up` again",
                ctx.region
            ),
        });
    }
    let missing: Vec<(String, String)> = tags::missing(&ctx.env, &have)
        .into_iter()
        .filter(|(k, _)| k != TAG_ENVIRONMENT)
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
    if ctx.apply(ADDR, "tags", format!("missing {}", keys.join(", ")), "set") {
        target.add(ctx, missing).await?;
    }
    Ok(true)
}

async fn current_role(ctx: &Ctx) -> Result<Option<String>> {
    let out = ctx
        .aws
        .apigateway
        .get_account()
        .send()
        .await
        .map_err(aws("GetAccount", "API Gateway account settings"))?;
    Ok(out
        .cloudwatch_role_arn()
        .filter(|a| !a.is_empty())
        .map(str::to_string))
}

/// Creates payctl's role; another environment's `up` may make it at the same moment,
/// and then that one is read.
async fn create_role(ctx: &Ctx) -> Result<Role> {
    let tags: Vec<Tag> = role_tags(ctx)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(format!("role tags: {e}")))?;
    let created = ctx
        .aws
        .iam
        .create_role()
        .role_name(ROLE_NAME)
        .description(
            "payctl: lets API Gateway write execution and access logs (account setting cloudwatchRoleArn; shared, never deleted by payctl)",
        )
        .assume_role_policy_document(trust_policy(&ctx.account_id).to_string())
        .set_tags(Some(tags))
        .send()
        .await;
    let role = match created.map_err(aws("CreateRole", ROLE_NAME)) {
        Ok(out) => out.role,
        Err(e) if e.aws_code() == Some("EntityAlreadyExists") => read_role(ctx).await?,
        Err(e) => return Err(e),
    };
    role.ok_or_else(|| Error::Invalid(format!("IAM returned no role {ROLE_NAME}")))
}

/// Creates payctl's role, or reuses it when payctl made it before (its tags and trust
/// policy put back); returns its ARN.
async fn ensure_role(ctx: &Ctx) -> Result<String> {
    let role = match read_role(ctx).await? {
        Some(role) => {
            converge_role_tags(ctx).await?;
            // A role payctl made before may carry an older or edited trust policy.
            converge_trust(ctx, &role).await?;
            role
        }
        None => create_role(ctx).await?,
    };
    ctx.aws
        .iam
        .put_role_policy()
        .role_name(ROLE_NAME)
        .policy_name(POLICY_NAME)
        .policy_document(role_policy(&ctx.account_id).to_string())
        .send()
        .await
        .map_err(aws("PutRolePolicy", ROLE_NAME))?;
    required(Some(role.arn()), "role ARN")
}

/// The account already logs with payctl's role: its tags and trust policy are put back.
async fn converge_ours(ctx: &Ctx) -> Result<bool> {
    let role = read_role(ctx).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "the API Gateway account setting cloudwatchRoleArn names payctl's IAM role {ROLE_NAME}, which no longer exists; unset the setting (or create the role) and run `payctl up` again"
        ))
    })?;
    let retagged = converge_role_tags(ctx).await?;
    Ok(converge_trust(ctx, &role).await? | retagged)
}

#[async_trait]
impl Resource for AccountLogging {
    kind!(KIND);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        if let Some(arn) = current_role(ctx).await? {
            if ctx.state.get(ADDR).and_then(|r| r.arn) != Some(arn.clone()) {
                // Someone pointed the setting elsewhere since: payctl's record is stale.
                ctx.forget(ADDR).await?;
                let note = format!("{ADDR}: API Gateway already logs with {arn} (left as it is)");
                ctx.report.note(Change::Unchanged, note);
                return Ok(());
            }
            let change = Change::Unchanged.updated_if(converge_ours(ctx).await?);
            ctx.report.note(change, format!("{ADDR} {arn}"));
            return Ok(());
        }
        if !ctx.would_create(format!(
            "{ADDR} {ROLE_NAME} (account setting cloudwatchRoleArn)"
        )) {
            return Ok(());
        }
        let arn = ensure_role(ctx).await?;
        let apigw = &ctx.aws.apigateway;
        retry_while(
            &format!("setting the API Gateway account's CloudWatch role to {arn}"),
            ROLE_PROPAGATION,
            |e| e.aws_code() == Some("BadRequestException"),
            || async {
                apigw
                    .update_account()
                    .patch_operations(super::support::replace("/cloudwatchRoleArn", &arn))
                    .send()
                    .await
                    .map_err(aws("UpdateAccount", "cloudwatchRoleArn"))
            },
        )
        .await?;
        ctx.record(
            ADDR,
            Record::new(KIND, ROLE_NAME)
                .arn(&arn)
                .attr("region", &ctx.region),
        )
        .await?;
        tracing::info!(
            "API Gateway in {} had no CloudWatch role: set it to {arn} (account-wide; `down` keeps it)",
            ctx.region
        );
        ctx.report.note(Change::Created, format!("{ADDR} {arn}"));
        Ok(())
    }

    /// Never unsets the account setting nor deletes the role (see the module docs).
    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        if let Some(rec) = ctx.state.get(ADDR) {
            tracing::info!(
                "keeping the API Gateway account's CloudWatch role {} and its setting in {}: they are account-wide and other APIs may rely on them",
                rec.arn.as_deref().unwrap_or(ROLE_NAME),
                ctx.region
            );
            ctx.forget(ADDR).await?;
            ctx.report
                .note(Change::Unchanged, format!("{ADDR} kept (account-wide)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_for_api_gateway_and_logs_only() {
        let trust = trust_policy("123456789012");
        assert_eq!(
            trust["Statement"][0]["Principal"]["Service"],
            "apigateway.amazonaws.com"
        );
        assert_eq!(
            trust["Statement"][0]["Condition"],
            json!({"StringEquals": {"aws:SourceAccount": "123456789012"}})
        );
        let p = role_policy("123456789012");
        let actions = p["Statement"][0]["Action"].as_array().unwrap();
        assert!(
            actions
                .iter()
                .all(|a| a.as_str().unwrap().starts_with("logs:"))
        );
        assert_eq!(
            p["Statement"][0]["Resource"],
            "arn:aws:logs:*:123456789012:*"
        );
    }
}
