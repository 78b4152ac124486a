//! The monitoring layer (SNS alert topic, CloudWatch alarms, dashboard, the SNS KMS key)
//! against the emulator: every setting read back through the SDK (never through
//! payctl's state file), the alarms' dimensions checked against the resources that
//! really exist, idempotent re-runs, drift repair, adoption without state, a changed
//! alert address, look-alikes refused, and teardown.
//!
//! Emulator differences: moto confirms e-mail subscriptions at once (on AWS they stay
//! "PendingConfirmation" until the recipient clicks the link), so the pending case is
//! covered by unit tests only; moto replaces an alarm's configuration timestamp on every
//! `PutMetricAlarm` and a dashboard's `LastModified` on every `PutDashboard`, which is
//! what the idempotency checks rely on.

mod common;

use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricAlarm, Statistic};
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// moto's fixed account id.
const ACCOUNT: &str = "123456789012";

struct Clients {
    sns: aws_sdk_sns::Client,
    cw: aws_sdk_cloudwatch::Client,
    kms: aws_sdk_kms::Client,
}

async fn clients(stack: &Stack) -> Clients {
    let sdk = stack.sdk().await;
    Clients {
        sns: aws_sdk_sns::Client::new(&sdk),
        cw: aws_sdk_cloudwatch::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
    }
}

fn outputs(stack: &Stack) -> Value {
    serde_json::from_str(&stack.must(&["outputs", "--json"]).stdout).expect("outputs JSON")
}

fn topic_name(env: &str) -> String {
    format!("payment-alerts-{env}")
}

fn dashboard_name(env: &str) -> String {
    format!("payment-dashboard-{env}")
}

/// The env's topics, by ARN.
async fn topics(c: &Clients, env: &str) -> Vec<String> {
    let out = c.sns.list_topics().send().await.unwrap();
    out.topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .filter(|arn| arn.ends_with(&format!(":{}", topic_name(env))))
        .map(str::to_string)
        .collect()
}

/// The env's alarms (names ending in `-<env>`), by name.
async fn alarms(c: &Clients, env: &str) -> BTreeMap<String, MetricAlarm> {
    let out =
        c.cw.describe_alarms()
            .alarm_name_prefix("payment-")
            .send()
            .await
            .unwrap();
    out.metric_alarms()
        .iter()
        .filter(|a| a.alarm_name().unwrap().ends_with(&format!("-{env}")))
        .map(|a| (a.alarm_name().unwrap().to_string(), a.clone()))
        .collect()
}

/// The env's dashboards, with their last-modified time.
async fn dashboards(c: &Clients, env: &str) -> BTreeMap<String, String> {
    let out =
        c.cw.list_dashboards()
            .dashboard_name_prefix(dashboard_name(env))
            .send()
            .await
            .unwrap();
    out.dashboard_entries()
        .iter()
        .map(|d| {
            (
                d.dashboard_name().unwrap().to_string(),
                format!("{:?}", d.last_modified()),
            )
        })
        .collect()
}

async fn dashboard_body(c: &Clients, name: &str) -> Value {
    let out =
        c.cw.get_dashboard()
            .dashboard_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get dashboard {name}: {e:?}"));
    serde_json::from_str(out.dashboard_body().unwrap()).expect("dashboard body is JSON")
}

/// (protocol, endpoint, ARN) of every subscription of the topic.
async fn subscriptions(c: &Clients, topic: &str) -> BTreeSet<(String, String, String)> {
    let out = c
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .send()
        .await
        .unwrap();
    out.subscriptions()
        .iter()
        .map(|s| {
            (
                s.protocol().unwrap().to_string(),
                s.endpoint().unwrap().to_string(),
                s.subscription_arn().unwrap().to_string(),
            )
        })
        .collect()
}

async fn sns_key(c: &Clients, env: &str) -> aws_sdk_kms::types::KeyMetadata {
    c.kms
        .describe_key()
        .key_id(format!("alias/payment-sns-{env}"))
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .clone()
}

async fn key_policy(c: &Clients, key_id: &str) -> Value {
    let out = c
        .kms
        .get_key_policy()
        .key_id(key_id)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    serde_json::from_str(out.policy().unwrap()).expect("key policy is JSON")
}

