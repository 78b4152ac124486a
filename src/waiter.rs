//! Bounded waiting: the second retry layer, for eventual consistency.
//!
//! [`wait_for`] polls until a condition holds, with backoff between polls (×1.5 each time)
//! and a hard deadline; each poll logs what it is waiting for and for how long. A
//! timeout is an [`Error::Timeout`] that names the resource. [`retry_while`] re-runs an
//! action while a predicate says its error is transient (e.g. `DependencyViolation`).
//!
//! Waits can be scaled down with `PAYCTL_WAIT_SCALE` (a factor applied to every deadline
//! and interval), so tests of the waiting paths are fast; the logic is the same.

use crate::error::{Error, Result};
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub timeout: Duration,
    pub first: Duration,
    pub max_interval: Duration,
}

impl Wait {
    pub const fn minutes(m: u64) -> Self {
        Wait {
            timeout: Duration::from_secs(m * 60),
            first: Duration::from_secs(1),
            max_interval: Duration::from_secs(15),
        }
    }

    /// The same wait with every duration multiplied by `PAYCTL_WAIT_SCALE` (default 1).
    pub fn scaled(&self) -> Wait {
        let scale = std::env::var("PAYCTL_WAIT_SCALE")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|f| *f > 0.0 && f.is_finite())
            .unwrap_or(1.0);
        Wait {
            timeout: self.timeout.mul_f64(scale),
            first: self.first.mul_f64(scale),
            max_interval: self.max_interval.mul_f64(scale),
        }
    }
}

/// What one poll saw.
pub enum Status<T> {
    Ready(T),
    /// Not yet; the text is the resource's current status, for the progress line.
    Pending(String),
}

/// Polls `poll` until it is `Ready`; `what` names the resource for logs and errors.
pub async fn wait_for<T, F, Fut>(what: &str, wait: Wait, mut poll: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Status<T>>>,
{
    let wait = wait.scaled();
    let start = Instant::now();
    let deadline = wait.timeout;
    let mut interval = wait.first;
    loop {
        crate::interrupt::check(what)?;
        match poll().await? {
            Status::Ready(value) => return Ok(value),
            Status::Pending(_) if start.elapsed() + interval > deadline => {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    waited: start.elapsed(),
                });
            }
            Status::Pending(status) => {
                tracing::info!(
                    "waiting for {what}: {status} ({}s)",
                    start.elapsed().as_secs()
                );
                crate::interrupt::sleep(what, interval).await?;
                interval = interval.mul_f64(1.5).min(wait.max_interval);
            }
        }
    }
}

/// Runs `action` again while `transient` says its error will pass, up to the deadline.
pub async fn retry_while<T, F, Fut, P>(
    what: &str,
    wait: Wait,
    transient: P,
    mut action: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
    P: Fn(&Error) -> bool,
{
    let wait = wait.scaled();
    let start = Instant::now();
    let deadline = wait.timeout;
    let mut interval = wait.first;
    loop {
        match action().await {
            Err(e) if transient(&e) && start.elapsed() + interval <= deadline => {
                tracing::info!("{what}: {e}; retrying in {}s", interval.as_secs());
                crate::interrupt::sleep(what, interval).await?;
                interval = interval.mul_f64(1.5).min(wait.max_interval);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> Wait {
        Wait {
            timeout: Duration::from_millis(200),
            first: Duration::from_millis(10),
            max_interval: Duration::from_millis(40),
        }
    }

    #[tokio::test]
    async fn wait_returns_when_ready() {
        let n = AtomicU32::new(0);
        let v = wait_for("thing", quick(), || async {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Ok(if i >= 2 {
                Status::Ready(i)
            } else {
                Status::Pending("pending".into())
            })
        })
        .await
        .unwrap();
        assert_eq!(v, 2);
    }

    #[tokio::test]
    async fn wait_times_out_naming_the_resource() {
        let err = wait_for::<(), _, _>("NAT gateway nat-1", quick(), || async {
            Ok(Status::Pending("pending".into()))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }));
        assert!(err.to_string().contains("NAT gateway nat-1"));
    }

    #[tokio::test]
    async fn retry_stops_on_permanent_error_and_retries_transient() {
        let n = AtomicU32::new(0);
        let transient = |e: &Error| e.aws_code() == Some("DependencyViolation");
        let err = |code: &str| Error::Aws {
            op: "DeleteVpc",
            resource: "vpc".into(),
            code: code.into(),
            message: String::new(),
        };
        let r = retry_while("delete", quick(), transient, || async {
            if n.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(err("DependencyViolation"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        n.store(0, Ordering::SeqCst);
        let r: Result<()> = retry_while("delete", quick(), transient, || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(err("AccessDenied"))
        })
        .await;
        assert_eq!(r.unwrap_err().aws_code(), Some("AccessDenied"));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let r: Result<()> = retry_while("delete", quick(), transient, || async {
            Err(err("DependencyViolation"))
        })
        .await;
        assert_eq!(
            r.unwrap_err().aws_code(),
            Some("DependencyViolation"),
            "gives up at the deadline"
        );
    }
}
