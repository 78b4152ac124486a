//! The network and security layers against the emulator: every setting read back
//! through the SDK, idempotent re-runs, adoption without state, teardown, key reuse.

mod common;

use aws_sdk_ec2::types::NatGatewayState;
use aws_sdk_kms::types::KeyState;
use common::*;
use std::collections::{BTreeMap, BTreeSet};

/// Every payctl-tagged network resource of `env`, by kind, as sorted ids; plus aliases.
async fn inventory(stack: &Stack) -> BTreeMap<&'static str, BTreeSet<String>> {
    let ec2 = stack.ec2().await;
    let env = stack.env.as_str();
    let owned = || vec![tag_filter("Environment", env)];
    let mut inv: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let out = ec2
        .describe_vpcs()
        .set_filters(Some(owned()))
        .send()
        .await
        .unwrap();
    inv.insert(
        "vpc",
        out.vpcs()
            .iter()
            .map(|v| v.vpc_id().unwrap().to_string())
            .collect(),
    );
    let out = ec2
        .describe_subnets()
        .set_filters(Some(owned()))
        .send()
        .await
        .unwrap();
    inv.insert(
        "subnet",
        out.subnets()
            .iter()
            .map(|s| s.subnet_id().unwrap().to_string())
            .collect(),
    );
    let out = ec2
        .describe_internet_gateways()
        .set_filters(Some(owned()))
        .send()
        .await
        .unwrap();
    inv.insert(
        "igw",
        out.internet_gateways()
            .iter()
            .map(|g| g.internet_gateway_id().unwrap().to_string())
            .collect(),
    );
    // Tag filters are not honoured for NAT gateways by every endpoint: check tags here.
    let out = ec2.describe_nat_gateways().send().await.unwrap();
    inv.insert(
        "nat",
        out.nat_gateways()
            .iter()
            .filter(|g| tags_of(g.tags()).get("Environment").map(String::as_str) == Some(env))
            .filter(|g| {
                !matches!(
                    g.state(),
                    Some(NatGatewayState::Deleted | NatGatewayState::Deleting)
                )
            })
            .map(|g| g.nat_gateway_id().unwrap().to_string())
            .collect(),
    );
    let out = ec2
        .describe_addresses()
        .set_filters(Some(owned()))
        .send()
        .await
        .unwrap();
    inv.insert(
        "eip",
        out.addresses()
            .iter()
            .map(|a| a.allocation_id().unwrap().to_string())
            .collect(),
    );
    let out = ec2
        .describe_route_tables()
        .set_filters(Some(owned()))
        .send()
        .await
        .unwrap();
    inv.insert(
        "route_table",
        out.route_tables()
            .iter()
            .map(|t| t.route_table_id().unwrap().to_string())
            .collect(),
    );
    let out = ec2
        .describe_vpc_endpoints()
        .set_filters(Some(owned()))
        .send()
        .await
        .unwrap();
    inv.insert(
        "endpoint",
        out.vpc_endpoints()
            .iter()
            .filter(|e| e.state().map(|s| s.as_str().to_lowercase()) != Some("deleted".into()))
            .map(|e| e.vpc_endpoint_id().unwrap().to_string())
            .collect(),
    );
    let out = ec2
        .describe_security_groups()
        .set_filters(Some(owned()))
        .send()
        .await
        .unwrap();
    inv.insert(
        "security_group",
        out.security_groups()
            .iter()
            .map(|g| g.group_id().unwrap().to_string())
            .collect(),
    );
    let kms = stack.kms().await;
    let aliases = kms.list_aliases().send().await.unwrap();
    inv.insert(
        "kms_alias",
        aliases
            .aliases()
            .iter()
            .filter(|a| {
                a.alias_name()
                    .unwrap_or_default()
                    .ends_with(&format!("-{env}"))
            })
            .map(|a| {
                format!(
                    "{}={}",
                    a.alias_name().unwrap(),
                    a.target_key_id().unwrap_or_default()
                )
            })
            .collect(),
    );
    inv
}

