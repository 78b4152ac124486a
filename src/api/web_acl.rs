//! The API stage's WAF web ACL `payment-waf-<env>` (regional; FSBP APIGateway.4), in
//! production environments and wherever `waf = true`: three AWS managed rule groups
//! (Amazon IP reputation list, core rule set, known bad inputs), then a rate-based rule
//! that blocks one client IP above `waf_rate_limit` requests in 5 minutes. Every rule
//! and the ACL publish CloudWatch metrics and keep sampled requests; anything no rule
//! blocks is allowed.
//!
//! The rules are put back as a whole (`UpdateWebACL` replaces them) when they differ;
//! the association with the stage is put back when the stage has no web ACL or another
//! one. An environment that turns `waf` off has its web ACL disassociated and deleted
//! by the next `up`. `down` disassociates the stage, then deletes the ACL.
//!
//! WAF takes a lock token with every change and answers `WAFOptimisticLockException`
//! when another writer got in between; and right after a web ACL is created,
//! `AssociateWebACL` may answer `WAFUnavailableEntityException` until WAF has it
//! everywhere ("you might just need to wait a few minutes",
//! <https://docs.aws.amazon.com/waf/latest/APIReference/API_AssociateWebACL.html>). Both
//! are retried, bounded.

use super::stage;
use crate::engine::report::Change;
use crate::engine::tags::{self, converge_tags};
use crate::engine::{Ctx, Found, Resource, Service, find, kind};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use crate::waiter::{Wait, retry_while};
use async_trait::async_trait;
use aws_sdk_wafv2::types::{
    AllowAction, BlockAction, DefaultAction, ManagedRuleGroupStatement, NoneAction, OverrideAction,
    RateBasedStatement, RateBasedStatementAggregateKeyType, Rule, RuleAction, Scope, Statement,
    Tag, VisibilityConfig, WebAcl,
};
use std::time::Duration;

pub const KIND: &str = "wafv2_web_acl";
pub const ADDR: &str = "wafv2_web_acl.api";
const SERVICE: Service = Service::Wafv2;
const SCOPE: Scope = Scope::Regional;

/// The AWS managed rule groups, in priority order: (name, metric name).
pub const MANAGED_RULE_GROUPS: [(&str, &str); 3] = [
    ("AWSManagedRulesAmazonIpReputationList", "ip-reputation"),
    ("AWSManagedRulesCommonRuleSet", "common-rule-set"),
    ("AWSManagedRulesKnownBadInputsRuleSet", "known-bad-inputs"),
];
pub const RATE_RULE: &str = "rate-limit-per-ip";

/// How long a change may keep meeting a lock conflict or a web ACL WAF does not have yet.
const SETTLE: Wait = Wait {
    timeout: Duration::from_secs(120),
    first: Duration::from_secs(1),
    max_interval: Duration::from_secs(10),
};

pub struct WebAclOfStage;

pub fn acl_name(ctx: &Ctx) -> String {
    ctx.name("waf")
}

fn visibility(metric: &str) -> Result<VisibilityConfig> {
    let v = VisibilityConfig::builder()
        .sampled_requests_enabled(true)
        .cloud_watch_metrics_enabled(true)
        .metric_name(metric)
        .build();
    v.map_err(build_error)
}

/// The default action: what no rule blocks is allowed.
fn allow_all() -> DefaultAction {
    DefaultAction::builder()
        .allow(AllowAction::builder().build())
        .build()
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("building the web ACL: {e}"))
}

