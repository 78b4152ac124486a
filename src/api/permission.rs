//! The functions' resource policies: one `lambda:InvokeFunction` statement for
//! `apigateway.amazonaws.com` per API method, scoped to that method's exact ARN
//! `arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/<METHOD>/<path>` (no
//! wildcards: another stage, method or API of the account cannot invoke the function).
//!
//! The statements are on the alias `live` (its own policy, `Qualifier=live`), which is
//! what API Gateway invokes; statements a stack made before it had aliases, on the
//! unqualified function, are removed.
//!
//! Statements are payctl's by their id (`payctl-apigw-<method>-<path>`): `up` reads the
//! policy (GetPolicy) and adds a statement only when it is missing or says something else
//! (then it is removed and added again), and removes payctl statements the API no longer
//! has; `down` removes them. Lambda policies carry no tags; the function itself is
//! payctl's (the compute layer checked its tags).

use super::support::definition::{ROUTES, Route};
use super::{api_id, partition, stage_name};
use crate::aws::emulator;
use crate::compute::alias::ALIAS;
use crate::compute::{self, function_name};
use crate::engine::report::Change;
use crate::engine::{Ctx, Found, Resource, Service, Via, kind};
use crate::error::{Result, aws};
use crate::state::Record;
use async_trait::async_trait;
use serde_json::Value;

pub const KIND: &str = "lambda_permission";
pub const SID_PREFIX: &str = "payctl-apigw-";
pub const PRINCIPAL: &str = "apigateway.amazonaws.com";
pub const ACTION: &str = "lambda:InvokeFunction";
const SERVICE: Service = Service::Lambda;

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

/// The policy statements of the function, or of its alias `qualifier`; none when it has
/// no policy (or no function).
async fn read_policy(ctx: &Ctx, function: &str, qualifier: Option<&str>) -> Result<Vec<Value>> {
    let call = ctx.aws.lambda.get_policy().function_name(function);
    let out = call
        .set_qualifier(qualifier.map(str::to_string))
        .send()
        .await;
    let out = SERVICE.found(out.map_err(aws("GetPolicy", function)))?;
    Ok(out.map_or_else(Vec::new, |o| statements(o.policy().unwrap_or_default())))
}

/// Removes one statement (NotFound is an error for the caller to judge).
async fn remove(ctx: &Ctx, function: &str, qualifier: Option<&str>, sid: &str) -> Result<()> {
    let call = ctx.aws.lambda.remove_permission().function_name(function);
    let call = call.set_qualifier(qualifier.map(str::to_string));
    let out = call.statement_id(sid).send().await;
    out.map_err(aws("RemovePermission", format!("{function} {sid}")))?;
    Ok(())
}

/// Adds the statement for one method, on the alias `live`.
async fn add(ctx: &Ctx, function: &str, sid: &str, source: &str) -> Result<()> {
    let call = ctx.aws.lambda.add_permission().function_name(function);
    let out = call
        .qualifier(ALIAS)
        .statement_id(sid)
        .action(ACTION)
        .principal(PRINCIPAL)
        .source_arn(source)
        .send()
        .await;
    out.map_err(aws("AddPermission", format!("{function} {sid}")))?;
    Ok(())
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

/// One method's statement in `have` (the function's policy), found by its id; `via`
/// the state when payctl recorded it, else adopted.
fn lookup<'a>(ctx: &Ctx, have: &'a [Value], route: &Route) -> Option<Found<&'a Value>> {
    let sid = statement_id(route);
    let stmt = have.iter().find(|s| sid_of(s) == Some(sid.as_str()))?;
    let via = match ctx.state.get(&address(route)) {
        Some(_) => Via::State,
        None => Via::Tags,
    };
    Some(Found::new(stmt, via))
}

