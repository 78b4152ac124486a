//! What the emulator holds of one environment, read back with each service's own list and
//! describe calls (the tagging API misses API Gateway and IAM): the ids of every live
//! resource, by kind. The reliability tests compare it with the counts one stack should
//! have; the teardown tests expect it empty.

use super::{Stack, tag_filter};
use std::collections::BTreeMap;

pub type Census = BTreeMap<&'static str, Vec<String>>;

/// How many of each kind one converged stack of `env` has.
pub fn expected(env: &str) -> BTreeMap<&'static str, usize> {
    let nats = if env == "prod" { 3 } else { 1 };
    // Production only: the web ACL, AWS Backup and its role.
    let prod = usize::from(env == "prod");
    BTreeMap::from([
        ("vpc", 1),
        ("subnet", 6),
        ("internet gateway", 1),
        ("elastic ip", nats),
        ("nat gateway", nats),
        ("route table", 4),
        ("vpc endpoint", 2),
        ("security group", 2),
        ("kms key", 5),
        ("kms alias", 5),
        ("db instance", 1),
        ("db subnet group", 1),
        ("db parameter group", 1),
        ("dynamodb table", 1),
        ("s3 bucket", 2),
        ("sqs queue", 2),
        ("iam role", 4 + prod),
        ("log group", 5),
        ("flow log", 1),
        ("lambda function", 3),
        ("event source mapping", 2),
        ("rest api", 1),
        ("api key", 1),
        ("usage plan", 1),
        ("sns topic", 1),
        ("sns subscription", 1),
        ("alarm", 7),
        ("dashboard", 1),
        ("web acl", prod),
        ("backup vault", prod),
        ("backup plan", prod),
        ("backup selection", prod),
    ])
}

/// The number of live resources of each kind in `census`.
pub fn counts(census: &Census) -> BTreeMap<&'static str, usize> {
    census.iter().map(|(k, v)| (*k, v.len())).collect()
}

