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
use crate::error::Result;
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

    /// There is nothing to delete: forgets the record and notes it as already gone.
    pub async fn forget_gone(&self, address: &str) -> Result<()> {
        self.forget(address).await?;
        self.report.note(Change::Absent, address);
        Ok(())
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
        let ctx = test_ctx(dir.path());
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
    async fn converge_writes_only_a_difference_and_only_on_up() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_ctx(dir.path());
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
        let mut ctx = std::sync::Arc::into_inner(test_ctx(dir.path())).unwrap();
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
