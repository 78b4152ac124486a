//! Validation of the payment request body and the [`Payment`] it yields.
//!
//! [`parse_payment`] takes the raw HTTP body of the validator function, e.g.
//!
//! ```json
//! {"transaction_id": "txn_123", "amount": 100.00, "currency": "USD", "customer_id": "cust_456"}
//! ```
//!
//! and returns either a [`Payment`] (amount in integer minor units) or a
//! [`ValidationErrors`] that lists **every** problem found, so a client can
//! fix its request in one round trip. The body is first split into its
//! top-level keys with their *raw* JSON text ([`serde_json::value::RawValue`]);
//! each field is then checked on its own, which is what lets one bad field not
//! hide another.
//!
//! # Money
//!
//! The amount is read exactly from the characters of the request: a JSON
//! number's raw text (never converted to `f64`) or a JSON string holding a
//! decimal, parsed with [`Decimal::from_str_exact`] and scaled to the
//! currency's ISO 4217 minor unit (from the `iso_currency` crate). Rules:
//!
//! * Only the plain decimal form `-?(0|[1-9][0-9]*)(\.[0-9]+)?` is accepted,
//!   for numbers and strings alike. Exponent notation (`1e2`, `1E-2`) is
//!   rejected with a message asking for a plain decimal, as are a leading
//!   `+`, leading zeros (`007`), a bare `.5` or `5.`, digit separators, an
//!   empty string and whitespace inside the string (`" 100.00"`).
//! * The amount must be greater than zero (`0`, `0.00` and `-0` are rejected,
//!   as is any negative amount).
//! * **Trailing zeros count.** The number of decimal places *written* must not
//!   exceed the currency's exponent: `100.000` USD and `100.0` JPY are rejected
//!   even though they are mathematically whole cents / yen. A payment request
//!   that carries more precision than the currency has is treated as a client
//!   bug rather than silently normalised.
//! * Fewer decimals than the exponent are fine: `100` USD is 10000 minor units.
//! * The amount in minor units must fit in `i64` and must not exceed
//!   [`Limits::max_amount_minor`] (an amount equal to the limit is accepted).
//!   The limit is expressed in minor units of whichever currency is used; the
//!   default, [`DEFAULT_MAX_AMOUNT_MINOR`] = 100 000 000, is one million USD.
//!
//! # Currency
//!
//! The currency must be an ISO 4217 alphabetic code known to `iso_currency`,
//! written exactly in uppercase (see [`parse_payment`] for why lowercase is
//! rejected). Codes without a defined minor unit (XAU, XAG, XDR, XTS, XXX, ...)
//! are rejected as unsupported because an amount in them cannot be expressed in
//! minor units. Codes that ISO 4217 has withdrawn (List Three: HRK, SLL, ZWL, ...; see
//! [`crate::withdrawn`] for the amendment followed) are refused, naming the code. Fund
//! codes that have a minor unit are accepted; narrowing the accepted set is a business
//! decision for the callers.
//!
//! # Identifiers
//!
//! `transaction_id` and `customer_id` (and every other transaction id in this
//! crate) are 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_-]`; see
//! [`check_id`].
//!
//! # Error messages
//!
//! Messages never repeat the submitted values, so a [`ValidationErrors`] can
//! be logged and returned as-is. The only input that can appear is the name of
//! an unknown top-level field, and only when that name itself is a plain
//! identifier (otherwise it is reported under `body` without the name). A
//! corrected currency suggestion (`USD` for `usd`) comes from the ISO table,
//! not from the input.

use std::fmt;

use crate::withdrawn::is_withdrawn;
use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest accepted request body, in bytes (16 KiB). Larger bodies are
/// rejected with a single `body` error before any parsing.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest accepted identifier (transaction or customer id), in characters.
pub const MAX_ID_LEN: usize = 64;

/// Default for [`Limits::max_amount_minor`]: 100 000 000 minor units, i.e.
/// 1 000 000.00 USD.
pub const DEFAULT_MAX_AMOUNT_MINOR: i64 = 100_000_000;

/// How many unknown fields are reported by name before the rest are folded
/// into one summary error (keeps the error response small for hostile bodies).
const MAX_UNKNOWN_FIELD_ERRORS: usize = 10;

const TRANSACTION_ID: &str = "transaction_id";
const AMOUNT: &str = "amount";
const CURRENCY: &str = "currency";
const CUSTOMER_ID: &str = "customer_id";
const BODY: &str = "body";

const EXPONENT_MESSAGE: &str =
    "must be written as a plain decimal such as 100.00, not in exponent notation";
const PLAIN_DECIMAL_MESSAGE: &str = "must be a plain decimal number such as 100.00";
const POSITIVE_MESSAGE: &str = "must be greater than zero";

/// Business limits applied by [`parse_payment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted amount, in minor units of the payment's currency
    /// (inclusive). A value below 1 rejects every amount.
    pub max_amount_minor: i64,
}

impl Default for Limits {
    /// `max_amount_minor` = [`DEFAULT_MAX_AMOUNT_MINOR`] (one million USD).
    fn default() -> Self {
        Limits {
            max_amount_minor: DEFAULT_MAX_AMOUNT_MINOR,
        }
    }
}

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The JSON field name, or `"body"` for problems with the body as a whole.
    pub field: String,
    /// Human-readable description; never contains the submitted value.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// All the problems found in a request; never empty when returned by this
/// crate.
///
/// Known fields are reported in the order `transaction_id`, `amount`,
/// `currency`, `customer_id`, followed by unknown fields in body order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationErrors {
    /// One entry per problem.
    pub details: Vec<FieldError>,
}

