//! The data layer (RDS, DynamoDB, S3, SQS) against the emulator: every setting read back
//! through the SDK (never through payctl's state file), idempotent re-runs, adoption
//! without state, drift repair, teardown with and without a final snapshot, the
//! non-empty audit bucket guard, and prod's protections.

mod common;

use aws_sdk_dynamodb::types::{
    BillingMode, KeyType, PointInTimeRecoverySpecification, PointInTimeRecoveryStatus,
    ScalarAttributeType, SseStatus, SseType, StreamViewType,
};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ExpirationStatus, ObjectOwnership, ServerSideEncryption,
    TransitionStorageClass, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use std::collections::{BTreeMap, BTreeSet};

/// moto's fixed account id.
const ACCOUNT: &str = "123456789012";

/// The names the spec gives every data-layer resource of an environment.
struct Names {
    db: String,
    subnet_group: String,
    table: String,
    bucket: String,
    queue: String,
    dlq: String,
}

fn names(env: &str) -> Names {
    Names {
        db: format!("payment-db-{env}"),
        subnet_group: format!("payment-db-subnets-{env}"),
        table: format!("payment-transactions-{env}"),
        bucket: format!("payment-audit-{env}-{ACCOUNT}-{REGION}"),
        queue: format!("payment-retry-{env}"),
        dlq: format!("payment-retry-dlq-{env}"),
    }
}

async fn rds(stack: &Stack) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(&stack.sdk().await)
}

async fn dynamodb(stack: &Stack) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&stack.sdk().await)
}

async fn sqs(stack: &Stack) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&stack.sdk().await)
}

/// Path-style addressing: the emulator is `http://127.0.0.1:PORT`.
async fn s3(stack: &Stack) -> aws_sdk_s3::Client {
    let sdk = stack.sdk().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The ARN of the KMS key behind `id` (a key id, key ARN or alias).
async fn key_arn(stack: &Stack, id: &str) -> String {
    stack
        .kms()
        .await
        .describe_key()
        .key_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe key {id}: {e:?}"))
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

async fn alias_key_arn(stack: &Stack, purpose: &str) -> String {
    key_arn(stack, &format!("alias/payment-{purpose}-{}", stack.env)).await
}

fn outputs(stack: &Stack) -> serde_json::Value {
    let run = stack.must(&["outputs", "--json"]);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("outputs --json is not JSON ({e}): {}", run.stdout))
}

fn stamp(t: Option<&aws_sdk_s3::primitives::DateTime>) -> String {
    t.map(|t| format!("{}.{:09}", t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

/// Every data-layer resource in the emulator (each test has its own), plus the env's VPC.
/// Creation times ride along so that a delete-and-recreate under the same name shows up.
async fn inventory(stack: &Stack) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut inv: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();

    let vpcs = stack
        .ec2()
        .await
        .describe_vpcs()
        .filters(tag_filter("Environment", &stack.env))
        .send()
        .await
        .unwrap();
    inv.insert(
        "vpc",
        vpcs.vpcs()
            .iter()
            .map(|v| v.vpc_id().unwrap().to_string())
            .collect(),
    );

    let rds = rds(stack).await;
    let dbs = rds.describe_db_instances().send().await.unwrap();
    inv.insert(
        "db_instance",
        dbs.db_instances()
            .iter()
            .map(|d| {
                format!(
                    "{}@{}",
                    d.db_instance_identifier().unwrap(),
                    stamp(d.instance_create_time())
                )
            })
            .collect(),
    );
    let groups = rds.describe_db_subnet_groups().send().await.unwrap();
    inv.insert(
        "db_subnet_group",
        groups
            .db_subnet_groups()
            .iter()
            .map(|g| g.db_subnet_group_name().unwrap().to_string())
            .filter(|n| n.starts_with("payment-"))
            .collect(),
    );

    let ddb = dynamodb(stack).await;
    let mut tables = BTreeSet::new();
    for name in ddb.list_tables().send().await.unwrap().table_names() {
        let t = ddb.describe_table().table_name(name).send().await.unwrap();
        let created = t.table().and_then(|t| t.creation_date_time());
        tables.insert(format!("{name}@{}", stamp(created)));
    }
    inv.insert("table", tables);

    let buckets = s3(stack).await.list_buckets().send().await.unwrap();
    inv.insert(
        "bucket",
        buckets
            .buckets()
            .iter()
            .map(|b| format!("{}@{}", b.name().unwrap(), stamp(b.creation_date())))
            .collect(),
    );

    let sqs = sqs(stack).await;
    let mut queues = BTreeSet::new();
    for url in sqs.list_queues().send().await.unwrap().queue_urls() {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::CreatedTimestamp)
            .send()
            .await
            .unwrap();
        let created = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::CreatedTimestamp))
            .cloned()
            .unwrap_or_default();
        queues.insert(format!("{url}@{created}"));
    }
    inv.insert("queue", queues);
    inv
}

