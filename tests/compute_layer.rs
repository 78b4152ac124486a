//! The compute layer against the emulator: roles and their policies, log groups,
//! functions and event source mappings, read back through the SDK; `up` again changes
//! nothing; new code for one function updates only that function; missing packages and
//! too little unreserved concurrency stop `up` before it creates anything; `down` leaves
//! nothing of the layer behind.

mod common;

use common::proxy::{Fault, Proxy};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FUNCTIONS: [&str; 3] = ["validator", "processor", "audit-logger"];

struct Clients {
    iam: aws_sdk_iam::Client,
    kms: aws_sdk_kms::Client,
    lambda: aws_sdk_lambda::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    ec2: aws_sdk_ec2::Client,
}

async fn clients(stack: &Stack) -> Clients {
    let sdk = stack.sdk().await;
    Clients {
        iam: aws_sdk_iam::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
        lambda: aws_sdk_lambda::Client::new(&sdk),
        logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
        ec2: aws_sdk_ec2::Client::new(&sdk),
    }
}

/// Base64 of the SHA-256 of a file, computed here independently of payctl.
fn code_sha256(path: &Path) -> String {
    use base64::Engine;
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

fn decode_policy(doc: &str) -> Value {
    let text = percent_encoding::percent_decode_str(doc)
        .decode_utf8()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every (actions, resources) pair of a policy document.
fn statements(policy: &Value) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
    let list = |v: &Value| -> BTreeSet<String> {
        match v {
            Value::String(s) => BTreeSet::from([s.clone()]),
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{s}");
            (list(&s["Action"]), list(&s["Resource"]))
        })
        .collect()
}

/// The resources a policy grants `action` on.
fn granted(policy: &Value, action: &str) -> BTreeSet<String> {
    statements(policy)
        .into_iter()
        .filter(|(a, _)| a.contains(action))
        .flat_map(|(_, r)| r)
        .collect()
}

async fn inline_policy(c: &Clients, role: &str) -> Value {
    let names = c
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    assert_eq!(
        names.policy_names().len(),
        1,
        "{role}: {:?}",
        names.policy_names()
    );
    let out = c
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(&names.policy_names()[0])
        .send()
        .await
        .unwrap();
    decode_policy(out.policy_document())
}

/// The private subnets of the environment's VPC, read from EC2 by their tags.
async fn private_subnets(c: &Clients, env: &str) -> BTreeSet<String> {
    let out = c
        .ec2
        .describe_subnets()
        .filters(tag_filter("Environment", env))
        .send()
        .await
        .unwrap();
    out.subnets()
        .iter()
        .filter(|s| {
            tags_of(s.tags())
                .get("Name")
                .is_some_and(|n| n.contains("private"))
        })
        .map(|s| s.subnet_id().unwrap().to_string())
        .collect()
}

async fn lambda_sg(c: &Clients, env: &str) -> String {
    let out = c
        .ec2
        .describe_security_groups()
        .filters(tag_filter("Environment", env))
        .filters(filter("group-name", &format!("payment-lambda-sg-{env}")))
        .send()
        .await
        .unwrap();
    assert_eq!(out.security_groups().len(), 1);
    out.security_groups()[0].group_id().unwrap().to_string()
}

async fn code_hashes(c: &Clients, env: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in FUNCTIONS {
        let name = format!("payment-{f}-{env}");
        let conf = c
            .lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .unwrap();
        out.insert(
            f.to_string(),
            conf.configuration()
                .unwrap()
                .code_sha256()
                .unwrap()
                .to_string(),
        );
    }
    out
}

/// Requests that changed a function, role, log group or mapping since `before`, from
/// the proxy's per-operation counts.
fn function_writes(proxy: &Proxy, before: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    proxy
        .counts()
        .into_iter()
        .map(|(op, n)| {
            let earlier = before.get(&op).copied().unwrap_or(0);
            (op, n - earlier)
        })
        .filter(|(op, n)| {
            *n > 0 && {
                (op.starts_with("PUT /2015-03-31/functions/")
                    || op.starts_with("POST /2015-03-31/functions"))
                    || op.starts_with("PUT /2017-10-31/functions/")
                    || matches!(
                        op.as_str(),
                        "PutRolePolicy"
                            | "CreateRole"
                            | "UpdateAssumeRolePolicy"
                            | "PutRetentionPolicy"
                            | "CreateLogGroup"
                    )
                    || op.starts_with("POST /2015-03-31/event-source-mappings")
                    || op.starts_with("PUT /2015-03-31/event-source-mappings")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_functions_are_deployed_as_specified_and_converge() {
    let stack = Stack::new("prod");
    // A changed function goes live through a canary; this test's bake is a second.
    std::fs::write(
        stack.home.path().join("payctl.toml"),
        "[env.prod]\ncanary_bake_seconds = 1\n",
    )
    .unwrap();
    // Every run goes through one proxy that counts the requests: the emulator puts the
    // endpoint it was reached at into queue URLs, so all runs use the same one.
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    let up = |env: &[(&str, &str)]| {
        let run = stack.payctl_via(&proxy.endpoint, &["up"], env);
        assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
        run
    };
    up(&[]);
    let c = clients(&stack).await;
    let account = "123456789012";

    // Log groups: one per function and the API's access log, made by payctl, 365 days in
    // production (PCI DSS 10.5.1), each encrypted with the stack's logs key.
    let key_arn = |alias: &'static str| {
        let kms = c.kms.clone();
        async move {
            let out = kms.describe_key().key_id(alias).send().await.unwrap();
            out.key_metadata().unwrap().arn().unwrap().to_string()
        }
    };
    let logs_key = key_arn("alias/payment-logs-prod").await;
    let lambda_key = key_arn("alias/payment-lambda-prod").await;
    let groups = c.logs.describe_log_groups().send().await.unwrap();
    let settings: BTreeMap<String, (Option<i32>, Option<String>)> = groups
        .log_groups()
        .iter()
        .map(|g| {
            (
                g.log_group_name().unwrap().to_string(),
                (g.retention_in_days(), g.kms_key_id().map(str::to_string)),
            )
        })
        .collect();
    for name in [
        "/aws/lambda/payment-validator-prod",
        "/aws/lambda/payment-processor-prod",
        "/aws/lambda/payment-audit-logger-prod",
        "/aws/apigateway/payment-api-prod/access",
    ] {
        assert_eq!(
            settings.get(name),
            Some(&(Some(365), Some(logs_key.clone()))),
            "{name}: {settings:?}"
        );
    }

    // Roles: trusted by Lambda for this account, one inline policy, nothing attached.
    let table_arn = format!("arn:aws:dynamodb:{REGION}:{account}:table/payment-transactions-prod");
    for f in FUNCTIONS {
        let role = format!("payment-{f}-role-prod");
        let got = c.iam.get_role().role_name(&role).send().await.unwrap();
        let trust = decode_policy(got.role().unwrap().assume_role_policy_document().unwrap());
        assert_eq!(
            trust["Statement"][0]["Principal"]["Service"],
            "lambda.amazonaws.com"
        );
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
            account
        );
        let attached = c
            .iam
            .list_attached_role_policies()
            .role_name(&role)
            .send()
            .await
            .unwrap();
        assert!(
            attached.attached_policies().is_empty(),
            "{role}: {:?}",
            attached.attached_policies()
        );
        let policy = inline_policy(&c, &role).await;
        let all_actions: BTreeSet<String> = statements(&policy)
            .into_iter()
            .flat_map(|(a, _)| a)
            .collect();
        assert!(
            !all_actions.contains("logs:CreateLogGroup"),
            "{role}: {all_actions:?}"
        );
        assert!(
            !all_actions.iter().any(|a| a.contains('*')),
            "{role}: {all_actions:?}"
        );
        assert_eq!(
            granted(&policy, "logs:PutLogEvents"),
            BTreeSet::from([format!(
                "arn:aws:logs:{REGION}:{account}:log-group:/aws/lambda/payment-{f}-prod:*"
            )]),
            "{role}"
        );
        // `*` only for actions AWS does not scope by resource.
        for (actions, resources) in statements(&policy) {
            if resources.contains("*") {
                assert!(
                    actions.iter().all(|a| a.starts_with("xray:")
                        || a.starts_with("ec2:")
                        || a == "dynamodb:ListStreams"),
                    "{role}: * for {actions:?}"
                );
            }
        }
        // Every function may decrypt its environment with the Lambda key, through Lambda.
        assert!(
            granted(&policy, "kms:Decrypt").contains(&lambda_key),
            "{role}"
        );
        let through_lambda = policy["Statement"].as_array().unwrap().iter().any(|st| {
            st["Resource"] == serde_json::json!([lambda_key])
                && st["Condition"]["StringEquals"]["kms:ViaService"]
                    == format!("lambda.{REGION}.amazonaws.com")
        });
        assert!(through_lambda, "{role}: {policy}");
        match f {
            "validator" => {
                assert_eq!(
                    granted(&policy, "dynamodb:PutItem"),
                    BTreeSet::from([table_arn.clone()])
                );
                assert!(granted(&policy, "dynamodb:UpdateItem").is_empty());
                assert!(granted(&policy, "sqs:SendMessage").is_empty());
            }
            "processor" => {
                assert_eq!(
                    granted(&policy, "dynamodb:UpdateItem"),
                    BTreeSet::from([table_arn.clone()])
                );
                let queue = granted(&policy, "sqs:SendMessage");
                assert_eq!(queue.len(), 1);
                assert!(
                    queue.iter().all(|q| q.ends_with(":payment-retry-prod")),
                    "{queue:?}"
                );
                let secret = granted(&policy, "secretsmanager:GetSecretValue");
                assert_eq!(secret.len(), 1);
                assert!(secret.iter().all(|s| s.contains(":secret:")), "{secret:?}");
                // The RDS key (the secret) and the Lambda key (its environment).
                assert_eq!(granted(&policy, "kms:Decrypt").len(), 2);
                assert!(granted(&policy, "s3:PutObject").is_empty());
            }
            _ => {
                let stream = granted(&policy, "dynamodb:GetRecords");
                assert!(
                    stream
                        .iter()
                        .all(|s| s.starts_with(&format!("{table_arn}/stream/"))),
                    "{stream:?}"
                );
                let objects = granted(&policy, "s3:PutObject");
                assert_eq!(objects.len(), 1);
                assert!(
                    objects
                        .iter()
                        .all(|o| o.starts_with("arn:aws:s3:::payment-audit-prod-")
                            && o.ends_with("/audit/*")),
                    "{objects:?}"
                );
                assert!(granted(&policy, "dynamodb:PutItem").is_empty());
                let dlq = granted(&policy, "sqs:SendMessage");
                assert!(
                    dlq.iter().all(|q| q.ends_with(":payment-retry-dlq-prod")),
                    "{dlq:?}"
                );
            }
        }
    }

    // Functions: runtime, the packages' architecture and code, VPC, environment, X-Ray,
    // sizing and reserved concurrency.
    let subnets = private_subnets(&c, "prod").await;
    assert_eq!(subnets.len(), 3);
    let sg = lambda_sg(&c, "prod").await;
    let mut arns = BTreeMap::new();
    for (f, timeout, memory, reserved) in [
        ("validator", 10, 256, 100),
        ("processor", 30, 512, 50),
        ("audit-logger", 60, 256, 10),
    ] {
        let name = format!("payment-{f}-prod");
        let out = c
            .lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .unwrap();
        let conf = out.configuration().unwrap();
        arns.insert(f, conf.function_arn().unwrap().to_string());
        assert_eq!(conf.runtime().unwrap().as_str(), "provided.al2023");
        assert_eq!(conf.handler(), Some("bootstrap"));
        let archs: Vec<&str> = conf.architectures().iter().map(|a| a.as_str()).collect();
        assert_eq!(archs, ["arm64"], "{name}");
        assert_eq!(
            conf.code_sha256(),
            Some(code_sha256(&packages_dir().join(f).join("bootstrap.zip")).as_str())
        );
        assert_eq!(
            (conf.timeout(), conf.memory_size()),
            (Some(timeout), Some(memory)),
            "{name}"
        );
        assert_eq!(
            conf.tracing_config().unwrap().mode().unwrap().as_str(),
            "Active"
        );
        let vpc = conf.vpc_config().unwrap();
        assert_eq!(
            vpc.subnet_ids().iter().cloned().collect::<BTreeSet<_>>(),
            subnets,
            "{name}"
        );
        assert_eq!(
            vpc.security_group_ids(),
            std::slice::from_ref(&sg),
            "{name}"
        );
        assert!(
            conf.role()
                .unwrap()
                .ends_with(&format!(":role/payment-{f}-role-prod"))
        );
        assert_eq!(conf.kms_key_arn(), Some(lambda_key.as_str()), "{name}");
        let env = conf.environment().unwrap().variables().unwrap();
        assert_eq!(env["PAYMENTS_ENV"], "prod");
        match f {
            "validator" => assert_eq!(env["TABLE_NAME"], "payment-transactions-prod"),
            "processor" => {
                assert_eq!(env["TABLE_NAME"], "payment-transactions-prod");
                assert!(
                    env["RETRY_QUEUE_URL"].ends_with("/payment-retry-prod"),
                    "{env:?}"
                );
                assert!(env["DB_SECRET_ARN"].contains(":secret:"), "{env:?}");
                assert_eq!(env["DB_SSLMODE"], "verify-full");
                assert_eq!(env["DB_NAME"], "payments");
                assert_eq!(env["DB_PORT"], "5432");
                assert!(!env["DB_HOST"].is_empty());
                assert!(!env.contains_key("AUDIT_BUCKET"));
                assert!(!env.contains_key("AUDIT_BUCKET_OWNER"));
            }
            _ => {
                assert!(
                    env["AUDIT_BUCKET"].starts_with("payment-audit-prod-"),
                    "{env:?}"
                );
                assert_eq!(env["AUDIT_BUCKET_OWNER"], "123456789012", "{env:?}");
            }
        }
        assert!(env.keys().all(|k| !k.contains("PASSWORD")), "{env:?}");
        let concurrency = c
            .lambda
            .get_function_concurrency()
            .function_name(&name)
            .send()
            .await
            .unwrap();
        assert_eq!(
            concurrency.reserved_concurrent_executions(),
            Some(reserved),
            "{name}"
        );
    }

    // Event source mappings: stream → audit logger (DLQ on failure), queue → processor.
    let mappings = c.lambda.list_event_source_mappings().send().await.unwrap();
    // Each invokes its function's alias `live`: AWS keeps the alias ARN the mapping was
    // created with; moto 5.2.5 stores the ARN of the version the alias pointed at then.
    let by_function: BTreeMap<&str, _> = mappings
        .event_source_mappings()
        .iter()
        .map(|m| {
            let arn = m.function_arn().unwrap();
            let (function, qualifier) = arn.rsplit_once(':').unwrap();
            assert!(
                qualifier == "live" || qualifier.parse::<u32>().is_ok(),
                "{arn} is not the alias live"
            );
            (function, m)
        })
        .collect();
    assert_eq!(
        by_function.len(),
        2,
        "{:?}",
        mappings.event_source_mappings()
    );
    let stream = by_function[arns["audit-logger"].as_str()];
    assert!(
        stream
            .event_source_arn()
            .unwrap()
            .starts_with(&format!("{table_arn}/stream/"))
    );
    assert_eq!(
        stream
            .function_response_types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        ["ReportBatchItemFailures"]
    );
    assert!(
        stream
            .destination_config()
            .unwrap()
            .on_failure()
            .unwrap()
            .destination()
            .unwrap()
            .ends_with(":payment-retry-dlq-prod")
    );
    let queue = by_function[arns["processor"].as_str()];
    assert!(
        queue
            .event_source_arn()
            .unwrap()
            .ends_with(":payment-retry-prod")
    );
    assert_eq!(
        queue
            .function_response_types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        ["ReportBatchItemFailures"]
    );

    // `up` again: nothing written to any function, role, log group or mapping.
    let counts = proxy.counts();
    let run = up(&[]);
    assert!(
        function_writes(&proxy, &counts).is_empty(),
        "{:?}\n{}",
        function_writes(&proxy, &counts),
        run.stderr
    );
    let before = code_hashes(&c, "prod").await;

    // New code for the processor only: one code upload, to the processor, one version
    // published, and the alias `live` first weighted (the canary), then promoted.
    let changed = packages_with_new("processor");
    let counts = proxy.counts();
    let run = up(&[("PAYCTL_PACKAGES", changed.path().to_str().unwrap())]);
    let processor = "/2015-03-31/functions/payment-processor-prod";
    assert_eq!(
        function_writes(&proxy, &counts),
        BTreeMap::from([
            (format!("PUT {processor}/code"), 1),
            (format!("POST {processor}/versions"), 1),
            (format!("PUT {processor}/aliases/live"), 2),
        ])
    );
    assert!(run.stderr.contains("canary promoted"), "{}", run.stderr);
    let live = c
        .lambda
        .get_alias()
        .function_name("payment-processor-prod")
        .name("live")
        .send()
        .await
        .unwrap();
    assert_eq!(live.function_version(), Some("2"));
    assert!(
        live.routing_config()
            .and_then(|r| r.additional_version_weights())
            .is_none_or(|w| w.is_empty()),
        "{live:?}"
    );
    let state = stack.state();
    let rec = &state["resources"]["lambda_alias.processor"];
    assert_eq!(rec["attrs"]["version"], "2", "{rec}");
    assert_eq!(rec["attrs"]["previous"], "1", "{rec}");
    assert!(rec["attrs"].get("canary").is_none(), "{rec}");
    let after = code_hashes(&c, "prod").await;
    assert_eq!(
        after["processor"],
        code_sha256(&changed.path().join("processor/bootstrap.zip"))
    );
    assert_ne!(after["processor"], before["processor"]);
    assert_eq!(after["validator"], before["validator"]);
    assert_eq!(after["audit-logger"], before["audit-logger"]);

    // `down`: no function, role or mapping of the environment is left; production keeps
    // its log groups (a year of logs, PCI DSS 10.5.1), encrypted with the kept logs key.
    let run = stack.payctl_via(&proxy.endpoint, &["down", "--yes"], &[]);
    assert!(run.ok, "{}", run.stderr);
    let functions = c.lambda.list_functions().send().await.unwrap();
    assert!(
        functions
            .functions()
            .iter()
            .all(|f| !f.function_name().unwrap().ends_with("-prod")),
        "{:?}",
        functions.functions()
    );
    assert!(
        c.lambda
            .list_event_source_mappings()
            .send()
            .await
            .unwrap()
            .event_source_mappings()
            .is_empty()
    );
    let roles = c.iam.list_roles().send().await.unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|r| !r.role_name().starts_with("payment-")),
        "{:?}",
        roles.roles()
    );
    let groups = c.logs.describe_log_groups().send().await.unwrap();
    let kept: Vec<(&str, Option<&str>)> = groups
        .log_groups()
        .iter()
        .map(|g| (g.log_group_name().unwrap(), g.kms_key_id()))
        .collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert!(
        kept.iter().all(|(_, k)| *k == Some(logs_key.as_str())),
        "{kept:?}"
    );
}

/// A log group that exists before `up` without the stack's key (made by hand, or by an
/// earlier payctl) gets the key with `AssociateKmsKey` and the environment's retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_log_group_gets_the_logs_key_and_the_retention() {
    let stack = Stack::new("qa");
    let c = clients(&stack).await;
    let name = "/aws/lambda/payment-validator-qa";
    let tags: std::collections::HashMap<String, String> = [
        ("Project", "payment-processing"),
        ("Environment", "qa"),
        ("ManagedBy", "payctl"),
        ("Team", "platform-engineering"),
        ("CostCenter", "fintech-payments"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c.logs
        .create_log_group()
        .log_group_name(name)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    // moto 5.2.5 has no AssociateKmsKey (it answers 500). AWS answers an empty 200 and
    // the group is encrypted with the key from then on ("AssociateKmsKey",
    // https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_AssociateKmsKey.html):
    // the proxy plays it and keeps what was asked.
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.inject(Fault {
        operation: "AssociateKmsKey".into(),
        times: usize::MAX,
        status: 200,
        headers: vec![("Content-Type".into(), "application/x-amz-json-1.1".into())],
        body: "{}".into(),
    });
    proxy.record("AssociateKmsKey");
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[]);
    assert!(run.ok, "{}", run.stderr);
    let logs_key = c
        .kms
        .describe_key()
        .key_id("alias/payment-logs-qa")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let asked = proxy.bodies("AssociateKmsKey");
    assert_eq!(asked.len(), 1, "only the existing group: {asked:?}");
    let body: Value = serde_json::from_str(&asked[0]).unwrap();
    assert_eq!(body["logGroupName"], name);
    assert_eq!(body["kmsKeyId"], logs_key.as_str());
    let groups = c.logs.describe_log_groups().send().await.unwrap();
    for g in groups.log_groups() {
        assert_eq!(g.retention_in_days(), Some(90), "{g:?}");
        if g.log_group_name() != Some(name) {
            // Made by this run: encrypted from the start.
            assert_eq!(g.kms_key_id(), Some(logs_key.as_str()), "{g:?}");
        }
    }
}

#[tokio::test]
async fn a_missing_package_stops_up_before_anything_is_created() {
    let stack = Stack::new("dev");
    let empty = tempfile::tempdir().unwrap();
    let run = stack.payctl_via(
        &stack.moto.endpoint,
        &["up"],
        &[("PAYCTL_PACKAGES", empty.path().to_str().unwrap())],
    );
    assert!(!run.ok);
    let line = run.error_line();
    assert!(
        line.contains("validator/bootstrap.zip is missing"),
        "{line}"
    );
    assert!(line.contains("scripts/package-functions.sh"), "{line}");
    let vpcs = stack
        .ec2()
        .await
        .describe_vpcs()
        .filters(tag_filter("ManagedBy", "payctl"))
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty(), "{:?}", vpcs.vpcs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_unreserved_concurrency_stops_up_before_anything_is_created() {
    let stack = Stack::new("prod");
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    // An account with the default limit, most of it already reserved elsewhere.
    proxy.inject(Fault {
        operation: "GET /2016-08-19/account-settings".into(),
        times: usize::MAX,
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: r#"{"AccountLimit":{"TotalCodeSize":80530636800,"CodeSizeUnzipped":262144000,"CodeSizeZipped":52428800,"ConcurrentExecutions":1000,"UnreservedConcurrentExecutions":200},"AccountUsage":{"TotalCodeSize":0,"FunctionCount":0}}"#.into(),
    });
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[]);
    assert!(!run.ok, "{}", run.stderr);
    let line = run.error_line();
    assert!(line.contains("reserved concurrency 160"), "{line}");
    assert!(
        line.contains("would leave 40 of the account's 1000"),
        "{line}"
    );
    assert_eq!(
        proxy.count("GET /2016-08-19/account-settings").1,
        1,
        "{:?}",
        proxy.counts()
    );
    let vpcs = stack
        .ec2()
        .await
        .describe_vpcs()
        .filters(tag_filter("ManagedBy", "payctl"))
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty());

    // With room for the reservations, the same account gets the full stack.
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.inject(Fault {
        operation: "GET /2016-08-19/account-settings".into(),
        times: usize::MAX,
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: r#"{"AccountLimit":{"ConcurrentExecutions":1000,"UnreservedConcurrentExecutions":1000},"AccountUsage":{"FunctionCount":0}}"#.into(),
    });
    let run = stack.payctl_via(&proxy.endpoint, &["up"], &[]);
    assert!(run.ok, "{}", run.stderr);
}

