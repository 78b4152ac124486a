//! The functions' resource policies: one `lambda:InvokeFunction` statement for
//! `apigateway.amazonaws.com` per API method, scoped to that method's exact ARN
//! `arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<METHOD>/<path>` (no
//! wildcards: another stage, method or API of the account cannot invoke the function).
//!
//! Statements are payctl's by their id (`payctl-apigw-<method>-<path>`): `up` reads the
//! policy (GetPolicy) and adds a statement only when it is missing or says something else
//! (then it is removed and added again), and removes payctl statements the API no longer
//! has; `down` removes them. Lambda policies carry no tags; the function itself is
//! payctl's (the compute layer checked its tags).

use super::definition::{ROUTES, Route};
use super::{api_id, partition, stage_name};
use crate::compute::{self, function_name};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Result, aws};
use crate::state::Record;
use async_trait::async_trait;
use serde_json::Value;

pub const KIND: &str = "lambda_permission";
pub const SID_PREFIX: &str = "payctl-apigw-";
pub const PRINCIPAL: &str = "apigateway.amazonaws.com";
pub const ACTION: &str = "lambda:InvokeFunction";

pub struct Permissions;

/// `payctl-apigw-post-validate`.
pub fn statement_id(route: &Route) -> String {
    format!(
        "{SID_PREFIX}{}-{}",
        route.method.to_ascii_lowercase(),
        route.path
    )
}

/// `lambda_permission.post-validate`.
pub fn address(route: &Route) -> String {
    format!(
        "{KIND}.{}-{}",
        route.method.to_ascii_lowercase(),
        route.path
    )
}

/// `arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<METHOD>/<path>`.
pub fn source_arn(region: &str, account: &str, api_id: &str, stage: &str, route: &Route) -> String {
    format!(
        "arn:{}:execute-api:{region}:{account}:{api_id}/{stage}/{}/{}",
        partition(region),
        route.method,
        route.path
    )
}

/// The statements of a function policy document.
pub fn statements(policy: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(policy) {
        Ok(Value::Object(doc)) => match doc.get("Statement") {
            Some(Value::Array(s)) => s.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// A string, or an array holding exactly that one string.
fn is_only(v: Option<&Value>, want: &str) -> bool {
    match v {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(want),
        _ => false,
    }
}

/// Whether a policy statement grants exactly what payctl wants for one method.
pub fn statement_matches(stmt: &Value, sid: &str, function_arn: &str, source: &str) -> bool {
    let condition_ok = match stmt.get("Condition").and_then(Value::as_object) {
        Some(c) if c.len() == 1 => c
            .get("ArnLike")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.len() == 1
                    && m.iter().all(|(k, v)| {
                        k.eq_ignore_ascii_case("AWS:SourceArn") && is_only(Some(v), source)
                    })
            }),
        _ => false,
    };
    stmt.get("Sid").and_then(Value::as_str) == Some(sid)
        && stmt.get("Effect").and_then(Value::as_str) == Some("Allow")
        && is_only(stmt.get("Action"), ACTION)
        && is_only(
            stmt.get("Principal").and_then(|p| p.get("Service")),
            PRINCIPAL,
        )
        && is_only(stmt.get("Resource"), function_arn)
        && condition_ok
}

/// The function's policy statements; none when it has no policy.
async fn read_policy(ctx: &Ctx, function: &str) -> Result<Vec<Value>> {
    match ctx
        .aws
        .lambda
        .get_policy()
        .function_name(function)
        .send()
        .await
    {
        Ok(out) => Ok(statements(out.policy().unwrap_or_default())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(aws("GetPolicy", function)(e)),
    }
}

/// Removes one statement; NotFound means it is gone already.
async fn remove(ctx: &Ctx, function: &str, sid: &str) -> Result<()> {
    match ctx
        .aws
        .lambda
        .remove_permission()
        .function_name(function)
        .statement_id(sid)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(aws("RemovePermission", format!("{function} {sid}"))(e)),
    }
}

fn sid_of(stmt: &Value) -> Option<&str> {
    stmt.get("Sid").and_then(Value::as_str)
}

/// The function keys behind the API, each once.
fn function_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = ROUTES.iter().map(|r| r.function).collect();
    keys.dedup();
    keys.sort_unstable();
    keys.dedup();
    keys
}

async fn ensure_function(ctx: &Ctx, key: &str, api: &str) -> Result<()> {
    let function = function_name(ctx, key);
    let function_arn = compute::function_arn(ctx, key)?;
    let have = read_policy(ctx, &function).await?;
    let routes: Vec<&Route> = ROUTES.iter().filter(|r| r.function == key).collect();
    for route in &routes {
        let sid = statement_id(route);
        let addr = address(route);
        let source = source_arn(&ctx.region, &ctx.account_id, api, &stage_name(ctx), route);
        let existing = have.iter().find(|s| sid_of(s) == Some(sid.as_str()));
        let change = match existing {
            Some(s) if statement_matches(s, &sid, &function_arn, &source) => {
                if ctx.state.get(&addr).is_some() {
                    Change::Unchanged
                } else {
                    Change::Adopted
                }
            }
            Some(_) if ctx.planning() => {
                ctx.apply(
                    &addr,
                    "statement",
                    "differs",
                    format!("invoke from {source}"),
                );
                ctx.report
                    .note(Change::Updated, format!("{addr} {function} {source}"));
                continue;
            }
            None if !ctx.would_create(format!("{addr} {function} {source}")) => continue,
            other => {
                if other.is_some() {
                    remove(ctx, &function, &sid).await?;
                }
                ctx.aws
                    .lambda
                    .add_permission()
                    .function_name(&function)
                    .statement_id(&sid)
                    .action(ACTION)
                    .principal(PRINCIPAL)
                    .source_arn(&source)
                    .send()
                    .await
                    .map_err(aws("AddPermission", format!("{function} {sid}")))?;
                if other.is_some() {
                    Change::Updated
                } else {
                    Change::Created
                }
            }
        };
        ctx.record(
            &addr,
            Record::new(KIND, &sid)
                .attr("function", &function)
                .attr("source_arn", &source),
        )
        .await?;
        ctx.report
            .note(change, format!("{addr} {function} {source}"));
    }
    // payctl statements for methods the API no longer has.
    for stale in have.iter().filter_map(sid_of).filter(|sid| {
        sid.starts_with(SID_PREFIX) && !routes.iter().any(|r| statement_id(r) == *sid)
    }) {
        if !ctx.apply_delete(format!("{KIND} {function} {stale} (stale)")) {
            continue;
        }
        remove(ctx, &function, stale).await?;
        ctx.report.note(
            Change::Deleted,
            format!("{KIND} {function} {stale} (stale)"),
        );
    }
    Ok(())
}

