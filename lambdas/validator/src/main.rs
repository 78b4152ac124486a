//! Lambda entry point: tracing, one DynamoDB client, then the runtime loop.

use lambda_http::{Body, Error, Request, Response, run, service_fn};
use payments_core::validate::Limits;
use validator::Validator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_target(false)
        .without_time()
        .init();
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let mut limits = Limits::default();
    if let Ok(max) = std::env::var("MAX_AMOUNT_MINOR") {
        limits.max_amount_minor = max
            .parse()
            .map_err(|_| "MAX_AMOUNT_MINOR is not a whole number")?;
    }
    let config = aws_config::load_from_env().await;
    let validator = Validator {
        db: aws_sdk_dynamodb::Client::new(&config),
        table,
        limits,
    };
    let validator = &validator;
    run(service_fn(move |req: Request| async move {
        let reply = if req.method() == "POST" {
            validator.handle(req.body().as_ref()).await
        } else {
            validator::Reply {
                status: 405,
                body: serde_json::json!({"error": "method_not_allowed"}),
            }
        };
        Response::builder()
            .status(reply.status)
            .header("content-type", "application/json")
            .body(Body::from(reply.body.to_string()))
            .map_err(Error::from)
    }))
    .await
}
