//! What the compute layer's kinds share and that is not a kind itself: the function
//! packages, the reserved-concurrency pre-flight check, the wait for IAM to propagate a
//! role, and, re-exported, the engine's [`Shown`]. The emulator's differences are in
//! [`crate::aws::emulator`].

pub mod concurrency;
pub mod package;

pub use crate::engine::shown::{Shown, drifted, number};

use crate::error::Error;
use crate::waiter::Wait;
use std::time::Duration;

/// IAM changes reach Lambda within seconds, rarely a minute or two ("Changes that I make
/// are not always immediately visible",
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>).
pub const ROLE_PROPAGATION: Wait = Wait {
    timeout: Duration::from_secs(120),
    first: Duration::from_secs(2),
    max_interval: Duration::from_secs(10),
};

/// Lambda refused a role or a permission IAM has not propagated yet: a new role it
/// "cannot assume" (CreateFunction), or a new policy it does not see yet
/// (CreateEventSourceMapping: "The provided execution role does not have permissions to
/// call ReceiveMessage on SQS", or for a stream "Please ensure the role can perform the
/// GetRecords, GetShardIterator, DescribeStream, and ListStreams Actions"). It passes
/// within a minute.
pub fn role_not_ready(e: &Error) -> bool {
    matches!(e, Error::Aws { code, message, .. }
        if code == "InvalidParameterValueException"
            && (message.contains("cannot be assumed by Lambda")
                || message.contains("execution role does not have permissions")
                || message.contains("ensure the role can perform")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda(message: &str) -> Error {
        Error::Aws {
            op: "CreateEventSourceMapping",
            resource: "q".into(),
            code: "InvalidParameterValueException".into(),
            message: message.into(),
        }
    }

    #[test]
    fn only_lambdas_propagation_refusals_are_waited_out() {
        assert!(role_not_ready(&lambda(
            "The role defined for the function cannot be assumed by Lambda."
        )));
        assert!(role_not_ready(&lambda(
            "The provided execution role does not have permissions to call ReceiveMessage on SQS"
        )));
        assert!(role_not_ready(&lambda(
            "Cannot access stream arn:x. Please ensure the role can perform the GetRecords, GetShardIterator, DescribeStream, and ListStreams Actions on your stream in IAM."
        )));
        assert!(!role_not_ready(&lambda("Unsupported runtime")));
    }
}