/// One method's statement: added when missing, replaced when it says something else.
async fn ensure_route(ctx: &Ctx, have: &[Value], route: &Route, api: &str) -> Result<()> {
    let function = function_name(ctx, route.function);
    let function_arn = compute::live_arn(ctx, route.function)?;
    let sid = statement_id(route);
    let addr = address(route);
    let source = source_arn(&ctx.region, &ctx.account_id, api, &stage_name(ctx), route);
    let note = format!("{addr} {function} {source}");
    let change = match lookup(ctx, have, route) {
        Some(found) if statement_matches(found.value, &sid, &function_arn, &source) => {
            found.change()
        }
        Some(_) => {
            let want = format!("invoke from {source}");
            if !ctx.apply(&addr, "statement", "differs", want) {
                ctx.report.note(Change::Updated, note);
                return Ok(());
            }
            remove(ctx, &function, Some(ALIAS), &sid).await?;
            add(ctx, &function, &sid, &source).await?;
            Change::Updated
        }
        None if !ctx.would_create(note.clone()) => return Ok(()),
        None => {
            add(ctx, &function, &sid, &source).await?;
            Change::Created
        }
    };
    let rec = Record::new(KIND, &sid)
        .attr("function", &function)
        .attr("source_arn", &source);
    ctx.record(&addr, rec).await?;
    ctx.report.note(change, note);
    Ok(())
}

/// payctl's statements (by their id prefix) that no route of the API has.
fn stale<'a>(have: &'a [Value], key: &str) -> Vec<&'a str> {
    let sids = have.iter().filter_map(sid_of);
    let ours = sids.filter(|sid| sid.starts_with(SID_PREFIX));
    let routed = |sid: &str| {
        ROUTES
            .iter()
            .any(|r| r.function == key && statement_id(r) == sid)
    };
    ours.filter(|sid| !routed(sid)).collect()
}

/// Removes a statement no route has any more, or one on the unqualified function
/// (`qualifier` None), where payctl no longer puts them (on `plan`: notes it).
async fn remove_stale(ctx: &Ctx, function: &str, qualifier: Option<&str>, sid: &str) -> Result<()> {
    let what = format!("{KIND} {function} {sid} (stale)");
    if ctx.apply_delete(what.clone()) {
        SERVICE.found(remove(ctx, function, qualifier, sid).await)?;
        ctx.report.note(Change::Deleted, what);
    }
    Ok(())
}

/// payctl's statements on the unqualified function (made before the stack had aliases).
fn unqualified(have: &[Value], alias_arn: &str) -> Vec<String> {
    let ours = have.iter().filter(|s| {
        sid_of(s).is_some_and(|sid| sid.starts_with(SID_PREFIX))
            && !emulator::on_alias(s.get("Resource"), alias_arn)
    });
    ours.filter_map(|s| sid_of(s).map(str::to_string)).collect()
}

async fn ensure_function(ctx: &Ctx, key: &str, api: &str) -> Result<()> {
    let function = function_name(ctx, key);
    let alias_arn = compute::live_arn(ctx, key)?;
    for sid in unqualified(&read_policy(ctx, &function, None).await?, &alias_arn) {
        remove_stale(ctx, &function, None, &sid).await?;
    }
    let have = read_policy(ctx, &function, Some(ALIAS)).await?;
    for route in ROUTES.iter().filter(|r| r.function == key) {
        ensure_route(ctx, &have, route, api).await?;
    }
    for sid in stale(&have, key) {
        remove_stale(ctx, &function, Some(ALIAS), sid).await?;
    }
    Ok(())
}

async fn delete_function(ctx: &Ctx, key: &str) -> Result<()> {
    let function = function_name(ctx, key);
    let have = read_policy(ctx, &function, Some(ALIAS)).await?;
    for route in ROUTES.iter().filter(|r| r.function == key) {
        let addr = address(route);
        if lookup(ctx, &have, route).is_none() {
            ctx.forget_gone(&addr).await?;
            continue;
        }
        let sid = statement_id(route);
        let delete = async || remove(ctx, &function, Some(ALIAS), &sid).await;
        let id = format!("{function} {sid}");
        ctx.delete_and_forget(&addr, &id, SERVICE, delete).await?;
    }
    for sid in stale(&have, key) {
        SERVICE.found(remove(ctx, &function, Some(ALIAS), sid).await)?;
        ctx.report
            .note(Change::Deleted, format!("{KIND} {function} {sid}"));
    }
    Ok(())
}

#[async_trait]
impl Resource for Permissions {
    kind!(
        KIND,
        depends_on = [compute::alias::KIND, super::rest_api::KIND]
    );

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
