//! The usage plan `payment-usage-plan-<env>`: the API's stage, a throttle (rate and burst)
//! and a daily quota from the settings, and the API key. Changed settings and stray
//! stages are put back with patch operations; the key is added when it is missing.
//!
//! `down` first removes the plan's keys and stages (AWS refuses to delete a plan that
//! still has API stages), then the plan.

use super::{api_id, owned, patch, rate_text, replace, same_rate, stage_name, tag_map};
use crate::engine::report::Change;
use crate::engine::{Ctx, Resource};
use crate::error::{Error, Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_apigateway::types::{
    ApiStage, Op, PatchOperation, QuotaPeriodType, QuotaSettings, ThrottleSettings,
};

pub const KIND: &str = "apigw_usage_plan";
pub const ADDR: &str = "apigw_usage_plan.main";
pub const KEY_TYPE: &str = "API_KEY";

pub struct UsagePlan;

pub fn plan_name(ctx: &Ctx) -> String {
    ctx.name("usage-plan")
}

/// The plan's settings payctl wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub api_id: String,
    pub stage: String,
    pub rate: f64,
    pub burst: i32,
    pub daily_quota: i32,
}

/// `<api-id>:<stage>`, how patch operations name an API stage.
fn stage_ref(api: &str, stage: &str) -> String {
    format!("{api}:{stage}")
}

/// The patches that bring a plan to `want`: exactly one API stage (ours), the throttle
/// and the daily quota.
pub fn plan_patches(
    plan: &aws_sdk_apigateway::types::UsagePlan,
    want: &Want,
) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let mut has_ours = false;
    for s in plan.api_stages() {
        let (api, stage) = (
            s.api_id().unwrap_or_default(),
            s.stage().unwrap_or_default(),
        );
        if api == want.api_id && stage == want.stage {
            has_ours = true;
        } else {
            ops.push(patch(Op::Remove, "/apiStages", Some(stage_ref(api, stage))));
        }
    }
    if !has_ours {
        ops.push(patch(
            Op::Add,
            "/apiStages",
            Some(stage_ref(&want.api_id, &want.stage)),
        ));
    }
    let t = plan.throttle();
    if !t.is_some_and(|t| same_rate(t.rate_limit(), want.rate)) {
        ops.push(replace("/throttle/rateLimit", rate_text(want.rate)));
    }
    if t.map(|t| t.burst_limit()) != Some(want.burst) {
        ops.push(replace("/throttle/burstLimit", want.burst.to_string()));
    }
    let q = plan.quota();
    if q.map(|q| q.limit()) != Some(want.daily_quota) {
        ops.push(replace("/quota/limit", want.daily_quota.to_string()));
    }
    if q.and_then(|q| q.period()) != Some(&QuotaPeriodType::Day) {
        ops.push(replace("/quota/period", QuotaPeriodType::Day.as_str()));
    }
    if q.is_some_and(|q| q.offset() != 0) {
        ops.push(replace("/quota/offset", "0"));
    }
    ops
}

/// What `path` of a patch holds now in `plan`, for `plan`'s `old → new`.
fn current_value(plan: &aws_sdk_apigateway::types::UsagePlan, path: &str) -> String {
    let (t, q) = (plan.throttle(), plan.quota());
    let value = match path {
        "/throttle/rateLimit" => t.map(|t| rate_text(t.rate_limit())),
        "/throttle/burstLimit" => t.map(|t| t.burst_limit().to_string()),
        "/quota/limit" => q.map(|q| q.limit().to_string()),
        "/quota/period" => q.and_then(|q| q.period()).map(|p| p.as_str().to_string()),
        "/quota/offset" => q.map(|q| q.offset().to_string()),
        _ => None,
    };
    value.unwrap_or_else(|| "unset".into())
}

