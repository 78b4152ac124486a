//! One IAM execution role per function, `payment-<function>-role-<env>`, trusted by
//! Lambda for this account only, with one inline policy that names the exact ARNs the
//! function uses (see [`policy`]). No managed policies are attached: the AWS-managed
//! basic-execution and VPC-access policies grant `logs:CreateLogGroup` on `*`, and the
//! functions must not re-create their log groups behind payctl's back, so their
//! remaining permissions are written out here instead.

use super::{AUDIT_LOGGER, FUNCTIONS, PROCESSOR, VALIDATOR, log_group};
use crate::data::{dynamodb_table, rds_instance, s3_bucket, sqs_queue};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, all_ok, aws};
use crate::security::kms_key;
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_iam::types::{Role, Tag};
use futures::future::join_all;
use serde_json::{Value, json};

pub const KIND: &str = "iam_role";
const POLICY_NAME: &str = "payment-function";

pub struct Roles;

pub fn address(key: &str) -> String {
    format!("{KIND}.{key}")
}

pub fn role_name(ctx: &Ctx, key: &str) -> String {
    ctx.name(&format!("{key}-role"))
}

pub fn trust_policy(ctx: &Ctx) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}}
        }]
    })
}

fn allow(actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resources})
}

/// The inline policy of function `key`: exact ARNs, `*` only where AWS has no narrower
/// resource for the action (each such statement says why).
pub fn policy(ctx: &Ctx, key: &str) -> Result<Value> {
    let log_group = log_group::arn(ctx, key)?;
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
                json!({
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt"],
                    "Resource": [rds_key],
                    "Condition": {"StringEquals": {
                        "kms:ViaService": format!("secretsmanager.{}.amazonaws.com", ctx.region)
                    }}
                }),
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
                json!({
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey"],
                    "Resource": [s3_key],
                    "Condition": {"StringEquals": {
                        "kms:ViaService": format!("s3.{}.amazonaws.com", ctx.region)
                    }}
                }),
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

fn no_such_entity<E: aws_sdk_iam::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("NoSuchEntity")
}

/// `GetRole` returns the role's tags, so ownership needs no `ListRoleTags`.
fn check_owned(ctx: &Ctx, name: &str, role: Option<&Role>) -> Result<()> {
    let tags = role.map(|r| r.tags()).unwrap_or_default();
    ctx.check_owned(
        &format!("IAM role {name}"),
        tags.iter().map(|t| (t.key(), t.value())),
    )
}

async fn ensure_one(ctx: &Ctx, key: &str) -> Result<()> {
    let iam = &ctx.aws.iam;
    let name = role_name(ctx, key);
    let addr = address(key);
    let trust = trust_policy(ctx);
    let (role, mut change) = match iam.get_role().role_name(&name).send().await {
        Ok(out) => {
            check_owned(ctx, &name, out.role())?;
            let role = out
                .role
                .ok_or_else(|| Error::Invalid(format!("GetRole {name}: no role")))?;
            let known = ctx.state.get(&addr).is_some();
            (
                role,
                if known {
                    Change::Unchanged
                } else {
                    Change::Adopted
                },
            )
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            if !ctx.would_create(format!("{addr} {name}")) {
                return Ok(());
            }
            let tags: Vec<Tag> = ctx
                .tags()
                .into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Invalid(format!("role tags: {e}")))?;
            let out = iam
                .create_role()
                .role_name(&name)
                .description(format!(
                    "payctl: execution role of payment-{key}-{}",
                    ctx.env
                ))
                .assume_role_policy_document(trust.to_string())
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(aws("CreateRole", &name))?;
            let role = out
                .role
                .ok_or_else(|| Error::Invalid(format!("CreateRole {name}: no role")))?;
            (role, Change::Created)
        }
        Err(e) => return Err(aws("GetRole", &name)(e)),
    };
    ctx.record(&addr, Record::new(KIND, &name).arn(role.arn()))
        .await?;
    let mut updated = false;
    if decode(role.assume_role_policy_document().unwrap_or_default()).as_ref() != Some(&trust)
        && ctx.apply(&addr, "trust policy", "edited", "Lambda only")
    {
        iam.update_assume_role_policy()
            .role_name(&name)
            .policy_document(trust.to_string())
            .send()
            .await
            .map_err(aws("UpdateAssumeRolePolicy", &name))?;
        updated = change != Change::Created;
    }
    let want = policy(ctx, key)?;
    let have = match iam
        .get_role_policy()
        .role_name(&name)
        .policy_name(POLICY_NAME)
        .send()
        .await
    {
        Ok(out) => decode(out.policy_document()),
        Err(e) if no_such_entity(&e) => None,
        Err(e) => return Err(aws("GetRolePolicy", &name)(e)),
    };
    if have.as_ref() != Some(&want)
        && ctx.apply(
            &addr,
            &format!("inline policy {POLICY_NAME}"),
            if have.is_some() { "edited" } else { "missing" },
            "least privilege",
        )
    {
        iam.put_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .policy_document(want.to_string())
            .send()
            .await
            .map_err(aws("PutRolePolicy", &name))?;
        updated |= change != Change::Created;
    }
    if updated && change == Change::Unchanged {
        change = Change::Updated;
    }
    ctx.report.note(change, format!("{addr} {name}"));
    Ok(())
}

async fn delete_one(ctx: &Ctx, key: &str) -> Result<()> {
    let iam = &ctx.aws.iam;
    let name = role_name(ctx, key);
    let addr = address(key);
    let found = match iam.get_role().role_name(&name).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            ctx.forget(&addr).await?;
            ctx.report.note(Change::Absent, addr);
            return Ok(());
        }
        Err(e) => return Err(aws("GetRole", &name)(e)),
    };
    check_owned(ctx, &name, found.role())?;
    let inline = iam
        .list_role_policies()
        .role_name(&name)
        .send()
        .await
        .map_err(aws("ListRolePolicies", &name))?;
    for policy in inline.policy_names() {
        match iam
            .delete_role_policy()
            .role_name(&name)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if no_such_entity(&e) => {}
            Err(e) => return Err(aws("DeleteRolePolicy", &name)(e)),
        }
    }
    // payctl attaches none, but a role with attachments cannot be deleted.
    let attached = iam
        .list_attached_role_policies()
        .role_name(&name)
        .send()
        .await
        .map_err(aws("ListAttachedRolePolicies", &name))?;
    for p in attached.attached_policies() {
        if let Some(arn) = p.policy_arn() {
            iam.detach_role_policy()
                .role_name(&name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(aws("DetachRolePolicy", &name))?;
        }
    }
    match iam.delete_role().role_name(&name).send().await {
        Ok(_) => {}
        Err(e) if no_such_entity(&e) => {}
        Err(e) => return Err(aws("DeleteRole", &name)(e)),
    }
    ctx.forget(&addr).await?;
    ctx.report.note(Change::Deleted, format!("{addr} {name}"));
    Ok(())
}

#[async_trait]
impl Resource for Roles {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[
            log_group::KIND,
            dynamodb_table::KIND,
            sqs_queue::KIND,
            s3_bucket::KIND,
            rds_instance::KIND,
            kms_key::KIND,
        ]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let results = join_all(FUNCTIONS.iter().map(|f| ensure_one(ctx, f.key))).await;
        all_ok(results)
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let results = join_all(FUNCTIONS.iter().map(|f| delete_one(ctx, f.key))).await;
        all_ok(results)
    }
}
