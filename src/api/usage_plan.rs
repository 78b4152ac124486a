//! The usage plan `payment-usage-plan-<env>`: the API's stage, a throttle (rate and burst)
//! and a daily quota from the settings, and the API key. Changed settings and stray
//! stages are put back with patch operations; the key is added when it is missing.
//!
//! `down` first removes the plan's keys and stages (AWS refuses to delete a plan that
//! still has API stages), then the plan.

use super::support::{
    self, Item, SERVICE, Target, all_items, apply_patches, ours_by_name, patch, rate_text, replace,
    same_rate,
};
use super::{api_id, stage_name, tag_map};
use crate::engine::report::Change;
use crate::engine::{Ctx, Found, Resource, find, kind};
use crate::error::{Result, aws, required};
use crate::state::Record;
use async_trait::async_trait;
use aws_sdk_apigateway::types::{
    ApiStage, Op, PatchOperation, QuotaPeriodType, QuotaSettings, ThrottleSettings,
    UsagePlan as Plan,
};
use std::collections::HashMap;

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
pub fn plan_patches(plan: &Plan, want: &Want) -> Vec<PatchOperation> {
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
fn current_value(plan: &Plan, path: &str) -> String {
    let (t, q) = (plan.throttle(), plan.quota());
    let value = match path {
        "/throttle/rateLimit" => t.map(|t| rate_text(t.rate_limit())),
        "/throttle/burstLimit" => t.map(|t| t.burst_limit().to_string()),
        "/quota/limit" => q.map(|q| q.limit().to_string()),
        "/quota/period" => q.and_then(|q| q.period()).map(|p| p.as_str().to_string()),
        "/quota/offset" => q.map(|q| q.offset().to_string()),
        _ => None,
    };
    support::text(value)
}

impl Item for Plan {
    fn item_id(&self) -> &str {
        self.id().unwrap_or_default()
    }
    fn item_tags(&self) -> Option<&HashMap<String, String>> {
        self.tags()
    }
}

fn target(ctx: &Ctx, plan: &Plan) -> Target {
    let id = plan.item_id();
    Target {
        arn: support::arn(ctx, &format!("/usageplans/{id}")),
        what: format!("usage plan {id} ({})", plan_name(ctx)),
    }
}

/// The plan, by the id in state, else by its name among the plans payctl owns.
async fn lookup(ctx: &Ctx) -> Result<Option<Found<Plan>>> {
    let apigw = &ctx.aws.apigateway;
    let name = plan_name(ctx);
    // Owned captures in `by_id`: see `support` on AsyncFn and Send.
    let client = apigw;
    let by_id = move |id: String| async move {
        let id = id.as_str();
        let call = client.get_usage_plan().usage_plan_id(id);
        let out = call.send().await.map_err(aws("GetUsagePlan", id))?;
        let plan = Plan::builder()
            .set_id(out.id().map(str::to_string))
            .set_name(out.name().map(str::to_string))
            .set_api_stages(Some(out.api_stages().to_vec()))
            .set_throttle(out.throttle().cloned())
            .set_quota(out.quota().cloned())
            .set_tags(out.tags().cloned());
        Ok(Some(plan.build()))
    };
    let by_name = || async {
        let plans: Vec<Plan> = all_items!(apigw.get_usage_plans(), "GetUsagePlans", &name)?;
        let named = plans
            .into_iter()
            .filter(|p| p.name() == Some(name.as_str()));
        ours_by_name(ctx, "usage plan", &name, named.collect())
    };
    find(ctx, ADDR, SERVICE, by_id, by_name).await
}

/// The ids of the keys in a plan (the listing also holds their values: only ids leave).
async fn key_ids(ctx: &Ctx, plan: &str) -> Result<Vec<String>> {
    let call = ctx.aws.apigateway.get_usage_plan_keys().usage_plan_id(plan);
    let keys: Vec<aws_sdk_apigateway::types::UsagePlanKey> =
        all_items!(call, "GetUsagePlanKeys", plan)?;
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

async fn create(ctx: &Ctx, name: &str, want: &Want) -> Result<String> {
    let stage = ApiStage::builder().api_id(&want.api_id).stage(&want.stage);
    let throttle = ThrottleSettings::builder()
        .rate_limit(want.rate)
        .burst_limit(want.burst);
    let quota = QuotaSettings::builder()
        .limit(want.daily_quota)
        .offset(0)
        .period(QuotaPeriodType::Day);
    let out = ctx
        .aws
        .apigateway
        .create_usage_plan()
        .name(name)
        .description(format!("Payment API clients ({})", ctx.env))
        .api_stages(stage.build())
        .throttle(throttle.build())
        .quota(quota.build())
        .set_tags(Some(tag_map(ctx)))
        .send()
        .await
        .map_err(aws("CreateUsagePlan", name))?;
    required(out.id(), "usage plan id")
}

/// The stages, throttle and quota of a plan payctl found, put back as patches.
async fn converge_settings(ctx: &Ctx, plan: &Plan, want: &Want) -> Result<bool> {
    let name = plan_name(ctx);
    let id = plan.item_id();
    let changes = plan_patches(plan, want).into_iter().map(|op| {
        let old = current_value(plan, op.path().unwrap_or_default());
        (op, old)
    });
    let send = async |ops: Vec<PatchOperation>| {
        let call = ctx.aws.apigateway.update_usage_plan().usage_plan_id(id);
        let call = call.set_patch_operations(Some(ops));
        call.send().await.map_err(aws("UpdateUsagePlan", &name))?;
        Ok(())
    };
    let what = format!("usage plan {name}");
    apply_patches(ctx, ADDR, &what, changes.collect(), send).await
}

/// The client key in the plan: added when missing. True when it added it.
async fn converge_key(ctx: &Ctx, plan_id: &str, key_id: &str) -> Result<bool> {
    if key_ids(ctx, plan_id).await?.iter().any(|k| k == key_id)
        || !ctx.apply(ADDR, "API key", "not attached", key_id)
    {
        return Ok(false);
    }
    let name = plan_name(ctx);
    let call = ctx.aws.apigateway.create_usage_plan_key();
    let call = call
        .usage_plan_id(plan_id)
        .key_id(key_id)
        .key_type(KEY_TYPE);
    let out = call.send().await;
    out.map_err(aws("CreateUsagePlanKey", format!("{name} {key_id}")))?;
    Ok(true)
}

/// Empties a plan before its deletion (AWS refuses to delete a plan that still has API
/// stages): its keys, then its stages. NotFound is success.
async fn empty(ctx: &Ctx, plan: &Plan) -> Result<()> {
    let (apigw, name, id) = (&ctx.aws.apigateway, plan_name(ctx), plan.item_id());
    for key in key_ids(ctx, id).await? {
        let call = apigw.delete_usage_plan_key().usage_plan_id(id).key_id(&key);
        let out = call.send().await;
        SERVICE.found(out.map_err(aws("DeleteUsagePlanKey", format!("{name} {key}"))))?;
    }
    let detach = plan.api_stages().iter().map(|s| {
        let stage = stage_ref(
            s.api_id().unwrap_or_default(),
            s.stage().unwrap_or_default(),
        );
        patch(Op::Remove, "/apiStages", Some(stage))
    });
    let detach: Vec<PatchOperation> = detach.collect();
    if !detach.is_empty() {
        let call = apigw.update_usage_plan().usage_plan_id(id);
        let out = call.set_patch_operations(Some(detach)).send().await;
        SERVICE.found(out.map_err(aws("UpdateUsagePlan", &name)))?;
    }
    Ok(())
}

#[async_trait]
impl Resource for UsagePlan {
    kind!(
        KIND,
        depends_on = [super::stage::KIND, super::api_key::KIND]
    );

    async fn ensure(&self, ctx: &Ctx) -> Result<()> {
        let name = plan_name(ctx);
        let want = want(ctx)?;
        let key_id = ctx.needed_id(super::api_key::ADDR)?;
        let record = |id: &str| Record::new(KIND, id).attr("name", &name);
        let (plan_id, change) = match lookup(ctx).await? {
            Some(found) => {
                let plan = &found.value;
                let id = required(plan.id(), "usage plan id")?;
                let retagged =
                    support::converge_tags(ctx, ADDR, &target(ctx, plan), plan.tags()).await?;
                ctx.record(ADDR, record(&id)).await?;
                let wrote = converge_settings(ctx, plan, &want).await?;
                (id, found.change().updated_if(retagged || wrote))
            }
            None if !ctx.would_create(format!("{ADDR} ({name})")) => return Ok(()),
            None => {
                let id = create(ctx, &name, &want).await?;
                ctx.record(ADDR, record(&id)).await?;
                (id, Change::Created)
            }
        };
        let change = change.updated_if(converge_key(ctx, &plan_id, &key_id).await?);
        ctx.record(ADDR, record(&plan_id).attr("key_id", &key_id))
            .await?;
        ctx.report
            .note(change, format!("{ADDR} {plan_id} ({name})"));
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx) -> Result<()> {
        let name = plan_name(ctx);
        let Some(Found { value: plan, .. }) = lookup(ctx).await? else {
            return ctx.forget_gone(ADDR).await;
        };
        support::check_owned(ctx, &target(ctx, &plan), plan.tags())?;
        empty(ctx, &plan).await?;
        let id = plan.item_id();
        let delete = async || {
            let call = ctx.aws.apigateway.delete_usage_plan().usage_plan_id(id);
            call.send().await.map_err(aws("DeleteUsagePlan", &name))
        };
        let what = format!("{id} ({name})");
        ctx.delete_and_forget(ADDR, &what, SERVICE, delete).await
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
