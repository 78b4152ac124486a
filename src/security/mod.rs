//! The security layer: customer-managed KMS keys (one for RDS, one for S3).

pub mod kms_key;

use crate::engine::Layer;
use std::sync::Arc;

pub fn layer() -> Layer {
    Layer {
        name: "security",
        resources: vec![Arc::new(kms_key::KmsKeys)],
    }
}