/// The rules payctl wants, in priority order.
fn rules(ctx: &Ctx) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (priority, (group, metric)) in (0..).zip(MANAGED_RULE_GROUPS) {
        let statement = ManagedRuleGroupStatement::builder()
            .vendor_name("AWS")
            .name(group)
            .build()
            .map_err(build_error)?;
        let rule = Rule::builder()
            .name(group)
            .priority(priority)
            .statement(
                Statement::builder()
                    .managed_rule_group_statement(statement)
                    .build(),
            )
            .override_action(
                OverrideAction::builder()
                    .none(NoneAction::builder().build())
                    .build(),
            )
            .visibility_config(visibility(metric)?)
            .build();
        rules.push(rule.map_err(build_error)?);
    }
    let rate = RateBasedStatement::builder()
        .limit(ctx.settings.waf_rate_limit)
        .aggregate_key_type(RateBasedStatementAggregateKeyType::Ip)
        .build()
        .map_err(build_error)?;
    let rule = Rule::builder()
        .name(RATE_RULE)
        .priority(MANAGED_RULE_GROUPS.len() as i32)
        .statement(Statement::builder().rate_based_statement(rate).build())
        .action(
            RuleAction::builder()
                .block(BlockAction::builder().build())
                .build(),
        )
        .visibility_config(visibility(RATE_RULE)?)
        .build();
    rules.push(rule.map_err(build_error)?);
    Ok(rules)
}

/// The rules as `plan` shows them: `name` per managed group, `name (limit/5 min, block)`
/// for a rate rule, by priority.
pub fn rules_text(rules: &[Rule]) -> String {
    let mut rules: Vec<&Rule> = rules.iter().collect();
    rules.sort_by_key(|r| r.priority());
    let text: Vec<String> = rules
        .iter()
        .map(|r| {
            let s = r.statement();
            if let Some(g) = s.and_then(|s| s.managed_rule_group_statement()) {
                let counted = r.override_action().is_some_and(|o| o.count().is_some());
                let mode = if counted { " (count only)" } else { "" };
                format!("{}/{}{mode}", g.vendor_name(), g.name())
            } else if let Some(rate) = s.and_then(|s| s.rate_based_statement()) {
                let blocks = r.action().is_some_and(|a| a.block().is_some());
                let action = if blocks { "block" } else { "no block" };
                format!("{} ({}/5 min per IP, {action})", r.name(), rate.limit())
            } else {
                r.name().to_string()
            }
        })
        .collect();
    text.join(", ")
}

fn default_allows(acl: &WebAcl) -> bool {
    acl.default_action().is_some_and(|a| a.allow().is_some())
}

/// The web ACL, by the name and id in state, else by its name among the region's.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<WebAcl>>> {
    let name = acl_name(ctx);
    let by_id = |id: String| {
        let name = name.clone();
        async move { get(ctx, &name, &id).await }
    };
    let by_name = || async {
        let out = ctx.aws.wafv2.list_web_acls().scope(SCOPE).send().await;
        let out = out.map_err(aws("ListWebACLs", &name))?;
        let summary = out
            .web_acls()
            .iter()
            .find(|a| a.name() == Some(name.as_str()));
        match summary.and_then(|s| s.id()) {
            Some(id) => get(ctx, &name, id).await,
            None => Ok(None),
        }
    };
    find(ctx, ADDR, SERVICE, by_id, by_name).await
}

async fn get(ctx: &Ctx, name: &str, id: &str) -> Result<Option<WebAcl>> {
    let call = ctx.aws.wafv2.get_web_acl().name(name).id(id).scope(SCOPE);
    let out = SERVICE.found(call.send().await.map_err(aws("GetWebACL", name)))?;
    Ok(out.and_then(|o| o.web_acl().cloned()))
}

/// The current lock token of the web ACL `name`/`id`.
async fn lock_token(ctx: &Ctx, name: &str, id: &str) -> Result<String> {
    let call = ctx.aws.wafv2.get_web_acl().name(name).id(id).scope(SCOPE);
    let out = call.send().await.map_err(aws("GetWebACL", name))?;
    required(out.lock_token(), "web ACL lock token")
}

fn lock_conflict(e: &Error) -> bool {
    e.aws_code() == Some("WAFOptimisticLockException")
}

