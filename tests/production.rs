//! Production environments: `down` keeps everything needed to restore the data (the final
//! snapshot and its key, a backup of the table made and waited for before the table goes,
//! the audit bucket with its records and key), says so, and a later `up`, `plan` and
//! `down` work with what was kept. An env marked `production = true` gets the profile and
//! the guards, and its state file remembers it when the config file is gone.

mod common;

use common::proxy::{Hold, Proxy};
use common::*;
use serde_json::Value;
use std::time::Duration;

fn state(stack: &Stack) -> Value {
    serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap()
}

fn addresses_of(state: &Value, kind: &str) -> Vec<String> {
    state["resources"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|a| a.starts_with(&format!("{kind}.")))
        .cloned()
        .collect()
}

/// The state of the key behind `alias` (`None`: no such alias).
async fn key_behind(kms: &aws_sdk_kms::Client, alias: &str) -> Option<(String, String)> {
    let meta = kms.describe_key().key_id(alias).send().await.ok()?;
    let meta = meta.key_metadata().unwrap();
    Some((
        meta.arn().unwrap().to_string(),
        meta.key_state().unwrap().as_str().to_string(),
    ))
}

async fn final_backups(db: &aws_sdk_dynamodb::Client, env: &str) -> Vec<(String, String)> {
    let out = db.list_backups().send().await.unwrap();
    out.backup_summaries()
        .iter()
        .filter(|b| {
            b.backup_name()
                .unwrap_or_default()
                .starts_with(&format!("payment-transactions-{env}-final-"))
        })
        .map(|b| {
            (
                b.backup_name().unwrap().to_string(),
                b.backup_status().unwrap().as_str().to_string(),
            )
        })
        .collect()
}

