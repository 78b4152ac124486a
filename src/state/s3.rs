//! The state kept in S3: `s3://BUCKET/PREFIX` holds `<PREFIX>/<env>.json` and its lock
//! `<PREFIX>/<env>.json.lock` (the same JSON [`LockInfo`] as the local lock file).
//!
//! Two writers can never both win:
//! - the lock is created with `If-None-Match: *`, so of two runs only one gets it; the
//!   other reads it and reports the holder (or a stale lock, with the
//!   `payctl force-unlock` command that clears it);
//! - every write of the state is a `PutObject` with `If-Match: <the ETag this run last
//!   read or wrote>` (`If-None-Match: *` when there was no object), so a state replaced
//!   behind the run's back is never overwritten: the write is refused (412) and the run
//!   stops with its state in a recovery file;
//! - the lock is removed with `If-Match: <its ETag>`, so only while it is still ours.
//!
//! The bucket must be versioned (every earlier state stays as a version: that is the
//! backup) and have default encryption; every put also asks for the bucket's algorithm.
//! Versioning is checked on the lock's `PutObject` answer (a versioned bucket gives it a
//! version id) rather than with `GetBucketVersioning`, whose answer the local emulator
//! sends in a form the SDK cannot decode.

use super::lock::LockInfo;
use super::{State, StateError};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

/// A parsed `s3://BUCKET[/PREFIX]` state location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's top level.
    pub prefix: String,
    /// The account that must own the bucket (`--state-bucket-owner`,
    /// `state_bucket_owner`); `None`: the caller's own account.
    pub owner: Option<String>,
}

impl S3Url {
    /// Checks the URL without any AWS call: the scheme, S3's bucket name rules, a prefix
    /// without empty, `.` or `..` segments.
    pub fn parse(url: &str) -> Result<Self, StateError> {
        let bad = |reason: &str| StateError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is empty"));
        }
        if let Some(reason) = bucket_name_problem(bucket) {
            return Err(bad(&format!("bucket {bucket:?} {reason}")));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            if prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
            {
                return Err(bad("the prefix has an empty, `.` or `..` segment"));
            }
            if prefix.chars().any(|c| c.is_control()) {
                return Err(bad("the prefix has a control character"));
            }
            if prefix.len() > 900 {
                return Err(bad("the prefix is longer than 900 bytes"));
            }
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            owner: None,
        })
    }

    /// The same location, expecting `owner` (if any) to own the bucket.
    pub fn owned_by(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }

    /// The account every request to the bucket expects to own it: the configured one,
    /// else `caller` (the account of the credentials).
    pub fn owner_or<'a>(&'a self, caller: &'a str) -> &'a str {
        self.owner.as_deref().unwrap_or(caller)
    }

    /// The state object's key for `env`.
    pub fn key(&self, env: &str) -> String {
        if self.prefix.is_empty() {
            format!("{env}.json")
        } else {
            format!("{}/{env}.json", self.prefix)
        }
    }

    pub fn lock_key(&self, env: &str) -> String {
        format!("{}.lock", self.key(env))
    }

    /// `s3://bucket/key`, for messages.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3's rules for general purpose bucket names; `None` when `name` follows them.