impl ValidationErrors {
    /// A single error.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationErrors {
            details: vec![FieldError::new(field, message)],
        }
    }

    /// The HTTP 400 response body:
    /// `{"error": "validation_failed", "details": [{"field": ..., "message": ...}]}`.
    pub fn to_body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": "validation_failed",
            "details": self.details,
        })
    }

    /// The field names that have at least one error, in report order
    /// (a field may appear more than once).
    pub fn fields(&self) -> Vec<&str> {
        self.details.iter().map(|d| d.field.as_str()).collect()
    }

    /// The messages reported for `field`.
    pub fn messages_for(&self, field: &str) -> Vec<&str> {
        self.details
            .iter()
            .filter(|d| d.field == field)
            .map(|d| d.message.as_str())
            .collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("validation failed")?;
        for (i, d) in self.details.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{} {}", d.field, d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Why an identifier was refused by [`check_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is the empty string.
    #[error("must not be empty")]
    Empty,
    /// The identifier has a character outside `[A-Za-z0-9_-]`.
    #[error("must contain only ASCII letters, digits, '_' and '-'")]
    InvalidCharacter,
    /// The identifier is longer than [`MAX_ID_LEN`] characters.
    #[error("must be at most 64 characters long")]
    TooLong,
}

/// The identifier rule shared by every transaction and customer id: 1 to
/// [`MAX_ID_LEN`] characters, each an ASCII letter, digit, `_` or `-`.
///
/// Such ids are safe to embed in S3 keys, log lines and DynamoDB keys, and
/// cannot contain the `|` separator of [`Payment::fingerprint`].
pub fn check_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::InvalidCharacter);
    }
    // All bytes are ASCII here, so bytes == characters.
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    Ok(())
}

/// The ISO 4217 minor-unit exponent (number of decimal places) of an
/// alphabetic currency code: `Some(2)` for `"USD"`, `Some(0)` for `"JPY"`,
/// `Some(3)` for `"KWD"`.
///
/// Returns `None` for a code `iso_currency` does not know, for a code that is
/// not written exactly in uppercase, and for codes without a minor unit
/// (e.g. `"XAU"`) — i.e. exactly the currencies [`parse_payment`] rejects.
pub fn exponent(currency: &str) -> Option<u32> {
    if is_withdrawn(currency) {
        return None;
    }
    Currency::from_code(currency)?.exponent().map(u32::from)
}

/// Formats an amount given in minor units as a decimal string with exactly
/// `exponent` decimal places: `format_minor(10000, 2) == "100.00"`,
/// `format_minor(100, 0) == "100"`, `format_minor(1234, 3) == "1.234"`.
///
/// # Panics
///
/// If `exponent` is greater than 28 (ISO 4217 exponents are at most 4).
pub fn format_minor(amount_minor: i64, exponent: u32) -> String {
    Decimal::new(amount_minor, exponent).to_string()
}

/// A validated payment request.
///
/// Values returned by [`parse_payment`] always satisfy: both ids pass
/// [`check_id`], `currency` is an uppercase ISO 4217 code with a minor unit,
/// and `1 <= amount_minor <= limits.max_amount_minor`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Payment {
    /// Client-chosen idempotency key of the payment.
    pub transaction_id: String,
    /// Amount in minor units of `currency` (cents for USD).
    pub amount_minor: i64,
    /// Uppercase ISO 4217 alphabetic code.
    pub currency: String,
    /// The paying customer.
    pub customer_id: String,
}

impl Payment {
    /// The currency's minor-unit exponent (see [`exponent`]).
    pub fn exponent(&self) -> Option<u32> {
        exponent(&self.currency)
    }

    /// The canonical decimal amount with exactly the currency's number of
    /// decimal places: `"100.00"` for 10000 USD minor units, `"100"` for 100
    /// JPY, `"1.234"` for 1234 KWD.
    ///
    /// A `Payment` built by hand with an unsupported currency is shown in
    /// minor units (exponent 0); [`parse_payment`] never yields one.
    pub fn amount_display(&self) -> String {
        format_minor(self.amount_minor, self.exponent().unwrap_or(0))
    }

    /// A stable canonical string of every field,
    /// `transaction_id|amount_minor|currency|customer_id` (e.g.
    /// `txn_123|10000|USD|cust_456`).
    ///
    /// Two requests with the same `transaction_id` are an idempotent repeat
    /// when their fingerprints are equal, and a conflict (HTTP 409) when they
    /// differ. Ids cannot contain `|`, so the encoding is unambiguous. The
    /// format is part of the stored data: do not change it.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.transaction_id, self.amount_minor, self.currency, self.customer_id
        )
    }
}

/// Validates a payment request body and converts it into a [`Payment`].
///
/// See the [module documentation](self) for the full rules. Every problem
/// that can be detected is reported; only a body-level problem (too large,
/// not UTF-8, not JSON, not an object) stops validation early, as a single
/// `body` error.
///
/// **Currency case:** the code must be written exactly in uppercase. `usd`
/// (or `Usd`) is rejected with the message
/// `must be an uppercase ISO 4217 code: did you mean USD?` instead of being
/// normalised. ISO 4217 defines the codes in uppercase only, the rest of the
/// validation is equally strict (amounts are not rounded or trimmed either),
/// and the suggestion makes the fix a one-line change for the client. The
/// same rule is used by [`exponent`], so a code is either valid everywhere in
/// the crate or nowhere.
pub fn parse_payment(body: &[u8], limits: &Limits) -> Result<Payment, ValidationErrors> {
    let entries = read_object(body)?;
    let (slots, unknown) = split_fields(&entries, &[TRANSACTION_ID, AMOUNT, CURRENCY, CUSTOMER_ID]);
    let [transaction_slot, amount_slot, currency_slot, customer_slot] = slots[..] else {
        unreachable!("split_fields returns one slot per known field");
    };

    let mut errors = Vec::new();
    let transaction_id = id_field(TRANSACTION_ID, transaction_slot, &mut errors);

    // The currency decides the amount's scale, so it is parsed first; its
    // errors are still reported after the amount's to keep the field order.
    let mut currency_errors = Vec::new();
    let currency = required(CURRENCY, currency_slot, &mut currency_errors)
        .and_then(|raw| string_value(CURRENCY, raw, &mut currency_errors))
        .and_then(|code| match parse_currency(&code) {
            Ok(info) => Some(info),
            Err(message) => {
                currency_errors.push(FieldError::new(CURRENCY, message));
                None
            }
        });

    let amount_minor =
        required(AMOUNT, amount_slot, &mut errors).and_then(|raw| {
            match parse_amount(raw, currency, limits) {
                Ok(minor) => minor,
                Err(message) => {
                    errors.push(FieldError::new(AMOUNT, message));
                    None
                }
            }
        });
    errors.append(&mut currency_errors);

    let customer_id = id_field(CUSTOMER_ID, customer_slot, &mut errors);
    errors.extend(unknown);

    match (transaction_id, amount_minor, currency, customer_id) {
        (Some(transaction_id), Some(amount_minor), Some(currency), Some(customer_id))
            if errors.is_empty() =>
        {
            Ok(Payment {
                transaction_id,
                amount_minor,
                currency: currency.code.to_owned(),
                customer_id,
            })
        }
        _ => {
            debug_assert!(!errors.is_empty(), "a failed field must report an error");
            Err(ValidationErrors { details: errors })
        }
    }
}

