//! `down --purge` outside production: every object version and delete marker of the
//! audit bucket is deleted, in parallel batches of 1000, so that the bucket can go.

use crate::data::build_error;
use crate::engine::Ctx;
use crate::error::{Error, Result, aws};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::StreamExt;

/// Every object version and delete marker (at most about `limit` of them), as delete
/// identifiers.
pub(super) async fn all_versions(
    ctx: &Ctx,
    bucket: &str,
    limit: Option<usize>,
) -> Result<Vec<ObjectIdentifier>> {
    let mut ids = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let call = ctx.aws.s3.list_object_versions().bucket(bucket);
        let call = call
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone());
        let out = call
            .send()
            .await
            .map_err(aws("ListObjectVersions", bucket))?;
        let versions = out.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = out
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        for (key, version) in versions.chain(markers) {
            if let Some(key) = key {
                let id = ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.map(str::to_string));
                ids.push(id.build().map_err(build_error)?);
            }
        }
        if limit.is_some_and(|l| ids.len() >= l) || out.is_truncated() != Some(true) {
            return Ok(ids);
        }
        key_marker = out.next_key_marker().map(str::to_string);
        version_marker = out.next_version_id_marker().map(str::to_string);
    }
}

/// Deletes every object version and delete marker; answers how many there were.
pub(super) async fn purge(ctx: &Ctx, bucket: &str) -> Result<usize> {
    let ids = all_versions(ctx, bucket, None).await?;
    let total = ids.len();
    let chunks: Vec<Vec<ObjectIdentifier>> =
        ids.chunks(1000).map(<[ObjectIdentifier]>::to_vec).collect();
    let batches = chunks.into_iter().map(|chunk| async move {
        let delete = Delete::builder()
            .set_objects(Some(chunk))
            .quiet(true)
            .build();
        let call = ctx.aws.s3.delete_objects().bucket(bucket);
        let call = call.delete(delete.map_err(build_error)?);
        let out = call.send().await.map_err(aws("DeleteObjects", bucket))?;
        match out.errors().first() {
            Some(e) => Err(Error::Aws {
                op: "DeleteObjects",
                resource: format!("{bucket}/{}", e.key().unwrap_or_default()),
                code: e.code().unwrap_or("Unknown").to_string(),
                message: e.message().unwrap_or_default().to_string(),
            }),
            None => Ok(()),
        }
    });
    let results: Vec<Result<()>> = futures::stream::iter(batches)
        .buffer_unordered(4)
        .collect()
        .await;
    crate::error::all_ok(results)?;
    Ok(total)
}
