//! The walker: runs every kind as soon as the kinds it waits for are done.
//!
//! For `up` a kind waits for its dependencies; for `down` it waits for its dependents
//! (the create edges reversed, as Terraform's destroy edges). Independent kinds run
//! concurrently on the tokio runtime. A failure does not stop the walk: everything that
//! does not wait on the failed kind still runs, and what does is reported as skipped
//! because of it, not as a failure of its own. Two things stop new kinds from starting
//! while letting the running ones finish: Ctrl-C ([`crate::interrupt`]) and a state file
//! that can no longer be written (its contents went to a recovery file).

use super::report::Change;
use super::{Ctx, Layer, Resource};
use crate::error::Error;
use crate::state::{Record, StateError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub failures: Vec<(&'static str, Error)>,
    /// Kinds not attempted, with the failed kind that blocked them.
    pub skipped: Vec<(&'static str, &'static str)>,
    /// Ctrl-C stopped the walk: kinds not yet started were left for the next run.
    pub interrupted: bool,
    /// When each kind that ran started and finished, from the start of the walk.
    pub timings: Vec<Timing>,
}

/// One kind's run, for `--timings`: what it waited for, when it started and ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    pub kind: &'static str,
    pub waited_for: Vec<&'static str>,
    pub start_ms: u128,
    pub end_ms: u128,
    pub ok: bool,
    /// Started before what it waits for had finished (see `Walk::may_speculate`).
    pub early: bool,
    /// The requests it sent, by operation (retries included).
    pub requests: BTreeMap<String, u32>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && !self.interrupted
    }
}

enum Done {
    Ok,
    /// Failed, or blocked by this failed kind.
    Blocked(&'static str),
}

pub async fn walk(ctx: Arc<Ctx>, layers: &[Layer], direction: Direction) -> Outcome {
    let all: Vec<Arc<dyn Resource>> = layers
        .iter()
        .flat_map(|l| l.resources.iter().cloned())
        .collect();
    let mut waits_for: HashMap<&'static str, Vec<&'static str>> =
        all.iter().map(|r| (r.kind(), Vec::new())).collect();
    for r in &all {
        for dep in r.depends_on() {
            let Some(&dep) = all.iter().map(|x| x.kind()).find(|k| k == dep).as_ref() else {
                continue;
            };
            match direction {
                Direction::Up => waits_for.entry(r.kind()).or_default().push(dep),
                Direction::Down => waits_for.entry(dep).or_default().push(r.kind()),
            }
        }
    }
    // `up` only: what each kind had in the state file when the run began. A kind whose
    // prerequisites all had records may start before they finish (see `speculate`).
    let at_start: HashMap<&'static str, Vec<(String, Record)>> = match direction {
        Direction::Up => all
            .iter()
            .map(|r| (r.kind(), ctx.state.of_kind(r.kind())))
            .collect(),
        Direction::Down => HashMap::new(),
    };

