//! The processor's database when it runs locally: a local PostgreSQL (`--database-url`,
//! else `postgres://postgres@127.0.0.1:5432/<the deployed DB_NAME>`) instead of the
//! deployed RDS endpoint, which the emulator does not back with a server (and a real
//! RDS instance sits in private subnets).
//!
//! The processor reads its credentials from the secret named by `DB_SECRET_ARN`. The
//! local credentials must not be written into the deployed secret (on AWS that secret is
//! RDS's own, which rotates it) nor into a new one (a resource outside the state file).
//! So payctl answers `GetSecretValue` itself, for one local secret id only, from memory:
//! the processor alone gets `AWS_ENDPOINT_URL_SECRETS_MANAGER` pointing at that endpoint
//! on 127.0.0.1, and every other call it makes goes where the others' go. The password
//! from the URL is held in memory and never logged.
//!
//! Before the functions start, payctl connects once to check the server is there, and
//! creates the database when the server says it does not exist.

use super::deployed::Secret;
use super::http::{self, Request, Response};
use crate::error::{Error, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

#[derive(Debug, Clone)]
pub struct LocalDb {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Secret,
    /// `disable` or `verify-full`, the two modes the processor speaks.
    pub sslmode: &'static str,
}

impl LocalDb {
    /// Parses a PostgreSQL URL (`postgres://user:password@host:port/db?sslmode=…`); the
    /// database defaults to `default_name`.
    pub fn parse(url: &str, default_name: &str) -> Result<LocalDb> {
        let bad = |why: &str| Error::Invalid(format!("--database-url: {why}"));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut sslmode = "disable";
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", "disable")) => sslmode = "disable",
                Some(("sslmode", "verify-full")) => sslmode = "verify-full",
                Some(("sslmode", other)) => {
                    return Err(bad(&format!(
                        "sslmode={other} is not supported: the processor speaks verify-full or disable"
                    )));
                }
                _ => rest.push(pair),
            }
        }
        let plain = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config = tokio_postgres::Config::from_str(&plain)
            .map_err(|e| bad(&format!("not a PostgreSQL URL ({e})")))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            None => "127.0.0.1".into(),
            #[allow(unreachable_patterns)]
            Some(_) => {
                return Err(bad(
                    "the processor connects over TCP: give a host name or address",
                ));
            }
        };
        Ok(LocalDb {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            name: config
                .get_dbname()
                .filter(|n| !n.is_empty())
                .unwrap_or(default_name)
                .to_string(),
            user: config.get_user().unwrap_or("postgres").to_string(),
            password: Secret(
                config
                    .get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default(),
            ),
            sslmode,
        })
    }

    /// `user@host:port/db`, for messages (never the password).
    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.name)
    }

    fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5))
            .application_name("payctl-local");
        if !self.password.0.is_empty() {
            c.password(&self.password.0);
        }
        c
    }

    /// Checks the server answers (within 10 s), creating the database when it does not
    /// exist yet. A server that does not answer is only reported: the processor treats
    /// an unreachable database as transient (202 and the retry queue), as on AWS.
    /// (A `verify-full` server is not checked here: the processor checks it.)
    pub async fn prepare(&self) -> Result<()> {
        if self.sslmode != "disable" {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_secs(10), self.check_or_create()).await {
            Ok(Err(Error::Invalid(why))) if why.starts_with("cannot reach") => {
                tracing::warn!("{why}");
                Ok(())
            }
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    "the local PostgreSQL {} did not answer within 10s; the processor will keep trying",
                    self.display()
                );
                Ok(())
            }
        }
    }

    async fn check_or_create(&self) -> Result<()> {
        let unreachable = |e: tokio_postgres::Error| {
            Error::Invalid(format!(
                "cannot reach the local PostgreSQL {} now ({e}): start one on 127.0.0.1:5432 or pass --database-url; the processor will keep trying",
                self.display()
            ))
        };
        match self.config(&self.name).connect(NoTls).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {}
            Err(e) => return Err(unreachable(e)),
        }
        let (client, conn) = self
            .config("postgres")
            .connect(NoTls)
            .await
            .map_err(unreachable)?;
        let task = tokio::spawn(conn);
        let sql = format!("CREATE DATABASE \"{}\"", self.name.replace('"', "\"\""));
        let created = client.batch_execute(&sql).await;
        drop(client);
        task.abort();
        match created {
            Ok(()) => {
                tracing::info!("created database {} for the processor", self.display());
                Ok(())
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
                Ok(())
            }
            Err(e) => Err(Error::Invalid(format!(
                "cannot create database {} ({e}); create it yourself or pass --database-url",
                self.display()
            ))),
        }
    }

    /// The local secret's id for environment `env`.
    pub fn secret_id(region: &str, account: &str, env: &str) -> String {
        format!(
            "arn:{}:secretsmanager:{region}:{account}:secret:payctl-local-{env}-database",
            crate::api::partition(region)
        )
    }

    /// The processor's database variables, pointing at this database and at the local
    /// secret served on `secrets_endpoint`.
    pub fn processor_env(
        &self,
        secret_id: &str,
        secrets_endpoint: &str,
    ) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("DB_HOST".to_string(), self.host.clone()),
            ("DB_PORT".to_string(), self.port.to_string()),
            ("DB_NAME".to_string(), self.name.clone()),
            ("DB_SSLMODE".to_string(), self.sslmode.to_string()),
            ("DB_SECRET_ARN".to_string(), secret_id.to_string()),
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_string(),
                secrets_endpoint.to_string(),
            ),
        ])
    }
}

