//! PostgreSQL for the processor.
//!
//! Settings come from the environment (`DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_SSLMODE`,
//! `DB_SECRET_ARN`); the credentials from the RDS-managed secret (`username`, `password`),
//! fetched once per cold start and cached. With `DB_SSLMODE=verify-full` (the default) the
//! server certificate and host name are verified against the Amazon RDS CA bundle, which is
//! compiled into the binary; `disable` exists for local tests only. The schema is created
//! by embedded, versioned migrations, applied under an advisory lock at the first connect.

pub use crate::db_error::DbError;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio::time::timeout;
use tokio_postgres::{Client, NoTls};

const RDS_CA_BUNDLE: &[u8] = include_bytes!("../certs/rds-global-bundle.pem");
const MIGRATION_LOCK: i64 = 7_345_001;

/// The whole connect: TCP, TLS, authentication (tokio-postgres's own `connect_timeout`
/// covers only the TCP connect).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One `GetSecretValue`.
pub const SECRET_TIMEOUT: Duration = Duration::from_secs(3);
/// Applying the migrations (normally a no-op read under the advisory lock).
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(5);
/// One unit of work on the connection (a transaction of a few statements). The server
/// enforces `statement_timeout` and `lock_timeout` itself; this bound also holds when the
/// server stalls and never answers.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(6);
/// Sent as session settings at connect: the server cancels a statement (57014) or a lock
/// wait (55P03) that runs longer, both transient.
const SESSION_OPTIONS: &str =
    "-c statement_timeout=4000 -c lock_timeout=2000 -c idle_in_transaction_session_timeout=10000";
/// Cached credentials are fetched again after this long, so a rotated secret is picked
/// up even without an authentication failure.
pub const CREDENTIALS_TTL: Duration = Duration::from_secs(10 * 60);

/// (version, SQL), applied in order, each once.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE payments (
        transaction_id text PRIMARY KEY,
        amount_minor bigint NOT NULL CHECK (amount_minor > 0),
        currency char(3) NOT NULL,
        customer_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        processed_at timestamptz NOT NULL DEFAULT now()
    )",
)];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SslMode {
    VerifyFull,
    Disable,
}

#[derive(Debug, Clone)]
pub struct DbSettings {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub sslmode: SslMode,
    pub secret_arn: String,
}

impl DbSettings {
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
        let sslmode = match std::env::var("DB_SSLMODE").as_deref() {
            Err(_) | Ok("verify-full") => SslMode::VerifyFull,
            Ok("disable") => SslMode::Disable,
            Ok(other) => {
                return Err(format!(
                    "DB_SSLMODE {other:?} is not verify-full or disable"
                ));
            }
        };
        Ok(DbSettings {
            host: var("DB_HOST")?,
            port: var("DB_PORT")?
                .parse()
                .map_err(|_| "DB_PORT is not a port number".to_string())?,
            name: var("DB_NAME")?,
            sslmode,
            secret_arn: var("DB_SECRET_ARN")?,
        })
    }
}

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn tls_config() -> Result<rustls::ClientConfig, String> {
    tls_config_trusting(RDS_CA_BUNDLE)
}

/// A TLS client that trusts only the CAs in `bundle` (PEM) and checks the host name.
fn tls_config_trusting(bundle: &[u8]) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("RDS CA bundle: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("the RDS CA bundle holds no usable certificate".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Connects in plain text (`tls` None) or with TLS required: a server that declines TLS
/// is refused rather than sent the password in the clear.
async fn open(
    mut config: tokio_postgres::Config,
    tls: Option<rustls::ClientConfig>,
) -> Result<Client, DbError> {
    let client = match tls {
        None => {
            let (client, conn) = config
                .connect(NoTls)
                .await
                .map_err(|e| DbError::from_pg("connect", e))?;
            tokio::spawn(conn);
            client
        }
        Some(tls) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let (client, conn) = config
                .connect(tls)
                .await
                .map_err(|e| DbError::from_pg("connect", e))?;
            tokio::spawn(conn);
            client
        }
    };
    Ok(client)
}

/// The processor's database: one cached connection, reopened when it breaks.
pub struct Postgres {
    pub settings: DbSettings,
    pub secrets: aws_sdk_secretsmanager::Client,
    credentials: Mutex<Option<(Credentials, Instant)>>,
    client: Mutex<Option<Client>>,
}

impl Postgres {
    pub fn new(settings: DbSettings, secrets: aws_sdk_secretsmanager::Client) -> Self {
        Postgres {
            settings,
            secrets,
            credentials: Mutex::new(None),
            client: Mutex::new(None),
        }
    }