// ---------------------------------------------------------------------------
// Body-level parsing, shared with `model::ProcessRequest::from_body`.
// ---------------------------------------------------------------------------

/// The top-level members of a JSON object, in body order, with each value's
/// raw text. Unlike a map it keeps duplicate keys so they can be reported.
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    entries.push(entry);
                }
                Ok(RawObject(entries))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Checks the body as a whole (size, UTF-8, JSON syntax, object) and returns
/// its top-level members. Any failure is a single `body` error.
pub(crate) fn read_object(body: &[u8]) -> Result<Vec<(String, Box<RawValue>)>, ValidationErrors> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ValidationErrors::single(
            BODY,
            format!("request body must be at most {MAX_BODY_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ValidationErrors::single(BODY, "request body must be valid UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ValidationErrors::single(
            BODY,
            "request body must not be empty",
        ));
    }
    match serde_json::from_str::<RawObject>(text) {
        Ok(RawObject(entries)) => Ok(entries),
        Err(e) if e.is_data() => Err(ValidationErrors::single(
            BODY,
            "request body must be a JSON object",
        )),
        Err(e) => Err(ValidationErrors::single(
            BODY,
            format!(
                "request body is not valid JSON (error at line {}, column {})",
                e.line(),
                e.column()
            ),
        )),
    }
}

/// What the body holds for one known field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot<'a> {
    Missing,
    Duplicate,
    Present(&'a RawValue),
}

/// Sorts the members into one [`Slot`] per `known` field (same order) and
/// errors for the members that are not known fields.
pub(crate) fn split_fields<'a>(
    entries: &'a [(String, Box<RawValue>)],
    known: &[&str],
) -> (Vec<Slot<'a>>, Vec<FieldError>) {
    let mut slots = vec![Slot::Missing; known.len()];
    let mut unknown_names: Vec<&str> = Vec::new();
    for (key, value) in entries {
        match known.iter().position(|k| k == key) {
            Some(i) => {
                slots[i] = match slots[i] {
                    Slot::Missing => Slot::Present(value),
                    Slot::Present(_) | Slot::Duplicate => Slot::Duplicate,
                }
            }
            None => {
                if !unknown_names.contains(&key.as_str()) {
                    unknown_names.push(key);
                }
            }
        }
    }

    let mut errors = Vec::new();
    let mut hidden = 0usize;
    for name in &unknown_names {
        if errors.len() == MAX_UNKNOWN_FIELD_ERRORS {
            break;
        }
        if check_id(name).is_ok() {
            errors.push(FieldError::new(*name, "is not a recognised field"));
        } else {
            hidden += 1;
        }
    }
    let remaining = unknown_names.len() - errors.len();
    if remaining > 0 {
        let shown = errors.len();
        let message = if shown == 0 && remaining == hidden {
            format!("contains {remaining} unrecognised field(s) whose names are not shown")
        } else {
            format!("contains {remaining} further unrecognised field(s)")
        };
        errors.push(FieldError::new(BODY, message));
    }
    (slots, errors)
}

/// The value of a required field, or an error if it is missing or repeated.
pub(crate) fn required<'a>(
    field: &str,
    slot: Slot<'a>,
    errors: &mut Vec<FieldError>,
) -> Option<&'a RawValue> {
    match slot {
        Slot::Present(raw) => Some(raw),
        Slot::Missing => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Slot::Duplicate => {
            errors.push(FieldError::new(field, "must appear only once"));
            None
        }
    }
}

/// The JSON type of a value, for dispatch and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    String,
    Number,
    Boolean,
    Null,
    Array,
    Object,
}

impl JsonKind {
    /// Derived from the first character of already-validated JSON text.
    fn of(raw: &RawValue) -> JsonKind {
        match raw.get().trim_start().as_bytes().first() {
            Some(b'"') => JsonKind::String,
            Some(b'{') => JsonKind::Object,
            Some(b'[') => JsonKind::Array,
            Some(b't' | b'f') => JsonKind::Boolean,
            Some(b'n') => JsonKind::Null,
            _ => JsonKind::Number,
        }
    }

    /// "a string", "a number", ... (used as "must be X, not <name>").
    fn name(self) -> &'static str {
        match self {
            JsonKind::String => "a string",
            JsonKind::Number => "a number",
            JsonKind::Boolean => "a boolean",
            JsonKind::Null => "null",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        }
    }
}

/// Decodes a JSON string value, or records a type error.
pub(crate) fn string_value(
    field: &str,
    raw: &RawValue,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let kind = JsonKind::of(raw);
    if kind != JsonKind::String {
        errors.push(FieldError::new(
            field,
            format!("must be a string, not {}", kind.name()),
        ));
        return None;
    }
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => Some(s),
        Err(_) => {
            errors.push(FieldError::new(field, "must be a valid JSON string"));
            None
        }
    }
}

