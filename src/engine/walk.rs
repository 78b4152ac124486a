//! The walker: runs every kind as soon as the kinds it waits for are done.
//!
//! For `up` a kind waits for its dependencies; for `down` it waits for its dependents
//! (the create edges reversed, as Terraform's destroy edges). Independent kinds run
//! concurrently on the tokio runtime. A failure does not stop the walk: everything that
//! does not wait on the failed kind still runs, and what does is reported as skipped
//! because of it, not as a failure of its own.

use super::{Ctx, Layer, Resource};
use crate::error::Error;
use std::collections::HashMap;
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
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
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

    let mut outcome = Outcome::default();
    let mut done: HashMap<&'static str, Done> = HashMap::new();
    let mut started: Vec<&'static str> = Vec::new();
    let mut running = JoinSet::new();
    let mut task_kind = HashMap::new();
    loop {
        // Start (or skip) everything whose prerequisites are settled.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for r in &all {
                let kind = r.kind();
                if started.contains(&kind) {
                    continue;
                }
                let pre = &waits_for[kind];
                if !pre.iter().all(|p| done.contains_key(p)) {
                    continue;
                }
                started.push(kind);
                progressed = true;
                if let Some(blocker) = pre.iter().find_map(|p| match done[p] {
                    Done::Blocked(b) => Some(b),
                    Done::Ok => None,
                }) {
                    tracing::warn!("skipping {kind}: {blocker} failed");
                    outcome.skipped.push((kind, blocker));
                    done.insert(kind, Done::Blocked(blocker));
                    continue;
                }
                let (r, ctx) = (r.clone(), ctx.clone());
                let handle = running.spawn(async move {
                    let result = match direction {
                        Direction::Up => r.ensure(&ctx).await,
                        Direction::Down => r.delete(&ctx).await,
                    };
                    let result = match result {
                        Ok(()) => r.wait(&ctx, direction).await,
                        err => err,
                    };
                    (kind, result)
                });
                task_kind.insert(handle.id(), kind);
            }
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        match joined {
            Ok((_, (kind, Ok(())))) => {
                done.insert(kind, Done::Ok);
            }
            Ok((_, (kind, Err(e)))) => {
                tracing::error!("{kind}: {e}");
                outcome.failures.push((kind, e));
                done.insert(kind, Done::Blocked(kind));
            }
            Err(join_err) => {
                // A task panicked: fail its kind, keep walking the rest.
                let kind = task_kind.get(&join_err.id()).copied().unwrap_or("unknown");
                outcome.failures.push((
                    kind,
                    Error::Invalid(format!("internal error in {kind}: {join_err}")),
                ));
                done.insert(kind, Done::Blocked(kind));
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Ctx;
    use crate::error::Result;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<String>>>;

    struct Step {
        kind: &'static str,
        deps: &'static [&'static str],
        fail: bool,
        log: Log,
    }

    #[async_trait]
    impl Resource for Step {
        fn kind(&self) -> &'static str {
            self.kind
        }
        fn depends_on(&self) -> &'static [&'static str] {
            self.deps
        }
        async fn ensure(&self, _: &Ctx) -> Result<()> {
            self.run("up").await
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

    pub(crate) fn test_ctx(dir: &std::path::Path) -> Arc<Ctx> {
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Arc::new(Ctx {
            env: "dev".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            settings: crate::config::Settings::builtin("dev"),
            aws: crate::aws::Clients::new(&conf),
            state: crate::state::StateStore::open(dir, "dev", "us-east-1", "123456789012", "test")
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
        let out = walk(test_ctx(dir.path()), &layers(&log, ""), Direction::Up).await;
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

    #[tokio::test]
    async fn down_reverses_the_edges() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::default();
        let out = walk(test_ctx(dir.path()), &layers(&log, ""), Direction::Down).await;
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
        let out = walk(test_ctx(dir.path()), &layers(&log, "a"), Direction::Up).await;
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
        let out = walk(test_ctx(dir.path()), &layers(&log2, "d"), Direction::Down).await;
        assert_eq!(out.failures.len(), 1);
        let mut skipped = out.skipped.clone();
        skipped.sort();
        assert_eq!(skipped, vec![("a", "d"), ("b", "d")]);
        assert!(log2.lock().unwrap().contains(&"end c".to_string()));
    }
}