/// The `~ <address>` line of a plan and the lines under it.
fn planned<'a>(plan: &'a str, address: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = plan.lines().collect();
    let Some(at) = lines
        .iter()
        .position(|l| l.starts_with(&format!("~ {address} ")))
    else {
        return Vec::new();
    };
    let under = lines[at + 1..].iter().take_while(|l| l.starts_with("    "));
    std::iter::once(lines[at]).chain(under.copied()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_standard_tags_are_planned_and_put_back() {
    let stack = Stack::new("retag");
    stack.must(&["up"]);
    let c = clients(&stack).await;
    let function = c
        .lambda
        .get_function()
        .function_name("payment-validator-retag")
        .send()
        .await
        .unwrap();
    let function_arn = function
        .configuration()
        .unwrap()
        .function_arn()
        .unwrap()
        .to_string();
    let role = "payment-processor-role-retag";
    let group_arn = format!(
        "arn:aws:logs:{REGION}:123456789012:log-group:/aws/lambda/payment-audit-logger-retag"
    );
    // Someone strips a standard tag from a function, a role and a log group.
    c.lambda
        .untag_resource()
        .resource(&function_arn)
        .tag_keys("Team")
        .send()
        .await
        .unwrap();
    c.iam
        .untag_role()
        .role_name(role)
        .tag_keys("CostCenter")
        .send()
        .await
        .unwrap();
    c.logs
        .untag_resource()
        .resource_arn(&group_arn)
        .tag_keys("Project")
        .send()
        .await
        .unwrap();

    // `plan` names each, and nothing else.
    let plan = stack.payctl(&["plan"]);
    assert_eq!(plan.code, Some(2), "{}\n{}", plan.stdout, plan.stderr);
    for (address, key) in [
        ("lambda_function.validator", "Team"),
        ("iam_role.processor", "CostCenter"),
        ("log_group.audit-logger", "Project"),
    ] {
        let lines = planned(&plan.stdout, address);
        assert!(
            lines.contains(&format!("    tags: missing {key} → set").as_str()),
            "{address}: {lines:?}\n{}",
            plan.stdout
        );
    }
    let changes = plan
        .stdout
        .lines()
        .filter(|l| l.starts_with(['+', '~', '-']));
    assert_eq!(changes.count(), 3, "{}", plan.stdout);

    // `up` puts them back: read back through the SDK.
    let run = stack.must(&["up"]);
    for address in [
        "lambda_function.validator",
        "iam_role.processor",
        "log_group.audit-logger",
    ] {
        assert!(
            run.stderr.contains(&format!("updated: {address} ")),
            "{address} not reported as updated:\n{}",
            run.stderr
        );
    }
    let tags = c
        .lambda
        .list_tags()
        .resource(&function_arn)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = tags
        .tags()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    assert_standard_tags(&tags, "retag", "function");
    let tags = c.iam.list_role_tags().role_name(role).send().await.unwrap();
    let tags = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_standard_tags(&tags, "retag", "role");
    let tags = c
        .logs
        .list_tags_for_resource()
        .resource_arn(&group_arn)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = tags
        .tags()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    assert_standard_tags(&tags, "retag", "log group");
    let plan = stack.payctl(&["plan"]);
    assert_eq!(plan.code, Some(0), "{}\n{}", plan.stdout, plan.stderr);
}