fn counts(inv: &BTreeMap<&'static str, BTreeSet<String>>) -> BTreeMap<&'static str, usize> {
    inv.iter().map(|(k, v)| (*k, v.len())).collect()
}

fn expected_counts() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("vpc", 1),
        ("db_instance", 1),
        ("db_subnet_group", 1),
        ("table", 1),
        ("bucket", 2),
        ("queue", 2),
    ])
}

async fn db_instance(stack: &Stack) -> aws_sdk_rds::types::DbInstance {
    let id = names(&stack.env).db;
    let out = rds(stack)
        .await
        .describe_db_instances()
        .db_instance_identifier(&id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {id}: {e:?}"));
    assert_eq!(out.db_instances().len(), 1);
    out.db_instances()[0].clone()
}

async fn pitr_status(stack: &Stack) -> Option<PointInTimeRecoveryStatus> {
    let out = dynamodb(stack)
        .await
        .describe_continuous_backups()
        .table_name(names(&stack.env).table)
        .send()
        .await
        .unwrap();
    out.continuous_backups_description()
        .and_then(|c| c.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .cloned()
}

async fn versioning_status(stack: &Stack) -> Option<BucketVersioningStatus> {
    common::bucket_versioning(&stack.moto.endpoint, &names(&stack.env).bucket).await
}

/// Ids of the manual snapshots of the env's DB instance whose name marks a final snapshot.
async fn final_snapshots(stack: &Stack) -> BTreeSet<String> {
    let db = names(&stack.env).db;
    let out = rds(stack)
        .await
        .describe_db_snapshots()
        .db_instance_identifier(&db)
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    out.db_snapshots()
        .iter()
        .map(|s| s.db_snapshot_identifier().unwrap().to_string())
        .filter(|id| id.starts_with(&format!("{db}-final-")))
        .collect()
}

/// Reads every data-layer setting back through the SDK and checks it against the spec.
async fn check_data_layer(stack: &Stack, prod: bool) {
    let out = outputs(stack);
    let vpc_id = out["VPCId"].as_str().expect("VPCId output").to_string();
    check_rds(stack, prod, &vpc_id, &out).await;
    check_dynamodb(stack, prod, &out).await;
    check_s3(stack, &out).await;
    check_sqs(stack, &out).await;
}

async fn check_rds(stack: &Stack, prod: bool, vpc_id: &str, out: &serde_json::Value) {
    let env = stack.env.as_str();
    let n = names(env);
    let ec2 = stack.ec2().await;
    let rds = rds(stack).await;

    // The subnet group spans exactly the three private subnets of the env's VPC.
    let subnets = ec2
        .describe_subnets()
        .filters(filter("vpc-id", vpc_id))
        .send()
        .await
        .unwrap();
    let private: BTreeSet<String> = subnets
        .subnets()
        .iter()
        .filter(|s| {
            tags_of(s.tags())
                .get("Name")
                .is_some_and(|n| n.starts_with("payment-private-"))
        })
        .map(|s| s.subnet_id().unwrap().to_string())
        .collect();
    assert_eq!(private.len(), 3, "private subnets of {vpc_id}");
    let group = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&n.subnet_group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("subnet group {}: {e:?}", n.subnet_group));
    let group = &group.db_subnet_groups()[0];
    let members: BTreeSet<String> = group
        .subnets()
        .iter()
        .map(|s| s.subnet_identifier().unwrap().to_string())
        .collect();
    assert_eq!(members, private, "DB subnet group subnets");
    assert_eq!(group.vpc_id(), Some(vpc_id));

    let db = db_instance(stack).await;
    assert_eq!(db.engine(), Some("postgres"));
    let version = db.engine_version().unwrap_or_default();
    assert!(version.starts_with("17"), "engine version {version}");
    assert_eq!(db.publicly_accessible(), Some(false), "publicly accessible");
    assert_eq!(db.storage_encrypted(), Some(true), "storage encrypted");
    let rds_key = alias_key_arn(stack, "rds").await;
    let storage_key = db.kms_key_id().expect("DB instance KMS key");
    assert_eq!(
        key_arn(stack, storage_key).await,
        rds_key,
        "storage key is the RDS key"
    );
    assert_eq!(db.backup_retention_period(), Some(30));
    assert_eq!(db.auto_minor_version_upgrade(), Some(true));
    assert!(
        db.enabled_cloudwatch_logs_exports()
            .iter()
            .any(|l| l == "postgresql"),
        "log exports {:?}",
        db.enabled_cloudwatch_logs_exports()
    );
    assert_eq!(db.copy_tags_to_snapshot(), Some(true));
    let secret = db
        .master_user_secret()
        .expect("ManageMasterUserPassword: a master user secret");
    assert!(
        secret
            .secret_arn()
            .is_some_and(|a| a.starts_with("arn:aws:secretsmanager:")),
        "secret ARN {:?}",
        secret.secret_arn()
    );
    let secret_key = secret.kms_key_id().expect("master user secret KMS key");
    assert_eq!(
        key_arn(stack, secret_key).await,
        rds_key,
        "master user secret key is the RDS key"
    );
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some(n.subnet_group.as_str())
    );

    let sg = ec2
        .describe_security_groups()
        .filters(filter("vpc-id", vpc_id))
        .filters(filter("group-name", &format!("payment-rds-sg-{env}")))
        .send()
        .await
        .unwrap();
    assert_eq!(sg.security_groups().len(), 1, "the RDS security group");
    let sg_id = sg.security_groups()[0].group_id().unwrap().to_string();
    let db_groups: BTreeSet<String> = db
        .vpc_security_groups()
        .iter()
        .map(|g| g.vpc_security_group_id().unwrap().to_string())
        .collect();
    assert_eq!(db_groups, BTreeSet::from([sg_id]), "DB security groups");

    assert_eq!(db.multi_az(), Some(prod), "Multi-AZ");
    assert_eq!(
        db.deletion_protection(),
        Some(prod),
        "DB deletion protection"
    );

    let tags = rds
        .list_tags_for_resource()
        .resource_name(db.db_instance_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = tags
        .tag_list()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_standard_tags(&tags, env, "DB instance");

    let endpoint = db.endpoint().expect("DB endpoint");
    let want = format!(
        "{}:{}",
        endpoint.address().unwrap(),
        endpoint.port().unwrap()
    );
    assert_eq!(out["RDSEndpoint"].as_str(), Some(want.as_str()));
}

async fn check_dynamodb(stack: &Stack, prod: bool, out: &serde_json::Value) {
    let env = stack.env.as_str();
    let n = names(env);
    let ddb = dynamodb(stack).await;
    let described = ddb
        .describe_table()
        .table_name(&n.table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("table {}: {e:?}", n.table));
    let table = described.table().unwrap();
    let keys: Vec<(&str, &KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(keys, vec![("transaction_id", &KeyType::Hash)], "key schema");
    let key_attr = table
        .attribute_definitions()
        .iter()
        .find(|a| a.attribute_name() == "transaction_id")
        .expect("transaction_id attribute definition");
    assert_eq!(key_attr.attribute_type(), &ScalarAttributeType::S);
    assert_eq!(
        table.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let stream = table.stream_specification().expect("stream specification");
    assert!(stream.stream_enabled(), "stream enabled");
    assert_eq!(
        stream.stream_view_type(),
        Some(&StreamViewType::NewAndOldImages)
    );
    let sse = table.sse_description().expect("SSE description");
    assert_eq!(sse.status(), Some(&SseStatus::Enabled));
    assert_eq!(sse.sse_type(), Some(&SseType::Kms));
    assert_eq!(
        table.deletion_protection_enabled(),
        Some(prod),
        "table deletion protection"
    );
    assert_eq!(
        pitr_status(stack).await,
        Some(PointInTimeRecoveryStatus::Enabled),
        "PITR"
    );

    let tags = ddb
        .list_tags_of_resource()
        .resource_arn(table.table_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_standard_tags(&tags, env, "DynamoDB table");
    assert_eq!(out["DynamoDBTable"].as_str(), Some(n.table.as_str()));
}

/// True when `v` is the condition value "false" (as a string, a boolean or in a list).
fn is_false(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("false"),
        serde_json::Value::Bool(b) => !b,
        serde_json::Value::Array(a) => a.iter().any(is_false),
        _ => false,
    }
}

/// A Deny statement conditioned on `aws:SecureTransport` being false.
fn denies_insecure_transport(policy: &serde_json::Value) -> bool {
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        s => vec![s.clone()],
    };
    statements.iter().any(|s| {
        s["Effect"] == "Deny"
            && s["Condition"]
                .as_object()
                .is_some_and(|ops| ops.values().any(|m| is_false(&m["aws:SecureTransport"])))
    })
}

async fn check_s3(stack: &Stack, out: &serde_json::Value) {
    let env = stack.env.as_str();
    let bucket = names(env).bucket;
    let s3 = s3(stack).await;
    s3.head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("bucket {bucket}: {e:?}"));
    assert_eq!(out["S3AuditBucket"].as_str(), Some(bucket.as_str()));

    assert_eq!(
        versioning_status(stack).await,
        Some(BucketVersioningStatus::Enabled),
        "versioning"
    );

    let s3_key = alias_key_arn(stack, "s3").await;
    let enc = s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rules = enc
        .server_side_encryption_configuration()
        .expect("encryption configuration")
        .rules();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let default = rules[0]
        .apply_server_side_encryption_by_default()
        .expect("default encryption");
    assert_eq!(default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    let configured = default.kms_master_key_id().expect("default KMS key");
    assert_eq!(
        key_arn(stack, configured).await,
        s3_key,
        "bucket key is the S3 key"
    );
    assert_eq!(rules[0].bucket_key_enabled(), Some(true), "bucket key");

    let pab = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let pab = pab
        .public_access_block_configuration()
        .expect("public access block");
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true)),
        "public access block"
    );

    let policy = s3.get_bucket_policy().bucket(&bucket).send().await.unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(policy.policy().expect("bucket policy")).unwrap();
    assert!(
        denies_insecure_transport(&policy),
        "no TLS-only deny: {policy}"
    );

    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let enabled: Vec<_> = lifecycle
        .rules()
        .iter()
        .filter(|r| r.status() == &ExpirationStatus::Enabled)
        .collect();
    assert!(
        enabled.iter().any(|r| r.transitions().iter().any(|t| {
            t.days() == Some(90) && t.storage_class() == Some(&TransitionStorageClass::Glacier)
        })),
        "current objects to GLACIER after 90 days: {:?}",
        lifecycle.rules()
    );
    assert!(
        enabled
            .iter()
            .any(|r| r.noncurrent_version_transitions().iter().any(|t| {
                t.noncurrent_days() == Some(90)
                    && t.storage_class() == Some(&TransitionStorageClass::Glacier)
            })),
        "noncurrent versions to GLACIER after 90 days: {:?}",
        lifecycle.rules()
    );

    let ownership = s3
        .get_bucket_ownership_controls()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let ownership: Vec<&ObjectOwnership> = ownership
        .ownership_controls()
        .expect("ownership controls")
        .rules()
        .iter()
        .map(|r| r.object_ownership())
        .collect();
    assert_eq!(ownership, vec![&ObjectOwnership::BucketOwnerEnforced]);

    let tags = s3
        .get_bucket_tagging()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_standard_tags(&tags, env, "audit bucket");
}

