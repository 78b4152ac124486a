//! A throwaway PostgreSQL cluster with password authentication (scram-sha-256), made
//! with the system's `initdb`/`pg_ctl` in a temporary directory on a free port, for the
//! tests that need the server to check passwords (the shared test server uses trust).
//! Dropping it stops the server (also when the test panics).

use std::path::PathBuf;
use std::process::Command;
use tokio_postgres::NoTls;

pub const ADMIN_PASSWORD: &str = "admin-test-password";

pub struct PasswordCluster {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    let mut found = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect::<Vec<_>>();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no initdb/pg_ctl under /usr/lib/postgresql: install the postgresql package")
    })
}

/// A PostgreSQL tool's command, run as `nobody` when we are root (initdb refuses root).
fn tool_command(bin: &std::path::Path, tool: &str) -> Command {
    let tool = bin.join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(&tool);
        c
    } else {
        Command::new(&tool)
    }
}

fn run(bin: &std::path::Path, tool: &str, args: &[&str]) {
    let out = tool_command(bin, tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PasswordCluster {
    pub fn start() -> PasswordCluster {
        use std::os::unix::fs::PermissionsExt;
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, ADMIN_PASSWORD).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let data = dir.path().join("db");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (data_s, pw_s, dir_s) = (
            data.display().to_string(),
            format!("--pwfile={}", pwfile.display()),
            dir.path().display().to_string(),
        );
        run(
            &bin,
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &pw_s,
            ],
        );
        let cluster = PasswordCluster { port, dir, bin };
        let log = cluster.dir.path().join("server.log").display().to_string();
        let options = format!("-p {port} -k {dir_s} -c listen_addresses=127.0.0.1");
        run(
            &cluster.bin,
            "pg_ctl",
            &["-D", &data_s, "-l", &log, "-w", "-o", &options, "start"],
        );
        cluster
    }

    /// A superuser connection to database `db`.
    pub async fn admin(&self, db: &str) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(ADMIN_PASSWORD)
            .dbname(db);
        let (client, conn) = config.connect(NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for PasswordCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("db").display().to_string();
        let _ = tool_command(&self.bin, "pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
