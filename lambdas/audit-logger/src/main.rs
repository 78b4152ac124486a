//! Lambda entry point: tracing, one S3 client, then the runtime loop.

use audit_logger::AuditLogger;
use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_target(false)
        .without_time()
        .init();
    let bucket = std::env::var("AUDIT_BUCKET").map_err(|_| "AUDIT_BUCKET is not set")?;
    let owner = audit_logger::bucket_owner(std::env::var("AUDIT_BUCKET_OWNER").ok().as_deref())?;
    let config = aws_config::load_from_env().await;
    let logger = AuditLogger {
        s3: aws_sdk_s3::Client::new(&config),
        bucket,
        owner,
    };
    let logger = &logger;
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(
            logger
                .handle(event.payload, &event.context.request_id)
                .await,
        )
    }))
    .await
}
