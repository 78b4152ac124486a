//! The functions: each in the stack's VPC (Lambda.3), with subnets in all three of the
//! stack's AZs (Lambda.5; Security Hub's default asks for two), with the reserved
//! concurrency the settings configure (no Security Hub id; `N/A` where none is
//! configured), on a supported runtime (Lambda.2), with no public resource policy
//! (Lambda.1: no `Allow` to principal `*` without an `aws:SourceArn` or
//! `aws:SourceAccount` condition), and with its environment encrypted with the stack's
//! Lambda key.
//!
//! One `GetFunction` per function gives its configuration and reserved concurrency;
//! one `DescribeSubnets` gives the AZ and VPC of all their subnets; `GetPolicy` reads
//! each resource policy (none at all passes). A function's VPC is taken from its
//! subnets, not from the `VpcId` that `GetFunction` reports: the subnets are what
//! places it (the local emulator reports a fixed `VpcId` for every function).

use super::{Check, Control, Read, Target, fail_all, is_key, read, unreadable};
use crate::compute::{self, function};
use crate::config::AZ_COUNT;
use crate::engine::Service;
use crate::network::vpc;
use crate::security::kms_key;
use aws_sdk_ec2::types::Filter;
use aws_sdk_lambda::operation::get_function::GetFunctionOutput;
use futures::future::join_all;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub const IN_VPC: Control =
    Control::new("Lambda function runs in the stack's VPC", Some("Lambda.3"));
pub const MULTI_AZ: Control = Control::new(
    "Lambda function's subnets span the stack's 3 AZs",
    Some("Lambda.5"),
);
pub const CONCURRENCY: Control = Control::new(
    "Lambda function has the configured reserved concurrency",
    None,
);
pub const RUNTIME: Control =
    Control::new("Lambda function uses a supported runtime", Some("Lambda.2"));
pub const NOT_PUBLIC: Control = Control::new(
    "Lambda function policy does not allow public access",
    Some("Lambda.1"),
);

pub const ENV_KEY: Control = Control::new(
    "Lambda function environment is encrypted with the stack's Lambda key",
    None,
);

const ALL: [Control; 6] = [IN_VPC, MULTI_AZ, CONCURRENCY, RUNTIME, NOT_PUBLIC, ENV_KEY];

/// Runtimes Lambda supports (not deprecated) as this was written; update as Lambda
/// deprecates runtimes (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
pub const SUPPORTED_RUNTIMES: [&str; 14] = [
    "provided.al2023",
    "nodejs24.x",
    "nodejs22.x",
    "nodejs20.x",
    "python3.14",
    "python3.13",
    "python3.12",
    "python3.11",
    "java25",
    "java21",
    "java17",
    "dotnet10",
    "dotnet8",
    "ruby3.4",
];

pub async fn checks(t: &Target) -> Vec<Check> {
    let mut checks: Vec<Check> = compute::FUNCTIONS
        .iter()
        .map(|f| function::address(f.key))
        .filter(|addr| t.record(addr).is_none())
        .flat_map(|addr| fail_all(&ALL, &addr, "not in the state file"))
        .collect();
    let ours = t.of_kind(function::KIND);
    let reads = ours.iter().map(|(_, rec)| async move {
        let name = rec.id.as_str();
        let got = t.aws.lambda.get_function().function_name(name).send().await;
        let policy = t.aws.lambda.get_policy().function_name(name).send().await;
        let call = t.aws.lambda.get_policy().function_name(name);
        let live = call.qualifier(compute::alias::ALIAS).send().await;
        (got, (policy, live))
    });
    let reads = join_all(reads).await;
    // The AZ of every subnet the functions use, in one call.
    let subnet_ids: BTreeSet<String> = reads
        .iter()
        .filter_map(|(got, _)| got.as_ref().ok())
        .filter_map(|f| f.configuration().and_then(|c| c.vpc_config()))
        .flat_map(|v| v.subnet_ids().iter().cloned())
        .collect();
    let zones = subnet_zones(t, subnet_ids).await;
    for ((addr, rec), (got, policy)) in ours.iter().zip(reads) {
        let name = rec.id.as_str();
        let f = match read(got, Service::Lambda, "GetFunction", name) {
            Read::Got(f) => f,
            Read::Gone => {
                checks.extend(fail_all(&ALL, name, "not found"));
                continue;
            }
            Read::Unreadable(why) => {
                checks.extend(fail_all(&ALL, name, &why));
                continue;
            }
        };
        checks.extend(judge(t, Target::key(addr), name, &f, &zones));
        // The function's own policy and its alias `live`'s, which API Gateway invokes.
        let (policy, live) = policy;
        let live_name = format!("{name}:{}", compute::alias::ALIAS);
        let mut verdict = NOT_PUBLIC.pass(name, "no statement allows the public");
        for (which, got) in [(name, policy), (live_name.as_str(), live)] {
            let why = match read(got, Service::Lambda, "GetPolicy", which) {
                Read::Got(out) => out
                    .policy()
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                    .as_ref()
                    .and_then(public_statement)
                    .map(|sid| {
                        format!(
                            "{which}: statement {sid} allows principal * without a source condition"
                        )
                    }),
                Read::Gone => None,
                Read::Unreadable(why) => Some(why),
            };
            if let Some(why) = why {
                verdict = NOT_PUBLIC.fail(name, why);
                break;
            }
        }
        checks.push(verdict);
    }
    checks
}

