//! Stacks against the proxy playing what AWS does and moto does not (issue #18, first
//! part): IAM propagation, RDS's slow states, the NAT gateway's address mapping released
//! after the gateway, API Gateway's control-plane rate limit, and the network interfaces
//! Lambda leaves behind, and EC2's eventual consistency after a create. `up` then
//! `down` must both succeed, with each model having answered at least once, and `up`
//! must make exactly one stack; a run killed inside the consistency window must not make
//! anything twice.

mod common;

use common::census::{assert_converged, census};
use common::proxy::{
    After, Hold, Lag, Proxy, RateLimit, When, ec2_error, query_error, rest_json_error,
};
use common::*;
use std::time::Duration;

/// How long each modelled state lasts: long enough that payctl meets it several times.
const WINDOW: Duration = Duration::from_secs(4);

fn after(trigger: &str, operation: &str, fault: common::proxy::Fault) -> After {
    After {
        trigger: trigger.into(),
        operation: operation.into(),
        window: WINDOW,
        fault,
    }
}

/// The proxy with AWS's behaviour, each rule citing what AWS documents.
async fn aws_like(stack: &Stack) -> Proxy {
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    // IAM is eventually consistent: a new role or policy reaches Lambda seconds later
    // (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency);
    // until then CreateFunction and CreateEventSourceMapping refuse it.
    proxy.after(after(
        "CreateRole",
        "POST /2015-03-31/functions",
        rest_json_error(
            400,
            "InvalidParameterValueException",
            "The role defined for the function cannot be assumed by Lambda.",
        ),
    ));
    // (payctl writes the roles' policies long before the mappings, while the database
    // comes up; here the window opens with each function's creation instead, so that
    // the mappings, made right after the functions, meet it.)
    proxy.after(after(
        "POST /2015-03-31/functions",
        "POST /2015-03-31/event-source-mappings",
        rest_json_error(
            400,
            "InvalidParameterValueException",
            "The provided execution role does not have permissions to call ReceiveMessage on SQS",
        ),
    ));
    // A new instance goes through backing-up before it is available
    // (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html#Overview.DBInstance.Status).
    proxy.hold(Hold {
        operation: "DescribeDBInstances".into(),
        from: "<DBInstanceStatus>available".into(),
        to: "<DBInstanceStatus>backing-up".into(),
        hold: WINDOW,
    });
    // A new instance is busy (its first backup) for a while: RDS refuses changes and
    // deletes with InvalidDBInstanceState
    // (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBInstance.html).
    for op in ["ModifyDBInstance", "DeleteDBInstance"] {
        let mut busy = query_error(
            "InvalidDBInstanceState",
            "Instance payment-db-prod is not in available state (backing-up).",
        );
        busy.operation = op.into();
        busy.times = 2;
        proxy.inject(busy);
    }
    // An instance being deleted still uses its subnet group
    // (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBSubnetGroup.html:
    // InvalidDBSubnetGroupStateFault).
    proxy.after(after(
        "DeleteDBInstance",
        "DeleteDBSubnetGroup",
        query_error(
            "InvalidDBSubnetGroupStateFault",
            "Cannot delete the subnet group 'payment-db-subnets-prod' because at least one database instance: payment-db-prod is still using it.",
        ),
    ));
    // A deleted NAT gateway's public address stays mapped for a while: detaching the
    // internet gateway fails until it is released
    // (https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html).
    proxy.after(after(
        "DeleteNatGateway",
        "DetachInternetGateway",
        ec2_error(
            "DependencyViolation",
            "Network vpc-1 has some mapped public address(es). Please unmap those public address(es) before detaching the gateway.",
        ),
    ));
    // API Gateway's control plane: a few requests per second per account
    // (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
    proxy.rate_limit(RateLimit {
        service: "apigateway".into(),
        per_second: 10.0,
        burst: 10.0,
    });
    // Lambda's network interfaces: released a while after their function lets go,
    // collected by Lambda only much later (see `common::lambda_enis`).
    proxy.model_lambda_enis(WINDOW, Duration::from_secs(600));
    // EC2's eventual consistency after each token-less create (shorter than payctl's
    // consistency wait at this run's scale, 3 s).
    lag_ec2_creates(&proxy, Duration::from_secs(2));
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_up_and_down_ride_out_propagation_slow_releases_and_throttling() {
    let stack = Stack::new("prod");
    let proxy = aws_like(&stack).await;
    let scale = [("PAYCTL_WAIT_SCALE", "0.05")];

    let up = stack.payctl_via(&proxy.endpoint, &["up"], &scale);
    assert!(up.ok, "up:\n{}", up.stderr);
    assert_converged(&stack).await;
    for op in [
        "POST /2015-03-31/functions",
        "POST /2015-03-31/event-source-mappings",
    ] {
        assert!(proxy.after_injected(op) > 0, "{op} was never refused");
    }
    assert!(proxy.rewritten("DescribeDBInstances") > 0);
    assert!(proxy.throttled() > 0, "API Gateway was never throttled");
    // (The EC2 lag is on too, but a clean `up` reads nothing it just made back by its
    // tags; the crash test below is where it answers.)
    // Each refused create was retried until it went through, once.
    assert_eq!(census(&stack).await["lambda function"].len(), 3);

    let down = stack.payctl_via(&proxy.endpoint, &["down", "--yes"], &scale);
    assert!(down.ok, "down:\n{}", down.stderr);
    for op in ["DeleteDBSubnetGroup", "DetachInternetGateway"] {
        assert!(proxy.after_injected(op) > 0, "{op} was never refused");
    }
    // The deletion protection was lifted and the instance deleted once RDS took them.
    for op in ["ModifyDBInstance", "DeleteDBInstance"] {
        assert_eq!(proxy.count(op).1, 2, "{op}");
    }
    let log = proxy.eni_log();
    let by_payctl = log.iter().filter(|l| l.ends_with("by the client")).count();
    assert_eq!(by_payctl, 9, "{log:#?}");
    let left = census(&stack).await;
    for kind in ["vpc", "internet gateway", "nat gateway", "db subnet group"] {
        assert!(left[kind].is_empty(), "{kind} left: {left:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_waits_for_lambda_to_release_its_interfaces_and_deletes_them_itself() {
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    // Released 3 s after their function lets go; Lambda's own clean-up would take 10
    // minutes (in AWS, tens of minutes): payctl must not wait for it.
    proxy.model_lambda_enis(Duration::from_secs(3), Duration::from_secs(600));
    let scale = [("PAYCTL_WAIT_SCALE", "0.05")];
    let up = stack.payctl_via(&proxy.endpoint, &["up"], &scale);
    assert!(up.ok, "up:\n{}", up.stderr);
    // One interface per function and private subnet, shown as AWS shows them.
    assert_eq!(proxy.lambda_enis(), 9);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&proxy.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let out = ec2.describe_network_interfaces().send().await.unwrap();
    let lambdas: Vec<_> = out
        .network_interfaces()
        .iter()
        .filter(|e| payctl::network::lambda_enis::is_lambdas(e))
        .collect();
    assert_eq!(lambdas.len(), 9, "{out:?}");
    assert!(
        lambdas
            .iter()
            .all(|e| e.status().map(|s| s.as_str()) == Some("in-use"))
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
    let group = state["resources"]["ec2_security_group.lambda"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let down = stack.payctl_via(&proxy.endpoint, &["down"], &scale);
    assert!(down.ok, "down:\n{}", down.stderr);
    let log = proxy.eni_log();
    let at = |line: &str| log.iter().position(|l| l == line);
    let deleted: Vec<&String> = log
        .iter()
        .filter(|l| l.ends_with("by the client"))
        .collect();
    assert_eq!(deleted.len(), 9, "{log:#?}");
    assert!(!log.iter().any(|l| l.starts_with("collected")), "{log:#?}");
    let group_deleted = at(&format!("DeleteSecurityGroup {group}")).expect("the group's delete");
    for line in deleted {
        let id = line
            .trim_start_matches("deleted ")
            .trim_end_matches(" by the client");
        let released = at(&format!("released {id}")).expect("released first");
        let gone = at(line).unwrap();
        assert!(released < gone && gone < group_deleted, "{log:#?}");
    }
    assert_eq!(proxy.lambda_enis(), 0);
    assert!(census(&stack).await["vpc"].is_empty());
}

/// The EC2 creates that take no idempotency token, each lagging behind its create for
/// `window`: (create, list, id element, set element, NotFound code).
fn lag_ec2_creates(proxy: &Proxy, window: Duration) {
    for (create, list, id, set, not_found) in [
        (
            "CreateVpc",
            "DescribeVpcs",
            "vpcId",
            "vpcSet",
            "InvalidVpcID.NotFound",
        ),
        (
            "CreateSubnet",
            "DescribeSubnets",
            "subnetId",
            "subnetSet",
            "InvalidSubnetID.NotFound",
        ),
        (
            "CreateInternetGateway",
            "DescribeInternetGateways",
            "internetGatewayId",
            "internetGatewaySet",
            "InvalidInternetGatewayID.NotFound",
        ),
        (
            "AllocateAddress",
            "DescribeAddresses",
            "allocationId",
            "addressesSet",
            "InvalidAllocationID.NotFound",
        ),
    ] {
        proxy.lag(Lag {
            create: create.into(),
            list: list.into(),
            id_tag: id.into(),
            set_tag: set.into(),
            not_found: not_found.into(),
            window,
        });
    }
}

/// Waits for a payctl started with `spawn_via`, off the async runtime's threads.
async fn finish(child: std::process::Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait").status)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_in_the_consistency_window_of_its_creates_makes_nothing_twice() {
    use std::os::unix::process::ExitStatusExt;
    let stack = Stack::new("dev");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    lag_ec2_creates(&proxy, Duration::from_secs(8));
    let scale = [("PAYCTL_WAIT_SCALE", "0.2")];
    // Killed as each token-less create reaches EC2: the resource is made, the run never
    // hears of it, and the next run cannot see it by its tags for a while. (The Elastic
    // IP does not wait for the VPC: an earlier run may have made it already, and then
    // that run is not killed.)
    let mut killed = Vec::new();
    for create in [
        "CreateVpc",
        "CreateInternetGateway",
        "CreateSubnet",
        "AllocateAddress",
    ] {
        let child = stack.spawn_via(&proxy.endpoint, &["up"], &scale);
        proxy.signal(When::OnRequest(create.into()), child.id(), libc::SIGKILL);
        let status = finish(child).await;
        proxy.clear_signals();
        if status.signal() != Some(libc::SIGKILL) {
            continue;
        }
        killed.push(create);
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
        assert!(
            state["intents"].as_object().is_some_and(|i| !i.is_empty()),
            "no intent recorded before {create}: {state}"
        );
    }
    for create in ["CreateVpc", "CreateInternetGateway", "CreateSubnet"] {
        assert!(
            killed.contains(&create),
            "never killed at {create}: {killed:?}"
        );
    }
    let up = stack.payctl_via(&proxy.endpoint, &["up"], &scale);
    assert!(up.ok, "{}", up.stderr);
    assert!(proxy.lag_hidden() > 0, "nothing ever lagged");
    // One of each: every intent was found by its tags once visible, none made again.
    assert_converged(&stack).await;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
    assert!(state["intents"].is_null(), "{}", state["intents"]);
    stack.must(&["down"]);
}
