//! A PostgreSQL database per test: `PAYCTL_TEST_DATABASE_URL` (set by scripts/test.sh,
//! which finds or starts a server), else the server on 127.0.0.1:5432. A test never
//! skips: without a server it fails saying how to get one.

use std::str::FromStr;
use tokio_postgres::{Config, NoTls};

pub struct TestDb {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub name: String,
    admin: Config,
}

fn base() -> Config {
    let url = std::env::var("PAYCTL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    Config::from_str(&url)
        .unwrap_or_else(|e| panic!("PAYCTL_TEST_DATABASE_URL is not a PostgreSQL URL: {e}"))
}

async fn connect(config: &Config) -> tokio_postgres::Client {
    let (client, conn) = config.connect(NoTls).await.unwrap_or_else(|e| {
        panic!("no PostgreSQL for the tests ({e}): run scripts/test.sh, or set PAYCTL_TEST_DATABASE_URL")
    });
    tokio::spawn(conn);
    client
}

impl TestDb {
    /// Creates a fresh, empty database for one test.
    pub async fn create() -> TestDb {
        let admin = base();
        let name = format!("payctl_fn_{}", uuid::Uuid::new_v4().simple());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let host = match admin.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        TestDb {
            host,
            port: admin.get_ports().first().copied().unwrap_or(5432),
            user: admin.get_user().unwrap_or("postgres").to_string(),
            password: admin
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            name,
            admin,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let mut config = self.admin.clone();
        config.dbname(&self.name);
        connect(&config).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop is synchronous: use a small runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let (client, conn) = admin.connect(NoTls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}
