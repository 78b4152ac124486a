//! Lambda's network interfaces, as AWS makes and releases them (moto makes none): the
//! proxy's model behind `Proxy::model_lambda_enis` (test support).
//!
//! - A function created with a VPC configuration gets one interface per subnet, made in
//!   moto (`CreateNetworkInterface`): description `AWS Lambda VPC ENI-<function>-<n>`, in
//!   the function's security groups; reads show them `in-use`, requested by Lambda
//!   (`requesterId` `…:awslambda_…`, `requesterManaged` true), as AWS reports them.
//! - After the function is detached from the VPC or deleted, they stay `in-use` for
//!   `in_use_for`, then read `available` until someone deletes them, or until Lambda's
//!   own garbage collection does, `collected_after` after the release ("Lambda … deletes
//!   the network interface when it is not used for … consecutive days"; in practice tens
//!   of minutes after a delete: terraform-provider-aws #32130).
//! - While they exist, `DeleteNetworkInterface` of one still in use answers
//!   `InvalidNetworkInterface.InUse`, and deleting their security group, their subnet or
//!   the VPC answers `DependencyViolation`
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-enis>).
//!
//! The model keeps a log of what happened, in order, for the tests to read.

use payctl::local::http::{Request, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Eni {
    pub function: String,
    pub subnet: String,
    pub groups: Vec<String>,
    pub released: Option<Instant>,
}

#[derive(Debug)]
pub struct LambdaEnis {
    pub in_use_for: Duration,
    pub collected_after: Duration,
    pub enis: BTreeMap<String, Eni>,
    /// `released eni-…`, `deleted eni-… by the client`, `collected eni-…`,
    /// `DeleteSecurityGroup sg-…`, in order.
    pub log: Vec<String>,
}

impl LambdaEnis {
    pub fn new(in_use_for: Duration, collected_after: Duration) -> LambdaEnis {
        LambdaEnis {
            in_use_for,
            collected_after,
            enis: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn in_use(&self, e: &Eni, now: Instant) -> bool {
        e.released
            .is_none_or(|at| now.duration_since(at) < self.in_use_for)
    }

    /// The interfaces Lambda's garbage collection takes now.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.enis
            .iter()
            .filter(|(_, e)| {
                e.released
                    .is_some_and(|at| now.duration_since(at) >= self.collected_after)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn collected(&mut self, id: &str) {
        self.enis.remove(id);
        self.log.push(format!("collected {id}"));
    }

    /// The model's refusal of `op` (an EC2 query action with its parameters in `body`),
    /// if any.
    pub fn refuse(&self, op: &str, body: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let param = |name: &str| form_value(body, name);
        match op {
            "DeleteNetworkInterface" => {
                let id = param("NetworkInterfaceId")?;
                let eni = self.enis.get(&id)?;
                self.in_use(eni, now).then(|| {
                    (
                        "InvalidNetworkInterface.InUse".to_string(),
                        format!("Interface: [{id}] in use."),
                    )
                })
            }
            "DeleteSecurityGroup" => {
                let group = param("GroupId")?;
                let (id, _) = self.enis.iter().find(|(_, e)| e.groups.contains(&group))?;
                Some(dependency(&group, id))
            }
            "DeleteSubnet" => {
                let subnet = param("SubnetId")?;
                let (id, _) = self.enis.iter().find(|(_, e)| e.subnet == subnet)?;
                Some(dependency(&subnet, id))
            }
            "DeleteVpc" => {
                let vpc = param("VpcId")?;
                let (id, _) = self.enis.iter().next()?;
                Some(dependency(&vpc, id))
            }
            _ => None,
        }
    }

    /// Takes note of what a successful request did to the interfaces.
    pub fn observe(&mut self, req: &Request, op: &str) {
        let now = Instant::now();
        let path = req.path().to_string();
        let function = |path: &str| {
            path.trim_start_matches("/2015-03-31/functions/")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let detached = req.method == "PUT"
            && path.starts_with("/2015-03-31/functions/")
            && path.ends_with("/configuration")
            && serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| {
                b["VpcConfig"]["SubnetIds"]
                    .as_array()
                    .is_some_and(|s| s.is_empty())
            });
        let deleted = req.method == "DELETE" && path.starts_with("/2015-03-31/functions/");
        if detached || deleted {
            let name = function(&path);
            for (id, e) in self.enis.iter_mut() {
                if e.function == name && e.released.is_none() {
                    e.released = Some(now);
                    self.log.push(format!("released {id}"));
                }
            }
        }
        match op {
            "DeleteNetworkInterface" => {
                let body = String::from_utf8_lossy(&req.body);
                if let Some(id) = form_value(&body, "NetworkInterfaceId")
                    && self.enis.remove(&id).is_some()
                {
                    self.log.push(format!("deleted {id} by the client"));
                }
            }
            "DeleteSecurityGroup" => {
                let body = String::from_utf8_lossy(&req.body);
                let group = form_value(&body, "GroupId").unwrap_or_default();
                self.log.push(format!("DeleteSecurityGroup {group}"));
            }
            _ => {}
        }
    }

    /// The function and the VPC configuration of a `CreateFunction` request, when it has
    /// subnets.
    pub fn vpc_of(req: &Request) -> Option<(String, Vec<String>, Vec<String>)> {
        if req.method != "POST" || req.path() != "/2015-03-31/functions" {
            return None;
        }
        let body: Value = serde_json::from_slice(&req.body).ok()?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let subnets = strings(&body["VpcConfig"]["SubnetIds"]);
        let groups = strings(&body["VpcConfig"]["SecurityGroupIds"]);
        let name = body["FunctionName"].as_str()?.to_string();
        (!subnets.is_empty()).then_some((name, subnets, groups))
    }

    /// A `DescribeNetworkInterfaces` answer with the model's interfaces as AWS shows them.
    /// EC2 writes an interface's members in its shape's order, so its `status`,
    /// `requesterId` and `requesterManaged` come after its `networkInterfaceId` and before
    /// the next interface's.
    pub fn rewrite(&self, xml: &str) -> String {
        let now = Instant::now();
        let mut xml = xml.to_string();
        for (id, e) in &self.enis {
            let marker = format!("<networkInterfaceId>{id}</networkInterfaceId>");
            let Some(at) = xml.find(&marker) else {
                continue;
            };
            let from = at + marker.len();
            let to = xml[from..]
                .find("<networkInterfaceId>")
                .map_or(xml.len(), |n| from + n);
            let status = if self.in_use(e, now) {
                "in-use"
            } else {
                "available"
            };
            let mut region = xml[from..to].to_string();
            region = replace_tag(&region, "status", status);
            region = replace_tag(&region, "requesterId", "AROAEXAMPLELAMBDA:awslambda_1234");
            region = replace_tag(&region, "requesterManaged", "true");
            xml.replace_range(from..to, &region);
        }
        xml
    }
}

fn dependency(resource: &str, eni: &str) -> (String, String) {
    (
        "DependencyViolation".to_string(),
        format!("resource {resource} has a dependent object ({eni})"),
    )
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

fn replace_tag(item: &str, tag: &str, value: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    match between(item, &open, &close) {
        Some(old) => item.replacen(
            &format!("{open}{old}{close}"),
            &format!("{open}{value}{close}"),
            1,
        ),
        None => item.to_string(),
    }
}

/// A form-encoded parameter's value.
pub fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .replace('+', " ")
        })
    })
}

/// The EC2 error answer for `(code, message)`.
pub fn ec2_refusal((code, message): (String, String)) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
    );
    Response::new(400, body)
        .header("Content-Type", "text/xml")
        .header("connection", "close")
}
