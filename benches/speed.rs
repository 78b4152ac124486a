//! The speed benchmark (run on demand, not in CI): `cargo bench --bench speed [-- PROFILE…]`.
//!
//! Each profile puts a stack through `up`, a no-op `up` and `down` against a fresh moto
//! server, through the test proxy with a fixed latency per request and a model of how
//! long AWS holds things "not ready", and prints for each run: the wall time, the
//! critical-path lower bound — one request's latency for the account lookup plus the
//! longest chain of dependent resource kinds, each at the time it took in this run (from
//! `--timings`; a kind that started early on a converged stack counts alone) — their
//! ratio (the time lost to needless serialisation), and the requests by operation and
//! by kind.
//!
//! Profiles (all three when none is named):
//! - `quick`: a prod stack with short holds (RDS 20 s, NAT 5 s, Lambda 2 s; settings
//!   `BENCH_RDS_S`, `BENCH_NAT_S`, `BENCH_LAMBDA_S`), as measured since issue 6.
//! - `realistic`: a prod stack on published figures scaled down 1:30 ([`Model`]).
//!   payctl runs with `PAYCTL_WAIT_SCALE=1/30`, so its polls and bounded waits keep
//!   the same cadence against the scaled holds as against the real ones. The run is
//!   repeated on a fresh stack with every hold at zero (the baseline: requests and
//!   payctl's own time), and scaled back to real time kind by kind ([`scaled_back`]):
//!   what a kind took beyond its baseline is waiting on AWS and is multiplied by 30;
//!   its baseline (the 50 ms requests) is not.
//! - `realistic-no-db`: the same model on a dev stack (one NAT gateway, no WAF, no
//!   AWS Backup) with the database ready at once: the stack cdkd measured (VPC with a NAT
//!   gateway, DynamoDB, SQS, S3, functions, an API), plus payctl's own extras.
//!
//! `BENCH_LATENCY_MS` (50) sets the latency per request.

#[path = "../tests/common/mod.rs"]
mod common;

use common::proxy::{After, Hold, Linger, Proxy, rest_json_error};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The scale of the realistic profiles: one second here is thirty on AWS.
const SCALE: f64 = 30.0;

/// How long AWS takes, in real seconds (published figures), before scaling.
struct Model {
    rds_create: f64,
    rds_delete: f64,
    nat_create: f64,
    nat_delete: f64,
    lambda_ready: f64,
    eni_release: f64,
    eni_collected: f64,
    iam_propagation: f64,
}

/// RDS Multi-AZ create 15 min and delete with a final snapshot 8 min; NAT gateway
/// create 2 min and delete 1 min; a function in a VPC ready in 60 s; its interfaces
/// released 10 min after it lets go (and collected by Lambda after 40 min); IAM 8 s.
const REAL: Model = Model {
    rds_create: 900.0,
    rds_delete: 480.0,
    nat_create: 120.0,
    nat_delete: 60.0,
    lambda_ready: 60.0,
    eni_release: 600.0,
    eni_collected: 2400.0,
    iam_propagation: 8.0,
};

#[derive(Clone, Copy, PartialEq)]
enum Holds {
    /// The quick profile's short holds, unscaled.
    Quick,
    /// [`REAL`] scaled by 1/[`SCALE`]; without the database's holds when `db` is false.
    Real { db: bool },
    /// Nothing held: the baseline of a realistic profile.
    None,
}

fn hold(operation: &str, from: &str, to: &str, hold: Duration) -> Hold {
    Hold {
        operation: operation.into(),
        from: from.into(),
        to: to.into(),
        hold,
    }
}

const RDS_AVAILABLE: &str = "<DBInstanceStatus>available</DBInstanceStatus>";
const FUNCTION_ACTIVE: &str = "\"State\": \"Active\"";

