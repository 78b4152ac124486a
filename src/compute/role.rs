//! One IAM execution role per function, `payment-<function>-role-<env>`, trusted by
//! Lambda for this account only, with one inline policy that names the exact ARNs the
//! function uses (see [`policy`]); the role the VPC's flow logs deliver with,
//! `payment-flow-logs-role-<env>`, trusted by `vpc-flow-logs.amazonaws.com` for this
//! account's flow logs only, writing to the flow log group only; and, in production,
//! the role AWS Backup backs up and restores with, `payment-backup-role-<env>`.
//!
//! No managed policies are attached to the function and flow log roles: the AWS-managed
//! basic-execution and VPC-access policies grant `logs:CreateLogGroup` on `*`, and the
//! functions must not re-create their log groups behind payctl's back, so their
//! remaining permissions are written out here instead. The backup role is the one
//! exception ([`MANAGED`]): AWS Backup's own managed policies carry the exact, changing
//! set of per-service calls a backup and a restore make (RDS, DynamoDB, KMS grants,
//! tags), which a hand-written copy would silently fall behind; the role can be used
//! only by AWS Backup, and only where someone in this account passes it.

use super::support::Shown;
use super::{AUDIT_LOGGER, FUNCTIONS, PROCESSOR, VALIDATOR, log_group};
use crate::data::{dynamodb_table, rds_instance, s3_bucket, sqs_queue};
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, all_ok, aws};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_iam::types::{Role, Tag};
use futures::future::join_all;
use serde_json::{Value, json};

pub const KIND: &str = "iam_role";
const POLICY_NAME: &str = "payment-function";
const SERVICE: Service = Service::Iam;

pub struct Roles;

/// The flow logs' delivery role (`iam_role.flow-logs`).
pub const FLOW_LOGS: &str = "flow-logs";
/// AWS Backup's role (`iam_role.backup`), in production.
pub const BACKUP: &str = "backup";

/// The AWS-managed policies of the backup role
/// (<https://docs.aws.amazon.com/aws-backup/latest/devguide/iam-service-roles.html>).
pub const MANAGED: [&str; 2] = [
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
    "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
];

/// The roles this environment wants: one per function, the flow logs' one, and AWS
/// Backup's in production.
fn keys(ctx: &Ctx) -> Vec<&'static str> {
    let mut keys: Vec<&str> = FUNCTIONS.iter().map(|f| f.key).chain([FLOW_LOGS]).collect();
    if crate::backup::wanted(ctx) {
        keys.push(BACKUP);
    }
    keys
}

/// Who may assume role `key`, as `plan` shows it.
fn trusted(key: &str) -> &'static str {
    match key {
        FLOW_LOGS => "VPC flow logs only",
        BACKUP => "AWS Backup only",
        _ => "Lambda only",
    }
}

/// The managed policies role `key` has attached.
fn managed(key: &str) -> &'static [&'static str] {
    if key == BACKUP { &MANAGED } else { &[] }
}

pub fn address(key: &str) -> String {
    format!("{KIND}.{key}")
}

pub fn role_name(ctx: &Ctx, key: &str) -> String {
    ctx.name(&format!("{key}-role"))
}

/// Lambda for a function's role; VPC flow logs for the flow logs' role, and only for
/// this account's flow logs ("IAM role for publishing flow logs to CloudWatch Logs",
/// <https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html>); AWS
/// Backup for the backup role, without conditions: AWS Backup documents confused-deputy
/// keys for resource policies only (its SNS topics and KMS keys,
/// <https://docs.aws.amazon.com/aws-backup/latest/devguide/cross-service-confused-deputy-prevention.html>),
/// not for assuming the role a backup plan's selection names, which only a principal of
/// this account with `iam:PassRole` can name.
pub fn trust_policy(ctx: &Ctx, key: &str) -> Value {
    if key == BACKUP {
        return json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "backup.amazonaws.com"},
                "Action": "sts:AssumeRole"
            }]
        });
    }
    let (service, mut condition) = match key {
        FLOW_LOGS => (
            "vpc-flow-logs.amazonaws.com",
            json!({"ArnLike": {"aws:SourceArn": format!(
                "arn:aws:ec2:{}:{}:vpc-flow-log/*", ctx.region, ctx.account_id
            )}}),
        ),
        _ => ("lambda.amazonaws.com", json!({})),
    };
    condition["StringEquals"] = json!({"aws:SourceAccount": ctx.account_id});
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": condition
        }]
    })
}

