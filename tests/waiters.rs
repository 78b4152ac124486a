//! payctl's waiters really wait, and a timeout names the resource and leaves a state
//! file that a re-run completes. The emulator makes everything available at once, so a
//! proxy between payctl and moto rewrites status fields to hold resources "not ready".

mod common;

use common::proxy::{Hold, Proxy, Rewrite};
use common::*;
use std::time::Duration;

fn hold(operation: &str, from: &str, to: &str, times: usize) -> Rewrite {
    Rewrite {
        operation: operation.into(),
        times,
        from: from.into(),
        to: to.into(),
    }
}

const DB_AVAILABLE: &str = "<DBInstanceStatus>available</DBInstanceStatus>";
const DB_CREATING: &str = "<DBInstanceStatus>creating</DBInstanceStatus>";
const NAT_AVAILABLE: &str = "<state>available</state>";
const NAT_PENDING: &str = "<state>pending</state>";

async fn db_instances(stack: &Stack) -> Vec<String> {
    let rds = aws_sdk_rds::Client::new(&stack.sdk().await);
    let out = rds.describe_db_instances().send().await.unwrap();
    out.db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_waits_while_the_database_and_nat_gateway_are_not_ready() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.rewrite(hold("DescribeDBInstances", DB_AVAILABLE, DB_CREATING, 3));
    proxy.rewrite(hold("DescribeNatGateways", NAT_AVAILABLE, NAT_PENDING, 2));
    // Each function stays `Pending` for 2 s after it first appears.
    proxy.hold(Hold {
        operation: "GET /2015-03-31/functions/".into(),
        from: r#""State": "Active""#.into(),
        to: r#""State": "Pending""#.into(),
        hold: Duration::from_secs(2),
    });
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[("PAYCTL_WAIT_SCALE", "0.01")]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        proxy.rewritten("DescribeDBInstances"),
        3,
        "the database was held as creating"
    );
    assert_eq!(
        proxy.rewritten("DescribeNatGateways"),
        2,
        "the NAT gateway was held as pending"
    );
    // Each hold cost one more poll: payctl waited instead of taking the first answer.
    assert!(
        run.stderr
            .contains("waiting for DB instance payment-db-dev to be available: creating"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("to be available: pending"),
        "{}",
        run.stderr
    );
    for f in ["validator", "processor", "audit-logger"] {
        let op = format!("GET /2015-03-31/functions/payment-{f}-dev");
        assert!(proxy.rewritten(&op) > 0, "{op} was never held");
        let waited =
            format!("waiting for function payment-{f}-dev to become active: state Pending");
        assert!(run.stderr.contains(&waited), "{}", run.stderr);
    }
    let outputs: serde_json::Value =
        serde_json::from_str(&stack.must(&["outputs", "--json"]).stdout).unwrap();
    assert!(
        outputs["RDSEndpoint"]
            .as_str()
            .is_some_and(|e| e.ends_with(":5432")),
        "{outputs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_never_becomes_available_times_out_and_a_rerun_completes() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.rewrite(hold(
        "DescribeDBInstances",
        DB_AVAILABLE,
        DB_CREATING,
        usize::MAX,
    ));
    // 45 minutes scaled by 0.001 is under 3 seconds.
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[("PAYCTL_WAIT_SCALE", "0.001")]);
    assert!(
        !run.ok,
        "up succeeded though the database never became available"
    );
    let err = run.error_line();
    assert!(
        err.contains("timed out") && err.contains("DB instance payment-db-dev"),
        "{err}"
    );
    assert!(err.contains("re-run"), "{err}");
    assert_eq!(
        db_instances(&stack).await,
        vec!["payment-db-dev".to_string()]
    );

    // Without the hold, the re-run adopts the instance from state and finishes.
    stack.must(&["up"]);
    assert_eq!(
        db_instances(&stack).await,
        vec!["payment-db-dev".to_string()],
        "no second instance"
    );
    let outputs: serde_json::Value =
        serde_json::from_str(&stack.must(&["outputs", "--json"]).stdout).unwrap();
    assert!(outputs["RDSEndpoint"].is_string(), "{outputs}");
}