async fn delete_function(ctx: &Ctx, key: &str) -> Result<()> {
    let function = function_name(ctx, key);
    let have = read_policy(ctx, &function).await?;
    for sid in have
        .iter()
        .filter_map(sid_of)
        .filter(|s| s.starts_with(SID_PREFIX))
    {
        remove(ctx, &function, sid).await?;
        ctx.report
            .note(Change::Deleted, format!("{KIND} {function} {sid}"));
    }
    for route in ROUTES.iter().filter(|r| r.function == key) {
        let addr = address(route);
        let was_there = have
            .iter()
            .any(|s| sid_of(s) == Some(statement_id(route).as_str()));
        if !was_there {
            ctx.report.note(Change::Absent, &addr);
        }
        ctx.forget(&addr).await?;
    }
    Ok(())
}

#[async_trait]
impl Resource for Permissions {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[compute::function::KIND, super::rest_api::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let api = api_id(ctx)?;
        for key in function_keys() {
            ensure_function(ctx, key, &api).await?;
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        for key in function_keys() {
            delete_function(ctx, key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const F: &str = "arn:aws:lambda:us-east-1:123456789012:function:payment-validator-dev";

    #[test]
    fn source_arns_name_the_exact_method() {
        let arns: Vec<String> = ROUTES
            .iter()
            .map(|r| source_arn("us-east-1", "123456789012", "abc123", "dev", r))
            .collect();
        assert_eq!(
            arns,
            [
                "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/POST/validate",
                "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/POST/process",
                "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/GET/status",
            ]
        );
        assert!(arns.iter().all(|a| !a.contains('*')));
        let ids: Vec<String> = ROUTES.iter().map(statement_id).collect();
        assert_eq!(
            ids,
            [
                "payctl-apigw-post-validate",
                "payctl-apigw-post-process",
                "payctl-apigw-get-status"
            ]
        );
        assert_eq!(address(&ROUTES[2]), "lambda_permission.get-status");
        assert_eq!(function_keys(), ["processor", "validator"]);
    }

    fn stmt(source: &str) -> Value {
        json!({
            "Sid": "payctl-apigw-post-validate",
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": F,
            "Condition": {"ArnLike": {"AWS:SourceArn": source}}
        })
    }

    #[test]
    fn statement_matching() {
        let src = source_arn("us-east-1", "123456789012", "abc123", "dev", &ROUTES[0]);
        let sid = "payctl-apigw-post-validate";
        assert!(statement_matches(&stmt(&src), sid, F, &src));
        // Array forms are the same grant.
        let mut arrays = stmt(&src);
        arrays["Action"] = json!(["lambda:InvokeFunction"]);
        arrays["Principal"]["Service"] = json!(["apigateway.amazonaws.com"]);
        assert!(statement_matches(&arrays, sid, F, &src));
        // Anything else is different.
        let other_api = source_arn("us-east-1", "123456789012", "zzz999", "dev", &ROUTES[0]);
        assert!(!statement_matches(&stmt(&other_api), sid, F, &src));
        let wildcard = "arn:aws:execute-api:us-east-1:123456789012:abc123/*/*/*";
        assert!(!statement_matches(&stmt(wildcard), sid, F, &src));
        let mut principal = stmt(&src);
        principal["Principal"] = json!({"Service": "s3.amazonaws.com"});
        assert!(!statement_matches(&principal, sid, F, &src));
        let mut action = stmt(&src);
        action["Action"] = json!("lambda:*");
        assert!(!statement_matches(&action, sid, F, &src));
        let mut extra = stmt(&src);
        extra["Condition"]["StringEquals"] = json!({"AWS:SourceAccount": "123456789012"});
        assert!(!statement_matches(&extra, sid, F, &src));
        let mut no_cond = stmt(&src);
        no_cond.as_object_mut().unwrap().remove("Condition");
        assert!(!statement_matches(&no_cond, sid, F, &src));
        let mut deny = stmt(&src);
        deny["Effect"] = json!("Deny");
        assert!(!statement_matches(&deny, sid, F, &src));
        assert!(!statement_matches(&stmt(&src), "other-sid", F, &src));
        assert!(!statement_matches(
            &stmt(&src),
            sid,
            "arn:aws:lambda:us-east-1:1:function:x",
            &src
        ));
    }

    #[test]
    fn policy_documents_parse() {
        let doc = json!({"Version": "2012-10-17", "Statement": [stmt("a"), stmt("b")]}).to_string();
        assert_eq!(statements(&doc).len(), 2);
        let single = json!({"Statement": stmt("a")}).to_string();
        assert_eq!(statements(&single).len(), 1);
        assert!(statements("not json").is_empty());
        assert!(statements("{}").is_empty());
    }
}
