//! What a run did, resource by resource: logged as it happens, summed up at the end.
//!
//! On `plan` the same notes say what `up` *would* do, and each setting that would be
//! put back is kept as a [`Drift`] (`attribute: old → new`) under its resource.

use std::fmt;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Created,
    Adopted,
    Updated,
    Unchanged,
    Deleted,
    Absent,
    /// `down` left it in place on purpose: data (or the key to data) that is kept.
    Kept,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Created => "created",
            Change::Adopted => "adopted",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
            Change::Deleted => "deleted",
            Change::Absent => "already gone",
            Change::Kept => "kept",
        })
    }
}

/// One setting that differs from what payctl wants: on `up` it is put back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// The resource's address or kind, as its note starts (`dynamodb_table.transactions`).
    pub address: String,
    pub attribute: String,
    pub old: String,
    pub new: String,
}

/// Something `down` kept on purpose, and how a person restores or removes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Kept {
    /// What it is, e.g. `RDS final snapshot payment-db-prod-final-20261206-101500`.
    pub what: String,
    /// Its ARN, or its id where it has none.
    pub id: String,
    /// Why it was kept.
    pub why: String,
    /// The command that restores it (or says how it comes back).
    pub restore: String,
    /// The command that removes it, for when it is no longer wanted.
    pub remove: String,
}

/// One note: what changed, for which kind and address, and the rest of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub change: Change,
    /// The kind (`ec2_vpc`).
    pub kind: String,
    /// The address (`ec2_vpc.main`), or the kind when the note is about the kind as a whole.
    pub address: String,
    /// What follows the address: ids and names (`vpc-0abc (payment-vpc-dev)`).
    pub detail: String,
}

impl Note {
    /// A note from its text form: the address (`<kind>.<name>`, or a kind) first, then
    /// the detail. This is the one place a note's text is taken apart.
    pub fn new(change: Change, what: &str) -> Note {
        let (address, detail) = what.split_once(' ').unwrap_or((what, ""));
        let kind = address.split_once('.').map_or(address, |(k, _)| k);
        Note {
            change,
            kind: kind.to_string(),
            address: address.to_string(),
            detail: detail.to_string(),
        }
    }