/// Finds the plan by the id in state, then by name; refuses what payctl does not own.
async fn find(ctx: &Ctx) -> Result<Option<aws_sdk_apigateway::types::UsagePlan>> {
    let apigw = &ctx.aws.apigateway;
    let name = plan_name(ctx);
    if let Some(id) = ctx.state.id(ADDR) {
        match apigw.get_usage_plan().usage_plan_id(&id).send().await {
            Ok(out) => {
                if !owned(ctx, out.tags()) {
                    return Err(Error::not_owned(
                        format!("usage plan {id} ({name})"),
                        &ctx.env,
                    ));
                }
                let plan = aws_sdk_apigateway::types::UsagePlan::builder()
                    .set_id(out.id().map(str::to_string))
                    .set_name(out.name().map(str::to_string))
                    .set_api_stages(Some(out.api_stages().to_vec()))
                    .set_throttle(out.throttle().cloned())
                    .set_quota(out.quota().cloned())
                    .set_tags(out.tags().cloned())
                    .build();
                return Ok(Some(plan));
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("GetUsagePlan", &id)(e)),
        }
    }
    let plans: Vec<aws_sdk_apigateway::types::UsagePlan> = apigw
        .get_usage_plans()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("GetUsagePlans", &name))?;
    let (mine, others): (Vec<_>, Vec<_>) = plans
        .into_iter()
        .filter(|p| p.name() == Some(name.as_str()))
        .partition(|p| owned(ctx, p.tags()));
    match (mine.len(), others.first()) {
        (1, _) => Ok(mine.into_iter().next()),
        (0, Some(other)) => Err(Error::not_owned(
            format!("usage plan {} ({name})", other.id().unwrap_or_default()),
            &ctx.env,
        )),
        (0, None) => Ok(None),
        (n, _) => Err(Error::Invalid(format!(
            "{n} usage plans named {name} carry payctl's tags for environment {}: delete the extra ones, then run `payctl up` again",
            ctx.env
        ))),
    }
}

/// The ids of the keys in a plan (the listing also holds their values: only ids leave).
async fn key_ids(ctx: &Ctx, plan: &str) -> Result<Vec<String>> {
    let keys: Vec<aws_sdk_apigateway::types::UsagePlanKey> = ctx
        .aws
        .apigateway
        .get_usage_plan_keys()
        .usage_plan_id(plan)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(aws("GetUsagePlanKeys", plan))?;
    Ok(keys
        .iter()
        .filter_map(|k| k.id().map(str::to_string))
        .collect())
}

fn want(ctx: &Ctx) -> Result<Want> {
    Ok(Want {
        api_id: api_id(ctx)?,
        stage: stage_name(ctx),
        rate: ctx.settings.api.rate_limit,
        burst: ctx.settings.api.burst_limit,
        daily_quota: ctx.settings.api.daily_quota,
    })
}