/// Every kind in `census` that still has a live resource.
pub fn leftovers(census: &Census) -> Census {
    census
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

/// Fails the test unless the emulator holds exactly one converged stack of `stack.env`.
pub async fn assert_converged(stack: &Stack) -> Census {
    let now = census(stack).await;
    assert_eq!(counts(&now), expected(&stack.env), "{now:#?}");
    now
}

/// Fails the test unless nothing of `stack.env` (not a production env) is left but what a
/// `down` keeps on purpose: while a final DB snapshot exists, the RDS key that encrypts it
/// and its alias, enabled.
pub async fn assert_nothing_left(stack: &Stack) {
    let mut left = leftovers(&census(stack).await);
    let sdk = stack.sdk().await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let snapshots = rds.describe_db_snapshots().send().await.unwrap();
    let prefix = format!("payment-db-{}-final-", stack.env);
    let kept_snapshot = snapshots.db_snapshots().iter().any(|s| {
        s.db_snapshot_identifier()
            .is_some_and(|id| id.starts_with(&prefix))
    });
    if kept_snapshot {
        let alias = format!("alias/payment-rds-{}", stack.env);
        let key = aws_sdk_kms::Client::new(&sdk)
            .describe_key()
            .key_id(&alias)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the RDS key of a kept snapshot lost {alias}: {e:?}"));
        let key = key.key_metadata().unwrap().key_id().to_string();
        assert_eq!(left.remove("kms key"), Some(vec![key]), "{left:#?}");
        assert_eq!(left.remove("kms alias"), Some(vec![alias]), "{left:#?}");
    }
    assert!(left.is_empty(), "left behind: {left:#?}");
}

pub async fn census(stack: &Stack) -> Census {
    let sdk = stack.sdk().await;
    let env = stack.env.as_str();
    let suffix = format!("-{env}");
    let mut c = Census::new();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let tagged = tag_filter("Environment", env);
    let out = ec2.describe_vpcs().filters(tagged.clone()).send();
    let out = out.await.unwrap();
    c.insert(
        "vpc",
        out.vpcs()
            .iter()
            .filter_map(|v| v.vpc_id())
            .map(String::from)
            .collect(),
    );
    let out = ec2
        .describe_subnets()
        .filters(tagged.clone())
        .send()
        .await
        .unwrap();
    let ids = out.subnets().iter().filter_map(|s| s.subnet_id());
    c.insert("subnet", ids.map(String::from).collect());
    let out = ec2
        .describe_internet_gateways()
        .filters(tagged.clone())
        .send()
        .await
        .unwrap();
    let ids = out
        .internet_gateways()
        .iter()
        .filter_map(|g| g.internet_gateway_id());
    c.insert("internet gateway", ids.map(String::from).collect());
    let out = ec2
        .describe_addresses()
        .filters(tagged.clone())
        .send()
        .await
        .unwrap();
    let ids = out.addresses().iter().filter_map(|a| a.allocation_id());
    c.insert("elastic ip", ids.map(String::from).collect());
    let out = ec2
        .describe_nat_gateways()
        .filter(tagged.clone())
        .send()
        .await
        .unwrap();
    let live = out.nat_gateways().iter().filter(|n| {
        !matches!(
            n.state().map(|s| s.as_str()),
            Some("deleted") | Some("deleting")
        )
    });
    c.insert(
        "nat gateway",
        live.filter_map(|n| n.nat_gateway_id())
            .map(String::from)
            .collect(),
    );
    let out = ec2
        .describe_route_tables()
        .filters(tagged.clone())
        .send()
        .await
        .unwrap();
    let ids = out.route_tables().iter().filter_map(|r| r.route_table_id());
    c.insert("route table", ids.map(String::from).collect());
    let out = ec2
        .describe_vpc_endpoints()
        .filters(tagged.clone())
        .send()
        .await
        .unwrap();
    let live = out.vpc_endpoints().iter().filter(|e| {
        !matches!(
            e.state().map(|s| s.as_str()),
            Some("deleted") | Some("deleting")
        )
    });
    c.insert(
        "vpc endpoint",
        live.filter_map(|e| e.vpc_endpoint_id())
            .map(String::from)
            .collect(),
    );
    let out = ec2
        .describe_security_groups()
        .filters(tagged)
        .send()
        .await
        .unwrap();
    let ids = out.security_groups().iter().filter_map(|g| g.group_id());
    c.insert("security group", ids.map(String::from).collect());
    let out = ec2
        .describe_flow_logs()
        .filter(tag_filter("Environment", env))
        .send()
        .await
        .unwrap();
    let ids = out.flow_logs().iter().filter_map(|f| f.flow_log_id());
    c.insert("flow log", ids.map(String::from).collect());

    // KMS: payctl's keys say so in their description (the emulator makes keys of its own,
    // e.g. for the database's managed secret); keys pending deletion are gone for good.
    let kms = aws_sdk_kms::Client::new(&sdk);
    let mut keys = Vec::new();
    for key in kms.list_keys().send().await.unwrap().keys() {
        let meta = kms
            .describe_key()
            .key_id(key.key_id().unwrap())
            .send()
            .await
            .unwrap();
        let meta = meta.key_metadata().unwrap();
        let ours = meta
            .description()
            .unwrap_or_default()
            .contains(&format!("{env} (payctl)"));
        if ours && meta.key_state().map(|s| s.as_str()) != Some("PendingDeletion") {
            keys.push(meta.key_id().to_string());
        }
    }
    c.insert("kms key", keys);
    let out = kms.list_aliases().send().await.unwrap();
    let names = out.aliases().iter().filter_map(|a| a.alias_name());
    c.insert(
        "kms alias",
        names
            .filter(|n| n.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );

    let rds = aws_sdk_rds::Client::new(&sdk);
    let out = rds.describe_db_instances().send().await.unwrap();
    let ids = out
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier());
    c.insert(
        "db instance",
        ids.filter(|n| n.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );
    let out = rds.describe_db_subnet_groups().send().await.unwrap();
    let names = out
        .db_subnet_groups()
        .iter()
        .filter_map(|g| g.db_subnet_group_name());
    c.insert(
        "db subnet group",
        names
            .filter(|n| n.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );
    let out = rds.describe_db_parameter_groups().send().await.unwrap();
    let names = out
        .db_parameter_groups()
        .iter()
        .filter_map(|g| g.db_parameter_group_name());
    c.insert(
        "db parameter group",
        names
            .filter(|n| n.starts_with("payment-") && n.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );

    let out = aws_sdk_dynamodb::Client::new(&sdk)
        .list_tables()
        .send()
        .await
        .unwrap();
    let names = out.table_names().iter().filter(|n| n.ends_with(&suffix));
    c.insert("dynamodb table", names.cloned().collect());
    let out = aws_sdk_s3::Client::new(&sdk)
        .list_buckets()
        .send()
        .await
        .unwrap();
    let names = out.buckets().iter().filter_map(|b| b.name());
    let prefixes = [
        format!("payment-audit-{env}-"),
        format!("payment-audit-logs-{env}-"),
    ];
    c.insert(
        "s3 bucket",
        names
            .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
            .map(String::from)
            .collect(),
    );
    let out = aws_sdk_sqs::Client::new(&sdk)
        .list_queues()
        .send()
        .await
        .unwrap();
    let urls = out.queue_urls().iter().filter(|u| u.ends_with(&suffix));
    c.insert("sqs queue", urls.cloned().collect());

    let out = aws_sdk_iam::Client::new(&sdk)
        .list_roles()
        .send()
        .await
        .unwrap();
    let names = out.roles().iter().map(|r| r.role_name());
    c.insert(
        "iam role",
        names
            .filter(|n| n.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let out = logs.describe_log_groups().send().await.unwrap();
    let names = out.log_groups().iter().filter_map(|g| g.log_group_name());
    let ours = |n: &&str| {
        n.contains("payment-") && (n.ends_with(&suffix) || n.contains(&format!("{suffix}/")))
    };
    c.insert("log group", names.filter(ours).map(String::from).collect());

    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let out = lambda.list_functions().send().await.unwrap();
    let names = out.functions().iter().filter_map(|f| f.function_name());
    let functions: Vec<String> = names
        .filter(|n| n.ends_with(&suffix))
        .map(String::from)
        .collect();
    let out = lambda.list_event_source_mappings().send().await.unwrap();
    // A mapping invokes a function's alias `live` (on moto: the version it resolved to).
    let ids = out.event_source_mappings().iter().filter(|m| {
        m.function_arn().is_some_and(|a| {
            functions
                .iter()
                .any(|f| a.contains(&format!(":function:{f}:")) || a.ends_with(&format!(":{f}")))
        })
    });
    c.insert(
        "event source mapping",
        ids.filter_map(|m| m.uuid()).map(String::from).collect(),
    );
    c.insert("lambda function", functions);

    let api = aws_sdk_apigateway::Client::new(&sdk);
    let out = api.get_rest_apis().send().await.unwrap();
    let names = out
        .items()
        .iter()
        .filter(|a| a.name().is_some_and(|n| n.ends_with(&suffix)));
    c.insert(
        "rest api",
        names.filter_map(|a| a.id()).map(String::from).collect(),
    );
    let out = api.get_api_keys().send().await.unwrap();
    let keys = out
        .items()
        .iter()
        .filter(|k| k.name().is_some_and(|n| n.ends_with(&suffix)));
    c.insert(
        "api key",
        keys.filter_map(|k| k.id()).map(String::from).collect(),
    );
    let out = api.get_usage_plans().send().await.unwrap();
    let plans = out
        .items()
        .iter()
        .filter(|p| p.name().is_some_and(|n| n.ends_with(&suffix)));
    c.insert(
        "usage plan",
        plans.filter_map(|p| p.id()).map(String::from).collect(),
    );

    let sns = aws_sdk_sns::Client::new(&sdk);
    let out = sns.list_topics().send().await.unwrap();
    let arns = out.topics().iter().filter_map(|t| t.topic_arn());
    c.insert(
        "sns topic",
        arns.filter(|a| a.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );
    let out = sns.list_subscriptions().send().await.unwrap();
    let subs = out
        .subscriptions()
        .iter()
        .filter(|s| s.topic_arn().is_some_and(|a| a.ends_with(&suffix)));
    c.insert(
        "sns subscription",
        subs.filter_map(|s| s.subscription_arn())
            .map(String::from)
            .collect(),
    );

    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let out = cw.describe_alarms().send().await.unwrap();
    let names = out.metric_alarms().iter().filter_map(|a| a.alarm_name());
    c.insert(
        "alarm",
        names
            .filter(|n| n.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );
    let out = cw.list_dashboards().send().await.unwrap();
    let names = out
        .dashboard_entries()
        .iter()
        .filter_map(|d| d.dashboard_name());
    c.insert(
        "dashboard",
        names
            .filter(|n| n.ends_with(&suffix))
            .map(String::from)
            .collect(),
    );

    let waf = aws_sdk_wafv2::Client::new(&sdk);
    let out = waf
        .list_web_acls()
        .scope(aws_sdk_wafv2::types::Scope::Regional);
    let out = out.send().await.unwrap();
    let acls = out
        .web_acls()
        .iter()
        .filter(|a| a.name().is_some_and(|n| n.ends_with(&suffix)));
    c.insert(
        "web acl",
        acls.filter_map(|a| a.arn()).map(String::from).collect(),
    );

    let backup = aws_sdk_backup::Client::new(&sdk);
    let out = backup.list_backup_vaults().send().await.unwrap();
    let vaults = out
        .backup_vault_list()
        .iter()
        .filter_map(|v| v.backup_vault_name())
        .filter(|n| n.ends_with(&suffix));
    c.insert("backup vault", vaults.map(String::from).collect());
    let out = backup.list_backup_plans().send().await.unwrap();
    let plans: Vec<String> = out
        .backup_plans_list()
        .iter()
        .filter(|p| p.deletion_date().is_none())
        .filter(|p| p.backup_plan_name().is_some_and(|n| n.ends_with(&suffix)))
        .filter_map(|p| p.backup_plan_id())
        .map(String::from)
        .collect();
    let mut selections = Vec::new();
    for plan in &plans {
        let out = backup.list_backup_selections().backup_plan_id(plan);
        let out = out.send().await.unwrap();
        let ids = out
            .backup_selections_list()
            .iter()
            .filter_map(|s| s.selection_id());
        selections.extend(ids.map(String::from));
    }
    c.insert("backup plan", plans);
    c.insert("backup selection", selections);
    c
}
