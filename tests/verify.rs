//! `payctl verify`: a fresh `up --env prod` passes every control, with read-only calls
//! only; each control broken out of band through the SDK makes exactly its own check
//! fail; without state it stops with one clear line.
//!
//! One stack serves every break. The breaks come in batches of independent ones (each
//! batch touches each check at most once, so the exact set of failing checks shows that
//! every break failed its own check and nothing else); `payctl up` puts the stack back
//! between batches, and the extra resources a break made (an Elastic IP, a permission)
//! are removed through the SDK.
//!
//! Not broken here: the database's storage encryption and key (RDS.3). Neither can be
//! changed on an existing instance (on AWS either; the emulator's ModifyDBInstance
//! has no such parameter), and a new unencrypted instance under the same name would
//! need the stack's to be deleted first.

mod common;

use common::proxy::{Proxy, is_mutating};
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// Every control verify must report, by name and Security Hub id (written out here, not
/// taken from the code).
const ACCOUNT: &str = "123456789012";

const CONTROLS: [(&str, Option<&str>); 41] = [
    ("S3 bucket blocks all public access", Some("S3.8")),
    ("S3 bucket policy denies requests without TLS", Some("S3.5")),
    (
        "S3 default encryption is SSE-KMS with the stack's key",
        Some("S3.17"),
    ),
    ("S3 bucket versioning is enabled", Some("S3.14")),
    (
        "S3 audit bucket server access logging goes to the stack's log bucket",
        Some("S3.9"),
    ),
    (
        "S3 access log bucket default encryption is SSE-S3 (as log delivery requires)",
        None,
    ),
    (
        "API stage is associated with the stack's WAF web ACL",
        Some("APIGateway.4"),
    ),
    (
        "WAF web ACL blocks with the managed rule groups and the per-IP rate rule",
        Some("WAF.10"),
    ),
    (
        "RDS instance is protected by the stack's backup plan",
        Some("RDS.26"),
    ),
    (
        "DynamoDB table is protected by the stack's backup plan",
        Some("DynamoDB.4"),
    ),
    (
        "Backup plan runs daily and keeps recovery points 35 days",
        None,
    ),
    ("Backup vault is encrypted with the stack's RDS key", None),
    (
        "RDS storage is encrypted with the stack's KMS key",
        Some("RDS.3"),
    ),
    ("RDS instance is not publicly accessible", Some("RDS.2")),
    ("RDS instance is Multi-AZ (production)", Some("RDS.5")),
    ("RDS deletion protection is on (production)", Some("RDS.8")),
    ("RDS backups are kept at least 30 days", Some("RDS.11")),
    (
        "RDS automatic minor version upgrades are on",
        Some("RDS.13"),
    ),
    ("RDS IAM database authentication is on", Some("RDS.10")),
    (
        "RDS server refuses connections without TLS (rds.force_ssl = 1, PCI DSS 4.2.1)",
        None,
    ),
    (
        "RDS certificate authority is the pinned rds-ca-rsa2048-g1, in effect",
        None,
    ),
    (
        "VPC gateway endpoint admits only this account and the stack's resources",
        None,
    ),
    ("DynamoDB point-in-time recovery is on", Some("DynamoDB.2")),
    ("KMS key rotation is enabled", Some("KMS.4")),
    ("SQS queue is encrypted at rest", Some("SQS.1")),
    ("SNS topic is encrypted with a KMS key", Some("SNS.1")),
    ("VPC default security group has no rules", Some("EC2.2")),
    (
        "Subnet does not assign public IPs on launch",
        Some("EC2.15"),
    ),
    ("Elastic IP of the environment is attached", Some("EC2.12")),
    ("VPC flow logging is enabled", Some("EC2.6")),
    ("Lambda function runs in the stack's VPC", Some("Lambda.3")),
    (
        "Lambda function's subnets span the stack's 3 AZs",
        Some("Lambda.5"),
    ),
    (
        "Lambda function has the configured reserved concurrency",
        None,
    ),
    ("Lambda function uses a supported runtime", Some("Lambda.2")),
    (
        "Lambda function policy does not allow public access",
        Some("Lambda.1"),
    ),
    ("API stage has execution logging on", Some("APIGateway.1")),
    ("API stage has data trace off", None),
    ("API method requires an API key", None),
    (
        "CloudWatch log group has a retention period",
        Some("CloudWatch.16"),
    ),
    (
        "CloudWatch log group is encrypted with the stack's logs key",
        None,
    ),
    (
        "Lambda function environment is encrypted with the stack's Lambda key",
        None,
    ),
];

