//! Lambda entry point: tracing, SDK clients built once, then the runtime loop. The same
//! function serves API Gateway (`/process`, `/status`) and the retry queue.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use processor::Processor;
use processor::db::{DbSettings, Postgres};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_target(false)
        .without_time()
        .init();
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let config = aws_config::load_from_env().await;
    let processor = Processor {
        db: aws_sdk_dynamodb::Client::new(&config),
        table: var("TABLE_NAME")?,
        sqs: aws_sdk_sqs::Client::new(&config),
        queue_url: var("RETRY_QUEUE_URL")?,
        pg: Postgres::new(
            DbSettings::from_env()?,
            aws_sdk_secretsmanager::Client::new(&config),
        ),
    };
    let processor = &processor;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        processor.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