/// Whether the policy allows `cloudwatch.amazonaws.com` to encrypt for this account's
/// alarms of `env` only.
fn allows_cloudwatch(policy: &Value, env: &str) -> bool {
    let as_list = |v: &Value| match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![],
    };
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            let actions = as_list(&s["Action"]);
            s["Effect"] == "Allow"
                && as_list(&s["Principal"]["Service"]).contains(&"cloudwatch.amazonaws.com".into())
                && actions.contains(&"kms:Decrypt".into())
                && actions.contains(&"kms:GenerateDataKey*".into())
                && s["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT
                && s["Condition"]["ArnLike"]["aws:SourceArn"]
                    == format!(
                        "arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:payment-*-{}",
                        env
                    )
        })
}

fn tag_map(tags: &[aws_sdk_cloudwatch::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

/// What one alarm must say, written out here independently of payctl's code.
struct Want {
    name: String,
    namespace: &'static str,
    metric: &'static str,
    dimensions: Vec<(&'static str, String)>,
    statistic: Statistic,
    period: i32,
    evaluation_periods: i32,
    datapoints_to_alarm: i32,
    threshold: f64,
}

fn expected_alarms(env: &str) -> Vec<Want> {
    let mut v = vec![Want {
        name: format!("payment-api-4xx-{env}"),
        namespace: "AWS/ApiGateway",
        metric: "4XXError",
        dimensions: vec![
            ("ApiName", format!("payment-api-{env}")),
            ("Stage", env.to_string()),
        ],
        statistic: Statistic::Sum,
        period: 600,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        threshold: 50.0,
    }];
    for f in ["validator", "processor", "audit-logger"] {
        v.push(Want {
            name: format!("payment-{f}-errors-{env}"),
            namespace: "AWS/Lambda",
            metric: "Errors",
            dimensions: vec![("FunctionName", format!("payment-{f}-{env}"))],
            statistic: Statistic::Sum,
            period: 600,
            evaluation_periods: 1,
            datapoints_to_alarm: 1,
            threshold: 10.0,
        });
    }
    // 15 minutes: three 5-minute periods, all three above 80 %.
    v.push(Want {
        name: format!("payment-rds-cpu-{env}"),
        namespace: "AWS/RDS",
        metric: "CPUUtilization",
        dimensions: vec![("DBInstanceIdentifier", format!("payment-db-{env}"))],
        statistic: Statistic::Average,
        period: 300,
        evaluation_periods: 3,
        datapoints_to_alarm: 3,
        threshold: 80.0,
    });
    // Any message in the dead-letter queue, any ledger conflict: someone must look.
    v.push(Want {
        name: format!("payment-retry-dlq-{env}"),
        namespace: "AWS/SQS",
        metric: "ApproximateNumberOfMessagesVisible",
        dimensions: vec![("QueueName", format!("payment-retry-dlq-{env}"))],
        statistic: Statistic::Maximum,
        period: 300,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        threshold: 0.0,
    });
    v.push(Want {
        name: format!("payment-ledger-conflict-{env}"),
        namespace: "Payments",
        metric: "LedgerConflicts",
        dimensions: vec![("FunctionName", format!("payment-processor-{env}"))],
        statistic: Statistic::Sum,
        period: 300,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        threshold: 0.0,
    });
    v
}

/// Reads every monitoring setting back and checks it; returns the topic ARN.
async fn check_monitoring(stack: &Stack, email: &str) -> String {
    let env = stack.env.as_str();
    let c = clients(stack).await;
    let sdk = stack.sdk().await;

    // The SNS key: customer managed, rotating, CloudWatch may use it.
    let key = sns_key(&c, env).await;
    assert_eq!(key.key_manager().map(|m| m.as_str()), Some("CUSTOMER"));
    assert_eq!(key.key_state().map(|s| s.as_str()), Some("Enabled"));
    let rotation = c
        .kms
        .get_key_rotation_status()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert!(rotation.key_rotation_enabled(), "SNS key rotation");
    let policy = key_policy(&c, key.key_id()).await;
    assert!(allows_cloudwatch(&policy, env), "{policy}");

    // The topic: the output, encrypted with that key, tagged, one e-mail subscription.
    let topic = outputs(stack)["SNSAlertTopic"]
        .as_str()
        .expect("SNSAlertTopic output")
        .to_string();
    assert_eq!(topics(&c, env).await, std::slice::from_ref(&topic));
    let attrs = c
        .sns
        .get_topic_attributes()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    assert_eq!(
        attrs.get("KmsMasterKeyId").map(String::as_str),
        key.arn(),
        "topic encrypted with the SNS key: {attrs:?}"
    );
    // Only this account's principals, and CloudWatch for this environment's alarms.
    let topic_policy: Value = serde_json::from_str(&attrs["Policy"]).unwrap();
    assert_eq!(
        topic_policy["Statement"],
        json!([
            {"Sid": "AccountPrincipals", "Effect": "Allow",
             "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
             "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission",
                        "sns:RemovePermission", "sns:DeleteTopic", "sns:Subscribe",
                        "sns:ListSubscriptionsByTopic", "sns:Publish"],
             "Resource": topic},
            {"Sid": "CloudWatchAlarmsOfThisEnvironment", "Effect": "Allow",
             "Principal": {"Service": "cloudwatch.amazonaws.com"},
             "Action": "sns:Publish", "Resource": topic,
             "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                           "ArnLike": {"aws:SourceArn": format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:payment-*-{env}")}}}
        ]),
        "{topic_policy}"
    );
    let tags = c
        .sns
        .list_tags_for_resource()
        .resource_arn(&topic)
        .send()
        .await
        .unwrap();
    let tags = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_standard_tags(&tags, env, "SNS topic");
    let subs = subscriptions(&c, &topic).await;
    let endpoints: Vec<(String, String)> = subs
        .iter()
        .map(|(p, e, _)| (p.clone(), e.clone()))
        .collect();
    assert_eq!(endpoints, [("email".to_string(), email.to_string())]);

    // The alarms: exactly the five, each as specified, publishing to the topic.
    let have = alarms(&c, env).await;
    let want = expected_alarms(env);
    let names: BTreeSet<&String> = have.keys().collect();
    assert_eq!(names, want.iter().map(|w| &w.name).collect(), "alarm names");
    for w in &want {
        let name = &w.name;
        let a = &have[name];
        assert_eq!(a.namespace(), Some(w.namespace), "{name}");
        assert_eq!(a.metric_name(), Some(w.metric), "{name}");
        let got: BTreeSet<(String, String)> = a
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap().into(), d.value().unwrap().into()))
            .collect();
        let expected: BTreeSet<(String, String)> = w
            .dimensions
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, expected, "{name} dimensions");
        assert_eq!(a.statistic(), Some(&w.statistic), "{name}");
        assert_eq!(a.period(), Some(w.period), "{name}");
        assert_eq!(a.evaluation_periods(), Some(w.evaluation_periods), "{name}");
        assert_eq!(
            a.datapoints_to_alarm(),
            Some(w.datapoints_to_alarm),
            "{name}"
        );
        assert_eq!(a.threshold(), Some(w.threshold), "{name}");
        assert_eq!(
            a.comparison_operator(),
            Some(&ComparisonOperator::GreaterThanThreshold),
            "{name}"
        );
        assert_eq!(a.treat_missing_data(), Some("notBreaching"), "{name}");
        assert_eq!(a.alarm_actions(), std::slice::from_ref(&topic), "{name}");
        assert!(a.ok_actions().is_empty(), "{name}: no OK actions");
        assert_ne!(a.actions_enabled(), Some(false), "{name}");
        let tags =
            c.cw.list_tags_for_resource()
                .resource_arn(a.alarm_arn().unwrap())
                .send()
                .await
                .unwrap();
        assert_standard_tags(&tag_map(tags.tags()), env, name);
    }

    // The dimensions name resources that exist: the API and its stage, the functions,
    // the database.
    let apigw = aws_sdk_apigateway::Client::new(&sdk);
    let apis = apigw.get_rest_apis().send().await.unwrap();
    let api = apis
        .items()
        .iter()
        .find(|a| a.name() == Some(format!("payment-api-{env}").as_str()))
        .unwrap_or_else(|| panic!("the 4XX alarm's ApiName payment-api-{env} is no REST API"));
    let stages = apigw
        .get_stages()
        .rest_api_id(api.id().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        stages.item().iter().any(|s| s.stage_name() == Some(env)),
        "the 4XX alarm's Stage {env} is no stage of the API"
    );
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    for f in ["validator", "processor", "audit-logger"] {
        let name = format!("payment-{f}-{env}");
        lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the errors alarm's function {name}: {e:?}"));
    }
    aws_sdk_rds::Client::new(&sdk)
        .describe_db_instances()
        .db_instance_identifier(format!("payment-db-{env}"))
        .send()
        .await
        .expect("the CPU alarm's database exists");

    // The dashboard: every widget in the region, the metrics asked for.
    let name = dashboard_name(env);
    assert!(dashboards(&c, env).await.contains_key(&name));
    let body = dashboard_body(&c, &name).await;
    let widgets = body["widgets"].as_array().expect("widgets");
    let mut lines: BTreeSet<String> = BTreeSet::new();
    for w in widgets.iter().filter(|w| w["type"] == "metric") {
        assert_eq!(w["properties"]["region"], REGION, "{w}");
        for m in w["properties"]["metrics"].as_array().expect("metrics") {
            let m = m.as_array().expect("metric line");
            let (dims, opts) = m.split_at(m.len() - 1);
            let mut line: Vec<String> = dims
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            line.push(opts[0]["stat"].as_str().unwrap().to_string());
            lines.insert(line.join(" "));
        }
    }
    let mut expected = vec![
        format!("AWS/ApiGateway Latency ApiName payment-api-{env} Stage {env} p50"),
        format!("AWS/ApiGateway Latency ApiName payment-api-{env} Stage {env} p99"),
        format!("AWS/RDS CPUUtilization DBInstanceIdentifier payment-db-{env} Average"),
        format!(
            "AWS/SQS ApproximateNumberOfMessagesVisible QueueName payment-retry-dlq-{env} Maximum"
        ),
    ];
    for f in ["validator", "processor", "audit-logger"] {
        for (metric, stat) in [
            ("Errors", "Sum"),
            ("Invocations", "Sum"),
            ("Duration", "Average"),
        ] {
            expected.push(format!(
                "AWS/Lambda {metric} FunctionName payment-{f}-{env} {stat}"
            ));
        }
    }
    for e in &expected {
        assert!(lines.contains(e), "dashboard lacks {e}: {lines:#?}");
    }
    topic
}