async fn queue_url(stack: &Stack, name: &str) -> String {
    sqs(stack)
        .await
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue {name}: {e:?}"))
        .queue_url()
        .unwrap()
        .to_string()
}

async fn check_sqs(stack: &Stack, out: &serde_json::Value) {
    let env = stack.env.as_str();
    let n = names(env);
    let sqs = sqs(stack).await;
    let main_url = queue_url(stack, &n.queue).await;
    let dlq_url = queue_url(stack, &n.dlq).await;
    assert_eq!(out["SQSRetryQueue"].as_str(), Some(main_url.as_str()));

    let mut attrs = BTreeMap::new();
    for (which, url) in [("main", &main_url), ("dlq", &dlq_url)] {
        let got = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let got = got.attributes().cloned().unwrap_or_default();
        let get = |a: QueueAttributeName| got.get(&a).cloned();
        assert_eq!(
            get(QueueAttributeName::MessageRetentionPeriod).as_deref(),
            Some("1209600"),
            "{which} retention"
        );
        assert_eq!(
            get(QueueAttributeName::SqsManagedSseEnabled).as_deref(),
            Some("true"),
            "{which} SSE"
        );
        let tags = sqs.list_queue_tags().queue_url(url).send().await.unwrap();
        let tags: BTreeMap<String, String> = tags
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        assert_standard_tags(&tags, env, &format!("{which} queue"));
        attrs.insert(which, got);
    }
    let main = &attrs["main"];
    assert_eq!(
        main.get(&QueueAttributeName::VisibilityTimeout)
            .map(String::as_str),
        Some("180")
    );
    let redrive: serde_json::Value = serde_json::from_str(
        main.get(&QueueAttributeName::RedrivePolicy)
            .expect("main queue redrive policy"),
    )
    .unwrap();
    let dlq_arn = attrs["dlq"][&QueueAttributeName::QueueArn].as_str();
    assert_eq!(redrive["deadLetterTargetArn"].as_str(), Some(dlq_arn));
    let max_receive = redrive["maxReceiveCount"]
        .as_u64()
        .or_else(|| redrive["maxReceiveCount"].as_str()?.parse().ok());
    // 15 receives outlast a 2-hour outage with the processor's backoff (the 13th comes
    // about 2 hours after the first: 30 s doubling to 15 minutes).
    assert_eq!(max_receive, Some(15), "{redrive}");
}