async fn create(ctx: &Ctx, name: &str) -> Result<WebAcl> {
    let tags = ctx.tags().into_iter().map(|(k, v)| {
        let tag = Tag::builder().key(k).value(v);
        tag.build().map_err(build_error)
    });
    let call = ctx.aws.wafv2.create_web_acl().name(name).scope(SCOPE);
    let call = call
        .default_action(allow_all())
        .description(format!("payctl: the API of environment {}", ctx.env))
        .set_rules(Some(rules(ctx)?))
        .visibility_config(visibility(name)?)
        .set_tags(Some(tags.collect::<Result<Vec<_>>>()?));
    let out = call.send().await.map_err(aws("CreateWebACL", name))?;
    let summary = out.summary();
    let id = required(summary.and_then(|s| s.id()), "web ACL id")?;
    let arn = required(summary.and_then(|s| s.arn()), "web ACL ARN")?;
    WebAcl::builder()
        .name(name)
        .id(id)
        .arn(arn)
        .default_action(allow_all())
        .set_rules(Some(rules(ctx)?))
        .visibility_config(visibility(name)?)
        .build()
        .map_err(build_error)
}

/// Runs `change` with the web ACL's current lock token, again with a fresh one while WAF
/// answers that another writer got in between; `what` names it in the logs.
async fn with_lock_token<F, Fut>(
    ctx: &Ctx,
    what: &str,
    name: &str,
    id: &str,
    change: F,
) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    retry_while(what, SETTLE, lock_conflict, || async {
        change(lock_token(ctx, name, id).await?).await
    })
    .await
}

/// Puts payctl's rules and default action back (one `UpdateWebACL`).
async fn update(ctx: &Ctx, name: &str, id: &str) -> Result<()> {
    let what = format!("updating web ACL {name}");
    with_lock_token(ctx, &what, name, id, |token| async move {
        let call = ctx
            .aws
            .wafv2
            .update_web_acl()
            .name(name)
            .id(id)
            .scope(SCOPE);
        let call = call
            .lock_token(token)
            .default_action(allow_all())
            .set_rules(Some(rules(ctx)?))
            .visibility_config(visibility(name)?);
        call.send()
            .await
            .map_err(aws("UpdateWebACL", name))
            .map(drop)
    })
    .await
}

/// The web ACL associated with `resource`, if any.
async fn acl_of(ctx: &Ctx, resource: &str) -> Result<Option<String>> {
    let call = ctx
        .aws
        .wafv2
        .get_web_acl_for_resource()
        .resource_arn(resource);
    let out = SERVICE.found(
        call.send()
            .await
            .map_err(aws("GetWebACLForResource", resource)),
    )?;
    Ok(out.and_then(|o| o.web_acl().map(|a| a.arn().to_string())))
}

async fn associate(ctx: &Ctx, acl: &str, stage: &str) -> Result<()> {
    let unavailable = |e: &Error| e.aws_code() == Some("WAFUnavailableEntityException");
    retry_while(
        &format!("associating {acl} with {stage}"),
        SETTLE,
        unavailable,
        || async {
            let call = ctx.aws.wafv2.associate_web_acl().web_acl_arn(acl);
            let out = call.resource_arn(stage).send().await;
            out.map_err(aws("AssociateWebACL", stage)).map(drop)
        },
    )
    .await
}

async fn disassociate(ctx: &Ctx, acl: &str, stage: &str) -> Result<()> {
    if acl_of(ctx, stage).await?.as_deref() != Some(acl) {
        return Ok(());
    }
    let call = ctx.aws.wafv2.disassociate_web_acl().resource_arn(stage);
    let out = call.send().await.map_err(aws("DisassociateWebACL", stage));
    SERVICE.found(out).map(drop)
}

/// Disassociates the stage (when it has this ACL), then deletes the ACL.
async fn remove(ctx: &Ctx, acl: &WebAcl) -> Result<()> {
    let (name, id, arn) = (acl.name(), acl.id(), acl.arn());
    if let Some(stage) = ctx.state.get(stage::ADDR).and_then(|r| r.arn) {
        disassociate(ctx, arn, &stage).await?;
    }
    let what = format!("deleting web ACL {name}");
    let delete = || {
        with_lock_token(ctx, &what, name, id, |token| async move {
            let call = ctx
                .aws
                .wafv2
                .delete_web_acl()
                .name(name)
                .id(id)
                .scope(SCOPE);
            let out = call.lock_token(token).send().await;
            out.map_err(aws("DeleteWebACL", name)).map(drop)
        })
    };
    ctx.delete_and_forget(ADDR, arn, SERVICE, delete).await
}