fn model(proxy: &Proxy, holds: Holds) {
    let (rds, nat, lambda) = match holds {
        Holds::None => return,
        Holds::Quick => {
            let s = |name, default| Duration::from_secs(setting(name, default));
            let (rds, nat) = (s("BENCH_RDS_S", 20), s("BENCH_NAT_S", 5));
            (rds, nat, s("BENCH_LAMBDA_S", 2))
        }
        Holds::Real { db } => {
            let scaled = |real: f64| Duration::from_secs_f64(real / SCALE);
            // https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_DeleteInstance.html
            // (an instance reads `deleting` until its final snapshot is taken)
            if db {
                proxy.linger(Linger {
                    trigger: "DeleteDBInstance".into(),
                    operation: "DescribeDBInstances".into(),
                    from: RDS_AVAILABLE.into(),
                    to: "<DBInstanceStatus>deleting</DBInstanceStatus>".into(),
                    window: scaled(REAL.rds_delete),
                });
            }
            // https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-basics.html
            // (`deleting`, then `deleted`)
            proxy.hold(hold(
                "DescribeNatGateways",
                "<state>deleted</state>",
                "<state>deleting</state>",
                scaled(REAL.nat_delete),
            ));
            proxy.model_lambda_enis(scaled(REAL.eni_release), scaled(REAL.eni_collected));
            // https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
            for trigger in ["CreateRole", "PutRolePolicy"] {
                proxy.after(After {
                    trigger: trigger.into(),
                    operation: "POST /2015-03-31/functions".into(),
                    window: scaled(REAL.iam_propagation),
                    fault: rest_json_error(
                        400,
                        "InvalidParameterValueException",
                        "The role defined for the function cannot be assumed by Lambda.",
                    ),
                });
            }
            let rds = if db {
                scaled(REAL.rds_create)
            } else {
                Duration::ZERO
            };
            (rds, scaled(REAL.nat_create), scaled(REAL.lambda_ready))
        }
    };
    let creating = "<DBInstanceStatus>creating</DBInstanceStatus>";
    proxy.hold(hold("DescribeDBInstances", RDS_AVAILABLE, creating, rds));
    let (available, pending) = ("<state>available</state>", "<state>pending</state>");
    proxy.hold(hold("DescribeNatGateways", available, pending, nat));
    let pending = "\"State\": \"Pending\"";
    proxy.hold(hold(
        "GET /2015-03-31/functions/",
        FUNCTION_ACTIVE,
        pending,
        lambda,
    ));
}

/// Each kind's duration in this run (ms).
fn durations(timings: &Value) -> BTreeMap<String, f64> {
    let kinds = timings["kinds"].as_array().cloned().unwrap_or_default();
    kinds
        .iter()
        .filter_map(|k| {
            let ms = k["end_ms"].as_u64()?.checked_sub(k["start_ms"].as_u64()?)?;
            Some((k["kind"].as_str()?.to_string(), ms as f64))
        })
        .collect()
}

/// The longest chain of dependent kinds, each weighted by its duration in this run.
fn critical_path(timings: &Value) -> (u128, Vec<String>) {
    let (ms, chain) = longest_chain(timings, &durations(timings));
    (ms as u128, chain)
}

/// The longest chain of dependent kinds (from `timings`), each weighted by `weight`.
fn longest_chain(timings: &Value, weight: &BTreeMap<String, f64>) -> (f64, Vec<String>) {
    let kinds = timings["kinds"].as_array().cloned().unwrap_or_default();
    let by_kind: BTreeMap<String, &Value> = kinds
        .iter()
        .filter_map(|k| Some((k["kind"].as_str()?.to_string(), k)))
        .collect();
    let mut memo: BTreeMap<String, (f64, Vec<String>)> = BTreeMap::new();
    fn longest(
        kind: &str,
        by_kind: &BTreeMap<String, &Value>,
        weight: &BTreeMap<String, f64>,
        memo: &mut BTreeMap<String, (f64, Vec<String>)>,
    ) -> (f64, Vec<String>) {
        if let Some(v) = memo.get(kind) {
            return v.clone();
        }
        let Some(k) = by_kind.get(kind) else {
            return (0.0, vec![]);
        };
        let own = weight.get(kind).copied().unwrap_or(0.0);
        let mut best = (0.0, vec![]);
        // A kind that started early (on a converged stack) did not wait for anything.
        let early = k["early"].as_bool().unwrap_or(false);
        for dep in k["waited_for"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|_| !early)
        {
            let d = longest(dep.as_str().unwrap_or_default(), by_kind, weight, memo);
            if d.0 > best.0 {
                best = d;
            }
        }
        let mut chain = best.1;
        chain.push(format!("{kind} {:.1}s", own / 1000.0));
        let v = (best.0 + own, chain);
        memo.insert(kind.to_string(), v.clone());
        v
    }
    by_kind
        .keys()
        .map(|k| longest(k, &by_kind, weight, &mut memo))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((0.0, vec![]))
}

struct Measured {
    name: &'static str,
    wall: Duration,
    /// Requests by operation, as the proxy counted them.
    requests: BTreeMap<String, usize>,
    /// Requests by kind, as payctl counted them (`outside` for the rest).
    by_kind: BTreeMap<String, u64>,
    /// Resources of each kind in the state file after the run (before it, for `down`).
    resources: BTreeMap<String, u64>,
    critical: (u128, Vec<String>),
    /// The setup before the walk, and the walk, from `--timings` (ms).
    setup_ms: u64,
    walk_ms: u64,
    timings: Value,
}

