//! Where the local emulator (moto) answers differently from AWS, and what payctl does
//! about it: each workaround is one named function, which the kinds call by name (see
//! docs/emulator.md). Nothing here changes what payctl does against AWS.

use crate::error::{Error, Result, aws};
use aws_sdk_s3::types::BucketVersioningStatus;

/// A bucket's versioning status (`None`: never enabled), from `GetBucketVersioning`.
///
/// moto (5.2.5) answers with a `GetBucketVersioningResponse` root element where S3 sends
/// `VersioningConfiguration`; the Rust SDK checks the root's name and refuses to decode
/// it, though the `<Status>` element inside is the same. For a successful answer that
/// does not decode, the `Status` element is read from the raw XML the SDK keeps with the
/// error. On AWS the answer decodes and the workaround never runs. An answer without a
/// readable body is an error ([`Error::Invalid`]: the setting is unknown).
pub async fn versioning_of(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Option<BucketVersioningStatus>> {
    match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(out) => Ok(out.status().cloned()),
        Err(e) if undecodable(&e) => {
            let body = e.raw_response().and_then(|r| r.body().bytes());
            match body.and_then(|b| std::str::from_utf8(b).ok()) {
                Some(xml) => Ok(status_in(xml).map(BucketVersioningStatus::from)),
                None => Err(Error::Invalid(format!(
                    "GetBucketVersioning for {bucket}: a successful answer without a readable body"
                ))),
            }
        }
        Err(e) => Err(aws("GetBucketVersioning", bucket)(e)),
    }
}

/// A successful HTTP response whose body the SDK could not decode.
fn undecodable<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => {
            s.err().code().is_none() && s.raw().status().is_success()
        }
        _ => false,
    }
}

/// The text of the first `<Status>` element of an XML document.
fn status_in(xml: &str) -> Option<&str> {
    let start = xml.find("<Status>")? + "<Status>".len();
    let len = xml[start..].find("</Status>")?;
    Some(xml[start..start + len].trim())
}

#[cfg(test)]
mod tests {
    use super::status_in;

    #[test]
    fn the_status_is_read_from_any_root_element() {
        let aws = r#"<VersioningConfiguration xmlns="x"><Status>Enabled</Status></VersioningConfiguration>"#;
        assert_eq!(status_in(aws), Some("Enabled"));
        let other = r#"<?xml version="1.0"?><GetBucketVersioningResponse><Status>Suspended</Status></GetBucketVersioningResponse>"#;
        assert_eq!(status_in(other), Some("Suspended"));
        assert_eq!(status_in("<GetBucketVersioningResponse/>"), None);
        assert_eq!(status_in("<Status>Enabled"), None);
    }
}
