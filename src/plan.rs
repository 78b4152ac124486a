//! `payctl plan`: what `up` would do, resource by resource, without doing it.
//!
//! `plan` runs the same `ensure` code as `up`, on clients that refuse every call that
//! is not a read ([`crate::aws::Clients::read_only`]) and on a detached copy of the
//! state file that is never written. Each kind asks [`crate::engine::Ctx::apply`]
//! before it puts a setting back and [`crate::engine::Ctx::would_create`] before it
//! creates; on `plan` both note the change in the run's report instead. This module
//! turns that report into the plan: one line per resource (`+` create, `~` update or
//! adopt, `=` unchanged, `-` delete) with `attribute: old → new` under each update,
//! a summary line, and the same as JSON.

use crate::engine::report::{Change, Drift, Report};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Adopt,
    Update,
    Unchanged,
    Delete,
}

impl Action {
    fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Adopt | Action::Update => '~',
            Action::Unchanged => '=',
            Action::Delete => '-',
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub action: Action,
    /// The resource's address (`dynamodb_table.transactions`), or its kind.
    pub address: String,
    /// The whole line as the kind noted it (address, id, name).
    pub what: String,
    pub changes: Vec<Drift>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub unchanged: usize,
    pub delete: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub env: String,
    pub region: String,
    /// True when `up` would change anything (`plan` then exits with status 2).
    pub changes: bool,
    pub counts: Counts,
    pub resources: Vec<Step>,
    /// The version each function's alias `live` is on now, by function.
    pub function_versions: BTreeMap<String, String>,
}

impl Plan {
    pub fn from_report(env: &str, region: &str, report: &Report) -> Plan {
        let mut drifts = report.drifts();
        let mut resources = Vec::new();
        for note in report.notes() {
            let action = match note.change {
                Change::Created => Action::Create,
                Change::Adopted => Action::Adopt,
                Change::Updated => Action::Update,
                Change::Unchanged => Action::Unchanged,
                Change::Deleted => Action::Delete,
                // `plan` walks `up`: nothing is kept there.
                Change::Absent | Change::Kept => continue,
            };
            let what = note.text();
            let address = note.address;
            let (mine, rest): (Vec<Drift>, Vec<Drift>) =
                drifts.into_iter().partition(|d| d.address == address);
            drifts = rest;
            // A setting noted under a resource that otherwise looks unchanged is a change.
            let action = match action {
                Action::Unchanged if !mine.is_empty() => Action::Update,
                a => a,
            };
            resources.push(Step {
                action,
                address,
                what,
                changes: mine,
            });
        }
        // Drift noted under an address no resource line names still belongs in the plan.
        for d in drifts {
            match resources.iter_mut().find(|s| s.address == d.address) {
                Some(step) => step.changes.push(d),
                None => resources.push(Step {
                    action: Action::Update,
                    address: d.address.clone(),
                    what: d.address.clone(),
                    changes: vec![d],
                }),
            }
        }
        resources.sort_by_key(|s| {
            (
                // Creations, changes and deletions first; what stays as it is last.
                s.action == Action::Unchanged,
                s.address.clone(),
            )
        });
        let mut counts = Counts::default();
        for s in &resources {
            match s.action {
                Action::Create => counts.create += 1,
                Action::Adopt | Action::Update => counts.update += 1,
                Action::Unchanged => counts.unchanged += 1,
                Action::Delete => counts.delete += 1,
            }
        }
        Plan {
            env: env.to_string(),
            region: region.to_string(),
            changes: counts.create + counts.update + counts.delete > 0,
            counts,
            resources,
            function_versions: BTreeMap::new(),
        }
    }

    /// `plan dev: 2 to create, 1 to update, 52 unchanged, 0 to delete`.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "plan {}: {} to create, {} to update, {} unchanged, {} to delete",
            self.env, c.create, c.update, c.unchanged, c.delete
        )
    }

    /// The plan for a person: one line per resource, its drift indented under it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.resources {
            let label = match s.action {
                Action::Adopt => " (adopt: found by name and tags, not in the state file)",
                _ => "",
            };
            let _ = writeln!(out, "{} {}{label}", s.action.symbol(), s.what);
            for d in &s.changes {
                let _ = writeln!(out, "    {}: {} → {}", d.attribute, d.old, d.new);
            }
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_goes_under_its_resource_and_counts_as_an_update() {
        let r = Report::default();
        r.note(Change::Unchanged, "ec2_vpc.main vpc-1 (payment-vpc-dev)");
        r.note(Change::Unchanged, "kms_key.data key-1");
        let drift = |addr, what, old: &str, new: &str| r.drift(addr, what, old.into(), new.into());
        drift("kms_key.data", "key rotation", "disabled", "enabled");
        r.note(Change::Created, "sqs_queue.retry payment-retry-dev");
        r.note(Change::Deleted, "ec2_nat_gateway.c nat-3");
        drift("apigw_usage_plan.main", "rate limit", "1000", "100");
        let plan = Plan::from_report("dev", "us-east-1", &r);
        assert!(plan.changes);
        let c = &plan.counts;
        assert_eq!((c.create, c.update, c.unchanged, c.delete), (1, 2, 1, 1));
        let text = plan.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"~ kms_key.data key-1"), "{text}");
        let at = lines
            .iter()
            .position(|l| *l == "~ kms_key.data key-1")
            .unwrap();
        assert_eq!(lines[at + 1], "    key rotation: disabled → enabled");
        assert!(
            lines.contains(&"+ sqs_queue.retry payment-retry-dev"),
            "{text}"
        );
        assert!(lines.contains(&"- ec2_nat_gateway.c nat-3"), "{text}");
        assert!(lines.contains(&"    rate limit: 1000 → 100"), "{text}");
        assert_eq!(
            lines.last().copied(),
            Some("plan dev: 1 to create, 2 to update, 1 unchanged, 1 to delete")
        );
        // What stays as it is comes after every change.
        assert_eq!(
            lines[lines.len() - 2],
            "= ec2_vpc.main vpc-1 (payment-vpc-dev)"
        );
    }

    #[test]
    fn nothing_to_do_is_no_change() {
        let r = Report::default();
        r.note(Change::Unchanged, "ec2_vpc.main vpc-1");
        let plan = Plan::from_report("dev", "us-east-1", &r);
        assert!(!plan.changes);
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["changes"], false);
        assert_eq!(json["resources"][0]["action"], "unchanged");
    }
}
