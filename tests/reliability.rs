//! payctl under real-world conditions, through the fault proxy: killed at many points
//! and re-run, 20 % of requests failing transiently, non-retryable errors, Ctrl-C, and
//! two runs at once. Every check reads the emulator back through the SDK.

mod common;

use common::census::{assert_converged, assert_nothing_left, census};
use common::proxy::{Fault, Proxy, When};
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::time::{Duration, Instant};

/// Waits for a payctl started with `spawn_via`, off the async runtime's threads.
async fn finish(child: Child) -> (std::process::ExitStatus, Run) {
    tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().expect("wait for payctl");
        (out.status, Run::from(out))
    })
    .await
    .unwrap()
}

/// Checks what a killed run left: its holder info in the lock file, and no lock (the OS
/// released it with the process), so the next run proceeds without `force-unlock`.
fn assert_killed_run_left_no_lock(stack: &Stack, pid: u32) {
    let left = stack.assert_lock_free();
    assert!(
        left.is_empty() || left.contains(&format!("\"pid\": {pid}")),
        "the lock file names another run: {left}"
    );
}

/// Runs `payctl <args>` through the proxy, killing it with SIGKILL after every `step`
/// further mutating requests, until a run completes. Returns how many runs were killed.
async fn run_with_crashes(stack: &Stack, proxy: &Proxy, args: &[&str], step: usize) -> usize {
    // Every run either completes or is killed; `kills` counts the killed ones.
    for kills in 0..200 {
        let child = stack.spawn_via(&proxy.endpoint, args, &[]);
        let pid = child.id();
        let at = proxy.mutating() + step;
        proxy.signal(When::AfterMutating(at), child.id(), libc::SIGKILL);
        let (status, run) = finish(child).await;
        if status.success() {
            proxy.clear_signals();
            return kills;
        }
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "payctl {args:?} failed on its own after {kills} kills:\n{}",
            run.stderr
        );
        // The next run (this loop's) must proceed: a lock left held would fail it.
        assert_killed_run_left_no_lock(stack, pid);
    }
    panic!("payctl {args:?} did not complete within 200 runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_anywhere_up_and_down_converge_on_the_next_run() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;

    // How many mutating requests one clean `up` makes, on a separate emulator.
    let probe = Stack::new("dev");
    let probe_proxy = Proxy::start(&probe.moto.endpoint).await;
    let run = probe.payctl_via(&probe_proxy.endpoint, &["up"], &[]);
    assert!(run.ok, "{}", run.stderr);
    let total = probe_proxy.mutating();
    drop(probe);

    // Killed after every 4th mutating request: the kill points cover the whole run (a
    // re-run repeats some requests, so there are fewer kills than total / 4).
    let kills = run_with_crashes(&stack, &proxy, &["up"], 4).await;
    let points = proxy.signalled_after();
    assert!(
        kills >= total / 8,
        "only {kills} kills in a run of {total} mutating requests: {points:?}"
    );
    // ... including the last two layers (API and monitoring).
    let late = [
        "/restapis",
        "/usageplans",
        "/apikeys",
        "PutMetricAlarm",
        "PutDashboard",
    ];
    assert!(
        points.iter().any(|p| late.iter().any(|l| p.contains(l))),
        "never killed in the API or monitoring layer: {points:?}"
    );
    assert_converged(&stack).await;

    let kills = run_with_crashes(&stack, &proxy, &["down"], 4).await;
    assert!(kills >= 10, "down was killed only {kills} times");
    assert_nothing_left(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_in_five_failing_transiently_is_absorbed() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.set_transient_failures(0.2, 20261127);
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[]);
    assert!(run.ok, "{}", run.stderr);
    let injected = proxy.transient_injected();
    let seen: usize = proxy.counts().values().sum();
    assert!(
        injected * 10 >= seen,
        "only {injected} of {seen} requests failed"
    );
    assert_converged(&stack).await;

    let run = stack.payctl_via(&proxy.endpoint, &["down"], &[]);
    assert!(run.ok, "{}", run.stderr);
    assert_nothing_left(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_error_fails_fast_and_keeps_what_was_made() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.inject(Fault {
        operation: "CreateTable".into(),
        times: usize::MAX,
        status: 400,
        headers: vec![("Content-Type".into(), "application/x-amz-json-1.0".into())],
        body: r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"User is not authorized to perform: dynamodb:CreateTable"}"#.into(),
    });
    proxy.inject(Fault {
        operation: "CreateQueue".into(),
        times: usize::MAX,
        status: 400,
        headers: vec![("Content-Type".into(), "application/x-amz-json-1.0".into())],
        body: r#"{"__type":"com.amazonaws.sqs#InvalidAttributeValue","message":"Invalid value for the parameter KmsMasterKeyId."}"#.into(),
    });
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[]);
    assert!(!run.ok, "up succeeded through AccessDenied");
    // Not retried: one attempt each.
    assert_eq!(proxy.count("CreateTable"), (1, 1));
    assert_eq!(proxy.count("CreateQueue").1, 1);
    assert!(
        run.stderr
            .contains("CreateTable for payment-transactions-dev failed: AccessDeniedException"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("CreateQueue for payment-retry-dlq-dev failed: InvalidAttributeValue"),
        "{}",
        run.stderr
    );
    assert!(run.error_line().contains("re-run"), "{}", run.stderr);

    // Everything that was made is in the state file.
    let made = census(&stack).await;
    assert_eq!(made["vpc"].len(), 1, "{made:#?}");
    assert_eq!(made["dynamodb table"].len(), 0, "{made:#?}");
    assert_eq!(made["lambda function"].len(), 0, "{made:#?}");
    let state = std::fs::read_to_string(stack.state_file()).unwrap();
    // (A topic's subscriptions go with it; payctl finds them through the topic.)
    for (kind, ids) in made.iter().filter(|(k, _)| **k != "sns subscription") {
        for id in ids {
            let key = id.rsplit('/').next().unwrap_or(id);
            assert!(state.contains(key), "{kind} {id} is not in the state file");
        }
    }

    stack.must(&["up"]);
    assert_converged(&stack).await;
}

