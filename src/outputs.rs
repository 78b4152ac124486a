//! The stack's outputs, read from the state file: `APIEndpoint`, `VPCId`, `RDSEndpoint`,
//! `DynamoDBTable`, `S3AuditBucket`, `SQSRetryQueue` and `SNSAlertTopic`, each from the
//! record that holds it, and `FunctionVersions`, the version each function's alias
//! `live` is on (`audit-logger=1 processor=4 validator=2`). The API key's value is never
//! in state: `outputs --show-api-key` reads it from API Gateway.

use crate::state::State;
use std::collections::BTreeMap;

/// (output key, state address, attribute or `None` for the record's id).
const SOURCES: &[(&str, &str, Option<&str>)] = &[
    ("APIEndpoint", "apigw_stage.main", Some("endpoint")),
    ("VPCId", crate::network::vpc::ADDR, None),
    (
        "RDSEndpoint",
        crate::data::rds_instance::ADDR,
        Some("endpoint"),
    ),
    ("DynamoDBTable", crate::data::dynamodb_table::ADDR, None),
    ("S3AuditBucket", crate::data::s3_bucket::ADDR, None),
    ("SQSRetryQueue", "sqs_queue.retry", None),
    ("SNSAlertTopic", "sns_topic.alerts", None),
];

pub fn collect(state: &State) -> BTreeMap<&'static str, String> {
    let mut out: BTreeMap<&'static str, String> = SOURCES
        .iter()
        .filter_map(|(key, addr, attr)| {
            let rec = state.resources.get(*addr)?;
            let value = match attr {
                Some(a) => rec.get(a)?.to_string(),
                None => rec.id.clone(),
            };
            Some((*key, value))
        })
        .collect();
    let versions = live_versions(state);
    if !versions.is_empty() {
        let text: Vec<String> = versions.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.insert("FunctionVersions", text.join(" "));
    }
    out
}

/// The version each function's alias `live` is on, by function key, from state.
pub fn live_versions(state: &State) -> BTreeMap<String, String> {
    let prefix = format!("{}.", crate::compute::alias::KIND);
    state
        .resources
        .iter()
        .filter_map(|(addr, r)| {
            let key = addr.strip_prefix(&prefix)?;
            Some((key.to_string(), r.get("version")?.to_string()))
        })
        .collect()
}

pub fn table(outputs: &BTreeMap<&'static str, String>) -> String {
    let width = outputs.keys().map(|k| k.len()).max().unwrap_or(0);
    outputs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Record;

    #[test]
    fn outputs_come_from_state_records() {
        let mut s = State::new("dev", "us-east-1", "1");
        assert!(collect(&s).is_empty());
        s.resources
            .insert("ec2_vpc.main".into(), Record::new("ec2_vpc", "vpc-123"));
        let out = collect(&s);
        assert_eq!(out.get("VPCId").map(String::as_str), Some("vpc-123"));
        assert_eq!(table(&out), "VPCId  vpc-123\n");
        for (key, v) in [("processor", "4"), ("validator", "2")] {
            let rec = Record::new("lambda_alias", "arn").attr("version", v);
            s.resources.insert(format!("lambda_alias.{key}"), rec);
        }
        let out = collect(&s);
        assert_eq!(
            out.get("FunctionVersions").map(String::as_str),
            Some("processor=4 validator=2")
        );
    }
}