#[async_trait]
impl Resource for UsagePlan {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &[super::stage::KIND, super::api_key::KIND]
    }

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let apigw = &ctx.aws.apigateway;
        let name = plan_name(ctx);
        let want = want(ctx)?;
        let key_id = ctx.state.id(super::api_key::ADDR).ok_or_else(|| {
            Error::Invalid(format!(
                "the API key is not in the state file ({}); run `payctl up` again",
                super::api_key::ADDR
            ))
        })?;
        let (plan_id, mut change) = match find(ctx).await? {
            Some(plan) => {
                let id = required(plan.id(), "usage plan id")?;
                let known = ctx.state.id(ADDR).as_deref() == Some(id.as_str());
                ctx.record(ADDR, Record::new(KIND, &id).attr("name", &name))
                    .await?;
                let mut change = if known {
                    Change::Unchanged
                } else {
                    Change::Adopted
                };
                let ops = plan_patches(&plan, &want);
                if ctx.planning() {
                    for op in &ops {
                        let path = op.path().unwrap_or("?");
                        let new = op.value().unwrap_or("(removed)");
                        ctx.apply(ADDR, path, current_value(&plan, path), new);
                    }
                } else if !ops.is_empty() {
                    let paths: Vec<&str> = ops.iter().filter_map(|o| o.path()).collect();
                    tracing::info!("usage plan {name}: setting {}", paths.join(", "));
                    apigw
                        .update_usage_plan()
                        .usage_plan_id(&id)
                        .set_patch_operations(Some(ops))
                        .send()
                        .await
                        .map_err(aws("UpdateUsagePlan", &name))?;
                    if change == Change::Unchanged {
                        change = Change::Updated;
                    }
                }
                (id, change)
            }
            None if !ctx.would_create(format!("{ADDR} ({name})")) => return Ok(()),
            None => {
                let out = apigw
                    .create_usage_plan()
                    .name(&name)
                    .description(format!("Payment API clients ({})", ctx.env))
                    .api_stages(
                        ApiStage::builder()
                            .api_id(&want.api_id)
                            .stage(&want.stage)
                            .build(),
                    )
                    .throttle(
                        ThrottleSettings::builder()
                            .rate_limit(want.rate)
                            .burst_limit(want.burst)
                            .build(),
                    )
                    .quota(
                        QuotaSettings::builder()
                            .limit(want.daily_quota)
                            .offset(0)
                            .period(QuotaPeriodType::Day)
                            .build(),
                    )
                    .set_tags(Some(tag_map(ctx)))
                    .send()
                    .await
                    .map_err(aws("CreateUsagePlan", &name))?;
                let id = required(out.id(), "usage plan id")?;
                ctx.record(ADDR, Record::new(KIND, &id).attr("name", &name))
                    .await?;
                (id, Change::Created)
            }
        };
        if !key_ids(ctx, &plan_id).await?.contains(&key_id)
            && ctx.apply(ADDR, "API key", "not attached", &key_id)
        {
            apigw
                .create_usage_plan_key()
                .usage_plan_id(&plan_id)
                .key_id(&key_id)
                .key_type(KEY_TYPE)
                .send()
                .await
                .map_err(aws("CreateUsagePlanKey", format!("{name} {key_id}")))?;
            if change == Change::Unchanged {
                change = Change::Updated;
            }
        }
        ctx.record(
            ADDR,
            Record::new(KIND, &plan_id)
                .attr("name", &name)
                .attr("key_id", &key_id),
        )
        .await?;
        ctx.report
            .note(change, format!("{ADDR} {plan_id} ({name})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let apigw = &ctx.aws.apigateway;
        let name = plan_name(ctx);
        let Some(plan) = find(ctx).await? else {
            ctx.forget(ADDR).await?;
            ctx.report.note(Change::Absent, ADDR);
            return Ok(());
        };
        let id = required(plan.id(), "usage plan id")?;
        for key in key_ids(ctx, &id).await? {
            match apigw
                .delete_usage_plan_key()
                .usage_plan_id(&id)
                .key_id(&key)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_not_found_exception()) => {}
                Err(e) => return Err(aws("DeleteUsagePlanKey", format!("{name} {key}"))(e)),
            }
        }
        let detach: Vec<PatchOperation> = plan
            .api_stages()
            .iter()
            .map(|s| {
                patch(
                    Op::Remove,
                    "/apiStages",
                    Some(stage_ref(
                        s.api_id().unwrap_or_default(),
                        s.stage().unwrap_or_default(),
                    )),
                )
            })
            .collect();
        if !detach.is_empty() {
            match apigw
                .update_usage_plan()
                .usage_plan_id(&id)
                .set_patch_operations(Some(detach))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_not_found_exception()) => {}
                Err(e) => return Err(aws("UpdateUsagePlan", &name)(e)),
            }
        }
        match apigw.delete_usage_plan().usage_plan_id(&id).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) => {}
            Err(e) => return Err(aws("DeleteUsagePlan", &name)(e)),
        }
        ctx.forget(ADDR).await?;
        ctx.report
            .note(Change::Deleted, format!("{ADDR} {id} ({name})"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> Want {
        Want {
            api_id: "abc123".into(),
            stage: "dev".into(),
            rate: 50.0,
            burst: 100,
            daily_quota: 10_000,
        }
    }

    fn plan(
        stages: &[(&str, &str)],
        rate: f64,
        burst: i32,
        quota: i32,
    ) -> aws_sdk_apigateway::types::UsagePlan {
        aws_sdk_apigateway::types::UsagePlan::builder()
            .set_api_stages(Some(
                stages
                    .iter()
                    .map(|(a, s)| ApiStage::builder().api_id(*a).stage(*s).build())
                    .collect(),
            ))
            .throttle(
                ThrottleSettings::builder()
                    .rate_limit(rate)
                    .burst_limit(burst)
                    .build(),
            )
            .quota(
                QuotaSettings::builder()
                    .limit(quota)
                    .offset(0)
                    .period(QuotaPeriodType::Day)
                    .build(),
            )
            .build()
    }

    fn ops(ops: &[PatchOperation]) -> Vec<(String, String, String)> {
        ops.iter()
            .map(|o| {
                (
                    o.op().map(|o| o.as_str().to_string()).unwrap_or_default(),
                    o.path().unwrap_or_default().to_string(),
                    o.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_matching_plan_needs_no_patch() {
        assert!(plan_patches(&plan(&[("abc123", "dev")], 50.0, 100, 10_000), &want()).is_empty());
    }

    #[test]
    fn drifted_plans_are_patched() {
        let p = plan(&[("old999", "dev")], 10.0, 100, 5);
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            ops(&plan_patches(&p, &want())),
            [
                s("remove", "/apiStages", "old999:dev"),
                s("add", "/apiStages", "abc123:dev"),
                s("replace", "/throttle/rateLimit", "50"),
                s("replace", "/quota/limit", "10000"),
            ]
        );
        let bare = aws_sdk_apigateway::types::UsagePlan::builder().build();
        assert_eq!(
            ops(&plan_patches(&bare, &want())),
            [
                s("add", "/apiStages", "abc123:dev"),
                s("replace", "/throttle/rateLimit", "50"),
                s("replace", "/throttle/burstLimit", "100"),
                s("replace", "/quota/limit", "10000"),
                s("replace", "/quota/period", "DAY"),
            ]
        );
    }
}
