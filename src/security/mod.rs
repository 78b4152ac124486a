//! The security layer: customer-managed KMS keys (RDS, S3, and the alerts topic).

pub mod kms_key;

use crate::engine::Layer;
use std::sync::Arc;

pub fn layer() -> Layer {
    Layer {
        name: "security",
        resources: vec![Arc::new(kms_key::KmsKeys)],
    }
}