/// After `down`: nothing of the env's data layer (nor its VPC) is left.
async fn assert_data_layer_gone(stack: &Stack) {
    assert_gone(stack, false).await;
}

/// A production teardown keeps the audit bucket and its access log bucket: all else of
/// the data layer is gone.
async fn assert_data_layer_gone_but_the_bucket(stack: &Stack) {
    assert_gone(stack, true).await;
}

async fn assert_gone(stack: &Stack, bucket_kept: bool) {
    let n = names(&stack.env);
    let dbs = rds(stack)
        .await
        .describe_db_instances()
        .send()
        .await
        .unwrap();
    assert!(
        !dbs.db_instances()
            .iter()
            .any(|d| d.db_instance_identifier() == Some(n.db.as_str())),
        "DB instance {} left behind",
        n.db
    );
    let tables = dynamodb(stack).await.list_tables().send().await.unwrap();
    assert!(
        !tables.table_names().contains(&n.table),
        "table left behind: {:?}",
        tables.table_names()
    );
    let queues = sqs(stack)
        .await
        .list_queues()
        .queue_name_prefix("payment-retry-")
        .send()
        .await
        .unwrap();
    let suffix = format!("-{}", stack.env);
    let left: Vec<_> = queues
        .queue_urls()
        .iter()
        .filter(|u| u.ends_with(&suffix))
        .collect();
    assert!(left.is_empty(), "queues left behind: {left:?}");
    let bucket_left = s3(stack)
        .await
        .head_bucket()
        .bucket(&n.bucket)
        .send()
        .await
        .is_ok();
    assert_eq!(bucket_left, bucket_kept, "bucket {}", n.bucket);
    let mut inv = inventory(stack).await;
    if bucket_kept {
        assert_eq!(inv.remove("bucket").map(|b| b.len()), Some(2), "{inv:?}");
    }
    assert!(
        inv.values().all(|ids| ids.is_empty()),
        "left behind: {inv:?}"
    );
}

