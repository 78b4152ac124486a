//! The lifecycle steps every kind shares, on the run context: the guards before a
//! change, converging one setting, and "delete if it exists, NotFound is success,
//! forget the record".
//!
//! Every guard answers `true` for "go ahead": [`Ctx::would_create`] before a create,
//! [`Ctx::apply`] before putting a setting back, [`Ctx::apply_delete`] before removing
//! what the stack no longer wants. On `plan` each notes what `up` would do and answers
//! `false`, so `plan` runs the same code as `up` and cannot disagree with it.

use super::Ctx;
use super::gone::Service;
use super::report::Change;
use crate::error::{Error, Result};
use crate::waiter::{Status, wait_for};
use std::fmt::Display;
use std::future::Future;

impl Ctx {
    /// Before a create. On `up`: true, create it. On `plan`: notes that `what` (its
    /// address first) would be created and answers false; the caller returns, since
    /// nothing it would make exists to go on with.
    pub fn would_create(&self, what: impl Into<String>) -> bool {
        if self.planning() {
            self.report.note(Change::Created, what);
            return false;
        }
        true
    }

    /// Before putting a drifted setting back. On `up`: true. On `plan`: notes
    /// `attribute: old → new` for `address` and answers false, so the caller skips it.
    pub fn apply(
        &self,
        address: &str,
        attribute: &str,
        old: impl Display,
        new: impl Display,
    ) -> bool {
        if self.planning() {
            self.report
                .drift(address, attribute, old.to_string(), new.to_string());
            return false;
        }
        true
    }

    /// Before deleting what the stack no longer wants. On `up`: true. On `plan`: notes
    /// that `what` (its address first) would be deleted and answers false.
    pub fn apply_delete(&self, what: impl Into<String>) -> bool {
        if self.planning() {
            self.report.note(Change::Deleted, what);
            return false;
        }
        true
    }

    /// One setting of `address`: when `have` differs from `want`, notes
    /// `attribute: have → want` on `plan`, or writes `want` with `write` on `up`.
    /// Answers whether it wrote.
    pub async fn converge<V, W, WF>(
        &self,
        address: &str,
        attribute: &str,
        have: V,
        want: V,
        write: W,
    ) -> Result<bool>
    where
        V: PartialEq + Display,
        W: FnOnce() -> WF,
        WF: Future<Output = Result<()>>,
    {
        if have == want || !self.apply(address, attribute, &have, &want) {
            return Ok(false);
        }
        write().await?;
        Ok(true)
    }

    /// Deletes what `address` records (`id` names it in the note) with `delete`, then
    /// forgets the record. NotFound from `service` means it is gone already: success.
    pub async fn delete_and_forget<T, D, DF>(
        &self,
        address: &str,
        id: &str,
        service: Service,
        delete: D,
    ) -> Result<()>
    where
        D: FnOnce() -> DF,
        DF: Future<Output = Result<T>>,
    {
        let change = match service.found(delete().await)? {
            Some(_) => Change::Deleted,
            None => Change::Absent,
        };
        self.forget(address).await?;
        self.report.note(change, format!("{address} {id}"));
        Ok(())
    }

