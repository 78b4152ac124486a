//! `payctl verify`: checks a deployed environment against security and compliance
//! controls, with read-only calls only (Describe/Get/List/Head), and reports each check.
//!
//! The resources come from the environment's state file (read without the lock: verify
//! changes nothing, so it may run beside an `up`); each is then read live through the
//! SDK, by the id the state records. A resource the state names but AWS does not know is
//! a FAIL for each of its checks ("not found"); a read that fails for another reason
//! (access denied, throttled past the retries) is a FAIL too, saying what could not be
//! read: a control that could not be checked has not passed.
//!
//! Every [`Check`] names its control, the AWS Security Hub control id where one exists
//! (the `fsbp` field: AWS Foundational Security Best Practices, plus a few that Security
//! Hub keeps in its NIST SP 800-53 standard), the resource, the status and why. Status
//! `N/A` marks a control the environment does not require: Multi-AZ and deletion
//! protection outside production, reserved concurrency where none is configured.
//!
//! One file per area; the areas run concurrently, each returning its checks in a fixed
//! order, so the report reads the same on every run.

pub mod api;
pub mod backup;
pub mod deputy;
pub mod dynamodb;
pub mod kms;
pub mod lambda;
pub mod messaging;
pub mod monitoring;
pub mod network;
pub mod rds;
pub mod s3;
pub mod waf;

use crate::aws::Clients;
use crate::config::Settings;
use crate::state::{Record, State};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    /// The environment does not require this control (e.g. Multi-AZ outside production).
    #[serde(rename = "N/A")]
    NotApplicable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "N/A",
        }
    }
}

/// One control applied to one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub control: &'static str,
    /// The Security Hub control id, where one exists.
    pub fsbp: Option<&'static str>,
    pub resource: String,
    pub status: Status,
    pub why: String,
}

/// A control: what is checked, and its Security Hub id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub name: &'static str,
    pub fsbp: Option<&'static str>,
}

impl Control {
    pub const fn new(name: &'static str, fsbp: Option<&'static str>) -> Self {
        Control { name, fsbp }
    }

    pub fn check(
        &self,
        resource: impl Into<String>,
        status: Status,
        why: impl Into<String>,
    ) -> Check {
        Check {
            control: self.name,
            fsbp: self.fsbp,
            resource: resource.into(),
            status,
            why: why.into(),
        }
    }

    pub fn pass(&self, resource: impl Into<String>, why: impl Into<String>) -> Check {
        self.check(resource, Status::Pass, why)
    }

    pub fn fail(&self, resource: impl Into<String>, why: impl Into<String>) -> Check {
        self.check(resource, Status::Fail, why)
    }

    pub fn not_applicable(&self, resource: impl Into<String>, why: impl Into<String>) -> Check {
        self.check(resource, Status::NotApplicable, why)
    }

    /// PASS with `pass_why` when `ok`, else FAIL with `fail_why`.
    pub fn judge(
        &self,
        resource: impl Into<String>,
        ok: bool,
        pass_why: impl Into<String>,
        fail_why: impl Into<String>,
    ) -> Check {
        if ok {
            self.pass(resource, pass_why)
        } else {
            self.fail(resource, fail_why)
        }
    }
}

/// The same FAIL for each of `controls` (a resource that is missing or unreadable).
pub fn fail_all(controls: &[Control], resource: &str, why: &str) -> Vec<Check> {
    controls.iter().map(|c| c.fail(resource, why)).collect()
}

/// The why of a read that failed: the operation and the AWS error code.
/// What a check read: the answer, `Gone` when the service says the resource is not
/// there (its NotFound, from [`crate::engine::Service`]), or the "could not check" text.
pub enum Read<T> {
    Got(T),
    Gone,
    Unreadable(String),
}

/// Sorts an SDK answer for a check (see [`Read`]).
pub fn read<T, E>(
    result: std::result::Result<T, E>,
    service: crate::engine::Service,
    op: &'static str,
    resource: &str,
) -> Read<T>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result.map_err(crate::error::aws(op, resource)) {
        Ok(v) => Read::Got(v),
        Err(e) if service.is_not_found(&e) => Read::Gone,
        Err(e) => Read::Unreadable(format!("could not check: {e}")),
    }
}

pub fn unreadable<E>(op: &'static str, resource: &str, e: E) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    format!("could not check: {}", crate::error::aws(op, resource)(e))
}

/// True when `id` (a key id or key ARN, as AWS reports it) names the key of `record`.
pub fn is_key(id: &str, record: &Record) -> bool {
    id == record.id || record.arn.as_deref() == Some(id)
}

/// What verify looks at: the environment's state, settings and SDK clients.
pub struct Target {
    pub env: String,
    pub state: State,
    pub settings: Settings,
    pub aws: Clients,
}

impl Target {
    pub fn record(&self, addr: &str) -> Option<&Record> {
        self.state.resources.get(addr)
    }

    /// The records of one kind, by address, in address order.
    pub fn of_kind(&self, kind: &str) -> Vec<(&str, &Record)> {
        let prefix = format!("{kind}.");
        self.state
            .resources
            .iter()
            .filter(|(a, _)| a.starts_with(&prefix))
            .map(|(a, r)| (a.as_str(), r))
            .collect()
    }