/// A required identifier field (see [`check_id`]).
pub(crate) fn id_field(
    field: &str,
    slot: Slot<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = string_value(field, required(field, slot, errors)?, errors)?;
    match check_id(&value) {
        Ok(()) => Some(value),
        Err(e) => {
            errors.push(FieldError::new(field, e.to_string()));
            None
        }
    }
}

/// `deserialize_with` helper: a `String` that must pass [`check_id`].
pub(crate) fn deserialize_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    check_id(&value).map_err(|e| de::Error::custom(format_args!("transaction_id {e}")))?;
    Ok(value)
}

// ---------------------------------------------------------------------------
// Currency and amount.
// ---------------------------------------------------------------------------

/// A supported currency: its canonical code and minor-unit exponent.
#[derive(Debug, Clone, Copy)]
struct CurrencyInfo {
    code: &'static str,
    exponent: u32,
}

fn supported(currency: Currency) -> Option<CurrencyInfo> {
    currency.exponent().map(|e| CurrencyInfo {
        code: currency.code(),
        exponent: u32::from(e),
    })
}

fn parse_currency(code: &str) -> Result<CurrencyInfo, String> {
    if is_withdrawn(code) {
        // `code` is one of the list's own constants here, not free input.
        return Err(format!(
            "{code} has been withdrawn from ISO 4217: use the currency that replaced it"
        ));
    }
    if let Some(currency) = Currency::from_code(code) {
        return supported(currency).ok_or_else(|| {
            "is not supported: this ISO 4217 code has no minor unit (e.g. precious metals, special or test codes)"
                .to_owned()
        });
    }
    let upper = code.to_ascii_uppercase();
    if code.len() == 3
        && !is_withdrawn(&upper)
        && let Some(info) = Currency::from_code(&upper).and_then(supported)
    {
        // `info.code` comes from the ISO table, not from the input.
        return Err(format!(
            "must be an uppercase ISO 4217 code: did you mean {}?",
            info.code
        ));
    }
    Err("must be a known ISO 4217 alphabetic currency code such as USD".to_owned())
}

/// The syntactic parts of a plain decimal `-?(0|[1-9][0-9]*)(\.[0-9]+)?`.
struct DecimalText<'a> {
    negative: bool,
    integer: &'a str,
    fraction: &'a str,
}