    let mut w = Walk {
        outcome: Outcome::default(),
        done: HashMap::new(),
        started: HashMap::new(),
        void: HashSet::new(),
        no_speculation: HashSet::new(),
        start_ms: HashMap::new(),
        deferred: HashSet::new(),
    };
    let mut running = JoinSet::new();
    let mut task_kind = HashMap::new();
    let mut tallies: HashMap<&'static str, Arc<crate::aws::tally::Tally>> = HashMap::new();
    let mut halted = false;
    let walk_start = std::time::Instant::now();
    loop {
        // Start (or skip) everything whose prerequisites are settled, or may be assumed.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for r in &all {
                let kind = r.kind();
                if w.started.contains_key(kind) {
                    continue;
                }
                let pre = &waits_for[kind];
                let settled = pre.iter().all(|p| w.done.contains_key(p));
                let speculative = !settled
                    && !ctx.planning()
                    && r.may_start_early()
                    && w.may_speculate(kind, pre, &at_start);
                if !settled && !speculative {
                    continue;
                }
                if crate::interrupt::requested() {
                    // Nothing new starts after Ctrl-C; what runs finishes.
                    w.outcome.interrupted = true;
                    continue;
                }
                if halted {
                    // The state file cannot be written: nothing new starts.
                    continue;
                }
                w.started.insert(kind, speculative);
                progressed = true;
                if let Some(blocker) = pre.iter().find_map(|p| match w.done.get(p) {
                    Some(Done::Blocked(b)) => Some(*b),
                    _ => None,
                }) {
                    tracing::warn!("skipping {kind}: {blocker} failed");
                    w.outcome.skipped.push((kind, blocker));
                    w.done.insert(kind, Done::Blocked(blocker));
                    continue;
                }
                if ctx.planning() && w.defer(kind, pre, &ctx) {
                    continue;
                }
                w.start_ms.insert(kind, walk_start.elapsed().as_millis());
                let verb = match direction {
                    Direction::Up => "ensuring",
                    Direction::Down => "deleting",
                };
                crate::progress::start(kind, verb);
                let (r, ctx) = (r.clone(), ctx.clone());
                let tally = tallies.entry(kind).or_default().clone();
                let handle = running.spawn(crate::aws::tally::counted(tally, async move {
                    let result = match direction {
                        Direction::Up => r.ensure(&ctx).await,
                        Direction::Down => r.delete(&ctx).await,
                    };
                    let result = match result {
                        // `plan` started nothing, so there is nothing to wait for.
                        Ok(()) if ctx.planning() => Ok(()),
                        Ok(()) => r.wait(&ctx, direction).await,
                        err => err,
                    };
                    (kind, result)
                }));
                task_kind.insert(handle.id(), kind);
            }
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (kind, result) = match joined {
            Ok((_, (kind, result))) => (kind, result),
            Err(join_err) => {
                // A task panicked: fail its kind, keep walking the rest.
                let kind = task_kind.get(&join_err.id()).copied().unwrap_or("unknown");
                let e = Error::Invalid(format!("internal error in {kind}: {join_err}"));
                (kind, Err(e))
            }
        };
        if w.void.remove(kind) {
            // Started early on records a prerequisite then changed: run it again.
            tracing::debug!("{kind}: a prerequisite changed while it ran; running it again");
            w.started.remove(kind);
            ctx.report.forget(kind);
            continue;
        }
        w.outcome.timings.push(Timing {
            kind,
            waited_for: waits_for[kind].clone(),
            start_ms: w.start_ms.get(kind).copied().unwrap_or(0),
            end_ms: walk_start.elapsed().as_millis(),
            ok: result.is_ok(),
            early: w.started.get(kind).copied().unwrap_or(false),
            requests: tallies.get(kind).map(|t| t.snapshot()).unwrap_or_default(),
        });
        let ok = result.is_ok();
        crate::progress::finish(kind, ok);
        match result {
            Ok(()) => {
                w.done.insert(kind, Done::Ok);
            }
            Err(e) => {
                tracing::error!("{kind}: {e}");
                if matches!(&e, Error::State(s) if StateError::halts_run(s)) {
                    halted = true;
                    // The operator must see this one first: it says where the state went.
                    w.outcome.failures.insert(0, (kind, e));
                } else {
                    w.outcome.failures.push((kind, e));
                }
                w.done.insert(kind, Done::Blocked(kind));
            }
        }
        if direction == Direction::Up {
            let same = at_start.get(kind) == Some(&ctx.state.of_kind(kind));
            if !ok || !same || ctx.report.made_new(kind) {
                w.redo_dependents_of(kind, &waits_for, &ctx);
            }
        }
    }
    w.outcome
}

/// The walker's bookkeeping.
struct Walk {
    outcome: Outcome,
    done: HashMap<&'static str, Done>,
    /// Started kinds (running or done), and whether each started early.
    started: HashMap<&'static str, bool>,
    /// Running kinds whose result will be thrown away: a prerequisite changed under them.
    void: HashSet<&'static str>,
    /// Kinds that must wait for their prerequisites from now on.
    no_speculation: HashSet<&'static str>,
    start_ms: HashMap<&'static str, u128>,
    /// `plan`: kinds not run because something they wait for would be created first.
    deferred: HashSet<&'static str>,
}