impl Measured {
    fn total(&self) -> usize {
        self.requests.values().sum()
    }

    fn ratio(&self) -> f64 {
        self.wall.as_secs_f64() / (self.critical.0 as f64 / 1000.0).max(0.001)
    }
}

fn run(
    stack: &Stack,
    proxy: &Proxy,
    name: &'static str,
    args: &[&str],
    env: &[(&str, &str)],
    latency: Duration,
) -> Measured {
    let before = proxy.counts();
    let resources = count_resources(stack);
    let timings = stack.state_dir.path().join(format!("{name}.timings.json"));
    let mut args: Vec<&str> = args.to_vec();
    let path = timings.to_string_lossy().into_owned();
    args.extend(["--timings", &path]);
    let started = Instant::now();
    let out = stack.payctl_via(&proxy.endpoint, &args, env);
    let wall = started.elapsed();
    assert!(out.ok, "{name} failed:\n{}", out.stderr);
    let mut requests = proxy.counts();
    for (op, n) in &before {
        if let Some(v) = requests.get_mut(op) {
            *v -= n;
        }
    }
    requests.retain(|_, n| *n > 0);
    let t: Value = std::fs::read_to_string(&timings)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .expect("payctl wrote its timings");
    let sum = |m: &Value| -> u64 {
        m.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n.as_u64())
            .sum()
    };
    let mut by_kind: BTreeMap<String, u64> = t["kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| Some((k["kind"].as_str()?.to_string(), sum(&k["requests"]))))
        .collect();
    by_kind.insert(
        "(outside any kind)".into(),
        sum(&t["requests_outside_kinds"]),
    );
    let (ms, chain) = critical_path(&t);
    let after = count_resources(stack);
    Measured {
        name,
        wall,
        requests,
        by_kind,
        resources: if after.is_empty() { resources } else { after },
        critical: (ms + latency.as_millis(), chain),
        setup_ms: t["setup_ms"].as_u64().unwrap_or(0),
        walk_ms: t["total_ms"].as_u64().unwrap_or(0) - t["setup_ms"].as_u64().unwrap_or(0),
        timings: t,
    }
}

/// The resources of each kind in the stack's state file.
fn count_resources(stack: &Stack) -> BTreeMap<String, u64> {
    let state: Value = std::fs::read_to_string(stack.state_file())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut n = BTreeMap::new();
    for r in state["resources"].as_object().into_iter().flatten() {
        if let Some(kind) = r.1["kind"].as_str() {
            *n.entry(kind.to_string()).or_default() += 1;
        }
    }
    n
}

fn print(m: &Measured) {
    println!("\n== {} ==", m.name);
    println!(
        "wall time: {:.2} s; critical path: {:.2} s; wall / critical path: {:.2}; requests: {}",
        m.wall.as_secs_f64(),
        m.critical.0 as f64 / 1000.0,
        m.ratio(),
        m.total()
    );
    println!(
        "  setup before the walk {:.2} s, walk {:.2} s, process start and end {:.2} s",
        m.setup_ms as f64 / 1000.0,
        m.walk_ms as f64 / 1000.0,
        m.wall.as_secs_f64() - (m.setup_ms + m.walk_ms) as f64 / 1000.0
    );
    println!("  chain: {}", m.critical.1.join(" -> "));
    let mut ops: Vec<_> = m.requests.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("  requests by operation:");
    for (op, n) in ops {
        println!("  {n:5}  {op}");
    }
    let counted: u64 = m.by_kind.values().sum();
    println!(
        "  requests by kind ({counted} counted by payctl), resources of the kind, requests per resource:"
    );
    let mut kinds: Vec<_> = m.by_kind.iter().filter(|(_, n)| **n > 0).collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (kind, n) in kinds {
        let r = m.resources.get(kind).copied().unwrap_or(0);
        let per = if r > 0 {
            format!("{:.1}", *n as f64 / r as f64)
        } else {
            "-".into()
        };
        println!("  {n:5}  {kind:28} {r:3}  {per}");
    }
}

/// Runs `up`, a no-op `up` and `down` on a fresh stack.
async fn cycle(env: &str, holds: Holds, latency: Duration, wait_scale: &str) -> [Measured; 3] {
    let stack = Stack::new(env);
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.set_latency(latency);
    model(&proxy, holds);
    let vars = [("PAYCTL_WAIT_SCALE", wait_scale)];
    let up = run(&stack, &proxy, "up", &["up"], &vars, latency);
    let noop = run(&stack, &proxy, "no-op up", &["up"], &vars, latency);
    let down = run(&stack, &proxy, "down", &["down", "--yes"], &vars, latency);
    [up, noop, down]
}

