//! The audit bucket: all public access blocked (S3.8), a policy that denies requests
//! without TLS (S3.5), default encryption SSE-KMS with the stack's S3 key (S3.17),
//! versioning on (S3.14) and server access logging into the stack's log bucket (S3.9).
//! The log bucket: S3.8, S3.5 and S3.14 too, and SSE-S3, the encryption S3 server access
//! logging requires of its target.
//!
//! Versioning is read with `data::s3_bucket::versioning_of`, which also understands the
//! local emulator's answer (see docs/emulator.md).

use super::{Check, Control, Read, Target, fail_all, is_key, read, unreadable};
use crate::data::s3_bucket;
use crate::engine::Service;
use crate::security::kms_key;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};
use serde_json::Value;

pub const PUBLIC_ACCESS: Control = Control::new("S3 bucket blocks all public access", Some("S3.8"));
pub const TLS_ONLY: Control =
    Control::new("S3 bucket policy denies requests without TLS", Some("S3.5"));
pub const ENCRYPTION: Control = Control::new(
    "S3 default encryption is SSE-KMS with the stack's key",
    Some("S3.17"),
);
pub const VERSIONING: Control = Control::new("S3 bucket versioning is enabled", Some("S3.14"));
pub const ACCESS_LOGGING: Control = Control::new(
    "S3 audit bucket server access logging goes to the stack's log bucket",
    Some("S3.9"),
);
pub const LOG_ENCRYPTION: Control = Control::new(
    "S3 access log bucket default encryption is SSE-S3 (as log delivery requires)",
    None,
);

const AUDIT: [Control; 5] = [
    PUBLIC_ACCESS,
    TLS_ONLY,
    ENCRYPTION,
    VERSIONING,
    ACCESS_LOGGING,
];
const LOGS: [Control; 4] = [PUBLIC_ACCESS, TLS_ONLY, LOG_ENCRYPTION, VERSIONING];

pub async fn checks(t: &Target) -> Vec<Check> {
    let (mut audit, logs) = tokio::join!(audit_checks(t), log_checks(t));
    audit.extend(logs);
    audit
}

/// The bucket `addr` records, when it exists; else the FAIL of each of `controls`.
async fn bucket<'a>(
    t: &'a Target,
    addr: &str,
    controls: &[Control],
) -> Result<&'a str, Vec<Check>> {
    let Some(rec) = t.record(addr) else {
        return Err(fail_all(controls, addr, "not in the state file"));
    };
    let bucket = rec.id.as_str();
    let head = t.aws.s3.head_bucket().bucket(bucket).send().await;
    match read(head, Service::S3, "HeadBucket", bucket) {
        Read::Got(_) => Ok(bucket),
        Read::Gone => Err(fail_all(controls, bucket, "not found")),
        Read::Unreadable(why) => Err(fail_all(controls, bucket, &why)),
    }
}

async fn audit_checks(t: &Target) -> Vec<Check> {
    let bucket = match bucket(t, s3_bucket::ADDR, &AUDIT).await {
        Ok(bucket) => bucket,
        Err(fails) => return fails,
    };
    let key = t.record(&kms_key::address("s3"));
    let logs = t.record(s3_bucket::LOGS_ADDR).map(|r| r.id.as_str());
    let (a, b, c, d, e) = tokio::join!(
        public_access(t, bucket),
        tls_only(t, bucket),
        encryption(t, bucket, key),
        versioning(t, bucket),
        access_logging(t, bucket, logs),
    );
    vec![a, b, c, d, e]
}

async fn log_checks(t: &Target) -> Vec<Check> {
    let bucket = match bucket(t, s3_bucket::LOGS_ADDR, &LOGS).await {
        Ok(bucket) => bucket,
        Err(fails) => return fails,
    };
    let (a, b, c, d) = tokio::join!(
        public_access(t, bucket),
        tls_only(t, bucket),
        log_encryption(t, bucket),
        versioning(t, bucket),
    );
    vec![a, b, c, d]
}