impl Walk {
    /// On `plan`, a kind waiting for something that would be created cannot be checked
    /// (what it would use does not exist yet): it is noted as a whole, and so are the
    /// kinds that wait for it. Answers whether `kind` was deferred.
    fn defer(&mut self, kind: &'static str, pre: &[&'static str], ctx: &Ctx) -> bool {
        let Some(dep) = pre
            .iter()
            .find(|p| self.deferred.contains(*p) || ctx.report.noted(p, Change::Created))
        else {
            return false;
        };
        let (change, what) = if ctx.state.of_kind(kind).is_empty() {
            (Change::Created, "created")
        } else {
            (Change::Updated, "checked again")
        };
        ctx.report.note(
            change,
            format!("{kind} (all of it: {what} once {dep} exists)"),
        );
        self.deferred.insert(kind);
        self.done.insert(kind, Done::Ok);
        true
    }

    /// On `up`, a kind may start before its prerequisites finish when each of them has
    /// started, had records in the state file at the start, and has not failed. On a
    /// converged stack this runs every kind's checks at once instead of one layer after
    /// another. It is safe because `ensure` is idempotent and reads its prerequisites
    /// only from the state file: when a prerequisite finishes having made something new
    /// or changed its records (or failed), every kind that started early on it is run
    /// again, in order, and the early result is dropped.
    fn may_speculate(
        &self,
        kind: &'static str,
        pre: &[&'static str],
        at_start: &HashMap<&'static str, Vec<(String, Record)>>,
    ) -> bool {
        !self.no_speculation.contains(kind)
            && pre.iter().all(|p| {
                self.started.contains_key(p)
                    && !self.void.contains(p)
                    && !matches!(self.done.get(p), Some(Done::Blocked(_)))
                    && at_start.get(p).is_some_and(|r| !r.is_empty())
            })
    }

    /// Every started kind that (transitively) waits for `kind` runs again, in order.
    fn redo_dependents_of(
        &mut self,
        kind: &'static str,
        waits_for: &HashMap<&'static str, Vec<&'static str>>,
        ctx: &Ctx,
    ) {
        let mut queue = vec![kind];
        let mut seen = HashSet::new();
        while let Some(k) = queue.pop() {
            for (dependent, pre) in waits_for {
                if pre.contains(&k) && seen.insert(*dependent) {
                    queue.push(dependent);
                }
            }
        }
        for x in seen {
            if !self.started.contains_key(x) {
                continue;
            }
            self.no_speculation.insert(x);
            if self.done.remove(x).is_some() {
                self.started.remove(x);
                self.outcome.failures.retain(|(k, _)| *k != x);
                self.outcome.skipped.retain(|(k, _)| *k != x);
                self.outcome.timings.retain(|t| t.kind != x);
                ctx.report.forget(x);
            } else {
                self.void.insert(x);
            }
        }
    }
}

