//! The engine: the resource trait, the run context and the registry of layers.
//!
//! A *resource kind* (one file under a layer's folder, e.g. `network/vpc.rs`) implements
//! [`Resource`]: `ensure` creates or adopts what it manages, `delete` removes it, and the
//! optional `wait` lets AWS finish in the background before dependents start (a NAT
//! gateway becoming available, or being gone before its Elastic IP is released). A kind
//! may manage several AWS resources (three subnets, one NAT gateway per AZ); each one is
//! recorded in the state under its own address.
//!
//! Every kind declares the kinds it `depends_on`. Layers (network, security, …) group kinds
//! and are listed in order in [`crate::layers`]; a dependency may only point to the same
//! or an earlier layer, and [`validate`] checks that, unknown names and cycles. The
//! walker ([`walk`]) runs each kind as soon as its dependencies are done (in parallel
//! where possible) for `up`, and the same edges reversed for `down`.
//!
//! Create-or-adopt: `ensure` looks for the resource by the id in state, else by its name
//! and ownership tags, and only creates when neither finds it. `delete` looks it up the
//! same way, refuses resources whose tags say payctl does not own them, treats NotFound
//! as already gone, and forgets the record only once the resource is gone.

pub mod found;
pub mod gone;
mod lifecycle;
pub use lifecycle::Made;
pub mod report;
pub mod shown;
pub mod tags;
pub mod walk;

use crate::aws::Clients;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::state::StateStore;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use found::{Found, Via, find};
pub use gone::{Ec2, Service};
pub use report::Report;
pub use shown::Shown;
pub use walk::{Direction, Outcome, walk};

/// A kind's identity, written first in its `impl Resource`: the state key, and the kinds
/// that must exist before it (and are deleted after it).
///
/// ```ignore
/// kind!(KIND, depends_on = [super::vpc::KIND]);
/// ```
macro_rules! kind {
    ($kind:expr) => {
        fn kind(&self) -> &'static str {
            $kind
        }
    };
    ($kind:expr, depends_on = [$($after:expr),* $(,)?]) => {
        fn kind(&self) -> &'static str {
            $kind
        }

        fn depends_on(&self) -> &'static [&'static str] {
            &[$($after),*]
        }
    };
}
pub(crate) use kind;

#[async_trait]
pub trait Resource: Send + Sync {
    /// Stable key, used in state addresses (`ec2_vpc`, `kms_key`, …).
    fn kind(&self) -> &'static str;

    /// Kinds that must exist before this one (and be deleted after it).
    fn depends_on(&self) -> &'static [&'static str] {
        &[]
    }

    /// Create or adopt, then converge settings to the desired ones.
    async fn ensure(&self, ctx: &Ctx) -> Result<()>;

    /// Delete what this kind owns; NotFound is success.
    async fn delete(&self, ctx: &Ctx) -> Result<()>;

    /// Whether `up` may start this kind before its prerequisites finish (see the walker).
    /// A kind that deletes what the stack no longer wants answers no: it must see its
    /// prerequisites' final work (routes moved off a gateway before the gateway goes).
    fn may_start_early(&self) -> bool {
        true
    }

    /// Checks, before `up` creates anything at all, what can be known in advance (a
    /// missing function package, too little unreserved Lambda concurrency).
    async fn preflight_ensure(&self, _ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Checks, before `down` deletes anything at all, that this kind can be deleted
    /// (a non-empty audit bucket without `--purge` stops the whole `down` here).
    async fn preflight_delete(&self, _ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Wait until what `ensure` or `delete` started has settled.
    async fn wait(&self, _ctx: &Ctx, _direction: Direction) -> Result<()> {
        Ok(())
    }
}

pub struct Layer {
    pub name: &'static str,
    pub resources: Vec<Arc<dyn Resource>>,
}

/// Everything a resource needs during a run.
pub struct Ctx {
    pub env: String,
    pub region: String,
    pub account_id: String,
    pub settings: Settings,
    pub aws: Clients,
    pub state: StateStore,
    pub report: Report,
    pub options: Options,
}

/// What the user asked for on the command line beyond the environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `down --purge`: empty the audit bucket (every version) before deleting it.
    pub purge: bool,
    /// `down --skip-final-snapshot`: no final RDS snapshot (refused in production).
    pub skip_final_snapshot: bool,
    /// `up --packages`: the directory holding `<function>/bootstrap.zip`.
    pub packages: std::path::PathBuf,
    /// `plan`: read everything, change nothing, note what `up` would do.
    pub plan: bool,
}

impl Ctx {
    /// `payment-<purpose>-<env>`.
    pub fn name(&self, purpose: &str) -> String {
        crate::naming::name(purpose, &self.env)
    }

    /// True on `plan`: every change is noted instead of made (see [`Ctx::apply`]).
    pub fn planning(&self) -> bool {
        self.options.plan
    }

    /// Writes `record` at `addr` in the state; returns once the state is saved.
    pub async fn record(&self, addr: &str, record: crate::state::Record) -> Result<()> {
        Ok(self.state.put(addr, record).await?)
    }

    /// Forgets the record at `addr`; returns once the state is saved.
    pub async fn forget(&self, addr: &str) -> Result<()> {
        Ok(self.state.remove(addr).await?)
    }