/// A subnet's AZ and VPC.
struct Placement {
    az: String,
    vpc: String,
}

/// Subnet id → its AZ and VPC, or the reason the subnets could not be read.
async fn subnet_zones(
    t: &Target,
    ids: BTreeSet<String>,
) -> Result<BTreeMap<String, Placement>, String> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let filter = Filter::builder()
        .name("subnet-id")
        .set_values(Some(ids.into_iter().collect()))
        .build();
    let out = t
        .aws
        .ec2
        .describe_subnets()
        .filters(filter)
        .send()
        .await
        .map_err(|e| unreadable("DescribeSubnets", "the functions' subnets", e))?;
    Ok(out
        .subnets()
        .iter()
        .filter_map(|s| {
            let placement = Placement {
                az: s.availability_zone()?.to_string(),
                vpc: s.vpc_id()?.to_string(),
            };
            Some((s.subnet_id()?.to_string(), placement))
        })
        .collect())
}

fn reserved(t: &Target, key: &str) -> Option<i32> {
    let f = &t.settings.functions;
    match key {
        compute::VALIDATOR => f.validator_concurrency,
        compute::PROCESSOR => f.processor_concurrency,
        compute::AUDIT_LOGGER => f.audit_logger_concurrency,
        _ => None,
    }
}

/// The VPC, AZ, concurrency and runtime checks of one function.
fn judge(
    t: &Target,
    key: &str,
    name: &str,
    f: &GetFunctionOutput,
    zones: &Result<BTreeMap<String, Placement>, String>,
) -> Vec<Check> {
    let conf = f.configuration();
    let subnets = conf
        .and_then(|c| c.vpc_config())
        .map(|v| v.subnet_ids())
        .unwrap_or_default();
    let ours = t.record(vpc::ADDR).map(|r| r.id.as_str());
    let in_vpc = match (zones, ours) {
        _ if subnets.is_empty() => IN_VPC.fail(name, "not attached to a VPC"),
        (Err(why), _) => IN_VPC.fail(name, why.clone()),
        (Ok(_), None) => IN_VPC.fail(
            name,
            "the stack's VPC (ec2_vpc.main) is not in the state file",
        ),
        (Ok(zones), Some(ours)) => {
            let vpcs: BTreeSet<&str> = subnets
                .iter()
                .map(|s| zones.get(s).map_or("an unknown VPC", |p| p.vpc.as_str()))
                .collect();
            let list = vpcs.iter().copied().collect::<Vec<_>>().join(", ");
            IN_VPC.judge(
                name,
                vpcs.len() == 1 && vpcs.contains(ours),
                format!("subnets in {ours}"),
                format!("subnets in {list}, not only the stack's {ours}"),
            )
        }
    };
    let multi_az = match zones {
        Err(why) => MULTI_AZ.fail(name, why.clone()),
        Ok(zones) => {
            let azs: BTreeSet<&str> = subnets
                .iter()
                .filter_map(|s| zones.get(s).map(|p| p.az.as_str()))
                .collect();
            let list = azs.iter().copied().collect::<Vec<_>>().join(", ");
            MULTI_AZ.judge(
                name,
                azs.len() >= AZ_COUNT,
                format!("subnets in {} AZs ({list})", azs.len()),
                format!(
                    "subnets in {} AZ(s) ({list}), fewer than {AZ_COUNT}",
                    azs.len()
                ),
            )
        }
    };
    let have = f
        .concurrency()
        .and_then(|c| c.reserved_concurrent_executions());
    let concurrency = match (reserved(t, key), have) {
        (None, Some(n)) => CONCURRENCY.not_applicable(
            name,
            format!("none configured for this environment (reserves {n})"),
        ),
        (None, None) => CONCURRENCY.not_applicable(name, "none configured for this environment"),
        (Some(want), Some(n)) => CONCURRENCY.judge(
            name,
            n == want,
            format!("reserves {n}"),
            format!("reserves {n}, the settings say {want}"),
        ),
        (Some(want), None) => CONCURRENCY.fail(
            name,
            format!("no reserved concurrency, the settings say {want}"),
        ),
    };
    let runtime = conf.and_then(|c| c.runtime()).map(|r| r.as_str());
    let runtime = match runtime {
        Some(r) if SUPPORTED_RUNTIMES.contains(&r) => RUNTIME.pass(name, r),
        Some(r) => RUNTIME.fail(name, format!("{r} is deprecated or unknown")),
        None => RUNTIME.fail(name, "no runtime reported (a container image?)"),
    };
    let key = t.record(&kms_key::address(kms_key::LAMBDA));
    let env_key = match (conf.and_then(|c| c.kms_key_arn()), key) {
        (Some(k), Some(ours)) if is_key(k, ours) => {
            ENV_KEY.pass(name, format!("encrypted with {k}"))
        }
        (Some(k), _) => ENV_KEY.fail(
            name,
            format!("encrypted with {k}, not the stack's Lambda key"),
        ),
        (None, _) => ENV_KEY.fail(name, "encrypted with the AWS-managed key aws/lambda"),
    };
    vec![in_vpc, multi_az, concurrency, runtime, env_key]
}