    /// The whole line: the address and the detail.
    pub fn text(&self) -> String {
        if self.detail.is_empty() {
            self.address.clone()
        } else {
            format!("{} {}", self.address, self.detail)
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    entries: Mutex<Vec<Note>>,
    drift: Mutex<Vec<Drift>>,
    kept: Mutex<Vec<Kept>>,
    /// `plan`: notes say what would happen, so they are not logged as done.
    planning: bool,
}

impl Report {
    /// The report of a `plan`: the same notes, logged only at debug level.
    pub fn for_plan() -> Report {
        Report {
            planning: true,
            ..Default::default()
        }
    }

    /// Records one change; `what` is e.g. `ec2_vpc.main vpc-0abc (payment-vpc-dev)`.
    pub fn note(&self, change: Change, what: impl Into<String>) {
        let what = what.into();
        if self.planning {
            tracing::debug!("would be {change}: {what}");
        } else {
            tracing::info!("{change}: {what}");
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Note::new(change, &what));
    }

    /// Records a setting that differs (`plan` shows it as `attribute: old → new`).
    pub fn drift(&self, address: &str, attribute: &str, old: String, new: String) {
        tracing::debug!("{address}: {attribute}: {old} → {new}");
        self.drift
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Drift {
                address: address.to_string(),
                attribute: attribute.to_string(),
                old,
                new,
            });
    }

    /// Records something `down` kept (noted as [`Change::Kept`] under `address` too).
    pub fn keep(&self, address: &str, kept: Kept) {
        self.note(
            Change::Kept,
            format!("{address} {} ({})", kept.id, kept.why),
        );
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(kept);
    }

    /// Everything kept so far, in order.
    pub fn kept(&self) -> Vec<Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The list of kept things with their restore and remove commands (empty when none).
    pub fn kept_text(&self) -> String {
        let kept = self.kept();
        if kept.is_empty() {
            return String::new();
        }
        let mut out = format!("kept ({}): nothing below was deleted\n", kept.len());
        for k in kept {
            out.push_str(&format!(
                "  {}\n    id:      {}\n    why:     {}\n    restore: {}\n    remove:  {}\n",
                k.what, k.id, k.why, k.restore, k.remove
            ));
        }
        out
    }

    /// Every note so far, in order.
    pub fn notes(&self) -> Vec<Note> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every note so far as `(change, text)`, in order.
    pub fn entries(&self) -> Vec<(Change, String)> {
        self.notes()
            .into_iter()
            .map(|n| (n.change, n.text()))
            .collect()
    }

    /// True when this run created what `address` records.
    pub fn created(&self, address: &str) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|n| n.change == Change::Created && n.address == address)
    }

    /// Every drifted setting so far, in order.
    pub fn drifts(&self) -> Vec<Drift> {
        self.drift.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True when `kind` noted `change` (on `plan`: a creation its dependents must wait for).
    pub fn noted(&self, kind: &str, change: Change) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|n| n.change == change && n.kind == kind)
    }

    /// True when `kind` noted a creation or an adoption: a resource that is new to the run.
    pub fn made_new(&self, kind: &str) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|n| matches!(n.change, Change::Created | Change::Adopted) && n.kind == kind)
    }

    /// Drops what `kind` noted: its run is void and will be redone.
    pub fn forget(&self, kind: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n.kind != kind);
        self.drift
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|d| Note::new(Change::Updated, &d.address).kind != kind);
    }

    pub fn count(&self, change: Change) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|n| n.change == change)
            .count()
    }

    /// `3 created, 1 updated, 10 unchanged` (only the non-zero counts).
    pub fn summary(&self) -> String {
        let all = [
            Change::Created,
            Change::Adopted,
            Change::Updated,
            Change::Unchanged,
            Change::Deleted,
            Change::Absent,
            Change::Kept,
        ];
        let parts: Vec<String> = all
            .iter()
            .filter_map(|c| match self.count(*c) {
                0 => None,
                n => Some(format!("{n} {c}")),
            })
            .collect();
        if parts.is_empty() {
            "nothing to do".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_nonzero_counts_in_order() {
        let r = Report::default();
        assert_eq!(r.summary(), "nothing to do");
        r.note(Change::Unchanged, "a");
        r.note(Change::Created, "b");
        r.note(Change::Created, "c");
        assert_eq!(r.summary(), "2 created, 1 unchanged");
    }

    #[test]
    fn kept_things_are_counted_and_listed_with_their_commands() {
        let r = Report::default();
        r.note(Change::Deleted, "ec2_vpc.main vpc-1");
        r.keep(
            "kms_key.rds",
            Kept {
                what: "KMS key alias/payment-rds-prod".into(),
                id: "arn:aws:kms:us-east-1:1:key/k".into(),
                why: "it encrypts a kept snapshot".into(),
                restore: "nothing to restore: it stays enabled".into(),
                remove: "aws kms schedule-key-deletion --key-id k".into(),
            },
        );
        assert_eq!(r.summary(), "1 deleted, 1 kept");
        let text = r.kept_text();
        assert!(
            text.starts_with("kept (1): nothing below was deleted\n"),
            "{text}"
        );
        assert!(
            text.contains("  KMS key alias/payment-rds-prod\n"),
            "{text}"
        );
        assert!(text.contains("    remove:  aws kms schedule-key-deletion --key-id k\n"));
        assert!(r.noted("kms_key", Change::Kept));
        assert_eq!(Report::default().kept_text(), "");
    }

    #[test]
    fn notes_are_told_apart_by_kind() {
        let r = Report::default();
        r.note(Change::Unchanged, "ec2_vpc.main vpc-1");
        r.note(Change::Created, "ec2_vpc_endpoint s3");
        assert!(!r.made_new("ec2_vpc"));
        assert!(r.made_new("ec2_vpc_endpoint"));
        r.forget("ec2_vpc");
        assert_eq!(r.summary(), "1 created");
        let n = &r.notes()[0];
        assert_eq!(
            (n.kind.as_str(), n.address.as_str(), n.detail.as_str()),
            ("ec2_vpc_endpoint", "ec2_vpc_endpoint", "s3")
        );
        assert!(!r.created("ec2_vpc_endpoint.s3"));
        r.note(
            Change::Created,
            "sqs_queue.retry https://q/payment-retry-dev",
        );
        assert!(r.created("sqs_queue.retry"));
        assert!(!r.created("sqs_queue.dlq"));
    }
}