async fn access_logging(t: &Target, bucket: &str, logs: Option<&str>) -> Check {
    let Some(logs) = logs else {
        return ACCESS_LOGGING.fail(
            bucket,
            "the log bucket (s3_bucket.access-logs) is not in the state file",
        );
    };
    let out = match t.aws.s3.get_bucket_logging().bucket(bucket).send().await {
        Ok(out) => out,
        Err(e) => return ACCESS_LOGGING.fail(bucket, unreadable("GetBucketLogging", bucket, e)),
    };
    match out.logging_enabled() {
        Some(l) if l.target_bucket() == logs => ACCESS_LOGGING.pass(
            bucket,
            format!("logs to {}/{}", l.target_bucket(), l.target_prefix()),
        ),
        Some(l) => ACCESS_LOGGING.fail(
            bucket,
            format!(
                "logs to {}, not the stack's log bucket {logs}",
                l.target_bucket()
            ),
        ),
        None => ACCESS_LOGGING.fail(bucket, "server access logging is off"),
    }
}

async fn log_encryption(t: &Target, bucket: &str) -> Check {
    let out = match t.aws.s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => out,
        Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            return LOG_ENCRYPTION.fail(bucket, "no default encryption");
        }
        Err(e) => return LOG_ENCRYPTION.fail(bucket, unreadable("GetBucketEncryption", bucket, e)),
    };
    let algorithm = out
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_string());
    match algorithm {
        Some(a) if a == ServerSideEncryption::Aes256.as_str() => {
            LOG_ENCRYPTION.pass(bucket, "SSE-S3 (AES256)")
        }
        Some(a) => LOG_ENCRYPTION.fail(
            bucket,
            format!("default encryption is {a}: S3 does not deliver access logs to it"),
        ),
        None => LOG_ENCRYPTION.fail(bucket, "no default encryption"),
    }
}

async fn public_access(t: &Target, bucket: &str) -> Check {
    let out = match t
        .aws
        .s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => out,
        // The operation models no errors: the code is the only way to tell.
        Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => {
            return PUBLIC_ACCESS.fail(bucket, "no public access block");
        }
        Err(e) => return PUBLIC_ACCESS.fail(bucket, unreadable("GetPublicAccessBlock", bucket, e)),
    };
    let Some(conf) = out.public_access_block_configuration() else {
        return PUBLIC_ACCESS.fail(bucket, "no public access block");
    };
    let off: Vec<&str> = [
        ("BlockPublicAcls", conf.block_public_acls()),
        ("IgnorePublicAcls", conf.ignore_public_acls()),
        ("BlockPublicPolicy", conf.block_public_policy()),
        ("RestrictPublicBuckets", conf.restrict_public_buckets()),
    ]
    .into_iter()
    .filter(|(_, on)| *on != Some(true))
    .map(|(name, _)| name)
    .collect();
    PUBLIC_ACCESS.judge(
        bucket,
        off.is_empty(),
        "all four public access blocks on",
        format!("off: {}", off.join(", ")),
    )
}

async fn tls_only(t: &Target, bucket: &str) -> Check {
    let out = match t.aws.s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => out,
        Err(e) if e.code() == Some("NoSuchBucketPolicy") => {
            return TLS_ONLY.fail(bucket, "no bucket policy");
        }
        Err(e) => return TLS_ONLY.fail(bucket, unreadable("GetBucketPolicy", bucket, e)),
    };
    let policy = out
        .policy()
        .and_then(|p| serde_json::from_str::<Value>(p).ok());
    TLS_ONLY.judge(
        bucket,
        policy.is_some_and(|p| denies_insecure_transport(&p, bucket)),
        "a Deny for aws:SecureTransport=false covers the bucket and its objects",
        "the policy has no Deny for requests without TLS on the bucket and its objects",
    )
}

/// One value or a list of them, as IAM policies allow.
fn values(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    }
}