fn split_decimal(text: &str) -> Result<DecimalText<'_>, &'static str> {
    let looks_numeric = |c: char| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E');
    if text.contains(['e', 'E']) && text.chars().all(looks_numeric) {
        return Err(EXPONENT_MESSAGE);
    }
    if text.starts_with('+') {
        return Err("must not start with '+'; write a plain decimal such as 100.00");
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((i, f)) => {
            if f.is_empty() {
                return Err(PLAIN_DECIMAL_MESSAGE);
            }
            (i, f)
        }
        None => (unsigned, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if integer.is_empty() || !all_digits(integer) || !all_digits(fraction) {
        return Err(PLAIN_DECIMAL_MESSAGE);
    }
    if integer.len() > 1 && integer.starts_with('0') {
        return Err("must not have leading zeros");
    }
    Ok(DecimalText {
        negative,
        integer,
        fraction,
    })
}

/// Checks the amount. Returns `Ok(None)` when the amount is well formed but
/// cannot be converted because the currency is invalid (that error is
/// reported on `currency`).
fn parse_amount(
    raw: &RawValue,
    currency: Option<CurrencyInfo>,
    limits: &Limits,
) -> Result<Option<i64>, String> {
    let text: String = match JsonKind::of(raw) {
        JsonKind::Number => raw.get().trim().to_owned(),
        JsonKind::String => {
            let s: String = serde_json::from_str(raw.get())
                .map_err(|_| "must be a valid JSON string".to_owned())?;
            if s.is_empty() {
                return Err("must not be an empty string".to_owned());
            }
            if s.trim() != s {
                return Err("must not have leading or trailing whitespace".to_owned());
            }
            s
        }
        other => {
            return Err(format!(
                "must be a JSON number or a string holding a decimal, not {}",
                other.name()
            ));
        }
    };

    let parts = split_decimal(&text).map_err(str::to_owned)?;
    let is_zero = parts
        .integer
        .bytes()
        .chain(parts.fraction.bytes())
        .all(|b| b == b'0');
    if parts.negative || is_zero {
        return Err(POSITIVE_MESSAGE.to_owned());
    }

    let Some(CurrencyInfo { code, exponent }) = currency else {
        return Ok(None);
    };
    if parts.fraction.len() > exponent as usize {
        return Err(if exponent == 0 {
            format!("must be a whole number: {code} has no decimal places")
        } else {
            format!("must have at most {exponent} decimal places for {code}")
        });
    }

    let too_large = || {
        format!(
            "must not exceed {} {code}",
            format_minor(limits.max_amount_minor, exponent)
        )
    };
    // The text is a plain decimal with at most 4 decimal places, so the only
    // way `from_str_exact` can fail is an integer part too long for Decimal.
    let value = Decimal::from_str_exact(&text).map_err(|_| too_large())?;
    let minor = value
        .checked_mul(Decimal::from(10_i64.pow(exponent)))
        .ok_or_else(too_large)?;
    if !minor.fract().is_zero() {
        // Unreachable given the scale check above; refuse rather than round.
        return Err(format!(
            "must have at most {exponent} decimal places for {code}"
        ));
    }
    let minor = i64::try_from(minor).map_err(|_| too_large())?;
    if minor > limits.max_amount_minor {
        return Err(too_large());
    }
    Ok(Some(minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(transaction_id: &str, amount: &str, currency: &str, customer_id: &str) -> String {
        format!(
            r#"{{"transaction_id": {transaction_id}, "amount": {amount}, "currency": {currency}, "customer_id": {customer_id}}}"#
        )
    }

    /// A body with valid ids and the given raw amount JSON and currency code.
    fn amount_body(amount: &str, currency: &str) -> String {
        body(
            r#""txn_123""#,
            amount,
            &format!("\"{currency}\""),
            r#""cust_456""#,
        )
    }

    fn parse(body: &str) -> Result<Payment, ValidationErrors> {
        parse_payment(body.as_bytes(), &Limits::default())
    }

    fn minor(amount: &str, currency: &str) -> i64 {
        match parse(&amount_body(amount, currency)) {
            Ok(p) => p.amount_minor,
            Err(e) => panic!("{amount} {currency} should be accepted, got {e}"),
        }
    }

    /// Asserts the body is rejected with exactly one error, on `field`, and
    /// returns its message.
    fn only_error(body: &str, field: &str) -> String {
        let err = parse(body).expect_err("body should be rejected");
        assert_eq!(err.fields(), vec![field], "errors: {err}");
        err.details[0].message.clone()
    }

    fn amount_error(amount: &str, currency: &str) -> String {
        only_error(&amount_body(amount, currency), AMOUNT)
    }

    #[test]
    fn accepts_the_documented_example() {
        let p = parse(r#"{"transaction_id": "txn_123", "amount": 100.00, "currency": "USD", "customer_id": "cust_456"}"#)
            .unwrap();
        assert_eq!(
            p,
            Payment {
                transaction_id: "txn_123".into(),
                amount_minor: 10_000,
                currency: "USD".into(),
                customer_id: "cust_456".into(),
            }
        );
        assert_eq!(p.amount_display(), "100.00");
    }

    #[test]
    fn point_one_is_exactly_ten_cents_no_floats() {
        assert_eq!(minor("0.1", "USD"), 10);
        assert_eq!(minor("0.2", "USD"), 20);
        assert_eq!(minor("0.30", "USD"), 30);
        assert_eq!(minor("\"0.1\"", "USD"), 10);
    }

    #[test]
    fn float_artifact_has_too_many_decimals() {
        let msg = amount_error("0.30000000000000004", "USD");
        assert_eq!(msg, "must have at most 2 decimal places for USD");
    }

    #[test]
    fn currency_exponent_decides_decimal_places() {
        assert_eq!(
            amount_error("100.005", "USD"),
            "must have at most 2 decimal places for USD"
        );
        assert_eq!(minor("100", "JPY"), 100);
        assert_eq!(
            amount_error("1.5", "JPY"),
            "must be a whole number: JPY has no decimal places"
        );
        assert_eq!(minor("1.234", "KWD"), 1234);
        assert_eq!(minor("1.2", "KWD"), 1200);
        assert_eq!(
            amount_error("1.2345", "KWD"),
            "must have at most 3 decimal places for KWD"
        );
        assert_eq!(minor("100", "USD"), 10_000);
        assert_eq!(minor("1.2345", "CLF"), 12_345);
    }

    #[test]
    fn trailing_zeros_beyond_the_exponent_are_rejected() {
        assert_eq!(
            amount_error("100.000", "USD"),
            "must have at most 2 decimal places for USD"
        );
        assert_eq!(
            amount_error("\"100.000\"", "USD"),
            "must have at most 2 decimal places for USD"
        );
        assert_eq!(
            amount_error("100.0", "JPY"),
            "must be a whole number: JPY has no decimal places"
        );
        assert_eq!(minor("100.10", "USD"), 10_010);
    }

    #[test]
    fn string_amounts_are_accepted() {
        assert_eq!(minor("\"100.00\"", "USD"), 10_000);
        assert_eq!(minor("\"7\"", "JPY"), 7);
    }

    #[test]
    fn negative_and_zero_are_rejected() {
        for amount in [
            "-1",
            "-100.00",
            "\"-5.00\"",
            "0",
            "0.00",
            "-0",
            "\"0\"",
            "0.0",
        ] {
            assert_eq!(
                amount_error(amount, "USD"),
                POSITIVE_MESSAGE,
                "amount {amount}"
            );
        }
        assert_eq!(minor("0.01", "USD"), 1);
    }

    #[test]
    fn exponent_notation_is_rejected_with_a_hint() {
        for amount in ["1e2", "1E-2", "1.5e+3", "\"1e2\"", "\"2E3\""] {
            let msg = amount_error(amount, "USD");
            assert_eq!(msg, EXPONENT_MESSAGE, "amount {amount}");
            assert!(msg.contains("plain decimal"));
        }
    }

    #[test]
    fn malformed_decimal_strings_are_rejected() {
        let cases = [
            ("\"\"", "must not be an empty string"),
            (
                "\" 100.00\"",
                "must not have leading or trailing whitespace",
            ),
            (
                "\"100.00 \"",
                "must not have leading or trailing whitespace",
            ),
            ("\"\\t1\"", "must not have leading or trailing whitespace"),
            (
                "\"+100\"",
                "must not start with '+'; write a plain decimal such as 100.00",
            ),
            ("\".5\"", PLAIN_DECIMAL_MESSAGE),
            ("\"5.\"", PLAIN_DECIMAL_MESSAGE),
            ("\"1,000.00\"", PLAIN_DECIMAL_MESSAGE),
            ("\"1_000\"", PLAIN_DECIMAL_MESSAGE),
            ("\"0x10\"", PLAIN_DECIMAL_MESSAGE),
            ("\"NaN\"", PLAIN_DECIMAL_MESSAGE),
            ("\"Infinity\"", PLAIN_DECIMAL_MESSAGE),
            ("\"ten\"", PLAIN_DECIMAL_MESSAGE),
            ("\"1 000\"", PLAIN_DECIMAL_MESSAGE),
            ("\"--1\"", PLAIN_DECIMAL_MESSAGE),
            ("\"007\"", "must not have leading zeros"),
        ];
        for (amount, expected) in cases {
            assert_eq!(amount_error(amount, "USD"), expected, "amount {amount}");
        }
    }

    #[test]
    fn max_amount_is_inclusive() {
        assert_eq!(minor("1000000.00", "USD"), 100_000_000);
        assert_eq!(
            amount_error("1000000.01", "USD"),
            "must not exceed 1000000.00 USD"
        );
        assert_eq!(minor("100000000", "JPY"), 100_000_000);
        assert_eq!(
            amount_error("100000001", "JPY"),
            "must not exceed 100000000 JPY"
        );

        let tight = Limits {
            max_amount_minor: 500,
        };
        let ok = parse_payment(amount_body("5.00", "USD").as_bytes(), &tight).unwrap();
        assert_eq!(ok.amount_minor, 500);
        let err = parse_payment(amount_body("5.01", "USD").as_bytes(), &tight).unwrap_err();
        assert_eq!(err.messages_for(AMOUNT), vec!["must not exceed 5.00 USD"]);
    }

    #[test]
    fn huge_amounts_are_rejected_without_overflow() {
        let expected = "must not exceed 1000000.00 USD";
        // Fits Decimal, overflows i64 once scaled to cents.
        assert_eq!(amount_error("99999999999999999999999", "USD"), expected);
        assert_eq!(amount_error("\"99999999999999999999999\"", "USD"), expected);
        // i64::MAX cents and i64::MAX + 1 cents.
        assert_eq!(amount_error("92233720368547758.07", "USD"), expected);
        assert_eq!(amount_error("92233720368547758.08", "USD"), expected);
        // Too many digits for Decimal itself.
        let digits = "9".repeat(60);
        assert_eq!(amount_error(&digits, "USD"), expected);

        let unlimited = Limits {
            max_amount_minor: i64::MAX,
        };
        let p = parse_payment(
            amount_body("92233720368547758.07", "USD").as_bytes(),
            &unlimited,
        )
        .unwrap();
        assert_eq!(p.amount_minor, i64::MAX);
        let err = parse_payment(
            amount_body("92233720368547758.08", "USD").as_bytes(),
            &unlimited,
        )
        .unwrap_err();
        assert_eq!(err.fields(), vec![AMOUNT]);
    }

    #[test]
    fn amount_of_the_wrong_type_is_rejected() {
        for (amount, kind) in [
            ("true", "a boolean"),
            ("null", "null"),
            ("[100]", "an array"),
            ("{\"v\": 1}", "an object"),
        ] {
            assert_eq!(
                amount_error(amount, "USD"),
                format!("must be a JSON number or a string holding a decimal, not {kind}")
            );
        }
    }

    #[test]
    fn unknown_currency_is_rejected() {
        let msg = only_error(&amount_body("1.00", "XYZ"), CURRENCY);
        assert_eq!(
            msg,
            "must be a known ISO 4217 alphabetic currency code such as USD"
        );
        assert!(!msg.contains("XYZ"));
        for code in ["", "US", "USDD", "U$D"] {
            assert_eq!(
                only_error(&amount_body("1.00", code), CURRENCY),
                "must be a known ISO 4217 alphabetic currency code such as USD",
                "code {code:?}"
            );
        }
    }

    #[test]
    fn lowercase_currency_is_rejected_with_a_suggestion() {
        assert_eq!(
            only_error(&amount_body("1.00", "usd"), CURRENCY),
            "must be an uppercase ISO 4217 code: did you mean USD?"
        );
        assert_eq!(
            only_error(&amount_body("1.00", "Jpy"), CURRENCY),
            "must be an uppercase ISO 4217 code: did you mean JPY?"
        );
    }

    #[test]
    fn currencies_without_minor_unit_are_unsupported() {
        for code in ["XAU", "XXX", "XTS", "XDR"] {
            let msg = only_error(&amount_body("1", code), CURRENCY);
            assert!(msg.starts_with("is not supported"), "{code}: {msg}");
        }
        // No case suggestion towards an unsupported code.
        assert_eq!(
            only_error(&amount_body("1", "xau"), CURRENCY),
            "must be a known ISO 4217 alphabetic currency code such as USD"
        );
    }

    #[test]
    fn withdrawn_currencies_are_refused_naming_the_code() {
        for code in ["HRK", "SLL", "ZWL", "CUC", "ANG", "VEF"] {
            assert_eq!(
                only_error(&amount_body("1.00", code), CURRENCY),
                format!(
                    "{code} has been withdrawn from ISO 4217: use the currency that replaced it"
                )
            );
        }
        // Their successors are current.
        assert_eq!(minor("1.00", "EUR"), 100);
        assert_eq!(minor("1.00", "SLE"), 100);
        assert_eq!(minor("1.00", "ZWG"), 100);
        assert_eq!(minor("1.00", "XCG"), 100);
        // No case suggestion towards a withdrawn code.
        assert_eq!(
            only_error(&amount_body("1.00", "hrk"), CURRENCY),
            "must be a known ISO 4217 alphabetic currency code such as USD"
        );
    }

    #[test]
    fn every_current_code_is_still_accepted() {
        // ISO 4217 List One as of Amendment 178, less the codes without a minor unit
        // (X-codes such as XAU, XDR, XTS, XXX), which stay refused.
        let current = [
            "AED", "AFN", "ALL", "AMD", "XCG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
            "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP",
            "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU",
            "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR",
            "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL",
            "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
            "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD",
            "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
            "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR",
            "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF",
            "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN",
            "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
            "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV",
            "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
        ];
        for code in current {
            let body = amount_body("1", code);
            assert!(
                parse_payment(body.as_bytes(), &Limits::default()).is_ok(),
                "{code}"
            );
        }
    }

    #[test]
    fn currency_of_the_wrong_type_is_rejected() {
        let b = body(r#""t""#, "1", "840", r#""c""#);
        assert_eq!(only_error(&b, CURRENCY), "must be a string, not a number");
    }

    #[test]
    fn amount_syntax_is_still_checked_when_currency_is_bad() {
        let err = parse(&amount_body("-1", "XYZ")).unwrap_err();
        assert_eq!(err.fields(), vec![AMOUNT, CURRENCY]);
        assert_eq!(err.messages_for(AMOUNT), vec![POSITIVE_MESSAGE]);
        // A well-formed amount is not blamed for the currency's fault.
        let err = parse(&amount_body("1.999", "XYZ")).unwrap_err();
        assert_eq!(err.fields(), vec![CURRENCY]);
    }

    #[test]
    fn missing_fields_are_all_reported() {
        let err = parse("{}").unwrap_err();
        assert_eq!(
            err.fields(),
            vec![TRANSACTION_ID, AMOUNT, CURRENCY, CUSTOMER_ID]
        );
        assert!(err.details.iter().all(|d| d.message == "is required"));

        let err = parse(r#"{"amount": 1, "currency": "USD"}"#).unwrap_err();
        assert_eq!(err.fields(), vec![TRANSACTION_ID, CUSTOMER_ID]);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let b = r#"{"transaction_id": "t1", "amount": 1, "currency": "USD", "customer_id": "c1", "note": "x", "tip": 2}"#;
        let err = parse(b).unwrap_err();
        assert_eq!(err.fields(), vec!["note", "tip"]);
        assert!(
            err.details
                .iter()
                .all(|d| d.message == "is not a recognised field")
        );
    }

    #[test]
    fn unknown_field_names_that_are_not_identifiers_are_not_echoed() {
        let b = r#"{"transaction_id": "t1", "amount": 1, "currency": "USD", "customer_id": "c1", "<script>": 1, "a b": 2}"#;
        let err = parse(b).unwrap_err();
        assert_eq!(err.fields(), vec![BODY]);
        assert_eq!(
            err.details[0].message,
            "contains 2 unrecognised field(s) whose names are not shown"
        );
        assert!(!err.to_body().to_string().contains("script"));
    }

    #[test]
    fn many_unknown_fields_are_summarised() {
        let extra: Vec<String> = (0..25).map(|i| format!("\"f{i}\": {i}")).collect();
        let b = format!(
            r#"{{"transaction_id": "t1", "amount": 1, "currency": "USD", "customer_id": "c1", {}}}"#,
            extra.join(", ")
        );
        let err = parse(&b).unwrap_err();
        assert_eq!(err.details.len(), MAX_UNKNOWN_FIELD_ERRORS + 1);
        assert_eq!(err.details[0].field, "f0");
        assert_eq!(
            err.details.last().unwrap(),
            &FieldError::new(BODY, "contains 15 further unrecognised field(s)")
        );
    }

    #[test]
    fn duplicate_fields_are_rejected() {
        let b = r#"{"transaction_id": "t1", "amount": 1, "amount": 1000000, "currency": "USD", "customer_id": "c1"}"#;
        assert_eq!(only_error(b, AMOUNT), "must appear only once");
    }

    #[test]
    fn ids_of_the_wrong_type_are_rejected() {
        let err = parse(&body("123", "1", r#""USD""#, "456")).unwrap_err();
        assert_eq!(err.fields(), vec![TRANSACTION_ID, CUSTOMER_ID]);
        assert!(
            err.details
                .iter()
                .all(|d| d.message == "must be a string, not a number")
        );
        let err = parse(&body("null", "1", r#""USD""#, "[\"c\"]")).unwrap_err();
        assert_eq!(
            err.messages_for(TRANSACTION_ID),
            vec!["must be a string, not null"]
        );
        assert_eq!(
            err.messages_for(CUSTOMER_ID),
            vec!["must be a string, not an array"]
        );
    }

    #[test]
    fn id_rule() {
        assert_eq!(check_id("txn_123-ABC"), Ok(()));
        assert_eq!(check_id(&"a".repeat(64)), Ok(()));
        assert_eq!(check_id(&"a".repeat(65)), Err(IdError::TooLong));
        assert_eq!(check_id(""), Err(IdError::Empty));
        for bad in [
            "txn 1",
            "txn.1",
            "txn/1",
            "txn|1",
            "tx\u{e9}",
            "t\n",
            "ｔｘｎ",
        ] {
            assert_eq!(check_id(bad), Err(IdError::InvalidCharacter), "{bad:?}");
        }
    }

    #[test]
    fn bad_ids_are_reported_per_field() {
        let long = format!("\"{}\"", "x".repeat(65));
        let err = parse(&body(r#""txn 1""#, "1", r#""USD""#, &long)).unwrap_err();
        assert_eq!(
            err.details,
            vec![
                FieldError::new(
                    TRANSACTION_ID,
                    "must contain only ASCII letters, digits, '_' and '-'"
                ),
                FieldError::new(CUSTOMER_ID, "must be at most 64 characters long"),
            ]
        );
        let err = parse(&body(r#""""#, "1", r#""USD""#, r#""c""#)).unwrap_err();
        assert_eq!(
            err.details,
            vec![FieldError::new(TRANSACTION_ID, "must not be empty")]
        );
        // JSON escapes are decoded before the rule is applied.
        let p = parse(&body(r#""txn\u005f1""#, "1", r#""USD""#, r#""c""#)).unwrap();
        assert_eq!(p.transaction_id, "txn_1");
    }

    #[test]
    fn every_problem_is_reported_together() {
        let b = r#"{"transaction_id": "bad id!", "amount": 1e3, "currency": "usd", "extra": true}"#;
        let err = parse(b).unwrap_err();
        assert_eq!(
            err.details,
            vec![
                FieldError::new(
                    TRANSACTION_ID,
                    "must contain only ASCII letters, digits, '_' and '-'"
                ),
                FieldError::new(AMOUNT, EXPONENT_MESSAGE),
                FieldError::new(
                    CURRENCY,
                    "must be an uppercase ISO 4217 code: did you mean USD?"
                ),
                FieldError::new(CUSTOMER_ID, "is required"),
                FieldError::new("extra", "is not a recognised field"),
            ]
        );
    }

    #[test]
    fn messages_do_not_echo_input_values() {
        let b = r#"{"transaction_id": "SECRET<1>", "amount": "SECRET", "currency": "SECRET", "customer_id": "SECRET SECRET"}"#;
        let err = parse(b).unwrap_err();
        assert_eq!(err.details.len(), 4);
        let rendered = err.to_body().to_string();
        assert!(!rendered.contains("SECRET"), "{rendered}");
        assert!(!err.to_string().contains("SECRET"));
    }

    #[test]
    fn malformed_json_is_rejected() {
        for b in [
            r#"{"transaction_id": "t1""#,
            "{,}",
            "{'a': 1}",
            r#"{"a": 1} x"#,
            "nul",
        ] {
            let msg = only_error(b, BODY);
            assert!(
                msg.starts_with("request body is not valid JSON (error at line 1"),
                "{b}: {msg}"
            );
        }
        assert_eq!(only_error("", BODY), "request body must not be empty");
        assert_eq!(only_error("  \n", BODY), "request body must not be empty");
        let err = parse_payment(b"{\"transaction_id\": \"\xff\"}", &Limits::default()).unwrap_err();
        assert_eq!(
            err.details,
            vec![FieldError::new(BODY, "request body must be valid UTF-8")]
        );
    }

    #[test]
    fn non_object_bodies_are_rejected() {
        for b in [
            "[]",
            "[{\"amount\": 1}]",
            "\"payment\"",
            "42",
            "null",
            "true",
        ] {
            assert_eq!(
                only_error(b, BODY),
                "request body must be a JSON object",
                "{b}"
            );
        }
    }

    #[test]
    fn body_size_limit_is_16_kib() {
        let base = amount_body("1.00", "USD");
        // Pad with insignificant whitespace to exactly the limit: accepted.
        let mut exact = base.clone();
        exact.push_str(&" ".repeat(MAX_BODY_BYTES - base.len()));
        assert_eq!(exact.len(), 16_384);
        assert!(parse(&exact).is_ok());
        // One byte more: rejected before parsing, as the only error.
        exact.push(' ');
        assert_eq!(
            only_error(&exact, BODY),
            "request body must be at most 16384 bytes"
        );
        // Even a body that is not JSON at all gets only the size error.
        let junk = vec![b'x'; 20_000];
        let err = parse_payment(&junk, &Limits::default()).unwrap_err();
        assert_eq!(
            err.details,
            vec![FieldError::new(
                BODY,
                "request body must be at most 16384 bytes"
            )]
        );
    }

    #[test]
    fn error_body_shape() {
        let err = ValidationErrors::single(AMOUNT, POSITIVE_MESSAGE);
        assert_eq!(
            err.to_body(),
            serde_json::json!({
                "error": "validation_failed",
                "details": [{"field": "amount", "message": "must be greater than zero"}],
            })
        );
        assert_eq!(
            err.to_string(),
            "validation failed: amount must be greater than zero"
        );
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            serde_json::json!({"details": [{"field": "amount", "message": "must be greater than zero"}]})
        );
    }

    #[test]
    fn exponent_helper() {
        assert_eq!(exponent("USD"), Some(2));
        assert_eq!(exponent("JPY"), Some(0));
        assert_eq!(exponent("KWD"), Some(3));
        assert_eq!(exponent("CLF"), Some(4));
        assert_eq!(exponent("usd"), None);
        assert_eq!(exponent("XAU"), None);
        assert_eq!(exponent("XYZ"), None);
    }

    fn payment(amount_minor: i64, currency: &str) -> Payment {
        Payment {
            transaction_id: "txn_123".into(),
            amount_minor,
            currency: currency.into(),
            customer_id: "cust_456".into(),
        }
    }

    #[test]
    fn amount_display_uses_the_currency_exponent() {
        assert_eq!(payment(10_000, "USD").amount_display(), "100.00");
        assert_eq!(payment(5, "USD").amount_display(), "0.05");
        assert_eq!(payment(100, "JPY").amount_display(), "100");
        assert_eq!(payment(1234, "KWD").amount_display(), "1.234");
        assert_eq!(payment(1, "KWD").amount_display(), "0.001");
        assert_eq!(
            payment(i64::MAX, "USD").amount_display(),
            "92233720368547758.07"
        );
        assert_eq!(format_minor(-150, 2), "-1.50");
    }

    #[test]
    fn display_round_trips_through_parse() {
        for (amount, currency) in [
            ("100.00", "USD"),
            ("0.05", "USD"),
            ("100", "JPY"),
            ("1.234", "KWD"),
        ] {
            let p = parse(&amount_body(amount, currency)).unwrap();
            assert_eq!(p.amount_display(), amount);
        }
    }

    #[test]
    fn fingerprint_is_canonical_and_sensitive_to_every_field() {
        let base = payment(10_000, "USD");
        assert_eq!(base.fingerprint(), "txn_123|10000|USD|cust_456");
        // "100" and "100.00" are the same payment.
        let a = parse(&amount_body("100", "USD")).unwrap();
        let b = parse(&amount_body("\"100.00\"", "USD")).unwrap();
        assert_eq!(a.fingerprint(), base.fingerprint());
        assert_eq!(b.fingerprint(), base.fingerprint());

        assert_ne!(payment(10_001, "USD").fingerprint(), base.fingerprint());
        assert_ne!(payment(10_000, "EUR").fingerprint(), base.fingerprint());
        let mut other_customer = base.clone();
        other_customer.customer_id = "cust_457".into();
        assert_ne!(other_customer.fingerprint(), base.fingerprint());
    }

    #[test]
    fn deserialize_id_applies_the_id_rule() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "deserialize_id")]
            #[allow(dead_code)]
            id: String,
        }
        assert!(serde_json::from_str::<T>(r#"{"id": "ok_1"}"#).is_ok());
        let err = serde_json::from_str::<T>(r#"{"id": "not ok"}"#)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("must contain only ASCII letters"),
            "{err}"
        );
    }
}