#[tokio::test]
async fn dev_data_layer_settings_idempotency_and_teardown() {
    let stack = Stack::new("dev");
    let n = names("dev");
    stack.must(&["up"]);
    check_data_layer(&stack, false).await;
    let first = inventory(&stack).await;
    assert_eq!(counts(&first), expected_counts(), "{first:?}");

    // A second run changes nothing.
    let again = stack.must(&["up"]);
    assert_eq!(
        inventory(&stack).await,
        first,
        "second up created or replaced something"
    );
    assert!(!again.stderr.contains("created:"), "{}", again.stderr);

    // Without the state file, up adopts what exists instead of duplicating it.
    std::fs::remove_file(stack.state_file()).unwrap();
    stack.must(&["up"]);
    assert_eq!(
        inventory(&stack).await,
        first,
        "up without state duplicated or replaced resources"
    );
    check_data_layer(&stack, false).await;

    // Drift made out of band is repaired in place by the next up.
    dynamodb(&stack)
        .await
        .update_continuous_backups()
        .table_name(&n.table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(false)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3(&stack)
        .await
        .put_bucket_versioning()
        .bucket(&n.bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    rds(&stack)
        .await
        .modify_db_instance()
        .db_instance_identifier(&n.db)
        .backup_retention_period(7)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        pitr_status(&stack).await,
        Some(PointInTimeRecoveryStatus::Disabled)
    );
    assert_eq!(
        versioning_status(&stack).await,
        Some(BucketVersioningStatus::Suspended)
    );
    assert_eq!(db_instance(&stack).await.backup_retention_period(), Some(7));
    stack.must(&["up"]);
    assert_eq!(
        pitr_status(&stack).await,
        Some(PointInTimeRecoveryStatus::Enabled),
        "PITR not repaired"
    );
    assert_eq!(
        versioning_status(&stack).await,
        Some(BucketVersioningStatus::Enabled),
        "versioning not repaired"
    );
    assert_eq!(
        db_instance(&stack).await.backup_retention_period(),
        Some(30),
        "backup retention not repaired"
    );
    assert_eq!(
        inventory(&stack).await,
        first,
        "drift repair replaced something"
    );
    check_data_layer(&stack, false).await;

    // down takes a final snapshot by default, then removes everything.
    assert!(final_snapshots(&stack).await.is_empty());
    stack.must(&["down", "--yes"]);
    assert_data_layer_gone(&stack).await;
    let snapshots = final_snapshots(&stack).await;
    assert_eq!(snapshots.len(), 1, "one final snapshot: {snapshots:?}");

    // up right after down re-creates everything, queues included (same names).
    stack.must(&["up"]);
    check_data_layer(&stack, false).await;
    let again = inventory(&stack).await;
    assert_eq!(counts(&again), expected_counts(), "{again:?}");

    // --skip-final-snapshot deletes without a new snapshot.
    stack.must(&["down", "--yes", "--skip-final-snapshot"]);
    assert_data_layer_gone(&stack).await;
    assert_eq!(
        final_snapshots(&stack).await,
        snapshots,
        "--skip-final-snapshot took a snapshot"
    );
}

#[tokio::test]
async fn non_empty_bucket_blocks_down_until_purge() {
    let stack = Stack::new("qa");
    let n = names("qa");
    stack.must(&["up"]);
    let s3 = s3(&stack).await;

    // moto applies the TLS-only bucket policy as if its condition always held (it is
    // reached over plain HTTP, so aws:SecureTransport really is false) and refuses every
    // object call. Remove the policy out of band so that objects can be written here, and
    // so that --purge can delete them; on AWS over HTTPS the policy does not get in the way.
    s3.delete_bucket_policy()
        .bucket(&n.bucket)
        .send()
        .await
        .unwrap();
    for (key, body) in [
        ("receipts/r-1.json", "{\"v\":1}"),
        ("receipts/r-1.json", "{\"v\":2}"),
        ("reports/summary.txt", "ok"),
    ] {
        s3.put_object()
            .bucket(&n.bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                body.as_bytes(),
            ))
            .send()
            .await
            .unwrap();
    }
    let versions = s3
        .list_object_versions()
        .bucket(&n.bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 3, "two versions plus one object");

    let before = inventory(&stack).await;
    assert_eq!(counts(&before), expected_counts(), "{before:?}");
    let refused = stack.payctl(&["down", "--yes"]);
    assert!(!refused.ok, "down deleted a non-empty audit bucket");
    assert!(refused.stderr.contains("--purge"), "{}", refused.stderr);
    assert_eq!(
        inventory(&stack).await,
        before,
        "a refused down deleted something"
    );
    // Spelled out: the DB instance, table, queues and VPC are all still there.
    db_instance(&stack).await;
    dynamodb(&stack)
        .await
        .describe_table()
        .table_name(&n.table)
        .send()
        .await
        .unwrap();
    queue_url(&stack, &n.queue).await;
    queue_url(&stack, &n.dlq).await;
    assert_eq!(
        s3.list_object_versions()
            .bucket(&n.bucket)
            .send()
            .await
            .unwrap()
            .versions()
            .len(),
        3,
        "a refused down deleted objects"
    );

    stack.must(&["down", "--yes", "--purge"]);
    assert!(
        s3.head_bucket().bucket(&n.bucket).send().await.is_err(),
        "bucket survived --purge"
    );
    assert_data_layer_gone(&stack).await;
}