/// True when a statement of `policy` denies every S3 action to everyone on the bucket
/// and its objects when `aws:SecureTransport` is false.
pub fn denies_insecure_transport(policy: &Value, bucket: &str) -> bool {
    let everyone = |p: Option<&Value>| match p {
        Some(Value::String(s)) => s == "*",
        Some(Value::Object(m)) => values(m.get("AWS")).iter().any(|v| v.as_str() == Some("*")),
        _ => false,
    };
    let all_actions = |a: Option<&Value>| {
        values(a)
            .iter()
            .any(|v| matches!(v.as_str(), Some("s3:*") | Some("*")))
    };
    let covers = |r: Option<&Value>, suffix: &str| {
        values(r).iter().filter_map(|v| v.as_str()).any(|r| {
            r == "*" || (r.starts_with("arn:") && r.ends_with(&format!(":::{bucket}{suffix}")))
        })
    };
    let insecure = |c: Option<&Value>| {
        let Some(Value::Object(bool_cond)) = c.and_then(|c| c.get("Bool")) else {
            return false;
        };
        bool_cond.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("aws:SecureTransport")
                && values(Some(v))
                    .iter()
                    .any(|v| v.as_str() == Some("false") || v.as_bool() == Some(false))
        })
    };
    values(policy.get("Statement")).iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Deny")
            && everyone(s.get("Principal"))
            && all_actions(s.get("Action"))
            && covers(s.get("Resource"), "")
            && covers(s.get("Resource"), "/*")
            && insecure(s.get("Condition"))
    })
}

async fn encryption(t: &Target, bucket: &str, key: Option<&crate::state::Record>) -> Check {
    let Some(key) = key else {
        return ENCRYPTION.fail(bucket, "the S3 key (kms_key.s3) is not in the state file");
    };
    let out = match t.aws.s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => out,
        Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            return ENCRYPTION.fail(bucket, "no default encryption");
        }
        Err(e) => return ENCRYPTION.fail(bucket, unreadable("GetBucketEncryption", bucket, e)),
    };
    let by_default = out
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default());
    let Some(by_default) = by_default else {
        return ENCRYPTION.fail(bucket, "no default encryption");
    };
    if by_default.sse_algorithm() != &ServerSideEncryption::AwsKms {
        return ENCRYPTION.fail(
            bucket,
            format!(
                "default encryption is {}",
                by_default.sse_algorithm().as_str()
            ),
        );
    }
    match by_default.kms_master_key_id() {
        Some(id) if is_key(id, key) => ENCRYPTION.pass(bucket, format!("SSE-KMS with {id}")),
        Some(id) => ENCRYPTION.fail(bucket, format!("SSE-KMS with {id}, not the stack's S3 key")),
        None => ENCRYPTION.fail(bucket, "SSE-KMS with the AWS-managed key, not the stack's"),
    }
}

async fn versioning(t: &Target, bucket: &str) -> Check {
    match s3_bucket::versioning_of(&t.aws.s3, bucket).await {
        Ok(Some(BucketVersioningStatus::Enabled)) => VERSIONING.pass(bucket, "versioning Enabled"),
        Ok(Some(s)) => VERSIONING.fail(bucket, format!("versioning {}", s.as_str())),
        Ok(None) => VERSIONING.fail(bucket, "versioning was never enabled"),
        Err(e) => VERSIONING.fail(bucket, format!("could not read versioning: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_stacks_tls_policy_passes_and_weaker_ones_fail() {
        let bucket = "payment-audit-dev-1-us-east-1";
        let policy = s3_bucket::tls_only_policy(bucket);
        assert!(denies_insecure_transport(&policy, bucket));
        assert!(!denies_insecure_transport(&policy, "another-bucket"));
        let mut objects_only = policy.clone();
        objects_only["Statement"][0]["Resource"] = json!(format!("arn:aws:s3:::{bucket}/*"));
        assert!(!denies_insecure_transport(&objects_only, bucket));
        let mut allow = policy.clone();
        allow["Statement"][0]["Effect"] = json!("Allow");
        assert!(!denies_insecure_transport(&allow, bucket));
        let mut no_condition = policy.clone();
        no_condition["Statement"][0]
            .as_object_mut()
            .unwrap()
            .remove("Condition");
        assert!(!denies_insecure_transport(&no_condition, bucket));
        let mut one_action = policy.clone();
        one_action["Statement"][0]["Action"] = json!(["s3:GetObject"]);
        assert!(!denies_insecure_transport(&one_action, bucket));
        // The same statement written with a principal map and a boolean still counts.
        let mut aws_star = policy;
        aws_star["Statement"][0]["Principal"] = json!({"AWS": "*"});
        aws_star["Statement"][0]["Condition"] = json!({"Bool": {"aws:SecureTransport": false}});
        assert!(denies_insecure_transport(&aws_star, bucket));
        assert!(!denies_insecure_transport(&json!({}), bucket));
    }
}
