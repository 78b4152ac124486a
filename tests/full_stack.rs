//! The whole stack from one `payctl up --env prod`: all the outputs (the seven of the stack and the functions' live versions), and `payctl down`
//! leaves nothing of the environment in any service, checked with each service's own
//! list and describe calls (the tagging API misses API Gateway and IAM), but the data a
//! production teardown keeps (the final database snapshot, a backup of the table, the
//! audit bucket, and the KMS keys that encrypt them), and touches no protected database
//! it does not own.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn prod_comes_up_with_all_outputs_and_down_leaves_only_the_kept_data() {
    let stack = Stack::new("prod");
    let timings = stack.state_dir.path().join("up.timings.json");
    let up = stack.must(&["up", "--timings", &timings.to_string_lossy()]);
    let sdk = stack.sdk().await;
    // `--timings` counts each kind's requests by operation: the VPC kind made the VPC
    // once, the function kind the three functions, and nothing is counted twice.
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&timings).unwrap()).unwrap();
    let requests = |kind: &str| -> Value {
        let kinds = t["kinds"].as_array().unwrap();
        let k = kinds.iter().find(|k| k["kind"] == kind).unwrap();
        k["requests"].clone()
    };
    assert_eq!(requests("ec2_vpc")["CreateVpc"], 1, "{t}");
    assert_eq!(requests("lambda_function")["CreateFunction"], 3, "{t}");
    assert!(
        requests("lambda_function").get("CreateVpc").is_none(),
        "{t}"
    );
    assert!(t["requests_outside_kinds"].is_object(), "{t}");

    let run = stack.must(&["outputs", "--json"]);
    let outputs: Value = serde_json::from_str(&run.stdout).unwrap();
    let keys: Vec<&str> = outputs
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "APIEndpoint",
        "DynamoDBTable",
        "FunctionVersions",
        "RDSEndpoint",
        "S3AuditBucket",
        "SNSAlertTopic",
        "SQSRetryQueue",
        "VPCId",
    ];
    want.sort();
    assert_eq!(keys, want, "{}", run.stdout);
    // Each function's alias `live` is on its first version.
    assert_eq!(
        outputs["FunctionVersions"], "audit-logger=1 processor=1 validator=1",
        "{}",
        run.stdout
    );
    let api = aws_sdk_apigateway::Client::new(&sdk);
    let apis = api.get_rest_apis().send().await.unwrap();
    let api_id = apis
        .items()
        .iter()
        .find(|a| a.name() == Some("payment-api-prod"))
        .and_then(|a| a.id())
        .expect("the REST API exists");
    assert_eq!(
        outputs["APIEndpoint"],
        format!("https://{api_id}.execute-api.{REGION}.amazonaws.com/prod")
    );
    let topics = aws_sdk_sns::Client::new(&sdk)
        .list_topics()
        .send()
        .await
        .unwrap();
    let topic = topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .find(|a| a.ends_with(":payment-alerts-prod"))
        .expect("the alert topic exists");
    assert_eq!(outputs["SNSAlertTopic"], topic);
    assert!(outputs["VPCId"].as_str().unwrap().starts_with("vpc-"));
    assert_eq!(outputs["DynamoDBTable"], "payment-transactions-prod");
    assert!(
        outputs["SQSRetryQueue"]
            .as_str()
            .unwrap()
            .ends_with("/payment-retry-prod")
    );
    assert!(outputs["RDSEndpoint"].as_str().unwrap().ends_with(":5432"));
    // `up` prints the same outputs as a table.
    assert!(
        up.stdout.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("SNSAlertTopic") && words.next() == Some(topic)
        }),
        "{}",
        up.stdout
    );

    // A database that payctl does not own, protected against deletion, beside ours.
    let rds = aws_sdk_rds::Client::new(&sdk);
    rds.create_db_instance()
        .db_instance_identifier("payment-db-prod-reporting")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("reporting")
        .master_user_password("not-a-secret-1")
        .allocated_storage(20)
        .deletion_protection(true)
        .send()
        .await
        .unwrap();

    stack.must(&["down", "--yes"]);

    // Left: exactly what a production down keeps.
    let mut left = common::census::leftovers(&common::census::census(&stack).await);
    // The audit bucket and its access logs, the backup vault with its recovery points.
    assert_eq!(
        left.remove("s3 bucket"),
        Some(vec![
            "payment-audit-logs-prod-123456789012-us-east-1".to_string(),
            outputs["S3AuditBucket"].as_str().unwrap().to_string()
        ])
    );
    assert_eq!(
        left.remove("backup vault"),
        Some(vec!["payment-backup-prod".to_string()])
    );
    assert_eq!(
        left.remove("kms alias").map(|mut a| {
            a.sort();
            a
        }),
        Some(vec![
            "alias/payment-logs-prod".to_string(),
            "alias/payment-rds-prod".to_string(),
            "alias/payment-s3-prod".to_string()
        ])
    );
    assert_eq!(left.remove("kms key").map(|k| k.len()), Some(3));
    // A year of logs: the five log groups stay, encrypted with the kept logs key.
    assert_eq!(left.remove("log group").map(|g| g.len()), Some(5));
    assert!(left.is_empty(), "left behind: {left:#?}");
    let backups = aws_sdk_dynamodb::Client::new(&sdk)
        .list_backups()
        .table_name("payment-transactions-prod")
        .send()
        .await
        .unwrap();
    assert_eq!(backups.backup_summaries().len(), 1, "{backups:?}");
    // Deletion protection was lifted only on what was deleted; the final snapshot exists.
    let dbs = rds.describe_db_instances().send().await.unwrap();
    let dbs: Vec<_> = dbs
        .db_instances()
        .iter()
        .map(|d| {
            (
                d.db_instance_identifier().unwrap_or_default(),
                d.deletion_protection(),
            )
        })
        .collect();
    assert_eq!(dbs, vec![("payment-db-prod-reporting", Some(true))]);
    let snapshots = rds
        .describe_db_snapshots()
        .db_instance_identifier("payment-db-prod")
        .send()
        .await
        .unwrap();
    let finals: Vec<_> = snapshots
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .filter(|s| s.starts_with("payment-db-prod-final-"))
        .collect();
    assert_eq!(finals.len(), 1, "{:?}", snapshots.db_snapshots());
    let roles = aws_sdk_iam::Client::new(&sdk)
        .list_roles()
        .send()
        .await
        .unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|r| !r.role_name().ends_with("-prod")),
        "{:?}",
        roles.roles()
    );
    // The keys of kept data (the snapshot, the bucket, the log groups) stay enabled; the
    // alert topic's and the functions' keys are only scheduled for deletion (7 days),
    // their aliases gone.
    let kms = aws_sdk_kms::Client::new(&sdk);
    let mut states = Vec::new();
    for key in kms.list_keys().send().await.unwrap().keys() {
        let meta = kms
            .describe_key()
            .key_id(key.key_id().unwrap())
            .send()
            .await
            .unwrap();
        let meta = meta.key_metadata().unwrap();
        // payctl's keys say so in their description (the emulator makes keys of its own,
        // e.g. for the database's managed secret).
        let description = meta.description().unwrap_or_default();
        if !description.contains("(payctl)") {
            continue;
        }
        let purpose = description.split(" (payctl)").next().unwrap().to_string();
        states.push((purpose, meta.key_state().unwrap().as_str().to_string()));
    }
    states.sort();
    assert_eq!(
        states,
        vec![
            (
                "payment-lambda-prod".to_string(),
                "PendingDeletion".to_string()
            ),
            ("payment-logs-prod".to_string(), "Enabled".to_string()),
            ("payment-rds-prod".to_string(), "Enabled".to_string()),
            ("payment-s3-prod".to_string(), "Enabled".to_string()),
            (
                "payment-sns-prod".to_string(),
                "PendingDeletion".to_string()
            ),
        ]
    );
}
