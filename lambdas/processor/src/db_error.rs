//! Database failures, classed by what the caller should do about them.
//!
//! Transient (retry later through the queue): no SQLSTATE at all (the connection broke or
//! never opened), class 08 (connection exception), class 53 (insufficient resources:
//! 53000, 53100 disk full, 53200 out of memory, 53300 too many connections, 53400
//! configuration limit), class 57 (operator intervention: 57014 a statement timeout,
//! 57P01–57P03 shutdown or not yet accepting), 25P03 (idle in transaction timeout), 40001
//! and 40P01 (serialization failure, deadlock) and 55P03 (lock not available, from
//! `lock_timeout`). Class 28 (authentication) gets one fresh secret and a new connection
//! before it is decided (see `db::Postgres`). Anything else, constraint violations
//! included, is permanent. Messages are for the log only: they can name hosts and users,
//! so they never reach a response body.

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
    /// The server refused the credentials (class 28).
    #[error("authentication: {0}")]
    Auth(String),
    /// The database did not answer in time; the connection was dropped.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The ledger already holds a different payment under this transaction id.
    #[error("the ledger holds a different payment for this transaction")]
    LedgerConflict,
}

/// True for the SQLSTATEs that retrying later can cure.
pub fn transient_state(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || matches!(code, "25P03" | "40001" | "40P01" | "55P03")
}

impl DbError {
    pub fn from_pg(context: &str, e: tokio_postgres::Error) -> Self {
        let message = match e.as_db_error() {
            // The server's DETAIL can quote the row (`Failing row contains (...)`, with the
            // customer and amount): only the SQLSTATE and the primary message are kept.
            Some(db) => format!("{context}: {} {}", db.code().code(), db.message()),
            None => {
                // The causes say why (a TLS handshake failure names the certificate problem).
                let mut message = format!("{context}: {e}");
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    message.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                message
            }
        };
        match e.code() {
            // SQL errors carry a SQLSTATE; connection and I/O failures do not.
            None => DbError::Transient(message),
            Some(state)
                if *state == SqlState::INVALID_PASSWORD
                    || *state == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                DbError::Auth(message)
            }
            Some(state) if transient_state(state.code()) => DbError::Transient(message),
            Some(_) => DbError::Permanent(message),
        }
    }

    /// Whether queueing a retry can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DbError::Transient(_) | DbError::Auth(_) | DbError::Timeout(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_states_are_transient_and_constraint_violations_are_not() {
        for code in [
            "08000", "08006", "53000", "53100", "53200", "53300", "53400", "57014", "57P01",
            "57P02", "57P03", "25P03", "40001", "40P01", "55P03",
        ] {
            assert!(transient_state(code), "{code}");
        }
        for code in [
            "23505", "23514", "23502", "42P01", "42501", "22001", "28P01", "55000",
        ] {
            assert!(!transient_state(code), "{code}");
        }
    }
}