    async fn credentials(&self) -> Result<Credentials, DbError> {
        let mut cached = self.credentials.lock().await;
        if let Some((c, at)) = cached.as_ref()
            && at.elapsed() < CREDENTIALS_TTL
        {
            return Ok(c.clone());
        }
        let arn = &self.settings.secret_arn;
        let fetched = timeout(
            SECRET_TIMEOUT,
            self.secrets.get_secret_value().secret_id(arn).send(),
        )
        .await
        .map_err(|_| DbError::Timeout("GetSecretValue"))?;
        let out = fetched.map_err(|e| {
            DbError::Transient(format!(
                "GetSecretValue: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        })?;
        let text = out
            .secret_string()
            .ok_or_else(|| DbError::Permanent("the database secret holds no string".into()))?;
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|_| DbError::Permanent("the database secret is not JSON".into()))?;
        let field = |k: &str| {
            value[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| DbError::Permanent(format!("the database secret has no {k}")))
        };
        let creds = Credentials {
            username: field("username")?,
            password: field("password")?,
        };
        *cached = Some((creds.clone(), Instant::now()));
        Ok(creds)
    }

    async fn forget_credentials(&self) {
        *self.credentials.lock().await = None;
    }

    async fn connect(&self) -> Result<Client, DbError> {
        let creds = self.credentials().await?;
        let s = &self.settings;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&s.host)
            .port(s.port)
            .dbname(&s.name)
            .user(&creds.username)
            .password(&creds.password)
            .connect_timeout(CONNECT_TIMEOUT)
            .options(SESSION_OPTIONS)
            .application_name("payment-processor");
        let tls = match s.sslmode {
            SslMode::Disable => None,
            SslMode::VerifyFull => Some(tls_config().map_err(DbError::Permanent)?),
        };
        timeout(CONNECT_TIMEOUT, open(config, tls))
            .await
            .map_err(|_| DbError::Timeout("connect"))?
    }

    /// A new, migrated connection. An authentication failure (the secret was rotated
    /// since it was cached) fetches the secret once more and reconnects before deciding.
    async fn open_migrated(&self) -> Result<Client, DbError> {
        let mut client = match self.connect().await {
            Err(DbError::Auth(why)) => {
                tracing::warn!(
                    "the database refused the cached credentials, fetching the secret again: {why}"
                );
                self.forget_credentials().await;
                self.connect().await?
            }
            other => other?,
        };
        timeout(MIGRATE_TIMEOUT, migrate(&mut client))
            .await
            .map_err(|_| DbError::Timeout("migrations"))??;
        Ok(client)
    }

    /// Runs `f` on the cached connection, connecting (and migrating) first when needed.
    /// The connection is taken out of the cache while `f` runs and put back only when
    /// `f` finished on a live connection: one that timed out, or whose caller gave up
    /// waiting (the future was dropped), is never reused. A transient failure on a cached
    /// connection (the backend was terminated, say after a password rotation or a
    /// failover) is tried once more on a new one; `f` must be safe to repeat.
    async fn with_client<T>(
        &self,
        f: impl AsyncFn(&mut Client) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut guard = self.client.lock().await;
        let (mut client, reused) = match guard.take() {
            Some(client) if !client.is_closed() => (client, true),
            _ => (self.open_migrated().await?, false),
        };
        let mut result = timeout(CALL_TIMEOUT, f(&mut client))
            .await
            .map_err(|_| DbError::Timeout("statement"))?;
        if reused && matches!(result, Err(DbError::Transient(_))) {
            tracing::warn!("the cached database connection failed, trying a new one");
            client = self.open_migrated().await?;
            result = timeout(CALL_TIMEOUT, f(&mut client))
                .await
                .map_err(|_| DbError::Timeout("statement"))?;
        }
        if !client.is_closed() {
            *guard = Some(client);
        }
        result
    }

    /// Records a payment once; `Ok(false)` when the same payment was already recorded,
    /// [`DbError::LedgerConflict`] (and nothing changed) when the row holds another amount,
    /// currency or customer.
    pub async fn record(
        &self,
        id: &str,
        amount_minor: i64,
        currency: &str,
        customer_id: &str,
    ) -> Result<bool, DbError> {
        self.with_client(async |client: &mut Client| {
            let tx = client.transaction().await.map_err(|e| DbError::from_pg("begin", e))?;
            let n = tx
                .execute(
                    "INSERT INTO payments (transaction_id, amount_minor, currency, customer_id) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (transaction_id) DO NOTHING",
                    &[&id, &amount_minor, &currency, &customer_id],
                )
                .await
                .map_err(|e| DbError::from_pg("insert payment", e))?;
            if n == 0 {
                let row = tx
                    .query_one(
                        "SELECT amount_minor, currency::text, customer_id FROM payments WHERE transaction_id = $1",
                        &[&id],
                    )
                    .await
                    .map_err(|e| DbError::from_pg("read payment", e))?;
                let column = |e: tokio_postgres::Error| DbError::from_pg("read payment", e);
                let same = row.try_get::<_, i64>(0).map_err(column)? == amount_minor
                    && row.try_get::<_, String>(1).map_err(column)? == currency
                    && row.try_get::<_, String>(2).map_err(column)? == customer_id;
                if !same {
                    tx.rollback().await.map_err(|e| DbError::from_pg("rollback", e))?;
                    return Err(DbError::LedgerConflict);
                }
            }
            tx.commit().await.map_err(|e| DbError::from_pg("commit", e))?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        self.with_client(async |client: &mut Client| {
            client
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| DbError::from_pg("ping", e))
        })
        .await
    }
}

/// Applies the migrations that are missing, in one transaction under an advisory lock.
pub async fn migrate(client: &mut Client) -> Result<(), DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| DbError::from_pg("begin", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| DbError::from_pg("migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(|e| DbError::from_pg("schema_migrations", e))?;
    let rows = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(|e| DbError::from_pg("read migrations", e))?;
    let applied: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| DbError::from_pg(&format!("migration {version}"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(|e| DbError::from_pg("record migration", e))?;
        tracing::info!("applied database migration {version}");
    }
    tx.commit()
        .await
        .map_err(|e| DbError::from_pg("commit migrations", e))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tls_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rds_bundle_loads_into_a_tls_config() {
        tls_config().unwrap();
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted);
    }
}