    pub fn tags(&self) -> Vec<(String, String)> {
        crate::naming::standard_tags(&self.env)
    }

    pub fn owns<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        crate::naming::is_owned(&self.env, tags)
    }

    /// The id of the record at `addr`, which a kind this one depends on wrote; its
    /// absence means that kind has not run yet, so the error says to run `up` again.
    pub fn needed_id(&self, addr: &str) -> Result<String> {
        self.state.id(addr).ok_or_else(|| missing(addr, "is not"))
    }

    /// The ARN of the record at `addr` (see [`Ctx::needed_id`]).
    pub fn needed_arn(&self, addr: &str) -> Result<String> {
        self.state
            .get(addr)
            .and_then(|r| r.arn)
            .ok_or_else(|| missing(addr, "has no ARN"))
    }

    /// Attribute `attr` of the record at `addr` (see [`Ctx::needed_id`]).
    pub fn needed_attr(&self, addr: &str, attr: &str) -> Result<String> {
        self.state
            .get(addr)
            .and_then(|r| r.get(attr).map(str::to_string))
            .ok_or_else(|| missing(addr, &format!("has no {attr}")))
    }

    /// Fails unless the tags say payctl owns the resource for this environment.
    pub fn check_owned<'a>(
        &self,
        resource: &str,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        if self.owns(tags) {
            Ok(())
        } else {
            Err(Error::not_owned(resource.to_string(), &self.env))
        }
    }
}

fn missing(addr: &str, what: &str) -> Error {
    Error::Invalid(format!(
        "{addr} {what} in the state file; run `payctl up` again"
    ))
}

/// Checks the registry: unique kinds, known dependencies, no forward or cyclic edges.
pub fn validate(layers: &[Layer]) -> Result<()> {
    let mut layer_of = HashMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for r in &layer.resources {
            if layer_of.insert(r.kind(), i).is_some() {
                return Err(Error::Invalid(format!(
                    "resource kind {} is registered twice",
                    r.kind()
                )));
            }
        }
    }
    for (i, layer) in layers.iter().enumerate() {
        for r in &layer.resources {
            for dep in r.depends_on() {
                match layer_of.get(dep) {
                    None => {
                        return Err(Error::Invalid(format!(
                            "{} depends on unknown kind {dep}",
                            r.kind()
                        )));
                    }
                    Some(&j) if j > i => {
                        return Err(Error::Invalid(format!(
                            "{} (layer {}) depends on {dep} in the later layer {}",
                            r.kind(),
                            layer.name,
                            layers[j].name
                        )));
                    }
                    _ => {}
                }
            }
        }
    }
    // Cycle check: repeatedly remove kinds whose dependencies are all removed.
    let all: Vec<&Arc<dyn Resource>> = layers.iter().flat_map(|l| &l.resources).collect();
    let mut done: HashSet<&str> = HashSet::new();
    while done.len() < all.len() {
        let before = done.len();
        for r in &all {
            if !done.contains(r.kind()) && r.depends_on().iter().all(|d| done.contains(d)) {
                done.insert(r.kind());
            }
        }
        if done.len() == before {
            let stuck: Vec<_> = all
                .iter()
                .map(|r| r.kind())
                .filter(|k| !done.contains(k))
                .collect();
            return Err(Error::Invalid(format!(
                "dependency cycle among {}",
                stuck.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub struct Fake(pub &'static str, pub &'static [&'static str]);

    #[async_trait]
    impl Resource for Fake {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn depends_on(&self) -> &'static [&'static str] {
            self.1
        }
        async fn ensure(&self, _: &Ctx) -> Result<()> {
            Ok(())
        }
        async fn delete(&self, _: &Ctx) -> Result<()> {
            Ok(())
        }
    }

    fn layer(name: &'static str, rs: Vec<Fake>) -> Layer {
        Layer {
            name,
            resources: rs
                .into_iter()
                .map(|r| Arc::new(r) as Arc<dyn Resource>)
                .collect(),
        }
    }

    #[test]
    fn the_real_registry_is_valid() {
        validate(&crate::layers()).unwrap();
    }

    #[test]
    fn rejects_unknown_forward_duplicate_and_cyclic_edges() {
        let unknown = vec![layer("a", vec![Fake("x", &["nope"])])];
        assert!(
            validate(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown kind nope")
        );
        let forward = vec![
            layer("a", vec![Fake("x", &["y"])]),
            layer("b", vec![Fake("y", &[])]),
        ];
        assert!(
            validate(&forward)
                .unwrap_err()
                .to_string()
                .contains("later layer")
        );
        let dup = vec![layer("a", vec![Fake("x", &[]), Fake("x", &[])])];
        assert!(validate(&dup).unwrap_err().to_string().contains("twice"));
        let cycle = vec![layer(
            "a",
            vec![Fake("x", &["y"]), Fake("y", &["x"]), Fake("z", &[])],
        )];
        let msg = validate(&cycle).unwrap_err().to_string();
        assert!(msg.contains("cycle among x, y"), "{msg}");
        let ok = vec![
            layer("a", vec![Fake("x", &[]), Fake("y", &["x"])]),
            layer("b", vec![Fake("z", &["x", "y"])]),
        ];
        validate(&ok).unwrap();
    }
}