/// What a run that changes nothing must leave exactly as it was.
async fn fingerprint(stack: &Stack) -> BTreeMap<String, String> {
    let env = stack.env.as_str();
    let c = clients(stack).await;
    let mut f = BTreeMap::new();
    for (name, a) in alarms(&c, env).await {
        f.insert(
            format!("alarm {name}"),
            format!("{:?}", a.alarm_configuration_updated_timestamp()),
        );
    }
    for (name, modified) in dashboards(&c, env).await {
        f.insert(format!("dashboard {name}"), modified);
    }
    for topic in topics(&c, env).await {
        for (p, e, arn) in subscriptions(&c, &topic).await {
            f.insert(format!("subscription {p} {e}"), arn);
        }
        f.insert(format!("topic {topic}"), String::new());
    }
    let key = sns_key(&c, env).await;
    f.insert("sns key".into(), key.key_id().to_string());
    f
}

/// Lines where a run reports creating or changing a monitoring resource.
fn monitoring_changes(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("created: ") || l.contains("updated: ") || l.contains("adopted: "))
        .filter(|l| {
            [
                "sns_topic.",
                "cloudwatch_alarm.",
                "cloudwatch_dashboard.",
                "kms_key.sns",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect()
}

async fn assert_monitoring_gone(stack: &Stack) {
    let env = stack.env.as_str();
    let c = clients(stack).await;
    assert!(topics(&c, env).await.is_empty(), "topic left behind");
    let left = alarms(&c, env).await;
    assert!(left.is_empty(), "alarms left behind: {:?}", left.keys());
    assert!(
        dashboards(&c, env).await.is_empty(),
        "dashboard left behind"
    );
    let out = c.sns.list_subscriptions().send().await.unwrap();
    assert!(
        out.subscriptions().iter().all(|s| !s
            .topic_arn()
            .unwrap_or_default()
            .ends_with(&topic_name(env))),
        "subscriptions left behind"
    );
}

#[tokio::test]
async fn monitoring_settings_idempotency_drift_email_change_and_teardown() {
    let stack = Stack::new("dev");
    stack.must(&["up"]);
    let topic = check_monitoring(&stack, "ops@company.com").await;
    let first = fingerprint(&stack).await;

    // A second run changes nothing: no put, no subscribe, nothing reported as changed.
    let again = stack.must(&["up"]);
    assert_eq!(
        fingerprint(&stack).await,
        first,
        "second up changed something"
    );
    assert!(
        monitoring_changes(&again.stderr).is_empty(),
        "{:?}",
        monitoring_changes(&again.stderr)
    );

    // Without the state file, everything is found again and adopted, not duplicated.
    std::fs::remove_file(stack.state_file()).unwrap();
    stack.must(&["up"]);
    assert_eq!(
        fingerprint(&stack).await,
        first,
        "up without state replaced something"
    );
    assert_eq!(check_monitoring(&stack, "ops@company.com").await, topic);

    // Drift is put back: an alarm's threshold and actions, the topic's key, the dashboard,
    // the key policy.
    let c = clients(&stack).await;
    let a = alarms(&c, "dev").await["payment-rds-cpu-dev"].clone();
    c.cw.put_metric_alarm()
        .alarm_name("payment-rds-cpu-dev")
        .namespace(a.namespace().unwrap())
        .metric_name(a.metric_name().unwrap())
        .set_dimensions(Some(a.dimensions().to_vec()))
        .statistic(Statistic::Average)
        .period(300)
        .evaluation_periods(3)
        .threshold(99.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("breaching")
        .ok_actions(&topic)
        .send()
        .await
        .unwrap();
    c.sns
        .set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("KmsMasterKeyId")
        .attribute_value("alias/aws/sns")
        .send()
        .await
        .unwrap();
    c.cw.put_dashboard()
        .dashboard_name(dashboard_name("dev"))
        .dashboard_body(json!({"widgets": []}).to_string())
        .send()
        .await
        .unwrap();
    let key = sns_key(&c, "dev").await;
    let root_only = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "kms:*", "Resource": "*"}]});
    c.kms
        .put_key_policy()
        .key_id(key.key_id())
        .policy_name("default")
        .policy(root_only.to_string())
        .send()
        .await
        .unwrap();
    let repair = stack.must(&["up"]);
    let changed = monitoring_changes(&repair.stderr);
    for what in [
        "cloudwatch_alarm.rds-cpu",
        "sns_topic.alerts",
        "cloudwatch_dashboard.main",
        "kms_key.sns",
    ] {
        assert!(
            changed
                .iter()
                .any(|l| l.contains(&format!("updated: {what}"))),
            "{what} not reported as updated: {changed:?}"
        );
    }
    assert_eq!(changed.len(), 4, "{changed:?}");
    assert_eq!(check_monitoring(&stack, "ops@company.com").await, topic);

    // A new alert address: subscribed, and the old (confirmed, under moto) one removed.
    std::fs::write(
        stack.home.path().join("payctl.toml"),
        "[env.dev]\nalert_email = \"oncall@company.com\"\n",
    )
    .unwrap();
    stack.must(&["up"]);
    assert_eq!(check_monitoring(&stack, "oncall@company.com").await, topic);
    let moved = fingerprint(&stack).await;
    stack.must(&["up"]);
    assert_eq!(
        fingerprint(&stack).await,
        moved,
        "up after the move changed something"
    );

    // down removes alarms, dashboard and topic (and its subscriptions); again is a no-op.
    stack.must(&["down", "--yes"]);
    assert_monitoring_gone(&stack).await;
    let key = c
        .kms
        .describe_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(
        key.key_metadata().unwrap().key_state().map(|s| s.as_str()),
        Some("PendingDeletion"),
        "the SNS key is scheduled for deletion like the others"
    );
    stack.must(&["down", "--yes"]);
    assert_monitoring_gone(&stack).await;
}