fn bucket_name_problem(name: &str) -> Option<&'static str> {
    if !(3..=63).contains(&name.len()) {
        return Some("must be 3 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Some("may hold only lowercase letters, digits, hyphens and dots");
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(name.chars().next()) || !edge(name.chars().last()) {
        return Some("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Some("must not have two dots, or a dot beside a hyphen");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("must not look like an IP address");
    }
    let reserved_prefix = ["xn--", "sthree-", "amzn-s3-demo-"];
    let reserved_suffix = ["-s3alias", "--ol-s3", "--x-s3", ".mrap", "--table-s3"];
    if reserved_prefix.iter().any(|p| name.starts_with(p))
        || reserved_suffix.iter().any(|s| name.ends_with(s))
    {
        return Some("uses a prefix or suffix S3 reserves");
    }
    None
}

/// The encryption every put asks for: the bucket's own default.
#[derive(Debug, Clone)]
pub struct Sse {
    algorithm: ServerSideEncryption,
    kms_key: Option<String>,
}

/// One remote object read back: its body and ETag.
pub struct Object {
    pub bytes: Vec<u8>,
    pub etag: String,
}

/// How a conditional put went.
pub enum Put {
    /// Written; the new ETag and version id (none in an unversioned bucket).
    Done {
        etag: String,
        version: Option<String>,
    },
    /// Refused: the object is not what the condition expected (412, or 409 when another
    /// conditional write was in progress, or 404 when it was deleted).
    Conflict,
}

/// An S3 location for one environment and the client that reaches it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub client: Client,
    pub url: S3Url,
    pub key: String,
    pub lock_key: String,
}

impl Remote {
    /// Finds the bucket (and its region, which may differ from the run's). Every request
    /// but `CreateBucket` and `ListBuckets` (which payctl never sends here) expects
    /// `owner` to own the bucket ([`crate::aws::s3_config`]): a bucket of another account
    /// is refused before anything is read or written.
    pub async fn connect(
        sdk: &aws_config::SdkConfig,
        url: &S3Url,
        env: &str,
        owner: &str,
    ) -> Result<Remote, StateError> {
        let mut client = Client::from_conf(crate::aws::s3_config(sdk, owner).build());
        let answer = client.head_bucket().bucket(&url.bucket).send().await;
        let region = match &answer {
            Ok(out) => out.bucket_region().map(str::to_string),
            Err(SdkError::ServiceError(e)) => e
                .raw()
                .headers()
                .get("x-amz-bucket-region")
                .map(str::to_string),
            Err(_) => None,
        };
        match answer {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                return Err(StateError::BucketMissing {
                    bucket: url.bucket.clone(),
                });
            }
            // Before the region check: S3's 403 also names the bucket's region.
            Err(e) if crate::aws::s3_forbidden(&e) => {
                return Err(StateError::ForeignBucket {
                    bucket: url.bucket.clone(),
                    owner: owner.to_string(),
                });
            }
            // 301: the bucket is in another region; its region header says which.
            Err(_) if region.is_some() => {}
            Err(e) => return Err(remote_error("HeadBucket", &url.to_string(), e)),
        }
        if let Some(region) =
            region.filter(|r| sdk.region().is_none_or(|own| own.as_ref() != r.as_str()))
        {
            let conf = crate::aws::s3_config(sdk, owner)
                .region(aws_sdk_s3::config::Region::new(region))
                .build();
            client = Client::from_conf(conf);
        }
        Ok(Remote {
            client,
            key: url.key(env),
            lock_key: url.lock_key(env),
            url: url.clone(),
        })
    }

    pub fn state_url(&self) -> String {
        self.url.url_of(&self.key)
    }

    pub fn lock_url(&self) -> String {
        self.url.url_of(&self.lock_key)
    }

    /// The bucket's default encryption; an unencrypted bucket is refused.
    pub async fn encryption(&self) -> Result<Sse, StateError> {
        let bucket = &self.url.bucket;
        let out = match self
            .client
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
                return Err(StateError::NotEncrypted {
                    bucket: bucket.clone(),
                });
            }
            Err(e) => return Err(remote_error("GetBucketEncryption", bucket, e)),
        };
        let rule = out
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default());
        let Some(rule) = rule else {
            return Err(StateError::NotEncrypted {
                bucket: bucket.clone(),
            });
        };
        Ok(Sse {
            algorithm: rule.sse_algorithm().clone(),
            kms_key: rule.kms_master_key_id().map(str::to_string),
        })
    }

    /// Reads an object; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Object>, StateError> {
        let url = self.url.url_of(key);
        let out = match self
            .client
            .get_object()
            .bucket(&self.url.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(remote_error("GetObject", &url, e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let bytes = out.body.collect().await.map_err(|e| StateError::Remote {
            op: "GetObject",
            url: url.clone(),
            code: "ReadError".into(),
            message: e.to_string(),
        })?;
        Ok(Some(Object {
            bytes: bytes.into_bytes().to_vec(),
            etag,
        }))
    }

    /// The state object, parsed, with its ETag.
    pub async fn load(&self) -> Result<Option<(State, String)>, StateError> {
        match self.get(&self.key).await? {
            None => Ok(None),
            Some(o) => Ok(Some((State::parse(&o.bytes, &self.state_url())?, o.etag))),
        }
    }

    /// Writes `bytes` to `key` only if it still has ETag `expected` (`None`: only if
    /// there is no object).
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Option<&str>,
        sse: &Sse,
    ) -> Result<Put, StateError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.url.bucket)
            .key(key)
            .content_type("application/json")
            .server_side_encryption(sse.algorithm.clone())
            .set_ssekms_key_id(sse.kms_key.clone())
            .body(ByteStream::from(bytes));
        req = match expected {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => Ok(Put::Done {
                etag: out.e_tag().unwrap_or_default().to_string(),
                version: out
                    .version_id()
                    .filter(|v| !v.is_empty() && *v != "null")
                    .map(str::to_string),
            }),
            Err(e) if is_conflict(&e) => Ok(Put::Conflict),
            Err(e) => Err(remote_error("PutObject", &self.url.url_of(key), e)),
        }
    }

    /// Deletes `key` only while it has ETag `etag`. `false` when it had another one.
    pub async fn delete_if(&self, key: &str, etag: &str) -> Result<bool, StateError> {
        match self
            .client
            .delete_object()
            .bucket(&self.url.bucket)
            .key(key)
            .if_match(etag)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchKey") => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(remote_error("DeleteObject", &self.url.url_of(key), e)),
        }
    }

    /// The lock object's holder and ETag, if there is a lock.
    pub async fn read_lock(&self) -> Result<Option<(Option<LockInfo>, String)>, StateError> {
        Ok(self
            .get(&self.lock_key)
            .await?
            .map(|o| (serde_json::from_slice(&o.bytes).ok(), o.etag)))
    }
}

