//! Safe rollouts of the payment functions (issue #19): each release is a published
//! version behind the alias `live`; outside production `live` moves at once, in
//! production through a canary that is promoted when the new version's metrics stay
//! healthy and rolled back when they do not; `payctl rollback` flips `live` back; a run
//! killed during a bake leaves `live` on exactly one version after the next `up`.
//!
//! moto never evaluates alarms and Lambda never runs here, so the tests publish the
//! metrics Lambda would (`AWS/Lambda`, dimensions `FunctionName`, `Resource`,
//! `ExecutedVersion`) with `PutMetricData`.

mod common;

use common::census::census;
use common::proxy::Proxy;
use common::*;
use std::time::{Duration, Instant};

const PROCESSOR: &str = "payment-processor";

fn bake_config(stack: &Stack, seconds: u64) {
    let text = format!("[env.{}]\ncanary_bake_seconds = {seconds}\n", stack.env);
    std::fs::write(stack.home.path().join("payctl.toml"), text).unwrap();
}

/// `live`'s primary version and the versions weighted beside it.
async fn alias(lambda: &aws_sdk_lambda::Client, function: &str) -> (String, Vec<(String, f64)>) {
    let a = lambda
        .get_alias()
        .function_name(function)
        .name("live")
        .send()
        .await
        .unwrap();
    let weights = a
        .routing_config()
        .and_then(|r| r.additional_version_weights())
        .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    (a.function_version().unwrap().to_string(), weights)
}

/// Waits until `live` is weighted; answers the canary version and its weight.
async fn canary_of(lambda: &aws_sdk_lambda::Client, function: &str) -> (String, f64) {
    let start = Instant::now();
    loop {
        let (_, weights) = alias(lambda, function).await;
        if let Some(w) = weights.into_iter().next() {
            return w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "live never weighted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes `metric` = `value` for `version` of `function`, as Lambda does for calls
/// through the alias.
async fn publish(stack: &Stack, function: &str, version: &str, metric: &str, value: f64) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let cw = aws_sdk_cloudwatch::Client::new(&stack.sdk().await);
    let dim = |k: &str, v: &str| Dimension::builder().name(k).value(v).build();
    let datum = MetricDatum::builder()
        .metric_name(metric)
        .dimensions(dim("FunctionName", function))
        .dimensions(dim("Resource", &format!("{function}:live")))
        .dimensions(dim("ExecutedVersion", version))
        .value(value)
        .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(
            std::time::SystemTime::now(),
        ))
        .build();
    cw.put_metric_data()
        .namespace("AWS/Lambda")
        .metric_data(datum)
        .send()
        .await
        .unwrap();
}

async fn finish(child: std::process::Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"))
        .await
        .unwrap()
}

fn lambda(sdk: &aws_config::SdkConfig) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(sdk)
}

/// A production stack (bake of `bake` seconds) that is up, with a second `up` of a new
/// processor build running in the background, its canary weighted.
struct Release {
    stack: Stack,
    lambda: aws_sdk_lambda::Client,
    function: String,
    packages: tempfile::TempDir,
    child: std::process::Child,
    /// The canary version, and its weight, once `live` is weighted.
    version: String,
    weight: f64,
}

impl Release {
    async fn start(bake: u64) -> Release {
        let stack = Stack::new("prod");
        bake_config(&stack, bake);
        stack.must(&["up"]);
        let lambda = lambda(&stack.sdk().await);
        let packages = packages_with_new("processor");
        let child = stack.spawn_via(
            &stack.moto.endpoint,
            &["up"],
            &[("PAYCTL_PACKAGES", packages.path().to_str().unwrap())],
        );
        let function = format!("{PROCESSOR}-prod");
        let (version, weight) = canary_of(&lambda, &function).await;
        Release {
            stack,
            lambda,
            function,
            packages,
            child,
            version,
            weight,
        }
    }
}