/// The alarm controls and the confused-deputy ones, beside the 41 above.
const ALARM_CONTROLS: [(&str, Option<&str>); 5] = [
    (
        "API Gateway's CloudWatch role trusts API Gateway for this account only",
        None,
    ),
    (
        "SNS key lets CloudWatch use it for this account's alarms only",
        None,
    ),
    (
        "SNS topic lets only this account and its alarms publish",
        None,
    ),
    (
        "CloudWatch alarm has an action for the ALARM state",
        Some("CloudWatch.15"),
    ),
    (
        "CloudWatch alarm actions are enabled",
        Some("CloudWatch.17"),
    ),
];

struct Verify {
    ok: bool,
    report: Value,
    stderr: String,
}

fn verify(stack: &Stack) -> Verify {
    let run = stack.payctl(&["verify", "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no JSON ({e}):\n{}\n{}",
            run.stdout, run.stderr
        )
    });
    Verify {
        ok: run.ok,
        report,
        stderr: run.stderr,
    }
}

fn checks(report: &Value) -> Vec<&Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .collect()
}

/// The failing checks as (control, resource).
fn failing(report: &Value) -> Vec<(String, String)> {
    checks(report)
        .into_iter()
        .filter(|c| c["status"] != "PASS" && c["status"] != "N/A")
        .map(|c| {
            (
                c["control"].as_str().unwrap().to_string(),
                c["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Asserts that exactly the expected checks fail: one per (control, resource fragment).
fn assert_fails_exactly(v: &Verify, want: &[(&str, &str)]) {
    let got = failing(&v.report);
    let listing = || {
        checks(&v.report)
            .iter()
            .filter(|c| c["status"] == "FAIL")
            .map(|c| format!("  {} | {} | {}", c["control"], c["resource"], c["why"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(!v.ok, "verify passed with breaks {want:?}");
    assert_eq!(
        got.len(),
        want.len(),
        "failing checks:\n{}\nwanted {want:?}",
        listing()
    );
    for (control, resource) in want {
        assert!(
            got.iter()
                .any(|(c, r)| c == control && r.contains(resource)),
            "{control} on {resource} did not fail; failing:\n{}",
            listing()
        );
    }
    let total = checks(&v.report).len();
    assert!(
        v.stderr
            .lines()
            .any(|l| l == format!("error: {} of {total} checks failed", want.len())),
        "{}",
        v.stderr
    );
}

fn assert_all_pass(v: &Verify) {
    let bad: Vec<_> = checks(&v.report)
        .into_iter()
        .filter(|c| c["status"] != "PASS")
        .collect();
    assert!(
        v.ok && bad.is_empty(),
        "not all PASS: {bad:#?}\n{}",
        v.stderr
    );
}

fn state(stack: &Stack) -> Value {
    serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap()
}

fn id(state: &Value, addr: &str) -> String {
    state["resources"][addr]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{addr} not in state"))
        .to_string()
}

#[test]
fn verify_without_state_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = payctl_command(home.path())
        .args(["verify", "--env", "qa", "--state-dir"])
        .arg(home.path().join("state"))
        .output()
        .unwrap();
    let run = Run::from(out);
    assert!(!run.ok);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with("error: no state for environment qa at ")
            && lines[0].ends_with("run `payctl up --env qa` first"),
        "{}",
        run.stderr
    );
}

#[test]
fn outside_production_multi_az_deletion_protection_and_concurrency_are_not_applicable() {
    let stack = Stack::new("dev");
    stack.must(&["up"]);
    let v = verify(&stack);
    assert!(v.ok, "{}", v.stderr);
    let not_applicable: BTreeSet<(String, String)> = checks(&v.report)
        .into_iter()
        .filter(|c| c["status"] == "N/A")
        .map(|c| {
            (
                c["control"].as_str().unwrap().to_string(),
                c["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let concurrency = "Lambda function has the configured reserved concurrency";
    let want: BTreeSet<(String, String)> = [
        ("RDS instance is Multi-AZ (production)", "payment-db-dev"),
        (
            "RDS deletion protection is on (production)",
            "payment-db-dev",
        ),
        (concurrency, "payment-validator-dev"),
        (concurrency, "payment-processor-dev"),
        (concurrency, "payment-audit-logger-dev"),
        // No web ACL outside production unless `waf = true`, no AWS Backup.
        (
            "API stage is associated with the stack's WAF web ACL",
            "apigw_stage.main",
        ),
        (
            "WAF web ACL blocks with the managed rule groups and the per-IP rate rule",
            "apigw_stage.main",
        ),
        (
            "RDS instance is protected by the stack's backup plan",
            "backup_plan.main",
        ),
        (
            "DynamoDB table is protected by the stack's backup plan",
            "backup_plan.main",
        ),
        (
            "Backup plan runs daily and keeps recovery points 35 days",
            "backup_plan.main",
        ),
        (
            "Backup vault is encrypted with the stack's RDS key",
            "backup_plan.main",
        ),
    ]
    .iter()
    .map(|(c, r)| (c.to_string(), r.to_string()))
    .collect();
    assert_eq!(not_applicable, want);
    assert!(failing(&v.report).is_empty());
    assert_eq!(v.report["not_applicable"], 11);
    let summary = v.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("verify dev: ")
            && summary.ends_with(" passed, 0 failed, 11 not applicable"),
        "{}",
        v.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_passes_every_control_read_only_and_each_break_fails_its_own_check() {
    let stack = Stack::new("prod");
    stack.must(&["up"]);

    // A fresh stack: every check PASS (prod requires Multi-AZ, deletion protection and
    // the reserved concurrency, so nothing is N/A), through the proxy: reads only.
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    let run = stack.payctl_via(&proxy.endpoint, &["verify"], &[]);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    let counts = proxy.counts();
    let writes: Vec<_> = counts.keys().filter(|op| is_mutating(op)).collect();
    assert_eq!(
        proxy.mutating(),
        0,
        "mutating calls: {writes:?} of {counts:?}"
    );
    assert!(counts.contains_key("DescribeDBInstances"), "{counts:?}");
    assert!(run.stdout.starts_with("CONTROL "), "{}", run.stdout);
    assert!(run.stdout.contains("S3.8"), "{}", run.stdout);
    let summary = run.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("verify prod: ") && summary.ends_with(" passed, 0 failed"),
        "{}",
        run.stderr
    );

    let v = verify(&stack);
    assert_all_pass(&v);
    let seen: BTreeSet<(String, Option<String>)> = checks(&v.report)
        .iter()
        .map(|c| {
            (
                c["control"].as_str().unwrap().to_string(),
                c["fsbp"].as_str().map(str::to_string),
            )
        })
        .collect();
    let want: BTreeSet<(String, Option<String>)> = CONTROLS
        .iter()
        .chain(ALARM_CONTROLS.iter())
        .map(|(c, id)| (c.to_string(), id.map(str::to_string)))
        .collect();
    assert_eq!(seen, want);
    // One check per resource and control: 3 functions × 5, 6 subnets, 3 keys, ...
    let count = |control: &str| {
        checks(&v.report)
            .iter()
            .filter(|c| c["control"] == control)
            .count()
    };
    assert_eq!(count("Lambda function runs in the stack's VPC"), 3);
    assert_eq!(count("Subnet does not assign public IPs on launch"), 6);
    assert_eq!(count("KMS key rotation is enabled"), 5);
    assert_eq!(count("Elastic IP of the environment is attached"), 3);
    // Both buckets: the audit bucket and its access log bucket.
    assert_eq!(count("S3 bucket blocks all public access"), 2);
    assert_eq!(count("SQS queue is encrypted at rest"), 2);
    assert_eq!(count("API method requires an API key"), 3);
    assert_eq!(count("CloudWatch log group has a retention period"), 5);
    assert_eq!(
        count("CloudWatch log group is encrypted with the stack's logs key"),
        5
    );
    assert_eq!(
        count("Lambda function environment is encrypted with the stack's Lambda key"),
        3
    );
    assert_eq!(
        count("CloudWatch alarm has an action for the ALARM state"),
        7
    );

    breaks(&stack).await;
}

async fn breaks(stack: &Stack) {
    let sdk = stack.sdk().await;
    let s = state(stack);
    let bucket = id(&s, "s3_bucket.audit");
    let db = id(&s, "rds_instance.main");
    let table = id(&s, "dynamodb_table.transactions");
    let s3_key = id(&s, "kms_key.s3");
    let retry_url = id(&s, "sqs_queue.retry");
    let dlq_url = id(&s, "sqs_queue.dlq");
    let topic = id(&s, "sns_topic.alerts");
    let default_sg = id(&s, "ec2_default_security_group.main");
    let private_a = id(&s, "ec2_subnet.private-us-east-1a");
    let public_b = id(&s, "ec2_subnet.public-us-east-1b");
    let api = id(&s, "apigw_rest_api.main");
    let lambda_sg = id(&s, "ec2_security_group.lambda");
    let s3_endpoint = id(&s, "ec2_vpc_endpoint.s3");
    let vpc = id(&s, "ec2_vpc.main");
    let flow_log = id(&s, "ec2_flow_log.vpc");
    let (validator, processor, logger) = (
        "payment-validator-prod",
        "payment-processor-prod",
        "payment-audit-logger-prod",
    );
    let (s3, rds, ddb, kms, sqs, sns, ec2, lambda, apigw, logs, cw) = (
        aws_sdk_s3::Client::new(&sdk),
        aws_sdk_rds::Client::new(&sdk),
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_sns::Client::new(&sdk),
        aws_sdk_ec2::Client::new(&sdk),
        aws_sdk_lambda::Client::new(&sdk),
        aws_sdk_apigateway::Client::new(&sdk),
        aws_sdk_cloudwatchlogs::Client::new(&sdk),
        aws_sdk_cloudwatch::Client::new(&sdk),
    );
    use aws_sdk_apigateway::types::{Op, PatchOperation};
    use aws_sdk_sqs::types::QueueAttributeName as QAttr;
    let patch = |path: &str, value: &str| {
        PatchOperation::builder()
            .op(Op::Replace)
            .path(path)
            .value(value)
            .build()
    };

    // Batch 1: one break per area.
    let block = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
        .block_public_acls(false)
        .ignore_public_acls(false)
        .block_public_policy(false)
        .restrict_public_buckets(false)
        .build();
    s3.put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(block)
        .send()
        .await
        .unwrap();
    rds.modify_db_instance()
        .db_instance_identifier(&db)
        .publicly_accessible(true)
        .enable_iam_database_authentication(false)
        .ca_certificate_identifier("rds-ca-rsa4096-g1")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let no_tls = aws_sdk_rds::types::Parameter::builder()
        .parameter_name("rds.force_ssl")
        .parameter_value("0")
        .apply_method(aws_sdk_rds::types::ApplyMethod::Immediate)
        .build();
    rds.modify_db_parameter_group()
        .db_parameter_group_name("payment-db-params-prod")
        .parameters(no_tls)
        .send()
        .await
        .unwrap();
    let full_access = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#;
    ec2.modify_vpc_endpoint()
        .vpc_endpoint_id(&s3_endpoint)
        .policy_document(full_access)
        .send()
        .await
        .unwrap();
    ec2.delete_flow_logs()
        .flow_log_ids(&flow_log)
        .send()
        .await
        .unwrap();
    let pitr = aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(false)
        .build()
        .unwrap();
    ddb.update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(pitr)
        .send()
        .await
        .unwrap();
    kms.disable_key_rotation()
        .key_id(&s3_key)
        .send()
        .await
        .unwrap();
    sqs.set_queue_attributes()
        .queue_url(&retry_url)
        .attributes(QAttr::SqsManagedSseEnabled, "false")
        .send()
        .await
        .unwrap();
    sns.set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("KmsMasterKeyId")
        .attribute_value("")
        .send()
        .await
        .unwrap();
    let https = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(443)
        .to_port(443)
        .ip_ranges(
            aws_sdk_ec2::types::IpRange::builder()
                .cidr_ip("0.0.0.0/0")
                .build(),
        )
        .build();
    ec2.authorize_security_group_ingress()
        .group_id(&default_sg)
        .ip_permissions(https)
        .send()
        .await
        .unwrap();
    ec2.modify_subnet_attribute()
        .subnet_id(&private_a)
        .map_public_ip_on_launch(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tags = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::ElasticIp)
        .tags(tag("ManagedBy", "payctl"))
        .tags(tag("Environment", "prod"))
        .build();
    let stray = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();
    let stray_id = stray.allocation_id().unwrap().to_string();
    // The validator in one AZ only.
    lambda
        .update_function_configuration()
        .function_name(validator)
        .vpc_config(
            aws_sdk_lambda::types::VpcConfig::builder()
                .subnet_ids(&private_a)
                .security_group_ids(&lambda_sg)
                .build(),
        )
        .send()
        .await
        .unwrap();
    lambda
        .delete_function_concurrency()
        .function_name(processor)
        .send()
        .await
        .unwrap();
    lambda
        .add_permission()
        .function_name(logger)
        .statement_id("anyone")
        .action("lambda:InvokeFunction")
        .principal("*")
        .send()
        .await
        .unwrap();
    apigw
        .update_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .patch_operations(patch("/*/*/logging/loglevel", "OFF"))
        .send()
        .await
        .unwrap();
    logs.delete_retention_policy()
        .log_group_name(format!("/aws/lambda/{validator}"))
        .send()
        .await
        .unwrap();
    // Production keeps a year: 90 days is too short there.
    logs.put_retention_policy()
        .log_group_name(format!("/aws/lambda/{logger}"))
        .retention_in_days(90)
        .send()
        .await
        .unwrap();
    let alarm = "payment-rds-cpu-prod";
    put_alarm_without_actions(&cw, alarm).await;

    let v = verify(stack);
    assert_fails_exactly(
        &v,
        &[
            ("S3 bucket blocks all public access", &bucket),
            ("RDS instance is not publicly accessible", &db),
            ("RDS IAM database authentication is on", &db),
            (
                "RDS server refuses connections without TLS (rds.force_ssl = 1, PCI DSS 4.2.1)",
                &db,
            ),
            (
                "RDS certificate authority is the pinned rds-ca-rsa2048-g1, in effect",
                &db,
            ),
            (
                "VPC gateway endpoint admits only this account and the stack's resources",
                &s3_endpoint,
            ),
            ("VPC flow logging is enabled", &vpc),
            ("DynamoDB point-in-time recovery is on", &table),
            ("KMS key rotation is enabled", &s3_key),
            ("SQS queue is encrypted at rest", "payment-retry-prod"),
            (
                "SNS topic is encrypted with a KMS key",
                "payment-alerts-prod",
            ),
            ("VPC default security group has no rules", &default_sg),
            ("Subnet does not assign public IPs on launch", &private_a),
            ("Elastic IP of the environment is attached", &stray_id),
            (
                "Lambda function's subnets span the stack's 3 AZs",
                validator,
            ),
            (
                "Lambda function has the configured reserved concurrency",
                processor,
            ),
            (
                "Lambda function policy does not allow public access",
                logger,
            ),
            ("API stage has execution logging on", &api),
            (
                "CloudWatch log group has a retention period",
                &format!("/aws/lambda/{validator}"),
            ),
            (
                "CloudWatch log group has a retention period",
                &format!("/aws/lambda/{logger}"),
            ),
            ("CloudWatch alarm has an action for the ALARM state", alarm),
        ],
    );
    ec2.release_address()
        .allocation_id(&stray_id)
        .send()
        .await
        .unwrap();
    lambda
        .remove_permission()
        .function_name(logger)
        .statement_id("anyone")
        .send()
        .await
        .unwrap();
    stack.must(&["up"]);
    assert_all_pass(&verify(stack));

    // Batch 2: a second control on the same resources.
    s3.delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    rds.modify_db_instance()
        .db_instance_identifier(&db)
        .multi_az(false)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    sqs.set_queue_attributes()
        .queue_url(&dlq_url)
        .attributes(QAttr::SqsManagedSseEnabled, "false")
        .send()
        .await
        .unwrap();
    ec2.modify_subnet_attribute()
        .subnet_id(&public_b)
        .map_public_ip_on_launch(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    apigw
        .update_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .patch_operations(patch("/*/*/logging/dataTrace", "true"))
        .send()
        .await
        .unwrap();
    // moto has no UpdateMethod: putting the method again without a key is the break.
    let status = apigw
        .get_resources()
        .rest_api_id(&api)
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .find(|r| r.path() == Some("/status"))
        .and_then(|r| r.id().map(str::to_string))
        .unwrap();
    apigw
        .put_method()
        .rest_api_id(&api)
        .resource_id(&status)
        .http_method("GET")
        .authorization_type("NONE")
        .api_key_required(false)
        .send()
        .await
        .unwrap();
    let errors_alarm = "payment-validator-errors-prod";
    cw.disable_alarm_actions()
        .alarm_names(errors_alarm)
        .send()
        .await
        .unwrap();
    let v = verify(stack);
    assert_fails_exactly(
        &v,
        &[
            ("S3 bucket policy denies requests without TLS", &bucket),
            ("RDS instance is Multi-AZ (production)", &db),
            ("SQS queue is encrypted at rest", "payment-retry-dlq-prod"),
            ("Subnet does not assign public IPs on launch", &public_b),
            ("API stage has data trace off", &api),
            ("API method requires an API key", "GET /status"),
            ("CloudWatch alarm actions are enabled", errors_alarm),
        ],
    );
    stack.must(&["up"]);
    assert_all_pass(&verify(stack));

    // Batch 3.
    let sse = aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
        .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .build()
        .unwrap();
    let rule = aws_sdk_s3::types::ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(sse)
        .build();
    s3.put_bucket_encryption()
        .bucket(&bucket)
        .server_side_encryption_configuration(
            aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    rds.modify_db_instance()
        .db_instance_identifier(&db)
        .deletion_protection(false)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    lambda
        .update_function_configuration()
        .function_name(processor)
        .runtime(aws_sdk_lambda::types::Runtime::Provided)
        .send()
        .await
        .unwrap();
    let v = verify(stack);
    assert_fails_exactly(
        &v,
        &[
            (
                "S3 default encryption is SSE-KMS with the stack's key",
                &bucket,
            ),
            ("RDS deletion protection is on (production)", &db),
            ("Lambda function uses a supported runtime", processor),
        ],
    );
    stack.must(&["up"]);
    assert_all_pass(&verify(stack));

    // Batch 4.
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    rds.modify_db_instance()
        .db_instance_identifier(&db)
        .backup_retention_period(7)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    // Out of the VPC: no subnets, so no AZs either (two checks for one break).
    lambda
        .update_function_configuration()
        .function_name(logger)
        .vpc_config(aws_sdk_lambda::types::VpcConfig::builder().build())
        .send()
        .await
        .unwrap();
    let v = verify(stack);
    assert_fails_exactly(
        &v,
        &[
            ("S3 bucket versioning is enabled", &bucket),
            ("RDS backups are kept at least 30 days", &db),
            ("Lambda function runs in the stack's VPC", logger),
            ("Lambda function's subnets span the stack's 3 AZs", logger),
        ],
    );
    stack.must(&["up"]);
    assert_all_pass(&verify(stack));

    // Batch 5.
    rds.modify_db_instance()
        .db_instance_identifier(&db)
        .auto_minor_version_upgrade(false)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let v = verify(stack);
    assert_fails_exactly(&v, &[("RDS automatic minor version upgrades are on", &db)]);
    stack.must(&["up"]);

    // Batch 6: the confused-deputy conditions, each dropped out of band.
    let role = "payctl-apigateway-cloudwatch";
    let sns_key = id(&s, "kms_key.sns");
    let iam = aws_sdk_iam::Client::new(&sdk);
    let open_trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"},
        "Action": "sts:AssumeRole"}]});
    iam.update_assume_role_policy()
        .role_name(role)
        .policy_document(open_trust.to_string())
        .send()
        .await
        .unwrap();
    let open_key = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]});
    kms.put_key_policy()
        .key_id(&sns_key)
        .policy_name("default")
        .policy(open_key.to_string())
        .send()
        .await
        .unwrap();
    let open_topic = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sns:Publish",
        "Resource": topic}]});
    sns.set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("Policy")
        .attribute_value(open_topic.to_string())
        .send()
        .await
        .unwrap();
    let v = verify(stack);
    assert_fails_exactly(
        &v,
        &[
            (
                "API Gateway's CloudWatch role trusts API Gateway for this account only",
                role,
            ),
            (
                "SNS key lets CloudWatch use it for this account's alarms only",
                &sns_key,
            ),
            (
                "SNS topic lets only this account and its alarms publish",
                "payment-alerts-prod",
            ),
        ],
    );
    stack.must(&["up"]);
    assert_all_pass(&verify(stack));

    // A resource the state names but AWS does not know fails its checks: "not found".
    ddb.update_table()
        .table_name(&table)
        .deletion_protection_enabled(false)
        .send()
        .await
        .unwrap();
    ddb.delete_table().table_name(&table).send().await.unwrap();
    let v = verify(stack);
    assert_fails_exactly(&v, &[("DynamoDB point-in-time recovery is on", &table)]);
    let why = checks(&v.report)
        .into_iter()
        .find(|c| c["status"] == "FAIL")
        .map(|c| c["why"].clone());
    assert_eq!(why, Some(Value::from("not found")));
}

fn tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

/// Puts `name` again as it is, but with no actions.
async fn put_alarm_without_actions(cw: &aws_sdk_cloudwatch::Client, name: &str) {
    let out = cw.describe_alarms().alarm_names(name).send().await.unwrap();
    let a = out
        .metric_alarms()
        .first()
        .expect("the alarm exists")
        .clone();
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace(a.namespace().unwrap())
        .metric_name(a.metric_name().unwrap())
        .set_dimensions(Some(a.dimensions().to_vec()))
        .set_statistic(a.statistic().cloned())
        .set_period(a.period())
        .set_evaluation_periods(a.evaluation_periods())
        .set_threshold(a.threshold())
        .set_comparison_operator(a.comparison_operator().cloned())
        .send()
        .await
        .unwrap();
}
