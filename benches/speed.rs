//! The speed benchmark (run on demand, not in CI): `cargo bench --bench speed`.
//!
//! Runs `payctl up`, a no-op `up` and `down` for a full prod stack against a fresh moto
//! server, through the test proxy with a fixed latency per request and with resources
//! held "not ready" for a while after they appear (scaled down from real AWS), and prints
//! for each run: the requests by operation, the wall time and the critical-path lower
//! bound — one request's latency for the account lookup plus the longest chain of
//! dependent resource kinds, each at the time it took in this run (from `--timings`; a
//! kind that started early on a converged stack counts alone). The ratio wall / critical
//! path is the time lost to needless serialisation between kinds.
//!
//! Settings (environment): `BENCH_LATENCY_MS` (50), `BENCH_RDS_S` (20), `BENCH_NAT_S` (5),
//! `BENCH_LAMBDA_S` (2), `BENCH_ENV` (prod).

#[path = "../tests/common/mod.rs"]
mod common;

use common::proxy::{Hold, Proxy};
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

/// The longest chain of dependent kinds, each weighted by its duration in this run.
fn critical_path(timings: &Value) -> (u128, Vec<String>) {
    let kinds = timings["kinds"].as_array().cloned().unwrap_or_default();
    let by_kind: BTreeMap<String, &Value> = kinds
        .iter()
        .filter_map(|k| Some((k["kind"].as_str()?.to_string(), k)))
        .collect();
    let mut memo: BTreeMap<String, (u128, Vec<String>)> = BTreeMap::new();
    fn longest(
        kind: &str,
        by_kind: &BTreeMap<String, &Value>,
        memo: &mut BTreeMap<String, (u128, Vec<String>)>,
    ) -> (u128, Vec<String>) {
        if let Some(v) = memo.get(kind) {
            return v.clone();
        }
        let Some(k) = by_kind.get(kind) else {
            return (0, vec![]);
        };
        let own = (k["end_ms"].as_u64().unwrap_or(0) - k["start_ms"].as_u64().unwrap_or(0)) as u128;
        let mut best = (0, vec![]);
        // A kind that started early (on a converged stack) did not wait for anything.
        let early = k["early"].as_bool().unwrap_or(false);
        for dep in k["waited_for"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|_| !early)
        {
            let d = longest(dep.as_str().unwrap_or_default(), by_kind, memo);
            if d.0 > best.0 {
                best = d;
            }
        }
        let mut chain = best.1;
        chain.push(format!("{kind} {:.1}s", own as f64 / 1000.0));
        let v = (best.0 + own, chain);
        memo.insert(kind.to_string(), v.clone());
        v
    }
    by_kind
        .keys()
        .map(|k| longest(k, &by_kind, &mut memo))
        .max_by_key(|v| v.0)
        .unwrap_or((0, vec![]))
}

struct Measured {
    name: &'static str,
    wall: Duration,
    requests: BTreeMap<String, usize>,
    critical: Option<(u128, Vec<String>)>,
}

fn run(
    stack: &Stack,
    proxy: &Proxy,
    name: &'static str,
    args: &[&str],
    latency: Duration,
) -> Measured {
    let before = proxy.counts();
    let timings = stack.state_dir.path().join(format!("{name}.timings.json"));
    let mut args: Vec<&str> = args.to_vec();
    let path = timings.to_string_lossy().into_owned();
    args.extend(["--timings", &path]);
    let started = Instant::now();
    let out = stack.payctl_via(&proxy.endpoint, &args, &[]);
    let wall = started.elapsed();
    assert!(out.ok, "{name} failed:\n{}", out.stderr);
    let mut requests = proxy.counts();
    for (op, n) in &before {
        if let Some(v) = requests.get_mut(op) {
            *v -= n;
        }
    }
    requests.retain(|_, n| *n > 0);
    let critical = std::fs::read_to_string(&timings)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|t| {
            let (ms, chain) = critical_path(&t);
            (ms + latency.as_millis(), chain)
        });
    Measured {
        name,
        wall,
        requests,
        critical,
    }
}

fn print(m: &Measured) {
    let total: usize = m.requests.values().sum();
    println!("\n== {} ==", m.name);
    println!(
        "wall time: {:.1} s; requests: {total}",
        m.wall.as_secs_f64()
    );
    if let Some((cp, chain)) = &m.critical {
        let cp = *cp as f64 / 1000.0;
        println!(
            "critical path: {cp:.1} s; wall / critical path: {:.2}",
            m.wall.as_secs_f64() / cp.max(0.001)
        );
        println!("  chain: {}", chain.join(" -> "));
    }
    let mut ops: Vec<_> = m.requests.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (op, n) in ops {
        println!("  {n:5}  {op}");
    }
}

fn main() {
    let latency = Duration::from_millis(setting("BENCH_LATENCY_MS", 50));
    let env = std::env::var("BENCH_ENV").unwrap_or_else(|_| "prod".into());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let stack = Stack::new(&env);
        let proxy = Proxy::start(&stack.moto.endpoint).await;
        proxy.set_latency(latency);
        let hold = |operation: &str, from: &str, to: &str, secs: u64| Hold {
            operation: operation.into(),
            from: from.into(),
            to: to.into(),
            hold: Duration::from_secs(secs),
        };
        let rds = setting("BENCH_RDS_S", 20);
        let nat = setting("BENCH_NAT_S", 5);
        let lambda = setting("BENCH_LAMBDA_S", 2);
        proxy.hold(hold(
            "DescribeDBInstances",
            "<DBInstanceStatus>available</DBInstanceStatus>",
            "<DBInstanceStatus>creating</DBInstanceStatus>",
            rds,
        ));
        proxy.hold(hold(
            "DescribeNatGateways",
            "<state>available</state>",
            "<state>pending</state>",
            nat,
        ));
        proxy.hold(hold(
            "GET /2015-03-31/functions/",
            "\"State\": \"Active\"",
            "\"State\": \"Pending\"",
            lambda,
        ));
        println!(
            "payctl speed benchmark: env {env}, {} ms per request, holds RDS {rds} s, NAT {nat} s, Lambda {lambda} s",
            latency.as_millis()
        );
        let up = run(&stack, &proxy, "up", &["up"], latency);
        print(&up);
        let noop = run(&stack, &proxy, "no-op up", &["up"], latency);
        print(&noop);
        let down = run(&stack, &proxy, "down", &["down", "--yes"], latency);
        print(&down);
        println!("\n| run | wall | critical path | ratio | requests |");
        println!("|---|---|---|---|---|");
        for m in [&up, &noop, &down] {
            let cp = m.critical.as_ref().map(|c| c.0 as f64 / 1000.0).unwrap_or(0.0);
            println!(
                "| {} | {:.1} s | {cp:.1} s | {:.2} | {} |",
                m.name,
                m.wall.as_secs_f64(),
                m.wall.as_secs_f64() / cp.max(0.001),
                m.requests.values().sum::<usize>()
            );
        }
    });
}
