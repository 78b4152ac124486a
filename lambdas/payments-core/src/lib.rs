//! Shared, dependency-light core of the three payment Lambda functions
//! (validator, processor and audit-logger).
//!
//! This crate is pure logic: it has no AWS SDK or Lambda runtime dependency
//! and performs no I/O, so everything in it is covered by plain unit tests.
//!
//! * [`validate`] turns an untrusted request body into a [`Payment`], or into
//!   a [`ValidationErrors`] listing *every* problem found. Money is parsed
//!   exactly from the JSON text into integer minor units (`i64`); no float is
//!   ever involved.
//! * [`model`] holds the other wire types shared between the functions: the
//!   [`TransactionStatus`] enum, the validator's 200 response, the processor's
//!   request and the retry-queue message.
//! * [`audit`] defines the [`AuditRecord`] the audit-logger writes and the S3
//!   object key it is written under.
//!
//! Money rule for the whole crate: an amount is an `i64` count of the
//! currency's ISO 4217 minor units (cents for USD, yen for JPY, fils for
//! KWD). Decimal text is produced only for display, through
//! [`Payment::amount_display`] / [`validate::format_minor`].

pub mod audit;
pub mod model;
pub mod validate;
pub mod withdrawn;

pub use audit::{AuditKeyError, AuditRecord, RequestIds, audit_key};
pub use model::{ProcessRequest, RetryMessage, TransactionStatus, ValidatedResponse};
pub use validate::{FieldError, Limits, Payment, ValidationErrors, exponent, parse_payment};