#[tokio::test]
async fn prod_data_layer_is_protected_and_keeps_a_final_snapshot() {
    let stack = Stack::new("prod");
    let n = names("prod");
    stack.must(&["up"]);
    check_data_layer(&stack, true).await;
    let db = db_instance(&stack).await;
    assert_eq!(db.multi_az(), Some(true));
    assert_eq!(db.deletion_protection(), Some(true));
    let before = inventory(&stack).await;
    assert_eq!(counts(&before), expected_counts(), "{before:?}");

    // Prod never goes without a final snapshot.
    let refused = stack.payctl(&["down", "--yes", "--skip-final-snapshot"]);
    assert!(!refused.ok, "prod down --skip-final-snapshot was accepted");
    assert_eq!(
        inventory(&stack).await,
        before,
        "a refused down deleted something"
    );
    assert_eq!(
        db_instance(&stack).await.deletion_protection(),
        Some(true),
        "a refused down lifted the DB deletion protection"
    );
    let table = dynamodb(&stack)
        .await
        .describe_table()
        .table_name(&n.table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        table.table().unwrap().deletion_protection_enabled(),
        Some(true),
        "a refused down lifted the table deletion protection"
    );
    assert!(final_snapshots(&stack).await.is_empty());

    // Prod's --purge is refused before anything is touched (tests/production.rs has more).
    let refused = stack.payctl(&["down", "--yes", "--purge"]);
    assert!(!refused.ok, "prod down --purge was accepted");
    assert_eq!(
        inventory(&stack).await,
        before,
        "a refused down deleted something"
    );

    stack.must(&["down", "--yes"]);
    let snapshots = final_snapshots(&stack).await;
    assert_eq!(
        snapshots.len(),
        1,
        "one manual payment-db-prod-final-* snapshot: {snapshots:?}"
    );
    // The audit bucket is kept (prod keeps its audit trail); the rest of the data layer
    // is gone, the table after a backup.
    assert!(
        s3(&stack)
            .await
            .head_bucket()
            .bucket(&n.bucket)
            .send()
            .await
            .is_ok(),
        "prod down deleted the audit bucket"
    );
    let backups = dynamodb(&stack)
        .await
        .list_backups()
        .table_name(&n.table)
        .send()
        .await
        .unwrap();
    assert_eq!(backups.backup_summaries().len(), 1, "{backups:?}");
    assert_data_layer_gone_but_the_bucket(&stack).await;
}

/// The standard tag every resource here loses in the tag-repair test.
const STRIPPED: &str = "Team";