const DB_CREATE: &str = "CreateDBInstance";

/// The first SIGINT or SIGTERM while CreateDBInstance is in flight (its answer held for
/// 3 s): the call finishes and is recorded, nothing new starts, the run exits with 130
/// and the "re-run" message, and its lock is released with its holder info cleared.
async fn first_signal_finishes_what_is_in_flight(stack: &Stack, proxy: &Proxy, signal: i32) {
    proxy.delay(DB_CREATE, Duration::from_secs(3));
    let child = stack.spawn_via(&proxy.endpoint, &["up"], &[]);
    proxy.signal(When::OnRequest(DB_CREATE.into()), child.id(), signal);
    let (status, run) = finish(child).await;
    assert_eq!(status.code(), Some(130), "{}", run.stderr);
    assert_eq!(proxy.answered(DB_CREATE), 1, "the call in flight finished");
    let err = run.error_line();
    assert!(
        err.contains("interrupted") && err.contains("re-run `payctl up --env dev`"),
        "{}",
        run.stderr
    );
    let state = std::fs::read_to_string(stack.state_file()).unwrap();
    assert!(state.contains("payment-db-dev"), "the database is in state");
    let now = census(stack).await;
    assert_eq!(now["db instance"].len(), 1);
    assert!(
        now["lambda function"].is_empty(),
        "work started after the signal"
    );
    assert_eq!(stack.assert_lock_free(), "", "the lock was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_like_the_first_ctrl_c() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    first_signal_finishes_what_is_in_flight(&stack, &proxy, libc::SIGTERM).await;
    stack.must(&["up"]);
    assert_converged(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_with_sigkill_leaves_no_lock_and_the_next_run_proceeds() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.delay("CreateVpc", Duration::from_secs(3));
    let child = stack.spawn_via(&proxy.endpoint, &["up"], &[]);
    let pid = child.id();
    proxy.signal(When::OnRequest("CreateVpc".into()), pid, libc::SIGKILL);
    let (status, run) = finish(child).await;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", run.stderr);
    // The killed run's holder info stays for the messages; its lock went with it.
    let left = stack.assert_lock_free();
    assert!(left.contains(&format!("\"pid\": {pid}")), "{left}");
    // No `force-unlock`: the next run takes the lock over and completes.
    let run = stack.must(&["up"]);
    assert!(
        run.stderr.contains("taking over the lock") && run.stderr.contains(&format!("pid {pid}")),
        "{}",
        run.stderr
    );
    assert_converged(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_ctrl_c_finishes_what_is_in_flight_and_the_second_exits_at_once() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    first_signal_finishes_what_is_in_flight(&stack, &proxy, libc::SIGINT).await;

    // The lock was released: the next run proceeds (and adds no second database).
    stack.must(&["up"]);
    assert_converged(&stack).await;

    // Second Ctrl-C while a call is stuck in flight: out at once, the call unanswered.
    stack.must(&["down"]);
    proxy.delay(DB_CREATE, Duration::from_secs(300));
    let child = stack.spawn_via(&proxy.endpoint, &["up"], &[]);
    let pid = child.id();
    proxy.signal(When::OnRequest(DB_CREATE.into()), pid, libc::SIGINT);
    let asked = Instant::now();
    while proxy.count(DB_CREATE).0 < 2 {
        assert!(
            asked.elapsed() < Duration::from_secs(120),
            "no CreateDBInstance"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: signals the payctl process this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let (status, run) = tokio::time::timeout(Duration::from_secs(60), finish(child))
        .await
        .expect("payctl did not exit at the second Ctrl-C");
    assert_eq!(status.code(), Some(130), "{}", run.stderr);
    assert_eq!(
        proxy.answered(DB_CREATE),
        1,
        "exited before the call returned"
    );
    // It exited without clearing its holder info, but the OS released its lock: the
    // next run proceeds, no `force-unlock` needed.
    assert!(
        stack
            .assert_lock_free()
            .contains(&format!("\"pid\": {pid}")),
        "the holder info is kept for the messages"
    );
    let run = stack.must(&["up"]);
    assert!(
        run.stderr.contains("taking over the lock"),
        "{}",
        run.stderr
    );
    assert_converged(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_runs_at_once_one_proceeds_and_the_other_names_the_holder() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.delay("CreateVpc", Duration::from_secs(3));
    let first = stack.spawn_via(&proxy.endpoint, &["up"], &[]);
    let pid = first.id();
    let asked = Instant::now();
    while proxy.count("CreateVpc").0 == 0 {
        assert!(asked.elapsed() < Duration::from_secs(60), "no CreateVpc");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = stack.payctl(&["up"]);
    assert!(!second.ok, "two runs held the environment at once");
    let err = second.error_line();
    assert!(err.contains(&format!("locked by pid {pid}")), "{err}");
    let (status, run) = finish(first).await;
    assert!(status.success(), "{}", run.stderr);
    assert_converged(&stack).await;
}