fn counts(inv: &BTreeMap<&'static str, BTreeSet<String>>) -> BTreeMap<&'static str, usize> {
    inv.iter().map(|(k, v)| (*k, v.len())).collect()
}

async fn key_of_alias(stack: &Stack, purpose: &str) -> aws_sdk_kms::types::KeyMetadata {
    let kms = stack.kms().await;
    let alias = format!("alias/payment-{purpose}-{}", stack.env);
    kms.describe_key()
        .key_id(&alias)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .clone()
}

/// Reads every network and key setting back and checks it.
async fn check_network(stack: &Stack, nat_count: usize) {
    let ec2 = stack.ec2().await;
    let env = stack.env.as_str();

    let outputs = stack.must(&["outputs", "--json"]);
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).unwrap();
    let vpc_id = outputs["VPCId"].as_str().expect("VPCId output").to_string();

    let vpc = ec2.describe_vpcs().vpc_ids(&vpc_id).send().await.unwrap();
    let vpc = &vpc.vpcs()[0];
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    let tags = tags_of(vpc.tags());
    assert_standard_tags(&tags, env, "VPC");
    assert_eq!(
        tags.get("Name").map(String::as_str),
        Some(format!("payment-vpc-{env}").as_str())
    );
    for attr in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let out = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attr.clone())
            .send()
            .await
            .unwrap();
        let on = out
            .enable_dns_support()
            .or(out.enable_dns_hostnames())
            .and_then(|v| v.value());
        assert_eq!(on, Some(true), "{attr:?}");
    }

    let subnets = ec2
        .describe_subnets()
        .filters(filter("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    let subnets = subnets.subnets();
    assert_eq!(subnets.len(), 6);
    let azs: BTreeSet<_> = subnets
        .iter()
        .map(|s| s.availability_zone().unwrap().to_string())
        .collect();
    assert_eq!(azs.len(), 3, "{azs:?}");
    let tier = |s: &aws_sdk_ec2::types::Subnet| {
        tags_of(s.tags())["Name"]
            .split('-')
            .nth(1)
            .unwrap()
            .to_string()
    };
    let public: Vec<_> = subnets.iter().filter(|s| tier(s) == "public").collect();
    let private: Vec<_> = subnets.iter().filter(|s| tier(s) == "private").collect();
    assert_eq!((public.len(), private.len()), (3, 3));
    for s in subnets {
        assert_ne!(
            s.map_public_ip_on_launch(),
            Some(true),
            "subnet {:?} assigns public IPs",
            s.subnet_id()
        );
        assert_standard_tags(&tags_of(s.tags()), env, "subnet");
    }

    let igw = ec2
        .describe_internet_gateways()
        .filters(filter("attachment.vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    assert_eq!(igw.internet_gateways().len(), 1);
    let igw_id = igw.internet_gateways()[0]
        .internet_gateway_id()
        .unwrap()
        .to_string();

    let nats = ec2
        .describe_nat_gateways()
        .filter(filter("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    let nats: Vec<_> = nats
        .nat_gateways()
        .iter()
        .filter(|g| g.vpc_id() == Some(vpc_id.as_str()))
        .collect();
    assert_eq!(nats.len(), nat_count);
    let public_ids: BTreeSet<_> = public.iter().map(|s| s.subnet_id().unwrap()).collect();
    for g in &nats {
        assert_eq!(g.state(), Some(&NatGatewayState::Available));
        assert!(
            public_ids.contains(g.subnet_id().unwrap()),
            "NAT gateway in a public subnet"
        );
        assert_eq!(g.nat_gateway_addresses().len(), 1);
    }
    let nat_azs: BTreeSet<_> = nats
        .iter()
        .map(|g| {
            subnets
                .iter()
                .find(|s| s.subnet_id() == g.subnet_id())
                .unwrap()
                .availability_zone()
                .unwrap()
        })
        .collect();
    assert_eq!(nat_azs.len(), nat_count, "one NAT gateway per AZ");

    let tables = ec2
        .describe_route_tables()
        .filters(filter("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    let tables = tables.route_tables();
    let table_of = |subnet: &str| {
        tables
            .iter()
            .find(|t| {
                t.associations()
                    .iter()
                    .any(|a| a.subnet_id() == Some(subnet))
            })
            .unwrap_or_else(|| panic!("subnet {subnet} has no route table"))
    };
    let default_route = |t: &aws_sdk_ec2::types::RouteTable| {
        t.routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .cloned()
            .expect("a default route")
    };
    for s in &public {
        assert_eq!(
            default_route(table_of(s.subnet_id().unwrap())).gateway_id(),
            Some(igw_id.as_str())
        );
    }
    let mut private_tables = BTreeSet::new();
    for s in &private {
        let t = table_of(s.subnet_id().unwrap());
        private_tables.insert(t.route_table_id().unwrap().to_string());
        let nat = default_route(t)
            .nat_gateway_id()
            .expect("private route goes to a NAT gateway")
            .to_string();
        let g = nats
            .iter()
            .find(|g| g.nat_gateway_id() == Some(nat.as_str()))
            .expect("route to one of ours");
        if nat_count == 3 {
            let nat_az = subnets
                .iter()
                .find(|x| x.subnet_id() == g.subnet_id())
                .unwrap()
                .availability_zone();
            assert_eq!(
                nat_az,
                s.availability_zone(),
                "private subnet routes to the NAT in its own AZ"
            );
        }
    }
    assert_eq!(private_tables.len(), 3, "one private route table per AZ");

    let endpoints = ec2
        .describe_vpc_endpoints()
        .filters(filter("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    let mut services = BTreeSet::new();
    for e in endpoints.vpc_endpoints() {
        assert_eq!(e.vpc_endpoint_type().map(|t| t.as_str()), Some("Gateway"));
        let rts: BTreeSet<String> = e.route_table_ids().iter().cloned().collect();
        assert_eq!(rts, private_tables, "endpoint on the private route tables");
        services.insert(e.service_name().unwrap().to_string());
    }
    let want: BTreeSet<String> = ["s3", "dynamodb"]
        .iter()
        .map(|s| format!("com.amazonaws.{REGION}.{s}"))
        .collect();
    assert_eq!(services, want);

    let groups = ec2
        .describe_security_groups()
        .filters(filter("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    let group = |name: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(name))
            .unwrap_or_else(|| panic!("group {name}"))
            .clone()
    };
    let rules_of = |id: String| {
        let ec2 = ec2.clone();
        async move {
            ec2.describe_security_group_rules()
                .filters(filter("group-id", &id))
                .send()
                .await
                .unwrap()
                .security_group_rules()
                .to_vec()
        }
    };
    let default = group("default");
    assert!(
        rules_of(default.group_id().unwrap().to_string())
            .await
            .is_empty(),
        "default group has no rules"
    );
    let lambda = group(&format!("payment-lambda-sg-{env}"));
    let rds = group(&format!("payment-rds-sg-{env}"));
    assert_standard_tags(&tags_of(rds.tags()), env, "RDS security group");
    let rds_rules = rules_of(rds.group_id().unwrap().to_string()).await;
    let ingress: Vec<_> = rds_rules
        .iter()
        .filter(|r| r.is_egress() != Some(true))
        .collect();
    assert_eq!(ingress.len(), 1, "{rds_rules:?}");
    let r = ingress[0];
    assert_eq!(
        (r.ip_protocol(), r.from_port(), r.to_port()),
        (Some("tcp"), Some(5432), Some(5432))
    );
    assert_eq!(
        r.referenced_group_info().and_then(|g| g.group_id()),
        lambda.group_id()
    );
    assert!(r.cidr_ipv4().is_none() && r.cidr_ipv6().is_none());

    for purpose in ["rds", "s3", "sns"] {
        let key = key_of_alias(stack, purpose).await;
        assert_eq!(key.key_state(), Some(&KeyState::Enabled));
        assert_eq!(key.key_manager().map(|m| m.as_str()), Some("CUSTOMER"));
        let kms = stack.kms().await;
        let rotation = kms
            .get_key_rotation_status()
            .key_id(key.key_id())
            .send()
            .await
            .unwrap();
        assert!(rotation.key_rotation_enabled(), "rotation on for {purpose}");
        let tags = kms
            .list_resource_tags()
            .key_id(key.key_id())
            .send()
            .await
            .unwrap();
        let tags = tags
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
            .collect();
        assert_standard_tags(&tags, env, "KMS key");
    }
}

#[tokio::test]
async fn dev_lifecycle_up_up_adopt_down_up() {
    let stack = Stack::new("dev");
    stack.must(&["up"]);
    check_network(&stack, 1).await;
    let first = inventory(&stack).await;
    let expected = BTreeMap::from([
        ("vpc", 1),
        ("subnet", 6),
        ("igw", 1),
        ("nat", 1),
        ("eip", 1),
        ("route_table", 4),
        ("endpoint", 2),
        ("security_group", 2),
        ("kms_alias", 5),
    ]);
    assert_eq!(counts(&first), expected);

    // A second run changes nothing.
    let again = stack.must(&["up"]);
    assert_eq!(
        inventory(&stack).await,
        first,
        "second up created or replaced something"
    );
    assert!(!again.stderr.contains("created:"), "{}", again.stderr);

    // Without the state file, up adopts what exists instead of duplicating it.
    std::fs::remove_file(stack.state_file()).unwrap();
    stack.must(&["up"]);
    assert_eq!(
        inventory(&stack).await,
        first,
        "up without state duplicated resources"
    );
    check_network(&stack, 1).await;

    let keys: Vec<String> = futures_keys(&stack).await;
    stack.must(&["down", "--yes"]);
    let mut after = inventory(&stack).await;
    // The RDS key stays, enabled with its alias, while the final DB snapshot uses it.
    assert_eq!(
        after.remove("kms_alias"),
        Some(BTreeSet::from([format!(
            "alias/payment-rds-dev={}",
            keys[0]
        )]))
    );
    assert!(
        after.values().all(|ids| ids.is_empty()),
        "left behind: {after:?}"
    );
    let kms = stack.kms().await;
    for (id, want) in keys.iter().zip([
        KeyState::Enabled,
        KeyState::PendingDeletion,
        KeyState::PendingDeletion,
    ]) {
        let m = kms.describe_key().key_id(id).send().await.unwrap();
        assert_eq!(
            m.key_metadata().unwrap().key_state(),
            Some(&want),
            "key {id}"
        );
    }

    // down again is a no-op; up again reuses the keys pending deletion.
    stack.must(&["down", "--yes"]);
    stack.must(&["up"]);
    assert_eq!(
        futures_keys(&stack).await,
        keys,
        "up made new keys instead of reusing them"
    );
    check_network(&stack, 1).await;

    // And with neither state nor aliases, the keys are found by their tags.
    stack.must(&["down", "--yes"]);
    std::fs::remove_file(stack.state_file()).unwrap();
    stack.must(&["up"]);
    assert_eq!(
        futures_keys(&stack).await,
        keys,
        "keys not found by tags without state"
    );
    stack.must(&["down", "--yes"]);
}

async fn futures_keys(stack: &Stack) -> Vec<String> {
    vec![
        key_of_alias(stack, "rds").await.key_id().to_string(),
        key_of_alias(stack, "s3").await.key_id().to_string(),
        key_of_alias(stack, "sns").await.key_id().to_string(),
    ]
}

#[tokio::test]
async fn prod_has_a_nat_gateway_per_zone_and_down_needs_yes() {
    let stack = Stack::new("prod");
    stack.must(&["up"]);
    check_network(&stack, 3).await;
    let before = inventory(&stack).await;
    assert_eq!(before["eip"].len(), 3);

    let refused = stack.payctl(&["down"]);
    assert!(!refused.ok);
    assert!(
        refused.error_line().contains("without --yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        inventory(&stack).await,
        before,
        "a refused down changed something"
    );

    stack.must(&["down", "--yes"]);
    let mut after = inventory(&stack).await;
    // Production keeps its data's keys: the RDS key (final snapshot), the S3 key (audit
    // bucket) and the logs key (the kept log groups), with their aliases, as before the
    // down; the SNS and Lambda keys encrypt nothing kept.
    let kept: BTreeSet<String> = before["kms_alias"]
        .iter()
        .filter(|a| !a.starts_with("alias/payment-sns-") && !a.starts_with("alias/payment-lambda-"))
        .cloned()
        .collect();
    assert_eq!(kept.len(), 3, "{before:?}");
    assert_eq!(after.remove("kms_alias"), Some(kept));
    assert!(
        after.values().all(|ids| ids.is_empty()),
        "left behind: {after:?}"
    );
}

#[tokio::test]
async fn resources_without_payctl_tags_are_neither_adopted_nor_deleted() {
    let stack = Stack::new("qa");
    let ec2 = stack.ec2().await;
    let name = aws_sdk_ec2::types::Tag::builder()
        .key("Name")
        .value("payment-vpc-qa")
        .build();
    let env = aws_sdk_ec2::types::Tag::builder()
        .key("Environment")
        .value("qa")
        .build();
    let spec = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
        .tags(name)
        .tags(env)
        .build();
    let lookalike = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(spec)
        .send()
        .await
        .unwrap();
    let lookalike = lookalike.vpc().unwrap().vpc_id().unwrap().to_string();

    stack.must(&["up"]);
    let outputs: serde_json::Value =
        serde_json::from_str(&stack.must(&["outputs", "--json"]).stdout).unwrap();
    assert_ne!(
        outputs["VPCId"].as_str(),
        Some(lookalike.as_str()),
        "adopted a VPC payctl does not own"
    );

    stack.must(&["down", "--yes"]);
    let still = ec2
        .describe_vpcs()
        .vpc_ids(&lookalike)
        .send()
        .await
        .unwrap();
    assert_eq!(
        still.vpcs().len(),
        1,
        "down deleted a VPC payctl does not own"
    );

    // A state file that points at the look-alike is refused, not obeyed.
    let state = serde_json::json!({
        "version": 1, "serial": 1, "lineage": "x", "env": "qa", "region": REGION,
        "account_id": "123456789012",
        "resources": {"ec2_vpc.main": {"kind": "ec2_vpc", "id": lookalike}}
    });
    std::fs::write(stack.state_file(), state.to_string()).unwrap();
    let run = stack.payctl(&["down", "--yes"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("not managed by payctl"),
        "{}",
        run.stderr
    );
    assert_eq!(
        ec2.describe_vpcs()
            .vpc_ids(&lookalike)
            .send()
            .await
            .unwrap()
            .vpcs()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_second_run_fails_fast_naming_the_lock_holder() {
    let stack = Stack::new("dev");
    std::fs::create_dir_all(stack.state_dir.path()).unwrap();
    // This test holds the OS lock, as a running payctl would, with its holder info.
    let holder = serde_json::json!({
        "id": "lock-1", "pid": std::process::id(), "host": gethostname::gethostname().to_string_lossy(),
        "started_at": "2026-01-01T00:00:00Z", "command": "up"
    });
    let lock = stack.lock_file();
    let held = try_flock(&lock).expect("take the lock");
    std::fs::write(&lock, holder.to_string()).unwrap();
    let run = stack.payctl(&["up"]);
    assert!(!run.ok);
    assert!(
        run.error_line()
            .contains(&format!("locked by pid {}", std::process::id())),
        "{}",
        run.stderr
    );
    assert!(
        inventory(&stack).await.values().all(|v| v.is_empty()),
        "a locked run created something"
    );
    // A live run's lock cannot be forced: its holder (or the OS) releases it.
    let run = stack.payctl(&["force-unlock", "lock-1"]);
    assert!(
        !run.ok && run.error_line().contains("is held by pid"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), holder.to_string());

    // The holder dies: the OS releases its lock and leaves its holder info. Nothing is
    // stale: force-unlock only clears that info (with the matching id), and the next run
    // would have taken the lock over anyway.
    drop(held);
    let run = stack.payctl(&["force-unlock", "lock-2"]);
    assert!(
        !run.ok && run.error_line().contains("not lock-2"),
        "{}",
        run.stderr
    );
    let run = stack.must(&["force-unlock", "lock-1"]);
    assert!(run.stderr.contains("nothing to unlock"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "");

    // A lock file a dead process left is taken over by the next run, which proceeds.
    let dead = serde_json::json!({
        "id": "lock-3", "pid": 4194305, "host": gethostname::gethostname().to_string_lossy(),
        "started_at": "2026-01-01T00:00:00Z", "command": "up"
    });
    std::fs::write(&lock, dead.to_string()).unwrap();
    let run = stack.must(&["down"]);
    assert!(
        run.stderr.contains("taking over the lock") && run.stderr.contains("lock id lock-3"),
        "{}",
        run.stderr
    );
    assert_eq!(
        stack.assert_lock_free(),
        "",
        "the run cleared its holder info"
    );
}

/// Tag repair: standard tags removed out of band from the VPC and a subnet are shown by
/// `plan` as `tags: missing … → set` and put back by the next `up` (read back here);
/// the ownership tags themselves are never "repaired" onto a resource that lacks them
/// (that is `resources_without_payctl_tags_are_neither_adopted_nor_deleted`).
#[tokio::test]
async fn missing_standard_tags_are_shown_by_plan_and_put_back_by_up() {
    let stack = Stack::new("tagfix");
    stack.must(&["up"]);
    let ec2 = stack.ec2().await;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
    let id = |addr: &str| {
        state["resources"][addr]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{addr} in the state file"))
            .to_string()
    };
    let (vpc, subnet) = (id("ec2_vpc.main"), id("ec2_subnet.private-us-east-1a"));
    let strip = |k: &str| aws_sdk_ec2::types::Tag::builder().key(k).build();
    ec2.delete_tags()
        .resources(&vpc)
        .resources(&subnet)
        .tags(strip("Team"))
        .tags(strip("CostCenter"))
        .send()
        .await
        .unwrap();

    let plan = stack.payctl(&["plan"]);
    assert_eq!(plan.code, Some(2), "{}\n{}", plan.stdout, plan.stderr);
    for addr in ["ec2_vpc.main", "ec2_subnet.private-us-east-1a"] {
        let at = plan
            .stdout
            .find(&format!("~ {addr}"))
            .unwrap_or_else(|| panic!("no `~ {addr}` in the plan:\n{}", plan.stdout));
        assert!(
            plan.stdout[at..].contains("    tags: missing Team, CostCenter → set"),
            "{}",
            plan.stdout
        );
    }

    let up = stack.must(&["up"]);
    assert!(up.stderr.contains("updated: ec2_vpc.main"), "{}", up.stderr);
    for resource in [&vpc, &subnet] {
        let out = ec2
            .describe_tags()
            .filters(filter("resource-id", resource))
            .send()
            .await
            .unwrap();
        let tags: BTreeMap<String, String> = out
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
            .collect();
        assert_standard_tags(&tags, "tagfix", resource);
    }
    let again = stack.payctl(&["plan"]);
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
}