/// A realistic run scaled back to real time: each kind's duration in the baseline (its
/// requests and payctl's work) is kept, and what it took longer with the holds (waiting
/// on AWS) is multiplied by [`SCALE`]; the longest chain of those is the real critical
/// path, and the time this run spent beside its own critical path (setup, process
/// start) is added as measured. Answers (real wall, real critical path, its chain).
fn scaled_back(m: &Measured, baseline: &Measured) -> (f64, f64, Vec<String>) {
    let base = durations(&baseline.timings);
    let (sent, sent_base) = (requests_of(&m.timings), requests_of(&baseline.timings));
    let real: BTreeMap<String, f64> = durations(&m.timings)
        .into_iter()
        .map(|(k, held)| {
            // A kind waited on AWS only if it polled or retried: more requests than in
            // the baseline (otherwise the difference is noise, not to be multiplied).
            let waited =
                sent.get(&k).copied().unwrap_or(0) > sent_base.get(&k).copied().unwrap_or(0);
            let b = base.get(&k).copied().unwrap_or(held).min(held);
            (k, if waited { b + (held - b) * SCALE } else { held })
        })
        .collect();
    let (chain_ms, chain) = longest_chain(&m.timings, &real);
    let beside = m.wall.as_secs_f64() - m.critical.0 as f64 / 1000.0;
    let critical = chain_ms / 1000.0
        + (m.critical.0 as f64 / 1000.0
            - longest_chain(&m.timings, &durations(&m.timings)).0 / 1000.0);
    (critical + beside.max(0.0), critical, chain)
}

/// Each kind's requests in a run, from `--timings`.
fn requests_of(timings: &Value) -> BTreeMap<String, u64> {
    let kinds = timings["kinds"].as_array().cloned().unwrap_or_default();
    kinds
        .iter()
        .filter_map(|k| {
            let n = k["requests"]
                .as_object()?
                .values()
                .filter_map(Value::as_u64)
                .sum();
            Some((k["kind"].as_str()?.to_string(), n))
        })
        .collect()
}

fn minutes(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.1} min", secs / 60.0)
    }
}

/// The summary table; with `baseline`, each run scaled back to real time.
fn table(runs: &[Measured], baseline: Option<&[Measured; 3]>) {
    println!(
        "\n| run | wall | critical path | wall / critical path | requests | most per resource | scaled back: wall (critical path) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, m) in runs.iter().enumerate() {
        let most = m
            .by_kind
            .iter()
            .filter_map(|(k, n)| {
                let r = *m.resources.get(k)?;
                (r > 0).then(|| (*n as f64 / r as f64, k))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(n, k)| format!("{n:.1} ({k})"))
            .unwrap_or_default();
        let back = baseline.map_or("-".to_string(), |b| {
            let (wall, critical, chain) = scaled_back(m, &b[i]);
            println!("{}: scaled-back chain: {}", m.name, chain.join(" -> "));
            format!("{} ({})", minutes(wall), minutes(critical))
        });
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2} | {} | {most} | {back} |",
            m.name,
            m.wall.as_secs_f64(),
            m.critical.0 as f64 / 1000.0,
            m.ratio(),
            m.total()
        );
    }
}

fn main() {
    let latency = Duration::from_millis(setting("BENCH_LATENCY_MS", 50));
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = ["quick", "realistic", "realistic-no-db"];
    let profiles: Vec<&str> = if named.is_empty() {
        all.to_vec()
    } else {
        all.into_iter()
            .filter(|p| named.iter().any(|n| n == p))
            .collect()
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        for profile in profiles {
            let (env, holds) = match profile {
                "quick" => ("prod", Holds::Quick),
                "realistic" => ("prod", Holds::Real { db: true }),
                _ => ("dev", Holds::Real { db: false }),
            };
            println!(
                "\n#### profile {profile}: env {env}, {} ms per request",
                latency.as_millis()
            );
            if holds == Holds::Quick {
                let runs = cycle(env, holds, latency, "1").await;
                runs.iter().for_each(print);
                table(&runs, None);
                continue;
            }
            let scale = format!("{}", 1.0 / SCALE);
            let runs = cycle(env, holds, latency, &scale).await;
            runs.iter().for_each(print);
            let baseline = cycle(env, Holds::None, latency, &scale).await;
            println!("\nbaseline (no holds): up {:.2} s, no-op up {:.2} s, down {:.2} s",
                baseline[0].wall.as_secs_f64(),
                baseline[1].wall.as_secs_f64(),
                baseline[2].wall.as_secs_f64());
            println!("holds scaled 1:{SCALE}; scaled back per kind: baseline + (this run - baseline) x {SCALE}");
            table(&runs, Some(&baseline));
        }
    });
}