/// A refused condition: 412, 409 (a concurrent conditional write) or, for `If-Match`
/// on an object deleted meanwhile, 404.
fn is_conflict<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    let status = match e {
        SdkError::ServiceError(s) => s.raw().status().as_u16(),
        _ => return false,
    };
    matches!(
        e.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict" | "NoSuchKey")
    ) || status == 412
}

fn remote_error<E>(
    op: &'static str,
    url: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = match e.message() {
        Some(m) => m.to_string(),
        None => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
    };
    StateError::Remote {
        op,
        url: url.to_string(),
        code: e.code().unwrap_or("NoErrorCode").to_string(),
        message: crate::error::shorten(&crate::error::one_line(&message), 300),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_any_call() {
        let u = S3Url::parse("s3://team-state/payctl/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("team-state", "payctl")
        );
        assert_eq!(u.key("dev"), "payctl/dev.json");
        assert_eq!(u.lock_key("dev"), "payctl/dev.json.lock");
        assert_eq!(u.to_string(), "s3://team-state/payctl");
        let top = S3Url::parse("s3://team.state-1").unwrap();
        assert_eq!(top.key("qa"), "qa.json");
        assert_eq!(top.url_of(&top.key("qa")), "s3://team.state-1/qa.json");
        for (url, want) in [
            ("team-state/x", "s3://"),
            ("s3://", "empty"),
            ("s3:///prefix", "empty"),
            ("s3://ab", "3 to 63"),
            ("s3://Team-State", "lowercase"),
            ("s3://team_state", "lowercase"),
            ("s3://-team", "begin and end"),
            ("s3://team..state", "two dots"),
            ("s3://192.168.1.1", "IP address"),
            ("s3://xn--team", "reserves"),
            ("s3://team-state/a//b", "empty, `.` or `..`"),
            ("s3://team-state/../b", "empty, `.` or `..`"),
        ] {
            let err = S3Url::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(err.contains("expected s3://BUCKET"), "{err}");
            assert!(!err.contains('\n'));
        }
    }
}