#[tokio::test]
async fn lookalike_alarm_and_dashboard_are_neither_adopted_nor_deleted() {
    let stack = Stack::new("qa");
    let c = clients(&stack).await;
    // Someone else's alarm and dashboard under payctl's names, without payctl's marks.
    c.cw.put_metric_alarm()
        .alarm_name("payment-rds-cpu-qa")
        .namespace("AWS/RDS")
        .metric_name("CPUUtilization")
        .statistic(Statistic::Maximum)
        .period(60)
        .evaluation_periods(1)
        .threshold(95.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    let theirs = json!({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 2,
        "properties": {"markdown": "someone else's"}}]});
    c.cw.put_dashboard()
        .dashboard_name(dashboard_name("qa"))
        .dashboard_body(theirs.to_string())
        .send()
        .await
        .unwrap();
    let untouched = |a: &MetricAlarm| {
        a.statistic() == Some(&Statistic::Maximum)
            && a.threshold() == Some(95.0)
            && a.alarm_actions().is_empty()
    };

    let run = stack.payctl(&["up"]);
    assert!(!run.ok, "up adopted look-alikes:\n{}", run.stderr);
    assert!(
        run.stderr.contains("not managed by payctl"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("payment-rds-cpu-qa"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("dashboard {}", dashboard_name("qa"))),
        "{}",
        run.stderr
    );
    let a = alarms(&c, "qa").await["payment-rds-cpu-qa"].clone();
    assert!(untouched(&a), "look-alike alarm changed: {a:?}");
    let tags =
        c.cw.list_tags_for_resource()
            .resource_arn(a.alarm_arn().unwrap())
            .send()
            .await
            .unwrap();
    assert!(tags.tags().is_empty(), "look-alike alarm tagged");
    assert_eq!(dashboard_body(&c, &dashboard_name("qa")).await, theirs);
    // What payctl does own was still made.
    assert_eq!(alarms(&c, "qa").await.len(), 7);
    assert_eq!(topics(&c, "qa").await.len(), 1);

    // down refuses the look-alike alarm and leaves the foreign dashboard alone.
    let run = stack.payctl(&["down", "--yes"]);
    assert!(!run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("payment-rds-cpu-qa"), "{}", run.stderr);
    let left = alarms(&c, "qa").await;
    assert_eq!(left.keys().collect::<Vec<_>>(), ["payment-rds-cpu-qa"]);
    assert!(untouched(&left["payment-rds-cpu-qa"]));
    assert_eq!(dashboard_body(&c, &dashboard_name("qa")).await, theirs);

    // Once the look-alike alarm is gone, down completes and still keeps the dashboard.
    c.cw.delete_alarms()
        .alarm_names("payment-rds-cpu-qa")
        .send()
        .await
        .unwrap();
    stack.must(&["down", "--yes"]);
    assert!(alarms(&c, "qa").await.is_empty());
    assert!(topics(&c, "qa").await.is_empty());
    assert_eq!(dashboard_body(&c, &dashboard_name("qa")).await, theirs);
}

