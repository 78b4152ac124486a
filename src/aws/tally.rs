//! Requests counted by the resource kind that sent them, for `--timings`.
//!
//! Every client carries [`Count`]: each request it transmits (each attempt, retries
//! included) is added to the tally of the walker's task that sent it ([`counted`]), or,
//! outside any kind (the account lookup, the state file), to the run's own tally
//! ([`outside`]). A kind's `join_all` runs in its task, so its requests count for it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Requests by operation name (`DescribeVpcs`).
#[derive(Debug, Default)]
pub struct Tally(Mutex<BTreeMap<String, u32>>);

impl Tally {
    fn add(&self, operation: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(operation.to_string()).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u32> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

tokio::task_local! {
    static KIND: Arc<Tally>;
}

static OUTSIDE: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

/// Runs `f` with its requests added to `tally`.
pub async fn counted<F: Future>(tally: Arc<Tally>, f: F) -> F::Output {
    KIND.scope(tally, f).await
}

/// The requests sent outside any kind so far.
pub fn outside() -> BTreeMap<String, u32> {
    OUTSIDE.lock().map(|m| m.clone()).unwrap_or_default()
}

/// The interceptor on every client (see the module's comment).
#[derive(Debug)]
pub(super) struct Count;

impl aws_smithy_runtime_api::client::interceptors::Intercept for Count {
    fn name(&self) -> &'static str {
        "payctl-count"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unnamed".into());
        if KIND.try_with(|t| t.add(&operation)).is_err()
            && let Ok(mut m) = OUTSIDE.lock()
        {
            *m.entry(operation).or_default() += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kind_counts_its_own_requests_and_the_rest_count_outside() {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("a", "b", None, None, "test"),
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .interceptor(Count)
            .build();
        let sqs = aws_sdk_sqs::Client::from_conf(conf);
        let tally = Arc::new(Tally::default());
        let before = outside().get("ListQueues").copied().unwrap_or(0);
        counted(tally.clone(), async {
            let _ = sqs.list_queues().send().await;
            let _ = sqs.list_queues().send().await;
        })
        .await;
        let _ = sqs.list_queues().send().await;
        assert_eq!(tally.snapshot().get("ListQueues"), Some(&2));
        assert_eq!(
            outside().get("ListQueues").copied().unwrap_or(0),
            before + 1
        );
    }
}
