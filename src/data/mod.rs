//! The data layer: the RDS PostgreSQL instance and its subnet group, the DynamoDB
//! transactions table, the S3 audit bucket and the SQS retry queue with its dead-letter
//! queue. One file per resource kind.

pub mod dynamodb_table;
pub mod final_backup;
pub mod rds_instance;
pub mod rds_subnet_group;
pub mod s3_bucket;
pub mod sqs_queue;

use crate::engine::Layer;
use std::sync::Arc;

/// The processor's timeout; the retry queue's visibility timeout is six times it, as AWS
/// recommends for a queue that feeds a Lambda function.
pub const PROCESSOR_TIMEOUT_SECS: i32 = 30;

pub fn layer() -> Layer {
    Layer {
        name: "data",
        resources: vec![
            Arc::new(rds_subnet_group::DbSubnetGroup),
            Arc::new(rds_instance::DbInstance::default()),
            Arc::new(dynamodb_table::TransactionsTable),
            Arc::new(s3_bucket::AuditBucket),
            Arc::new(sqs_queue::RetryQueues),
        ],
    }
}