/// `plan` names each of `addresses` (and nothing else) as a change, with the drift line
/// `tags: missing Team → set` beneath it, and exits 2.
fn assert_plans_retagging(stack: &Stack, addresses: &[String]) {
    let run = stack.payctl(&["plan"]);
    assert_eq!(run.code, Some(2), "plan:\n{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let wanted = format!("    tags: missing {STRIPPED} → set");
    for address in addresses {
        let head = format!("~ {address}");
        let at = lines
            .iter()
            .position(|l| *l == head || l.starts_with(&format!("{head} ")))
            .unwrap_or_else(|| panic!("no `{head}` line in the plan:\n{}", run.stdout));
        assert_under_line(&run.stdout, at, &wanted, address);
    }
    let changes = lines
        .iter()
        .filter(|l| l.starts_with(['+', '~', '-']))
        .count();
    assert_eq!(
        changes,
        addresses.len(),
        "only the untagged resources:\n{}",
        run.stdout
    );
}

/// A standard tag removed out of band from every taggable resource of the data and
/// security layers is shown by `plan` and put back by `up` (read back through the SDK);
/// the resources are the same ones, and `plan` then has nothing to do.
#[tokio::test]
async fn missing_standard_tags_are_planned_and_put_back() {
    let stack = Stack::new("retag");
    let n = names("retag");
    stack.must(&["up"]);
    let first = inventory(&stack).await;
    let team = [STRIPPED.to_string()];

    // RDS: the instance and its subnet group.
    let rds = rds(&stack).await;
    let db_arn = db_instance(&stack)
        .await
        .db_instance_arn()
        .unwrap()
        .to_string();
    let groups = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&n.subnet_group)
        .send()
        .await
        .unwrap();
    let group_arn = groups.db_subnet_groups()[0]
        .db_subnet_group_arn()
        .unwrap()
        .to_string();
    for arn in [&db_arn, &group_arn] {
        rds.remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(team.to_vec()))
            .send()
            .await
            .unwrap();
    }
    // DynamoDB.
    let ddb = dynamodb(&stack).await;
    let table = ddb
        .describe_table()
        .table_name(&n.table)
        .send()
        .await
        .unwrap();
    let table_arn = table.table().unwrap().table_arn().unwrap().to_string();
    ddb.untag_resource()
        .resource_arn(&table_arn)
        .set_tag_keys(Some(team.to_vec()))
        .send()
        .await
        .unwrap();
    // SQS: both queues.
    let sqs = sqs(&stack).await;
    let queues = [
        queue_url(&stack, &n.queue).await,
        queue_url(&stack, &n.dlq).await,
    ];
    for url in &queues {
        sqs.untag_queue()
            .queue_url(url)
            .set_tag_keys(Some(team.to_vec()))
            .send()
            .await
            .unwrap();
    }
    // S3 replaces the whole tag set.
    let s3 = s3(&stack).await;
    let tagging = s3
        .get_bucket_tagging()
        .bucket(&n.bucket)
        .send()
        .await
        .unwrap();
    let kept: Vec<aws_sdk_s3::types::Tag> = tagging
        .tag_set()
        .iter()
        .filter(|t| t.key() != STRIPPED)
        .cloned()
        .collect();
    let tagging = aws_sdk_s3::types::Tagging::builder()
        .set_tag_set(Some(kept))
        .build()
        .unwrap();
    s3.put_bucket_tagging()
        .bucket(&n.bucket)
        .tagging(tagging)
        .send()
        .await
        .unwrap();
    // KMS: the three keys.
    let kms = stack.kms().await;
    let mut keys = Vec::new();
    for purpose in ["rds", "s3", "sns"] {
        let arn = alias_key_arn(&stack, purpose).await;
        kms.untag_resource()
            .key_id(&arn)
            .set_tag_keys(Some(team.to_vec()))
            .send()
            .await
            .unwrap();
        keys.push(arn);
    }

    let addresses: Vec<String> = [
        "rds_instance.main",
        "rds_subnet_group.main",
        "dynamodb_table.transactions",
        "sqs_queue.retry",
        "sqs_queue.dlq",
        "s3_bucket.audit",
        "kms_key.rds",
        "kms_key.s3",
        "kms_key.sns",
    ]
    .map(String::from)
    .to_vec();
    assert_plans_retagging(&stack, &addresses);

    stack.must(&["up"]);
    check_data_layer(&stack, false).await;
    let group_tags = rds
        .list_tags_for_resource()
        .resource_name(&group_arn)
        .send()
        .await
        .unwrap();
    let group_tags: BTreeMap<String, String> = group_tags
        .tag_list()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_standard_tags(&group_tags, "retag", "DB subnet group");
    for arn in &keys {
        let out = kms.list_resource_tags().key_id(arn).send().await.unwrap();
        let tags: BTreeMap<String, String> = out
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
            .collect();
        assert_standard_tags(&tags, "retag", &format!("KMS key {arn}"));
    }
    assert_eq!(
        inventory(&stack).await,
        first,
        "retagging replaced something"
    );
    let run = stack.payctl(&["plan"]);
    assert_eq!(
        run.code,
        Some(0),
        "plan after up:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

/// The database's TLS and authentication settings: the stack's parameter group (family
/// of the engine's major version) forces TLS and logs connections, the CA is pinned, IAM
/// database authentication is on; all read back from the emulator. On a production
/// instance what needs a restart (another parameter group, another CA) is put back as
/// pending, `ApplyImmediately=false`, and never by a reboot; `plan` and `verify` report
/// the pending reboot until an operator reboots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_database_forces_tls_and_leaves_what_needs_a_reboot_to_an_operator() {
    use common::proxy::{Proxy, Rewrite};
    let stack = Stack::new("prod");
    let n = names("prod");
    stack.must(&["up"]);
    let rds = rds(&stack).await;
    let db = db_instance(&stack).await;
    let group = "payment-db-params-prod";
    let attached = db.db_parameter_groups().first().unwrap();
    assert_eq!(attached.db_parameter_group_name(), Some(group));
    assert_eq!(db.ca_certificate_identifier(), Some("rds-ca-rsa2048-g1"));
    assert_eq!(db.iam_database_authentication_enabled(), Some(true));
    let groups = rds
        .describe_db_parameter_groups()
        .db_parameter_group_name(group)
        .send()
        .await
        .unwrap();
    let family = groups.db_parameter_groups()[0].db_parameter_group_family();
    assert_eq!(family, Some("postgres17"));
    let params = rds
        .describe_db_parameters()
        .db_parameter_group_name(group)
        .send()
        .await
        .unwrap();
    let value = |name: &str| {
        params
            .parameters()
            .iter()
            .find(|p| p.parameter_name() == Some(name))
            .and_then(|p| p.parameter_value())
            .map(str::to_string)
    };
    assert_eq!(value("rds.force_ssl").as_deref(), Some("1"));
    assert_eq!(value("log_connections").as_deref(), Some("1"));

    // Out of band: someone else's parameter group and another CA.
    rds.create_db_parameter_group()
        .db_parameter_group_name("someone-elses")
        .db_parameter_group_family("postgres17")
        .description("not payctl's")
        .send()
        .await
        .unwrap();
    rds.modify_db_instance()
        .db_instance_identifier(&n.db)
        .db_parameter_group_name("someone-elses")
        .ca_certificate_identifier("rds-ca-rsa4096-g1")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.record("ModifyDBInstance");
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[]);
    assert!(run.ok, "{}", run.stderr);
    let bodies = proxy.bodies("ModifyDBInstance");
    assert_eq!(bodies.len(), 1, "one call puts both back: {bodies:?}");
    for part in [
        "DBParameterGroupName=payment-db-params-prod",
        "CACertificateIdentifier=rds-ca-rsa2048-g1",
        "ApplyImmediately=false",
    ] {
        assert!(bodies[0].contains(part), "{part} not in {}", bodies[0]);
    }
    assert_eq!(
        proxy.count("RebootDBInstance").0,
        0,
        "up rebooted the database"
    );

    // moto applies both at once. AWS leaves a newly attached group `pending-reboot`
    // until the instance restarts ("Associating a DB parameter group with a DB instance",
    // https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_WorkingWithParamGroups.Associating.html):
    // the proxy answers as AWS does.
    proxy.rewrite(Rewrite {
        operation: "DescribeDBInstances".into(),
        times: usize::MAX,
        from: "<ParameterApplyStatus>in-sync</ParameterApplyStatus>".into(),
        to: "<ParameterApplyStatus>pending-reboot</ParameterApplyStatus>".into(),
    });
    let plan = stack.payctl_via(&proxy.endpoint, &["plan"], &[]);
    let pending = "reboot pending: parameter group payment-db-params-prod";
    assert!(
        plan.stdout.contains(pending),
        "{}\n{}",
        plan.stdout,
        plan.stderr
    );
    let verify = stack.payctl_via(&proxy.endpoint, &["verify", "--json"], &[]);
    assert!(!verify.ok, "verify passed with a reboot pending");
    let report: serde_json::Value = serde_json::from_str(&verify.stdout).unwrap();
    let tls = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["control"]
                .as_str()
                .unwrap()
                .starts_with("RDS server refuses")
        })
        .unwrap();
    assert_eq!(tls["status"], "FAIL");
    assert!(
        tls["why"].as_str().unwrap().contains("pending-reboot"),
        "{tls}"
    );
    assert_eq!(proxy.count("RebootDBInstance").0, 0);
}