fn allow(actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resources})
}

/// `action` with KMS key `key`, only when `service` calls KMS on the role's behalf
/// (`kms:ViaService`), never directly.
fn through(ctx: &Ctx, action: &str, key: String, service: &str) -> Value {
    json!({
        "Effect": "Allow",
        "Action": [action],
        "Resource": [key],
        "Condition": {"StringEquals": {
            "kms:ViaService": format!("{service}.{}.amazonaws.com", ctx.region)
        }}
    })
}

/// The inline policy of function `key`: exact ARNs, `*` only where AWS has no narrower
/// resource for the action (each such statement says why).
pub fn policy(ctx: &Ctx, key: &str) -> Result<Value> {
    if key == BACKUP {
        // The vault's key (the RDS key), used by AWS Backup only; the managed policies
        // grant the rest.
        let rds_key = ctx.needed_arn(&kms_key::address("rds"))?;
        let statements = [
            through(ctx, "kms:Decrypt", rds_key.clone(), "backup"),
            through(ctx, "kms:GenerateDataKey", rds_key.clone(), "backup"),
            through(ctx, "kms:DescribeKey", rds_key, "backup"),
        ];
        return Ok(json!({"Version": "2012-10-17", "Statement": statements}));
    }
    let log_group = log_group::arn(ctx, key)?;
    if key == FLOW_LOGS {
        // Delivery to the flow log group only (the group is payctl's: no CreateLogGroup).
        let statements = [allow(
            &[
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogGroups",
                "logs:DescribeLogStreams",
            ],
            vec![log_group.clone(), format!("{log_group}:*")],
        )];
        return Ok(json!({"Version": "2012-10-17", "Statement": statements}));
    }
    let mut statements = vec![
        // Writing to its own, pre-created log group only (no logs:CreateLogGroup).
        allow(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            vec![format!("{log_group}:*")],
        ),
        // X-Ray's PutTraceSegments/PutTelemetryRecords support no resource-level scoping.
        allow(
            &["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            vec!["*".into()],
        ),
        // Lambda manages the function's network interfaces in the private subnets with
        // these EC2 actions; AWS offers no resource-level scoping for the Describe call
        // and Lambda creates the interfaces under the execution role (as in AWS's own
        // AWSLambdaVPCAccessExecutionRole policy).
        allow(
            &[
                "ec2:CreateNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            vec!["*".into()],
        ),
    ];
    // The function's environment variables, encrypted with the stack's Lambda key.
    let lambda_key = kms_key::arn_or_alias(ctx, kms_key::LAMBDA);
    statements.push(through(ctx, "kms:Decrypt", lambda_key, "lambda"));
    let table = ctx.needed_arn(dynamodb_table::ADDR)?;
    match key {
        VALIDATOR => {
            statements.push(allow(
                &["dynamodb:PutItem", "dynamodb:GetItem"],
                vec![table],
            ));
        }
        PROCESSOR => {
            let queue = ctx.needed_arn(&sqs_queue::address("retry"))?;
            let secret = ctx.needed_attr(rds_instance::ADDR, "secret_arn")?;
            let rds_key = ctx.needed_arn(&kms_key::address("rds"))?;
            statements.extend([
                allow(
                    &[
                        "dynamodb:GetItem",
                        "dynamodb:UpdateItem",
                        "dynamodb:DescribeTable",
                    ],
                    vec![table],
                ),
                // Sends retries; the event source mapping receives and deletes with the
                // function's role; GetQueueAttributes serves the queue depth in /status.
                allow(
                    &[
                        "sqs:SendMessage",
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    vec![queue],
                ),
                allow(&["secretsmanager:GetSecretValue"], vec![secret]),
                through(ctx, "kms:Decrypt", rds_key, "secretsmanager"),
            ]);
        }
        AUDIT_LOGGER => {
            let stream = ctx.needed_attr(dynamodb_table::ADDR, "stream_arn")?;
            let bucket = ctx.needed_id(s3_bucket::ADDR)?;
            let s3_key = ctx.needed_arn(&kms_key::address("s3"))?;
            let dlq = ctx.needed_arn(&sqs_queue::address("dlq"))?;
            statements.extend([
                allow(
                    &[
                        "dynamodb:DescribeStream",
                        "dynamodb:GetRecords",
                        "dynamodb:GetShardIterator",
                    ],
                    vec![stream],
                ),
                // ListStreams is not resource-scoped in IAM; the event source mapping
                // needs it to find the table's stream.
                allow(&["dynamodb:ListStreams"], vec!["*".into()]),
                allow(
                    &["s3:PutObject"],
                    vec![format!("arn:aws:s3:::{bucket}/audit/*")],
                ),
                through(ctx, "kms:GenerateDataKey", s3_key, "s3"),
                // The stream mapping's on-failure destination: batches that exhaust their
                // retries are recorded on the dead-letter queue, never dropped silently.
                allow(&["sqs:SendMessage"], vec![dlq]),
            ]);
        }
        other => {
            return Err(Error::Invalid(format!("no policy for function {other}")));
        }
    }
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// IAM returns policy documents URL-encoded.
pub(crate) fn decode(doc: &str) -> Option<Value> {
    let text = percent_encoding::percent_decode_str(doc)
        .decode_utf8()
        .ok()?;
    serde_json::from_str(&text).ok()
}

fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    let pair = |t: &Tag| (t.key().to_string(), t.value().to_string());
    tags.iter().map(pair).collect()
}

/// `GetRole`, which also returns the role's tags (so ownership needs no `ListRoleTags`).
async fn get_role(ctx: &Ctx, name: &str) -> Result<Role> {
    let out = ctx.aws.iam.get_role().role_name(name).send().await;
    let out = out.map_err(aws("GetRole", name))?;
    out.role
        .ok_or_else(|| Error::Invalid(format!("GetRole {name}: no role")))
}

/// The role, by the name in state, else by its name (its tags are checked on use).
async fn lookup(ctx: &Ctx, addr: &str, name: &str) -> Result<Option<Found<Role>>> {
    let by_id = |id: String| async move { get_role(ctx, &id).await.map(Some) };
    let by_name = || async { SERVICE.found(get_role(ctx, name).await) };
    find(ctx, addr, SERVICE, by_id, by_name).await
}

async fn create(ctx: &Ctx, key: &str, name: &str) -> Result<Role> {
    let tags: Vec<Tag> = ctx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(format!("role tags: {e}")))?;
    let call = ctx.aws.iam.create_role().role_name(name);
    let out = call
        .description(format!("payctl: role {key} of {}", ctx.env))
        .assume_role_policy_document(trust_policy(ctx, key).to_string())
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(aws("CreateRole", name))?;
    out.role
        .ok_or_else(|| Error::Invalid(format!("CreateRole {name}: no role")))
}

/// The role's inline policy, decoded; `None` when there is none.
async fn inline_policy(ctx: &Ctx, name: &str) -> Result<Option<Value>> {
    let call = ctx.aws.iam.get_role_policy().role_name(name);
    let out = call.policy_name(POLICY_NAME).send().await;
    let out = SERVICE.found(out.map_err(aws("GetRolePolicy", name)))?;
    Ok(out.and_then(|o| decode(o.policy_document())))
}

/// The settings, as declarations: the trust policy (Lambda, this account) and the
/// inline policy (least privilege). True when it wrote.
async fn converge_policies(ctx: &Ctx, addr: &str, role: &Role, key: &str) -> Result<bool> {
    let iam = &ctx.aws.iam;
    let name = role.role_name();
    let trust = trust_policy(ctx, key);
    let have = decode(role.assume_role_policy_document().unwrap_or_default());
    let write = || async {
        let call = iam.update_assume_role_policy().role_name(name);
        let call = call.policy_document(trust.to_string());
        call.send()
            .await
            .map_err(aws("UpdateAssumeRolePolicy", name))?;
        Ok(())
    };
    let have = Shown::new(have, "edited");
    let want = Shown::new(Some(trust.clone()), trusted(key));
    let mut wrote = ctx
        .converge(addr, "trust policy", have, want, write)
        .await?;

    let policy = policy(ctx, key)?;
    let have = inline_policy(ctx, name).await?;
    let shown = if have.is_some() { "edited" } else { "missing" };
    let write = || async {
        let call = iam
            .put_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME);
        let call = call.policy_document(policy.to_string());
        call.send().await.map_err(aws("PutRolePolicy", name))?;
        Ok(())
    };
    let (have, want) = (
        Shown::new(have, shown),
        Shown::new(Some(policy.clone()), "least privilege"),
    );
    let attribute = format!("inline policy {POLICY_NAME}");
    wrote |= ctx.converge(addr, &attribute, have, want, write).await?;
    wrote |= converge_managed(ctx, addr, name, managed(key)).await?;
    Ok(wrote)
}

/// Attaches the managed policies `want` the role lacks (others attached by hand are
/// left as they are).
async fn converge_managed(ctx: &Ctx, addr: &str, name: &str, want: &[&str]) -> Result<bool> {
    if want.is_empty() {
        return Ok(false);
    }
    let iam = &ctx.aws.iam;
    let out = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await;
    let out = out.map_err(aws("ListAttachedRolePolicies", name))?;
    let have: Vec<&str> = out
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    let missing: Vec<&str> = want.iter().copied().filter(|w| !have.contains(w)).collect();
    let shown = |arns: &[&str]| {
        let names: Vec<&str> = arns.iter().filter_map(|a| a.rsplit('/').next()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let have_text = shown(
        &want
            .iter()
            .copied()
            .filter(|w| have.contains(w))
            .collect::<Vec<_>>(),
    );
    let attach = || async {
        for arn in &missing {
            let call = iam.attach_role_policy().role_name(name).policy_arn(*arn);
            call.send().await.map_err(aws("AttachRolePolicy", name))?;
        }
        Ok(())
    };
    ctx.converge(addr, "managed policies", have_text, shown(want), attach)
        .await
}

async fn ensure_one(ctx: &Ctx, key: &str) -> Result<()> {
    let name = role_name(ctx, key);
    let addr = address(key);
    let (role, change) = match lookup(ctx, &addr, &name).await? {
        Some(found) => {
            let known = Some(tag_pairs(found.value.tags()));
            let retagged = converge_tags(ctx, &addr, &tags::IamRole(&name), known).await?;
            let change = found.change().updated_if(retagged);
            (found.value, change)
        }
        None => {
            if !ctx.would_create(format!("{addr} {name}")) {
                return Ok(());
            }
            (create(ctx, key, &name).await?, Change::Created)
        }
    };
    ctx.record(&addr, Record::new(KIND, &name).arn(role.arn()))
        .await?;
    let wrote = converge_policies(ctx, &addr, &role, key).await?;
    ctx.report
        .note(change.updated_if(wrote), format!("{addr} {name}"));
    Ok(())
}

/// Removes the role's inline policies and detaches managed ones: a role with either
/// cannot be deleted (payctl attaches none, but someone may have).
async fn remove_policies(ctx: &Ctx, name: &str) -> Result<()> {
    let iam = &ctx.aws.iam;
    let inline = iam.list_role_policies().role_name(name).send().await;
    for policy in inline
        .map_err(aws("ListRolePolicies", name))?
        .policy_names()
    {
        let call = iam.delete_role_policy().role_name(name).policy_name(policy);
        SERVICE.found(call.send().await.map_err(aws("DeleteRolePolicy", name)))?;
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await;
    let attached = attached.map_err(aws("ListAttachedRolePolicies", name))?;
    for arn in attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
    {
        let call = iam.detach_role_policy().role_name(name).policy_arn(arn);
        call.send().await.map_err(aws("DetachRolePolicy", name))?;
    }
    Ok(())
}

async fn delete_one(ctx: &Ctx, key: &str) -> Result<()> {
    let name = role_name(ctx, key);
    let addr = address(key);
    let Some(found) = lookup(ctx, &addr, &name).await? else {
        return ctx.forget_gone(&addr).await;
    };
    let have = tag_pairs(found.value.tags());
    tags::check_owned(ctx, &tags::IamRole(&name), &have)?;
    remove_policies(ctx, &name).await?;
    let delete = || async {
        let call = ctx.aws.iam.delete_role().role_name(&name);
        call.send().await.map_err(aws("DeleteRole", &name))
    };
    ctx.delete_and_forget(&addr, &name, SERVICE, delete).await
}

#[async_trait]
impl Resource for Roles {
    kind!(
        KIND,
        depends_on = [
            log_group::KIND,
            dynamodb_table::KIND,
            sqs_queue::KIND,
            s3_bucket::KIND,
            rds_instance::KIND,
            kms_key::KIND
        ]
    );

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        all_ok(join_all(keys(ctx).into_iter().map(|key| ensure_one(ctx, key))).await)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let mut keys = keys(ctx);
        // The backup role of an environment that was once a production one.
        if !keys.contains(&BACKUP) && ctx.state.get(&address(BACKUP)).is_some() {
            keys.push(BACKUP);
        }
        all_ok(join_all(keys.into_iter().map(|key| delete_one(ctx, key))).await)
    }
}