/// Outside production: a new build publishes one version and `live` moves to it at
/// once; the mappings are created with the alias ARN; `rollback` flips `live` back
/// without publishing anything, `up` does not release the rolled-back build again, and
/// a second `rollback` rolls forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_build_moves_live_at_once_and_rollback_flips_it() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    for op in [
        "POST /2015-03-31/event-source-mappings",
        "POST /2015-03-31/event-source-mappings/",
    ] {
        proxy.record(op);
    }
    let up = |env: &[(&str, &str)]| {
        let run = stack.payctl_via(&proxy.endpoint, &["up"], env);
        assert!(run.ok, "{}", run.stderr);
        run
    };
    up(&[]);
    let l = lambda(&stack.sdk().await);
    let function = format!("{PROCESSOR}-dev");
    assert_eq!(alias(&l, &function).await, ("1".to_string(), vec![]));
    // The mappings were asked for with the alias (moto stores the version it resolves).
    let bodies: Vec<String> = [
        "POST /2015-03-31/event-source-mappings",
        "POST /2015-03-31/event-source-mappings/",
    ]
    .iter()
    .flat_map(|op| proxy.bodies(op))
    .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for b in &bodies {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        let f = v["FunctionName"].as_str().unwrap();
        assert!(f.ends_with(":live"), "{b}");
    }

    let changed = packages_with_new("processor");
    let new = [("PAYCTL_PACKAGES", changed.path().to_str().unwrap())];
    let counts = proxy.counts();
    up(&new);
    assert_eq!(alias(&l, &function).await, ("2".to_string(), vec![]));
    let published = |since: &std::collections::BTreeMap<String, usize>| {
        proxy
            .counts()
            .into_iter()
            .filter(|(op, n)| {
                op.starts_with("POST")
                    && op.ends_with("/versions")
                    && *n > since.get(op).copied().unwrap_or(0)
            })
            .map(|(op, n)| (op.clone(), n - since.get(&op).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        published(&counts),
        [(format!("POST /2015-03-31/functions/{function}/versions"), 1)]
    );
    let state = stack.state();
    let rec = &state["resources"]["lambda_alias.processor"]["attrs"];
    assert_eq!(
        (&rec["version"], &rec["previous"]),
        (&"2".into(), &"1".into())
    );

    // rollback: live back on 1, nothing published.
    let counts = proxy.counts();
    let run = stack.payctl_via(
        &proxy.endpoint,
        &["rollback", "--function", "processor"],
        &[],
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("processor: live → version 1 (was 2)"),
        "{}",
        run.stdout
    );
    assert_eq!(alias(&l, &function).await, ("1".to_string(), vec![]));
    assert!(published(&counts).is_empty());
    // `up` with the same build keeps live on 1 and says why.
    let run = up(&new);
    assert!(run.stderr.contains("was rolled back"), "{}", run.stderr);
    assert_eq!(alias(&l, &function).await, ("1".to_string(), vec![]));
    // A second rollback rolls forward.
    let run = stack.payctl_via(
        &proxy.endpoint,
        &["rollback", "--function", "processor"],
        &[],
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(alias(&l, &function).await, ("2".to_string(), vec![]));
    // A third build: after its release only the newest version (`versions_kept = 1`)
    // and the previous one are kept.
    std::fs::write(
        stack.home.path().join("payctl.toml"),
        "[env.dev]\nversions_kept = 1\n",
    )
    .unwrap();
    let third = packages_with("processor", "a third build");
    up(&[("PAYCTL_PACKAGES", third.path().to_str().unwrap())]);
    assert_eq!(alias(&l, &function).await, ("3".to_string(), vec![]));
    let listed = l
        .list_versions_by_function()
        .function_name(&function)
        .send()
        .await
        .unwrap();
    let versions: Vec<&str> = listed
        .versions()
        .iter()
        .filter_map(|v| v.version())
        .collect();
    assert_eq!(versions, ["$LATEST", "2", "3"]);
    // An unknown function is refused, and nothing changes.
    let run = stack.payctl_via(&proxy.endpoint, &["rollback", "--function", "ledger"], &[]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("not one of validator, processor, audit-logger"),
        "{}",
        run.stderr
    );
    assert_eq!(alias(&l, &function).await, ("3".to_string(), vec![]));
}

/// Production: a new build first takes 10 % of the traffic; healthy metrics during the
/// bake promote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_canary_is_promoted_when_its_metrics_stay_healthy() {
    let r = Release::start(4).await;
    let (stack, l, function) = (&r.stack, &r.lambda, &r.function);
    let child = r.child;
    assert_eq!((r.version.as_str(), r.weight), ("2", 0.1));
    assert_eq!(alias(l, function).await.0, "1");
    publish(stack, function, "2", "Errors", 0.0).await;
    let out = finish(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("canary promoted"), "{stderr}");
    assert_eq!(alias(l, function).await, ("2".to_string(), vec![]));
}

/// Production: errors of the new version during the bake send `live` back to the old
/// version; the run fails naming the metric and its value, and nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_canary_with_errors_rolls_back_and_the_run_fails_naming_the_metric() {
    let r = Release::start(30).await;
    let (stack, l, function) = (&r.stack, &r.lambda, &r.function);
    let child = r.child;
    // Counted while the release bakes: it creates and deletes nothing.
    let before = census(stack).await;
    publish(stack, function, &r.version, "Errors", 3.0).await;
    let started = Instant::now();
    let out = finish(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // Judged at the next poll, not at the end of the 30 s bake.
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
    assert!(
        stderr.contains("canary version 2 rolled back, live is on version 1 again: Errors = 3"),
        "{stderr}"
    );
    assert_eq!(alias(l, function).await, ("1".to_string(), vec![]));
    let state = stack.state();
    let rec = &state["resources"]["lambda_alias.processor"]["attrs"];
    assert_eq!(rec["version"], "1", "{rec}");
    assert_eq!(rec["rejected"], "2", "{rec}");
    assert!(rec.get("canary").is_none(), "{rec}");
    assert_eq!(census(stack).await, before);
    // The other functions were not touched.
    for other in ["payment-validator-prod", "payment-audit-logger-prod"] {
        assert_eq!(alias(l, other).await, ("1".to_string(), vec![]));
    }
}

/// A run killed during the bake leaves `live` weighted with the bake in the state; the
/// next `up` resumes it and ends with `live` on exactly one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_during_the_bake_is_resumed_and_live_ends_on_one_version() {
    let r = Release::start(3).await;
    let (stack, l, function, packages) = (&r.stack, &r.lambda, &r.function, &r.packages);
    let mut child = r.child;
    let env = [("PAYCTL_PACKAGES", packages.path().to_str().unwrap())];
    let version = &r.version;
    child.kill().unwrap();
    let _ = finish(child).await;
    let state = stack.state();
    let rec = &state["resources"]["lambda_alias.processor"]["attrs"];
    assert_eq!(rec["canary"], version.as_str(), "{rec}");
    let (_, weights) = alias(l, function).await;
    assert_eq!(weights.len(), 1, "the kill left the canary weighted");

    let run = stack.payctl_via(&stack.moto.endpoint, &["up"], &env);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains("resuming the bake of version 2"),
        "{}",
        run.stderr
    );
    assert_eq!(alias(l, function).await, ("2".to_string(), vec![]));
    let state = stack.state();
    let rec = &state["resources"]["lambda_alias.processor"]["attrs"];
    assert_eq!(
        (&rec["version"], &rec["previous"]),
        (&"2".into(), &"1".into())
    );
    assert!(rec.get("canary").is_none(), "{rec}");
}

