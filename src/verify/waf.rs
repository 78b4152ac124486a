//! The API stage's web ACL: the stage is associated with the stack's WAF web ACL
//! (APIGateway.4), and the ACL has rules (WAF.10) — the three AWS managed rule groups
//! and the per-IP rate rule payctl writes, none switched to count-only. `N/A` where
//! the environment has no web ACL (`waf = false`, outside production).

use super::{Check, Control, Read, Target, fail_all, read};
use crate::api::{stage, web_acl};
use crate::engine::Service;

pub const STAGE_PROTECTED: Control = Control::new(
    "API stage is associated with the stack's WAF web ACL",
    Some("APIGateway.4"),
);
pub const RULES: Control = Control::new(
    "WAF web ACL blocks with the managed rule groups and the per-IP rate rule",
    Some("WAF.10"),
);

pub async fn checks(t: &Target) -> Vec<Check> {
    let both = [STAGE_PROTECTED, RULES];
    if !t.settings.waf {
        return both
            .iter()
            .map(|c| c.not_applicable(stage::ADDR, "no web ACL in this environment (waf = false)"))
            .collect();
    }
    let Some(rec) = t.record(web_acl::ADDR) else {
        return fail_all(&both, web_acl::ADDR, "not in the state file");
    };
    let (Some(arn), Some(name)) = (rec.arn.as_deref(), rec.get("name")) else {
        return fail_all(&both, web_acl::ADDR, "the state record has no ARN or name");
    };
    let call = t.aws.wafv2.get_web_acl().name(name).id(&rec.id);
    let out = call
        .scope(aws_sdk_wafv2::types::Scope::Regional)
        .send()
        .await;
    let acl = match read(out, Service::Wafv2, "GetWebACL", name) {
        Read::Got(out) => out.web_acl().cloned(),
        Read::Gone => None,
        Read::Unreadable(why) => return fail_all(&both, name, &why),
    };
    let Some(acl) = acl else {
        return fail_all(&both, name, "not found");
    };
    vec![stage_protected(t, arn).await, rules(name, &acl)]
}

async fn stage_protected(t: &Target, acl: &str) -> Check {
    let Some(stage) = t.record(stage::ADDR).and_then(|r| r.arn.clone()) else {
        return STAGE_PROTECTED.fail(stage::ADDR, "the stage is not in the state file");
    };
    let call = t.aws.wafv2.get_web_acl_for_resource().resource_arn(&stage);
    let have = match read(
        call.send().await,
        Service::Wafv2,
        "GetWebACLForResource",
        &stage,
    ) {
        Read::Got(out) => out.web_acl().map(|a| a.arn().to_string()),
        Read::Gone => None,
        Read::Unreadable(why) => return STAGE_PROTECTED.fail(&stage, why),
    };
    match have {
        Some(a) if a == acl => STAGE_PROTECTED.pass(&stage, format!("protected by {a}")),
        Some(a) => STAGE_PROTECTED.fail(&stage, format!("protected by {a}, not the stack's {acl}")),
        None => STAGE_PROTECTED.fail(&stage, "no web ACL"),
    }
}

fn rules(name: &str, acl: &aws_sdk_wafv2::types::WebAcl) -> Check {
    let rules = acl.rules();
    let group_blocks = |group: &str| {
        rules.iter().any(|r| {
            let statement = r.statement().and_then(|s| s.managed_rule_group_statement());
            statement.is_some_and(|g| g.vendor_name() == "AWS" && g.name() == group)
                && r.override_action().is_none_or(|o| o.count().is_none())
        })
    };
    let groups = web_acl::MANAGED_RULE_GROUPS
        .iter()
        .all(|(group, _)| group_blocks(group));
    let rate = rules.iter().any(|r| {
        r.statement()
            .and_then(|s| s.rate_based_statement())
            .is_some()
            && r.action().is_some_and(|a| a.block().is_some())
    });
    let have = web_acl::rules_text(rules);
    RULES.judge(name, groups && rate, have.clone(), format!("rules: {have}"))
}
