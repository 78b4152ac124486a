//! NotFound, one predicate per service: the only place that says which AWS error codes
//! mean "this resource does not exist".
//!
//! Every SDK failure becomes [`Error::Aws`] at the call site and keeps AWS's error code.
//! That code is the wire contract from which the SDK picks its typed error variant (the
//! SDK's `is_no_such_entity_exception()` is true exactly when the code is
//! `NoSuchEntity`), so matching it here is matching the typed shape. Each service lists
//! its own codes, exactly; EC2, which models no error shapes, has one code per resource
//! type ([`Ec2`]), so a missing route is never taken for a missing route table.

use crate::error::Error;

/// The AWS services payctl manages resources in, as far as NotFound is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// EC2: the resource type decides the code.
    Ec2(Ec2),
    ApiGateway,
    CloudWatch,
    DynamoDb,
    Iam,
    Kms,
    Lambda,
    Logs,
    Rds,
    S3,
    Sns,
    Sqs,
    Wafv2,
    Backup,
}

/// EC2 resource types, each with its own NotFound code ("Error codes for the Amazon EC2
/// API", <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ec2 {
    Vpc,
    Subnet,
    InternetGateway,
    /// An Elastic IP, by allocation id.
    Address,
    NatGateway,
    RouteTable,
    /// A route table association.
    Association,
    Route,
    VpcEndpoint,
    SecurityGroup,
    /// A security group rule, by rule id.
    SecurityGroupRule,
    FlowLogs,
    NetworkInterface,
}

impl Ec2 {
    fn codes(self) -> &'static [&'static str] {
        match self {
            Ec2::Vpc => &["InvalidVpcID.NotFound"],
            Ec2::Subnet => &["InvalidSubnetID.NotFound"],
            Ec2::InternetGateway => &["InvalidInternetGatewayID.NotFound"],
            Ec2::Address => &["InvalidAllocationID.NotFound"],
            // `NatGatewayNotFound` is the documented code; the emulator also answers it.
            Ec2::NatGateway => &["NatGatewayNotFound", "InvalidNatGatewayID.NotFound"],
            Ec2::RouteTable => &["InvalidRouteTableID.NotFound"],
            Ec2::Association => &["InvalidAssociationID.NotFound"],
            Ec2::Route => &["InvalidRoute.NotFound"],
            Ec2::VpcEndpoint => &[
                "InvalidVpcEndpointId.NotFound",
                "InvalidVpcEndpoint.NotFound",
            ],
            Ec2::SecurityGroup => &["InvalidGroup.NotFound", "InvalidGroupId.NotFound"],
            Ec2::SecurityGroupRule => &["InvalidSecurityGroupRuleId.NotFound"],
            Ec2::FlowLogs => &["InvalidFlowLogId.NotFound"],
            Ec2::NetworkInterface => &["InvalidNetworkInterfaceID.NotFound"],
        }
    }
}

