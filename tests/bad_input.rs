//! Bad input never destroys anything: broken, foreign and stale state files, resources
//! deleted out of band, and a state directory that stops being writable mid-run. Each
//! gives a clear error or a correct recovery, read back from the emulator.

mod common;

use common::census::{assert_converged, assert_nothing_left, census};
use common::proxy::Proxy;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

#[tokio::test]
async fn broken_or_foreign_state_is_refused_and_out_of_band_deletions_are_repaired() {
    let stack = Stack::new("dev");
    stack.must(&["up"]);
    let before = census(&stack).await;
    let good = std::fs::read(stack.state_file()).unwrap();

    // A truncated file and a file that is not JSON: `up` and `down` refuse, the file
    // stays as it was, nothing in the account changes.
    for broken in [
        good[..good.len() / 2].to_vec(),
        b"not json at all\n".to_vec(),
    ] {
        std::fs::write(stack.state_file(), &broken).unwrap();
        for command in ["up", "down"] {
            let run = stack.payctl(&[command]);
            assert!(!run.ok, "{command} accepted a broken state file");
            let err = run.error_line();
            assert!(err.contains("is not valid payctl state"), "{err}");
            assert_eq!(std::fs::read(stack.state_file()).unwrap(), broken);
        }
        assert_eq!(
            census(&stack).await,
            before,
            "a refused run changed the account"
        );
    }
    std::fs::write(stack.state_file(), &good).unwrap();

    // Another environment's file, and this file in another region, are refused.
    let other = stack.state_dir.path().join("staging.json");
    std::fs::write(&other, &good).unwrap();
    let run = Run::from(
        stack
            .command()
            .args(["up", "--env", "staging"])
            .output()
            .unwrap(),
    );
    assert!(!run.ok);
    assert!(
        run.error_line().contains("belongs to environment \"dev\""),
        "{}",
        run.stderr
    );
    let run = stack.payctl(&["down", "--region", "eu-west-1"]);
    assert!(!run.ok);
    assert!(
        run.error_line().contains("belongs to region \"us-east-1\""),
        "{}",
        run.stderr
    );
    assert_eq!(census(&stack).await, before);

    // Resources deleted out of band (a queue, a function, an alarm) and records removed
    // from the state file by hand (the VPC, a function): `up` recreates or re-adopts
    // them, one of each.
    let sdk = stack.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = before["sqs queue"]
        .iter()
        .find(|u| u.ends_with("/payment-retry-dev"))
        .unwrap();
    sqs.delete_queue().queue_url(url).send().await.unwrap();
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    lambda
        .delete_function()
        .function_name("payment-audit-logger-dev")
        .send()
        .await
        .unwrap();
    aws_sdk_cloudwatch::Client::new(&sdk)
        .delete_alarms()
        .alarm_names("payment-rds-cpu-dev")
        .send()
        .await
        .unwrap();
    let mut state: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let resources = state["resources"].as_object_mut().unwrap();
    let dropped: Vec<String> = resources
        .keys()
        .filter(|a| a.starts_with("ec2_vpc.") || a.contains("validator"))
        .cloned()
        .collect();
    assert!(dropped.len() >= 2, "{dropped:?}");
    for addr in &dropped {
        resources.remove(addr);
    }
    std::fs::write(stack.state_file(), state.to_string()).unwrap();
    stack.must(&["up"]);
    let after = assert_converged(&stack).await;
    assert_eq!(
        after["vpc"], before["vpc"],
        "the VPC was re-adopted, not replaced"
    );

    stack.must(&["down"]);
    assert_nothing_left(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_directory_stops_the_run_with_a_recovery_file() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.delay("CreateVpc", Duration::from_secs(2));
    let child = stack.spawn_via(&proxy.endpoint, &["up"], &[]);
    let asked = Instant::now();
    while proxy.count("CreateVpc").0 == 0 {
        assert!(asked.elapsed() < Duration::from_secs(60), "no CreateVpc");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While the VPC is being made, the state directory becomes a plain file.
    let dir = stack.state_dir.path().to_path_buf();
    let moved = dir.with_extension("moved");
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, b"").unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let run = Run::from(out);
    assert!(!run.ok, "up went on without a state file");
    let err = run.error_line();
    assert!(err.contains("could not write state file"), "{}", run.stderr);
    let recovery = err
        .split("was saved to ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("no recovery file in {err}"));
    // The state directory takes no file: the recovery file is in the per-user one
    // (HOME is the test's own directory), private, never in a shared one like /tmp.
    let user_dir = stack.home.path().join(".local/state/payctl");
    assert_eq!(
        std::path::Path::new(recovery).parent(),
        Some(user_dir.as_path()),
        "{err}"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(std::path::Path::new(recovery)), 0o600);
    assert_eq!(mode(&user_dir), 0o700);
    let saved = std::fs::read_to_string(recovery).unwrap();
    std::fs::remove_file(recovery).unwrap();
    let vpcs = census(&stack).await["vpc"].clone();
    assert_eq!(vpcs.len(), 1);
    assert!(saved.contains(&vpcs[0]), "the recovery file lacks the VPC");
    assert!(
        census(&stack).await["lambda function"].is_empty(),
        "the run went on after the state could not be written"
    );

    // The operator puts the directory and the recovered state back; `up` finishes with
    // one VPC. No `force-unlock`: the stopped run's lock went with its process.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    std::fs::write(stack.state_file(), saved).unwrap();
    stack.assert_lock_free();
    stack.must(&["up"]);
    let now = assert_converged(&stack).await;
    assert_eq!(now["vpc"], vpcs);
}