/// A proxy that answers `DescribeBackup` with `status` for `secs` after the backup first
/// appears (moto makes every backup AVAILABLE at once).
async fn backup_held_as(stack: &Stack, status: &str, secs: u64) -> Proxy {
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.hold(Hold {
        operation: "DescribeBackup".into(),
        from: r#""BackupStatus": "AVAILABLE""#.into(),
        to: format!(r#""BackupStatus": "{status}""#),
        hold: Duration::from_secs(secs),
    });
    proxy
}

async fn table_exists(db: &aws_sdk_dynamodb::Client, env: &str) -> bool {
    db.describe_table()
        .table_name(format!("payment-transactions-{env}"))
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_down_keeps_the_data_and_its_keys_and_a_later_up_plan_and_down_use_them() {
    let stack = Stack::new("prod");
    stack.must(&["up"]);
    let sdk = stack.sdk().await;
    let (s3, kms, rds) = (
        aws_sdk_s3::Client::new(&sdk),
        aws_sdk_kms::Client::new(&sdk),
        aws_sdk_rds::Client::new(&sdk),
    );
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    assert_eq!(state(&stack)["production"], true, "up records production");
    let bucket = state(&stack)["resources"]["s3_bucket.audit"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // An audit record. moto applies the TLS-only policy as if every request were plain
    // HTTP (see tests/data_layer.rs): remove it out of band so that the object can be put.
    s3.delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("audit/2026/12/06/txn_1/1.json")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"{}"))
        .send()
        .await
        .unwrap();
    let (rds_key, _) = key_behind(&kms, "alias/payment-rds-prod").await.unwrap();
    let (s3_key, _) = key_behind(&kms, "alias/payment-s3-prod").await.unwrap();

    // --purge is refused for prod, naming the bucket and why, and changes nothing.
    let before = std::fs::read(stack.state_file()).unwrap();
    let refused = stack.payctl(&["down", "--yes", "--purge"]);
    assert!(!refused.ok, "prod down --purge was accepted");
    let line = refused.error_line();
    assert!(
        line.contains("--purge is refused for the production environment prod")
            && line.contains(&bucket)
            && line.contains("PCI DSS 10.5.1"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(stack.state_file()).unwrap(), before);
    assert!(final_backups(&dynamo, "prod").await.is_empty());

    // On AWS an on-demand backup is CREATING for a while; moto reports it AVAILABLE at
    // once, so the proxy holds it CREATING for 2 s after it first appears: the table may
    // only be deleted once the backup is AVAILABLE.
    let proxy = backup_held_as(&stack, "CREATING", 2).await;
    let down = stack.payctl_via(&proxy.endpoint, &["down", "--yes"], &[]);
    assert!(down.ok, "{}\n{}", down.stdout, down.stderr);
    assert!(
        proxy.rewritten("DescribeBackup") >= 1,
        "the backup was never seen CREATING: {:?}",
        proxy.counts()
    );
    assert!(proxy.count("DeleteTable").0 >= 1, "{:?}", proxy.counts());

    // The table is gone, its backup is there and AVAILABLE.
    assert!(!table_exists(&dynamo, "prod").await);
    let backups = final_backups(&dynamo, "prod").await;
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0].1, "AVAILABLE");
    let backup_name = &backups[0].0;
    let stamp = backup_name.trim_start_matches("payment-transactions-prod-final-");
    assert_eq!(stamp.len(), "20261206-101500".len(), "{backup_name}");
    // The final snapshot exists, encrypted with the RDS key, which is enabled with its alias.
    let snapshots = rds
        .describe_db_snapshots()
        .db_instance_identifier("payment-db-prod")
        .send()
        .await
        .unwrap();
    let snapshot = snapshots
        .db_snapshots()
        .iter()
        .find(|s| {
            s.db_snapshot_identifier()
                .unwrap_or_default()
                .starts_with("payment-db-prod-final-")
        })
        .expect("a final snapshot");
    let snapshot_name = snapshot.db_snapshot_identifier().unwrap().to_string();
    assert!(
        snapshot
            .kms_key_id()
            .is_some_and(|k| rds_key.ends_with(k.rsplit('/').next().unwrap())),
        "{snapshot:?}"
    );
    assert_eq!(
        key_behind(&kms, "alias/payment-rds-prod").await,
        Some((rds_key.clone(), "Enabled".into()))
    );
    // The audit bucket is kept with its record, its key enabled with its alias.
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key("audit/2026/12/06/txn_1/1.json")
        .send()
        .await;
    assert!(object.is_ok(), "the audit record is gone");
    assert_eq!(
        key_behind(&kms, "alias/payment-s3-prod").await,
        Some((s3_key.clone(), "Enabled".into()))
    );
    // The alert topic's key protects no data: it goes as before.
    assert_eq!(key_behind(&kms, "alias/payment-sns-prod").await, None);
    // A year of logs is kept: the log groups with their events, and their key.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix("/aws/lambda/payment-")
        .send()
        .await
        .unwrap();
    let kept_groups: Vec<&str> = groups
        .log_groups()
        .iter()
        .filter_map(|g| g.log_group_name())
        .filter(|n| n.ends_with("-prod"))
        .collect();
    assert_eq!(kept_groups.len(), 3, "{kept_groups:?}");
    let (logs_key, logs_key_state) = key_behind(&kms, "alias/payment-logs-prod")
        .await
        .expect("the logs key is kept");
    assert_eq!(logs_key_state, "Enabled");
    assert!(
        down.stdout.contains("/aws/lambda/payment-processor-prod"),
        "{}",
        down.stdout
    );
    assert!(down.stdout.contains(&logs_key), "{}", down.stdout);

    // The summary names each kept thing and how to restore or remove it.
    for name in [
        snapshot_name.as_str(),
        backup_name.as_str(),
        bucket.as_str(),
        "payment-audit-logs-prod-123456789012-us-east-1",
        "AWS Backup vault payment-backup-prod",
        &rds_key,
        &s3_key,
    ] {
        assert!(
            down.stdout.contains(name),
            "{name} not listed:\n{}",
            down.stdout
        );
    }
    // 11 before the access log bucket and the backup vault.
    assert!(down.stdout.contains("kept (13)"), "{}", down.stdout);
    assert!(
        down.stdout.contains(
            "aws dynamodb restore-table-from-backup --target-table-name payment-transactions-prod"
        ),
        "{}",
        down.stdout
    );
    assert!(
        down.stdout.contains(&format!(
            "aws rds restore-db-instance-from-db-snapshot --db-snapshot-identifier {snapshot_name}"
        )),
        "{}",
        down.stdout
    );
    assert!(down.stderr.contains("13 kept"), "{}", down.stderr);

    // The state file knows what was kept.
    let kept = state(&stack);
    assert_eq!(kept["production"], true);
    assert_eq!(kept["resources"]["s3_bucket.audit"]["id"], bucket.as_str());
    assert_eq!(kept["resources"]["kms_key.rds"]["arn"], rds_key.as_str());
    assert_eq!(kept["resources"]["kms_key.s3"]["arn"], s3_key.as_str());
    assert!(kept["resources"]["kms_key.rds"]["attrs"]["pending_deletion"].is_null());
    assert_eq!(
        addresses_of(&kept, "rds_snapshot"),
        vec![format!("rds_snapshot.{snapshot_name}")]
    );
    assert_eq!(
        addresses_of(&kept, "dynamodb_backup"),
        vec![format!("dynamodb_backup.{backup_name}")]
    );
    assert!(addresses_of(&kept, "ec2_vpc").is_empty());

    // A later up adopts the kept bucket and keys (the same ones), a plan then shows them
    // unchanged, and another down keeps them again.
    stack.must(&["up"]);
    let again = state(&stack);
    assert_eq!(again["resources"]["s3_bucket.audit"]["id"], bucket.as_str());
    assert_eq!(again["resources"]["kms_key.rds"]["arn"], rds_key.as_str());
    assert_eq!(again["resources"]["kms_key.s3"]["arn"], s3_key.as_str());
    let plan = stack.payctl(&["plan"]);
    for line in [
        "= s3_bucket.audit",
        "= s3_bucket.access-logs",
        "= backup_vault.main",
        "= kms_key.rds",
        "= kms_key.s3",
        "= kms_key.logs",
        "= log_group.processor",
    ] {
        assert!(
            plan.stdout.contains(line),
            "{line} missing:\n{}",
            plan.stdout
        );
    }
    stack.must(&["down", "--yes"]);
    assert_eq!(
        key_behind(&kms, "alias/payment-rds-prod").await,
        Some((rds_key, "Enabled".into()))
    );
    assert_eq!(
        key_behind(&kms, "alias/payment-s3-prod").await,
        Some((s3_key, "Enabled".into()))
    );
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_ok());
    assert_eq!(final_backups(&dynamo, "prod").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_fails_keeps_the_table() {
    let stack = Stack::new("prod");
    stack.must(&["up"]);
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk().await);
    // The backup ends DELETED instead of AVAILABLE (AWS: a backup can fail or be deleted
    // while it is made): the table must stay.
    let proxy = backup_held_as(&stack, "DELETED", 600).await;
    let down = stack.payctl_via(&proxy.endpoint, &["down", "--yes"], &[]);
    assert!(!down.ok, "down went on without a backup");
    assert!(
        down.stderr
            .contains("DynamoDB table payment-transactions-prod was not deleted")
            && down.stderr.contains("ended DELETED"),
        "{}",
        down.stderr
    );
    assert_eq!(proxy.count("DeleteTable").0, 0, "{:?}", proxy.counts());
    let table = dynamo
        .describe_table()
        .table_name("payment-transactions-prod")
        .send()
        .await
        .unwrap();
    assert_eq!(
        table.table().unwrap().deletion_protection_enabled(),
        Some(true),
        "the table lost its deletion protection"
    );
    // With the backup working again, the re-run finishes the job.
    stack.must(&["down", "--yes"]);
    assert!(!table_exists(&dynamo, "prod").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_marked_production_gets_the_profile_and_the_guards_even_without_its_config() {
    let stack = Stack::new("live");
    let config = stack.home.path().join("payctl.toml");
    std::fs::write(&config, "[env.live]\nproduction = true\n").unwrap();
    stack.must(&["up"]);
    let sdk = stack.sdk().await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("payment-db-live")
        .send()
        .await
        .unwrap();
    let db = &db.db_instances()[0];
    assert_eq!(db.multi_az(), Some(true));
    assert_eq!(db.deletion_protection(), Some(true));
    assert_eq!(state(&stack)["production"], true);

    let before = std::fs::read(stack.state_file()).unwrap();
    let refused = stack.payctl(&["down"]);
    assert!(
        refused.error_line().contains("without --yes"),
        "{}",
        refused.stderr
    );
    let refused = stack.payctl(&["down", "--yes", "--skip-final-snapshot"]);
    assert!(
        refused
            .error_line()
            .contains("--skip-final-snapshot is refused for the production environment live"),
        "{}",
        refused.stderr
    );

    // Without the config file, the state file still says production.
    std::fs::remove_file(&config).unwrap();
    let refused = stack.payctl(&["down", "--yes", "--skip-final-snapshot"]);
    assert!(
        refused
            .error_line()
            .contains("--skip-final-snapshot is refused for the production environment live"),
        "{}",
        refused.stderr
    );
    let refused = stack.payctl(&["local", "start-api", "--port", "0"]);
    assert!(!refused.ok);
    assert!(
        refused
            .error_line()
            .contains("environment live is a production environment (its state file"),
        "{}",
        refused.stderr
    );
    // `up` never applies the non-production profile to it.
    let refused = stack.payctl(&["up"]);
    assert!(
        refused
            .error_line()
            .contains("add `production = true` under [env.live]"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read(stack.state_file()).unwrap(),
        before,
        "a refused command changed the state"
    );
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("payment-db-live")
        .send()
        .await
        .unwrap();
    assert_eq!(db.db_instances()[0].deletion_protection(), Some(true));

    // A confirmed down of the production env keeps its data, as for prod.
    let down = stack.must(&["down", "--yes"]);
    assert!(down.stdout.contains("kept (13)"), "{}", down.stdout);
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    assert_eq!(final_backups(&dynamo, "live").await.len(), 1);
}
