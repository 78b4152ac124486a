//! The security posture's three later controls against the emulator, each read back
//! through the SDK: the audit bucket's server access logging into its own log bucket
//! (S3.9), the WAF web ACL on the API stage (APIGateway.4), and AWS Backup of the
//! database and the table in production (RDS.26, DynamoDB.4) — with drift put back,
//! `verify`'s checks, and what `down` deletes or keeps.

mod common;

use common::*;
use serde_json::Value;

/// moto's fixed account id.
const ACCOUNT: &str = "123456789012";

fn state(stack: &Stack) -> Value {
    serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap()
}

async fn s3(stack: &Stack) -> aws_sdk_s3::Client {
    let sdk = stack.sdk().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// `verify --json`'s checks of `control`, as (resource, status).
fn verified(stack: &Stack, control: &str) -> Vec<(String, String)> {
    let run = stack.payctl(&["verify", "--json"]);
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("verify --json: {e}\n{}\n{}", run.stdout, run.stderr));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["control"] == control)
        .map(|c| {
            (
                c["resource"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn write_config(stack: &Stack, text: &str) {
    std::fs::write(stack.home.path().join("payctl.toml"), text).unwrap();
}

#[tokio::test]
async fn the_audit_bucket_logs_every_request_into_its_own_log_bucket() {
    let stack = Stack::new("dev");
    stack.must(&["up"]);
    let s3 = s3(&stack).await;
    let audit = format!("payment-audit-dev-{ACCOUNT}-{REGION}");
    let logs = format!("payment-audit-logs-dev-{ACCOUNT}-{REGION}");

    let logging = s3.get_bucket_logging().bucket(&audit).send().await.unwrap();
    let enabled = logging.logging_enabled().expect("access logging on");
    assert_eq!(enabled.target_bucket(), logs);
    assert_eq!(enabled.target_prefix(), "audit/");

    // The log bucket: SSE-S3, public access blocked, versioned, expiring, and a policy
    // that is TLS-only and admits only the logging service, for this audit bucket.
    let enc = s3
        .get_bucket_encryption()
        .bucket(&logs)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    let by_default = rule.apply_server_side_encryption_by_default().unwrap();
    assert_eq!(by_default.sse_algorithm().as_str(), "AES256");
    let block = s3
        .get_public_access_block()
        .bucket(&logs)
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    assert_eq!(
        bucket_versioning(&stack.moto.endpoint, &logs).await,
        Some(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
    );
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&logs)
        .send()
        .await
        .unwrap();
    let rule = &lifecycle.rules()[0];
    assert_eq!(rule.id(), Some("expire-access-logs"));
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(90));
    let policy = s3.get_bucket_policy().bucket(&logs).send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let deny = &statements[0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let grant = &statements[1];
    assert_eq!(grant["Principal"]["Service"], "logging.s3.amazonaws.com");
    assert_eq!(grant["Resource"], format!("arn:aws:s3:::{logs}/audit/*"));
    assert_eq!(
        grant["Condition"]["ArnLike"]["aws:SourceArn"],
        format!("arn:aws:s3:::{audit}")
    );
    assert_eq!(
        grant["Condition"]["StringEquals"]["aws:SourceAccount"],
        ACCOUNT
    );
    assert_eq!(
        state(&stack)["resources"]["s3_bucket.access-logs"]["id"],
        logs.as_str()
    );
    let checks = verified(
        &stack,
        "S3 audit bucket server access logging goes to the stack's log bucket",
    );
    assert_eq!(checks, [(audit.clone(), "PASS".to_string())]);

    // Logging turned off by hand: plan names it, up puts it back.
    s3.put_bucket_logging()
        .bucket(&audit)
        .bucket_logging_status(aws_sdk_s3::types::BucketLoggingStatus::builder().build())
        .send()
        .await
        .unwrap();
    let checks = verified(
        &stack,
        "S3 audit bucket server access logging goes to the stack's log bucket",
    );
    assert_eq!(checks, [(audit.clone(), "FAIL".to_string())]);
    let plan = stack.payctl(&["plan"]);
    assert_eq!(plan.code, Some(2), "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains(&format!("server access logging: off → to {logs}/audit/")),
        "{}",
        plan.stdout
    );
    stack.must(&["up"]);
    let logging = s3.get_bucket_logging().bucket(&audit).send().await.unwrap();
    assert_eq!(
        logging.logging_enabled().map(|l| l.target_bucket()),
        Some(logs.as_str())
    );

    // An empty environment's down deletes both buckets.
    stack.must(&["down"]);
    for bucket in [&audit, &logs] {
        assert!(
            s3.head_bucket().bucket(bucket).send().await.is_err(),
            "{bucket} survived down"
        );
    }
}

#[tokio::test]
async fn a_web_acl_guards_the_stage_where_waf_is_on_and_goes_when_it_is_turned_off() {
    let stack = Stack::new("dev");
    write_config(&stack, "[env.dev]\nwaf = true\nwaf_rate_limit = 500\n");
    stack.must(&["up"]);
    let waf = aws_sdk_wafv2::Client::new(&stack.sdk().await);
    let regional = aws_sdk_wafv2::types::Scope::Regional;
    let st = state(&stack);
    let rec = &st["resources"]["wafv2_web_acl.api"];
    let (id, arn) = (rec["id"].as_str().unwrap(), rec["arn"].as_str().unwrap());
    let stage = st["resources"]["apigw_stage.main"]["arn"].as_str().unwrap();
    let acl = waf
        .get_web_acl()
        .name("payment-waf-dev")
        .id(id)
        .scope(regional.clone())
        .send()
        .await
        .unwrap();
    let acl = acl.web_acl().unwrap();
    assert!(acl.default_action().unwrap().allow().is_some());
    let names: Vec<&str> = acl.rules().iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "AWSManagedRulesAmazonIpReputationList",
            "AWSManagedRulesCommonRuleSet",
            "AWSManagedRulesKnownBadInputsRuleSet",
            "rate-limit-per-ip"
        ]
    );
    let rate = acl.rules()[3].statement().unwrap().rate_based_statement();
    assert_eq!(rate.map(|r| r.limit()), Some(500));
    assert!(acl.rules()[3].action().unwrap().block().is_some());
    assert!(
        acl.rules()
            .iter()
            .all(|r| r.visibility_config().unwrap().cloud_watch_metrics_enabled())
    );
    let tags = waf.list_tags_for_resource().resource_arn(arn).send().await;
    let tags = tags.unwrap();
    let tags = tags.tag_info_for_resource().unwrap().tag_list();
    let tags = tags
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_standard_tags(&tags, "dev", "web ACL");
    let on = waf.get_web_acl_for_resource().resource_arn(stage).send();
    let on = on.await.unwrap();
    assert_eq!(on.web_acl().map(|a| a.arn()), Some(arn));
    let control = "API stage is associated with the stack's WAF web ACL";
    assert_eq!(
        verified(&stack, control),
        [(stage.to_string(), "PASS".to_string())]
    );

    // The rate rule removed and the stage disassociated by hand: plan names both, up
    // puts both back, and a second up changes nothing.
    let token = waf
        .get_web_acl()
        .name("payment-waf-dev")
        .id(id)
        .scope(regional.clone())
        .send()
        .await
        .unwrap();
    waf.update_web_acl()
        .name("payment-waf-dev")
        .id(id)
        .scope(regional.clone())
        .lock_token(token.lock_token().unwrap())
        .default_action(acl.default_action().unwrap().clone())
        .set_rules(Some(acl.rules()[..3].to_vec()))
        .visibility_config(acl.visibility_config().unwrap().clone())
        .send()
        .await
        .unwrap();
    waf.disassociate_web_acl()
        .resource_arn(stage)
        .send()
        .await
        .unwrap();
    assert_eq!(
        verified(&stack, control),
        [(stage.to_string(), "FAIL".to_string())]
    );
    let plan = stack.payctl(&["plan"]);
    assert_eq!(plan.code, Some(2), "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("protects stage: no web ACL →"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("rate-limit-per-ip (500/5 min per IP, block)"),
        "{}",
        plan.stdout
    );
    stack.must(&["up"]);
    let acl = waf
        .get_web_acl()
        .name("payment-waf-dev")
        .id(id)
        .scope(regional.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(acl.web_acl().unwrap().rules().len(), 4);
    let on = waf.get_web_acl_for_resource().resource_arn(stage).send();
    assert_eq!(on.await.unwrap().web_acl().map(|a| a.arn()), Some(arn));
    let again = stack.must(&["up"]);
    assert!(
        again
            .stderr
            .contains("unchanged: wafv2_web_acl.api payment-waf-dev"),
        "{}",
        again.stderr
    );

    // waf turned off: the next up disassociates and deletes it.
    write_config(&stack, "[env.dev]\nwaf = false\n");
    stack.must(&["up"]);
    let left = waf.list_web_acls().scope(regional.clone()).send().await;
    assert!(left.unwrap().web_acls().is_empty());
    let on = waf.get_web_acl_for_resource().resource_arn(stage).send();
    assert!(on.await.unwrap().web_acl().is_none());
    assert!(state(&stack)["resources"]["wafv2_web_acl.api"].is_null());
    assert_eq!(
        verified(&stack, control),
        [("apigw_stage.main".to_string(), "N/A".to_string())]
    );
    stack.must(&["down"]);
}

#[tokio::test]
async fn production_backs_up_the_database_and_the_table_and_down_keeps_the_vault() {
    let stack = Stack::new("prod");
    stack.must(&["up"]);
    let sdk = stack.sdk().await;
    let backup = aws_sdk_backup::Client::new(&sdk);
    let st = state(&stack);
    let res = &st["resources"];
    let db = res["rds_instance.main"]["arn"]
        .as_str()
        .unwrap()
        .to_string();
    let table = res["dynamodb_table.transactions"]["arn"]
        .as_str()
        .unwrap()
        .to_string();
    let rds_key = res["kms_key.rds"]["arn"].as_str().unwrap().to_string();

    // The vault, with the RDS key and the standard tags.
    let vault = backup
        .describe_backup_vault()
        .backup_vault_name("payment-backup-prod")
        .send()
        .await
        .unwrap();
    assert_eq!(vault.encryption_key_arn(), Some(rds_key.as_str()));
    let vault_arn = vault.backup_vault_arn().unwrap().to_string();
    let tags = backup.list_tags().resource_arn(&vault_arn).send().await;
    let tags = tags.unwrap().tags().cloned().unwrap_or_default();
    assert_standard_tags(&tags.into_iter().collect(), "prod", "backup vault");

    // The plan: one daily rule, 35 days, into the vault.
    let plan_id = res["backup_plan.main"]["id"].as_str().unwrap().to_string();
    let plan = backup
        .get_backup_plan()
        .backup_plan_id(&plan_id)
        .send()
        .await;
    let plan = plan.unwrap();
    let rules = plan.backup_plan().unwrap().rules();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].rule_name(), "daily-35-days");
    assert_eq!(rules[0].schedule_expression(), Some("cron(0 3 ? * * *)"));
    assert_eq!(rules[0].target_backup_vault_name(), "payment-backup-prod");
    assert_eq!(
        rules[0].lifecycle().and_then(|l| l.delete_after_days()),
        Some(35)
    );

    // The selection: the database and the table, with the backup role.
    let selection = res["backup_selection.main"]["id"].as_str().unwrap();
    let got = backup
        .get_backup_selection()
        .backup_plan_id(&plan_id)
        .selection_id(selection)
        .send()
        .await
        .unwrap();
    let got = got.backup_selection().unwrap();
    let mut selected = got.resources().to_vec();
    selected.sort();
    let mut want = vec![db.clone(), table.clone()];
    want.sort();
    assert_eq!(selected, want);
    let role = format!("arn:aws:iam::{ACCOUNT}:role/payment-backup-role-prod");
    assert_eq!(got.iam_role_arn(), role);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let attached = iam
        .list_attached_role_policies()
        .role_name("payment-backup-role-prod")
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "AWSBackupServiceRolePolicyForBackup",
            "AWSBackupServiceRolePolicyForRestores"
        ]
    );
    let trust = iam
        .get_role()
        .role_name("payment-backup-role-prod")
        .send()
        .await
        .unwrap();
    let doc = trust.role().unwrap().assume_role_policy_document().unwrap();
    let doc = percent_encoding::percent_decode_str(doc)
        .decode_utf8()
        .unwrap();
    let trust: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "backup.amazonaws.com"
    );
    for control in [
        "RDS instance is protected by the stack's backup plan",
        "DynamoDB table is protected by the stack's backup plan",
        "Backup plan runs daily and keeps recovery points 35 days",
        "Backup vault is encrypted with the stack's RDS key",
    ] {
        let checks = verified(&stack, control);
        assert!(
            checks.len() == 1 && checks[0].1 == "PASS",
            "{control}: {checks:?}"
        );
    }

    // The rule changed by hand (weekly, 7 days): plan names it, up puts it back.
    let weekly = aws_sdk_backup::types::BackupRuleInput::builder()
        .rule_name("daily-35-days")
        .target_backup_vault_name("payment-backup-prod")
        .schedule_expression("cron(0 3 ? * 1 *)")
        .lifecycle(
            aws_sdk_backup::types::Lifecycle::builder()
                .delete_after_days(7)
                .build(),
        )
        .build()
        .unwrap();
    let input = aws_sdk_backup::types::BackupPlanInput::builder()
        .backup_plan_name("payment-backup-plan-prod")
        .rules(weekly)
        .build()
        .unwrap();
    backup
        .update_backup_plan()
        .backup_plan_id(&plan_id)
        .backup_plan(input)
        .send()
        .await
        .unwrap();
    let plan_run = stack.payctl(&["plan"]);
    assert_eq!(
        plan_run.code,
        Some(2),
        "{}\n{}",
        plan_run.stdout,
        plan_run.stderr
    );
    assert!(
        plan_run.stdout.contains("cron(0 3 ? * 1 *)") && plan_run.stdout.contains("kept 7 days →"),
        "{}",
        plan_run.stdout
    );
    stack.must(&["up"]);
    let plan = backup
        .get_backup_plan()
        .backup_plan_id(&plan_id)
        .send()
        .await;
    let plan = plan.unwrap();
    let rule = &plan.backup_plan().unwrap().rules()[0];
    assert_eq!(rule.schedule_expression(), Some("cron(0 3 ? * * *)"));
    assert_eq!(
        rule.lifecycle().and_then(|l| l.delete_after_days()),
        Some(35)
    );

    // A night's backups, then down: the plan and selection go, the vault stays with its
    // recovery points (and the RDS key that encrypts it), named in the summary.
    stack
        .moto
        .add_recovery_point("payment-backup-prod", &db, "RDS");
    stack
        .moto
        .add_recovery_point("payment-backup-prod", &table, "DynamoDB");
    let down = stack.must(&["down", "--yes"]);
    assert!(
        down.stdout
            .contains("AWS Backup vault payment-backup-prod, with its 2 recovery point(s)"),
        "{}",
        down.stdout
    );
    let vault = backup
        .describe_backup_vault()
        .backup_vault_name("payment-backup-prod")
        .send()
        .await;
    assert!(vault.is_ok(), "prod down deleted the backup vault");
    let points = backup
        .list_recovery_points_by_backup_vault()
        .backup_vault_name("payment-backup-prod")
        .send()
        .await
        .unwrap();
    assert_eq!(points.recovery_points().len(), 2);
    let plans = backup.list_backup_plans().send().await.unwrap();
    assert!(plans.backup_plans_list().is_empty(), "{plans:?}");
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = kms
        .describe_key()
        .key_id("alias/payment-rds-prod")
        .send()
        .await;
    let key = key.unwrap();
    assert_eq!(
        key.key_metadata().unwrap().key_state().map(|s| s.as_str()),
        Some("Enabled")
    );
    let st = state(&stack);
    assert_eq!(
        st["resources"]["backup_vault.main"]["id"],
        "payment-backup-prod"
    );
    assert!(st["resources"]["backup_plan.main"].is_null());

    // The next up adopts the vault and makes the plan again, under the same name.
    stack.must(&["up"]);
    let st = state(&stack);
    assert_ne!(st["resources"]["backup_plan.main"]["id"], plan_id.as_str());
    let plans = backup.list_backup_plans().send().await.unwrap();
    let names: Vec<&str> = plans
        .backup_plans_list()
        .iter()
        .filter_map(|p| p.backup_plan_name())
        .collect();
    assert_eq!(names, ["payment-backup-plan-prod"]);
}
