//! The whole stack from one `payctl up --env prod`: all seven outputs, and `payctl down`
//! leaves nothing of the environment in any service, checked with each service's own
//! list and describe calls (the tagging API misses API Gateway and IAM).

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn prod_comes_up_with_all_seven_outputs_and_down_leaves_nothing() {
    let stack = Stack::new("prod");
    let up = stack.must(&["up"]);
    let sdk = stack.sdk().await;

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
        "RDSEndpoint",
        "S3AuditBucket",
        "SNSAlertTopic",
        "SQSRetryQueue",
        "VPCId",
    ];
    want.sort();
    assert_eq!(keys, want, "{}", run.stdout);
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
        up.stdout.contains(&format!("SNSAlertTopic  {topic}")),
        "{}",
        up.stdout
    );

    stack.must(&["down", "--yes"]);

    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let env = tag_filter("Environment", "prod");
    assert!(
        ec2.describe_vpcs()
            .filters(env.clone())
            .send()
            .await
            .unwrap()
            .vpcs()
            .is_empty()
    );
    assert!(
        ec2.describe_subnets()
            .filters(env.clone())
            .send()
            .await
            .unwrap()
            .subnets()
            .is_empty()
    );
    assert!(
        ec2.describe_internet_gateways()
            .filters(env.clone())
            .send()
            .await
            .unwrap()
            .internet_gateways()
            .is_empty()
    );
    assert!(
        ec2.describe_addresses()
            .filters(env.clone())
            .send()
            .await
            .unwrap()
            .addresses()
            .is_empty()
    );
    assert!(
        ec2.describe_route_tables()
            .filters(env.clone())
            .send()
            .await
            .unwrap()
            .route_tables()
            .is_empty()
    );
    let groups = ec2
        .describe_security_groups()
        .filters(env.clone())
        .send()
        .await
        .unwrap();
    assert!(
        groups.security_groups().is_empty(),
        "{:?}",
        groups.security_groups()
    );
    let nats = ec2.describe_nat_gateways().send().await.unwrap();
    assert!(
        nats.nat_gateways()
            .iter()
            .all(|n| n.state().map(|s| s.as_str()) == Some("deleted")),
        "{:?}",
        nats.nat_gateways()
    );
    let rds = aws_sdk_rds::Client::new(&sdk)
        .describe_db_instances()
        .send()
        .await
        .unwrap();
    assert!(rds.db_instances().is_empty(), "{:?}", rds.db_instances());
    let tables = aws_sdk_dynamodb::Client::new(&sdk)
        .list_tables()
        .send()
        .await
        .unwrap();
    assert!(
        tables.table_names().is_empty(),
        "{:?}",
        tables.table_names()
    );
    let buckets = aws_sdk_s3::Client::new(&sdk)
        .list_buckets()
        .send()
        .await
        .unwrap();
    assert!(buckets.buckets().is_empty(), "{:?}", buckets.buckets());
    let queues = aws_sdk_sqs::Client::new(&sdk)
        .list_queues()
        .send()
        .await
        .unwrap();
    assert!(queues.queue_urls().is_empty(), "{:?}", queues.queue_urls());
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    assert!(
        lambda
            .list_functions()
            .send()
            .await
            .unwrap()
            .functions()
            .is_empty()
    );
    assert!(
        lambda
            .list_event_source_mappings()
            .send()
            .await
            .unwrap()
            .event_source_mappings()
            .is_empty()
    );
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
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk)
        .describe_log_groups()
        .send()
        .await
        .unwrap();
    assert!(logs.log_groups().is_empty(), "{:?}", logs.log_groups());
    assert!(api.get_rest_apis().send().await.unwrap().items().is_empty());
    assert!(api.get_api_keys().send().await.unwrap().items().is_empty());
    assert!(
        api.get_usage_plans()
            .send()
            .await
            .unwrap()
            .items()
            .is_empty()
    );
    let sns = aws_sdk_sns::Client::new(&sdk)
        .list_topics()
        .send()
        .await
        .unwrap();
    assert!(sns.topics().is_empty(), "{:?}", sns.topics());
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    assert!(
        cw.describe_alarms()
            .send()
            .await
            .unwrap()
            .metric_alarms()
            .is_empty()
    );
    assert!(
        cw.list_dashboards()
            .send()
            .await
            .unwrap()
            .dashboard_entries()
            .is_empty()
    );
    // KMS keys are only scheduled for deletion (7 days), their aliases gone.
    let kms = aws_sdk_kms::Client::new(&sdk);
    let aliases = kms.list_aliases().send().await.unwrap();
    assert!(
        aliases
            .aliases()
            .iter()
            .all(|a| !a.alias_name().unwrap_or_default().ends_with("-prod")),
        "{:?}",
        aliases.aliases()
    );
    let mut ours = 0;
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
        if !meta.description().unwrap_or_default().contains("(payctl)") {
            continue;
        }
        ours += 1;
        assert_eq!(
            meta.key_state().unwrap().as_str(),
            "PendingDeletion",
            "{meta:?}"
        );
    }
    assert_eq!(ours, 3, "the rds, s3 and sns keys");
}
