//! No foreign bucket is trusted: every S3 request payctl sends (but `CreateBucket` and
//! `ListBuckets`) carries `ExpectedBucketOwner` — the stack's account for the audit
//! bucket, the caller's or the configured account for the state bucket. moto ignores the
//! header, so the test proxy plays S3's owner check (403 Access Denied when the header
//! names another account than the bucket's) and records every S3 request.

mod common;

use aws_sdk_s3::types::{
    BucketVersioningStatus, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use common::census::assert_nothing_left;
use common::proxy::{Proxy, S3Request};
use common::*;
use payctl::state::State;

const ACCOUNT: &str = "123456789012";
const OTHER: &str = "111122223333";
const STATE_BUCKET: &str = "payctl-state-owned";

fn audit_bucket(env: &str) -> String {
    format!("payment-audit-{env}-{ACCOUNT}-{REGION}")
}

/// Runs payctl against `endpoint` without `PAYCTL_STATE_DIR` (it conflicts with
/// `--state`), with extra environment variables.
fn remote_run(stack: &Stack, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = stack.command();
    cmd.env_remove("PAYCTL_STATE_DIR")
        .env("AWS_ENDPOINT_URL", endpoint);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(
        cmd.args(args)
            .args(["--env", &stack.env])
            .output()
            .expect("run payctl"),
    )
}

async fn s3(stack: &Stack) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::new(&stack.sdk().await)
}

/// A versioned state bucket with SSE-S3.
async fn make_state_bucket(stack: &Stack) {
    let s3 = s3(stack).await;
    s3.create_bucket()
        .bucket(STATE_BUCKET)
        .send()
        .await
        .unwrap();
    let versioning = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning()
        .bucket(STATE_BUCKET)
        .versioning_configuration(versioning)
        .send()
        .await
        .unwrap();
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .unwrap();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default)
        .build();
    let conf = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build()
        .unwrap();
    s3.put_bucket_encryption()
        .bucket(STATE_BUCKET)
        .server_side_encryption_configuration(conf)
        .send()
        .await
        .unwrap();
}

/// Every object version and delete marker in `bucket`.
async fn versions(stack: &Stack, bucket: &str) -> usize {
    let out = s3(stack)
        .await
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.versions().len() + out.delete_markers().len()
}