/// Serves `GetSecretValue` for `secret_id` only, with the database's credentials, on
/// 127.0.0.1. Returns the endpoint URL and the server's task.
pub async fn serve_secret(
    db: &LocalDb,
    secret_id: String,
) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Invalid(format!("cannot open a local port: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("cannot read a local port: {e}")))?;
    let secret = json!({
        "username": db.user, "password": db.password.0, "engine": "postgres",
        "host": db.host, "port": db.port, "dbname": db.name,
    })
    .to_string();
    let task = http::serve(listener, move |req: Request| {
        let (secret_id, secret) = (secret_id.clone(), secret.clone());
        async move { answer(&req, &secret_id, &secret) }
    });
    Ok((format!("http://{addr}"), task))
}

fn answer(req: &Request, secret_id: &str, secret: &str) -> Response {
    let error = |kind: &str, message: &str| {
        Response::json(400, &json!({"__type": kind, "message": message}))
            .header("content-type", "application/x-amz-json-1.1")
    };
    if req.header("x-amz-target") != Some("secretsmanager.GetSecretValue") {
        return error(
            "UnknownOperationException",
            "payctl's local endpoint answers GetSecretValue only",
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    if body["SecretId"].as_str() != Some(secret_id) {
        return error(
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
        );
    }
    let name = secret_id.rsplit(':').next().unwrap_or(secret_id);
    let out = json!({
        "ARN": secret_id, "Name": name, "SecretString": secret, "VersionId": "payctl-local",
        "VersionStages": ["AWSCURRENT"], "CreatedDate": chrono::Utc::now().timestamp(),
    });
    let mut resp = Response::new(200, out.to_string());
    resp.headers
        .push(("content-type".into(), "application/x-amz-json-1.1".into()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_the_processor_settings() {
        let db = LocalDb::parse(
            "postgres://app:pw@db.local:6543/pay?sslmode=verify-full",
            "x",
        )
        .unwrap();
        assert_eq!(
            (
                db.host.as_str(),
                db.port,
                db.name.as_str(),
                db.user.as_str(),
                db.sslmode
            ),
            ("db.local", 6543, "pay", "app", "verify-full")
        );
        assert_eq!(db.password.0, "pw");
        assert!(!format!("{db:?}").contains("pw\""));
        let db = LocalDb::parse("postgres://127.0.0.1", "payments").unwrap();
        assert_eq!(
            (db.name.as_str(), db.user.as_str(), db.port, db.sslmode),
            ("payments", "postgres", 5432, "disable")
        );
        assert!(LocalDb::parse("postgres://h/db?sslmode=require", "x").is_err());
        assert!(LocalDb::parse("mysql://nope", "x").is_err());
    }
}