    /// Creates what `addr` records with `create`, a call AWS gives no idempotency token
    /// (EC2's `CreateVpc`, `CreateSubnet`, `CreateInternetGateway`, `AllocateAddress`):
    /// a run killed after AWS made the resource but before the state recorded it would
    /// otherwise make a second one next time, since EC2's tag-filtered describes may not
    /// show the first for a while ("Eventual consistency in the Amazon EC2 API",
    /// <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
    /// So the intent is written to the state before the call, and the record that
    /// follows replaces it. A run whose lookup found nothing, but that finds an intent —
    /// or a record, whose resource a describe by id may equally not show yet — polls
    /// `by_tags` for up to [`CONSISTENCY_WAIT`](super::found::CONSISTENCY_WAIT) before
    /// it creates: [`Made::Found`] when the earlier run's resource appears. (A resource
    /// deleted out of band is thus made again a minute later.) A create AWS refused made
    /// nothing, and its intent goes.
    pub async fn create_once<T, G, GF, C, CF>(
        &self,
        addr: &str,
        by_tags: G,
        create: C,
    ) -> Result<Made<T>>
    where
        G: Fn() -> GF,
        GF: Future<Output = Result<Option<T>>>,
        C: FnOnce() -> CF,
        CF: Future<Output = Result<T>>,
    {
        let earlier = match (self.state.intent(addr), self.state.id(addr)) {
            (Some(at), _) => Some(format!(
                "whose create a run started at {at} and did not record"
            )),
            (None, Some(id)) => Some(format!("recorded as {id} but not seen by id")),
            (None, None) => None,
        };
        if let Some(earlier) = earlier {
            let what = format!("{addr}, {earlier}, to appear by its tags");
            let wait = super::found::CONSISTENCY_WAIT;
            let found = wait_for(&what, wait, || async {
                Ok(match by_tags().await? {
                    Some(v) => Status::Ready(v),
                    None => Status::Pending("not visible".into()),
                })
            })
            .await;
            match found {
                Ok(v) => return Ok(Made::Found(v)),
                // The earlier run stopped before its call reached AWS: nothing was made.
                Err(Error::Timeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.state.put_intent(addr).await?;
        match create().await {
            Ok(v) => Ok(Made::Created(v)),
            // A refusal (a validation error, a limit) made nothing; after a server
            // error or throttling that outlasted the retries it may have: the intent stays.
            Err(e @ Error::Aws { .. }) if !e.aws_code().is_some_and(maybe_made) => {
                self.state.clear_intent(addr).await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// There is nothing to delete: forgets the record and notes it as already gone.
    pub async fn forget_gone(&self, address: &str) -> Result<()> {
        self.forget(address).await?;
        self.report.note(Change::Absent, address);
        Ok(())
    }
}

/// Whether a create that failed with `code` may still have made its resource.
fn maybe_made(code: &str) -> bool {
    matches!(
        code,
        "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "Unavailable"
            | "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
    )
}

/// What [`Ctx::create_once`] did.
#[derive(Debug)]
pub enum Made<T> {
    /// Created in this run.
    Created(T),
    /// Made by an earlier run that stopped before recording it; found by its tags.
    Found(T),
}

impl<T> Made<T> {
    /// The resource, and `created` or `adopted`.
    pub fn into_parts(self) -> (T, Change) {
        match self {
            Made::Created(v) => (v, Change::Created),
            Made::Found(v) => (v, Change::Adopted),
        }
    }
}

impl Change {
    /// `updated` when something was written to a resource that was otherwise unchanged.
    pub fn updated_if(self, wrote: bool) -> Change {
        if wrote && self == Change::Unchanged {
            Change::Updated
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gone::Ec2;
    use crate::engine::walk::test_ctx;
    use crate::error::Error;
    use crate::state::Record;

    fn aws_err(code: &str) -> Error {
        Error::Aws {
            op: "DeleteVpc",
            resource: "vpc-1".into(),
            code: code.into(),
            message: String::new(),
        }
    }

    #[tokio::test]
    async fn delete_and_forget_treats_not_found_as_gone_and_keeps_the_record_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_ctx(dir.path()).await;
        let vpc = Service::Ec2(Ec2::Vpc);
        ctx.record("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .await
            .unwrap();
        let denied = ctx
            .delete_and_forget("ec2_vpc.main", "vpc-1", vpc, || async {
                Err::<(), _>(aws_err("UnauthorizedOperation"))
            })
            .await;
        assert!(denied.is_err());
        assert!(ctx.state.get("ec2_vpc.main").is_some(), "kept on error");
        ctx.delete_and_forget("ec2_vpc.main", "vpc-1", vpc, || async {
            Err::<(), _>(aws_err("InvalidVpcID.NotFound"))
        })
        .await
        .unwrap();
        assert!(ctx.state.get("ec2_vpc.main").is_none());
        assert_eq!(ctx.report.summary(), "1 already gone");
        ctx.delete_and_forget("ec2_vpc.main", "vpc-2", vpc, || async { Ok(()) })
            .await
            .unwrap();
        assert_eq!(ctx.report.summary(), "1 deleted, 1 already gone");
    }

    #[tokio::test]
    async fn create_once_drops_the_intent_of_a_refused_create_and_keeps_a_doubtful_one() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_ctx(dir.path()).await;
        let none = || async { Ok::<Option<String>, Error>(None) };
        let refused = ctx
            .create_once("ec2_vpc.main", none, || async {
                Err::<String, _>(aws_err("VpcLimitExceeded"))
            })
            .await;
        assert!(refused.is_err());
        assert_eq!(ctx.state.intent("ec2_vpc.main"), None);
        let doubtful = ctx
            .create_once("ec2_vpc.main", none, || async {
                Err::<String, _>(aws_err("InternalError"))
            })
            .await;
        assert!(doubtful.is_err());
        assert!(ctx.state.intent("ec2_vpc.main").is_some());
        // The next run finds the intent and waits for the resource to show by its tags.
        let seen = || async { Ok(Some("vpc-1".to_string())) };
        let made = ctx
            .create_once("ec2_vpc.main", seen, || async { panic!("created twice") })
            .await
            .unwrap();
        assert!(matches!(made, Made::Found(ref id) if id == "vpc-1"));
        ctx.record("ec2_vpc.main", Record::new("ec2_vpc", "vpc-1"))
            .await
            .unwrap();
        assert_eq!(ctx.state.intent("ec2_vpc.main"), None, "the record ends it");
    }

    #[tokio::test]
    async fn converge_writes_only_a_difference_and_only_on_up() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_ctx(dir.path()).await;
        let writes = std::sync::Mutex::new(Vec::new());
        let write = || async {
            writes.lock().unwrap().push("on");
            Ok(())
        };
        assert!(!ctx.converge("a.b", "x", "on", "on", write).await.unwrap());
        assert!(ctx.converge("a.b", "x", "off", "on", write).await.unwrap());
        assert_eq!(*writes.lock().unwrap(), ["on"]);
        assert!(ctx.report.drifts().is_empty());
        assert!(ctx.would_create("a.b"));
        assert_eq!(Change::Unchanged.updated_if(true), Change::Updated);
        assert_eq!(Change::Adopted.updated_if(true), Change::Adopted);
        assert_eq!(Change::Unchanged.updated_if(false), Change::Unchanged);
    }

    #[tokio::test]
    async fn on_plan_the_guards_note_and_answer_no() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = std::sync::Arc::into_inner(test_ctx(dir.path()).await).unwrap();
        ctx.options.plan = true;
        ctx.report = crate::engine::Report::for_plan();
        let wrote = ctx
            .converge("a.b", "x", "off", "on", || async {
                panic!("plan must not write")
            })
            .await
            .unwrap();
        assert!(!wrote);
        let d = &ctx.report.drifts()[0];
        assert_eq!(
            (d.attribute.as_str(), d.old.as_str(), d.new.as_str()),
            ("x", "off", "on")
        );
        assert!(!ctx.would_create("a.c (payment-c-dev)"));
        assert!(!ctx.apply_delete("a.d"));
        assert_eq!(ctx.report.summary(), "1 created, 1 deleted");
    }
}