/// The requests to `bucket` that did not expect `owner` (CreateBucket and ListBuckets
/// take no owner).
fn without_owner<'a>(seen: &'a [S3Request], bucket: &str, owner: &str) -> Vec<&'a S3Request> {
    seen.iter()
        .filter(|r| r.bucket == bucket)
        .filter(|r| !["CreateBucket", "ListBuckets"].contains(&r.operation.as_str()))
        .filter(|r| r.expected_owner.as_deref() != Some(owner))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_s3_request_of_up_and_down_expects_the_stack_s_account() {
    let stack = Stack::new("dev");
    make_state_bucket(&stack).await;
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    // The proxy knows the owners, so a wrong or missing owner would also show as a 403.
    proxy.set_bucket_owner(STATE_BUCKET, ACCOUNT);
    proxy.set_bucket_owner(&audit_bucket("dev"), ACCOUNT);
    let logs = format!("payment-audit-logs-dev-{ACCOUNT}-{REGION}");
    proxy.set_bucket_owner(&logs, ACCOUNT);
    let url = format!("s3://{STATE_BUCKET}/payctl");
    for command in ["up", "down"] {
        let run = remote_run(&stack, &proxy.endpoint, &[command, "--state", &url], &[]);
        assert!(run.ok, "{command}:\n{}", run.stderr);
    }
    assert_nothing_left(&stack).await;

    let seen = proxy.s3_requests();
    let audit = audit_bucket("dev");
    for bucket in [audit.as_str(), logs.as_str(), STATE_BUCKET] {
        let bad = without_owner(&seen, bucket, ACCOUNT);
        assert!(bad.is_empty(), "{bucket}: {bad:?}");
    }
    // Every S3 request named one of the three buckets, and each had its say.
    let others: Vec<&S3Request> = seen
        .iter()
        .filter(|r| r.bucket != audit && r.bucket != logs && r.bucket != STATE_BUCKET)
        .collect();
    assert!(others.is_empty(), "{others:?}");
    let ops = |bucket: &str| -> Vec<&str> {
        seen.iter()
            .filter(|r| r.bucket == bucket)
            .map(|r| r.operation.as_str())
            .collect()
    };
    let audit_ops = ops(&audit);
    for op in [
        "HeadBucket",
        "CreateBucket",
        "PUT ?policy",
        "PUT ?encryption",
        "DeleteBucket",
    ] {
        assert!(audit_ops.contains(&op), "{op} missing: {audit_ops:?}");
    }
    let log_ops = ops(&logs);
    for op in ["CreateBucket", "PUT ?policy", "DeleteBucket"] {
        assert!(log_ops.contains(&op), "{op} missing: {log_ops:?}");
    }
    for create in seen.iter().filter(|r| r.operation == "CreateBucket") {
        assert_eq!(create.expected_owner, None, "CreateBucket takes no owner");
    }
    let state_ops = ops(STATE_BUCKET);
    for op in ["HeadBucket", "PutObject", "GetObject", "DeleteObject"] {
        assert!(state_ops.contains(&op), "{op} missing: {state_ops:?}");
    }
    assert_eq!(proxy.owner_denied(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_bucket_of_another_account_is_never_adopted_written_or_deleted() {
    let stack = Stack::new("dev");
    let bucket = audit_bucket("dev");
    // The predictable name, taken by another account (e.g. after a `down`).
    let s3 = s3(&stack).await;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.set_bucket_owner(&bucket, OTHER);

    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[]);
    assert!(!run.ok, "up accepted a foreign bucket:\n{}", run.stderr);
    let line = run.error_line();
    assert!(
        line.contains(&format!("S3 bucket {bucket}"))
            && line.contains("owned by another account")
            && line.contains(&format!("expecting owner {ACCOUNT}")),
        "{}",
        run.stderr
    );
    // Only asked, never changed: S3 refused the first request.
    let ops: Vec<String> = proxy
        .s3_requests()
        .into_iter()
        .filter(|r| r.bucket == bucket)
        .map(|r| r.operation)
        .collect();
    assert!(
        !ops.is_empty() && ops.iter().all(|op| op == "HeadBucket"),
        "{ops:?}"
    );
    assert!(proxy.owner_denied() >= 1);
    let state = State::load(&stack.state_file()).unwrap().unwrap();
    assert!(
        !state.resources.contains_key("s3_bucket.audit"),
        "recorded as payctl's"
    );

    // `down` refuses before deleting anything, and the bucket stays as it was.
    let run = stack.payctl_via(&proxy.endpoint, &["down"], &[]);
    assert!(!run.ok, "{}", run.stderr);
    assert!(
        run.error_line().contains("owned by another account"),
        "{}",
        run.stderr
    );
    let ops: Vec<String> = proxy
        .s3_requests()
        .into_iter()
        .filter(|r| r.bucket == bucket)
        .map(|r| r.operation)
        .collect();
    assert!(ops.iter().all(|op| op == "HeadBucket"), "{ops:?}");
    s3.head_bucket().bucket(&bucket).send().await.expect("kept");
    let tags = s3.get_bucket_tagging().bucket(&bucket).send().await;
    assert!(tags.is_err(), "tags written: {tags:?}");
    let policy = s3.get_bucket_policy().bucket(&bucket).send().await;
    assert!(policy.is_err(), "policy written: {policy:?}");
    let encryption = s3.get_bucket_encryption().bucket(&bucket).send().await;
    let kms = encryption.ok().and_then(|e| {
        e.server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm() == &ServerSideEncryption::AwsKms)
    });
    assert_ne!(kms, Some(true), "encryption written");
    assert!(
        common::bucket_versioning(&stack.moto.endpoint, &bucket)
            .await
            .is_none(),
        "versioning written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_bucket_of_another_account_is_refused_unless_the_setting_names_it() {
    let stack = Stack::new("dev");
    make_state_bucket(&stack).await;
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.set_bucket_owner(STATE_BUCKET, OTHER);
    let url = format!("s3://{STATE_BUCKET}/payctl");

    // The caller's account is expected by default: refused, nothing written.
    for args in [
        vec!["up", "--state", &url],
        vec!["plan", "--state", &url],
        vec!["outputs", "--state", &url],
    ] {
        let run = remote_run(&stack, &proxy.endpoint, &args, &[]);
        assert!(!run.ok, "{args:?} accepted");
        let line = run.error_line();
        assert!(
            line.contains(&format!(
                "state bucket {STATE_BUCKET} is owned by another account than {ACCOUNT}"
            )) && line.contains("--state-bucket-owner"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(versions(&stack, STATE_BUCKET).await, 0);
    assert_eq!(common::census::census(&stack).await["vpc"].len(), 0);
    let seen = proxy.s3_requests();
    assert!(
        seen.iter()
            .all(|r| r.operation == "HeadBucket" && r.expected_owner.as_deref() == Some(ACCOUNT)),
        "{seen:?}"
    );

    // A bad owner is one line, before any request.
    let before = proxy.s3_requests().len();
    let run = remote_run(
        &stack,
        &proxy.endpoint,
        &["plan", "--state", &url, "--state-bucket-owner", "12345"],
        &[],
    );
    assert!(!run.ok);
    assert!(
        run.error_line()
            .contains("--state-bucket-owner (PAYCTL_STATE_BUCKET_OWNER) \"12345\" is not an AWS account id (12 digits)"),
        "{}",
        run.stderr
    );
    assert_eq!(proxy.s3_requests().len(), before);

    // Named (the flag wins over the environment variable): the state is written there,
    // every request expecting that account.
    let dir = stack.home.path().join("local");
    std::fs::create_dir_all(&dir).unwrap();
    let local = State::new("dev", REGION, ACCOUNT);
    std::fs::write(
        dir.join("dev.json"),
        serde_json::to_vec_pretty(&local).unwrap(),
    )
    .unwrap();
    let dir_arg = dir.to_str().unwrap();
    let run = remote_run(
        &stack,
        &proxy.endpoint,
        &[
            "state",
            "push",
            "--state",
            &url,
            "--state-dir",
            dir_arg,
            "--state-bucket-owner",
            OTHER,
        ],
        &[("PAYCTL_STATE_BUCKET_OWNER", "444455556666")],
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(versions(&stack, STATE_BUCKET).await >= 1);
    let after = &proxy.s3_requests()[before..];
    assert!(
        after.iter().any(|r| r.operation == "PutObject"),
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .all(|r| r.expected_owner.as_deref() == Some(OTHER)),
        "{after:?}"
    );

    // In payctl.toml: `plan` reads the state from that bucket.
    std::fs::write(
        stack.home.path().join("payctl.toml"),
        format!("[defaults]\nstate_bucket_owner = \"{OTHER}\"\n"),
    )
    .unwrap();
    let run = remote_run(&stack, &proxy.endpoint, &["plan", "--state", &url], &[]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let pull = remote_run(
        &stack,
        &proxy.endpoint,
        &[
            "state",
            "pull",
            "--state",
            &url,
            "--state-dir",
            dir_arg,
            "--force",
        ],
        &[],
    );
    assert!(pull.ok, "{}", pull.stderr);
    assert!(
        without_owner(&proxy.s3_requests()[before..], STATE_BUCKET, OTHER).is_empty(),
        "{:?}",
        proxy.s3_requests()
    );
}