fn record(acl: &WebAcl, stage: &str) -> Record {
    Record::new(KIND, acl.id())
        .arn(acl.arn())
        .attr("name", acl.name())
        .attr("stage", stage)
}

#[async_trait]
impl Resource for WebAclOfStage {
    kind!(KIND, depends_on = [stage::KIND]);

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let found = lookup(ctx).await?;
        if !ctx.settings.waf {
            // Turned off for this environment: payctl's own web ACL goes.
            let Some(found) = found else {
                if ctx.state.get(ADDR).is_some() {
                    ctx.forget(ADDR).await?;
                }
                return Ok(());
            };
            let target = tags::Wafv2(found.value.arn());
            tags::ensure_owned(ctx, &target).await?;
            if ctx.apply_delete(format!("{ADDR} {} (waf is off)", found.value.name())) {
                remove(ctx, &found.value).await?;
            }
            return Ok(());
        }
        let name = acl_name(ctx);
        let stage_arn = ctx.needed_arn(stage::ADDR)?;
        let want = rules_text(&rules(ctx)?);
        let (acl, change) = match found {
            Some(found) => {
                let retagged =
                    converge_tags(ctx, ADDR, &tags::Wafv2(found.value.arn()), None).await?;
                let acl = found.value.clone();
                let have = if default_allows(&acl) {
                    rules_text(acl.rules())
                } else {
                    format!("{} (default block)", rules_text(acl.rules()))
                };
                let updated = ctx
                    .converge(ADDR, "rules", have, want.clone(), || {
                        update(ctx, acl.name(), acl.id())
                    })
                    .await?;
                (acl, found.change().updated_if(retagged || updated))
            }
            None => {
                if !ctx.would_create(format!("{ADDR} {name} ({want})")) {
                    return Ok(());
                }
                (create(ctx, &name).await?, Change::Created)
            }
        };
        ctx.record(ADDR, record(&acl, &stage_arn)).await?;
        let have = acl_of(ctx, &stage_arn).await?;
        let associated = ctx
            .converge(
                ADDR,
                "protects stage",
                have.as_deref().unwrap_or("no web ACL"),
                acl.arn(),
                || associate(ctx, acl.arn(), &stage_arn),
            )
            .await?;
        let change = change.updated_if(associated);
        ctx.report
            .note(change, format!("{ADDR} {} on {stage_arn}", acl.name()));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let Some(found) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        tags::ensure_owned(ctx, &tags::Wafv2(found.value.arn())).await?;
        remove(ctx, &found.value).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::walk::test_ctx;
    use aws_sdk_wafv2::types::CountAction;

    #[tokio::test]
    async fn the_rules_are_the_three_managed_groups_then_the_rate_rule() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = std::sync::Arc::into_inner(test_ctx(dir.path()).await).unwrap();
        ctx.settings.waf_rate_limit = 1234;
        let rules = rules(&ctx).unwrap();
        assert_eq!(
            rules_text(&rules),
            "AWS/AWSManagedRulesAmazonIpReputationList, AWS/AWSManagedRulesCommonRuleSet, \
             AWS/AWSManagedRulesKnownBadInputsRuleSet, rate-limit-per-ip (1234/5 min per IP, block)"
        );
        let priorities: Vec<i32> = rules.iter().map(Rule::priority).collect();
        assert_eq!(priorities, [0, 1, 2, 3]);
        assert!(rules.iter().all(|r| {
            r.visibility_config()
                .is_some_and(|v| v.cloud_watch_metrics_enabled() && v.sampled_requests_enabled())
        }));
        // A managed group switched to count-only shows as such, so `plan` sees the drift.
        let mut counted = rules.clone();
        counted[1].override_action = Some(
            OverrideAction::builder()
                .count(CountAction::builder().build())
                .build(),
        );
        assert!(rules_text(&counted).contains("AWSManagedRulesCommonRuleSet (count only)"));
    }
}