    /// The stack's SNS topic: its name and attributes, or the FAIL of `control` when it is
    /// not in the state file, gone, or unreadable.
    pub async fn topic_attributes(
        &self,
        control: Control,
    ) -> std::result::Result<(String, HashMap<String, String>), Check> {
        let addr = crate::monitoring::sns_topic::ADDR;
        let Some(rec) = self.record(addr) else {
            return Err(control.fail(addr, "not in the state file"));
        };
        let name = rec.get("name").unwrap_or(&rec.id).to_string();
        let out = self
            .aws
            .sns
            .get_topic_attributes()
            .topic_arn(&rec.id)
            .send()
            .await;
        match read(
            out,
            crate::engine::Service::Sns,
            "GetTopicAttributes",
            &name,
        ) {
            Read::Got(out) => Ok((name, out.attributes().cloned().unwrap_or_default())),
            Read::Gone => Err(control.fail(name, "not found")),
            Read::Unreadable(why) => Err(control.fail(name, why)),
        }
    }

    /// The part of an address after `<kind>.` (`lambda_function.validator` → `validator`).
    pub fn key(addr: &str) -> &str {
        addr.split_once('.').map_or(addr, |(_, k)| k)
    }
}

/// Every check of the environment, area by area (the areas run concurrently).
pub async fn run(t: &Target) -> Vec<Check> {
    let (s3, rds, dynamodb, kms, messaging, network, lambda, api, monitoring, deputy) = tokio::join!(
        s3::checks(t),
        rds::checks(t),
        dynamodb::checks(t),
        kms::checks(t),
        messaging::checks(t),
        network::checks(t),
        lambda::checks(t),
        api::checks(t),
        monitoring::checks(t),
        deputy::checks(t),
    );
    let (waf, backup) = tokio::join!(waf::checks(t), backup::checks(t));
    [
        s3, rds, dynamodb, kms, messaging, network, lambda, api, waf, monitoring, backup, deputy,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The result of a verify run, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub env: String,
    pub passed: usize,
    pub failed: usize,
    pub not_applicable: usize,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(env: &str, checks: Vec<Check>) -> Self {
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        Report {
            env: env.to_string(),
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            not_applicable: count(Status::NotApplicable),
            checks,
        }
    }

    /// `verify dev: 27 passed, 0 failed` (and `, 2 not applicable` when there are any).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "verify {}: {} passed, {} failed",
            self.env, self.passed, self.failed
        );
        if self.not_applicable > 0 {
            let _ = write!(s, ", {} not applicable", self.not_applicable);
        }
        s
    }

    /// The checks as an aligned text table, one line per check.
    pub fn table(&self) -> String {
        let header = ["CONTROL", "ID", "RESOURCE", "STATUS", "WHY"];
        let rows: Vec<[&str; 5]> = self
            .checks
            .iter()
            .map(|c| {
                [
                    c.control,
                    c.fsbp.unwrap_or("-"),
                    c.resource.as_str(),
                    c.status.as_str(),
                    c.why.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(rows.iter()) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Control = Control::new("Bucket blocks public access", Some("S3.8"));
    const D: Control = Control::new("Data trace is off", None);

    #[test]
    fn table_aligns_columns_and_marks_missing_ids() {
        let report = Report::new(
            "dev",
            vec![
                C.pass("payment-audit-dev-1-us-east-1", "all four blocks on"),
                D.fail("api/dev", "data trace on for */*"),
                D.not_applicable("x", "not required"),
            ],
        );
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("CONTROL"));
        // Each column starts at the same offset on every line.
        let col = |l: &str, text: &str| l.find(text).unwrap();
        assert_eq!(col(lines[0], "ID"), col(lines[1], "S3.8"));
        assert_eq!(col(lines[1], "S3.8"), col(lines[2], "-  "));
        assert_eq!(col(lines[0], "STATUS"), col(lines[1], "PASS"));
        assert_eq!(col(lines[1], "PASS"), col(lines[2], "FAIL"));
        assert_eq!(col(lines[2], "FAIL"), col(lines[3], "N/A"));
        assert!(lines[2].ends_with("data trace on for */*"));
        assert!(lines.iter().all(|l| l == &l.trim_end()));
    }

    #[test]
    fn summary_and_json_shape() {
        let report = Report::new(
            "prod",
            vec![
                C.pass("b", "ok"),
                D.fail("s", "on"),
                D.not_applicable("x", "n"),
            ],
        );
        assert_eq!(
            report.summary(),
            "verify prod: 1 passed, 1 failed, 1 not applicable"
        );
        let all_pass = Report::new("dev", vec![C.pass("b", "ok")]);
        assert_eq!(all_pass.summary(), "verify dev: 1 passed, 0 failed");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["failed"], 1);
        assert_eq!(json["checks"][0]["fsbp"], "S3.8");
        assert_eq!(json["checks"][1]["fsbp"], serde_json::Value::Null);
        assert_eq!(json["checks"][1]["status"], "FAIL");
        assert_eq!(json["checks"][2]["status"], "N/A");
    }

    #[test]
    fn judge_picks_the_reason() {
        assert_eq!(C.judge("r", true, "yes", "no").why, "yes");
        let failed = C.judge("r", false, "yes", "no");
        assert_eq!((failed.status, failed.why.as_str()), (Status::Fail, "no"));
        assert_eq!(Target::key("lambda_function.audit-logger"), "audit-logger");
    }

    #[test]
    fn key_matches_by_id_or_arn() {
        let rec = Record::new("kms_key", "1234-abcd")
            .arn("arn:aws:kms:us-east-1:123456789012:key/1234-abcd");
        assert!(is_key("1234-abcd", &rec));
        assert!(is_key(
            "arn:aws:kms:us-east-1:123456789012:key/1234-abcd",
            &rec
        ));
        assert!(!is_key("arn:aws:kms:us-east-1:123456789012:key/9999", &rec));
        assert!(!is_key("alias/aws/s3", &rec));
    }
}