#[tokio::test]
async fn missing_standard_tags_on_an_alarm_and_the_topic_are_planned_and_put_back() {
    let stack = Stack::new("retag");
    stack.must(&["up"]);
    let c = clients(&stack).await;
    let topic = topics(&c, "retag").await.remove(0);
    let alarm = alarms(&c, "retag").await["payment-validator-errors-retag"].clone();
    let alarm_arn = alarm.alarm_arn().unwrap().to_string();
    c.cw.untag_resource()
        .resource_arn(&alarm_arn)
        .tag_keys("Team")
        .send()
        .await
        .unwrap();
    c.sns
        .untag_resource()
        .resource_arn(&topic)
        .tag_keys("CostCenter")
        .send()
        .await
        .unwrap();

    // `plan` shows both, under their addresses, and nothing else.
    let plan = stack.payctl(&["plan"]);
    assert_eq!(plan.code, Some(2), "{}\n{}", plan.stdout, plan.stderr);
    let lines: Vec<&str> = plan.stdout.lines().collect();
    for (address, key) in [
        ("cloudwatch_alarm.validator-errors", "Team"),
        ("sns_topic.alerts", "CostCenter"),
    ] {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("~ {address} ")))
            .unwrap_or_else(|| panic!("no `~ {address}` in:\n{}", plan.stdout));
        assert_eq!(
            lines.get(at + 1).copied(),
            Some(format!("    tags: missing {key} → set").as_str()),
            "{}",
            plan.stdout
        );
    }
    let changes = lines.iter().filter(|l| l.starts_with(['+', '~', '-']));
    assert_eq!(changes.count(), 2, "{}", plan.stdout);

    // `up` puts them back and reports exactly those two as updated.
    let run = stack.must(&["up"]);
    let changed = monitoring_changes(&run.stderr);
    assert_eq!(changed.len(), 2, "{changed:?}");
    for address in ["cloudwatch_alarm.validator-errors", "sns_topic.alerts"] {
        assert!(
            changed
                .iter()
                .any(|l| l.contains(&format!("updated: {address} "))),
            "{address}: {changed:?}"
        );
    }
    let tags =
        c.cw.list_tags_for_resource()
            .resource_arn(&alarm_arn)
            .send()
            .await
            .unwrap();
    assert_standard_tags(&tag_map(tags.tags()), "retag", "alarm");
    let tags = c
        .sns
        .list_tags_for_resource()
        .resource_arn(&topic)
        .send()
        .await
        .unwrap();
    let tags = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_standard_tags(&tags, "retag", "SNS topic");
    let plan = stack.payctl(&["plan"]);
    assert_eq!(plan.code, Some(0), "{}\n{}", plan.stdout, plan.stderr);
}

