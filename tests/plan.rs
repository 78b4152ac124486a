//! `payctl plan` against the emulator: what `up` would do, with only reads.
//!
//! - On an empty account every kind is `+`, exit status 2, and no mutating request, no
//!   state file and no lock are left behind (the proxy counts every request).
//! - On a converged stack every resource is `=`, exit status 0, again only reads.
//! - Seven settings changed out of band, each in its own test: `plan` shows a `~` line
//!   for the resource with `attribute: old → new` (and `--json` the same), exits 2, and
//!   the next `up` puts the setting back (read back through the SDK), after which `plan`
//!   exits 0.

mod common;

use common::proxy::Proxy;
use common::*;

const ACCOUNT: &str = "123456789012";

fn name(purpose: &str, env: &str) -> String {
    format!("payment-{purpose}-{env}")
}

/// Runs `plan` (text) and `plan --json`; checks both exit with 2 and name `address`
/// with the drift line `attribute: old → new`. Returns the text plan.
fn assert_drift(stack: &Stack, address: &str, attribute: &str, old: &str, new: &str) -> String {
    let run = stack.payctl(&["plan"]);
    assert_eq!(run.code, Some(2), "plan:\n{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(&format!("~ {address}")))
        .unwrap_or_else(|| panic!("no `~ {address}` line in the plan:\n{}", run.stdout));
    let wanted = format!("    {attribute}: {old} → {new}");
    assert_under_line(&run.stdout, at, &wanted, address);
    // Nothing else would change: the one drifted resource is the only `~`.
    let changes: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with(['+', '~', '-']))
        .collect();
    assert_eq!(changes.len(), 1, "only {address} drifted:\n{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("plan {}: 0 to create, 1 to update,", stack.env)),
        "{}",
        run.stdout
    );

    let json = stack.payctl(&["plan", "--json"]);
    assert_eq!(json.code, Some(2), "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan --json");
    assert_eq!(v["changes"], true);
    let step = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in {v}"));
    assert_eq!(step["action"], "update");
    assert!(
        step["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| { c["attribute"] == attribute && c["old"] == old && c["new"] == new }),
        "{step}"
    );
    run.stdout
}

/// `up` repairs; afterwards `plan` has nothing to do.
fn repair(stack: &Stack) {
    stack.must(&["up"]);
    let run = stack.payctl(&["plan"]);
    assert_eq!(
        run.code,
        Some(0),
        "plan after the repair:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_on_an_empty_account_creates_everything_with_reads_only() {
    let stack = Stack::new("plan0");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    let run = stack.payctl_via(&proxy.endpoint, &["plan"], &[]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    for kind in [
        "ec2_vpc.main",
        "kms_key.rds",
        "dynamodb_table.transactions",
        "lambda_function",
        "apigw_stage",
        "cloudwatch_alarm",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("+ {kind}"))),
            "no `+ {kind}` in:\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.lines().any(|l| l.starts_with(['~', '=', '-'])));
    assert_eq!(proxy.mutating(), 0, "requests: {:?}", proxy.counts());
    assert!(
        proxy
            .counts()
            .keys()
            .all(|op| !common::proxy::is_mutating(op))
    );
    // Nothing was written: no state file, no lock.
    let left: Vec<_> = std::fs::read_dir(stack.state_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // The account is as empty as before: no VPC of ours.
    let vpcs = stack
        .ec2()
        .await
        .describe_vpcs()
        .filters(tag_filter("Environment", "plan0"))
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_on_a_converged_stack_changes_nothing_and_exits_0() {
    let stack = Stack::new("plan1");
    stack.must(&["up"]);
    let before = std::fs::read(stack.state_file()).unwrap();
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    let run = stack.payctl_via(&proxy.endpoint, &["plan"], &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("= ec2_vpc.main vpc-")));
    assert!(
        lines[..lines.len() - 1].iter().all(|l| l.starts_with("= ")),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("plan plan1: 0 to create, 0 to update, ")
                && l.ends_with(" unchanged, 0 to delete")),
        "{}",
        run.stdout
    );
    assert_eq!(proxy.mutating(), 0, "requests: {:?}", proxy.counts());
    assert_eq!(std::fs::read(stack.state_file()).unwrap(), before);
    let json = stack.payctl(&["plan", "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["changes"], false);
    assert_eq!(v["counts"]["create"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_point_in_time_recovery_turned_off() {
    use aws_sdk_dynamodb::types::{PointInTimeRecoverySpecification, PointInTimeRecoveryStatus};
    let stack = Stack::new("drift1");
    stack.must(&["up"]);
    let db = aws_sdk_dynamodb::Client::new(&stack.sdk().await);
    let table = name("transactions", "drift1");
    let off = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(false)
        .build()
        .unwrap();
    db.update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(off)
        .send()
        .await
        .unwrap();
    assert_drift(
        &stack,
        "dynamodb_table.transactions",
        "point-in-time recovery",
        "disabled",
        "enabled",
    );
    repair(&stack);
    let out = db
        .describe_continuous_backups()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let status = out
        .continuous_backups_description()
        .and_then(|c| c.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    assert_eq!(status, Some(&PointInTimeRecoveryStatus::Enabled));
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_bucket_versioning_suspended() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let stack = Stack::new("drift2");
    stack.must(&["up"]);
    let s3 = aws_sdk_s3::Client::new(&stack.sdk().await);
    let bucket = format!("payment-audit-drift2-{ACCOUNT}-{REGION}");
    let suspended = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Suspended)
        .build();
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(suspended)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bucket_versioning(&stack.moto.endpoint, &bucket).await,
        Some(BucketVersioningStatus::Suspended)
    );
    assert_drift(
        &stack,
        "s3_bucket.audit",
        "versioning",
        "Suspended",
        "Enabled",
    );
    repair(&stack);
    assert_eq!(
        bucket_versioning(&stack.moto.endpoint, &bucket).await,
        Some(BucketVersioningStatus::Enabled)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_key_rotation_disabled() {
    let stack = Stack::new("drift3");
    stack.must(&["up"]);
    let kms = stack.kms().await;
    let alias = "alias/payment-rds-drift3";
    let key = kms
        .describe_key()
        .key_id(alias)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    kms.disable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_drift(&stack, "kms_key.rds", "key rotation", "disabled", "enabled");
    repair(&stack);
    let status = kms
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(status.key_rotation_enabled());
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_security_group_rule_added() {
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    let stack = Stack::new("drift4");
    stack.must(&["up"]);
    let ec2 = stack.ec2().await;
    let groups = ec2
        .describe_security_groups()
        .filters(filter("group-name", "payment-lambda-sg-drift4"))
        .send()
        .await
        .unwrap();
    let sg = groups.security_groups()[0].group_id().unwrap().to_string();
    let ssh = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    ec2.authorize_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(ssh)
        .send()
        .await
        .unwrap();
    assert_drift(
        &stack,
        "ec2_security_group.lambda",
        "ingress tcp 22 from 0.0.0.0/0",
        "present",
        "revoked",
    );
    repair(&stack);
    let rules = ec2
        .describe_security_group_rules()
        .filters(filter("group-id", &sg))
        .send()
        .await
        .unwrap();
    assert!(
        !rules
            .security_group_rules()
            .iter()
            .any(|r| r.from_port() == Some(22)),
        "{rules:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_alarm_threshold_edited() {
    let stack = Stack::new("drift5");
    stack.must(&["up"]);
    let cw = aws_sdk_cloudwatch::Client::new(&stack.sdk().await);
    let alarm_name = name("validator-errors", "drift5");
    let out = cw
        .describe_alarms()
        .alarm_names(&alarm_name)
        .send()
        .await
        .unwrap();
    let a = out.metric_alarms()[0].clone();
    let wanted = a.threshold().unwrap();
    // The same alarm, put again with a threshold of 99.
    cw.put_metric_alarm()
        .alarm_name(&alarm_name)
        .set_alarm_description(a.alarm_description().map(str::to_string))
        .set_namespace(a.namespace().map(str::to_string))
        .set_metric_name(a.metric_name().map(str::to_string))
        .set_dimensions(Some(a.dimensions().to_vec()))
        .set_statistic(a.statistic().cloned())
        .set_period(a.period())
        .set_evaluation_periods(a.evaluation_periods())
        .set_datapoints_to_alarm(a.datapoints_to_alarm())
        .threshold(99.0)
        .set_comparison_operator(a.comparison_operator().cloned())
        .set_treat_missing_data(a.treat_missing_data().map(str::to_string))
        .set_actions_enabled(a.actions_enabled())
        .set_alarm_actions(Some(a.alarm_actions().to_vec()))
        .send()
        .await
        .unwrap();
    assert_drift(
        &stack,
        "cloudwatch_alarm.validator-errors",
        "threshold",
        "99",
        &wanted.to_string(),
    );
    repair(&stack);
    let out = cw
        .describe_alarms()
        .alarm_names(&alarm_name)
        .send()
        .await
        .unwrap();
    assert_eq!(out.metric_alarms()[0].threshold(), Some(wanted));
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_reserved_concurrency_changed() {
    let stack = Stack::new("drift6");
    stack.must(&["up"]);
    let lambda = aws_sdk_lambda::Client::new(&stack.sdk().await);
    let function = name("validator", "drift6");
    lambda
        .put_function_concurrency()
        .function_name(&function)
        .reserved_concurrent_executions(7)
        .send()
        .await
        .unwrap();
    // A dev stack reserves none: `up` gives the function back to the unreserved pool.
    assert_drift(
        &stack,
        "lambda_function.validator",
        "reserved concurrency",
        "7",
        "none",
    );
    repair(&stack);
    let out = lambda
        .get_function_concurrency()
        .function_name(&function)
        .send()
        .await
        .unwrap();
    assert_eq!(out.reserved_concurrent_executions(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_usage_plan_throttle_raised() {
    use aws_sdk_apigateway::types::{Op, PatchOperation};
    let stack = Stack::new("drift7");
    stack.must(&["up"]);
    let apigw = aws_sdk_apigateway::Client::new(&stack.sdk().await);
    let plan_name = name("usage-plan", "drift7");
    let find = || async {
        let plans = apigw.get_usage_plans().send().await.unwrap();
        plans
            .items()
            .iter()
            .find(|p| p.name() == Some(plan_name.as_str()))
            .cloned()
            .unwrap()
    };
    let plan = find().await;
    let wanted = plan.throttle().unwrap().rate_limit();
    let raise = PatchOperation::builder()
        .op(Op::Replace)
        .path("/throttle/rateLimit")
        .value("5000")
        .build();
    // moto's answer to UpdateUsagePlan may not decode; the change is read back below.
    let _ = apigw
        .update_usage_plan()
        .usage_plan_id(plan.id().unwrap())
        .patch_operations(raise)
        .send()
        .await;
    assert_eq!(find().await.throttle().unwrap().rate_limit(), 5000.0);
    assert_drift(
        &stack,
        "apigw_usage_plan.main",
        "/throttle/rateLimit",
        "5000",
        &format!("{wanted}"),
    );
    repair(&stack);
    assert_eq!(find().await.throttle().unwrap().rate_limit(), wanted);
}

#[tokio::test(flavor = "multi_thread")]
async fn fewer_nat_gateways_plans_deletes_and_up_makes_them() {
    let stack = Stack::new("surplus");
    let config = stack.home.path().join("payctl.toml");
    std::fs::write(&config, "[env.surplus]\nnat_gateways = 2\n").unwrap();
    stack.must(&["up"]);
    std::fs::write(&config, "[env.surplus]\nnat_gateways = 1\n").unwrap();

    let run = stack.payctl(&["plan"]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    for gone in ["- ec2_nat_gateway.nat-2 nat-", "- ec2_eip.nat-2 eipalloc-"] {
        assert!(
            lines.iter().any(|l| l.starts_with(gone)),
            "no {gone:?} in:\n{}",
            run.stdout
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("    default route: nat-")),
        "a private route table moves to the first gateway:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains(", 2 to delete"), "{}", run.stdout);

    stack.must(&["up"]);
    let ec2 = stack.ec2().await;
    let gateways = ec2
        .describe_nat_gateways()
        .filter(tag_filter("Environment", "surplus"))
        .send()
        .await
        .unwrap();
    let live: Vec<_> = gateways
        .nat_gateways()
        .iter()
        .filter(|g| g.tags().iter().any(|t| t.value() == Some("surplus")))
        .filter(|g| !matches!(g.state().map(|s| s.as_str()), Some("deleted" | "deleting")))
        .collect();
    assert_eq!(live.len(), 1, "{gateways:?}");
    let addresses = ec2
        .describe_addresses()
        .filters(tag_filter("Environment", "surplus"))
        .send()
        .await
        .unwrap();
    assert_eq!(addresses.addresses().len(), 1, "{addresses:?}");
    let run = stack.payctl(&["plan"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
}