/// Ctrl-C during the bake puts `live` back on the old version at once, without rejecting
/// the build: the run exits with 130, and the next `up` bakes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_bake_puts_live_back_and_the_next_up_bakes_again() {
    let r = Release::start(60).await;
    let (stack, l, function, packages) = (&r.stack, &r.lambda, &r.function, &r.packages);
    let child = r.child;
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = finish(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("live is on version 1 again"), "{stderr}");
    assert_eq!(alias(l, function).await, ("1".to_string(), vec![]));
    let state = stack.state();
    let rec = &state["resources"]["lambda_alias.processor"]["attrs"];
    assert_eq!(rec["version"], "1", "{rec}");
    assert!(
        rec.get("canary").is_none() && rec.get("rejected").is_none(),
        "{rec}"
    );

    bake_config(stack, 2);
    let env = [("PAYCTL_PACKAGES", packages.path().to_str().unwrap())];
    let run = stack.payctl_via(&stack.moto.endpoint, &["up"], &env);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("canary promoted"), "{}", run.stderr);
    assert_eq!(alias(l, function).await, ("2".to_string(), vec![]));
}

/// Production: the function's error alarm going to ALARM during the bake rolls the
/// canary back too (moto never evaluates alarms: the test sets its state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_canary_rolls_back_when_the_error_alarm_fires() {
    let r = Release::start(30).await;
    let (stack, l, function) = (&r.stack, &r.lambda, &r.function);
    let child = r.child;
    let cw = aws_sdk_cloudwatch::Client::new(&stack.sdk().await);
    cw.set_alarm_state()
        .alarm_name("payment-processor-errors-prod")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("Threshold Crossed: 12 errors")
        .send()
        .await
        .unwrap();
    let out = finish(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "alarm payment-processor-errors-prod is in ALARM (Threshold Crossed: 12 errors)"
        ),
        "{stderr}"
    );
    assert_eq!(alias(l, function).await, ("1".to_string(), vec![]));
}