/// The VPC's flow log (EC2.6), read back from the emulator: all traffic of the VPC to the
/// stack's flow log group, delivered by a role only VPC flow logs of this account may
/// assume; a flow log deleted out of band comes back with the next `up`; `down` removes
/// it, with its role and (outside production) its log group.
#[tokio::test]
async fn the_vpc_flow_log_records_all_traffic_to_its_own_group_and_comes_back() {
    let stack = Stack::new("dev");
    stack.must(&["up"]);
    let sdk = stack.sdk().await;
    let (ec2, iam, logs) = (
        aws_sdk_ec2::Client::new(&sdk),
        aws_sdk_iam::Client::new(&sdk),
        aws_sdk_cloudwatchlogs::Client::new(&sdk),
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
    let vpc = state["resources"]["ec2_vpc.main"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let flow_logs = |ec2: aws_sdk_ec2::Client, vpc: String| async move {
        let out = ec2
            .describe_flow_logs()
            .filter(filter("resource-id", &vpc))
            .send()
            .await
            .unwrap();
        out.flow_logs().to_vec()
    };
    let found = flow_logs(ec2.clone(), vpc.clone()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    let group = "/aws/vpc-flow-logs/payment-vpc-dev";
    assert_eq!(f.traffic_type().map(|t| t.as_str()), Some("ALL"));
    assert_eq!(
        f.log_destination_type().map(|t| t.as_str()),
        Some("cloud-watch-logs")
    );
    assert_eq!(f.log_group_name(), Some(group));
    assert_eq!(
        f.deliver_logs_permission_arn(),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/payment-flow-logs-role-dev").as_str())
    );
    assert_eq!(f.deliver_logs_status(), Some("SUCCESS"));
    assert_standard_tags(&tags_of(f.tags()), "dev", "flow log");

    let role = iam
        .get_role()
        .role_name("payment-flow-logs-role-dev")
        .send()
        .await
        .unwrap();
    let doc = role.role().unwrap().assume_role_policy_document().unwrap();
    let trust: Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(doc)
            .decode_utf8()
            .unwrap(),
    )
    .unwrap();
    let statement = &trust["Statement"][0];
    assert_eq!(
        statement["Principal"]["Service"],
        "vpc-flow-logs.amazonaws.com"
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["aws:SourceAccount"],
        ACCOUNT
    );
    assert_eq!(
        statement["Condition"]["ArnLike"]["aws:SourceArn"],
        format!("arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-flow-log/*")
    );
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .unwrap();
    let g = &groups.log_groups()[0];
    assert_eq!(g.retention_in_days(), Some(90));
    assert!(g.kms_key_id().is_some_and(|k| k.contains(":key/")), "{g:?}");

    // Deleted out of band: the next up makes a new one and records it.
    let old = f.flow_log_id().unwrap().to_string();
    ec2.delete_flow_logs()
        .flow_log_ids(&old)
        .send()
        .await
        .unwrap();
    stack.must(&["up"]);
    let again = flow_logs(ec2.clone(), vpc.clone()).await;
    assert_eq!(again.len(), 1, "{again:?}");
    let new = again[0].flow_log_id().unwrap();
    assert_ne!(new, old);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_file()).unwrap()).unwrap();
    assert_eq!(state["resources"]["ec2_flow_log.vpc"]["id"], new);

    stack.must(&["down", "--yes"]);
    assert!(flow_logs(ec2.clone(), vpc.clone()).await.is_empty());
    let role = iam
        .get_role()
        .role_name("payment-flow-logs-role-dev")
        .send()
        .await;
    assert!(role.is_err(), "the flow logs role is left: {role:?}");
}