/// A run context on a local state in `dir`, with SDK clients that reach nothing (tests).
#[cfg(test)]
pub(crate) async fn test_ctx(dir: &std::path::Path) -> Arc<Ctx> {
    tests::test_ctx_impl(dir).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::Ctx;
    use crate::error::Result;
    use crate::state::Record;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<String>>>;

    struct Step {
        kind: &'static str,
        deps: &'static [&'static str],
        fail: bool,
        log: Log,
        /// On `up`, writes a new record for its kind (as if it had replaced a resource).
        changes: bool,
        /// Never starts before its prerequisites finish.
        late: bool,
    }

    #[async_trait]
    impl Resource for Step {
        fn kind(&self) -> &'static str {
            self.kind
        }
        fn depends_on(&self) -> &'static [&'static str] {
            self.deps
        }
        fn may_start_early(&self) -> bool {
            !self.late
        }
        async fn ensure(&self, ctx: &Ctx) -> Result<()> {
            self.run("up").await?;
            if self.changes {
                let id = uuid::Uuid::new_v4().to_string();
                ctx.state
                    .put(&format!("{}.x", self.kind), Record::new(self.kind, id))
                    .await?;
            }
            Ok(())
        }
        async fn delete(&self, _: &Ctx) -> Result<()> {
            self.run("down").await
        }
    }

    impl Step {
        async fn run(&self, what: &str) -> Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("start {}", self.kind));
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.log.lock().unwrap().push(format!("end {}", self.kind));
            if self.fail {
                Err(Error::Invalid(format!("{} {what} failed", self.kind)))
            } else {
                Ok(())
            }
        }
    }

    pub(crate) async fn test_ctx_impl(dir: &std::path::Path) -> Arc<Ctx> {
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Arc::new(Ctx {
            env: "dev".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            settings: crate::config::Settings::builtin("dev"),
            aws: crate::aws::Clients::new(&conf, "123456789012"),
            state: crate::state::StateStore::open(dir, "dev", "us-east-1", "123456789012", "test")
                .await
                .unwrap(),
            report: Default::default(),
            options: Default::default(),
        })
    }

    fn layers(log: &Log, failing: &str) -> Vec<Layer> {
        let step = |kind, deps| {
            Arc::new(Step {
                kind,
                deps,
                fail: kind == failing,
                log: log.clone(),
                changes: kind == "a" && failing == "a changes",
                late: kind == "d" && failing == "d late",
            }) as Arc<dyn Resource>
        };
        vec![
            Layer {
                name: "one",
                resources: vec![step("a", &[]), step("b", &["a"]), step("c", &[])],
            },
            Layer {
                name: "two",
                resources: vec![step("d", &["b"]), step("e", &["c"])],
            },
        ]
    }

    fn pos(log: &[String], entry: &str) -> usize {
        log.iter()
            .position(|l| l == entry)
            .unwrap_or_else(|| panic!("{entry} missing from {log:?}"))
    }

    #[tokio::test]
    async fn up_respects_dependencies_and_runs_independent_kinds_together() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let out = walk(test_ctx(dir.path()).await, &layers(&log, ""), Direction::Up).await;
        assert!(out.ok());
        let log = log.lock().unwrap().clone();
        assert!(pos(&log, "end a") < pos(&log, "start b"));
        assert!(pos(&log, "end b") < pos(&log, "start d"));
        assert!(pos(&log, "end c") < pos(&log, "start e"));
        assert!(
            pos(&log, "start c") < pos(&log, "end a"),
            "a and c run concurrently: {log:?}"
        );
    }

    /// A context whose state file already holds a record of every kind.
    async fn converged_ctx(dir: &std::path::Path) -> Arc<Ctx> {
        let ctx = test_ctx(dir).await;
        for kind in ["a", "b", "c", "d", "e"] {
            let record = Record::new(kind, format!("{kind}-1"));
            ctx.state.put(&format!("{kind}.x"), record).await.unwrap();
        }
        ctx
    }

    fn count(log: &[String], entry: &str) -> usize {
        log.iter().filter(|l| *l == entry).count()
    }

    #[tokio::test]
    async fn on_a_converged_stack_up_checks_every_kind_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let out = walk(
            converged_ctx(dir.path()).await,
            &layers(&log, ""),
            Direction::Up,
        )
        .await;
        assert!(out.ok());
        let log = log.lock().unwrap().clone();
        assert!(
            pos(&log, "start d") < pos(&log, "end a"),
            "d started early: {log:?}"
        );
        assert_eq!(count(&log, "start d"), 1, "{log:?}");
    }

    #[tokio::test]
    async fn a_kind_that_may_not_start_early_waits_even_on_a_converged_stack() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let layers = layers(&log, "d late");
        let out = walk(converged_ctx(dir.path()).await, &layers, Direction::Up).await;
        assert!(out.ok());
        let log = log.lock().unwrap().clone();
        assert!(pos(&log, "start d") > pos(&log, "end b"), "{log:?}");
        assert!(
            pos(&log, "start e") < pos(&log, "end c"),
            "e still early: {log:?}"
        );
    }

    #[tokio::test]
    async fn a_prerequisite_that_changes_its_records_reruns_what_started_early() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let ctx = converged_ctx(dir.path()).await;
        let out = walk(ctx.clone(), &layers(&log, "a changes"), Direction::Up).await;
        assert!(out.ok());
        let log = log.lock().unwrap().clone();
        // b and d ran early, then again after a (and b) finished.
        assert_eq!(count(&log, "start b"), 2, "{log:?}");
        assert_eq!(count(&log, "start d"), 2, "{log:?}");
        let last = |e: &str| log.iter().rposition(|l| l == e).unwrap();
        assert!(last("end a") < last("start b"), "{log:?}");
        assert!(last("end b") < last("start d"), "{log:?}");
        // c and e did not depend on a: once each.
        assert_eq!(count(&log, "start e"), 1, "{log:?}");
        let kinds: Vec<&str> = out.timings.iter().map(|t| t.kind).collect();
        assert_eq!(kinds.len(), 5, "one timing per kind: {kinds:?}");
    }

    #[tokio::test]
    async fn a_failed_prerequisite_skips_what_started_early() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let out = walk(
            converged_ctx(dir.path()).await,
            &layers(&log, "a"),
            Direction::Up,
        )
        .await;
        let skipped: Vec<&str> = out.skipped.iter().map(|(k, _)| *k).collect();
        assert_eq!(skipped, vec!["b", "d"]);
        let failed: Vec<&str> = out.failures.iter().map(|(k, _)| *k).collect();
        assert_eq!(failed, vec!["a"]);
    }

    /// On `plan`: notes a creation (`creates`) or nothing to do.
    struct Planned {
        kind: &'static str,
        deps: &'static [&'static str],
        creates: bool,
        log: Log,
    }

    #[async_trait]
    impl Resource for Planned {
        fn kind(&self) -> &'static str {
            self.kind
        }
        fn depends_on(&self) -> &'static [&'static str] {
            self.deps
        }
        async fn ensure(&self, ctx: &Ctx) -> Result<()> {
            self.log.lock().unwrap().push(self.kind.to_string());
            if !self.creates || ctx.would_create(format!("{}.x", self.kind)) {
                ctx.report
                    .note(Change::Unchanged, format!("{}.x", self.kind));
            }
            Ok(())
        }
        async fn delete(&self, _: &Ctx) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn on_plan_what_waits_for_a_creation_is_noted_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let base = test_ctx(dir.path()).await;
        let ctx = Arc::new(Ctx {
            env: base.env.clone(),
            region: base.region.clone(),
            account_id: base.account_id.clone(),
            settings: base.settings.clone(),
            aws: base.aws.clone(),
            state: crate::state::StateStore::open_detached(
                dir.path(),
                "dev",
                "us-east-1",
                "123456789012",
            )
            .await
            .unwrap(),
            report: crate::engine::Report::for_plan(),
            options: crate::engine::Options {
                plan: true,
                ..Default::default()
            },
        });
        drop(base);
        let log: Log = Default::default();
        let r = |kind, deps, creates| {
            Arc::new(Planned {
                kind,
                deps,
                creates,
                log: log.clone(),
            }) as Arc<dyn Resource>
        };
        let layers = vec![Layer {
            name: "one",
            resources: vec![
                r("a", &[], true),
                r("b", &["a"], false),
                r("c", &[], false),
                r("d", &["b"], false),
                r("e", &["c"], false),
            ],
        }];
        let outcome = walk(ctx.clone(), &layers, Direction::Up).await;
        assert!(outcome.ok());
        let mut ran = log.lock().unwrap().clone();
        ran.sort();
        assert_eq!(
            ran,
            ["a", "c", "e"],
            "b and d wait for a, which would be created"
        );
        let notes = ctx.report.entries();
        assert!(notes.contains(&(Change::Created, "a.x".into())));
        assert!(notes.contains(&(
            Change::Created,
            "b (all of it: created once a exists)".into()
        )));
        assert!(notes.contains(&(
            Change::Created,
            "d (all of it: created once b exists)".into()
        )));
        assert!(notes.contains(&(Change::Unchanged, "e.x".into())));
    }

    #[tokio::test]
    async fn down_reverses_the_edges() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let out = walk(
            test_ctx(dir.path()).await,
            &layers(&log, ""),
            Direction::Down,
        )
        .await;
        assert!(out.ok());
        let log = log.lock().unwrap().clone();
        assert!(pos(&log, "end d") < pos(&log, "start b"));
        assert!(pos(&log, "end b") < pos(&log, "start a"));
        assert!(pos(&log, "end e") < pos(&log, "start c"));
    }

    #[tokio::test]
    async fn a_failure_skips_only_what_waits_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let out = walk(
            test_ctx(dir.path()).await,
            &layers(&log, "a"),
            Direction::Up,
        )
        .await;
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].0, "a");
        let mut skipped = out.skipped.clone();
        skipped.sort();
        assert_eq!(skipped, vec![("b", "a"), ("d", "a")]);
        let log = log.lock().unwrap().clone();
        assert!(
            log.contains(&"end e".to_string()),
            "independent work still ran: {log:?}"
        );

        let log2 = Log::default();
        let out = walk(
            test_ctx(dir.path()).await,
            &layers(&log2, "d"),
            Direction::Down,
        )
        .await;
        assert_eq!(out.failures.len(), 1);
        let mut skipped = out.skipped.clone();
        skipped.sort();
        assert_eq!(skipped, vec![("a", "d"), ("b", "d")]);
        assert!(log2.lock().unwrap().contains(&"end c".to_string()));
    }
}