impl Service {
    /// The codes that mean "not there" for this service (the SDK's modeled shapes).
    pub fn not_found_codes(self) -> &'static [&'static str] {
        match self {
            Service::Ec2(r) => r.codes(),
            // NotFoundException.
            Service::ApiGateway => &["NotFoundException"],
            // ResourceNotFound (DescribeAlarms, TagResource), DashboardNotFoundError.
            Service::CloudWatch => &["ResourceNotFound", "ResourceNotFoundException"],
            // ResourceNotFoundException, BackupNotFoundException, TableNotFoundException.
            Service::DynamoDb => &[
                "ResourceNotFoundException",
                "BackupNotFoundException",
                "TableNotFoundException",
            ],
            // NoSuchEntityException.
            Service::Iam => &["NoSuchEntity"],
            // NotFoundException.
            Service::Kms => &["NotFoundException"],
            // ResourceNotFoundException.
            Service::Lambda => &["ResourceNotFoundException"],
            // ResourceNotFoundException.
            Service::Logs => &["ResourceNotFoundException"],
            // DBInstanceNotFoundFault, DBSubnetGroupNotFoundFault, DBSnapshotNotFoundFault,
            // DBParameterGroupNotFoundFault: the wire codes drop `Fault` for some shapes.
            Service::Rds => &[
                "DBInstanceNotFound",
                "DBInstanceNotFoundFault",
                "DBSubnetGroupNotFoundFault",
                "DBSnapshotNotFound",
                "DBSnapshotNotFoundFault",
                "DBParameterGroupNotFound",
            ],
            // NoSuchBucket; `NotFound` is HeadBucket's and HeadObject's bodiless 404.
            Service::S3 => &["NoSuchBucket", "NotFound", "NoSuchKey"],
            // NotFoundException.
            Service::Sns => &["NotFound"],
            // QueueDoesNotExist, in the query protocol's and in the JSON protocol's spelling.
            Service::Sqs => &[
                "AWS.SimpleQueueService.NonExistentQueue",
                "QueueDoesNotExist",
            ],
            Service::Wafv2 => &["WAFNonexistentItemException"],
            Service::Backup => &["ResourceNotFoundException"],
        }
    }

    /// True when `e` is this service's answer for a resource that does not exist.
    pub fn is_not_found(self, e: &Error) -> bool {
        e.aws_code()
            .is_some_and(|c| self.not_found_codes().contains(&c))
    }

    /// `Some(value)` on success, `None` when this service says the resource is not there.
    pub fn found<T>(self, result: Result<T, Error>) -> Result<Option<T>, Error> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) if self.is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A resource is still in use by another (ENIs, associations); it clears with time.
pub fn is_dependency_violation(e: &Error) -> bool {
    e.aws_code() == Some("DependencyViolation")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn err(code: &str) -> Error {
        Error::Aws {
            op: "X",
            resource: "r".into(),
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn ec2_not_found_is_exact_per_resource_type() {
        let vpc = Service::Ec2(Ec2::Vpc);
        assert!(vpc.is_not_found(&err("InvalidVpcID.NotFound")));
        assert!(!vpc.is_not_found(&err("InvalidSubnetID.NotFound")));
        let rt = Service::Ec2(Ec2::RouteTable);
        assert!(rt.is_not_found(&err("InvalidRouteTableID.NotFound")));
        // A missing route is not a missing route table.
        assert!(!rt.is_not_found(&err("InvalidRoute.NotFound")));
        assert!(Service::Ec2(Ec2::NatGateway).is_not_found(&err("NatGatewayNotFound")));
        assert!(!vpc.is_not_found(&err("DependencyViolation")));
        assert!(!vpc.is_not_found(&Error::Invalid("InvalidVpcID.NotFound".into())));
    }

    #[test]
    fn each_service_knows_only_its_own_codes() {
        assert!(Service::Iam.is_not_found(&err("NoSuchEntity")));
        assert!(!Service::Iam.is_not_found(&err("ResourceNotFoundException")));
        assert!(Service::Lambda.is_not_found(&err("ResourceNotFoundException")));
        assert!(!Service::Lambda.is_not_found(&err("NotFoundException")));
        assert!(Service::ApiGateway.is_not_found(&err("NotFoundException")));
        assert!(Service::Sqs.is_not_found(&err("AWS.SimpleQueueService.NonExistentQueue")));
        assert!(Service::S3.is_not_found(&err("NoSuchBucket")));
        assert!(!Service::S3.is_not_found(&err("NoSuchBucketPolicy")));
        assert!(Service::Rds.is_not_found(&err("DBInstanceNotFound")));
        assert!(!Service::Kms.is_not_found(&err("AccessDeniedException")));
    }

    #[test]
    fn found_turns_not_found_into_none_and_keeps_other_errors() {
        let s = Service::Kms;
        assert_eq!(s.found(Ok::<_, Error>(3)).unwrap(), Some(3));
        assert_eq!(s.found::<u8>(Err(err("NotFoundException"))).unwrap(), None);
        assert!(s.found::<u8>(Err(err("KMSInternalException"))).is_err());
        assert!(is_dependency_violation(&err("DependencyViolation")));
        assert!(!is_dependency_violation(&Error::Invalid(
            "DependencyViolation".into()
        )));
    }
}