fn values(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    }
}

/// The `Sid` (or index) of the first statement that allows principal `*` without an
/// `aws:SourceArn` or `aws:SourceAccount` condition, if any.
pub fn public_statement(policy: &Value) -> Option<String> {
    let star = |p: Option<&Value>| match p {
        Some(Value::String(s)) => s == "*",
        Some(Value::Object(m)) => m
            .values()
            .any(|v| values(Some(v)).iter().any(|v| v.as_str() == Some("*"))),
        _ => false,
    };
    let scoped = |c: Option<&Value>| {
        let Some(Value::Object(ops)) = c else {
            return false;
        };
        ops.values().filter_map(Value::as_object).any(|keys| {
            keys.keys().any(|k| {
                k.eq_ignore_ascii_case("aws:SourceArn")
                    || k.eq_ignore_ascii_case("aws:SourceAccount")
            })
        })
    };
    values(policy.get("Statement"))
        .iter()
        .enumerate()
        .find(|(_, s)| {
            s.get("Effect").and_then(Value::as_str) == Some("Allow")
                && star(s.get("Principal"))
                && !scoped(s.get("Condition"))
        })
        .map(|(i, s)| {
            s.get("Sid")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{i}"), str::to_string)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statement(principal: Value, condition: Option<Value>) -> Value {
        let mut s = json!({
            "Sid": "s1",
            "Effect": "Allow",
            "Principal": principal,
            "Action": "lambda:InvokeFunction",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:payment-validator-dev"
        });
        if let Some(c) = condition {
            s["Condition"] = c;
        }
        json!({"Version": "2012-10-17", "Statement": [s]})
    }

    #[test]
    fn public_policy_predicate() {
        // The stack's own API Gateway permissions: a service principal, scoped.
        let api = statement(
            json!({"Service": "apigateway.amazonaws.com"}),
            Some(
                json!({"ArnLike": {"AWS:SourceArn": "arn:aws:execute-api:us-east-1:1:abc/dev/POST/validate"}}),
            ),
        );
        assert_eq!(public_statement(&api), None);
        assert_eq!(
            public_statement(&statement(json!("*"), None)).as_deref(),
            Some("s1")
        );
        assert_eq!(
            public_statement(&statement(json!({"AWS": "*"}), None)).as_deref(),
            Some("s1")
        );
        assert_eq!(
            public_statement(&statement(
                json!({"AWS": ["arn:aws:iam::1:root", "*"]}),
                None
            ))
            .as_deref(),
            Some("s1")
        );
        // `*` with a source condition is not public.
        let scoped = statement(
            json!("*"),
            Some(json!({"StringEquals": {"aws:SourceAccount": "123456789012"}})),
        );
        assert_eq!(public_statement(&scoped), None);
        // An unrelated condition does not scope it.
        let other = statement(
            json!("*"),
            Some(json!({"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}})),
        );
        assert_eq!(public_statement(&other).as_deref(), Some("s1"));
        let mut deny = statement(json!("*"), None);
        deny["Statement"][0]["Effect"] = json!("Deny");
        assert_eq!(public_statement(&deny), None);
        let mut no_sid = statement(json!("*"), None);
        no_sid["Statement"][0]
            .as_object_mut()
            .unwrap()
            .remove("Sid");
        assert_eq!(public_statement(&no_sid).as_deref(), Some("#0"));
        assert_eq!(public_statement(&json!({})), None);
    }

    #[test]
    fn the_stacks_runtime_is_supported() {
        assert!(SUPPORTED_RUNTIMES.contains(&"provided.al2023"));
        for old in ["provided", "go1.x", "python3.7", "nodejs16.x"] {
            assert!(!SUPPORTED_RUNTIMES.contains(&old), "{old}");
        }
    }
}
