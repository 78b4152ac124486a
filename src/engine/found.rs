//! Finding what a kind manages: by the id in the state file, else by name and tags.
//!
//! [`find`] is the one lookup every kind uses. It answers a [`Found`] that says how the
//! resource was found ([`Via`]), which decides the note: found through the state is
//! `unchanged` (until a setting is put back), found by its tags is `adopted`.
//!
//! AWS is eventually consistent: right after a create, a describe by id may answer
//! NotFound for a while ("Eventual consistency in the Amazon EC2 API",
//! <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>; IAM and
//! Lambda say the same). So a resource this run created is read again for up to
//! [`CONSISTENCY_WAIT`] before NotFound means it is gone; one from an earlier run is gone
//! at the first NotFound.

use super::Ctx;
use super::gone::Service;
use super::report::Change;
use crate::error::Result;
use crate::waiter::Wait;
use std::future::Future;
use std::time::Duration;

/// How long a resource created in this run may stay invisible to a describe by id.
pub const CONSISTENCY_WAIT: Wait = Wait {
    timeout: Duration::from_secs(60),
    first: Duration::from_millis(500),
    max_interval: Duration::from_secs(5),
};

/// How a resource was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// By the id recorded in the state file.
    State,
    /// By its name and ownership tags (it was not in the state file, or not under that id).
    Tags,
}

/// A resource that exists, and how it was found.
#[derive(Debug, Clone)]
pub struct Found<T> {
    pub value: T,
    pub via: Via,
}

impl<T> Found<T> {
    pub fn new(value: T, via: Via) -> Self {
        Found { value, via }
    }

