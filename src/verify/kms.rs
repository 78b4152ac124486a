//! The stack's customer-managed KMS keys (`kms_key.rds`, `.s3`, `.sns`): automatic
//! rotation on for each (KMS.4). A key scheduled for deletion fails: KMS answers its
//! rotation status with an invalid-state error.

use super::{Check, Control, Target};
use crate::engine::Service;
use crate::security::kms_key;
use futures::future::join_all;

pub const ROTATION: Control = Control::new("KMS key rotation is enabled", Some("KMS.4"));

pub async fn checks(t: &Target) -> Vec<Check> {
    let mut keys = t.of_kind(kms_key::KIND);
    if keys.is_empty() {
        return vec![ROTATION.fail("kms_key.*", "no KMS key in the state file")];
    }
    // Every key the stack makes should be there.
    let mut checks: Vec<Check> = kms_key::KEYS
        .iter()
        .map(|(purpose, _)| kms_key::address(purpose))
        .filter(|addr| t.record(addr).is_none())
        .map(|addr| ROTATION.fail(addr, "not in the state file"))
        .collect();
    keys.sort_by_key(|(addr, _)| *addr);
    let reads = keys.into_iter().map(|(addr, rec)| async move {
        let resource = format!("{} ({})", rec.get("alias").unwrap_or(addr), rec.id);
        let out = t
            .aws
            .kms
            .get_key_rotation_status()
            .key_id(&rec.id)
            .send()
            .await;
        match out.map_err(crate::error::aws("GetKeyRotationStatus", &resource)) {
            Ok(out) => ROTATION.judge(
                resource,
                out.key_rotation_enabled(),
                "rotation enabled",
                "rotation disabled",
            ),
            Err(e) if Service::Kms.is_not_found(&e) => ROTATION.fail(resource, "not found"),
            Err(e) if e.aws_code() == Some("KMSInvalidStateException") => ROTATION.fail(
                resource,
                "the key is disabled or scheduled for deletion (KMS answered KMSInvalidStateException)",
            ),
            Err(e) => ROTATION.fail(resource.clone(), format!("could not check: {e}")),
        }
    });
    checks.extend(join_all(reads).await);
    checks
}