    /// `unchanged` when the state knew it, `adopted` when it was found by its tags.
    pub fn change(&self) -> Change {
        match self.via {
            Via::State => Change::Unchanged,
            Via::Tags => Change::Adopted,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Found<U> {
        Found {
            value: f(self.value),
            via: self.via,
        }
    }
}

/// Looks up what `addr` records: by the id in the state (with `by_id`, whose NotFound,
/// as an error of `service` or as `None`, means "not under that id"), else with
/// `by_tags` (by name and ownership tags). `None` when neither finds it.
pub async fn find<T, I, IF, G, GF>(
    ctx: &Ctx,
    addr: &str,
    service: Service,
    by_id: I,
    by_tags: G,
) -> Result<Option<Found<T>>>
where
    I: Fn(String) -> IF,
    IF: Future<Output = Result<Option<T>>>,
    G: FnOnce() -> GF,
    GF: Future<Output = Result<Option<T>>>,
{
    if let Some(id) = ctx.state.id(addr)
        && let Some(v) = read_by_id(ctx, addr, service, &id, by_id).await?
    {
        return Ok(Some(Found::new(v, Via::State)));
    }
    Ok(by_tags().await?.map(|v| Found::new(v, Via::Tags)))
}

/// Reads the resource `addr` records under `id`: NotFound gives `None`, except that a
/// resource this run created is read again for up to [`CONSISTENCY_WAIT`] first.
pub async fn read_by_id<T, R, RF>(
    ctx: &Ctx,
    addr: &str,
    service: Service,
    id: &str,
    read: R,
) -> Result<Option<T>>
where
    R: Fn(String) -> RF,
    RF: Future<Output = Result<Option<T>>>,
{
    read_within(ctx, addr, service, id, CONSISTENCY_WAIT.scaled(), read).await
}

async fn read_within<T, R, RF>(
    ctx: &Ctx,
    addr: &str,
    service: Service,
    id: &str,
    wait: Wait,
    read: R,
) -> Result<Option<T>>
where
    R: Fn(String) -> RF,
    RF: Future<Output = Result<Option<T>>>,
{
    let fresh = ctx.report.created(addr);
    let start = std::time::Instant::now();
    let mut interval = wait.first;
    loop {
        if let Some(v) = service.found(read(id.to_string()).await)?.flatten() {
            return Ok(Some(v));
        }
        if !fresh || start.elapsed() + interval > wait.timeout {
            return Ok(None);
        }
        let what = format!("{addr} {id} to become visible (AWS is eventually consistent)");
        tracing::debug!("waiting for {what}");
        crate::interrupt::sleep(&what, interval).await?;
        interval = interval.mul_f64(1.5).min(wait.max_interval);
    }
}

/// One match, none, or the error for several resources tagged as the same one.
pub fn only_one<T>(mut matches: Vec<T>, what: &str) -> Result<Option<T>> {
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.pop()),
        n => Err(crate::error::Error::Invalid(format!(
            "{n} {what} are tagged as the same resource; delete the extras or record the right one in the state file"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gone::Ec2;
    use crate::engine::walk::test_ctx;
    use crate::state::Record;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn not_found() -> crate::error::Error {
        crate::error::Error::Aws {
            op: "DescribeVpcs",
            resource: "vpc-1".into(),
            code: "InvalidVpcID.NotFound".into(),
            message: String::new(),
        }
    }

    #[tokio::test]
    async fn found_by_state_is_unchanged_and_by_tags_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_ctx(dir.path());
        let vpc = Service::Ec2(Ec2::Vpc);
        // Nothing in the state: only the tags are asked.
        let f = find(
            &ctx,
            "ec2_vpc.main",
            vpc,
            async |_| Ok(Some(1)),
            async || Ok(Some(2)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((f.value, f.change()), (2, Change::Adopted));
        ctx.record("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .await
            .unwrap();
        let f = find(
            &ctx,
            "ec2_vpc.main",
            vpc,
            async |id| Ok(Some(id.len())),
            async || Ok(None),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((f.value, f.change()), (5, Change::Unchanged));
        // Gone under its id (NotFound) and not found by tags: none.
        let f: Option<Found<u8>> = find(
            &ctx,
            "ec2_vpc.main",
            vpc,
            async |_| Err(not_found()),
            async || Ok(None),
        )
        .await
        .unwrap();
        assert!(f.is_none());
        // Any other error is an error.
        let denied: Result<Option<Found<u8>>> = find(
            &ctx,
            "ec2_vpc.main",
            vpc,
            |_| async { Err(crate::error::Error::Invalid("denied".into())) },
            || async { Ok(None) },
        )
        .await;
        assert!(denied.is_err());
    }

    #[tokio::test]
    async fn a_resource_created_in_this_run_is_read_again_until_visible() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_ctx(dir.path());
        let vpc = Service::Ec2(Ec2::Vpc);
        let quick = Wait {
            timeout: Duration::from_secs(2),
            first: Duration::from_millis(5),
            max_interval: Duration::from_millis(20),
        };
        let reads = AtomicU32::new(0);
        // From an earlier run: the first NotFound means gone.
        let gone: Option<u8> = read_within(&ctx, "ec2_vpc.main", vpc, "vpc-1", quick, |_| async {
            reads.fetch_add(1, Ordering::SeqCst);
            Err(not_found())
        })
        .await
        .unwrap();
        assert!(gone.is_none());
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Created in this run: NotFound twice, then visible.
        ctx.report.note(Change::Created, "ec2_vpc.main vpc-1");
        reads.store(0, Ordering::SeqCst);
        let v = read_within(&ctx, "ec2_vpc.main", vpc, "vpc-1", quick, |_| async {
            if reads.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(not_found())
            } else {
                Ok(Some(7u8))
            }
        })
        .await
        .unwrap();
        assert_eq!(v, Some(7));
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn several_matches_are_an_error() {
        assert_eq!(only_one(vec![1], "VPCs").unwrap(), Some(1));
        assert_eq!(only_one::<u8>(vec![], "VPCs").unwrap(), None);
        let e = only_one(vec![1, 2], "VPCs").unwrap_err().to_string();
        assert!(e.starts_with("2 VPCs are tagged"), "{e}");
    }
}
